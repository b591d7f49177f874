# Ref: RFC 792 (ICMP), RFC 1122 section 3.2.2 (when not to send ICMP errors), RFC 6633
#      (source quench deprecated), RFC 4443 section 2.4 f (rate-limiting ICMP with a token
#      bucket), RFC 1812 section 4.3.2.8.
"""ICMP for IPv4: echo, errors in and out, and the token bucket every ICMP we send passes.

Received: echo requests are answered (same identifier, sequence and data); source quench is
ignored (RFC 6633, counted); errors (destination unreachable, time exceeded, parameter
problem) are counted in
``icmp_in`` and handed up, when ``iface.on_icmp_error`` is set (else counted as the drop
``"icmp_error_unhandled"``), as ``on_icmp_error(proto, src, dst, quoted,
kind)`` where ``src``/``dst``/``proto`` are those of *our* packet the error quotes and
``quoted`` its transport header bytes (at least 8). ``kind`` is one of :data:`ERROR_KINDS`.

Sent: echo replies and errors alike take a token from :class:`TokenBucket` (drop counted
``"icmp_rate_limited"``). No error is sent about an ICMP error, a broadcast or multicast, a
packet from an address that is not a unicast host (0/8, 127/8, multicast, class E, a
broadcast), a frame that came to a broadcast or multicast MAC, or a fragment other than the
first. :meth:`Icmp4.error` serves packets for us and (``forwarded``) packets being routed
(the tunnel adapter's) alike.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hetnic.protocol import IpProto

from .checksum import checksum
from .errors import BadArgument

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = [
    "TokenBucket", "Icmp4", "ECHO_REPLY", "DEST_UNREACHABLE", "SOURCE_QUENCH", "REDIRECT",
    "ECHO_REQUEST", "TIME_EXCEEDED", "PARAMETER_PROBLEM", "UNREACH_NET", "UNREACH_HOST",
    "UNREACH_PROTOCOL", "UNREACH_PORT", "UNREACH_FRAG_NEEDED", "REASSEMBLY_TIME_EXCEEDED",
    "ERROR_KINDS",
    "report_error",
]

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
REASSEMBLY_TIME_EXCEEDED = 1     # the time-exceeded code for a datagram never completed

_ICMP = int(IpProto.ICMP)
#: The ``kind`` strings handed to ``on_icmp_error`` (ICMPv6 uses the same ones).
ERROR_KINDS = ("unreachable", "protocol_unreachable", "port_unreachable", "frag_needed",
               "time_exceeded", "parameter_problem")

_ERRORS = (DEST_UNREACHABLE, TIME_EXCEEDED, PARAMETER_PROBLEM)
_UNREACH_KIND = {UNREACH_PROTOCOL: "protocol_unreachable", UNREACH_PORT: "port_unreachable",
                 UNREACH_FRAG_NEEDED: "frag_needed"}
_ICMP_ERROR_KIND = {TIME_EXCEEDED: "time_exceeded", PARAMETER_PROBLEM: "parameter_problem"}
_HEAD = struct.Struct("!BBH")


def report_error(iface: NetInterface, ours: frozenset, proto: int, src: bytes, dst: bytes,
                 quoted: bytes, kind: str) -> None:
    """The common end of an ICMP or ICMPv6 error received: the packet it quotes (protocol
    ``proto`` from ``src`` to ``dst``; ``quoted``: its transport header on) must have come
    from one of ``ours`` (else counted ``"icmp_error_not_ours"``); it goes to
    ``iface.on_icmp_error`` (none: counted ``"icmp_error_unhandled"``)."""
    if src not in ours:
        iface.counters.drop("icmp_error_not_ours")
        return
    hook = iface.on_icmp_error
    if hook is None:
        iface.counters.drop("icmp_error_unhandled")
    else:
        hook(proto, src, dst, quoted, kind)


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

    :meth:`allow` takes a token if there is one. Time is the caller's ``now``; a clock that
    goes backwards adds nothing.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise BadArgument(f"a token bucket needs rate > 0 and burst >= 1, "
                             f"not rate={rate!r} burst={burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def allow(self, now: float) -> bool:
        """True (and one token fewer) when a message may be sent at ``now``."""
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Icmp4:
    """ICMP for IPv4 on one interface."""

    def __init__(self, iface: NetInterface) -> None:
        self.iface = iface

    def input(self, src: bytes, dst: bytes, message: memoryview | bytes, now: float) -> None:
        """Handle one ICMP message from ``src`` to our ``dst``."""
        counters = self.iface.counters
        if len(message) < 8:
            counters.drop("icmp_truncated")
            return
        if checksum(message):
            counters.drop("icmp_bad_checksum")
            return
        mtype, code, _ = _HEAD.unpack_from(message, 0)
        counters.icmp_in += 1
        if mtype == ECHO_REQUEST:
            if code != 0:
                counters.drop("icmp_bad_code")
                return
            self.send(dst, src, ECHO_REPLY, 0, bytes(message[4:]), now)
        elif mtype == SOURCE_QUENCH:
            counters.drop("icmp_source_quench_ignored")      # RFC 6633: deprecated
        elif mtype in _ERRORS:
            self._error_in(mtype, code, message)
        elif mtype == ECHO_REPLY:
            counters.drop("icmp_echo_reply_unsolicited")
        else:
            counters.drop("icmp_unsupported_type")

    def _error_in(self, mtype: int, code: int, message: memoryview | bytes) -> None:
        """An error about a packet we sent: count it and hand it to ``on_icmp_error``."""
        iface = self.iface
        counters = iface.counters
        inner = message[8:]
        if len(inner) < 28 or inner[0] >> 4 != 4:
            counters.drop("icmp_error_truncated")
            return
        ihl = (inner[0] & 15) << 2
        if ihl < 20 or len(inner) < ihl + 8:
            counters.drop("icmp_error_truncated")
            return
        if mtype == DEST_UNREACHABLE:
            kind = _UNREACH_KIND.get(code, "unreachable")
        else:
            kind = _ICMP_ERROR_KIND[mtype]
        report_error(iface, iface.ipv4_set, inner[9], bytes(inner[12:16]), bytes(inner[16:20]),
                     bytes(inner[ihl:]), kind)

    def send(self, src: bytes, dst: bytes, mtype: int, code: int, rest: bytes,
             now: float) -> bool:
        """Send an ICMP message (``rest``: the bytes after type, code and checksum), rate
        limited; returns False when the rate limit dropped it."""
        iface = self.iface
        if not iface.icmp_limiter.allow(now):
            iface.counters.drop("icmp_rate_limited")
            return False
        message = _HEAD.pack(mtype, code, 0) + rest
        cs = checksum(message)
        iface.counters.icmp_out += 1
        iface.send_ip(src, dst, _ICMP, message[:2] + cs.to_bytes(2, "big") + message[4:], now)
        return True

    def error(self, mtype: int, code: int, src: bytes, dst: bytes, quote: bytes,
              now: float, *, rest: bytes = b"\0\0\0\0", forwarded: bool = False) -> None:
        """Send an error about a packet from ``src`` to ``dst`` whose IP header and first
        bytes are ``quote`` (as received: at least the header and 8 bytes, RFC 792).
        ``rest``: the word after the checksum (RFC 1191: the next-hop MTU in its low half).

        ``forwarded``: the packet was being routed (not to us), so ``dst`` need not be ours
        and the error comes from our address towards ``src``. None is sent (RFC 1122 3.2.2,
        RFC 1812 4.3.2.7) about an ICMP error, a fragment past the first, a packet to a
        broadcast or multicast address (or MAC), or from a source that is not one host: 0/8,
        127/8, multicast, class E, a broadcast."""
        iface = self.iface
        if src[0] >= 224 or src[0] == 0 or src[0] == 127 or src in iface.broadcast4:
            return
        if forwarded:
            if dst[0] >= 224 or dst in iface.broadcast4 or not iface.ipv4:
                return
            ours = iface.source_for(src) or iface.ipv4[0][0]
        else:
            if dst not in iface.ipv4_set or iface.rx_group:
                return
            ours = dst
        ihl = 20
        if len(quote) >= 20:
            ihl = (quote[0] & 15) << 2
            frag = int.from_bytes(quote[6:8], "big")
            if frag & 0x1FFF:
                return
            if quote[9] == _ICMP and len(quote) > ihl and quote[ihl] not in (ECHO_REQUEST,
                                                                          ECHO_REPLY, 13, 14):
                return      # never an error about an ICMP error (RFC 1122 3.2.2)
        self.send(ours, src, mtype, code, rest + bytes(quote[:ihl + 8 + 40]), now)

    def unreachable(self, src: bytes, dst: bytes, proto: int, transport_head: bytes, code: int,
                    now: float) -> None:
        """Destination unreachable about a packet from ``src`` to our ``dst`` whose transport
        bytes start with ``transport_head`` (the IP header is rebuilt for the quote)."""
        from .ipv4 import build_ipv4_header     # here: ipv4 imports this module's types

        head = bytes(transport_head[:512])
        quote = build_ipv4_header(src, dst, proto, len(head), 0) + head
        self.error(DEST_UNREACHABLE, code, src, dst, quote, now)
