# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
#      RFC 7348 (VXLAN), RFC 2784 (GRE), RFC 4291 (IPv4-mapped addresses).
"""RX header parser: one :class:`~hetnic.protocol.PacketMeta` record per received frame."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hetnic.protocol import MAX_CAPTURE_BYTES, MIN_CAPTURE_BYTES, PacketMeta
from .beat import Beat
from .header_byte_capture import HeaderByteCapture
from .header_capture import HeaderBufferCapture
from .header_walk import HeaderWalk

__all__ = ["HeaderParser"]


class HeaderParser(wiring.Component):
    """Parse the headers of received frames into :class:`~hetnic.protocol.PacketMeta` records.

    The parser sits beside the datapath: it watches the same beats that go to the packet
    data FIFO and never changes them. It captures the first ``capture_bytes`` bytes of each
    frame into one of two buffers while counting the frame length and ORing the beats'
    ``error`` bits (submodule ``capture``, a
    :class:`~hetnic.gateware.header_capture.HeaderBufferCapture`); after the last beat the
    parse engine (submodule ``walk``, a :class:`~hetnic.gateware.header_walk.HeaderWalk`)
    walks the captured headers, one step per cycle, while the next frame is captured into
    the other buffer. The rules (error
    precedence, bounds, flags) are those of :func:`hetnic.sim.model.parser.parse_frame`,
    which is the bit-exact model of this block. A frame with an error gets a record holding
    only ``length`` and ``error``.

    Engine steps, one cycle each: L2 (tags, EtherType; non-IP frames and frames with
    MAC/runt/oversize/L2 errors end here), L3 (IPv4 or the fixed IPv6 header), one step per
    IPv6 extension header (at most 4), L4 (ports, TCP flags). Cycles per frame:

    ==========================================  ======
    non-IP frame, or an error found at L2       1
    IPv4/IPv6 without TCP/UDP, IP fragment       2 (+1 per IPv6 extension header)
    IPv4 or IPv6 with TCP/UDP                   3 (+1 per IPv6 extension header)
    ==========================================  ======

    so at most 7. Latency: ``o.valid`` rises 1 + (cycles per frame) cycles after the cycle
    in which the frame's last beat is taken (4 cycles for Eth/IPv4/TCP), if ``o`` is not
    holding an earlier record.

    Throughput: ``i.ready`` is low only while both buffers hold finished frames, i.e. when
    a frame ends before the engine has finished the frame before it. The parser keeps up
    with back-to-back frames whenever each frame has at least as many beats as the engine
    needs for the frame before it; at ``data_width=64`` every frame of 49 bytes or more
    (7 beats) qualifies, so 64-byte frames stream at one beat per cycle indefinitely.
    ``i.ready`` is a register: it does not depend on ``i.valid``.

    At ``data_width=8`` (the 1 GbE board core) the parser is built differently, for size and
    clock rather than for engine cycles: it keeps only the header bytes the engine will
    read, picked out as the bytes stream by (about 80 bytes instead of two 128-byte buffers
    and the shifter that reads them: a
    :class:`~hetnic.gateware.header_byte_capture.HeaderByteCapture`), and every engine step
    takes four cycles. Latency then is 3 + 4 x (cycles per frame) cycles after the last
    beat, and ``i.ready`` falls for two cycles after every frame; a frame takes at least 60
    cycles at 8 bits, so a stream from a MAC (which adds at least 20 cycles of preamble and
    gap per frame) is never slowed down. Same records, same model.

    Parameters
    ----------
    data_width : int
        Width of the frame beats in bits: a multiple of 8 from 8 to 512.
    capture_bytes : int
        Bytes of each frame the parser looks at, from 64 to 2048. Headers that end past
        this window are ``HEADER_LIMIT`` errors: long IPv6 extension chains and, in a
        window under 102 bytes, IPv4 options and the L4 header behind them. Costs two
        register buffers of ``capture_bytes`` (rounded up to whole beats), except at 8
        bits.

    Members
    -------
    i : In(stream.Signature(Beat(data_width)))
        Frame beats (see :class:`~hetnic.gateware.beat.Beat`), first wire byte in lane 0.
    max_frame : In(16)
        Longest frame accepted, in bytes; longer frames are ``OVERSIZE``. Keep it stable
        while frames are in flight.
    direct_ethertype : In(16)
        EtherType of direct-channel frames (the ``direct`` flag; 0 disables it). Frames of
        this EtherType are not parsed past L2. Keep it stable while frames are in flight.
    o : Out(stream.Signature(PacketMeta))
        One record per frame, in frame order. The parser fields (``length`` to ``dst_port``)
        are filled; all other fields are 0. Multi-byte fields hold numeric values of the
        big-endian wire fields; IPv4 addresses are IPv4-mapped.
    """

    def __init__(self, data_width: int, capture_bytes: int = 128):
        if not isinstance(data_width, int) or not (8 <= data_width <= 512) or data_width % 8:
            raise ValueError(f"Data width must be a multiple of 8 from 8 to 512, "
                             f"not {data_width!r}")
        if not isinstance(capture_bytes, int) or not (
                MIN_CAPTURE_BYTES <= capture_bytes <= MAX_CAPTURE_BYTES):
            raise ValueError(f"Capture bytes must be an integer from {MIN_CAPTURE_BYTES} to "
                             f"{MAX_CAPTURE_BYTES}, not {capture_bytes!r}")
        self._data_width = data_width
        self._capture_bytes = capture_bytes
        super().__init__({
            "i": In(stream.Signature(Beat(data_width))),
            "max_frame": In(16),
            "direct_ethertype": In(16),
            "o": Out(stream.Signature(PacketMeta)),
        })

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def capture_bytes(self) -> int:
        return self._capture_bytes

    def elaborate(self, platform):
        m = Module()
        if self._data_width == 8:
            m.submodules.capture = capture = HeaderByteCapture(self._capture_bytes)
        else:
            m.submodules.capture = capture = HeaderBufferCapture(self._data_width,
                                                                 self._capture_bytes)
        m.submodules.walk = walk = HeaderWalk(self._capture_bytes,
                                              registered_steps=self._data_width == 8)
        wiring.connect(m, wiring.flipped(self.i), capture.i)
        wiring.connect(m, capture.frame, walk.frame)
        m.d.comb += [
            walk.max_frame.eq(self.max_frame),
            walk.direct_ethertype.eq(self.direct_ethertype),
        ]
        wiring.connect(m, walk.o, wiring.flipped(self.o))
        return m
