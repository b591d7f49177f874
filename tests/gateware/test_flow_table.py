# amaranth: UnusedElaboratable=no
# (test_journal_that_cannot_be_applied_in_time builds FlowTables it never elaborates.)
"""FlowTable in Amaranth's simulator against the model in hetnic.sim.model.flow_table.

The bench stages changes through the block's register port exactly as the driver does
(FLOW_ENTRY words, FLOW_OP, FLOW_RESULT), applies commits the way the RX pipeline does (the
lookup path empty, ``commit_apply`` held, then ``commit_done``), and checks every record
that leaves against the model's committed table.
"""

import ipaddress
import random

import pytest
from amaranth.lib import data

import hetnic.gateware.flow_table as flow_table_module
from hetnic.gateware.flow_table import FlowTable
from hetnic.protocol import (FLOW_HIT_RULE, FlowKey, MetaFlags, PacketMeta, ParseError,
                             ipv4_mapped)
from hetnic.regs import (FLOW_BUCKETS, FLOW_ENTRY_WORDS, FLOW_JOURNAL, FLOW_STASH, FLOW_WAYS,
                         FlowOp, FlowStatus, RegisterMap)
from hetnic.sim.model.classifier import drop_reason
from hetnic.sim.model.flow_table import FlowTableModel, flow_bucket, flow_key, meta_flow_key
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, step, unpack

SEED = 0x5EED_F10E
REGMAP = RegisterMap(n_rules=2)
FLAG = {name: 1 << f.offset for name, f in data.Layout.cast(MetaFlags)}
STASH_BASE = FLOW_BUCKETS * FLOW_WAYS
KEY_LAYOUT = data.Layout.cast(FlowKey)


def meta(rng: random.Random, *, v6=False, **changes) -> dict:
    """A classified TCP record (the classifier's output) with a random 5-tuple."""
    if v6:
        src, dst = (int(ipaddress.IPv6Address("2001:db8::")) | rng.getrandbits(64)
                    for _ in range(2))
        flags = FLAG["ipv6"] | FLAG["tcp"]
    else:
        src, dst = (ipv4_mapped(0xC612_0000 | rng.getrandbits(16)) for _ in range(2))
        flags = FLAG["ipv4"] | FLAG["tcp"]
    record = dict(length=64, error=0, flags=flags, ethertype=0x86DD if v6 else 0x0800,
                  ip_proto=6, src_addr=src, dst_addr=dst, src_port=rng.randrange(1024, 65536),
                  dst_port=80, hash=rng.getrandbits(32), rule=1, instance=2, reta_offset=3,
                  reta_size_log2=4, drop=0, queue=0, generation=1)
    record.update(changes)
    return record


class Record:
    def __init__(self, fields):
        self.__dict__.update(fields)


def key_of(record: dict) -> int:
    return meta_flow_key(Record(record))


def packed_key(record: dict) -> int:
    """The key the lookup packs from ``record``'s fields whatever its flags (for a non-IP
    record, the key it would hit if it were looked up)."""
    return flow_key(ipv6=bool(record["flags"] & FLAG["ipv6"]), ip_proto=record["ip_proto"],
                    src_addr=record["src_addr"], dst_addr=record["dst_addr"],
                    src_port=record["src_port"], dst_port=record["dst_port"])


def action(rng: random.Random) -> dict:
    return dict(drop=int(rng.random() < 0.2), instance=rng.randrange(16),
                reta_offset=rng.randrange(2048), reta_size_log2=rng.randrange(10))


def expected(record: dict, table: FlowTableModel, pass_errors: bool) -> dict:
    out = unpack(PacketMeta, pack(PacketMeta, **record))
    hit = table.lookup(key_of(record))
    if hit is not None:
        act = hit[1]
        out.update(rule=FLOW_HIT_RULE, instance=act["instance"],
                   reta_offset=act["reta_offset"], reta_size_log2=act["reta_size_log2"],
                   drop=int(drop_reason(record["error"], pass_errors, act["drop"])))
    return out


