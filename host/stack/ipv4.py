# Ref: RFC 791 (IPv4), RFC 1122 section 3.2.1 (host requirements: checks, broadcasts, TTL),
#      RFC 815 (reassembly), RFC 6864 (the Identification field).
"""IPv4 in and out for one :class:`~hetnic.host.stack.interface.NetInterface`.

Receive: version, IHL (at least 5, within the frame), total length (within the frame; the
Ethernet padding past it is trimmed), the header checksum, and the destination (one of our
addresses; the limited or a subnet broadcast only for UDP). Options are skipped. Fragments go
to a :class:`~hetnic.host.stack.reassembly.Reassembler`. ICMP is handled here (module
:mod:`~hetnic.host.stack.icmp`); other protocols go to ``iface.transports[proto]``, and a
protocol with no handler gets an ICMP protocol unreachable. Following RFC 1122 3.2.1.7 a
received TTL is not checked (a host must not drop a datagram for a TTL below 2).

Send: a 20-byte header (TTL 64, DF set for TCP, the Identification incremented per packet),
fragments when the payload does not fit the MTU (never for TCP: it sizes segments by MSS).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hetnic.protocol import IpProto

from .checksum import checksum
from .icmp import DEST_UNREACHABLE, REASSEMBLY_TIME_EXCEEDED, TIME_EXCEEDED, UNREACH_PROTOCOL
from .reassembly import Reassembler

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = ["Ipv4Layer", "IPV4_HEADER", "build_ipv4_header", "DEFAULT_TTL"]

IPV4_HEADER = 20
#: Prebuilt (source, destination, protocol) headers kept at most.
TX_CACHE_LIMIT = 4096
DEFAULT_TTL = 64
_PROTO_TCP = int(IpProto.TCP)
_PROTO_UDP = int(IpProto.UDP)
_PROTO_ICMP = int(IpProto.ICMP)
_DF = 0x4000
_MF = 0x2000
# Received: total length, id, flags+offset, TTL, protocol, source, destination.
_IN = struct.Struct("!2xHHHBB2x4s4s")
# Sent: version/IHL, TOS, total, id, flags+offset, TTL, protocol, checksum, source, dest.
_OUT = struct.Struct("!BBHHHBBH4s4s")
_from_bytes = int.from_bytes


def build_ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int,
                      flags_offset: int = 0, ttl: int = DEFAULT_TTL) -> bytes:
    """A 20-byte IPv4 header with its checksum."""
    header = _OUT.pack(0x45, 0, IPV4_HEADER + payload_len, ident, flags_offset, ttl, proto, 0,
                       src, dst)
    return header[:10] + checksum(header).to_bytes(2, "big") + header[12:]


def _header_sum(src: bytes, dst: bytes, proto: int, flags: int) -> int:
    """The unfolded sum of the header words that do not change per packet."""
    s = _from_bytes(src, "big")
    d = _from_bytes(dst, "big")
    return (0x4500 + ((DEFAULT_TTL << 8) | proto) + flags
            + (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF))


class Ipv4Layer:
    """IPv4 receive and send for one interface (its state: the reassembler, the next
    Identification and the prebuilt per-flow header sums)."""

    def __init__(self, iface: NetInterface, *, reassembly_memory: int,
                 reassembly_timeout: float) -> None:
        self.iface = iface
        self.reassembler = Reassembler(iface.counters, header_len_limit=IPV4_HEADER,
                                       memory=reassembly_memory, timeout=reassembly_timeout)
        self.ident = 0
        # (src, dst, proto) -> (Ethernet header, unfolded fixed header sum, DF flag)
        self.tx_cache: dict[tuple[bytes, bytes, int], tuple[bytes, int, int]] = {}
        #: Bumped whenever ``tx_cache`` is emptied (what :meth:`tcp_path` handed out is stale).
        self.gen = 0
        # The interface's fixed objects, looked up once (the per-frame paths are short).
        self._counters = iface.counters
        self._out = iface.out

    # -- receive ---------------------------------------------------------------------------

    def input(self, frame: bytes, now: float) -> None:
        """Handle one IPv4 frame (Ethernet header included): every check, counted by
        reason. (:meth:`NetInterface.receive` keeps the short path of the common case in
        front of this: the one copy of it.)"""
        iface = self.iface
        counters = iface.counters
        size = len(frame)
        if size < 34:
            counters.drop("ip_truncated")
            return
        vihl = frame[14]
        if vihl >> 4 != 4:
            counters.drop("ip_bad_version")
            return
        ihl = (vihl & 15) << 2
        if ihl < IPV4_HEADER:
            counters.drop("ip_bad_ihl")
            return
        data_at = 14 + ihl
        if data_at > size:
            counters.drop("ip_bad_ihl")
            return
        total, ident, frag, _ttl, proto, src, dst = _IN.unpack_from(frame, 14)
        if total < ihl or 14 + total > size:
            counters.drop("ip_bad_length")
            return
        if checksum(frame[14:data_at]):
            counters.drop("ip_bad_checksum")
            return
        broadcast = False
        if dst not in iface.ipv4_set:
            if dst in iface.broadcast4:
                broadcast = True
            else:
                counters.drop("ip_not_ours")
                return
        if iface.rx_group and not broadcast:
            # RFC 1122 3.3.6: a link-layer broadcast/multicast frame must carry an IP
            # broadcast or multicast destination; a unicast one is silently discarded.
            counters.drop("ip_unicast_in_link_group")
            return
        first = src[0]
        if first >= 224 or first == 127 or first == 0 or src in iface.broadcast4:
            counters.drop("ip_bad_source")     # multicast, loopback, "this network", broadcast
            return
        counters.ip4_in += 1
        payload = frame[data_at:14 + total]
        if frag & 0x3FFF:
            # The first fragment's header and 8 bytes: what an ICMP error about it quotes.
            info = (proto, frame[14:data_at + 8]) if frag & 0x1FFF == 0 else None
            done = self.reassembler.add((src, dst, ident, proto), (frag & 0x1FFF) << 3,
                                        bool(frag & _MF), payload, now, info,
                                        header_len=data_at - 14)
            if done is None:
                return
            payload = done[0]
            quote = done[1][1]
        else:
            quote = None
        if proto == _PROTO_ICMP:
            if broadcast:
                counters.drop("icmp_broadcast")    # no smurf amplification
                return
            iface.icmp4.input(src, dst, payload, now)
            return
        handler = iface.transports.get(proto)
        if handler is None:
            if broadcast:
                counters.drop("ip_broadcast")
                return
            counters.drop("ip_unknown_protocol")
            if quote is None:
                quote = frame[14:data_at + 8]
            iface.icmp4.error(DEST_UNREACHABLE, UNREACH_PROTOCOL, src, dst, quote, now)
            return
        if broadcast and proto != _PROTO_UDP:
            counters.drop("ip_broadcast")
            return
        handler(src, dst, payload, now)

    # -- send ------------------------------------------------------------------------------

    def output(self, src: bytes, dst: bytes, proto: int, payload: bytes, now: float) -> None:
        """Send ``payload`` as one IPv4 packet (or fragments) from ``src`` to ``dst``."""
        entry = self.tx_cache.get((src, dst, proto))
        if entry is None:
            entry = self._prepare(src, dst, proto, payload, now)
            if entry is None:
                return
        eth, fixed, flags = entry
        size = len(payload)
        if size + IPV4_HEADER > self.iface.mtu:
            if flags:
                self._counters.drop("ip_too_big")
                return
            self._fragment(eth, src, dst, proto, payload)
            return
        total = IPV4_HEADER + size
        ident = self.ident = (self.ident + 1) & 0xFFFF
        s = fixed + total + ident
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        counters = self._counters
        counters.ip_out += 1
        counters.frames_out += 1
        self._out.append(eth + _OUT.pack(0x45, 0, total, ident, flags, DEFAULT_TTL, proto,
                                         ~s & 0xFFFF, src, dst) + payload)

    def forget(self) -> None:
        """Drop every prebuilt header (a neighbour changed, or the cache is full)."""
        self.tx_cache.clear()
        self.gen += 1

    def tcp_path(self, src: bytes, dst: bytes) -> tuple[bytes, int] | None:
        """For TCP's short send path: the Ethernet header towards ``dst`` and the unfolded
        sum of the IPv4 header words fixed for ``(src, dst, TCP)`` (TTL, protocol, DF,
        addresses), or None while the neighbour is not resolved. Valid while :attr:`gen`
        stays as it was. The caller builds the whole frame as :meth:`output` would (TTL
        :data:`DEFAULT_TTL`, DF set): total length and Identification (``ident``
        incremented per packet) added to the sum, folded and complemented; it counts
        ``ip_out`` and ``frames_out`` and appends the frame to ``iface.out``."""
        entry = self.tx_cache.get((src, dst, _PROTO_TCP))
        if entry is None:
            return None
        return entry[0], entry[1]

    def _prepare(self, src: bytes, dst: bytes, proto: int, payload: bytes,
                 now: float) -> tuple[bytes, int, int] | None:
        """The slow path: find the next hop's MAC (queueing the packet while it resolves)."""
        iface = self.iface
        eth, cacheable = iface.link_header(dst, 4, (src, dst, proto, payload), now)
        if eth is None:
            return None
        flags = _DF if proto == _PROTO_TCP else 0
        entry = (eth, _header_sum(src, dst, proto, flags), flags)
        if cacheable:
            if len(self.tx_cache) >= TX_CACHE_LIMIT:
                self.forget()                  # rebuilt on demand: a bound, not an LRU
            self.tx_cache[(src, dst, proto)] = entry
        return entry

    def _fragment(self, eth: bytes, src: bytes, dst: bytes, proto: int, payload: bytes) -> None:
        iface = self.iface
        if len(payload) + IPV4_HEADER > 65535:
            iface.counters.drop("ip_too_big")
            return
        step = (iface.mtu - IPV4_HEADER) & ~7
        ident = self.ident = (self.ident + 1) & 0xFFFF
        for offset in range(0, len(payload), step):
            chunk = payload[offset:offset + step]
            more = _MF if offset + step < len(payload) else 0
            iface.counters.ip_out += 1
            iface.emit(eth + build_ipv4_header(src, dst, proto, len(chunk), ident,
                                               more | (offset >> 3)) + chunk)

    def poll(self, now: float) -> None:
        """Time out incomplete datagrams (RFC 792 time-exceeded, code 1, for those whose
        first fragment came)."""
        for _proto, quote in self.reassembler.poll(now):
            src, dst = quote[12:16], quote[16:20]
            self.iface.icmp4.error(TIME_EXCEEDED, REASSEMBLY_TIME_EXCEEDED, src, dst, quote, now)
