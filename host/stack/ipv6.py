# Ref: RFC 8200 (IPv6: header, extension headers, fragments), RFC 4291 (addressing: link-local,
#      modified EUI-64, solicited-node groups), RFC 5722 (overlapping fragments), RFC 6946
#      (atomic fragments), RFC 4443 section 3.4 (parameter problem).
"""IPv6 in and out for one :class:`~hetnic.host.stack.interface.NetInterface`.

Receive: version, payload length within the frame (Ethernet padding trimmed), a destination
that is ours (our addresses, the link-local one included, or a multicast group we are in: the
all-nodes group and our solicited-node groups), a source that is not multicast. Extension
headers are walked (at most 8): hop-by-hop (first only) and destination options have their
options checked (RFC 8200 4.2: unknown options are skipped or make the packet be discarded,
with a parameter problem, code 2, as their type's two high bits say), routing headers with
no segments left are skipped and one with segments left is dropped (we are not a router);
the fragment header
sends the packet to a :class:`~hetnic.host.stack.reassembly.Reassembler` (atomic fragments
pass straight through). ICMPv6 goes to :mod:`~hetnic.host.stack.icmpv6`, other protocols to
``iface.transports``; an unknown next header gets an ICMPv6 parameter problem (code 1).

Send: a 40-byte header, hop limit 64 (255 for NDP), and fragment headers when a non-TCP
payload does not fit the MTU.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hetnic.protocol import IpProto

from .icmpv6 import (PARAM_NEXT_HEADER, PARAM_OPTION, PARAMETER_PROBLEM, QUOTE_MAX,
                     REASSEMBLY_TIME_EXCEEDED, TIME_EXCEEDED)
from .ipv4 import TX_CACHE_LIMIT
from .reassembly import Reassembler

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = [
    "Ipv6Layer", "IPV6_HEADER", "ALL_NODES", "UNSPECIFIED", "link_local_from_mac",
    "solicited_node", "build_ipv6_header",
]

IPV6_HEADER = 40
DEFAULT_HOP_LIMIT = 64
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
UNSPECIFIED = bytes(16)
_SOLICITED_PREFIX = bytes.fromhex("ff0200000000000000000001ff")
_HOPOPT = int(IpProto.HOPOPT)
_ROUTING = int(IpProto.ROUTING)
_FRAGMENT = int(IpProto.FRAGMENT)
_DSTOPTS = int(IpProto.DSTOPTS)
_NONE = int(IpProto.NONE)
_ICMPV6 = int(IpProto.ICMPV6)
_TCP = int(IpProto.TCP)
_UDP = int(IpProto.UDP)
_EXTENSIONS = frozenset((_HOPOPT, _ROUTING, _FRAGMENT, _DSTOPTS))
_MAX_EXTENSIONS = 8
_KNOWN_OPTIONS = frozenset((1, 5))            # PadN, router alert (Pad1 has no length)
_HEADER = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BxHI")


def link_local_from_mac(mac: bytes) -> bytes:
    """``fe80::/64`` with the modified EUI-64 interface identifier of ``mac``."""
    return (b"\xfe\x80" + bytes(6) + bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe"
            + mac[3:6])


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast group ``ff02::1:ffXX:XXXX`` of ``addr``."""
    return _SOLICITED_PREFIX + addr[13:16]


def _bad_option(buf: bytes, at: int, end: int) -> tuple[int, int] | None:
    """The first option of a hop-by-hop / destination options header (options from ``at``
    to ``end``) that makes the packet be discarded, as ``(action, offset)``: ``-1`` for a
    malformed option list, else the two high bits of the unknown option's type (RFC 8200
    4.2: 1 discard, 2 and 3 discard and send a parameter problem). ``None``: keep it.
    Pad1, PadN and router alert are the options we know."""
    while at < end:
        kind = buf[at]
        if kind == 0:                       # Pad1
            at += 1
            continue
        if at + 2 > end or at + 2 + buf[at + 1] > end:
            return -1, at
        if kind not in _KNOWN_OPTIONS and kind >> 6:
            return kind >> 6, at
        at += 2 + buf[at + 1]
    return None


def build_ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int,
                      hop_limit: int = DEFAULT_HOP_LIMIT) -> bytes:
    """A 40-byte IPv6 header (traffic class and flow label zero)."""
    return _HEADER.pack(0x60000000, payload_len, next_header, hop_limit, src, dst)


