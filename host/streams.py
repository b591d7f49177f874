"""asyncio-style streams over the user-mode stack's non-blocking TCP sockets.

>>> async with AsyncStackDriver(stack, link) as driver:
...     reader, writer = await driver.open_connection("198.18.0.1", 80)
...     writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
...     await writer.drain()
...     line = await reader.readline()

:class:`StreamReader`, :class:`StreamWriter` and :class:`Server` have the methods of
``asyncio.StreamReader``, ``asyncio.StreamWriter`` and ``asyncio.Server`` (and raise
``asyncio.IncompleteReadError`` / ``asyncio.LimitOverrunError`` where those do), so code
written for asyncio's streams runs on the stack. They sit on a
:class:`~hetnic.host.stack.sockets.TcpSocket` and wake on its ``on_ready``; the
:class:`~hetnic.host.async_driver.AsyncStackDriver` runs the stack on the event loop.

Flow control is the socket's: the reader pulls from the socket only when the application
asks for more than it holds, so a slow reader closes the TCP window instead of filling memory;
:meth:`StreamWriter.write` hands what the send buffer takes to the socket and keeps the rest,
and :meth:`StreamWriter.drain` waits until that rest went in. A failed connection raises its
:class:`~hetnic.host.stack.errors.StackError` (``ConnectionReset``, ...) from the next read,
write or drain.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .stack.errors import CONNECTION_ERRORS, ConnectionClosed, StackError

if TYPE_CHECKING:
    from .async_driver import AsyncStackDriver

__all__ = ["StreamReader", "StreamWriter", "Server"]

#: asyncio's default buffer limit for ``readuntil``/``readline``.
_LIMIT = 1 << 16
#: Most bytes handed to the socket in one ``send`` (bounds the copy of a large write).
_CHUNK = 1 << 18


class _Readiness:
    """Owns a socket's ``on_ready``: wakes every waiter, and tells the writer to flush."""

    def __init__(self, sock, loop: asyncio.AbstractEventLoop):
        self.sock = sock
        self.loop = loop
        self.waiters: list[asyncio.Future] = []
        self.writer: StreamWriter | None = None
        self._flush_queued = False
        sock.on_ready = self._ready

    def _ready(self) -> None:
        # Called from inside Stack.receive/poll: only wake, never touch the stack here.
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self.writer is not None and self.writer._pending and not self._flush_queued:
            self._flush_queued = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_queued = False
        if self.writer is not None:
            self.writer._flush()

    def wait(self) -> asyncio.Future:
        fut = self.loop.create_future()
        self.waiters.append(fut)
        return fut


def _raise_error(sock) -> None:
    error = sock.error
    if error is not None:
        raise CONNECTION_ERRORS.get(error, ConnectionClosed)(
            f"connection {error} ({_endpoint(sock)})")


def _endpoint(sock) -> str:
    try:
        return "%s port %d -> %s port %d" % (sock.getsockname() + sock.getpeername())
    except Exception:
        return repr(sock)


