# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
#      RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe-13 (VXLAN-GPE), RFC 2784 (GRE),
#      RFC 4291 (IPv4-mapped addresses).
"""Bit-exact model of the RX header parser, :class:`hetnic.gateware.parser.HeaderParser`.

:func:`parse_frame` is the oracle the gateware is tested against, and is itself tested
against scapy's dissection. It walks one frame the way the gateware does and returns the
parser-filled fields of :class:`~hetnic.protocol.PacketMeta` as a :class:`ParsedFrame`.

Rules the model and the gateware share
--------------------------------------
* ``length`` is the byte count, saturating at 65535; every check below uses the saturated
  length ``n``.
* Errors, first match wins: ``MAC_ERROR`` (the MAC flagged the frame), ``RUNT``
  (``n < 14``), ``OVERSIZE`` (``n > max_frame``), then the first header error met while
  walking the headers in wire order.
* **A frame with an error carries only** ``length`` **and** ``error``; every other field is 0.
* A header that needs bytes up to offset ``end`` fails with ``TRUNCATED`` if ``end`` is past
  its bound (the frame for L2/L3 headers, the IP packet ``min(n, l3 + IP length)`` for IPv6
  extension headers and the L4 header), else with ``HEADER_LIMIT`` if ``end > capture_bytes``.
* L2: up to two tags (TPID 0x8100 or 0x88a8; a third is an EtherType value), each needing 4
  more bytes. ``vlan_id`` is the VID of the outer tag. ``direct`` is set when the EtherType
  equals ``direct_ethertype`` (and that is not 0); such frames are not parsed past L2.
* IPv4: the version byte must be in the frame (``TRUNCATED``); version 4 and IHL >= 5
  (``BAD_IHL``); the ``IHL * 4`` byte header must be present; ``total_length >= IHL * 4`` and
  ``l3 + total_length <= n`` (``BAD_LENGTH``). MF or a non-zero offset mark a fragment,
  which gets no L4 fields.
* IPv6: version 6 (``BAD_IHL``); the 40-byte header; ``l3 + 40 + payload_length <= n``
  (``BAD_LENGTH``). Extension headers 0, 43, 60 (``(len + 1) * 8`` bytes) and 44 (8 bytes,
  sets ``fragment``) are skipped, at most
  :data:`~hetnic.protocol.MAX_IPV6_EXT_HEADERS` (4) of them (a fifth is
  ``HEADER_LIMIT``); each is first checked for its first 8 bytes, then for its full length.
  A fragment header with a non-zero offset or the M flag ends the walk: ``ip_proto`` is its
  next-header value and there are no L4 fields.
* L4: TCP needs 20 bytes and gives ports, ``tcp_flags`` (TCP header byte 13) and ``tcp``;
  UDP needs 8 bytes and gives ports and ``udp``. Other protocols stop after L3.
* ``tunnel``: ``ip_proto == 47`` (GRE, also on fragments) or UDP to port 4789 (VXLAN) or
  4790 (VXLAN-GPE). Only the outer headers are parsed.
* ``vni``: UDP to port 4789 or 4790 whose 8-byte VXLAN / VXLAN-GPE header (after the UDP
  header) lies inside the UDP datagram (UDP length 16 or more), whose UDP datagram lies
  inside the IP packet (UDP offset + UDP length <= IP end), and whose header ends inside the
  capture window, with the I flag (0x08 of its byte 0) set: the flag ``vni`` and ``vni`` =
  its bytes 4..6. Otherwise (the header cut short by the UDP or IP length, past the window,
  I clear) ``vni`` is 0 and the flag clear; that is never an error,
  the outer headers parsed fine. The other flag bits (reserved, or GPE's version, P, B, O)
  are not looked at.
"""

from dataclasses import dataclass, fields

from amaranth.lib import data

from hetnic.protocol import MAX_CAPTURE_BYTES, MAX_IPV6_EXT_HEADERS, MIN_CAPTURE_BYTES
from hetnic.protocol import (
    ETH_DEFAULT_MAX_FRAME, ETH_HEADER_LEN, EtherType, IpProto, MetaFlags, PacketMeta,
    ParseError, VXLAN_FLAG_I, VXLAN_GPE_UDP_PORT, VXLAN_HEADER_LEN, VXLAN_UDP_PORT,
    ipv4_mapped,
)

