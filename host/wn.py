"""W/N threads with shadow listeners: the routing module and the application (W) side.

The user-mode stack's work is split between application threads (W) and stack threads (N).
Both are **processes** here: one Python interpreter lock would run nothing side by side. Each
N (:class:`~hetnic.host.wn_stack.WnStack`) owns RX queues and the connections RSS brings to
them, with its own :class:`~hetnic.host.stack.stack.Stack` (same MAC and addresses as the
other N's). The W's and N's share one segment (:class:`~hetnic.host.wn_rings.WnLayout`):
for each (W, N) pair a command ring and an event ring, one producer and one consumer each;
for each N its region of the routing table. No lock is shared between N's.

* ``listen(port)`` by any W (a second call for the same port is shared) makes each N's
  stack listen on the port: one **shadow listener per N**.
* Each accepted connection gets an FD unique across N's (the FD names its N) and an entry
  FD -> (N, W, peer, state) in the routing table; :func:`dump_table` (or
  :meth:`WThread.dump`, :meth:`~hetnic.host.wn_host.WnHost.dump`) reads it.
* An N hands its connections round robin to the W's that called ``accept`` on that port; a
  W's ``accept``/``send``/``recv``/``close`` go over its rings to the FD's N.

>>> w = WThread.attach(segment_name, 0)
>>> w.listen(7)
>>> fd, peer = w.accept(7, timeout=5)
>>> w.send(fd, w.recv(fd, timeout=5))
>>> w.close(fd); w.exit()

A W serving many connections takes everything waiting at once with
:meth:`WThread.recv_many` (``(fd, chunk)`` pairs) and answers with
:meth:`WThread.send_many`: one pass over its rings per batch, not per message.

Blocking calls spin briefly, then sleep in short steps, and give up after their timeout
(:class:`WnTimeout`); misuse (an unknown FD, another W's FD, an FD already closed) is one
:class:`WnError` line.
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque
from typing import Callable

from ..errors import HetnicError
from .shm import SharedSegment
from .wn_rings import (ENTRY_DTYPE, ENTRY_STATE, ConnState, Cmd, Evt, WnLayout, decode,
                       decode_port, encode, encode_port, fd_owner, fd_slot)

__all__ = ["WThread", "WnError", "WnTimeout", "dump_table", "repoint_reta"]

_SPINS = 200
_U32 = struct.Struct("<I")
_LOST = int(ConnState.LOST)
_DATA = int(Evt.DATA)
_SEND = int(Cmd.SEND)
_MAX_NAP = 0.002


class WnError(HetnicError, OSError):
    """A W/N call that cannot be done: an unknown FD, another W's FD, an FD closed already,
    a port a stack refused (one line)."""


class WnTimeout(WnError, TimeoutError):
    """A blocking W/N call did not complete within its timeout."""


def dump_table(layout: WnLayout, *, closed: bool = False) -> list[dict]:
    """The routing table: one dict per connection, ``fd``, ``n``, ``w`` (-1: not handed to a
    W yet), ``state``, ``port``, ``peer`` (``"host port"``); CLOSED entries only if
    ``closed``. Sorted by FD."""
    import ipaddress
    rows = []
    for n in range(layout.n_count):
        table = layout.table(n)
        live = table[table["fd"] != 0]
        for e in live:
            state = ConnState(int(e["state"]))
            if state == ConnState.FREE or (state == ConnState.CLOSED and not closed):
                continue
            raw = bytes(e["raddr"][:4] if e["family"] == 4 else e["raddr"])
            rows.append({"fd": int(e["fd"]), "n": n, "w": int(e["w"]), "state": state.name,
                         "port": int(e["lport"]),
                         "peer": f"{ipaddress.ip_address(raw)} {int(e['rport'])}"})
    rows.sort(key=lambda r: r["fd"])
    return rows


def repoint_reta(table: list[int], dead: set[int] | frozenset[int],
                 live: list[int]) -> list[int]:
    """A RETA whose entries pointing at a ``dead`` queue point at the ``live`` queues
    instead (round robin over them); the other entries are kept, so flows of the living
    N's keep their queue."""
    if not live:
        raise WnError("no living N left to take the dead N's RETA entries")
    out, k = [], 0
    for q in table:
        if q in dead:
            q = live[k % len(live)]
            k += 1
        out.append(q)
    return out


