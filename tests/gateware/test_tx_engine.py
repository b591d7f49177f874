# amaranth: UnusedElaboratable=no
# (test_parameters builds engines whose __init__ raises; they are never elaborated.)
"""TxWorkItemEngine in Amaranth's simulator against a Python model of the TX path.

The bench has three parts:

* ``HostMemory``: a bytearray arena (at a high 64-bit address) with *fault* ranges.
* ``DmaMacModel``: the DMA client contract of :mod:`hetnic.gateware.dma` (reads answered in
  order with random latency and gaps, a failed read -- one touching a fault -- delivers all its
  beats with ``error`` on the last; writes with random backpressure and a done each) and a MAC
  sink with random ``ready``. It logs read requests, frames and completions.
* ``ModelQueue``: the oracle. When the host rings a doorbell it parses the new work items from
  host memory as the engine must, and records per work item the frames, the completion and
  the exact data read requests expected.

A test posts work items, waits (bounded) until every expected completion has been written and
checks: completions (fields, ring address, phase) per queue in order, frames byte-exact and in
order (aborted frames end with ``error``), the data reads per queue exactly as the model's,
work-item reads inside the ring, and ``CONS``/``CQ_PROD`` at the end.
"""

import random
from collections import defaultdict, deque
from dataclasses import dataclass, field

import pytest

from hetnic.gateware.dma import (DmaReadBeat, DmaReadRequest, DmaWriteBeat, DmaWriteDone,
                                 DmaWriteRequest)
from hetnic.gateware.tx_engine import TxWorkItemEngine
from hetnic.protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, TxCompletion, TxGatherEntry,
                             TxLengths, TxOpcode, TxStatus, TxWorkItem)
from hetnic.regs import (QUEUE_CTRL_ENABLE, QUEUE_EQ_ARM, QUEUE_EQ_QUEUE, QUEUE_STATUS_BAD_ADDR,
                         QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA, QUEUE_STATUS_DOORBELL,
                         RegisterMap)
from kit import (StreamSink, StreamSource, pack, pack_image, run_simulation, unpack,
                 unpack_image)

SEED = 0x7E_C0FFEE
ARENA = 0x0000_7F12_3400_0000       # high bits set: 64-bit addresses matter
GARBAGE = 0xEE                      # what a failed read returns for unreadable bytes
# TXQ_STATUS values of one error bit each
STATUS_BAD_SIZE, STATUS_DOORBELL, STATUS_BAD_ADDR, STATUS_DMA = (
    f.mask for f in (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DOORBELL, QUEUE_STATUS_BAD_ADDR,
                     QUEUE_STATUS_DMA))


