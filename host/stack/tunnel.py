# Ref: RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe-13 (VXLAN-GPE), RFC 768 / RFC 8200 8.1
#      (UDP checksums), RFC 6935 / RFC 6936 (zero UDP checksums over IPv6), RFC 1191 (ICMP
#      "fragmentation needed" with the next-hop MTU), RFC 8201 / RFC 4443 3.2 (ICMPv6 "packet
#      too big"), RFC 792 / RFC 4443 3.1 / 3.3 (unreachable, time exceeded), RFC 1812 5.3.1
#      (TTL), RFC 791 (fragmentation).
"""One virtual adapter carrying several tunnels: VXLAN (IPv4 or IPv6 outer) and VXLAN-GPE.

A :class:`TunnelAdapter` wraps the outer :class:`~hetnic.host.stack.stack.Stack` of one
instance (its Ethernet port, its outer addresses, ARP/NDP towards the remotes) and takes the
UDP datagrams to the tunnel ports (4789 VXLAN, 4790 VXLAN-GPE) away from its UDP layer; every
other datagram goes to the UDP layer as before. Each tunnel (:class:`TunnelSpec`: kind, VNI,
remote, inner address) has an inner stack of its own (its address, its ARP/NDP, TCP, UDP,
ICMP) - the adapter's addresses - and belongs to a routing domain (its own unless the spec
names a shared ``domain``): inner ranges may overlap between domains, never inside one.

Receive: the outer UDP datagram is checked (length, checksum; a zero checksum is accepted
over IPv4 and refused over IPv6, RFC 6935/6936: the kernel's ``udp6zerocsumrx`` off), the
tunnel found by (port, VNI, outer source); the inner packet is delivered to the tunnel's
inner stack when it is for one of its addresses (or is ARP/NDP, broadcast or multicast),
else forwarded by the domain's routes to the tunnel whose inner prefix holds its
destination (an IPv4 header whose checksum fails is dropped, ``bad_checksum``, RFC 1812
5.2.2; TTL / hop limit decremented; ICMP time exceeded at 1; ICMP "fragmentation
needed" with the next-hop MTU, RFC 1191, for an IPv4 packet with DF that does not fit,
fragments for one without; ICMPv6 "packet too big", RFC 8201, for IPv6; destination
unreachable "no route" when no route holds it; host unreachable, counted ``no_route``, for an
address in an L3 (VXLAN-GPE) tunnel's own prefix that came through that tunnel: it is never
sent back where it came from). Every drop is counted on the tunnel (or, when
no tunnel can be named, on the adapter) by reason: ``unknown_vni``, ``unknown_remote``,
``no_route``, ``mtu``, ``truncated``, ``bad_header``, ``bad_checksum``, ``zero_checksum``,
``ttl_exceeded``, ``unsupported_next_protocol``, ``oam``.

Outer fragments: a far end may fragment the outer datagram (the kernel's VXLAN over IPv4
does without ``df set``). Fragments from a remote are reassembled before decapsulation
(:class:`~hetnic.host.stack.tunnel_reassembly.OuterReassembly`, bounded per remote and in
all, counted under ``reassembly`` in :meth:`TunnelAdapter.tunnel_stats`). A whole datagram
that is UDP goes the way of an unfragmented one (to a tunnel port decapsulated, to another
port the outer stack's UDP input, which has no socket there: ``udp_no_socket`` and an ICMP
port unreachable); ICMP goes to the outer stack (its echo answered from the shared
addresses); anything else (TCP, another protocol) is counted on the adapter as
``not_tunnel`` and dropped: its transport belongs to another instance, which this one cannot
hand it to.

Send: what the inner stacks send is encapsulated (VXLAN: the inner Ethernet frame;
VXLAN-GPE: the IP packet, next protocol IPv4 or IPv6, the inner stack's ARP/NDP answered in
the adapter: the L3 tunnel has no link layer), the outer UDP source port taken from a hash of
the inner flow in 49152-65535 (RFC 7348 section 5), the UDP checksum zero over IPv4 (RFC 7348)
and computed over IPv6, and sent from the outer stack. The inner stacks' MTU is the outer
MTU less the encapsulation, so their TCP MSS fits and nothing they send is fragmented outside.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hetnic.protocol import EtherType, IpProto
from hetnic.tunnel_format import (GPE_FLAG_O, GPE_FLAG_P, GPE_NEXT_IPV4, GPE_NEXT_IPV6,
                                  GPE_VERSION_MASK, SOURCE_PORTS, TUNNEL_HEADER, TUNNEL_KINDS,
                                  UDP_HEADER, VNI_MAX, VXLAN_FLAG_I, overhead, pack_gpe,
                                  pack_vxlan)

from .checksum import checksum, pseudo_sum
from .errors import BadArgument
from .ethernet import eth_header
from .stack import Stack
from .tunnel_reassembly import FragmentLimits, OuterReassembly, is_fragment

__all__ = ["TunnelSpec", "TunnelError", "TunnelAdapter", "Tunnel", "TunnelCounters",
           "parse_tunnel", "GPE_PEER_MAC", "FragmentLimits"]

_UDP = int(IpProto.UDP)
_ICMP = int(IpProto.ICMP)
_ICMPV6 = int(IpProto.ICMPV6)
_IPV6_FRAGMENT = int(IpProto.FRAGMENT)
_ETH_IPV4 = int(EtherType.IPV4)
_ETH_IPV6 = int(EtherType.IPV6)
_ETH_ARP = int(EtherType.ARP)
_UDP_HEAD = struct.Struct("!HHHH")
_SPORT_LO, _SPORT_HI = SOURCE_PORTS
_SPORTS = _SPORT_HI - _SPORT_LO + 1
#: The link-layer address the inner stack of a VXLAN-GPE tunnel (an L3 tunnel) sees for
#: every peer: the adapter resolves each neighbour to it (locally administered).
GPE_PEER_MAC = b"\x02\x00\x5e\x47\x50\x45"
_NDP_NS = 135


class TunnelError(BadArgument):
    """A bad tunnel specification or a set of tunnels that cannot go together (one line)."""


@dataclass(frozen=True)
class TunnelSpec:
    """One tunnel of the adapter.

    Members
    -------
    kind : str
        ``"vxlan"`` or ``"vxlan-gpe"``.
    vni : int
        The 24-bit VXLAN network identifier.
    remote : str
        The far end's outer address (IPv4 or IPv6: the outer header's version).
    addr : str
        The adapter's inner address and prefix on this tunnel (``"198.19.1.2/24"``).
    domain : str
        The routing domain; ``""``: a domain of its own.
    """
    kind: str
    vni: int
    remote: str
    addr: str
    domain: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TUNNEL_KINDS:
            raise TunnelError(f"tunnel kind must be one of {', '.join(TUNNEL_KINDS)}, "
                              f"not {self.kind!r}")
        if isinstance(self.vni, bool) or not isinstance(self.vni, int) \
                or not 0 <= self.vni <= VNI_MAX:
            raise TunnelError(f"vni must be an integer 0..{VNI_MAX}, not {self.vni!r}")
        try:
            remote = ipaddress.ip_address(self.remote)
        except ValueError:
            raise TunnelError(f"remote must be an IPv4 or IPv6 address, not "
                              f"{self.remote!r}") from None
        if remote.is_multicast or remote.is_unspecified:
            raise TunnelError(f"remote must be a unicast address, not {self.remote!r}")
        if not isinstance(self.addr, str) or "/" not in self.addr:
            raise TunnelError(f"addr must be ADDRESS/PREFIX, not {self.addr!r}")
        try:
            iface = ipaddress.ip_interface(self.addr)
        except ValueError:
            raise TunnelError(f"addr must be ADDRESS/PREFIX, not {self.addr!r}") from None
        if iface.ip.is_multicast or iface.ip.is_unspecified:
            raise TunnelError(f"addr must be a unicast address, not {self.addr!r}")

    @property
    def name(self) -> str:
        """``kind:vni@remote``."""
        return f"{self.kind}:{self.vni}@{self.remote}"

    @property
    def network(self):
        return ipaddress.ip_interface(self.addr).network

    @property
    def outer_version(self) -> int:
        return ipaddress.ip_address(self.remote).version


def parse_tunnel(text: str) -> TunnelSpec:
    """``"vxlan,vni=N,remote=ADDR,addr=INNER/LEN[,domain=NAME]"`` (or ``vxlan-gpe,...``)
    -> :class:`TunnelSpec`; :class:`TunnelError` (one line) for anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    kind = parts[0]
    if kind not in TUNNEL_KINDS:
        raise TunnelError(f"{text!r}: starts with the kind ({', '.join(TUNNEL_KINDS)}), "
                          f"not {kind!r}")
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq or not value:
            raise TunnelError(f"{text!r}: {part!r} is not KEY=VALUE")
        if key not in ("vni", "remote", "addr", "domain"):
            raise TunnelError(f"{text!r}: unknown key {key!r} (vni, remote, addr, domain)")
        if key in fields:
            raise TunnelError(f"{text!r}: {key} given twice")
        fields[key] = value
    missing = [k for k in ("vni", "remote", "addr") if k not in fields]
    if missing:
        raise TunnelError(f"{text!r}: {missing[0]}= is missing")
    try:
        vni = int(fields["vni"], 0)
    except ValueError:
        raise TunnelError(f"{text!r}: vni must be an integer, not {fields['vni']!r}") from None
    try:
        return TunnelSpec(kind, vni, fields["remote"], fields["addr"], fields.get("domain", ""))
    except TunnelError as err:
        raise TunnelError(f"{text!r}: {err}") from None


