"""The façade of one user-mode stack instance: frames and the time in, frames and socket
events out.

A :class:`Stack` owns a :class:`~hetnic.host.stack.interface.NetInterface` (Ethernet, ARP,
IPv4, IPv6, ICMP), a :class:`~hetnic.host.stack.tcp_layer.TcpLayer` and a
:class:`~hetnic.host.stack.udp.UdpLayer` registered as the interface's handlers for protocols
6 and 17, and the instance's :class:`~hetnic.host.stack.counters.StackCounters`. It is
sans-I/O: whoever runs it (a runner on a NIC's queues, a TAP bridge, a test loop wiring two
stacks) calls :meth:`Stack.receive` for each frame, :meth:`Stack.poll` to run the timers and
collect the frames to send, and :meth:`Stack.next_deadline` to know when to poll next::

    a = Stack(PROFILES["low-delay"], mac="02:00:00:00:00:01", ipv4=[("198.18.0.1", 24)])
    b = Stack(PROFILES["low-delay"], mac="02:00:00:00:00:02", ipv4=[("198.18.0.2", 24)])
    server = b.listen(7)
    client = a.connect("198.18.0.2", 7)
    # loop: for f in a.poll(now): b.receive(f, now); for f in b.poll(now): a.receive(f, now)

The socket API (:mod:`~hetnic.host.stack.sockets`) runs on the time of the last ``receive`` or
``poll`` call.
"""

from __future__ import annotations

from collections.abc import Iterable

from hetnic.protocol import IpProto

from .address import Host, parse_mac, to_addr, to_local, to_port
from .counters import StackCounters
from .errors import BadArgument, NotConnected
from .instance import InstanceConfig
from .interface import NetInterface
from .sockets import TcpListener, TcpSocket, UdpSocket
from .tcp_layer import TcpLayer
from .udp import UdpLayer

__all__ = ["Stack"]

AddressSpec = tuple[Host, int] | str
_TCP = int(IpProto.TCP)
_INF = float("inf")
_UDP = int(IpProto.UDP)


def _networks(entries: Iterable[AddressSpec], family: int, what: str) -> list[tuple[bytes, int]]:
    """``[(address, prefix length)]`` from ``(host, prefix)`` pairs or ``"a/n"`` strings."""
    out = []
    for entry in entries:
        if isinstance(entry, str) and "/" in entry:
            host, _, prefix = entry.partition("/")
            try:
                entry = (host, int(prefix))
            except ValueError:
                raise BadArgument(f"{what}: bad prefix length in {entry!r}") from None
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise BadArgument(f"{what}: each address is (host, prefix length) or 'a/n', "
                              f"not {entry!r}")
        addr = to_addr(entry[0], what)
        prefix = entry[1]
        if len(addr) != family or isinstance(prefix, bool) or not isinstance(prefix, int) \
                or not 1 <= prefix <= family * 8:
            raise BadArgument(f"{what}: need an IPv{4 if family == 4 else 6} address and a "
                              f"prefix length 1..{family * 8}, not {entry!r}")
        out.append((addr, prefix))
    return out


