"""The tunnel adapter, sans-I/O: two adapters wired back to back (each the other's remote)
carry TCP and ping through VXLAN (IPv4 and IPv6 outer) and VXLAN-GPE at once; overlapping
inner ranges in two domains; the bad inputs are counted drops; the MTU answers are ICMP."""

from __future__ import annotations

import struct

import pytest

from hetnic.host.stack.checksum import checksum
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.stack import Stack
from hetnic.host.stack.tunnel import TunnelAdapter, TunnelError, TunnelSpec, parse_tunnel
from hetnic.tunnel_format import VXLAN_GPE_UDP_PORT, VXLAN_UDP_PORT, pack_gpe, pack_vxlan

pytestmark = pytest.mark.timeout(60)

CFG = PROFILES["low-delay"]
A4, B4 = "198.18.0.2", "198.18.0.1"
A6, B6 = "2001:db8::2", "2001:db8::1"


def _pair(specs):
    """Two adapters, A (ours) and B (the peers), on one Ethernet link; ``specs`` are
    (kind, vni, outer version, A's inner addr, B's inner addr, domain)."""
    a = Stack(CFG, mac="02:00:00:00:00:02", ipv4=[(A4, 24)], ipv6=[(A6, 64)])
    b = Stack(CFG, mac="02:00:00:00:00:01", ipv4=[(B4, 24)], ipv6=[(B6, 64)])
    ta = TunnelAdapter(a, [TunnelSpec(k, v, B4 if o == 4 else B6, ia, d)
                           for k, v, o, ia, ib, d in specs])
    tb = TunnelAdapter(b, [TunnelSpec(k, v, A4 if o == 4 else A6, ib, d)
                           for k, v, o, ia, ib, d in specs], seed=7)
    return ta, tb


def _run(ta, tb, until, steps=20000):
    now = 1.0
    for _ in range(steps):
        if until():
            return
        now += 0.001
        for f in ta.poll(now):
            tb.receive(f, now)
        for f in tb.poll(now):
            ta.receive(f, now)
    raise AssertionError("did not finish")


SPECS = [("vxlan", 10, 4, "198.19.1.2/24", "198.19.1.1/24", ""),
         ("vxlan", 11, 6, "198.19.2.2/24", "198.19.2.1/24", ""),
         ("vxlan-gpe", 12, 4, "198.19.3.2/24", "198.19.3.1/24", ""),
         # the same inner range as VNI 10, in its own domain
         ("vxlan", 13, 4, "198.19.1.2/24", "198.19.1.1/24", ""),
         # IPv6 inside: VXLAN-GPE next protocol IPv6 over an IPv6 outer header, and VXLAN
         ("vxlan-gpe", 15, 6, "2001:db8:15::2/64", "2001:db8:15::1/64", ""),
         ("vxlan", 16, 4, "2001:db8:16::2/64", "2001:db8:16::1/64", "")]


def test_tcp_through_every_tunnel_at_once():
    ta, tb = _pair(SPECS)
    data = {}
    conns = []
    for index, tunnel in enumerate(ta.tunnels):
        listener = tunnel.stack.listen(7000 + index)
        payload = bytes([index + 1]) * (50_000 + index)
        peer = tb.tunnels[index].stack
        sock = peer.connect(tunnel.spec.addr.split("/")[0], 7000 + index)
        conns.append((listener, sock, payload))
        data[index] = bytearray()
    accepted = {}

    def done():
        for index, (listener, sock, payload) in enumerate(conns):
            if index not in accepted:
                child = listener.accept()
                if child is None:
                    return False
                accepted[index] = child
            if sock.connected and payload:
                sent = sock.send(payload)
                conns[index] = (listener, sock, payload[sent:])
            got = accepted[index].recv()
            if got:
                data[index] += got
        return all(len(data[i]) == 50_000 + i for i in data)
    _run(ta, tb, done)
    for index in data:
        assert bytes(data[index]) == bytes([index + 1]) * (50_000 + index)
    stats = ta.tunnel_stats()
    for tunnel in ta.tunnels:
        row = stats["tunnels"][tunnel.name]
        assert row["packets_in"] > 30 and row["packets_out"] > 10
        assert row["drops"] == {}
    # the MSS of every inner stack fits its tunnel: nothing fragmented outside
    assert ta.counters.drops.get("ip_too_big", 0) == 0
    assert [r["prefix"] for r in ta.routes()] == ["198.19.1.0/24", "198.19.2.0/24",
                                                  "198.19.3.0/24", "198.19.1.0/24",
                                                  "2001:db8:15::/64", "2001:db8:16::/64"]


