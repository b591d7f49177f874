# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds components whose __init__ raises; they are never elaborated.)
"""EventQueues (and EventArbiter) in Amaranth's simulator against Python models.

The bench steps one clock at a time: posters offer events with random gaps, a model of the
DMA engine's write-client side (:class:`DmaWriteModel`) takes requests and data beats with
random backpressure, writes a dict memory and answers ``wr_done`` after a random latency
(optionally with an error), and the host (:class:`HostRing`) polls the rings by phase bit,
as the driver does, and writes ``EQ_CONS`` over ``csr``. Every DMA write is checked when it
lands: inside an enabled ring, at the producer's slot, never over an unconsumed entry, with
the phase of its pass. Every event the host reads is compared byte for byte with the record
expected for the post it came from (posts are told apart by a unique ``info``).

Timing model (from the docstring): ``irq[q]`` is high for one cycle, 2 cycles after the
``wr_done`` handshake of the event that reaches ``COALESCE_COUNT``, or ``T + 1`` cycles after
the handshake of the first pending event when ``COALESCE_TIME = T`` elapses first.
"""

import random
from collections import deque

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from hetnic.gateware.dma import DmaWriteBeat, DmaWriteDone, DmaWriteRequest
from hetnic.gateware.event_queues import EventArbiter, EventPost, EventQueues
from hetnic.protocol import Event, EventType
from hetnic.regs import (EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, QUEUE_STATUS_BAD_ADDR,
                         QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA)
from kit import (StreamSink, StreamSource, pack, pack_image, run_simulation, seeded_rng, unpack,
                 unpack_image)

SEED = 0xE7E0_5EED
TS0 = (1 << 48) - 1500          # the timestamp wraps during the longer tests
EVENT_BYTES = 16
ENABLE, IRQ_ENABLE = QUEUE_CTRL_ENABLE.mask, EQ_CTRL_IRQ_ENABLE.mask      # EQ_CTRL bits
BAD_SIZE, BAD_ADDR, DMA_ERROR = (QUEUE_STATUS_BAD_SIZE.mask, QUEUE_STATUS_BAD_ADDR.mask,
                                 QUEUE_STATUS_DMA.mask)                    # EQ_STATUS bits


def event_image(post, phase):
    return pack_image(Event, type=post["type"], source=post["source"], info=post["info"],
                      timestamp=post["timestamp"], phase=phase)


