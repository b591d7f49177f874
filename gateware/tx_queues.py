"""The TX queues: ``TXQ_*`` registers, ring indices and completion writes, for
:class:`~.tx_engine.TxWorkItemEngine`."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import TxCompletion, TxStatus
from ..regs import (QUEUE_CTRL_ENABLE, QUEUE_EQ_ARM, QUEUE_EQ_QUEUE, QUEUE_INDEX,
                    QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA,
                    QUEUE_STATUS_DOORBELL, RegisterMap)
from .axil import CsrSignature
from .dma import dma_write_client
from .queue_registers import (ENTRY_BYTES, STATUS_BITS, QueueWindowDecode, doorbell_ok,
                              field_word, ring_addr_ok, ring_size_ok)

__all__ = ["TxQueueFile", "CompletionWriter", "WorkItemResult"]

#: Bytes of a work-item slot and of a completion entry.
SLOT_BYTES = ENTRY_BYTES
_RING_REGS = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI", "CQ_SIZE")
_INDEX_BITS = QUEUE_INDEX.width


class WorkItemResult(data.Struct):
    """What the engine reports for one finished work item (becomes its TxCompletion)."""
    queue: 6
    cookie: 32
    wqe_index: 16       # ring position of the header
    slots: 7            # slots the work item consumed
    status: TxStatus
    messages: 7         # frames sent
    bytes: 20


class CompletionWriter(wiring.Component):
    """Writes each finished work item as a :class:`TxCompletion` into its queue's
    completion ring, one at a time.

    A ``result`` is taken when the writer is idle and held on ``record``; ``queue`` (its
    queue number) selects the ring state the caller puts on ``phase``, ``cq_base``,
    ``cq_size`` and ``cq_prod`` (combinationally, for as long as ``writing``). The entry at
    ``cq_base + 16 * (cq_prod % cq_size)`` is written with one DMA request and ``16 * 8 / W``
    data beats, offered together; when the write is done ``done_stb`` (and
    ``write_error``) pulse, and in the next cycle ``completion_stb``. An armed queue
    (``eq_arm``) also reports the completion on ``event_stb``/``event_queue`` in that
    cycle; ``disarm_stb`` asks the caller to clear the arm. From ``result`` taken to
    ``done_stb``: 2 + 16 * 8 / W cycles plus the write's latency; one more cycle to idle.

    Parameters
    ----------
    n_queues : int
    data_width : int

    Members
    -------
    result : In(stream.Signature(WorkItemResult))
    record : Out(WorkItemResult)
    queue : Out(max(1, bits of n_queues - 1))
        ``record.queue`` cut to the queue numbers' width.
    writing : Out(1)
        A completion is being written (from the cycle after ``result`` is taken to
        ``done_stb``): ``record`` is one the caller must still account for.
    phase : In(1)
    cq_base : In(64)
    cq_size : In(32)
    cq_prod : In(16)
        State of ``queue``'s completion ring.
    eq_arm : In(1)
    eq_queue : In(6)
        ``EQ.arm`` and ``EQ.event_queue`` of ``queue``.
    done_stb, write_error, disarm_stb : Out(1)
        The write of ``record`` is done (failed); ``queue`` was armed and must be disarmed.
    wr_req, wr_data, wr_done
        The DMA write client (see :mod:`.dma`); tag = ``record.queue``.
    completion_stb : Out(1)
    completion_queue : Out(range(n_queues))
    event_stb : Out(1)
    event_queue : Out(6)
        Registered: a cycle after ``done_stb``.
    """
    def __init__(self, n_queues: int, data_width: int):
        self.n_queues, self.data_width = n_queues, data_width
        super().__init__({
            "result": In(stream.Signature(WorkItemResult)),
            "record": Out(WorkItemResult),
            "queue": Out(max(1, (n_queues - 1).bit_length())),
            "writing": Out(1),
            "phase": In(1), "cq_base": In(64), "cq_size": In(32), "cq_prod": In(_INDEX_BITS),
            "eq_arm": In(1), "eq_queue": In(QUEUE_EQ_QUEUE.width),
            "done_stb": Out(1), "write_error": Out(1), "disarm_stb": Out(1),
            **dma_write_client(data_width),
            "completion_stb": Out(1), "completion_queue": Out(range(n_queues)),
            "event_stb": Out(1), "event_queue": Out(QUEUE_EQ_QUEUE.width),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.data_width
        beats = 8 * SLOT_BYTES // w
        rec = self.record
        comp = Signal(TxCompletion)
        req_sent, beat_i = Signal(), Signal(range(beats + 1))
        m.d.comb += [
            self.queue.eq(rec.queue),
            comp.cookie.eq(rec.cookie), comp.wqe_index.eq(rec.wqe_index),
            comp.messages.eq(rec.messages), comp.status.eq(rec.status),
            comp.bytes.eq(rec.bytes), comp.phase.eq(self.phase),
        ]
        wr_req, wr_data, wr_done = self.wr_req, self.wr_data, self.wr_done
        m.d.sync += [self.completion_stb.eq(0), self.event_stb.eq(0)]
        with m.FSM(name="completion"):
            with m.State("IDLE"):
                m.d.comb += self.result.ready.eq(1)
                with m.If(self.result.valid):
                    m.d.sync += [rec.eq(self.result.payload), req_sent.eq(0), beat_i.eq(0)]
                    m.next = "WRITE"
            with m.State("WRITE"):
                req_hs = wr_req.valid & wr_req.ready
                data_hs = wr_data.valid & wr_data.ready
                m.d.comb += [
                    self.writing.eq(1),
                    wr_req.valid.eq(~req_sent), wr_req.payload.length.eq(SLOT_BYTES),
                    wr_req.payload.addr.eq(
                        self.cq_base +
                        ((self.cq_size - 1)[:_INDEX_BITS] & self.cq_prod) * SLOT_BYTES),
                    wr_req.payload.tag.eq(rec.queue),
                    wr_data.valid.eq(beat_i != beats),
                    wr_data.payload.data.eq(comp.as_value().word_select(beat_i, w)),
                    wr_data.payload.last.eq(beat_i == beats - 1),
                ]
                with m.If(req_hs):
                    m.d.sync += req_sent.eq(1)
                with m.If(data_hs):
                    m.d.sync += beat_i.eq(beat_i + 1)
                with m.If((req_sent | req_hs) &
                          ((beat_i == beats) | ((beat_i == beats - 1) & data_hs))):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += [self.writing.eq(1), wr_done.ready.eq(1)]
                with m.If(wr_done.valid):
                    m.d.comb += [self.done_stb.eq(1),
                                 self.write_error.eq(wr_done.payload.error)]
                    m.d.sync += [self.completion_stb.eq(1),
                                 self.completion_queue.eq(self.queue)]
                    with m.If(self.eq_arm):
                        m.d.comb += self.disarm_stb.eq(1)
                        m.d.sync += [self.event_stb.eq(1), self.event_queue.eq(self.eq_queue)]
                    m.next = "IDLE"
        return m


class TxQueueFile(wiring.Component):
    """Per-queue state of the TX path: the ``TXQ_*`` registers, ring indices, completions.

    Register semantics (what the register table leaves open):

    * ``BASE_*``, ``SIZE`` and ``CQ_*`` may be written while the queue is disabled; writes
      while it is enabled are dropped (they read back unchanged). ``PROD`` written while the
      queue is disabled sets the index it starts at.
    * Writing ``CTRL.enable`` (:data:`~hetnic.regs.QUEUE_CTRL_ENABLE`) = 1 to a disabled
      queue enables it: ``CONS`` and the engine's fetch index start at ``PROD`` (the ring
      starts empty), ``CQ_PROD`` at 0, the completion phase at 1; the sizes and addresses are
      checked (``STATUS.bad_size`` and ``STATUS.bad_addr``; a queue with a bad setting stays
      idle). While a work item of a disabled queue is still in flight, a write that enables
      it or changes a ring register is held (``ack`` waits) until that work item has
      completed, so nothing of an old setup reaches a new one.
    * Writing ``CTRL.enable`` = 0 disables the queue at once: no new work item starts, those
      in flight finish (frames, completion, ``CONS``); ``STATUS`` clears.
    * ``PROD`` written while enabled is a doorbell. It must move forward by at most the free
      slots: ``PROD_old - C <= PROD_new - C <= SIZE`` (16-bit arithmetic), where ``C`` is
      ``CONS`` plus the slots of a completion being written (the host may reuse them as soon
      as it sees the completion, before its DMA write is done). Any other value is ignored
      and sets ``STATUS.doorbell``.
    * ``STATUS.dma_error`` is set by ``halt_stb`` (the queue also stops: its ring cannot be
      read), by a result with status ``DMA_ERROR`` and by a failed completion write.
    * Other ``rw`` registers of the queue window (``TXQ_EQ``) are stored and read back. An
      armed queue (``EQ.arm``, :data:`~hetnic.regs.QUEUE_EQ_ARM`) reports its next
      completion once, as an ``event_stb`` pulse with ``EQ.event_queue``, and is disarmed
      (a bus write of ``EQ`` in the same cycle wins).

    Completions. Each ``result`` becomes one :class:`TxCompletion` at ``CQ_BASE + 16 *
    (CQ_PROD % CQ_SIZE)`` with the queue's phase (1 on the first pass over the ring, flipping
    at each wrap): a 16-byte DMA write (request and data beats offered together), then, on its
    done, ``CONS += slots``, ``CQ_PROD += 1`` and a ``completion_stb`` pulse in the next cycle.
    One completion is written at a time: 3 + 16 * 8 / W cycles plus the write's latency
    (:class:`CompletionWriter`).

    Parameters
    ----------
    regmap : RegisterMap
        A map with ``tx_queues`` >= 1; only its ``TXQ_*`` names and offsets are used.
    data_width : int
        Bits per beat of the DMA write client (8 .. 128).

    Members
    -------
    csr : In(CsrSignature(16))
        Accesses to the ``TXQ_*`` window (other addresses read 0, writes are ignored).
    runnable : Out(n_queues)
        Bit ``q``: queue ``q`` is enabled, not stopped by an error, and has posted slots the
        engine has not fetched (``PROD != head``).
    sel : In(range(n_queues))
        The queue the fetch side works on; ``sel_*`` describe it (combinational).
    sel_base : Out(64)
    sel_mask : Out(16)
        Ring size minus one.
    sel_prod, sel_head : Out(16)
        Producer index and the engine's fetch index (``head``), free-running.
    start_stb : In(1)
        A work item of ``sel`` starts; it is in flight until its completion is written.
    head_stb : In(1)
    head_slots : In(7)
        Advance ``sel``'s ``head`` by ``head_slots`` slots.
    halt_stb : In(1)
        Stop ``sel``: its ring could not be read. Sets ``STATUS.dma_error``.
    flush_stb : Out(1)
    flush_queue : Out(range(n_queues))
        Queue ``flush_queue`` is enabled this cycle: anything cached about it is stale.
    result : In(stream.Signature(WorkItemResult))
        Finished work items, in the order they started.
    wr_req, wr_data, wr_done
        The DMA write client (see :mod:`.dma`); tag = queue.
    completion_stb : Out(1)
    completion_queue : Out(range(n_queues))
    event_stb : Out(1)
    event_queue : Out(6)
        With ``completion_stb``: the queue was armed; report to this event queue.
    """
    def __init__(self, regmap: RegisterMap, data_width: int = 64):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        n = regmap.params["tx_queues"]
        if not 1 <= n <= 64:
            raise ValueError(f"the register map must have 1 to 64 TX queues, not {n!r} "
                             f"(RegisterMap(tx_queues=...))")
        if data_width not in (8, 16, 32, 64, 128):
            raise ValueError(f"data_width must be 8, 16, 32, 64 or 128, not {data_width!r}")
        stride = regmap["TXQ_CTRL"].stride
        if stride & (stride - 1):
            raise ValueError(f"TXQ register stride must be a power of two, not {stride:#x}")
        self.regmap, self.n_queues, self.data_width = regmap, n, data_width
        super().__init__({
            "csr": In(CsrSignature(16)),
            "runnable": Out(n),
            "sel": In(range(n)), "sel_base": Out(64), "sel_mask": Out(_INDEX_BITS),
            "sel_prod": Out(_INDEX_BITS), "sel_head": Out(_INDEX_BITS),
            "start_stb": In(1), "head_stb": In(1), "head_slots": In(7), "halt_stb": In(1),
            "flush_stb": Out(1), "flush_queue": Out(range(n)),
            "result": In(stream.Signature(WorkItemResult)),
            **dma_write_client(data_width),
            "completion_stb": Out(1), "completion_queue": Out(range(n)),
            "event_stb": Out(1), "event_queue": Out(QUEUE_EQ_QUEUE.width),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_queues
        st = self._queue_state()
        s = self.sel
        for q in range(n):
            m.d.comb += self.runnable[q].eq(st.enable[q] & ~st.halted[q] &
                                            (st.prod[q] != st.head[q]))
        m.d.comb += [
            self.sel_base.eq(Cat(st.ring["BASE_LO"][s], st.ring["BASE_HI"][s])),
            self.sel_mask.eq(st.ring["SIZE"][s] - 1),
            self.sel_prod.eq(st.prod[s]),
            self.sel_head.eq(st.head[s]),
        ]

        m.submodules.completions = writer = CompletionWriter(n, self.data_width)
        wiring.connect(m, wiring.flipped(self.result), writer.result)
        for name in ("wr_req", "wr_data"):
            wiring.connect(m, getattr(writer, name), wiring.flipped(getattr(self, name)))
        wiring.connect(m, wiring.flipped(self.wr_done), writer.wr_done)
        c = writer.queue
        eq = st.stored.get("EQ")
        m.d.comb += [
            writer.phase.eq(st.phase[c]),
            writer.cq_base.eq(Cat(st.ring["CQ_BASE_LO"][c], st.ring["CQ_BASE_HI"][c])),
            writer.cq_size.eq(st.ring["CQ_SIZE"][c]), writer.cq_prod.eq(st.cq_prod[c]),
            writer.eq_arm.eq(QUEUE_EQ_ARM.bits(eq[c]) if eq is not None else 0),
            writer.eq_queue.eq(QUEUE_EQ_QUEUE.bits(eq[c]) if eq is not None else 0),
            self.completion_stb.eq(writer.completion_stb),
            self.completion_queue.eq(writer.completion_queue),
            self.event_stb.eq(writer.event_stb), self.event_queue.eq(writer.event_queue),
        ]
        # The disarm comes before the bus writes: a bus write of EQ in the same cycle wins.
        if eq is not None:
            with m.If(writer.disarm_stb):
                m.d.sync += QUEUE_EQ_ARM.bits(eq[c]).eq(0)
        self._elaborate_engine_side(m, st, writer)
        self._elaborate_bus(m, st, writer)
        return m

    def _queue_state(self):
        """The per-queue flops, each an ``Array`` over the queues: ``ring`` (the ring
        registers by name), ``prod``, ``cons``, ``head`` (the engine's fetch index),
        ``cq_prod``, ``phase``, ``enable``, ``halted``, ``status``, ``inflight`` (work items
        started and not completed, at most 8) and ``stored`` (the other ``rw`` registers of
        the window by name, e.g. ``EQ``)."""
        rm, n = self.regmap, self.n_queues
        _, _, offset = rm.queue_window("TXQ")
        extra = [name for name in offset if rm[f"TXQ_{name}"].access == "rw" and name not in
                 (*_RING_REGS, "PROD", "CTRL")]

        def regs(name, width, init=0):
            return Array(Signal(width, init=init, name=f"q{q}_{name.lower()}")
                         for q in range(n))

        return SimpleNamespace(
            ring={name: regs(name, 32) for name in _RING_REGS},
            prod=regs("PROD", _INDEX_BITS), cons=regs("CONS", _INDEX_BITS),
            head=regs("HEAD", _INDEX_BITS), cq_prod=regs("CQ_PROD", _INDEX_BITS),
            phase=regs("PHASE", 1, init=1), enable=regs("EN", 1), halted=regs("HALTED", 1),
            status=regs("STATUS", STATUS_BITS), inflight=regs("INFLIGHT", 4),
            stored={name: regs(name, 32) for name in extra})

    def _elaborate_engine_side(self, m, st, writer):
        """What the engine and the completion writer change: ``head`` (``head_stb``), the
        in-flight counts, ``halted`` and ``STATUS.dma_error`` (``halt_stb``), and at a
        written completion ``CONS``, ``CQ_PROD``, the phase and a failed write's
        ``STATUS.dma_error``."""
        s, c, rec = self.sel, writer.queue, writer.record
        for q in range(self.n_queues):
            done = writer.done_stb & (c == q)
            m.d.sync += st.inflight[q].eq(st.inflight[q] + (self.start_stb & (s == q)) - done)
            with m.If(self.head_stb & (s == q)):
                m.d.sync += st.head[q].eq(st.head[q] + self.head_slots)
            with m.If(self.halt_stb & (s == q)):
                m.d.sync += [st.halted[q].eq(1), QUEUE_STATUS_DMA.bits(st.status[q]).eq(1)]
            with m.If(done):
                nxt = (st.cq_prod[q] + 1)[:_INDEX_BITS]
                m.d.sync += [st.cons[q].eq(st.cons[q] + rec.slots), st.cq_prod[q].eq(nxt)]
                with m.If((nxt & (st.ring["CQ_SIZE"][q] - 1)[:_INDEX_BITS]) == 0):
                    m.d.sync += st.phase[q].eq(~st.phase[q])
                with m.If(writer.write_error | (rec.status == TxStatus.DMA_ERROR)):
                    m.d.sync += QUEUE_STATUS_DMA.bits(st.status[q]).eq(1)

    def _elaborate_bus(self, m, st, writer):
        """The ``TXQ_*`` window: reads answered in the request's cycle, writes performed in
        it, except a setup change of a disabled queue with a work item in flight, which is
        held (no ``ack``) until that work item has completed."""
        csr, n = self.csr, self.n_queues
        window, stride, offset = self.regmap.queue_window("TXQ")
        decode = QueueWindowDecode(m, csr.addr, window, stride, n)
        qi, word = decode.queue, decode.word
        ring, enable = st.ring, st.enable
        enable_bit = QUEUE_CTRL_ENABLE.bits(csr.w_data)
        hold = decode.in_window & ~enable[qi] & (st.inflight[qi] != 0) & (
            decode.is_any(offset[name] for name in _RING_REGS) |
            ((word == offset["CTRL"]) & enable_bit))
        m.d.comb += csr.ack.eq(csr.r_stb | (csr.w_stb & ~hold))
        write = csr.w_stb & ~hold & decode.in_window

        with m.If(csr.r_stb & decode.in_window):
            values = {**{name: reg[qi] for name, reg in ring.items()}, "PROD": st.prod[qi],
                      "CONS": st.cons[qi], "CTRL": field_word((QUEUE_CTRL_ENABLE, enable[qi])),
                      "STATUS": st.status[qi], "CQ_PROD": st.cq_prod[qi],
                      **{name: reg[qi] for name, reg in st.stored.items()}}
            with m.Switch(word):
                for name, value in values.items():
                    with m.Case(offset[name]):
                        m.d.comb += csr.r_data.eq(value)

        setup_ok, setup_status = _setup_checks(ring, qi)
        value16 = QUEUE_INDEX.bits(csr.w_data)
        freed = Signal(_INDEX_BITS)  # the addressed queue's CONS, with a completion being written
        m.d.comb += freed.eq(st.cons[qi] + Mux(writer.writing & (writer.queue == qi),
                                               writer.record.slots, 0))
        prod_ok = doorbell_ok(value16, st.prod[qi], freed, ring["SIZE"][qi])
        for q in range(n):
            with m.If(write & (qi == q)):
                with m.Switch(word):
                    for name, reg in ring.items():
                        with m.Case(offset[name]):
                            with m.If(~enable[q]):
                                m.d.sync += reg[q].eq(csr.w_data)
                    for name, reg in st.stored.items():
                        with m.Case(offset[name]):
                            m.d.sync += reg[q].eq(csr.w_data)
                    with m.Case(offset["PROD"]):
                        with m.If(~enable[q] | prod_ok):
                            m.d.sync += st.prod[q].eq(value16)
                        with m.Else():
                            m.d.sync += QUEUE_STATUS_DOORBELL.bits(st.status[q]).eq(1)
                    with m.Case(offset["CTRL"]):
                        with m.If(~enable_bit):
                            m.d.sync += [enable[q].eq(0), st.status[q].eq(0),
                                         st.halted[q].eq(0)]
                        with m.Elif(~enable[q]):
                            m.d.sync += [
                                enable[q].eq(1), st.cons[q].eq(st.prod[q]),
                                st.head[q].eq(st.prod[q]), st.cq_prod[q].eq(0),
                                st.phase[q].eq(1), st.halted[q].eq(~setup_ok),
                                st.status[q].eq(setup_status),
                            ]
                            m.d.comb += [self.flush_stb.eq(1), self.flush_queue.eq(q)]


def _setup_checks(ring, qi):
    """The checks ``CTRL.enable`` applies to queue ``qi``, from its ring registers (by name,
    ``Array``\\ s over the queues): ``(setup_ok, setup_status)``, the ``STATUS`` bits of
    every failed check."""
    size, cq_size = ring["SIZE"][qi], ring["CQ_SIZE"][qi]
    size_ok = ring_size_ok(size) & ring_size_ok(cq_size)
    addr_ok = (ring_addr_ok(Cat(ring["BASE_LO"][qi], ring["BASE_HI"][qi]), size) &
               ring_addr_ok(Cat(ring["CQ_BASE_LO"][qi], ring["CQ_BASE_HI"][qi]), cq_size))
    return size_ok & addr_ok, field_word((QUEUE_STATUS_BAD_SIZE, ~size_ok),
                                         (QUEUE_STATUS_BAD_ADDR, ~addr_ok))
