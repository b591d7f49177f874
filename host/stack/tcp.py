# Ref: RFC 9293 (TCP), RFC 5961 (blind in-window attacks), RFC 7323 (window scale,
#      timestamps, PAWS), RFC 2018 / RFC 6675 (SACK and SACK-based recovery), RFC 5681 /
#      RFC 6582 (congestion control, NewReno), RFC 6298 (retransmission timer), RFC 1122
#      (delayed ACK, Nagle, SWS avoidance, keepalive), RFC 2525 (RST on close with data).
"""One TCP connection: the RFC 9293 state machine with its buffers, timers and options.

:class:`TcpConnection` is sans-I/O. Segments come in already parsed (a
:class:`~hetnic.host.stack.tcp_segment.TcpSegment` whose checksum was verified) through
:meth:`TcpConnection.input`; time comes in as ``now`` (seconds on any monotonic clock) through
``input``, :meth:`TcpConnection.on_timer` and the ``layer.now`` of the owning layer; segments
go out as finished bytes through ``layer.send_segment``. The receive path lives in
:mod:`.tcp_input`, ACK processing and loss recovery in :mod:`.tcp_recovery`, the send path
and the timers in :mod:`.tcp_output`; this module holds the configuration, the opening and
the application's side (send, recv, shutdown, close).

The ``layer`` (the demultiplexer, :mod:`.tcp_layer`) provides:

- ``send_segment(conn, segment: bytes)``: send ``conn.local -> conn.remote``, protocol TCP;
- ``schedule(conn)``: ``conn.deadline`` changed (called on every change, also to ``None``);
- ``notify(conn)``: something the application cares about changed (connected, readable,
  writable, EOF, error, closed);
- ``released(conn)``: the connection entered CLOSED for good: remove it (exactly once);
- ``counters``: the instance's :class:`~hetnic.host.stack.counters.StackCounters`;
- ``challenge_ack_allowed(now) -> bool``: the RFC 5961 section 7 rate limit;
- ``now``: the latest time the layer saw (used by the application-side calls, which take no
  time argument of their own).

Two optional short cuts, set by the real layer on each connection it creates: ``_tx``
(``tx(segment, now)``, the IP output for this connection's addresses, instead of
``send_segment``) and, for IPv4, ``_ip4`` (the IP layer, whose prebuilt path lets the send
side build whole Ethernet frames, :meth:`TcpOutput._ip_refresh`). Without them (a test's fake
layer) every segment goes through ``send_segment``.
"""

from __future__ import annotations

import dataclasses

from hetnic.protocol import IpProto

from .checksum import pseudo_sum
from .congestion import make_congestion
from .rto import RtoEstimator
from .sack import SackScoreboard
from .tcp_buffers import ReceiveBuffer, SendBuffer
from .tcp_input import TcpInput
from .tcp_recovery import TcpRecovery
from .tcp_output import (CLOSE_WAIT, CLOSED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, INF,
                         LAST_ACK, STATES, SYN_RECEIVED, SYN_SENT, TIME_WAIT, TcpOutput,
                         window_shift)
from .tcp_segment import ACK, DEFAULT_MSS, RST, TS_WORD, TcpSegment

__all__ = ["TcpConfig", "TcpConnection", "STATES"]

_PROTO_TCP = int(IpProto.TCP)
_TS_OPTION_LEN = 12     # NOP NOP TS: taken from the MSS of every segment when timestamps are on