class DmaWriteModel:
    """The DMA engine's side of a write client over a sparse byte memory: random ready on
    ``wr_req``/``wr_data`` (kit sinks, which check the hold rule), a done ``latency`` cycles
    after a request's last beat, offered with chance ``valid`` per cycle (a kit source). A
    write to an address in ``fail`` fails once (done with ``error``, nothing written)."""

    def __init__(self, bench, *, ready=1.0, valid=1.0, latency=(1, 1), fail=()):
        self.b, self.latency = bench, latency
        self.fail, self.memory = set(fail), {}
        self.reqs, self.beats, self.dones = deque(), deque(), deque()
        dut, rng = bench.dut, bench.rng
        self.wr_req = StreamSink(dut.wr_req, rng=rng, stall=1.0 - ready, name="wr_req")
        self.wr_data = StreamSink(dut.wr_data, rng=rng, stall=1.0 - ready, name="wr_data")
        self.wr_done = StreamSource(dut.wr_done, rng=rng, gap=1.0 - valid, name="wr_done")
        self.lanes = bench.width // 8

    def read(self, addr, n):
        return bytes(self.memory.get(addr + k, 0) for k in range(n))

    def drive(self, ctx, dut):
        self.wr_req.drive(ctx)
        self.wr_data.drive(ctx)
        if self.wr_done.done and self.dones and self.dones[0][0] <= self.b.cycle:
            _, tag, error = self.dones.popleft()
            self.wr_done.send(pack(DmaWriteDone, tag=tag, error=error))
        self.wr_done.drive(ctx)

    def sample(self, ctx, dut):
        get, cycle = ctx.get, self.b.cycle
        for sink, queue in ((self.wr_req, self.reqs), (self.wr_data, self.beats)):
            taken = sink.update(*(get(signal) for signal in sink.sampled))
            if taken is not None:
                queue.append(taken)
        beats = -(-EVENT_BYTES // self.lanes)
        while self.reqs and len(self.beats) >= beats:
            req = unpack(DmaWriteRequest, self.reqs.popleft())
            assert req["length"] == EVENT_BYTES and req["addr"] % EVENT_BYTES == 0, req
            image = b""
            for k in range(beats):
                beat = unpack(DmaWriteBeat(self.b.width), self.beats.popleft())
                assert beat["last"] == (k == beats - 1), f"cycle {cycle}: last on beat {k}"
                image += beat["data"].to_bytes(self.lanes, "little")
            error = req["addr"] in self.fail
            self.fail.discard(req["addr"])
            self.b.check_write(req["addr"], req["tag"], image, error)
            if not error:
                self.memory.update((req["addr"] + k, v) for k, v in enumerate(image))
            self.dones.append((cycle + self.b.rng.randint(*self.latency), req["tag"], error))
        done = self.wr_done.update(get(dut.wr_done.ready))
        if done is not None:
            done = unpack(DmaWriteDone, done)
            if not done["error"]:
                self.b.done_cycles.setdefault(done["tag"], []).append(cycle)

    def idle(self):
        return not (self.reqs or self.beats or self.dones) and self.wr_done.done


class HostRing:
    """The host's view of one event ring (indices are unbounded integers)."""

    def __init__(self, base, size, cons, matched):
        self.base, self.size, self.cons = base, size, cons
        self.written = cons         # entries the NIC has written, as the bench saw them land
        self.cons_reg = cons        # the last value written to EQ_CONS
        self.matched = matched      # posts of this queue (Bench.accepted) up to the last read
        self.enabled = True


class Bench:
    """EventQueues (behind an EventArbiter when ``n_posters > 1``) and its models, stepped
    one clock at a time by :meth:`step`, which the helpers below all use."""

    def __init__(self, seed, n_queues, width, *, n_posters=1, gap=0.3, limit=20_000, **dma):
        print(f"seed={seed:#x} n_queues={n_queues} width={width} n_posters={n_posters}")
        self.rng = random.Random(seed)
        self.width, self.limit = width, limit
        self.top = self.dut = EventQueues(n_queues, width)
        ports = [self.dut.post]
        if n_posters > 1:           # several posters merged by an EventArbiter
            self.top, arbiter = Module(), EventArbiter(n_posters)
            self.top.submodules.queues, self.top.submodules.arbiter = self.dut, arbiter
            wiring.connect(self.top, arbiter.post, self.dut.post)
            ports = list(arbiter.posts)
        self.regmap = self.dut.regmap
        self.dma = DmaWriteModel(self, **dma)
        # One source per post port, each offering its events with random gaps.
        self.posters = [StreamSource(port, rng=self.rng, gap=gap, name=f"post{k}")
                        for k, port in enumerate(ports)]
        self.rings = {}
        self.accepted = {}          # queue -> posts (with timestamp) as EventQueues took them
        self.done_cycles, self.irq_cycles = {}, {}
        self.cycle, self.serial, self.quiet, self.csr_ack, self.csr_data = 0, 0, False, 0, 0

    async def step(self, ctx):
        assert self.cycle < self.limit, f"not finished after {self.limit} cycles"
        dut, get = self.dut, ctx.get
        stamp = (TS0 + self.cycle) % (1 << 48)
        ctx.set(dut.timestamp, stamp)
        self.dma.drive(ctx, dut)
        for p in self.posters:
            p.drive(ctx)
        self.dma.sample(ctx, dut)
        for p in self.posters:
            p.update(get(p.stream.ready))
        if get(dut.post.valid) and get(dut.post.ready):
            post = unpack(EventPost, get(dut.post.payload.as_value()))
            self.accepted.setdefault(post["event_queue"], []).append({**post, "timestamp": stamp})
        for q in range(dut.n_queues):
            if get(dut.irq[q]):
                self.irq_cycles.setdefault(q, []).append(self.cycle)
        self.csr_ack, self.csr_data = get(dut.csr.ack), get(dut.csr.r_data)
        self.quiet = (all(p.done for p in self.posters) and self.dma.idle()
                      and not get(dut.post.valid) and get(dut.post.ready))
        await ctx.tick()
        self.cycle += 1

    async def wait(self, ctx, cycles):
        for _ in range(cycles):
            await self.step(ctx)

    async def settle(self, ctx):
        """Until every post has been dropped or written and its done taken."""
        await self.step(ctx)
        while not self.quiet:
            await self.step(ctx)

    async def access(self, ctx, addr, value=None):
        csr = self.dut.csr
        ctx.set(csr.addr, addr)
        ctx.set(csr.w_data, value or 0)
        ctx.set(csr.w_stb, value is not None)
        ctx.set(csr.r_stb, value is None)
        await self.step(ctx)
        while not self.csr_ack:
            await self.step(ctx)
        ctx.set(csr.w_stb, 0)
        ctx.set(csr.r_stb, 0)
        return self.csr_data

    async def read(self, ctx, name, q):
        return await self.access(ctx, self.regmap.addr(f"EQ_{name}", q))

    async def write(self, ctx, name, q, value):
        await self.access(ctx, self.regmap.addr(f"EQ_{name}", q), value)
        if name == "CONS" and q in self.rings:
            self.rings[q].cons_reg = value
        if name == "CTRL" and q in self.rings:
            self.rings[q].enabled = bool(value & ENABLE)

    def prefill(self, base, size, cons):
        """Fill a ring as the passes before ``cons`` left it: garbage, each slot with the
        phase of the last entry written there (so none of it looks new to the host)."""
        for slot in range(size):
            last = cons - 1 - (cons - 1 - slot) % size
            image = bytearray(self.rng.randbytes(EVENT_BYTES))
            image[-1] = image[-1] & 0x7F | ((last // size & 1) ^ 1) << 7
            self.dma.memory.update((base + slot * EVENT_BYTES + k, v)
                                   for k, v in enumerate(image))

    async def setup(self, ctx, q, base, size, *, cons=0, count=0, time=0, irq=True):
        """The driver's sequence: disable, program, enable; returns the enable cycle."""
        self.rings.pop(q, None)
        if cons >= size:
            self.prefill(base, size, cons)
        await self.write(ctx, "CTRL", q, 0)
        for name, value in (("BASE_LO", base & 0xFFFF_FFFF), ("BASE_HI", base >> 32),
                            ("SIZE", size), ("CONS", cons & 0xFFFF),
                            ("COALESCE_COUNT", count), ("COALESCE_TIME", time)):
            await self.write(ctx, name, q, value)
        await self.write(ctx, "CTRL", q, ENABLE | IRQ_ENABLE * irq)
        enabled_at = self.cycle
        assert await self.read(ctx, "STATUS", q) == 0
        assert await self.read(ctx, "PROD", q) == cons & 0xFFFF
        self.rings[q] = HostRing(base, size, cons, len(self.accepted.get(q, [])))
        return enabled_at

    def post(self, q, *, poster=0):
        """Queue an event with a unique ``info``; returns it."""
        self.serial += 1
        event = {"event_queue": q, "type": self.rng.choice(list(EventType)),
                 "source": self.rng.randrange(1 << 16),
                 "info": self.serial * 0x9E3779B1 % (1 << 32)}
        self.posters[poster].send(pack(EventPost, **event))
        return event

    def check_write(self, addr, tag, image, error):
        """A DMA write as it lands: in an enabled ring, at its producer slot, not over an
        unconsumed entry, with the phase of its pass."""
        hits = [(q, r) for q, r in self.rings.items()
                if r.base <= addr < r.base + r.size * EVENT_BYTES]
        assert len(hits) == 1, f"cycle {self.cycle}: write at {addr:#x} in no ring"
        q, r = hits[0]
        assert r.enabled and tag == q, f"write to queue {q} (tag {tag})"
        assert addr == r.base + (r.written % r.size) * EVENT_BYTES, \
            f"queue {q}: write at slot {(addr - r.base) // 16}, producer {r.written}"
        assert (r.written - r.cons_reg) % (1 << 16) < r.size, \
            f"queue {q}: entry {r.written} overwrites unconsumed (CONS {r.cons_reg})"
        assert len(image) == EVENT_BYTES and image[-1] >> 7 == (r.written // r.size & 1) ^ 1
        r.written += not error

    async def consume(self, ctx, q, *, max_events=None, update=True):
        """Read the ready events of queue ``q`` by phase and check each byte for byte against
        the next posts of the queue (skipping ones that overflowed); then write EQ_CONS."""
        r, posts, got = self.rings[q], self.accepted.get(q, []), []
        while max_events is None or len(got) < max_events:
            image = self.dma.read(r.base + (r.cons % r.size) * EVENT_BYTES, EVENT_BYTES)
            phase = (r.cons // r.size & 1) ^ 1
            if image[-1] >> 7 != phase:
                break
            fields = unpack_image(Event, image)
            index = next((i for i in range(r.matched, len(posts))
                          if posts[i]["info"] == fields["info"]), None)
            assert index is not None, f"queue {q} entry {r.cons}: unexpected {fields}"
            assert image == event_image(posts[index], phase), \
                f"queue {q} entry {r.cons}: {fields} for {posts[index]}"
            r.matched, r.cons = index + 1, r.cons + 1
            got.append(posts[index])
        if update and got:
            await self.write(ctx, "CONS", q, r.cons & 0xFFFF)
        return got

    def run(self, testbench):
        run_simulation(self.top, testbench, cycle_limit=self.limit)
        print(f"{self.cycle} cycles")


def model_irqs(done, count, time, start, end):
    """The irq pulse cycles the contract gives for one queue whose events' dones were taken
    in cycles ``done``, with the interrupt enabled from cycle ``start`` to ``end``."""
    done, pulses, pending, elapsed = set(done), [], 0, 0
    for cycle in range(start, end):
        fire = pending and (pending >= max(count, 1) or (time and elapsed >= time))
        if fire:
            pulses.append(cycle + 1)
        kept, added = (0 if fire else pending), cycle in done
        pending, elapsed = kept + added, (added if kept == 0 else elapsed + 1)
    return [c for c in pulses if c < end]


RING_BASE = 0x7_0000_1000


def ring_base(q):
    return RING_BASE + q * 0x10_0000


# --- rings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [64, 8])
def test_wraps_byte_exact(width):
    """Two queues, several wraps each; the host consumes in batches and never lets the
    ring fill. Queue 1 starts at CONS = 2 * size + 3 (PROD follows it at enable)."""
    seed = SEED + width
    b = Bench(seed, 2, width, ready=0.6, valid=0.7, latency=(1, 6))

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 4)
        await b.setup(ctx, 1, ring_base(1), 8, cons=19)
        total = {0: 0, 1: 0}
        while min(total.values()) < 16:
            for q, r in b.rings.items():
                n = b.rng.randint(1, r.size - (r.written - r.cons))
                for _ in range(n):
                    b.post(q)
                total[q] += n
            await b.settle(ctx)
            for q in b.rings:
                assert len(await b.consume(ctx, q)) > 0
        for q, r in b.rings.items():
            assert await b.read(ctx, "PROD", q) == r.written & 0xFFFF == r.cons & 0xFFFF
            assert await b.read(ctx, "OVERFLOWS", q) == 0
            assert r.matched == len(b.accepted[q]) == total[q]
        assert ctx.get(b.dut.dropped) == 0

    b.run(bench)


def test_full_ring_overflows():
    """Nothing consumed: 4 of 10 events fill a 4-entry ring, 6 overflow and no entry is
    overwritten; after 2 are consumed, 2 more fit (second pass, phase 0) and 1 overflows."""
    b = Bench(SEED + 2, 1, 64, ready=0.8, latency=(1, 3))

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 4)
        posts = [b.post(0) for _ in range(10)]
        await b.settle(ctx)
        first = b.dma.read(ring_base(0), 4 * EVENT_BYTES)
        assert await b.read(ctx, "OVERFLOWS", 0) == 6
        assert await b.read(ctx, "PROD", 0) == 4
        assert [a["info"] for a in b.accepted[0]] == [p["info"] for p in posts]
        assert first == b"".join(event_image(a, 1) for a in b.accepted[0][:4])
        assert await b.consume(ctx, 0, max_events=2) == b.accepted[0][:2]
        more = [b.post(0) for _ in range(3)]
        await b.settle(ctx)
        assert await b.read(ctx, "OVERFLOWS", 0) == 7
        assert await b.read(ctx, "PROD", 0) == 6
        got = await b.consume(ctx, 0)
        assert [e["info"] for e in got] == [p["info"] for p in posts[2:4] + more[:2]]
        assert ctx.get(b.dut.dropped) == 0

    b.run(bench)


def test_disabled_and_missing_queues_drop():
    """Events for a disabled queue or a queue number >= n_queues are dropped and counted; a
    CTRL write to the queue whose event is in flight waits for its done."""
    b = Bench(SEED + 3, 2, 64, latency=(25, 25))

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 8)
        for q in (1, 2, 63, 0, 1):
            b.post(q)
        await b.settle(ctx)
        assert ctx.get(b.dut.dropped) == 4
        assert [e["event_queue"] for e in await b.consume(ctx, 0)] == [0]
        # Disable queue 0 while its event waits for the done: the write is held.
        b.post(0)
        while not b.dma.reqs and not b.dma.dones:
            await b.step(ctx)
        await b.write(ctx, "CTRL", 0, 0)
        assert b.done_cycles[0][-1] < b.cycle - 1
        assert await b.read(ctx, "PROD", 0) == 2 and await b.read(ctx, "CTRL", 0) == 0
        b.post(0)
        await b.settle(ctx)
        assert ctx.get(b.dut.dropped) == 5 and len(b.done_cycles[0]) == 2
        assert [e["event_queue"] for e in await b.consume(ctx, 0, update=False)] == [0]

    b.run(bench)


def test_bad_setup_sets_status():
    """Bad sizes set STATUS bit 0, a misaligned or overflowing ring bit 2; such a queue stays
    disabled and drops its events. Disabling clears STATUS; BASE and SIZE are locked while
    the queue is enabled."""
    b = Bench(SEED + 4, 1, 32)
    top = 1 << 64

    async def bench(ctx):
        cases = [(RING_BASE, size, BAD_SIZE) for size in (0, 1, 3, 6, 65536, 1 << 31)]
        cases += [(RING_BASE + 8, 4, BAD_ADDR), (top - 3 * 16, 4, BAD_ADDR),
                  (RING_BASE + 8, 5, BAD_SIZE | BAD_ADDR),
                  (top - 4 * 16, 4, 0), (RING_BASE, 2, 0), (RING_BASE, 32768, 0)]
        for base, size, status in cases:
            await b.write(ctx, "CTRL", 0, 0)
            for name, value in (("BASE_LO", base & 0xFFFF_FFFF), ("BASE_HI", base >> 32),
                                ("SIZE", size)):
                await b.write(ctx, name, 0, value)
            await b.write(ctx, "CTRL", 0, ENABLE | IRQ_ENABLE)
            assert await b.read(ctx, "STATUS", 0) == status, (base, size)
            assert await b.read(ctx, "CTRL", 0) == IRQ_ENABLE | ENABLE * (status == 0)
            if status:
                b.post(0)
                await b.settle(ctx)
        assert ctx.get(b.dut.dropped) == sum(status != 0 for _, _, status in cases)
        # Enabled: the ring registers keep their values.
        for name in ("BASE_LO", "BASE_HI", "SIZE"):
            await b.write(ctx, name, 0, 0x40)
        assert [await b.read(ctx, n, 0) for n in ("BASE_LO", "BASE_HI", "SIZE")] == [
            RING_BASE & 0xFFFF_FFFF, RING_BASE >> 32, 32768]
        await b.write(ctx, "CTRL", 0, 0)
        await b.write(ctx, "SIZE", 0, 7)
        await b.write(ctx, "CTRL", 0, ENABLE)
        assert await b.read(ctx, "STATUS", 0) == BAD_SIZE
        await b.write(ctx, "CTRL", 0, 0)
        assert await b.read(ctx, "STATUS", 0) == 0 and await b.read(ctx, "SIZE", 0) == 7

    b.run(bench)


def test_dma_error_stops_queue():
    """A failed write sets STATUS bit 3: PROD stays, the event and the queue's later ones are
    dropped; the other queue goes on; disable + enable recovers at PROD = CONS."""
    b = Bench(SEED + 5, 2, 64, ready=0.7, latency=(1, 4), fail={ring_base(0) + 16})

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 4)
        await b.setup(ctx, 1, ring_base(1), 4)
        for q in (0, 1, 0, 1, 0):
            b.post(q)
        await b.settle(ctx)
        assert await b.read(ctx, "STATUS", 0) == DMA_ERROR
        assert await b.read(ctx, "PROD", 0) == 1 and await b.read(ctx, "PROD", 1) == 2
        assert ctx.get(b.dut.dropped) == 2
        assert len(await b.consume(ctx, 0)) == 1 and len(await b.consume(ctx, 1)) == 2
        await b.setup(ctx, 0, ring_base(0), 4, cons=1)
        b.post(0)
        await b.settle(ctx)
        assert [e["info"] for e in await b.consume(ctx, 0)] == [b.accepted[0][-1]["info"]]

    b.run(bench)


# --- interrupts -----------------------------------------------------------------------------

def pulses(b, q):
    cycles = b.irq_cycles.get(q, [])
    assert all(y - x > 1 for x, y in zip(cycles, cycles[1:])), f"irq {q} not a pulse"
    return cycles


@pytest.mark.parametrize("width, count", [(64, 0), (64, 1), (64, 3), (8, 4)])
def test_coalesce_count(width, count):
    """An interrupt exactly every max(count, 1) events, 2 cycles after that event's done."""
    b = Bench(SEED + 10 + count, 1, width, ready=0.7, latency=(1, 5))
    every = max(count, 1)

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 16, count=count)
        for _ in range(3):
            for _ in range(b.rng.randint(1, 6)):
                b.post(0)
            await b.settle(ctx)
            await b.wait(ctx, 3)
            await b.consume(ctx, 0)
        done = b.done_cycles[0]
        assert pulses(b, 0) == [c + 2 for c in done[every - 1::every]]

    b.run(bench)


