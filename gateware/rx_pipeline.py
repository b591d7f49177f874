"""The RX classification pipeline: parser -> RSS hash -> classifier -> indirection table."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from ..protocol import RX_MAX_FRAME_LIMIT, PacketMeta
from ..params import NicParams
from .axil import CsrSignature
from .beat import Beat
from .classifier import FlowClassifier
from .counters import RxCounters
from .parser import HeaderParser
from .registers import RegisterFile, connect_reta
from .reta import IndirectionTable, reta_index
from .rss import RssHashStage
from .skid import SkidBuffer

__all__ = ["RxPipeline"]


class RxPipeline(wiring.Component):
    """Receive-side classification of a NIC: every frame gets one metadata record.

    Frame beats pass from ``rx`` to ``data`` unchanged, through a FIFO; beside them the
    header parser, the RSS hash stage, the flow classifier and the indirection table compute
    one :class:`PacketMeta` record per frame, emitted on ``meta`` in frame order. The record of
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
        (for the per-queue counters and the ID block), ``hash_bytes_per_cycle``; its
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
        m.submodules.parser = parser = HeaderParser(self.data_width)
        m.submodules.rss = rss = RssHashStage(p["hash_bytes_per_cycle"])
        m.submodules.classifier = classifier = FlowClassifier(p["n_rules"])
        m.submodules.reta = reta = IndirectionTable(p["reta_size"])
        # The FIFO's read data comes straight from a block RAM (4 ns clock to out on ECP5); a
        # register slice takes it before the consumer's logic does.
        m.submodules.data_slice = data_slice = SkidBuffer(self.beat)
        connect(m, data_slice.o, wiring.flipped(self.data))
        m.submodules.data_fifo = data_fifo = SyncFIFOBuffered(
            width=len(self.rx.payload.as_value()), depth=self.data_fifo_depth)

        connect(m, wiring.flipped(self.csr), regs.csr)
        connect(m, regs.counters, counters.csr)
        connect_reta(m, regs, reta)

        # --- configuration --------------------------------------------------------------
        m.d.comb += [
            parser.max_frame.eq(Mux(regs.max_frame > self.data_fifo_bytes,
                                    self.data_fifo_bytes, regs.max_frame)),
            parser.direct_ethertype.eq(regs.direct_ethertype),
            rss.key.eq(regs.key), rss.hash_enable.eq(regs.hash_enable),
            rss.symmetric.eq(regs.symmetric),
            classifier.rules.eq(regs.rules), classifier.default_action.eq(regs.default_action),
            classifier.pass_errors.eq(regs.pass_errors),
        ]

        # --- input gate and fork: beats go to the data FIFO and the parser together ---------
        mid_frame = Signal()            # a frame has started on rx and not ended
        in_flight = Signal(8)           # frames started on rx whose record has not left
        gate = Signal()                 # no new frame may start: a commit waits
        m.d.comb += gate.eq(regs.commit_pending & ~mid_frame)

        # A frame that has filled all but one beat of the data FIFO is cut: its further beats
        # go to the parser only, its last beat is stored to end it (see data_fifo_bytes).
        # The limits are registered flags, so no counter compare sits on the path from `rx`
        # to every register that takes the beat.
        stored = Signal(range(self.data_fifo_depth + 1))   # beats of this frame in the FIFO
        at_limit = Signal()                 # stored == data_fifo_depth - 1
        cut = Signal()
        m.d.comb += cut.eq(at_limit & ~self.rx.payload.last)
        in_flight_full = Signal()           # in_flight == 255
        # The parser and the data FIFO each take the beats through a register slice: neither
        # one's `ready` logic is on the other's path, and `rx.ready` comes from flops and the
        # beat's own `last` bit (a cut frame's last beat must still be stored).
        m.submodules.parser_in = parser_in = SkidBuffer(self.beat)
        m.submodules.data_in = data_in = SkidBuffer(self.beat)
        connect(m, parser_in.o, parser.i)
        beat_ok = ~gate & (data_in.i.ready | cut) & parser_in.i.ready & ~in_flight_full
        take = self.rx.valid & beat_ok
        with m.If(take):
            with m.If(self.rx.payload.last):
                m.d.sync += [stored.eq(0), at_limit.eq(0)]
            with m.Elif(~cut):
                m.d.sync += [stored.eq(stored + 1),
                             at_limit.eq(stored == self.data_fifo_depth - 2)]
        m.d.comb += [
            self.rx.ready.eq(beat_ok),
            data_in.i.valid.eq(take & ~cut), data_in.i.payload.eq(self.rx.payload),
            data_fifo.w_en.eq(data_in.o.valid), data_fifo.w_data.eq(data_in.o.payload),
            data_in.o.ready.eq(data_fifo.w_rdy),
            parser_in.i.valid.eq(take), parser_in.i.payload.eq(self.rx.payload),
            data_slice.i.valid.eq(data_fifo.r_rdy), data_slice.i.payload.eq(data_fifo.r_data),
            data_fifo.r_en.eq(data_slice.i.ready),
        ]
        with m.If(take):
            m.d.sync += mid_frame.eq(~self.rx.payload.last)
        frame_start = take & ~mid_frame
        frame_end = take & self.rx.payload.last

        # --- metadata path ------------------------------------------------------------------
        # Each stage passes `ready` on combinationally; register slices after the parser,
        # the hash stage and the classifier and at the output keep that chain (and the
        # enables of every record register it reaches) to one stage.
        m.submodules.parser_slice = parser_slice = SkidBuffer(PacketMeta)
        m.submodules.rss_slice = rss_slice = SkidBuffer(PacketMeta)
        m.submodules.class_slice = class_slice = SkidBuffer(PacketMeta)
        m.submodules.out_slice = out_slice = SkidBuffer(PacketMeta)
        connect(m, parser.o, parser_slice.i)
        connect(m, parser_slice.o, rss.i)
        connect(m, rss.o, rss_slice.i)
        connect(m, rss_slice.o, classifier.i)
        connect(m, classifier.o, class_slice.i)
        connect(m, class_slice.o, reta.i)
        connect(m, reta.o, out_slice.i)
        m.d.comb += [
            self.meta.valid.eq(out_slice.o.valid),
            self.meta.payload.eq(out_slice.o.payload),
            self.meta.payload.generation.eq(regs.generation),
            out_slice.o.ready.eq(self.meta.ready),
        ]
        meta_out = self.meta.valid & self.meta.ready
        next_in_flight = Signal.like(in_flight)
        m.d.comb += next_in_flight.eq(in_flight + frame_start - meta_out)
        m.d.sync += [in_flight.eq(next_in_flight), in_flight_full.eq(next_in_flight == 255)]

        # A commit applies when nothing is inside the metadata path and the RETA shadow is
        # coherent (the register file then copies the rules, a few hundred cycles, while
        # the gate stays shut); every record carries the generation it was processed with.
        m.d.comb += regs.commit_apply.eq(regs.commit_pending & ~mid_frame & (in_flight == 0) &
                                         ~reta.busy)
        m.d.comb += [reta.flip_stb.eq(regs.commit_done),
                     self.commit_stb.eq(regs.commit_done), self.generation.eq(regs.generation)]

        # --- counters -----------------------------------------------------------------------
        frame_len = Signal(32)         # bytes so far; BYTES_IN adds the whole frame
        beat_bytes = Signal(range(self.data_width // 8 + 1))
        m.d.comb += beat_bytes.eq(sum(self.rx.payload.keep))
        with m.If(take):
            with m.If(self.rx.payload.last):
                m.d.sync += frame_len.eq(0)
            with m.Else():
                m.d.sync += frame_len.eq(frame_len + beat_bytes)
        m.d.comb += [
            counters.frame_in_stb.eq(frame_end),
            counters.frame_in_len.eq(frame_len + beat_bytes),
            counters.meta_stb.eq(meta_out),
            counters.meta.eq(self.meta.payload),
            counters.bucket.eq(reta_index(out_slice.o.payload, p["reta_size"])),
        ]
        return m