class Bench:
    """The register port, the commit and the record stream of one FlowTable."""

    def __init__(self, dut: FlowTable, rng: random.Random, *, gap=0.0, stall=0.0):
        self.dut, self.model = dut, FlowTableModel()
        self.source = StreamSource(dut.i, rng=rng, gap=gap, name="i")
        self.sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")
        self.sent, self.want, self.refused = 0, [], 0

    async def access(self, ctx, addr, value=None, limit=50):
        csr = self.dut.csr
        ctx.set(csr.addr, addr)
        ctx.set(csr.w_data, value or 0)
        ctx.set(csr.w_stb if value is not None else csr.r_stb, 1)
        for _ in range(limit):
            ack, data_ = ctx.get(csr.ack), ctx.get(csr.r_data)
            self.refused += ctx.get(self.dut.refused_stb)
            await ctx.tick()
            if ack:
                ctx.set(csr.w_stb, 0)
                ctx.set(csr.r_stb, 0)
                return data_
        raise AssertionError(f"no ack for {addr:#x} in {limit} cycles")

    async def op(self, ctx, op, slot=0):
        await self.access(ctx, REGMAP.addr("FLOW_OP"), op | slot << 16)
        word = await self.access(ctx, REGMAP.addr("FLOW_RESULT"))
        return word >> 16 & 7, word & 0x7FF

    async def insert(self, ctx, key, act):
        value = FlowTableModel.entry_value(key, act)
        for k in range(FLOW_ENTRY_WORDS):
            await self.access(ctx, REGMAP.addr("FLOW_ENTRY", 0, k), value >> (32 * k) & 0xFFFF_FFFF)
        got = await self.op(ctx, FlowOp.INSERT)
        want = self.model.insert(key, act)
        assert got[0] == want[0] and (want[0] != FlowStatus.OK or got[1] == want[1]), (got, want)
        return want

    async def delete(self, ctx, slot):
        got, _ = await self.op(ctx, FlowOp.DELETE, slot)
        assert got == self.model.delete(slot)
        return got

    async def status(self, ctx):
        word = await self.access(ctx, REGMAP.addr("FLOW_STATUS"))
        assert word & 0x7FF == self.model.entries
        assert word >> 16 & 0x3F == len(self.model.staged)

    async def frames(self, ctx, records, pass_errors=False):
        """Send ``records`` and wait for all of them (the model's table as committed now)."""
        self.want += [expected(r, self.model, pass_errors) for r in records]
        self.source.extend(pack(PacketMeta, **r) for r in records)
        while len(self.sink.received) < len(self.want):
            await step(ctx, self.source, self.sink)

    async def commit(self, ctx, rule_copy_cycles=34):
        """The RX pipeline's commit: the lookup path is empty (frames() waits for every
        record), ``commit_apply`` high while the register file copies the rules."""
        ctx.set(self.dut.commit_apply, 1)
        await ctx.tick().repeat(rule_copy_cycles)
        ctx.set(self.dut.commit_done, 1)
        await ctx.tick()
        ctx.set(self.dut.commit_apply, 0)
        ctx.set(self.dut.commit_done, 0)
        self.model.commit()

    def check(self):
        got = [unpack(PacketMeta, v) for v in self.sink.received]
        for k, (g, w) in enumerate(zip(got, self.want, strict=True)):
            assert g == w, f"record {k}: {({f: (w[f], g[f]) for f in w if w[f] != g[f]})}"


def near_misses(rng, record: dict) -> list[dict]:
    """Records in ``record``'s bucket whose keys differ from its key only inside one 32-bit
    chunk of the key (the compare's unit), one per chunk: each must miss."""
    key, bucket, bits = key_of(record), flow_bucket(key_of(record)), KEY_LAYOUT.size
    out = []
    for lo in range(0, bits, 32):
        width = min(32, bits - lo)
        while True:
            other = key ^ (rng.getrandbits(width) << lo)
            if other != key and flow_bucket(other) == bucket:
                break
        fields = unpack(FlowKey, other)
        flags = FLAG["ipv6" if fields["ipv6"] else "ipv4"] | FLAG["tcp"]
        out.append(dict(record, flags=flags, ip_proto=fields["ip_proto"],
                        src_port=fields["src_port"], dst_port=fields["dst_port"],
                        src_addr=fields["src_addr"], dst_addr=fields["dst_addr"]))
        assert key_of(out[-1]) == other
    return out