@dataclasses.dataclass(frozen=True)
class TcpConfig:
    """The per-connection knobs, taken from the instance
    (:meth:`~hetnic.host.stack.instance.InstanceConfig.tcp_config`). These defaults are the
    instance's too (:class:`~hetnic.host.stack.instance.InstanceConfig` takes them from here).

    Members
    -------
    mss : int
        The largest segment payload the link allows (MTU - IP - 20); sent as our MSS option
        and the cap of what we send.
    sndbuf, rcvbuf : int
        Send and receive buffer sizes in bytes; ``rcvbuf`` also picks our window shift.
    congestion : str
        ``"newreno"`` or ``"cubic"``.
    initial_window : int
        Initial congestion window in segments.
    nagle, delayed_ack : bool
    delayed_ack_timeout : float
        Seconds an ACK may be held (at most every second full segment is held).
    min_rto, max_rto : float
    max_retries : int
        Retransmission timeouts (or unanswered zero-window probes) before error "timeout".
    syn_retries : int
        SYN (or SYN-ACK) retransmissions before error "timeout". The default, 7, keeps a
        connect trying for about three minutes with the default RTOs (1 s doubling, capped
        at 60 s), which RFC 1122 4.2.3.5 asks of a SYN.
    sack, timestamps, window_scale : bool
        Offer (and accept) these options.
    keepalive : (float, float, int) or None
        ``(idle, interval, count)``.
    time_wait : float
        Seconds in TIME-WAIT (2 MSL).
    fin_wait2_timeout : float
        Seconds a connection the application has closed waits in FIN-WAIT-2 for the peer's FIN.
    """

    mss: int = 1460
    sndbuf: int = 256 * 1024
    rcvbuf: int = 256 * 1024
    congestion: str = "newreno"
    initial_window: int = 10
    nagle: bool = True
    delayed_ack: bool = True
    delayed_ack_timeout: float = 0.04
    min_rto: float = 0.2
    max_rto: float = 60.0
    max_retries: int = 8
    syn_retries: int = 7
    sack: bool = True
    timestamps: bool = True
    window_scale: bool = True
    keepalive: tuple[float, float, int] | None = None
    time_wait: float = 60.0
    fin_wait2_timeout: float = 60.0


