"""SkidBuffer in Amaranth's simulator: order, no loss, full throughput, registered ready."""

import pytest

from hetnic.gateware.skid import SkidBuffer
from kit import StreamSink, StreamSource, run_simulation, seeded_rng

SEED = 0x5EED_5C1D


def run(gap: float, stall: float, n: int = 400, seed: int = SEED):
    """Send ``n`` numbered records with random source gaps and sink stalls; return the
    records received, the cycles taken and what ``i.ready`` did when ``o.ready`` toggled."""
    dut = SkidBuffer(16)
    rng = seeded_rng(seed)
    source = StreamSource(dut.i, rng=rng, gap=gap, name="i")
    source.extend(range(n))
    sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")
    ready_changes = []

    async def bench(ctx):
        while len(sink.received) < n:
            source.drive(ctx)
            # i.ready must not follow o.ready within the cycle: it is a register.
            ctx.set(dut.o.ready, 0)
            ready_low = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)
            ready_changes.append(ready_low != ctx.get(dut.i.ready))
            sink.drive(ctx)
            *_, i_ready, o_valid, o_payload = await ctx.tick().sample(
                *source.sampled, *sink.sampled)
            source.update(i_ready)
            sink.update(o_valid, o_payload)

    run_simulation(dut, bench, cycle_limit=20 * n + 100, clock_period=1e-6)
    return sink.received, sink.cycle, ready_changes


@pytest.mark.parametrize("gap,stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_order_and_no_loss(gap, stall):
    got, _, ready_changes = run(gap, stall)
    assert got == list(range(400))
    assert not any(ready_changes)


def test_full_throughput():
    got, cycles, _ = run(0.0, 0.0)
    assert got == list(range(400))
    assert cycles <= 400 + 2          # one record per cycle after one cycle of latency
