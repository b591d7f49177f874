"""The test kit itself: the runner's cycle limit, the source and sink on a SkidBuffer (order,
gaps, stalls, the hold rule caught when broken) and the layout codec."""

import random

import pytest
from amaranth.lib import data, stream

from hetnic.gateware.skid import SkidBuffer
from hetnic.protocol import Event, EventType, Rule, RuleAction, TxLengths
from kit import (HoldRule, SimulationTimeout, StreamSink, StreamSource, pack, pack_image,
                 run_simulation, seeded_rng, step, unpack, unpack_image)


def test_runner_fails_a_hung_testbench_with_its_name():
    dut = SkidBuffer(8)

    async def waits_forever(ctx):
        await ctx.tick().until(dut.o.valid)         # nothing is ever sent

    with pytest.raises(SimulationTimeout, match=r"not done after 50 cycles: .*waits_forever"):
        run_simulation(dut, waits_forever, cycle_limit=50)


def test_runner_returns_when_done_and_drops_background():
    dut = SkidBuffer(8)
    ticks = []

    async def forever(ctx):
        while True:
            await ctx.tick()
            ticks.append(1)

    async def short(ctx):
        await ctx.tick().repeat(5)

    run_simulation(dut, short, background=(forever,), cycle_limit=10)
    assert 4 <= len(ticks) <= 6
    with pytest.raises(ValueError, match="not 0"):
        run_simulation(dut, short, cycle_limit=0)


@pytest.mark.parametrize("gap, stall", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.3, 0.6)])
def test_source_and_sink_through_a_skid_buffer(gap, stall):
    dut = SkidBuffer(8)
    rng = seeded_rng(0x5EED + int(10 * gap + 100 * stall))
    source = StreamSource(dut.i, rng=rng, gap=gap, name="i")
    source.extend(range(200))
    sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")

    async def bench(ctx):
        while len(sink.received) < 200:
            await step(ctx, source, sink)
        await sink.expect_idle(ctx, 4)

    run_simulation(dut, bench, cycle_limit=5000)
    assert sink.received == list(range(200)) and source.done
    assert len(source.taken_at) == len(sink.emitted_at) == 200
    assert all(t < e for t, e in zip(source.taken_at, sink.emitted_at))
    if gap == stall == 0.0:
        assert source.stalls == 0 and sink.emitted_at[-1] <= 201      # full throughput
    if stall:
        assert source.stalls > 0


def test_sink_catches_a_payload_changed_while_stalled():
    port = stream.Signature(8).create()
    sink = StreamSink(port, rng=random.Random(1), stall=0.5, name="o")
    dut = SkidBuffer(8)                          # only for its clock domain
    count = []

    async def bench(ctx):
        value = 0
        for _ in range(100):
            ctx.set(port.valid, 1)
            ctx.set(port.payload, value)
            await step(ctx, sink)
            value += 1                          # a new payload every cycle, taken or not
            count.append(1)

    with pytest.raises(AssertionError, match="o, cycle .*: a stalled payload was changed"):
        run_simulation(dut, bench, cycle_limit=200)
    assert len(count) < 100


def test_hold_rule_on_named_channels():
    rule = HoldRule()
    assert not rule.check("AR", 1, 5, 0, cycle=0)
    assert rule.check("AR", 1, 5, 1, cycle=1)
    assert not rule.check("AR", 0, None, 0, cycle=2)
    assert not rule.check("W", 1, 7, 0, cycle=2)
    with pytest.raises(AssertionError, match="W, cycle 3: a stalled payload was dropped"):
        rule.check("W", 0, None, 1, cycle=3)


def test_pack_and_unpack():
    fields = dict(type=EventType.DROP, source=3, info=0xDEAD_BEEF, timestamp=1 << 47, phase=1)
    value = pack(Event, **fields)
    assert unpack(Event, value) == {**fields, "reserved0": 0, "reserved1": 0}
    assert value == data.Layout.cast(Event).const(fields).as_value().value
    image = pack_image(Event, **fields)
    assert len(image) == 16 and image == value.to_bytes(16, "little")
    assert unpack_image(Event, image) == unpack(Event, value)
    assert pack(TxLengths) == 0
    action = {"instance": 5, "reta_size_log2": 3}
    assert pack(Rule, enable=1, action=action) == pack(Rule, enable=1,
                                                       action=pack(RuleAction, **action))
    assert unpack(RuleAction, unpack(Rule, pack(Rule, action=action))["action"]) == \
        {"drop": 0, "instance": 5, "reta_offset": 0, "reta_size_log2": 3}
    with pytest.raises(ValueError, match="Event.source is 16 bits wide and cannot hold 65536"):
        pack(Event, source=1 << 16)
    with pytest.raises(ValueError, match="cannot hold -1"):
        pack(Event, info=-1)
    with pytest.raises(ValueError, match="Event has no field 'sauce'"):
        pack(Event, sauce=1)
    with pytest.raises(AssertionError, match="16 bytes, not 15"):
        unpack_image(Event, image[:15])


def test_source_and_sink_check_their_arguments(capsys):
    port = stream.Signature(8).create()
    with pytest.raises(ValueError, match="not 1.0"):
        StreamSource(port, rng=random.Random(), gap=1.0)
    with pytest.raises(ValueError, match="not -0.1"):
        StreamSink(port, rng=random.Random(), stall=-0.1)
    with pytest.raises(ValueError, match="i: give either rng .* or seed, not neither"):
        StreamSource(port, name="i")
    with pytest.raises(ValueError, match="o: give either rng .* or seed, not both"):
        StreamSink(port, rng=random.Random(), seed=1, name="o")
    sink = StreamSink(port, seed=0x5EED, name="o")
    assert sink.seed == 0x5EED and "o seed=0x5eed" in capsys.readouterr().out
    assert sink.rng.random() == random.Random(0x5EED).random()
