"""SkidBuffer in Amaranth's simulator: order, no loss, full throughput, registered ready."""

import random

import pytest
from amaranth.sim import Simulator

from hetnic.gateware.skid import SkidBuffer

SEED = 0x5EED_5C1D


def run(gap: float, stall: float, n: int = 400, seed: int = SEED):
    """Send ``n`` numbered records with random source gaps and sink stalls; return the
    records received, the cycles taken and what ``i.ready`` did when ``o.ready`` toggled."""
    dut = SkidBuffer(16)
    rng = random.Random(seed)
    got, ready_changes, cycles = [], [], [0]

    async def bench(ctx):
        sent = 0
        for cycle in range(20 * n + 100):
            offer = sent < n and rng.random() >= gap
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, sent)
            # i.ready must not follow o.ready within the cycle: it is a register.
            ctx.set(dut.o.ready, 0)
            ready_low = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)
            ready_changes.append(ready_low != ctx.get(dut.i.ready))
            take_out = rng.random() >= stall
            ctx.set(dut.o.ready, take_out)
            if ctx.get(dut.o.valid) and take_out:
                got.append(ctx.get(dut.o.payload))
            if offer and ctx.get(dut.i.ready):
                sent += 1
            await ctx.tick()
            cycles[0] = cycle + 1
            if len(got) == n:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles[0], ready_changes


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_order_and_no_loss(gap, stall):
    got, _, ready_changes = run(gap, stall)
    assert got == list(range(400))
    assert not any(ready_changes)


def test_full_throughput():
    got, cycles, _ = run(0.0, 0.0)
    assert got == list(range(400))
    assert cycles <= 400 + 2          # one record per cycle after one cycle of latency
