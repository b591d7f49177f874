"""Two :class:`TcpConnection` objects wired back to back through a fake layer, on a
simulated clock, for the TCP connection's tests.

``TcpPair`` owns the time (a float), a one-way delay, and a seeded fault hook per direction
(loss, duplication, reordering) plus an optional ``drop(direction, seg)`` filter. Every
segment sent is parsed back with :func:`parse_tcp` (so the checksum is checked) and kept in
``trace`` as ``(time, direction, TcpSegment)``; ``"ab"`` is client -> server. Side ``b``
listens: the first SYN it gets opens a passive connection. Segments for a side with no live
connection are answered with an RST (as the real layer does), unless ``rst_closed=False``.
Nothing sleeps; waiting loops are bounded by simulated time and a step budget.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from typing import Callable

from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.tcp import TcpConfig, TcpConnection
from hetnic.host.stack.tcp_segment import ACK, RST, SYN, build_tcp, parse_tcp, ts_option

ADDR_A = bytes([198, 18, 0, 1])
ADDR_B = bytes([198, 18, 0, 2])
ADDR6_A = bytes.fromhex("20010db8" + "00" * 11 + "0a")      # 2001:db8::a
ADDR6_B = bytes.fromhex("20010db8" + "00" * 11 + "0b")      # 2001:db8::b
PORT_A, PORT_B = 40000, 80

#: Short timers so simulated time stays short.
QUICK = TcpConfig(mss=1460, sndbuf=64 * 1024, rcvbuf=64 * 1024, time_wait=2.0,
                  min_rto=0.2, max_rto=4.0, max_retries=5, syn_retries=3,
                  delayed_ack_timeout=0.04, fin_wait2_timeout=5.0)

#: QUICK without timestamps (the crafted-segment tests need no TS option on every segment).
NO_TS = dataclasses.replace(QUICK, timestamps=False)


class FakeLayer:
    """What a TcpConnection needs from its layer; counts what it is told."""

    def __init__(self, pair: TcpPair, name: str, addr: bytes):
        self.pair = pair
        self.name = name
        self.addr = addr
        self.counters = StackCounters()
        self.now = 0.0
        self.conn: TcpConnection | None = None
        self.notifies = 0
        self.schedules = 0
        self.released_conns: list[TcpConnection] = []
        self.scheduled: dict[TcpConnection, float | None] = {}
        self.challenge_limit = 1000
        self._ca_window = -1
        self._ca_count = 0

    def send_segment(self, conn: TcpConnection, segment: bytes) -> None:
        self.pair._transmit(self, conn.local, conn.remote, segment)

    def schedule(self, conn: TcpConnection) -> None:
        self.schedules += 1
        self.scheduled[conn] = conn.deadline

    def notify(self, conn: TcpConnection) -> None:
        self.notifies += 1

    def released(self, conn: TcpConnection) -> None:
        self.released_conns.append(conn)

    def challenge_ack_allowed(self, now: float) -> bool:
        second = int(now)
        if second != self._ca_window:
            self._ca_window = second
            self._ca_count = 0
        self._ca_count += 1
        return self._ca_count <= self.challenge_limit


class TcpPair:
    """Client ``a`` and listening server ``b`` (see the module docstring)."""

    def __init__(self, cfg_a: TcpConfig = QUICK, cfg_b: TcpConfig | None = None, *,
                 seed: int = 0, delay: float = 0.005, loss: float = 0.0, dup: float = 0.0,
                 reorder: float = 0.0, drop: Callable | None = None, v6: bool = False,
                 listen: bool = True, rst_closed: bool = True):
        self.cfg_a = cfg_a
        self.cfg_b = cfg_b if cfg_b is not None else cfg_a
        self.rng = random.Random(seed)
        self.delay = delay
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.drop = drop
        self.listen = listen
        self.rst_closed = rst_closed
        aa, ab = (ADDR6_A, ADDR6_B) if v6 else (ADDR_A, ADDR_B)
        self.a = FakeLayer(self, "a", aa)
        self.b = FakeLayer(self, "b", ab)
        self.now = 0.0
        self.trace: list[tuple[float, str, object]] = []
        self.faults = {"lost": 0, "duplicated": 0, "reordered": 0}
        self._heap: list = []
        self._n = 0
        self.iss_b = 5000
        self.orphans = 0
        self.largest = 0            # the longest segment sent (header, options and data)

    # --- wiring ----------------------------------------------------------------------------

    def _transmit(self, layer: FakeLayer, src: bytes, dst: bytes, data: bytes) -> None:
        direction = "ab" if layer is self.a else "ba"
        seg = parse_tcp(data, src, dst)
        self.largest = max(self.largest, len(data))
        self.trace.append((self.now, direction, seg))
        if self.drop is not None and self.drop(direction, seg):
            return
        target = self.b if layer is self.a else self.a
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            self.faults["lost"] += 1
            return
        when = self.now + self.delay
        if self.reorder and rng.random() < self.reorder:
            self.faults["reordered"] += 1
            when += self.delay * rng.uniform(0.5, 3.0)
        self._push(when, target, src, dst, data)
        if self.dup and rng.random() < self.dup:
            self.faults["duplicated"] += 1
            self._push(when + self.delay * rng.random(), target, src, dst, data)

    def _push(self, when, target, src, dst, data) -> None:
        self._n += 1
        heapq.heappush(self._heap, (when, self._n, target, src, dst, data))

    def _deliver(self, target: FakeLayer, src: bytes, dst: bytes, data: bytes) -> None:
        seg = parse_tcp(data, src, dst)
        conn = target.conn
        live = conn is not None and conn.state != "CLOSED"
        if not live and target is self.b and self.listen and seg.flags & (SYN | ACK | RST) == SYN:
            conn = TcpConnection(self.b, self.cfg_b, dst, seg.dport, src, seg.sport, self.now)
            target.conn = conn
            conn.open_passive(seg, self.iss_b, self.now)
            return
        if not live:
            self.orphans += 1
            if self.rst_closed and not seg.flags & RST:
                # RFC 9293 reset generation for a segment to no connection.
                if seg.flags & ACK:
                    rst = build_tcp(dst, src, seg.dport, seg.sport, seg.ack, 0, RST, 0)
                else:
                    rst = build_tcp(dst, src, seg.dport, seg.sport, 0,
                                    (seg.seq + len(seg)) & 0xFFFFFFFF, RST | ACK, 0)
                self._transmit(target, dst, src, rst)
            return
        conn.input(seg, self.now)

    # --- driving ---------------------------------------------------------------------------

    def connect(self, iss: int = 1000) -> TcpConnection:
        conn = TcpConnection(self.a, self.cfg_a, self.a.addr, PORT_A, self.b.addr, PORT_B,
                             self.now)
        self.a.conn = conn
        conn.open_active(iss, self.now)
        return conn

    @property
    def client(self) -> TcpConnection:
        return self.a.conn

    @property
    def server(self) -> TcpConnection | None:
        return self.b.conn

    def _set_now(self, now: float) -> None:
        self.now = now
        self.a.now = now
        self.b.now = now

    def next_time(self) -> float | None:
        times = []
        if self._heap:
            times.append(self._heap[0][0])
        for layer in (self.a, self.b):
            if layer.conn is not None:
                d = layer.conn.deadline
                if d is not None:
                    times.append(d)
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next event and run everything due then; False if nothing is left."""
        t = self.next_time()
        if t is None:
            return False
        self._set_now(max(t, self.now))
        now = self.now
        while self._heap and self._heap[0][0] <= now:
            _, _, target, src, dst, data = heapq.heappop(self._heap)
            self._deliver(target, src, dst, data)
        for layer in (self.a, self.b):
            conn = layer.conn
            if conn is not None:
                d = conn.deadline
                if d is not None and d <= now:
                    conn.on_timer(now)
        self.check_schedule()
        return True

    def check_schedule(self) -> None:
        """The layer contract: the last ``schedule(conn)`` saw the deadline ``conn`` has now."""
        for layer in (self.a, self.b):
            conn = layer.conn
            if conn is not None:
                told = layer.scheduled.get(conn)
                assert told == conn.deadline, (
                    f"{layer.name}: deadline {conn.deadline} but the layer was told {told}")

    def run(self, until: Callable[[], bool] | None = None, *, limit: float = 120.0,
            steps: int = 2_000_000, pump: Callable[[], None] | None = None) -> bool:
        """Step until ``until()`` is true (True), nothing is left or the simulated ``limit``
        (seconds from now) or the step budget runs out (False)."""
        end = self.now + limit
        for _ in range(steps):
            if pump is not None:
                pump()
            if until is not None and until():
                return True
            t = self.next_time()
            if t is None or t > end:
                return until is None
            self.step()
        return False

    def advance(self, seconds: float) -> None:
        """Run every event up to ``now + seconds``, then set the clock there."""
        end = self.now + seconds
        while True:
            t = self.next_time()
            if t is None or t > end:
                break
            self.step()
        self._set_now(end)

    def segments(self, direction: str, flags: int = 0) -> list:
        return [s for _, d, s in self.trace if d == direction and (s.flags & flags) == flags]

    def transfer(self, data_ab: bytes, data_ba: bytes = b"", *, close: bool = True,
                 limit: float = 600.0, read_chunk: int = 1 << 20) -> tuple[bytes, bytes]:
        """Connect, send ``data_ab`` from a and ``data_ba`` from b, read everything on both
        sides; with ``close`` both sides close after sending (and see EOF). Returns what b
        and a received."""
        if self.client is None:
            self.connect()
        got_b = bytearray()
        got_a = bytearray()
        pos = {"a": 0, "b": 0}
        done = {"a": False, "b": False}
        out = {"a": data_ab, "b": data_ba}

        def pump() -> None:
            for name, layer, got in (("a", self.a, got_a), ("b", self.b, got_b)):
                conn = layer.conn
                if conn is None or not conn.connected:
                    continue
                data = out[name]
                if pos[name] < len(data) and conn.writable:
                    pos[name] += conn.send(data[pos[name]:pos[name] + 65536])
                if pos[name] >= len(data) and close and not done[name]:
                    done[name] = True
                    conn.shutdown()
                while conn.readable:
                    got += conn.recv(read_chunk)

        def finished() -> bool:
            a, b = self.client, self.server
            if a is None or b is None:
                return False
            ok = len(got_b) >= len(data_ab) and len(got_a) >= len(data_ba)
            if close:
                ok = ok and a.eof and b.eof
            return ok or a.error is not None or b.error is not None

        self.run(finished, limit=limit, pump=pump)
        return bytes(got_b), bytes(got_a)


def inject(pair, conn, seq, ack, flags, payload=b"", window=65535, ts=None):
    """Feed ``conn`` a segment from its peer; returns the segments it sent in answer."""
    mark = len(pair.trace)
    opts = ts_option(*ts) if ts is not None else b""
    raw = build_tcp(conn.remote, conn.local, conn.rport, conn.lport, seq & 0xFFFFFFFF,
                    ack & 0xFFFFFFFF, flags, window, opts, payload)
    conn.input(parse_tcp(raw, conn.remote, conn.local), pair.now)
    return [seg for _, _, seg in pair.trace[mark:]]


def established(cfg: TcpConfig = NO_TS, cfg_b: TcpConfig | None = None):
    """A pair whose handshake is done (both sides ESTABLISHED, the last ACK delivered);
    returns ``(pair, client)``."""
    pair = TcpPair(cfg, cfg_b)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED"
                    and c.state == "ESTABLISHED", limit=5)
    pair.run(limit=1)
    return pair, c