def ceil_div(a, b):
    return -(-a // b)


# --- host memory -------------------------------------------------------------------------

class HostMemory:
    def __init__(self, size=1 << 20):
        self.buf = bytearray(size)
        self.top = ARENA
        self.faults = []                # (lo, hi) byte ranges that fail reads

    def alloc(self, n, align):
        addr = -(-self.top // align) * align
        self.top = addr + max(n, 1)
        assert self.top <= ARENA + len(self.buf), "test arena exhausted"
        return addr

    def write(self, addr, raw):
        assert ARENA <= addr and addr + len(raw) <= ARENA + len(self.buf)
        self.buf[addr - ARENA:addr - ARENA + len(raw)] = raw

    def faulty(self, addr, n):
        return any(lo < addr + n and addr < hi for lo, hi in self.faults)

    def read(self, addr, n):
        """What a DMA read of ``n`` bytes at ``addr`` returns (garbage where it fails)."""
        if not self.faulty(addr, n):
            assert ARENA <= addr and addr + n <= ARENA + len(self.buf), \
                f"read of {n} bytes at {addr:#x} outside host memory"
            return bytes(self.buf[addr - ARENA:addr - ARENA + n])
        return bytes(GARBAGE if self.faulty(a, 1) or not ARENA <= a < ARENA + len(self.buf)
                     else self.buf[a - ARENA] for a in range(addr, addr + n))


# --- the oracle --------------------------------------------------------------------------

@dataclass
class Expect:
    """One work item as the engine must handle it."""
    wqe_index: int
    cookie: int
    status: TxStatus
    slots: int
    frames: list = field(default_factory=list)
    aborted: bool = False       # a frame cut short by a read error (ends with error=1)
    requests: list = field(default_factory=list)    # data reads (addr, length), in order
    halt: bool = False


class ModelQueue:
    """Expected behaviour of one TX queue, parsed from host memory at each doorbell."""

    def __init__(self, mem, nbytes, index, base, size, cq_base, cq_size):
        self.mem, self.nbytes, self.q = mem, nbytes, index
        self.base, self.size, self.cq_base, self.cq_size = base, size, cq_base, cq_size
        self.prod = 0                   # free-running, as the host counts
        self.parsed = 0                 # slots parsed (the engine's fetch index)
        self.items = []
        self.halted = False

    def slot_addr(self, i):
        return self.base + (i % self.size) * 16

    def doorbell(self, prod):
        self.prod = prod
        while not self.halted and self.parsed < prod:
            item = self._parse(self.parsed)
            self.items.append(item)
            self.parsed += item.slots
            self.halted = item.halt

    def _parse(self, i):
        mem, nb = self.mem, self.nbytes
        at = i % self.size
        if mem.faulty(self.slot_addr(i), 16):
            return Expect(at, 0, TxStatus.DMA_ERROR, 1, halt=True)
        h = unpack_image(TxWorkItem, mem.read(self.slot_addr(i), 16))
        op, count, cookie, addr = h["opcode"], h["count"], h["cookie"], h["addr"]

        def bad(status, slots=1):
            return Expect(at, cookie, status, slots)

        def length_ok(n):
            return 1 <= n <= TX_MAX_FRAME

        if op == TxOpcode.NOP:
            return Expect(at, cookie, TxStatus.OK, 1)
        if op == TxOpcode.SINGLE:
            n = h["length"]
            if not length_ok(n) or addr % nb:
                return bad(TxStatus.BAD_LENGTH)
            if addr + n > 1 << 64:
                return bad(TxStatus.DMA_ERROR)
            return self._data(at, cookie, 1, [(addr, n)], [(addr, n)])
        if op not in (TxOpcode.BATCH, TxOpcode.GATHER):
            return bad(TxStatus.BAD_OPCODE)
        if not 1 <= count <= TX_MAX_MESSAGES:
            return bad(TxStatus.BAD_COUNT)
        slots = 1 + (ceil_div(count, 8) if op == TxOpcode.BATCH else count)
        if slots > self.prod - i:
            return bad(TxStatus.BAD_COUNT)
        if op == TxOpcode.BATCH and addr % nb:
            return bad(TxStatus.BAD_LENGTH, slots)
        if any(mem.faulty(self.slot_addr(i + k), 16) for k in range(1, slots)):
            return bad(TxStatus.DMA_ERROR, slots)
        raw = [mem.read(self.slot_addr(i + k), 16) for k in range(1, slots)]
        if op == TxOpcode.BATCH:
            lengths = [unpack_image(TxLengths, r)[f"length{j}"]
                       for r in raw for j in range(8)][:count]
            if not all(map(length_ok, lengths)):
                return bad(TxStatus.BAD_LENGTH, slots)
            msgs, off = [], 0
            for n in lengths:
                msgs.append((addr + off, n))
                off += ceil_div(n, nb) * nb
            if addr + off > 1 << 64:
                return bad(TxStatus.DMA_ERROR, slots)
            chunk = 65536 - nb
            reqs = [(addr + k, min(chunk, off - k)) for k in range(0, off, chunk)]
            return self._data(at, cookie, slots, msgs, reqs)
        msgs = []
        for r in raw:
            e = unpack_image(TxGatherEntry, r)
            if not length_ok(e["length"]) or e["addr"] % nb:
                return bad(TxStatus.BAD_LENGTH, slots)
            if e["addr"] + e["length"] > 1 << 64:
                return bad(TxStatus.DMA_ERROR, slots)
            msgs.append((e["addr"], e["length"]))
        return self._data(at, cookie, slots, msgs, list(msgs))

    def _data(self, at, cookie, slots, msgs, reqs):
        """Frames of a work item whose checks passed. A failed read is known at its last
        beat: frames that ended before it were sent, the one in progress is aborted."""
        nb, error_beat, pos = self.nbytes, None, 0
        for a, n in reqs:
            pos += ceil_div(n, nb)
            if self.mem.faulty(a, ceil_div(n, nb) * nb):
                error_beat = pos - 1
                break
        item = Expect(at, cookie, TxStatus.OK if error_beat is None else TxStatus.DMA_ERROR,
                      slots, requests=reqs)
        start = 0
        for a, n in msgs:
            end = start + ceil_div(n, nb)
            if error_beat is not None and end - 1 >= error_beat:
                item.aborted = start < error_beat
                break
            item.frames.append(self.mem.read(a, n))
            start = end
        return item


# --- DMA and MAC model -------------------------------------------------------------------

class DmaMacModel:
    """Drives the engine's DMA client ports and MAC port, one cycle per loop iteration.

    The engine's outputs are :class:`kit.StreamSink` s (``rd_req`` ready with chance
    ``rd_ready``, ``wr_req``/``wr_data`` with ``wr_ready``, the MAC side with ``tx_ready``; each
    checks the hold rule), read data beats and write dones come from :class:`kit.StreamSource`
    s (read data with gaps ``rd_gap``), each from the cycle it is due."""

    def __init__(self, dut, mem, rng, *, limit, rd_ready=1.0, rd_gap=0.0, latency=(1, 1),
                 wr_ready=1.0, done_delay=(0, 0), tx_ready=1.0, write_errors=()):
        self.dut, self.mem, self.rng, self.limit = dut, mem, rng, limit
        self.nbytes = dut.data_width // 8
        self.rd_req = StreamSink(dut.rd_req, rng=rng, stall=1.0 - rd_ready, name="rd_req")
        self.rd_data = StreamSource(dut.rd_data, rng=rng, gap=rd_gap, name="rd_data")
        self.wr_req = StreamSink(dut.wr_req, rng=rng, stall=1.0 - wr_ready, name="wr_req")
        self.wr_data = StreamSink(dut.wr_data, rng=rng, stall=1.0 - wr_ready, name="wr_data")
        self.wr_done = StreamSource(dut.wr_done, rng=rng, name="wr_done")
        self.tx = StreamSink(dut.tx, rng=rng, stall=1.0 - tx_ready, name="tx")
        self.latency, self.done_delay = latency, done_delay
        self.write_errors = set(write_errors)   # completion numbers whose done has error=1
        self.cycle = 0
        self.reads = []                 # (addr, length, tag) in issue order
        self.frames = []                # (bytes, error)
        self.completions = []           # (tag, addr, 16 bytes) in write order
        self.tx_beats, self.first_beat, self.last_beat = 0, None, None
        self._pending = deque()         # [due cycle, beats]
        self._writes = deque()          # [addr, length, tag, bytearray]
        self._dones = deque()           # [due cycle, tag, error] not yet handed to wr_done
        self._frame = bytearray()

    def outstanding(self):
        return bool(self._pending or not self.rd_data.done or self._writes or self._dones
                    or not self.wr_done.done or self._frame)

    def _response(self, addr, length, tag):
        nb = self.nbytes
        n = ceil_div(length, nb)
        failed = self.mem.faulty(addr, n * nb)
        raw = self.mem.read(addr, n * nb)
        layout = DmaReadBeat(8 * nb)
        beats = []
        for k in range(n):
            last = k == n - 1
            keep = (1 << (length - k * nb if last else nb)) - 1
            beats.append(pack(layout, data=int.from_bytes(raw[k * nb:(k + 1) * nb], "little"),
                              keep=keep, last=last, error=failed and last, tag=tag))
        return beats

    async def run(self, ctx):
        rng, nb = self.rng, self.nbytes
        wd_layout, tx_layout = DmaWriteBeat(8 * nb), self.dut.tx.payload.shape()
        agents = (self.rd_req, self.rd_data, self.wr_req, self.wr_data, self.wr_done, self.tx)
        while True:
            self.cycle += 1
            assert self.cycle < self.limit, f"cycle limit {self.limit} reached"
            if self.rd_data.done and self._pending and self._pending[0][0] <= self.cycle:
                self.rd_data.extend(self._pending.popleft()[1])
            if self.wr_done.done and self._dones and self._dones[0][0] <= self.cycle:
                _, tag, error = self._dones.popleft()
                self.wr_done.send(pack(DmaWriteDone, tag=tag, error=error))
            for agent in agents:
                if agent is self.wr_data:
                    # Data beats are taken only for a request already taken, as DmaEngine does.
                    agent.drive(ctx, may_take=bool(self._writes) and len(self._writes[-1][3])
                                < ceil_div(self._writes[-1][1], nb) * nb)
                else:
                    agent.drive(ctx)
            signals = [signal for agent in agents for signal in agent.sampled]
            values = list(await ctx.tick().sample(*signals))[-len(signals):]
            taken = []
            for agent in agents:
                count = len(agent.sampled)
                taken.append(agent.update(*values[:count]))
                values = values[count:]
            rq_p, _, wq_p, wd_p, _, tx_p = taken

            if rq_p is not None:
                request = unpack(DmaReadRequest, rq_p)
                addr, length, tag = request["addr"], request["length"], request["tag"]
                assert addr % nb == 0 and 1 <= length <= 65535 and addr + length <= 1 << 64, \
                    f"bad read request {addr:#x}+{length}"
                self.reads.append((addr, length, tag))
                self._pending.append([self.cycle + rng.randint(*self.latency),
                                      self._response(addr, length, tag)])
            if wq_p is not None:
                request = unpack(DmaWriteRequest, wq_p)
                addr, length, tag = request["addr"], request["length"], request["tag"]
                assert length == 16 and addr % 16 == 0, f"bad write {addr:#x}+{length}"
                self._writes.append([addr, length, tag, bytearray()])
            if wd_p is not None:
                w = next(w for w in self._writes if len(w[3]) < ceil_div(w[1], nb) * nb)
                w[3] += unpack(wd_layout, wd_p)["data"].to_bytes(nb, "little")
            if self._writes and len(self._writes[0][3]) == ceil_div(self._writes[0][1], nb) * nb:
                addr, length, tag, raw = self._writes.popleft()
                self.mem.write(addr, bytes(raw[:length]))
                self.completions.append((tag, addr, bytes(raw[:length])))
                self._dones.append([self.cycle + rng.randint(*self.done_delay), tag,
                                    len(self.completions) - 1 in self.write_errors])
            if tx_p is not None:
                beat = unpack(tx_layout, tx_p)
                keep, last, error = beat["keep"], beat["last"], beat["error"]
                full = (1 << nb) - 1
                assert keep == full or (last and keep and keep & (keep + 1) == 0), \
                    f"keep {keep:#x} on a {'last' if last else 'middle'} beat"
                self._frame += beat["data"].to_bytes(nb, "little")[:keep.bit_length()]
                self.tx_beats += 1
                self.first_beat = self.first_beat or self.cycle
                self.last_beat = self.cycle
                if last:
                    self.frames.append((bytes(self._frame), error))
                    self._frame = bytearray()


# --- host side ---------------------------------------------------------------------------

class Bench:
    """Engine, memory, DMA/MAC model and oracle of one simulation."""

    def __init__(self, data_width, n_queues, seed, *, limit, arena=1 << 20, **model_args):
        print(f"seed={seed:#x} data_width={data_width} n_queues={n_queues}")
        self.rng = random.Random(seed)
        self.nbytes = data_width // 8
        self.dut = TxWorkItemEngine(data_width, n_queues)
        self.rm = self.dut.regmap
        self.mem = HostMemory(arena)
        self.env = DmaMacModel(self.dut, self.mem, random.Random(seed + 1), limit=limit,
                               **model_args)
        self.queues = {}                # queue -> its current ModelQueue
        self.history = defaultdict(list)    # queue -> every ModelQueue it was set up with
        self.cookie = 0x1000

    def run(self, main):
        """Run ``main(ctx)`` beside the DMA/MAC model; fail after the model's cycle limit."""
        run_simulation(self.dut, main, background=(self.env.run,),
                       cycle_limit=self.env.limit + 1)

    # --- registers
    async def write(self, ctx, name, q, value):
        csr = self.dut.csr
        ctx.set(csr.addr, self.rm.addr(name, q))
        ctx.set(csr.w_data, value)
        ctx.set(csr.w_stb, 1)
        for _ in range(20_000):
            _, _, ack = await ctx.tick().sample(csr.ack)
            if ack:
                break
        else:
            raise AssertionError(f"write of {name}[{q}] not acknowledged")
        ctx.set(csr.w_stb, 0)

    async def read(self, ctx, name, q=0):
        csr = self.dut.csr
        ctx.set(csr.addr, self.rm.addr(name, q))
        ctx.set(csr.r_stb, 1)
        _, _, ack, value = await ctx.tick().sample(csr.ack, csr.r_data)
        assert ack
        ctx.set(csr.r_stb, 0)
        return value

    async def setup(self, ctx, q, size, cq_size, *, base=None, cq_base=None, start=0):
        """Set queue ``q`` up (disable, ring registers, ``PROD = start``, enable)."""
        base = self.mem.alloc(size * 16, 16) if base is None else base
        cq_base = self.mem.alloc(cq_size * 16, 16) if cq_base is None else cq_base
        await self.write(ctx, "TXQ_CTRL", q, 0)
        for name, value in (("TXQ_BASE_LO", base & 0xFFFF_FFFF), ("TXQ_BASE_HI", base >> 32),
                            ("TXQ_SIZE", size), ("TXQ_CQ_BASE_LO", cq_base & 0xFFFF_FFFF),
                            ("TXQ_CQ_BASE_HI", cq_base >> 32), ("TXQ_CQ_SIZE", cq_size),
                            ("TXQ_PROD", start)):
            await self.write(ctx, name, q, value)
        await self.write(ctx, "TXQ_CTRL", q, QUEUE_CTRL_ENABLE.mask)
        mq = ModelQueue(self.mem, self.nbytes, q, base, size, cq_base, cq_size)
        mq.start = mq.prod = mq.parsed = start
        mq.offset = sum(len(old.items) for old in self.history[q])   # earlier completions
        self.queues[q] = mq
        self.history[q].append(mq)
        return mq

    # --- work items (lists of 16-byte slots)
    def next_cookie(self):
        self.cookie += 1
        return self.cookie

    def buffer(self, payload, pad=0):
        addr = self.mem.alloc(len(payload) + pad, self.nbytes)
        self.mem.write(addr, payload)
        return addr

    def single(self, msg, cookie=None):
        return [pack_image(TxWorkItem, opcode=TxOpcode.SINGLE, count=1, length=len(msg),
                     cookie=cookie or self.next_cookie(), addr=self.buffer(msg))]

    def batch(self, msgs, cookie=None):
        nb = self.nbytes
        image = b"".join(m + bytes(ceil_div(len(m), nb) * nb - len(m)) for m in msgs)
        lengths = [len(m) for m in msgs]
        return [pack_image(TxWorkItem, opcode=TxOpcode.BATCH, count=len(msgs),
                     cookie=cookie or self.next_cookie(), addr=self.buffer(image))] + [
            pack_image(TxLengths, **{f"length{j}": n for j, n in enumerate(lengths[k:k + 8])})
            for k in range(0, len(lengths), 8)]

    def gather(self, msgs, cookie=None):
        return [pack_image(TxWorkItem, opcode=TxOpcode.GATHER, count=len(msgs),
                     cookie=cookie or self.next_cookie())] + [
            pack_image(TxGatherEntry, addr=self.buffer(m), length=len(m)) for m in msgs]

    def nop(self, cookie=None):
        return [pack_image(TxWorkItem, opcode=TxOpcode.NOP, cookie=cookie or self.next_cookie())]

    def completed(self, q):
        """Completions written for the current setup of queue ``q``."""
        return sum(1 for tag, _, _ in self.env.completions if tag == q) - self.queues[q].offset

    async def post(self, ctx, q, items, *, doorbell=True, group=1):
        """Write work items into queue ``q``'s ring, waiting for room; ring the doorbell
        after every ``group`` work items and after the last."""
        mq = self.queues[q]
        for k, slots in enumerate(items):
            assert len(slots) <= mq.size
            while True:
                done = mq.items[:self.completed(q)]
                cons = mq.start + sum(i.slots for i in done)
                if mq.size - (mq.prod - cons) >= len(slots):
                    break
                if doorbell and mq.prod != mq.parsed:
                    await self.ring(ctx, q)     # the room waits for work items not yet rung
                await self.wait(ctx)
            for k, raw in enumerate(slots):
                self.mem.write(mq.slot_addr(mq.prod + k), raw)
            mq.prod += len(slots)
            if doorbell and (k % group == group - 1 or k == len(items) - 1):
                await self.ring(ctx, q)

    async def ring(self, ctx, q, value=None):
        mq = self.queues[q]
        await self.write(ctx, "TXQ_PROD", q, mq.prod & 0xFFFF if value is None else value)
        if value is None:
            mq.doorbell(mq.prod)

    async def wait(self, ctx):
        """A few cycles; near the cycle limit, say why the bench is still waiting."""
        if self.env.cycle > self.env.limit - 100:
            seen = self.check(partial=True)     # a wrong completion explains the wait
            raise AssertionError(f"timeout: completions {dict(seen)} of "
                                 f"{[len(mq.items) for mq in self.queues.values()]}")
        await ctx.tick().repeat(8)

    async def drain(self, ctx):
        """Wait until every expected completion is written and nothing is in flight."""
        while (any(self.completed(q) < len(mq.items) for q, mq in self.queues.items())
               or self.env.outstanding()):
            await self.wait(ctx)
        await ctx.tick().repeat(16)
        for q, mq in self.queues.items():
            cons = (mq.start + sum(i.slots for i in mq.items)) & 0xFFFF
            assert await self.read(ctx, "TXQ_CONS", q) == cons, f"queue {q} CONS"
            assert await self.read(ctx, "TXQ_CQ_PROD", q) == len(mq.items) & 0xFFFF

    def check(self, partial=False):
        """Completions, frames and reads against the oracle; returns completions per queue."""
        print(f"{self.env.cycle} cycles, {len(self.env.completions)} completions, "
              f"{len(self.env.frames)} frames, {self.env.tx_beats} beats, "
              f"{len(self.env.reads)} reads")
        frames = iter(self.env.frames)
        expected = {q: deque((mq, k, item) for mq in models for k, item in enumerate(mq.items))
                    for q, models in self.history.items()}
        seen = defaultdict(int)
        for tag, addr, raw in self.env.completions:
            assert expected[tag], f"queue {tag}: a completion too many"
            mq, k, item = expected[tag].popleft()
            seen[tag] += 1
            assert addr == mq.cq_base + (k % mq.cq_size) * 16, f"queue {tag} completion {k}"
            got = unpack_image(TxCompletion, raw)
            want = dict(cookie=item.cookie, wqe_index=item.wqe_index,
                        messages=len(item.frames), status=item.status,
                        bytes=sum(map(len, item.frames)), reserved=0,
                        phase=1 - (k // mq.cq_size) % 2)
            assert got == want, f"queue {tag} completion {k}: {got} != {want}"
            for f in item.frames:
                frame, error = next(frames)
                assert (frame, error) == (f, 0), \
                    f"queue {tag} work item {k}: frame {frame.hex()} != {f.hex()}"
            if item.aborted:
                assert next(frames)[1] == 1, f"queue {tag} work item {k}: no aborted frame"
        if partial:
            return seen
        assert next(frames, None) is None, "frames without a work item"
        for q, models in self.history.items():
            assert not expected[q], f"queue {q}: {len(expected[q])} completions missing"
            reads = [(a, n) for a, n, tag in self.env.reads if tag & 0xBF == q]
            assert reads == [r for mq in models for i in mq.items for r in i.requests], \
                f"queue {q} data reads"
            for a, n, tag in self.env.reads:
                if tag == 0x80 | q:
                    assert n % 16 == 0 and any(
                        mq.base <= a and a + n <= mq.base + mq.size * 16
                        and (a - mq.base) % 16 == 0 for mq in models), \
                        f"work-item read {a:#x}+{n} outside queue {q}'s ring"
        return seen

    def random_messages(self, n, max_len):
        lens = [self.rng.choice([1, self.nbytes, self.nbytes + 1, 60, 64,
                                 self.rng.randint(1, max_len), self.rng.randint(1, max_len)])
                for _ in range(n)]
        return [self.rng.randbytes(min(n_, max_len)) for n_ in lens]

    def random_item(self, max_msgs, max_len, max_slots):
        kind = self.rng.choice(["single", "single", "batch", "batch", "gather", "nop"])
        if kind == "nop":
            return self.nop()
        if kind == "single":
            return self.single(self.random_messages(1, max_len)[0])
        n = min(self.rng.choice([1, 2, 7, 8, 9, self.rng.randint(1, max_msgs)]), max_msgs)
        if kind == "gather":
            n = min(n, max_slots - 1)
        return getattr(self, kind)(self.random_messages(n, max_len))


# --- tests -------------------------------------------------------------------------------

BACKPRESSURE = dict(rd_ready=0.6, rd_gap=0.3, latency=(1, 12), wr_ready=0.5,
                    done_delay=(0, 6), tx_ready=0.7)


@pytest.mark.parametrize("data_width, n_queues, n_items, max_msgs, max_len", [
    (64, 3, 240, 24, 200),
    (64, 1, 60, TX_MAX_MESSAGES, 100),
    (8, 2, 50, 9, 40),
    (128, 5, 100, 12, 300),
    (16, 2, 40, 10, 60),
])
def test_random_traffic(data_width, n_queues, n_items, max_msgs, max_len):
    """SINGLE, BATCH, GATHER and NOP work items of random sizes on several queues with small
    rings (multi-slot work items wrap) and smaller completion rings (the phase flips), with
    random latency, gaps and backpressure everywhere; a doorbell covers 1 to 4 work items."""
    b = Bench(data_width, n_queues, SEED + data_width + n_queues, limit=60_000,
              arena=1 << 21, **BACKPRESSURE)
    sizes = [(32, 4), (16, 8), (64, 2), (8, 16), (128, 32)]
    if max_msgs > 16:
        sizes[0] = (128, 4)

    async def main(ctx):
        for q in range(n_queues):     # indices start near the 16-bit wrap, or anywhere
            start = [0xFFF0, 0, 0xFFFF, b.rng.getrandbits(16), 3][q]
            await b.setup(ctx, q, *sizes[q], start=start)
        posted = 0
        while posted < n_items:
            q = b.rng.randrange(n_queues)
            group = b.rng.choice([1, 1, 2, 4])
            await b.post(ctx, q, [b.random_item(max_msgs, max_len, sizes[q][0])
                                  for _ in range(group)], group=group)
            posted += group
        await b.drain(ctx)

    b.run(main)
    seen = b.check()
    assert all(seen[q] >= 3 for q in range(n_queues))
    assert any(mq.prod > mq.size for mq in b.queues.values()), "no ring wrapped"
    counts = {len(i.frames) for mq in b.queues.values() for i in mq.items}
    assert 0 in counts and max(counts) > 8
    assert {tag & 0x3F for _, _, tag in b.env.reads if tag & 0x80} == set(range(n_queues))


def test_max_frames_and_split_batch():
    """TX_MAX_FRAME in every form; a BATCH of 8 x TX_MAX_FRAME (73728 bytes) is read in two
    requests; a 1-byte GATHER entry after a maximum one."""
    b = Bench(64, 1, SEED + 2, limit=60_000, arena=1 << 18)

    async def main(ctx):
        await b.setup(ctx, 0, 32, 8)
        big = [b.rng.randbytes(TX_MAX_FRAME) for _ in range(8)]
        await b.post(ctx, 0, [b.single(big[0]), b.gather([big[1], b"\x5a"]), b.batch(big)])
        await b.drain(ctx)

    b.run(main)
    b.check()
    batch = b.queues[0].items[2]
    assert [n for _, n in batch.requests] == [65528, 8 * TX_MAX_FRAME - 65528]
    assert len(batch.frames) == 8 and batch.status == TxStatus.OK


@pytest.mark.parametrize("data_width", [64, 8])
def test_malformed_work_items(data_width):
    """Every kind of malformed work item completes with its status, consumes the right slots,
    reads no data, and the engine goes on with the next work item."""
    b = Bench(data_width, 1, SEED + 3 + data_width, limit=40_000, **BACKPRESSURE)
    nb = b.nbytes
    good = b.rng.randbytes(20)
    expect = []

    def hdr(**f):
        return pack_image(TxWorkItem, **{"cookie": b.next_cookie(), **f})

    async def main(ctx):
        await b.setup(ctx, 0, 16, 4)
        buf = b.buffer(b.rng.randbytes(64))
        cases = [
            (TxStatus.BAD_COUNT, [hdr(opcode=TxOpcode.BATCH, count=0, addr=buf)]),
            (TxStatus.BAD_COUNT, [hdr(opcode=TxOpcode.GATHER, count=TX_MAX_MESSAGES + 1)]),
            (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.SINGLE, length=0, addr=buf)]),
            (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.SINGLE, length=TX_MAX_FRAME + 1,
                                       addr=buf)]),
            (TxStatus.BAD_OPCODE, [hdr(opcode=7, addr=buf, length=8)]),
            (TxStatus.BAD_OPCODE, [hdr(opcode=0xFF)]),
            (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.BATCH, count=3, addr=buf),
                                   pack_image(TxLengths, length0=5, length1=0, length2=7)]),
            (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.GATHER, count=2),
                                   pack_image(TxGatherEntry, addr=buf, length=8),
                                   pack_image(TxGatherEntry, addr=buf, length=TX_MAX_FRAME + 1)]),
            (TxStatus.DMA_ERROR, [hdr(opcode=TxOpcode.SINGLE, length=2 * nb,
                                      addr=(1 << 64) - nb)]),
            (TxStatus.DMA_ERROR, [hdr(opcode=TxOpcode.GATHER, count=1),
                                  pack_image(TxGatherEntry, addr=(1 << 64) - nb, length=nb + 1)]),
            (TxStatus.OK, [hdr(opcode=TxOpcode.NOP, count=99, addr=buf + 1)]),
        ]
        if nb > 1:
            cases += [
                (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.SINGLE, length=8, addr=buf + 1)]),
                (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.BATCH, count=2, addr=buf + nb // 2),
                                       pack_image(TxLengths, length0=5, length1=6)]),
                (TxStatus.BAD_LENGTH, [hdr(opcode=TxOpcode.GATHER, count=2),
                                       pack_image(TxGatherEntry, addr=buf, length=8),
                                       pack_image(TxGatherEntry, addr=buf + 1, length=8)]),
            ]
        b.rng.shuffle(cases)
        for status, slots in cases:
            await b.post(ctx, 0, [slots, b.single(good)])
            expect.append((status, len(slots)))
            expect.append((TxStatus.OK, 1))
        # The doorbell covers only the header of a 3-slot BATCH: BAD_COUNT, header only.
        # Its lengths slots then are read as headers (length0 = 0x07FF: opcode 0xFF).
        await b.post(ctx, 0, [[hdr(opcode=TxOpcode.BATCH, count=9, addr=buf)]])
        await b.drain(ctx)
        await b.post(ctx, 0, [[pack_image(TxLengths, length0=0x7FF)] * 2, b.single(good)])
        expect.extend([(TxStatus.BAD_COUNT, 1), (TxStatus.BAD_OPCODE, 1),
                       (TxStatus.BAD_OPCODE, 1), (TxStatus.OK, 1)])
        await b.drain(ctx)
        assert await b.read(ctx, "TXQ_STATUS") == STATUS_DMA   # the two overflows

    b.run(main)
    b.check()
    items = b.queues[0].items
    assert [(i.status, i.slots) for i in items] == expect
    data_reads = [r for r in b.env.reads if not r[2] & 0x80]
    assert len(data_reads) == sum(1 for s, _ in expect if s == TxStatus.OK) - 1  # the NOP


