# Ref: RFC 862 (Echo Protocol).
"""The echo service of RFC 862 on a stack instance: TCP (:class:`EchoServer`) and UDP
(:class:`UdpEchoServer`), port 7 by default.

TCP: every byte received is sent back; at most :data:`ECHO_BUFFER` bytes wait for the
send buffer, after which the server stops reading (the peer's window closes: backpressure,
not memory). When the peer closes its side and everything has been echoed, the server
closes. UDP: every datagram goes back to its sender, as it is.
"""

from __future__ import annotations

from ...errors import HetnicError
from .tcp_server import Handler, TcpServerApp

__all__ = ["EchoServer", "UdpEchoServer", "ECHO_BUFFER"]

#: Bytes the TCP echo holds for the send buffer before it stops reading.
ECHO_BUFFER = 256 * 1024


class _EchoHandler(Handler):
    def __init__(self, app, sock):
        super().__init__(app, sock)
        self.pending = bytearray()
        self.eof = False

    def service(self) -> None:
        self.send_some(self.pending)
        while not self.eof and len(self.pending) < ECHO_BUFFER:
            data = self.sock.recv(65536)
            if data is None:
                break
            if not data:
                self.eof = True
                break
            self.received(len(data))
            self.pending += data
            self.send_some(self.pending)
        if self.eof and not self.pending:
            self.finish()


class EchoServer(TcpServerApp):
    """TCP echo on ``port`` of ``stack`` (see the module documentation)."""

    def __init__(self, stack, port: int = 7, *, backlog: int | None = None):
        super().__init__(stack, port, _EchoHandler, name="echo", backlog=backlog)


class UdpEchoServer:
    """UDP echo on ``port`` of ``stack``: each datagram is sent back to its source.

    Members
    -------
    datagrams, bytes, errors : int
        Datagrams and payload bytes echoed; datagrams that could not be sent back.
    """

    def __init__(self, stack, port: int = 7):
        self.name = "udp-echo"
        self.port = port
        self.datagrams = 0
        self.bytes = 0
        self.errors = 0
        self.sock = stack.udp_socket()
        self.sock.bind(("::", port))
        self._running = False
        self.sock.on_ready = self._ready

    def _ready(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while (item := self.sock.recvfrom()) is not None:
                data, source = item
                try:
                    self.sock.sendto(data, source)
                except HetnicError:
                    self.errors += 1
                    continue
                self.datagrams += 1
                self.bytes += len(data)
        finally:
            self._running = False

    def stats(self) -> dict:
        """``{"app", "port", "datagrams", "bytes", "errors"}``."""
        return {"app": self.name, "port": self.port, "datagrams": self.datagrams,
                "bytes": self.bytes, "errors": self.errors}

    def close(self) -> None:
        self.sock.on_ready = None
        self.sock.close()
