"""CsrSlice in Amaranth's simulator: each access performed once, data both ways, random
acknowledge delays on the far side, and no combinational path through the slice."""

import random


from hetnic.gateware.axil import CsrSlice
from kit import run_simulation

SEED = 0x5EED_C5A1


def test_accesses_once_with_data():
    rng = random.Random(SEED)
    dut = CsrSlice(16)
    regs = {}
    performed = []
    accesses = [(rng.choice("rw"), rng.randrange(0, 1 << 16, 4), rng.getrandbits(32))
                for _ in range(200)]
    results = []

    async def slave(ctx):
        while True:
            await ctx.tick()
            r, w = ctx.get(dut.csr.r_stb), ctx.get(dut.csr.w_stb)
            ctx.set(dut.csr.ack, 0)
            if not (r or w):
                continue
            for _ in range(rng.randrange(3)):           # 0..2 cycles before the ack
                await ctx.tick()
            addr = ctx.get(dut.csr.addr)
            if w:
                regs[addr] = ctx.get(dut.csr.w_data)
            performed.append(("w" if w else "r", addr))
            ctx.set(dut.csr.r_data, regs.get(addr, addr ^ 0xFFFF))
            ctx.set(dut.csr.ack, 1)

    async def master(ctx):
        for kind, addr, value in accesses:
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.w_data, value)
            ctx.set(dut.bus.r_stb, kind == "r")
            ctx.set(dut.bus.w_stb, kind == "w")
            for _ in range(20):
                *_, ack, data = await ctx.tick().sample(dut.bus.ack, dut.bus.r_data)
                if ack:
                    results.append(data)
                    break
            else:
                raise AssertionError("no ack within 20 cycles")
            ctx.set(dut.bus.r_stb, 0)
            ctx.set(dut.bus.w_stb, 0)
            await ctx.tick()

    run_simulation(dut, master, background=(slave,), cycle_limit=len(accesses) * 22)
    assert performed == [(kind, addr) for kind, addr, _ in accesses]
    model = {}
    for (kind, addr, value), got in zip(accesses, results):
        if kind == "w":
            model[addr] = value
        else:
            assert got == model.get(addr, addr ^ 0xFFFF)


def test_no_combinational_path():
    dut = CsrSlice(16)

    async def bench(ctx):
        for _ in range(3):
            before = (ctx.get(dut.csr.r_stb), ctx.get(dut.csr.w_stb), ctx.get(dut.csr.addr),
                      ctx.get(dut.bus.ack), ctx.get(dut.bus.r_data))
            ctx.set(dut.bus.r_stb, 1)
            ctx.set(dut.bus.addr, 0x1234)
            ctx.set(dut.csr.ack, 1)
            ctx.set(dut.csr.r_data, 0xDEAD)
            after = (ctx.get(dut.csr.r_stb), ctx.get(dut.csr.w_stb), ctx.get(dut.csr.addr),
                     ctx.get(dut.bus.ack), ctx.get(dut.bus.r_data))
            assert before == after
            ctx.set(dut.bus.r_stb, 0)
            ctx.set(dut.csr.ack, 0)
            await ctx.tick()

    run_simulation(dut, bench, cycle_limit=10)
