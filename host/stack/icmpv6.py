# Ref: RFC 4443 (ICMPv6: echo, errors, when not to send them, rate limiting), RFC 8200
#      section 8.1 (the upper-layer checksum), RFC 4861 (the NDP messages it dispatches).
"""ICMPv6 for one :class:`~hetnic.host.stack.interface.NetInterface`.

Received messages are checked (length, checksum with the IPv6 pseudo-header) and then:
echo requests answered, errors counted and handed to ``iface.on_icmp_error`` (as for ICMPv4,
:mod:`~hetnic.host.stack.icmp`), neighbour solicitations and advertisements passed to
:class:`~hetnic.host.stack.ndp.Ndp`, router advertisements / solicitations, redirects and MLD
ignored (counted). Every message we send except NDP takes a token from the interface's rate
limiter. Errors are never sent about an ICMPv6 error, to a multicast or unspecified source,
or (except as RFC 4443 2.4 e allows) about a packet sent to a multicast group.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hetnic.protocol import IpProto

from .checksum import checksum, pseudo_sum
from .icmp import report_error

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = [
    "Icmp6", "upper_layer", "DEST_UNREACHABLE", "PACKET_TOO_BIG", "TIME_EXCEEDED",
    "PARAMETER_PROBLEM", "PARAM_NEXT_HEADER", "PARAM_OPTION", "REASSEMBLY_TIME_EXCEEDED",
    "QUOTE_MAX",
    "ECHO_REQUEST", "ECHO_REPLY", "ROUTER_SOLICITATION", "ROUTER_ADVERTISEMENT",
    "NEIGHBOR_SOLICITATION", "NEIGHBOR_ADVERTISEMENT", "REDIRECT",
]

DEST_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
PARAM_NEXT_HEADER = 1       # parameter problem codes: unrecognised Next Header ...
PARAM_OPTION = 2            # ... and unrecognised IPv6 option (RFC 4443 3.4)
REASSEMBLY_TIME_EXCEEDED = 1    # time exceeded code: fragment reassembly (RFC 4443 3.3)
ECHO_REQUEST = 128
ECHO_REPLY = 129
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
REDIRECT = 137
_MLD = frozenset((130, 131, 132, 143))
_ICMPV6 = int(IpProto.ICMPV6)
_HEAD = struct.Struct("!BBH")
_MIN_MTU = 1280
#: The most of the offending packet an ICMPv6 error quotes: the error fits the minimum
#: MTU (RFC 4443 2.4 c; 40 bytes of IPv6 header and 8 of ICMPv6 before the quote).
QUOTE_MAX = _MIN_MTU - 48
_FRAGMENT = int(IpProto.FRAGMENT)
_OPTION_HEADERS = frozenset(map(int, (IpProto.HOPOPT, IpProto.ROUTING, IpProto.DSTOPTS)))
_LOOPBACK = bytes(15) + b"\x01"
_UNREACH_KIND = {4: "port_unreachable"}
_ERROR_KIND = {PACKET_TOO_BIG: "frag_needed", TIME_EXCEEDED: "time_exceeded",
               PARAMETER_PROBLEM: "parameter_problem"}
_IGNORED = {ROUTER_SOLICITATION: "ndp_rs_ignored", ROUTER_ADVERTISEMENT: "ndp_ra_ignored",
            REDIRECT: "ndp_redirect_ignored"}


def upper_layer(packet: bytes) -> tuple[int, int] | None:
    """The upper-layer protocol of IPv6 ``packet`` (its header first) and where that
    protocol's header starts, past the extension headers (RFC 8200 4); None where it is not
    in ``packet``: a fragment other than the first, a cut quote, more than 8 extension
    headers."""
    nh, at = packet[6], 40
    for _ in range(8):
        if nh == _FRAGMENT:
            if at + 8 > len(packet) or int.from_bytes(packet[at + 2:at + 4], "big") & 0xFFF8:
                return None
            nh, at = packet[at], at + 8
        elif nh in _OPTION_HEADERS:
            if at + 2 > len(packet):
                return None
            nh, at = packet[at], at + ((packet[at + 1] + 1) << 3)
        else:
            return nh, at
    return None


class Icmp6:
    """ICMPv6 on one interface."""

    def __init__(self, iface: NetInterface) -> None:
        self.iface = iface

    def input(self, src: bytes, dst: bytes, message: memoryview | bytes, hop_limit: int,
              now: float) -> None:
        """Handle one ICMPv6 message (the IPv6 payload) from ``src`` to ``dst``."""
        iface = self.iface
        counters = iface.counters
        size = len(message)
        if size < 4:
            counters.drop("icmp_truncated")
            return
        if checksum(message, pseudo_sum(src, dst, _ICMPV6, size)):
            counters.drop("icmp_bad_checksum")
            return
        mtype = message[0]
        counters.icmp_in += 1
        if mtype == NEIGHBOR_SOLICITATION:
            iface.ndp.solicitation_in(src, dst, message, hop_limit, now)
        elif mtype == NEIGHBOR_ADVERTISEMENT:
            iface.ndp.advertisement_in(src, dst, message, hop_limit, now)
        elif mtype == ECHO_REQUEST:
            if size < 8 or message[1] != 0:
                counters.drop("icmp_truncated" if size < 8 else "icmp_bad_code")
                return
            if src == bytes(16):
                counters.drop("ip_bad_source")
                return
            reply_from = dst if dst[0] != 0xFF else iface.source_for(src)
            if reply_from is not None:
                self.send(reply_from, src, ECHO_REPLY, 0, bytes(message[4:]), now)
        elif mtype < 128:
            self._error_in(mtype, message)
        elif mtype in _IGNORED:
            counters.drop(_IGNORED[mtype])
        elif mtype in _MLD:
            counters.drop("icmp_mld_ignored")
        elif mtype == ECHO_REPLY:
            counters.drop("icmp_echo_reply_unsolicited")
        else:
            counters.drop("icmp_unsupported_type")

    def _error_in(self, mtype: int, message: memoryview | bytes) -> None:
        iface = self.iface
        counters = iface.counters
        inner = message[8:]
        if len(inner) < 48 or inner[0] >> 4 != 6:
            counters.drop("icmp_error_truncated")
            return
        if mtype == DEST_UNREACHABLE:
            kind = _UNREACH_KIND.get(message[1], "unreachable")
        else:
            kind = _ERROR_KIND.get(mtype, "unreachable")
        # The quoted transport header follows the IPv6 header when there are no extension
        # headers (the only kind of packet we send).
        report_error(iface, iface.ipv6_set, inner[6], bytes(inner[8:24]), bytes(inner[24:40]),
                     bytes(inner[40:]), kind)

    def send(self, src: bytes, dst: bytes, mtype: int, code: int, rest: bytes, now: float,
             *, hop_limit: int = 64, limited: bool = True) -> bool:
        """Send an ICMPv6 message (``rest``: the bytes after type, code and checksum);
        returns False when the rate limit dropped it (NDP passes ``limited=False``)."""
        iface = self.iface
        if limited and not iface.icmp_limiter.allow(now):
            iface.counters.drop("icmp_rate_limited")
            return False
        message = _HEAD.pack(mtype, code, 0) + rest
        cs = checksum(message, pseudo_sum(src, dst, _ICMPV6, len(message)))
        iface.counters.icmp_out += 1
        iface.ip6.output(src, dst, _ICMPV6, message[:2] + cs.to_bytes(2, "big") + message[4:],
                         now, hop_limit)
        return True

    def error(self, mtype: int, code: int, param: int, src: bytes, dst: bytes, packet: bytes,
              now: float, *, forwarded: bool = False) -> None:
        """Send an error about ``packet`` (its IPv6 header first, as received) from ``src``
        to ``dst``; ``param``: the word after the checksum (the MTU of packet too big).

        ``forwarded``: the packet was being routed (not to us): ``dst`` need not be ours and
        the error comes from our address towards ``src`` (the global one when we have no
        better). None is sent about an ICMPv6 error, to a multicast, unspecified or loopback
        source, or about a packet to a multicast group (but packet too big, RFC 4443 2.4 e)."""
        iface = self.iface
        if src[0] == 0xFF or src == bytes(16) or src == _LOOPBACK:
            return
        if forwarded:
            if dst[0] == 0xFF and mtype != PACKET_TOO_BIG:
                return
            ours = iface.source_for(src)
            if ours is None:
                if len(iface.ipv6) < 2:
                    return
                ours = iface.ipv6[-1][0]
        else:
            if dst not in iface.ipv6_set or iface.rx_group:
                return
            ours = dst
        upper = upper_layer(packet)
        if upper is not None and upper[0] == _ICMPV6 and upper[1] < len(packet) \
                and packet[upper[1]] < 128:
            return      # never an error about an error (RFC 4443 2.4 e)
        quote = bytes(packet[:QUOTE_MAX])
        self.send(ours, src, mtype, code, param.to_bytes(4, "big") + quote, now)

    def unreachable(self, src: bytes, dst: bytes, proto: int, transport_head: bytes, code: int,
                    now: float) -> None:
        """Destination unreachable (``code`` 4: port) about a packet from ``src`` to our
        ``dst`` whose transport bytes begin with ``transport_head``."""
        from .ipv6 import build_ipv6_header     # here: ipv6 imports this module's types

        head = bytes(transport_head[:_MIN_MTU - 88])
        self.error(DEST_UNREACHABLE, code, 0, src, dst,
                   build_ipv6_header(src, dst, proto, len(head)) + head, now)