@pytest.mark.parametrize("data_width", [64, 8])
def test_dma_read_errors(data_width):
    """Failed data reads (SINGLE, in the middle of a BATCH buffer, one GATHER entry) and a
    failed lengths slot give DMA_ERROR completions and the engine goes on. A header that
    cannot be read stops its queue; the other queue keeps running; disable + enable
    restarts it."""
    b = Bench(data_width, 2, SEED + 4 + data_width, limit=60_000, **BACKPRESSURE)
    nb = b.nbytes

    def fault(addr, n=1):
        b.mem.faults.append((addr, addr + n))

    async def main(ctx):
        await b.setup(ctx, 0, 16, 4)
        await b.setup(ctx, 1, 8, 4)
        msgs = [b.rng.randbytes(n) for n in (3 * nb + 1, 2 * nb, 5, 4 * nb)]
        single = b.single(msgs[0])
        fault(unpack_image(TxWorkItem, single[0])["addr"] + nb)
        batch = b.batch(msgs)
        fault(unpack_image(TxWorkItem, batch[0])["addr"] + 3 * nb + 2)     # in message 0's tail
        # A fault in message 1: the error shows on the request's last beat, the 1-byte
        # message 2 (not started: no aborted frame); messages 0 and 1 were sent.
        batch_end = b.batch(msgs[:2] + [b"\x01"])
        fault(unpack_image(TxWorkItem, batch_end[0])["addr"] + 4 * nb + nb - 1)
        gather = b.gather(msgs)
        fault(unpack_image(TxGatherEntry, gather[3])["addr"])                # entry 2: 5 bytes
        for item in (single, batch, batch_end, gather):
            await b.post(ctx, 0, [item, b.single(msgs[1])])
        # A lengths slot that cannot be read: 1 + 2 slots consumed, no halt.
        mq = b.queues[0]
        fault(mq.slot_addr(mq.prod + 2), 16)
        await b.post(ctx, 0, [b.batch(msgs * 3), b.gather(msgs[:1])])
        await b.drain(ctx)
        del b.mem.faults[-1]
        await b.post(ctx, 0, [b.single(msgs[2])])
        # Queue 1: its header slot fails -> one completion, the queue stops.
        mq1 = b.queues[1]
        fault(mq1.slot_addr(mq1.prod + 1), 16)
        await b.post(ctx, 1, [b.single(msgs[0]), b.nop(), b.single(msgs[1])])
        await b.post(ctx, 0, [b.gather(msgs), b.single(msgs[3])])
        await b.drain(ctx)
        assert await b.read(ctx, "TXQ_STATUS", 0) == STATUS_DMA
        assert await b.read(ctx, "TXQ_STATUS", 1) == STATUS_DMA
        assert await b.read(ctx, "TXQ_CONS", 1) == 2
        # Restart queue 1 on a good ring.
        b.mem.faults.clear()
        await b.setup(ctx, 1, 8, 4)
        assert await b.read(ctx, "TXQ_STATUS", 1) == 0
        await b.post(ctx, 1, [b.batch(msgs), b.single(msgs[2])])
        await b.drain(ctx)

    b.run(main)
    seen = b.check()
    old, new = b.history[1]
    assert [i.status for i in old.items] == [TxStatus.OK, TxStatus.DMA_ERROR]
    assert old.items[1].halt and old.items[1].cookie == 0
    assert [i.status for i in new.items] == [TxStatus.OK] * 2 and seen[1] == 4
    items = b.queues[0].items
    statuses = [i.status for i in items]
    assert statuses[:9:2] == [TxStatus.DMA_ERROR] * 5 and statuses.count(TxStatus.DMA_ERROR) == 5
    assert items[0].aborted and items[2].aborted and not items[4].aborted
    assert [len(items[k].frames) for k in (0, 2, 4, 8)] == [0, 3, 2, 0]
    assert any(f[1] for f in b.env.frames), "no aborted frame"