class _Fd:
    __slots__ = ("buf", "eof", "error")

    def __init__(self):
        self.buf = bytearray()
        self.eof = False
        self.error: str | None = None


class WThread:
    """The application side of one W: listen, accept, send, recv, close over the rings.

    Use :meth:`attach` (in the W's process). Not thread-safe: one W is one process (or one
    thread that alone uses this object).

    Members
    -------
    w : int
        This W's index.
    layout : WnLayout
    """

    def __init__(self, segment: SharedSegment, w: int):
        self._segment = segment
        self.layout = layout = WnLayout.attach(segment.buf)
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < layout.w_count:
            raise WnError(f"W index must be 0..{layout.w_count - 1}, not {w!r}")
        self.w = w
        self.cmd = [layout.command_ring(w, n) for n in range(layout.n_count)]
        self.evt = [layout.event_ring(w, n) for n in range(layout.n_count)]
        self.max_data = self.cmd[0].max_payload - 4
        self._tables = [layout.table(n) for n in range(layout.n_count)]
        self._n_count, self._table_slots = layout.n_count, layout.table_slots
        self._entry_off = [layout.entry_offset(n, 0) for n in range(layout.n_count)]
        self._accepts: dict[int, deque[tuple[int, tuple[str, int]]]] = {}
        self._accepting: set[int] = set()
        self._listened: dict[int, dict[int, str]] = {}
        self._fds: dict[int, _Fd] = {}
        self._ready: set[int] = set()       # FDs with data, EOF or an error (maybe closed)
        self._closed: set[int] = set()
        self._gone = False
        layout.set_w_peer(w, os.getpid())
        for n in range(layout.n_count):
            self._push(n, Cmd.HELLO, encode(0, os.getpid().to_bytes(4, "little")), 5.0)

    @classmethod
    def attach(cls, segment_name: str, w: int) -> "WThread":
        """W ``w`` of the W/N system whose segment is ``segment_name``."""
        return cls(SharedSegment.attach(segment_name), w)

    # ------------------------------------------------------------------ the API

    def listen(self, port: int, timeout: float = 5.0) -> None:
        """Listen on TCP ``port`` on every N (a shadow listener each). A port already
        listened on (by any W) is shared. :class:`WnError` if a stack refused it."""
        self._alive("listen")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise WnError(f"listen: port must be 1..65535, not {port!r}")
        answers = self._listened.setdefault(port, {})
        answers.clear()
        for n in range(self.layout.n_count):
            self._push(n, Cmd.LISTEN, encode(0, encode_port(port)), timeout)
        self._wait(lambda: len(answers) == self.layout.n_count, timeout, f"listen {port}")
        errors = sorted(set(a for a in answers.values() if a))
        if errors:
            raise WnError(f"listen {port}: {errors[0]}")

    def accept(self, port: int, timeout: float | None = 5.0) -> tuple[int, tuple[str, int]]:
        """The next connection to ``port`` handed to this W: ``(fd, (peer host, port))``.
        The first call tells every N that this W accepts on ``port``. ``timeout`` None:
        return at once or raise :class:`WnTimeout`."""
        self._alive("accept")
        q = self._accept_queue(port)
        self._wait(lambda: bool(q), timeout, f"accept on port {port}")
        return self._take(q)

    def try_accept(self, port: int, *, poll: bool = True) -> tuple[int, tuple[str, int]] | None:
        """:meth:`accept` that returns None at once when no connection is waiting (``poll``
        False: without taking new events first, after a :meth:`readable` or :meth:`poll`)."""
        self._alive("accept")
        q = self._accept_queue(port)
        if not q and poll:
            self.poll()
        return self._take(q) if q else None

    def _accept_queue(self, port: int) -> deque:
        if port not in self._accepting:
            self._accepting.add(port)
            for n in range(self.layout.n_count):
                self._push(n, Cmd.ACCEPT, encode(0, encode_port(port)), 5.0)
        return self._accepts.setdefault(port, deque())

    def _take(self, q: deque) -> tuple[int, tuple[str, int]]:
        fd, peer = q.popleft()
        self._fds[fd] = _Fd()
        self._push(self._n(fd), Cmd.TAKEN, encode(fd), 5.0)
        return fd, peer

    def readable(self) -> list[int]:
        """This W's FDs whose :meth:`recv` would not wait (data, EOF or an error)."""
        self.poll()
        fds = self._fds
        return [fd for fd in self._ready if fd in fds]

    def recv_many(self, max_events: int = 4096) -> list[tuple[int, bytes | None]]:
        """Everything received on this W's FDs since the last call, in one batch: the
        events waiting on its rings (up to ``max_events`` per N) are taken at once.

        Returns ``(fd, chunk)`` pairs in arrival order (an FD may appear more than once,
        its chunks in order): ``chunk`` is bytes received, ``b""`` once the peer closed
        (after its last bytes), None if the connection failed (:meth:`recv` then raises
        :class:`WnError` with the reason); at most one ending (``b""`` or None) per FD in a
        batch, None when both happened. Bytes an earlier :meth:`poll`/:meth:`readable`
        buffered come first. New connections wait for :meth:`try_accept` (``poll=False``).
        The batch counterpart of :meth:`readable` + :meth:`recv` (which it leaves
        consistent: a later :meth:`recv` of an FD at EOF returns ``b""``)."""
        fds = self._fds
        out: list[tuple[int, bytes | None]] = []
        ended: dict[int, int] = {}      # fd -> index of its one ending in ``out``
        if self._ready:
            for fd in [fd for fd in self._ready if fd in fds]:
                state = fds[fd]
                if state.buf:
                    out.append((fd, bytes(state.buf)))
                    state.buf.clear()
                if state.error is not None or state.eof:
                    ended[fd] = len(out)
                    out.append((fd, None if state.error is not None else b""))
            self._ready.clear()
        unpack, data_kind = _U32.unpack_from, _DATA
        for n, ring in enumerate(self.evt):
            for data, kind in ring.pop_many(max_events):
                if kind == data_kind:
                    fd = unpack(data)[0]
                    if fd in fds:
                        out.append((fd, data[4:]))
                    continue
                fd = self._other_event(n, kind, data)
                if fd:
                    state = fds[fd]
                    ending = (fd, None if state.error is not None else b"")
                    if fd in ended:             # EOF then an error (the peer's RST after
                        out[ended[fd]] = ending     # its FIN): one ending, the error wins
                    else:
                        ended[fd] = len(out)
                        out.append(ending)
                    self._ready.discard(fd)
        return out

    def send_many(self, items: list[tuple[int, bytes]], timeout: float = 5.0) -> None:
        """:meth:`send` of each ``(fd, data)`` in order, the batch counterpart: the messages
        for each N go on its command ring in one push (waiting only while a ring is full).
        A bad item raises :class:`WnError` after the items before it were queued."""
        fds, count, step = self._fds, self._n_count, self.max_data
        pack, kind = _U32.pack, _SEND
        batches: list[list[tuple[bytes, int]]] = [[] for _ in range(count)]
        check = self._gone or self.layout.dead     # (an N died: check each FD)
        for fd, data in items:
            if check or fd not in fds or data.__class__ is not bytes or len(data) > step:
                self._push_batches(batches, timeout)   # (the order of the FD's data)
                self.send(fd, data, timeout)           # the general path (and its errors)
                continue
            batches[(fd - 1) % count].append((pack(fd) + data, kind))
        self._push_batches(batches, timeout)

    def _push_batches(self, batches: list[list[tuple[bytes, int]]], timeout: float) -> None:
        for n, batch in enumerate(batches):
            if batch:
                done = self.cmd[n].push_many(batch)
                for msg, kind in batch[done:]:
                    self._push(n, kind, msg, timeout)
                batch.clear()

    def set_ready(self) -> None:
        """Tell the host this W is set up (:meth:`WnHost.wait_ready` waits for it)."""
        self.layout.set_w_peer(self.w, os.getpid(), ready=True)

    @property
    def stopping(self) -> bool:
        """True once the host asked the whole W/N system to stop."""
        return self.layout.stop

    def send(self, fd: int, data: bytes, timeout: float = 5.0) -> None:
        """Queue ``data`` on ``fd``'s connection (its N sends it); waits only while the
        command ring is full."""
        if self._gone or fd not in self._fds:
            self._mine(fd, "send")
        if data.__class__ is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise WnError(f"send: data must be bytes-like, not {type(data).__name__}")
            data = bytes(data)
        if self._lost(fd):
            raise WnError(f"send on fd {fd}: connection lost: its N died")
        n, step = (fd - 1) % self._n_count, self.max_data
        if len(data) <= step:                   # the common case: one message
            if not self.cmd[n].push(_U32.pack(fd) + data, Cmd.SEND):
                self._push(n, Cmd.SEND, _U32.pack(fd) + data, timeout)
            return
        for i in range(0, len(data), step):
            self._push(n, Cmd.SEND, encode(fd, data[i:i + step]), timeout)

    def recv(self, fd: int, max_bytes: int = 65536, timeout: float | None = 5.0) -> bytes:
        """Up to ``max_bytes`` received on ``fd``; ``b""`` once the peer closed and all was
        read. Waits up to ``timeout`` (None: not at all, :class:`WnTimeout` if nothing)."""
        state = self._fds.get(fd)
        if state is None or self._gone:
            state = self._mine(fd, "recv")
        if not state.buf:
            self._wait(lambda: bool(state.buf) or state.eof or state.error is not None
                       or self._lost(fd), timeout, f"recv on fd {fd}")
        if state.buf:
            out = bytes(state.buf[:max_bytes])
            del state.buf[:max_bytes]
            if not state.buf and not state.eof and state.error is None:
                self._ready.discard(fd)
            return out
        if state.error is None and not state.eof and self._lost(fd):
            state.error = "connection lost: its N died"
        if state.error is not None:
            raise WnError(f"recv on fd {fd}: {state.error}")
        return b""

    def close(self, fd: int) -> None:
        """Close ``fd``: its N sends what was queued, then a FIN. Later use of ``fd`` is an
        error."""
        self._mine(fd, "close")
        del self._fds[fd]
        self._ready.discard(fd)
        self._closed.add(fd)
        self._push(self._n(fd), Cmd.CLOSE, encode(fd), 5.0)

    def exit(self) -> None:
        """Leave: every N closes this W's connections gracefully and hands the ones it did
        not take to the other W's. Idempotent."""
        if self._gone:
            return
        for n in range(self.layout.n_count):
            self._push(n, Cmd.BYE, encode(0), 1.0, drop_on_timeout=True)
        self.layout.set_w_peer(self.w, os.getpid(), gone=True)
        self._gone = True

    def dump(self, closed: bool = False) -> list[dict]:
        """The routing table (:func:`dump_table`)."""
        return dump_table(self.layout, closed=closed)

    def fds(self) -> list[int]:
        """This W's open FDs."""
        return sorted(self._fds)

    # ------------------------------------------------------------------ internals

    def poll(self) -> int:
        """Take every event waiting on this W's rings (into the FDs' buffers); returns how
        many."""
        count = 0
        fds = self._fds
        for n, ring in enumerate(self.evt):
            items = ring.pop_many(256)
            count += len(items)
            for data, kind in items:
                if kind == _DATA:
                    state = fds.get(_U32.unpack_from(data)[0])
                    if state is not None:
                        state.buf += memoryview(data)[4:]
                        self._ready.add(_U32.unpack_from(data)[0])
                else:
                    self._other_event(n, kind, data)
        return count

    def _other_event(self, n: int, kind: int, data: bytes) -> int:
        """Apply an event from N ``n`` other than DATA; returns the FD of an EOF or ERROR of
        one of this W's FDs (now marked ready), else 0."""
        fd, body = decode(data)
        if kind == Evt.ACCEPTED:
            port, peer = decode_port(body)
            host, _, rport = peer.rpartition(" ")
            self._accepts.setdefault(port, deque()).append((fd, (host, int(rport))))
        elif kind == Evt.EOF or kind == Evt.ERROR:
            state = self._fds.get(fd)
            if state is not None:
                if kind == Evt.EOF:
                    state.eof = True
                else:
                    state.error = body.decode(errors="replace")
                self._ready.add(fd)
                return fd
        elif kind == Evt.LISTENED:
            port, error = decode_port(body)
            self._listened.setdefault(port, {})[n] = error
        return 0

    def _wait(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        self.poll()
        if done():
            return
        if timeout is None:
            raise WnTimeout(f"{what}: nothing ready")
        end = time.monotonic() + timeout
        spins, nap = 0, 0.00005
        while True:
            self.poll()
            if done():
                return
            spins += 1
            if spins > _SPINS:
                if time.monotonic() >= end:
                    raise WnTimeout(f"{what}: nothing within {timeout:g} s")
                time.sleep(nap)
                nap = min(nap * 2, _MAX_NAP)

    def _push(self, n: int, kind: int, data: bytes, timeout: float, *,
              drop_on_timeout: bool = False) -> None:
        ring = self.cmd[n]
        if ring.push(data, kind):
            return
        end = time.monotonic() + timeout
        nap = 0.00005
        while not ring.push(data, kind):
            self.poll()             # the N may be waiting for room in our event ring
            if time.monotonic() >= end:
                if drop_on_timeout:
                    return
                raise WnTimeout(f"N {n} took no command for {timeout:g} s (is it alive?)")
            time.sleep(nap)
            nap = min(nap * 2, _MAX_NAP)

    def _n(self, fd: int) -> int:
        return fd_owner(fd, self.layout.n_count)

    def _alive(self, what: str) -> None:
        if self._gone:
            raise WnError(f"{what}: this W has exited")

    def _mine(self, fd: int, what: str) -> _Fd:
        self._alive(what)
        state = self._fds.get(fd) if isinstance(fd, int) else None
        if state is not None:
            return state
        if fd in self._closed:
            raise WnError(f"{what} on fd {fd}: closed already by this W")
        if isinstance(fd, int) and not isinstance(fd, bool) and fd >= 1:
            entry = self._entry(fd)
            if int(entry["fd"]) == fd and int(entry["state"]) != ConnState.FREE:
                owner = int(entry["w"])
                if owner != self.w:
                    raise WnError(f"{what} on fd {fd}: it belongs to W {owner}, not W {self.w}")
                raise WnError(f"{what} on fd {fd}: not accepted by this W yet")
        raise WnError(f"{what} on fd {fd!r}: unknown fd")

    def _entry(self, fd: int):
        layout = self.layout
        return self._tables[self._n(fd)][fd_slot(fd, layout.n_count, layout.table_slots)]

    def _lost(self, fd: int) -> bool:
        """Whether ``fd``'s N died (the host marked it LOST in the routing table); read from
        the raw bytes (this is on every send)."""
        k = fd - 1
        off = self._entry_off[k % self._n_count] + \
            (k // self._n_count) % self._table_slots * ENTRY_DTYPE.itemsize
        buf = self.layout.buf
        return buf[off + ENTRY_STATE] == _LOST and _U32.unpack_from(buf, off)[0] == fd

    def close_segment(self) -> None:
        """Unmap the shared segment (after :meth:`exit`)."""
        self._tables = []
        for ring in self.cmd + self.evt:
            ring.release()
        self.cmd, self.evt = [], []
        self._segment.close()
