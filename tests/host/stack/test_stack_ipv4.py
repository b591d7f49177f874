"""IPv4 and ICMP on the stack's NetInterface: header checks, delivery, the send path, echo,
errors and the ICMP rate limit."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror, fragment
from scapy.layers.l2 import Ether

from hetnic.errors import HetnicError
from hetnic.host.stack.address import parse_mac as mac, to_addr as ip
from hetnic.host.stack.checksum import checksum
from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.icmp import TokenBucket
from hetnic.host.stack.interface import NetInterface

OUR_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
GW_MAC = "02:00:00:00:00:fe"


US, PEER, GW = ip("198.18.0.2"), ip("198.18.0.1"), ip("198.18.0.254")


def make_iface(**kw):
    counters = StackCounters()
    iface = NetInterface(mac(OUR_MAC), [(US, 24)], [], counters, **kw)
    iface.neighbours.update(PEER, mac(PEER_MAC), 0.0, confirmed=True)
    return iface, counters


def frame(payload, src="198.18.0.1", dst="198.18.0.2", eth_dst=OUR_MAC, **ipkw):
    return bytes(Ether(src=PEER_MAC, dst=eth_dst) / IP(src=src, dst=dst, **ipkw) / payload)


def take(iface):
    frames = [Ether(f) for f in iface.out]
    iface.out.clear()
    return frames


def recorder(iface, proto):
    got = []
    iface.transports[proto] = lambda src, dst, payload, now: got.append((src, dst, bytes(payload)))
    return got


def test_tcp_payload_reaches_handler_padding_trimmed():
    iface, counters = make_iface()
    got = recorder(iface, 6)
    raw = frame(TCP(sport=1000, dport=80, flags="S"))
    iface.receive(raw + b"\0" * 6, 0.0)        # Ethernet padding after the packet
    assert got == [(PEER, US, raw[34:])]
    assert counters.ip4_in == 1 and counters.drops == {}


def test_udp_broadcast_delivered_tcp_broadcast_dropped():
    iface, counters = make_iface()
    udp = recorder(iface, 17)
    tcp = recorder(iface, 6)
    for dst in ("255.255.255.255", "198.18.0.255"):
        iface.receive(frame(UDP(sport=1, dport=2), dst=dst, eth_dst="ff:ff:ff:ff:ff:ff"), 0.0)
        iface.receive(frame(TCP(sport=1, dport=2), dst=dst, eth_dst="ff:ff:ff:ff:ff:ff"), 0.0)
    assert len(udp) == 2 and tcp == []
    assert counters.drops == {"ip_broadcast": 2}


def _corrupt(raw, at, value):
    raw = bytearray(raw)
    raw[at] = value
    return bytes(raw)


@pytest.mark.parametrize("mutate, reason", [
    (lambda f: f[:30], "ip_truncated"),
    (lambda f: _corrupt(f, 14, 0x65), "ip_bad_version"),
    (lambda f: _corrupt(f, 14, 0x44), "ip_bad_ihl"),
    (lambda f: _corrupt(f, 24, f[24] ^ 0xFF), "ip_bad_checksum"),
    (lambda f: bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src="198.18.0.1", dst="198.18.0.2",
                                                           ihl=15) / UDP()), "ip_bad_ihl"),
    (lambda f: bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src="198.18.0.1", dst="198.18.0.2",
                                                           len=200) / UDP()), "ip_bad_length"),
    (lambda f: bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src="198.18.0.1", dst="198.18.0.2",
                                                           len=10) / UDP()), "ip_bad_length"),
    (lambda f: frame(UDP(), dst="198.18.0.7"), "ip_not_ours"),
    (lambda f: frame(UDP(), src="224.0.0.1"), "ip_bad_source"),
    (lambda f: frame(UDP(), src="198.18.0.255"), "ip_bad_source"),
])
def test_bad_headers_are_counted_by_reason(mutate, reason):
    iface, counters = make_iface()
    got = recorder(iface, 17)
    iface.receive(mutate(frame(UDP(sport=1, dport=2) / b"data")), 0.0)
    assert got == [] and iface.out == []
    assert counters.drops == {reason: 1}


def test_options_are_skipped():
    iface, _ = make_iface()
    got = recorder(iface, 17)
    raw = frame(UDP(sport=1, dport=2) / b"data", options=b"\x01\x01\x01\x00")
    iface.receive(raw, 0.0)
    assert got == [(PEER, US, raw[38:])]


def test_echo_reply_same_id_seq_data():
    iface, counters = make_iface()
    iface.receive(frame(ICMP(type=8, id=0x1234, seq=7) / (b"ping" * 100)), 0.0)
    (reply,) = take(iface)
    assert reply.dst == PEER_MAC and reply[IP].src == "198.18.0.2" and reply[IP].dst == "198.18.0.1"
    assert reply[ICMP].type == 0 and reply[ICMP].id == 0x1234 and reply[ICMP].seq == 7
    assert bytes(reply[ICMP].payload) == b"ping" * 100
    check = reply.copy()
    del check[IP].chksum, check[ICMP].chksum
    rebuilt = Ether(bytes(check))
    assert rebuilt[IP].chksum == reply[IP].chksum and rebuilt[ICMP].chksum == reply[ICMP].chksum
    assert counters.icmp_in == 1 and counters.icmp_out == 1


def test_no_echo_reply_to_broadcast_and_bad_icmp_checksum():
    iface, counters = make_iface()
    iface.receive(frame(ICMP(type=8), dst="255.255.255.255", eth_dst="ff:ff:ff:ff:ff:ff"), 0.0)
    iface.receive(frame(ICMP(type=8, chksum=1)), 0.0)
    assert iface.out == []
    assert counters.drops == {"icmp_broadcast": 1, "icmp_bad_checksum": 1}


def test_protocol_unreachable_quotes_header():
    iface, counters = make_iface()
    iface.receive(frame(b"12345678abcd", proto=99), 0.0)
    (error,) = take(iface)
    assert error[ICMP].type == 3 and error[ICMP].code == 2
    assert error[IPerror].proto == 99 and error[IPerror].src == "198.18.0.1"
    assert counters.drops == {"ip_unknown_protocol": 1}


def test_send_unreachable_port_and_not_for_broadcast():
    iface, _ = make_iface()
    udp = bytes(UDP(sport=5000, dport=9) / b"x")
    iface.send_unreachable(PEER, US, 17, udp, 3, 0.0)
    (error,) = take(iface)
    assert error[ICMP].type == 3 and error[ICMP].code == 3
    assert error[UDPerror].sport == 5000 and error[UDPerror].dport == 9
    iface.send_unreachable(PEER, ip("255.255.255.255"), 17, udp, 3, 0.0)
    assert iface.out == []


def test_no_error_about_an_icmp_error_or_a_later_fragment():
    iface, _ = make_iface()
    about_error = IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(type=3, code=3) / (b"q" * 28)
    iface.icmp4.error(3, 2, PEER, US, bytes(about_error), 0.0)
    later_fragment = IP(src="198.18.0.1", dst="198.18.0.2", frag=100) / (b"q" * 16)
    iface.icmp4.error(3, 2, PEER, US, bytes(later_fragment), 0.0)
    assert iface.out == []
    about_echo = IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(type=8) / (b"q" * 28)
    iface.icmp4.error(3, 2, PEER, US, bytes(about_echo), 0.0)
    assert len(take(iface)) == 1


def test_icmp_error_in_calls_hook():
    iface, counters = make_iface()
    seen = []
    iface.on_icmp_error = lambda *args: seen.append(args)
    quoted = IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=40000, dport=80)
    iface.receive(frame(ICMP(type=3, code=1) / bytes(quoted)[:28]), 0.0)
    iface.receive(frame(ICMP(type=3, code=3) / bytes(quoted)[:28]), 0.0)
    assert [(p, s, d, k) for p, s, d, _, k in seen] == [
        (6, US, PEER, "unreachable"), (6, US, PEER, "port_unreachable")]
    assert seen[0][3][:4] == bytes(TCP(sport=40000, dport=80))[:4]
    iface.on_icmp_error = None
    iface.receive(frame(ICMP(type=11) / bytes(quoted)[:28]), 0.0)
    assert counters.drops == {"icmp_error_unhandled": 1}


def test_echo_flood_is_rate_limited():
    iface, counters = make_iface(icmp_rate=(100.0, 10.0))
    for n in range(50):
        iface.receive(frame(ICMP(type=8, seq=n)), 0.0)
    assert len(take(iface)) == 10
    assert counters.drops == {"icmp_rate_limited": 40}
    for n in range(50):
        iface.receive(frame(ICMP(type=8, seq=n)), 0.1)    # 0.1 s refills 10 tokens
    assert len(take(iface)) == 10


def test_token_bucket():
    bucket = TokenBucket(2.0, 3.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5) and not bucket.allow(0.5)
    assert not bucket.allow(0.1)             # time going backwards adds nothing
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_send_path_header_df_and_ident():
    iface, counters = make_iface()
    iface.send_ip(US, PEER, 6, bytes(TCP(sport=1, dport=2)), 0.0)
    iface.send_ip(US, PEER, 6, bytes(TCP(sport=1, dport=2)), 0.0)
    iface.send_ip(US, PEER, 17, bytes(UDP(sport=1, dport=2)), 0.0)
    a, b, c = take(iface)
    assert a.src == OUR_MAC and a.dst == PEER_MAC and a.type == 0x0800
    assert a[IP].flags == "DF" and c[IP].flags == 0
    assert b[IP].id == (a[IP].id + 1) & 0xFFFF and c[IP].id == (b[IP].id + 1) & 0xFFFF
    for f in (a, b, c):
        check = f[IP].copy()
        del check.chksum
        assert IP(bytes(check)).chksum == f[IP].chksum
        assert f[IP].ttl == 64 and f[IP].len == len(f[IP])
    assert counters.ip_out == 3 and counters.frames_out == 3


def test_large_udp_is_fragmented_and_reassembles():
    iface, _ = make_iface()
    payload = bytes(UDP(sport=1, dport=2) / (bytes(range(256)) * 12))
    iface.send_ip(US, PEER, 17, payload, 0.0)
    frames = take(iface)
    assert len(frames) == 3
    assert all(len(f[IP]) <= 1500 for f in frames)
    assert [f[IP].flags for f in frames] == ["MF", "MF", 0]
    assert b"".join(bytes(f[IP].payload) for f in frames) == payload
    peer = NetInterface(mac(PEER_MAC), [(PEER, 24)], [], StackCounters())
    got = recorder(peer, 17)
    for f in reversed(frames):
        f.dst = PEER_MAC
        peer.receive(bytes(f), 0.0)
    assert got == [(US, PEER, payload)]


def test_gateway_and_no_route():
    iface, counters = make_iface()
    iface.send_ip(US, ip("203.0.113.5"), 17, b"12345678", 0.0)
    assert counters.drops == {"no_route": 1}
    assert iface.source_for(ip("203.0.113.5")) is None
    routed, counters = make_iface(gateway4=GW)
    assert routed.source_for(ip("203.0.113.5")) == US
    routed.neighbours.update(GW, mac(GW_MAC), 0.0, confirmed=True)
    routed.send_ip(US, ip("203.0.113.5"), 17, b"12345678", 0.0)
    (out,) = take(routed)
    assert out.dst == GW_MAC and out[IP].dst == "203.0.113.5"


def test_neighbour_change_invalidates_prebuilt_headers():
    iface, _ = make_iface()
    iface.send_ip(US, PEER, 6, b"x" * 20, 0.0)
    assert take(iface)[0].dst == PEER_MAC
    iface.neighbours.update(PEER, mac("02:00:00:00:00:77"), 1.0, confirmed=True)
    iface.send_ip(US, PEER, 6, b"x" * 20, 1.0)
    assert take(iface)[0].dst == "02:00:00:00:00:77"


def test_no_error_about_a_frame_to_a_group_mac():
    iface, _ = make_iface()
    udp_seen = []

    def refuse(src, dst, payload, now):
        udp_seen.append(dst)
        iface.send_unreachable(src, dst, 17, payload, 3, now)

    iface.transports[17] = refuse
    iface.receive(frame(UDP(sport=1, dport=9), dst="198.18.0.255",
                        eth_dst="ff:ff:ff:ff:ff:ff"), 0.0)
    iface.receive(frame(b"12345678", proto=99, dst="198.18.0.255",
                        eth_dst="ff:ff:ff:ff:ff:ff"), 0.0)
    assert udp_seen == [ip("198.18.0.255")] and iface.out == []
    iface.receive(frame(UDP(sport=1, dport=9)), 0.0)         # the same to our MAC: refused
    (error,) = take(iface)
    assert error[ICMP].type == 3 and error[ICMP].code == 3


def test_source_quench_is_ignored():
    iface, counters = make_iface()
    seen = []
    iface.on_icmp_error = lambda *args: seen.append(args)
    quoted = IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=40000, dport=80)
    iface.receive(frame(ICMP(type=4) / bytes(quoted)[:28]), 0.0)
    assert seen == [] and counters.drops == {"icmp_source_quench_ignored": 1}


def test_fragmented_echo_gets_a_fragmented_reply():
    iface, _ = make_iface()
    data = bytes(range(256)) * 12
    request = IP(src="198.18.0.1", dst="198.18.0.2", id=77) / ICMP(type=8, id=3, seq=4) / data
    for piece in fragment(request, fragsize=1000):
        iface.receive(bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / piece), 0.0)
    frames = take(iface)
    assert len(frames) == 3 and all(len(f[IP]) <= 1500 for f in frames)
    message = b"".join(bytes(f[IP].payload) for f in frames)
    assert checksum(message) == 0
    reply = ICMP(message)
    assert reply.type == 0 and reply.id == 3 and reply.seq == 4
    assert bytes(reply.payload) == data


@pytest.mark.parametrize("kwargs", [{"mac": b"\x02"}, {"ipv4": [("198.18.0", 24)]},
                                    {"ipv4": [("198.18.0.1", 33)]}, {"mtu": 100}])
def test_bad_configuration_is_a_one_line_hetnic_error(kwargs):
    args = {"mac": mac(OUR_MAC), "ipv4": [], "ipv6": [], "counters": StackCounters()}
    args.update(kwargs)
    with pytest.raises(HetnicError) as info:
        NetInterface(**args)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize("eth_dst", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"])
def test_unicast_ip_in_a_link_group_frame_is_discarded(eth_dst):
    """RFC 1122 3.3.6: a datagram received via a link-layer broadcast (or multicast) with a
    unicast IP destination is silently discarded, counted; nothing reaches TCP or UDP."""
    iface, counters = make_iface()
    iface._accept = iface._accept | {mac(eth_dst)}      # a group MAC the link delivered
    tcp = recorder(iface, 6)
    udp = recorder(iface, 17)
    iface.receive(frame(TCP(sport=1000, dport=80, flags="S"), eth_dst=eth_dst), 0.0)
    iface.receive(frame(UDP(sport=1, dport=9), eth_dst=eth_dst), 0.0)
    iface.receive(frame(b"12345678", proto=99, eth_dst=eth_dst), 0.0)
    assert tcp == [] and udp == [] and iface.out == []
    assert counters.drops == {"ip_unicast_in_link_group": 3}
