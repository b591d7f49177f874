"""RX queues: frames from the RX pipeline land in posted host buffers, one completion each."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import (DropReason, EventType, PacketMeta, QueueDrop, RxCompletion,
                        RxDescriptor)
from ..regs import RegisterMap
from .axil import CsrSignature
from .beat import Beat
from .dma import DmaWriteBeat, dma_read_client, dma_write_client
from .event_queues import EventPost
from .parameter_checks import check_int_range
from .rx_queue_state import ENTRY_BYTES, RxQueueFile

__all__ = ["RxQueueManager"]

#: Datapath widths: a 16-byte descriptor or completion must start on a beat boundary.
_DATA_WIDTHS = (8, 16, 32, 64, 128)

#: A frame on its way to the frame mover: discard it, or write it and its completion.
_Move = data.StructLayout({"deliver": 1, "length": 16, "completion": RxCompletion})
#: The DMA writes of a delivered frame: ``length`` bytes at ``buffer``, then the completion.
_Writes = data.StructLayout({"buffer": 64, "length": 16, "entry": 64, "queue": 8})
#: A frame waiting for its write dones (in decision order): ``writes`` dones are due.
#: ``drop`` is the QueueDrop reason of an undelivered frame of an existing queue, else 0.
_Pending = data.StructLayout({"queue": 8, "writes": 2, "deliver": 1, "cons": 16,
                              "event_queue": 6, "drop": 2})


class _FrameMover(wiring.Component):
    """Takes every frame's beats from ``data`` in order and, for a delivered frame, hands the
    DMA engine its ``ceil(length / (W/8))`` data beats followed by its completion's
    ``16 / (W/8)`` beats (``timestamp`` sampled in the cycle the frame's last beat is taken).

    Beats beyond ``length`` are discarded, missing ones are sent as zeros (neither happens with
    the RX pipeline). No bubbles: one beat per cycle while ``data`` and ``wr_data`` allow.
    """
    def __init__(self, data_width):
        self.data_width = data_width
        super().__init__({
            "job": In(stream.Signature(_Move)),
            "data": In(stream.Signature(Beat(data_width))),
            "wr_data": Out(stream.Signature(DmaWriteBeat(data_width))),
            "timestamp": In(48),
        })

    def elaborate(self, platform):
        m = Module()
        w, lanes = self.data_width, self.data_width // 8
        job, inp, out = self.job.payload, self.data, self.wr_data
        entry_beats = ENTRY_BYTES // lanes

        need = Signal(16)               # data beats of the job (0: discard)
        m.d.comb += need.eq(Mux(job.deliver,
                                (job.length + (lanes - 1)) >> (lanes.bit_length() - 1), 0))
        sent = Signal(16)
        ended = Signal()                # the frame's last beat was taken
        in_entry = Signal()             # sending the completion
        entry_beat = Signal(range(entry_beats))
        stamp = Signal(data.Layout.cast(RxCompletion)["timestamp"].width)
        image = Signal(RxCompletion)
        m.d.comb += [image.eq(job.completion), image.timestamp.eq(stamp)]

        with m.If(self.job.valid & ~in_entry):
            more = sent != need
            with m.If(more):
                with m.If(~ended):
                    m.d.comb += [out.valid.eq(inp.valid), out.payload.data.eq(inp.payload.data),
                                 inp.ready.eq(out.ready)]
                with m.Else():
                    m.d.comb += out.valid.eq(1)
                m.d.comb += out.payload.last.eq(sent == need - 1)
            with m.Elif(~ended):
                m.d.comb += inp.ready.eq(1)
            taken_last = inp.valid & inp.ready & inp.payload.last
            with m.If(taken_last):
                m.d.sync += stamp.eq(self.timestamp)
            new_sent = (sent + (out.valid & out.ready))[:16]
            new_ended = ended | taken_last
            with m.If((new_sent == need) & new_ended):
                m.d.sync += [sent.eq(0), ended.eq(0), in_entry.eq(job.deliver)]
                m.d.comb += self.job.ready.eq(~job.deliver)
            with m.Else():
                m.d.sync += [sent.eq(new_sent), ended.eq(new_ended)]

        with m.If(self.job.valid & in_entry):
            words = image.as_value()
            m.d.comb += [
                out.valid.eq(1),
                out.payload.data.eq(words.word_select(entry_beat, w) if entry_beats > 1
                                    else words),
                out.payload.last.eq(entry_beat == entry_beats - 1),
            ]
            with m.If(out.ready):
                m.d.sync += entry_beat.eq(entry_beat + 1)
                with m.If(entry_beat == entry_beats - 1):
                    m.d.sync += [entry_beat.eq(0), in_entry.eq(0)]
                    m.d.comb += self.job.ready.eq(1)
        return m


class RxQueueManager(wiring.Component):
    """Per-queue descriptor and completion rings in host memory; queue state on chip.

    For each record on ``meta`` (one per frame, in frame order) the manager decides, then
    takes the frame's beats from ``data`` (the record may come before or after them):

    * ``drop != NONE``: the beats are discarded (the pipeline counted the frame).
    * the queue does not exist, is disabled, or has no posted descriptor (``CONS == PROD``):
      dropped, counted in ``RXQ_NO_BUFFER[queue]`` (if the queue exists).
    * otherwise the descriptor at ``BASE + 16 * (CONS mod SIZE)`` is read. A failed read, a
      buffer address not aligned to ``W/8`` or a buffer ending past ``2**64``: dropped,
      ``STATUS`` bit 3, the descriptor stays posted. A frame longer than the buffer: dropped,
      ``RXQ_TOO_LONG[queue]``, the descriptor stays posted.
    * otherwise exactly ``length`` bytes are written to the buffer (none if the length is 0),
      then the 16-byte :class:`~hetnic.protocol.RxCompletion` to
      ``CQ_BASE + 16 * (CONS mod SIZE)`` (``phase`` = NOT bit ``log2(SIZE)`` of ``CONS``,
      ``timestamp`` = bits 25:0 of ``timestamp`` when the frame's last beat was taken), and
      ``CONS`` advances (at the decision, before the writes). Both writes go out on
      ``wr_req`` back to back; the DMA engine keeps them in order. A failed write (its
      ``wr_done.error``) sets ``STATUS`` bit 3; the completion is written regardless.
    * once the completion's ``wr_done`` has come, if the queue is armed (``RXQ_EQ`` bit 8) one
      ``RX_COMPLETION`` event is posted (``event_queue`` = ``RXQ_EQ`` bits 5:0,
      ``source`` = queue, ``info`` = ``CONS`` after this frame) and the queue is disarmed.
      A frame an armed queue drops (no buffer, too long, bad descriptor) posts one ``DROP``
      event instead (``info`` = :class:`~hetnic.protocol.QueueDrop`) and disarms it too.

    Register semantics are those of :class:`~.rx_queue_state.RxQueueFile`. Host protocol:

    * *Set up* (``queue_register_writes``): ``CTRL = 0``, the ring registers (``CONS`` restarts
      at 0 at the first of them; such writes are held until frames in flight have retired),
      ``PROD``, ``CTRL = 1``. A freshly built ``RxRing`` matches this.
    * *Pause and resume* the same rings: write ``CTRL = 0``; the frame being decided and those
      already decided still complete, later frames for the queue are dropped (``NO_BUFFER``).
      Buffers may still be posted (``PROD``). To resume write ``CTRL = 1`` only -- not the
      ring registers, which would restart ``CONS`` at 0 -- and the NIC continues at ``CONS``
      with the right phase: no completion is lost or written twice.

    Throughput: the decision of a frame (record, queue lookup, descriptor read, check) overlaps
    the data and completion writes of the frames before it, up to four frames ahead. A frame
    that needs its descriptor takes ``L + 16 / (W/8) + 1`` cycles of decision, where ``L`` is
    the cycles from the ``rd_req`` handshake to the first ``rd_data`` beat; a frame dropped
    without a read takes 2. The writes take one cycle per beat, without bubbles between
    frames: ``ceil(length / (W/8)) + 16 / (W/8)`` cycles per delivered frame (10 for a 64-byte
    frame at W = 64, where Ethernet line rate is one frame per 10.5 cycles; the decision keeps
    up while ``L <= 7``).

    Parameters
    ----------
    data_width : int
        Datapath and DMA width W in bits: 8, 16, 32, 64 or 128.
    n_queues : int
        Receive queues, 1 to 256.

    Members
    -------
    data : In(stream.Signature(Beat(data_width)))
        Frame beats from the RX pipeline.
    meta : In(stream.Signature(PacketMeta))
        One record per frame, in frame order.
    csr : In(CsrSignature(16))
        ``RXQ_*`` register accesses (full byte addresses of
        ``RegisterMap(rx_queues=n_queues, queues=n_queues, data_bytes=W // 8)``).
    rd_req : Out(stream.Signature(DmaReadRequest))
    rd_data : In(stream.Signature(DmaReadBeat(data_width)))
        Descriptor reads (16 bytes, ``tag`` = queue).
    wr_req : Out(stream.Signature(DmaWriteRequest))
    wr_data : Out(stream.Signature(DmaWriteBeat(data_width)))
    wr_done : In(stream.Signature(DmaWriteDone))
        Frame and completion writes (``tag`` = queue), dones in request order.
    timestamp : In(48)
        Free-running cycle counter.
    event : Out(stream.Signature(EventPost))
        ``RX_COMPLETION`` events of armed queues. While an event waits here, a second one
        holds the retirement of later frames.
    """
    def __init__(self, data_width, n_queues):
        if data_width not in _DATA_WIDTHS:
            raise ValueError(f"data_width must be one of {', '.join(map(str, _DATA_WIDTHS))}, "
                             f"not {data_width!r}")
        check_int_range("n_queues", n_queues, 1, 256)
        self.data_width, self.n_queues = data_width, n_queues
        self.regmap = RegisterMap(rx_queues=n_queues, queues=n_queues,
                                  data_bytes=data_width // 8)
        super().__init__({
            "data": In(stream.Signature(Beat(data_width))),
            "meta": In(stream.Signature(PacketMeta)),
            "csr": In(CsrSignature(16)),
            **dma_read_client(data_width),
            **dma_write_client(data_width),
            "timestamp": In(48),
            "event": Out(stream.Signature(EventPost)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queues = qf = RxQueueFile(self.regmap)
        wiring.connect(m, wiring.flipped(self.csr), qf.csr)
        # Decided frames, in order: to the mover (all), the request issuer (delivered ones)
        # and the done tracker (all).
        m.submodules.moves = moves = SyncFIFOBuffered(width=_Move.size, depth=4)
        m.submodules.writes = writes = SyncFIFOBuffered(width=_Writes.size, depth=4)
        m.submodules.pending = pending = SyncFIFOBuffered(width=_Pending.size, depth=16)
        m.submodules.mover = mover = _FrameMover(self.data_width)

        self._decide(m, qf, moves, writes, pending)
        self._issue_writes(m, writes)
        m.d.comb += [
            mover.job.valid.eq(moves.r_rdy), mover.job.payload.eq(moves.r_data),
            moves.r_en.eq(mover.job.ready), mover.timestamp.eq(self.timestamp),
        ]
        wiring.connect(m, wiring.flipped(self.data), mover.data)
        wiring.connect(m, mover.wr_data, wiring.flipped(self.wr_data))
        self._track_dones(m, qf, pending)
        return m

    def _decide(self, m, qf, moves, writes, pending):
        """One record at a time: look the queue up, read the descriptor, push the verdict."""
        meta, rd_req = self.meta, self.rd_req
        cur = Signal(PacketMeta)
        early = Signal(2)               # 0 read the descriptor, 1 discard, 2 no buffer
        desc = Signal(RxDescriptor)
        desc_error = Signal()
        rd_addr = Signal(64)

        slot = (qf.lu_cons & (qf.lu_size[:16] - 1))[:16]
        entry_offset = slot * ENTRY_BYTES
        m.d.comb += [qf.lookup_queue.eq(cur.queue),
                     rd_req.payload.length.eq(ENTRY_BYTES), rd_req.payload.tag.eq(cur.queue)]
        deliver, bad_desc, read, can_push = self._verdict(
            m, qf, cur, early, desc, desc_error, entry_offset, moves, writes, pending)

        def take_record():
            m.d.comb += [meta.ready.eq(1), qf.lookup_queue.eq(meta.payload.queue)]
            with m.If(meta.valid):
                m.d.comb += qf.frame_start_stb.eq(1)
                m.d.sync += cur.eq(meta.payload)
                m.next = "LOOKUP"

        with m.FSM():
            with m.State("IDLE"):
                take_record()
            with m.State("LOOKUP"):         # the queue's state is on qf.lu_* now
                discard = cur.drop != DropReason.NONE
                no_buffer = ~qf.lu_enabled | (qf.lu_prod == qf.lu_cons)
                m.d.comb += [rd_req.valid.eq(~discard & ~no_buffer),
                             rd_req.payload.addr.eq(qf.lu_base + entry_offset)]
                m.d.sync += [rd_addr.eq(qf.lu_base + entry_offset),
                             early.eq(Mux(discard, 1, Mux(no_buffer, 2, 0)))]
                with m.If(discard | no_buffer):
                    m.next = "PUSH"
                with m.Elif(rd_req.ready):
                    m.next = "READ"
                with m.Else():
                    m.next = "REQUEST"
            with m.State("REQUEST"):
                m.d.comb += [rd_req.valid.eq(1), rd_req.payload.addr.eq(rd_addr)]
                with m.If(rd_req.ready):
                    m.next = "READ"
            with m.State("READ"):
                self._read_descriptor(m, desc, desc_error)
            with m.State("PUSH"):
                with m.If(can_push):
                    m.d.comb += [
                        moves.w_en.eq(1), pending.w_en.eq(1), writes.w_en.eq(deliver),
                        qf.take_stb.eq(deliver),
                        qf.no_buffer_stb.eq((early == 2) & qf.lu_valid),
                        qf.too_long_stb.eq(read & ~bad_desc & ~deliver),
                        qf.desc_error_stb.eq(read & bad_desc),
                    ]
                    m.next = "IDLE"
                    # The next record's lookup starts now; the memories pass this cycle's
                    # CONS and counter writes through to it.
                    take_record()

    def _verdict(self, m, qf, cur, early, desc, desc_error, entry_offset, moves, writes,
                 pending):
        """The verdict on record ``cur``, from the descriptor ``desc`` (or the ``early``
        decision), on the write ports of the three FIFOs (``w_en`` is the caller's). Returns
        ``deliver``, ``bad_desc``, ``read`` (the descriptor was read) and ``can_push`` (all
        the FIFOs the verdict goes to have room)."""
        lanes = self.data_width // 8
        end = Signal(65)
        m.d.comb += end.eq(desc.addr + desc.length)
        bad_desc = desc_error | (end[64] & (end[:64] != 0))
        if lanes > 1:
            bad_desc |= desc.addr[:lanes.bit_length() - 1] != 0
        read = early == 0
        deliver = read & ~bad_desc & (cur.length <= desc.length)
        can_push = moves.w_rdy & pending.w_rdy & (writes.w_rdy | ~deliver)

        move = data.View(_Move, moves.w_data)
        req = data.View(_Writes, writes.w_data)
        pend = data.View(_Pending, pending.w_data)
        c = move.completion
        m.d.comb += [
            move.deliver.eq(deliver), move.length.eq(cur.length),
            c.length.eq(cur.length), c.hash.eq(cur.hash), c.hash_type.eq(cur.hash_type),
            c.error.eq(cur.error), c.flags.eq(cur.flags), c.queue.eq(cur.queue),
            c.instance.eq(cur.instance), c.rule.eq(cur.rule), c.generation.eq(cur.generation),
            c.phase.eq((qf.lu_cons & qf.lu_size[:16]) == 0),
            req.buffer.eq(desc.addr), req.length.eq(cur.length),
            req.entry.eq(qf.lu_cq_base + entry_offset), req.queue.eq(cur.queue),
            pend.queue.eq(cur.queue), pend.deliver.eq(deliver),
            pend.writes.eq(Mux(deliver, Mux(cur.length == 0, 1, 2), 0)),
            pend.cons.eq(qf.lu_cons + 1), pend.event_queue.eq(qf.lu_event_queue),
            pend.drop.eq(Mux((early == 2) & qf.lu_valid, QueueDrop.NO_BUFFER,
                         Mux(read & bad_desc, QueueDrop.BAD_DESCRIPTOR,
                         Mux(read & ~deliver, QueueDrop.TOO_LONG, 0)))),
        ]
        return deliver, bad_desc, read, can_push

    def _read_descriptor(self, m, desc, desc_error):
        """In state READ: the descriptor's beats into ``desc`` (its read error into
        ``desc_error``); on the last beat, go to PUSH."""
        rd_data, w, lanes = self.rd_data, self.data_width, self.data_width // 8
        beat = Signal(range(ENTRY_BYTES // lanes))
        m.d.comb += rd_data.ready.eq(1)
        with m.If(rd_data.valid):
            if lanes == ENTRY_BYTES:
                m.d.sync += desc.eq(rd_data.payload.data)
            else:
                m.d.sync += [
                    desc.as_value().word_select(beat, w).eq(rd_data.payload.data),
                    beat.eq(beat + 1),
                ]
            with m.If(rd_data.payload.last):
                m.d.sync += [beat.eq(0), desc_error.eq(rd_data.payload.error)]
                m.next = "PUSH"

    def _issue_writes(self, m, writes):
        """Per delivered frame: the data write (unless the frame is empty), then the
        completion write."""
        req, out = data.View(_Writes, writes.r_data), self.wr_req
        second = Signal()               # the data write was issued
        with m.If(writes.r_rdy):
            m.d.comb += [out.valid.eq(1), out.payload.tag.eq(req.queue)]
            with m.If(~second & (req.length != 0)):
                m.d.comb += [out.payload.addr.eq(req.buffer), out.payload.length.eq(req.length)]
                with m.If(out.ready):
                    m.d.sync += second.eq(1)
            with m.Else():
                m.d.comb += [out.payload.addr.eq(req.entry),
                             out.payload.length.eq(ENTRY_BYTES)]
                with m.If(out.ready):
                    m.d.sync += second.eq(0)
                    m.d.comb += writes.r_en.eq(1)

    def _track_dones(self, m, qf, pending):
        """Per decided frame, in order: take its write dones, post the event of an armed
        queue, retire it."""
        head, done, event = data.View(_Pending, pending.r_data), self.wr_done, self.event
        got = Signal(2)
        m.d.comb += [qf.armed_queue.eq(head.queue), qf.write_error_queue.eq(head.queue)]
        with m.If(event.ready):
            m.d.sync += event.valid.eq(0)
        with m.If(pending.r_rdy):
            with m.If(got != head.writes):
                m.d.comb += done.ready.eq(1)
                with m.If(done.valid):
                    m.d.sync += got.eq(got + 1)
                    m.d.comb += qf.write_error_stb.eq(done.payload.error)
            with m.Else():
                fire = (head.deliver | (head.drop != 0)) & qf.armed
                with m.If(~fire | ~event.valid | event.ready):
                    m.d.comb += [pending.r_en.eq(1), qf.frame_retire_stb.eq(1),
                                 qf.disarm_stb.eq(fire)]
                    m.d.sync += got.eq(0)
                    with m.If(fire):
                        m.d.sync += [
                            event.valid.eq(1),
                            event.payload.event_queue.eq(head.event_queue),
                            event.payload.type.eq(Mux(head.deliver, EventType.RX_COMPLETION,
                                                      EventType.DROP)),
                            event.payload.source.eq(head.queue),
                            event.payload.info.eq(Mux(head.deliver, head.cons, head.drop)),
                        ]
