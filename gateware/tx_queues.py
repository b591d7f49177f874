"""The TX queues: ``TXQ_*`` registers, ring indices and completion writes, for
:class:`~.tx_engine.TxWorkItemEngine`."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import TxCompletion, TxStatus
from ..regs import RegisterMap
from .axil import CsrSignature
from .dma import dma_write_client

__all__ = ["TxQueueFile", "WorkItemResult", "ring_size_ok", "ring_addr_ok", "STATUS_BAD_SIZE",
           "STATUS_DOORBELL", "STATUS_BAD_ADDR", "STATUS_DMA"]

#: Bit numbers in ``TXQ_STATUS`` (the register table describes them but names no fields).
STATUS_BAD_SIZE, STATUS_DOORBELL, STATUS_BAD_ADDR, STATUS_DMA = 0, 1, 2, 3
#: Bytes of a work-item slot and of a completion entry.
SLOT_BYTES = 16
_RING_REGS = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI", "CQ_SIZE")


class WorkItemResult(data.Struct):
    """What the engine reports for one finished work item (becomes its TxCompletion)."""
    queue: 6
    cookie: 32
    wqe_index: 16       # ring position of the header
    slots: 7            # slots the work item consumed
    status: TxStatus
    messages: 7         # frames sent
    bytes: 20


def ring_size_ok(size):
    """``size`` (a 32-bit register value) is a power of two from 2 to 32768."""
    return (size >= 2) & (size <= 32768) & ((size & (size - 1)) == 0)


def ring_addr_ok(base, size):
    """A ring of ``size`` 16-byte entries at ``base`` is 16-byte aligned and ends at or
    below ``2**64``."""
    return (base[:4] == 0) & (base + size * SLOT_BYTES <= (1 << 64))


class TxQueueFile(wiring.Component):
    """Per-queue state of the TX path: the ``TXQ_*`` registers, ring indices, completions.

    Register semantics (what the register table leaves open):

    * ``BASE_*``, ``SIZE`` and ``CQ_*`` may be written while the queue is disabled; writes
      while it is enabled are dropped (they read back unchanged). ``PROD`` written while the
      queue is disabled sets the index it starts at.
    * Writing ``CTRL`` bit 0 = 1 to a disabled queue enables it: ``CONS`` and the engine's
      fetch index start at ``PROD`` (the ring starts empty), ``CQ_PROD`` at 0, the completion
      phase at 1; the sizes and addresses are checked (``STATUS`` bits 0 and 2; a queue with
      a bad setting stays idle). While a work item of a disabled queue is still in flight, a
      write that enables it or changes a ring register is held (``ack`` waits) until that
      work item has completed, so nothing of an old setup reaches a new one.
    * Writing ``CTRL`` bit 0 = 0 disables the queue at once: no new work item starts, those
      in flight finish (frames, completion, ``CONS``); ``STATUS`` clears.
    * ``PROD`` written while enabled is a doorbell. It must move forward by at most the free
      slots: ``PROD_old - C <= PROD_new - C <= SIZE`` (16-bit arithmetic), where ``C`` is
      ``CONS`` plus the slots of a completion being written (the host may reuse them as soon
      as it sees the completion, before its DMA write is done). Any other value is ignored
      and sets ``STATUS`` bit 1.
    * ``STATUS`` bit 3 (DMA error) is set by ``halt_stb`` (the queue also stops: its ring
      cannot be read), by a result with status ``DMA_ERROR`` and by a failed completion write.
    * Other ``rw`` registers of the queue window (``TXQ_EQ``) are stored and read back.

    Completions. Each ``result`` becomes one :class:`TxCompletion` at ``CQ_BASE + 16 *
    (CQ_PROD % CQ_SIZE)`` with the queue's phase (1 on the first pass over the ring, flipping
    at each wrap): a 16-byte DMA write (request and data beats offered together), then, on its
    done, ``CONS += slots``, ``CQ_PROD += 1`` and a ``completion_stb`` pulse in the next cycle.
    One completion is written at a time: 3 + 16 * 8 / W cycles plus the write's latency.

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
        Stop ``sel``: its ring could not be read. Sets ``STATUS`` bit 3.
    flush_stb : Out(1)
    flush_queue : Out(range(n_queues))
        Queue ``flush_queue`` is enabled this cycle: anything cached about it is stale.
    result : In(stream.Signature(WorkItemResult))
        Finished work items, in the order they started.
    wr_req, wr_data, wr_done
        The DMA write client (see :mod:`.dma`); tag = queue.
    completion_stb : Out(1)
    completion_queue : Out(range(n_queues))
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
            "sel": In(range(n)), "sel_base": Out(64), "sel_mask": Out(16),
            "sel_prod": Out(16), "sel_head": Out(16),
            "start_stb": In(1), "head_stb": In(1), "head_slots": In(7), "halt_stb": In(1),
            "flush_stb": Out(1), "flush_queue": Out(range(n)),
            "result": In(stream.Signature(WorkItemResult)),
            **dma_write_client(data_width),
            "completion_stb": Out(1), "completion_queue": Out(range(n)),
            "event_stb": Out(1), "event_queue": Out(6),
        })

    def elaborate(self, platform):
        m = Module()
        rm, n, csr = self.regmap, self.n_queues, self.csr
        window, stride, offset = rm.queue_window("TXQ")
        extra = [name for name in offset if rm[f"TXQ_{name}"].access == "rw" and name not in
                 (*_RING_REGS, "PROD", "CTRL")]

        def regs(name, width, init=0):
            return Array(Signal(width, init=init, name=f"q{q}_{name.lower()}")
                         for q in range(n))

        ring = {name: regs(name, 32) for name in _RING_REGS}
        base_lo, base_hi, size = ring["BASE_LO"], ring["BASE_HI"], ring["SIZE"]
        cq_lo, cq_hi, cq_size = ring["CQ_BASE_LO"], ring["CQ_BASE_HI"], ring["CQ_SIZE"]
        prod, cons, head = regs("PROD", 16), regs("CONS", 16), regs("HEAD", 16)
        cq_prod, phase = regs("CQ_PROD", 16), regs("PHASE", 1, init=1)
        enable, halted, status = regs("EN", 1), regs("HALTED", 1), regs("STATUS", 4)
        inflight = regs("INFLIGHT", 4)      # started work items not yet completed (<= 8)
        stored = {name: regs(name, 32) for name in extra}

        for q in range(n):
            m.d.comb += self.runnable[q].eq(enable[q] & ~halted[q] & (prod[q] != head[q]))
        s = self.sel
        m.d.comb += [
            self.sel_base.eq(Cat(base_lo[s], base_hi[s])),
            self.sel_mask.eq(size[s] - 1),
            self.sel_prod.eq(prod[s]),
            self.sel_head.eq(head[s]),
        ]

        # --- completion writer ---------------------------------------------------------------
        w = self.data_width
        beats = 8 * SLOT_BYTES // w
        rec = Signal(WorkItemResult)
        c = rec.queue[:max(1, (n - 1).bit_length())]
        comp = Signal(TxCompletion)
        writing, done_stb, write_error = Signal(), Signal(), Signal()
        req_sent, beat_i = Signal(), Signal(range(beats + 1))
        m.d.comb += [
            comp.cookie.eq(rec.cookie), comp.wqe_index.eq(rec.wqe_index),
            comp.messages.eq(rec.messages), comp.status.eq(rec.status),
            comp.bytes.eq(rec.bytes), comp.phase.eq(phase[c]),
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
                    writing.eq(1),
                    wr_req.valid.eq(~req_sent), wr_req.payload.length.eq(SLOT_BYTES),
                    wr_req.payload.addr.eq(Cat(cq_lo[c], cq_hi[c]) +
                                           ((cq_size[c] - 1)[:16] & cq_prod[c]) * SLOT_BYTES),
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
                m.d.comb += [writing.eq(1), wr_done.ready.eq(1)]
                with m.If(wr_done.valid):
                    m.d.comb += [done_stb.eq(1), write_error.eq(wr_done.payload.error)]
                    m.d.sync += [self.completion_stb.eq(1), self.completion_queue.eq(c)]
                    # An armed queue (TXQ_EQ bit 8) reports this completion once, to the
                    # event queue in TXQ_EQ bits 5:0, and is disarmed.
                    if "EQ" in stored:
                        with m.If(stored["EQ"][c][8]):
                            m.d.sync += [self.event_stb.eq(1),
                                         self.event_queue.eq(stored["EQ"][c][:6]),
                                         stored["EQ"][c][8].eq(0)]
                    m.next = "IDLE"

        # --- engine side: fetch index, completions, in-flight count ----------------------------
        for q in range(n):
            done = done_stb & (c == q)
            m.d.sync += inflight[q].eq(inflight[q] + (self.start_stb & (s == q)) - done)
            with m.If(self.head_stb & (s == q)):
                m.d.sync += head[q].eq(head[q] + self.head_slots)
            with m.If(self.halt_stb & (s == q)):
                m.d.sync += [halted[q].eq(1), status[q][STATUS_DMA].eq(1)]
            with m.If(done):
                nxt = (cq_prod[q] + 1)[:16]
                m.d.sync += [cons[q].eq(cons[q] + rec.slots), cq_prod[q].eq(nxt)]
                with m.If((nxt & (cq_size[q] - 1)[:16]) == 0):
                    m.d.sync += phase[q].eq(~phase[q])
                with m.If(write_error | (rec.status == TxStatus.DMA_ERROR)):
                    m.d.sync += status[q][STATUS_DMA].eq(1)

        # --- bus ------------------------------------------------------------------------------
        rel = Signal(16)
        m.d.comb += rel.eq(csr.addr - window)
        in_window = (csr.addr >= window) & (csr.addr < window + n * stride)
        qi = Signal(range(n))
        m.d.comb += qi.eq(rel[stride.bit_length() - 1:])
        word = rel[:stride.bit_length() - 1]
        is_ring = 0
        for name in _RING_REGS:
            is_ring |= word == offset[name]
        # A setup change of a disabled queue waits until its last work item has completed.
        hold = in_window & ~enable[qi] & (inflight[qi] != 0) & (
            is_ring | ((word == offset["CTRL"]) & csr.w_data[0]))
        m.d.comb += csr.ack.eq(csr.r_stb | (csr.w_stb & ~hold))
        write = csr.w_stb & ~hold & in_window

        with m.If(csr.r_stb & in_window):
            values = {**ring, "PROD": prod, "CONS": cons, "CTRL": enable, "STATUS": status,
                      "CQ_PROD": cq_prod, **stored}
            with m.Switch(word):
                for name, value in values.items():
                    with m.Case(offset[name]):
                        m.d.comb += csr.r_data.eq(value[qi])

        # Checks of the addressed queue's setup, applied when it is enabled.
        size_ok = ring_size_ok(size[qi]) & ring_size_ok(cq_size[qi])
        addr_ok = (ring_addr_ok(Cat(base_lo[qi], base_hi[qi]), size[qi]) &
                   ring_addr_ok(Cat(cq_lo[qi], cq_hi[qi]), cq_size[qi]))
        value16 = csr.w_data[:16]
        freed = Signal(16)      # the addressed queue's CONS, with a completion being written
        m.d.comb += freed.eq(cons[qi] + Mux(writing & (c == qi), rec.slots, 0))
        doorbell_ok = (((value16 - freed)[:16] <= size[qi]) &
                       ((value16 - freed)[:16] >= (prod[qi] - freed)[:16]))
        for q in range(n):
            with m.If(write & (qi == q)):
                with m.Switch(word):
                    for name, reg in ring.items():
                        with m.Case(offset[name]):
                            with m.If(~enable[q]):
                                m.d.sync += reg[q].eq(csr.w_data)
                    for name, reg in stored.items():
                        with m.Case(offset[name]):
                            m.d.sync += reg[q].eq(csr.w_data)
                    with m.Case(offset["PROD"]):
                        with m.If(~enable[q] | doorbell_ok):
                            m.d.sync += prod[q].eq(value16)
                        with m.Else():
                            m.d.sync += status[q][STATUS_DOORBELL].eq(1)
                    with m.Case(offset["CTRL"]):
                        with m.If(~csr.w_data[0]):
                            m.d.sync += [enable[q].eq(0), status[q].eq(0), halted[q].eq(0)]
                        with m.Elif(~enable[q]):
                            m.d.sync += [
                                enable[q].eq(1), cons[q].eq(prod[q]), head[q].eq(prod[q]),
                                cq_prod[q].eq(0), phase[q].eq(1),
                                halted[q].eq(~size_ok | ~addr_ok),
                                status[q].eq((~size_ok << STATUS_BAD_SIZE) |
                                             (~addr_ok << STATUS_BAD_ADDR)),
                            ]
                            m.d.comb += [self.flush_stb.eq(1), self.flush_queue.eq(q)]
        return m
