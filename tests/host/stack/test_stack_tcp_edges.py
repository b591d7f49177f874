"""TcpConnection edge cases: zero-window probing of a live peer (RFC 9293
3.8.6.1 MUST-26), TS.Recent moved only by acceptable segments (RFC 7323 4.3 / 5.3, RFC
5961), an out-of-order FIN whose gap is filled by in-order data, abort's RST (RFC 9293
3.10.5) and the window update's SND.UNA =< SEG.ACK condition (3.10.7.4).

Crafted segments go straight to the connection (``inject``); answers are read from the
pair's trace.
"""

from __future__ import annotations

import dataclasses

import pytest
from tcp_pair import QUICK, established, inject

from hetnic.host.stack.tcp_segment import ACK, FIN, RST, SYN

pytestmark = pytest.mark.timeout(60)

# --- 1: zero-window probes --------------------------------------------------------------

def probes(pair, c):
    return [seg for _, d, seg in pair.trace if d == "ab" and not seg.payload
            and not seg.flags & (SYN | FIN | RST) and seg.seq == (c.snd_una - 1) & 0xFFFFFFFF]


def test_answered_zero_window_probes_never_time_out():
    cfg = dataclasses.replace(QUICK, rcvbuf=8192, window_scale=False, max_retries=3,
                              max_rto=1.0)
    pair, c = established(cfg)
    s = pair.server
    up = bytes(range(256)) * 160                # 40960 bytes
    sent = c.send(up)
    # The receiver does not read for a long time: its window stays closed.
    pair.advance(60.0)
    assert c.snd_wnd == 0 and s.readable == 8192
    assert len(probes(pair, c)) > 3 * cfg.max_retries
    assert c.state == "ESTABLISHED" and c.error is None
    # The window opens: the data flows to the end.
    got = bytearray()
    for _ in range(1000):
        got += s.recv()
        if sent < len(up):
            sent += c.send(up[sent:])
        if len(got) >= len(up):
            break
        pair.run(lambda: s.readable > 0, limit=30)
    assert bytes(got) == up and c.state == "ESTABLISHED"


def test_unanswered_zero_window_probes_time_out():
    cfg = dataclasses.replace(QUICK, rcvbuf=8192, window_scale=False, max_retries=3,
                              max_rto=1.0)
    pair, c = established(cfg)
    c.send(b"x" * 20000)
    pair.advance(5.0)
    assert c.snd_wnd == 0 and c.state == "ESTABLISHED"
    pair.drop = lambda direction, seg: True
    assert pair.run(lambda: c.state == "CLOSED", limit=60)
    assert c.error == "timeout"


# --- 2: TS.Recent -----------------------------------------------------------------------

def test_syn_with_a_huge_tsval_does_not_move_ts_recent():
    pair, c = established(QUICK)
    pair.drop = lambda direction, seg: True
    recent = c._ts_recent
    out = inject(pair, c, c.rcv_nxt, c.snd_una, SYN, ts=(recent + 0x7FFF0000, 0))
    assert pair.a.counters.drops["tcp_syn_in_window"] == 1 and c.state == "ESTABLISHED"
    assert out and out[0].flags == ACK                  # the challenge ACK
    assert c._ts_recent == recent
    inject(pair, c, c.rcv_nxt, c.snd_una, ACK, b"real data", ts=(recent + 10, 0))
    assert c.recv() == b"real data"
    assert pair.a.counters.drops.get("tcp_paws", 0) == 0


def test_in_window_rst_and_bad_ack_do_not_move_ts_recent():
    pair, c = established(QUICK)
    pair.drop = lambda direction, seg: True
    recent = c._ts_recent
    inject(pair, c, c.rcv_nxt + 10, 0, RST, ts=(recent + 0x7FFF0000, 0))
    assert c._ts_recent == recent and c.state == "ESTABLISHED"
    inject(pair, c, c.rcv_nxt, c.snd_una + 99999, ACK, ts=(recent + 0x7FFF0000, 0))
    assert pair.a.counters.drops["tcp_bad_ack"] == 1 and c._ts_recent == recent
    inject(pair, c, c.rcv_nxt, c.snd_una, ACK, b"ok", ts=(recent + 1, 0))
    assert c.recv() == b"ok" and c._ts_recent == recent + 1


# --- 3: out-of-order FIN ----------------------------------------------------------------

