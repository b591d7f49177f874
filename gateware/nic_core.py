"""The NIC core: RX classification, RX queues with DMA rings, TX work items, event queues."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from ..protocol import EventType
from ..params import NIC_CORE_W64, NicParams
from .axil import CsrDecoder, CsrSignature
from .beat import Beat
from .dma import Axi4Signature, DmaEngine
from .event_queues import EventArbiter, EventPost, EventQueues
from .rx_pipeline import RxPipeline
from .rx_queues import RxQueueManager
from .tx_engine import TxWorkItemEngine

__all__ = ["NicCore", "READ_BURST_BEATS", "READ_OUTSTANDING"]

#: Longest DMA read burst, in beats, and read bursts in flight. Host memory returns read
#: data in order, so a descriptor read waits for the read data issued before it: at most
#: ``READ_OUTSTANDING * READ_BURST_BEATS`` beats (24), as the DMA engine hands out bursts
#: round robin among its clients. 24 beats in flight still let TX read a beat per cycle
#: from a host memory that answers within about 12 cycles (measured on the harness: 2
#: bursts in flight cover about 6 cycles, 4 about 20, at 18 and 34 cycles per RX frame).
READ_BURST_BEATS = 8
READ_OUTSTANDING = 3


class NicCore(wiring.Component):
    """A complete SmartNIC datapath between two MAC streams and host memory.

    Frames from ``rx_mac`` are parsed, hashed and classified (:class:`RxPipeline`), then
    written into the posted buffers of their receive queue with one completion each
    (:class:`RxQueueManager`). Work items in host memory become frames on ``tx_mac``
    (:class:`TxWorkItemEngine`). Queue events go to event rings with coalesced interrupts
    (:class:`EventQueues`). All host-memory traffic goes through one AXI4 master
    (:class:`DmaEngine`, data width = datapath width); all registers through ``csr``.

    Parameters
    ----------
    params : NicParams
        The build: ``data_width`` (datapath and DMA width in bits), ``rx_queues``,
        ``tx_queues`` and ``event_queues`` (each at least 1; the RETA names the RX queues,
        ``queues == rx_queues``), ``n_rules``, ``reta_size`` and ``hash_bytes_per_cycle`` as
        :class:`RxPipeline`. Default :data:`~hetnic.params.NIC_CORE_W64`.

    Members
    -------
    rx_mac : In(stream.Signature(Beat(data_width)))
    tx_mac : Out(stream.Signature(Beat(data_width)))
    csr : In(CsrSignature(16))
    dma : Out(Axi4Signature(data_width))
    irq : Out(event_queues)
        One-cycle pulses, one line per event queue.
    """
    def __init__(self, params: NicParams = NIC_CORE_W64):
        if not isinstance(params, NicParams):
            raise TypeError(f"params must be a NicParams, not {params!r}")
        for name in ("rx_queues", "tx_queues", "event_queues"):
            if getattr(params, name) < 1:
                raise ValueError(f"a NIC core needs {name} of at least 1, not "
                                 f"{getattr(params, name)!r}")
        if params.queues != params.rx_queues:
            raise ValueError(f"a NIC core's RETA names its RX queues: queues must equal "
                             f"rx_queues ({params.rx_queues}), not {params.queues!r}")
        data_width, event_queues = params.data_width, params.event_queues
        self.data_width = data_width
        self.params = params
        self.regmap = params.regmap()
        super().__init__({
            "rx_mac": In(stream.Signature(Beat(data_width))),
            "tx_mac": Out(stream.Signature(Beat(data_width))),
            "csr": In(CsrSignature(16)),
            "dma": Out(Axi4Signature(data_width)),
            "irq": Out(event_queues),
        })

    def _window(self, prefix, count):
        base, stride, _ = self.regmap.queue_window(prefix)
        return base, base + count * stride

    def elaborate(self, platform):
        m = Module()
        p, w = self.params, self.data_width

        m.submodules.pipeline = pipeline = RxPipeline(p)
        m.submodules.rx_queues = rxq = RxQueueManager(w, p.rx_queues)
        m.submodules.tx_engine = txe = TxWorkItemEngine(w, p.tx_queues)
        m.submodules.event_queues = eqs = EventQueues(p.event_queues, w)
        m.submodules.dma = dma = DmaEngine(
            w, n_read_clients=2, n_write_clients=3,
            max_read_burst_beats=READ_BURST_BEATS, read_outstanding=READ_OUTSTANDING)

        # --- registers: the queue windows go to their blocks, the rest to the pipeline ----
        m.submodules.csr_decoder = decoder = CsrDecoder(16, [
            self._window("RXQ", p.rx_queues),
            self._window("TXQ", p.tx_queues),
            self._window("EQ", p.event_queues),
        ])
        connect(m, wiring.flipped(self.csr), decoder.bus)
        connect(m, decoder.sub[0], rxq.csr)
        connect(m, decoder.sub[1], txe.csr)
        connect(m, decoder.sub[2], eqs.csr)
        connect(m, decoder.default, pipeline.csr)

        # --- datapath -----------------------------------------------------------------
        connect(m, wiring.flipped(self.rx_mac), pipeline.rx)
        connect(m, pipeline.data, rxq.data)
        connect(m, pipeline.meta, rxq.meta)
        connect(m, txe.tx, wiring.flipped(self.tx_mac))

        # --- host memory: read clients 0 RX descriptors, 1 TX work items and data;
        #     write clients 0 RX frames and completions, 1 TX completions, 2 events ------
        connect(m, rxq.rd_req, dma.rd_req[0])
        connect(m, dma.rd_data[0], rxq.rd_data)
        connect(m, txe.rd_req, dma.rd_req[1])
        connect(m, dma.rd_data[1], txe.rd_data)
        for index, client in enumerate((rxq, txe, eqs)):
            connect(m, client.wr_req, dma.wr_req[index])
            connect(m, client.wr_data, dma.wr_data[index])
            connect(m, dma.wr_done[index], client.wr_done)
        connect(m, dma.axi, wiring.flipped(self.dma))

        # --- events and interrupts ------------------------------------------------------
        timestamp = Signal(48)
        m.d.sync += timestamp.eq(timestamp + 1)
        m.d.comb += [rxq.timestamp.eq(timestamp), eqs.timestamp.eq(timestamp),
                     self.irq.eq(eqs.irq)]
        # Event sources: RX completions of armed queues (a stream), TX completions of armed
        # queues and applied commits (pulses, queued here: at most one per TX queue per arm
        # and one per commit can be pending, so the queues never overflow). COMMIT_DONE goes
        # to event queue 0 with the new generation.
        m.submodules.tx_events = tx_events = SyncFIFOBuffered(
            width=len(eqs.post.payload.as_value()), depth=p.tx_queues + 1)
        m.submodules.commit_events = commit_events = SyncFIFOBuffered(
            width=len(eqs.post.payload.as_value()), depth=2)
        m.submodules.event_arbiter = arbiter = EventArbiter(3)
        tx_post, commit_post = Signal(EventPost), Signal(EventPost)
        m.d.comb += [
            tx_post.event_queue.eq(txe.event_queue), tx_post.type.eq(EventType.TX_COMPLETION),
            tx_post.source.eq(txe.completion_queue),
            tx_events.w_data.eq(tx_post), tx_events.w_en.eq(txe.event_stb),
            commit_post.event_queue.eq(0), commit_post.type.eq(EventType.COMMIT_DONE),
            commit_post.info.eq(pipeline.generation + 1),
            commit_events.w_data.eq(commit_post), commit_events.w_en.eq(pipeline.commit_stb),
        ]
        connect(m, rxq.event, arbiter.posts[0])
        for index, fifo in ((1, tx_events), (2, commit_events)):
            m.d.comb += [arbiter.posts[index].valid.eq(fifo.r_rdy),
                         arbiter.posts[index].payload.eq(fifo.r_data),
                         fifo.r_en.eq(arbiter.posts[index].ready)]
        connect(m, arbiter.post, eqs.post)
        return m
