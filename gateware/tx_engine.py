"""The TX work-item engine: work items in host memory in, frames to the MAC and completions out.

One work item carries one message (SINGLE), many messages packed in one buffer (BATCH) or many
messages in separate buffers (GATHER); the engine fetches it with as few DMA reads as the ring
layout allows, reads the message data with one read per buffer, emits one frame per message
and writes one :class:`~hetnic.protocol.TxCompletion` per work item. See
:class:`TxWorkItemEngine`.
"""

from types import SimpleNamespace

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import TxStatus
from ..regs import QUEUE_EQ_QUEUE, RegisterMap
from .axil import CsrSignature
from .beat import Beat
from .dma import dma_read_client, dma_write_client
from .tx_fetch import (TAG_FETCH_BIT, TAG_LAST_BIT, FetchedWorkItem, TxWorkItemFetcher,
                       check_tx_parameters)
from .tx_queues import TxQueueFile, WorkItemResult

__all__ = ["TxWorkItemEngine"]

def _fetch_port(queues, signature):
    """The members of the :class:`~.tx_queues.TxQueueFile` ``queues`` that ``signature`` (a
    :class:`~.tx_fetch.TxQueueFetchSignature`, the fetcher's view) names, as an interface
    object of the flipped signature, for :func:`wiring.connect`."""
    port = SimpleNamespace(**{name: getattr(queues, name) for name in signature.members})
    port.signature = signature.flip()
    return port


class TxWorkItemEngine(wiring.Component):
    """The TX path of the NIC core: TX work items in, frames and completions out.

    Queues are served round robin, one work item at a time. The work-item fetch (steps 1-3
    up to the data reads) is the :class:`~.tx_fetch.TxWorkItemFetcher` submodule; the frame
    cutter (step 4) and the queue file (:class:`~.tx_queues.TxQueueFile`, step 5) follow
    it. For a work item the engine

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
    and stops its queue (``STATUS.dma_error``, :data:`~hetnic.regs.QUEUE_STATUS_DMA`;
    disable and enable it to restart). Any other DMA read error completes the work item with
    ``DMA_ERROR`` (``STATUS.dma_error``) and the engine goes on. As
    :class:`~.dma.DmaEngine` reports a read error on the request's last beat, the frames of
    that request before it have been sent (counted in the completion); the frame in
    progress at the error ends with a beat with ``last`` and ``error`` set, and no further
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
        One DMA read client. Tags: bit ``TAG_FETCH_BIT`` (7) set on work-item reads, bit
        ``TAG_LAST_BIT`` (6) on a work item's last data read, bits 5:0 the queue (see
        :mod:`.tx_fetch`).
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
        Pulses with ``completion_stb`` when that queue was armed (``TXQ_EQ.arm``,
        :data:`~hetnic.regs.QUEUE_EQ_ARM`, which it clears): a ``TX_COMPLETION`` event for
        event queue ``event_queue`` (``TXQ_EQ.event_queue``).
    dma_reads : Out(32)
        Free-running count of DMA read requests issued (work items and data).
    """
    def __init__(self, data_width, n_queues, *, regmap=None):
        check_tx_parameters(data_width, n_queues)
        if regmap is None:
            regmap = RegisterMap(tx_queues=n_queues, data_bytes=data_width // 8)
        elif not isinstance(regmap, RegisterMap) or regmap.params["tx_queues"] != n_queues:
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
            "event_stb": Out(1), "event_queue": Out(QUEUE_EQ_QUEUE.width),
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

        m.submodules.fetcher = fetcher = TxWorkItemFetcher(self.data_width, self.n_queues)
        wiring.connect(m, fetcher.queues, _fetch_port(queues, fetcher.queues.signature))
        wiring.connect(m, wiring.flipped(self.rd_req), fetcher.rd_req)
        with m.If(self.rd_req.valid & self.rd_req.ready):
            m.d.sync += self.dma_reads.eq(self.dma_reads + 1)
        # Read data is routed by tag: work-item slots to the fetcher, the rest to the cutter.
        data_ready = Signal()
        is_slot = self.rd_data.payload.tag[TAG_FETCH_BIT]
        m.d.comb += [fetcher.slot_data.valid.eq(self.rd_data.valid & is_slot),
                     fetcher.slot_data.payload.eq(self.rd_data.payload),
                     self.rd_data.ready.eq(Mux(is_slot, fetcher.slot_data.ready, data_ready))]

        # Finished work items wait here while the queue file writes their completions.
        m.submodules.dones = dones = SyncFIFOBuffered(
            width=WorkItemResult.as_shape().size, depth=2)
        m.d.comb += [queues.result.valid.eq(dones.r_rdy), dones.r_en.eq(queues.result.ready),
                     queues.result.payload.eq(dones.r_data)]
        self._cutter(m, fetcher.lengths, fetcher.jobs, dones, data_ready)
        return m

    # --- frame cutter: data beats -> frames, one per message ------------------------------
    def _cutter(self, m, lengths, jobs, dones, data_ready):
        nbytes = self.data_width // 8
        tx, beat = self.tx, self.rd_data.payload
        job = Signal(FetchedWorkItem)
        busy, errored, reqs_done = Signal(), Signal(), Signal()
        off = Signal(16)                    # bytes of the current message already sent
        left = Signal(7)                    # its lengths still queued (incl. the current)
        sent, sent_bytes, status = Signal(7), Signal(20), Signal(TxStatus)

        cur = lengths.payload
        rest = (cur - off)[:16]
        msg_end = rest <= nbytes
        tail_keep = ((Const(1, nbytes + 1) << rest[:nbytes.bit_length()]) - 1)[:nbytes]
        is_data = self.rd_data.valid & ~beat.tag[TAG_FETCH_BIT]
        take = is_data & data_ready
        m.d.comb += tx.payload.data.eq(beat.data)

        def load():                         # take the next job, if there is one
            m.d.comb += jobs.ready.eq(1)
            with m.If(jobs.valid):
                nxt = jobs.payload
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
            with m.Elif(lengths.valid):
                m.d.comb += [tx.valid.eq(is_data), data_ready.eq(tx.ready),
                             tx.payload.last.eq(msg_end),
                             tx.payload.keep.eq(Mux(msg_end, tail_keep, (1 << nbytes) - 1))]
                with m.If(take):
                    with m.If(msg_end):
                        m.d.comb += lengths.ready.eq(1)
                        m.d.sync += [off.eq(0), left.eq(left - 1), sent.eq(sent + 1),
                                     sent_bytes.eq(sent_bytes + cur)]
                    with m.Else():
                        m.d.sync += off.eq(off + nbytes)
            with m.If(take & beat.last & beat.tag[TAG_LAST_BIT]):
                m.d.sync += reqs_done.eq(1)
        with m.Elif(left != 0):             # drop the lengths of messages not sent
            m.d.comb += lengths.ready.eq(1)
            with m.If(lengths.valid):
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