__all__ = ["ParsedFrame", "parse_frame"]

_VLAN_TPIDS = (EtherType.VLAN, EtherType.QINQ)
_EXT_HEADERS = (IpProto.HOPOPT, IpProto.ROUTING, IpProto.FRAGMENT, IpProto.DSTOPTS)
_LENGTH_MAX = 0xFFFF

# Bit position of each MetaFlags member, taken from the shared layout.
_FLAG_BITS = {name: field.offset for name, field in data.Layout.cast(MetaFlags)}
# Parser-filled PacketMeta fields (all others stay 0 in the parser's output).
_META_LAYOUT = data.Layout.cast(PacketMeta)


def _flag_bit(name: str) -> int:
    if name not in _FLAG_BITS:
        raise ValueError(f"No MetaFlags member named {name!r}; choose from "
                         f"{', '.join(_FLAG_BITS)}")
    return 1 << _FLAG_BITS[name]


@dataclass
class ParsedFrame:
    """The fields of :class:`~hetnic.protocol.PacketMeta` that the header parser fills.

    All multi-byte fields are numeric values of big-endian wire fields; ``src_addr`` and
    ``dst_addr`` are 128-bit values, IPv4 addresses IPv4-mapped. ``flags`` is an ``int`` in
    :class:`~hetnic.protocol.MetaFlags` bit order (bit 0 ``vlan`` ... bit 10 ``vni``).
    """
    length: int = 0
    error: ParseError = ParseError.NONE
    flags: int = 0
    ethertype: int = 0
    vlan_id: int = 0
    dscp: int = 0
    ip_proto: int = 0
    tcp_flags: int = 0
    src_addr: int = 0
    dst_addr: int = 0
    src_port: int = 0
    dst_port: int = 0
    vni: int = 0

    def flag(self, name: str) -> bool:
        """Whether the :class:`~hetnic.protocol.MetaFlags` member ``name`` is set."""
        return bool(self.flags & _flag_bit(name))

    def set_flag(self, name: str, value: bool = True) -> None:
        """Set (or clear) the :class:`~hetnic.protocol.MetaFlags` member ``name``."""
        bit = _flag_bit(name)
        self.flags = (self.flags | bit) if value else (self.flags & ~bit)

    def to_meta_bits(self) -> int:
        """This record as the raw bits of a :class:`~hetnic.protocol.PacketMeta`, every field
        the parser does not fill (hash, rule, queue, ...) being 0."""
        bits = 0
        for f in fields(self):
            layout_field = _META_LAYOUT[f.name]
            value = int(getattr(self, f.name))
            if value >> layout_field.width:
                raise ValueError(f"{f.name} value {value:#x} does not fit in "
                                 f"{layout_field.width} bits")
            bits |= value << layout_field.offset
        return bits

    @classmethod
    def from_meta_bits(cls, bits: int) -> "ParsedFrame":
        """The parser fields of a :class:`~hetnic.protocol.PacketMeta` given as raw bits.
        The other fields are ignored (compare :meth:`to_meta_bits` to check they are 0)."""
        values = {}
        for f in fields(cls):
            layout_field = _META_LAYOUT[f.name]
            values[f.name] = bits >> layout_field.offset & ((1 << layout_field.width) - 1)
        values["error"] = ParseError(values["error"])
        return cls(**values)

    def __str__(self):
        names = [name for name in _FLAG_BITS if self.flag(name)]
        return (f"ParsedFrame(length={self.length}, error={self.error.name}, "
                f"flags={'|'.join(names) or '0'}, ethertype={self.ethertype:#06x}, "
                f"vlan_id={self.vlan_id}, dscp={self.dscp}, ip_proto={self.ip_proto}, "
                f"tcp_flags={self.tcp_flags:#04x}, src_addr={self.src_addr:#x}, "
                f"dst_addr={self.dst_addr:#x}, src_port={self.src_port}, "
                f"dst_port={self.dst_port}, vni={self.vni})")


class _HeaderError(Exception):
    def __init__(self, error: ParseError):
        self.error = error