class StreamReader:
    """The read side of a stream (``asyncio.StreamReader``'s methods).

    Parameters
    ----------
    sock : TcpSocket
        A connected (or connecting) socket.
    readiness : _Readiness
        Shared with the writer of the same socket.
    limit : int
        Longest line or separator search :meth:`readuntil` buffers (default 64 KiB).
    """

    def __init__(self, sock, readiness: _Readiness, limit: int = _LIMIT):
        self._sock = sock
        self._ready = readiness
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._exception: BaseException | None = None

    # --- pulling from the socket ---------------------------------------------------------------
    def _pull(self, want: int) -> bool:
        """Move received bytes from the socket into the buffer until it holds ``want``;
        returns True if anything arrived (data or end of stream)."""
        if self._eof:
            return False
        got = False
        sock = self._sock
        while len(self._buffer) < want:
            if sock.error is not None:
                _raise_error(sock)
            try:
                data = sock.recv(max(want - len(self._buffer), 65536))
            except ConnectionClosed:
                if sock.error is not None:
                    _raise_error(sock)
                data = b""              # our side closed: nothing more will come
            if data is None:
                break
            got = True
            if not data:
                self._eof = True
                break
            self._buffer += data
        return got

    async def _wait_for(self, want: int) -> None:
        """Until the buffer holds ``want`` bytes or the stream ended."""
        if self._exception is not None:
            raise self._exception
        while len(self._buffer) < want and not self._eof:
            waiter = self._ready.wait()
            if self._pull(want):
                waiter.cancel()
                continue
            await waiter

    # --- asyncio.StreamReader's API ---------------------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF); ``n < 0`` reads until EOF."""
        if n == 0:
            return b""
        if n < 0:
            while not self._eof:
                await self._wait_for(len(self._buffer) + 1)
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if not self._buffer:
            await self._wait_for(1)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        await self._wait_for(n)
        if len(self._buffer) < n:
            partial = bytes(self._buffer)
            self._buffer.clear()
            raise asyncio.IncompleteReadError(partial, n)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``. ``asyncio.IncompleteReadError`` at EOF
        without it; ``asyncio.LimitOverrunError`` if it is not within ``limit`` bytes."""
        if not separator:
            raise ValueError("Separator should be at least one-byte string")
        seplen = len(separator)
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                end = found + seplen
                if found > self._limit:
                    raise asyncio.LimitOverrunError(
                        "Separator is found, but chunk is longer than limit", found)
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            start = max(0, len(self._buffer) + 1 - seplen)
            if start > self._limit:
                raise asyncio.LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", start)
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
            await self._wait_for(len(self._buffer) + 1)

    async def readline(self) -> bytes:
        """One line with its ``\\n``; at EOF the rest (possibly ``b""``). A line longer than
        ``limit`` is consumed and raises ``ValueError`` (as asyncio's does)."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            if self._buffer.startswith(b"\n", e.consumed):
                del self._buffer[:e.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(e.args[0]) from None

    def at_eof(self) -> bool:
        """True when the stream ended (or failed) and the buffer is empty; never raises."""
        if not self._buffer and not self._eof:
            try:
                self._pull(1)
            except StackError:
                return True             # a failed connection has no more bytes
        return self._eof and not self._buffer

    def exception(self) -> BaseException | None:
        return self._exception

    def set_exception(self, exc: BaseException) -> None:
        self._exception = exc

    def __aiter__(self) -> "StreamReader":
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line

    def __repr__(self) -> str:
        return f"<StreamReader {len(self._buffer)} bytes{' eof' if self._eof else ''}>"


class StreamWriter:
    """The write side of a stream (``asyncio.StreamWriter``'s methods).

    Parameters
    ----------
    sock : TcpSocket
        The socket; :meth:`close` closes it once what was written has gone into it.
    readiness : _Readiness
        Shared with the reader of the same socket.
    driver : AsyncStackDriver
        Run soon after data goes into the socket, so the segments leave.
    reader : StreamReader | None
        The reader of the same stream (``asyncio.StreamWriter`` keeps one too).
    """

    def __init__(self, sock, readiness: _Readiness, driver: "AsyncStackDriver",
                 reader: StreamReader | None = None):
        self._sock = sock
        self._ready = readiness
        self._driver = driver
        self._reader = reader
        self._pending = bytearray()
        self._closing = False
        self._eof_wanted = False
        self._done = False              # close/shutdown handed to the socket
        readiness.writer = self

    # --- moving bytes into the socket -----------------------------------------------------
    def _flush(self) -> None:
        """Hand pending bytes to the socket as far as its send buffer takes them; once all
        went in, do the pending close or write_eof."""
        sock = self._sock
        pending = self._pending
        if pending:
            if sock.error is not None:
                return
            sent = 0
            while pending:
                chunk = pending[:_CHUNK]        # a copy: the socket may keep it
                try:
                    n = sock.send(chunk)
                except ConnectionClosed:
                    break
                if n:
                    del pending[:n]
                    sent += n
                if n < len(chunk):
                    break
            if sent:
                self._driver.kick()
        if not self._pending and not self._done and (self._closing or self._eof_wanted):
            self._done = True
            if self._closing:
                sock.close()
            else:
                try:
                    sock.shutdown()
                except ConnectionClosed:
                    pass
            self._driver.kick()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; it goes to the socket at once as far as the send buffer allows.

        Raises
        ------
        ConnectionClosed
            The writer is closing or the write side was shut with :meth:`write_eof`.
        StackError
            The connection failed (reset, refused, timed out).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._closing or self._eof_wanted:
            raise ConnectionClosed(f"write after {'close' if self._closing else 'write_eof'} "
                                   f"({_endpoint(self._sock)})")
        _raise_error(self._sock)
        if not data:
            return
        self._pending += data
        if len(self._pending) == len(data):
            self._flush()

    def writelines(self, data) -> None:
        for chunk in data:
            self.write(chunk)

    async def drain(self) -> None:
        """Wait until everything written went into the socket's send buffer."""
        while True:
            _raise_error(self._sock)
            self._flush()
            if not self._pending:
                return
            if self._sock.closed and not self._closing:
                raise ConnectionClosed(f"drain: the connection closed with "
                                       f"{len(self._pending)} bytes unsent")
            waiter = self._ready.wait()
            await waiter

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close the write side (a FIN after what was written); reading goes on."""
        if not self._eof_wanted:
            self._eof_wanted = True
            self._flush()

    def close(self) -> None:
        """Close the stream: what was written still goes out, then the connection closes."""
        if not self._closing:
            self._closing = True
            self._flush()

    def is_closing(self) -> bool:
        return self._closing

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` handed everything written to the socket and closed it
        (as asyncio's returns once the transport let go, not when the peer acknowledged)."""
        while not self._done:
            if self._sock.error is not None or self._sock.closed:
                return
            self._flush()
            if self._done:
                return
            await self._ready.wait()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"`` or ``"socket"`` (the stack's TcpSocket)."""
        try:
            if name == "peername":
                return self._sock.getpeername()
            if name == "sockname":
                return self._sock.getsockname()
        except Exception:
            return default
        if name == "socket":
            return self._sock
        return default

    async def start_tls(self, *args, **kwargs):
        raise NotImplementedError("TLS is not part of the user-mode stack")

    def __repr__(self) -> str:
        return f"<StreamWriter {_endpoint(self._sock)}>"


class Server:
    """A listening socket that makes a reader/writer pair per accepted connection and starts
    ``client_connected_cb(reader, writer)`` for it (a coroutine becomes a task).

    Members
    -------
    sockets : list
        The listener (a one-element list, as ``asyncio.Server.sockets``).
    """

    def __init__(self, driver: "AsyncStackDriver", listener,
                 client_connected_cb: Callable[[StreamReader, StreamWriter],
                                               Awaitable[None] | None],
                 limit: int = _LIMIT):
        self._driver = driver
        self._listener = listener
        self._cb = client_connected_cb
        self._limit = limit
        self._loop = driver.loop
        self._closed = False
        self._closed_fut = self._loop.create_future()
        self._tasks: set[asyncio.Task] = set()
        self._accept_queued = False
        listener.on_ready = self._ready
        self._loop.call_soon(self._accept)

    @property
    def sockets(self) -> list:
        return [] if self._closed else [self._listener]

    def _ready(self) -> None:
        if not self._accept_queued and not self._closed:
            self._accept_queued = True
            self._loop.call_soon(self._accept)

    def _accept(self) -> None:
        self._accept_queued = False
        while not self._closed:
            sock = self._listener.accept()
            if sock is None:
                return
            reader, writer = self._driver._streams(sock, self._limit)
            result = self._cb(reader, writer)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def is_serving(self) -> bool:
        return not self._closed

    async def start_serving(self) -> None:
        """Already serving (accepting starts with the server); for asyncio compatibility."""

    def close(self) -> None:
        """Stop listening; connections already accepted go on."""
        if not self._closed:
            self._closed = True
            self._listener.close()
            self._driver.kick()
            if not self._closed_fut.done():
                self._closed_fut.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed_fut)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` (or until cancelled, which closes the server)."""
        try:
            await asyncio.shield(self._closed_fut)
        except asyncio.CancelledError:
            self.close()
            raise

    def close_clients(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        try:
            name = "%s port %d" % self._listener.getsockname()
        except Exception:
            name = "?"
        return f"<Server {name}{' closed' if self._closed else ''}>"
