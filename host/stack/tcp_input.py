# Ref: RFC 9293 3.10.7 (segment arrives), RFC 5961 (challenge ACKs), RFC 7323 (PAWS,
#      TS.Recent), RFC 2018 (SACK blocks we send), RFC 1122 4.2.3.2 (delayed ACK),
#      RFC 2525 (RST for data after close).
"""The receive side of :class:`~hetnic.host.stack.tcp.TcpConnection`: RFC 9293's "segment
arrives" in its order (sequence check with PAWS, RST, SYN, ACK, data, FIN; what the ACK does
to the send side is :mod:`.tcp_recovery`'s), with a short path for the segments a transfer
is made of (in-order data, and a pure ACK that advances SND.UNA) that skips the checks they
cannot fail.

:class:`TcpInput` is a mixin without state of its own (``__slots__ = ()``). A segment never
raises: what cannot be used is dropped and counted on ``layer.counters`` by reason
(``tcp_paws``, ``tcp_old_duplicate``, ``tcp_out_of_window``, ``tcp_bad_ack``, ...).
"""

from __future__ import annotations

from .tcp_output import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, INF,
                         SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from .tcp_segment import ACK, FIN, RST, SYN, URG, seq_gt, seq_le, seq_lt

__all__ = ["TcpInput"]

_M = 0xFFFFFFFF
_HALF = 0x80000000

_RECEIVING = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))
_FAST_MASK = SYN | FIN | RST | URG | ACK


