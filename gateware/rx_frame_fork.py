"""The RX pipeline's input: frame beats forked to the data FIFO and to the header parser."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from .beat import Beat
from .skid import SkidBuffer

__all__ = ["RxFrameFork"]


class RxFrameFork(wiring.Component):
    """Takes frame beats from ``rx`` into a data FIFO (out on ``data``) and, the same beats,
    to the header parser (``parse``), and tells where frames start and end.

    A beat is taken from ``rx`` when both paths have room, ``full`` is low and, for the
    first beat of a frame, ``new_frame_hold`` is low (a frame already started always
    finishes). ``rx.ready`` comes from flops, ``full`` and ``new_frame_hold`` and the beat's
    own ``last`` bit: the parser and the data FIFO each take the beats through a register
    slice (:class:`~.skid.SkidBuffer`), so neither one's ``ready`` logic is on the other's
    path.

    A frame that has filled all but one beat of the FIFO is cut: its further beats go to
    the parser only, its last beat is stored to end it, so a consumer that waits for a
    frame's record before taking its data never wedges. The limit is a registered flag, so
    no counter compare sits on the path from ``rx`` to every register that takes the beat.
    ``data`` comes from the FIFO's block RAM through a register slice.

    Parameters
    ----------
    data_width : int
        Bits per beat.
    fifo_depth : int
        Beats the data FIFO holds (at least 2).

    Members
    -------
    rx : In(stream.Signature(Beat(data_width)))
    data : Out(stream.Signature(Beat(data_width)))
        The beats in order, over-long frames cut.
    parse : Out(stream.Signature(Beat(data_width)))
        Every beat, one cycle after it was taken.
    new_frame_hold : In(1)
        No new frame may start (a commit waits).
    full : In(1)
        No beat may be taken (the frames in flight would overflow a count).
    mid_frame : Out(1)
        A frame has started on ``rx`` and not ended (a flop).
    frame_start_stb, frame_end_stb : Out(1)
        The first, the last beat of a frame is taken in this cycle (one beat can be both).
    frame_len : Out(32)
        With ``frame_end_stb``: the frame's length in bytes (``keep`` bits of its beats).
    """
    def __init__(self, data_width: int, fifo_depth: int):
        self.beat = Beat(data_width)
        self.data_width, self.fifo_depth = data_width, fifo_depth
        super().__init__({
            "rx": In(stream.Signature(self.beat)),
            "data": Out(stream.Signature(self.beat)),
            "parse": Out(stream.Signature(self.beat)),
            "new_frame_hold": In(1), "full": In(1),
            "mid_frame": Out(1), "frame_start_stb": Out(1), "frame_end_stb": Out(1),
            "frame_len": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        rx, depth = self.rx, self.fifo_depth
        # The FIFO's read data comes straight from a block RAM (4 ns clock to out on ECP5); a
        # register slice takes it before the consumer's logic does.
        m.submodules.data_slice = data_slice = SkidBuffer(self.beat)
        connect(m, data_slice.o, wiring.flipped(self.data))
        m.submodules.data_fifo = data_fifo = SyncFIFOBuffered(
            width=len(rx.payload.as_value()), depth=depth)
        m.submodules.parser_in = parser_in = SkidBuffer(self.beat)
        m.submodules.data_in = data_in = SkidBuffer(self.beat)
        connect(m, parser_in.o, wiring.flipped(self.parse))

        stored = Signal(range(depth + 1))   # beats of this frame in the FIFO
        at_limit = Signal()                 # stored == depth - 1
        cut = Signal()
        m.d.comb += cut.eq(at_limit & ~rx.payload.last)
        gate = Signal()                     # no new frame may start
        m.d.comb += gate.eq(self.new_frame_hold & ~self.mid_frame)
        beat_ok = ~gate & (data_in.i.ready | cut) & parser_in.i.ready & ~self.full
        take = rx.valid & beat_ok
        with m.If(take):
            with m.If(rx.payload.last):
                m.d.sync += [stored.eq(0), at_limit.eq(0)]
            with m.Elif(~cut):
                m.d.sync += [stored.eq(stored + 1), at_limit.eq(stored == depth - 2)]
        m.d.comb += [
            rx.ready.eq(beat_ok),
            data_in.i.valid.eq(take & ~cut), data_in.i.payload.eq(rx.payload),
            data_fifo.w_en.eq(data_in.o.valid), data_fifo.w_data.eq(data_in.o.payload),
            data_in.o.ready.eq(data_fifo.w_rdy),
            parser_in.i.valid.eq(take), parser_in.i.payload.eq(rx.payload),
            data_slice.i.valid.eq(data_fifo.r_rdy), data_slice.i.payload.eq(data_fifo.r_data),
            data_fifo.r_en.eq(data_slice.i.ready),
        ]
        with m.If(take):
            m.d.sync += self.mid_frame.eq(~rx.payload.last)
        m.d.comb += [self.frame_start_stb.eq(take & ~self.mid_frame),
                     self.frame_end_stb.eq(take & rx.payload.last)]

        frame_len = Signal(32)              # bytes so far
        beat_bytes = Signal(range(self.data_width // 8 + 1))
        m.d.comb += [beat_bytes.eq(sum(rx.payload.keep)),
                     self.frame_len.eq(frame_len + beat_bytes)]
        with m.If(take):
            with m.If(rx.payload.last):
                m.d.sync += frame_len.eq(0)
            with m.Else():
                m.d.sync += frame_len.eq(frame_len + beat_bytes)
        return m
