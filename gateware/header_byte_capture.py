# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers).
"""The header parser's capture at 8 bits: only the header bytes the walk reads."""

from dataclasses import dataclass, fields

from amaranth.hdl import C, Cat, Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hetnic.protocol import ETH_HEADER_LEN, EtherType, MAX_IPV6_EXT_HEADERS
from .beat import Beat
from .header_capture import (
    WINDOW_BYTES, CapturedFrameSignature, ext_header_len, is_ext_header,
    saturated_frame_length,
)

__all__ = ["HeaderByteCapture"]


#: Headers followed past L3: up to MAX_IPV6_EXT_HEADERS extension headers and the L4 header.
_N_WINDOWS = MAX_IPV6_EXT_HEADERS + 1
#: The bytes of each followed header that the extension and L4 steps read.
_WINDOW_BYTES = (0, 1, 2, 3, 13)
#: The bytes the L4 step also reads of a UDP header and behind it (the UDP length; a VXLAN
#: header's flags and VNI, less byte 13, which every window keeps). Only the last header followed reaches them (the walk
#: moves to the next header at byte 3), and that is the one the L4 step reads, so one copy
#: serves every window.
_TAIL_BYTES = (4, 5, 8, 12, 14)


@dataclass
class _StreamingFrame:
    """Registers of the frame streaming in (see :class:`HeaderByteCapture`).

    Positions are kept as distances, counted along with ``count``, not computed from it: a
    subtract and a compare in front of every capture enable were the core's critical path.
    ``rel_l3`` = ``count`` - L3 offset; ``rel`` = ``count`` - the followed header's offset
    (both saturate with ``count``; ``rel`` also stops once past the window). ``rel``'s
    compares ``rel_ge0`` and ``rel_lt15`` (inside the window's 15 bytes) are flops too, each
    worked out beside the value ``rel`` is about to take (``rel_next``, ``ge0_next``,
    ``lt15_next``, comb).
    """
    beat: Signal            # the registered beat
    take: Signal            # it was taken (a flop: the capture's enables hang off it)
    count: Signal           # index of this beat's byte (saturates at capture_bytes)
    counting: Signal        # count < capture bytes, as a flop
    length: Signal          # bytes before this one
    mac_error: Signal
    prev: Signal            # the two bytes before this one
    l2: Signal              # bytes 12..23
    hdr: Signal             # the 40 bytes at L3
    l3: Signal              # L3 offset: 14 + 4 * tags
    rel_l3: Signal
    ipv4: Signal
    rel: Signal
    rel_next: Signal
    rel_ge0: Signal
    rel_lt15: Signal
    ge0_next: Signal
    lt15_next: Signal
    next_rel: Signal        # `rel` at the next header's byte 0, + 4
    win: Signal             # header being followed
    win_type: Signal        # its type (IPv6 next header)
    win_live: Signal        # its offset and win_type are known
    chain: Signal           # another extension/L4 header follows
    windows: list           # bytes 0..3 and 13 of each followed header
    tail: Signal            # bytes 4, 5, 8, 12 and 14 of the last header followed
    ext_lens: list          # the extension-header length of each
    finished: Signal        # the frame ended; the walk has not got it
    n: Signal               # length of the finished frame
    frame_mac_error: Signal  # mac_error of the finished frame

    @classmethod
    def create(cls, beat_shape, capture_bytes):
        shapes = {
            "beat": beat_shape, "take": 1,
            "count": range(capture_bytes + 1), "counting": 1, "length": 16, "mac_error": 1,
            "prev": 16, "l2": 12 * 8, "hdr": 40 * 8, "l3": range(ETH_HEADER_LEN + 9),
            "rel_l3": signed(16), "ipv4": 1,
            "rel": signed(16), "rel_next": signed(16), "rel_ge0": 1, "rel_lt15": 1,
            "ge0_next": 1, "lt15_next": 1, "next_rel": signed(16),
            "tail": len(_TAIL_BYTES) * 8,
            "win": range(_N_WINDOWS), "win_type": 8, "win_live": 1, "chain": 1,
            "finished": 1, "n": 16, "frame_mac_error": 1,
        }
        inits = {"counting": 1, "l3": ETH_HEADER_LEN, "rel_l3": -ETH_HEADER_LEN,
                 "rel_ge0": 1, "rel_lt15": 1}
        signals = {name: Signal(shape, name=name, init=inits.get(name))
                   for name, shape in shapes.items()}
        signals["windows"] = [Signal(14 * 8, name=f"window{k}") for k in range(_N_WINDOWS)]
        signals["ext_lens"] = [Signal(12, name=f"ext_len{k}") for k in range(_N_WINDOWS)]
        assert set(signals) == {field.name for field in fields(cls)}
        return cls(**signals)


