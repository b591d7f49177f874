"""TcpConnection's checks on arriving segments: RFC 9293 3.10.7.4 acceptability and
trimming, RFC 5961 challenge ACKs (RST, SYN, ACK) and their rate limit, RFC 7323 PAWS.

Crafted segments are built with ``build_tcp`` as the peer would send them and fed straight
to the connection; what it answers is read from the pair's trace.
"""

from __future__ import annotations

import dataclasses

import pytest
from tcp_pair import NO_TS, QUICK, TcpPair, established, inject

from hetnic.host.stack.tcp_segment import ACK, FIN, RST, SYN, build_tcp

pytestmark = pytest.mark.timeout(60)

def setup(cfg=NO_TS):
    """An established pair, then a cut wire: only injected segments reach ``a``."""
    pair, c = established(cfg)
    pair.drop = lambda direction, seg: True
    return pair, c


def test_rst_exactly_at_rcv_nxt_resets():
    pair, c = setup()
    out = inject(pair, c, c.rcv_nxt, 0, RST)
    assert out == [] and c.state == "CLOSED" and c.error == "reset"
    assert pair.a.released_conns == [c] and c.deadline is None


def test_rst_in_window_gets_a_challenge_ack():
    pair, c = setup()
    out = inject(pair, c, c.rcv_nxt + 100, 0, RST)
    assert c.state == "ESTABLISHED"
    assert len(out) == 1 and out[0].flags == ACK and out[0].ack == c.rcv_nxt
    assert pair.a.counters.tcp_challenge_acks == 1
    assert pair.a.counters.drops["tcp_rst_in_window"] == 1


def test_rst_out_of_window_is_dropped_silently():
    pair, c = setup()
    out = inject(pair, c, c.rcv_nxt + 10_000_000, 0, RST)
    assert out == [] and c.state == "ESTABLISHED"
    assert pair.a.counters.drops["tcp_rst_out_of_window"] == 1
    out = inject(pair, c, c.rcv_nxt - 1, 0, RST)
    assert out == [] and c.state == "ESTABLISHED"


def test_syn_in_established_gets_a_challenge_ack():
    pair, c = setup()
    for seq in (c.rcv_nxt, c.rcv_nxt + 5, c.rcv_nxt - 1000):
        out = inject(pair, c, seq, 0, SYN)
        assert c.state == "ESTABLISHED"
        assert out and out[-1].flags == ACK and out[-1].ack == c.rcv_nxt
    assert pair.a.counters.tcp_challenge_acks >= 2


def test_unacceptable_ack_values():
    pair, c = setup()
    c.send(b"abcd")
    una, nxt = c.snd_una, c.snd_nxt
    assert nxt == una + 4
    # Acknowledges data never sent: challenge ACK, dropped (RFC 5961 5.2).
    out = inject(pair, c, c.rcv_nxt, nxt + 10, ACK, b"data")
    assert out and out[-1].flags == ACK and c.rcv_nxt == pair.server.snd_nxt
    assert pair.a.counters.drops["tcp_bad_ack"] == 1 and c.snd_una == una
    # Too old: below SND.UNA - MAX.SND.WND.
    inject(pair, c, c.rcv_nxt, una - c.max_snd_wnd - 10, ACK)
    assert pair.a.counters.drops["tcp_bad_ack"] == 2
    # Old but within MAX.SND.WND: acceptable, just not new (the data is taken).
    inject(pair, c, c.rcv_nxt, una - 10, ACK, b"xy")
    assert c.readable == 2
    # The right one.
    inject(pair, c, c.rcv_nxt, nxt, ACK)
    assert c.snd_una == nxt


def test_challenge_ack_rate_limit():
    pair, c = setup()
    pair.a.challenge_limit = 2
    sent = [inject(pair, c, c.rcv_nxt + 50, 0, RST) for _ in range(5)]
    assert [len(s) for s in sent] == [1, 1, 0, 0, 0]
    assert pair.a.counters.tcp_challenge_acks == 2
    assert pair.a.counters.drops["tcp_challenge_ack_limited"] == 3
    assert c.state == "ESTABLISHED"