def _udp_to(ta, outer_src, port, body, dst=A4, csum=True):
    """An outer frame from B's MAC to A carrying UDP ``body`` to ``port``."""
    from hetnic.host.stack.checksum import pseudo_sum
    from hetnic.host.stack.ipv4 import build_ipv4_header
    import ipaddress
    s, d = ipaddress.ip_address(outer_src).packed, ipaddress.ip_address(dst).packed
    udp = struct.pack("!HHHH", 50000, port, 8 + len(body), 0) + body
    if csum:
        cs = checksum(udp, pseudo_sum(s, d, 17, len(udp))) or 0xFFFF
        udp = udp[:6] + cs.to_bytes(2, "big") + udp[8:]
    eth = ta.outer.iface.mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + build_ipv4_header(s, d, 17, len(udp), 1) + udp


def test_bad_inputs_are_counted_drops():
    ta, tb = _pair(SPECS[:3])
    vx, gpe = ta.tunnels[0], ta.tunnels[2]
    inner = vx.mac + b"\x02\x00\x00\x00\x00\x09" + b"\x08\x00" + b"\x45" + b"\0" * 10
    frames = [
        _udp_to(ta, B4, VXLAN_UDP_PORT, pack_vxlan(99) + inner),            # unknown VNI
        _udp_to(ta, B4, VXLAN_UDP_PORT, pack_vxlan(10) + inner),            # truncated inner
        _udp_to(ta, B4, VXLAN_UDP_PORT, pack_vxlan(10)[:4]),                # truncated header
        _udp_to(ta, B4, VXLAN_UDP_PORT, b"\0" * 4 + pack_vxlan(10)[4:] + inner),  # no I flag
        _udp_to(ta, "198.18.0.9", VXLAN_UDP_PORT, pack_vxlan(10) + inner),  # unknown remote
        _udp_to(ta, B4, VXLAN_GPE_UDP_PORT, pack_gpe(12, 3) + inner),        # Ethernet in GPE
        _udp_to(ta, B4, VXLAN_GPE_UDP_PORT, pack_gpe(12, 1) + b"\x45\0\0\x99" + b"\0" * 20),
    ]
    bad = bytearray(_udp_to(ta, B4, VXLAN_UDP_PORT, pack_vxlan(10) + inner))
    bad[-1] ^= 0xFF                                                         # bad checksum
    frames.append(bytes(bad))
    for f in frames:
        ta.receive(f, 1.0)
    assert vx.counters.drops == {"unknown_vni": 1, "truncated": 2, "bad_header": 1,
                                 "bad_checksum": 1}
    assert ta.drops == {"unknown_remote": 1}
    assert gpe.counters.drops == {"unsupported_next_protocol": 1, "truncated": 1}
    # a datagram to another port still reaches the outer UDP layer (port unreachable)
    ta.receive(_udp_to(ta, B4, 5555, b"x"), 1.0)
    assert ta.counters.drops.get("udp_no_socket") == 1


def _inner_udp(src, dst, size, df=True, ident=5):
    """An IPv4 UDP packet of ``size`` bytes."""
    import ipaddress
    from hetnic.host.stack.ipv4 import build_ipv4_header
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    body = struct.pack("!HHHH", 4000, 4001, size - 20, 0) + b"\xab" * (size - 28)
    return build_ipv4_header(s, d, 17, len(body), ident, 0x4000 if df else 0) + body


