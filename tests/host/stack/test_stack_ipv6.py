"""IPv6, NDP and ICMPv6 on the stack's NetInterface."""

import ipaddress

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    HBHOptUnknown, ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
    ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, ICMPv6ParamProblem, IPv6,
    IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether

from hetnic.host.stack.address import parse_mac as mac, to_addr as ip
from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.interface import NetInterface
from hetnic.host.stack.ipv6 import link_local_from_mac, solicited_node
from hetnic.host.stack.neighbours import DELAY, REACHABLE, STALE

OUR_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
OUR_LL = "fe80::ff:fe00:1"


US, PEER = ip("2001:db8::2"), ip("2001:db8::1")


def make_iface(**kw):
    counters = StackCounters()
    iface = NetInterface(mac(OUR_MAC), [], [(US, 64)], counters, **kw)
    return iface, counters


def frame(packet, dst_mac=OUR_MAC):
    return bytes(Ether(src=PEER_MAC, dst=dst_mac) / packet)


def take(iface):
    frames = [Ether(f) for f in iface.out]
    iface.out.clear()
    return frames


def ns(target, src="2001:db8::1", dst=None, hlim=255, lladdr=PEER_MAC):
    dst = dst or str(ipaddress.ip_address(solicited_node(ip(target))))
    packet = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    if lladdr:
        packet = packet / ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    group_mac = "33:33:" + ":".join(f"{b:02x}" for b in ip(dst)[12:])
    return frame(packet, group_mac if dst.startswith("ff") else OUR_MAC)


def test_addresses_and_groups():
    iface, _ = make_iface()
    assert link_local_from_mac(mac(OUR_MAC)) == ip(OUR_LL)
    assert iface.is_local(ip(OUR_LL)) and iface.is_local(US)
    assert solicited_node(US) == ip("ff02::1:ff00:2")
    assert iface.source_for(ip("fe80::5")) == ip(OUR_LL)
    assert iface.source_for(ip("2001:db8::77")) == US
    assert iface.source_for(ip("2001:db9::1")) is None


@pytest.mark.parametrize("target", ["2001:db8::2", OUR_LL])
def test_solicitation_answered_with_solicited_override_and_sender_learnt(target):
    iface, counters = make_iface()
    iface.receive(ns(target), 0.0)
    (na,) = take(iface)
    assert na.dst == PEER_MAC and na[IPv6].dst == "2001:db8::1" and na[IPv6].hlim == 255
    assert na[IPv6].src == target
    assert na[ICMPv6ND_NA].tgt == target and na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1
    assert na[ICMPv6NDOptDstLLAddr].lladdr == OUR_MAC
    check = na.copy()
    del check[ICMPv6ND_NA].cksum
    assert Ether(bytes(check))[ICMPv6ND_NA].cksum == na[ICMPv6ND_NA].cksum
    # Learnt STALE; the NA sent through it moved it to DELAY (RFC 4861 7.3.3).
    assert iface.neighbours.state(PEER) == DELAY and iface.neighbours.mac(PEER) == mac(PEER_MAC)
    assert counters.drops == {}


def test_dad_solicitation_answered_to_all_nodes():
    iface, _ = make_iface()
    iface.receive(ns("2001:db8::2", src="::", lladdr=None), 0.0)
    (na,) = take(iface)
    assert na[IPv6].dst == "ff02::1" and na.dst == "33:33:00:00:00:01"
    assert na[ICMPv6ND_NA].S == 0 and na[ICMPv6ND_NA].O == 1


@pytest.mark.parametrize("kwargs, reason", [
    ({"target": "2001:db8::9", "dst": "2001:db8::2"}, "ndp_not_ours"),
    ({"target": "2001:db8::2", "hlim": 64}, "ndp_bad_hop_limit"),
    ({"target": "2001:db8::2", "src": "::"}, "ndp_malformed"),    # DAD with an SLLA option
])
def test_bad_or_foreign_solicitations_counted_not_answered(kwargs, reason):
    iface, counters = make_iface()
    iface.receive(ns(**kwargs), 0.0)
    assert iface.out == []
    assert counters.drops == {reason: 1}