def test_doorbell_and_setup_errors():
    """A doorbell past the ring is ignored and sets STATUS bit 1; bad sizes and addresses
    set bits 0 and 2 at enable and the queue stays idle; disabling clears STATUS; ring
    registers cannot change while the queue is enabled."""
    b = Bench(64, 2, SEED + 5, limit=20_000)

    async def main(ctx):
        mq = await b.setup(ctx, 0, 8, 8)
        await b.post(ctx, 0, [b.single(b"x" * 70)], doorbell=False)
        await b.ring(ctx, 0, value=9)                   # 9 > 8 slots: ignored
        await ctx.tick().repeat(50)
        assert await b.read(ctx, "TXQ_STATUS") == STATUS_DOORBELL
        assert await b.read(ctx, "TXQ_PROD") == 0 and not b.env.reads
        await b.ring(ctx, 0)
        await b.drain(ctx)
        await b.ring(ctx, 0, value=0)                   # backwards: ignored
        assert await b.read(ctx, "TXQ_PROD") == 1
        await b.write(ctx, "TXQ_SIZE", 0, 64)           # enabled: dropped
        assert await b.read(ctx, "TXQ_SIZE") == 8
        await b.write(ctx, "TXQ_CTRL", 0, 0)
        assert await b.read(ctx, "TXQ_STATUS") == 0
        assert await b.read(ctx, "TXQ_CTRL") == 0

        ring = b.mem.alloc(64 * 16, 16)
        top = (1 << 64) - 16
        for size, cq_size, base, cq_base, status in [
                (0, 8, ring, ring, STATUS_BAD_SIZE), (1, 8, ring, ring, STATUS_BAD_SIZE),
                (3, 8, ring, ring, STATUS_BAD_SIZE), (65536, 8, ring, ring, STATUS_BAD_SIZE),
                (65538, 8, ring, ring, STATUS_BAD_SIZE), (8, 6, ring, ring, STATUS_BAD_SIZE),
                (8, 65536, ring, ring, STATUS_BAD_SIZE), (8, 8, ring + 8, ring, STATUS_BAD_ADDR),
                (8, 8, ring, ring + 4, STATUS_BAD_ADDR), (2, 8, top, ring, STATUS_BAD_ADDR),
                (8, 4, ring, top - 16, STATUS_BAD_ADDR), (8, 2, ring, top - 16, 0),
                (1, 2, ring, top - 16, STATUS_BAD_SIZE),
                (1, 2, ring, top, STATUS_BAD_SIZE | STATUS_BAD_ADDR),
                (3, 8, ring + 4, ring, STATUS_BAD_SIZE | STATUS_BAD_ADDR),
                (32768, 32768, ring, ring, 0)]:
            await b.setup(ctx, 1, size, cq_size, base=base, cq_base=cq_base)
            assert await b.read(ctx, "TXQ_STATUS", 1) == status, (size, cq_size, base, cq_base)
            assert await b.read(ctx, "TXQ_SIZE", 1) == size
        # An idle (bad) queue does not fetch, whatever its doorbell says.
        await b.setup(ctx, 1, 3, 8, base=ring, cq_base=ring)
        await b.write(ctx, "TXQ_PROD", 1, 1)
        reads = len(b.env.reads)
        await ctx.tick().repeat(40)
        assert len(b.env.reads) == reads
        b.queues.pop(1)

    b.run(main)
    b.check()