def test_coalesce_time():
    """COALESCE_TIME = T alone: one pulse T + 1 cycles after the first pending event's done,
    for a lone event and for a burst; an event whose done comes in the very cycle the timer
    fires starts the next period (fixed DMA latency makes that cycle predictable)."""
    b = Bench(SEED + 20, 1, 64, gap=0.0, latency=(3, 3))
    t = 60

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 16, count=1000, time=t)
        b.post(0)
        await b.settle(ctx)
        await b.wait(ctx, t + 10)
        d = b.done_cycles[0]
        assert pulses(b, 0) == [d[0] + t + 1]
        post_to_done = d[0] - (b.accepted[0][0]["timestamp"] - TS0) % (1 << 48)
        for _ in range(4):
            b.post(0)
        await b.settle(ctx)
        await b.wait(ctx, 2 * t)
        assert d[4] < d[1] + t and pulses(b, 0) == [d[0] + t + 1, d[1] + t + 1]
        b.post(0)
        await b.settle(ctx)
        await b.wait(ctx, d[5] + t - post_to_done - b.cycle)
        b.post(0)
        await b.settle(ctx)
        await b.wait(ctx, 2 * t)
        assert d[6] == d[5] + t
        assert pulses(b, 0)[2:] == [d[5] + t + 1, d[6] + t + 1]

    b.run(bench)