def test_solicitation_with_zero_length_option_dropped():
    iface, counters = make_iface()
    raw = bytearray(ns("2001:db8::2"))
    raw[-7] = 0                                     # the option's length
    packet = Ether(bytes(raw))
    del packet[ICMPv6ND_NS].cksum
    iface.receive(bytes(packet), 0.0)
    assert counters.drops == {"ndp_bad_option": 1}


def test_resolution_by_solicitation_then_advertisement():
    iface, counters = make_iface()
    iface.send_ip(US, PEER, 17, bytes(UDP(sport=1, dport=2)), 0.0)
    (sol,) = take(iface)
    assert sol.dst == "33:33:ff:00:00:01" and sol[IPv6].dst == "ff02::1:ff00:1"
    assert sol[IPv6].src == "2001:db8::2" and sol[IPv6].hlim == 255
    assert sol[ICMPv6ND_NS].tgt == "2001:db8::1"
    assert sol[ICMPv6NDOptSrcLLAddr].lladdr == OUR_MAC
    na = IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=255) / \
        ICMPv6ND_NA(tgt="2001:db8::1", S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
    iface.receive(frame(na), 0.1)
    (data,) = take(iface)
    assert data.dst == PEER_MAC and data[UDP].dport == 2
    assert iface.neighbours.state(PEER) == REACHABLE


def test_advertisement_rules():
    iface, counters = make_iface()
    unsolicited = IPv6(src="2001:db8::1", dst="ff02::1", hlim=255) / \
        ICMPv6ND_NA(tgt="2001:db8::1", S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)
    iface.receive(frame(unsolicited, "33:33:00:00:00:01"), 0.0)
    assert iface.neighbours.state(PEER) is None       # no entry: nothing created
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    other = IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=255) / \
        ICMPv6ND_NA(tgt="2001:db8::1", S=1, O=0) / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99")
    iface.receive(frame(other), 1.0)                  # no override: MAC kept, entry STALE
    assert iface.neighbours.mac(PEER) == mac(PEER_MAC)
    assert iface.neighbours.state(PEER) == STALE
    bad = IPv6(src="2001:db8::1", dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt="2001:db8::1", S=1)
    iface.receive(frame(bad, "33:33:00:00:00:01"), 1.0)
    assert counters.drops == {"ndp_unsolicited": 1, "ndp_malformed": 1}


def test_echo_request_reply():
    iface, counters = make_iface()
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    iface.receive(frame(IPv6(src="2001:db8::1", dst="2001:db8::2")
                        / ICMPv6EchoRequest(id=7, seq=9, data=b"abc" * 50)), 0.0)
    (reply,) = take(iface)
    assert reply[IPv6].src == "2001:db8::2" and reply[IPv6].dst == "2001:db8::1"
    assert reply[ICMPv6EchoReply].id == 7 and reply[ICMPv6EchoReply].seq == 9
    assert reply[ICMPv6EchoReply].data == b"abc" * 50
    check = reply.copy()
    del check[ICMPv6EchoReply].cksum
    assert Ether(bytes(check))[ICMPv6EchoReply].cksum == reply[ICMPv6EchoReply].cksum
    bad = frame(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(cksum=5))
    iface.receive(bad, 0.0)
    assert counters.drops == {"icmp_bad_checksum": 1}


def test_extension_headers_skipped_and_unknown_next_header():
    iface, counters = make_iface()
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    got = []
    iface.transports[17] = lambda s, d, p, n: got.append(bytes(p))
    udp = UDP(sport=1, dport=2) / b"payload!"
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / \
        IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(segleft=0) / udp
    raw = frame(packet)
    iface.receive(raw, 0.0)
    assert got == [raw[-16:]]
    iface.receive(frame(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=99) / b"12345678"), 0.0)
    (error,) = take(iface)
    assert error[ICMPv6ParamProblem].code == 1 and error[ICMPv6ParamProblem].ptr == 6
    late_hbh = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / \
        IPv6ExtHdrHopByHop() / udp
    iface.receive(frame(late_hbh), 0.0)
    routed = IPv6(src="2001:db8::1", dst="2001:db8::2") / \
        IPv6ExtHdrRouting(segleft=1, addresses=["2001:db8::5"]) / udp
    iface.receive(frame(routed), 0.0)
    assert counters.drops == {"ip_unknown_protocol": 1, "ip6_bad_header_order": 1,
                              "ip6_routing": 1}