def test_forwarding_no_route_and_mtu_answers():
    # two tunnels in one domain: A routes between them
    specs = [("vxlan", 20, 4, "198.19.5.2/24", "198.19.5.1/24", "d"),
             ("vxlan-gpe", 21, 6, "198.19.6.2/24", "198.19.6.1/24", "d")]
    ta, tb = _pair(specs)
    vx, gpe = ta.tunnels
    sink = tb.tunnels[1].stack.udp_socket()
    sink.bind(("0.0.0.0", 4001))
    eth = vx.mac + tb.tunnels[0].mac + b"\x08\x00"
    small = _inner_udp("198.19.5.1", "198.19.6.1", 100)
    big = _inner_udp("198.19.5.1", "198.19.6.1", gpe.mtu + 10, df=False)
    vx.input(eth + small, 1.0)                                  # forwarded by A
    vx.input(eth + big, 1.0)                                    # fragmented on the way
    got = []
    _run(ta, tb, lambda: bool(got.append(sink.recvfrom()) or len([g for g in got if g]) == 2))
    sizes = sorted(len(g[0]) for g in got if g)
    assert sizes == [100 - 28, gpe.mtu + 10 - 28]
    assert gpe.counters.forwarded == 3                          # one, and two fragments
    # an oversize DF packet: ICMP fragmentation needed (RFC 1191) with the next-hop MTU;
    # no route in domain d: ICMP net unreachable; both to the inner sender, from A
    vx.input(eth + _inner_udp("198.19.5.1", "198.19.6.1", gpe.mtu + 10), 2.0)
    vx.input(eth + _inner_udp("198.19.5.1", "198.19.77.1", 100), 2.0)
    assert gpe.counters.drops == {"mtu": 1}
    assert vx.counters.drops == {"no_route": 1}
    peer = tb.tunnels[0].stack
    seen = []
    receive = peer.receive
    peer.receive = lambda frame, now: (seen.append(bytes(frame)), receive(frame, now))
    _run(ta, tb, lambda: peer.counters.icmp_in >= 2)
    assert vx.stack.counters.icmp_out == 2
    kinds = {(f[34], f[35], int.from_bytes(f[40:42], "big")) for f in seen
             if f[12:14] == b"\x08\x00" and f[23] == 1}
    assert kinds == {(3, 4, gpe.mtu), (3, 0, 0)}


@pytest.mark.parametrize("text, message", [
    ("gre,vni=1,remote=198.18.0.1,addr=198.19.0.1/24", "starts with the kind"),
    ("vxlan,vni=1,remote=198.18.0.1", "addr= is missing"),
    ("vxlan,vni=x,remote=198.18.0.1,addr=198.19.0.1/24", "vni must be an integer"),
    ("vxlan,vni=16777216,remote=198.18.0.1,addr=198.19.0.1/24", "vni must be"),
    ("vxlan,vni=1,remote=nowhere,addr=198.19.0.1/24", "remote must be"),
    ("vxlan,vni=1,remote=198.18.0.1,addr=198.19.0.1", "addr must be"),
    ("vxlan,vni=1,remote=198.18.0.1,addr=198.19.0.1/24,color=red", "unknown key"),
    ("vxlan,vni=1,vni=2,remote=198.18.0.1,addr=198.19.0.1/24", "given twice"),
])
def test_parse_errors(text, message):
    with pytest.raises(TunnelError, match=message):
        parse_tunnel(text)


def test_parse_and_conflicts():
    spec = parse_tunnel("vxlan-gpe,vni=0x10,remote=2001:db8::1,addr=198.19.0.2/24,domain=x")
    assert (spec.kind, spec.vni, spec.outer_version, spec.domain) == ("vxlan-gpe", 16, 6, "x")
    a = Stack(CFG, mac="02:00:00:00:00:02", ipv4=[(A4, 24)])
    with pytest.raises(TunnelError, match="overlaps"):
        TunnelAdapter(a, [TunnelSpec("vxlan", 1, B4, "198.19.0.2/24", "x"),
                          TunnelSpec("vxlan", 2, B4, "198.19.0.9/16", "x")])
    with pytest.raises(TunnelError, match="twice"):
        TunnelAdapter(a, [TunnelSpec("vxlan", 1, B4, "198.19.0.2/24"),
                          TunnelSpec("vxlan", 1, B4, "198.19.1.2/24")])