def test_coalesce_count_and_time():
    """COALESCE_COUNT = 4 and COALESCE_TIME = 80: bursts of 4 interrupt by count, a
    leftover event by time."""
    b = Bench(SEED + 21, 1, 64, gap=0.0, latency=(1, 2))
    t = 80

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 16, count=4, time=t)
        for n in (4, 2, 5):
            for _ in range(n):
                b.post(0)
            await b.settle(ctx)
            await b.wait(ctx, t + 5)
            await b.consume(ctx, 0)
        d = b.done_cycles[0]
        assert d[3] - d[0] < t and d[9] - d[6] < t
        assert pulses(b, 0) == [d[3] + 2, d[4] + t + 1, d[9] + 2, d[10] + t + 1]

    b.run(bench)


def test_interrupt_disabled():
    """CTRL bit 1 clear: no pulses at all; setting it with events pending interrupts at once
    (2 cycles after the write); disabling the queue forgets pending events."""
    b = Bench(SEED + 22, 2, 64, ready=0.8, latency=(1, 3))

    async def bench(ctx):
        await b.setup(ctx, 0, ring_base(0), 8, count=1, irq=False)
        await b.setup(ctx, 1, ring_base(1), 8, count=2, time=30, irq=False)
        for q in (0, 1, 0, 1, 1, 0):
            b.post(q)
        await b.settle(ctx)
        await b.wait(ctx, 50)
        assert not b.irq_cycles
        await b.write(ctx, "CTRL", 0, ENABLE | IRQ_ENABLE)
        at = b.cycle - 1
        await b.wait(ctx, 5)
        assert pulses(b, 0) == [at + 2] and 1 not in b.irq_cycles
        await b.write(ctx, "CTRL", 1, 0)
        await b.write(ctx, "CTRL", 1, ENABLE | IRQ_ENABLE)
        await b.wait(ctx, 50)
        assert 1 not in b.irq_cycles

    b.run(bench)


