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

import struct

from hetnic.protocol import IpProto

from .address import V4_ANY, addr_text
from .checksum import checksum, pseudo_sum
from .counters import StackCounters
from .errors import BadArgument, Unreachable
from .instance import InstanceConfig
from .ports import PortTable
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
        self.ports = PortTable("UDP", config.ephemeral_ports, config.name, seed)

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
        sock = self.ports.find(dst, dport)
        if sock is None:
            counters.drop("udp_no_socket")
            if self.iface.is_local(dst):
                self.iface.send_unreachable(src, dst, _UDP, bytes(payload[:length]),
                                            _PORT_UNREACHABLE, now)
            return
        if not sock._deliver(bytes(datagram[UDP_HEADER_LEN:]), src, sport, self.config.rcvbuf):
            counters.drop("udp_queue_full")

    def icmp_error(self, src: bytes, dst: bytes, quoted: bytes, kind: str) -> None:
        """An ICMP error about a datagram we sent from ``src`` to ``dst`` (``quoted``: its UDP
        header first): recorded on the socket bound to its source port
        (:attr:`UdpSocket.icmp_error`), else counted ``"icmp_udp_no_socket"``."""
        if len(quoted) < UDP_HEADER_LEN:
            self.counters.drop("icmp_error_truncated")
            return
        sport, dport, _, _ = _HDR.unpack_from(quoted)
        sock = self.ports.find(src, sport)
        if sock is None:
            self.counters.drop("icmp_udp_no_socket")
            return
        sock._icmp(kind, dst, dport)

    # ---------------------------------------------------------------------- output

    def sendto(self, bound: tuple[bytes | None, int], data: bytes, remote: bytes,
               rport: int) -> int:
        """Send ``data`` from the bound ``(addr, port)`` to ``remote``:``rport``."""
        if len(data) > MAX_DATAGRAM:
            raise BadArgument(f"sendto: {len(data)} bytes do not fit one UDP datagram "
                              f"(at most {MAX_DATAGRAM})")
        local, sport = bound
        if local == V4_ANY and len(remote) != 4:
            # Bound to every IPv4 address only: replies to an IPv6 source would find no
            # socket (and get port unreachable).
            raise BadArgument(f"sendto: bound to 0.0.0.0 (IPv4 only), cannot reach "
                              f"{addr_text(remote)}")
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
        :class:`AddressInUse` if an overlapping binding holds the port, or no ephemeral port
        is free."""
        return self.ports.bind(addr, port, sock)

    def unbind(self, sock: UdpSocket, addr: bytes | None, port: int) -> None:
        """Remove ``sock``'s binding of ``port``."""
        self.ports.unbind(addr, port, sock)
