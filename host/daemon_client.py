"""A client of hetnicd (:mod:`hetnic.host.daemon_protocol` over its Unix socket)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import HetnicError
from .daemon_protocol import MAX_MESSAGE, ProtocolError, decode_reply, request

__all__ = ["DaemonClient", "ClientError", "spawn_daemon", "socket_answers"]


class ClientError(HetnicError, RuntimeError):
    """The daemon refused or failed the request, or could not be reached (one line);
    ``code`` is the reply's code (:data:`~hetnic.host.daemon_protocol.CODES`) or None."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class DaemonClient:
    """One session with the daemon at ``path``; :meth:`call` sends a request and returns
    the result, or raises :class:`ClientError`."""

    def __init__(self, path: str | Path, timeout: float | None = 30.0):
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError as exc:
            self._sock.close()
            raise ClientError(f"cannot reach hetnicd at {self.path}: {exc.strerror or exc} "
                              f"(is `hetnic daemon` running? --socket PATH)") from None
        self._file = self._sock.makefile("rb")
        self._next = 1

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, op: str, args: dict | None = None) -> int:
        id = self._next
        self._next += 1
        self._sock.sendall(request(id, op, args))
        return id

    def receive(self) -> dict:
        line = self._file.readline(MAX_MESSAGE + 2)
        if not line:
            raise ClientError(f"hetnicd at {self.path} closed the session")
        try:
            return decode_reply(line.rstrip(b"\n"))
        except ProtocolError as exc:
            raise ClientError(f"hetnicd sent a reply this client cannot read: {exc}") \
                from None

    def call(self, op: str, args: dict | None = None):
        id = self.send(op, args)
        message = self.receive()
        if message.get("id") != id and message.get("id") is not None:
            raise ClientError(f"reply to request {message.get('id')}, expected {id}")
        if not message.get("ok"):
            raise ClientError(message.get("error", "the daemon failed the request"),
                              message.get("code"))
        return message["result"]

    def events(self) -> Iterator[dict]:
        """Follow the file events: the recent ones, then each new one as it happens."""
        result = self.call("events.read", {"follow": True})
        yield from result["recent"]
        self._sock.settimeout(None)
        while True:
            message = self.receive()
            if "event" in message:
                yield message["event"]


@contextlib.contextmanager
def spawn_daemon(args: Sequence[str], sock: str | Path, log: str | Path,
                 netns: str | None = None, env: dict | None = None,
                 start_timeout: float = 900.0) -> Iterator[subprocess.Popen]:
    """``hetnic daemon ARGS --socket SOCK`` as a child process (in network namespace
    ``netns`` when given), its standard error in ``log``; yields the process once its socket
    takes a connection (a file left by an earlier daemon does not count), and stops it with
    SIGTERM (SIGKILL after 60 s) on the way out, leaving ``returncode`` set. A daemon that
    exits or does not answer within ``start_timeout`` seconds (a first start builds its
    simulator) raises :class:`ClientError` with the last line of its log."""
    sock, log = Path(sock), Path(log)
    argv = [sys.executable, "-m", "hetnic", "daemon", *args, "--socket", str(sock)]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        end = time.monotonic() + start_timeout
        while not socket_answers(sock):
            if proc.poll() is not None or time.monotonic() > end:
                lines = log.read_text(errors="replace").strip().splitlines()
                raise ClientError(f"the daemon did not start (log {log}): "
                                  + (lines[-1] if lines else "no output"))
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def socket_answers(path: str | Path, timeout: float = 1.0) -> bool:
    """Whether a server takes connections on Unix socket ``path`` (a file left by a
    daemon that is gone does not)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()
