# amaranth: UnusedElaboratable=no
"""MacCounters in Amaranth's simulator: every MAC counter's lowest bit, toggled, counts in
its MAC_* register; reads take four cycles; writes and holes in the window are harmless."""

import random

import pytest

from hetnic.gateware.mac_counters import MAC_COUNTER_REGS, MacCounters
from hetnic.params import ECP5_BOARD_CORE
from kit import run_simulation

SEED = 0x5EED_3AC0
LIMIT = 20                  # cycles an access may take before the test fails


async def access(ctx, dut, addr, write=None):
    """One bus access held until ``ack``: ``(r_data, cycles)``."""
    csr = dut.csr
    ctx.set(csr.addr, addr)
    ctx.set(csr.w_data, write or 0)
    ctx.set(csr.w_stb if write is not None else csr.r_stb, 1)
    for cycle in range(1, LIMIT):
        _, _, ack, data = await ctx.tick().sample(csr.ack, csr.r_data)
        if ack:
            break
    else:
        raise AssertionError(f"access {addr:#06x}: no ack in {LIMIT} cycles")
    ctx.set(csr.r_stb, 0)
    ctx.set(csr.w_stb, 0)
    await ctx.tick()
    return data, cycle


def test_toggled_bits_count_in_their_registers():
    regmap = ECP5_BOARD_CORE.replace(mac_ports=2).regmap()
    dut = MacCounters(regmap)
    rng = random.Random(SEED)
    rx_regs, tx_regs = dut.rx_regs, dut.tx_regs
    want = {(reg, port): 0 for reg in MAC_COUNTER_REGS for port in range(2)}
    got, cycles_seen = {}, set()

    async def bench(ctx):
        bits = {("rx", p): 0 for p in range(2)} | {("tx", p): 0 for p in range(2)}
        # Random counts, each toggle at least two cycles after that bit's previous one (a
        # MAC counts at most once per frame).
        for _ in range(300):
            port = rng.randrange(2)
            side, regs = rng.choice((("rx", rx_regs), ("tx", tx_regs)))
            k = rng.randrange(len(regs))
            bits[side, port] ^= 1 << k
            want[regs[k], port] += 1
            ctx.set(dut.rx_bits[0], bits["rx", 0])
            ctx.set(dut.rx_bits[1], bits["rx", 1])
            ctx.set(dut.tx_bits[0], bits["tx", 0])
            ctx.set(dut.tx_bits[1], bits["tx", 1])
            await ctx.tick().repeat(2)
        await ctx.tick().repeat(4)      # the synchroniser
        for reg in MAC_COUNTER_REGS:
            for port in range(2):
                data, cycles = await access(ctx, dut, regmap.addr(f"MAC_{reg}", port))
                got[reg, port] = data
                cycles_seen.add(cycles)
        # A write is acknowledged and changes nothing; a hole in the window reads 0.
        addr = regmap.addr("MAC_RX_FCS_ERROR", 1)
        await access(ctx, dut, addr, write=12345)
        got["after write"] = (await access(ctx, dut, addr))[0]
        lo, hi = dut.window()
        got["hole"] = (await access(ctx, dut, lo + 0x3C))[0]
        assert hi - lo == 2 * 0x40

    # 300 toggles of two cycles, then the reads and three more accesses
    accesses = 2 * len(MAC_COUNTER_REGS) + 3
    run_simulation(dut, bench, cycle_limit=610 + accesses * (LIMIT + 1), clock_period=8e-9)
    assert {k: got[k] for k in want} == want
    assert min(want.values()) > 0          # every counter of both ports was exercised
    assert cycles_seen == {4}
    assert got["after write"] == want["RX_FCS_ERROR", 1] and got["hole"] == 0


def test_needs_mac_ports():
    with pytest.raises(ValueError, match="mac_ports >= 1"):
        MacCounters(ECP5_BOARD_CORE.regmap())
