"""CsrDecoder in Amaranth's simulator, combinational and registered: every access reaches the
port of its window (or the default port) exactly once, with its address and data, and the
answer comes back; back-to-back accesses and slaves that answer at once or late included."""

import random

import pytest
from amaranth.hdl import Module, Signal

from hetnic.gateware.axil import CsrDecoder
from kit import run_simulation

SEED = 0x5EED_DEC0
WINDOWS = [(0x7800, 0x7880), (0x1000, 0x1400)]
LIMIT = 20


def window_of(addr):
    for k, (lo, hi) in enumerate(WINDOWS):
        if lo <= addr < hi:
            return k
    return len(WINDOWS)                     # the default port


@pytest.mark.parametrize("registered", [False, True])
def test_each_access_reaches_its_port_once(registered):
    dut = CsrDecoder(16, WINDOWS, registered=registered)
    ports = list(dut.sub) + [dut.default]
    rng = random.Random(SEED)
    accesses = []
    for _ in range(200):
        addr = rng.choice([rng.randrange(lo, hi) for lo, hi in WINDOWS] +
                          [rng.randrange(0, 0x10000)]) & ~3
        accesses.append((addr, rng.random() < 0.5, rng.getrandbits(32)))
    seen, answers, first_cycle_strobes = [], [], []

    async def bench(ctx):
        wait = [0] * len(ports)             # cycles each slave has held its strobe
        delay = [rng.randrange(3) for _ in ports]
        for addr, write, data in accesses:
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.w_data, data)
            ctx.set(dut.bus.w_stb, write)
            ctx.set(dut.bus.r_stb, not write)
            for cycle in range(LIMIT):
                for k, port in enumerate(ports):
                    stb = ctx.get(port.r_stb) or ctx.get(port.w_stb)
                    if stb and cycle == 0:
                        first_cycle_strobes.append(k)
                    ack = bool(stb) and wait[k] >= delay[k]
                    ctx.set(port.ack, ack)
                    ctx.set(port.r_data, ctx.get(port.addr) ^ 0x5A5A0000 if ack else 0)
                    if ack:
                        seen.append((k, ctx.get(port.addr), bool(ctx.get(port.w_stb)),
                                     ctx.get(port.w_data) if ctx.get(port.w_stb) else None))
                        wait[k], delay[k] = 0, rng.randrange(3)
                    else:
                        wait[k] = wait[k] + 1 if stb else 0
                if ctx.get(dut.bus.ack):
                    answers.append(ctx.get(dut.bus.r_data))
                    await ctx.tick()
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"access {addr:#06x}: no ack in {LIMIT} cycles")
        for port in ports:
            ctx.set(port.ack, 0)

    top = Module()                          # a sync domain for the combinational decoder too
    top.submodules.dut = dut
    top.d.sync += Signal(name="tick").eq(1)
    run_simulation(top, bench, cycle_limit=len(accesses) * (LIMIT + 1), clock_period=8e-9)
    assert seen == [(window_of(a), a, w, d if w else None) for a, w, d in accesses]
    assert answers == [a ^ 0x5A5A0000 for a, _, _ in accesses]
    assert {window_of(a) for a, _, _ in accesses} == set(range(len(ports)))
    if registered:
        # The strobes go out from an access's second cycle, after the compares settle.
        assert first_cycle_strobes == []
