"""NCP, the reliable direct data-link channel: the protocol core, sans I/O.

Frames and the time in, frames and deadlines out: :class:`NcpEndpoint` owns no socket,
thread or clock (the I/O runner :mod:`hetnic.host.ncp_io` moves its frames over a
:class:`~hetnic.host.links.Link` and gives the blocking API ``ncp.open(link, peer_mac,
channel)``). The frame layout is :mod:`hetnic.ncp_frame`; the protocol is described in
``docs/ncp.md``. In short:

* A session is (peer MAC, channel). Each side picks a random 32-bit *epoch* per session
  incarnation; every frame carries the sender's epoch and the epoch it knows of the receiver.
  Setup: SYN (my epoch) -> SYN_ACK (both) -> ACK; a simultaneous open (both send SYN) works
  too. Teardown: FIN once everything is acknowledged -> FIN_ACK.
* DATA frames are numbered (one sequence number per frame, serial arithmetic mod 2**32), a
  byte stream cut into frames of at most ``MAX_PAYLOAD`` bytes. The receiver acknowledges
  cumulatively (``ack`` = next expected) plus a 32-frame selective bitmap (``sack``),
  every ``ack_every`` in-order frames, after ``ack_delay``, and at once on a gap or a
  duplicate; it buffers out-of-order frames within its window and delivers in order.
* The sender keeps at most min(own window, peer's advertised window) frames in flight,
  retransmits the oldest on the RTO (RFC 6298 estimator, exponential backoff) and a frame
  the SACK bitmap shows as lost (3 later frames received) at once (fast retransmit).
* Keepalive: an idle established session sends KEEPALIVE every ``keepalive`` seconds (the
  peer answers with an ACK); nothing heard for ``dead_after`` seconds ends the session.
* Peer restart: a SYN with a new epoch (one not seen before: a late SYN of an earlier
  incarnation is a ``stale_epoch`` drop) from the peer of an established session, or an RST
  answering one of our frames, ends the session (``peer_restarts``); the session then sets
  itself up again with a new epoch of its own. Unsent and unacknowledged data of the old
  incarnation is discarded (``bytes_discarded``), and the channel's ``generation`` counts
  incarnations so an application can tell (the blocking API's ``flush`` / ``close`` raise
  ``NcpReset``). A FIN received ends the session at once: data of ours not yet acknowledged
  is discarded and counted the same way.
* A frame of no open session is dropped and counted (and answered with an RST, so that a
  restarted peer learns at once); bad lengths, bad checksums, stale epochs, replayed and
  out-of-window sequence numbers are counted drops. Nothing a frame contains raises.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable

from ..errors import HetnicError
from ..ncp_frame import MAX_PAYLOAD, FrameType, decode, encode
from .stack.rto import RtoEstimator

__all__ = ["NcpConfig", "NcpEndpoint", "NcpSession", "NcpError", "State"]

_M32 = 0xFFFFFFFF
_SACK_BITS = 32
_DUP_THRESH = 3
_SEEN_EPOCHS = 16


def _diff(a: int, b: int) -> int:
    """``a - b`` in serial arithmetic (RFC 1982), as a signed number."""
    d = (a - b) & _M32
    return d - (1 << 32) if d & 0x80000000 else d


class NcpError(HetnicError, ValueError):
    """A bad argument or use of the NCP API (one line)."""


class State:
    SYN_SENT = "SYN_SENT"           # waiting for the peer's SYN or SYN_ACK
    SYN_RCVD = "SYN_RCVD"           # the peer's SYN answered; waiting for its ACK
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"           # our FIN sent, waiting for FIN_ACK
    CLOSED = "CLOSED"


class NcpConfig:
    """Tunables of an endpoint (seconds and frames).

    window : frames in flight at most, and the receive window advertised (1 to 65535).
    ack_every : in-order DATA frames per acknowledgement at most.
    ack_delay : longest wait before acknowledging received DATA.
    rto_min, rto_max, rto_initial : the retransmission timer's clamp and first value.
    keepalive : idle time after which an established session sends a KEEPALIVE.
    dead_after : silence from the peer after which the session ends (peer gone).
    send_buffer : bytes :meth:`NcpSession.send` accepts beyond those in flight.
    """

    def __init__(self, *, window: int = 128, ack_every: int = 16, ack_delay: float = 0.002,
                 rto_min: float = 0.03, rto_max: float = 1.0, rto_initial: float = 0.2,
                 keepalive: float = 0.2, dead_after: float = 0.8,
                 send_buffer: int = 4 * 1024 * 1024):
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 0xFFFF:
            raise NcpError(f"window must be from 1 to 65535 frames, not {window!r}")
        if isinstance(ack_every, bool) or not isinstance(ack_every, int) or ack_every < 1:
            raise NcpError(f"ack_every must be a positive number of frames, not {ack_every!r}")
        for name, v in (("ack_delay", ack_delay), ("rto_min", rto_min), ("rto_max", rto_max),
                        ("rto_initial", rto_initial), ("keepalive", keepalive),
                        ("dead_after", dead_after)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise NcpError(f"{name} must be a positive number of seconds, not {v!r}")
        if dead_after <= keepalive:
            raise NcpError(f"dead_after ({dead_after}) must exceed keepalive ({keepalive})")
        if rto_min > rto_max:
            raise NcpError(f"rto_min ({rto_min}) must not exceed rto_max ({rto_max})")
        self.window, self.ack_every, self.ack_delay = window, ack_every, ack_delay
        self.rto_min, self.rto_max, self.rto_initial = rto_min, rto_max, rto_initial
        self.keepalive, self.dead_after, self.send_buffer = keepalive, dead_after, send_buffer


#: The endpoint's drop counters, by reason (every one starts at 0).
DROP_REASONS = ("short", "ethertype", "version", "length", "check", "type", "not_for_us",
                "unknown_session", "stale_epoch", "duplicate", "out_of_window", "bad_ack",
                "state")


class _Out:
    """A DATA frame in flight."""
    __slots__ = ("payload", "sent", "retransmitted", "sacked")

    def __init__(self, payload: bytes, sent: float):
        self.payload, self.sent = payload, sent
        self.retransmitted = False
        self.sacked = False


class NcpSession:
    """One channel to one peer (made by :meth:`NcpEndpoint.open`).

    The application side: :meth:`send` queues bytes, :meth:`read` takes what arrived in
    order, :meth:`close` starts the teardown; ``state``, ``generation`` and the counters
    tell what happened. Times are on the endpoint's clock (the ``now`` its callers pass).

    Members
    -------
    state : str
        One of :class:`State`'s values.
    generation : int
        Incarnations set up so far (1 after the first handshake; a peer restart or a dead
        peer ends one and the next handshake starts the next).
    eof : bool
        The peer closed the channel (its FIN arrived after all its data).
    counters : dict[str, int]
        frames_out, frames_in, data_out, data_in, bytes_out, bytes_in, retransmits,
        fast_retransmits, timeouts, acks_out, keepalives_out, peer_restarts, peer_timeouts,
        bytes_discarded.
    restart_detected_at : float | None
        When the last peer restart or peer timeout was detected.
    """

    def __init__(self, ep: "NcpEndpoint", peer: bytes, channel: int, now: float):
        self.ep, self.peer, self.channel = ep, peer, channel
        self.cfg = ep.config
        self.counters = dict.fromkeys(
            ("frames_out", "frames_in", "data_out", "data_in", "bytes_out", "bytes_in",
             "retransmits", "fast_retransmits", "timeouts", "acks_out", "keepalives_out",
             "peer_restarts", "peer_timeouts", "bytes_discarded"), 0)
        self.generation = 0
        self.restart_detected_at: float | None = None
        self.eof = False
        self._closing = False
        self._rx: deque[bytes] = deque()
        self._rx_bytes = 0
        self._queue: deque[bytes] = deque()     # payloads not yet sent
        self._queued = 0
        #: The peer's epochs seen in SYN / SYN_ACK, most recent last (across incarnations):
        #: a delayed duplicate SYN of an earlier incarnation carries one and ends nothing.
        self._seen_epochs: deque[int] = deque(maxlen=_SEEN_EPOCHS)
        self._start(now)

    # -- incarnations ----------------------------------------------------------------------

    def _start(self, now: float) -> None:
        """A new incarnation: a new epoch, everything in flight forgotten, SYN."""
        self.epoch = self.ep._new_epoch()
        self.peer_epoch = 0
        self.state = State.SYN_SENT
        self.snd_una = self.snd_nxt = 1
        self.rcv_nxt = 1
        self._out: dict[int, _Out] = {}
        self._ooo: dict[int, bytes] = {}
        self._peer_window = 1
        self._wl1 = self._wl2 = 0               # seq and ack of the frame that set the window
        self._unacked_in = 0
        self._ack_due: float | None = None
        self._ack_now = False
        self._high_sack = 0
        self._sack_new = False
        self._syn_ack_again = False
        self._flight = 0                        # payload bytes in flight
        self.rto = RtoEstimator(self.cfg.rto_min, self.cfg.rto_max, self.cfg.rto_initial)
        self._ctl_due = now                     # SYN / SYN_ACK / FIN (re)transmission
        self._ctl_tries = 0
        self._last_in = now
        self._last_out = now
        self._fin_seq: int | None = None

    def _end(self, now: float, why: str) -> None:
        """The peer restarted or went silent: count it, discard, set up again."""
        self.counters[why] += 1
        self.restart_detected_at = now
        lost = self._flight + self._queued
        self.counters["bytes_discarded"] += lost
        self._queue.clear()
        self._queued = 0
        if self._closing:
            self.state = State.CLOSED
            self.ep._forget(self)
            return
        self._start(now)

    # -- the application's side ------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.state == State.ESTABLISHED

    @property
    def send_space(self) -> int:
        """Bytes :meth:`send` would take now (the send buffer's free room)."""
        return max(0, self.cfg.send_buffer - self._queued - self._flight)

    def send(self, data: bytes) -> None:
        """Queue ``data`` (any length; cut into frames of at most MAX_PAYLOAD bytes)."""
        if self._closing or self.state == State.CLOSED:
            raise NcpError(f"send on channel {self.channel} after close")
        mv = memoryview(bytes(data))
        for i in range(0, len(mv), MAX_PAYLOAD):
            self._queue.append(bytes(mv[i:i + MAX_PAYLOAD]))
        self._queued += len(mv)

    def read(self, max_bytes: int | None = None) -> bytes:
        """Bytes received in order so far (at most ``max_bytes``), b"" when none."""
        rx = self._rx
        if not rx:
            return b""
        was_full = self._rx_window() == 0
        if max_bytes is None or max_bytes >= self._rx_bytes:
            out = b"".join(rx)
            rx.clear()
        else:
            parts, n = [], 0
            while rx and n < max_bytes:
                p = rx.popleft()
                if n + len(p) > max_bytes:
                    rx.appendleft(p[max_bytes - n:])
                    p = p[:max_bytes - n]
                parts.append(p)
                n += len(p)
            out = b"".join(parts)
        self._rx_bytes -= len(out)
        if was_full and self._rx_window() > 0:
            self._ack_now = True                # window update
        return out

    @property
    def readable(self) -> int:
        return self._rx_bytes

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight."""
        return not self._queue and not self._out

    def close(self, now: float) -> None:
        """Send what is queued, then FIN; the session is CLOSED once the peer answers (or
        at once when it was never set up)."""
        if self._closing:
            return
        self._closing = True
        if self.state != State.ESTABLISHED:
            self.state = State.CLOSED
            self.ep._forget(self)

    # -- frames in -------------------------------------------------------------------------

    def _rx_window(self) -> int:
        buffered = len(self._rx) + len(self._ooo)
        return max(0, self.cfg.window - buffered)

    def _frame(self, type: int, now: float, *, seq: int | None = None,
               payload: bytes = b"") -> bytes:
        c = self.counters
        c["frames_out"] += 1
        self._last_out = now
        if type != FrameType.SYN:
            self._ack_due = None
            self._ack_now = False
            self._unacked_in = 0
        return encode(self.peer, self.ep.mac, type=type, channel=self.channel,
                      epoch=self.epoch, peer_epoch=self.peer_epoch,
                      seq=self.snd_nxt if seq is None else seq, ack=self.rcv_nxt,
                      window=self._rx_window(), sack=self._sack_bits(), payload=payload)

    def _sack_bits(self) -> int:
        if not self._ooo:
            return 0
        bits, base = 0, self.rcv_nxt + 1
        for s in self._ooo:
            d = _diff(s, base)
            if 0 <= d < _SACK_BITS:
                bits |= 1 << d
        return bits

    def _receive(self, h, payload: bytes, now: float) -> str | None:
        """One frame of this session; a drop reason or None."""
        t = h.type
        if t == FrameType.SYN:
            if self.state in (State.ESTABLISHED, State.FIN_WAIT):
                if h.epoch == self.peer_epoch:
                    self.counters["frames_in"] += 1
                    self._syn_ack_again = True  # the peer missed our SYN_ACK
                    return None
                if h.epoch in self._seen_epochs:
                    return "stale_epoch"        # a late SYN of an earlier incarnation
                self._end(now, "peer_restarts")  # a new epoch: the peer restarted
                if self.state == State.CLOSED:
                    return None
            self.counters["frames_in"] += 1
            self.state = State.SYN_RCVD
            self._peer_epoch_is(h.epoch)
            self._set_window(h, force=True)
            self._last_in = now
            self._ctl_due = now                 # answer with SYN_ACK at the next poll
            self._ctl_tries = 0
            return None
        if t == FrameType.RST:
            if h.peer_epoch != self.epoch:
                return "stale_epoch"
            self.counters["frames_in"] += 1
            if self.state == State.FIN_WAIT:
                self._finish()
                return None
            if self.state in (State.ESTABLISHED, State.SYN_RCVD):
                self._end(now, "peer_restarts")
            # In SYN_SENT: the peer has not opened the channel (yet); the SYN timer retries.
            return None
        # Every other type belongs to an incarnation both sides know.
        if h.peer_epoch != self.epoch:
            return "stale_epoch"
        if t == FrameType.SYN_ACK:
            if self.peer_epoch and h.epoch != self.peer_epoch:
                if self.state == State.ESTABLISHED:
                    return "stale_epoch"
            self.counters["frames_in"] += 1
            fresh = h.epoch != self.peer_epoch
            self._peer_epoch_is(h.epoch)
            if self.state in (State.SYN_SENT, State.SYN_RCVD):
                self._established(now)
            self._ack_now = True                # completes the peer's handshake
            self._last_in = now
            self._set_window(h, force=fresh)
            return None
        if h.epoch != self.peer_epoch:
            return "stale_epoch"
        self._last_in = now
        self.counters["frames_in"] += 1
        if self.state == State.SYN_RCVD:
            self._established(now)
        elif self.state == State.SYN_SENT:
            return "state"
        self._set_window(h)
        drop = self._ack(h, now)
        if t == FrameType.DATA:
            return self._data(h.seq, payload, now)
        if t == FrameType.KEEPALIVE:
            self._ack_now = True
        elif t == FrameType.FIN:
            if h.seq != self.rcv_nxt:
                self._ack_now = True
                return "out_of_window" if _diff(h.seq, self.rcv_nxt) > 0 else "duplicate"
            self.eof = True
            # The peer closed: what we still had to send is lost (counted; the channel's
            # flush / close raise NcpReset).
            self.counters["bytes_discarded"] += self._flight + self._queued
            self._queue.clear()
            self._queued = 0
            frame = self._frame(FrameType.FIN_ACK, now)
            self.ep._send(frame)
            self._finish()
        elif t == FrameType.FIN_ACK:
            if self.state == State.FIN_WAIT:
                self._finish()
        return drop

    def _peer_epoch_is(self, epoch: int) -> None:
        self.peer_epoch = epoch
        if epoch not in self._seen_epochs:
            self._seen_epochs.append(epoch)

    def _set_window(self, h, force: bool = False) -> None:
        """The peer's advertised window from ``h`` unless an older frame (reordered)
        carries it: RFC 9293's SND.WL1/SND.WL2 rule on (seq, ack)."""
        d = _diff(h.seq, self._wl1)
        if force or d > 0 or (d == 0 and _diff(h.ack, self._wl2) >= 0):
            self._peer_window = h.window
            self._wl1, self._wl2 = h.seq, h.ack

    def _established(self, now: float) -> None:
        self.state = State.ESTABLISHED
        self.generation += 1
        self._ctl_due = None
        self._ctl_tries = 0

    def _finish(self) -> None:
        self.state = State.CLOSED
        self._ctl_due = None
        self.ep._forget(self)

    def _ack(self, h, now: float) -> str | None:
        a = h.ack
        d = _diff(a, self.snd_una)
        if d < 0 or _diff(a, self.snd_nxt) > 0:
            return None if d < 0 else "bad_ack"  # an old ACK is harmless; one ahead is not
        out = self._out
        if d > 0:
            s = self.snd_una
            sample = None
            for _ in range(d):
                o = out.pop(s, None)
                if o is not None:
                    self._flight -= len(o.payload)
                    if not o.retransmitted:
                        sample = now - o.sent
                s = (s + 1) & _M32
            self.snd_una = a
            if self._high_sack and _diff(self._high_sack, a) < 0:
                self._high_sack = 0
            if sample is not None:
                self.rto.sample(sample)
            else:
                self.rto.reset_backoff()
        bits = h.sack
        if bits and out:
            base = (a + 1) & _M32
            while bits:
                low = bits & -bits
                s = (base + low.bit_length() - 1) & _M32
                o = out.get(s)
                if o is not None and not o.sacked:
                    o.sacked = True
                    self._sack_new = True
                    if self._high_sack == 0 or _diff(s, self._high_sack) > 0:
                        self._high_sack = s
                bits ^= low
        return None

    def _data(self, seq: int, payload: bytes, now: float) -> str | None:
        d = _diff(seq, self.rcv_nxt)
        if d < 0:
            self._ack_now = True                # tell the sender again
            return "duplicate"
        if d >= self.cfg.window - len(self._rx):   # beyond what we advertised can fit
            self._ack_now = True
            return "out_of_window"
        if d > 0:
            if seq in self._ooo:
                return "duplicate"
            self._ooo[seq] = payload
            self._ack_now = True                # a gap: acknowledge at once
            return None
        self._deliver(payload)
        nxt = (seq + 1) & _M32
        ooo = self._ooo
        while nxt in ooo:
            self._deliver(ooo.pop(nxt))
            nxt = (nxt + 1) & _M32
        self.rcv_nxt = nxt
        self._unacked_in += 1
        if self._unacked_in >= self.cfg.ack_every or ooo:
            self._ack_now = True
        elif self._ack_due is None:
            self._ack_due = now + self.cfg.ack_delay
        return None

    def _deliver(self, payload: bytes) -> None:
        self.counters["data_in"] += 1
        if payload:
            self._rx.append(payload)
            self._rx_bytes += len(payload)
            self.counters["bytes_in"] += len(payload)

    # -- frames out ------------------------------------------------------------------------

    def _poll(self, now: float, out: list[bytes]) -> None:
        st = self.state
        if st == State.CLOSED:
            return
        cfg = self.cfg
        if st in (State.ESTABLISHED, State.FIN_WAIT) and now - self._last_in >= cfg.dead_after:
            self._end(now, "peer_timeouts")
            st = self.state
            if st == State.CLOSED:
                return
        if st in (State.SYN_SENT, State.SYN_RCVD, State.FIN_WAIT):
            if self._ctl_due is not None and now >= self._ctl_due:
                kind = {State.SYN_SENT: FrameType.SYN, State.SYN_RCVD: FrameType.SYN_ACK,
                        State.FIN_WAIT: FrameType.FIN}[st]
                out.append(self._frame(kind, now, seq=self._fin_seq))
                self._ctl_tries += 1
                wait = min(cfg.rto_initial * (2 ** min(self._ctl_tries - 1, 8)), cfg.rto_max)
                self._ctl_due = now + wait
            if st != State.FIN_WAIT:
                return
        if self._syn_ack_again:
            self._syn_ack_again = False
            out.append(self._frame(FrameType.SYN_ACK, now))
        if st == State.ESTABLISHED:
            self._poll_data(now, out)
            if self._closing and not self._queue and not self._out:
                self.state = State.FIN_WAIT
                self._fin_seq = self.snd_nxt
                out.append(self._frame(FrameType.FIN, now, seq=self._fin_seq))
                self._ctl_tries = 1
                self._ctl_due = now + cfg.rto_initial
        if self._ack_now or (self._ack_due is not None and now >= self._ack_due):
            self.counters["acks_out"] += 1
            out.append(self._frame(FrameType.ACK, now))
        elif st == State.ESTABLISHED and now - self._last_out >= cfg.keepalive:
            self.counters["keepalives_out"] += 1
            out.append(self._frame(FrameType.KEEPALIVE, now))

    def _poll_data(self, now: float, out: list[bytes]) -> None:
        c = self.counters
        outs = self._out
        rto = self.rto.rto
        # Fast retransmit, when new SACK bits came: a frame with DUP_THRESH later frames
        # selectively acknowledged, not retransmitted yet (or longer ago than the RTO).
        if self._sack_new and self._high_sack and outs:
            self._sack_new = False
            s = self.snd_una
            while _diff(self._high_sack, s) >= _DUP_THRESH:
                o = outs.get(s)
                if o is not None and not o.sacked and (not o.retransmitted
                                                       or now - o.sent >= rto):
                    o.sent, o.retransmitted = now, True
                    c["retransmits"] += 1
                    c["fast_retransmits"] += 1
                    out.append(self._frame(FrameType.DATA, now, seq=s, payload=o.payload))
                s = (s + 1) & _M32
        # The retransmission timer, on the oldest frame in flight.
        first = outs.get(self.snd_una)
        if first is not None and now - first.sent >= rto:
            first.sent, first.retransmitted = now, True
            c["retransmits"] += 1
            c["timeouts"] += 1
            self.rto.backoff()
            out.append(self._frame(FrameType.DATA, now, seq=self.snd_una,
                                   payload=first.payload))
        # New data within the window.
        queue = self._queue
        while queue and self._window_room():
            p = queue.popleft()
            self._queued -= len(p)
            seq = self.snd_nxt
            outs[seq] = _Out(p, now)
            self._flight += len(p)
            out.append(self._frame(FrameType.DATA, now, seq=seq, payload=p))
            self.snd_nxt = (seq + 1) & _M32
            c["data_out"] += 1
            c["bytes_out"] += len(p)

    def _window_room(self) -> bool:
        """Whether one more DATA frame fits the send window (one always may when nothing is
        in flight, which probes a zero window)."""
        window = min(self.cfg.window, self._peer_window) or (0 if self._out else 1)
        return _diff(self.snd_nxt, self.snd_una) < window

    def _deadline(self) -> float | None:
        st = self.state
        if st == State.CLOSED:
            return None
        times = []
        if self._ctl_due is not None and st != State.ESTABLISHED:
            times.append(self._ctl_due)
        if self._ack_now or self._syn_ack_again or (
                self._queue and st == State.ESTABLISHED and self._window_room()):
            return 0.0
        if self._ack_due is not None:
            times.append(self._ack_due)
        if st in (State.ESTABLISHED, State.FIN_WAIT):
            times.append(self._last_in + self.cfg.dead_after)
            if st == State.ESTABLISHED:
                times.append(self._last_out + self.cfg.keepalive)
            first = self._out.get(self.snd_una)
            if first is not None:
                times.append(first.sent + self.rto.rto)
        return min(times, default=None)


class NcpEndpoint:
    """The NCP of one station (one MAC address on one link): its sessions, their frames.

    Parameters
    ----------
    mac : bytes
        This station's 6-byte MAC address; frames to another unicast address are dropped.
    config : NcpConfig, optional
    rng : random.Random, optional
        Draws the epochs (default: a generator seeded from the OS).

    Use: :meth:`open` a session per (peer, channel); give every frame that arrives to
    :meth:`receive`; send what :meth:`poll` returns; call :meth:`poll` again by
    :meth:`next_deadline`.

    Members
    -------
    drops : dict[str, int]
        Frames dropped, by reason (:data:`DROP_REASONS`).
    rsts_out : int
        RSTs sent for frames of no open session.
    """

    def __init__(self, mac: bytes, config: NcpConfig | None = None,
                 rng: random.Random | None = None):
        if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
            raise NcpError(f"a MAC address is 6 bytes, not {mac!r}")
        self.mac = bytes(mac)
        self.config = config or NcpConfig()
        self._rng = rng or random.Random()
        self.sessions: dict[tuple[bytes, int], NcpSession] = {}
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self.rsts_out = 0
        self._pending: list[bytes] = []
        self.on_change: Callable[[], None] | None = None

    def _new_epoch(self) -> int:
        return self._rng.randrange(1, 1 << 32)

    def open(self, peer_mac: bytes, channel: int, now: float) -> NcpSession:
        """A session to ``peer_mac`` on ``channel`` (0 to 65535); it sends SYN at the next
        :meth:`poll` and also accepts the peer's SYN."""
        if not isinstance(peer_mac, (bytes, bytearray)) or len(peer_mac) != 6:
            raise NcpError(f"a peer MAC address is 6 bytes, not {peer_mac!r}")
        if peer_mac[0] & 1:
            raise NcpError("the peer MAC address must be unicast")
        if isinstance(channel, bool) or not isinstance(channel, int) \
                or not 0 <= channel <= 0xFFFF:
            raise NcpError(f"channel must be from 0 to 65535, not {channel!r}")
        key = (bytes(peer_mac), channel)
        old = self.sessions.get(key)
        if old is not None and old.state != State.CLOSED:
            raise NcpError(f"channel {channel} to {peer_mac.hex(':')} is already open")
        s = NcpSession(self, key[0], channel, now)
        self.sessions[key] = s
        return s

    def _forget(self, s: NcpSession) -> None:
        if self.sessions.get((s.peer, s.channel)) is s:
            del self.sessions[(s.peer, s.channel)]

    def _send(self, frame: bytes) -> None:
        self._pending.append(frame)

    def receive(self, frame: bytes, now: float) -> None:
        """One frame from the link. Never raises: a bad or unwanted frame is counted in
        :attr:`drops`."""
        got = decode(frame)
        if isinstance(got, str):
            self.drops[got] += 1
            return
        if frame[0:6] != self.mac:
            self.drops["not_for_us"] += 1
            return
        h, payload = got
        peer = bytes(frame[6:12])
        s = self.sessions.get((peer, h.channel))
        if s is None:
            self.drops["unknown_session"] += 1
            if h.type not in (FrameType.RST, FrameType.FIN_ACK) and not peer[0] & 1:
                self.rsts_out += 1
                self._pending.append(encode(peer, self.mac, type=FrameType.RST,
                                            channel=h.channel, epoch=0, peer_epoch=h.epoch,
                                            seq=0, ack=0, window=0))
            return
        reason = s._receive(h, payload, now)
        if reason is not None:
            self.drops[reason] += 1

    def poll(self, now: float) -> list[bytes]:
        """The frames to send now (control, data, retransmissions, acknowledgements)."""
        out, self._pending = self._pending, []
        for s in list(self.sessions.values()):
            s._poll(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has timed work (0.0: now), or None."""
        if self._pending:
            return 0.0
        times = [t for t in (s._deadline() for s in self.sessions.values()) if t is not None]
        return min(times, default=None)

    def counters(self) -> dict[str, object]:
        return {"drops": dict(self.drops), "rsts_out": self.rsts_out,
                "sessions": {f"{p.hex(':')}/{c}": dict(s.counters, state=s.state,
                                                        generation=s.generation)
                             for (p, c), s in self.sessions.items()}}