class TunnelCounters:
    """Per-tunnel counters: inner packets and bytes each way, drops by reason."""

    __slots__ = ("packets_in", "packets_out", "bytes_in", "bytes_out", "forwarded", "drops")

    def __init__(self) -> None:
        self.packets_in = self.packets_out = self.bytes_in = self.bytes_out = 0
        self.forwarded = 0
        self.drops: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"packets_in": self.packets_in, "packets_out": self.packets_out,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "forwarded": self.forwarded, "drops": dict(self.drops)}


class Tunnel:
    """One tunnel of a :class:`TunnelAdapter`: its spec, inner stack, MTU and counters."""

    def __init__(self, adapter: TunnelAdapter, spec: TunnelSpec, index: int, seed: int) -> None:
        self.adapter = adapter
        self.spec = spec
        self.name = spec.name
        self.domain = spec.domain or f"#{index}"
        self.port, self.ethernet = TUNNEL_KINDS[spec.kind]
        self.remote = ipaddress.ip_address(spec.remote).packed
        self.mtu = adapter.outer.iface.mtu - overhead(spec.kind, spec.outer_version)
        self.mac = bytes((0x02, 0x00, 0x5E, 0x54, index >> 8 & 0xFF, index & 0xFF))
        iface = ipaddress.ip_interface(spec.addr)
        self.network = iface.network
        v4 = [(str(iface.ip), iface.network.prefixlen)] if iface.version == 4 else []
        v6 = [(str(iface.ip), iface.network.prefixlen)] if iface.version == 6 else []
        config = adapter.outer.config
        try:
            self.stack = Stack(config.replace(name=f"{config.name}/{spec.name}"), mac=self.mac,
                               ipv4=v4, ipv6=v6, mtu=self.mtu, seed=seed)
        except BadArgument as err:
            raise TunnelError(f"tunnel {spec.name}: {err}") from None
        self.counters = TunnelCounters()
        self.header = pack_vxlan(spec.vni)
        self.gpe = {4: pack_gpe(spec.vni, GPE_NEXT_IPV4), 6: pack_gpe(spec.vni, GPE_NEXT_IPV6)}
        self.udp_len = UDP_HEADER + TUNNEL_HEADER
        self.outer_src: bytes | None = None

    def drop(self, reason: str) -> None:
        self.counters.drop(reason)

    # -- receive ---------------------------------------------------------------------------
    def input(self, inner: bytes, now: float) -> None:
        """An inner frame (VXLAN) or packet (VXLAN-GPE) that came through this tunnel."""
        if self.ethernet:
            if len(inner) < 14:
                self.drop("truncated")
                return
            ethertype = (inner[12] << 8) | inner[13]
            if ethertype in (_ETH_IPV4, _ETH_IPV6):
                total = _ip_length(inner, 14, 4 if ethertype == _ETH_IPV4 else 6)
                if total is None:
                    self.drop("truncated")
                    return
                self._count_in(len(inner))
                if inner[:6] == self.mac and not self._for_us(inner, 14):
                    self.adapter.forward(self, inner[14:14 + total], now)
                    return
            else:
                self._count_in(len(inner))
            self.stack.receive(inner, now)
            return
        version = inner[0] >> 4 if inner else 0
        total = _ip_length(inner, 0, version) if version in (4, 6) else None
        if total is None:
            self.drop("truncated" if version in (4, 6) or not inner else "bad_header")
            return
        self._count_in(len(inner))
        packet = inner if total == len(inner) else inner[:total]
        if not self._for_us(packet, 0):
            self.adapter.forward(self, packet, now)
            return
        src = packet[12:16] if version == 4 else packet[8:24]
        iface = self.stack.iface
        if iface.neighbours.mac(src) is None and iface.source_for(src) is not None:
            self._learn(src, now)
        self.stack.receive(eth_header(self.mac, GPE_PEER_MAC,
                                      _ETH_IPV4 if version == 4 else _ETH_IPV6) + packet, now)

    def _count_in(self, size: int) -> None:
        c = self.counters
        c.packets_in += 1
        c.bytes_in += size

    def _for_us(self, data: bytes, at: int) -> bool:
        """Whether the inner stack takes the IP packet at ``data[at:]``: one of its
        addresses, a broadcast or multicast (the rest is forwarded)."""
        iface = self.stack.iface
        if data[at] >> 4 == 4:
            dst = data[at + 16:at + 20]
            return dst in iface.ipv4_set or dst in iface.broadcast4 or dst[0] >= 224
        dst = data[at + 24:at + 40]
        return dst in iface.ipv6_set or dst[0] == 0xFF

    def _learn(self, ip: bytes, now: float) -> None:
        """VXLAN-GPE: ``ip`` is at the (one) peer of the L3 tunnel."""
        iface = self.stack.iface
        for packet in iface.neighbours.update(ip, GPE_PEER_MAC, now, confirmed=True):
            iface.resend(packet, now)

    # -- send ------------------------------------------------------------------------------
    def output(self, frames: list[bytes], now: float) -> None:
        """Encapsulate what the inner stack sent (VXLAN-GPE: answer its ARP/NDP here)."""
        if self.ethernet:
            for frame in frames:
                self.encap(frame, 14, self.header, now)
            return
        iface = self.stack.iface
        while frames:
            for frame in frames:
                ethertype = (frame[12] << 8) | frame[13]
                if ethertype == _ETH_ARP:
                    if len(frame) >= 42:
                        self._learn(frame[38:42], now)
                elif ethertype == _ETH_IPV4:
                    self.encap(frame[14:], 0, self.gpe[4], now)
                elif ethertype == _ETH_IPV6:
                    if frame[20] == _ICMPV6 and len(frame) >= 78 and frame[54] == _NDP_NS:
                        self._learn(frame[62:78], now)
                    elif frame[38] != 0xFF:          # no multicast over the L3 tunnel
                        self.encap(frame[14:], 0, self.gpe[6], now)
            frames = iface.out[:]                    # what the answers released
            iface.out.clear()

    def send_packet(self, packet: bytes, now: float) -> None:
        """Send a forwarded IP packet into this tunnel."""
        version = packet[0] >> 4
        if not self.ethernet:
            self.encap(packet, 0, self.gpe[version], now)
            return
        iface = self.stack.iface
        dst = packet[16:20] if version == 4 else packet[24:40]
        mac = iface.neighbours.mac(dst)
        if mac is None:
            # Resolve first; the packet waits in the neighbour queue and goes out with a
            # header rebuilt by the inner stack once the neighbour answers.
            head = ((packet[0] & 15) << 2) if version == 4 else 40
            proto = packet[9] if version == 4 else packet[6]
            iface.neighbours.resolve(dst, (packet[12:16] if version == 4 else packet[8:24],
                                           dst, proto, packet[head:]), now)
            frames = iface.out[:]
            iface.out.clear()
            self.output(frames, now)
            return
        self.encap(eth_header(mac, self.mac, _ETH_IPV4 if version == 4 else _ETH_IPV6)
                   + packet, 14, self.header, now)

    def encap(self, inner: bytes, ip_at: int, header: bytes, now: float) -> None:
        """Send ``inner`` (its IP header at ``ip_at``) with ``header`` to the remote."""
        outer = self.adapter.outer.iface
        src = self.outer_src
        if src is None:
            src = self.outer_src = outer.source_for(self.remote)
            if src is None:
                self.drop("no_route_outer")
                return
        # RFC 7348 section 5: the source port from a hash of the inner flow (addresses,
        # protocol, the first four transport bytes: the ports). A fragment (IPv4 MF or an
        # offset, IPv6 a fragment header) hashes addresses and protocol only: a fragment
        # past the first has no ports, and all of a packet's fragments take one path.
        if len(inner) > ip_at + 20 and inner[ip_at] >> 4 == 4:
            at = ip_at + ((inner[ip_at] & 15) << 2)
            flow = inner[ip_at + 9:ip_at + 10] + inner[ip_at + 12:ip_at + 20]
            if not (inner[ip_at + 6] & 0x3F or inner[ip_at + 7]):
                flow += inner[at:at + 4]
        elif len(inner) > ip_at + 6 and inner[ip_at + 6] == _IPV6_FRAGMENT:
            flow = inner[ip_at + 8:ip_at + 40]
        else:
            flow = inner[ip_at + 6:ip_at + 7] + inner[ip_at + 8:ip_at + 44]
        sport = _SPORT_LO + zlib.crc32(flow) % _SPORTS
        length = self.udp_len + len(inner)
        body = header + inner
        if len(src) == 4:
            datagram = _UDP_HEAD.pack(sport, self.port, length, 0) + body
        else:
            cs = checksum(body, pseudo_sum(src, self.remote, _UDP, length) + sport + self.port
                          + length) or 0xFFFF
            datagram = _UDP_HEAD.pack(sport, self.port, length, cs) + body
        c = self.counters
        c.packets_out += 1
        c.bytes_out += len(inner)
        outer.send_ip(src, self.remote, _UDP, datagram, now)