class TcpConnection(TcpInput, TcpRecovery, TcpOutput):
    """One TCP connection (RFC 9293), from the first SYN to its release.

    Parameters
    ----------
    layer
        The owner (see the module docstring for what it provides).
    cfg : TcpConfig
    local, remote : bytes
        IP addresses, 4 or 16 bytes (both of one family).
    lport, rport : int
    now : float

    Members
    -------
    state : str
        An RFC 9293 state name (:data:`STATES`).
    error : str or None
        ``"reset"``, ``"refused"`` or ``"timeout"`` once the connection failed.
    deadline : float or None
        The earliest time :meth:`on_timer` has work to do.
    readable : int
        Bytes the application can :meth:`recv` now.
    writable : int
        Bytes :meth:`send` accepts now (0 after :meth:`shutdown` or in a state that cannot
        send).
    eof : bool
        The peer's FIN has been received (every byte before it is readable or read).
    connected : bool
        The handshake completed (ESTABLISHED was reached).
    """

    __slots__ = (
        "layer", "cfg", "local", "lport", "remote", "rport", "state", "error", "connected",
        "eof", "_released", "_csum", "_csum_ts", "_pseudo", "_tx", "_ip4", "_ip_gen", "_eth",
        "_ip_sum", "_ip_tail",
        # send sequence space
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "max_snd_wnd",
        "_fin_queued", "_fin_acked", "_closed_by_app", "sndbuf",
        # receive sequence space
        "irs", "rcv_nxt", "_rcv_adv", "rcvbuf", "_fin_seq_in", "_rcv_unacked", "_rmss",
        "_ack_now", "_sws_thresh", "_last_ack_sent", "_ooo",
        # options
        "_smss", "_peer_mss", "_snd_shift", "_rcv_shift", "ws_ok", "ts_ok", "sack_ok",
        "_ts_recent", "_ts_off", "_passive",
        # congestion control and recovery
        "cc", "rto", "_sb", "_in_recovery", "_recover", "_dupacks", "_inflate", "_high_rxt",
        "_rtt_seq", "_rtt_time", "retransmits", "_retries",
        # timers
        "_t_rtx", "_t_delack", "_t_persist", "_t_keep", "_t_close", "_persist_n", "_keep_n",
        "_keep_at", "_probe_at", "_probe_miss",
        "_last_rx", "_sched", "_syn_deferred", "soft_error",
    )

    def __init__(self, layer, cfg: TcpConfig, local: bytes, lport: int, remote: bytes,
                 rport: int, now: float):
        self.layer = layer
        self.cfg = cfg
        self.local = local
        self.lport = lport
        self.remote = remote
        self.rport = rport
        self.state = CLOSED
        self.error: str | None = None
        self.connected = False
        self.eof = False
        self._released = False
        # The checksum's fixed part: pseudo-header (its length is added per segment) and
        # ports; for the usual 32-byte header also the data offset and the NOP NOP TS word.
        self._pseudo = pseudo_sum(local, remote, _PROTO_TCP, 0)
        self._csum = self._pseudo + lport + rport
        # The layer may set a direct path to the IP output, called as ``tx(segment, now)``.
        self._tx = None
        # For IPv4 the layer may also set the IP layer, whose prebuilt path lets the send side
        # build whole frames (see TcpOutput._ip_refresh).
        self._ip4 = None
        self._ip_gen = -1
        self._eth = b""
        self._ip_tail = b""
        self._ip_sum = 0
        self._csum_ts = self._csum + 0x8000 + 32 + TS_WORD
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = 0
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_snd_wnd = 0
        self._fin_queued = self._fin_acked = self._closed_by_app = False
        self.sndbuf = SendBuffer(cfg.sndbuf)
        self.irs = self.rcv_nxt = self._rcv_adv = 0
        self.rcvbuf = ReceiveBuffer(cfg.rcvbuf)
        self._fin_seq_in: int | None = None
        self._rcv_unacked = 0
        self._ack_now = False
        self._ooo = False
        self._last_ack_sent = 0
        default_mss = DEFAULT_MSS[len(remote)]
        self._peer_mss = default_mss
        self._smss = min(cfg.mss, default_mss)
        self._rmss = min(cfg.mss, default_mss)
        self._sws_thresh = min(cfg.rcvbuf // 2, cfg.mss)
        self._snd_shift = self._rcv_shift = 0
        self.ws_ok = self.ts_ok = self.sack_ok = False
        self._ts_recent = 0
        self._ts_off = 0                        # set from the ISS: TSval starts unguessable
        self._passive = False
        self.cc = make_congestion(cfg.congestion, cfg.mss, cfg.initial_window)
        self.rto = RtoEstimator(min_rto=cfg.min_rto, max_rto=cfg.max_rto)
        self._sb: SackScoreboard | None = None
        self._in_recovery = False
        self._recover = 0
        self._dupacks = 0
        self._inflate = 0
        self._high_rxt = 0
        self._rtt_seq: int | None = None
        self._rtt_time = 0.0
        self.retransmits = 0
        self._retries = 0
        self._t_rtx = self._t_delack = self._t_persist = self._t_keep = self._t_close = INF
        self._persist_n = self._keep_n = 0
        self._keep_at = 0.0
        self._probe_at = 0.0                    # when the last zero-window probe went out
        self._probe_miss = 0                    # zero-window probes in a row unanswered
        self._last_rx = now
        self._sched: float | None = None
        self._syn_deferred = False
        self.soft_error: str | None = None

    # --- opening ---------------------------------------------------------------------------

    def open_active(self, iss: int, now: float, *, defer: bool = False) -> None:
        """Send our SYN (CLOSED -> SYN-SENT).

        With ``defer`` the SYN is not sent now but by the first :meth:`on_timer` (its timer is
        due at ``now``): for an owner whose ``now`` is not a real time yet (a stack that has
        not polled), so the SYN's timestamp, RTT start and retransmission timer all come from
        the first real time rather than from a stale one."""
        self._set_iss(iss)
        self.state = SYN_SENT
        self._rtt_time = now
        if defer:
            self._syn_deferred = True
            self._t_rtx = now
        else:
            self._send_syn(now)
            self._t_rtx = now + self.rto.rto
        self._reschedule()

    def open_passive(self, syn: TcpSegment, iss: int, now: float) -> None:
        """Answer a listener's ``syn`` with our SYN-ACK (LISTEN -> SYN-RECEIVED).

        Data on the SYN is not taken (counted ``"tcp_syn_data"``): the SYN-ACK acknowledges
        the SYN only, so the peer sends the data again once the handshake is done (what a
        stack without TCP Fast Open does; nothing is held for a peer not yet verified)."""
        if syn.payload:
            self.layer.counters.drop("tcp_syn_data")
        self._passive = True
        self._set_iss(iss)
        self._take_syn(syn, now)
        self.state = SYN_RECEIVED
        self._rtt_time = now
        self._send_syn(now)
        self._t_rtx = now + self.rto.rto
        self._reschedule()

    def _set_iss(self, iss: int) -> None:
        """Our ISS, with the send sequence space (our SYN unacknowledged) and the timestamp
        offset derived from it (TSval starts unguessable)."""
        self.iss = self.snd_una = iss
        self.snd_nxt = self.snd_max = (iss + 1) & 0xFFFFFFFF
        self._recover = iss
        self._ts_off = (iss * 0x9E3779B1) & 0xFFFFFFFF

    def open_from_cookie(self, ack: TcpSegment, iss: int, mss: int, now: float) -> None:
        """Start ESTABLISHED from the ACK that returned a valid SYN cookie.

        ``iss`` is the cookie (our ISN), ``mss`` the MSS it encoded. Window scaling, SACK and
        timestamps are off: the cookie cannot carry them. The ACK's data, if any, is
        delivered.
        """
        self._passive = True
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = (iss + 1) & 0xFFFFFFFF
        self._recover = self.snd_una
        self.irs = (ack.seq - 1) & 0xFFFFFFFF
        self.rcv_nxt = self._last_ack_sent = ack.seq
        self._peer_mss = mss
        self._smss = self._rmss = min(self.cfg.mss, mss)
        self.cc = make_congestion(self.cfg.congestion, self._smss, self.cfg.initial_window)
        self._rcv_adv = (self.rcv_nxt + min(self.rcvbuf.window, 0xFFFF)) & 0xFFFFFFFF
        self.snd_wnd = self.max_snd_wnd = ack.window
        self.snd_wl1 = (ack.seq - 1) & 0xFFFFFFFF
        self.snd_wl2 = ack.ack
        self._established(now)
        self.input(ack, now)

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS and the options both sides agree on (RFC 7323, 2018)."""
        cfg = self.cfg
        self.irs = syn.seq
        self.rcv_nxt = self._last_ack_sent = (syn.seq + 1) & 0xFFFFFFFF
        if syn.mss is not None:
            self._peer_mss = max(syn.mss, 64)
        self.ws_ok = cfg.window_scale and syn.wscale is not None
        if self.ws_ok:
            self._snd_shift = syn.wscale
            self._rcv_shift = window_shift(cfg.rcvbuf)
        else:
            self._snd_shift = self._rcv_shift = 0
        self.ts_ok = cfg.timestamps and syn.ts_val is not None
        if self.ts_ok:
            self._ts_recent = syn.ts_val
        self.sack_ok = cfg.sack and syn.sack_permitted
        mss = min(cfg.mss, self._peer_mss)
        if self.ts_ok:
            mss -= _TS_OPTION_LEN
        self._smss = self._rmss = mss
        self.cc = make_congestion(cfg.congestion, mss, cfg.initial_window)
        self._rcv_adv = (self.rcv_nxt + min(self.rcvbuf.window, 0xFFFF)) & 0xFFFFFFFF
        self._sb = SackScoreboard() if self.sack_ok else None
        # The window of a SYN is never scaled (RFC 7323 2.2).
        self.snd_wnd = self.max_snd_wnd = syn.window
        self.snd_wl1 = syn.seq
        self._last_rx = now

    def _established(self, now: float) -> None:
        self.state = ESTABLISHED
        self.connected = True
        self._retries = 0
        keep = self.cfg.keepalive
        if keep is not None:
            self._t_keep = now + keep[0]
        if self._fin_queued:            # shutdown() while the handshake was under way
            self.state = FIN_WAIT_1
        self.layer.notify(self)

    # --- the application's side ------------------------------------------------------------

    @property
    def readable(self) -> int:
        return self.rcvbuf.readable

    @property
    def writable(self) -> int:
        if self._fin_queued or self.state not in _WRITABLE_STATES:
            return 0
        return self.sndbuf.free

    @property
    def deadline(self) -> float | None:
        d = min(self._t_rtx, self._t_delack, self._t_persist, self._t_keep, self._t_close)
        return None if d == INF else d

    def send(self, data: bytes) -> int:
        """Queue ``data``; returns how many bytes were taken (up to :attr:`writable`).
        Segments go out at once as far as the windows and Nagle allow."""
        if self._fin_queued or self.state not in _WRITABLE_STATES:
            return 0
        n = self.sndbuf.write(data)
        if n and self.state not in (SYN_SENT, SYN_RECEIVED):
            now = self.layer.now
            self._output(now)
            self._reschedule()
        return n

    def recv(self, n: int = 65536) -> bytes:
        """Up to ``n`` in-order bytes (``b""`` when none is readable). Reading may open the
        window enough to send a window update (RFC 1122 4.2.3.3)."""
        data = self.rcvbuf.read(n)
        if data and self.state in _RECEIVING_STATES:
            # Receiver SWS avoidance: announce the freed space once it is worth a segment
            # and the window the peer knows is under half of it (a bulk flow's own ACKs
            # carry the updates otherwise).
            cur = (self._rcv_adv - self.rcv_nxt) & 0xFFFFFFFF
            if cur >= 0x80000000:
                cur = 0
            # Only what the window field can carry counts (65535 << the scale: without
            # window scaling a larger buffer would ask for an update on every read).
            free = min(self.rcvbuf.window, 0xFFFF << self._rcv_shift)
            if free - cur >= self._sws_thresh and free >= 2 * cur:
                self._send_ack(self.layer.now)
                self._reschedule()
        return data

    def shutdown(self) -> None:
        """Close the write side: a FIN follows the queued data; receiving goes on."""
        st = self.state
        if self._fin_queued or st in (CLOSED, TIME_WAIT):
            return
        self._fin_queued = True                 # in SYN-SENT/-RECEIVED: once established
        if st == ESTABLISHED:
            self.state = FIN_WAIT_1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        if self.state not in (SYN_SENT, SYN_RECEIVED):
            now = self.layer.now
            self._output(now)
            self._reschedule()
        self.layer.notify(self)

    def close(self) -> None:
        """Close both directions. Unread received data makes it an abort (RST, RFC 2525);
        otherwise a FIN follows the queued data and data that arrives later is answered with
        an RST."""
        if self.state == CLOSED:
            return
        if self.rcvbuf.readable:
            self.abort()
            return
        if self.state == SYN_SENT:              # the peer knows nothing yet (RFC 9293 3.10.4)
            self._release()
            return
        self._closed_by_app = True
        self.shutdown()
        if self.state == FIN_WAIT_2:
            self._t_close = self.layer.now + self.cfg.fin_wait2_timeout
            self._reschedule()

    def abort(self) -> None:
        """Release the connection at once, with an RST (SEQ = SND.MAX, past anything sent
        even after an RTO rewound SND.NXT) in the states RFC 9293 3.10.5 names
        (SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2, CLOSE-WAIT); in SYN-SENT, CLOSING,
        LAST-ACK and TIME-WAIT the connection is just deleted."""
        st = self.state
        if st == CLOSED:
            return
        if st in _RST_ON_ABORT:
            self._emit(self.snd_max, RST | ACK, b"", b"", self.layer.now)
        self._release()

    def icmp_error(self, kind: str, seq: int) -> None:
        """An ICMP error (``kind``, an :data:`~hetnic.host.stack.icmp.ERROR_KINDS` string)
        about our segment of sequence number ``seq``.

        RFC 5927 4.1: ignored (counted ``"icmp_tcp_bad_seq"``) unless ``seq`` is within
        [SND.UNA, SND.MAX]. A hard error (RFC 1122 4.2.3.9: port or protocol unreachable)
        aborts a connection still opening: in SYN-SENT with error ``"refused"`` (port
        unreachable) or ``"unreachable"``, a half-open passive one is released. Otherwise
        (soft errors, and hard errors in synchronized states as RFC 5927 section 5.2
        advises, Linux's choice too) it is only recorded in :attr:`soft_error`.
        """
        una = self.snd_una
        if ((seq - una) & 0xFFFFFFFF) > ((self.snd_max - una) & 0xFFFFFFFF):
            self.layer.counters.drop("icmp_tcp_bad_seq")
            return
        st = self.state
        hard = kind in ("port_unreachable", "protocol_unreachable")
        if hard and st == SYN_SENT:
            self.soft_error = kind
            self._fail("refused" if kind == "port_unreachable" else "unreachable")
        elif hard and st == SYN_RECEIVED and self._passive:
            self.soft_error = kind
            self._release()
        elif st != CLOSED:
            self.soft_error = kind
            self.layer.notify(self)

    def info(self) -> dict:
        """A snapshot for dumps: state, cwnd, ssthresh, srtt, rto, sequence variables,
        queues, retransmits, recovery and the negotiated options."""
        return {
            "state": self.state, "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh,
            "srtt": self.rto.srtt, "rto": self.rto.rto, "snd_una": self.snd_una,
            "snd_nxt": self.snd_nxt, "rcv_nxt": self.rcv_nxt, "snd_wnd": self.snd_wnd,
            "rcv_wnd": self.rcvbuf.window, "send_queue": len(self.sndbuf),
            "recv_queue": self.rcvbuf.readable, "retransmits": self.retransmits,
            "in_recovery": self._in_recovery, "sack": self.sack_ok,
            "wscale": (self._snd_shift, self._rcv_shift) if self.ws_ok else None,
            "ts": self.ts_ok, "mss": self._smss, "error": self.error,
            "soft_error": self.soft_error,
        }

    def __repr__(self) -> str:
        return (f"TcpConnection({self.lport}->{self.rport} {self.state}"
                f" una={self.snd_una} nxt={self.snd_nxt} rcv={self.rcv_nxt})")


_WRITABLE_STATES = frozenset((SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT))
_RECEIVING_STATES = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))
_RST_ON_ABORT = frozenset((SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT))