def test_disable_while_busy():
    """Disabling a queue lets its work item in flight finish (frames and a completion in the
    old completion ring); a new setup of the queue waits for it, then starts afresh."""
    b = Bench(64, 2, SEED + 7, limit=60_000, tx_ready=0.5)

    async def main(ctx):
        await b.setup(ctx, 0, 16, 4, start=5)
        await b.setup(ctx, 1, 16, 4)
        await b.post(ctx, 0, [b.batch([b.rng.randbytes(1500) for _ in range(6)])])
        await b.post(ctx, 1, [b.single(b.rng.randbytes(100))])
        while not b.env.tx_beats:
            await ctx.tick()
        await b.write(ctx, "TXQ_CTRL", 0, 0)
        assert not b.env.completions and await b.read(ctx, "TXQ_CONS", 0) == 5
        await b.write(ctx, "TXQ_CQ_BASE_LO", 0, 0)      # held until the work item is done
        assert [c[0] for c in b.env.completions].count(0) == 1
        await b.setup(ctx, 0, 8, 2)
        assert await b.read(ctx, "TXQ_CONS", 0) == 0
        await b.post(ctx, 0, [b.single(b.rng.randbytes(64)), b.gather([b"ab", b"cd"])] * 3)
        await b.drain(ctx)

    b.run(main)
    seen = b.check()
    assert seen[0] == 7 and len(b.history[0][0].items[0].frames) == 6


