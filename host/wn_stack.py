"""An N process of a W/N system: one stack instance, its shadow listeners, its connections.

An N owns a :class:`~hetnic.host.stack.stack.Stack` on its own link (RX queues of the NIC
through a :class:`~hetnic.host.queue_port.QueueSet`, or two shared-memory rings of frames: a
:class:`~hetnic.host.ring_link.RingLink`) and serves every W process through that pair's
rings of a :class:`~hetnic.host.wn_rings.WnLayout`: commands in (listen, accept, taken,
send, close, bye), events out (accepted, data, EOF, error). It writes its own region of the
routing table, and nothing else is written by two N's: no lock is shared between N's.

What an N does each turn (:meth:`WnStack.step`): frames in and into the stack; the W's
commands; new connections out of its shadow listeners, each numbered with an FD unique
across N's and handed to the next W that accepts on that port (round robin); the data of
connections whose application took them, out as events while the W's event ring has room
(a full ring leaves the bytes in the socket, so TCP's window closes: no loss, no unbounded
buffer); the frames the stack has to send.

Frames every instance must see (ARP, neighbour discovery, ICMP errors:
:func:`~hetnic.host.stack_steering.is_shared_frame`) arrive at one N; it passes them to each
other N on a ring of their own, so that every N keeps its own neighbour cache.

A W that sends BYE, or whose process is gone (checked every ``check_interval`` seconds),
has its taken connections closed gracefully (its queued data sent, then FIN) and the
connections handed to it but not yet taken given to the other W's accepting on that port.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import time
from collections import deque
from typing import Callable

from .links import Link
from .stack.errors import StackError
from .stack.stack import Stack
from .stack_steering import is_shared_frame
from .wn_rings import (Cmd, ConnState, Evt, WnLayout, decode, decode_port, encode,
                       encode_port)

__all__ = ["WnStack", "pid_alive"]

_CMD_BATCH = 256
_FD = struct.Struct("<I")
_SEND = int(Cmd.SEND)
_DATA = int(Evt.DATA)
_OPEN = ConnState.OPEN
#: Seconds a connection whose W is gone waits for the peer's FIN before it is closed anyway.
ORPHAN_TIMEOUT = 30.0
#: Bytes of a W's SENDs held here (their sockets' buffers full) before its ring is not read.
PENDING_LIMIT = 4 << 20
#: Events kept per W beyond its full ring before the N stops reading sockets for it.
_OUTQ_LIMIT = 64


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (a dead child not yet reaped)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] not in (b"Z", b"X")


class _Conn:
    __slots__ = ("fd", "sock", "w", "port", "state", "out", "eof_sent", "orphan")

    def __init__(self, fd: int, sock, w: int, port: int):
        self.fd, self.sock, self.w, self.port = fd, sock, w, port
        self.state = ConnState.PENDING
        self.out = bytearray()
        self.eof_sent = False
        #: When its W is gone: the time until which it waits for the peer's FIN, reading
        #: and dropping what arrives (0: it has its W).
        self.orphan = 0.0


class WnStack:
    """The work of one N: a stack on a link, serving the W's through the shared rings.

    Parameters
    ----------
    layout : WnLayout
        The W/N segment (attached).
    n : int
        This N's index.
    stack : Stack
        Its stack instance (same MAC and addresses as the other N's).
    link : Link
        Its frames.
    clock : Callable[[], float]
        Seconds, monotonic (the stack's time).
    check_interval : float
        Seconds between checks that the W processes live.

    Members
    -------
    accepts, lost, reassigned : int
        Connections accepted; lost (never here: the host counts an N's lost connections when
        it dies); handed again to another W after theirs left without taking them.
    """

    def __init__(self, layout: WnLayout, n: int, stack: Stack, link: Link, *,
                 clock: Callable[[], float] = time.monotonic, check_interval: float = 0.05):
        self.layout, self.n, self.stack, self.link, self.clock = layout, n, stack, link, clock
        w_count = layout.w_count
        self.cmd = [layout.command_ring(w, n) for w in range(w_count)]
        self.evt = [layout.event_ring(w, n) for w in range(w_count)]
        others = [m for m in range(layout.n_count) if m != n]
        self.share_out = [layout.peer_ring(n, m) for m in others]
        self.share_in = [layout.peer_ring(m, n) for m in others]
        self.max_data = self.evt[0].max_payload - 4
        # Per W: events not on its ring yet, oldest first (this turn's data events, pushed
        # in one batch at the end of the turn, and what did not fit in its full ring).
        self.outq: list[list[tuple[bytes, int]]] = [[] for _ in range(w_count)]
        self._room = [0] * w_count
        self.table = layout.table(n)
        self.conns: dict[int, _Conn] = {}
        self.listeners: dict[int, object] = {}
        self.accepters: dict[int, list[int]] = {}
        self.unassigned: dict[int, deque[_Conn]] = {}
        self._rr: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.w_pid = [0] * w_count
        self.w_gone = [False] * w_count
        self.w_pending = [0] * w_count      # bytes its SENDs queued here, not yet in a socket
        self.seq = 0
        self.accepts = self.lost = self.reassigned = 0
        self.heartbeat = 0
        self.check_interval = check_interval
        self._next_check = 0.0
        self.batch = getattr(stack.config, "poll_batch", 64)
        self._publish()

    # ------------------------------------------------------------------ the loop

    def run(self, until: Callable[[], bool] | None = None, *, parent_pid: int = 0,
            idle_sleep: float = 0.0002, max_idle_sleep: float = 0.001) -> None:
        """Step until the host sets the stop word, ``until()`` is true, or ``parent_pid``'s
        process is gone. A turn that moved nothing is tried again a few times, then the N
        sleeps ``idle_sleep``, twice as long after each further idle turn up to
        ``max_idle_sleep`` (an idle N takes little CPU from the others; the first frame
        after a quiet spell waits at most ``max_idle_sleep``)."""
        idle = 0
        nap = idle_sleep
        layout = self.layout
        sleep, clock, step = time.sleep, self.clock, self.step
        while True:
            if step(clock()):
                idle = 0
                nap = idle_sleep
                continue
            idle += 1
            if idle > 4:
                if layout.stop or (until is not None and until()):
                    break
                if parent_pid and idle % 64 == 0 and not pid_alive(parent_pid):
                    break
                sleep(nap)
                nap = min(nap * 2, max_idle_sleep)
        self.layout.set_n_peer(self.n, os.getpid(), False, self.heartbeat, self.accepts,
                               self.lost, self.reassigned)

    def step(self, now: float) -> bool:
        """One turn (see the module doc); True if anything moved."""
        stack, link = self.stack, self.link
        link.service()
        frames = link.receive(self.batch) if not self.layout.hold else []
        share = self.share_out
        for frame in frames:
            if share and is_shared_frame(frame):
                for ring in share:
                    ring.push(frame)        # full: the peer misses one ARP (it asks again)
            stack.receive(frame, now)
        moved = bool(frames)
        for ring in self.share_in:
            for frame, _ in ring.pop_many(16):
                stack.receive(frame, now)
                moved = True
        for w in range(len(self.cmd)):
            # A W whose data waits for send-buffer room is not read until it drains (its
            # commands wait in its ring: backpressure, not an unbounded buffer here).
            if not self.w_gone[w] and self.w_pending[w] < PENDING_LIMIT:
                items = self.cmd[w].pop_many(_CMD_BATCH)
                if items:
                    moved = True
                    self._commands(w, items)
        for port, listener in self.listeners.items():
            while listener.queue:
                self._accepted(port, listener.accept())
                moved = True
        if self.dirty:
            moved = self._service_conns() or moved
        out = stack.poll(now)
        if out:
            link.send(out)
            self.layout.set_n_last_out(self.n, self.clock())
            moved = True
        for w, q in enumerate(self.outq):
            if q:
                self._flush(w)
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._check_ws()
            self.heartbeat += 1
            self._publish()
        return moved

    def _publish(self) -> None:
        self.layout.set_n_peer(self.n, os.getpid(), True, self.heartbeat, self.accepts,
                               self.lost, self.reassigned)

    # ------------------------------------------------------------------ commands

    def _commands(self, w: int, items: list[tuple[bytes, int]]) -> None:
        """W ``w``'s commands, in order; a SEND on one of its open connections (the common
        case) is handled here without the general path."""
        conns, dirty, unpack = self.conns, self.dirty, _FD.unpack_from
        pending = 0
        for data, kind in items:
            if kind == _SEND:
                fd = unpack(data)[0]
                conn = conns.get(fd)
                if conn is not None and conn.w == w and conn.state == _OPEN:
                    conn.out += memoryview(data)[4:]
                    pending += len(data) - 4
                    dirty.add(fd)
                continue
            self._command(w, kind, data)
        self.w_pending[w] += pending

    def _command(self, w: int, kind: int, data: bytes) -> None:
        fd, body = decode(data)
        if kind == Cmd.SEND:
            conn = self.conns.get(fd)
            if conn is not None and conn.w == w and conn.state == ConnState.OPEN:
                conn.out += body
                self.w_pending[w] += len(body)
                self.dirty.add(fd)
        elif kind == Cmd.TAKEN:
            conn = self.conns.get(fd)
            if conn is not None and conn.w == w and conn.state == ConnState.PENDING:
                self._set_state(conn, ConnState.OPEN)
                self.dirty.add(fd)
        elif kind == Cmd.CLOSE:
            conn = self.conns.get(fd)
            if conn is not None and conn.w == w:
                self._close(conn)
        elif kind == Cmd.LISTEN:
            port, _ = decode_port(body)
            error = ""
            if port not in self.listeners:
                try:
                    self.listeners[port] = self.stack.listen(port)
                except StackError as err:
                    error = str(err)
            self._event(w, Evt.LISTENED, encode(0, encode_port(port, error)))
        elif kind == Cmd.ACCEPT:
            port, _ = decode_port(body)
            ws = self.accepters.setdefault(port, [])
            if w not in ws:
                ws.append(w)
            waiting = self.unassigned.pop(port, None)
            while waiting:
                self._hand(waiting.popleft(), port)
        elif kind == Cmd.HELLO:
            self.w_pid[w] = int.from_bytes(body[:4], "little")
        elif kind == Cmd.BYE:
            self._w_left(w)

    def _close(self, conn: _Conn) -> None:
        if conn.state in (ConnState.OPEN, ConnState.PENDING):
            self._set_state(conn, ConnState.CLOSING)
            self.dirty.add(conn.fd)

    # ------------------------------------------------------------------ accepting

    def _accepted(self, port: int, sock) -> None:
        fd = 1 + self.n + self.layout.n_count * self.seq
        self.seq += 1
        self.accepts += 1
        self._publish()
        conn = _Conn(fd, sock, -1, port)
        self.conns[fd] = conn
        sock.on_ready = lambda fd=fd: self.dirty.add(fd)
        host, rport = sock.getpeername()
        raw = ipaddress.ip_address(host).packed
        entry = self.table[self._slot(fd)]
        entry["w"] = -1
        entry["state"] = ConnState.PENDING
        entry["family"] = 4 if len(raw) == 4 else 6
        entry["lport"] = port
        entry["rport"] = rport
        entry["raddr"] = list(raw.ljust(16, b"\0"))
        entry["fd"] = fd
        self._hand(conn, port)

    def _hand(self, conn: _Conn, port: int) -> None:
        """Give ``conn`` to the next live W accepting on ``port`` (or keep it waiting)."""
        ws = [w for w in self.accepters.get(port, ()) if not self.w_gone[w]]
        if not ws:
            self.unassigned.setdefault(port, deque()).append(conn)
            return
        i = self._rr.get(port, 0) % len(ws)
        self._rr[port] = i + 1
        w = ws[i]
        conn.w = w
        self.table[self._slot(conn.fd)]["w"] = w
        host, rport = conn.sock.getpeername()
        self._event(w, Evt.ACCEPTED, encode(conn.fd, encode_port(port, f"{host} {rport}")))

    # ------------------------------------------------------------------ connections

    def _service_conns(self) -> bool:
        dirty, self.dirty = self.dirty, set()
        # Events a W may have waiting here: what its ring takes now, then _OUTQ_LIMIT more.
        self._room = [ring.free + _OUTQ_LIMIT for ring in self.evt]
        moved = False
        for fd in dirty:
            conn = self.conns.get(fd)
            if conn is None:
                continue
            sock = conn.sock
            if conn.out:
                try:
                    n = sock.send(conn.out)         # (the send buffer takes a copy)
                except StackError:
                    n = len(conn.out)            # the connection failed: drop its output
                if n:
                    del conn.out[:n]
                    if conn.w >= 0:
                        self.w_pending[conn.w] -= n
                    moved = True
                if conn.out:
                    self.dirty.add(fd)      # the rest once the send buffer has room
            if conn.state == ConnState.CLOSING:
                if conn.orphan and sock.error is None:
                    # Its W is gone: FIN after the queued data, then read and drop until
                    # the peer's FIN (a close now would answer a request still in flight
                    # with an RST).
                    if not conn.out:
                        try:
                            sock.shutdown()         # (once: idempotent)
                        except StackError:
                            pass
                        if not self._drain(sock) and self.clock() < conn.orphan:
                            continue
                    else:
                        continue
                if not conn.out or sock.error is not None:
                    sock.close()
                    self._set_state(conn, ConnState.CLOSED)
                    self._release(conn)
                    moved = True
                continue
            if conn.state == ConnState.OPEN:
                moved = self._deliver(conn) or moved
        return moved

    @staticmethod
    def _drain(sock) -> bool:
        """Read and drop what ``sock`` received (its application is gone); True once the
        peer's FIN came (or the connection failed)."""
        try:
            while True:
                data = sock.recv(65536)
                if data is None:
                    return False
                if data == b"":
                    return True
        except StackError:
            return True

    def _deliver(self, conn: _Conn) -> bool:
        """Move ``conn``'s received bytes (then its EOF or error) to its W while there is
        room; True if anything moved."""
        w, sock, fd = conn.w, conn.sock, conn.fd
        q, room = self.outq[w], self._room
        head, step = _FD.pack(fd), self.max_data
        moved = False
        while len(q) < room[w]:
            try:
                data = sock.recv(self.max_data)
            except StackError as err:
                self._event(w, Evt.ERROR, encode(fd, str(err).encode()))
                self._set_state(conn, ConnState.ERROR)
                sock.close()
                self._release(conn)
                return True
            if data is None:
                return moved
            if data == b"":
                if not conn.eof_sent:
                    conn.eof_sent = True
                    self._event(w, Evt.EOF, encode(fd))
                return True
            q.append((head + data, _DATA))      # (pushed at the end of the turn)
            moved = True
            if len(data) < step and not sock.readable:
                return True                 # drained (a later arrival marks it dirty again)
        self.dirty.add(fd)                  # more to read once the W caught up
        return moved

    def _release(self, conn: _Conn) -> None:
        """Forget ``conn`` (closed or failed); output it still held no longer counts."""
        if conn.out and conn.w >= 0:
            self.w_pending[conn.w] -= len(conn.out)
        conn.out.clear()
        del self.conns[conn.fd]

    def _set_state(self, conn: _Conn, state: ConnState) -> None:
        conn.state = state
        self.table[self._slot(conn.fd)]["state"] = state

    def _slot(self, fd: int) -> int:
        return ((fd - 1) // self.layout.n_count) % self.layout.table_slots

    # ------------------------------------------------------------------ events and W's

    def _event(self, w: int, kind: int, data: bytes) -> None:
        if self.w_gone[w]:
            return
        q = self.outq[w]
        if q or not self.evt[w].push(data, kind):
            q.append((data, kind))

    def _flush(self, w: int) -> None:
        q = self.outq[w]
        del q[:self.evt[w].push_many(q)]

    def _check_ws(self) -> None:
        now = self.clock()
        for conn in self.conns.values():
            if conn.orphan and now >= conn.orphan:
                self.dirty.add(conn.fd)         # waited long enough for the peer's FIN
        layout = self.layout
        for w in range(len(self.cmd)):
            if self.w_gone[w]:
                continue
            pid, gone = layout.w_peer(w)
            pid = pid or self.w_pid[w]
            if gone or (pid and not pid_alive(pid)):
                self._w_left(w)

    def _w_left(self, w: int) -> None:
        """W ``w`` is gone: close its taken connections gracefully, hand its untaken ones to
        the other W's."""
        if self.w_gone[w]:
            return
        # Commands it pushed before leaving still count (data to send before the FIN).
        for data, kind in self.cmd[w].pop_many(self.cmd[w].capacity):
            if kind != Cmd.BYE:
                self._command(w, kind, data)
        self.w_gone[w] = True
        self.outq[w].clear()
        for ws in self.accepters.values():
            if w in ws:
                ws.remove(w)
        for conn in list(self.conns.values()):
            if conn.w != w:
                continue
            if conn.state == ConnState.PENDING:
                self.reassigned += 1
                self._hand(conn, conn.port)
            elif conn.state in (ConnState.OPEN, ConnState.CLOSING):
                conn.orphan = self.clock() + ORPHAN_TIMEOUT
                self._close(conn)
                self.dirty.add(conn.fd)

    def dump(self) -> list[dict]:
        """This N's live connections: fd, W, state, peer."""
        return [{"fd": c.fd, "n": self.n, "w": c.w, "state": c.state.name,
                 "port": c.port, "peer": "%s %d" % c.sock.getpeername()}
                for c in self.conns.values()]
