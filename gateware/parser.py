# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
#      RFC 7348 (VXLAN), RFC 2784 (GRE), RFC 4291 (IPv4-mapped addresses).
"""RX header parser: one :class:`~hetnic.protocol.PacketMeta` record per received frame."""

from dataclasses import dataclass

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hetnic.protocol import (
    ETH_HEADER_LEN, EtherType, IpProto, PacketMeta, ParseError, VXLAN_UDP_PORT, ipv4_mapped,
)
from .beat import Beat

__all__ = ["HeaderParser", "MAX_IPV6_EXT_HEADERS", "MIN_CAPTURE_BYTES", "MAX_CAPTURE_BYTES"]


#: IPv6 extension headers skipped before the walk gives up with ``HEADER_LIMIT``.
MAX_IPV6_EXT_HEADERS = 4
#: Smallest capture window: it must hold two VLAN tags and a fixed IPv6 header (62 bytes).
MIN_CAPTURE_BYTES = 64
#: Largest capture window (header offsets stay within 13 bits).
MAX_CAPTURE_BYTES = 2048


def _byte(window, index):
    """Byte ``index`` of a little-endian-lane window (byte 0 in bits 7..0)."""
    return window.word_select(index, 8)


def _be(window, offset, size):
    """The numeric value of the ``size``-byte big-endian wire field at byte ``offset``."""
    return Cat(*(_byte(window, offset + size - 1 - k) for k in range(size)))


def _popcount(value):
    """Number of set bits of ``value``, as a balanced adder tree."""
    terms = [value[k] for k in range(len(value))]
    while len(terms) > 1:
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(terms) & ~1:]
    return terms[0]


def _is_ext_header(next_header):
    return ((next_header == IpProto.HOPOPT) | (next_header == IpProto.ROUTING) |
            (next_header == IpProto.FRAGMENT) | (next_header == IpProto.DSTOPTS))


def _ext_header_len(header_type, length_byte):
    """Bytes of an IPv6 extension header of ``header_type`` whose byte 1 is ``length_byte``:
    8 for a fragment header, else (``length_byte`` + 1) * 8."""
    return Mux(header_type == IpProto.FRAGMENT, 8, (length_byte + 1) * 8)


def _is_tcp_udp(ip_proto):
    return (ip_proto == IpProto.TCP) | (ip_proto == IpProto.UDP)


@dataclass
class _WalkState:
    """Signals the capture and the parse engine share (see ``HeaderParser.elaborate``).

    The capture drives the frame the engine walks: ``active`` (a captured frame waits for or
    is in the engine), ``n``, ``mac_error``, and the header bytes the steps read: ``l2``
    (bytes 12..23), ``hdr`` (the 40 bytes at L3, which starts at 14 + 4 * ``tags``) and
    ``window`` (14 bytes at ``offset``, the header of extension/L4 step ``ext_count``) and
    ``ext_len``, the length of that header if it is an IPv6 extension header (8 for a
    fragment header, else (byte 1 + 1) * 8).
    The engine drives ``release`` (the record leaves: the capture may drop the frame).
    """
    active: Signal
    n: Signal
    mac_error: Signal
    l2: Signal
    hdr: Signal
    window: Signal
    ext_len: Signal
    release: Signal
    rec: Signal
    rec_next: Signal
    error: Signal
    tags: Signal
    offset: Signal
    ip_end: Signal
    ext_count: Signal
    done: Signal
    advance: Signal


