# amaranth: UnusedElaboratable=no
# (test_bad_bytes_per_cycle builds components whose __init__ raises; they are never elaborated.)
"""RssHashStage in Amaranth's simulator against the model hetnic.sim.model.toeplitz.meta_hash."""

import random
from types import SimpleNamespace

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import data

from hetnic.gateware.rss import RssHashStage
from hetnic.gateware.toeplitz import ToeplitzHash
from hetnic.sim.model.toeplitz import meta_hash, meta_hash_input
from hetnic.protocol import (HashType, MetaFlags, MS_RSS_DEFAULT_KEY, PacketMeta, ParseError,
                             ipv4_mapped)
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, step, unpack

SEED = 0x5EED_4A54
META = data.Layout.cast(PacketMeta)
FLAG = {name: 1 << f.offset for name, f in data.Layout.cast(MetaFlags)}
V4, V6, TCP, UDP = FLAG["ipv4"], FLAG["ipv6"], FLAG["tcp"], FLAG["udp"]


def random_meta(rng) -> dict:
    """A record with random fields; flags, addresses and ports drawn so that every hash type,
    the symmetric swaps and ties all come up. ``hash``/``hash_type`` are garbage."""
    meta = {name: rng.getrandbits(f.width) for name, f in META}
    flags = rng.choice([V4 | TCP, V4 | UDP, V4, V6 | TCP, V6 | UDP, V6, V4 | TCP | UDP,
                        V4 | V6 | UDP, 0, TCP, rng.getrandbits(META["flags"].width)])
    meta["flags"] = flags | rng.getrandbits(META["flags"].width) & ~(V4 | V6 | TCP | UDP)
    meta["error"] = 0 if rng.random() < 0.85 else rng.randrange(1, 16)
    for name in ("src_addr", "dst_addr"):
        if flags & V4 and rng.random() < 0.8:
            meta[name] = ipv4_mapped(rng.getrandbits(32))
    if rng.random() < 0.1:
        meta["dst_addr"] = meta["src_addr"]
    if rng.random() < 0.1:
        meta["dst_port"] = meta["src_port"]
    if rng.random() < 0.1:
        meta["src_port"], meta["dst_port"] = 0xFFFF, 0
    return meta


def expected(meta: dict, key: bytes, hash_enable: int, symmetric: bool) -> dict:
    parsed = SimpleNamespace(**{k: meta[k] for k in ("error", "flags", "src_addr", "dst_addr",
                                                     "src_port", "dst_port")})
    hash_, hash_type = meta_hash(parsed, key, hash_enable, symmetric)
    return dict(meta, hash=hash_, hash_type=int(hash_type))


