# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers).
"""The header parser's frame capture: what the header walk reads of each received frame.

:class:`CapturedFrameSignature` is the seam between a capture and the header walk
(:class:`~hetnic.gateware.header_walk.HeaderWalk`). :class:`HeaderBufferCapture` keeps whole
beats of the first bytes of each frame (data widths above 8 bits);
:class:`~hetnic.gateware.header_byte_capture.HeaderByteCapture` keeps only the header bytes
the walk reads, picked as they stream by (8 bits). The small functions below read wire
fields out of captured bytes; the walk uses them too.
"""

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hetnic.protocol import ETH_HEADER_LEN, IpProto, MAX_IPV6_EXT_HEADERS
from .beat import Beat

__all__ = [
    "WINDOW_BYTES", "CapturedFrameSignature", "HeaderBufferCapture",
    "header_byte", "header_field", "is_ext_header", "ext_header_len", "saturated_frame_length",
]


#: Bytes of the window on an extension/L4 header: bytes 0..3 (ports; an extension header's
#: type and length; the fragment offset), 13 (TCP flags), 4..5 (the UDP length) and, after an
#: 8-byte UDP header, 8 and 12..14 (the VXLAN header's flags and VNI).
WINDOW_BYTES = 15


def header_byte(window, index):
    """Byte ``index`` of a little-endian-lane window (byte 0 in bits 7..0)."""
    return window.word_select(index, 8)


def header_field(window, offset, size):
    """The numeric value of the ``size``-byte big-endian wire field at byte ``offset``."""
    return Cat(*(header_byte(window, offset + size - 1 - k) for k in range(size)))


def popcount(value):
    """Number of set bits of ``value``, as a balanced adder tree."""
    terms = [value[k] for k in range(len(value))]
    while len(terms) > 1:
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(terms) & ~1:]
    return terms[0]


def is_ext_header(next_header):
    """Whether ``next_header`` names an IPv6 extension header the walk skips."""
    return ((next_header == IpProto.HOPOPT) | (next_header == IpProto.ROUTING) |
            (next_header == IpProto.FRAGMENT) | (next_header == IpProto.DSTOPTS))


def ext_header_len(header_type, length_byte):
    """Bytes of an IPv6 extension header of ``header_type`` whose byte 1 is ``length_byte``:
    8 for a fragment header, else (``length_byte`` + 1) * 8."""
    return Mux(header_type == IpProto.FRAGMENT, 8, (length_byte + 1) * 8)


def saturated_frame_length(beat, length):
    """The length of the frame after ``beat`` (a :class:`~hetnic.gateware.beat.Beat`), given
    ``length`` bytes before it, saturated at 0xFFFF."""
    sum_length = length + popcount(beat.keep)
    return Mux(sum_length > 0xFFFF, 0xFFFF, sum_length)


class CapturedFrameSignature(wiring.Signature):
    """A captured frame handed to the header walk, as the capture sees it.

    The capture drives the frame the walk reads; the walk says where it is in the frame and
    when it is done with it. Header bytes are in little-endian lanes (wire byte ``k`` of a
    field in bits ``8k+7 .. 8k``).

    Members
    -------
    active : Out(1)
        A captured frame waits for or is in the walk.
    n : Out(16)
        Its length in bytes (saturated at 0xFFFF).
    mac_error : Out(1)
        The MAC marked one of its beats bad.
    l2 : Out(12 * 8)
        Frame bytes 12..23.
    hdr : Out(40 * 8)
        The 40 bytes at L3, which starts at byte 14 + 4 * ``tags``.
    window : Out(WINDOW_BYTES * 8)
        The 15 bytes at ``offset``: the header of extension/L4 step ``ext_count`` (and for
        UDP, the flags and VNI of a VXLAN header behind it). At 8 bits a register that follows
        ``ext_count`` a cycle later, and only bytes 0..5, 8 and 12..14 are kept.
    ext_len : Out(12)
        The length of the header in ``window`` if it is an IPv6 extension header of type
        ``ip_proto`` (8 for a fragment header, else (byte 1 + 1) * 8).
    release : In(1)
        The walk is done with the frame: the capture may drop it.
    tags : In(range(3))
        VLAN tags the walk found.
    offset : In(13)
        Byte offset of the next extension/L4 header.
    ext_count : In(range(MAX_IPV6_EXT_HEADERS + 1))
        Extension headers walked: which header ``window`` holds.
    ip_proto : In(8)
        The type of the header at ``offset``.
    """
    def __init__(self):
        super().__init__({
            "active": Out(1),
            "n": Out(16),
            "mac_error": Out(1),
            "l2": Out(12 * 8),
            "hdr": Out(40 * 8),
            "window": Out(WINDOW_BYTES * 8),
            "ext_len": Out(12),
            "release": In(1),
            "tags": In(range(3)),
            "offset": In(13),
            "ext_count": In(range(MAX_IPV6_EXT_HEADERS + 1)),
            "ip_proto": In(8),
        })