def test_completion_write_error_and_registers():
    """A completion write that fails sets STATUS bit 3 and the queue goes on; the ring
    registers read back what was written; other rw registers of the window are stored."""
    b = Bench(32, 3, SEED + 8, limit=20_000, write_errors={1})

    async def main(ctx):
        for q in range(3):
            await b.setup(ctx, q, 4 << q, 2, start=0x1234 * q)
        mq = b.queues[2]
        assert await b.read(ctx, "TXQ_BASE_LO", 2) == mq.base & 0xFFFF_FFFF
        assert await b.read(ctx, "TXQ_BASE_HI", 2) == mq.base >> 32
        assert await b.read(ctx, "TXQ_CQ_BASE_LO", 2) == mq.cq_base & 0xFFFF_FFFF
        assert await b.read(ctx, "TXQ_CQ_BASE_HI", 2) == mq.cq_base >> 32
        assert [await b.read(ctx, "TXQ_SIZE", q) for q in range(3)] == [4, 8, 16]
        assert await b.read(ctx, "TXQ_CQ_SIZE", 1) == 2
        assert await b.read(ctx, "TXQ_PROD", 2) == 0x2468
        assert await b.read(ctx, "TXQ_CTRL", 1) == QUEUE_CTRL_ENABLE.mask
        if "TXQ_EQ" in {r.name for r in b.rm.present()}:
            eq_value = QUEUE_EQ_ARM.encode(1) | QUEUE_EQ_QUEUE.encode(5)
            await b.write(ctx, "TXQ_EQ", 1, eq_value)
            assert await b.read(ctx, "TXQ_EQ", 1) == eq_value
            assert await b.read(ctx, "TXQ_EQ", 0) == 0
        await b.post(ctx, 1, [b.single(b"\x01" * 33), b.nop(), b.batch([b"\x02" * 5] * 3)])
        await b.drain(ctx)
        assert [await b.read(ctx, "TXQ_STATUS", q) for q in range(3)] == [0, STATUS_DMA, 0]

    b.run(main)
    b.check()


