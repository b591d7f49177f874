# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds RxQueueManagers whose __init__ raises; they are never elaborated.)
"""RxQueueManager in Amaranth's simulator, against the unmodified host ring code.

A Python DMA-client model answers the manager's descriptor reads (random latency, optional
injected errors) and takes its writes (random backpressure, dones in order); it refuses
requests the real engine would refuse and checks that every write lies inside a completion
ring or one posted buffer. Host memory is a :class:`~hetnic.host.memory.BytearrayMemory`
filled with a guard pattern; every ring and buffer gets its memory from an allocator that
leaves guard bytes around it, and each test ends by checking that no byte outside the rings
and buffers changed. :class:`~hetnic.host.rx_ring.RxRing` posts the buffers and reaps the
completions, so the host code must agree with the gateware. Records and frame beats are fed
on independent streams (a record may come before or after its frame's beats). Every valid
output of the manager must hold its payload until taken.
"""

import random
from collections import deque

import pytest
from amaranth.lib import data

from kit import StreamSink, StreamSource, pack, pack_image, run_simulation, seeded_rng, unpack

from hetnic.gateware.beat import Beat
from hetnic.gateware.dma import (DmaReadBeat, DmaReadRequest, DmaWriteBeat, DmaWriteDone,
                                 DmaWriteRequest)
from hetnic.gateware.event_queues import EventPost
from hetnic.gateware.rx_queues import RxQueueManager
from hetnic.host.memory import BytearrayMemory, MemoryAllocator
from hetnic.host.queue_setup import queue_register_writes
from hetnic.host.rx_ring import RxRing
from hetnic.protocol import DropReason, EventType, PacketMeta, RxCompletion, RxDescriptor
from hetnic.regs import (QUEUE_CTRL_ENABLE, QUEUE_EQ_ARM, QUEUE_EQ_QUEUE,
                         QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA,
                         QUEUE_STATUS_DOORBELL)

SEED = 0x52_0_51EED
MEM_BASE = 0xFFFF_FF00_0000     # above 4 GiB: the high address words matter
MEM_SIZE = 1 << 18
GUARD, GUARD_BYTE = 48, 0xA5
# RXQ_STATUS values of one error bit each
STATUS_BAD_SIZE, STATUS_DOORBELL, STATUS_BAD_ADDR, STATUS_DMA = (
    f.mask for f in (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DOORBELL, QUEUE_STATUS_BAD_ADDR,
                     QUEUE_STATUS_DMA))
# RXQ_CTRL values: the queue disabled, enabled
OFF, ON = QUEUE_CTRL_ENABLE.encode(0), QUEUE_CTRL_ENABLE.encode(1)


class GuardedAllocator(MemoryAllocator):
    """Leaves ``GUARD`` bytes before and after every allocation; remembers the allocations."""
    def __init__(self, mem, base, size):
        super().__init__(mem, base, size)
        self.regions = []

    def alloc(self, n, align=1):
        super().alloc(GUARD)
        addr = super().alloc(n, align)
        super().alloc(GUARD)
        self.regions.append((addr, n))
        return addr


class Frame:
    def __init__(self, payload, queue, drop=DropReason.NONE, **meta):
        self.payload, self.queue, self.drop = payload, queue, drop
        self.meta = {"length": len(payload), "queue": queue, "drop": drop, **meta}


