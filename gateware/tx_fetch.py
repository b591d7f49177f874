"""The fetch side of the TX path: picks a queue, reads its next work item into an on-chip slot
cache, checks it and issues the DMA reads of its message data. See :class:`TxWorkItemFetcher`;
its consumer is :class:`~.tx_engine.TxWorkItemEngine`."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, TxGatherEntry, TxOpcode, TxStatus,
                        TxWorkItem)
from .dma import DmaReadBeat, DmaReadRequest
from .round_robin import RoundRobin
from .tx_queues import WorkItemResult

__all__ = ["TxWorkItemFetcher", "TxQueueFetchSignature", "FetchedWorkItem", "CACHE_SLOTS",
           "TAG_FETCH_BIT", "TAG_LAST_BIT", "check_tx_parameters"]

#: Bits of a work-item slot (every slot layout is as wide as the header).
_SLOT_BITS = TxWorkItem.as_shape().size
#: Work-item slots the on-chip slot cache holds (a power of two, >= the largest work item).
CACHE_SLOTS = 128
_LENGTHS_PER_SLOT = 8
#: Slots of the largest BATCH work item: the header fetch asks for this many while other
#: queues wait, so one request still brings any BATCH work item whole.
_BATCH_MAX_SLOTS = 1 + -(-TX_MAX_MESSAGES // _LENGTHS_PER_SLOT)
#: DMA read tags: bit 7 set on work-item (slot) reads, bit 6 on a work item's last data read;
#: bits 5:0 the queue.
TAG_FETCH_BIT, TAG_LAST_BIT = 7, 6
_TAG_FETCH, _TAG_LAST = 1 << TAG_FETCH_BIT, 1 << TAG_LAST_BIT
_DATA_WIDTHS = (8, 16, 32, 64, 128)


#: A checked work item, from the fetcher to the frame cutter: the fields of
#: :class:`~.tx_queues.WorkItemResult` but ``bytes``. ``slots`` are the slots it consumes,
#: ``messages`` the lengths queued for the cutter (0: no data reads follow).
FetchedWorkItem = data.StructLayout({name: field.shape
                                     for name, field in data.Layout.cast(WorkItemResult)
                                     if name != "bytes"})


class TxQueueFetchSignature(wiring.Signature):
    """What the fetcher needs of the TX queue file, seen from the fetcher (the members of
    :class:`~.tx_queues.TxQueueFile` of the same names, flipped).

    Members
    -------
    runnable : In(n_queues)
        Bit ``q``: queue ``q`` is enabled, not stopped, and has posted slots not fetched.
    sel : Out(range(n_queues))
        The queue the fetcher works on; ``sel_*`` describe it in the same cycle.
    sel_base : In(64)
    sel_mask : In(16)
    sel_prod, sel_head : In(16)
        Ring address, size minus one, producer index and fetch index of ``sel``.
    start_stb : Out(1)
        A work item of ``sel`` starts.
    head_stb : Out(1)
    head_slots : Out(7)
        Advance ``sel``'s fetch index by ``head_slots``.
    halt_stb : Out(1)
        Stop ``sel``: its work-item header could not be read.
    flush_stb : In(1)
    flush_queue : In(range(n_queues))
        Queue ``flush_queue`` is enabled this cycle: cached slots of it are stale.
    """
    def __init__(self, n_queues):
        self.n_queues = n_queues
        super().__init__({
            "runnable": In(n_queues), "sel": Out(range(n_queues)),
            "sel_base": In(64), "sel_mask": In(16), "sel_prod": In(16), "sel_head": In(16),
            "start_stb": Out(1), "head_stb": Out(1), "head_slots": Out(7), "halt_stb": Out(1),
            "flush_stb": In(1), "flush_queue": In(range(n_queues)),
        })


def check_tx_parameters(data_width, n_queues):
    """Raise :exc:`ValueError` unless the TX path can be built for ``data_width`` (8, 16,
    32, 64 or 128: a 16-byte slot is whole beats) and ``n_queues`` (1 to 64)."""
    if data_width not in _DATA_WIDTHS:
        raise ValueError(f"data_width must be one of {', '.join(map(str, _DATA_WIDTHS))}, "
                         f"not {data_width!r}")
    if isinstance(n_queues, bool) or not isinstance(n_queues, int) or not 1 <= n_queues <= 64:
        raise ValueError(f"n_queues must be an integer from 1 to 64, not {n_queues!r}")


def _min(a, b):
    return Mux(a < b, a, b)


def _overflows(addr, length):
    """``addr + length > 2**64``: the buffer runs past the top of the address space."""
    total = addr + length
    return total[64] & (total[:64] != 0)


def _length_ok(length):
    return (length >= 1) & (length <= TX_MAX_FRAME)


class _Registers:
    """The fetcher's registers: the queue served, its ring, the cached slot window
    ``[head, hi)`` and the work item being checked and read."""
    def __init__(self, n_queues, beats_per_slot):
        # the queue served and its ring (``LATCH``)
        self.q = Signal(range(n_queues))
        self.base = Signal(64)
        self.mask = Signal(16)
        self.prod = Signal(16)
        self.head = Signal(16)
        # the slot cache: slots [head, hi) of queue cache_q are cached
        self.cache_valid = Signal(1)
        self.cache_q = Signal(range(n_queues))
        self.hi = Signal(16)
        self.have = Signal(16)                  # hi - head (combinational)
        self.fetch_count = Signal(range(CACHE_SLOTS + 1))    # slots the slot read brings
        self.fetch_beat = Signal(range(beats_per_slot))
        self.fetch_slot = Signal(range(CACHE_SLOTS + 1))
        self.acc = Signal(_SLOT_BITS)           # beats of a slot being assembled
        # the work item
        self.need = Signal(range(CACHE_SLOTS))  # slots from head that must be cached
        self.slots = Signal(7)                  # slots the work item consumes
        self.hdr_known = Signal(1)              # the header has been read
        self.exact = Signal(1)                  # a retry asks for exactly ``need``
        self.fetch_err = Signal(1)              # the last slot read failed
        self.opcode = Signal(TxOpcode)
        self.count = Signal(8)
        self.length = Signal(16)
        self.cookie = Signal(32)
        self.addr = Signal(64)
        self.status = Signal(TxStatus)
        self.n_msgs = Signal(7)
        # its data reads
        self.total = Signal(20)                 # BATCH: bytes of the packed buffer
        self.rem = Signal(20)                   # ... not yet requested
        self.cur_addr = Signal(64)
        self.msg = Signal(                      # message (length) index
            range(TX_MAX_MESSAGES + _LENGTHS_PER_SLOT + 1))
        self.lane = Signal(3)


class TxWorkItemFetcher(wiring.Component):
    """Work items in, checked work items and DMA read requests for their data out.

    One work item at a time, queues served round robin (:class:`~.round_robin.RoundRobin`
    over ``queues.runnable``). For a work item the fetcher, one FSM state per cycle:

    1. ``SELECT`` picks the queue, ``LATCH`` latches its ring from ``queues.sel_*`` and
       pulses ``queues.start_stb``;
    2. ``ENSURE`` checks that the slots it needs are in the 128-slot cache, else issues one
       slot read (tag bit ``TAG_FETCH_BIT`` set, bits 5:0 the queue) and ``FETCH`` takes its
       beats from ``slot_data`` (``128 / W`` per slot) into the cache. A read brings the
       posted slots after the cached ones, up to the ring's end and up to 128 slots ahead
       of the fetch index while no other queue is runnable, else up to a whole BATCH (9);
       after a failed read, exactly the slots the work item needs;
    3. ``HEADER`` checks the header; a BATCH or GATHER goes back to ``ENSURE`` for the
       slots its count implies, then ``CHECK`` checks one of them per cycle (the checks
       are those :class:`~.tx_engine.TxWorkItemEngine` documents);
    4. ``RECORD`` writes the :data:`FetchedWorkItem` into the 2-entry ``jobs`` FIFO (waiting
       while it is full) and consumes its slots (``queues.head_stb``, ``head_slots``);
    5. a good work item with messages then issues its data reads on ``rd_req``: SINGLE one,
       GATHER one per entry (one per cycle), BATCH reads of at most ``65536 - W/8`` bytes
       of the packed buffer after ``LENGTHS`` has queued its lengths, one per cycle. The
       last read of a work item has tag bit ``TAG_LAST_BIT`` set. A message's length is in
       ``lengths`` no later than the read that brings its data.

    So a SINGLE work item whose slot is cached takes 6 cycles (with ``rd_req`` and both
    FIFOs ready), a cached GATHER of ``n`` messages ``6 + 2n``. A header that cannot be
    read yields a ``DMA_ERROR`` work item that consumes one slot and stops its queue
    (``queues.halt_stb``); any other failed slot read, a ``DMA_ERROR`` work item of the
    slots its header names. A queue enabled anew (``queues.flush_stb``) loses its cached
    slots.

    Parameters
    ----------
    data_width : int
        W: 8, 16, 32, 64 or 128.
    n_queues : int
        TX queues, 1 to 64.

    Members
    -------
    queues : Out(TxQueueFetchSignature(n_queues))
        The TX queue file.
    rd_req : Out(stream.Signature(DmaReadRequest))
        Slot and data reads.
    slot_data : In(stream.Signature(DmaReadBeat(W)))
        The beats of the slot reads (tag bit 7 set), in request order. ``ready`` is high
        only while a slot read is outstanding.
    jobs : Out(stream.Signature(FetchedWorkItem))
        Checked work items, in the order their data reads are issued.
    lengths : Out(stream.Signature(16))
        Message lengths in bytes, in the order of the frames.
    """
    def __init__(self, data_width, n_queues):
        check_tx_parameters(data_width, n_queues)
        self.data_width, self.n_queues = data_width, n_queues
        super().__init__({
            "queues": Out(TxQueueFetchSignature(n_queues)),
            "rd_req": Out(stream.Signature(DmaReadRequest)),
            "slot_data": In(stream.Signature(DmaReadBeat(data_width))),
            "jobs": Out(stream.Signature(FetchedWorkItem)),
            "lengths": Out(stream.Signature(16)),
        })

    def elaborate(self, platform):
        m = Module()
        # Message lengths to the cutter: a whole work item's lengths are queued before its
        # BATCH read is issued, so this holds two of the largest.
        m.submodules.length_fifo = lengths = SyncFIFOBuffered(width=16,
                                                              depth=2 * TX_MAX_MESSAGES)
        m.submodules.job_fifo = jobs = SyncFIFOBuffered(width=FetchedWorkItem.size, depth=2)
        for port, fifo in ((self.lengths, lengths), (self.jobs, jobs)):
            m.d.comb += [port.valid.eq(fifo.r_rdy), port.payload.eq(fifo.r_data),
                         fifo.r_en.eq(port.ready)]

        m.submodules.cache = cache = Memory(shape=_SLOT_BITS, depth=CACHE_SLOTS, init=[])
        wp = cache.write_port()
        rp = cache.read_port(transparent_for=(wp,))
        # ``slot`` is always the cached slot at free-running index ``ptr``: the read port is
        # addressed with the value ``ptr`` takes at the next edge (``ptr_d``).
        ptr, ptr_d = Signal(16), Signal(16)
        m.d.comb += [ptr_d.eq(ptr), rp.addr.eq(ptr_d)]
        m.d.sync += ptr.eq(ptr_d)
        r = _Registers(self.n_queues, _SLOT_BITS // self.data_width)
        m.d.comb += [self.queues.sel.eq(r.q), r.have.eq(r.hi - r.head)]
        with m.If(self.queues.flush_stb & (self.queues.flush_queue == r.cache_q)):
            m.d.sync += r.cache_valid.eq(0)

        with m.FSM(name="fetch"):
            self._select(m, r)
            self._fill_cache(m, r, ptr_d, wp)
            self._check_header(m, r, rp.data)
            self._check_slots(m, r, ptr, ptr_d, rp.data)
            self._record(m, r, ptr_d, jobs)
            self._data_reads(m, r, ptr, ptr_d, rp.data, lengths)
        return m

    def _issue(self, m, addr, length, tag):
        m.d.comb += [self.rd_req.payload.addr.eq(addr), self.rd_req.payload.length.eq(length),
                     self.rd_req.payload.tag.eq(tag)]

    def _misaligned(self, addr):
        align_bits = (self.data_width // 8).bit_length() - 1
        return addr[:align_bits] != 0 if align_bits else Const(0)

    def _select(self, m, r):
        """SELECT the next runnable queue (round robin), LATCH its ring."""
        queues = self.queues
        m.submodules.round_robin = rr = RoundRobin(self.n_queues)
        m.d.comb += rr.requests.eq(queues.runnable)
        with m.State("SELECT"):
            m.d.comb += rr.served_stb.eq(1)
            with m.If(rr.valid):
                m.d.sync += r.q.eq(rr.grant)
                m.next = "LATCH"

        with m.State("LATCH"):
            m.d.comb += queues.start_stb.eq(1)
            m.d.sync += [r.base.eq(queues.sel_base), r.mask.eq(queues.sel_mask),
                         r.prod.eq(queues.sel_prod), r.head.eq(queues.sel_head),
                         r.need.eq(1), r.hdr_known.eq(0), r.exact.eq(0), r.fetch_err.eq(0),
                         r.cookie.eq(0), r.opcode.eq(TxOpcode.NOP)]
            with m.If(~r.cache_valid | (r.cache_q != r.q)):
                m.d.sync += [r.cache_valid.eq(1), r.cache_q.eq(r.q), r.hi.eq(queues.sel_head)]
            m.next = "ENSURE"

    def _fill_cache(self, m, r, ptr_d, wp):
        """ENSURE the slots ``[head, head + need)`` are cached, FETCH those missing, or FAIL
        the work item when they cannot be read."""
        w = self.data_width
        beats_per_slot = _SLOT_BITS // w
        req, beat, have = self.rd_req, self.slot_data.payload, r.have
        # Fetch size: posted slots, up to the ring's end, up to the look-ahead.
        # After a failed read, only the slots the work item needs (``exact``).
        others = (self.queues.runnable & ~(Const(1, self.n_queues) << r.q)[:self.n_queues]).any()
        want = Mux(r.exact | r.fetch_err | (others & r.hdr_known), r.need,
                   Mux(others, _BATCH_MAX_SLOTS, CACHE_SLOTS))
        to_end = Signal(17)
        fetch_n = Signal(range(CACHE_SLOTS + 1))
        m.d.comb += [
            to_end.eq(r.mask + 1 - (r.hi & r.mask)),
            fetch_n.eq(_min(_min((r.prod - r.hi)[:16], to_end), want - have)),
        ]

        with m.State("ENSURE"):
            with m.If(have >= r.need):
                with m.If(~r.hdr_known):
                    m.d.comb += ptr_d.eq(r.head)
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += ptr_d.eq(r.head + 1)
                    m.d.sync += [r.msg.eq(0), r.total.eq(0)]
                    m.next = "CHECK"
            with m.Elif(r.fetch_err & r.exact):
                m.next = "FAIL"
            with m.Else():
                m.d.comb += req.valid.eq(1)
                self._issue(m, r.base + ((r.hi & r.mask) << 4), fetch_n << 4, _TAG_FETCH | r.q)
                with m.If(req.ready):
                    m.d.sync += [r.fetch_count.eq(fetch_n), r.fetch_beat.eq(0),
                                 r.fetch_slot.eq(0), r.exact.eq(r.exact | r.fetch_err),
                                 r.fetch_err.eq(0)]
                    m.next = "FETCH"

        with m.State("FETCH"):         # slot beats into the cache, after ``hi``
            m.d.comb += self.slot_data.ready.eq(1)
            with m.If(self.slot_data.valid):
                whole = Cat(r.acc[w:], beat.data) if beats_per_slot > 1 else beat.data
                slot_done = (r.fetch_beat == beats_per_slot - 1
                             if beats_per_slot > 1 else Const(1))
                if beats_per_slot > 1:
                    m.d.sync += [r.acc.eq(whole),
                                 r.fetch_beat.eq(Mux(slot_done, 0, r.fetch_beat + 1))]
                with m.If(slot_done):
                    m.d.comb += [wp.en.eq(1), wp.addr.eq(r.hi + r.fetch_slot),
                                 wp.data.eq(whole)]
                    m.d.sync += r.fetch_slot.eq(r.fetch_slot + 1)
                with m.If(beat.last):
                    # A failed read brings nothing (the error is only known at its end).
                    with m.If(beat.error):
                        m.d.sync += r.fetch_err.eq(1)
                    with m.Else():
                        m.d.sync += r.hi.eq(r.hi + r.fetch_count)
                    m.next = "ENSURE"

        with m.State("FAIL"):
            m.d.sync += [r.status.eq(TxStatus.DMA_ERROR),
                         r.slots.eq(Mux(r.hdr_known, r.need, 1))]
            # Without its header the work item's extent is unknown: the queue stops.
            m.d.comb += self.queues.halt_stb.eq(~r.hdr_known)
            m.next = "RECORD"

    def _check_header(self, m, r, slot):
        """HEADER: parse and check the header slot; a BATCH or GATHER goes back to ENSURE
        for the slots its count implies."""
        hdr = TxWorkItem(slot)
        item_slots = 1 + Mux(hdr.opcode == TxOpcode.BATCH,
                             (hdr.count + _LENGTHS_PER_SLOT - 1) >> 3, hdr.count)
        with m.State("HEADER"):
            m.d.sync += [r.opcode.eq(hdr.opcode), r.count.eq(hdr.count),
                         r.length.eq(hdr.length), r.cookie.eq(hdr.cookie), r.addr.eq(hdr.addr),
                         r.hdr_known.eq(1), r.status.eq(TxStatus.OK), r.slots.eq(1),
                         r.n_msgs.eq(0), r.total.eq(0)]
            m.next = "RECORD"
            with m.Switch(hdr.opcode):
                with m.Case(TxOpcode.NOP):
                    pass
                with m.Case(TxOpcode.SINGLE):
                    m.d.sync += r.n_msgs.eq(1)
                    with m.If(~_length_ok(hdr.length) | self._misaligned(hdr.addr)):
                        m.d.sync += r.status.eq(TxStatus.BAD_LENGTH)
                    with m.Elif(_overflows(hdr.addr, hdr.length)):
                        m.d.sync += r.status.eq(TxStatus.DMA_ERROR)
                with m.Case(TxOpcode.BATCH, TxOpcode.GATHER):
                    with m.If((hdr.count == 0) | (hdr.count > TX_MAX_MESSAGES) |
                              (item_slots > (r.prod - r.head)[:16])):
                        m.d.sync += r.status.eq(TxStatus.BAD_COUNT)
                    with m.Else():
                        m.d.sync += [r.n_msgs.eq(hdr.count), r.slots.eq(item_slots),
                                     r.need.eq(item_slots)]
                        with m.If((hdr.opcode == TxOpcode.BATCH) & self._misaligned(hdr.addr)):
                            m.d.sync += r.status.eq(TxStatus.BAD_LENGTH)
                        with m.Else():
                            m.next = "ENSURE"
                with m.Default():
                    m.d.sync += r.status.eq(TxStatus.BAD_OPCODE)

    def _check_slots(self, m, r, ptr, ptr_d, slot):
        """CHECK the slots after the header, one per cycle: BATCH lengths (summing the packed
        buffer's size) or GATHER entries."""
        nbytes = self.data_width // 8
        align_bits = nbytes.bit_length() - 1
        with m.State("CHECK"):
            m.d.comb += ptr_d.eq(ptr + 1)
            with m.If(r.opcode == TxOpcode.BATCH):
                bad, padded = Const(0), []
                for j in range(_LENGTHS_PER_SLOT):
                    lj = slot[16 * j:16 * j + 16]
                    used = (r.msg + j) < r.count
                    bad |= used & ~_length_ok(lj)
                    padded.append(Mux(used, ((lj + nbytes - 1) >> align_bits) << align_bits,
                                      0))
                m.d.sync += [r.total.eq(r.total + sum(padded)),
                             r.msg.eq(r.msg + _LENGTHS_PER_SLOT)]
                with m.If(bad & (r.status == TxStatus.OK)):
                    m.d.sync += r.status.eq(TxStatus.BAD_LENGTH)
            with m.Else():
                entry = TxGatherEntry(slot)
                with m.If(r.status == TxStatus.OK):
                    with m.If(~_length_ok(entry.length) | self._misaligned(entry.addr)):
                        m.d.sync += r.status.eq(TxStatus.BAD_LENGTH)
                    with m.Elif(_overflows(entry.addr, entry.length)):
                        m.d.sync += r.status.eq(TxStatus.DMA_ERROR)
            with m.If((ptr - r.head)[:16] == r.need - 1):
                m.next = "RECORD"

    def _record(self, m, r, ptr_d, jobs):
        """RECORD: hand the work item to ``jobs`` and consume its slots; go on to its data
        reads if it is good and has messages."""
        batch_overflow = (r.opcode == TxOpcode.BATCH) & _overflows(r.addr, r.total)
        final_status = Mux(batch_overflow & (r.status == TxStatus.OK), TxStatus.DMA_ERROR,
                           r.status)
        with m.State("RECORD"):
            job = FetchedWorkItem(jobs.w_data)
            m.d.comb += [
                jobs.w_en.eq(1),
                job.queue.eq(r.q), job.cookie.eq(r.cookie), job.wqe_index.eq(r.head & r.mask),
                job.slots.eq(r.slots), job.status.eq(final_status),
                job.messages.eq(Mux(final_status == TxStatus.OK, r.n_msgs, 0)),
            ]
            with m.If(jobs.w_rdy):
                m.d.comb += [self.queues.head_stb.eq(1), self.queues.head_slots.eq(r.slots),
                             ptr_d.eq(r.head + 1)]
                with m.If(r.have < r.slots):
                    m.d.sync += r.hi.eq(r.head + r.slots)
                m.d.sync += [r.msg.eq(0), r.lane.eq(0), r.cur_addr.eq(r.addr),
                             r.rem.eq(r.total)]
                with m.If((final_status != TxStatus.OK) | (r.n_msgs == 0)):
                    m.next = "SELECT"
                with m.Elif(r.opcode == TxOpcode.SINGLE):
                    m.next = "SINGLE"
                with m.Elif(r.opcode == TxOpcode.BATCH):
                    m.next = "LENGTHS"
                with m.Else():
                    m.next = "GATHER"

    def _data_reads(self, m, r, ptr, ptr_d, slot, lengths):
        """SINGLE, LENGTHS then BATCH, or GATHER: the data reads of a good work item. A
        message's length is queued no later than the read that brings it."""
        req = self.rd_req
        chunk = 65536 - self.data_width // 8        # longest aligned read request
        with m.State("SINGLE"):
            m.d.comb += [req.valid.eq(lengths.w_rdy), lengths.w_data.eq(r.length),
                         lengths.w_en.eq(req.valid & req.ready)]
            self._issue(m, r.addr, r.length, _TAG_LAST | r.q)
            with m.If(req.valid & req.ready):
                m.next = "SELECT"

        with m.State("LENGTHS"):       # BATCH: queue the lengths, one per cycle
            last_msg = r.msg == r.count - 1
            m.d.comb += [lengths.w_en.eq(1), lengths.w_data.eq(slot.word_select(r.lane, 16))]
            with m.If(lengths.w_rdy):
                m.d.sync += [r.msg.eq(r.msg + 1), r.lane.eq(r.lane + 1)]
                with m.If((r.lane == _LENGTHS_PER_SLOT - 1) | last_msg):
                    m.d.comb += ptr_d.eq(ptr + 1)
                with m.If(last_msg):
                    m.next = "BATCH"

        with m.State("BATCH"):         # the packed buffer, in as few reads as possible
            final = r.rem <= chunk
            size = Mux(final, r.rem, chunk)
            m.d.comb += req.valid.eq(1)
            self._issue(m, r.cur_addr, size, Mux(final, _TAG_LAST, 0) | r.q)
            with m.If(req.ready):
                m.d.sync += [r.cur_addr.eq(r.cur_addr + size), r.rem.eq(r.rem - size)]
                with m.If(final):
                    m.next = "SELECT"

        with m.State("GATHER"):
            entry = TxGatherEntry(slot)
            final = r.msg == r.count - 1
            m.d.comb += [req.valid.eq(lengths.w_rdy), lengths.w_data.eq(entry.length),
                         lengths.w_en.eq(req.valid & req.ready)]
            self._issue(m, entry.addr, entry.length, Mux(final, _TAG_LAST, 0) | r.q)
            with m.If(req.valid & req.ready):
                m.d.comb += ptr_d.eq(ptr + 1)
                m.d.sync += r.msg.eq(r.msg + 1)
                with m.If(final):
                    m.next = "SELECT"