def test_fin_beyond_a_gap_is_acked_at_once_and_kept_when_the_gap_fills():
    pair, c = established()
    pair.drop = lambda direction, seg: True
    rcv = c.rcv_nxt
    out = inject(pair, c, rcv + 5, c.snd_una, ACK | FIN)
    assert len(out) == 1 and out[0].flags == ACK and out[0].ack == rcv
    assert not c.eof and c.state == "ESTABLISHED"
    out = inject(pair, c, rcv, c.snd_una, ACK, b"hello")      # the short path's kind
    assert c.eof and c.state == "CLOSE-WAIT" and c.recv() == b"hello"
    assert out and out[-1].ack == rcv + 6


def test_fin_beyond_a_gap_with_timestamps():
    pair, c = established(QUICK)
    pair.drop = lambda direction, seg: True
    rcv = c.rcv_nxt
    recent = c._ts_recent
    inject(pair, c, rcv + 5, c.snd_una, ACK | FIN, ts=(recent + 1, 0))
    inject(pair, c, rcv, c.snd_una, ACK, b"hello", ts=(recent + 2, 0))
    assert c.eof and c.state == "CLOSE-WAIT"


# --- 5: abort ---------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["CLOSING", "LAST-ACK", "TIME-WAIT"])
def test_abort_just_deletes_in_closing_states(state):
    pair, c = established()
    s = pair.server
    if state == "LAST-ACK":
        s.shutdown()
        pair.run(lambda: c.eof, limit=5)
        pair.drop = lambda direction, seg: True
        c.shutdown()
    elif state == "CLOSING":
        pair.drop = lambda direction, seg: True
        c.shutdown()
        s.shutdown()
        pair.drop = lambda direction, seg: direction == "ab"
        pair.run(lambda: c.state == "CLOSING", limit=5)
    else:
        c.shutdown()
        pair.run(lambda: c.state == "FIN-WAIT-2", limit=5)
        s.shutdown()
        pair.run(lambda: c.state == "TIME-WAIT", limit=5)
    assert c.state == state
    mark = len(pair.trace)
    c.abort()
    assert c.state == "CLOSED"
    assert not [seg for _, d, seg in pair.trace[mark:] if d == "ab" and seg.flags & RST]


def test_abort_after_an_rto_uses_snd_max():
    pair, c = established()
    pair.drop = lambda direction, seg: True
    c.send(b"z" * 8000)
    top = c.snd_max
    assert top != c.snd_una
    pair.run(lambda: pair.a.counters.tcp_rto >= 1, limit=5)
    assert c.snd_nxt != c.snd_max == top
    mark = len(pair.trace)
    c.abort()
    rst = [seg for _, d, seg in pair.trace[mark:] if d == "ab" and seg.flags & RST]
    assert len(rst) == 1 and rst[0].seq == top


# --- 6: window update -------------------------------------------------------------------

def test_old_ack_does_not_update_the_window():
    pair, c = established()
    pair.run(limit=1)
    c.send(b"q" * 1000)
    pair.run(lambda: c.snd_una == c.snd_max, limit=5)
    pair.drop = lambda direction, seg: True
    wnd = c.snd_wnd
    # Acceptable (RFC 5961: within MAX.SND.WND below SND.UNA) but older than SND.UNA, and
    # with a SEG.SEQ newer than SND.WL1.
    inject(pair, c, c.rcv_nxt + 1, c.snd_una - 10, ACK, window=5)
    assert c.snd_wnd == wnd
    inject(pair, c, c.rcv_nxt, c.snd_una, ACK, window=7)
    assert c.snd_wnd == 7 << c._snd_shift


# --- 9: the out-of-order store's limit ----------------------------------------------------

def test_out_of_order_flood_is_capped_counted_and_still_sacked():
    from hetnic.host.stack.tcp_buffers import MAX_OOO_INTERVALS
    pair, c = established(QUICK)
    pair.drop = lambda direction, seg: True
    rcv = c.rcv_nxt
    recent = c._ts_recent
    n = MAX_OOO_INTERVALS + 50
    for k in range(n):
        out = inject(pair, c, rcv + 2 + 2 * k, c.snd_una, ACK, b"z", ts=(recent + 1, 0))
    assert pair.a.counters.drops["tcp_ooo_limit"] == 50
    assert c.rcvbuf.out_of_order == MAX_OOO_INTERVALS
    assert out and out[-1].flags == ACK and out[-1].ack == rcv and out[-1].sack_blocks
    out = inject(pair, c, rcv, c.snd_una, ACK, b"ab", ts=(recent + 2, 0))
    assert c.recv() == b"abz" and out[-1].ack == rcv + 3
