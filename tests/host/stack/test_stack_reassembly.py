"""Reassembly of IPv4 and IPv6 fragments: any order, overlaps, duplicates, bounds, timeouts."""

import random

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from hetnic.host.stack.address import to_addr as ip
from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.interface import NetInterface
from hetnic.host.stack.reassembly import Reassembler

OUR_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"


US4, PEER4 = ip("198.18.0.2"), ip("198.18.0.1")
US6, PEER6 = ip("2001:db8::2"), ip("2001:db8::1")


def make_iface(**kw):
    counters = StackCounters()
    iface = NetInterface(bytes.fromhex(OUR_MAC.replace(":", "")), [(US4, 24)], [(US6, 64)],
                         counters, **kw)
    got = []
    iface.transports[17] = lambda src, dst, payload, now: got.append(bytes(payload))
    return iface, counters, got


def eth(packet):
    return bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / packet)


def datagram4(size, ident=1):
    return IP(src="198.18.0.1", dst="198.18.0.2", id=ident) / UDP(sport=1, dport=2) / \
        bytes(random.Random(size).randrange(256) for _ in range(size))


@pytest.mark.parametrize("seed", range(8))
def test_ipv4_any_order(seed):
    print("seed", seed)
    rng = random.Random(seed)
    iface, counters, got = make_iface()
    packet = datagram4(rng.randrange(1000, 8000), ident=seed)
    frags = [eth(f) for f in fragment(packet, fragsize=rng.choice([64, 496, 1480]))]
    rng.shuffle(frags)
    for f in frags:
        iface.receive(f, 0.0)
    assert got == [bytes(packet[UDP])]
    assert counters.drops == {} and len(iface.ip4.reassembler) == 0
    assert iface.ip4.reassembler.held == 0


@pytest.mark.parametrize("seed", range(4))
def test_ipv6_any_order_and_atomic(seed):
    print("seed", seed)
    rng = random.Random(seed)
    iface, counters, got = make_iface()
    body = UDP(sport=1, dport=2) / bytes(rng.randrange(256) for _ in range(5000))
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=seed) / body
    frags = [eth(f) for f in fragment6(packet, 1280)]
    assert len(frags) > 3
    rng.shuffle(frags)
    for f in frags:
        iface.receive(f, 0.0)
    atomic = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=99) / body
    iface.receive(eth(atomic), 0.0)
    expected = bytes(IPv6(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / body))[UDP])
    assert got == [expected, expected]
    assert counters.drops == {}


def test_overlap_drops_whole_datagram_exact_duplicate_ignored():
    iface, counters, got = make_iface()
    frags = fragment(datagram4(3000), fragsize=1000)
    iface.receive(eth(frags[0]), 0.0)
    iface.receive(eth(frags[0]), 0.0)                    # an exact copy: ignored
    overlapping = frags[1].copy()
    overlapping.frag -= 1                                 # starts 8 bytes early
    iface.receive(eth(overlapping), 0.0)
    assert counters.drops == {"frag_duplicate": 1, "frag_overlap": 1}
    assert len(iface.ip4.reassembler) == 0
    for f in frags[1:]:
        iface.receive(eth(f), 0.0)
    assert got == []                                      # the first fragment went with it


def test_timeout_drops_and_sends_time_exceeded():
    iface, counters, got = make_iface(reassembly_timeout=30.0)
    iface.neighbours.update(PEER4, bytes.fromhex(PEER_MAC.replace(":", "")), 0.0,
                            confirmed=True)
    frags = fragment(datagram4(3000), fragsize=1000)
    iface.receive(eth(frags[0]), 5.0)
    assert iface.next_deadline() == 35.0
    iface.poll(34.9)
    assert counters.drops == {}
    iface.poll(35.0)
    assert counters.drops == {"frag_timeout": 1}
    (error,) = [Ether(f) for f in iface.out]
    assert error[IP].proto == 1 and bytes(error[IP].payload)[:2] == b"\x0b\x01"
    for f in frags[1:]:
        iface.receive(eth(f), 40.0)
    assert got == []


def test_memory_bound_evicts_oldest():
    iface, counters, got = make_iface(reassembly_limit=4000)
    for ident in range(10):
        first = fragment(datagram4(3000, ident), fragsize=1000)[0]
        iface.receive(eth(first), 0.0)
        assert iface.ip4.reassembler.held <= 4000
    assert counters.drops["frag_evicted"] == 6
    assert len(iface.ip4.reassembler) == 4


