# Ref: IEEE 802.3 (Ethernet II), RFC 826 (ARP), RFC 791 (IPv4), RFC 792 (ICMP), RFC 8200
#      (IPv6), RFC 4861 (neighbour discovery), RFC 4443 (ICMPv6), RFC 4291 (IPv6 addressing),
#      RFC 1122 (host requirements).
"""One Ethernet interface of the stack: frames in, IP payloads up, IP payloads down, frames out.

:class:`NetInterface` owns the link and network layers: it accepts Ethernet II frames for its
MAC, broadcast and the IPv6 multicast groups it is in, runs ARP / IPv4 (with reassembly) /
ICMP / IPv6 / NDP / ICMPv6, and hands transport payloads to ``iface.transports[proto]``
(``handler(src, dst, payload, now)``). Sending, :meth:`NetInterface.send_ip` builds the IP and
Ethernet headers (neighbours resolved through one shared
:class:`~hetnic.host.stack.neighbours.NeighbourCache`) and appends the frame to
:attr:`NetInterface.out`, a list the owner drains. Nothing here does I/O or reads a clock:
``now`` comes in with every call, and :meth:`next_deadline` / :meth:`poll` run the timers
(ARP / NS retries and expiry, reassembly timeouts).

Every malformed or unwanted frame is a counted drop (``counters.drops``), never an exception.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

from hetnic.protocol import IpProto

from .arp import ArpHandler
from .counters import StackCounters
from .errors import BadArgument
from .ethernet import BROADCAST_MAC, ETH_ARP, ETH_IPV4, ETH_IPV6, eth_header, ipv6_multicast_mac
from .icmp import Icmp4, TokenBucket
from .icmpv6 import Icmp6
from .ipv4 import Ipv4Layer
from .ipv6 import ALL_NODES, Ipv6Layer, link_local_from_mac, solicited_node
from .neighbours import NeighbourCache
from .ndp import Ndp

__all__ = ["NetInterface"]

Handler = Callable[[bytes, bytes, "memoryview | bytes", float], None]
_UNREACH_V6 = {0: 0, 1: 3, 3: 4}     # ICMPv4 unreachable code -> ICMPv6 code
# IPv4 received: total length, id, flags+offset, TTL, protocol, source, destination.
_IP4_IN = struct.Struct("!2xHHHBB2x4s4s")
_ICMP = int(IpProto.ICMP)
_from_bytes = int.from_bytes


def _packed(addr: object, size: int) -> bytes:
    family = f"IPv{4 if size == 4 else 6}"
    if isinstance(addr, (bytes, bytearray)):
        if len(addr) != size:
            raise BadArgument(f"an {family} address has {size} bytes, not {len(addr)}: "
                              f"{bytes(addr)!r}")
        return bytes(addr)
    try:
        packed = ipaddress.ip_address(addr).packed      # type: ignore[arg-type]
    except ValueError:
        packed = b""
    if len(packed) != size:
        raise BadArgument(f"not an {family} address: {addr!r}")
    return packed


def _prefix_match(a: bytes, b: bytes, plen: int) -> bool:
    bits = len(a) * 8
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")) >> (bits - plen) == 0


class NetInterface:
    """The link and network layers of one stack on one Ethernet port.

    Parameters
    ----------
    mac : bytes
        Our 6-byte MAC.
    ipv4, ipv6 : list of (address, prefix length)
        Our addresses (``bytes``, or anything :func:`ipaddress.ip_address` takes). The IPv6
        link-local address ``fe80::/64`` from the MAC's modified EUI-64 is added.
    counters : StackCounters
        Where everything is counted.
    mtu : int
        Largest IP packet sent (fragments beyond it for IPv4 UDP/ICMP).
    gateway4, gateway6 : bytes, optional
        Next hop for destinations off our subnets (none: ``"no_route"`` drops).
    arp_timeout : float
        Seconds a confirmed neighbour (ARP or NDP) is used before it is re-resolved.
    arp_queue : int
        Packets waiting for one unresolved neighbour (four times as many for all).
    arp_retries, arp_retry_interval : int, float
        Solicitations sent before a neighbour is given up, and the time between them.
    neighbour_limit : int
        Entries of the neighbour cache (ARP and NDP together); see
        :class:`~hetnic.host.stack.neighbours.NeighbourCache`.
    icmp_rate : (float, float)
        Messages per second and burst of the token bucket for every ICMP/ICMPv6 we send
        (NDP excepted).
    reassembly_limit, reassembly_timeout : int, float
        Bytes of fragments held per IP version, and seconds to wait for a datagram's rest.

    Raises
    ------
    BadArgument
        A bad MAC, address, prefix length or MTU (one line; it is a ``ValueError`` too).

    Members
    -------
    out : list[bytes]
        Frames to send, appended in order; the owner takes and clears them.
    transports : dict[int, handler]
        IP protocol number -> ``handler(src, dst, payload, now)``; ``payload`` is the
        transport bytes (a ``bytes`` slice of the frame, padding trimmed, or the reassembled
        datagram). Mutate this dict in place; do not replace it. ICMP (1) and ICMPv6 (58)
        are the interface's own: handlers for them are never called.
    on_icmp_error : callable or None
        ``on_icmp_error(proto, src, dst, quoted, kind)`` for ICMP errors about our packets.
    """

    def __init__(self, mac: bytes, ipv4: list[tuple[bytes, int]], ipv6: list[tuple[bytes, int]],
                 counters: StackCounters, *, mtu: int = 1500, gateway4: bytes | None = None,
                 gateway6: bytes | None = None, arp_timeout: float = 60.0, arp_queue: int = 64,
                 arp_retries: int = 3, arp_retry_interval: float = 1.0,
                 neighbour_limit: int = 1024,
                 icmp_rate: tuple[float, float] = (1000.0, 50.0),
                 reassembly_limit: int = 256 * 1024, reassembly_timeout: float = 30.0) -> None:
        if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
            raise BadArgument(f"a MAC address is 6 bytes, not {mac!r}")
        if not 1280 <= mtu <= 65535 and ipv6 or not 576 <= mtu <= 65535:
            raise BadArgument(f"mtu must be 576..65535 (1280.. with IPv6), not {mtu}")
        self.mac = bytes(mac)
        self.counters = counters
        self.mtu = mtu
        self.ipv4 = [(_packed(a, 4), int(p)) for a, p in ipv4]
        self.ipv6 = [(link_local_from_mac(self.mac), 64)]
        self.ipv6 += [(a, p) for a, p in ((_packed(a, 16), int(p)) for a, p in ipv6)
                      if a != self.ipv6[0][0]]
        for addr, plen in self.ipv4 + self.ipv6:
            if not 0 < plen <= len(addr) * 8:
                raise BadArgument(f"bad prefix length /{plen} for {ipaddress.ip_address(addr)}")
        self.gateway4 = _packed(gateway4, 4) if gateway4 is not None else None
        self.gateway6 = _packed(gateway6, 16) if gateway6 is not None else None
        self.ipv4_set = frozenset(a for a, _ in self.ipv4)
        self.ipv6_set = frozenset(a for a, _ in self.ipv6)
        broadcasts = {b"\xff\xff\xff\xff"}
        for addr, plen in self.ipv4:
            if plen < 31:
                host_bits = (1 << (32 - plen)) - 1
                broadcasts.add((int.from_bytes(addr, "big") | host_bits).to_bytes(4, "big"))
        self.broadcast4 = frozenset(broadcasts)
        self.groups6 = frozenset({ALL_NODES} | {solicited_node(a) for a in self.ipv6_set})
        self._accept = frozenset({self.mac, BROADCAST_MAC}
                                 | {ipv6_multicast_mac(g) for g in self.groups6})
        self.out: list[bytes] = []
        #: Whether the frame being received was sent to a group MAC (broadcast, multicast);
        #: cleared by :meth:`poll`, so errors raised from timers are not affected.
        self.rx_group = 0
        self.transports: dict[int, Handler] = {}
        self.on_icmp_error: Callable[[int, bytes, bytes, bytes, str], None] | None = None
        self.icmp_limiter = TokenBucket(*icmp_rate)
        self.neighbours = NeighbourCache(
            counters, self._solicit, self._neighbour_changed, reachable_time=arp_timeout,
            retry_interval=arp_retry_interval, retries=arp_retries,
            queue_per_neighbour=arp_queue, queue_total=4 * arp_queue,
            max_entries=neighbour_limit)
        self.arp = ArpHandler(self)
        self.ip4 = Ipv4Layer(self, reassembly_memory=reassembly_limit,
                             reassembly_timeout=reassembly_timeout)
        self._ip4_input = self.ip4.input
        self._ip4_output = self.ip4.output
        self.icmp4 = Icmp4(self)
        self.ip6 = Ipv6Layer(self, reassembly_memory=reassembly_limit,
                             reassembly_timeout=reassembly_timeout)
        self.icmp6 = Icmp6(self)
        self._reasm4 = self.ip4.reassembler
        self._reasm6 = self.ip6.reassembler
        self.ndp = Ndp(self)

    # -- receive ---------------------------------------------------------------------------

    def receive(self, frame: bytes, now: float) -> None:
        """Handle one received Ethernet II frame (no FCS). Never raises for a bad frame: a
        frame that is not for us or is malformed is counted in ``counters.drops``."""
        counters = self.counters
        counters.frames_in += 1
        if type(frame) is not bytes:
            frame = bytes(frame)
        if len(frame) < 14:
            counters.drop("eth_runt")
            return
        if frame[:6] not in self._accept:
            counters.drop("eth_not_ours")
            return
        # RFC 1122 3.2.2 / RFC 4443 2.4 e: no ICMP error about a link-layer group frame.
        group = self.rx_group = frame[0] & 1
        ethertype = (frame[12] << 8) | frame[13]
        if ethertype == ETH_IPV4:
            # IPv4's short path (its only copy; Ipv4Layer.input is the full one): a 20-byte
            # header with a valid checksum, not a fragment, in a frame to our MAC, from a
            # unicast source to one of our addresses, for a transport with a handler other
            # than ICMP.
            size = len(frame)
            if size >= 34 and frame[14] == 0x45 and not group:
                total, _, frag, _, proto, src, dst = _IP4_IN.unpack_from(frame, 14)
                end = 14 + total
                # A valid header sums to 0xFFFF: its value is 0 mod 0xFFFF (never 0: 0x45).
                if (total >= 20 and end <= size and not frag & 0x3FFF
                        and dst in self.ipv4_set
                        and _from_bytes(frame[14:34], "big") % 0xFFFF == 0):
                    first = src[0]
                    handler = self.transports.get(proto)
                    if (handler is not None and 0 < first < 224 and first != 127
                            and src not in self.broadcast4 and proto != _ICMP):
                        counters.ip4_in += 1
                        handler(src, dst, frame[34:end], now)
                        return
            self._ip4_input(frame, now)
        elif ethertype == ETH_IPV6:
            self.ip6.input(frame, now)
        elif ethertype == ETH_ARP:
            self.arp.input(frame, now)
        else:
            counters.drop("eth_unknown_type")

    # -- send ------------------------------------------------------------------------------

    def send_ip(self, src: bytes, dst: bytes, proto: int, payload: bytes, now: float) -> None:
        """Send ``payload`` as an IP packet of protocol ``proto`` from our ``src`` to ``dst``
        (4 or 16 bytes). The frame lands in :attr:`out` now, or once the next hop's MAC is
        known (bounded queue; ``"arp_queue_full"`` / ``"arp_unresolved"`` drops)."""
        if len(dst) == 4:
            self._ip4_output(src, dst, proto, payload, now)
        else:
            self.ip6.output(src, dst, proto, payload, now)

    def send_unreachable(self, src: bytes, dst: bytes, proto: int, packet_head: bytes,
                         code: int, now: float) -> None:
        """Tell ``src`` that its packet to our ``dst`` could not be delivered (rate limited).

        ``packet_head`` is the offending packet's transport bytes (its UDP header first);
        the IP header of the quote is rebuilt from ``src``, ``dst`` and ``proto``. ``code``
        is the ICMPv4 destination-unreachable code (3: port unreachable); for IPv6 it maps to
        the ICMPv6 one (3 -> 4 port, 1 -> 3 address, 0 -> 0 no route). Nothing is sent when
        ``dst`` is not one of our unicast addresses (a broadcast or multicast) or the frame
        being received came to a group MAC.
        """
        if len(src) == 4:
            self.icmp4.unreachable(src, dst, proto, packet_head, code, now)
        else:
            self.icmp6.unreachable(src, dst, proto, packet_head, _UNREACH_V6.get(code, 1), now)

    def emit(self, frame: bytes) -> None:
        """Queue one finished frame for sending."""
        self.counters.frames_out += 1
        self.out.append(frame)

    def resend(self, packet: tuple[bytes, bytes, int, bytes], now: float) -> None:
        """Send a packet that waited for its neighbour to resolve."""
        self.send_ip(*packet, now)

    def link_header(self, dst: bytes, version: int, packet: tuple, now: float
                    ) -> tuple[bytes | None, bool]:
        """The Ethernet header towards ``dst`` and whether it may be cached (the neighbour is
        confirmed, or the destination is a broadcast / multicast); ``(None, False)`` when
        ``packet`` was queued for resolution or dropped."""
        if version == 4:
            ethertype = ETH_IPV4
            if dst in self.broadcast4:
                return eth_header(BROADCAST_MAC, self.mac, ethertype), True
            if 224 <= dst[0] < 240:
                mac = b"\x01\x00\x5e" + bytes([dst[1] & 0x7F]) + dst[2:4]
                return eth_header(mac, self.mac, ethertype), True
            local = self.ipv4_set
            routes = self.ipv4
            gateway = self.gateway4
        else:
            ethertype = ETH_IPV6
            if dst[0] == 0xFF:
                return eth_header(ipv6_multicast_mac(dst), self.mac, ethertype), True
            local = self.ipv6_set
            routes = self.ipv6
            gateway = self.gateway6
        if dst in local:
            self.counters.drop("ip_to_self")
            return None, False
        hop = dst if self._on_link(dst, routes) else gateway
        if hop is None:
            self.counters.drop("no_route")
            return None, False
        mac = self.neighbours.resolve(hop, packet, now)
        if mac is None:
            return None, False
        return eth_header(mac, self.mac, ethertype), self.neighbours.usable(hop)

    @staticmethod
    def _on_link(dst: bytes, routes: list[tuple[bytes, int]]) -> bool:
        if len(dst) == 16 and dst[0] == 0xFE and dst[1] & 0xC0 == 0x80:
            return True     # link-local
        return any(_prefix_match(dst, addr, plen) for addr, plen in routes)

    def _solicit(self, ip: bytes, mac: bytes | None, now: float) -> None:
        if len(ip) == 4:
            self.arp.request(ip, mac, now)
        else:
            self.ndp.solicit(ip, mac, now)

    def _neighbour_changed(self, ip: bytes) -> None:
        self.ip4.forget()
        self.ip6.tx_cache.clear()

    # -- addresses -------------------------------------------------------------------------

    def is_local(self, addr: bytes) -> bool:
        """True when ``addr`` is one of our unicast addresses (IPv4 or IPv6)."""
        return addr in self.ipv4_set or addr in self.ipv6_set

    def source_for(self, dst: bytes) -> bytes | None:
        """Our address to send from towards ``dst``, or ``None`` when there is no route."""
        if len(dst) == 4:
            routes, gateway = self.ipv4, self.gateway4
            if routes and dst in self.broadcast4:
                return routes[0][0]
        else:
            routes, gateway = self.ipv6, self.gateway6
            if dst[0] == 0xFE and dst[1] & 0xC0 == 0x80 or dst[:2] == b"\xff\x02":
                return routes[0][0]    # the link-local address for link-scope peers
            routes = routes[1:] or routes
        if dst in self.ipv4_set or dst in self.ipv6_set:
            return dst
        for addr, plen in routes:
            if _prefix_match(dst, addr, plen):
                return addr
        if gateway is not None and routes:
            for addr, plen in routes:
                if _prefix_match(gateway, addr, plen):
                    return addr
            return routes[0][0]
        return None

    # -- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` has work to do, or ``None``."""
        best = self.neighbours.next_deadline()
        when = self._reasm4.next_deadline()
        if when is not None and (best is None or when < best):
            best = when
        when = self._reasm6.next_deadline()
        if when is not None and (best is None or when < best):
            best = when
        return best

    def poll(self, now: float) -> None:
        """Run the timers due at ``now``: ARP/NS retries, neighbour expiry, reassembly
        timeouts."""
        self.rx_group = 0
        self.neighbours.poll(now)
        self.ip4.poll(now)
        self.ip6.poll(now)
