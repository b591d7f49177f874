"""TagInserter in Amaranth's simulator against the host helpers of hetnic.steering_tag.

Frames and their records go in with random idle cycles, the output is taken with random
backpressure; every frame must come out tagged (or untagged when 12 bytes or shorter), or be
discarded when its record says drop, in order, with nothing left in flight.
"""

import random

import pytest

from hetnic.boards.tag_inserter import TagInserter
from hetnic.protocol import DropReason, HashType, PacketMeta
from hetnic.steering_tag import TagFields, encode_tag, insert_tag
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, unpack

SEED = 0x7A6_1A5E


def run(frames, *, seed=SEED, idle=0.3, stall=0.3, budget=20000):
    """``frames``: (bytes, error, meta dict). Returns output frames as (bytes, error) and the
    tagged and dropped counts, read once every input is taken and nothing is left in flight.
    """
    dut = TagInserter()
    out, beats = [], []
    rng = seeded_rng(seed)
    beat = dut.data.payload.shape()
    data = StreamSource(dut.data, rng=rng, gap=idle, name="data")
    for frame, error, _ in frames:
        data.extend(pack(beat, data=byte, keep=bool(frame), last=k == max(len(frame), 1) - 1,
                         error=error and k == max(len(frame), 1) - 1)
                    for k, byte in enumerate(frame or b"\0"))
    meta = StreamSource(dut.meta, rng=rng, gap=idle, name="meta")
    meta.extend(pack(PacketMeta, **fields) for _, _, fields in frames)
    sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")
    want_frames = len(expected(frames))
    counts = {}

    async def receive(ctx):
        while len(out) < want_frames or not (data.done and meta.done):
            sink.drive(ctx)
            *_, valid, payload = await ctx.tick().sample(*sink.sampled)
            if sink.update(valid, payload) is not None:
                p = unpack(beat, payload)
                if p["keep"]:
                    beats.append(p["data"])
                if p["last"]:
                    out.append((bytes(beats), bool(p["error"])))
                    beats.clear()
        assert not beats, "a frame left unfinished"
        await sink.expect_idle(ctx, 4)
        counts.update(tagged=ctx.get(dut.tagged_count), dropped=ctx.get(dut.dropped_count))

    run_simulation(dut, receive, background=(data.run, meta.run), cycle_limit=budget,
                   clock_period=8e-9)
    return out, counts


def meta_for(rng, drop=DropReason.NONE):
    return {"queue": rng.randrange(256), "instance": rng.randrange(16),
            "rule": rng.randrange(256), "hash": rng.getrandbits(32),
            "hash_type": rng.choice(list(HashType)), "generation": rng.randrange(1 << 16),
            "drop": drop, "length": rng.randrange(1 << 16)}


def expected(frames):
    result = []
    for frame, error, meta in frames:
        if meta["drop"] != DropReason.NONE:
            continue
        if len(frame) <= 12:
            result.append((frame, error))
            continue
        fields = TagFields(queue=meta["queue"], instance=meta["instance"], rule=meta["rule"],
                           hash=meta["hash"], hash_type=meta["hash_type"],
                           generation=meta["generation"])
        tagged = insert_tag(frame, fields) if len(frame) >= 14 else \
            frame[:12] + encode_tag(fields) + frame[12:]     # 13 bytes: the gateware tags it
        result.append((tagged, error))
    return result


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.3), (0.0, 0.7)])
def test_random_frames(idle, stall):
    rng = random.Random(SEED)
    frames = []
    for _ in range(40):
        drop = DropReason.RULE if rng.random() < 0.2 else DropReason.NONE
        length = rng.choice([14, 60, 64, rng.randrange(14, 300)])
        frames.append((rng.randbytes(length), rng.random() < 0.1, meta_for(rng, drop)))
    out, counts = run(frames, idle=idle, stall=stall)
    assert out == expected(frames)
    assert counts == {"tagged": sum(f[2]["drop"] == DropReason.NONE for f in frames),
                      "dropped": sum(f[2]["drop"] != DropReason.NONE for f in frames)}


def test_edges_short_frames_and_back_to_back_drops():
    rng = random.Random(SEED + 1)
    frames = [
        (rng.randbytes(12), True, meta_for(rng)),        # ends in the addresses: untagged
        (rng.randbytes(13), False, meta_for(rng)),       # one byte after the tag
        (rng.randbytes(1), True, meta_for(rng)),
        (rng.randbytes(64), False, meta_for(rng, DropReason.MAC_ERROR)),
        (rng.randbytes(64), False, meta_for(rng, DropReason.RULE)),
        (rng.randbytes(1522), False, meta_for(rng)),
    ]
    out, counts = run(frames, idle=0.1, stall=0.1)
    assert out == expected(frames)
    assert counts == {"tagged": 2, "dropped": 2}


def test_line_rate_output_once_started():
    """With data always available the tagged frame leaves at one byte per cycle (the
    transmit MAC cannot wait)."""
    rng = random.Random(SEED + 2)
    frame = rng.randbytes(100)
    dut = TagInserter()
    gaps = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.meta.valid, 1)
        ctx.set(dut.meta.payload, meta_for(rng))
        sent, started, n = 0, False, 0
        while n < len(frame) + 12:
            ctx.set(dut.data.valid, 1)
            ctx.set(dut.data.payload, {"data": frame[sent], "keep": 1,
                                       "last": sent == len(frame) - 1, "error": 0})
            *_, valid, ready = await ctx.tick().sample(dut.o.valid, dut.data.ready)
            if valid:
                started = True
                n += 1
            elif started:
                gaps.append(n)
            if ready:
                sent += 1
            if sent == len(frame):
                ctx.set(dut.data.valid, 0)

    run_simulation(dut, bench, cycle_limit=4 * len(frame), clock_period=8e-9)
    assert gaps == []