def test_old_duplicate_and_out_of_window_data():
    pair, c = setup()
    rcv = c.rcv_nxt
    out = inject(pair, c, rcv - 100, c.snd_una, ACK, b"q" * 50)
    assert pair.a.counters.drops["tcp_old_duplicate"] == 1
    assert len(out) == 1 and out[0].ack == rcv and c.readable == 0
    out = inject(pair, c, rcv + 10_000_000, c.snd_una, ACK, b"q" * 50)
    assert pair.a.counters.drops["tcp_out_of_window"] == 1
    assert len(out) == 1 and out[0].ack == rcv and c.readable == 0
    # A keepalive-style probe (one below RCV.NXT, empty) is answered, not counted.
    out = inject(pair, c, rcv - 1, c.snd_una, ACK)
    assert len(out) == 1 and pair.a.counters.drops["tcp_old_duplicate"] == 1


def test_overlapping_segment_is_trimmed():
    pair, c = setup()
    rcv = c.rcv_nxt
    inject(pair, c, rcv, c.snd_una, ACK, b"0123456789")
    inject(pair, c, rcv + 5, c.snd_una, ACK, b"56789abcde")
    assert c.recv() == b"0123456789abcde"
    assert c.rcv_nxt == rcv + 15


def test_out_of_order_then_fill_with_sack_blocks():
    pair, c = setup(dataclasses.replace(NO_TS, delayed_ack=True))
    rcv = c.rcv_nxt
    out = inject(pair, c, rcv + 10, c.snd_una, ACK, b"B" * 10)
    assert len(out) == 1 and out[0].ack == rcv                 # immediate duplicate ACK
    assert out[0].sack_blocks == ((rcv + 10, rcv + 20),)
    out = inject(pair, c, rcv + 30, c.snd_una, ACK, b"D" * 10)
    assert out[0].sack_blocks == ((rcv + 30, rcv + 40), (rcv + 10, rcv + 20))
    out = inject(pair, c, rcv, c.snd_una, ACK, b"A" * 10)
    assert len(out) == 1 and out[0].ack == rcv + 20             # hole filled: ACK at once
    assert out[0].sack_blocks == ((rcv + 30, rcv + 40),)
    out = inject(pair, c, rcv + 20, c.snd_una, ACK, b"C" * 10)
    assert out[0].ack == rcv + 40 and out[0].sack_blocks == ()
    assert c.recv() == b"A" * 10 + b"B" * 10 + b"C" * 10 + b"D" * 10


def test_out_of_order_fin_waits_for_the_data():
    pair, c = setup()
    rcv = c.rcv_nxt
    inject(pair, c, rcv + 5, c.snd_una, ACK | FIN, b"world")
    assert not c.eof and c.state == "ESTABLISHED"
    out = inject(pair, c, rcv, c.snd_una, ACK, b"hello")
    assert c.eof and c.state == "CLOSE-WAIT" and c.recv() == b"helloworld"
    assert out[-1].ack == rcv + 11


def test_paws_drops_an_old_timestamp():
    pair, c = setup(QUICK)
    assert c.ts_ok
    recent = c._ts_recent
    rcv = c.rcv_nxt
    out = inject(pair, c, rcv, c.snd_una, ACK, b"fresh", ts=(recent + 5, 0))
    assert c.readable == 5
    out = inject(pair, c, c.rcv_nxt, c.snd_una, ACK, b"stale", ts=(recent - 1000, 0))
    assert pair.a.counters.drops["tcp_paws"] == 1 and c.readable == 5
    assert len(out) == 1 and out[0].flags == ACK
    # An RST is not subject to PAWS.
    inject(pair, c, c.rcv_nxt, 0, RST, ts=(recent - 1000, 0))
    assert c.state == "CLOSED" and c.error == "reset"


