"""TcpConnection's state machine (RFC 9293 3.3.2): opening, closing, TIME-WAIT, options.

Two connections back to back through ``tcp_pair.TcpPair`` (simulated time, no sleeps).
"""

from __future__ import annotations

import dataclasses

import pytest
from tcp_pair import QUICK, TcpPair

from hetnic.host.stack.tcp import TcpConfig, TcpConnection
from hetnic.host.stack.tcp_segment import ACK, FIN, RST, SYN

pytestmark = pytest.mark.timeout(60)


def established(pair: TcpPair) -> bool:
    s = pair.server
    return (pair.client.state == "ESTABLISHED" and s is not None
            and s.state == "ESTABLISHED")


def test_three_way_handshake():
    pair = TcpPair()
    c = pair.connect(iss=1000)
    assert c.state == "SYN-SENT" and not c.connected
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    assert c.connected and s.connected
    syn, synack, ack = (seg for _, _, seg in pair.trace[:3])
    assert syn.flags == SYN and syn.seq == 1000
    assert synack.flags == SYN | ACK and synack.ack == 1001 and synack.seq == 5000
    assert ack.flags == ACK and ack.seq == 1001 and ack.ack == 5001
    assert c.snd_una == c.snd_nxt == 1001 and c.rcv_nxt == 5001
    assert s.snd_una == 5001 and s.rcv_nxt == 1001
    assert pair.a.notifies and pair.b.notifies


