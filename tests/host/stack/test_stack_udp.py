"""UDP (RFC 768) between two stacks wired directly: datagrams over IPv4 and IPv6, bindings,
port unreachable, checksum and length checks, the bounded receive queue, API misuse."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, ICMPv6DestUnreach
from scapy.layers.l2 import Ether

from hetnic.host.stack.errors import (AddressInUse, BadArgument, ConnectionClosed, StackError,
                                      Unreachable)
from stack_pair import IP4_A, IP4_B, IP6_A, IP6_B, MAC_A, MAC_B, QUICK, Pair


@pytest.mark.parametrize("family", [4, 6])
def test_datagrams_both_ways(family):
    pair = Pair()
    dst = IP4_B if family == 4 else IP6_B
    server = pair.b.udp_socket()
    server.bind(("::", 5353))
    ready = []
    server.on_ready = lambda: ready.append(1)
    client = pair.a.udp_socket()
    for size in (0, 1, 1472, 9000):             # 9000: IPv4 fragments / IPv6 fragments
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert client.sendto(payload, (dst, 5353)) == size
        pair.run()
        data, (host, port) = server.recvfrom()
        assert data == payload
        assert host == (IP4_A if family == 4 else IP6_A)
        assert port == client.getsockname()[1]
        server.sendto(data[::-1], (host, port))
        pair.run()
        assert client.recvfrom() == (payload[::-1], (dst, 5353))
    assert server.recvfrom() is None and client.recvfrom() is None
    assert len(ready) == 4
    assert pair.b.counters.udp_in == 4 and pair.b.counters.udp_out == 4


def test_ephemeral_port_from_the_instance_range_and_close_frees_port():
    pair = Pair(QUICK.replace(ephemeral_ports=(40000, 40001)))
    socks = [pair.a.udp_socket() for _ in range(2)]
    for s in socks:
        s.sendto(b"x", (IP4_B, 9))
    assert sorted(s.getsockname()[1] for s in socks) == [40000, 40001]
    third = pair.a.udp_socket()
    with pytest.raises(AddressInUse, match="no free ephemeral UDP port in 40000-40001"):
        third.sendto(b"x", (IP4_B, 9))
    socks[0].close()
    third.sendto(b"x", (IP4_B, 9))
    assert third.getsockname()[1] == socks[0].getsockname()[1]


def test_bindings_conflict_and_the_specific_address_wins():
    pair = Pair()
    wild = pair.b.udp_socket()
    wild.bind(("0.0.0.0", 53))
    with pytest.raises(AddressInUse, match="UDP port 53"):
        pair.b.udp_socket().bind(("", 53))
    with pytest.raises(AddressInUse):
        pair.b.udp_socket().bind((IP4_B, 53))
    v6 = pair.b.udp_socket()
    v6.bind((IP6_B, 53))                        # 0.0.0.0 leaves IPv6 free
    with pytest.raises(BadArgument, match="already bound"):
        v6.bind((IP6_B, 54))
    with pytest.raises(BadArgument, match="not an address of this instance"):
        pair.b.udp_socket().bind(("198.18.0.99", 53))
    client = pair.a.udp_socket()
    client.sendto(b"four", (IP4_B, 53))
    client.sendto(b"six", (IP6_B, 53))
    pair.run()
    assert wild.recvfrom()[0] == b"four" and v6.recvfrom()[0] == b"six"


@pytest.mark.parametrize("family", [4, 6])
def test_port_unreachable_when_nothing_is_bound(family):
    pair = Pair()
    pair.tracing = True
    client = pair.a.udp_socket()
    client.sendto(b"anyone?", (IP4_B if family == 4 else IP6_B, 4444))
    pair.run()
    assert pair.b.counters.drops["udp_no_socket"] == 1
    answers = [Ether(f) for d, f in pair.trace if d == "ba"]
    if family == 4:
        icmp = [p[ICMP] for p in answers if ICMP in p]
        assert [(m.type, m.code) for m in icmp] == [(3, 3)]
        assert icmp[0].payload.payload.dport == 4444      # the quoted UDP header
    else:
        icmp = [p[ICMPv6DestUnreach] for p in answers if ICMPv6DestUnreach in p]
        assert [m.code for m in icmp] == [4]


def _inject(pair, ip, udp, payload=b"data"):
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / ip / udp / payload)
    pair.b.receive(frame, pair.now)
    return frame


def test_checksums_and_lengths_are_checked():
    pair = Pair()
    sock = pair.b.udp_socket()
    sock.bind(("", 7))
    _inject(pair, IP(src=IP4_A, dst=IP4_B), UDP(sport=1, dport=7, chksum=0x1234))
    _inject(pair, IPv6(src=IP6_A, dst=IP6_B), UDP(sport=1, dport=7, chksum=0x1234))
    _inject(pair, IPv6(src=IP6_A, dst=IP6_B), UDP(sport=1, dport=7, chksum=0))
    _inject(pair, IP(src=IP4_A, dst=IP4_B), UDP(sport=1, dport=7, len=7))
    _inject(pair, IP(src=IP4_A, dst=IP4_B), UDP(sport=1, dport=7, len=200))
    assert sock.recvfrom() is None
    drops = pair.b.counters.drops
    assert drops["udp_bad_checksum"] == 2 and drops["udp_zero_checksum"] == 1
    assert drops["udp_bad_length"] == 2
    _inject(pair, IP(src=IP4_A, dst=IP4_B), UDP(sport=1, dport=7, chksum=0), b"no sum")
    _inject(pair, IP(src=IP4_A, dst=IP4_B), UDP(sport=1, dport=7, len=12, chksum=0), b"abcdEXTRA")
    assert sock.recvfrom() == (b"no sum", (IP4_A, 1))
    assert sock.recvfrom() == (b"abcd", (IP4_A, 1))     # trailing bytes past the length cut


def test_receive_queue_is_bounded():
    pair = Pair(QUICK.replace(rcvbuf=4096))
    sock = pair.b.udp_socket()
    sock.bind(("", 7))
    client = pair.a.udp_socket()
    for _ in range(10):
        client.sendto(bytes(1000), (IP4_B, 7))
    pair.run()
    got = 0
    while sock.recvfrom() is not None:
        got += 1
    assert got == 4
    assert pair.b.counters.drops["udp_queue_full"] == 6


def test_api_misuse_is_one_line():
    pair = Pair()
    sock = pair.a.udp_socket()
    cases = [
        (BadArgument, lambda: sock.sendto("text", (IP4_B, 7)), "bytes-like"),
        (BadArgument, lambda: sock.sendto(b"x", (IP4_B, 70000)), "port must be"),
        (BadArgument, lambda: sock.sendto(b"x", (IP4_B, 0)), "port must be"),
        (BadArgument, lambda: sock.sendto(b"x", ("nowhere", 7)), "IPv4 or IPv6"),
        (BadArgument, lambda: sock.sendto(b"x", IP4_B), "(host, port)"),
        (BadArgument, lambda: sock.sendto(bytes(70000), (IP4_B, 7)), "do not fit"),
        (BadArgument, lambda: sock.bind(("", -1)), "port must be"),
        (Unreachable, lambda: sock.sendto(b"x", ("198.19.5.5", 7)), "no route"),
        (Unreachable, lambda: sock.sendto(b"x", ("2001:db8:1::5", 7)), "no route"),
    ]
    for cls, call, fragment in cases:
        with pytest.raises(cls) as info:
            call()
        assert isinstance(info.value, StackError) and isinstance(info.value, OSError)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    sock.close()
    sock.close()
    with pytest.raises(ConnectionClosed):
        sock.sendto(b"x", (IP4_B, 7))
    with pytest.raises(ConnectionClosed):
        sock.recvfrom()


def test_bound_to_ipv4_any_cannot_send_to_ipv6():
    """A socket bound to 0.0.0.0 takes IPv4 only: a datagram to an IPv6 host is refused at
    once (its replies would get port unreachable), one line; IPv4 still goes out."""
    pair = Pair()
    sock = pair.a.udp_socket()
    sock.bind(("0.0.0.0", 0))
    out = pair.a.counters.udp_out
    with pytest.raises(BadArgument) as info:
        sock.sendto(b"x", (IP6_B, 7))
    assert "0.0.0.0" in str(info.value) and "\n" not in str(info.value)
    assert pair.a.counters.udp_out == out
    assert sock.sendto(b"x", (IP4_B, 7)) == 1
