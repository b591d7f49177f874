# amaranth: UnusedElaboratable=no
# (test_bad_depth builds CounterMemories whose __init__ raises; they are never elaborated.)
"""CounterMemory and RxCounters in Amaranth's simulator against dict models, cycle by cycle.

Timing model (from the docstrings): an increment given in cycle ``t`` is visible to a
CounterMemory read issued in cycle ``t + 2`` or later (a read in cycle ``t + 1`` may or may
not see it), whose data is on ``rd_data`` from the next cycle on. RxCounters' flop counters
answer a bus read in the cycle of the request with every event before that cycle; its memory
counters answer one cycle after the request, with the same visibility as CounterMemory.
"""

import random

import pytest
from amaranth.lib import data

from hetnic.gateware.counters import CounterMemory, RxCounters
from hetnic.params import NicParams
from hetnic.protocol import FLOW_HIT_RULE, DropReason, MetaFlags, PacketMeta
from kit import pack, run_simulation

FLAGS = {name: 1 << f.offset for name, f in data.Layout.cast(MetaFlags)}

SEED = 0x5EED_C0DE
META = data.Layout.cast(PacketMeta)


# --- CounterMemory --------------------------------------------------------------------------

@pytest.mark.parametrize("depth, width, amount_width, same_addr", [
    (4, 12, 10, 0.6),       # narrow counters: they wrap many times
    (5, 32, 16, 0.3),
    (1, 8, 8, 1.0),         # one counter: every increment hits the same entry
    (16, 16, 1, 0.5),
])
def test_counter_memory_random(depth, width, amount_width, same_addr):
    seed = SEED + depth * 100 + width
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    dut = CounterMemory(depth, width, amount_width)
    mask = (1 << width) - 1
    cycles = 1500

    def amount():
        return rng.choice([0, 1, (1 << amount_width) - 1, rng.getrandbits(amount_width)])

    async def bench(ctx):
        model = [0] * depth
        snaps = [list(model)]       # snaps[t]: the counters after the increments of cycles < t
        last_read = None            # (cycle, addr) of the latest read
        previous_read = None        # last_read as it was a cycle ago
        addr = 0
        for cycle in range(cycles + 4):
            # Phases: bursts of increments every cycle, random traffic, a quiet tail.
            busy_phase = (cycle // 200) % 2 == 0
            inc = cycle < cycles and (busy_phase or rng.random() < 0.6)
            if rng.random() >= same_addr:
                addr = rng.randrange(depth)
            inc_amount = amount()
            ctx.set(dut.inc_stb, inc)
            ctx.set(dut.inc_addr, addr)
            ctx.set(dut.inc_amount, inc_amount)
            rd = rng.random() < 0.5
            rd_addr = addr if rng.random() < 0.5 else rng.randrange(depth)
            ctx.set(dut.rd_en, rd)
            ctx.set(dut.rd_addr, rd_addr)
            _, _, rd_data = await ctx.tick().sample(dut.rd_data)
            # rd_data is registered: after this tick it holds the latest read issued before
            # this cycle (a read takes two cycles).
            checked_read, previous_read = previous_read, last_read
            if checked_read is not None:
                # Increments up to cycle r - 3 are in (written two cycles after they are
                # given), none after.
                r, a = checked_read
                want = {snaps[max(r - 2, 0)][a]}
                assert rd_data in want, (f"cycle {cycle}: counter {a} read in cycle {r} gave "
                                         f"{rd_data}, want one of {want}")
            if rd:
                last_read = (cycle, rd_addr)
            if inc:
                model[addr] = (model[addr] + inc_amount) & mask
            snaps.append(list(model))
        # Quiet: every counter reads its model value.
        ctx.set(dut.inc_stb, 0)
        ctx.set(dut.rd_en, 1)
        for a in range(depth):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            await ctx.tick()
            assert ctx.get(dut.rd_data) == model[a], f"counter {a}"
        assert any(model), "the test incremented nothing"

    run_simulation(dut, bench, cycle_limit=cycles + 2 * depth + 20)


def test_counter_memory_hazards_directed():
    """Same entry on consecutive cycles, A-B-A, and A-_-A patterns, with fixed amounts."""
    dut = CounterMemory(3, 16, 8)
    pattern = [0, 0, 0, 1, 0, 1, 0, None, 0, None, None, 0, 2, 2, 1, 2, 1, 0, 0, 0]

    async def bench(ctx):
        model = [0] * 3
        for index, addr in enumerate(pattern * 3):
            amount = index % 7 + 1
            ctx.set(dut.inc_stb, addr is not None)
            ctx.set(dut.inc_addr, addr or 0)
            ctx.set(dut.inc_amount, amount)
            await ctx.tick()
            if addr is not None:
                model[addr] += amount
        ctx.set(dut.inc_stb, 0)
        await ctx.tick()
        await ctx.tick()                    # the last update is written
        ctx.set(dut.rd_en, 1)
        for a in range(3):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            await ctx.tick()                # rd_data is registered: two cycles
            assert ctx.get(dut.rd_data) == model[a], f"counter {a}: {model}"

    run_simulation(dut, bench, cycle_limit=3 * len(pattern) + 20)


@pytest.mark.parametrize("depth", [0, -1, 2.0, "4"])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="depth must be"):
        CounterMemory(depth)