@pytest.mark.parametrize("ws_a, ws_b", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("ts_a, ts_b", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("sack_a, sack_b", [(True, True), (True, False), (False, False)])
def test_option_negotiation(ws_a, ws_b, ts_a, ts_b, sack_a, sack_b):
    cfg_a = dataclasses.replace(QUICK, window_scale=ws_a, timestamps=ts_a, sack=sack_a,
                                rcvbuf=1 << 20)
    cfg_b = dataclasses.replace(QUICK, window_scale=ws_b, timestamps=ts_b, sack=sack_b,
                                rcvbuf=1 << 18)
    pair = TcpPair(cfg_a, cfg_b)
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    syn, synack = pair.trace[0][2], pair.trace[1][2]
    assert (syn.wscale is not None) == ws_a and (syn.ts_val is not None) == ts_a
    assert syn.sack_permitted == sack_a and syn.mss == 1460
    # The SYN-ACK only carries options the SYN offered (RFC 7323 2.2, 3.2; RFC 2018 2).
    assert (synack.wscale is not None) == (ws_a and ws_b)
    assert (synack.ts_val is not None) == (ts_a and ts_b)
    assert synack.sack_permitted == (sack_a and sack_b)
    for conn in (c, s):
        assert conn.ws_ok == (ws_a and ws_b)
        assert conn.ts_ok == (ts_a and ts_b)
        assert conn.sack_ok == (sack_a and sack_b)
    if ws_a and ws_b:
        assert c.info()["wscale"] == (3, 5) and s.info()["wscale"] == (5, 3)
    assert c.info()["mss"] == (1448 if ts_a and ts_b else 1460)
    # Data flows either way with whatever was agreed; every segment after the SYNs carries
    # a timestamp exactly when both sides agreed.
    got_b, got_a = pair.transfer(bytes(range(256)) * 400, b"x" * 3000)
    assert got_b == bytes(range(256)) * 400 and got_a == b"x" * 3000
    later = [seg for _, _, seg in pair.trace[3:]]
    assert all((seg.ts_val is not None) == (ts_a and ts_b) for seg in later)


def test_mss_defaults_without_option():
    """No MSS option from the peer: 536 over IPv4, 1220 over IPv6 (RFC 9293 3.7.1)."""
    for v6, expect in ((False, 536), (True, 1220)):
        pair = TcpPair(dataclasses.replace(QUICK, timestamps=False), v6=v6)
        layer = pair.b
        conn = TcpConnection(layer, QUICK, layer.addr, 80, pair.a.addr, 40000, 0.0)
        layer.conn = conn
        from hetnic.host.stack.tcp_segment import TcpSegment
        conn.open_passive(TcpSegment(40000, 80, 77, 0, SYN, 8000), 9000, 0.0)
        assert conn.info()["mss"] == expect


def test_mss_is_the_smaller_one():
    pair = TcpPair(dataclasses.replace(QUICK, mss=1000), QUICK)
    pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    assert pair.client.info()["mss"] == 1000 - 12
    assert pair.server.info()["mss"] == 1000 - 12
    got_b, _ = pair.transfer(b"z" * 20000)
    assert got_b == b"z" * 20000
    assert max(len(s.payload) for s in pair.segments("ab")) == 988


def test_simultaneous_open():
    """Both sides send SYN: SYN-SENT + SYN -> SYN-RECEIVED -> ESTABLISHED (RFC 9293 fig. 7)."""
    pair = TcpPair(listen=False)
    a = pair.connect(iss=100)
    b = TcpConnection(pair.b, QUICK, pair.b.addr, 80, pair.a.addr, 40000, 0.0)
    pair.b.conn = b
    b.open_active(300, 0.0)
    seen = set()
    pair.run(lambda: (seen.add((a.state, b.state)) or
                      (a.state == b.state == "ESTABLISHED")), limit=5)
    assert a.state == b.state == "ESTABLISHED"
    assert ("SYN-RECEIVED", "SYN-RECEIVED") in seen
    assert a.snd_una == 101 and a.rcv_nxt == 301 and b.snd_una == 301 and b.rcv_nxt == 101
    got_b, got_a = pair.transfer(b"ping" * 1000, b"pong" * 1000)
    assert got_b == b"ping" * 1000 and got_a == b"pong" * 1000


def test_active_close_then_passive_close_and_time_wait():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    c.shutdown()
    assert c.state == "FIN-WAIT-1"
    assert pair.run(lambda: s.state == "CLOSE-WAIT" and c.state == "FIN-WAIT-2", limit=5)
    assert s.eof and s.recv() == b""
    # Half-closed: the passive side still sends, the active side still receives.
    assert s.send(b"late data") == 9
    assert pair.run(lambda: c.readable == 9, limit=5)
    assert c.recv() == b"late data"
    s.close()
    assert s.state == "LAST-ACK"
    assert pair.run(lambda: c.state == "TIME-WAIT" and s.state == "CLOSED", limit=5)
    assert pair.b.released_conns == [s] and s.deadline is None
    t_enter = pair.now
    assert pair.run(lambda: c.state == "CLOSED", limit=10)
    assert pair.now - t_enter == pytest.approx(QUICK.time_wait, abs=0.05)
    assert pair.a.released_conns == [c] and c.deadline is None
    assert c.error is None and s.error is None
    pair.run(limit=30)
    assert pair.a.released_conns == [c] and pair.b.released_conns == [s]


def test_simultaneous_close():
    """FIN-WAIT-1 + FIN -> CLOSING -> TIME-WAIT on both sides (RFC 9293 figure 13)."""
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    c.close()
    s.close()
    seen = set()
    pair.run(lambda: seen.add((c.state, s.state)) or
             (c.state == s.state == "TIME-WAIT"), limit=5)
    assert c.state == s.state == "TIME-WAIT"
    assert ("CLOSING", "CLOSING") in seen
    pair.run(lambda: c.state == s.state == "CLOSED", limit=10)
    assert c.state == s.state == "CLOSED"
    assert len(pair.a.released_conns) == 1 and len(pair.b.released_conns) == 1


def test_time_wait_acks_a_retransmitted_fin_and_restarts():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    c.close()
    assert pair.run(lambda: s.state == "CLOSE-WAIT", limit=5)
    s.close()
    # Lose the final ACK once: the server retransmits its FIN into our TIME-WAIT.
    lost = []

    def drop(direction, seg):
        if direction == "ab" and c.state == "TIME-WAIT" and not lost:
            lost.append(seg)
            return True
        return False

    pair.drop = drop
    assert pair.run(lambda: c.state == "TIME-WAIT", limit=5)
    assert pair.run(lambda: s.state == "CLOSED", limit=10)
    assert lost and s.error is None
    fin_retx = [seg for seg in pair.segments("ba", FIN)]
    assert len(fin_retx) == 2
    assert pair.run(lambda: c.state == "CLOSED", limit=10)


def test_close_with_unread_data_sends_rst():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    s.send(b"unread")
    assert pair.run(lambda: c.readable == 6, limit=5)
    c.close()
    assert c.state == "CLOSED" and pair.a.released_conns == [c]
    assert pair.segments("ab", RST)
    assert pair.run(lambda: s.state == "CLOSED", limit=5)
    assert s.error == "reset"


def test_data_after_close_is_answered_with_rst():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    c.close()
    assert pair.run(lambda: c.state == "FIN-WAIT-2", limit=5)
    s.send(b"nobody reads this")
    assert pair.run(lambda: c.state == "CLOSED", limit=5)
    assert pair.a.counters.drops.get("tcp_data_after_close") == 1
    assert pair.run(lambda: s.state == "CLOSED", limit=5)
    assert s.error == "reset"


def test_fin_wait_2_times_out_after_close():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    c.close()
    assert pair.run(lambda: c.state == "FIN-WAIT-2", limit=5)
    t = pair.now
    assert pair.run(lambda: c.state == "CLOSED", limit=60)
    assert pair.now - t == pytest.approx(QUICK.fin_wait2_timeout, abs=0.05)
    assert pair.server.state == "CLOSE-WAIT"       # it never closed


def test_shutdown_keeps_receiving():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    s = pair.server
    c.send(b"request")
    c.shutdown()
    assert c.writable == 0 and c.send(b"more") == 0
    assert pair.run(lambda: s.eof, limit=5)
    assert s.recv() == b"request"
    payload = bytes(range(256)) * 300
    sent = 0
    while sent < len(payload):
        sent += s.send(payload[sent:])
        pair.run(lambda: s.writable > 0, limit=5)
    got = bytearray()
    pair.run(lambda: (got.extend(c.recv()) if c.readable else None) or len(got) == len(payload),
             limit=20)
    assert bytes(got) == payload
    assert c.state == "FIN-WAIT-2"


def test_connect_refused():
    pair = TcpPair(listen=False)
    c = pair.connect()
    assert pair.run(lambda: c.state == "CLOSED", limit=5)
    assert c.error == "refused" and pair.a.released_conns == [c] and c.deadline is None
    assert pair.segments("ba", RST | ACK)


def test_syn_retries_then_timeout():
    pair = TcpPair(drop=lambda direction, seg: True)
    c = pair.connect()
    assert pair.run(lambda: c.state == "CLOSED", limit=120)
    assert c.error == "timeout" and c.deadline is None and pair.a.released_conns == [c]
    syns = pair.segments("ab", SYN)
    assert len(syns) == 1 + QUICK.syn_retries
    gaps = [b[0] - a[0] for a, b in zip(pair.trace, pair.trace[1:])]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:]))   # backoff
    assert pair.a.counters.tcp_rto == QUICK.syn_retries


