# Ref: RFC 9293 3.7-3.8 (sending, retransmission), RFC 6298 (RTO), RFC 6675 (SACK-based
#      recovery: pipe, NextSeg, HighRxt), RFC 6582 (NewReno), RFC 1122 4.2.3 (Nagle, SWS
#      avoidance, delayed ACK, zero-window probes, keepalive), RFC 7323 (timestamps).
"""The send side of :class:`~hetnic.host.stack.tcp.TcpConnection`: building segments, the
send loop (windows, Nagle, sender SWS avoidance, SACK recovery) and the timers.

:class:`TcpOutput` is a mixin without state of its own (``__slots__ = ()``); every attribute
it uses is declared by ``TcpConnection``. Segments are built here rather than with
:func:`~hetnic.host.stack.tcp_segment.build_tcp`: the ports and the pseudo-header sum are
fixed per connection, so a data segment costs one ``struct`` pack, one ``int.from_bytes`` of
the payload for the checksum, and one concatenation. Over IPv4, once the neighbour is
resolved, the pack covers the Ethernet and IPv4 headers too (the IP layer's prebuilt path,
valid while its generation stays the same), and the frame goes straight to the interface's
output list.
"""

from __future__ import annotations

import struct

from hetnic.protocol import IpProto

from .checksum import folded
from .ipv4 import DEFAULT_TTL
from .tcp_segment import (ACK, FIN, MAX_WSCALE, PSH, SYN, TS_WORD, sack_option, syn_options,
                          ts_option)

__all__ = ["TcpOutput", "INF", "STATES", "window_shift"]

INF = float("inf")
_M = 0xFFFFFFFF
_HALF = 0x80000000
# sport dport seq ack offset flags window csum urg
_HDR = struct.Struct("!HHIIBBHHH")
# ... + NOP NOP TS(8) len(10) val ecr: the option area of nearly every segment (RFC 7323 A)
_HDR_TS = struct.Struct("!HHIIBBHHHBBBBII")
_from_bytes = int.from_bytes
_PROTO_TCP = int(IpProto.TCP)
_DF = 0x4000            # IPv4 don't-fragment: the IP layer sets it on TCP
# A whole Ethernet + IPv4 + TCP-with-timestamp header in one pack, the fields that never
# change per connection grouped: Ethernet header with version/IHL and TOS; total length, id;
# flags+offset, TTL, protocol; header checksum; addresses and ports; seq, ack, offset,
# flags, window, checksum, urgent; NOP NOP kind 8 length 10; TSval, TSecr.
_FRAME = struct.Struct("!16sHH4sH12sIIBBHHH4sII")
_IP_MID = struct.pack("!HBB", _DF, DEFAULT_TTL, _PROTO_TCP)
_TS_KIND = TS_WORD.to_bytes(4, "big")
_PORTS = struct.Struct("!HH")

CLOSED = "CLOSED"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSE_WAIT = "CLOSE-WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST-ACK"
TIME_WAIT = "TIME-WAIT"

#: The RFC 9293 state names a connection takes (LISTEN belongs to listeners).
STATES = (CLOSED, SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT,
          CLOSING, LAST_ACK, TIME_WAIT)

# States whose send loop runs (data, or a FIN to send or retransmit).
_SEND_STATES = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK))


