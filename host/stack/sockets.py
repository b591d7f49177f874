"""Non-blocking sockets of the user-mode stack: TCP connections, TCP listeners, UDP.

Nothing here blocks or waits: ``recv`` returns ``None`` when no data is there yet, ``accept``
returns ``None`` when no connection is, ``connect`` returns at once (``connected`` becomes true,
or ``error`` is set, as segments arrive). ``on_ready``, when set, is called after any change of
state or readiness (data arrived, send space freed, the handshake completed, the peer closed or
reset), from inside ``Stack.receive``/``Stack.poll``; the callback may call the socket's
methods. Hosts are strings, :mod:`ipaddress` objects or raw bytes; addresses come back as
``(host string, port)``.

Misuse raises a :class:`~hetnic.host.stack.errors.StackError` with one line; the outcome of a
failed connection (``error`` ``"refused"``, ``"reset"``, ``"timeout"`` or ``"unreachable"``)
raises :class:`ConnectionRefused`, :class:`ConnectionReset`, :class:`ConnectionTimeout` or
:class:`Unreachable` from the next ``send``/``recv``/``shutdown``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from .address import addr_text, to_addr, to_endpoint, to_local, to_port
from .errors import (CONNECTION_ERRORS, BadArgument, ConnectionClosed, NotConnected,
                     Unreachable)

__all__ = ["TcpSocket", "TcpListener", "UdpSocket"]

#: States in which the handshake is complete and the connection not yet gone.
_SYNCHRONIZED = frozenset(("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING",
                           "LAST-ACK", "TIME-WAIT"))
#: States in which the application may still queue data.
_CAN_SEND = frozenset(("SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT"))
_BYTES = (bytes, bytearray, memoryview)


class TcpListener:
    """A listening TCP port: connections that completed their handshake wait in its accept
    queue until :meth:`accept` takes them.

    Members
    -------
    addr : bytes | None
        The local address listened on (None: every address; ``0.0.0.0``: every IPv4 one).
    port : int
    backlog : int
        Accept queue plus half-open connections; a SYN past it is dropped (or answered with a
        SYN cookie if the instance has them).
    queue : collections.deque[TcpSocket]
        Accepted connections not yet taken.
    half_open : int
        Connections in SYN-RECEIVED.
    on_ready : Callable[[], None] | None
        Called when a connection joins the accept queue.
    """

    def __init__(self, layer, addr: bytes | None, port: int, backlog: int):
        self._layer = layer
        self.addr = addr
        self.port = port
        self.backlog = backlog
        self.queue: deque[TcpSocket] = deque()
        self.half_open = 0
        self.on_ready: Callable[[], None] | None = None
        self.closed = False

    def accept(self) -> TcpSocket | None:
        """The oldest connection that completed its handshake, or None."""
        if self.closed:
            raise ConnectionClosed(f"accept on a closed listener (port {self.port})")
        return self.queue.popleft() if self.queue else None

    @property
    def readable(self) -> bool:
        """True if :meth:`accept` would return a connection."""
        return bool(self.queue)

    def getsockname(self) -> tuple[str, int]:
        return addr_text(self.addr), self.port

    def close(self) -> None:
        """Stop listening: the port is free again; half-open and not-accepted connections are
        reset. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._layer.remove_listener(self)
        self._layer.unbind(self.addr, self.port)

    def __repr__(self) -> str:
        return (f"TcpListener({addr_text(self.addr)} port {self.port}, "
                f"{len(self.queue)} queued, {self.half_open} half-open)")