class _Walk:
    """Byte access to one frame with the parser's bound checks."""

    def __init__(self, frame: bytes, length: int, capture_bytes: int):
        self.frame = frame
        self.length = length
        self.capture_bytes = capture_bytes

    def need(self, end: int, bound: int) -> None:
        # Bytes [.., end) are needed: past the bound is a truncated header; past the
        # capture window the gateware cannot see them.
        if end > bound:
            raise _HeaderError(ParseError.TRUNCATED)
        if end > self.capture_bytes:
            raise _HeaderError(ParseError.HEADER_LIMIT)

    def u8(self, offset: int) -> int:
        return self.frame[offset]

    def u16(self, offset: int) -> int:
        return int.from_bytes(self.frame[offset:offset + 2], "big")

    def uint(self, offset: int, size: int) -> int:
        return int.from_bytes(self.frame[offset:offset + size], "big")


def parse_frame(frame: bytes, *, mac_error: bool = False,
                max_frame: int = ETH_DEFAULT_MAX_FRAME,
                direct_ethertype: int = EtherType.DIRECT_DEFAULT,
                capture_bytes: int = 128) -> ParsedFrame:
    """Parse one frame the way :class:`~hetnic.gateware.parser.HeaderParser` does.

    Parameters
    ----------
    frame : bytes
        The frame as received, from the destination MAC address on, without FCS.
    mac_error : bool
        The MAC marked the frame bad (the ``error`` bit of any of its beats).
    max_frame : int
        The ``MAX_FRAME`` register: longer frames are ``OVERSIZE``.
    direct_ethertype : int
        The ``DIRECT_ETHERTYPE`` register; 0 disables the ``direct`` flag.
    capture_bytes : int
        The parser's capture window: headers past it are ``HEADER_LIMIT``.

    Returns
    -------
    ParsedFrame
        The parser fields of the frame's :class:`~hetnic.protocol.PacketMeta`. Never raises
        on malformed frames; the problem is reported in ``error``.
    """
    if not isinstance(capture_bytes, int) or not (
            MIN_CAPTURE_BYTES <= capture_bytes <= MAX_CAPTURE_BYTES):
        raise ValueError(f"capture_bytes must be an integer from {MIN_CAPTURE_BYTES} to "
                         f"{MAX_CAPTURE_BYTES}, not {capture_bytes!r}")
    length = min(len(frame), _LENGTH_MAX)
    error = ParseError.NONE
    if mac_error:
        error = ParseError.MAC_ERROR
    elif length < ETH_HEADER_LEN:
        error = ParseError.RUNT
    elif length > max_frame:
        error = ParseError.OVERSIZE
    if error:
        return ParsedFrame(length=length, error=error)

    result = ParsedFrame(length=length)
    walk = _Walk(frame, length, capture_bytes)
    try:
        _parse_headers(walk, result, direct_ethertype)
    except _HeaderError as exc:
        return ParsedFrame(length=length, error=exc.error)
    return result


def _parse_headers(walk: _Walk, result: ParsedFrame, direct_ethertype: int) -> None:
    n = walk.length
    # L2: the EtherType field at offset 12, then at most two tags of 4 bytes each.
    type_offset = 12
    ethertype = walk.u16(type_offset)
    for depth in range(2):
        if ethertype not in _VLAN_TPIDS:
            break
        walk.need(type_offset + 6, n)
        if depth == 0:
            result.vlan_id = walk.u16(type_offset + 2) & 0xFFF
            result.set_flag("vlan")
        else:
            result.set_flag("vlan2")
        type_offset += 4
        ethertype = walk.u16(type_offset)
    result.ethertype = ethertype
    l3 = type_offset + 2

    if direct_ethertype and ethertype == direct_ethertype:
        result.set_flag("direct")
    elif ethertype == EtherType.IPV4:
        _parse_ipv4(walk, result, l3)
    elif ethertype == EtherType.IPV6:
        _parse_ipv6(walk, result, l3)