def same_bucket_keys(rng, n, v6=False):
    """``n`` records whose keys share one bucket."""
    first = meta(rng, v6=v6)
    bucket = flow_bucket(key_of(first))
    found = [first]
    while len(found) < n:
        r = meta(rng, v6=v6)
        if flow_bucket(key_of(r)) == bucket:
            found.append(r)
    return found


@pytest.mark.timeout(120)
def test_collisions_stash_full_and_commit_semantics():
    rng = seeded_rng(SEED)
    dut = FlowTable(REGMAP)
    bench = Bench(dut, rng)
    # One bucket's 4 ways, then the 8 stash entries, then one refused; IPv4 and IPv6 beside.
    colliding = same_bucket_keys(rng, FLOW_WAYS + FLOW_STASH + 2)
    late = colliding.pop()              # inserted once a stash entry has been freed
    others = [meta(rng), meta(rng, v6=True), meta(rng, v6=True, error=ParseError.BAD_LENGTH)]
    # Not IPv4 nor IPv6: never looked up, even though their packed keys are in the table.
    non_ip = [meta(rng, flags=0, ethertype=0x0806), meta(rng, flags=FLAG["tcp"])]

    async def run(ctx):
        slots = []
        for r in colliding[:-1] + others:
            status, slot = await bench.insert(ctx, key_of(r), action(rng))
            assert status == FlowStatus.OK
            slots.append(slot)
        assert slots[FLOW_WAYS:FLOW_WAYS + FLOW_STASH] == list(
            range(STASH_BASE, STASH_BASE + FLOW_STASH))
        status, _ = await bench.insert(ctx, key_of(colliding[-1]), action(rng))
        assert status == FlowStatus.FULL
        for r in non_ip:
            assert (await bench.insert(ctx, packed_key(r), action(rng)))[0] == FlowStatus.OK
        await bench.status(ctx)
        # Staged, not committed: every frame misses.
        every = colliding + others + non_ip
        every += near_misses(rng, colliding[0]) + near_misses(rng, others[1])
        await bench.frames(ctx, every)
        assert all(unpack(PacketMeta, v)["rule"] != FLOW_HIT_RULE for v in bench.sink.received)
        await bench.commit(ctx)
        await bench.frames(ctx, every)
        # Delete one way and one stash entry: the frames before the commit still hit them.
        assert await bench.delete(ctx, slots[1]) == FlowStatus.OK
        assert await bench.delete(ctx, slots[FLOW_WAYS + 2]) == FlowStatus.OK
        assert await bench.delete(ctx, slots[1]) == FlowStatus.BAD_SLOT
        assert await bench.delete(ctx, STASH_BASE + FLOW_STASH) == FlowStatus.BAD_SLOT
        await bench.frames(ctx, every)
        await bench.commit(ctx)
        await bench.frames(ctx, every)
        # The freed way takes the refused key now, the freed stash entry the next one.
        status, slot = await bench.insert(ctx, key_of(colliding[-1]), action(rng))
        assert (status, slot) == (FlowStatus.OK, slots[1])
        status, slot = await bench.insert(ctx, key_of(late), action(rng))
        assert (status, slot) == (FlowStatus.OK, slots[FLOW_WAYS + 2])
        await bench.status(ctx)
        await bench.commit(ctx)
        await bench.frames(ctx, every + [late])
        got = unpack(PacketMeta, bench.sink.received[-1])
        assert got["rule"] == FLOW_HIT_RULE and got == bench.want[-1]
        block = bench.sink.received[-1 - len(every):-1]
        assert all(unpack(PacketMeta, v)["rule"] != FLOW_HIT_RULE
                   for v in block[-len(non_ip):])
        assert (await bench.op(ctx, 3))[0] == FlowStatus.BAD_OP
        await bench.sink.expect_idle(ctx, 5)

    run_simulation(dut, run, cycle_limit=20_000)
    bench.check()
    assert bench.refused == 1
    hits = sum(unpack(PacketMeta, v)["rule"] == FLOW_HIT_RULE for v in bench.sink.received)
    assert hits > 0