def test_syn_sent_rejects_a_bad_ack_with_rst():
    pair = TcpPair(NO_TS, listen=False, rst_closed=False)
    c = pair.connect(iss=1000)
    pair.drop = lambda direction, seg: True
    out = inject(pair, c, 777, 5000, SYN | ACK)
    assert c.state == "SYN-SENT"
    assert len(out) == 1 and out[0].flags == RST and out[0].seq == 5000
    out = inject(pair, c, 777, 0, RST)                  # RST without ACK: ignored
    assert out == [] and c.state == "SYN-SENT"
    out = inject(pair, c, 777, 1001, RST | ACK)         # acceptable RST: refused
    assert c.state == "CLOSED" and c.error == "refused"


def test_no_ack_flag_is_dropped():
    pair, c = setup()
    inject(pair, c, c.rcv_nxt, 0, 0, b"no ack bit")
    assert c.readable == 0 and pair.a.counters.drops["tcp_no_ack"] == 1


def test_zero_window_takes_the_ack_not_the_data():
    cfg = dataclasses.replace(NO_TS, rcvbuf=4096, window_scale=False)
    pair, c = setup(cfg)
    rcv = c.rcv_nxt
    inject(pair, c, rcv, c.snd_una, ACK, b"x" * 4096)
    assert c.readable == 4096
    out = inject(pair, c, rcv + 4096, c.snd_una, ACK, b"y" * 100)   # no room: ACK only
    assert c.readable == 4096 and out and out[-1].window == 0
    assert pair.a.counters.drops["tcp_zero_window"] == 1
    assert c.recv(1000) == b"x" * 1000                         # below SWS threshold: quiet
    assert pair.trace[-1][2] is out[-1]
    c.recv(2000)                                               # now worth announcing
    update = pair.trace[-1][2]
    assert update.flags == ACK and update.window == 3000


def test_empty_ack_at_the_right_window_edge_is_taken():
    """A peer that filled our window sends its ACKs with SEQ = RCV.NXT + RCV.WND (Linux
    does): the ACK must count, or our sender stalls."""
    cfg = dataclasses.replace(NO_TS, rcvbuf=8192, window_scale=False)
    pair, c = setup(cfg)
    c.send(b"abcdef")
    nxt = c.snd_nxt
    edge = (c._rcv_adv - c.rcv_nxt) & 0xFFFFFFFF
    assert edge == 8192
    inject(pair, c, c.rcv_nxt + edge, nxt, ACK)
    assert c.snd_una == nxt
    assert "tcp_out_of_window" not in pair.a.counters.drops
    inject(pair, c, c.rcv_nxt + edge + 1, nxt, ACK)              # one past: not acceptable
    assert pair.a.counters.drops["tcp_out_of_window"] == 1


def test_fin_wait_1_straight_to_time_wait():
    """The peer's FIN acknowledging our FIN: FIN-WAIT-1 -> TIME-WAIT in one step."""
    pair, c = setup()
    c.shutdown()
    assert c.state == "FIN-WAIT-1"
    out = inject(pair, c, c.rcv_nxt, c.snd_nxt, FIN | ACK)
    assert c.state == "TIME-WAIT" and c.eof
    assert out and out[-1].flags == ACK and out[-1].ack == c.rcv_nxt
    pair.advance(NO_TS.time_wait + 0.01)
    assert c.state == "CLOSED" and c.deadline is None and pair.a.released_conns == [c]


def test_rst_in_syn_received_of_a_passive_open_releases_quietly():
    pair = TcpPair(NO_TS, drop=lambda direction, seg: direction == "ba")
    pair.connect()
    pair.run(lambda: pair.server is not None, limit=1)
    s = pair.server
    assert s.state == "SYN-RECEIVED"
    pair.drop = lambda direction, seg: True
    inject(pair, s, s.rcv_nxt, 0, RST)
    assert s.state == "CLOSED" and s.error is None and pair.b.released_conns == [s]