def _parse_ipv4(walk: _Walk, result: ParsedFrame, l3: int) -> None:
    n = walk.length
    walk.need(l3 + 1, n)
    version, ihl = walk.u8(l3) >> 4, walk.u8(l3) & 0xF
    if version != 4 or ihl < 5:
        raise _HeaderError(ParseError.BAD_IHL)
    header_len = ihl * 4
    walk.need(l3 + header_len, n)
    total_length = walk.u16(l3 + 2)
    if total_length < header_len or l3 + total_length > n:
        raise _HeaderError(ParseError.BAD_LENGTH)

    result.set_flag("ipv4")
    result.set_flag("ip_options", ihl > 5)
    result.dscp = walk.u8(l3 + 1) >> 2
    frag = walk.u16(l3 + 6)
    fragment = bool(frag & 0x2000) or bool(frag & 0x1FFF)
    result.set_flag("fragment", fragment)
    result.ip_proto = walk.u8(l3 + 9)
    result.src_addr = ipv4_mapped(walk.uint(l3 + 12, 4))
    result.dst_addr = ipv4_mapped(walk.uint(l3 + 16, 4))
    result.set_flag("tunnel", result.ip_proto == IpProto.GRE)
    if not fragment:
        _parse_l4(walk, result, l3 + header_len, l3 + total_length)


def _parse_ipv6(walk: _Walk, result: ParsedFrame, l3: int) -> None:
    n = walk.length
    walk.need(l3 + 1, n)
    if walk.u8(l3) >> 4 != 6:
        raise _HeaderError(ParseError.BAD_IHL)
    walk.need(l3 + 40, n)
    ip_end = l3 + 40 + walk.u16(l3 + 4)
    if ip_end > n:
        raise _HeaderError(ParseError.BAD_LENGTH)

    result.set_flag("ipv6")
    result.dscp = (walk.u16(l3) >> 4 & 0xFF) >> 2
    result.src_addr = walk.uint(l3 + 8, 16)
    result.dst_addr = walk.uint(l3 + 24, 16)
    next_header = walk.u8(l3 + 6)
    offset = l3 + 40
    skipped = 0
    more_l4 = True
    while next_header in _EXT_HEADERS:
        if skipped == MAX_IPV6_EXT_HEADERS:
            raise _HeaderError(ParseError.HEADER_LIMIT)
        # The first 8 bytes hold every field read here; only then is the length trusted.
        walk.need(offset + 8, ip_end)
        if next_header == IpProto.FRAGMENT:
            header_len = 8
            result.set_flag("fragment")
            later = bool(walk.u16(offset + 2) & 0xFFF9)   # offset (13 bits) or M
        else:
            header_len = (walk.u8(offset + 1) + 1) * 8
            later = False
        walk.need(offset + header_len, ip_end)
        next_header = walk.u8(offset)
        offset += header_len
        skipped += 1
        if later:
            more_l4 = False
            break
    result.set_flag("ip_options", skipped > 0)
    result.ip_proto = next_header
    result.set_flag("tunnel", next_header == IpProto.GRE)
    if more_l4:
        _parse_l4(walk, result, offset, ip_end)


def _parse_l4(walk: _Walk, result: ParsedFrame, l4: int, ip_end: int) -> None:
    if result.ip_proto == IpProto.TCP:
        walk.need(l4 + 20, ip_end)
        result.tcp_flags = walk.u8(l4 + 13)
        result.set_flag("tcp")
    elif result.ip_proto == IpProto.UDP:
        walk.need(l4 + 8, ip_end)
        result.set_flag("udp")
    else:
        return
    result.src_port = walk.u16(l4)
    result.dst_port = walk.u16(l4 + 2)
    if result.flag("udp") and result.dst_port in (VXLAN_UDP_PORT, VXLAN_GPE_UDP_PORT):
        result.set_flag("tunnel")
        _parse_vxlan(walk, result, l4, ip_end)


def _parse_vxlan(walk: _Walk, result: ParsedFrame, l4: int, ip_end: int) -> None:
    # A VXLAN header cut short (by the UDP length, or a UDP datagram that does not fit the IP
    # packet) or past the capture window carries no VNI; not an error.
    udp_len = walk.u16(l4 + 4)
    end = l4 + 8 + VXLAN_HEADER_LEN
    if udp_len < 8 + VXLAN_HEADER_LEN or l4 + udp_len > ip_end or end > walk.capture_bytes:
        return
    start = l4 + 8
    if walk.u8(start) & VXLAN_FLAG_I:
        result.set_flag("vni")
        result.vni = walk.uint(start + 4, 3)