class Stack:
    """One stack instance: an interface, TCP and UDP, counters, sockets.

    Parameters
    ----------
    config : InstanceConfig
        The instance (limits, algorithms, buffers, ephemeral ports).
    mac : str | bytes
        The interface's MAC address.
    ipv4, ipv6 : list of (host, prefix length) or "a/n"
        Addresses on the link (an IPv6 link-local address from the MAC is added).
    gateway4, gateway6 : host or None
        Default routers.
    mtu : int
        Link MTU (the TCP MSS follows from it).
    seed : int
        Seeds the ISN and SYN-cookie secrets and the ephemeral port cursors.

    Raises
    ------
    BadArgument
        A bad MAC, address, prefix or MTU (one line).
    """

    def __init__(self, config: InstanceConfig, *, mac: str | bytes,
                 ipv4: Iterable[AddressSpec] = (("198.18.0.2", 24),),
                 ipv6: Iterable[AddressSpec] = (), gateway4: Host | None = None,
                 gateway6: Host | None = None, mtu: int = 1500, seed: int = 0):
        if not isinstance(config, InstanceConfig):
            raise BadArgument(f"config must be an InstanceConfig, not {type(config).__name__}")
        self.config = config
        self.counters = StackCounters()
        v4 = _networks(ipv4, 4, "ipv4")
        v6 = _networks(ipv6, 16, "ipv6")
        gw4 = None if gateway4 is None else to_addr(gateway4, "gateway4")
        gw6 = None if gateway6 is None else to_addr(gateway6, "gateway6")
        if (gw4 is not None and len(gw4) != 4) or (gw6 is not None and len(gw6) != 16):
            raise BadArgument(f"gateway4 must be IPv4 and gateway6 IPv6, not {gateway4!r}, "
                              f"{gateway6!r}")
        try:
            self.iface = NetInterface(parse_mac(mac), v4, v6, self.counters, mtu=mtu,
                                      gateway4=gw4, gateway6=gw6)
        except BadArgument:
            raise
        except ValueError as err:
            raise BadArgument(str(err)) from None
        self.tcp = TcpLayer(self.iface, config, self.counters, seed)
        self.udp = UdpLayer(self.iface, config, self.counters, seed)
        self.iface.transports[int(IpProto.TCP)] = self.tcp.input
        self.iface.transports[int(IpProto.UDP)] = self.udp.input
        self.iface.on_icmp_error = self._icmp_error
        #: The asyncio driver running this stack, if any (it sets itself; see open_connection).
        self.driver = None

    def _icmp_error(self, proto: int, src: bytes, dst: bytes, quoted: bytes, kind: str) -> None:
        """The interface's ICMP / ICMPv6 error about a packet we sent from ``src`` to ``dst``:
        to the transport that sent it (RFC 1122 4.2.3.9, RFC 5927 for TCP)."""
        if proto == _TCP:
            self.tcp.icmp_error(src, dst, quoted, kind)
        elif proto == _UDP:
            self.udp.icmp_error(src, dst, quoted, kind)
        else:
            self.counters.drop("icmp_error_unhandled")

    @property
    def name(self) -> str:
        """The instance's name."""
        return self.config.name

    @property
    def now(self) -> float:
        """The time of the last :meth:`receive` or :meth:`poll` (what the socket API uses)."""
        return self.tcp.now

    # ------------------------------------------------------------------ frames and time

    def _time(self, now) -> float:
        """``now`` checked: a finite number (else :class:`BadArgument`); a time before the
        latest one seen is taken as that one (the clock never goes backwards inside)."""
        if now.__class__ is not float:
            if isinstance(now, bool) or not isinstance(now, (int, float)):
                raise BadArgument(f"now must be a number of seconds, not {now!r}")
            now = float(now)
        if now - now != 0.0:                    # NaN or infinite
            raise BadArgument(f"now must be a finite number of seconds, not {now!r}")
        tcp = self.tcp
        if now < tcp.now and tcp.clock_seen:
            return tcp.now
        return now

    def receive(self, frame: bytes, now: float) -> None:
        """Take one received Ethernet II frame (no FCS) at time ``now``. Never raises for a bad
        frame: it is dropped and counted. A ``frame`` that is not bytes-like (bytes,
        bytearray, memoryview), or a ``now`` that is not a finite number, is API misuse:
        :class:`BadArgument`. A ``now`` earlier than the latest time given is clamped to it."""
        if frame.__class__ is not bytes and not isinstance(frame, (bytes, bytearray, memoryview)):
            raise BadArgument(f"receive: a frame is bytes, not {type(frame).__name__}")
        tcp = self.tcp
        if now.__class__ is not float or not tcp.now <= now < _INF:    # (NaN fails too)
            now = self._time(now)
        tcp.now = self.udp.now = now
        tcp.clock_seen = True
        self.iface.receive(frame, now)

    def poll(self, now: float) -> list[bytes]:
        """Run every timer due at ``now`` and return (and forget) the frames to send.
        ``now`` as for :meth:`receive` (finite, clamped to the latest time given)."""
        tcp = self.tcp
        if now.__class__ is not float or not tcp.now <= now < _INF:
            now = self._time(now)
        tcp.now = self.udp.now = now
        iface = self.iface
        due = iface.next_deadline()
        if due is not None and due <= now:
            iface.poll(now)
        tcp.poll(now)
        out = iface.out
        if not out:
            return []
        frames = out[:]
        out.clear()
        return frames

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` has a timer to run, or None."""
        a = self.iface.next_deadline()
        b = self.tcp.next_deadline()
        if a is None:
            return b
        return a if b is None or a < b else b

    # ---------------------------------------------------------------------- streams

    def open_connection(self, host: Host, port: int, **kwargs):
        """``reader, writer = await stack.open_connection(host, port)``: asyncio-style streams
        (the methods of ``asyncio.StreamReader``/``StreamWriter``). The stack itself is
        sans-I/O, so this needs the asyncio driver that runs it
        (:class:`hetnic.host.async_driver.AsyncStackDriver`, which registers itself here);
        keyword arguments go to its ``open_connection``. Without one: :class:`NotConnected`."""
        return self._driver("open_connection").open_connection(host, port, stack=self,
                                                                **kwargs)

    def start_server(self, client_connected_cb, port: int, host: Host | None = None,
                     **kwargs):
        """``server = await stack.start_server(cb, port)``: ``cb(reader, writer)`` for each
        connection, as :func:`asyncio.start_server`; needs the asyncio driver like
        :meth:`open_connection`."""
        return self._driver("start_server").start_server(client_connected_cb, port, host,
                                                         stack=self, **kwargs)

    def _driver(self, what: str):
        if self.driver is None:
            raise NotConnected(f"{what}: no asyncio driver runs this stack; start one with "
                               f"AsyncStackDriver(stack, link) (hetnic.host.async_driver)")
        return self.driver

    # ---------------------------------------------------------------------- sockets

    def tcp_socket(self) -> TcpSocket:
        """A new, unbound TCP socket."""
        return TcpSocket(self.tcp)

    def udp_socket(self) -> UdpSocket:
        """A new, unbound UDP socket."""
        return UdpSocket(self.udp)

    def listen(self, port: int, backlog: int | None = None,
               host: Host | None = None) -> TcpListener:
        """Listen on TCP ``port`` (on every address, IPv4 and IPv6, unless ``host``);
        ``backlog`` None takes the instance's. :class:`AddressInUse` if the port is taken."""
        port = to_port(port, "listen port")
        if backlog is None:
            backlog = self.config.backlog
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise BadArgument(f"listen: backlog must be a positive integer, not {backlog!r}")
        addr = to_local(host, self.iface.is_local, "listen")
        port = self.tcp.bind(addr, port or None)
        listener = TcpListener(self.tcp, addr, port, backlog)
        self.tcp.add_listener(listener)
        return listener

    def connect(self, host: Host, port: int, now: float | None = None) -> TcpSocket:
        """A TCP socket connecting to ``host``:``port`` (non-blocking, see
        :meth:`TcpSocket.connect`).

        ``now`` is the current time on the stack's clock. Without it the stack uses the time
        of the last :meth:`receive` / :meth:`poll`; before the first of those it has no time
        yet, and the SYN goes out with the next :meth:`poll` (so the SYN's retransmission
        timer starts from a real time, not from 0)."""
        sock = TcpSocket(self.tcp)
        sock.connect((host, port), now)
        return sock

    # ---------------------------------------------------------------------- views

    def connections(self) -> list[dict]:
        """Per-connection dump: state, addresses, cwnd, ssthresh, srtt, rto, queues,
        retransmits (:meth:`TcpConnection.info` plus ``local``, ``lport``, ``remote``,
        ``rport``)."""
        return self.tcp.connections()

    def state_counts(self) -> dict[str, int]:
        """Connections by RFC 9293 state name."""
        return self.tcp.state_counts()

    def stats(self) -> dict:
        """Counters, connections by state and the instance's name, one flat-ish dict."""
        out = self.counters.as_dict()
        out["instance"] = self.name
        out["connections"] = len(self.tcp)
        out["states"] = self.state_counts()
        return out

    def __repr__(self) -> str:
        return f"Stack({self.name!r}, {len(self.tcp)} connections)"