class TcpSocket:
    """A non-blocking TCP socket: unbound, bound, listening or connected.

    Members
    -------
    on_ready : Callable[[], None] | None
        Called after any change of state or readiness.
    """

    def __init__(self, layer):
        self._layer = layer
        self._conn = None
        self._listener: TcpListener | None = None
        self._bound: tuple[bytes | None, int] | None = None
        self._local: tuple[bytes, int] | None = None
        self._peer: tuple[bytes, int] | None = None
        self._closed = False
        self._shut = False
        self.on_ready: Callable[[], None] | None = None

    @classmethod
    def _accepted(cls, layer, conn, key: tuple) -> TcpSocket:
        sock = cls(layer)
        sock._conn = conn
        sock._local = (key[0], key[1])
        sock._peer = (key[2], key[3])
        return sock

    # ---------------------------------------------------------------------- setup

    def bind(self, address: tuple) -> None:
        """Reserve a local ``(host, port)``: host ``""``/``"::"`` for every address,
        ``"0.0.0.0"`` for every IPv4 one; port 0 for an ephemeral port.

        Raises :class:`AddressInUse` if the port is taken, :class:`BadArgument` if the socket
        is already bound or the host is not one of the instance's addresses."""
        host, port = to_endpoint(address, "bind address")
        port = to_port(port, "bind port")
        self._check_open("bind")
        if self._bound is not None or self._conn is not None or self._listener is not None:
            raise BadArgument(f"bind: the socket is already bound ({self._name()})")
        addr = to_local(host, self._layer.iface.is_local, "bind")
        port = self._layer.bind(addr, port or None)
        self._bound = (addr, port)

    def listen(self, backlog: int | None = None) -> None:
        """Listen on the bound port (an ephemeral one on every address if unbound);
        ``backlog`` None takes the instance's."""
        self._check_open("listen")
        if backlog is None:
            backlog = self._layer.config.backlog
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise BadArgument(f"listen: backlog must be a positive integer, not {backlog!r}")
        if self._conn is not None:
            raise BadArgument(f"listen on a connected socket ({self._name()})")
        if self._listener is not None:
            self._listener.backlog = backlog
            return
        if self._bound is None:
            self.bind(("", 0))
        addr, port = self._bound
        self._bound = None
        self._listener = TcpListener(self._layer, addr, port, backlog)
        self._listener.on_ready = self._ready
        self._layer.add_listener(self._listener)

    def accept(self) -> TcpSocket | None:
        """A connection from the accept queue, or None (a listening socket only)."""
        self._check_open("accept")
        if self._listener is None:
            raise BadArgument("accept on a socket that is not listening")
        return self._listener.accept()

    def connect(self, address: tuple, now: float | None = None) -> None:
        """Start connecting to ``(host, port)``; returns at once.

        ``now`` is the current time on the stack's clock (None: the last time the stack saw;
        before it saw any, the SYN waits for the next poll, see
        :meth:`TcpLayer.open <hetnic.host.stack.tcp_layer.TcpLayer.open>`).

        Raises :class:`Unreachable` (no route), :class:`AddressInUse` (no ephemeral port, or
        the 4-tuple taken), :class:`ResourceLimit` (instance limits), :class:`BadArgument`."""
        host, port = to_endpoint(address, "connect address")
        remote = to_addr(host, "connect host")
        port = to_port(port, "connect port", zero=False)
        self._check_open("connect")
        if self._conn is not None or self._listener is not None:
            raise BadArgument(f"connect on a socket that is already in use ({self._name()})")
        layer = self._layer
        source = layer.iface.source_for(remote)
        if source is None or len(source) != len(remote):
            raise Unreachable(f"connect: no route to {addr_text(remote)} "
                              f"(no interface on its network and no gateway)")
        reserved = self._bound
        if reserved is not None and reserved[0] not in (None, bytes(4)):
            if len(reserved[0]) != len(remote):
                raise BadArgument(f"connect: bound to {addr_text(reserved[0])}, cannot reach "
                                  f"{addr_text(remote)}")
            source = reserved[0]
        if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float))):
            raise BadArgument(f"connect: now must be a number of seconds, not {now!r}")
        conn, lport = layer.open(source, remote, port, reserved,
                                 None if now is None else float(now))
        self._bound = None
        self._conn = conn
        self._local = (source, lport)
        self._peer = (remote, port)
        layer.attach(conn, self)

    # ---------------------------------------------------------------------- data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue ``data``; returns the bytes accepted (0 if the send buffer is full)."""
        if not isinstance(data, _BYTES):
            raise BadArgument(f"send: data must be bytes-like, not {type(data).__name__}")
        conn = self._io("send")
        if self._shut:
            raise ConnectionClosed(f"send after shutdown ({self._name()})")
        if conn.state not in _CAN_SEND:
            raise ConnectionClosed(f"send on a closed connection ({self._name()}, {conn.state})")
        return conn.send(data)

    def recv(self, n: int = 65536) -> bytes | None:
        """Up to ``n`` bytes received in order; ``b""`` at end of stream; None if nothing yet."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadArgument(f"recv: n must be a positive integer, not {n!r}")
        conn = self._io("recv")
        data = conn.recv(n)
        if data:
            return data
        if conn.eof or conn.state == "CLOSED":
            return b""
        return None

    def shutdown(self) -> None:
        """Close the write side (a FIN after the queued data); reading goes on."""
        conn = self._io("shutdown")
        if not self._shut:
            self._shut = True
            conn.shutdown()

    def close(self) -> None:
        """Close the socket: a connection ends gracefully (FIN after queued data), a listener
        stops, a reserved port is given back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        elif self._conn is not None:
            if self._conn.state != "CLOSED":
                self._conn.close()
        elif self._bound is not None:
            self._layer.unbind(*self._bound)
            self._bound = None

    def abort(self) -> None:
        """Reset the connection (an RST, queued data discarded) and close the socket."""
        if self._conn is not None and self._conn.state != "CLOSED":
            self._conn.abort()
        self.close()

    # ---------------------------------------------------------------------- state

    @property
    def readable(self) -> bool:
        """True if ``recv`` (or ``accept``) would not return None: data, end of stream, an
        error, or a connection to accept."""
        if self._listener is not None:
            return bool(self._listener.queue)
        conn = self._conn
        if conn is None:
            return False
        return conn.readable > 0 or conn.eof or conn.error is not None or conn.state == "CLOSED"

    @property
    def writable(self) -> bool:
        """True if ``send`` would accept bytes now (or raise the connection's error)."""
        conn = self._conn
        if conn is None or self._closed:
            return False
        if conn.error is not None:
            return True
        return (not self._shut and conn.state in ("ESTABLISHED", "CLOSE-WAIT")
                and conn.writable > 0)

    @property
    def connected(self) -> bool:
        """True once the handshake completed, until the connection is CLOSED."""
        conn = self._conn
        return conn is not None and conn.error is None and conn.state in _SYNCHRONIZED

    @property
    def closed(self) -> bool:
        """True after :meth:`close`/:meth:`abort`, or once the connection is CLOSED."""
        return self._closed or (self._conn is not None and self._conn.state == "CLOSED")

    @property
    def error(self) -> str | None:
        """``"refused"``, ``"reset"``, ``"timeout"``, ``"unreachable"`` or None."""
        return None if self._conn is None else self._conn.error

    @property
    def state(self) -> str:
        """The RFC 9293 state name (``"LISTEN"`` for a listener, ``"CLOSED"`` before use)."""
        if self._conn is not None:
            return self._conn.state
        if self._listener is not None and not self._listener.closed:
            return "LISTEN"
        return "CLOSED"

    def getsockname(self) -> tuple[str, int]:
        if self._local is not None:
            return addr_text(self._local[0]), self._local[1]
        if self._listener is not None:
            return self._listener.getsockname()
        if self._bound is not None:
            return addr_text(self._bound[0]), self._bound[1]
        raise NotConnected("getsockname: the socket is not bound")

    def getpeername(self) -> tuple[str, int]:
        if self._peer is None:
            raise NotConnected("getpeername: the socket is not connected")
        return addr_text(self._peer[0]), self._peer[1]

    def info(self) -> dict:
        """The connection's :meth:`TcpConnection.info` (empty without a connection)."""
        return {} if self._conn is None else dict(self._conn.info())

    # ---------------------------------------------------------------------- internals

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ConnectionClosed(f"{what} on a closed socket")

    def _io(self, what: str):
        """The connection for ``what``, or the error that forbids it."""
        if self._closed:
            raise ConnectionClosed(f"{what} on a closed socket ({self._name()})")
        conn = self._conn
        if conn is None:
            raise NotConnected(f"{what} on a socket that is not connected ({self.state})")
        error = conn.error
        if error is not None:
            raise CONNECTION_ERRORS.get(error, ConnectionClosed)(
                f"{what}: connection {error} ({self._name()})")
        return conn

    def _name(self) -> str:
        try:
            local = "%s port %d" % self.getsockname()
        except NotConnected:
            return "unbound"
        if self._peer is None:
            return local
        return "%s -> %s port %d" % ((local,) + self.getpeername())

    def __repr__(self) -> str:
        return f"TcpSocket({self._name()}, {self.state})"


