# Ref: RFC 9293 3.10.7.4 (fifth check: the ACK field), RFC 6298 (RTT samples, Karn),
#      RFC 7323 4 (RTTM from TSecr), RFC 5681 / RFC 6582 (duplicate ACKs, fast retransmit,
#      NewReno partial ACKs), RFC 6675 (SACK DupAck, IsLost, RecoveryPoint), RFC 3042
#      (limited transmit).
"""ACK processing and loss recovery of :class:`~hetnic.host.stack.tcp.TcpConnection`: what
an acceptable ACK does to the send side (SND.UNA, the window, the RTT estimate, congestion
control), duplicate ACKs, limited transmit, and entering, driving and leaving fast recovery
(SACK-based when both sides agreed on SACK, NewReno otherwise).

:class:`TcpRecovery` is a mixin without state of its own (``__slots__ = ()``). Congestion
control changes ``cwnd``/``ssthresh`` only through the
:class:`~hetnic.host.stack.congestion.CongestionControl` methods; NewReno's window
inflation during recovery is this connection's own ``_inflate``, added where the window is
used.
"""

from __future__ import annotations

from .tcp_output import CLOSING, FIN_WAIT_1, FIN_WAIT_2, INF, LAST_ACK
from .tcp_segment import ACK, FIN, PSH, seq_gt

__all__ = ["TcpRecovery"]

_M = 0xFFFFFFFF
_HALF = 0x80000000


class TcpRecovery:
    """ACK processing and loss recovery of a TCP connection (a mixin of ``TcpConnection``)."""

    __slots__ = ()

    def _process_ack(self, seg, seq: int, ack: int, plen: int, now: float) -> None:
        una = self.snd_una
        sb = self._sb
        new_sack = False
        if sb is not None and (seg.sack_blocks or sb.sacked_bytes):
            new_sack = sb.update(ack if ((ack - una) & _M) < _HALF else una, seg.sack_blocks,
                                 self.snd_max) > 0
        # Window update (RFC 9293 3.10.7.4: SND.UNA =< SEG.ACK, then the SND.WL1/SND.WL2
        # rule; an old ACK RFC 5961 still accepts never moves the window).
        wl1 = self.snd_wl1
        old_wnd = self.snd_wnd
        if ((ack - una) & _M) < _HALF and (
                ((wl1 - seq) & _M) >= _HALF
                or (wl1 == seq and ((ack - self.snd_wl2) & _M) < _HALF)):
            wnd = seg.window << self._snd_shift
            self.snd_wnd = wnd
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if wnd and not old_wnd:
                self._persist_n = 0
        if ack != una and ((ack - una) & _M) < _HALF:
            self._on_new_ack(seg.ts_ecr, ack, now)
            return
        if ack != una or plen or seg.flags & FIN or self.snd_max == una:
            return
        # A duplicate ACK: RFC 5681 (same window) or, with SACK, new SACK information.
        if sb is not None:
            if not new_sack:
                return
        elif self.snd_wnd != old_wnd:
            return
        self._persist_n = 0
        self._dupacks += 1
        if self._in_recovery:
            if sb is None:
                self._inflate += self._smss
        elif seq_gt(una, self._recover) and (
                self._dupacks >= 3 or (sb is not None and sb.is_lost(una, self._smss))):
            self._enter_recovery(now)
        elif self._dupacks < 3:
            self._limited_transmit(now)

    def _limited_transmit(self, now: float) -> None:
        """RFC 3042: on the first two duplicate ACKs send one new segment each, past cwnd but
        within the peer's window, so a small window still yields three duplicate ACKs."""
        una = self.snd_una
        nxt = self.snd_nxt
        off = (nxt - una) & _M
        avail = len(self.sndbuf) - off
        mss = self._smss - self._sack_room() if self._ooo else self._smss
        n = min(mss, avail, self.snd_wnd - off)
        if n <= 0 or (n < mss and n < avail):
            return
        self._send_data(nxt, off, n, ACK | PSH if n == avail else ACK, now)
        self.snd_nxt = (nxt + n) & _M

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit and enter fast recovery (RFC 6675 5 step 4 / RFC 6582 3.2)."""
        una = self.snd_una
        mss = self._smss
        self._in_recovery = True
        self._recover = self.snd_max
        self.cc.on_enter_recovery((self.snd_max - una) & _M, now)
        self.layer.counters.tcp_fast_retransmits += 1
        self._rtt_seq = None
        sent = self._retransmit(una, mss, now)
        self._high_rxt = (una + sent) & _M
        if self._sb is None:
            self._inflate = 3 * mss
        self._t_rtx = now + self.rto.rto

    def _on_new_ack(self, ecr: int | None, ack: int, now: float) -> None:
        """SND.UNA advances to ``ack``: free acked bytes, take an RTT sample (from ``ecr``,
        the segment's TSecr, when timestamps are on), drive recovery and congestion control,
        re-arm the timer, and move on when our FIN is acked."""
        una = self.snd_una
        acked = (ack - una) & _M
        buf = self.sndbuf
        buffered = len(buf._data) - buf._head      # len(buf) without the __len__ call
        fin_acked = acked > buffered
        buf.consume(buffered if fin_acked else acked)
        self.snd_una = ack
        if ((self.snd_nxt - ack) & _M) >= _HALF:
            self.snd_nxt = ack
        self._retries = 0
        self._persist_n = 0
        rtt = None
        if self.ts_ok:
            if ecr:
                sample = ((int(now * 1000.0) + self._ts_off - ecr) & _M)
                if sample < 600000:
                    rtt = sample / 1000.0
        elif self._rtt_seq is not None and ((ack - self._rtt_seq) & _M) < _HALF:
            rtt = now - self._rtt_time
            self._rtt_seq = None
        if rtt is not None:
            self.rto.sample(rtt)
        if self._in_recovery:
            if ((ack - self._recover) & _M) < _HALF:
                self._in_recovery = False
                self._inflate = 0
                self._dupacks = 0
                self.cc.on_exit_recovery(now)
            else:
                self.cc.on_ack(acked, now, rtt, True)
                if self._sb is None:
                    # NewReno partial ACK (RFC 6582 3.2 step 5): resend the next hole,
                    # deflate by what was acked, add back one SMSS.
                    self._retransmit(ack, self._smss, now)
                    self._inflate -= acked
                    if acked >= self._smss:
                        self._inflate += self._smss
        else:
            self._dupacks = 0
            self.cc.on_ack(acked, now, rtt, False)
        self._t_rtx = INF if ack == self.snd_max else now + self.rto.rto
        if fin_acked:
            self._fin_acked = True
            st = self.state
            if st == FIN_WAIT_1:
                self.state = FIN_WAIT_2
                if self._closed_by_app:
                    self._t_close = now + self.cfg.fin_wait2_timeout
            elif st == CLOSING:
                self._enter_time_wait(now)
            elif st == LAST_ACK:
                self._release()
                return
        self.layer.notify(self)
