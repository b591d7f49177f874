# Ref: RFC 9110 (HTTP semantics), RFC 9112 (HTTP/1.1); parsing and framing by h11.
"""An HTTP/1.1 static file server on a stack instance (port 80 by default).

``GET`` and ``HEAD`` of the files under one folder: 200 with ``Content-Length`` and a
``Content-Type`` guessed from the name, 404 for anything that is not a regular file inside the
folder (a path that leaves it, ``..`` or a symbolic link pointing out, is refused the same
way), 405 with ``Allow`` for other methods, 400 (or h11's hint, such as 431) for a request h11
cannot parse, after which the connection closes. A folder's ``index.html`` answers for it.
Connections are kept alive between requests unless the client asks to close; pipelined
requests are answered in order. A file is read and sent in chunks as the socket's send
buffer takes them, so a large file never sits in memory.

All HTTP parsing and framing is h11's; this module only decides the responses.
"""

from __future__ import annotations

import mimetypes
import os
import urllib.parse
from pathlib import Path

import h11

from .tcp_server import Handler, TcpServerApp

__all__ = ["HttpStaticServer", "CHUNK"]

#: Bytes of a file read at a time (and at most buffered per connection).
CHUNK = 64 * 1024
_SERVER = b"hetnic"
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found",
            405: b"Method Not Allowed", 431: b"Request Header Fields Too Large"}


class _HttpHandler(Handler):
    def __init__(self, app: "HttpStaticServer", sock):
        super().__init__(app, sock)
        self.h11 = h11.Connection(h11.SERVER)
        self.out = bytearray()
        self.body = None            # the open file being sent
        self.remaining = 0          # its bytes still to send

    def service(self) -> None:
        h = self.h11
        while not self.done:
            self.send_some(self.out)
            if self.out:
                return                          # wait until the socket takes more
            if self.body is not None:
                self._send_chunk()
                continue
            if h.our_state is h11.MUST_CLOSE or h.our_state is h11.CLOSED:
                self.finish()
                return
            if h.our_state is h11.DONE and h.their_state is h11.DONE:
                h.start_next_cycle()
                continue
            if h.their_state in (h11.MUST_CLOSE, h11.CLOSED) and h.our_state is h11.DONE:
                self.finish()
                return
            if not self._next_event():
                return

    def _next_event(self) -> bool:
        """Handle one h11 event; False when more bytes are needed and none are there."""
        h = self.h11
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            self._error(exc.error_status_hint)
            return True
        if event is h11.NEED_DATA:
            data = self.sock.recv(65536)
            if data is None:
                return False
            self.received(len(data))
            h.receive_data(data)            # b"": the peer closed its side
            return True
        if isinstance(event, h11.Request):
            self._respond(event)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            self.finish()
        return True                         # Data, EndOfMessage of a request: ignored

    def _respond(self, request: h11.Request) -> None:
        app: HttpStaticServer = self.app    # type: ignore[assignment]
        app.requests += 1
        head = request.method == b"HEAD"
        if request.method not in (b"GET", b"HEAD"):
            self._simple(405, head, [(b"Allow", b"GET, HEAD")])
            return
        path = app.resolve(request.target)
        if path is None:
            self._simple(404, head)
            return
        try:
            body = path.open("rb")
        except OSError:
            self._simple(404, head)
            return
        size = os.fstat(body.fileno()).st_size
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._start(200, [(b"Content-Type", ctype.encode()),
                          (b"Content-Length", str(size).encode())])
        if head or size == 0:
            body.close()
            self.out += self.h11.send(h11.EndOfMessage())
        else:
            self.body, self.remaining = body, size

    def _send_chunk(self) -> None:
        """The next piece of the file, or the end of the message after ``Content-Length``
        bytes. A file that fails or shrinks mid-body cuts the connection (HTTP/1.1 has
        nothing else to say then); one that grows is sent as it was announced."""
        try:
            chunk = self.body.read(min(CHUNK, self.remaining)) if self.remaining else b""
        except OSError as exc:
            chunk, problem = b"", f"reading the file: {exc.strerror or exc}"
        else:
            problem = "the file shrank while it was sent"
        if chunk:
            self.remaining -= len(chunk)
            self.app.body_bytes += len(chunk)
            self.out += self.h11.send(h11.Data(data=chunk))
        elif self.remaining:
            self.app.errors += 1
            self.finish(abort=True, reason=problem)
        else:
            self.body.close()
            self.body = None
            self.out += self.h11.send(h11.EndOfMessage())

    def _start(self, status: int, headers: list) -> None:
        app: HttpStaticServer = self.app    # type: ignore[assignment]
        app.statuses[status] = app.statuses.get(status, 0) + 1
        self.out += self.h11.send(h11.Response(status_code=status, reason=_REASONS.get(
            status, b""), headers=[(b"Server", _SERVER)] + headers))

    def _simple(self, status: int, head: bool, headers: list | None = None,
                close: bool = False) -> None:
        """A short text response (``HEAD``: the same headers, no body)."""
        text = b"%d %s\n" % (status, _REASONS.get(status, b""))
        extra = [(b"Connection", b"close")] if close else []
        self._start(status, [(b"Content-Type", b"text/plain"),
                             (b"Content-Length", str(len(text)).encode())]
                    + (headers or []) + extra)
        if not head:
            self.out += self.h11.send(h11.Data(data=text))
        self.out += self.h11.send(h11.EndOfMessage())

    def _error(self, status: int) -> None:
        """A request h11 refused: answer ``status`` if a response can still start (then
        :meth:`service` closes once it is sent: h11 is in ``MUST_CLOSE``), else close."""
        self.app.bad_requests += 1
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._simple(status if status in _REASONS else 400, False, close=True)
        else:
            self.finish()

    def closed(self, reason: str | None) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


class HttpStaticServer(TcpServerApp):
    """Serve the files under ``root`` over HTTP/1.1 on ``port`` of ``stack``.

    Members
    -------
    root : Path
        The folder served (resolved).
    requests, bad_requests, body_bytes : int
        Requests answered, requests h11 refused, file bytes sent.
    statuses : dict of int to int
        Responses by status code.
    """

    def __init__(self, stack, root: Path | str, port: int = 80, *,
                 backlog: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        self.root = root.resolve()
        self.requests = 0
        self.bad_requests = 0
        self.body_bytes = 0
        self.statuses: dict[int, int] = {}
        super().__init__(stack, port, _HttpHandler, name="http", backlog=backlog)

    def resolve(self, target: bytes) -> Path | None:
        """The regular file under :attr:`root` that ``target`` (a request target such as
        ``b"/a%20b.txt?x=1"``) names, or ``None``: not absolute, not found, not a regular
        file, or outside the root after resolving ``..`` and symbolic links."""
        try:
            path = urllib.parse.unquote(urllib.parse.urlsplit(target.decode("ascii")).path,
                                        errors="strict")
        except ValueError:                  # not ASCII, not UTF-8 once unquoted
            return None
        if not path.startswith("/") or "\x00" in path:
            return None
        try:
            file = (self.root / path.lstrip("/")).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        if not file.is_relative_to(self.root):
            return None
        if file.is_dir():
            file = file / "index.html"
        return file if file.is_file() else None

    def stats(self) -> dict:
        """:meth:`TcpServerApp.stats` plus ``requests``, ``bad_requests``, ``body_bytes``
        and ``statuses``."""
        return {**super().stats(), "requests": self.requests,
                "bad_requests": self.bad_requests, "body_bytes": self.body_bytes,
                "statuses": dict(sorted(self.statuses.items()))}
