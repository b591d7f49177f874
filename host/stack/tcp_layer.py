# Ref: RFC 9293 (TCP; 3.10.7.1 reset generation, 3.10.7.2 LISTEN), RFC 6528 (ISN generation),
#      RFC 5961 section 7 (challenge ACK limit), RFC 4987 section 3.6 (SYN cookies),
#      RFC 6056 (ephemeral ports).
"""The TCP layer of one stack instance: demultiplexing, listeners, timers and limits.

:class:`TcpLayer` is the handler the interface calls for IP protocol 6. It parses each
segment (a bad one is dropped, counted by :class:`~hetnic.host.stack.tcp_segment.SegmentError`'s
reason), finds its connection in a dictionary keyed by the 4-tuple
``(local addr, local port, remote addr, remote port)`` and hands it to
:meth:`TcpConnection.input <hetnic.host.stack.tcp.TcpConnection.input>`. A segment for no
connection goes to a listener on its port (a SYN opens a connection, within the backlog, the
instance's connection limit and its buffer memory; SYN cookies answer when the backlog is
full, if enabled) or is answered with an RST (never an RST to an RST), counted
``"tcp_no_socket"``.

It is also the ``layer`` every :class:`TcpConnection` talks back to: ``send_segment``,
``schedule`` (a heap of ``(when, n, conn)`` with lazy deletion: a stale entry is skipped when
it comes up), ``notify`` (readiness: the connection's socket's ``on_ready``, or a half-open
connection moving to its listener's accept queue), ``released`` (the connection is CLOSED: it
leaves every table) and ``challenge_ack_allowed`` (at most :data:`CHALLENGE_ACK_LIMIT` per
second for the whole layer).

Sans-I/O: the time comes in with every call (``now``) and the API calls use the last one seen
(:attr:`TcpLayer.now`).
"""

from __future__ import annotations

import hashlib
import heapq
import random
import struct
from collections import Counter
from functools import partial
from ipaddress import ip_address

from hetnic.protocol import IpProto

from .checksum import folded
from .counters import StackCounters
from .errors import AddressInUse, ResourceLimit
from .instance import InstanceConfig
from .ports import PortTable
from .sockets import TcpListener, TcpSocket
from .syncookies import SynCookies
from .tcp import TcpConnection
from .tcp_output import CLOSED, SYN_RECEIVED
from .tcp_segment import (ACK, DEFAULT_MSS, FIN, RST, SYN, TS_WORD, URG, SegmentError,
                          TcpSegment, build_tcp, parse_tcp, seq_add, syn_options)

__all__ = ["TcpLayer", "CHALLENGE_ACK_LIMIT", "DEFAULT_MSS"]

#: Challenge ACKs the layer sends per second, all connections together (RFC 5961 section 7).
CHALLENGE_ACK_LIMIT = 1000

_TCP = int(IpProto.TCP)
# The header of the short path: sport dport seq ack offset flags window csum urg, then
# NOP NOP TS(8) len(10) as one word, TSval, TSecr.
_FAST = struct.Struct("!HHIIBBHHHIII")
# The quoted start of our TCP header in an ICMP error: ports and sequence number.
_QUOTE = struct.Struct("!HHI")
_FAST_MASK = SYN | FIN | RST | URG | ACK
_from_bytes = int.from_bytes


def _text(addr: bytes) -> str:
    return str(ip_address(addr))


