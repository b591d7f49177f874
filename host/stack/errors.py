"""The errors the user-mode stack's socket API raises.

A frame never raises: a bad frame is dropped and counted by reason. These exceptions are for
the application: API misuse (a bad argument, send after close, a port in use, a destination
with no route) and the outcome of a connection (refused, reset, timed out). Every one is a
:class:`StackError`, which is both a :class:`~hetnic.errors.HetnicError` and an ``OSError``
(code that catches socket errors catches these), and carries a one-line message.

:class:`InstanceError` is the one error of instance configuration (a bad profile, field or
TOML file): a ``ValueError``, with a message that names the file and the key.
"""

from __future__ import annotations

from hetnic.errors import HetnicError

__all__ = [
    "StackError", "AddressInUse", "NotConnected", "ConnectionClosed", "ConnectionReset",
    "ConnectionRefused", "ConnectionTimeout", "Unreachable", "BadArgument", "ResourceLimit",
    "InstanceError", "CONNECTION_ERRORS",
]


class StackError(HetnicError, OSError):
    """An error of the stack's socket API (one line: what went wrong, on which socket)."""


class AddressInUse(StackError):
    """The local address and port are taken (another socket is bound there), or no ephemeral
    port of the instance's range is free."""


class NotConnected(StackError):
    """The operation needs a connection and the socket has none (never connected, or a
    listening socket)."""


class ConnectionClosed(StackError):
    """The socket was closed, or its write side shut down, by this application."""


class ConnectionReset(StackError):
    """The peer reset the connection (an RST was accepted)."""


class ConnectionRefused(StackError):
    """The peer answered the connection attempt with an RST (nothing listening there)."""


class ConnectionTimeout(StackError):
    """The connection gave up after its retry limit (the peer stopped answering)."""


class Unreachable(StackError):
    """No route to the destination: no interface address of its family on its link and no
    gateway."""


class BadArgument(StackError, ValueError):
    """An argument out of its range or of the wrong type (a port 70000, a str to send)."""


class ResourceLimit(StackError):
    """The instance's limits refuse a new connection: ``max_connections`` reached, or its
    socket buffers would pass ``buffer_memory``."""


class InstanceError(HetnicError, ValueError):
    """An instance configuration that cannot be used; the message names the file (if any),
    the instance and the key."""


#: ``TcpConnection.error`` (``"reset"``, ``"refused"``, ``"timeout"``, ``"unreachable"``) ->
#: the class raised on the next ``send``/``recv`` of its socket.
CONNECTION_ERRORS: dict[str, type[StackError]] = {
    "reset": ConnectionReset,
    "refused": ConnectionRefused,
    "timeout": ConnectionTimeout,
    "unreachable": Unreachable,
}
