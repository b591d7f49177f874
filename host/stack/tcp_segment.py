# Ref: RFC 9293 (TCP header, sequence numbers, checksum), RFC 7323 (window scale and
#      timestamps options), RFC 2018 (SACK options), RFC 3168 (ECE/CWR flags).
"""TCP segments on the wire: parse (with checksum and option checks) and build.

A :class:`TcpSegment` is the parsed form the connection code works on: the header fields as
plain integers (the window raw, not yet scaled), the payload as ``bytes`` and the options the
stack understands. :func:`parse_tcp` rejects a bad segment with a :class:`SegmentError` whose
``reason`` is the drop counter to bump; :func:`build_tcp` makes a segment with its checksum
filled in, in one concatenation. Both are on the per-segment path, so they use precompiled
:class:`struct.Struct` objects and sum the checksum arithmetically instead of re-reading the
header they just packed.

Sequence numbers are compared modulo 2**32 with :func:`seq_lt` and friends (RFC 9293
section 3.4: ``a < b`` iff ``0 < (b - a) mod 2**32 < 2**31``).
"""

from __future__ import annotations

import struct

from hetnic.errors import HetnicError
from hetnic.protocol import IpProto

from .checksum import word_sum

__all__ = [
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR",
    "OPT_EOL", "OPT_NOP", "OPT_MSS", "OPT_WSCALE", "OPT_SACK_PERMITTED", "OPT_SACK",
    "OPT_TIMESTAMP", "TCP_HEADER_LEN", "MAX_OPTIONS_LEN", "MAX_WSCALE", "MAX_SACK_BLOCKS",
    "DEFAULT_MSS", "TS_WORD",
    "SegmentError", "TcpSegment", "parse_tcp", "build_tcp", "syn_options", "ts_option",
    "sack_option", "flags_text",
    "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_add", "seq_diff",
]

# Control bits (the 8 bits of header byte 13).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

TCP_HEADER_LEN = 20
MAX_OPTIONS_LEN = 40
#: The largest window shift (RFC 7323 section 2.3); a larger received value is used as 14.
MAX_WSCALE = 14
#: SACK blocks that fit in the options (3 beside a timestamp option).
MAX_SACK_BLOCKS = 4
#: The MSS assumed for a peer that sends no MSS option, by address length: 536 over IPv4
#: (RFC 9293 3.7.1), 1220 over IPv6 (its minimum MTU, 1280, less the headers; RFC 8200
#: section 5).
DEFAULT_MSS = {4: 536, 16: 1220}
#: NOP NOP kind 8 length 10: the first option word of a segment whose only option is a
#: timestamp (the usual 32-byte header), as a 32-bit big-endian value.
TS_WORD = (OPT_NOP << 24) | (OPT_NOP << 16) | (OPT_TIMESTAMP << 8) | 10

_SEQ_MOD = 1 << 32
_SEQ_MASK = _SEQ_MOD - 1
_SEQ_HALF = 1 << 31

# sport, dport, seq, ack, data offset << 4, flags, window, checksum, urgent pointer
_HDR = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_TS_BODY = struct.Struct("!II")
_TS_OPTION = struct.Struct("!BBBBII")          # NOP NOP kind len val ecr
_SACK_BLOCK = struct.Struct("!II")
# The usual option area of a data segment (RFC 7323 appendix A layout).
_NOP_NOP_TS = TS_WORD.to_bytes(4, "big")

_from_bytes = int.from_bytes
_PROTO_TCP = int(IpProto.TCP)   # a plain int: summed on the per-segment path

_FLAG_NAMES = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
               (ECE, "E"), (CWR, "W"))


class SegmentError(HetnicError, ValueError):
    """A received segment that must be dropped, or segment fields that cannot be built.

    Members
    -------
    reason : str
        The drop counter name: ``"tcp_truncated"``, ``"tcp_bad_offset"``,
        ``"tcp_bad_checksum"``, ``"tcp_bad_option"``, ``"tcp_syn_fin"`` or
        ``"tcp_bad_flags"`` (SYN together with RST).
    """

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(message or reason.replace("_", " "))
        self.reason = reason