class HeaderByteCapture(wiring.Component):
    """At 8 bits: keep only the header bytes the walk reads, picked as they stream by.

    Bytes 12..23 go to ``l2``; once the tags are known (byte 13, 17 or 21) the 40 bytes at
    L3 go to ``hdr``. The offsets of the extension and L4 headers are followed the way the
    walk will compute them (IPv4: L3 + 4 * IHL; IPv6: L3 + 40, then each extension header's
    length: 8 for a fragment header, else (byte 1 + 1) * 8) and bytes 0..3 and 13 of each
    are kept, up to :data:`~hetnic.protocol.MAX_IPV6_EXT_HEADERS` + 1 headers, and bytes 4, 5,
    8 and 12..14 of the last one (a UDP header's length, the VXLAN flags and VNI behind it). Where the
    walk stops early (an error, a fragment, a header past the window), what was kept past
    that point is never read. That is about 80 bytes of registers instead of two buffers of
    ``capture_bytes`` and the shifter that reads them.

    A finished frame's bytes move to the walk's registers in one cycle, so the walk reads
    one frame while the next streams in: ``i.ready`` falls for two cycles after each frame's
    last beat, and for longer only when a frame ends before the walk is done with the one
    before it. ``frame.window`` and ``frame.ext_len`` are registers: they follow
    ``frame.ext_count`` one cycle later. ``frame.tags``, ``frame.offset`` and
    ``frame.ip_proto`` are not used.

    Parameters
    ----------
    capture_bytes : int
        Bytes of each frame looked at; header bytes past them are not kept.

    Members
    -------
    i : In(stream.Signature(Beat(8)))
        Frame bytes.
    frame : Out(CapturedFrameSignature())
        The frame the walk reads.
    """
    def __init__(self, capture_bytes: int):
        self._capture_bytes = capture_bytes
        super().__init__({
            "i": In(stream.Signature(Beat(8))),
            "frame": Out(CapturedFrameSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        s = _StreamingFrame.create(self.i.payload.shape(), self._capture_bytes)
        beat = s.beat
        # Not ready while a finished frame waits for the walk, nor right after a last beat
        # (the registered beat ends its frame in this cycle).
        m.d.comb += self.i.ready.eq(~s.finished & ~(s.take & beat.last))
        # The beat is registered first: the capture's many enables hang off `take`, a flop,
        # not off the stream handshake.
        m.d.sync += [s.take.eq(self.i.valid & self.i.ready), beat.eq(self.i.payload)]
        ihl_rel, ihl_zero = self._ihl_distance(m)
        m.d.comb += [s.rel_next.eq(s.rel), s.ge0_next.eq(s.rel_ge0),
                     s.lt15_next.eq(s.rel_lt15)]
        m.d.sync += [s.rel.eq(s.rel_next), s.rel_ge0.eq(s.ge0_next),
                     s.rel_lt15.eq(s.lt15_next)]

        with m.If(s.take & beat.keep[0]):
            self._count_byte(m, s)
            self._pick_l2_l3(m, s, ihl_rel, ihl_zero)
            self._follow_headers(m, s)
        self._end_frame(m, s)
        self._hand_over(m, s)
        return m

    def _ihl_distance(self, m):
        """If the incoming byte is the first of an IPv4 header: ``rel`` of the byte after it
        (1 - 4 * IHL) and whether that is 0 or more, worked out as the byte is registered (an
        adder behind the registered beat fed the core's critical path).

        Only -IHL is a flop: 1 - 4 * IHL is that shifted left by two with 0b01 below it (with
        the constant bits as flops too, yosys 0.70 failed an assertion in its ABC
        reintegration on the ECPIX-5 build)."""
        neg_ihl, ihl_zero = Signal(signed(5), name="neg_ihl"), Signal(name="ihl_zero")
        m.d.sync += [neg_ihl.eq(-self.i.payload.data[:4]),
                     ihl_zero.eq(self.i.payload.data[:4] == 0)]
        return Cat(C(1, 2), neg_ihl).as_signed(), ihl_zero

    def _count_byte(self, m, s):
        """Count the byte while inside the capture window, with the distances that follow it."""
        byte = s.beat.data[:8]
        with m.If(s.counting):
            m.d.sync += [s.count.eq(s.count + 1), s.rel_l3.eq(s.rel_l3 + 1),
                         s.counting.eq(s.count != self._capture_bytes - 1)]
            with m.If(s.rel_lt15):
                m.d.comb += [s.rel_next.eq(s.rel + 1), s.ge0_next.eq(s.rel >= -1),
                             s.lt15_next.eq(s.rel < WINDOW_BYTES - 1)]
        m.d.sync += s.prev.eq(Cat(byte, s.prev[:8]))

    def _pick_l2_l3(self, m, s, ihl_rel, ihl_zero):
        """Bytes 12..23 into ``l2``, the VLAN tags, the 40 bytes at L3 into ``hdr``, and from
        the first L3 byte where the first extension/L4 header starts."""
        byte = s.beat.data[:8]
        for k in range(12):
            with m.If(s.count == 12 + k):
                m.d.sync += s.l2.word_select(k, 8).eq(byte)
        # Tags: a VLAN/QinQ EtherType at 12 or (after one tag) at 16 moves L3 on by 4.
        type_here = Cat(byte, s.prev[:8])
        is_tag = (type_here == EtherType.VLAN) | (type_here == EtherType.QINQ)
        with m.If(((s.count == 13) | ((s.count == 17) & (s.l3 == 18))) & is_tag):
            m.d.sync += [s.l3.eq(s.l3 + 4), s.rel_l3.eq(s.rel_l3 + 1 - 4)]
        for k in range(40):
            with m.If(s.rel_l3 == k):
                m.d.sync += s.hdr.word_select(k, 8).eq(byte)
        with m.If(s.rel_l3 == 0):                   # first L3 byte; prev holds the EtherType
            m.d.sync += [s.ipv4.eq(s.prev == EtherType.IPV4), s.win.eq(0)]
            # The header followed starts at L3 + 4 * IHL (IPv4) or L3 + 40 (IPv6): `rel` of
            # the next byte.
            with m.If(s.prev == EtherType.IPV4):
                m.d.comb += [s.rel_next.eq(ihl_rel), s.ge0_next.eq(ihl_zero),
                             s.lt15_next.eq(1)]
                m.d.sync += [s.win_type.eq(0), s.win_live.eq(1)]
            with m.Else():
                m.d.comb += [s.rel_next.eq(1 - 40), s.ge0_next.eq(0), s.lt15_next.eq(1)]
        with m.If(~s.ipv4 & (s.rel_l3 == 6)):       # IPv6 next header
            m.d.sync += [s.win_type.eq(byte), s.win_live.eq(1)]

    def _follow_headers(self, m, s):
        """Keep bytes 0..3 and 13 of the followed header (and 4, 5, 8, 12 and 14 of whichever
        header reaches them: the last) and, from its byte 1, where the next one starts if it is an
        IPv6 extension header."""
        byte = s.beat.data[:8]
        with m.If(s.win_live & s.rel_ge0 & s.rel_lt15):
            for k, j in enumerate(_TAIL_BYTES):
                with m.If(s.rel == j):
                    m.d.sync += s.tail.word_select(k, 8).eq(byte)
            for w in range(_N_WINDOWS):
                with m.If(s.win == w):
                    for j in _WINDOW_BYTES:
                        with m.If(s.rel == j):
                            m.d.sync += s.windows[w].word_select(j, 8).eq(byte)
            with m.If(s.rel == 1):
                ext_len = ext_header_len(s.win_type, byte)
                for w in range(_N_WINDOWS):
                    with m.If(s.win == w):
                        m.d.sync += s.ext_lens[w].eq(ext_len)
                m.d.sync += [
                    s.next_rel.eq(4 - ext_len),
                    s.chain.eq(~s.ipv4 & is_ext_header(s.win_type) &
                               (s.win != _N_WINDOWS - 1)),
                ]
            with m.If((s.rel == 3) & s.chain):
                m.d.sync += [s.win.eq(s.win + 1), s.chain.eq(0)]
                m.d.comb += [s.rel_next.eq(s.next_rel), s.ge0_next.eq(s.next_rel >= 0),
                             s.lt15_next.eq(s.next_rel < WINDOW_BYTES)]
                for w in range(_N_WINDOWS):
                    with m.If(s.win == w):
                        m.d.sync += s.win_type.eq(s.windows[w][:8])

    def _end_frame(self, m, s):
        """Keep the frame's length and error bit; at its last beat, mark it finished and start
        the next frame (these assignments take priority over the byte pickup's)."""
        beat = s.beat
        new_length = saturated_frame_length(beat, s.length)
        with m.If(s.take):
            with m.If(beat.last):
                m.d.sync += [
                    s.finished.eq(1), s.n.eq(new_length),
                    s.frame_mac_error.eq(s.mac_error | beat.error),
                    s.count.eq(0), s.counting.eq(1), s.length.eq(0), s.mac_error.eq(0),
                    s.l3.eq(ETH_HEADER_LEN),
                    s.rel_l3.eq(-ETH_HEADER_LEN),
                    s.win_live.eq(0), s.chain.eq(0), s.ipv4.eq(0),
                ]
            with m.Else():
                m.d.sync += [s.length.eq(new_length), s.mac_error.eq(s.mac_error | beat.error)]

    def _hand_over(self, m, s):
        """The finished frame's bytes move to the walk's registers once it is free."""
        frame = self.frame
        e_n, e_mac_error = Signal(16, name="e_n"), Signal(name="e_mac_error")
        e_l2, e_hdr = Signal.like(s.l2, name="e_l2"), Signal.like(s.hdr, name="e_hdr")
        e_windows = [Signal(14 * 8, name=f"e_window{k}") for k in range(_N_WINDOWS)]
        e_tail = Signal.like(s.tail, name="e_tail")
        e_ext_lens = [Signal(12, name=f"e_ext_len{k}") for k in range(_N_WINDOWS)]
        e_full = Signal()

        with m.If(frame.release):
            m.d.sync += e_full.eq(0)
        # (Not in the cycle the walk releases: the copy's enable stays off the walk's check
        # logic, at the cost of a cycle per frame.)
        with m.If(s.finished & ~e_full):
            m.d.sync += [e_full.eq(1), s.finished.eq(0), e_l2.eq(s.l2), e_hdr.eq(s.hdr),
                         e_n.eq(s.n), e_mac_error.eq(s.frame_mac_error), e_tail.eq(s.tail)]
            m.d.sync += [e.eq(w) for e, w in zip(e_windows, s.windows)]
            m.d.sync += [e.eq(w) for e, w in zip(e_ext_lens, s.ext_lens)]

        m.d.comb += [
            frame.active.eq(e_full), frame.n.eq(e_n), frame.mac_error.eq(e_mac_error),
            frame.l2.eq(e_l2), frame.hdr.eq(e_hdr),
        ]
        # The window of the header the walk is at, as a register: the walk waits a cycle
        # after each step for it (see HeaderWalk).
        with m.Switch(frame.ext_count):
            for w in range(_N_WINDOWS):
                with m.Case(w):
                    m.d.sync += [frame.window.eq(e_windows[w]),
                                 frame.ext_len.eq(e_ext_lens[w])]
                    m.d.sync += [frame.window.word_select(j, 8).eq(e_tail.word_select(k, 8))
                                 for k, j in enumerate(_TAIL_BYTES)]
