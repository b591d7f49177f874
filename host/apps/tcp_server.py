"""A TCP server on the stack's non-blocking sockets: the part every built-in application
shares (listen, accept, one handler per connection, readiness, statistics).

The stack calls a socket's ``on_ready`` after any change of its state or readiness, possibly
from inside a call the handler itself made (a ``send`` that frees a window, a ``close``).
:class:`Handler` makes that safe: a readiness call that arrives while the handler runs only
asks it to run once more, so a handler never runs inside itself and never misses a change.
No threads, no clock: everything happens in ``on_ready`` calls, made by whatever drives the
stack (:class:`~hetnic.host.stack_host.StackHost`, a test loop).
"""

from __future__ import annotations

from typing import Any, Callable

from ...errors import HetnicError

__all__ = ["TcpServerApp", "Handler"]


class Handler:
    """One accepted connection of a :class:`TcpServerApp`.

    Subclasses implement :meth:`service`: do whatever the socket's readiness allows
    (``recv`` until ``None``, ``send`` until it takes less than offered) and return; call
    :meth:`finish` when the connection is over.

    Members
    -------
    sock : TcpSocket
    app : TcpServerApp
    peer : tuple
        The peer's ``(host, port)``.
    bytes_in, bytes_out : int
        Application bytes received and sent (accepted by the socket).
    done : bool
        :meth:`finish` was called.
    """

    def __init__(self, app: "TcpServerApp", sock):
        self.app = app
        self.sock = sock
        try:
            self.peer = sock.getpeername()
        except HetnicError:
            self.peer = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.done = False
        self._running = False
        self._again = False

    def ready(self) -> None:
        """The socket's ``on_ready``: run :meth:`service` until no readiness change arrived
        during it; a call from inside :meth:`service` only asks for one more round."""
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            while not self.done:
                self._again = False
                try:
                    self.service()
                except HetnicError as exc:          # reset, refused, timeout: the peer's doing
                    self.app.errors += 1
                    self.finish(abort=True, reason=str(exc))
                if not self._again:
                    break
        finally:
            self._running = False

    def service(self) -> None:
        raise NotImplementedError

    def send_some(self, buffer: bytearray) -> None:
        """Send what the socket takes of ``buffer`` and remove it from the front."""
        if buffer:
            n = self.sock.send(bytes(buffer[:1 << 20]))
            if n:
                del buffer[:n]
                self.bytes_out += n
                self.app.bytes_out += n

    def received(self, n: int) -> None:
        """Count ``n`` bytes received."""
        self.bytes_in += n
        self.app.bytes_in += n

    def finish(self, abort: bool = False, reason: str | None = None) -> None:
        """End the connection: ``close`` the socket (everything sent is still delivered) or
        ``abort`` it (RST), and remove the handler from the application."""
        if self.done:
            return
        self.done = True
        self.sock.on_ready = None
        try:
            self.sock.abort() if abort else self.sock.close()
        except HetnicError:
            pass
        self.closed(reason)
        self.app._finished(self)

    def closed(self, reason: str | None) -> None:
        """Called once when the connection ends (``reason`` is the error, if any): free
        what the handler holds. Default: nothing."""


class TcpServerApp:
    """Listen on ``port`` of ``stack`` and give each accepted connection a handler made by
    ``handler(app, sock)``.

    Parameters
    ----------
    stack : Stack
        The stack instance (:class:`~hetnic.host.stack.stack.Stack`) to listen on.
    port : int
    handler : callable
        ``(app, sock) -> Handler``.
    name : str
        The application's name in :meth:`stats`.
    backlog : int, optional
        The listen backlog (default: the instance's).

    Members
    -------
    accepted, errors, bytes_in, bytes_out : int
    connections : set of Handler
        The connections open now.
    """

    def __init__(self, stack, port: int, handler: Callable[["TcpServerApp", Any], Handler],
                 *, name: str, backlog: int | None = None):
        self.stack = stack
        self.port = port
        self.name = name
        self._make = handler
        self.accepted = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.connections: set[Handler] = set()
        self.listener = stack.listen(port, backlog=backlog)
        self._accepting = False
        self.listener.on_ready = self._accept_ready

    def _accept_ready(self) -> None:
        if self._accepting:
            return
        self._accepting = True
        try:
            while (sock := self.listener.accept()) is not None:
                self.accepted += 1
                handler = self._make(self, sock)
                self.connections.add(handler)
                sock.on_ready = handler.ready
                handler.ready()
        finally:
            self._accepting = False

    def _finished(self, handler: Handler) -> None:
        self.connections.discard(handler)

    def stats(self) -> dict:
        """``{"app", "port", "accepted", "active", "errors", "bytes_in", "bytes_out"}``."""
        return {"app": self.name, "port": self.port, "accepted": self.accepted,
                "active": len(self.connections), "errors": self.errors,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}

    def close(self) -> None:
        """Stop listening and close every open connection."""
        self.listener.on_ready = None
        try:
            self.listener.close()
        except HetnicError:
            pass
        for handler in list(self.connections):
            handler.finish()