def test_port_unreachable_and_not_to_multicast():
    iface, _ = make_iface()
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    head = bytes(UDP(sport=4000, dport=9) / b"x")
    iface.send_unreachable(PEER, US, 17, head, 3, 0.0)
    (error,) = take(iface)
    assert error[ICMPv6DestUnreach].code == 4
    iface.send_unreachable(PEER, ip("ff02::1"), 17, head, 3, 0.0)
    assert iface.out == []


@pytest.mark.parametrize("packet, reason", [
    (IPv6(src="2001:db8::1", dst="2001:db8::3") / UDP(), "ip_not_ours"),
    (IPv6(src="ff02::1", dst="2001:db8::2") / UDP(), "ip_bad_source"),
    (IPv6(src="2001:db8::1", dst="2001:db8::2", plen=200) / UDP(), "ip_bad_length"),
    (IPv6(src="2001:db8::1", dst="2001:db8::2", version=4) / UDP(), "ip_bad_version"),
    (IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59), "ip6_no_next_header"),
    (IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(), "ndp_ra_ignored"),
])
def test_bad_ipv6_counted(packet, reason):
    iface, counters = make_iface()
    dst = "33:33:00:00:00:01" if packet.dst == "ff02::1" else OUR_MAC
    iface.receive(frame(packet, dst), 0.0)
    assert counters.drops == {reason: 1}
    assert iface.out == []


def test_solicitation_for_foreign_group_filtered_by_mac():
    iface, counters = make_iface()
    iface.receive(ns("2001:db8::9"), 0.0)
    assert counters.drops == {"eth_not_ours": 1}


def test_multicast_mac_filter():
    iface, counters = make_iface()
    iface.receive(frame(IPv6(src="2001:db8::1", dst="ff02::1:ff00:7") / UDP(),
                        "33:33:ff:00:00:07"), 0.0)
    assert counters.drops == {"eth_not_ours": 1}


@pytest.mark.parametrize("otype, sends_error", [(0x1E, False), (0x5E, False), (0x9E, True),
                                                (0xDE, True)])
def test_unknown_options_follow_their_action_bits(otype, sends_error):
    iface, counters = make_iface()
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    got = []
    iface.transports[17] = lambda s, d, p, n: got.append(bytes(p))
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2") / \
        IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=otype, optdata=b"ab")]) / \
        UDP(sport=1, dport=2)
    iface.receive(frame(packet), 0.0)
    if otype >> 6 == 0:
        assert len(got) == 1 and counters.drops == {}
        return
    assert got == [] and counters.drops == {"ip6_unknown_option": 1}
    errors = take(iface)
    if sends_error:
        (error,) = errors
        assert error[ICMPv6ParamProblem].code == 2 and error[ICMPv6ParamProblem].ptr == 42
    else:
        assert errors == []


def test_malformed_option_list_dropped():
    iface, counters = make_iface()
    raw = bytearray(frame(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
                          / UDP(sport=1, dport=2)))
    raw[54 + 3] = 9          # PadN claiming more bytes than the header holds
    iface.receive(bytes(raw), 0.0)
    assert counters.drops == {"ip6_bad_option": 1}


def test_unicast_ipv6_in_a_multicast_frame_is_discarded():
    """As RFC 1122 3.3.6 for IPv4: a unicast destination in a link-layer group frame (here
    the all-nodes MAC) is discarded, counted; a multicast destination still gets through."""
    iface, counters = make_iface()
    got = []
    iface.transports[17] = lambda src, dst, payload, now: got.append(dst)
    group = "33:33:00:00:00:01"
    iface.receive(frame(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=9), group), 0.0)
    assert got == [] and counters.drops == {"ip_unicast_in_link_group": 1}
    iface.receive(frame(IPv6(src="2001:db8::1", dst="ff02::1") / UDP(dport=9), group), 0.0)
    assert got == [ip("ff02::1")]
