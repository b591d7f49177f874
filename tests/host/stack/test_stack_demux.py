"""The TCP layer's demultiplexing and limits: RST for segments to no socket (RFC 9293
3.10.7.1), the listen backlog with and without SYN cookies, max_connections, buffer_memory,
ephemeral port exhaustion, listener close, ISNs (RFC 6528), the challenge-ACK budget
(RFC 5961 section 7) and the timers left after everything closed."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hetnic.host.stack.errors import AddressInUse, ResourceLimit
from hetnic.host.stack.tcp_layer import CHALLENGE_ACK_LIMIT
from stack_pair import IP4_A, IP4_B, IP6_A, IP6_B, MAC_A, MAC_B, QUICK, Pair, pump


def _inject(pair: Pair, segment, src: str = IP4_A) -> None:
    ip = IP(src=src, dst=IP4_B) if ":" not in src else IPv6(src=src, dst=IP6_B)
    pair.b.receive(bytes(Ether(src=MAC_A, dst=MAC_B) / ip / segment), pair.now)


def _tcp_from_b(pair: Pair) -> list:
    out = []
    for direction, frame in pair.trace:
        packet = Ether(frame)
        if direction == "ba" and TCP in packet:
            out.append(packet[TCP])
    return out


@pytest.mark.parametrize("src", [IP4_A, IP6_A])
def test_rst_for_segments_to_no_socket(src):
    pair = Pair()
    pair.tracing = True
    _inject(pair, TCP(sport=1111, dport=2222, flags="S", seq=1000), src)
    _inject(pair, TCP(sport=1111, dport=2222, flags="A", seq=5, ack=777) / b"abc", src)
    _inject(pair, TCP(sport=1111, dport=2222, flags="F", seq=50), src)
    _inject(pair, TCP(sport=1111, dport=2222, flags="R", seq=9), src)
    _inject(pair, TCP(sport=1111, dport=2222, flags="RA", seq=9, ack=3), src)
    pair.run()
    rsts = [(str(t.flags), t.seq, t.ack, t.sport, t.dport) for t in _tcp_from_b(pair)]
    assert rsts == [("RA", 0, 1001, 2222, 1111), ("R", 777, 0, 2222, 1111),
                    ("RA", 0, 51, 2222, 1111)]
    assert pair.b.counters.drops["tcp_no_socket"] == 5
    # A has no socket either and receives three RSTs: it never answers an RST
    assert pair.a.counters.drops["tcp_no_socket"] == 3
    assert not [f for d, f in pair.trace if d == "ab" and TCP in Ether(f)]


def test_bad_segments_are_dropped_by_reason():
    pair = Pair()
    pair.b.listen(80)
    _inject(pair, TCP(sport=1, dport=80, flags="S", chksum=0xBAD))
    _inject(pair, TCP(sport=1, dport=80, flags="SF"))
    raw = bytes(TCP(sport=1, dport=80, flags="S"))[:12]
    pair.b.receive(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=IP4_A, dst=IP4_B, proto=6) / raw),
                   pair.now)
    drops = pair.b.counters.drops
    assert drops["tcp_bad_checksum"] == 1 and drops["tcp_syn_fin"] == 1
    assert drops["tcp_truncated"] == 1
    assert len(pair.b.tcp) == 0


def test_listener_takes_only_syn():
    pair = Pair()
    pair.tracing = True
    pair.b.listen(80)
    _inject(pair, TCP(sport=5, dport=80, flags="R", seq=1))
    _inject(pair, TCP(sport=5, dport=80, flags="", seq=1))
    _inject(pair, TCP(sport=5, dport=80, flags="A", seq=1, ack=12345))      # no cookie
    pair.run()
    drops = pair.b.counters.drops
    assert drops["tcp_listen_rst"] == 1 and drops["tcp_listen_no_syn"] == 1
    assert drops["tcp_listen_ack"] == 1
    assert [(str(t.flags), t.seq) for t in _tcp_from_b(pair)] == [("R", 12345)]


def test_backlog_full_drops_syn_until_accept_makes_room():
    pair = Pair()
    listener = pair.b.listen(80, backlog=2)
    clients = [pair.a.connect(IP4_B, 80) for _ in range(3)]
    pair.run(timeout=0.5)
    assert len(listener.queue) == 2 and listener.half_open == 0
    assert [c.connected for c in clients] == [True, True, False]
    assert pair.b.counters.drops["tcp_backlog_full"] >= 1
    assert clients[2].state == "SYN-SENT"
    first = listener.accept()
    assert pair.run(lambda: len(listener.queue) == 2, timeout=10.0)    # its SYN is retried
    assert clients[2].connected and first.connected


@pytest.mark.parametrize("cookies", [True, False])
def test_syn_flood_fills_backlog_and_cookies_still_connect(cookies):
    pair = Pair(QUICK, QUICK.replace(syn_cookies=cookies))
    listener = pair.b.listen(80, backlog=4)
    for i in range(4):                          # half-open from spoofed, silent sources
        _inject(pair, TCP(sport=1000 + i, dport=80, flags="S", seq=i), src=f"198.18.0.{50 + i}")
    assert listener.half_open == 4 and pair.b.state_counts() == {"SYN-RECEIVED": 4}
    client = pair.a.connect(IP4_B, 80)
    pair.run(lambda: listener.readable, timeout=0.5)
    counters = pair.b.counters
    if not cookies:
        assert not client.connected and not listener.readable
        assert counters.drops["tcp_backlog_full"] >= 1
        assert counters.tcp_syn_cookies_sent == 0
        return
    assert counters.tcp_syn_cookies_sent == 1 and counters.tcp_syn_cookies_ok == 1
    server = listener.accept()
    assert client.connected and server.connected
    assert server.getpeername() == client.getsockname()
    data = bytes(range(256)) * 400
    assert pump(pair, client, server, data) == data
    assert pump(pair, server, client, data[::-1]) == data[::-1]
    assert listener.half_open == 4              # the flood is still half-open
    info = client.info()                        # a cookie keeps only the MSS
    assert (info["sack"], info["ts"], info["wscale"], info["mss"]) == (False, False, None, 1460)
    client6 = pair.a.connect(IP6_B, 80)
    assert pair.run(lambda: listener.readable, timeout=0.5)
    assert counters.tcp_syn_cookies_ok == 2 and client6.connected
    assert listener.accept().getpeername() == client6.getsockname()
    assert client6.info()["mss"] == 1440


def test_max_connections_refuses_syn_and_connect():
    cfg = QUICK.replace(max_connections=2)
    pair = Pair(cfg)
    listener = pair.b.listen(80)
    clients = [pair.a.connect(IP4_B, 80), pair.a.connect(IP6_B, 80)]
    with pytest.raises(ResourceLimit, match="max_connections"):
        pair.a.connect(IP4_B, 80)
    assert pair.run(lambda: len(listener.queue) == 2)
    assert all(c.connected for c in clients)
    other = Pair(QUICK, cfg)
    other.b.listen(80)
    socks = [other.a.connect(IP4_B, 80) for _ in range(3)]
    other.run(timeout=0.5)
    assert [s.connected for s in socks] == [True, True, False]
    assert other.b.counters.drops["tcp_max_connections"] >= 1


def test_buffer_memory_bounds_connections():
    per = QUICK.sndbuf + QUICK.rcvbuf
    pair = Pair(QUICK, QUICK.replace(buffer_memory=2 * per + per // 2))
    pair.b.listen(80)
    socks = [pair.a.connect(IP4_B, 80) for _ in range(3)]
    pair.run(timeout=0.5)
    assert [s.connected for s in socks] == [True, True, False]
    assert pair.b.counters.drops["tcp_buffer_memory"] >= 1
    with pytest.raises(ResourceLimit, match="buffer_memory"):
        pair.b.connect(IP4_A, 1)
    for s in socks[:2]:                          # memory comes back when connections go
        s.abort()
    pair.run(timeout=0.2)
    assert len(pair.b.tcp) == 0
    pair.b.connect(IP4_A, 1)


def test_ephemeral_range_exhaustion_and_reuse_after_release():
    pair = Pair(QUICK.replace(ephemeral_ports=(40000, 40002)), QUICK)
    listener = pair.b.listen(80)
    socks = [pair.a.connect(IP4_B, 80) for _ in range(3)]
    assert sorted(s.getsockname()[1] for s in socks) == [40000, 40001, 40002]
    with pytest.raises(AddressInUse, match="no free ephemeral TCP port in 40000-40002"):
        pair.a.connect(IP4_B, 80)
    with pytest.raises(AddressInUse):
        pair.a.tcp_socket().bind(("", 0))
    assert pair.run(lambda: len(listener.queue) == 3)
    servers = [listener.accept() for _ in range(3)]
    socks[1].close()                             # A closes first: TIME-WAIT holds the port
    for server in servers:
        server.close()
    assert pair.run(lambda: socks[1].state == "TIME-WAIT", timeout=5.0)
    with pytest.raises(AddressInUse):
        pair.a.connect(IP4_B, 80)
    assert pair.run(lambda: socks[1].state == "CLOSED", timeout=5.0)
    again = pair.a.connect(IP4_B, 80)
    assert again.getsockname()[1] == socks[1].getsockname()[1]


def test_listener_close_resets_waiting_connections():
    pair = Pair()
    listener = pair.b.listen(80)
    clients = [pair.a.connect(IP4_B, 80) for _ in range(2)]
    assert pair.run(lambda: len(listener.queue) == 2)
    listener.close()
    assert pair.run(lambda: all(c.error == "reset" for c in clients))
    assert len(pair.b.tcp) == 0 and len(pair.a.tcp) == 0
    refused = pair.a.connect(IP4_B, 80)
    assert pair.run(lambda: refused.error == "refused")


def test_v4_wildcard_and_v6_address_listeners_share_a_port():
    pair = Pair()
    v4 = pair.b.listen(80, host="0.0.0.0")
    v6 = pair.b.listen(80, host=IP6_B)
    with pytest.raises(AddressInUse):
        pair.b.listen(80)
    c4, c6 = pair.a.connect(IP4_B, 80), pair.a.connect(IP6_B, 80)
    assert pair.run(lambda: v4.readable and v6.readable)
    assert v4.accept().getpeername()[0] == IP4_A and v6.accept().getpeername()[0] == IP6_A
    assert c4.connected and c6.connected


def test_isn_is_keyed_per_tuple_and_moves_with_the_clock():
    pair = Pair()
    tcp = pair.b.tcp
    a, b = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    isn = tcp.isn(b, 80, a, 1000, 0.0)
    assert tcp.isn(b, 80, a, 1001, 0.0) != isn
    assert (tcp.isn(b, 80, a, 1000, 1.0) - isn) % (1 << 32) == 250_000     # 4 us ticks
    assert Pair(seed=7).b.tcp.isn(b, 80, a, 1000, 0.0) != isn              # keyed


def test_challenge_ack_budget_per_second():
    tcp = Pair().b.tcp
    assert all(tcp.challenge_ack_allowed(5.0) for _ in range(CHALLENGE_ACK_LIMIT))
    assert not tcp.challenge_ack_allowed(5.5)
    assert tcp.challenge_ack_allowed(6.0)


def test_no_timer_left_after_many_connections_close():
    pair = Pair()
    listener = pair.b.listen(80)
    clients = [pair.a.connect(IP4_B if i % 2 else IP6_B, 80) for i in range(20)]
    assert pair.run(lambda: len(listener.queue) == 20)
    servers = [listener.accept() for _ in range(20)]
    for i, (c, s) in enumerate(zip(clients, servers)):
        c.send(b"x" * (i + 1))
    for c, s in zip(clients, servers):
        assert pair.run(lambda: s.readable)
        s.recv()
        s.close()
        c.close()
    pair.run()
    for stack in (pair.a, pair.b):
        assert len(stack.tcp) == 0 and stack.tcp.next_deadline() is None
        assert stack.state_counts() == {} and stack.connections() == []
    assert len(pair.a.tcp._heap) == 0 and len(pair.b.tcp._heap) == 0     # lazy entries gone