class TcpLayer:
    """Demux, listeners, timers and limits of one instance's TCP.

    Parameters
    ----------
    iface
        The :class:`~hetnic.host.stack.interface.NetInterface` segments go out through
        (``send_ip``, ``source_for``, ``is_local``, ``mtu``).
    config : InstanceConfig
        Limits (``max_connections``, ``buffer_memory``, ``backlog``, ``syn_cookies``,
        ``ephemeral_ports``) and the per-connection knobs.
    counters : StackCounters
        Counts ``tcp_in``/``tcp_out``, SYN cookies and drops.
    seed : int
        Seeds the ISN and SYN-cookie secrets and the ephemeral port cursor (reproducible runs).
    """

    def __init__(self, iface, config: InstanceConfig, counters: StackCounters, seed: int = 0):
        self.iface = iface
        self.config = config
        self.counters = counters
        self.now = 0.0
        #: True once a real time reached the layer (a poll, a received frame, or a ``now``
        #: given to :meth:`open`); until then :attr:`now` is a placeholder.
        self.clock_seen = False
        rng = random.Random(f"hetnic.tcp_layer:{seed}")
        self._isn_key = rng.randbytes(32)
        self.cookies = SynCookies(rng.randbytes(32))
        self._conns: dict[tuple, TcpConnection] = {}
        self._keys: dict[TcpConnection, tuple] = {}
        self._sockets: dict[TcpConnection, TcpSocket] = {}
        self._pending: dict[TcpConnection, TcpListener] = {}
        self._owned_ports: dict[TcpConnection, tuple] = {}
        self._listeners = PortTable("TCP", config.ephemeral_ports, config.name)
        self.ports = PortTable("TCP", config.ephemeral_ports, config.name, seed)
        self._heap: list[tuple[float, int, TcpConnection]] = []
        self._queued: dict[TcpConnection, float] = {}
        self._tick = 0
        self._memory = 0
        self._conn_memory = config.sndbuf + config.rcvbuf
        self._ca_reset = float("-inf")
        #: False: a segment that would open a connection (a SYN to a listener, or an ACK
        #: that may answer a SYN cookie) is dropped, counted ``tcp_closed_to_new``, not
        #: answered (an instance a restart moves away from: the peer retransmits and
        #: reaches the next instance, see hetnic.host.daemon_restart).
        self.accept_new = True
        self._ca_budget = 0
        self._cfgs: dict[int, object] = {}

    # ----------------------------------------------------------------- the connection's layer

    def send_segment(self, conn: TcpConnection, segment: bytes) -> None:
        """Send ``segment`` (a built TCP header and payload) from ``conn``'s local address to its
        remote one. (The connection counts ``tcp_out`` itself; the layer counts the RSTs and
        cookie SYN-ACKs it sends on no connection's behalf.)"""
        key = self._keys.get(conn)
        if key is None:
            local, remote = conn.local, conn.remote
        else:
            local, remote = key[0], key[2]
        self.iface.send_ip(local, remote, _TCP, segment, self.now)

    def schedule(self, conn: TcpConnection) -> None:
        """``conn.deadline`` changed: make sure the heap holds an entry no later than it.
        (Read from the connection's copy of it, kept by every entry point's reschedule: the
        property recomputes it.)"""
        when = conn._sched
        if when is None:
            return
        queued = self._queued.get(conn)
        if queued is not None and queued <= when:
            return      # an earlier entry comes up first and re-arms from conn.deadline
        self._tick += 1
        self._queued[conn] = when
        heapq.heappush(self._heap, (when, self._tick, conn))

    def notify(self, conn: TcpConnection) -> None:
        """``conn``'s readiness or state changed: tell its socket, or move a connection that
        completed its handshake from its listener's half-open count to its accept queue."""
        sock = self._sockets.get(conn)
        if sock is not None:
            callback = sock.on_ready
            if callback is not None:
                callback()
            return
        listener = self._pending.get(conn)
        if listener is not None and conn.state != SYN_RECEIVED:
            del self._pending[conn]
            listener.half_open -= 1
            if conn.state != CLOSED:
                self._enqueue(listener, conn)

    def released(self, conn: TcpConnection) -> None:
        """``conn`` is CLOSED: remove it from the tables, give back its port and memory."""
        key = self._keys.pop(conn, None)
        if key is None:
            return
        del self._conns[key]
        self._queued.pop(conn, None)
        self._memory -= self._conn_memory
        owned = self._owned_ports.pop(conn, None)
        if owned is not None:
            self.unbind(*owned)
        listener = self._pending.pop(conn, None)
        if listener is not None:
            listener.half_open -= 1
        sock = self._sockets.pop(conn, None)
        if sock is not None and sock.on_ready is not None:
            sock.on_ready()

    def challenge_ack_allowed(self, now: float) -> bool:
        """True if one more challenge ACK fits this second's budget (RFC 5961 section 7)."""
        if now >= self._ca_reset:
            self._ca_reset = now + 1.0
            self._ca_budget = CHALLENGE_ACK_LIMIT
        if self._ca_budget > 0:
            self._ca_budget -= 1
            return True
        return False

    # ---------------------------------------------------------------------------- input

    def icmp_error(self, src: bytes, dst: bytes, quoted: bytes, kind: str) -> None:
        """An ICMP error about a segment we sent from ``src`` to ``dst``; ``quoted`` is the
        start of its TCP header (ports and sequence number, at least 8 bytes), ``kind`` one
        of :data:`~hetnic.host.stack.icmp.ERROR_KINDS`. To the connection it names, which
        checks the sequence number (RFC 5927 4.1); else counted ``"icmp_tcp_no_connection"``.
        """
        if len(quoted) < 8:
            self.counters.drop("icmp_error_truncated")
            return
        sport, dport, seq = _QUOTE.unpack_from(quoted)
        conn = self._conns.get((src, sport, dst, dport))
        if conn is None:
            self.counters.drop("icmp_tcp_no_connection")
            return
        conn.icmp_error(kind, seq)

    def input(self, src: bytes, dst: bytes, payload, now: float) -> None:
        """The interface's handler for protocol 6: one segment from ``src`` to ``dst``."""
        self.now = now
        n = len(payload)
        if n >= 32 and payload[12] == 0x80:
            # The segments a transfer is made of: a 32-byte header whose only option is a
            # timestamp, flags ACK (PSH allowed), for a connection: checked and handed over
            # without a TcpSegment (the connection falls back to the full path if need be).
            sport, dport, seq, ack, _, flags, window, _, _, word, tv, ecr = \
                _FAST.unpack_from(payload)
            if word == TS_WORD and flags & _FAST_MASK == ACK:
                conn = self._conns.get((dst, dport, src, sport))
                if conn is not None:
                    # (a pure ACK's 32 bytes need no folding before the %)
                    value = _from_bytes(payload, "big") if n <= 256 else folded(payload)
                    if n & 1:
                        value <<= 8
                    # A valid segment's sum with its pseudo-header is a multiple of 0xFFFF.
                    if (value + conn._pseudo + n) % 0xFFFF:
                        self.counters.drop("tcp_bad_checksum")
                        return
                    self.counters.tcp_in += 1
                    data = payload[32:]
                    if not conn.input_fast(seq, ack, window, tv, ecr, data, now):
                        conn.input(TcpSegment(sport, dport, seq, ack, flags, window, data,
                                              ts_val=tv, ts_ecr=ecr), now)
                    return
        try:
            seg = parse_tcp(payload, src, dst)
        except SegmentError as err:
            self.counters.drop(err.reason)
            return
        self.counters.tcp_in += 1
        conn = self._conns.get((dst, seg.dport, src, seg.sport))
        if conn is not None:
            conn.input(seg, now)
            return
        listener = self._listeners.find(dst, seg.dport)
        if listener is None:
            self._reset(src, dst, seg, "tcp_no_socket")
        else:
            self._to_listener(listener, src, dst, seg, now)

    def _reset(self, src: bytes, dst: bytes, seg, reason: str) -> None:
        """Answer ``seg`` (from ``src`` to ``dst``) with an RST per RFC 9293 3.10.7.1 unless it
        is one, and count it dropped for ``reason``."""
        self.counters.drop(reason)
        if seg.flags & RST or not self.iface.is_local(dst):
            return
        if seg.flags & ACK:
            rst = build_tcp(dst, src, seg.dport, seg.sport, seg.ack, 0, RST, 0)
        else:
            rst = build_tcp(dst, src, seg.dport, seg.sport, 0, seq_add(seg.seq, len(seg)),
                            RST | ACK, 0)
        self.counters.tcp_out += 1
        self.iface.send_ip(dst, src, _TCP, rst, self.now)

    def _to_listener(self, listener: TcpListener, src: bytes, dst: bytes, seg, now: float) -> None:
        flags = seg.flags
        if not self.accept_new:
            self.counters.drop("tcp_closed_to_new")
            return
        if flags & RST:
            self.counters.drop("tcp_listen_rst")
            return
        if flags & ACK:
            if not (flags & SYN) and self.config.syn_cookies and self._cookie_ack(
                    listener, src, dst, seg, now):
                return
            self._reset(src, dst, seg, "tcp_listen_ack")
            return
        if not flags & SYN:
            self.counters.drop("tcp_listen_no_syn")
            return
        if len(listener.queue) + listener.half_open < listener.backlog:
            if self._admit():
                conn = self._new_conn(dst, seg.dport, src, seg.sport, now)
                self._pending[conn] = listener
                listener.half_open += 1
                conn.open_passive(seg, self.isn(dst, seg.dport, src, seg.sport, now), now)
        elif self.config.syn_cookies:
            self._cookie_syn_ack(src, dst, seg, now)
        else:
            self.counters.drop("tcp_backlog_full")

    def _cookie_syn_ack(self, src: bytes, dst: bytes, seg, now: float) -> None:
        """Answer a SYN statelessly: the SYN-ACK's sequence number is the cookie. Only the MSS
        survives in a cookie, so the SYN-ACK offers no window scale, SACK or timestamps."""
        mss = min(seg.mss or DEFAULT_MSS[len(src)], self.mss_for(src))
        cookie = self.cookies.make(src, dst, seg.sport, seg.dport, seg.seq, mss, now)
        window = min(self.config.rcvbuf, 0xFFFF)
        synack = build_tcp(dst, src, seg.dport, seg.sport, cookie, seq_add(seg.seq, 1),
                           SYN | ACK, window, syn_options(mss, None, False, None))
        self.counters.tcp_syn_cookies_sent += 1
        self.counters.tcp_out += 1
        self.iface.send_ip(dst, src, _TCP, synack, now)

    def _cookie_ack(self, listener: TcpListener, src: bytes, dst: bytes, seg, now: float) -> bool:
        """An ACK to a listener: open the connection if it acknowledges a valid cookie (and
        the accept queue has room); False if it is no cookie's answer."""
        isn = seq_add(seg.ack, -1)
        mss = self.cookies.check(src, dst, seg.sport, seg.dport, seq_add(seg.seq, -1), isn, now)
        if mss is None:
            return False
        if len(listener.queue) >= listener.backlog:
            self.counters.drop("tcp_backlog_full")
            return True
        if not self._admit():
            return True
        self.counters.tcp_syn_cookies_ok += 1
        conn = self._new_conn(dst, seg.dport, src, seg.sport, now)
        conn.open_from_cookie(seg, isn, mss, now)
        if conn.state != CLOSED and conn in self._keys:
            self._enqueue(listener, conn)
        return True

    def _admit(self) -> bool:
        """True if the instance's limits take one more connection (else counted)."""
        return self._limit_reached() is None

    def _limit_reached(self) -> str | None:
        """The drop reason (counted) if the instance's limits take no more connection:
        ``"tcp_max_connections"`` or ``"tcp_buffer_memory"``; None if one more fits."""
        if len(self._conns) >= self.config.max_connections:
            reason = "tcp_max_connections"
        elif self._memory + self._conn_memory > self.config.buffer_memory:
            reason = "tcp_buffer_memory"
        else:
            return None
        self.counters.drop(reason)
        return reason

    def _enqueue(self, listener: TcpListener, conn: TcpConnection) -> None:
        sock = TcpSocket._accepted(self, conn, self._keys[conn])
        self._sockets[conn] = sock
        listener.queue.append(sock)
        if listener.on_ready is not None:
            listener.on_ready()

    # ------------------------------------------------------------------- connections

    def mss_for(self, remote: bytes) -> int:
        """The MSS the link allows towards ``remote`` (MTU less the IP and TCP headers)."""
        return self.iface.mtu - (40 if len(remote) == 4 else 60)

    def _tcp_config(self, remote: bytes):
        mss = self.mss_for(remote)
        cfg = self._cfgs.get(mss)
        if cfg is None:
            cfg = self._cfgs[mss] = self.config.tcp_config(mss)
        return cfg

    def _new_conn(self, local: bytes, lport: int, remote: bytes, rport: int,
                  now: float) -> TcpConnection:
        conn = TcpConnection(self, self._tcp_config(remote), local, lport, remote, rport, now)
        if len(remote) == 4:
            conn._tx = partial(self.iface.ip4.output, local, remote, _TCP)
            conn._ip4 = self.iface.ip4
        else:
            conn._tx = partial(self.iface.ip6.output, local, remote, _TCP)
        key = (local, lport, remote, rport)
        self._conns[key] = conn
        self._keys[conn] = key
        self._memory += self._conn_memory
        return conn

    def isn(self, local: bytes, lport: int, remote: bytes, rport: int, now: float) -> int:
        """An initial sequence number per RFC 6528: a 4-microsecond clock plus a keyed hash of
        the 4-tuple."""
        h = hashlib.blake2s(b"%b%d|%b%d" % (local, lport, remote, rport), key=self._isn_key,
                            digest_size=4)
        return (int.from_bytes(h.digest(), "big") + int(now * 250_000)) & 0xFFFFFFFF

    def open(self, local: bytes, remote: bytes, rport: int,
             reserved: tuple[bytes | None, int] | None = None,
             now: float | None = None) -> tuple[TcpConnection, int]:
        """Open a connection actively from ``local`` (a SYN goes out). ``reserved`` is the
        ``(addr, port)`` the socket bound (:meth:`bind`); it passes to the connection. None
        takes an ephemeral port. Returns the connection and its local port.

        ``now`` is the current time; None takes the last time the layer saw (:attr:`now`).
        Before the layer has seen any time (:attr:`clock_seen` false: no :meth:`poll`, no
        received frame and no ``now`` given yet) the SYN waits for the next :meth:`poll`,
        so its timer never starts from the placeholder ``0.0``.

        Raises
        ------
        AddressInUse
            The 4-tuple is taken, or no ephemeral port is free.
        ResourceLimit
            ``max_connections`` or ``buffer_memory`` reached.
        """
        cfg = self.config
        limit = self._limit_reached()
        if limit == "tcp_max_connections":
            raise ResourceLimit(f"connect to {_text(remote)} port {rport}: the instance "
                                f"{cfg.name!r} holds its max_connections ({cfg.max_connections})")
        if limit is not None:
            raise ResourceLimit(f"connect to {_text(remote)} port {rport}: the instance "
                                f"{cfg.name!r} has no buffer_memory left")
        if reserved is None:
            reserved = (local, self.bind(local, None))
        lport = reserved[1]
        if (local, lport, remote, rport) in self._conns:
            raise AddressInUse(f"{_text(local)} port {lport} is already connected to "
                               f"{_text(remote)} port {rport}")
        if now is not None:
            self.now = now
            self.clock_seen = True
        now = self.now
        conn = self._new_conn(local, lport, remote, rport, now)
        self._owned_ports[conn] = reserved
        conn.open_active(self.isn(local, lport, remote, rport, now), now,
                         defer=not self.clock_seen)
        return conn, lport

    def attach(self, conn: TcpConnection, sock: TcpSocket) -> None:
        """Route ``conn``'s readiness to ``sock``."""
        if conn in self._keys:
            self._sockets[conn] = sock

    # ---------------------------------------------------------------------- ports

    def bind(self, addr: bytes | None, port: int | None) -> int:
        """Reserve local ``port`` on ``addr`` (None: every address; ``0.0.0.0``: every IPv4
        one); ``port`` None picks a free ephemeral port. Returns the port.
        :class:`AddressInUse` if the port is taken on an overlapping address, or the
        ephemeral range is full."""
        return self.ports.bind(addr, port)

    def unbind(self, addr: bytes | None, port: int) -> None:
        """Give back one reservation of ``port`` on ``addr``."""
        self.ports.unbind(addr, port)

    def add_listener(self, listener: TcpListener) -> None:
        """Start taking SYNs for ``listener`` (its port already reserved by :meth:`bind`)."""
        self._listeners.bind(listener.addr, listener.port, listener)

    def remove_listener(self, listener: TcpListener) -> None:
        """Stop ``listener``: abort its half-open and not-yet-accepted connections."""
        self._listeners.unbind(listener.addr, listener.port, listener)
        for conn, owner in list(self._pending.items()):
            if owner is listener:
                conn.abort()
        while listener.queue:
            listener.queue.popleft().abort()

    # ---------------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """The earliest connection timer, or None."""
        heap, queued = self._heap, self._queued
        while heap:
            when, _, conn = heap[0]
            deadline = conn.deadline if conn in self._keys else None
            if deadline is not None and deadline <= when:
                return deadline
            heapq.heappop(heap)              # stale: re-arm from the real deadline
            if queued.get(conn) == when:
                del queued[conn]
            if deadline is not None:
                self.schedule(conn)
        return None

    def poll(self, now: float) -> None:
        """Run the timers of every connection due at ``now``."""
        self.now = now
        self.clock_seen = True
        heap, queued, keys = self._heap, self._queued, self._keys
        rearm = []
        while heap and heap[0][0] <= now:
            when, _, conn = heapq.heappop(heap)
            if queued.get(conn) == when:
                del queued[conn]
            if conn not in keys:
                continue
            deadline = conn.deadline
            if deadline is not None and deadline <= now:
                conn.on_timer(now)
            rearm.append(conn)
        # Re-armed after the loop: a timer that stays due runs on the next poll, not forever.
        for conn in rearm:
            if conn in keys:
                self.schedule(conn)

    # ---------------------------------------------------------------------- views

    def connections(self) -> list[dict]:
        """Every connection's :meth:`TcpConnection.info` plus its addresses and ports."""
        out = []
        for (local, lport, remote, rport), conn in self._conns.items():
            info = dict(conn.info())
            info.update(local=_text(local), lport=lport, remote=_text(remote), rport=rport)
            out.append(info)
        return out

    def state_counts(self) -> dict[str, int]:
        """Connections by state name."""
        return dict(Counter(conn.state for conn in self._conns.values()))

    @property
    def timers(self) -> int:
        """Connections with a timer armed (for checks that nothing is left)."""
        return sum(1 for conn in self._conns.values() if conn.deadline is not None)

    def __len__(self) -> int:
        return len(self._conns)