def test_ipv6_packet_too_big_and_hop_limit():
    """IPv6 forwarded into a smaller tunnel: ICMPv6 packet too big with its MTU (RFC 8201);
    hop limit 1: time exceeded; both counted."""
    import ipaddress
    from hetnic.host.stack.ipv6 import build_ipv6_header
    specs = [("vxlan", 30, 4, "2001:db8:30::2/64", "2001:db8:30::1/64", "d"),
             ("vxlan", 31, 6, "2001:db8:31::2/64", "2001:db8:31::1/64", "d")]
    ta, tb = _pair(specs)
    small, big = ta.tunnels
    assert big.mtu < small.mtu
    peer = tb.tunnels[0].stack
    seen = []
    receive = peer.receive
    peer.receive = lambda frame, now: (seen.append(bytes(frame)), receive(frame, now))
    s = ipaddress.ip_address("2001:db8:30::1").packed
    d = ipaddress.ip_address("2001:db8:31::9").packed
    for size, hops in ((small.mtu, 64), (200, 1)):
        body = struct.pack("!HHHH", 1, 2, size - 40, 0) + b"\0" * (size - 48)
        header = bytearray(build_ipv6_header(s, d, 17, len(body)))
        header[7] = hops
        small.input(small.mac + tb.tunnels[0].mac + b"\x86\xdd" + bytes(header) + body, 1.0)
    assert big.counters.drops == {"mtu": 1}
    assert small.counters.drops == {"ttl_exceeded": 1}
    _run(ta, tb, lambda: peer.counters.icmp_in >= 2)
    kinds = {(f[54], f[55], int.from_bytes(f[58:62], "big")) for f in seen
             if f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] < 128}
    assert kinds == {(2, 0, big.mtu), (3, 0, 0)}


def test_forwarding_errors_follow_the_stacks_rules():
    """The adapter's ICMP errors go through the stack's own error path (RFC 1812 4.3.2.7,
    RFC 4443 2.4): none to a source 0/8, 127/8, broadcast or multicast, none about a packet
    to a multicast group (not forwarded at all), none to ::; one about an ICMP timestamp (not an error); the
    fragmentation-needed quote is the header as received (TTL not yet decremented)."""
    import ipaddress
    from hetnic.host.stack.ipv4 import build_ipv4_header
    from hetnic.host.stack.ipv6 import build_ipv6_header
    specs = [("vxlan", 20, 4, "198.19.5.2/24", "198.19.5.1/24", "d"),
             ("vxlan-gpe", 21, 6, "198.19.6.2/24", "198.19.6.1/24", "d"),
             ("vxlan", 22, 4, "2001:db8:22::2/64", "2001:db8:22::1/64", "d")]
    ta, tb = _pair(specs)
    vx, gpe, v6 = ta.tunnels
    eth = vx.mac + tb.tunnels[0].mac + b"\x08\x00"
    for src, dst in (("0.0.0.0", "198.19.77.1"), ("127.0.0.1", "198.19.77.1"),
                     ("255.255.255.255", "198.19.77.1"), ("224.0.0.9", "198.19.77.1"),
                     ("240.0.0.1", "198.19.77.1"), ("198.19.5.1", "239.1.2.3")):
        vx.input(eth + _inner_udp(src, dst, 100), 1.0)
    s6 = ipaddress.ip_address("::").packed
    d6 = ipaddress.ip_address("2001:db8:99::1").packed
    body = struct.pack("!HHHH", 1, 2, 8, 0)
    v6.input(v6.mac + tb.tunnels[2].mac + b"\x86\xdd" + build_ipv6_header(s6, d6, 17, 8)
             + body, 1.0)
    assert vx.counters.drops == {"no_route": 5} and v6.counters.drops == {"no_route": 1}
    assert vx.stack.counters.icmp_out == 0 and v6.stack.counters.icmp_out == 0
    # an ICMP timestamp request with no route: an error (it is not an ICMP error)
    s, d = (ipaddress.ip_address(a).packed for a in ("198.19.5.1", "198.19.77.1"))
    stamp = bytearray(struct.pack("!BBHHH", 13, 0, 0, 1, 1) + bytes(12))
    stamp[2:4] = checksum(bytes(stamp)).to_bytes(2, "big")
    vx.input(eth + build_ipv4_header(s, d, 1, len(stamp), 9) + bytes(stamp), 1.0)
    # oversize with DF into the smaller tunnel: the quote carries TTL 64, as sent
    vx.input(eth + _inner_udp("198.19.5.1", "198.19.6.1", gpe.mtu + 10), 1.0)
    peer = tb.tunnels[0].stack
    seen = []
    receive = peer.receive
    peer.receive = lambda frame, now: (seen.append(bytes(frame)), receive(frame, now))
    _run(ta, tb, lambda: peer.counters.icmp_in >= 2)
    errors = {(f[34], f[35]): f for f in seen if f[12:14] == b"\x08\x00" and f[23] == 1}
    assert set(errors) == {(3, 0), (3, 4)}
    quoted = errors[(3, 4)][42:]
    assert quoted[8] == 64 and checksum(quoted[:20]) == 0