class TcpInput:
    """Receive path of a TCP connection (a mixin of ``TcpConnection``)."""

    __slots__ = ()

    def input(self, seg, now: float) -> None:
        """Process one received segment of this connection (checksum already verified)."""
        self._last_rx = now
        st = self.state
        if seg.flags & _FAST_MASK == ACK and not seg.sack_blocks \
                and self.input_fast(seg.seq, seg.ack, seg.window, seg.ts_val, seg.ts_ecr,
                                    seg.payload, now):
            return
        if self.ts_ok and seg.ts_val is None and not seg.flags & RST and st != SYN_SENT:
            # RFC 7323 3.2: timestamps were agreed, so a segment without one is dropped.
            self.layer.counters.drop("tcp_missing_ts")
            return
        if st == SYN_SENT:
            self._input_syn_sent(seg, now)
        elif st != CLOSED:
            self._input_synchronized(seg, now)
        if self.state != CLOSED:
            self._reschedule()

    # --- the short path --------------------------------------------------------------------

    def input_fast(self, seq: int, ack: int, window: int, tv: int | None, ecr: int | None,
                   payload: bytes, now: float) -> bool:
        """The short path, for the segments a transfer is made of: in-order data (that may
        also advance SND.UNA), or a pure ACK advancing SND.UNA, in ESTABLISHED with no
        SACK/FIN/recovery business. The caller checked that the flags are ACK (PSH allowed)
        and that no SACK blocks came (the layer calls it directly for segments whose only
        option is a timestamp, with the checksum verified). Returns True if the segment was
        processed; False, having changed nothing (but the time of the last segment heard), to
        take the full path (:meth:`input`)."""
        if self.state != ESTABLISHED or seq != self.rcv_nxt or self._in_recovery:
            return False
        self._last_rx = now
        ts_ok = self.ts_ok
        if ts_ok and (tv is None or ((tv - self._ts_recent) & _M) >= _HALF):
            return False
        una = self.snd_una
        if payload:
            if self._ooo or self._closed_by_app or self._fin_seq_in is not None:
                return False                    # (a FIN beyond a gap waits for this data)
            if ack != una:
                # Data that also acknowledges ours (both directions busy).
                if ((ack - una) & _M) > ((self.snd_max - una) & _M) or self._dupacks:
                    return False
                if ts_ok and seq == self._last_ack_sent:
                    self._ts_recent = tv
                self._fast_window(seq, window, ack)
                self._on_new_ack(ecr, ack, now)
                self._output(now)
            elif (window << self._snd_shift) != self.snd_wnd:
                return False                    # a window change without new data acked
            elif ts_ok and seq == self._last_ack_sent:
                self._ts_recent = tv
            n = len(payload)
            rb = self.rcvbuf
            if not rb._starts and n <= rb.capacity - len(rb._data):
                # ReceiveBuffer.insert's common case, inline: the next bytes, all fit,
                # nothing out of order.
                rb._data += payload
                rb._base += n
                got = n
            else:
                got = rb.insert(0, payload)
            if got != n:                        # trimmed to the buffer: ACK at once
                if not got:
                    self.layer.counters.drop("tcp_zero_window")
                self.rcv_nxt = (self.rcv_nxt + got) & _M
                self._ack_now = True
            else:
                self.rcv_nxt = (self.rcv_nxt + n) & _M
                self._delay_ack(n, now)
            if self._ack_now:
                self._emit(self.snd_nxt, ACK, b"", b"", now)
            self.layer.notify(self)
            self._reschedule()
            return True
        # Pure ACK.
        if ack == una or ((ack - una) & _M) > ((self.snd_max - una) & _M) or self._dupacks:
            return False
        if ts_ok and seq == self._last_ack_sent:
            self._ts_recent = tv
        # _fast_window, inline for the pure ACKs of a bulk sender.
        wnd = window << self._snd_shift
        self.snd_wnd = wnd
        if wnd > self.max_snd_wnd:
            self.max_snd_wnd = wnd
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        sb = self._sb
        if sb is not None and sb._starts:      # (sacked_bytes > 0, without two calls)
            sb.update(ack, ())
        self._on_new_ack(ecr, ack, now)
        sndbuf = self.sndbuf
        if self._fin_queued or \
                ((self.snd_nxt - self.snd_una) & _M) < len(sndbuf._data) - sndbuf._head:
            self._output(now)
        else:
            # Nothing unsent (an application-limited sender): all _output would do is
            # this (the retransmission timer was set by _on_new_ack).
            self._t_persist = INF
        self._reschedule()
        return True

    def _fast_window(self, seq: int, window: int, ack: int) -> None:
        """The window update of a short-path segment (its SEQ is RCV.NXT, so the SND.WL1/WL2
        test passes) and the scoreboard's cumulative point."""
        wnd = window << self._snd_shift
        self.snd_wnd = wnd
        if wnd > self.max_snd_wnd:
            self.max_snd_wnd = wnd
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        sb = self._sb
        if sb is not None and sb._starts:      # (sacked_bytes > 0, without two calls)
            sb.update(ack, ())

    # --- SYN-SENT --------------------------------------------------------------------------

    def _input_syn_sent(self, seg, now: float) -> None:
        flags = seg.flags
        counters = self.layer.counters
        ack_ok = False
        if flags & ACK:
            ack = seg.ack
            if seq_le(ack, self.iss) or seq_gt(ack, self.snd_max):
                # ack <= ISS or ack > SND.NXT: not for this connection attempt.
                if not flags & RST:
                    self._emit(ack, RST, b"", b"", now)
                counters.drop("tcp_bad_ack")
                return
            ack_ok = True
        if flags & RST:
            if ack_ok:
                self._fail("refused")
            else:
                counters.drop("tcp_rst_without_ack")
            return
        if not flags & SYN:
            counters.drop("tcp_no_syn")
            return
        self._take_syn(seg, now)
        if ack_ok:
            self.snd_una = seg.ack
            self.snd_wl2 = seg.ack
            if self._retries == 0:
                self.rto.sample(now - self._rtt_time)
            self._t_rtx = INF
            self._established(now)
            # RFC 9293 3.10.7.3: text on the SYN-ACK is processed as in ESTABLISHED (it is
            # in order: it starts at RCV.NXT = IRS + 1). (SYN with FIN never gets here: the
            # parser drops it, "tcp_syn_fin".)
            if seg.payload:
                self._deliver(seg.payload, 0, len(seg.payload), now)
            self._send_ack(now)
            self._output(now)
        else:
            # Simultaneous open (RFC 9293 figure 7): our SYN is answered by SYN-ACKs. Data
            # on the SYN is not taken (our SYN-ACK acknowledges the SYN only: the peer
            # sends it again once synchronized).
            if seg.payload:
                counters.drop("tcp_syn_data")
            self.state = SYN_RECEIVED
            self._send_syn(now)

    # --- synchronized states (and SYN-RECEIVED) --------------------------------------------

    def _input_synchronized(self, seg, now: float) -> None:
        flags = seg.flags
        seq = seg.seq
        st = self.state
        counters = self.layer.counters
        syn = flags & SYN
        if st == SYN_RECEIVED and syn and seq == self.irs:
            if not flags & ACK:                 # the peer's SYN again: our SYN-ACK was lost
                self._send_syn(now)
                return
            seq = (seq + 1) & _M                # simultaneous open: the SYN-ACK's ACK counts
            syn = 0
        payload = seg.payload
        plen = len(payload)
        fin = flags & FIN
        seglen = plen + (1 if syn else 0) + fin
        # R1: PAWS (RFC 7323 5.3).
        tv = seg.ts_val
        if self.ts_ok and tv is not None and not flags & RST \
                and ((tv - self._ts_recent) & _M) >= _HALF:
            counters.drop("tcp_paws")
            self._send_ack(now)
            return
        # R2: is the segment acceptable? (RFC 9293 3.10.7.4, first check)
        rcv_nxt = self.rcv_nxt
        wnd = (self._rcv_adv - rcv_nxt) & _M
        if wnd >= _HALF:
            wnd = 0
        d = ((seq - rcv_nxt + _HALF) & _M) - _HALF
        if seglen == 0:
            # RFC 9293 asks d < wnd; an empty segment exactly at the right edge is what a
            # sender that filled our window sends as its ACKs (Linux does, and accepts it
            # too): its ACK field must not be lost.
            ok = 0 <= d <= wnd
        elif wnd == 0:
            ok = d == 0                         # only its ACK/RST can be taken
            if ok and (plen or fin):
                counters.drop("tcp_zero_window")
                payload = b""
                plen = fin = 0
                self._ack_now = True
        else:
            ok = 0 <= d < wnd or 0 <= d + seglen - 1 < wnd
        if not ok:
            if flags & RST:
                counters.drop("tcp_rst_out_of_window")
                return
            if d + seglen <= 0:
                # Old duplicates; a zero-length one just below RCV.NXT is a keepalive or a
                # window probe, answered and not counted as a drop.
                if seglen or d != -1:
                    counters.drop("tcp_old_duplicate")
                if st == TIME_WAIT and fin:
                    self._t_close = now + self.cfg.time_wait
            else:
                counters.drop("tcp_out_of_window")
            if st == SYN_RECEIVED:
                self._send_syn(now)
            else:
                self._send_ack(now)
            return
        # Trim what is already received (the part before RCV.NXT).
        if d < 0:
            if syn:
                syn = 0
                d += 1
            if d < 0:
                cut = -d
                payload = payload[cut:]
                plen = len(payload)
            d = 0
        # R3: RST (RFC 5961 3.2: exact match resets, in-window gets a challenge ACK).
        if flags & RST:
            if seq == rcv_nxt:
                self._on_reset()
            else:
                counters.drop("tcp_rst_in_window")
                self._challenge_ack(now)
            return
        # R4: SYN in a synchronized state (RFC 5961 4.2).
        if syn:
            if st == SYN_RECEIVED and self._passive:
                self._release()                 # back to LISTEN: the listener stays
                return
            counters.drop("tcp_syn_in_window")
            self._challenge_ack(now)
            return
        # R5: ACK.
        if not flags & ACK:
            counters.drop("tcp_no_ack")
            return
        ack = seg.ack
        una = self.snd_una
        if st == SYN_RECEIVED:
            a = (ack - una) & _M
            if a == 0 or a > ((self.snd_max - una) & _M):
                counters.drop("tcp_bad_ack")
                self._emit(ack, RST, b"", b"", now)
                return
            self.snd_una = ack
            self.snd_wnd = seg.window << self._snd_shift
            if self.snd_wnd > self.max_snd_wnd:
                self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self._t_rtx = INF
            if self._retries == 0:
                self.rto.sample(now - self._rtt_time)
            self._established(now)
            st = self.state
            una = ack
        else:
            # RFC 5961 5.2: acceptable ACKs are in [SND.UNA - MAX.SND.WND, SND.MAX].
            if seq_gt(ack, self.snd_max) \
                    or (seq_lt(ack, una) and ((una - ack) & _M) > self.max_snd_wnd):
                counters.drop("tcp_bad_ack")
                self._challenge_ack(now)
                return
            self._process_ack(seg, seq, ack, plen, now)
            if self.state == CLOSED:
                return
            st = self.state
        # RFC 7323 4.3 (and 5.3 R3): TS.Recent moves only for a segment that passed every
        # check above (PAWS, window, RST, SYN, ACK) and starts at or before Last.ACK.sent.
        if tv is not None and self.ts_ok and seq_le(seq, self._last_ack_sent):
            self._ts_recent = tv
        # R7: data.
        if plen and st in _RECEIVING:
            if self._closed_by_app:
                counters.drop("tcp_data_after_close")
                self.abort()                    # RFC 9293 3.10.7.4 / RFC 2525
                return
            self._deliver(payload, d, plen, now)
        # R8: FIN (processed once every byte before it has arrived).
        if fin and self._fin_seq_in is None:
            self._fin_seq_in = (seg.seq + (1 if flags & SYN else 0) + len(seg.payload)) & _M
        if self._fin_seq_in is not None and self.rcv_nxt == self._fin_seq_in and not self.eof:
            self._on_fin(now)
        elif fin and not self.eof:
            self._ack_now = True                # a FIN beyond a gap: a duplicate ACK now
        elif st == TIME_WAIT and fin:
            self._ack_now = True
            self._t_close = now + self.cfg.time_wait
        self._output(now)                       # (it returns at once in other states)
        if self._ack_now:
            self._send_ack(now)

    def _challenge_ack(self, now: float) -> None:
        if self.layer.challenge_ack_allowed(now):
            self.layer.counters.tcp_challenge_acks += 1
            self._send_ack(now)
        else:
            self.layer.counters.drop("tcp_challenge_ack_limited")

    def _on_reset(self) -> None:
        """An acceptable RST (RFC 9293 3.10.7.4 second check)."""
        st = self.state
        if st == SYN_RECEIVED:
            if not self._passive:
                self.error = "refused"
        elif st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.error = "reset"
        self._release()

    # --- data and FIN ----------------------------------------------------------------------

    def _deliver(self, payload: bytes, offset: int, plen: int, now: float) -> None:
        rb = self.rcvbuf
        if offset:
            drops = rb.ooo_drops
            rb.insert(offset, payload)
            if rb.ooo_drops != drops:
                # The out-of-order store is at its limit: dropped (resent by the peer);
                # what is held is still SACKed.
                self.layer.counters.drop("tcp_ooo_limit")
            self._ooo = True
            self._ack_now = True                # out of order: a duplicate ACK with SACK now
            return
        got = rb.insert(offset, payload)
        if got:
            self.rcv_nxt = (self.rcv_nxt + got) & _M
            self.layer.notify(self)
        if got != plen or self._ooo:
            self._ack_now = True                # filled (part of) a hole, or trimmed
            return
        self._delay_ack(plen, now)

    def _delay_ack(self, n: int, now: float) -> None:
        """``n`` new in-order bytes arrived (none trimmed, no hole filled): ACK at once
        without delayed ACK, else at every second full-sized segment (RFC 1122 4.2.3.2,
        RFC 5681 4.2: the largest segment seen stands for the peer's MSS) or when the
        delayed-ACK timer fires."""
        if not self.cfg.delayed_ack:
            self._ack_now = True
            return
        if n > self._rmss:
            self._rmss = n
        unacked = self._rcv_unacked + n
        self._rcv_unacked = unacked
        if unacked >= 2 * self._rmss:
            self._ack_now = True
        elif self._t_delack == INF:
            self._t_delack = now + self.cfg.delayed_ack_timeout

    def _on_fin(self, now: float) -> None:
        self.rcv_nxt = (self.rcv_nxt + 1) & _M
        self.eof = True
        self._ack_now = True
        st = self.state
        if st in (ESTABLISHED, SYN_RECEIVED):
            self.state = CLOSE_WAIT
        elif st == FIN_WAIT_1:
            if self._fin_acked:
                self._enter_time_wait(now)
            else:
                self.state = CLOSING
        elif st == FIN_WAIT_2:
            self._enter_time_wait(now)
        self.layer.notify(self)

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self._t_rtx = self._t_persist = self._t_keep = INF
        self._t_close = now + self.cfg.time_wait
