"""An instance a restart moves away from opens no new connection after its snapshot
(``TcpLayer.accept_new``): a SYN or a cookie ACK is dropped and counted, not answered, so
the peer retransmits it to the next instance; and an instance started with the same seed
accepts the SYN cookies the other one sent (the restart's instances share the seed)."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from hetnic.host.stack.stack import Stack
from stack_pair import IP4_A, IP4_B, MAC_B, QUICK, Pair


def test_closed_to_new_drops_syn_unanswered_then_reopens():
    pair = Pair(QUICK)
    listener = pair.b.listen(80)
    pair.b.tcp.accept_new = False
    pair.tracing = True
    client = pair.a.connect(IP4_B, 80)
    pair.run(timeout=0.3)
    assert not client.connected and not listener.readable
    assert pair.b.counters.drops["tcp_closed_to_new"] >= 1
    assert not [f for d, f in pair.trace if d == "ba" and TCP in Ether(f)]  # no SYN-ACK/RST
    pair.b.tcp.accept_new = True                            # a rollback: open again
    assert pair.run(lambda: listener.readable, timeout=10)  # the retransmitted SYN
    assert client.connected


def test_closed_to_new_keeps_existing_connections():
    pair = Pair(QUICK)
    listener = pair.b.listen(80)
    client = pair.a.connect(IP4_B, 80)
    assert pair.run(lambda: listener.readable)
    server = listener.accept()
    pair.b.tcp.accept_new = False
    client.send(b"still here")
    assert pair.run(lambda: server.readable)
    assert server.recv(100) == b"still here"


def test_same_seed_accepts_the_others_cookie():
    a, b = (ipaddress.ip_address(IP4_A).packed, ipaddress.ip_address(IP4_B).packed)
    first = Stack(QUICK, mac=MAC_B, ipv4=[(IP4_B, 24)], seed=7).tcp.cookies
    same = Stack(QUICK, mac=MAC_B, ipv4=[(IP4_B, 24)], seed=7).tcp.cookies
    other = Stack(QUICK, mac=MAC_B, ipv4=[(IP4_B, 24)], seed=8).tcp.cookies
    cookie = first.make(a, b, 40000, 80, 1234, 1460, 100.0)
    assert same.check(a, b, 40000, 80, 1234, cookie, 101.0) == 1460
    assert other.check(a, b, 40000, 80, 1234, cookie, 101.0) is None