class Bench:
    """The models around one RxQueueManager, advanced one cycle at a time by :meth:`models`;
    a test scenario runs beside it in its own testbench and talks to it through queues."""

    def __init__(self, dut, rng, *, read_latency=(1, 6), done_latency=(0, 5), p_ready=0.75,
                 p_valid=0.8, p_meta=None, p_event_ready=0.6, limit=200_000):
        self.dut, self.rng = dut, rng
        self.lanes = dut.data_width // 8
        self.regmap = dut.regmap
        self.read_latency, self.done_latency = read_latency, done_latency
        self.p_ready, self.p_valid, self.p_event_ready = p_ready, p_valid, p_event_ready
        self.p_meta = p_valid if p_meta is None else p_meta
        self.mem = BytearrayMemory(MEM_BASE, MEM_SIZE)
        self.mem.buffer[:] = bytes([GUARD_BYTE]) * MEM_SIZE
        self.alloc = GuardedAllocator(self.mem, MEM_BASE, MEM_SIZE)
        self.rings = {}             # queue -> RxRing
        self.desc_rings, self.cq_rings = [], []     # (addr, bytes)
        self.buffers = []           # (region, stride, buffer size, count)
        self.beat = Beat(8 * self.lanes)
        # The manager's inputs (kit sources) and outputs (kit sinks, which check that an
        # output holds until taken), all drawing from ``rng`` in a fixed order per cycle.
        self.meta_in = StreamSource(dut.meta, rng=rng, gap=1 - self.p_meta, name="meta")
        self.data_in = StreamSource(dut.data, rng=rng, gap=1 - p_valid, name="data")
        self.read_data = StreamSource(dut.rd_data, rng=rng, name="rd_data")
        self.write_done = StreamSource(dut.wr_done, rng=rng, gap=1 - p_valid, name="wr_done")
        self.read_req = StreamSink(dut.rd_req, rng=rng, stall=1 - p_ready, name="rd_req")
        self.write_req = StreamSink(dut.wr_req, rng=rng, stall=1 - p_ready, name="wr_req")
        self.write_data = StreamSink(dut.wr_data, rng=rng, stall=1 - p_ready, name="wr_data")
        self.event_out = StreamSink(dut.event, rng=rng, stall=1 - p_event_ready, name="event")
        self.in_flight = deque()    # frames whose last beat was not taken yet
        self.csr_ops = deque()
        self.csr_op = None
        self.reads = deque()        # [due cycle, beats] not yet handed to read_data
        self.writes = deque()       # requests whose beats are not all in
        self.data_write = None      # length of the data write waiting for its completion
        self.dones = deque()        # [due cycle, error] not yet handed to write_done
        self.read_error_addrs, self.write_error_addrs = set(), set()
        self.events = []
        self.cycle = 0
        self.last_activity = 0
        self.offering = False       # some output of the manager is valid
        self.counts = {"reads": 0, "writes": 0}
        self.last_done_cycle = None
        self.limit = limit

    # --- host side ------------------------------------------------------------------------
    def ring(self, queue, size, buffer_size):
        ring = RxRing(self.mem, self.alloc, size, buffer_size, data_align=self.lanes)
        (desc, _), (cq, cq_bytes), (region, _) = self.alloc.regions[-3:]
        self.desc_rings.append((desc, size * 16))
        self.cq_rings.append((cq, cq_bytes))
        stride = -(-buffer_size // self.lanes) * self.lanes
        self.buffers.append((region, stride, buffer_size, size))
        self.rings[queue] = ring
        return ring

    def send(self, frames):
        for f in frames:
            self.in_flight.append(f)
            self.meta_in.send(pack(PacketMeta, **f.meta))
            payload = f.payload
            n = max(1, -(-len(payload) // self.lanes))
            for k in range(n):
                chunk = payload[k * self.lanes:(k + 1) * self.lanes]
                self.data_in.send(pack(self.beat, data=int.from_bytes(chunk, "little"),
                                       keep=(1 << len(chunk)) - 1, last=k == n - 1))

    @property
    def sending(self):
        """Records or data beats not yet taken by the manager."""
        return not (self.meta_in.done and self.data_in.done)

    async def csr(self, ctx, addr, value=None):
        op = {"addr": addr, "value": value, "done": False}
        self.csr_ops.append(op)
        # a setup write waits for the frames in flight: allow for a few long ones at W = 8
        await self.wait(ctx, lambda: op["done"], 20_000, f"register access at {addr:#x}")
        return op["result"]

    async def write(self, ctx, name, queue, value):
        await self.csr(ctx, self.regmap.addr(name, queue), value)

    async def read(self, ctx, name, queue):
        return await self.csr(ctx, self.regmap.addr(name, queue))

    async def setup(self, ctx, queue, ring):
        for addr, value in queue_register_writes(self.regmap, "rx", queue, ring):
            await self.csr(ctx, addr, value)

    async def post(self, ctx, queue, n=None):
        await self.write(ctx, "RXQ_PROD", queue, self.rings[queue].post(n))

    async def open_ring(self, ctx, queue, size, buffer_size, posted=None):
        """A new ring of ``size`` buffers of ``buffer_size`` bytes for ``queue``, set up (and
        so enabled) with ``posted`` buffers posted (``None``: all)."""
        ring = self.ring(queue, size, buffer_size)
        await self.setup(ctx, queue, ring)
        await self.post(ctx, queue, posted)
        return ring

    async def wait(self, ctx, cond, limit, what):
        for _ in range(limit):
            if cond():
                return
            await ctx.tick()
        raise AssertionError(f"cycle {self.cycle}: timed out after {limit} cycles waiting "
                             f"for {what}")

    def quiet(self):
        """Nothing to send, nothing in flight, no output valid, no handshake lately."""
        return (not self.sending and not self.reads and self.read_data.done
                and not self.writes and not self.dones and self.write_done.done
                and not self.csr_ops and self.csr_op is None
                and not self.offering and self.cycle - self.last_activity > 4)

    async def drain(self, ctx, limit=20000):
        await self.wait(ctx, self.quiet, limit, "the frames to be handled")

    def check_guards(self):
        image = bytearray(self.mem.buffer)
        allowed = self.desc_rings + self.cq_rings + [
            (region + i * stride, size)
            for region, stride, size, count in self.buffers for i in range(count)]
        for addr, n in allowed:
            image[addr - MEM_BASE:addr - MEM_BASE + n] = bytes([GUARD_BYTE]) * n
        bad = [i for i, b in enumerate(image) if b != GUARD_BYTE]
        assert not bad, f"guard bytes changed at {[hex(MEM_BASE + i) for i in bad[:8]]}"

    # --- DMA checks -----------------------------------------------------------------------
    def _check_write(self, addr, length):
        assert 1 <= length and addr % self.lanes == 0, f"write of {length} at {addr:#x}"
        for base, n in self.cq_rings:
            if base <= addr and addr + length <= base + n:
                assert length == 16 and addr % 16 == 0, f"completion write {addr:#x}+{length}"
                return
        for region, stride, size, count in self.buffers:
            i = (addr - region) // stride
            if 0 <= i < count and addr == region + i * stride:
                assert length <= size, f"{length} bytes into a {size}-byte buffer at {addr:#x}"
                return
        raise AssertionError(f"write of {length} bytes at {addr:#x} is in no buffer or ring")

    # --- one cycle at a time --------------------------------------------------------------
    async def models(self, ctx):
        d, lanes = self.dut, self.lanes
        sources = (self.meta_in, self.data_in, self.read_data, self.write_done)
        sinks = (self.read_req, self.write_req, self.write_data, self.event_out)
        while True:
            assert self.cycle < self.limit, f"the simulation passed {self.limit} cycles"
            # drive the manager's inputs for this cycle: a read response or a write's done
            # is offered from the cycle it is due
            if self.read_data.done and self.reads and self.reads[0][0] <= self.cycle:
                self.read_data.extend(self.reads.popleft()[1])
            if self.write_done.done and self.dones and self.dones[0][0] <= self.cycle:
                self.write_done.send(pack(DmaWriteDone, error=self.dones.popleft()[1]))
            for source in sources:
                source.drive(ctx)
            for sink in sinks:      # data beats are taken only for a request already taken
                sink.drive(ctx, may_take=sink is not self.write_data or bool(self.writes))
            if self.csr_op is None and self.csr_ops:
                self.csr_op = op = self.csr_ops.popleft()
                ctx.set(d.csr.addr, op["addr"])
                ctx.set(d.csr.w_data, op["value"] or 0)
                ctx.set(d.csr.r_stb if op["value"] is None else d.csr.w_stb, 1)
            ctx.set(d.timestamp, self.cycle)

            # observe (the testbench sees the settled outputs)
            get = ctx.get
            inputs = [get(source.stream.ready) for source in sources]
            outputs = [[get(signal) for signal in sink.sampled] for sink in sinks]
            self.offering = any(valid for valid, _ in outputs)
            csr_done = self.csr_op is not None and get(d.csr.ack)
            if csr_done:
                self.csr_op["result"] = get(d.csr.r_data)

            await ctx.tick()
            self.cycle += 1

            # update the models
            meta, beat, read, done = (source.update(ready)
                                      for source, ready in zip(sources, inputs))
            rd, wr, wd, ev = (sink.update(*values) for sink, values in zip(sinks, outputs))
            if any(taken is not None for taken in (meta, beat, read, done, rd, wr, wd, ev)):
                self.last_activity = self.cycle
            if beat is not None and unpack(self.beat, beat)["last"]:
                self.in_flight.popleft().stamp = self.cycle - 1    # timestamp of that cycle
            if done is not None:
                self.last_done_cycle = self.cycle
            if rd is not None:
                self._read(unpack(DmaReadRequest, rd))
            if wr is not None:
                req = unpack(DmaWriteRequest, wr)
                self._check_write(req["addr"], req["length"])
                req["beats"], req["data"] = -(-req["length"] // lanes), []
                self.writes.append(req)
            if wd is not None:
                self._write_beat(wd)
            if ev is not None:
                self.events.append(unpack(EventPost, ev))
            if csr_done:
                self.csr_op["done"] = True
                self.csr_op = None
                ctx.set(d.csr.r_stb, 0)
                ctx.set(d.csr.w_stb, 0)

    def _read(self, req):
        addr, length, lanes = req["addr"], req["length"], self.lanes
        assert length == 16 and any(b <= addr and addr + 16 <= b + n
                                    for b, n in self.desc_rings), \
            f"descriptor read of {length} bytes at {addr:#x} outside every descriptor ring"
        self.counts["reads"] += 1
        due = self.cycle - 1 + self.rng.randint(*self.read_latency)
        layout = DmaReadBeat(8 * lanes)

        def beat(value, keep, last, error):
            return pack(layout, data=value, keep=keep, last=last, error=error, tag=req["tag"])
        if addr in self.read_error_addrs:
            self.reads.append([due, [beat(0, 0, 1, 1)]])
            return
        image = self.mem.read(addr, 16)
        n = 16 // lanes
        self.reads.append([due, [beat(int.from_bytes(image[k * lanes:(k + 1) * lanes],
                                                     "little"), (1 << lanes) - 1,
                                      int(k == n - 1), 0) for k in range(n)]])

    def _write_beat(self, value):
        lanes = self.lanes
        req = self.writes[0]
        fields = unpack(DmaWriteBeat(8 * lanes), value)
        req["data"].append(fields["data"])
        last = fields["last"]
        final = len(req["data"]) == req["beats"]
        assert last == final, f"wr_data last={last} on beat {len(req['data'])} of {req['beats']}"
        if final:
            self.writes.popleft()
            image = b"".join(v.to_bytes(lanes, "little") for v in req["data"])
            error = req["addr"] in self.write_error_addrs
            if not error:
                self.mem.write(req["addr"], image[:req["length"]])
            # A completion follows the data write of exactly its length (none if empty).
            if any(b <= req["addr"] < b + n for b, n in self.cq_rings):
                length = int.from_bytes(image[:2], "little")
                assert self.data_write == (length or None), \
                    f"completion of {length} bytes after a data write of {self.data_write}"
                self.data_write = None
            else:
                assert self.data_write is None, "two data writes without a completion"
                self.data_write = req["length"]
            self.counts["writes"] += 1
            self.dones.append((self.cycle + self.rng.randint(*self.done_latency), int(error)))


def simulate(dut, seed, scenario, limit=200_000, **bench_args):
    """Run ``scenario(ctx, bench)`` beside the models (print the seed), then drain and check
    the guard bytes; fail after ``limit`` cycles."""
    bench = Bench(dut, seeded_rng(seed), limit=limit, **bench_args)

    async def run(ctx):
        await scenario(ctx, bench)
        await bench.drain(ctx)
        bench.check_guards()

    run_simulation(dut, run, background=(bench.models,), cycle_limit=limit + 1)
    return bench


COMPLETION = data.Layout.cast(RxCompletion)    # the widths the frame's meta lands in


def random_frame(rng, queue, length, seq, **meta):
    payload = seq.to_bytes(4, "little") + rng.randbytes(max(0, length - 4))
    return Frame(payload[:length], queue, hash=rng.getrandbits(32), hash_type=rng.randrange(7),
                 flags=rng.getrandbits(COMPLETION["flags"].width),
                 instance=rng.getrandbits(COMPLETION["instance"].width),
                 rule=rng.getrandbits(COMPLETION["rule"].width),
                 generation=rng.getrandbits(COMPLETION["generation"].width),
                 error=rng.choice((0, 0, 0, 1, 4)), **meta)


def check_packet(packet, frame, queue):
    assert packet.data == frame.payload, f"queue {queue}: frame data differs"
    m = frame.meta
    for name in ("length", "hash", "hash_type", "instance", "rule", "flags", "generation"):
        assert getattr(packet, name) == m[name], f"queue {queue}: {name}"
    assert packet.queue == queue and packet.error == m["error"]
    assert packet.timestamp == frame.stamp % (1 << 26), "timestamp is not the last beat's"


# --- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("width, p_meta", [(64, 0.8), (8, 0.8), (128, 0.2), (16, 0.2)])
def test_frames_to_several_queues(width, p_meta):
    """Random frames to four queues (and to a missing one), some dropped by the pipeline,
    some too long, some without a buffer: delivered ones byte-exact in order, counters exact.
    With a slow record stream (``p_meta`` 0.2) records mostly come after their frame's data."""
    n_queues, sizes, buffer_sizes = 4, (64, 4, 128, 2), (256, 61, 128, 64)
    posted = (64, 3, 128, 0)        # queue 3 posts nothing
    count = 200 if width >= 64 else 60
    seed = SEED ^ width

    async def scenario(ctx, bench):
        rng = random.Random(seed + 1)
        for q in range(n_queues):
            await bench.open_ring(ctx, q, sizes[q], buffer_sizes[q], posted[q])
        frames, expect = [], {q: [] for q in range(n_queues)}
        left = list(posted)
        no_buffer, too_long = [0] * n_queues, [0] * n_queues
        for seq in range(count):
            q = rng.choice([0, 0, 1, 1, 2, 3, 5])
            length = rng.choice([1, 7, 8, 9, 60, 64, buffer_sizes[q % 4], buffer_sizes[q % 4] + 1,
                                 rng.randint(1, 300)]) if q < 4 else 64
            drop = rng.choice([DropReason.NONE] * 5 + [DropReason.RULE, DropReason.RUNT])
            frame = random_frame(rng, q, length, seq, drop=drop)
            frames.append(frame)
            if drop != DropReason.NONE or q >= n_queues:
                continue
            if not left[q]:
                no_buffer[q] += 1
            elif length > buffer_sizes[q]:
                too_long[q] += 1
            else:
                left[q] -= 1
                expect[q].append(frame)
        bench.send(frames)
        await bench.drain(ctx)
        for q in range(n_queues):
            packets = bench.rings[q].reap(256)
            assert len(packets) == len(expect[q]), f"queue {q}"
            for packet, frame in zip(packets, expect[q]):
                check_packet(packet, frame, q)
            assert await bench.read(ctx, "RXQ_NO_BUFFER", q) == no_buffer[q]
            assert await bench.read(ctx, "RXQ_TOO_LONG", q) == too_long[q]
            assert await bench.read(ctx, "RXQ_CONS", q) == len(expect[q])
            assert await bench.read(ctx, "RXQ_STATUS", q) == 0
        assert not bench.events

    simulate(RxQueueManager(width, n_queues), seed, scenario, p_meta=p_meta)


def test_ring_wrap_phase():
    """Rings of 2 and 4 entries wrap six times; the host's phase check must follow."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 2)
        rings = {q: await bench.open_ring(ctx, q, size, buffer_size)
                 for q, size, buffer_size in ((0, 2, 64), (1, 4, 128))}
        seq = 0
        for _ in range(12):
            frames = [random_frame(rng, q, rng.randint(1, 64), seq + i)
                      for i, q in enumerate([0, 0, 1, 1, 1, 1])]
            seq += len(frames)
            bench.send(frames)
            await bench.drain(ctx)
            for q in rings:
                packets = rings[q].reap()
                mine = [f for f in frames if f.queue == q]
                assert len(packets) == len(mine)
                for packet, frame in zip(packets, mine):
                    check_packet(packet, frame, q)
                await bench.post(ctx, q)
        assert await bench.read(ctx, "RXQ_CONS", 0) == 24
        assert await bench.read(ctx, "RXQ_CONS", 1) == 48

    simulate(RxQueueManager(64, 2), SEED + 2, scenario)


def test_no_buffer_and_disabled():
    """A queue without buffers and a disabled queue drop everything; no byte is written."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 3)
        ring0, ring1 = bench.ring(0, 4, 64), bench.ring(1, 4, 64)
        await bench.setup(ctx, 0, ring0)                    # enabled, nothing posted
        ring1.post()                                        # posted, never enabled
        bench.send([random_frame(rng, i % 2, 64, i) for i in range(10)])
        await bench.drain(ctx)
        assert ring0.reap() == [] and ring1.reap() == []
        assert await bench.read(ctx, "RXQ_NO_BUFFER", 0) == 5
        assert await bench.read(ctx, "RXQ_NO_BUFFER", 1) == 5
        assert bench.counts == {"reads": 0, "writes": 0}

    simulate(RxQueueManager(64, 2), SEED + 3, scenario)


def test_too_long_keeps_descriptor():
    """A frame longer than the next buffer is dropped and the buffer serves the next frame.
    An empty frame (one beat, no byte kept) gets a completion and no data write."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 4)
        ring = await bench.open_ring(ctx, 0, 4, 100, posted=2)
        frames = [random_frame(rng, 0, n, i) for i, n in enumerate((101, 1500, 100, 0))]
        bench.send(frames)
        await bench.drain(ctx)
        packets = ring.reap()
        assert [p.desc_index for p in packets] == [0, 1]
        check_packet(packets[0], frames[2], 0)
        check_packet(packets[1], frames[3], 0)
        assert await bench.read(ctx, "RXQ_TOO_LONG", 0) == 2
        assert await bench.read(ctx, "RXQ_CONS", 0) == 2
        assert bench.counts["writes"] == 3

    simulate(RxQueueManager(32, 1), SEED + 4, scenario)


def test_doorbell_checks():
    """A doorbell past the ring or backwards sets STATUS bit 1 and is ignored."""
    async def scenario(ctx, bench):
        ring = bench.ring(0, 4, 64)
        await bench.setup(ctx, 0, ring)
        await bench.write(ctx, "RXQ_PROD", 0, 5)
        assert await bench.read(ctx, "RXQ_STATUS", 0) == STATUS_DOORBELL
        assert await bench.read(ctx, "RXQ_PROD", 0) == 0
        await bench.post(ctx, 0, 3)
        await bench.write(ctx, "RXQ_PROD", 0, 2)            # backwards
        assert await bench.read(ctx, "RXQ_PROD", 0) == 3
        await bench.write(ctx, "RXQ_CTRL", 0, OFF)          # disabling clears STATUS
        assert await bench.read(ctx, "RXQ_STATUS", 0) == 0
        await bench.write(ctx, "RXQ_CTRL", 0, ON)
        assert await bench.read(ctx, "RXQ_CTRL", 0) == ON
        bench.send([random_frame(random.Random(5), 0, 64, i) for i in range(4)])
        await bench.drain(ctx)
        assert len(ring.reap()) == 3
        assert await bench.read(ctx, "RXQ_NO_BUFFER", 0) == 1

    simulate(RxQueueManager(64, 1), SEED + 5, scenario)


def test_bad_setup():
    """Bad sizes (bit 0) and misaligned or overflowing rings (bit 2) keep a queue disabled;
    a prod beyond the ring at enable sets bit 1."""
    top = 1 << 64
    cases = [  # base, cq_base, size, prod, status
        (0x1000, 0x2000, 3, 0, STATUS_BAD_SIZE),
        (0x1000, 0x2000, 1, 0, STATUS_BAD_SIZE),
        (0x1000, 0x2000, 65536, 0, STATUS_BAD_SIZE),
        (0x1008, 0x2000, 4, 0, STATUS_BAD_ADDR),
        (0x1000, 0x2004, 4, 0, STATUS_BAD_ADDR),
        (top - 0x30, 0x2000, 4, 0, STATUS_BAD_ADDR),
        (0x1000, 0x2000, 4, 5, STATUS_DOORBELL),
        (0x1000, top - 0x40, 4, 0, 0),          # ends exactly at 2**64: good
    ]

    async def scenario(ctx, bench):
        rm = bench.regmap
        for base, cq, size, prod, status in cases:
            for name, value in (("CTRL", OFF), ("BASE_LO", base & 0xFFFF_FFFF),
                                ("BASE_HI", base >> 32), ("SIZE", size),
                                ("CQ_BASE_LO", cq & 0xFFFF_FFFF), ("CQ_BASE_HI", cq >> 32),
                                ("PROD", prod), ("CTRL", ON)):
                await bench.csr(ctx, rm.addr(f"RXQ_{name}", 1), value)
            assert await bench.read(ctx, "RXQ_STATUS", 1) == status, (base, cq, size)
            assert await bench.read(ctx, "RXQ_CTRL", 1) == (ON if status == 0 else OFF)
            assert await bench.read(ctx, "RXQ_SIZE", 1) == size
            assert await bench.read(ctx, "RXQ_CQ_BASE_HI", 1) == cq >> 32
        # ring registers of an enabled queue ignore writes
        await bench.write(ctx, "RXQ_SIZE", 1, 8)
        assert await bench.read(ctx, "RXQ_SIZE", 1) == 4
        # outside the window: reads 0
        assert await bench.csr(ctx, 0x0000) == 0

    simulate(RxQueueManager(64, 2), SEED + 6, scenario)


def test_armed_queue_posts_one_event():
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 7)
        ring = await bench.open_ring(ctx, 2, 8, 128)
        armed = QUEUE_EQ_ARM.encode(1) | QUEUE_EQ_QUEUE.encode(37)
        await bench.write(ctx, "RXQ_EQ", 2, armed)
        assert await bench.read(ctx, "RXQ_EQ", 2) == armed
        bench.send([random_frame(rng, q, 80, i) for i, q in enumerate((2, 3, 2, 200, 2))])
        await bench.drain(ctx)
        assert bench.events == [{"event_queue": 37, "type": EventType.RX_COMPLETION,
                                 "source": 2, "info": 1}]
        assert await bench.read(ctx, "RXQ_EQ", 2) == QUEUE_EQ_QUEUE.encode(37)     # disarmed
        assert len(ring.reap()) == 3
        await bench.write(ctx, "RXQ_EQ", 2, armed)          # re-arm after reaping
        bench.send([random_frame(rng, 2, 80, i) for i in range(2)])
        await bench.drain(ctx)
        assert len(bench.events) == 2 and bench.events[1]["info"] == 4
        assert len(ring.reap()) == 2

    simulate(RxQueueManager(16, 3), SEED + 7, scenario)


def test_dma_errors():
    """A failed descriptor read or a bad descriptor: STATUS bit 3, frame dropped, descriptor
    kept. A failed data write: STATUS bit 3, the completion still comes."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 8)
        ring = await bench.open_ring(ctx, 0, 4, 64, posted=2)
        bench.read_error_addrs.add(ring.base)
        frames = [random_frame(rng, 0, 64, i) for i in range(2)]
        bench.send(frames[:1])
        await bench.drain(ctx)
        assert await bench.read(ctx, "RXQ_STATUS", 0) == STATUS_DMA
        assert await bench.read(ctx, "RXQ_CONS", 0) == 0
        bench.read_error_addrs.clear()
        await bench.write(ctx, "RXQ_CTRL", 0, OFF)
        await bench.write(ctx, "RXQ_CTRL", 0, ON)
        assert await bench.read(ctx, "RXQ_STATUS", 0) == 0
        bench.send(frames[1:])
        await bench.drain(ctx)
        (packet,) = ring.reap()
        check_packet(packet, frames[1], 0)
        # a misaligned buffer address, then one that runs past 2**64
        slot = 1
        good = bench.mem.read(ring.base + 16 * slot, 16)
        for addr, length in ((MEM_BASE + 4 * 1024 + 4, 64), ((1 << 64) - 64, 65)):
            if bench.lanes == 1 and addr % 2:
                continue
            bench.mem.write(ring.base + 16 * slot,
                            pack_image(RxDescriptor, addr=addr, length=length))
            bench.send([random_frame(rng, 0, 64, 9)])
            await bench.drain(ctx)
            assert await bench.read(ctx, "RXQ_STATUS", 0) == STATUS_DMA
            assert await bench.read(ctx, "RXQ_CONS", 0) == 1
            await bench.write(ctx, "RXQ_CTRL", 0, OFF)
            await bench.write(ctx, "RXQ_CTRL", 0, ON)
        bench.mem.write(ring.base + 16 * slot, good)
        # a failed data write
        buffer = int.from_bytes(good[:8], "little")
        bench.write_error_addrs.add(buffer)
        bench.send([random_frame(rng, 0, 64, 10)])
        await bench.drain(ctx)
        assert await bench.read(ctx, "RXQ_STATUS", 0) == STATUS_DMA
        (packet,) = ring.reap()
        assert packet.length == 64

    simulate(RxQueueManager(64, 1), SEED + 8, scenario)


def test_new_setup_restarts_ring():
    """Setting a queue up again with fresh rings restarts CONS at 0 (a new RxRing works)."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 9)
        ring = await bench.open_ring(ctx, 0, 4, 64)
        bench.send([random_frame(rng, 0, 64, i) for i in range(3)])
        await bench.drain(ctx)
        assert len(ring.reap()) == 3
        fresh = bench.ring(0, 8, 64)
        fresh.post(5)                                       # posted before the setup
        await bench.setup(ctx, 0, fresh)
        assert await bench.read(ctx, "RXQ_CONS", 0) == 0
        frames = [random_frame(rng, 0, 64, 10 + i) for i in range(5)]
        bench.send(frames)
        await bench.drain(ctx)
        for packet, frame in zip(fresh.reap(), frames, strict=True):
            check_packet(packet, frame, 0)

    simulate(RxQueueManager(64, 1), SEED + 9, scenario)


def test_new_setup_under_traffic():
    """The host disables a queue and sets it up with fresh rings while frames are in flight:
    the frames decided before go to the old rings, then some are dropped, then the rest go
    to the new rings, each ring's completions in order from its slot 0."""
    total = 40

    async def scenario(ctx, bench):
        rng = random.Random(SEED + 12)
        old = await bench.open_ring(ctx, 0, 32, 64)
        fresh = bench.ring(0, 32, 64)
        fresh.post()
        frames = [random_frame(rng, 0, 64, i) for i in range(total)]
        bench.send(frames)
        for _ in range(60):
            await ctx.tick()
        await bench.setup(ctx, 0, fresh)
        await bench.drain(ctx)
        first, second = old.reap(), fresh.reap()
        assert 0 < len(first) and 0 < len(second)
        for packet, frame in zip(first, frames, strict=False):
            check_packet(packet, frame, 0)
        for packet, frame in zip(second, frames[total - len(second):]):
            check_packet(packet, frame, 0)
        dropped = await bench.read(ctx, "RXQ_NO_BUFFER", 0)
        assert len(first) + dropped + len(second) == total
        assert await bench.read(ctx, "RXQ_CONS", 0) == len(second)

    simulate(RxQueueManager(64, 1), SEED + 12, scenario, p_valid=0.5)


def test_disable_enable_under_traffic():
    """Frames keep coming while the host pauses and resumes queue 0 (CTRL only) and keeps
    reaping and posting: every completion arrives once, in order, and every frame is either
    delivered or counted in NO_BUFFER."""
    total = 120

    async def scenario(ctx, bench):
        rng = random.Random(SEED + 10)
        rings = {q: await bench.open_ring(ctx, q, size, 64) for q, size in ((0, 8), (1, 4))}
        frames = [random_frame(rng, rng.choice((0, 0, 1)), rng.randint(8, 64), i)
                  for i in range(total)]
        bench.send(frames)
        got = {0: [], 1: []}
        toggles = 0
        while bench.sending:
            for q, ring in rings.items():
                got[q] += ring.reap()
                await bench.post(ctx, q)
            if rng.random() < 0.5:
                await bench.write(ctx, "RXQ_CTRL", 0, OFF)
                for _ in range(rng.randint(1, 60)):
                    await ctx.tick()
                await bench.write(ctx, "RXQ_CTRL", 0, ON)
                toggles += 1
            for _ in range(rng.randint(5, 40)):
                await ctx.tick()
        await bench.drain(ctx)
        for q, ring in rings.items():
            got[q] += ring.reap()
            sent = [f for f in frames if f.queue == q]
            seqs = [int.from_bytes(p.data[:4], "little") for p in got[q]]
            assert seqs == sorted(set(seqs)), f"queue {q}: completions lost order or repeated"
            by_seq = {int.from_bytes(f.payload[:4], "little"): f for f in sent}
            for packet in got[q]:
                check_packet(packet, by_seq[int.from_bytes(packet.data[:4], "little")], q)
            dropped = await bench.read(ctx, "RXQ_NO_BUFFER", q)
            assert len(got[q]) + dropped == len(sent), f"queue {q}"
            assert await bench.read(ctx, "RXQ_CONS", q) == len(got[q])
        assert toggles >= 3 and 0 < await bench.read(ctx, "RXQ_NO_BUFFER", 0)

    simulate(RxQueueManager(64, 2), SEED + 10, scenario, p_valid=0.5)


def test_throughput():
    """64-byte frames at W=64 with a DMA that answers reads in 4 cycles and never stalls
    writes: print the cycles per frame (line rate is one frame per 10.5 cycles)."""
    count = 128

    async def scenario(ctx, bench):
        rng = random.Random(SEED + 11)
        rings = [await bench.open_ring(ctx, q, 64, 64) for q in range(4)]  # room for all
        frames = [random_frame(rng, rng.randrange(4), 64, i) for i in range(count)]
        start = bench.cycle
        bench.send(frames)
        await bench.drain(ctx)
        cycles = bench.last_done_cycle - start
        print(f"RX queues, W=64: {count} frames of 64 bytes in {cycles} cycles, "
              f"{cycles / count:.2f} cycles per frame (line rate: 10.5)")
        assert sum(len(r.reap()) for r in rings) == count

    simulate(RxQueueManager(64, 4), SEED + 11, scenario, read_latency=(4, 4),
             done_latency=(2, 2), p_ready=1.0, p_valid=1.0, p_event_ready=1.0)


def test_256_queues():
    """The largest build: the last queue's registers sit at the top of the CSR space."""
    async def scenario(ctx, bench):
        rng = random.Random(SEED + 13)
        rings = {q: await bench.open_ring(ctx, q, 4, 64) for q in (0, 255)}
        frames = [random_frame(rng, q, 64, i) for i, q in enumerate((255, 0, 255, 17))]
        bench.send(frames)
        await bench.drain(ctx)
        for q, ring in rings.items():
            mine = [f for f in frames if f.queue == q]
            for packet, frame in zip(ring.reap(), mine, strict=True):
                check_packet(packet, frame, q)
        assert await bench.read(ctx, "RXQ_CONS", 255) == 2
        assert await bench.read(ctx, "RXQ_NO_BUFFER", 17) == 1

    simulate(RxQueueManager(64, 256), SEED + 13, scenario)


def test_bad_parameters():
    for width in (0, 24, 256, "64"):
        with pytest.raises(ValueError, match=repr(width)):
            RxQueueManager(width, 4)
    for n in (0, 257, 4.0):
        with pytest.raises(ValueError, match=repr(n)):
            RxQueueManager(64, n)
