"""ICMP errors reach TCP and UDP (RFC 1122 4.2.3.9, RFC 5927): a hard error (port or
protocol unreachable) aborts a connection in SYN-SENT; in synchronized states every error is
only recorded (soft); the quoted sequence number must lie in [SND.UNA, SND.MAX]; a UDP
socket records the error about a datagram it sent."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether

from hetnic.host.stack.errors import ConnectionRefused, Unreachable
from stack_pair import IP4_A, IP4_B, IP6_A, IP6_B, MAC_A, MAC_B, Pair

pytestmark = pytest.mark.timeout(60)

T0 = 100.0


def _icmp4(code: int, lport: int, rport: int, seq: int) -> bytes:
    """B's router says: our (A's) TCP segment to B could not be delivered."""
    return bytes(Ether(src=MAC_B, dst=MAC_A) / IP(src=IP4_B, dst=IP4_A)
                 / ICMP(type=3, code=code)
                 / IP(src=IP4_A, dst=IP4_B) / TCP(sport=lport, dport=rport, seq=seq, flags="S"))


def _syn_sent(pair: Pair, host: str = IP4_B, port: int = 80):
    client = pair.a.connect(host, port, now=T0)
    assert client.state == "SYN-SENT"
    conn = client._conn
    return client, conn


def test_port_unreachable_in_syn_sent_refuses():
    pair = Pair()
    client, conn = _syn_sent(pair)
    pair.a.receive(_icmp4(3, conn.lport, 80, conn.iss), T0 + 0.01)
    assert client.error == "refused" and client.closed
    assert len(pair.a.tcp) == 0
    with pytest.raises(ConnectionRefused):
        client.recv()


def test_protocol_unreachable_in_syn_sent_is_unreachable():
    pair = Pair()
    client, conn = _syn_sent(pair)
    pair.a.receive(_icmp4(2, conn.lport, 80, conn.iss), T0 + 0.01)
    assert client.error == "unreachable" and client.closed
    with pytest.raises(Unreachable):
        client.send(b"x")


def test_a_quoted_sequence_number_outside_the_window_is_ignored():
    pair = Pair()
    client, conn = _syn_sent(pair)
    for seq in (conn.iss - 1, conn.iss + 2, conn.iss + 100_000):
        pair.a.receive(_icmp4(3, conn.lport, 80, seq & 0xFFFFFFFF), T0 + 0.01)
    assert client.state == "SYN-SENT" and client.error is None
    assert pair.a.counters.drops["icmp_tcp_bad_seq"] == 3


def test_soft_errors_are_recorded_without_abort():
    pair = Pair()
    client, conn = _syn_sent(pair)
    pair.a.receive(_icmp4(1, conn.lport, 80, conn.iss), T0 + 0.01)      # host unreachable
    assert client.state == "SYN-SENT" and client.error is None
    assert conn.soft_error == "unreachable"


def test_hard_errors_in_established_are_soft():
    pair = Pair()
    pair.now = T0
    listener, client, server = pair.connect(4, port=80)
    conn = client._conn
    client.send(b"hello")
    pair.a.receive(_icmp4(3, conn.lport, 80, conn.snd_una), pair.now)
    assert client.state == "ESTABLISHED" and client.error is None
    (dump,) = pair.a.connections()
    assert dump["soft_error"] == "port_unreachable"
    assert pair.run(lambda: server.recv() == b"hello")


def test_an_error_for_no_connection_is_counted():
    pair = Pair()
    pair.a.receive(_icmp4(3, 40000, 80, 1234), T0)
    assert pair.a.counters.drops["icmp_tcp_no_connection"] == 1


def test_icmpv6_port_unreachable_in_syn_sent_refuses():
    pair = Pair()
    client, conn = _syn_sent(pair, IP6_B)
    frame = bytes(Ether(src=MAC_B, dst=MAC_A) / IPv6(src=IP6_B, dst=IP6_A)
                  / ICMPv6DestUnreach(code=4)
                  / IPv6(src=IP6_A, dst=IP6_B) / TCP(sport=conn.lport, dport=80,
                                                     seq=conn.iss, flags="S"))
    pair.a.receive(frame, T0 + 0.01)
    assert client.error == "refused"


def test_udp_socket_records_the_port_unreachable_it_caused():
    pair = Pair()
    pair.now = T0
    sock = pair.a.udp_socket()
    sock.bind(("0.0.0.0", 5353))
    sock.sendto(b"anyone?", (IP4_B, 9999))          # nobody listens on B's port 9999
    pair.run()
    assert pair.b.counters.drops["udp_no_socket"] == 1
    assert sock.icmp_error == ("port_unreachable", (IP4_B, 9999))


def test_icmp_error_about_another_protocol_is_counted_unhandled():
    pair = Pair()
    frame = bytes(Ether(src=MAC_B, dst=MAC_A) / IP(src=IP4_B, dst=IP4_A)
                  / ICMP(type=3, code=3) / IP(src=IP4_A, dst=IP4_B, proto=132)
                  / (b"\x00" * 12))
    pair.a.receive(frame, T0)
    assert pair.a.counters.drops["icmp_error_unhandled"] == 1


def test_udp_error_for_no_socket_is_counted():
    pair = Pair()
    frame = bytes(Ether(src=MAC_B, dst=MAC_A) / IP(src=IP4_B, dst=IP4_A)
                  / ICMP(type=3, code=3) / IP(src=IP4_A, dst=IP4_B) / UDP(sport=1111, dport=9))
    pair.a.receive(frame, T0)
    assert pair.a.counters.drops["icmp_udp_no_socket"] == 1
