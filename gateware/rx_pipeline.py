"""The RX classification pipeline: parser -> RSS hash -> classifier -> flow table ->
indirection table."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..protocol import RX_MAX_FRAME_LIMIT, PacketMeta
from ..params import NicParams
from .axil import CsrSignature
from .beat import Beat
from .classifier import FlowClassifier
from .counters import RxCounters
from .flow_table import FlowTable
from .parser import HeaderParser
from .registers import RegisterFile
from .reta import IndirectionTable, reta_index
from .rx_frame_fork import RxFrameFork
from .rss import RssHashStage
from .skid import SkidBuffer

__all__ = ["RxPipeline"]


class RxPipeline(wiring.Component):
    """Receive-side classification of a NIC: every frame gets one metadata record.

    Frame beats pass from ``rx`` to ``data`` unchanged, through a FIFO
    (:class:`~hetnic.gateware.rx_frame_fork.RxFrameFork`); beside them the
    header parser, the RSS hash stage, the flow classifier and the indirection table compute
    one :class:`PacketMeta` record per frame, emitted on ``meta`` in frame order. The flow
    table (:class:`~hetnic.gateware.flow_table.FlowTable`), in a build with
    ``params.flow_table``, follows the classifier: a frame whose 5-tuple hits one of its
    entries takes that entry's action instead of the rules' (``rule = FLOW_HIT_RULE``); its
    staged changes apply with ``COMMIT`` like the rules. The record of
    a frame is emitted after the frame's last beat was accepted on ``rx`` (a handful of
    cycles later: parse, hash, match, lookup). The packet data is never copied through the
    metadata path. Dropped frames still appear on ``data`` and ``meta`` (with ``drop`` set):
    the consumer discards them, so it sees one record per frame and counts stay exact.

    Configuration writes go to shadow registers; ``COMMIT`` is applied at a frame boundary
    when no record is inside the metadata path, so no frame sees a mix of old and new
    configuration. While a commit waits and applies, ``rx`` accepts no new frame: the frames in
    the metadata path drain, then the register file copies the rules (``n_rules * 32``
    cycles, see :class:`~hetnic.gateware.registers.RegisterFile`).

    Throughput: a beat per cycle as long as frames are at least as long as the header parse
    (about 3 cycles for Eth/IPv4/TCP, up to 7 with IPv6 extension headers): at 64 bits every
    frame of 49 bytes or more. At 256 or 512 bits, back-to-back minimum-size frames arrive
    faster than that and ``rx`` stalls (about a third of line rate at 512 bits).

    Parameters
    ----------
    params : NicParams
        The build: ``data_width`` (bits per beat), ``n_rules``, ``reta_size``, ``queues``
        (for the per-queue counters and the ID block), ``hash_bytes_per_cycle``,
        ``flow_table``; its
        :meth:`~hetnic.params.NicParams.regmap` is the register file's table (a NIC core's
        or a board's includes the registers of the blocks around the pipeline, which their
        own decoders answer).
    data_fifo_bytes : int
        Bytes the data FIFO holds (rounded up to whole beats). A consumer may wait for a
        frame's record before it takes the frame's data (store and forward, as an RX DMA
        does). A frame longer than the FIFO never wedges such a consumer: once the frame has
        filled all but one beat of the FIFO its further beats go only to the parser, its last
        beat ends the stored (cut) frame, and its record says ``OVERSIZE`` (the effective
        ``MAX_FRAME`` is at most ``data_fifo_bytes``). The default is
        :data:`~hetnic.protocol.RX_MAX_FRAME_LIMIT`, which the software model assumes.

    Members
    -------
    rx : In(stream.Signature(Beat(data_width)))
    data : Out(stream.Signature(Beat(data_width)))
    meta : Out(stream.Signature(PacketMeta))
    csr : In(CsrSignature(16))
        Register accesses (the AXI4-Lite slave sits in the top level, so a NIC core can share
        one bus between this and its queue blocks).
    """
    def __init__(self, params: NicParams, *, data_fifo_bytes=RX_MAX_FRAME_LIMIT):
        if not isinstance(params, NicParams):
            raise TypeError(f"params must be a NicParams, not {params!r}")
        data_width = params.data_width
        self.beat = Beat(data_width)
        self.params = params
        self.regmap = params.regmap()
        if not isinstance(data_fifo_bytes, int) or data_fifo_bytes < 2 * (data_width // 8):
            raise ValueError(f"data_fifo_bytes must be an integer of at least two beats, "
                             f"not {data_fifo_bytes!r}")
        self.data_width = data_width
        self.data_fifo_depth = -(-data_fifo_bytes // (data_width // 8))
        self.data_fifo_bytes = data_fifo_bytes
        super().__init__({
            "rx": In(stream.Signature(self.beat)),
            "data": Out(stream.Signature(self.beat)),
            "meta": Out(stream.Signature(PacketMeta)),
            "csr": In(CsrSignature(16)),
            "commit_stb": Out(1),       # a COMMIT was applied in this cycle
            "generation": Out(16),      # the configuration generation now in force
        })

    def elaborate(self, platform):
        m = Module()
        p = self.regmap.params
        m.submodules.regs = regs = RegisterFile(self.regmap)
        m.submodules.counters = counters = RxCounters(self.regmap)
        m.submodules.fork = fork = RxFrameFork(self.data_width, self.data_fifo_depth)
        m.submodules.parser = parser = HeaderParser(self.data_width)
        m.submodules.rss = rss = RssHashStage(p["hash_bytes_per_cycle"])
        m.submodules.classifier = classifier = FlowClassifier(p["n_rules"])
        if p["flow_table"]:
            m.submodules.flows = flows = FlowTable(self.regmap)
        m.submodules.reta = reta = IndirectionTable(p["reta_size"])
        connect(m, wiring.flipped(self.csr), regs.csr)
        connect(m, regs.counters, counters.csr)
        if p["flow_table"]:
            connect(m, regs.flows, flows.csr)
        connect(m, regs.reta, reta.bus)
        connect(m, wiring.flipped(self.rx), fork.rx)
        connect(m, fork.data, wiring.flipped(self.data))
        connect(m, fork.parse, parser.i)
        m.d.comb += [
            parser.max_frame.eq(Mux(regs.max_frame > self.data_fifo_bytes,
                                    self.data_fifo_bytes, regs.max_frame)),
            parser.direct_ethertype.eq(regs.direct_ethertype),
            rss.key.eq(regs.key), rss.hash_enable.eq(regs.hash_enable),
            rss.symmetric.eq(regs.symmetric),
            classifier.rules.eq(regs.rules), classifier.default_action.eq(regs.default_action),
            classifier.pass_errors.eq(regs.pass_errors),
        ]
        stages = [parser, rss, classifier, reta]
        if p["flow_table"]:
            m.d.comb += [
                flows.pass_errors.eq(regs.pass_errors),
                flows.commit_apply.eq(regs.commit_apply), flows.commit_done.eq(regs.commit_done),
                counters.flow_refused_stb.eq(flows.refused_stb),
            ]
            stages.insert(3, flows)
        out_slice = self._elaborate_meta_path(m, *stages)
        m.d.comb += [
            self.meta.valid.eq(out_slice.o.valid),
            self.meta.payload.eq(out_slice.o.payload),
            self.meta.payload.generation.eq(regs.generation),
            out_slice.o.ready.eq(self.meta.ready),
        ]
        meta_out = self.meta.valid & self.meta.ready
        # Every record carries the generation it was processed with.
        self._elaborate_commit(m, regs, fork, reta, meta_out)
        m.d.comb += [self.commit_stb.eq(regs.commit_done), self.generation.eq(regs.generation)]
        m.d.comb += [
            counters.frame_in_stb.eq(fork.frame_end_stb),
            counters.frame_in_len.eq(fork.frame_len),
            counters.meta_stb.eq(meta_out),
            counters.meta.eq(self.meta.payload),
            counters.bucket.eq(reta_index(out_slice.o.payload, p["reta_size"])),
        ]
        return m

    @staticmethod
    def _elaborate_meta_path(m, *stages):
        """The metadata path: ``stages`` (parser, hash stage, classifier, the flow table if
        the build has it, indirection table) in a chain, each followed by a register slice.
        Each stage passes ``ready`` on combinationally; the slices keep that chain (and the
        enables of every record register it reaches) to one stage. Returns the last slice
        (the path's output)."""
        names = ("parser_slice", "rss_slice", "class_slice", "flow_slice", "out_slice")
        if len(stages) == 4:        # no flow table
            names = names[:3] + names[4:]
        source = None
        for name, stage in zip(names, stages, strict=True):
            if source is not None:
                connect(m, source, stage.i)
            m.submodules[name] = out = SkidBuffer(PacketMeta)
            connect(m, stage.o, out.i)
            source = out.o
        return out

    @staticmethod
    def _elaborate_commit(m, regs, fork, reta, meta_out):
        """The commit gate. While a commit waits no new frame starts; it applies when no
        frame is mid-way on ``rx``, no record is inside the metadata path and the RETA shadow
        is coherent (the register file then copies the rules, a few hundred cycles, while the
        gate stays shut). The frames in flight (started on ``rx``, record not yet out) are
        counted to 255; at 255 no beat is taken."""
        in_flight = Signal(8)
        in_flight_full = Signal()           # in_flight == 255
        next_in_flight = Signal.like(in_flight)
        m.d.comb += [next_in_flight.eq(in_flight + fork.frame_start_stb - meta_out),
                     fork.new_frame_hold.eq(regs.commit_pending), fork.full.eq(in_flight_full)]
        m.d.sync += [in_flight.eq(next_in_flight), in_flight_full.eq(next_in_flight == 255)]
        m.d.comb += [
            regs.commit_apply.eq(regs.commit_pending & ~fork.mid_frame & (in_flight == 0) &
                                 ~reta.bus.busy),
            reta.flip_stb.eq(regs.commit_done),
        ]