class UdpSocket:
    """A non-blocking UDP socket (RFC 768).

    Datagrams received wait in a queue bounded by the instance's ``rcvbuf`` bytes (past it
    they are dropped, counted ``"udp_queue_full"``).

    Members
    -------
    on_ready : Callable[[], None] | None
        Called when a datagram joins the queue.
    icmp_error : tuple[str, tuple[str, int]] | None
        The last ICMP error about a datagram this socket sent: its kind
        (``"port_unreachable"``, ...) and the ``(host, port)`` the datagram went to.
    """

    def __init__(self, layer):
        self._layer = layer
        self.icmp_error: tuple[str, tuple[str, int]] | None = None
        self._bound: tuple[bytes | None, int] | None = None
        self.queue: deque[tuple[bytes, bytes, int]] = deque()
        self.queued_bytes = 0
        self.closed = False
        self.on_ready: Callable[[], None] | None = None

    def bind(self, address: tuple) -> None:
        """Take local ``(host, port)`` (host ``""``/``"::"``: every address; ``"0.0.0.0"``:
        every IPv4 one; port 0: an ephemeral port). :class:`AddressInUse` if taken."""
        host, port = to_endpoint(address, "bind address")
        port = to_port(port, "bind port")
        if self.closed:
            raise ConnectionClosed("bind on a closed UDP socket")
        if self._bound is not None:
            raise BadArgument(f"bind: the UDP socket is already bound (port {self._bound[1]})")
        addr = to_local(host, self._layer.iface.is_local, "bind")
        self._bound = (addr, self._layer.bind(self, addr, port or None))

    def sendto(self, data: bytes | bytearray | memoryview, address: tuple) -> int:
        """Send one datagram to ``(host, port)`` (binding an ephemeral port first if unbound);
        returns ``len(data)``. :class:`Unreachable` without a route, :class:`BadArgument` for
        data that is not bytes or does not fit one datagram."""
        if not isinstance(data, _BYTES):
            raise BadArgument(f"sendto: data must be bytes-like, not {type(data).__name__}")
        host, port = to_endpoint(address, "sendto address")
        remote = to_addr(host, "sendto host")
        port = to_port(port, "sendto port", zero=False)
        if self.closed:
            raise ConnectionClosed("sendto on a closed UDP socket")
        if self._bound is None:
            self.bind(("", 0))
        return self._layer.sendto(self._bound, bytes(data), remote, port)

    def recvfrom(self) -> tuple[bytes, tuple[str, int]] | None:
        """The oldest datagram and its source ``(host, port)``, or None."""
        if self.closed:
            raise ConnectionClosed("recvfrom on a closed UDP socket")
        if not self.queue:
            return None
        data, src, sport = self.queue.popleft()
        self.queued_bytes -= len(data)
        return data, (addr_text(src), sport)

    @property
    def readable(self) -> bool:
        return bool(self.queue)

    def getsockname(self) -> tuple[str, int]:
        if self._bound is None:
            raise NotConnected("getsockname: the UDP socket is not bound")
        return addr_text(self._bound[0]), self._bound[1]

    def close(self) -> None:
        """Give the port back and drop queued datagrams. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._bound is not None:
            self._layer.unbind(self, *self._bound)
        self.queue.clear()
        self.queued_bytes = 0

    def _icmp(self, kind: str, dst: bytes, dport: int) -> None:
        """Record an ICMP error about a datagram sent to ``dst``:``dport``."""
        self.icmp_error = (kind, (addr_text(dst), dport))
        if self.on_ready is not None:
            self.on_ready()

    def _deliver(self, data: bytes, src: bytes, sport: int, limit: int) -> bool:
        """Queue one datagram unless the queue would pass ``limit`` bytes."""
        if self.queued_bytes + len(data) > limit and self.queue:
            return False
        self.queue.append((data, src, sport))
        self.queued_bytes += len(data)
        if self.on_ready is not None:
            self.on_ready()
        return True

    def __repr__(self) -> str:
        where = "unbound" if self._bound is None else "%s port %d" % self.getsockname()
        return f"UdpSocket({where}, {len(self.queue)} queued)"