# --- RxCounters -----------------------------------------------------------------------------

MEMORY_ARRAYS = ("QUEUE_PACKETS", "QUEUE_BYTES", "BUCKET_PACKETS")


class CounterModel:
    """Every RxCounters register as ``{address: value}``."""

    def __init__(self, rm):
        self.rm = rm
        self.values = {}
        self.memory = set()
        for reg in rm:
            if reg.access == "counter":
                for index in range(rm.count(reg)):
                    addr = rm.addr(reg.name, index)
                    self.values[addr] = 0
                    if reg.name in MEMORY_ARRAYS:
                        self.memory.add(addr)

    def add(self, name, index=0, amount=1):
        addr = self.rm.addr(name, index)
        self.values[addr] = (self.values[addr] + amount) & 0xFFFF_FFFF

    def frame_in(self, length):
        self.add("FRAMES_IN")
        self.add("BYTES_IN", amount=length)

    def meta_out(self, meta, bucket):
        p = self.rm.params
        if meta["drop"] == DropReason.NONE:
            self.add("FRAMES_DELIVERED")
            if meta["queue"] < p["queues"]:
                self.add("QUEUE_PACKETS", meta["queue"])
                self.add("QUEUE_BYTES", meta["queue"], meta["length"])
        else:
            self.add("FRAMES_DROPPED")
            if meta["drop"] < len(DropReason):
                self.add("DROP_COUNT", meta["drop"])
        if meta["rule"] <= p["n_rules"]:
            self.add("RULE_HITS", meta["rule"])
        if meta["rule"] == FLOW_HIT_RULE:
            self.add("FLOW_HITS")
        elif meta["flags"] & (FLAGS["ipv4"] | FLAGS["ipv6"]):
            self.add("FLOW_MISSES")
        self.add("BUCKET_PACKETS", bucket)


def random_meta(rng, rm, queue):
    p = rm.params
    meta = {name: rng.getrandbits(f.width) for name, f in META}
    meta["drop"] = rng.choice([0, 0, 0, rng.randrange(16), DropReason.RULE])
    meta["rule"] = rng.choice([rng.randrange(p["n_rules"] + 1), p["n_rules"], p["n_rules"] + 1,
                               255, FLOW_HIT_RULE, rng.randrange(p["n_rules"] + 1)])
    meta["queue"] = queue
    meta["length"] = rng.choice([64, 1522, 0xFFFF, rng.getrandbits(16)])
    return meta