def test_oversize_and_bad_lengths():
    r = Reassembler(StackCounters(), header_len_limit=20)
    assert r.add("k", 65512, False, b"x" * 8, 0.0) is None
    assert r.counters.drops == {"frag_oversize": 1}
    assert r.add("k", 0, True, b"x" * 12, 0.0) is None    # not a multiple of 8
    assert r.counters.drops["frag_bad_length"] == 1
    assert r.add("k", 16, False, b"x" * 8, 0.0) is None
    assert r.add("k", 16, False, b"x" * 16, 0.0) is None   # a second, different end
    assert r.counters.drops["frag_bad_length"] == 2
    assert r.add("m", 8, False, b"a" * 8, 0.0) is None
    assert r.add("m", 16, True, b"b" * 8, 0.0) is None      # past the declared end
    assert r.counters.drops["frag_bad_length"] == 3
    assert len(r) == 0 and r.held == 0


def test_fragment_count_bound():
    r = Reassembler(StackCounters(), max_fragments=4)
    for n in range(4):
        assert r.add("k", n * 16, True, b"x" * 8, 0.0) is None
    assert r.add("k", 200, True, b"x" * 8, 0.0) is None
    assert r.counters.drops == {"frag_too_many": 1}
    assert len(r) == 0 and r.held == 0


def test_datagram_count_bound():
    r = Reassembler(StackCounters(), max_datagrams=2)
    for key in range(5):
        r.add(key, 0, True, b"x" * 8, 0.0)
    assert len(r) == 2 and r.counters.drops == {"frag_evicted": 3}


def test_reassembler_completes_in_order():
    r = Reassembler(StackCounters())
    assert r.add("k", 8, False, b"world!", 1.0, info="second") is None
    assert r.add("k", 0, True, b"hello, w", 1.0, info="first") == (b"hello, wworld!", "first")
    assert len(r) == 0 and r.held == 0


def _first_fragment_only6(inner, ident):
    """The first of the fragments of IPv6 ``inner`` (from the peer to us), as a frame."""
    frags = fragment6(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=ident)
                      / inner, 600)
    assert len(frags) > 1
    return frags


def test_ipv6_timeout_sends_time_exceeded_but_not_about_an_icmpv6_error():
    """RFC 8200 4.5: a time exceeded (code 1) when the first fragment came; none when only a
    later one came, and none about an ICMPv6 error (RFC 4443 2.4 e), not even one whose
    ICMPv6 header sits behind a destination options header."""
    from scapy.layers.inet6 import ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6ExtHdrDestOpt
    iface, counters, got = make_iface(reassembly_timeout=30.0)
    iface.neighbours.update(PEER6, bytes.fromhex(PEER_MAC.replace(":", "")), 0.0,
                            confirmed=True)
    udp = _first_fragment_only6(UDP(sport=1, dport=2) / bytes(2000), 1)
    error = _first_fragment_only6(ICMPv6PacketTooBig(mtu=1280) / bytes(2000), 2)
    behind = _first_fragment_only6(IPv6ExtHdrDestOpt() / ICMPv6PacketTooBig(mtu=1280)
                                   / bytes(2000), 3)
    later = _first_fragment_only6(UDP(sport=1, dport=2) / bytes(2000), 4)
    for frame in (udp[0], error[0], behind[0], later[1]):
        iface.receive(eth(frame), 5.0)
    iface.poll(35.0)
    assert counters.drops == {"frag_timeout": 4}
    (frame,) = iface.out
    sent = Ether(frame)
    assert sent[IPv6].dst == "2001:db8::1"
    assert sent.haslayer(ICMPv6TimeExceeded) and sent[ICMPv6TimeExceeded].code == 1
    assert bytes(frame)[14 + 40 + 8:] == bytes(udp[0])       # the whole first fragment
    assert got == []


def test_upper_layer_walks_the_extension_headers():
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop

    from hetnic.host.stack.icmpv6 import upper_layer
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    assert upper_layer(bytes(base / UDP())) == (17, 40)
    assert upper_layer(bytes(base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                             / ICMPv6EchoRequest())) == (58, 56)
    assert upper_layer(bytes(base / IPv6ExtHdrFragment(offset=0, m=1) / UDP())) == (17, 48)
    assert upper_layer(bytes(base / IPv6ExtHdrFragment(offset=8, m=0) / UDP())) is None
    assert upper_layer(bytes(base / IPv6ExtHdrDestOpt())[:41]) is None   # cut short
