"""The kernel's side of :mod:`hetnic.bench_dispatch`: the three loads, each run in a spawned
process of its own inside the benchmark's network namespace (:func:`load_main`).

* ``"rr"``: 64-byte request/response rounds on one echo connection (``TCP_NODELAY``),
  ``idle_rounds`` of them before the start event, then until the stop event;
* ``"bulk"``: HTTP GETs (``Connection: close``) of the bulk file one after the other, every
  body checked against its SHA-256; the bytes read before the stop event count;
* ``"conns"``: short connections to discard (connect, 64 bytes, shut down the write side, read
  to the server's FIN, close), ``parallel`` clients at once; those done before stop count.

Each load sets its ``ready`` event when it can start, waits for ``start``, sets ``reached``
when it has done its minimum, runs on until ``stop`` and sends ``(True, result)`` on its pipe,
or ``(False, one line)`` when it failed (and sets ``stop``, so the others end too). A load
exits when the benchmark process is gone (its parent pid changes).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

from .host.netns import in_netns

__all__ = ["load_main", "LOADS", "HETNIC4", "KERNEL4", "ECHO_PORT", "HTTP_PORT",
           "DISCARD_PORT", "REQUEST", "BULK_NAME"]

KERNEL4, HETNIC4 = "198.18.0.1", "198.18.0.2"
ECHO_PORT, HTTP_PORT, DISCARD_PORT = 7, 80, 9
#: The request of the request/response and of every short connection.
REQUEST = bytes(range(64))
#: The file the bulk load GETs, in the HTTP server's folder.
BULK_NAME = "bulk.bin"
#: Socket timeout of every kernel-side operation (seconds).
_IO_TIMEOUT = 60.0


class _Orphaned(RuntimeError):
    pass


def _check_parent(parent: int) -> None:
    if os.getppid() != parent:
        raise _Orphaned("the benchmark process is gone")


def _rr(args: dict, reached, stop, parent: int) -> dict:
    """Request/response rounds on one echo connection; idle rounds first (before start)."""
    sock = socket.create_connection((HETNIC4, ECHO_PORT), timeout=_IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one() -> float:
        t0 = time.perf_counter()
        sock.sendall(REQUEST)
        got = b""
        while len(got) < len(REQUEST):
            piece = sock.recv(4096)
            if not piece:
                raise RuntimeError("the echo connection closed")
            got += piece
        dt = (time.perf_counter() - t0) * 1e6
        if got != REQUEST:
            raise RuntimeError("an echo differs from its request")
        return dt

    with sock:
        idle = [one() for _ in range(args["idle_rounds"])]
        args["ready"].set()
        args["start"].wait(_IO_TIMEOUT)
        samples, t0 = [], time.monotonic()
        while not stop.is_set():
            samples.append(one())
            if len(samples) == args["rounds"]:
                reached.set()
            if len(samples) % 64 == 0:
                _check_parent(parent)
        t1 = time.monotonic()
    return {"samples": samples, "idle": idle, "t0": t0, "t1": t1}


def _bulk(args: dict, reached, stop, parent: int) -> dict:
    """HTTP GETs of the bulk file one after the other until stop; bytes before stop count."""
    size, digest = args["bulk_size"], args["bulk_sha256"]
    request = (f"GET /{BULK_NAME} HTTP/1.1\r\nHost: {HETNIC4}\r\n"
               f"Connection: close\r\n\r\n").encode()
    args["ready"].set()
    args["start"].wait(_IO_TIMEOUT)
    t0 = time.monotonic()
    counted, t_stop, gets = 0, None, 0
    buf = bytearray(1 << 20)
    while t_stop is None:
        with socket.create_connection((HETNIC4, HTTP_PORT), timeout=_IO_TIMEOUT) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                piece = sock.recv(4096)
                if not piece:
                    raise RuntimeError("the HTTP connection closed inside the header")
                head += piece
            head, body = head.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            if lines[0].split()[1:2] != ["200"]:
                raise RuntimeError(f"HTTP GET answered {lines[0]!r}")
            length = next(int(line.split(":", 1)[1]) for line in lines[1:]
                          if line.lower().startswith("content-length:"))
            if length != size:
                raise RuntimeError(f"HTTP GET: Content-Length {length}, not {size}")
            h = hashlib.sha256(body)
            n = len(body)
            if t_stop is None:
                counted += len(body)
            view = memoryview(buf)
            while n < size:
                got = sock.recv_into(view)
                if not got:
                    break
                h.update(view[:got])
                n += got
                if t_stop is None:
                    counted += got
                    if counted >= size:
                        reached.set()
                    if stop.is_set():
                        t_stop = time.monotonic()
            if n != size or h.digest() != digest:
                raise RuntimeError(f"HTTP GET: {n} body bytes, not the {size} of the file "
                                   f"(or they differ)")
        gets += 1
        _check_parent(parent)
        if t_stop is None and stop.is_set():
            t_stop = time.monotonic()
    return {"bytes": counted, "t0": t0, "t1": t_stop, "gets": gets}


def _conns(args: dict, reached, stop, parent: int) -> dict:
    """Short connections to discard, ``parallel`` at a time, until stop."""
    lock = threading.Lock()
    state = {"done": 0, "counted": 0, "errors": []}

    def client() -> None:
        try:
            while not stop.is_set():
                with socket.create_connection((HETNIC4, DISCARD_PORT),
                                              timeout=_IO_TIMEOUT) as sock:
                    sock.sendall(REQUEST)
                    sock.shutdown(socket.SHUT_WR)
                    if sock.recv(4096) != b"":
                        raise RuntimeError("discard sent data")
                with lock:
                    state["done"] += 1
                    if not stop.is_set():
                        state["counted"] += 1
                        if state["counted"] == args["connections"]:
                            reached.set()
        except BaseException as exc:     # handed to the parent below
            with lock:
                state["errors"].append(f"{type(exc).__name__}: {exc}")
            stop.set()

    args["ready"].set()
    args["start"].wait(_IO_TIMEOUT)
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args["parallel"])]
    for t in threads:
        t.start()
    while not stop.wait(0.1):
        _check_parent(parent)
    t1 = time.monotonic()
    for t in threads:
        t.join(_IO_TIMEOUT * 2)
    if state["errors"]:
        raise RuntimeError(state["errors"][0])
    return {"connections": state["counted"], "made": state["done"], "t0": t0, "t1": t1}


LOADS = {"rr": _rr, "bulk": _bulk, "conns": _conns}


def load_main(kind: str, ns: str, args: dict, reached, stop, conn, parent: int) -> None:
    """A kernel-side load process: enter ``ns``, run the load, send ``(ok, result)``."""
    try:
        with in_netns(ns):
            result = (True, LOADS[kind](args, reached, stop, parent))
    except BaseException as exc:     # one line to the parent, which raises it
        stop.set()
        result = (False, f"{kind}: {type(exc).__name__}: {exc}")
    try:
        conn.send(result)
    except OSError:
        pass
    conn.close()