def test_reads_per_message_and_throughput():
    """BATCH work items need >= 8x fewer DMA reads per message than SINGLE ones, and with a
    DMA and a MAC that never stall frames of BATCH work items leave at about a beat per
    cycle."""
    results = {}
    for kind in ("single", "batch"):
        b = Bench(64, 1, SEED + 6, limit=40_000, latency=(2, 2))
        msgs = [b.rng.randbytes(64) for _ in range(8 * 32)]

        async def main(ctx, b=b, kind=kind, msgs=msgs):
            await b.setup(ctx, 0, 256, 64)
            if kind == "single":
                items = [b.single(m) for m in msgs]
            else:
                items = [b.batch(msgs[k:k + 32]) for k in range(0, len(msgs), 32)]
            for item in items:          # one doorbell per work item, as a driver does
                await b.post(ctx, 0, [item])
            await b.drain(ctx)
            results[kind] = dict(reads=ctx.get(b.dut.dma_reads), beats=b.env.tx_beats,
                                 frames=len(b.env.frames),
                                 cycles=b.env.last_beat - b.env.first_beat + 1)

        b.run(main)
        b.check()
        r = results[kind]
        assert r["reads"] == len(b.env.reads) and r["frames"] == len(msgs)
        print(f"{kind}: {r['reads'] / r['frames']:.3f} DMA reads/message, "
              f"{r['frames'] / r['cycles']:.3f} frames/cycle, "
              f"{r['beats'] / r['cycles']:.3f} beats/cycle")
    ratio = ((results["single"]["reads"] / results["single"]["frames"])
             / (results["batch"]["reads"] / results["batch"]["frames"]))
    print(f"reads per message, SINGLE / BATCH: {ratio:.1f}x")
    assert ratio >= 8
    assert results["batch"]["beats"] / results["batch"]["cycles"] >= 0.9


@pytest.mark.parametrize("args, match", [
    ((48, 1), "data_width must be one of"),
    ((256, 1), "not 256"),
    ((64, 0), "n_queues must be an integer from 1 to 64, not 0"),
    ((64, 65), "not 65"),
    ((64, True), "not True"),
    ((64, 2, RegisterMap(tx_queues=3)), "regmap must be a RegisterMap with tx_queues=2"),
])
def test_parameters(args, match):
    with pytest.raises(ValueError, match=match):
        TxWorkItemEngine(*args[:2], regmap=args[2] if len(args) > 2 else None)