# --- several queues and posters -------------------------------------------------------------

@pytest.mark.parametrize("width", [64, 8])
def test_random_queues_and_posters(width):
    """Three posters (merged by an EventArbiter) post to three queues, a disabled one and
    missing ones; the host consumes at random moments. Per queue the host sees the posts in
    order, minus exactly the ones EQ_OVERFLOWS counts, and each poster's order survives the
    arbiter. The interrupts of random coalescing settings match :func:`model_irqs`."""
    seed = SEED + 30 + width
    b = Bench(seed, 5, width, n_posters=3, gap=0.4, ready=0.7, valid=0.8, latency=(1, 8),
              limit=40_000)
    rings = {0: 4, 1: 8, 2: 2}
    coalesce = {q: (b.rng.randint(0, 5), b.rng.choice([0, 25, 120])) for q in rings}

    async def bench(ctx):
        starts = {q: await b.setup(ctx, q, ring_base(q), size, count=coalesce[q][0],
                                   time=coalesce[q][1]) for q, size in rings.items()}
        await b.setup(ctx, 3, ring_base(3), 16)
        await b.write(ctx, "CTRL", 3, 0)
        posted = {}                 # (poster, queue) -> infos in posting order
        for _ in range(500 if width == 64 else 300):
            q, p = b.rng.choice([0, 0, 1, 1, 2, 3, 4, 40]), b.rng.randrange(3)
            posted.setdefault((p, q), []).append(b.post(q, poster=p)["info"])
        while not all(p.done for p in b.posters):
            if b.rng.random() < 0.05:
                await b.consume(ctx, b.rng.choice(list(rings)))
            else:
                await b.step(ctx)
        await b.settle(ctx)
        await b.wait(ctx, 50)
        end, overflows_seen = b.cycle, 0
        for q, r in ((q, b.rings[q]) for q in rings):
            await b.consume(ctx, q)
            overflows = await b.read(ctx, "OVERFLOWS", q)
            print(f"queue {q}: {len(b.accepted[q])} posted, {overflows} overflows, "
                  f"coalescing {coalesce[q]}, {len(b.irq_cycles.get(q, []))} interrupts")
            assert r.cons == r.written > 2 * r.size
            assert overflows == len(b.accepted[q]) - r.written      # all others were seen
            overflows_seen += overflows
            assert await b.read(ctx, "PROD", q) == r.written & 0xFFFF
            for p in range(3):
                mine = posted.get((p, q), [])
                assert [e["info"] for e in b.accepted[q] if e["info"] in mine] == mine
            assert [c for c in b.irq_cycles.get(q, []) if c < end] == model_irqs(
                b.done_cycles[q], *coalesce[q], starts[q], end)
        assert ctx.get(b.dut.dropped) == sum(len(infos) for (p, q), infos in posted.items()
                                             if q in (3, 4, 40))
        assert overflows_seen > 0

    b.run(bench)


