# Ref: IEEE 802.3-2022 clause 3 (MAC frame, FCS), clause 35 (GMII).
"""The gigabit Ethernet receive MAC: GMII in, frames out."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import (CRC32_RESIDUE, ETH_DEFAULT_MAX_FRAME, ETH_FCS_LEN, ETH_PAD_TO,
                        ETH_PREAMBLE_BYTE, ETH_SFD_BYTE)
from .beat import Beat
from .counters import count_when
from .crc32 import crc32_step
from .gmii import GmiiSignature
from .parameter_checks import check_int_range

__all__ = ["GmiiRxMac"]


class GmiiRxMac(wiring.Component):
    """Receive MAC: GMII in, frames out without preamble, SFD and FCS.

    The MAC accepts any number of ``0x55`` preamble bytes (none included) before the SFD;
    a burst holding any other byte before its SFD, or ``er`` before it, is ignored up to the
    end of ``en``. After the SFD every byte up to the fall of ``en`` is the frame and its FCS.

    Every frame that began with an SFD comes out on ``o``, with ``error`` set on its last
    beat if it is bad, and is counted in exactly one counter, the first that applies:

    - ``overflow_count``: a byte was due on ``o`` while the previous beat still waited
      there. GMII cannot wait and the MAC holds no more than its output register, so the
      frame is cut: if some of it has gone out, a beat with ``keep = 0``, ``last`` and
      ``error`` ends it as soon as ``o`` is free; if none has, it is dropped without a trace
      on ``o``. While a frame comes in, ``o`` must take a beat in every cycle it offers one:
      put a FIFO after the MAC (the board top's clock-domain crossing does).
    - ``oversize_count``: more than ``max_frame`` bytes before the FCS. The frame ends with
      its first ``max_frame`` bytes (the last beat carries ``error``); the rest up to the
      fall of ``en`` is dropped, so a jabbering PHY cannot hold the MAC.
    - ``phy_error_count``: the PHY signalled an error (``er``) during the frame.
    - ``runt_count``: shorter than 64 bytes with its FCS. A frame of 4 bytes or fewer has no
      data byte; it comes out as one beat with ``keep = 0``, ``last`` and ``error``.
    - ``fcs_error_count``: the FCS does not match.
    - ``frames_ok_count``: the frame is good; ``error`` is 0 on all of its beats.

    Errored frames are passed on, not dropped: the RX pipeline marks them
    ``ParseError.MAC_ERROR`` and drops them under ``DropReason.MAC_ERROR`` (unless
    ``CTRL.pass_errors``), so every frame is accounted for downstream too.

    Latency: a byte comes out on ``o`` 6 cycles after it is on ``gmii`` (the MAC holds 5
    bytes back to recognise the FCS); the last beat of a frame comes out the cycle after
    ``en`` falls.

    Parameters
    ----------
    max_frame : int
        Longest frame without its FCS, as the RX pipeline's ``MAX_FRAME`` register counts:
        1522 by default (a 1500-byte payload with two VLAN tags; 1526 bytes on the wire
        with the FCS).
    counter_width : int
        Width of the wrapping counters.

    Members
    -------
    gmii : In(GmiiSignature())
        The receive side of the PHY, in this component's ``sync`` domain.
    o : Out(stream.Signature(Beat(8)))
        Frame bytes; ``error`` is only ever set on a ``last`` beat.
    frames_ok_count, fcs_error_count, runt_count, oversize_count, phy_error_count, \
overflow_count : Out(counter_width)
        Frames counted as above; each count is updated the cycle after the frame's last beat
        is decided.
    """
    def __init__(self, *, max_frame=ETH_DEFAULT_MAX_FRAME, counter_width=32):
        check_int_range("max_frame", max_frame, ETH_PAD_TO, 16383)
        check_int_range("counter_width", counter_width, 1, 64)
        self.max_frame = max_frame
        super().__init__({
            "gmii": In(GmiiSignature()),
            "o": Out(stream.Signature(Beat(8))),
            **{name: Out(counter_width) for name in self.COUNTERS},
        })

    COUNTERS = ("frames_ok_count", "fcs_error_count", "runt_count", "oversize_count",
                "phy_error_count", "overflow_count")

    def elaborate(self, platform):
        m = Module()
        rx = self.gmii

        history = Signal(8 * (ETH_FCS_LEN + 1))     # the last 5 bytes, the newest in bits 7..0
        oldest = history[-8:]
        count = Signal(range(self.max_frame + ETH_FCS_LEN + 2))   # bytes after the SFD
        crc = Signal(32)
        er_seen = Signal()
        started = Signal()          # a beat of this frame has gone out
        cut = Signal()              # the frame lost a byte to backpressure
        end_pending = Signal()      # a cut frame still needs its closing beat

        emit, blocked = self._output_register(m, started, cut, end_pending)

        def start():
            m.d.sync += [count.eq(0), crc.eq(0xFFFFFFFF), er_seen.eq(0), started.eq(0),
                         cut.eq(0)]

        lost = cut | blocked        # this frame is (or is being) cut for backpressure
        runt = count < ETH_PAD_TO + ETH_FCS_LEN
        fcs_bad = crc != CRC32_RESIDUE

        with m.FSM():
            with m.State("IDLE"):
                with m.If(rx.en):
                    with m.If(~rx.er & (rx.data == ETH_SFD_BYTE)):
                        start()
                        m.next = "FRAME"
                    with m.Elif(~rx.er & (rx.data == ETH_PREAMBLE_BYTE)):
                        m.next = "PREAMBLE"
                    with m.Else():
                        m.next = "DISCARD"
            with m.State("PREAMBLE"):
                with m.If(~rx.en):
                    m.next = "IDLE"
                with m.Elif(~rx.er & (rx.data == ETH_SFD_BYTE)):
                    start()
                    m.next = "FRAME"
                with m.Elif(rx.er | (rx.data != ETH_PREAMBLE_BYTE)):
                    m.next = "DISCARD"
            with m.State("FRAME"):
                with m.If(rx.en & (count == self.max_frame + ETH_FCS_LEN)):
                    # The byte that proves the frame oversize: end it after max_frame bytes.
                    emit(oldest, 1, 1, 1)
                    count_when(m, self.overflow_count, lost)
                    count_when(m, self.oversize_count, ~lost)
                    m.next = "DISCARD"
                with m.Elif(rx.en):
                    m.d.sync += [history.eq(Cat(rx.data, history[:-8])), count.eq(count + 1),
                                 crc.eq(crc32_step(crc, rx.data)), er_seen.eq(er_seen | rx.er)]
                    with m.If(count > ETH_FCS_LEN):
                        emit(oldest, 1, 0, 0)
                with m.Else():
                    has_data = count > ETH_FCS_LEN
                    emit(Mux(has_data, oldest, 0), has_data, 1, er_seen | runt | fcs_bad)
                    self._count_frame(m, lost, er_seen, runt, fcs_bad)
                    m.next = "IDLE"
            with m.State("DISCARD"):
                with m.If(~rx.en):
                    m.next = "IDLE"
        return m

    def _output_register(self, m, started, cut, end_pending):
        """The one output register: ``valid`` is set when a beat is loaded, cleared when
        taken. Returns ``emit(data, keep, last, error)``, which offers a beat of the frame
        (or, if ``o`` is still busy, cuts the frame: ``cut``, and ``end_pending`` if some of
        it has gone out), and ``blocked``, whether a beat offered now would be lost."""
        o = self.o
        free = ~o.valid | o.ready
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        def load(data, keep, last, error):
            m.d.sync += [o.valid.eq(1), o.payload.data.eq(data), o.payload.keep.eq(keep),
                         o.payload.last.eq(last), o.payload.error.eq(error)]

        with m.If(end_pending & free):
            load(0, 0, 1, 1)
            m.d.sync += end_pending.eq(0)

        blocked = ~free | end_pending

        def emit(data, keep, last, error):
            with m.If(cut):
                pass                # the rest of a cut frame is dropped
            with m.Elif(~blocked):
                load(data, keep, last, error)
                m.d.sync += started.eq(1)
            with m.Else():
                m.d.sync += [cut.eq(1), end_pending.eq(started)]

        return emit, blocked

    def _count_frame(self, m, lost, er_seen, runt, fcs_bad):
        """Count a frame that has ended in the first of the counters that applies."""
        count_when(m, self.overflow_count, lost)
        count_when(m, self.phy_error_count, ~lost & er_seen)
        count_when(m, self.runt_count, ~lost & ~er_seen & runt)
        count_when(m, self.fcs_error_count, ~lost & ~er_seen & ~runt & fcs_bad)
        count_when(m, self.frames_ok_count, ~lost & ~er_seen & ~runt & ~fcs_bad)
