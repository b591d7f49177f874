# Ref: RFC 768 (UDP), RFC 8200 section 8.1 (IPv6 pseudo-header; a zero UDP checksum is invalid),
#      RFC 1122 section 4.1.3.1 (port unreachable), RFC 6056 (ephemeral ports).
"""The UDP layer of one stack instance.

:class:`UdpLayer` is the interface's handler for IP protocol 17: it checks the header (length
within the packet and at least 8; a bad one is dropped, counted ``"udp_bad_length"``) and the
checksum (``"udp_bad_checksum"``; zero means "none" over IPv4 and is invalid over IPv6,
``"udp_zero_checksum"``), and queues the datagram on the socket bound to its destination
address and port (an exact address first, then a wildcard). No socket: an ICMP port
unreachable (rate-limited by the interface), counted ``"udp_no_socket"``; a full queue:
``"udp_queue_full"``.
"""

from __future__ import annotations

import random
import struct

from hetnic.protocol import IpProto

from .address import V4_ANY, addr_text
from .checksum import checksum, pseudo_sum
from .counters import StackCounters
from .errors import AddressInUse, BadArgument, Unreachable
from .instance import InstanceConfig
from .sockets import UdpSocket

__all__ = ["UdpLayer", "UDP_HEADER_LEN", "MAX_DATAGRAM"]

UDP_HEADER_LEN = 8
#: The largest payload one UDP datagram carries over IPv4 (65535 - 20 - 8).
MAX_DATAGRAM = 65507
#: ICMP destination-unreachable code "port unreachable" (RFC 792; the interface maps it to
#: ICMPv6's code 4 for IPv6).
_PORT_UNREACHABLE = 3

_UDP = int(IpProto.UDP)
_HDR = struct.Struct("!HHHH")


class UdpLayer:
    """Bound UDP sockets of one instance, and the datagrams in and out.

    Parameters
    ----------
    iface
        The :class:`~hetnic.host.stack.interface.NetInterface` (``send_ip``, ``source_for``,
        ``send_unreachable``, ``is_local``).
    config : InstanceConfig
        ``rcvbuf`` bounds each socket's queue; ``ephemeral_ports`` is the range for unbound
        senders.
    counters : StackCounters
    seed : int
        Seeds the ephemeral port cursor.
    """

    def __init__(self, iface, config: InstanceConfig, counters: StackCounters, seed: int = 0):
        self.iface = iface
        self.config = config
        self.counters = counters
        self.now = 0.0
        self._socks: dict[int, list[tuple[bytes | None, UdpSocket]]] = {}
        lo, hi = config.ephemeral_ports
        self._eph_lo, self._eph_count = lo, hi - lo + 1
        self._eph_next = random.Random(f"hetnic.udp:{seed}").randrange(self._eph_count)

    # ---------------------------------------------------------------------- input

    def input(self, src: bytes, dst: bytes, payload, now: float) -> None:
        """The interface's handler for protocol 17: one datagram from ``src`` to ``dst``."""
        self.now = now
        counters = self.counters
        size = len(payload)
        if size < UDP_HEADER_LEN:
            counters.drop("udp_truncated")
            return
        sport, dport, length, csum = _HDR.unpack_from(payload)
        if length < UDP_HEADER_LEN or length > size:
            counters.drop("udp_bad_length")
            return
        datagram = payload[:length]
        if csum == 0:
            if len(src) == 16:
                counters.drop("udp_zero_checksum")
                return
        elif checksum(datagram, pseudo_sum(src, dst, _UDP, length)) != 0:
            counters.drop("udp_bad_checksum")
            return
        counters.udp_in += 1
        sock = self._find(dst, dport)
        if sock is None:
            counters.drop("udp_no_socket")
            if self.iface.is_local(dst):
                self.iface.send_unreachable(src, dst, _UDP, bytes(payload[:length]),
                                            _PORT_UNREACHABLE, now)
            return
        if not sock._deliver(bytes(datagram[UDP_HEADER_LEN:]), src, sport, self.config.rcvbuf):
            counters.drop("udp_queue_full")

    def _find(self, dst: bytes, port: int) -> UdpSocket | None:
        found = self._socks.get(port)
        if not found:
            return None
        wildcard = None
        for addr, sock in found:
            if addr == dst:
                return sock
            if addr is None or (addr == V4_ANY and len(dst) == 4):
                wildcard = sock
        return wildcard

    # ---------------------------------------------------------------------- output

    def sendto(self, bound: tuple[bytes | None, int], data: bytes, remote: bytes,
               rport: int) -> int:
        """Send ``data`` from the bound ``(addr, port)`` to ``remote``:``rport``."""
        if len(data) > MAX_DATAGRAM:
            raise BadArgument(f"sendto: {len(data)} bytes do not fit one UDP datagram "
                              f"(at most {MAX_DATAGRAM})")
        local, sport = bound
        if local is None or local == V4_ANY:
            local = self.iface.source_for(remote)
            if local is None or len(local) != len(remote):
                raise Unreachable(f"sendto: no route to {addr_text(remote)} "
                                  f"(no interface on its network and no gateway)")
        elif len(local) != len(remote):
            raise BadArgument(f"sendto: bound to {addr_text(local)}, cannot reach "
                              f"{addr_text(remote)}")
        length = UDP_HEADER_LEN + len(data)
        header = _HDR.pack(sport, rport, length, 0)
        csum = checksum(header + data, pseudo_sum(local, remote, _UDP, length)) or 0xFFFF
        self.counters.udp_out += 1
        self.iface.send_ip(local, remote, _UDP, _HDR.pack(sport, rport, length, csum) + data,
                           self.now)
        return len(data)

    # ---------------------------------------------------------------------- ports

    def bind(self, sock: UdpSocket, addr: bytes | None, port: int | None) -> int:
        """Bind ``sock`` to ``port`` on ``addr`` (None: every address; 0.0.0.0: every IPv4 one;
        ``port`` None: a free ephemeral port). Returns the port.

        Raises :class:`AddressInUse` if an overlapping binding holds the port, or no ephemeral
        port is free."""
        if port is None:
            port = self._free_ephemeral()
        else:
            for other, _ in self._socks.get(port, ()):
                if _overlaps(addr, other):
                    where = "*" if addr is None else addr_text(addr)
                    raise AddressInUse(f"UDP port {port} on {where} is in use")
        self._socks.setdefault(port, []).append((addr, sock))
        return port

    def unbind(self, sock: UdpSocket, addr: bytes | None, port: int) -> None:
        """Remove ``sock``'s binding of ``port``."""
        found = self._socks.get(port)
        if found and (addr, sock) in found:
            found.remove((addr, sock))
            if not found:
                del self._socks[port]

    def _free_ephemeral(self) -> int:
        lo, count = self._eph_lo, self._eph_count
        for i in range(count):
            port = lo + (self._eph_next + i) % count
            if port not in self._socks:
                self._eph_next = (self._eph_next + i + 1) % count
                return port
        raise AddressInUse(f"no free ephemeral UDP port in {lo}-{lo + count - 1} "
                           f"(instance {self.config.name!r})")

    def __len__(self) -> int:
        return sum(len(found) for found in self._socks.values())


def _overlaps(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None or a == b:
        return True
    return (a == V4_ANY and len(b) == 4) or (b == V4_ANY and len(a) == 4)