def test_lost_syn_ack_is_retransmitted():
    drops = []

    def drop(direction, seg):
        if direction == "ba" and seg.flags & SYN and len(drops) < 2:
            drops.append(seg)
            return True
        return False

    pair = TcpPair(drop=drop)
    pair.connect()
    assert pair.run(lambda: established(pair), limit=20)
    assert len(drops) == 2


def test_abort_sends_rst_and_releases():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    c.abort()
    assert c.state == "CLOSED" and pair.a.released_conns == [c]
    assert pair.run(lambda: pair.server.state == "CLOSED", limit=5)
    assert pair.server.error == "reset"
    c.abort()
    c.close()
    assert pair.a.released_conns == [c]          # released exactly once


def test_info_fields():
    pair = TcpPair()
    c = pair.connect()
    assert pair.run(lambda: established(pair), limit=5)
    info = c.info()
    for key in ("state", "cwnd", "ssthresh", "srtt", "rto", "snd_una", "snd_nxt", "rcv_nxt",
                "snd_wnd", "rcv_wnd", "send_queue", "recv_queue", "retransmits",
                "in_recovery", "sack", "wscale", "ts"):
        assert key in info
    assert info["state"] == "ESTABLISHED" and info["srtt"] > 0


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TcpConfig().mss = 9


def test_shutdown_during_the_handshake_sends_fin_once_established():
    pair = TcpPair()
    c = pair.connect()
    c.send(b"early")
    c.shutdown()
    assert c.state == "SYN-SENT" and c.writable == 0
    assert pair.run(lambda: pair.server is not None and pair.server.eof, limit=5)
    assert pair.server.recv() == b"early" and pair.server.state == "CLOSE-WAIT"
    assert pair.run(lambda: c.state == "FIN-WAIT-2", limit=5)


def test_close_in_syn_sent_just_releases():
    pair = TcpPair(drop=lambda direction, seg: True)
    c = pair.connect()
    c.close()
    assert c.state == "CLOSED" and c.deadline is None and pair.a.released_conns == [c]
    assert len(pair.trace) == 1                   # the SYN, nothing after it


def test_open_from_cookie():
    """The layer validated a SYN cookie: the connection starts ESTABLISHED from the ACK with
    the cookie's MSS and no window scaling, SACK or timestamps; the ACK's data is taken."""
    pair = TcpPair(listen=False)
    b = pair.b
    conn = TcpConnection(b, QUICK, b.addr, 80, pair.a.addr, 40000, 0.0)
    b.conn = conn
    from hetnic.host.stack.tcp_segment import TcpSegment
    ack = TcpSegment(40000, 80, 778, 9001, ACK, 4000, b"first bytes")
    conn.open_from_cookie(ack, 9000, 536, 0.0)
    assert conn.state == "ESTABLISHED" and conn.connected
    assert conn.snd_una == conn.snd_nxt == 9001 and conn.rcv_nxt == 778 + 11
    assert conn.recv() == b"first bytes"
    info = conn.info()
    assert info["mss"] == 536 and info["wscale"] is None and not info["ts"] and not info["sack"]
    assert conn.snd_wnd == 4000
    assert b.notifies >= 1
