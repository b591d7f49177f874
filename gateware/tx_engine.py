"""The TX work-item engine: work items in host memory in, frames to the MAC and completions out.

One work item carries one message (SINGLE), many messages packed in one buffer (BATCH) or many
messages in separate buffers (GATHER); the engine fetches it with as few DMA reads as the ring
layout allows, reads the message data with one read per buffer, emits one frame per message
and writes one :class:`~hetnic.protocol.TxCompletion` per work item. See
:class:`TxWorkItemEngine`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, TxGatherEntry, TxOpcode, TxStatus,
                        TxWorkItem)
from ..regs import RegisterMap
from .axil import CsrSignature
from .beat import Beat
from .dma import dma_read_client, dma_write_client
from .tx_queues import SLOT_BYTES, TxQueueFile, WorkItemResult

__all__ = ["TxWorkItemEngine"]

_DATA_WIDTHS = (8, 16, 32, 64, 128)
#: Work-item slots the on-chip slot cache holds (a power of two, >= the largest work item).
CACHE_SLOTS = 128
_LENGTHS_PER_SLOT = 8
#: Slots of the largest BATCH work item: the header fetch asks for this many while other
#: queues wait, so one request still brings any BATCH work item whole.
_BATCH_MAX_SLOTS = 1 + -(-TX_MAX_MESSAGES // _LENGTHS_PER_SLOT)
#: DMA read tags: bit 7 set for work-item fetches, bit 6 on a work item's last data read;
#: bits 5:0 the queue.
_TAG_FETCH, _TAG_LAST = 0x80, 0x40


class _Job(data.Struct):
    """A parsed work item, from the fetch side to the frame cutter."""
    queue: 6
    cookie: 32
    wqe_index: 16
    slots: 7            # slots the work item consumes
    status: TxStatus
    messages: 7         # lengths queued for the cutter; 0: no data reads follow


def _min(a, b):
    return Mux(a < b, a, b)


def _overflows(addr, length):
    """``addr + length > 2**64``: the buffer runs past the top of the address space."""
    total = addr + length
    return total[64] & (total[:64] != 0)


def _length_ok(length):
    return (length >= 1) & (length <= TX_MAX_FRAME)


class TxWorkItemEngine(wiring.Component):
    """The TX path of the NIC core: TX work items in, frames and completions out.

    Queues are served round robin, one work item at a time. For a work item the engine

    1. reads its slots from the work-item ring into a 128-slot on-chip cache. One read
       brings the header and, when they are contiguous and posted, the slots after it; it
       reads up to 128 slots ahead of the queue's fetch index while no other queue waits
       (later work items of the same queue then need no read), else up to 9 (a whole
       BATCH). A work item that wraps around its ring takes two reads. A read that fails is
       retried with exactly the slots the work item needs;
    2. checks it: known opcode; for BATCH and GATHER ``1 <= count <= TX_MAX_MESSAGES`` and
       every slot it needs below ``PROD``; every length ``1 .. TX_MAX_FRAME``; addresses
       aligned to ``data_width // 8``; no buffer past ``2**64``. A malformed work item reads
       no data, completes with its :class:`TxStatus` and consumes its header and the slots
       its count implies (only the header when the count is invalid or not all posted);
    3. reads the message data: SINGLE one read, GATHER one per entry, BATCH one read of the
       whole packed buffer (split into requests of at most ``65536 - data_width // 8`` bytes
       when it is larger) that is cut into messages;
    4. emits one frame per message on ``tx`` (``keep`` on the last beat only, ``error`` 0);
    5. writes one :class:`~hetnic.protocol.TxCompletion` (``wqe_index`` = ring position of
       the header, ``messages``/``bytes`` = frames and bytes sent) with a 16-byte DMA write,
       waits for its done, then advances ``CONS`` by the slots consumed and ``CQ_PROD`` by
       one, and pulses ``completion_stb``.

    Timing. Steps 1-3 of the next work items overlap steps 4-5 of the current one, so frames
    leave back to back at one beat per cycle while the DMA and the MAC do not stall, less one
    idle cycle per work item and the cycles its slot reads take on ``rd_data`` (BATCH work
    items of 32 x 64 bytes at W = 64 with a doorbell each: 0.95 beats, 0.119 frames per
    cycle). Data beats pass from ``rd_data`` to ``tx`` without a register: ``tx.valid``
    follows ``rd_data.valid`` and ``rd_data.ready`` follows ``tx.ready`` combinationally.
    The fetch side works on one work item at a time, so SINGLE work items each needing their
    own slot read stream at well below a beat per cycle (the baseline path).

    Errors. A work-item header that cannot be read completes with ``DMA_ERROR`` and cookie 0
    and stops its queue (``STATUS`` bit 3; disable and enable it to restart). Any other DMA
    read error completes the work item with ``DMA_ERROR`` (``STATUS`` bit 3) and the engine
    goes on. As :class:`~.dma.DmaEngine` reports a read error on the request's last beat, the
    frames of that request before it have been sent (counted in the completion); the frame
    in progress at the error ends with a beat with ``last`` and ``error`` set, and no further
    frame of the work item is sent. Register semantics: :class:`~.tx_queues.TxQueueFile`.

    Parameters
    ----------
    data_width : int
        W, bits per beat of ``tx`` and of the DMA client ports: 8, 16, 32, 64 or 128 (the
        16-byte work-item slots must be whole beats).
    n_queues : int
        TX queues, 1 to 64.
    regmap : RegisterMap or None
        The register map of the design the engine is part of (its ``tx_queues`` must equal
        ``n_queues``); by default ``RegisterMap(tx_queues=n_queues, data_bytes=W // 8)``.

    Members
    -------
    csr : In(CsrSignature(16))
        The ``TXQ_*`` registers of ``regmap`` (full byte addresses).
    rd_req : Out(stream.Signature(DmaReadRequest))
    rd_data : In(stream.Signature(DmaReadBeat(W)))
        One DMA read client. Tags: bit 7 set on work-item reads, bit 6 on a work item's last
        data read, bits 5:0 the queue.
    wr_req : Out(stream.Signature(DmaWriteRequest))
    wr_data : Out(stream.Signature(DmaWriteBeat(W)))
    wr_done : In(stream.Signature(DmaWriteDone))
        One DMA write client: completions only (16 bytes each, tag = queue).
    tx : Out(stream.Signature(Beat(W)))
        Frames to the MAC; byte lane ``k`` of a beat is the frame byte ``k`` after the beat's
        first (the buffer's bytes in memory order).
    completion_stb : Out(1)
    completion_queue : Out(range(n_queues))
        A completion of ``completion_queue`` has been written (one cycle after its done).
    event_stb, event_queue : Out
        Pulses with ``completion_stb`` when that queue was armed (``TXQ_EQ`` bit 8, which it
        clears): a ``TX_COMPLETION`` event for event queue ``event_queue`` (``TXQ_EQ`` 5:0).
    dma_reads : Out(32)
        Free-running count of DMA read requests issued (work items and data).
    """
    def __init__(self, data_width, n_queues, *, regmap=None):
        if data_width not in _DATA_WIDTHS:
            self._MustUse__silence = True
            raise ValueError(f"data_width must be one of {', '.join(map(str, _DATA_WIDTHS))}, "
                             f"not {data_width!r}")
        if (not isinstance(n_queues, int) or isinstance(n_queues, bool)
                or not 1 <= n_queues <= 64):
            self._MustUse__silence = True
            raise ValueError(f"n_queues must be an integer from 1 to 64, not {n_queues!r}")
        if regmap is None:
            regmap = RegisterMap(tx_queues=n_queues, data_bytes=data_width // 8)
        elif not isinstance(regmap, RegisterMap) or regmap.params["tx_queues"] != n_queues:
            self._MustUse__silence = True
            raise ValueError(f"regmap must be a RegisterMap with tx_queues={n_queues}, "
                             f"not {regmap!r}")
        self.data_width, self.n_queues, self.regmap = data_width, n_queues, regmap
        super().__init__({
            "csr": In(CsrSignature(16)),
            **dma_read_client(data_width),
            **dma_write_client(data_width),
            "tx": Out(stream.Signature(Beat(data_width))),
            "completion_stb": Out(1),
            "completion_queue": Out(range(n_queues)),
            "event_stb": Out(1), "event_queue": Out(6),
            "dma_reads": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queues = queues = TxQueueFile(self.regmap, self.data_width)
        wiring.connect(m, wiring.flipped(self.csr), queues.csr)
        for name in ("wr_req", "wr_data", "wr_done"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(queues, name))
        m.d.comb += [self.completion_stb.eq(queues.completion_stb),
                     self.completion_queue.eq(queues.completion_queue),
                     self.event_stb.eq(queues.event_stb), self.event_queue.eq(queues.event_queue)]
        # Message lengths from the fetch side to the cutter: a whole work item's lengths are
        # queued before its BATCH read is issued, so this holds two of the largest.
        m.submodules.lengths = lengths = SyncFIFOBuffered(width=16, depth=2 * TX_MAX_MESSAGES)
        m.submodules.jobs = jobs = SyncFIFOBuffered(width=_Job.as_shape().size, depth=2)
        # Finished work items wait here while the queue file writes their completions.
        m.submodules.dones = dones = SyncFIFOBuffered(
            width=WorkItemResult.as_shape().size, depth=2)
        m.d.comb += [queues.result.valid.eq(dones.r_rdy), dones.r_en.eq(queues.result.ready),
                     queues.result.payload.eq(dones.r_data)]

        # Read data is routed by tag: work-item slots to the fetch side, the rest to the cutter.
        fetch_ready, data_ready = Signal(), Signal()
        m.d.comb += self.rd_data.ready.eq(Mux(self.rd_data.payload.tag[7], fetch_ready,
                                              data_ready))
        with m.If(self.rd_req.valid & self.rd_req.ready):
            m.d.sync += self.dma_reads.eq(self.dma_reads + 1)

        self._fetch(m, queues, lengths, jobs, fetch_ready)
        self._cutter(m, lengths, jobs, dones, data_ready)
        return m

    # --- fetch side: pick a queue, fetch and check a work item, queue its data reads -------
    def _fetch(self, m, queues, lengths, jobs, fetch_ready):
        n, w, nbytes = self.n_queues, self.data_width, self.data_width // 8
        beats_per_slot = 8 * SLOT_BYTES // w
        align_bits = nbytes.bit_length() - 1
        chunk = 65536 - nbytes                      # longest aligned read request
        req, beat = self.rd_req, self.rd_data.payload

        m.submodules.cache = cache = Memory(shape=8 * SLOT_BYTES, depth=CACHE_SLOTS, init=[])
        wp = cache.write_port()
        rp = cache.read_port(transparent_for=(wp,))
        # ``slot`` is always the cached slot at free-running index ``ptr``: the read port is
        # addressed with the value ``ptr`` takes at the next edge.
        ptr, ptr_d = Signal(16), Signal(16)
        m.d.comb += [ptr_d.eq(ptr), rp.addr.eq(ptr_d)]
        m.d.sync += ptr.eq(ptr_d)
        slot = rp.data

        q, rr_last = Signal(range(n)), Signal(range(n))
        base, mask, prod, head = Signal(64), Signal(16), Signal(16), Signal(16)
        cache_valid, cache_q, hi = Signal(), Signal(range(n)), Signal(16)  # cache: [head, hi)
        need, slots = Signal(range(CACHE_SLOTS)), Signal(7)
        hdr_known, exact, fetch_err = Signal(), Signal(), Signal()
        opcode, count, length = Signal(TxOpcode), Signal(8), Signal(16)
        cookie, addr = Signal(32), Signal(64)
        status, n_msgs = Signal(TxStatus), Signal(7)
        total, rem, cur_addr = Signal(20), Signal(20), Signal(64)
        msg, lane = Signal(range(TX_MAX_MESSAGES + _LENGTHS_PER_SLOT + 1)), Signal(3)
        fetch_count = Signal(range(CACHE_SLOTS + 1))
        fetch_beat, fetch_slot = Signal(range(beats_per_slot)), Signal(range(CACHE_SLOTS + 1))
        acc = Signal(8 * SLOT_BYTES)

        have = Signal(16)
        m.d.comb += [queues.sel.eq(q), have.eq(hi - head)]

        def misaligned(a):
            return a[:align_bits] != 0 if align_bits else Const(0)

        def issue(a, nbytes_, tag):
            m.d.comb += [req.payload.addr.eq(a), req.payload.length.eq(nbytes_),
                         req.payload.tag.eq(tag)]

        # Round robin: the first runnable queue after the last one served.
        runnable = queues.runnable
        rotated = (Cat(runnable, runnable) >> (rr_last + 1))[:n]
        first = Signal(range(n))
        for i in reversed(range(n)):
            with m.If(rotated[i]):
                m.d.comb += first.eq(i)
        pick = rr_last + 1 + first
        others = (runnable & ~(Const(1, n) << q)[:n]).any()

        # Fetch size: posted slots, up to the ring's end, up to the look-ahead.
        # After a failed read, only the slots the work item needs (``exact``).
        want = Mux(exact | fetch_err | (others & hdr_known), need,
                   Mux(others, _BATCH_MAX_SLOTS, CACHE_SLOTS))
        to_end = Signal(17)
        fetch_n = Signal(range(CACHE_SLOTS + 1))
        m.d.comb += [
            to_end.eq(mask + 1 - (hi & mask)),
            fetch_n.eq(_min(_min((prod - hi)[:16], to_end), want - have)),
        ]
        batch_overflow = (opcode == TxOpcode.BATCH) & _overflows(addr, total)
        final_status = Mux(batch_overflow & (status == TxStatus.OK), TxStatus.DMA_ERROR, status)

        with m.FSM(name="fetch"):
            with m.State("SELECT"):
                with m.If(runnable.any()):
                    m.d.sync += [q.eq(Mux(pick >= n, pick - n, pick)),
                                 rr_last.eq(Mux(pick >= n, pick - n, pick))]
                    m.next = "LATCH"

            with m.State("LATCH"):
                m.d.comb += queues.start_stb.eq(1)
                m.d.sync += [base.eq(queues.sel_base), mask.eq(queues.sel_mask),
                             prod.eq(queues.sel_prod), head.eq(queues.sel_head),
                             need.eq(1), hdr_known.eq(0), exact.eq(0), fetch_err.eq(0),
                             cookie.eq(0), opcode.eq(TxOpcode.NOP)]
                with m.If(~cache_valid | (cache_q != q)):
                    m.d.sync += [cache_valid.eq(1), cache_q.eq(q), hi.eq(queues.sel_head)]
                m.next = "ENSURE"

            with m.State("ENSURE"):        # the slots [head, head + need) are cached?
                with m.If(have >= need):
                    with m.If(~hdr_known):
                        m.d.comb += ptr_d.eq(head)
                        m.next = "HEADER"
                    with m.Else():
                        m.d.comb += ptr_d.eq(head + 1)
                        m.d.sync += [msg.eq(0), total.eq(0)]
                        m.next = "CHECK"
                with m.Elif(fetch_err & exact):
                    m.next = "FAIL"
                with m.Else():
                    m.d.comb += req.valid.eq(1)
                    issue(base + ((hi & mask) << 4), fetch_n << 4, _TAG_FETCH | q)
                    with m.If(req.ready):
                        m.d.sync += [fetch_count.eq(fetch_n), fetch_beat.eq(0),
                                     fetch_slot.eq(0), exact.eq(exact | fetch_err),
                                     fetch_err.eq(0)]
                        m.next = "FETCH"

            with m.State("FETCH"):         # slot beats into the cache, after ``hi``
                m.d.comb += fetch_ready.eq(1)
                with m.If(self.rd_data.valid & beat.tag[7]):
                    whole = Cat(acc[w:], beat.data) if beats_per_slot > 1 else beat.data
                    slot_done = (fetch_beat == beats_per_slot - 1
                                 if beats_per_slot > 1 else Const(1))
                    if beats_per_slot > 1:
                        m.d.sync += [acc.eq(whole),
                                     fetch_beat.eq(Mux(slot_done, 0, fetch_beat + 1))]
                    with m.If(slot_done):
                        m.d.comb += [wp.en.eq(1), wp.addr.eq(hi + fetch_slot),
                                     wp.data.eq(whole)]
                        m.d.sync += fetch_slot.eq(fetch_slot + 1)
                    with m.If(beat.last):
                        # A failed read brings nothing (the error is only known at its end).
                        with m.If(beat.error):
                            m.d.sync += fetch_err.eq(1)
                        with m.Else():
                            m.d.sync += hi.eq(hi + fetch_count)
                        m.next = "ENSURE"

            with m.State("FAIL"):
                m.d.sync += [status.eq(TxStatus.DMA_ERROR), slots.eq(Mux(hdr_known, need, 1))]
                # Without its header the work item's extent is unknown: the queue stops.
                m.d.comb += queues.halt_stb.eq(~hdr_known)
                m.next = "RECORD"

            with m.State("HEADER"):
                hdr = TxWorkItem(slot)
                item_slots = 1 + Mux(hdr.opcode == TxOpcode.BATCH,
                                     (hdr.count + _LENGTHS_PER_SLOT - 1) >> 3, hdr.count)
                m.d.sync += [opcode.eq(hdr.opcode), count.eq(hdr.count),
                             length.eq(hdr.length), cookie.eq(hdr.cookie), addr.eq(hdr.addr),
                             hdr_known.eq(1), status.eq(TxStatus.OK), slots.eq(1),
                             n_msgs.eq(0), total.eq(0)]
                m.next = "RECORD"
                with m.Switch(hdr.opcode):
                    with m.Case(TxOpcode.NOP):
                        pass
                    with m.Case(TxOpcode.SINGLE):
                        m.d.sync += n_msgs.eq(1)
                        with m.If(~_length_ok(hdr.length) | misaligned(hdr.addr)):
                            m.d.sync += status.eq(TxStatus.BAD_LENGTH)
                        with m.Elif(_overflows(hdr.addr, hdr.length)):
                            m.d.sync += status.eq(TxStatus.DMA_ERROR)
                    with m.Case(TxOpcode.BATCH, TxOpcode.GATHER):
                        with m.If((hdr.count == 0) | (hdr.count > TX_MAX_MESSAGES) |
                                  (item_slots > (prod - head)[:16])):
                            m.d.sync += status.eq(TxStatus.BAD_COUNT)
                        with m.Else():
                            m.d.sync += [n_msgs.eq(hdr.count), slots.eq(item_slots),
                                         need.eq(item_slots)]
                            with m.If((hdr.opcode == TxOpcode.BATCH) & misaligned(hdr.addr)):
                                m.d.sync += status.eq(TxStatus.BAD_LENGTH)
                            with m.Else():
                                m.next = "ENSURE"
                    with m.Default():
                        m.d.sync += status.eq(TxStatus.BAD_OPCODE)

            with m.State("CHECK"):         # one slot per cycle: lengths or gather entries
                m.d.comb += ptr_d.eq(ptr + 1)
                with m.If(opcode == TxOpcode.BATCH):
                    bad, padded = Const(0), []
                    for j in range(_LENGTHS_PER_SLOT):
                        lj = slot[16 * j:16 * j + 16]
                        used = (msg + j) < count
                        bad |= used & ~_length_ok(lj)
                        padded.append(Mux(used, ((lj + nbytes - 1) >> align_bits) << align_bits,
                                          0))
                    m.d.sync += [total.eq(total + sum(padded)),
                                 msg.eq(msg + _LENGTHS_PER_SLOT)]
                    with m.If(bad & (status == TxStatus.OK)):
                        m.d.sync += status.eq(TxStatus.BAD_LENGTH)
                with m.Else():
                    entry = TxGatherEntry(slot)
                    with m.If(status == TxStatus.OK):
                        with m.If(~_length_ok(entry.length) | misaligned(entry.addr)):
                            m.d.sync += status.eq(TxStatus.BAD_LENGTH)
                        with m.Elif(_overflows(entry.addr, entry.length)):
                            m.d.sync += status.eq(TxStatus.DMA_ERROR)
                with m.If((ptr - head)[:16] == need - 1):
                    m.next = "RECORD"

            with m.State("RECORD"):        # hand the job to the cutter, consume the slots
                job = _Job(jobs.w_data)
                m.d.comb += [
                    jobs.w_en.eq(1),
                    job.queue.eq(q), job.cookie.eq(cookie), job.wqe_index.eq(head & mask),
                    job.slots.eq(slots), job.status.eq(final_status),
                    job.messages.eq(Mux(final_status == TxStatus.OK, n_msgs, 0)),
                ]
                with m.If(jobs.w_rdy):
                    m.d.comb += [queues.head_stb.eq(1), queues.head_slots.eq(slots),
                                 ptr_d.eq(head + 1)]
                    with m.If(have < slots):
                        m.d.sync += hi.eq(head + slots)
                    m.d.sync += [msg.eq(0), lane.eq(0), cur_addr.eq(addr), rem.eq(total)]
                    with m.If((final_status != TxStatus.OK) | (n_msgs == 0)):
                        m.next = "SELECT"
                    with m.Elif(opcode == TxOpcode.SINGLE):
                        m.next = "SINGLE"
                    with m.Elif(opcode == TxOpcode.BATCH):
                        m.next = "LENGTHS"
                    with m.Else():
                        m.next = "GATHER"

            # Data reads. A message's length is queued no later than the read that brings it.
            with m.State("SINGLE"):
                m.d.comb += [req.valid.eq(lengths.w_rdy), lengths.w_data.eq(length),
                             lengths.w_en.eq(req.valid & req.ready)]
                issue(addr, length, _TAG_LAST | q)
                with m.If(req.valid & req.ready):
                    m.next = "SELECT"

            with m.State("LENGTHS"):       # BATCH: queue the lengths, one per cycle
                last_msg = msg == count - 1
                m.d.comb += [lengths.w_en.eq(1), lengths.w_data.eq(slot.word_select(lane, 16))]
                with m.If(lengths.w_rdy):
                    m.d.sync += [msg.eq(msg + 1), lane.eq(lane + 1)]
                    with m.If((lane == _LENGTHS_PER_SLOT - 1) | last_msg):
                        m.d.comb += ptr_d.eq(ptr + 1)
                    with m.If(last_msg):
                        m.next = "BATCH"

            with m.State("BATCH"):         # the packed buffer, in as few reads as possible
                final = rem <= chunk
                size = Mux(final, rem, chunk)
                m.d.comb += req.valid.eq(1)
                issue(cur_addr, size, Mux(final, _TAG_LAST, 0) | q)
                with m.If(req.ready):
                    m.d.sync += [cur_addr.eq(cur_addr + size), rem.eq(rem - size)]
                    with m.If(final):
                        m.next = "SELECT"

            with m.State("GATHER"):
                entry = TxGatherEntry(slot)
                final = msg == count - 1
                m.d.comb += [req.valid.eq(lengths.w_rdy), lengths.w_data.eq(entry.length),
                             lengths.w_en.eq(req.valid & req.ready)]
                issue(entry.addr, entry.length, Mux(final, _TAG_LAST, 0) | q)
                with m.If(req.valid & req.ready):
                    m.d.comb += ptr_d.eq(ptr + 1)
                    m.d.sync += msg.eq(msg + 1)
                    with m.If(final):
                        m.next = "SELECT"

        with m.If(queues.flush_stb & (queues.flush_queue == cache_q)):
            m.d.sync += cache_valid.eq(0)

    # --- frame cutter: data beats -> frames, one per message ------------------------------
    def _cutter(self, m, lengths, jobs, dones, data_ready):
        nbytes = self.data_width // 8
        tx, beat = self.tx, self.rd_data.payload
        job = Signal(_Job)
        busy, errored, reqs_done = Signal(), Signal(), Signal()
        off = Signal(16)                    # bytes of the current message already sent
        left = Signal(7)                    # its lengths still queued (incl. the current)
        sent, sent_bytes, status = Signal(7), Signal(20), Signal(TxStatus)

        cur = lengths.r_data
        rest = (cur - off)[:16]
        msg_end = rest <= nbytes
        tail_keep = ((Const(1, nbytes + 1) << rest[:nbytes.bit_length()]) - 1)[:nbytes]
        is_data = self.rd_data.valid & ~beat.tag[7]
        take = is_data & data_ready
        m.d.comb += tx.payload.data.eq(beat.data)

        def load():                         # take the next job, if there is one
            m.d.comb += jobs.r_en.eq(1)
            with m.If(jobs.r_rdy):
                nxt = _Job(jobs.r_data)
                m.d.sync += [job.eq(nxt), busy.eq(1), errored.eq(0), off.eq(0),
                             left.eq(nxt.messages), sent.eq(0), sent_bytes.eq(0),
                             status.eq(nxt.status), reqs_done.eq(nxt.messages == 0)]

        with m.If(~busy):
            load()
        with m.Elif(~reqs_done):
            with m.If(beat.error):          # only on a failed request's last beat
                with m.If(~errored & (off != 0)):
                    m.d.comb += [tx.valid.eq(is_data), tx.payload.keep.eq(1),
                                 tx.payload.last.eq(1), tx.payload.error.eq(1),
                                 data_ready.eq(tx.ready)]
                with m.Else():
                    m.d.comb += data_ready.eq(1)
                with m.If(take):
                    m.d.sync += [errored.eq(1), status.eq(TxStatus.DMA_ERROR)]
            with m.Elif(errored | (left == 0)):
                m.d.comb += data_ready.eq(1)          # the rest of a failed work item
            with m.Elif(lengths.r_rdy):
                m.d.comb += [tx.valid.eq(is_data), data_ready.eq(tx.ready),
                             tx.payload.last.eq(msg_end),
                             tx.payload.keep.eq(Mux(msg_end, tail_keep, (1 << nbytes) - 1))]
                with m.If(take):
                    with m.If(msg_end):
                        m.d.comb += lengths.r_en.eq(1)
                        m.d.sync += [off.eq(0), left.eq(left - 1), sent.eq(sent + 1),
                                     sent_bytes.eq(sent_bytes + cur)]
                    with m.Else():
                        m.d.sync += off.eq(off + nbytes)
            with m.If(take & beat.last & beat.tag[6]):
                m.d.sync += reqs_done.eq(1)
        with m.Elif(left != 0):             # drop the lengths of messages not sent
            m.d.comb += lengths.r_en.eq(1)
            with m.If(lengths.r_rdy):
                m.d.sync += left.eq(left - 1)
        with m.Else():
            done = WorkItemResult(dones.w_data)
            m.d.comb += [dones.w_en.eq(1),
                         done.queue.eq(job.queue), done.cookie.eq(job.cookie),
                         done.wqe_index.eq(job.wqe_index), done.slots.eq(job.slots),
                         done.status.eq(status), done.messages.eq(sent),
                         done.bytes.eq(sent_bytes)]
            with m.If(dones.w_rdy):
                m.d.sync += busy.eq(0)
                load()