@pytest.mark.parametrize("n_rules, reta_size, queues", [(3, 16, 4), (2, 32, 5)])
def test_rx_counters_random(n_rules, reta_size, queues):
    seed = SEED + 7 * n_rules + reta_size
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    rm = NicParams(data_width=64, n_rules=n_rules, reta_size=reta_size, queues=queues).regmap()
    dut = RxCounters(rm)
    model = CounterModel(rm)
    addresses = sorted(model.values)
    cycles = 2500

    async def bench(ctx):
        snaps = [dict(model.values)]    # snaps[t]: the counters after the events of cycles < t
        request = None                  # (kind, addr, start cycle)
        queue = bucket = 0
        reads = {"flop": 0, "memory": 0}
        for cycle in range(cycles + 20):
            quiet = cycle >= cycles
            # Bursts: a record every cycle to one queue and bucket, then random traffic.
            burst = (cycle // 150) % 2 == 0
            if not burst or rng.random() < 0.1:
                queue = rng.choice([rng.randrange(queues), queues, 255, rng.randrange(queues)])
                bucket = rng.randrange(reta_size)
            meta_stb = not quiet and (burst or rng.random() < 0.5)
            meta = random_meta(rng, rm, queue)
            frame_stb = not quiet and rng.random() < 0.6
            frame_len = rng.getrandbits(16)
            refused_stb = not quiet and rng.random() < 0.1
            ctx.set(dut.flow_refused_stb, refused_stb)
            ctx.set(dut.meta_stb, meta_stb)
            ctx.set(dut.meta.as_value(), pack(PacketMeta, **meta))
            ctx.set(dut.bucket, bucket)
            ctx.set(dut.frame_in_stb, frame_stb)
            ctx.set(dut.frame_in_len, frame_len)

            if request is None and rng.random() < 0.6:
                kind = "w" if rng.random() < 0.1 else "r"
                request = (kind, rng.choice(addresses), cycle)
            if request:
                kind, addr, start = request
                ctx.set(dut.csr.addr, addr)
                ctx.set(dut.csr.r_stb, kind == "r")
                ctx.set(dut.csr.w_stb, kind == "w")
                ctx.set(dut.csr.w_data, rng.getrandbits(32))
            else:
                ctx.set(dut.csr.addr, rng.getrandbits(16))
                ctx.set(dut.csr.r_stb, 0)
                ctx.set(dut.csr.w_stb, 0)
            _, _, ack, r_data = await ctx.tick().sample(dut.csr.ack, dut.csr.r_data)

            if request is None:
                assert not ack, f"cycle {cycle}: ack without a request"
            elif ack:
                kind, addr, start = request
                latency = cycle - start
                assert latency == 3, f"{kind} {addr:#06x}: answered after {latency} cycles"
                if kind == "w":
                    pass
                elif addr in model.memory:
                    # Events up to cycle start - 4 are in, none after (an event is
                    # registered, then the memory writes it two cycles later).
                    want = {snaps[max(start - 3, 0)][addr]}
                    assert r_data in want, (f"cycle {cycle}: counter {addr:#06x} = {r_data}, "
                                            f"want one of {want}")
                    reads["memory"] += 1
                else:
                    # Events are registered before they count, and the multiplexer reads
                    # a cycle after the request: the events before the request's cycle.
                    want = snaps[start][addr]
                    assert r_data == want, (f"cycle {cycle}: counter {addr:#06x} = {r_data}, "
                                            f"want {want}")
                    reads["flop"] += 1
                request = None
            else:
                assert cycle - request[2] < 4, f"cycle {cycle}: no ack for {request}"

            if meta_stb:
                model.meta_out(meta, bucket)
            if frame_stb:
                model.frame_in(frame_len)
            if refused_stb:
                model.add("FLOW_REFUSED")
            snaps.append(dict(model.values))
        assert reads["flop"] > 100 and reads["memory"] > 100, reads
        # Let a request still in progress finish before the quiet reads start.
        ctx.set(dut.csr.r_stb, 0)
        ctx.set(dut.csr.w_stb, 0)
        for _ in range(3):
            await ctx.tick()

        # Quiet: every counter reads its model value (writes were ignored).
        for addr in addresses:
            ctx.set(dut.csr.addr, addr)
            ctx.set(dut.csr.r_stb, 1)
            for _ in range(4):
                _, _, ack, r_data = await ctx.tick().sample(dut.csr.ack, dut.csr.r_data)
                if ack:
                    break
            assert ack and r_data == model.values[addr], \
                f"counter {addr:#06x} = {r_data}, want {model.values[addr]}"
            ctx.set(dut.csr.r_stb, 0)
        for name in ("QUEUE_PACKETS", "QUEUE_BYTES", "DROP_COUNT", "RULE_HITS"):
            assert any(model.values[rm.addr(name, i)] for i in range(rm.count(name))), name

    run_simulation(dut, bench, cycle_limit=cycles + 20 + 3 + 4 * len(addresses) + 10)