@pytest.mark.timeout(120)
def test_journal_overflow():
    """The change after ``FLOW_JOURNAL`` staged ones answers JOURNAL_FULL: nothing staged,
    ``entries`` and ``staged`` as they were, not counted as refused; after the commit it is
    accepted."""
    rng = seeded_rng(SEED + 3)
    dut = FlowTable(REGMAP)
    bench = Bench(dut, rng)
    records = [meta(rng, v6=rng.random() < 0.5) for _ in range(FLOW_JOURNAL + 1)]
    extra = records.pop()

    async def run(ctx):
        slots = []
        for r in records:
            status, slot = await bench.insert(ctx, key_of(r), action(rng))
            assert status == FlowStatus.OK
            slots.append(slot)
        before = await bench.access(ctx, REGMAP.addr("FLOW_STATUS"))
        assert before >> 16 & 0x3F == FLOW_JOURNAL and before & 0x7FF == FLOW_JOURNAL
        assert (await bench.insert(ctx, key_of(extra), action(rng)))[0] == \
            FlowStatus.JOURNAL_FULL
        assert await bench.delete(ctx, slots[0]) == FlowStatus.JOURNAL_FULL
        assert await bench.access(ctx, REGMAP.addr("FLOW_STATUS")) == before
        await bench.commit(ctx)
        await bench.frames(ctx, records + [extra])
        assert (await bench.insert(ctx, key_of(extra), action(rng)))[0] == FlowStatus.OK
        await bench.status(ctx)
        await bench.commit(ctx)
        await bench.frames(ctx, records + [extra])

    run_simulation(dut, run, cycle_limit=20_000)
    bench.check()
    assert bench.refused == 0
    rules = [unpack(PacketMeta, v)["rule"] for v in bench.sink.received]
    n = len(records) + 1
    assert rules[:n] == [FLOW_HIT_RULE] * (n - 1) + [rules[n - 1]]
    assert rules[n - 1] != FLOW_HIT_RULE and rules[n:] == [FLOW_HIT_RULE] * n


async def insert_racing_commit(ctx, bench, key, act, offset, copy_cycles=34):
    """A FLOW_OP insert whose register write starts in cycle 0, and a commit whose
    ``commit_apply`` rises in cycle ``offset`` and lasts ``copy_cycles`` (the rule copy of
    ``n_rules = 1``, the shortest). Returns whether the op was busy when the commit came
    and the FLOW_STATUS read right after the commit."""
    dut, csr = bench.dut, bench.dut.csr
    value = FlowTableModel.entry_value(key, act)
    for k in range(FLOW_ENTRY_WORDS):
        await bench.access(ctx, REGMAP.addr("FLOW_ENTRY", 0, k), value >> (32 * k) & 0xFFFF_FFFF)
    ctx.set(csr.addr, REGMAP.addr("FLOW_OP"))
    ctx.set(csr.w_data, FlowOp.INSERT)
    ctx.set(csr.w_stb, 1)
    acked, busy, cycle, end = False, None, 0, offset + copy_cycles
    while not acked or cycle <= end:
        if cycle == offset:
            ctx.set(dut.commit_apply, 1)
            busy = ctx.get(dut._op_busy)
        ctx.set(dut.commit_done, cycle == end)
        ack = ctx.get(csr.ack)
        await ctx.tick()
        if cycle == end:
            ctx.set(dut.commit_apply, 0)
            ctx.set(dut.commit_done, 0)
        cycle += 1
        if ack and not acked:
            acked = True
            ctx.set(csr.w_stb, 0)
        assert cycle < end + 50, "the FLOW_OP write was never answered"
    return bool(busy), await bench.access(ctx, REGMAP.addr("FLOW_STATUS"))


