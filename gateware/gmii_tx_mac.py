# Ref: IEEE 802.3-2022 clause 3 (MAC frame, FCS), clause 4.4 (interframe gap), clause 35
#      (GMII).
"""The gigabit Ethernet transmit MAC: frames in, GMII out."""

from amaranth.hdl import C, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import ETH_FCS_LEN, ETH_PAD_TO, ETH_PREAMBLE_BYTE, ETH_SFD_BYTE
from .beat import Beat
from .counters import count_when
from .crc32 import crc32_step
from .gmii import GmiiSignature
from .parameter_checks import check_int_range

__all__ = ["GmiiTxMac"]


class GmiiTxMac(wiring.Component):
    """Transmit MAC: frames in, GMII out with preamble, SFD, padding and FCS.

    Each frame goes out as 7 preamble bytes ``0x55``, the SFD ``0xD5``, the frame bytes,
    zeros up to 60 bytes, and the FCS; then ``en`` stays low for at least ``ifg`` cycles
    before the next preamble. A frame starts once its first beat is on ``i`` and the gap is
    over; ``gmii`` shows the first preamble byte the cycle after.

    From the cycle after the SFD the MAC takes one beat per cycle: a frame must be
    available at line rate once it has started (put a store-and-forward FIFO in front).
    ``keep`` is only looked at on the last beat, whose byte is not sent if ``keep`` is 0.

    Errors, so that the far end always sees a bad frame and the MAC never waits:

    - A frame with ``error`` set on any beat is sent whole, with its FCS inverted and
      ``er`` set during the 4 FCS bytes (counted in ``error_count`` and ``frames_count``).
    - Underrun: ``i`` has no beat while a frame is being sent. The MAC sends one byte with
      ``er`` set, ends the frame there, and discards the rest of the input frame up to its
      last beat (counted in ``underrun_count``). The gap starts at the cut.

    Parameters
    ----------
    ifg : int
        Smallest interframe gap in cycles (byte times): 12 or more.
    counter_width : int
        Width of the wrapping counters.

    Members
    -------
    i : In(stream.Signature(Beat(8)))
        Frames to send, without FCS.
    gmii : Out(GmiiSignature())
        To the PHY; registered.
    frames_count, error_count, underrun_count : Out(counter_width)
        Frames sent whole, frames sent with an inverted FCS, frames cut by an underrun.
    """
    def __init__(self, *, ifg=12, counter_width=32):
        check_int_range("ifg", ifg, 12, 255)
        check_int_range("counter_width", counter_width, 1, 64)
        self.ifg = ifg
        super().__init__({
            "i": In(stream.Signature(Beat(8))),
            "gmii": Out(GmiiSignature()),
            **{name: Out(counter_width) for name in self.COUNTERS},
        })

    COUNTERS = ("frames_count", "error_count", "underrun_count")

    def elaborate(self, platform):
        m = Module()
        i = self.i

        crc = Signal(32)
        sent = Signal(range(ETH_PAD_TO + 1))    # frame bytes and padding, saturating at 60
        index = Signal(range(8))                # preamble byte, then FCS byte
        stomp = Signal()                        # the frame carries ``error``
        gap = Signal(range(self.ifg + 1))       # idle cycles still owed

        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        send, send_byte = self._gmii_output(m, crc, sent)

        def tail(stomp_now):
            """Send the next padding or FCS byte (the frame's bytes are all sent)."""
            with m.If(sent < ETH_PAD_TO):
                send_byte(C(0, 8))
                m.next = "TAIL"
            with m.Else():
                fcs = Mux(stomp_now, crc, ~crc)
                send(fcs.word_select(index[:2], 8), er=stomp_now)
                m.d.sync += index.eq(index + 1)
                with m.If(index == ETH_FCS_LEN - 1):
                    m.d.sync += gap.eq(self.ifg)
                    count_when(m, self.frames_count, 1)
                    count_when(m, self.error_count, stomp_now)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "TAIL"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(i.valid & (gap == 0)):
                    send(ETH_PREAMBLE_BYTE)
                    m.d.sync += [index.eq(1), crc.eq(0xFFFFFFFF), sent.eq(0), stomp.eq(0)]
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                with m.If(index == 7):
                    send(ETH_SFD_BYTE)
                    m.d.sync += index.eq(0)
                    m.next = "DATA"
                with m.Else():
                    send(ETH_PREAMBLE_BYTE)
                    m.d.sync += index.eq(index + 1)
            with m.State("DATA"):
                m.d.comb += i.ready.eq(1)
                stomp_now = stomp | i.payload.error
                m.d.sync += stomp.eq(stomp_now)
                with m.If(~i.valid):
                    send(0, er=1)
                    m.d.sync += gap.eq(self.ifg)
                    count_when(m, self.underrun_count, 1)
                    m.next = "DRAIN"
                with m.Elif(~i.payload.last):
                    send_byte(i.payload.data)
                with m.Elif(i.payload.keep[0]):
                    send_byte(i.payload.data)
                    m.next = "TAIL"
                with m.Else():
                    tail(stomp_now)     # an empty last beat: the tail starts at once
            with m.State("TAIL"):
                tail(stomp)
            with m.State("DRAIN"):
                m.d.comb += i.ready.eq(1)
                with m.If(i.valid & i.payload.last):
                    m.next = "IDLE"
        return m

    def _gmii_output(self, m, crc, sent):
        """The registered GMII output, idle unless a byte is sent this cycle. Returns
        ``send(data, er=0)``, which puts a byte on the wire, and ``send_byte(data)``, which
        sends a frame or padding byte: it also steps ``crc`` and ``sent`` (one CRC step,
        shared by the frame bytes and the padding)."""
        tx = self.gmii
        m.d.sync += [tx.en.eq(0), tx.er.eq(0), tx.data.eq(0)]

        def send(data, er=0):
            m.d.sync += [tx.data.eq(data), tx.en.eq(1), tx.er.eq(er)]

        crc_byte, crc_en = Signal(8), Signal()
        with m.If(crc_en):
            m.d.sync += [crc.eq(crc32_step(crc, crc_byte)),
                         sent.eq(Mux(sent == ETH_PAD_TO, ETH_PAD_TO, sent + 1))]

        def send_byte(data):
            send(data)
            m.d.comb += [crc_byte.eq(data), crc_en.eq(1)]

        return send, send_byte