def window_shift(rcvbuf: int) -> int:
    """The smallest shift that lets ``rcvbuf`` be advertised in 16 bits (RFC 7323 2.3)."""
    shift = 0
    while (rcvbuf >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


class TcpOutput:
    """Send path and timers of a TCP connection (a mixin of ``TcpConnection``)."""

    __slots__ = ()

    # --- segments --------------------------------------------------------------------------

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000.0) + self._ts_off) & _M

    def _sack_room(self) -> int:
        """Option bytes SACK blocks may take on our segments while out-of-order data waits:
        data segments shrink by this much then, so header + options + data fit the MTU."""
        if not self.sack_ok:
            return 0
        return 28 if self.ts_ok else 36         # NOP NOP SACK: 3 blocks beside TS, else 4

    def _emit(self, seq: int, flags: int, payload: bytes, options: bytes, now: float) -> None:
        """Build one segment (ACK field, window, timestamps, SACK blocks added here) and hand
        it to the layer. ``options`` is used as given on a SYN; otherwise it must be empty."""
        if flags & ACK:
            ack = self.rcv_nxt
            self._last_ack_sent = ack
            self._ack_now = False
            self._rcv_unacked = 0
            self._t_delack = INF
        else:
            ack = 0
        if flags & SYN:
            win = self.rcvbuf.window
            if win > 0xFFFF:
                win = 0xFFFF
        else:
            # The window, with receiver SWS avoidance (RFC 1122 4.2.3.3): the right edge
            # moves only by at least min(rcvbuf/2, MSS), and never moves left.
            rcv_nxt = self.rcv_nxt
            shift = self._rcv_shift
            cur = (self._rcv_adv - rcv_nxt) & _M
            if cur >= _HALF:
                cur = 0
            rb = self.rcvbuf
            free = rb.capacity - len(rb._data)  # rcvbuf.window without the property call
            if free < 0:
                free = 0
            if free - cur >= self._sws_thresh:
                win = free >> shift
            else:
                win = (cur + (1 << shift) - 1) >> shift
            if win > 0xFFFF:
                win = 0xFFFF
            self._rcv_adv = (rcv_nxt + (win << shift)) & _M
            if self._ooo and flags & ACK:
                # (3 blocks fit beside a timestamp option, else 4)
                blocks = (self.rcvbuf.sack_blocks(rcv_nxt, 3 if self.ts_ok else 4)
                          if self.sack_ok else None)
                if blocks:
                    options = sack_option(blocks)
                    if self.ts_ok:
                        options = ts_option(self._ts_now(now), self._ts_recent) + options
                else:
                    self._ooo = False
            if not options and self.ts_ok:
                val = (int(now * 1000.0) + self._ts_off) & _M
                ecr = self._ts_recent
                n = len(payload)
                total = self._csum_ts + seq + ack + flags + win + n + val + ecr
                if n:
                    value = folded(payload)
                    total += value << 8 if n & 1 else value
                total %= 0xFFFF
                csum = 0xFFFF - total if total else 0
                layer = self.layer
                counters = layer.counters
                counters.tcp_out += 1
                ip = self._ip4
                if ip is not None and (ip.gen == self._ip_gen or self._ip_refresh(ip)):
                    # The whole frame in one pack (Ethernet + IPv4 + TCP): the MSS keeps
                    # it within the MTU, so no fragmenting is ever needed.
                    size = 52 + n
                    ident = ip.ident = (ip.ident + 1) & 0xFFFF
                    s = self._ip_sum + size + ident
                    s = (s & 0xFFFF) + (s >> 16)
                    s = (s & 0xFFFF) + (s >> 16)
                    frame = _FRAME.pack(self._eth, size, ident, _IP_MID, 0xFFFF - s,
                                        self._ip_tail, seq, ack, 0x80, flags, win, csum, 0,
                                        _TS_KIND, val, ecr)
                    counters.ip_out += 1
                    counters.frames_out += 1
                    ip._out.append(frame + payload if n else frame)
                    return
                hdr = _HDR_TS.pack(self.lport, self.rport, seq, ack, 0x80, flags, win,
                                   csum, 0, 1, 1, 8, 10, val, ecr)
                tx = self._tx
                if tx is None:
                    layer.send_segment(self, hdr + payload if n else hdr)
                else:
                    tx(hdr + payload if n else hdr, now)
                return
        hl = 20 + len(options)
        n = len(payload)
        total = self._csum + seq + ack + ((hl << 10) | flags) + win + hl + n
        if options:
            total += _from_bytes(options, "big")
        if n:
            value = folded(payload)
            total += value << 8 if n & 1 else value
        total %= 0xFFFF
        hdr = _HDR.pack(self.lport, self.rport, seq, ack, hl << 2, flags, win,
                        0xFFFF - total if total else 0, 0)
        self.layer.counters.tcp_out += 1
        tx = self._tx
        if tx is None:
            self.layer.send_segment(self, b"".join((hdr, options, payload)))
        else:
            tx(b"".join((hdr, options, payload)), now)

    def _ip_refresh(self, ip) -> bool:
        """Take the IPv4 path of this connection's frames from the IP layer (False while the
        neighbour is unresolved: the segment takes the IP layer's own path)."""
        path = ip.tcp_path(self.local, self.remote)
        if path is None:
            return False
        eth, fixed = path
        self._eth = eth + b"\x45\x00"          # + version/IHL and TOS
        self._ip_tail = self.local + self.remote + _PORTS.pack(self.lport, self.rport)
        self._ip_sum = fixed
        self._ip_gen = ip.gen
        return True

    def _send_syn(self, now: float) -> None:
        """Our SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), with the options to offer/accept."""
        cfg = self.cfg
        if self.state == SYN_SENT:
            opts = syn_options(cfg.mss, window_shift(cfg.rcvbuf) if cfg.window_scale else None,
                               cfg.sack, (self._ts_now(now), 0) if cfg.timestamps else None)
            self._emit(self.iss, SYN, b"", opts, now)
        else:
            opts = syn_options(cfg.mss, self._rcv_shift if self.ws_ok else None, self.sack_ok,
                               (self._ts_now(now), self._ts_recent) if self.ts_ok else None)
            self._emit(self.iss, SYN | ACK, b"", opts, now)

    def _send_ack(self, now: float) -> None:
        self._emit(self.snd_nxt, ACK, b"", b"", now)

    # --- the send loop ---------------------------------------------------------------------

    def _send_data(self, seq: int, off: int, n: int, flags: int, now: float) -> None:
        """Send ``n`` bytes at ``off`` from SND.UNA as sequence ``seq`` (a retransmission if
        it starts below SND.MAX); track the RTT sample (Karn) and SND.MAX."""
        payload = self.sndbuf.peek(off, n) if n else b""
        end = (seq + n + (flags & FIN)) & _M
        if ((seq - self.snd_max) & _M) >= _HALF:
            self.retransmits += 1
            self.layer.counters.tcp_retransmits += 1
            self._rtt_seq = None
        elif self._rtt_seq is None and not self.ts_ok:
            self._rtt_seq = end
            self._rtt_time = now
        self._emit(seq, flags, payload, b"", now)
        if ((end - self.snd_max - 1) & _M) < _HALF - 1:
            self.snd_max = end

    def _output(self, now: float, force: bool = False) -> None:
        """Send what the windows allow: new or rewound data, then the FIN; arm the
        retransmission or persist timer. ``force`` overrides Nagle and sender SWS avoidance
        for one segment (persist timer, RTO)."""
        if self.state not in _SEND_STATES:
            return
        if self._in_recovery and self._sb is not None:
            self._sack_output(now)
        else:
            una = self.snd_una
            snd_buf = self.sndbuf
            buffered = len(snd_buf._data) - snd_buf._head   # len(sndbuf), no __len__ call
            off = (self.snd_nxt - una) & _M
            cwnd = self.cc.cwnd + self._inflate
            wnd = self.snd_wnd
            if cwnd < wnd:
                wnd = cwnd
            mss = self._smss - self._sack_room() if self._ooo else self._smss
            nagle = self.cfg.nagle
            ts_ok = self.ts_ok
            peek = self.sndbuf.peek
            while off < buffered:
                room = wnd - off
                if room <= 0:
                    break
                avail = buffered - off
                n = mss if mss < avail else avail
                if room < n:
                    n = room
                if n < mss and not force:
                    if n < avail:
                        # Cut by the window: wait for half the largest window seen (sender
                        # SWS avoidance, RFC 1122 4.2.3.4); the persist timer overrides.
                        if n < (self.max_snd_wnd >> 1):
                            break
                    elif nagle and off and not self._fin_queued:
                        break                   # Nagle; a closing side pushes its tail
                force = False
                if n == avail:
                    flags = ACK | PSH | FIN if self._fin_queued else ACK | PSH
                else:
                    flags = ACK
                seq = (una + off) & _M
                if ts_ok and ((seq - self.snd_max) & _M) < _HALF:
                    # New data with timestamps (the RTT comes from TSecr): _send_data inline.
                    self._emit(seq, flags, peek(off, n), b"", now)
                    self.snd_max = (seq + n + (flags & FIN)) & _M
                else:
                    self._send_data(seq, off, n, flags, now)
                off += n + (flags & FIN)
            else:
                if self._fin_queued and off == buffered and not self._fin_acked:
                    self._send_data((una + off) & _M, off, 0, ACK | FIN, now)
                    off += 1
            self.snd_nxt = (una + off) & _M
        if self.snd_max != self.snd_una:        # _arm_send_timers' usual case, inline
            if self._t_rtx == INF:
                self._t_rtx = now + self.rto.rto
            self._t_persist = INF
        else:
            self._arm_send_timers(now)

    def _arm_send_timers(self, now: float) -> None:
        if self.snd_max != self.snd_una:
            if self._t_rtx == INF:
                self._t_rtx = now + self.rto.rto
            self._t_persist = INF
        elif len(self.sndbuf):
            # Data waits on the peer's window with nothing in flight: probe it.
            if self._t_persist == INF:
                self._t_persist = now + self._persist_interval()
        else:
            self._t_persist = INF

    def _persist_interval(self) -> float:
        """The persist timer's interval: the RTO backed off per probe sent, at most max_rto."""
        return min(self.rto.rto * (1 << min(self._persist_n, 16)), self.cfg.max_rto)

    def _retransmit(self, seq: int, n: int, now: float) -> int:
        """Resend up to ``n`` bytes (capped at the MSS) starting at ``seq``; the FIN if
        ``seq`` is its sequence number. Returns the sequence space sent (0: nothing)."""
        una = self.snd_una
        off = (seq - una) & _M
        if off >= _HALF:
            return 0
        avail = len(self.sndbuf) - off
        fin_sent = self._fin_queued and not self._fin_acked and \
            ((self.snd_max - una) & _M) > len(self.sndbuf)
        if avail <= 0:
            if fin_sent and avail == 0:
                self._send_data(seq, off, 0, ACK | FIN, now)
                return 1
            return 0
        mss = self._smss - self._sack_room() if self._ooo else self._smss
        if n > mss:
            n = mss
        if n >= avail:
            n = avail
            flags = ACK | PSH | FIN if fin_sent else ACK | PSH
        else:
            flags = ACK
        self._send_data(seq, off, n, flags, now)
        return n + (flags & FIN)

    def _sack_output(self, now: float) -> None:
        """RFC 6675 section 5 step (C): while cwnd - pipe >= SMSS, send NextSeg()."""
        sb = self._sb
        mss = self._smss
        una = self.snd_una
        cc = self.cc
        for _ in range(1024):               # bounded: each round sends or stops
            nxt = self.snd_nxt
            high_rxt = self._high_rxt
            if cc.cwnd - sb.pipe(una, nxt, high_rxt, mss) < mss:
                break
            off = (nxt - una) & _M
            buffered = len(self.sndbuf)
            new = min(buffered - off, self.snd_wnd - off)
            hole = sb.next_seg(una, nxt, mss, high_rxt, new_data=new if new > 0 else 0)
            if hole is None:
                break
            seq, n = hole
            if seq == nxt:                  # rule 2: new data
                if self._ooo:
                    n = min(n, mss - self._sack_room())
                flags = ACK | PSH if n == buffered - off else ACK
                self._send_data(nxt, off, n, flags, now)
                self.snd_nxt = (nxt + n) & _M
                continue
            sent = self._retransmit(seq, n, now)
            if not sent:
                break
            self._high_rxt = (seq + sent) & _M

    # --- timers ----------------------------------------------------------------------------

    def _reschedule(self) -> None:
        d = min(self._t_rtx, self._t_delack, self._t_persist, self._t_keep, self._t_close)
        if d == INF:
            d = None
        if d != self._sched:
            self._sched = d
            self.layer.schedule(self)

    def on_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (a call before any is due does nothing)."""
        if self.state == CLOSED:
            return
        if self._t_close <= now:
            self._release()
            return
        if self._t_rtx <= now:
            self._on_rto(now)
        if self._t_persist <= now and self.state != CLOSED:
            self._on_persist(now)
        if self._t_keep <= now and self.state != CLOSED:
            self._on_keepalive(now)
        if self._t_delack <= now and self.state != CLOSED:
            self._send_ack(now)
        if self.state != CLOSED:
            self._reschedule()

    def _on_rto(self, now: float) -> None:
        """RFC 6298 5.4-5.7: retransmit the earliest unacknowledged segment, back off; the
        congestion window collapses; SACK state is discarded (RFC 2018 section 8)."""
        self._t_rtx = INF
        cfg = self.cfg
        counters = self.layer.counters
        if self._syn_deferred:
            # The first SYN of a connection opened before a real time was known.
            self._syn_deferred = False
            self._rtt_time = now
            self._send_syn(now)
            self._t_rtx = now + self.rto.rto
            return
        if self.state in (SYN_SENT, SYN_RECEIVED):
            if self._retries >= cfg.syn_retries:
                self._fail("timeout")
                return
            self._retries += 1
            self.retransmits += 1
            counters.tcp_rto += 1
            counters.tcp_retransmits += 1
            self.rto.backoff()
            self._send_syn(now)
            self._t_rtx = now + self.rto.rto
            return
        una = self.snd_una
        if self.snd_max == una:
            return
        if self._retries >= cfg.max_retries:
            self._fail("timeout")
            return
        self._retries += 1
        counters.tcp_rto += 1
        self.rto.backoff()
        self.cc.on_rto((self.snd_max - una) & _M, now)
        self._in_recovery = False
        self._inflate = 0
        self._dupacks = 0
        self._recover = self.snd_max
        if self._sb is not None:
            self._sb.clear()
        self._high_rxt = una
        self.snd_nxt = una
        self._rtt_seq = None
        self._output(now, force=True)

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1), or a forced send when the window is open but
        sender SWS avoidance held the data back."""
        self._t_persist = INF
        if self.snd_max != self.snd_una or not len(self.sndbuf) \
                or self.state not in _SEND_STATES:
            return
        if self.snd_wnd > 0:
            self._output(now, force=True)
            if self.snd_max != self.snd_una:
                return
        # RFC 9293 3.8.6.1 (MUST-26): a peer that answers the probes keeps the connection
        # however long its window stays closed; only probes in a row without any segment
        # back count toward the limit (the interval keeps backing off either way).
        if self._probe_miss and self._last_rx > self._probe_at:
            self._probe_miss = 0
        if self._probe_miss >= self.cfg.max_retries:
            self._fail("timeout")
            return
        self._probe_miss += 1
        self._probe_at = now
        self._persist_n += 1
        # A segment one below SND.UNA with no data: out of window for the peer, which must
        # answer with an ACK carrying its current window.
        self._emit((self.snd_una - 1) & _M, ACK, b"", b"", now)
        self._t_persist = now + self._persist_interval()

    def _on_keepalive(self, now: float) -> None:
        """RFC 1122 4.2.3.6: after ``idle`` seconds without a segment from the peer, probe
        every ``interval``; ``count`` probes unanswered give error "timeout"."""
        idle, interval, count = self.cfg.keepalive
        if self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2):
            self._t_keep = INF
            return
        idle_end = self._last_rx + idle
        if self._keep_n and self._last_rx > self._keep_at:
            self._keep_n = 0                    # the peer answered the last probe
        if self._keep_n == 0 and idle_end > now:
            self._t_keep = idle_end
            return
        if self.snd_max != self.snd_una:
            self._t_keep = now + idle        # the retransmission timer watches the peer
            return
        if self._keep_n >= count:
            self._fail("timeout")
            return
        self._keep_n += 1
        self._keep_at = now
        self._emit((self.snd_una - 1) & _M, ACK, b"", b"", now)
        self._t_keep = now + interval

    # --- the end ---------------------------------------------------------------------------

    def _fail(self, error: str) -> None:
        self.error = error
        self._release()

    def _release(self) -> None:
        """Enter CLOSED for good: stop every timer and tell the layer (exactly once)."""
        self.state = CLOSED
        self._t_rtx = self._t_delack = self._t_persist = self._t_keep = self._t_close = INF
        self._reschedule()
        if not self._released:
            self._released = True
            self.layer.released(self)
        self.layer.notify(self)