class TcpSegment:
    """One TCP segment, parsed or about to be built.

    Members
    -------
    sport, dport : int
    seq, ack : int
        Sequence and acknowledgement numbers (``ack`` meaningful only with :data:`ACK`).
    flags : int
        The control bits (:data:`FIN` ... :data:`CWR`).
    window : int
        The raw 16-bit window field (not scaled).
    urgent : int
        The urgent pointer (the stack does not implement urgent data; it is kept for dumps).
    payload : bytes
    mss, wscale : int or None
        MSS and window-scale options (``wscale`` already clamped to :data:`MAX_WSCALE`).
    sack_permitted : bool
    sack_blocks : tuple of (int, int)
        SACK blocks ``(left, right)`` as received, right edge exclusive.
    ts_val, ts_ecr : int or None
        The timestamp option, both ``None`` when absent.

    ``len(segment)`` is the sequence space it occupies: payload length plus one for SYN and
    one for FIN.
    """

    __slots__ = ("sport", "dport", "seq", "ack", "flags", "window", "urgent", "payload", "mss",
                 "wscale", "sack_permitted", "sack_blocks", "ts_val", "ts_ecr")

    def __init__(self, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                 payload: bytes = b"", urgent: int = 0, mss: int | None = None,
                 wscale: int | None = None, sack_permitted: bool = False,
                 sack_blocks: tuple[tuple[int, int], ...] = (), ts_val: int | None = None,
                 ts_ecr: int | None = None):
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgent = urgent
        self.payload = payload
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = sack_blocks
        self.ts_val = ts_val
        self.ts_ecr = ts_ecr

    def __len__(self) -> int:
        flags = self.flags
        return len(self.payload) + (flags & SYN and 1) + (flags & FIN)

    def __repr__(self) -> str:
        parts = [f"{self.sport}>{self.dport}", flags_text(self.flags), f"seq={self.seq}"]
        if self.flags & ACK:
            parts.append(f"ack={self.ack}")
        parts.append(f"win={self.window}")
        if self.payload:
            parts.append(f"len={len(self.payload)}")
        for name in ("mss", "wscale", "ts_val", "ts_ecr"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.sack_blocks:
            parts.append(f"sack={list(self.sack_blocks)}")
        return f"TcpSegment({' '.join(parts)})"


def flags_text(flags: int) -> str:
    """The control bits as tcpdump-like letters (``"S."`` for SYN+ACK)."""
    return "".join(letter for bit, letter in _FLAG_NAMES if flags & bit) or "-"


def parse_tcp(buf: bytes | bytearray | memoryview, src: bytes, dst: bytes) -> TcpSegment:
    """Parse and check one TCP segment (header, options, payload).

    Parameters
    ----------
    buf : bytes-like
        The IP payload: exactly the TCP segment (the IP layer has applied its length).
    src, dst : bytes
        The IP source and destination (4 or 16 bytes), for the pseudo-header checksum.

    Returns
    -------
    TcpSegment

    Raises
    ------
    SegmentError
        With ``reason`` ``"tcp_truncated"`` (shorter than 20 bytes), ``"tcp_bad_offset"``
        (data offset below 5 or past the end), ``"tcp_bad_checksum"``, ``"tcp_syn_fin"``,
        ``"tcp_bad_flags"`` (SYN with RST), ``"tcp_bad_option"`` (an option of length 0 or
        1, one running past the header, or an MSS/WS/SACK-permitted/SACK/timestamp option of
        the wrong length). Unknown option kinds with a sane length are skipped.
    """
    n = len(buf)
    if n < 20:
        raise SegmentError("tcp_truncated")
    sport, dport, seq, ack, offset, flags, window, _, urgent = _HDR.unpack_from(buf)
    hl = (offset >> 4) << 2
    if hl < 20 or hl > n:
        raise SegmentError("tcp_bad_offset")
    # Ones' complement sum of pseudo-header + segment must be 0xFFFF: the total is a
    # non-zero multiple of 0xFFFF (the protocol word makes it non-zero).
    if (word_sum(buf) + _from_bytes(src, "big") + _from_bytes(dst, "big") + _PROTO_TCP
            + n) % 0xFFFF:
        raise SegmentError("tcp_bad_checksum")
    if flags & SYN:
        if flags & FIN:
            raise SegmentError("tcp_syn_fin")
        if flags & RST:
            raise SegmentError("tcp_bad_flags", "tcp bad flags (SYN with RST)")
    payload = buf[hl:]
    if type(payload) is not bytes:
        payload = bytes(payload)
    seg = TcpSegment(sport, dport, seq, ack, flags, window, payload, urgent)
    if hl == 32 and buf[20:24] == _NOP_NOP_TS:
        seg.ts_val, seg.ts_ecr = _TS_BODY.unpack_from(buf, 24)
    elif hl > 20:
        _parse_options(seg, buf, hl)
    return seg


def _parse_options(seg: TcpSegment, buf, hl: int) -> None:
    """Fill ``seg``'s option fields from ``buf[20:hl]`` (RFC 9293 section 3.1 layout)."""
    i = 20
    while i < hl:
        kind = buf[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= hl:
            raise SegmentError("tcp_bad_option", f"tcp bad option: kind {kind} has no length")
        length = buf[i + 1]
        if length < 2 or i + length > hl:
            raise SegmentError("tcp_bad_option",
                               f"tcp bad option: kind {kind} length {length} at offset {i}")
        if kind == OPT_MSS:
            if length != 4:
                raise SegmentError("tcp_bad_option", f"tcp bad option: MSS length {length}")
            seg.mss = _U16.unpack_from(buf, i + 2)[0]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise SegmentError("tcp_bad_option", f"tcp bad option: WS length {length}")
            seg.wscale = min(buf[i + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise SegmentError("tcp_bad_option",
                                   f"tcp bad option: SACK-permitted length {length}")
            seg.sack_permitted = True
        elif kind == OPT_SACK:
            if length < 10 or (length - 2) & 7:
                raise SegmentError("tcp_bad_option", f"tcp bad option: SACK length {length}")
            seg.sack_blocks = tuple(_SACK_BLOCK.unpack_from(buf, j)
                                    for j in range(i + 2, i + length, 8))
        elif kind == OPT_TIMESTAMP:
            if length != 10:
                raise SegmentError("tcp_bad_option",
                                   f"tcp bad option: timestamp length {length}")
            seg.ts_val, seg.ts_ecr = _TS_BODY.unpack_from(buf, i + 2)
        i += length


def build_tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
              window: int, options: bytes = b"", payload: bytes = b"") -> bytes:
    """One TCP segment with its checksum: header, ``options`` and ``payload``.

    Parameters
    ----------
    src, dst : bytes
        IP addresses (4 or 16 bytes) for the pseudo-header.
    sport, dport, seq, ack, flags, window : int
        Header fields; ``seq``/``ack`` in ``0..2**32-1``, ``window`` the raw 16-bit field
        (already scaled down by the caller).
    options : bytes
        A multiple of 4 bytes, at most 40 (from :func:`syn_options`, :func:`ts_option`,
        :func:`sack_option`, concatenated).
    payload : bytes

    Raises
    ------
    SegmentError
        ``"tcp_bad_option"`` if ``options`` is not 4-byte aligned or too long; a header field
        out of range raises :class:`struct.error` (a caller bug).
    """
    olen = len(options)
    if olen & 3 or olen > MAX_OPTIONS_LEN:
        raise SegmentError("tcp_bad_option",
                           f"tcp options must be a multiple of 4 bytes up to 40, not {olen}")
    hl = 20 + olen
    offset = hl << 2                                   # (hl // 4) << 4
    # The header's words summed arithmetically: 2**16 == 1 (mod 0xFFFF), so a 32-bit field
    # contributes its value, as its two 16-bit words would.
    total = (sport + dport + seq + ack + (offset << 8 | flags) + window
             + _from_bytes(src, "big") + _from_bytes(dst, "big") + _PROTO_TCP + hl + len(payload))
    if olen:
        total += _from_bytes(options, "big")
    if payload:
        total += word_sum(payload)
    total %= 0xFFFF
    csum = 0xFFFF - total if total else 0
    return b"".join((_HDR.pack(sport, dport, seq, ack, offset, flags, window, csum, 0),
                     options, payload))


def syn_options(mss: int, wscale: int | None = None, sack_permitted: bool = True,
                ts: tuple[int, int] | None = None) -> bytes:
    """The options of a SYN or SYN-ACK, 4-byte aligned (Linux's order: MSS, SACK-permitted
    with timestamps or NOPs, window scale).

    Parameters
    ----------
    mss : int
        Our maximum segment size (``0..65535``).
    wscale : int or None
        Our window shift (``0..14``), or ``None`` to not offer window scaling.
    sack_permitted : bool
    ts : (int, int) or None
        ``(ts_val, ts_ecr)`` to send a timestamp option, or ``None``.
    """
    if wscale is not None and not 0 <= wscale <= MAX_WSCALE:
        raise SegmentError("tcp_bad_option", f"window scale must be 0..14, not {wscale}")
    parts = [bytes((OPT_MSS, 4)) + _U16.pack(mss)]
    if ts is not None:
        lead = (bytes((OPT_SACK_PERMITTED, 2)) if sack_permitted
                else bytes((OPT_NOP, OPT_NOP)))
        parts.append(lead + bytes((OPT_TIMESTAMP, 10)) + _TS_BODY.pack(*ts))
    elif sack_permitted:
        parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2)))
    if wscale is not None:
        parts.append(bytes((OPT_NOP, OPT_WSCALE, 3, wscale)))
    return b"".join(parts)