def test_forwarding_drops_a_bad_inner_header_checksum():
    """RFC 1812 5.2.2: an inner IPv4 header whose checksum fails is dropped (counted
    ``bad_checksum``), not repaired and forwarded."""
    specs = [("vxlan", 20, 4, "198.19.5.2/24", "198.19.5.1/24", "d"),
             ("vxlan-gpe", 21, 6, "198.19.6.2/24", "198.19.6.1/24", "d")]
    ta, tb = _pair(specs)
    vx, gpe = ta.tunnels
    bad = bytearray(_inner_udp("198.19.5.1", "198.19.6.1", 100))
    bad[10] ^= 0x55
    vx.input(vx.mac + tb.tunnels[0].mac + b"\x08\x00" + bytes(bad), 1.0)
    assert vx.counters.drops == {"bad_checksum": 1}
    assert gpe.counters.forwarded == 0 and gpe.counters.packets_out == 0


def test_fragments_of_one_packet_take_one_outer_source_port():
    """RFC 7348 section 5's source-port hash: a fragment past the first has no ports, so
    fragments hash addresses and protocol only; all of one packet's fragments, whatever
    their payload bytes, leave with the same outer UDP source port."""
    specs = [("vxlan", 20, 4, "198.19.5.2/24", "198.19.5.1/24", "d"),
             ("vxlan-gpe", 21, 4, "198.19.6.2/24", "198.19.6.1/24", "d")]
    ta, tb = _pair(specs)
    vx, gpe = ta.tunnels
    eth = vx.mac + tb.tunnels[0].mac + b"\x08\x00"
    packet = bytearray(_inner_udp("198.19.5.1", "198.19.6.1", 2 * gpe.mtu, df=False))
    packet[28 + gpe.mtu:] = bytes(range(256)) * (len(packet[28 + gpe.mtu:]) // 256 + 1)
    packet = packet[:2 * gpe.mtu]
    vx.input(eth + bytes(packet), 1.0)
    assert gpe.counters.forwarded == 3
    outer = []
    receive = tb.receive
    tb.receive = lambda frame, now: (outer.append(bytes(frame)), receive(frame, now))
    _run(ta, tb, lambda: len([f for f in outer if f[12:14] == b"\x08\x00"]) >= 3)
    outer = [f for f in outer if f[12:14] == b"\x08\x00" and f[23] == 17
             and f[36:38] == b"\x12\xb6"]
    ports = {f[34:36] for f in outer}
    assert len(outer) == 3 and len(ports) == 1, ports


def test_no_hairpin_on_an_l3_tunnel():
    """A packet that came through an L3 (VXLAN-GPE) tunnel for another address of that
    tunnel's prefix is not sent back into it: host unreachable, counted no_route."""
    specs = [("vxlan-gpe", 21, 4, "198.19.6.2/24", "198.19.6.1/24", "")]
    ta, tb = _pair(specs)
    gpe = ta.tunnels[0]
    gpe.input(_inner_udp("198.19.6.1", "198.19.6.77", 100), 1.0)      # an IP packet
    assert gpe.counters.drops == {"no_route": 1} and gpe.counters.forwarded == 0
    peer = tb.tunnels[0].stack
    seen = []
    receive = peer.receive
    peer.receive = lambda frame, now: (seen.append(bytes(frame)), receive(frame, now))
    _run(ta, tb, lambda: peer.counters.icmp_in >= 1)
    assert {(f[34], f[35]) for f in seen if f[12:14] == b"\x08\x00" and f[23] == 1} == {(3, 1)}