class Ipv6Layer:
    """IPv6 receive and send for one interface."""

    def __init__(self, iface: NetInterface, *, reassembly_memory: int,
                 reassembly_timeout: float) -> None:
        self.iface = iface
        self.reassembler = Reassembler(iface.counters, header_len_limit=0,
                                       memory=reassembly_memory, timeout=reassembly_timeout)
        self.ident = 0
        self.tx_cache: dict[tuple[bytes, bytes, int], bytes] = {}
        self._counters = iface.counters
        self._out = iface.out

    # -- receive ---------------------------------------------------------------------------

    def input(self, frame: bytes, now: float) -> None:
        """Handle one IPv6 frame (Ethernet header included)."""
        iface = self.iface
        counters = iface.counters
        size = len(frame)
        if size < 14 + IPV6_HEADER:
            counters.drop("ip_truncated")
            return
        vtf, plen, nh, hop_limit, src, dst = _HEADER.unpack_from(frame, 14)
        if vtf >> 28 != 6:
            counters.drop("ip_bad_version")
            return
        end = 14 + IPV6_HEADER + plen
        if end > size:
            counters.drop("ip_bad_length")
            return
        if dst not in iface.ipv6_set and dst not in iface.groups6:
            counters.drop("ip_not_ours")
            return
        if iface.rx_group and dst[0] != 0xFF:
            # As RFC 1122 3.3.6 for IPv4: a unicast destination in a link-layer group frame
            # is discarded.
            counters.drop("ip_unicast_in_link_group")
            return
        if src[0] == 0xFF:
            counters.drop("ip_bad_source")
            return
        counters.ip6_in += 1
        buf = frame
        at = 14 + IPV6_HEADER
        nh_at = 6                   # where the current next-header value sits, from byte 14
        reassembled = False
        seen = 0
        while nh in _EXTENSIONS:
            seen += 1
            if seen > _MAX_EXTENSIONS:
                counters.drop("ip6_too_many_headers")
                return
            if at + 8 > end:
                counters.drop("ip6_truncated")
                return
            if nh == _FRAGMENT:
                next_nh, offset_flags, ident = _FRAG.unpack_from(buf, at)
                offset = offset_flags & 0xFFF8
                if offset == 0 and not offset_flags & 1:
                    nh_at, at, nh = at - 14, at + 8, next_nh    # an atomic fragment
                    continue
                # The first fragment's next header, and its packet for a time-exceeded.
                # (None inside a reassembled payload: no packet to quote).
                info = None if offset else \
                    (next_nh, None if reassembled else bytes(buf[14:min(end, 14 + QUOTE_MAX)]))
                done = self.reassembler.add((src, dst, ident), offset, bool(offset_flags & 1),
                                            buf[at + 8:end], now, info)
                if done is None:
                    return
                payload, (first_nh, _quote) = done
                buf = payload
                at, end, nh = 0, len(payload), first_nh
                reassembled = True
                continue
            if nh == _HOPOPT and seen != 1:
                counters.drop("ip6_bad_header_order")
                return
            ext_len = (buf[at + 1] + 1) << 3
            if at + ext_len > end:
                counters.drop("ip6_truncated")
                return
            if nh == _ROUTING and buf[at + 3] != 0:
                counters.drop("ip6_routing")
                return
            if nh != _ROUTING:
                bad = _bad_option(buf, at + 2, at + ext_len)
                if bad is not None:
                    action, option_at = bad
                    counters.drop("ip6_bad_option" if action < 0 else "ip6_unknown_option")
                    if action >= 2 and dst[0] != 0xFF and not reassembled:
                        iface.icmp6.error(PARAMETER_PROBLEM, PARAM_OPTION, option_at - 14, src, dst,
                                          frame[14:end], now)
                    return
            nh_at = at - 14
            nh = buf[at]
            at += ext_len
        payload = buf[at:end]
        multicast = dst[0] == 0xFF
        if nh == _ICMPV6:
            iface.icmp6.input(src, dst, payload, hop_limit, now)
            return
        if nh == _NONE:
            counters.drop("ip6_no_next_header")
            return
        handler = iface.transports.get(nh)
        if handler is None:
            counters.drop("ip_unknown_protocol")
            if not multicast and not reassembled:
                iface.icmp6.error(PARAMETER_PROBLEM, PARAM_NEXT_HEADER, nh_at, src, dst,
                                  frame[14:end], now)
            return
        if multicast and nh != _UDP:
            counters.drop("ip_multicast")
            return
        handler(src, dst, payload, now)

    # -- send ------------------------------------------------------------------------------

    def output(self, src: bytes, dst: bytes, proto: int, payload: bytes, now: float,
               hop_limit: int = DEFAULT_HOP_LIMIT) -> None:
        """Send ``payload`` as an IPv6 packet (or fragments) from ``src`` to ``dst``."""
        eth = self.tx_cache.get((src, dst, proto))
        if eth is None:
            eth, cacheable = self.iface.link_header(dst, 6, (src, dst, proto, payload), now)
            if eth is None:
                return
            if cacheable:
                if len(self.tx_cache) >= TX_CACHE_LIMIT:
                    self.tx_cache.clear()      # rebuilt on demand: a bound, not an LRU
                self.tx_cache[(src, dst, proto)] = eth
        size = len(payload)
        if size + IPV6_HEADER > self.iface.mtu:
            if proto == _TCP or size > 65535:
                self._counters.drop("ip_too_big")
                return
            self._fragment(eth, src, dst, proto, payload, hop_limit)
            return
        counters = self._counters
        counters.ip_out += 1
        counters.frames_out += 1
        self._out.append(eth + _HEADER.pack(0x60000000, size, proto, hop_limit, src, dst)
                         + payload)

    def _fragment(self, eth: bytes, src: bytes, dst: bytes, proto: int, payload: bytes,
                  hop_limit: int) -> None:
        iface = self.iface
        step = (iface.mtu - IPV6_HEADER - 8) & ~7
        ident = self.ident = (self.ident + 1) & 0xFFFFFFFF
        for offset in range(0, len(payload), step):
            chunk = payload[offset:offset + step]
            more = 1 if offset + step < len(payload) else 0
            iface.counters.ip_out += 1
            iface.emit(eth + _HEADER.pack(0x60000000, 8 + len(chunk), _FRAGMENT, hop_limit,
                                          src, dst)
                       + _FRAG.pack(proto, offset | more, ident) + chunk)

    def poll(self, now: float) -> None:
        """Time out incomplete datagrams; a time-exceeded error (code 1) for those whose
        first fragment came (RFC 8200 4.5), never about an ICMPv6 error."""
        for _next_header, quote in self.reassembler.poll(now):
            if quote is not None:
                self.iface.icmp6.error(TIME_EXCEEDED, REASSEMBLY_TIME_EXCEEDED, 0, quote[8:24],
                                       quote[24:40], quote, now)