def simulate(bytes_per_cycle, batches, *, seed, gap=0.0, stall=0.0):
    """Run ``batches`` of ``(key, hash_enable, symmetric, [meta, ...])`` through the stage.

    The configuration changes only between batches, once every record of the previous batch
    has come out. Checks every output record against the model, in order, that a stalled
    output holds, and that nothing comes out that was not sent. Returns per batch the cycles
    at which records were taken and emitted.
    """
    rng = seeded_rng(seed)
    dut = RssHashStage(bytes_per_cycle)
    total = sum(len(metas) for *_, metas in batches)
    per_record = 2 + 2 * -(-36 // bytes_per_cycle)
    timing = []

    async def bench(ctx):
        for key, hash_enable, symmetric, metas in batches:
            ctx.set(dut.key, int.from_bytes(key, "big"))
            ctx.set(dut.hash_enable, hash_enable)
            ctx.set(dut.symmetric, symmetric)
            want = [expected(m, key, hash_enable, symmetric) for m in metas]
            # While idle the source shows a random record that must not be taken.
            source = StreamSource(dut.i, rng=rng, gap=gap, name="i",
                                  idle_payload=lambda: pack(PacketMeta, **random_meta(rng)))
            source.extend(pack(PacketMeta, **meta) for meta in metas)
            sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")
            while len(sink.received) < len(metas):
                got, sent = len(sink.received), len(source.taken_at)
                await step(ctx, source, sink)
                if len(sink.received) > got:
                    assert got < sent, f"cycle {sink.cycle - 1}: a record nobody sent"
                    record = unpack(PacketMeta, sink.received[got])
                    assert record == want[got], (
                        f"record {got} (enable={hash_enable:#x}, symmetric={symmetric}):\n"
                        f" got  {record}\n want {want[got]}")
            ctx.set(dut.i.valid, 0)
            await sink.expect_idle(ctx, 3)
            timing.append((source.taken_at, sink.emitted_at))

    run_simulation(dut, bench,
                   cycle_limit=100 + int(per_record * total / ((1 - gap) * (1 - stall))))
    return timing


def random_batches(rng, count, size):
    batches = []
    for n in range(count):
        key = MS_RSS_DEFAULT_KEY if n == 0 else rng.randbytes(40)
        hash_enable = 0x7E if n < 2 else rng.choice([0xFF, 0, rng.getrandbits(8),
                                                     rng.getrandbits(8)])
        batches.append((key, hash_enable, n % 2 == 1 or rng.random() < 0.3,
                        [random_meta(rng) for _ in range(size)]))
    return batches


@pytest.mark.parametrize("bytes_per_cycle, gap, stall, count, size", [
    (36, 0.0, 0.0, 8, 50),
    (36, 0.3, 0.4, 12, 50),
    (8, 0.2, 0.3, 12, 40),
    (8, 0.0, 0.5, 6, 40),
])
def test_random_records(bytes_per_cycle, gap, stall, count, size):
    seed = SEED + bytes_per_cycle + int(10 * gap)
    rng = random.Random(seed)
    batches = random_batches(rng, count, size)
    hash_types = {expected(m, k, e, s)["hash_type"]
                  for k, e, s, metas in batches for m in metas}
    assert hash_types == set(HashType), f"not every hash type came up: {hash_types}"
    simulate(bytes_per_cycle, batches, seed=seed, gap=gap, stall=stall)


def test_directed_vectors():
    """The Microsoft verification vectors as records, plain and symmetric, and the reverse
    direction of each (which hashes alike only in symmetric mode)."""
    v4, v6 = ipv4_mapped(0x42_09_95_BB), 0x3FFE_2501_0200_1FFF_0000_0000_0000_0007
    d4, d6 = ipv4_mapped(0xA1_8E_64_50), 0x3FFE_2501_0200_0003_0000_0000_0000_0001
    base = {name: 0 for name, _ in META}
    metas = [dict(base, flags=V4 | TCP, src_addr=v4, dst_addr=d4, src_port=2794,
                  dst_port=1766),
             dict(base, flags=V4, src_addr=v4, dst_addr=d4),
             dict(base, flags=V6 | TCP, src_addr=v6, dst_addr=d6, src_port=2794,
                  dst_port=1766),
             dict(base, flags=V6, src_addr=v6, dst_addr=d6),
             dict(base, flags=V4 | UDP, error=ParseError.TRUNCATED, src_addr=v4, dst_addr=d4)]
    metas += [dict(m, src_addr=m["dst_addr"], dst_addr=m["src_addr"],
                   src_port=m["dst_port"], dst_port=m["src_port"]) for m in metas]
    known = [0x51CCC178, 0x323E8FC2, 0x40207D3D, 0x2CC18CD5, 0]
    for meta, hash_ in zip(metas, known):
        assert expected(meta, MS_RSS_DEFAULT_KEY, 0x7E, False)["hash"] == hash_
    for symmetric in (False, True):
        want = [expected(m, MS_RSS_DEFAULT_KEY, 0x7E, symmetric)["hash"] for m in metas]
        assert (want[:5] == want[5:]) == symmetric
    batches = [(MS_RSS_DEFAULT_KEY, 0x7E, False, metas), (MS_RSS_DEFAULT_KEY, 0x7E, True, metas)]
    for bytes_per_cycle in (8, 36):
        simulate(bytes_per_cycle, batches, seed=SEED)


@pytest.mark.parametrize("bytes_per_cycle", [8, 36])
def test_throughput(bytes_per_cycle):
    """Without idle cycles or backpressure, one record is taken every
    ``ceil(input_len / bytes_per_cycle)`` cycles (every cycle when fully parallel): the
    two input register slices take the second to fifth records while the engine hashes the
    first, then each record waits for the engine to finish the one five places before it."""
    seed = SEED + 1000 + bytes_per_cycle
    rng = random.Random(seed)
    key = rng.randbytes(40)
    metas = [random_meta(rng) for _ in range(60)]
    (taken_at, emitted_at), = simulate(bytes_per_cycle, [(key, 0x7E, False, metas)], seed=seed)
    engine = ToeplitzHash(bytes_per_cycle)
    Fragment.get(engine, None)          # only for cycles(); mark it used
    lengths = [len(meta_hash_input(SimpleNamespace(**m), HashType(expected(m, key, 0x7E,
                                                                           False)["hash_type"])))
               for m in metas]
    gaps = [b - a for a, b in zip(taken_at, taken_at[1:])]
    assert gaps == [1, 1, 1, 1] + [engine.cycles(n) for n in lengths[:-5]]
    latencies = {e - t for t, e in zip(taken_at, emitted_at)}
    print(f"latencies {sorted(latencies)}")
    # At most four records ahead of it (the two slices and the engine), two slice cycles.
    assert max(latencies) <= 4 + 4 * engine.cycles(36)


@pytest.mark.parametrize("bytes_per_cycle", [0, 37, -1, 8.0, "8", True])
def test_bad_bytes_per_cycle(bytes_per_cycle):
    # Checked when the stage is built, not later when its engine is elaborated.
    with pytest.raises(ValueError, match=f"not {bytes_per_cycle!r}"):
        RssHashStage(bytes_per_cycle)