class HeaderBufferCapture(wiring.Component):
    """Capture the first ``capture_bytes`` of each frame into one of two buffers of whole beats.

    While the walk reads one buffer, the next frame fills the other; the beat count, the
    saturated frame length and the OR of the beats' ``error`` bits are kept with each buffer.
    ``l2``, ``hdr`` and ``window`` are slices of the buffer the walk reads, selected by
    ``tags`` and ``offset`` in the same cycle (combinational). ``i.ready`` is low only while
    both buffers hold finished frames; it is a register and does not depend on ``i.valid``.

    Parameters
    ----------
    data_width : int
        Width of the frame beats in bits (a multiple of 8 from 16 to 512).
    capture_bytes : int
        Bytes of each frame kept (rounded up to whole beats).

    Members
    -------
    i : In(stream.Signature(Beat(data_width)))
        Frame beats.
    frame : Out(CapturedFrameSignature())
        The frame the walk reads.
    """
    def __init__(self, data_width: int, capture_bytes: int):
        self._data_width = data_width
        self._capture_bytes = capture_bytes
        super().__init__({
            "i": In(stream.Signature(Beat(data_width))),
            "frame": Out(CapturedFrameSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._data_width // 8
        # The buffers hold whole beats; bytes past capture_bytes are never looked at.
        capture_beats = -(-self._capture_bytes // lanes)
        buffer_bits = capture_beats * self._data_width

        # Double buffer, little-endian lanes: frame byte k is in bits 8k+7 .. 8k.
        buf = [Signal(buffer_bits, name=f"buf{k}") for k in range(2)]
        buf_length = [Signal(16, name=f"buf{k}_length") for k in range(2)]
        buf_mac_error = [Signal(name=f"buf{k}_mac_error") for k in range(2)]
        buf_full = [Signal(name=f"buf{k}_full") for k in range(2)]
        self._fill(m, capture_beats, buf, buf_length, buf_mac_error, buf_full)
        self._present(m, buf, buf_length, buf_mac_error, buf_full)
        return m

    def _fill(self, m, capture_beats, buf, buf_length, buf_mac_error, buf_full):
        """Each frame's first ``capture_beats`` beats into the free buffer, its length and
        error bit beside it; the buffer is full after the frame's last beat."""
        fill_sel = Signal()                         # buffer the current frame goes to
        beat_count = Signal(range(capture_beats + 1))
        length = Signal(16)                         # bytes of the frame before this beat
        mac_error = Signal()

        beat = self.i.payload
        # A buffer is free once the walk has emitted its record; the frame in flight only
        # ever waits for that, so ready is a register and never looks at valid.
        m.d.comb += self.i.ready.eq(~Mux(fill_sel, buf_full[1], buf_full[0]))
        new_length = saturated_frame_length(beat, length)
        new_mac_error = mac_error | beat.error

        with m.If(self.i.valid & self.i.ready):
            with m.If(beat_count < capture_beats):
                for k in range(2):
                    with m.If(fill_sel == k):
                        m.d.sync += buf[k].word_select(beat_count, self._data_width).eq(
                            beat.data)
                m.d.sync += beat_count.eq(beat_count + 1)
            with m.If(beat.last):
                for k in range(2):
                    with m.If(fill_sel == k):
                        m.d.sync += [
                            buf_length[k].eq(new_length),
                            buf_mac_error[k].eq(new_mac_error),
                            buf_full[k].eq(1),
                        ]
                m.d.sync += [
                    fill_sel.eq(~fill_sel),
                    beat_count.eq(0),
                    length.eq(0),
                    mac_error.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    length.eq(new_length),
                    mac_error.eq(new_mac_error),
                ]

    def _present(self, m, buf, buf_length, buf_mac_error, buf_full):
        """The walk reads buffer ``parse_sel``: its slices at ``frame``; the walk's release
        frees the buffer."""
        frame = self.frame
        parse_sel = Signal()
        parsed = Signal.like(buf[0])
        m.d.comb += [
            parsed.eq(Mux(parse_sel, buf[1], buf[0])),
            frame.n.eq(Mux(parse_sel, buf_length[1], buf_length[0])),
            frame.active.eq(Mux(parse_sel, buf_full[1], buf_full[0])),
            frame.mac_error.eq(Mux(parse_sel, buf_mac_error[1], buf_mac_error[0])),
            frame.l2.eq(parsed[12 * 8:24 * 8]),
            # Extension-header and L4 offsets are even (L3 starts at 14/18/22 and IP header
            # lengths are multiples of 4 or 8), so the shifter moves 16-bit words.
            frame.window.eq(parsed.bit_select(Cat(C(0, 4), frame.offset[1:]),
                                              WINDOW_BYTES * 8)),
            frame.ext_len.eq(ext_header_len(frame.ip_proto, header_byte(frame.window, 1))),
        ]
        with m.Switch(frame.tags):
            for k in range(3):
                with m.Case(k):
                    start = (ETH_HEADER_LEN + 4 * k) * 8
                    m.d.comb += frame.hdr.eq(parsed[start:start + 40 * 8])
        with m.If(frame.release):
            m.d.sync += parse_sel.eq(~parse_sel)
            for k in range(2):
                with m.If(parse_sel == k):
                    m.d.sync += buf_full[k].eq(0)