class HeaderParser(wiring.Component):
    """Parse the headers of received frames into :class:`~hetnic.protocol.PacketMeta` records.

    The parser sits beside the datapath: it watches the same beats that go to the packet
    data FIFO and never changes them. It captures the first ``capture_bytes`` bytes of each
    frame into one of two buffers while counting the frame length and ORing the beats'
    ``error`` bits; after the last beat a parse engine walks the captured headers, one step
    per cycle, while the next frame is captured into the other buffer. The rules (error
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
    and the shifter that reads them), and every engine step takes four cycles (see
    ``_elaborate_byte_capture`` and ``_elaborate_engine``). Latency then is 3 + 4 x (cycles
    per frame) cycles after the last beat, and ``i.ready`` falls for two cycles after every
    frame; a frame takes at least 60 cycles at 8 bits, so a stream from a MAC (which adds
    at least 20 cycles of preamble and gap per frame) is never slowed down. Same records,
    same model.

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
        shapes = {
            "active": 1, "n": 16, "mac_error": 1, "l2": 12 * 8, "hdr": 40 * 8,
            "window": 14 * 8, "release": 1,
            "ext_len": 12,                          # length of the extension header at offset
            "rec": PacketMeta, "rec_next": PacketMeta,
            "error": ParseError,
            "tags": range(3),                       # VLAN tags: L3 starts at 14 + 4 * tags
            "offset": 13,                           # next extension/L4 header, in bytes
            "ip_end": 17,                           # end of the IP packet, in bytes
            # Extension headers walked; also which header `window` holds (0 .. 4).
            "ext_count": range(MAX_IPV6_EXT_HEADERS + 1),
            "done": 1,                              # this step finishes the frame
            "advance": 1,                           # the step takes effect this cycle
        }
        st = _WalkState(**{name: Signal(shape, name=name) for name, shape in shapes.items()})
        if self._data_width == 8:
            self._elaborate_byte_capture(m, st)
        else:
            self._elaborate_buffer_capture(m, st)
        self._elaborate_engine(m, st)
        return m

    def _frame_length(self, m, beat, length):
        """The saturated length of the frame after ``beat``, given ``length`` before it."""
        sum_length = length + _popcount(beat.keep)
        return Mux(sum_length > 0xFFFF, 0xFFFF, sum_length)

    def _elaborate_buffer_capture(self, m, st):
        """Capture the first ``capture_bytes`` of each frame into one of two buffers (whole
        beats) and hand the engine slices of the buffer it walks."""
        lanes = self._data_width // 8
        # The buffers hold whole beats; bytes past capture_bytes are never looked at.
        capture_beats = -(-self._capture_bytes // lanes)
        buffer_bits = capture_beats * self._data_width

        # Double buffer, little-endian lanes: frame byte k is in bits 8k+7 .. 8k.
        buf = [Signal(buffer_bits, name=f"buf{k}") for k in range(2)]
        buf_length = [Signal(16, name=f"buf{k}_length") for k in range(2)]
        buf_mac_error = [Signal(name=f"buf{k}_mac_error") for k in range(2)]
        buf_full = [Signal(name=f"buf{k}_full") for k in range(2)]

        fill_sel = Signal()                         # buffer the current frame goes to
        beat_count = Signal(range(capture_beats + 1))
        length = Signal(16)                         # bytes of the frame before this beat
        mac_error = Signal()

        beat = self.i.payload
        # A buffer is free once the engine has emitted its record; the frame in flight only
        # ever waits for that, so ready is a register and never looks at valid.
        m.d.comb += self.i.ready.eq(~Mux(fill_sel, buf_full[1], buf_full[0]))
        new_length = self._frame_length(m, beat, length)
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

        # The engine walks buffer `parse_sel`; its release frees the buffer.
        parse_sel = Signal()
        frame = Signal.like(buf[0])
        m.d.comb += [
            frame.eq(Mux(parse_sel, buf[1], buf[0])),
            st.n.eq(Mux(parse_sel, buf_length[1], buf_length[0])),
            st.active.eq(Mux(parse_sel, buf_full[1], buf_full[0])),
            st.mac_error.eq(Mux(parse_sel, buf_mac_error[1], buf_mac_error[0])),
            st.l2.eq(frame[12 * 8:24 * 8]),
            # Extension-header and L4 offsets are even (L3 starts at 14/18/22 and IP header
            # lengths are multiples of 4 or 8), so the shifter moves 16-bit words.
            st.window.eq(frame.bit_select(Cat(C(0, 4), st.offset[1:]), 14 * 8)),
            st.ext_len.eq(_ext_header_len(st.rec.ip_proto, _byte(st.window, 1))),
        ]
        with m.Switch(st.tags):
            for k in range(3):
                with m.Case(k):
                    start = (ETH_HEADER_LEN + 4 * k) * 8
                    m.d.comb += st.hdr.eq(frame[start:start + 40 * 8])
        with m.If(st.release):
            m.d.sync += parse_sel.eq(~parse_sel)
            for k in range(2):
                with m.If(parse_sel == k):
                    m.d.sync += buf_full[k].eq(0)

    def _elaborate_byte_capture(self, m, st):
        """At 8 bits: keep only the header bytes the engine reads, picked as they stream by.

        Bytes 12..23 go to ``l2``; once the tags are known (byte 13, 17 or 21) the 40 bytes
        at L3 go to ``hdr``. The offsets of the extension and L4 headers are followed the
        way the engine will compute them (IPv4: L3 + 4 * IHL; IPv6: L3 + 40, then each
        extension header's length: 8 for a fragment header, else (byte 1 + 1) * 8) and
        bytes 0..3 and 13 of each are kept, up to :data:`MAX_IPV6_EXT_HEADERS` + 1 headers.
        Where the engine stops early (an error, a fragment, a header past the window),
        what was kept past that point is never read. A finished frame's bytes move to the
        engine's registers in one cycle, so the engine walks one frame while the next
        streams in: ``i.ready`` falls for two cycles after each frame's last beat, and for
        longer only when a frame ends before the engine is done with the one before it.
        """
        # The beat is registered first: the capture's many enables hang off `take` below,
        # a flop, not off the stream handshake.
        beat = Signal.like(self.i.payload)
        take = Signal()
        byte = beat.data[:8]
        n_windows = MAX_IPV6_EXT_HEADERS + 1
        window_bytes = (0, 1, 2, 3, 13)             # what the extension and L4 steps read

        # The frame streaming in.
        count = Signal(range(self._capture_bytes + 1))  # index of this beat's byte (saturates)
        counting = Signal(init=1)                   # count < capture bytes, as a flop
        length = Signal(16)
        mac_error = Signal()
        l2, hdr = Signal.like(st.l2), Signal.like(st.hdr)
        windows = [Signal(14 * 8, name=f"window{k}") for k in range(n_windows)]
        ext_lens = [Signal(12, name=f"ext_len{k}") for k in range(n_windows)]
        l3 = Signal(range(ETH_HEADER_LEN + 9), init=ETH_HEADER_LEN)
        # Positions are kept as distances, counted along with `count`, not computed from it:
        # a subtract and a compare in front of every capture enable were the core's
        # critical path. rel_l3 = count - L3 offset; rel = count - the followed header's
        # offset (both saturate with `count`; `rel` also stops once past the window).
        rel_l3 = Signal(signed(16), init=-ETH_HEADER_LEN)
        rel = Signal(signed(16))
        next_rel = Signal(signed(16))               # `rel` at the next header's byte 0, + 4
        prev = Signal(16)                           # the two bytes before this one
        ipv4 = Signal()
        win = Signal(range(n_windows))              # header being followed
        win_type = Signal(8)                        # its type (IPv6 next header)
        win_live = Signal()                         # its offset and win_type are known
        chain = Signal()                            # another extension/L4 header follows
        finished = Signal()                         # the frame ended; the engine has not got it
        n, frame_mac_error = Signal(16), Signal()   # of the finished frame

        # The engine's copy.
        e_n, e_mac_error = Signal(16), Signal()
        e_l2, e_hdr = Signal.like(st.l2), Signal.like(st.hdr)
        e_windows = [Signal(14 * 8, name=f"e_window{k}") for k in range(n_windows)]
        e_ext_lens = [Signal(12, name=f"e_ext_len{k}") for k in range(n_windows)]
        e_full = Signal()

        # Not ready while a finished frame waits for the engine, nor right after a last beat
        # (the registered beat ends its frame in this cycle).
        m.d.comb += self.i.ready.eq(~finished & ~(take & beat.last))
        m.d.sync += [take.eq(self.i.valid & self.i.ready), beat.eq(self.i.payload)]
        # If this byte is the first of an IPv4 header: `rel` of the next byte (1 - 4 * IHL)
        # and whether that is 0 or more, worked out as the byte is registered (an adder
        # behind `beat` fed the core's critical path).
        # Only -IHL is a flop: 1 - 4 * IHL is that shifted left by two with 0b01 below it
        # (with the constant bits as flops too, yosys 0.70 failed an assertion in its ABC
        # reintegration on the ECPIX-5 build).
        neg_ihl, ihl_zero = Signal(signed(5)), Signal()
        m.d.sync += [neg_ihl.eq(-self.i.payload.data[:4]),
                     ihl_zero.eq(self.i.payload.data[:4] == 0)]
        ihl_rel = Cat(C(1, 2), neg_ihl).as_signed()
        new_length = self._frame_length(m, beat, length)
        # `rel`'s compares are flops too, each worked out beside the value `rel` is about to
        # take (from the old value, not from the new one: no compare after an adder).
        rel_next = Signal.like(rel)
        rel_ge0, rel_lt14 = Signal(init=1), Signal(init=1)
        ge0_next, lt14_next = Signal(), Signal()
        m.d.comb += [rel_next.eq(rel), ge0_next.eq(rel_ge0), lt14_next.eq(rel_lt14)]
        m.d.sync += [rel.eq(rel_next), rel_ge0.eq(ge0_next), rel_lt14.eq(lt14_next)]
        in_window = win_live & rel_ge0 & rel_lt14

        with m.If(take & beat.keep[0]):
            with m.If(counting):
                m.d.sync += [count.eq(count + 1), rel_l3.eq(rel_l3 + 1),
                             counting.eq(count != self._capture_bytes - 1)]
                with m.If(rel_lt14):
                    m.d.comb += [rel_next.eq(rel + 1), ge0_next.eq(rel >= -1),
                                 lt14_next.eq(rel < 13)]
            m.d.sync += prev.eq(Cat(byte, prev[:8]))
            for k in range(12):
                with m.If(count == 12 + k):
                    m.d.sync += l2.word_select(k, 8).eq(byte)
            # Tags: a VLAN/QinQ EtherType at 12 or (after one tag) at 16 moves L3 on by 4.
            type_here = Cat(byte, prev[:8])
            is_tag = (type_here == EtherType.VLAN) | (type_here == EtherType.QINQ)
            with m.If(((count == 13) | ((count == 17) & (l3 == 18))) & is_tag):
                m.d.sync += [l3.eq(l3 + 4), rel_l3.eq(rel_l3 + 1 - 4)]
            for k in range(40):
                with m.If(rel_l3 == k):
                    m.d.sync += hdr.word_select(k, 8).eq(byte)
            with m.If(rel_l3 == 0):                 # first L3 byte; prev holds the EtherType
                m.d.sync += [ipv4.eq(prev == EtherType.IPV4), win.eq(0)]
                # The header followed starts at L3 + 4 * IHL (IPv4) or L3 + 40 (IPv6):
                # `rel` of the next byte.
                with m.If(prev == EtherType.IPV4):
                    m.d.comb += [rel_next.eq(ihl_rel), ge0_next.eq(ihl_zero),
                                 lt14_next.eq(1)]
                    m.d.sync += [win_type.eq(0), win_live.eq(1)]
                with m.Else():
                    m.d.comb += [rel_next.eq(1 - 40), ge0_next.eq(0), lt14_next.eq(1)]
            with m.If(~ipv4 & (rel_l3 == 6)):       # IPv6 next header
                m.d.sync += [win_type.eq(byte), win_live.eq(1)]
            with m.If(in_window):
                for w in range(n_windows):
                    with m.If(win == w):
                        for j in window_bytes:
                            with m.If(rel == j):
                                m.d.sync += windows[w].word_select(j, 8).eq(byte)
                with m.If(rel == 1):
                    ext_len = _ext_header_len(win_type, byte)
                    for w in range(n_windows):
                        with m.If(win == w):
                            m.d.sync += ext_lens[w].eq(ext_len)
                    m.d.sync += [
                        next_rel.eq(4 - ext_len),
                        chain.eq(~ipv4 & _is_ext_header(win_type) &
                                 (win != n_windows - 1)),
                    ]
                with m.If((rel == 3) & chain):
                    m.d.sync += [
                        win.eq(win + 1), chain.eq(0),
                    ]
                    m.d.comb += [rel_next.eq(next_rel), ge0_next.eq(next_rel >= 0),
                                 lt14_next.eq(next_rel < 14)]
                    for w in range(n_windows):
                        with m.If(win == w):
                            m.d.sync += win_type.eq(windows[w][:8])
        with m.If(take):
            with m.If(beat.last):
                m.d.sync += [
                    finished.eq(1), n.eq(new_length),
                    frame_mac_error.eq(mac_error | beat.error),
                    count.eq(0), counting.eq(1), length.eq(0), mac_error.eq(0),
                    l3.eq(ETH_HEADER_LEN),
                    rel_l3.eq(-ETH_HEADER_LEN),
                    win_live.eq(0), chain.eq(0), ipv4.eq(0),
                ]
            with m.Else():
                m.d.sync += [length.eq(new_length), mac_error.eq(mac_error | beat.error)]

        # Hand over: the finished frame's bytes move to the engine once it is free.
        with m.If(st.release):
            m.d.sync += e_full.eq(0)
        # (Not in the cycle the engine releases: the copy's enable stays off the engine's
        # check logic, at the cost of a cycle per frame.)
        with m.If(finished & ~e_full):
            m.d.sync += [e_full.eq(1), finished.eq(0), e_l2.eq(l2), e_hdr.eq(hdr),
                         e_n.eq(n), e_mac_error.eq(frame_mac_error)]
            m.d.sync += [e.eq(w) for e, w in zip(e_windows, windows)]
            m.d.sync += [e.eq(w) for e, w in zip(e_ext_lens, ext_lens)]

        m.d.comb += [
            st.active.eq(e_full), st.n.eq(e_n), st.mac_error.eq(e_mac_error),
            st.l2.eq(e_l2), st.hdr.eq(e_hdr),
        ]
        # The window of the header the engine is at, as a register: the engine waits a
        # cycle after each step for it (see _elaborate_engine).
        with m.Switch(st.ext_count):
            for w in range(n_windows):
                with m.Case(w):
                    m.d.sync += [st.window.eq(e_windows[w]), st.ext_len.eq(e_ext_lens[w])]

    def _elaborate_engine(self, m, st):
        """Walk the headers of the captured frame, one step per cycle, and emit a record.

        ``rec`` is the record so far (registers, error always NONE: an error ends the walk);
        ``rec_next`` is the record after this cycle's step and ``error`` the first error the
        step found (both comb).

        At 8 bits every step takes four cycles: in the first the header window register
        loads, in the second the conditions of the step's checks (and whether the walk
        stops after it) are registered, in the
        third their result (``error``, ``done``), in the fourth the step acts on it. The
        step's inputs do not change in between, so it computes the same values again; the
        long path from the header bytes through the bound checks is cut in three, and the
        enables of every record register hang off registers. A frame takes at least 60
        cycles to arrive at 8 bits, so the engine's at most 28 cycles stay hidden.
        """
        settle = self._data_width == 8
        done, error = st.done, st.error
        if settle:
            # 0: the window register loads; 1: the checks' conditions are registered;
            # 2: the checks' result (error, done) is registered; 3: act.
            phase = Signal(range(4))
            done, error = Signal(), Signal(ParseError)
            with m.If(st.active & (phase != 3)):
                m.d.sync += phase.eq(phase + 1)
            with m.If(phase == 2):
                m.d.sync += [done.eq(st.done), error.eq(st.error)]
            with m.If(st.advance):
                m.d.sync += phase.eq(0)
            m.d.comb += st.advance.eq(st.active & (phase == 3) &
                                      (~done | ~self.o.valid | self.o.ready))
        else:
            m.d.comb += st.advance.eq(st.active & (~st.done | ~self.o.valid | self.o.ready))
        m.d.comb += [
            st.rec_next.eq(st.rec),
            st.release.eq(st.advance & done),
        ]

        steps = {
            "L2": lambda: self._step_l2(m, st),
            "L3": lambda: self._step_l3(m, st),
            "EXT": lambda: self._step_ext(m, st),
            "L4": lambda: self._step_l4(m, st),
        }
        with m.FSM(name="step"):
            for name, step in steps.items():
                with m.State(name):
                    step()
                    # A step stalls only to emit into a full output register.
                    with m.If(st.advance):
                        m.d.sync += st.rec.eq(st.rec_next)
                        with m.If(done):
                            m.next = "L2"

        # Emit: the record goes to the output register and the frame is released.
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(st.release):
            m.d.sync += self.o.valid.eq(1)
            with m.If(error == ParseError.NONE):
                m.d.sync += self.o.payload.eq(st.rec_next)
            with m.Else():
                m.d.sync += [
                    self.o.payload.eq(0),
                    self.o.payload.length.eq(st.rec_next.length),
                    self.o.payload.error.eq(error),
                ]

    def _settled(self, m, value, name):
        """At 8 bits, ``value`` registered: the step's inputs hold still over its four cycles
        (see ``_elaborate_engine``), so the flop holds the same value from the second cycle
        on and the logic behind it starts from a flop. At wider widths (a step per cycle),
        ``value`` itself."""
        if self._data_width != 8:
            return value
        flag = Signal(len(value), name=name)
        m.d.sync += flag.eq(value)
        return flag

    def _checks(self, m, st, checks):
        """Set ``st.error`` to the error of the first true condition of ``checks``. At 8 bits
        each condition is registered first, so the compares and the priority chain are
        separate paths."""
        checks = [(self._settled(m, condition, f"check_{error.name.lower()}_{index}"), error)
                  for index, (condition, error) in enumerate(checks)]
        for index, (condition, error) in enumerate(checks):
            with (m.If if index == 0 else m.Elif)(condition):
                m.d.comb += st.error.eq(error)

    def _done(self, m, st, stop):
        """``st.done``: the step found an error, or ``stop`` (the walk ends after this step).
        At 8 bits ``stop`` is registered first, like the checks' conditions."""
        m.d.comb += st.done.eq((st.error != ParseError.NONE) | self._settled(m, stop, "stop"))

    def _bounds(self, end, bound):
        """Checks that header bytes up to ``end`` lie inside ``bound`` and the capture window."""
        return [(end > bound, ParseError.TRUNCATED),
                (end > self._capture_bytes, ParseError.HEADER_LIMIT)]

    def _step_l2(self, m, st):
        """Frame-level errors, up to two VLAN tags, the EtherType, the direct flag."""
        n, rec_next = st.n, st.rec_next
        # st.l2 holds frame bytes 12..23.
        type0, type1, type2 = (_be(st.l2, offset - 12, 2) for offset in (12, 16, 20))
        tci0 = _be(st.l2, 14 - 12, 2)
        tag0 = (type0 == EtherType.VLAN) | (type0 == EtherType.QINQ)
        tag1 = tag0 & ((type1 == EtherType.VLAN) | (type1 == EtherType.QINQ))
        ethertype = Mux(tag1, type2, Mux(tag0, type1, type0))
        direct = (self.direct_ethertype != 0) & (ethertype == self.direct_ethertype)
        is_ip = ~direct & ((ethertype == EtherType.IPV4) | (ethertype == EtherType.IPV6))

        # A new record: every field not set here starts at 0.
        m.d.comb += [
            rec_next.eq(0),
            rec_next.length.eq(n),
            rec_next.ethertype.eq(ethertype),
            rec_next.vlan_id.eq(Mux(tag0, tci0[:12], 0)),
            rec_next.flags.vlan.eq(tag0),
            rec_next.flags.vlan2.eq(tag1),
            rec_next.flags.direct.eq(direct),
        ]
        self._checks(m, st, [
            (st.mac_error, ParseError.MAC_ERROR),
            (n < ETH_HEADER_LEN, ParseError.RUNT),
            (n > self.max_frame, ParseError.OVERSIZE),
            (tag0 & (n < ETH_HEADER_LEN + 4), ParseError.TRUNCATED),
            (tag1 & (n < ETH_HEADER_LEN + 8), ParseError.TRUNCATED),
        ])
        self._done(m, st, ~is_ip)
        with m.If(st.advance):
            m.d.sync += st.tags.eq(tag0 + tag1)
            m.next = "L3"

    def _step_l3(self, m, st):
        """The IPv4 header or the fixed IPv6 header, at byte 14, 18 or 22."""
        n, rec, rec_next = st.n, st.rec, st.rec_next
        l3 = Signal(range(ETH_HEADER_LEN + 9))
        hdr = st.hdr                            # 40 bytes at L3, little-endian lanes
        m.d.comb += l3.eq(ETH_HEADER_LEN + 4 * st.tags)
        version, ihl = _byte(hdr, 0)[4:], _byte(hdr, 0)[:4]

        # Which checks apply (IPv4 or IPv6) is settled too: it picks the error.
        with m.If(self._settled(m, rec.ethertype == EtherType.IPV4, "l3_ipv4")):
            header_len = ihl * 4
            total_length = _be(hdr, 2, 2)
            frag = _be(hdr, 6, 2)
            fragment = frag[13] | (frag[:13] != 0)      # MF, or a non-zero offset
            ip_proto = _byte(hdr, 9)
            m.d.comb += [
                rec_next.flags.ipv4.eq(1),
                rec_next.flags.ip_options.eq(ihl > 5),
                rec_next.flags.fragment.eq(fragment),
                rec_next.dscp.eq(_byte(hdr, 1)[2:]),
                rec_next.ip_proto.eq(ip_proto),
                rec_next.flags.tunnel.eq(ip_proto == IpProto.GRE),
                rec_next.src_addr.eq(ipv4_mapped(0) | _be(hdr, 12, 4)),
                rec_next.dst_addr.eq(ipv4_mapped(0) | _be(hdr, 16, 4)),
            ]
            self._checks(m, st, [
                (n <= l3, ParseError.TRUNCATED),
                ((version != 4) | (ihl < 5), ParseError.BAD_IHL),
                *self._bounds(l3 + header_len, n),
                ((total_length < header_len) | (l3 + total_length > n), ParseError.BAD_LENGTH),
            ])
            self._done(m, st, fragment | ~_is_tcp_udp(ip_proto))
            with m.If(st.advance):
                m.d.sync += [
                    st.offset.eq(l3 + header_len),
                    st.ip_end.eq(l3 + total_length),
                    st.ext_count.eq(0),
                ]
                m.next = "L4"

        with m.Else():                          # IPv6: L2 only lets the two IP versions by
            payload_length = _be(hdr, 4, 2)
            next_header = _byte(hdr, 6)
            extension = _is_ext_header(next_header)
            m.d.comb += [
                rec_next.flags.ipv6.eq(1),
                # Traffic class: low nibble of byte 0, then high nibble of byte 1.
                rec_next.dscp.eq(Cat(_byte(hdr, 1)[6:], _byte(hdr, 0)[:4])),
                rec_next.ip_proto.eq(next_header),
                rec_next.flags.tunnel.eq(next_header == IpProto.GRE),
                rec_next.src_addr.eq(_be(hdr, 8, 16)),
                rec_next.dst_addr.eq(_be(hdr, 24, 16)),
            ]
            self._checks(m, st, [
                (n <= l3, ParseError.TRUNCATED),
                (version != 6, ParseError.BAD_IHL),
                # The 40-byte header always fits a capture window of 64 bytes or more.
                (l3 + 40 > n, ParseError.TRUNCATED),
                (l3 + 40 + payload_length > n, ParseError.BAD_LENGTH),
            ])
            self._done(m, st, ~(extension | _is_tcp_udp(next_header)))
            with m.If(st.advance):
                m.d.sync += [
                    st.offset.eq(l3 + 40),
                    st.ip_end.eq(l3 + 40 + payload_length),
                    st.ext_count.eq(0),
                ]
                with m.If(extension):
                    m.next = "EXT"
                with m.Else():
                    m.next = "L4"

    def _step_ext(self, m, st):
        """Skip the IPv6 extension header at ``offset``; ``rec.ip_proto`` is its type."""
        rec, rec_next, window, offset = st.rec, st.rec_next, st.window, st.offset
        is_fragment = rec.ip_proto == IpProto.FRAGMENT
        header_len = st.ext_len
        # A fragment offset (13 bits) or the M flag: only part of the packet, no L4 header.
        later_fragment = is_fragment & ((_be(window, 2, 2) & 0xFFF9) != 0)
        next_header = _byte(window, 0)
        extension = _is_ext_header(next_header)
        m.d.comb += [
            rec_next.flags.ip_options.eq(1),
            rec_next.flags.fragment.eq(rec.flags.fragment | is_fragment),
            rec_next.ip_proto.eq(next_header),
            rec_next.flags.tunnel.eq(next_header == IpProto.GRE),
        ]
        self._checks(m, st, [
            # First the 8 bytes every extension header has (they hold its length), then all.
            *self._bounds(offset + 8, st.ip_end),
            *self._bounds(offset + header_len, st.ip_end),
            (~later_fragment & extension & (st.ext_count == MAX_IPV6_EXT_HEADERS - 1),
             ParseError.HEADER_LIMIT),
        ])
        self._done(m, st, later_fragment | ~(extension | _is_tcp_udp(next_header)))
        with m.If(st.advance):
            m.d.sync += [
                st.offset.eq(offset + header_len),
                st.ext_count.eq(st.ext_count + 1),
            ]
            with m.If(~extension):
                m.next = "L4"

    def _step_l4(self, m, st):
        """Ports and TCP flags of the TCP or UDP header at ``offset``."""
        rec, rec_next, window = st.rec, st.rec_next, st.window
        is_tcp = rec.ip_proto == IpProto.TCP
        dst_port = _be(window, 2, 2)
        m.d.comb += [
            rec_next.flags.tcp.eq(is_tcp),
            rec_next.flags.udp.eq(~is_tcp),
            rec_next.src_port.eq(_be(window, 0, 2)),
            rec_next.dst_port.eq(dst_port),
            rec_next.tcp_flags.eq(Mux(is_tcp, _byte(window, 13), 0)),
            rec_next.flags.tunnel.eq(rec.flags.tunnel |
                                     (~is_tcp & (dst_port == VXLAN_UDP_PORT))),
            st.done.eq(1),
        ]
        self._checks(m, st, self._bounds(st.offset + Mux(is_tcp, 20, 8), st.ip_end))