def test_arbiter_round_robin():
    """Always-valid inputs and a ready sink: one post per cycle, inputs in turn; with random
    gaps and stalls every post comes out once, in order per input."""
    rng = seeded_rng(SEED + 40)
    dut = EventArbiter(3)
    sources = [StreamSource(port, rng=rng, name=f"posts[{i}]") for i, port in enumerate(dut.posts)]
    for i, source in enumerate(sources):
        source.extend(pack(EventPost, event_queue=i, type=1, source=k, info=i << 16 | k)
                      for k in range(40))
    sink = StreamSink(dut.post, rng=rng, name="post")
    out = []

    async def bench(ctx):
        cycle = 0
        while len(out) < 120:
            saturate = cycle < 60
            for source in sources:
                source.gap = 0.0 if saturate else 0.5
                source.drive(ctx)
            sink.stall = 0.0 if saturate else 0.4
            sink.drive(ctx)
            for source in sources:
                source.update(ctx.get(source.stream.ready))
            taken = sink.update(*(ctx.get(signal) for signal in sink.sampled))
            if taken is not None:
                out.append((cycle, unpack(EventPost, taken)))
            await ctx.tick()
            cycle += 1

    run_simulation(dut, bench, cycle_limit=2_000)
    first = [e["event_queue"] for c, e in out if c < 60]
    assert len(first) >= 58 and first == [(first[0] + k) % 3 for k in range(len(first))]
    for i in range(3):
        assert [e["source"] for _, e in out if e["event_queue"] == i] == list(range(40))


def test_bad_parameters():
    for args, match in [((0, 64), "not 0"), ((65, 64), "not 65"), ((2.0, 64), "not 2.0"),
                        ((2, 256), "not 256"), ((2, 12), "not 12"), ((2, 64.0), "not 64.0")]:
        with pytest.raises(ValueError, match=match):
            EventQueues(*args)
    with pytest.raises(ValueError, match="not 0"):
        EventArbiter(0)