def _ip_length(data: bytes, at: int, version: int) -> int | None:
    """The length of the IP packet at ``data[at:]`` (its header's), or None when the data is
    shorter than that or is not IPv``version``."""
    size = len(data) - at
    if version == 4:
        if size < 20 or data[at] >> 4 != 4 or (data[at] & 15) < 5:
            return None
        total = (data[at + 2] << 8) | data[at + 3]
        if total < (data[at] & 15) << 2 or total > size:
            return None
        return total
    if size < 40 or data[at] >> 4 != 6:
        return None
    total = 40 + ((data[at + 4] << 8) | data[at + 5])
    return None if total > size else total


class TunnelAdapter:
    """The virtual adapter: an outer stack and the tunnels it carries (see the module).

    Parameters
    ----------
    outer : Stack
        The instance's stack on the NIC's port; its UDP handler is wrapped.
    tunnels : sequence of TunnelSpec
        At least one; no two with the same (kind, VNI, remote); inner prefixes disjoint
        inside a routing domain.
    seed : int
        Seeds the inner stacks (each ``seed + 1 + index``).
    fragments : FragmentLimits
        The bounds of the outer fragments' reassembly.

    Members
    -------
    reassembly : OuterReassembly
        The outer fragments from the remotes, reassembled before decapsulation.
    drops : dict of str to int
        Drops no tunnel can be named for (``unknown_remote``, ``truncated`` /
        ``bad_checksum`` from an unknown remote, ``not_tunnel``: a reassembled datagram
        that is neither UDP to a tunnel port nor ICMP).

    Raises
    ------
    TunnelError
        Duplicate tunnels, overlapping prefixes in one domain, an inner MTU below what the
        inner address family needs (one line).
    """

    def __init__(self, outer: Stack, tunnels: Sequence[TunnelSpec], *, seed: int = 0,
                 fragments: FragmentLimits = FragmentLimits()) -> None:
        if not tunnels:
            raise TunnelError("an adapter needs at least one tunnel")
        self.outer = outer
        self.counters = outer.counters
        self.config = outer.config
        #: Drops no tunnel can be named for (unknown remote, truncated outer datagram).
        self.drops: dict[str, int] = {}
        self.tunnels: list[Tunnel] = []
        self._by_key: dict[tuple[int, int, bytes], Tunnel] = {}
        self._by_remote: dict[tuple[int, bytes], Tunnel] = {}
        self.domains: dict[str, list[Tunnel]] = {}
        for index, spec in enumerate(tunnels):
            tunnel = Tunnel(self, spec, index, seed + 1 + index)
            key = (tunnel.port, spec.vni, tunnel.remote)
            if key in self._by_key:
                raise TunnelError(f"tunnel {spec.name} is given twice")
            for other in self.domains.get(tunnel.domain, ()):
                if other.network.overlaps(tunnel.network):
                    raise TunnelError(f"tunnel {spec.name}: {tunnel.network} overlaps "
                                      f"{other.network} of {other.name} in domain "
                                      f"{tunnel.domain!r}")
            self._by_key[key] = tunnel
            self._by_remote.setdefault((tunnel.port, tunnel.remote), tunnel)
            self.domains.setdefault(tunnel.domain, []).append(tunnel)
            self.tunnels.append(tunnel)
        # Longest prefix first: the first match is the route.
        for members in self.domains.values():
            members.sort(key=lambda t: -t.network.prefixlen)
        self._ports = frozenset(t.port for t in self.tunnels)
        self._udp_input = outer.iface.transports[_UDP]
        outer.iface.transports[_UDP] = self._udp
        self.reassembly = OuterReassembly(outer.iface, {t.remote for t in self.tunnels},
                                          self._reassembled, fragments)

    @property
    def name(self) -> str:
        return self.outer.name

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # -- receive ---------------------------------------------------------------------------
    def receive(self, frame: bytes, now: float) -> None:
        """One frame from the NIC: an outer fragment from a remote to the reassembly, any
        other frame to the outer stack (:meth:`Stack.receive`)."""
        if isinstance(frame, (bytes, bytearray, memoryview)) and is_fragment(frame):
            now = self.outer._time(now)
            if self.reassembly.take(frame, now):
                return
        self.outer.receive(frame, now)

    def _reassembled(self, src: bytes, dst: bytes, proto: int, payload: bytes,
                     hop_limit: int, now: float) -> None:
        """A whole outer datagram from a remote (see the module)."""
        if proto == _UDP:                   # a tunnel port here, the rest to the outer UDP
            self._udp(src, dst, payload, now)
        elif proto == _ICMP and len(src) == 4:
            self.outer.iface.icmp4.input(src, dst, payload, now)
        elif proto == _ICMPV6 and len(src) == 16:
            self.outer.iface.icmp6.input(src, dst, payload, hop_limit, now)
        else:
            self._drop("not_tunnel")

    def _udp(self, src: bytes, dst: bytes, payload: bytes, now: float) -> None:
        """The outer stack's UDP input: tunnel ports here, the rest to its UDP layer."""
        size = len(payload)
        port = ((payload[2] << 8) | payload[3]) if size >= 8 else -1
        if port not in self._ports:
            self._udp_input(src, dst, payload, now)
            return
        length = (payload[4] << 8) | payload[5]
        if length < UDP_HEADER + TUNNEL_HEADER or length > size:
            self._blame(port, src, "truncated")
            return
        if length != size:
            payload = payload[:length]
        if payload[6] or payload[7]:
            if checksum(payload, pseudo_sum(src, dst, _UDP, length)):
                self._blame(port, src, "bad_checksum")
                return
        elif len(src) == 16:                        # RFC 6935/6936: not accepted here
            self._blame(port, src, "zero_checksum")
            return
        tunnel = self._by_key.get((port, int.from_bytes(payload[12:15], "big"), src))
        if tunnel is None:
            self._blame(port, src, "unknown_vni", "unknown_remote")
            return
        flags = payload[8]
        if not flags & VXLAN_FLAG_I:
            tunnel.drop("bad_header")
            return
        if tunnel.ethernet:
            tunnel.input(payload[16:], now)
            return
        if flags & GPE_VERSION_MASK or not flags & GPE_FLAG_P:
            tunnel.drop("bad_header")
            return
        if flags & GPE_FLAG_O:
            tunnel.drop("oam")
            return
        next_protocol = payload[11]
        if next_protocol not in (GPE_NEXT_IPV4, GPE_NEXT_IPV6):
            tunnel.drop("unsupported_next_protocol")
            return
        inner = payload[16:]
        if inner and inner[0] >> 4 != (4 if next_protocol == GPE_NEXT_IPV4 else 6):
            tunnel.drop("bad_header")
            return
        tunnel.input(inner, now)

    def _blame(self, port: int, src: bytes, reason: str, unknown: str | None = None) -> None:
        """Count a drop on the first tunnel of ``port`` from remote ``src``, or on the
        adapter (as ``unknown`` when given) when there is none."""
        owner = self._by_remote.get((port, src))
        if owner is not None:
            owner.drop(reason)
        else:
            self._drop(unknown or reason)

    # -- forwarding ------------------------------------------------------------------------
    def route(self, dst, domain: str | None = None) -> Tunnel | None:
        """The tunnel whose inner prefix holds ``dst`` (longest prefix first): in ``domain``,
        or in any domain when None (the first domain in tunnel order that has one)."""
        addr = ipaddress.ip_address(dst)
        domains = [self.domains.get(domain, [])] if domain is not None else \
            list(self.domains.values())
        for members in domains:
            for tunnel in members:
                if addr.version == tunnel.network.version and addr in tunnel.network:
                    return tunnel
        return None

    def forward(self, source: Tunnel, packet: bytes, now: float) -> None:
        """Route an inner packet that came through ``source`` and is not for it."""
        version = packet[0] >> 4
        if version == 4 and checksum(packet[:(packet[0] & 15) << 2]):
            source.drop("bad_checksum")         # RFC 1812 5.2.2: verify, never repair
            return
        dst = packet[16:20] if version == 4 else packet[24:40]
        target = self.route(dst, source.domain)
        if target is None:
            source.drop("no_route")
            self._icmp(source, packet, 3 if version == 4 else 1, 0, b"\0\0\0\0", now)
            return
        if target is source and not source.ethernet:
            # An L3 tunnel's prefix beyond its own address: the far end's, not reachable by
            # sending it back there (it would bounce until the TTL ran out). Host unreachable
            # (IPv6: address unreachable).
            source.drop("no_route")
            self._icmp(source, packet, 3 if version == 4 else 1, 1 if version == 4 else 3,
                       b"\0\0\0\0", now)
            return
        if (packet[8] if version == 4 else packet[7]) <= 1:
            source.drop("ttl_exceeded")
            self._icmp(source, packet, 11 if version == 4 else 3, 0, b"\0\0\0\0", now)
            return
        received = packet
        if version == 4:
            header_len = (packet[0] & 15) << 2
            header = bytearray(packet[:header_len])
            header[8] -= 1
            header[10:12] = b"\0\0"
            header[10:12] = checksum(header).to_bytes(2, "big")
            packet = bytes(header) + packet[header_len:]
        else:
            packet = packet[:7] + bytes((packet[7] - 1,)) + packet[8:]
        if len(packet) > target.mtu:
            if version == 6 or packet[6] & 0x40:
                target.drop("mtu")
                if version == 4:
                    self._icmp(source, received, 3, 4, target.mtu.to_bytes(4, "big"), now)
                else:
                    self._icmp(source, received, 2, 0, target.mtu.to_bytes(4, "big"), now)
                return
            for piece in _fragments(packet, target.mtu):
                target.counters.forwarded += 1
                target.send_packet(piece, now)
            return
        target.counters.forwarded += 1
        target.send_packet(packet, now)

    @staticmethod
    def _icmp(source: Tunnel, packet: bytes, mtype: int, code: int, rest: bytes,
              now: float) -> None:
        """An ICMP / ICMPv6 error about ``packet`` (as received) to its sender, from
        ``source``'s inner address: the stack's own error path with its suppression rules
        (``forwarded``)."""
        iface = source.stack.iface
        if packet[0] >> 4 == 4:
            iface.icmp4.error(mtype, code, packet[12:16], packet[16:20], packet, now,
                              rest=rest, forwarded=True)
        else:
            iface.icmp6.error(mtype, code, int.from_bytes(rest, "big"), packet[8:24],
                              packet[24:40], packet, now, forwarded=True)

    # -- the Stack interface (what runners call) --------------------------------------------
    def poll(self, now: float) -> list[bytes]:
        """Run every stack's timers; the outer frames to send (the tunnels' traffic
        encapsulated)."""
        for tunnel in self.tunnels:
            frames = tunnel.stack.poll(now)
            if frames:
                tunnel.output(frames, now)
        due = self.reassembly.next_deadline()
        if due is not None and due <= now:
            self.reassembly.poll(now)
        return self.outer.poll(now)

    def next_deadline(self) -> float | None:
        times = [t.stack.next_deadline() for t in self.tunnels]
        times.append(self.outer.next_deadline())
        times.append(self.reassembly.next_deadline())
        return min((t for t in times if t is not None), default=None)

    def state_counts(self) -> dict[str, int]:
        """Connections by state, of the outer and every inner stack together."""
        out = dict(self.outer.state_counts())
        for tunnel in self.tunnels:
            for state, n in tunnel.stack.state_counts().items():
                out[state] = out.get(state, 0) + n
        return out

    def connections(self) -> list[dict]:
        out = self.outer.connections()
        for tunnel in self.tunnels:
            out += [dict(c, tunnel=tunnel.name) for c in tunnel.stack.connections()]
        return out

    def routes(self) -> list[dict]:
        """The routing table: one row per route (domain, prefix, tunnel, kind, VNI, remote,
        the tunnel's inner address and MTU), domains in order, longest prefix first."""
        return [{"domain": domain, "prefix": str(t.network), "tunnel": t.name,
                 "kind": t.spec.kind, "vni": t.spec.vni, "remote": t.spec.remote,
                 "addr": t.spec.addr, "mtu": t.mtu}
                for domain, members in self.domains.items() for t in members]

    def tunnel_stats(self) -> dict:
        """``{"tunnels": {name: counters and spec}, "drops": {...}, "routes": [...],
        "reassembly": {...}}`` (the outer fragments',
        :meth:`~hetnic.host.stack.tunnel_reassembly.OuterReassembly.stats`)."""
        tunnels = {}
        for t in self.tunnels:
            row = t.counters.as_dict()
            row.update(kind=t.spec.kind, vni=t.spec.vni, remote=t.spec.remote,
                       addr=t.spec.addr, domain=t.domain, mtu=t.mtu,
                       connections=len(t.stack.tcp))
            tunnels[t.name] = row
        return {"tunnels": tunnels, "drops": dict(self.drops), "routes": self.routes(),
                "reassembly": self.reassembly.stats()}


def _fragments(packet: bytes, mtu: int) -> Iterable[bytes]:
    """RFC 791 fragments of the IPv4 ``packet`` (DF clear) that fit ``mtu``; options are
    copied into every fragment (simplification: all of them, copied flag or not)."""
    ihl = (packet[0] & 15) << 2
    header = packet[:ihl]
    data = packet[ihl:]
    flags_offset = int.from_bytes(packet[6:8], "big")
    base = flags_offset & 0x1FFF
    more_after = flags_offset & 0x2000
    step = (mtu - ihl) & ~7
    for at in range(0, len(data), step):
        chunk = data[at:at + step]
        more = 0x2000 if at + step < len(data) or more_after else 0
        h = bytearray(header)
        h[2:4] = (ihl + len(chunk)).to_bytes(2, "big")
        h[6:8] = (more | (base + (at >> 3))).to_bytes(2, "big")
        h[10:12] = b"\0\0"
        h[10:12] = checksum(h).to_bytes(2, "big")
        yield bytes(h) + chunk