def test_syn_received_resends_syn_ack_for_a_repeated_syn():
    pair = TcpPair(NO_TS, drop=lambda direction, seg: direction == "ba")
    pair.connect(iss=1000)
    pair.run(lambda: pair.server is not None, limit=1)
    s = pair.server
    out = inject(pair, s, 1000, 0, SYN)
    assert len(out) == 1 and out[0].flags == SYN | ACK and out[0].ack == 1001
    assert s.state == "SYN-RECEIVED"


def test_missing_timestamp_is_dropped_once_agreed():
    """RFC 7323 3.2: with timestamps agreed, a non-RST segment without TSopt is dropped
    silently (counted "tcp_missing_ts"); an RST without one is still processed."""
    pair, c = setup(QUICK)
    assert c.ts_ok
    recent = c._ts_recent
    rcv = c.rcv_nxt
    out = inject(pair, c, rcv, c.snd_una, ACK, b"no-ts")
    assert out == [] and c.readable == 0 and c.rcv_nxt == rcv
    assert pair.a.counters.drops["tcp_missing_ts"] == 1
    out = inject(pair, c, rcv, c.snd_una, ACK | FIN)
    assert out == [] and not c.eof and pair.a.counters.drops["tcp_missing_ts"] == 2
    out = inject(pair, c, rcv, c.snd_una, ACK, b"with-ts", ts=(recent + 1, 0))
    assert c.readable == 7
    inject(pair, c, c.rcv_nxt, 0, RST)
    assert c.state == "CLOSED" and c.error == "reset"


def test_without_timestamps_agreed_segments_need_none():
    pair, c = setup(NO_TS)
    assert not c.ts_ok
    inject(pair, c, c.rcv_nxt, c.snd_una, ACK, b"plain")
    assert c.readable == 5 and "tcp_missing_ts" not in pair.a.counters.drops


def test_data_on_a_syn_ack_is_taken_and_acknowledged():
    """RFC 9293 3.10.7.3: the SYN-ACK's text is delivered and its ACK covers it (only what
    fits the window is taken)."""
    pair = TcpPair(NO_TS, listen=False, rst_closed=False)
    c = pair.connect(iss=1000)
    pair.drop = lambda direction, seg: True
    out = inject(pair, c, 7000, 1001, SYN | ACK, b"early")
    assert c.state == "ESTABLISHED" and c.recv(100) == b"early"
    assert out[-1].flags & ACK and out[-1].ack == 7001 + 5
    small = dataclasses.replace(NO_TS, rcvbuf=4096, window_scale=False)
    pair2 = TcpPair(small, listen=False, rst_closed=False)
    c2 = pair2.connect(iss=1000)
    pair2.drop = lambda direction, seg: True
    out = inject(pair2, c2, 7000, 1001, SYN | ACK, b"z" * 5000)
    assert c2.state == "ESTABLISHED" and c2.readable == 4096
    assert out[-1].ack == 7001 + 4096


def test_data_on_a_syn_is_not_acknowledged():
    """A listener's SYN-ACK acknowledges the SYN only: the data is the peer's to resend."""
    pair = TcpPair(NO_TS)
    pair.drop = lambda direction, seg: True
    raw = build_tcp(pair.a.addr, pair.b.addr, 4000, 80, 9000, 0, SYN, 65535, b"", b"hello")
    pair._deliver(pair.b, pair.a.addr, pair.b.addr, raw)
    server = pair.b.conn
    assert server.state == "SYN-RECEIVED" and server.rcv_nxt == 9001
    synack = pair.trace[-1][2]
    assert synack.flags == SYN | ACK and synack.ack == 9001
    assert pair.b.counters.drops["tcp_syn_data"] == 1