@pytest.mark.timeout(120)
def test_commit_racing_an_op():
    """A commit that comes before a FLOW_OP write is taken holds it until the commit ends
    (the change is staged for the next commit); one that comes while an op runs waits for
    it and applies it with a full journal, within the shortest rule copy. The table and
    FLOW_STATUS agree either way, and every frame sees the table before or after a batch."""
    rng = seeded_rng(SEED + 4)
    dut = FlowTable(REGMAP)
    bench = Bench(dut, rng)
    seen = {"held": 0, "busy": 0, "before": 0}

    async def run(ctx):
        for offset in range(10):
            batch = [meta(rng, v6=rng.random() < 0.5) for _ in range(FLOW_JOURNAL)]
            for r in batch[:-1]:
                assert (await bench.insert(ctx, key_of(r), action(rng)))[0] == FlowStatus.OK
            act = action(rng)
            busy, status = await insert_racing_commit(ctx, bench, key_of(batch[-1]), act,
                                                      offset)
            staged = status >> 16 & 0x3F
            assert staged in (0, 1), staged
            if staged == 0:             # the op was staged before the apply
                bench.model.insert(key_of(batch[-1]), act)
                bench.model.commit()
                seen["busy" if busy else "before"] += 1
            else:                       # held during the commit, staged after it
                assert not busy
                bench.model.commit()
                bench.model.insert(key_of(batch[-1]), act)
                seen["held"] += 1
            await bench.status(ctx)
            await bench.frames(ctx, batch)
            await bench.commit(ctx)
            await bench.frames(ctx, batch)
            for r in batch:             # leave the table as it was for the next offset
                slot = bench.model.lookup(key_of(r))[0]
                assert await bench.delete(ctx, slot) == FlowStatus.OK
            await bench.commit(ctx)

    run_simulation(dut, run, cycle_limit=100_000)
    bench.check()
    print("commit offsets:", seen)
    assert all(seen.values()), seen


def test_journal_that_cannot_be_applied_in_time(monkeypatch):
    """A journal longer than the shortest commit can apply is refused at construction,
    not by an assert that ``python -O`` removes."""
    FlowTable(RegisterMap(n_rules=1))
    monkeypatch.setattr(flow_table_module, "FLOW_JOURNAL", 40)
    with pytest.raises(ValueError, match=r"FLOW_JOURNAL = 40 .* n_rules = 1"):
        FlowTable(RegisterMap(n_rules=1))
    FlowTable(RegisterMap(n_rules=2))


def random_run(seed, *, inserts, batches, frames, gap, stall):
    rng = seeded_rng(seed)
    dut = FlowTable(REGMAP)
    bench = Bench(dut, rng, gap=gap, stall=stall)
    records = [meta(rng, v6=rng.random() < 0.5) for _ in range(inserts)]

    async def run(ctx):
        live = {}
        for _ in range(batches):
            for _ in range(rng.randrange(1, FLOW_JOURNAL + 1)):
                r = rng.choice(records)
                k = key_of(r)
                if k in live and rng.random() < 0.5:
                    await bench.delete(ctx, live.pop(k))
                elif k not in live:
                    status, slot = await bench.insert(ctx, k, action(rng))
                    if status == FlowStatus.OK:
                        live[k] = slot
            await bench.status(ctx)
            await bench.frames(ctx, [rng.choice(records) for _ in range(frames)])
            await bench.commit(ctx)
            await bench.frames(ctx, [rng.choice(records) for _ in range(frames)])

    run_simulation(dut, run, cycle_limit=200_000)
    bench.check()
    rules = [unpack(PacketMeta, v)["rule"] for v in bench.sink.received]
    assert 0 < rules.count(FLOW_HIT_RULE) < len(rules)


@pytest.mark.timeout(120)
def test_random_changes_and_traffic_with_backpressure():
    random_run(SEED + 1, inserts=40, batches=3, frames=30, gap=0.3, stall=0.3)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", range(4))
def test_random_sweep(seed):
    random_run(SEED + 100 + seed, inserts=300, batches=20, frames=100, gap=0.2, stall=0.2)


def test_latency_is_eight_cycles():
    rng = seeded_rng(SEED + 2)
    dut = FlowTable(REGMAP)

    async def run(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.as_value(), pack(PacketMeta, **meta(rng)))
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        cycles = 1
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            cycles += 1
        assert cycles == 8

    run_simulation(dut, run, cycle_limit=50)