def ts_option(val: int, ecr: int) -> bytes:
    """NOP, NOP, timestamp option (12 bytes): ``TSval = val``, ``TSecr = ecr``."""
    return _TS_OPTION.pack(OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, val, ecr)


def sack_option(blocks) -> bytes:
    """NOP, NOP, SACK option for ``blocks`` (``(left, right)`` pairs, 1 to 4; at most 3
    fit beside a timestamp option: the caller trims). No blocks give ``b""``."""
    count = len(blocks)
    if count == 0:
        return b""
    if count > MAX_SACK_BLOCKS:
        raise SegmentError("tcp_bad_option", f"at most 4 SACK blocks fit, not {count}")
    return bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * count)) + b"".join(
        _SACK_BLOCK.pack(left, right) for left, right in blocks)


# --- Sequence-number arithmetic (mod 2**32) -------------------------------------------------

def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed distance in sequence space (``-2**31 .. 2**31-1``)."""
    return ((a - b + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & _SEQ_MASK


def seq_lt(a: int, b: int) -> bool:
    """``a`` is before ``b`` in sequence space (``seq_diff(a, b) < 0``)."""
    return ((a - b) & _SEQ_MASK) >= _SEQ_HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` is before or equal to ``b`` in sequence space (``seq_diff(a, b) <= 0``)."""
    return ((a - b - 1) & _SEQ_MASK) >= _SEQ_HALF - 1


def seq_gt(a: int, b: int) -> bool:
    """``a`` is after ``b`` in sequence space (``seq_diff(a, b) > 0``)."""
    return ((a - b - 1) & _SEQ_MASK) < _SEQ_HALF - 1


def seq_ge(a: int, b: int) -> bool:
    """``a`` is after or equal to ``b`` in sequence space (``seq_diff(a, b) >= 0``)."""
    return ((a - b) & _SEQ_MASK) < _SEQ_HALF
