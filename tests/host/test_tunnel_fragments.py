"""Outer fragments of tunnel traffic, sans-I/O: two adapters wired back to back through a
wire that fragments every outer IP packet (IPv4 as RFC 791, IPv6 with a fragment header as
RFC 8200 4.5) carry TCP byte-exact through VXLAN over IPv4 and IPv6 and VXLAN-GPE; the
bad inputs (a series never completed, overlaps, too many datagrams, a whole datagram that is
not tunnel traffic) are counted and bounded; the classifier rules steer a remote's
fragments, and only those, to the adapter's instance."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from hetnic.host.stack.checksum import checksum, pseudo_sum
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.ipv4 import build_ipv4_header
from hetnic.host.stack.ipv6 import build_ipv6_header
from hetnic.host.stack.stack import Stack
from hetnic.host.stack.tunnel import FragmentLimits, TunnelAdapter, TunnelSpec
from hetnic.tunnel_format import VXLAN_UDP_PORT, pack_vxlan

pytestmark = pytest.mark.timeout(60)

CFG = PROFILES["low-delay"]
A4, B4, C4 = "198.18.0.2", "198.18.0.1", "198.18.0.3"
A6, B6 = "2001:db8::2", "2001:db8::1"
MAC_A, MAC_B = "02:00:00:00:00:02", "02:00:00:00:00:01"


def _adapter(specs, addr4, addr6, mac, seed=0, **kw):
    stack = Stack(CFG, mac=mac, ipv4=[(addr4, 24)], ipv6=[(addr6, 64)])
    return TunnelAdapter(stack, [TunnelSpec(*s) for s in specs], seed=seed, **kw)


def _pair(specs, **kw):
    """A (ours) and B (the peers); ``specs`` (kind, vni, outer version, A's inner address,
    B's inner address)."""
    ta = _adapter([(k, v, B4 if o == 4 else B6, ia) for k, v, o, ia, _ in specs], A4, A6,
                  MAC_A, **kw)
    tb = _adapter([(k, v, A4 if o == 4 else A6, ib) for k, v, o, _, ib in specs], B4, B6,
                  MAC_B, seed=7)
    return ta, tb


def frag4(frame: bytes, data_size: int) -> list[bytes]:
    """The IPv4 packet in ``frame`` as fragments of ``data_size`` payload bytes (a multiple
    of 8; RFC 791), or the frame itself when it fits."""
    ihl = (frame[14] & 15) << 2
    total = int.from_bytes(frame[16:18], "big")
    payload = frame[14 + ihl:14 + total]
    if len(payload) <= data_size:
        return [frame]
    out = []
    for at in range(0, len(payload), data_size):
        chunk = payload[at:at + data_size]
        header = bytearray(frame[14:14 + ihl])
        header[2:4] = (ihl + len(chunk)).to_bytes(2, "big")
        more = 0x2000 if at + data_size < len(payload) else 0
        header[6:8] = (more | at >> 3).to_bytes(2, "big")
        header[10:12] = b"\0\0"
        header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
        out.append(frame[:14] + bytes(header) + chunk)
    return out


def frag6(frame: bytes, data_size: int, ident: int) -> list[bytes]:
    """The IPv6 packet in ``frame`` (no extension headers) with a fragment header per
    ``data_size`` bytes of its payload (RFC 8200 4.5), or the frame itself when it fits."""
    nh = frame[20]
    payload = frame[54:54 + int.from_bytes(frame[18:20], "big")]
    if len(payload) <= data_size:
        return [frame]
    out = []
    for at in range(0, len(payload), data_size):
        chunk = payload[at:at + data_size]
        header = bytearray(frame[14:54])
        header[4:6] = (8 + len(chunk)).to_bytes(2, "big")
        header[6] = 44
        more = 1 if at + data_size < len(payload) else 0
        out.append(frame[:14] + bytes(header) + struct.pack("!BxHI", nh, at | more, ident)
                   + chunk)
    return out


class Wire:
    """Fragments every outer IP packet longer than ``size`` bytes of payload; the fragments
    of each packet in reverse order (the last first) every other time."""

    def __init__(self, size: int = 600) -> None:
        self.size = size
        self.ident = 0
        self.fragments = 0

    def __call__(self, frames):
        for frame in frames:
            if frame[12:14] == b"\x08\x00":
                pieces = frag4(frame, self.size)
            elif frame[12:14] == b"\x86\xdd":
                self.ident += 1
                pieces = frag6(frame, self.size, self.ident)
            else:
                pieces = [frame]
            if len(pieces) > 1:
                self.fragments += len(pieces)
                self.ident += 1
                if self.ident % 2:
                    pieces = pieces[::-1]
            yield from pieces


def _run(ta, tb, until, wire=None, steps=20000):
    wire = wire or (lambda frames: frames)
    now = 1.0
    for _ in range(steps):
        if until():
            return now
        now += 0.001
        for f in wire(ta.poll(now)):
            tb.receive(f, now)
        for f in wire(tb.poll(now)):
            ta.receive(f, now)
    raise AssertionError("did not finish")


SPECS = [("vxlan", 10, 4, "198.19.1.2/24", "198.19.1.1/24"),
         ("vxlan", 11, 6, "198.19.2.2/24", "198.19.2.1/24"),
         ("vxlan-gpe", 12, 4, "198.19.3.2/24", "198.19.3.1/24")]


def test_tcp_through_fragmented_outer_packets_is_byte_exact():
    """Every full-size segment's outer packet arrives in three fragments (the last first
    every other time); TCP through VXLAN/IPv4, VXLAN/IPv6 and VXLAN-GPE at once is
    byte-exact, every outer datagram is reassembled once, and the per-tunnel counters
    count inner packets, not fragments."""
    ta, tb = _pair(SPECS)
    wire = Wire(600)
    conns = []
    for index, tunnel in enumerate(ta.tunnels):
        listener = tunnel.stack.listen(7000 + index)
        sock = tb.tunnels[index].stack.connect(tunnel.spec.addr.split("/")[0], 7000 + index)
        conns.append([listener, sock, bytes([index + 1]) * (40_000 + index), None,
                      bytearray()])

    def done():
        for c in conns:
            listener, sock, todo, child, got = c
            if child is None:
                c[3] = child = listener.accept()
                if child is None:
                    return False
            if sock.connected and todo:
                c[2] = todo[sock.send(todo):]
            got += child.recv() or b""
        return all(len(c[4]) == 40_000 + i for i, c in enumerate(conns))

    _run(ta, tb, done, wire)
    for index, c in enumerate(conns):
        assert bytes(c[4]) == bytes([index + 1]) * (40_000 + index)
    stats = ta.tunnel_stats()
    frag = stats["reassembly"]
    assert wire.fragments > 60 and frag["reassembled"] > 20
    assert frag["fragments"] + tb.tunnel_stats()["reassembly"]["fragments"] == wire.fragments
    assert (frag["timeouts"], frag["overlaps"], frag["over_limit"]) == (0, 0, 0)
    assert (frag["held_bytes"], frag["datagrams"]) == (0, 0)
    assert stats["drops"] == {}
    for mine, peer in zip(ta.tunnels, tb.tunnels):
        # nothing is lost on this wire: A counted each inner packet B sent, once
        assert mine.counters.packets_in == peer.counters.packets_out, mine.name
        assert mine.counters.bytes_in == peer.counters.bytes_out, mine.name
        assert mine.counters.drops == {}, mine.name
    # none of it went through the outer stack's own reassembly or UDP layer
    outer = ta.outer.iface
    assert outer.ip4.reassembler.fragments == outer.ip6.reassembler.fragments == 0
    assert ta.counters.drops.get("udp_no_socket", 0) == 0


def _vxlan_frame(ta, src, body, ident=1, port=VXLAN_UDP_PORT, proto=17):
    """An outer IPv4 frame from ``src`` to A: UDP to ``port`` carrying ``body`` (or, with
    another ``proto``, ``body`` as the payload)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(A4).packed
    if proto == 17:
        body = struct.pack("!HHHH", 50000, port, 8 + len(body), 0) + body
    eth = ta.outer.iface.mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + build_ipv4_header(s, d, proto, len(body), ident) + body


def _know_remotes(ta, now=1.0):
    """A's outer stack knows B's MAC (as after an ARP / NDP exchange)."""
    for addr in (B4, B6):
        ta.outer.iface.neighbours.update(ipaddress.ip_address(addr).packed,
                                         bytes.fromhex("020000000001"), now, confirmed=True)


def _inner_frame(tunnel, size):
    """A VXLAN inner Ethernet frame: UDP from the peer to the tunnel's address, ``size``
    bytes of IP."""
    s = ipaddress.ip_address("198.19.1.1").packed
    d = ipaddress.ip_interface(tunnel.spec.addr).ip.packed
    udp = struct.pack("!HHHH", 4000, 9, size - 20, 0) + b"\x5a" * (size - 28)
    return tunnel.mac + b"\x02\x00\x00\x00\x00\x09\x08\x00" + \
        build_ipv4_header(s, d, 17, len(udp), 3) + udp


def test_a_series_never_completed_times_out():
    """A datagram whose last fragment never comes is dropped at the timeout, counted, its
    memory given back, and the remote gets ICMP time exceeded, fragment reassembly (type 11
    code 1, RFC 792); IPv6 the same with ICMPv6 type 3 code 1."""
    ta, tb = _pair(SPECS[:2], fragments=FragmentLimits(timeout=2.0))
    vx, vx6 = ta.tunnels
    _know_remotes(ta)
    first = frag4(_vxlan_frame(ta, B4, pack_vxlan(10) + _inner_frame(vx, 1000)), 512)[0]
    ta.receive(first, 1.0)
    s6, d6 = (ipaddress.ip_address(a).packed for a in (B6, A6))
    udp = struct.pack("!HHHH", 50000, VXLAN_UDP_PORT, 1008, 0) + bytes(1000)
    frame6 = ta.outer.iface.mac + bytes.fromhex("020000000001") + b"\x86\xdd" + \
        build_ipv6_header(s6, d6, 17, len(udp)) + udp
    ta.receive(frag6(frame6, 512, 77)[0], 1.0)
    stats = ta.tunnel_stats()["reassembly"]
    assert (stats["fragments"], stats["datagrams"], stats["held_bytes"]) == (2, 2, 1024)
    assert ta.next_deadline() <= 3.0
    out = ta.poll(2.5)
    assert ta.tunnel_stats()["reassembly"]["timeouts"] == 0
    out = ta.poll(3.01)
    stats = ta.tunnel_stats()["reassembly"]
    assert (stats["timeouts"], stats["datagrams"], stats["held_bytes"]) == (2, 0, 0)
    v4 = [f for f in out if f[12:14] == b"\x08\x00" and f[23] == 1]
    v6 = [f for f in out if f[12:14] == b"\x86\xdd" and f[20] == 58]
    assert [(f[34], f[35], f[30:34]) for f in v4] == [(11, 1, ipaddress.ip_address(B4).packed)]
    assert [(f[54], f[55]) for f in v6] == [(3, 1)]
    assert vx.counters.packets_in == vx6.counters.packets_in == 0


def _frame6(ta, next_header, payload):
    """An outer IPv6 frame from B6 to A6 carrying ``payload`` as ``next_header``."""
    s6, d6 = (ipaddress.ip_address(a).packed for a in (B6, A6))
    return ta.outer.iface.mac + bytes.fromhex("020000000001") + b"\x86\xdd" + \
        build_ipv6_header(s6, d6, next_header, len(payload)) + payload


def test_no_time_exceeded_about_a_fragmented_icmpv6_error():
    """RFC 4443 2.4 e: fragment zero of an ICMPv6 error (destination unreachable) that times
    out gets no time exceeded (the check looks past the fragment header); a fragmented echo
    request that times out does."""
    ta, _ = _pair(SPECS[:2], fragments=FragmentLimits(timeout=2.0))
    _know_remotes(ta)
    unreachable = bytes([1, 4, 0, 0]) + bytes(1000)
    echo = bytes([128, 0, 0, 0]) + bytes(1000)
    ta.receive(frag6(_frame6(ta, 58, unreachable), 512, 11)[0], 1.0)
    ta.receive(frag6(_frame6(ta, 58, echo), 512, 12)[0], 1.0)
    out = ta.poll(3.01)
    assert ta.tunnel_stats()["reassembly"]["timeouts"] == 2
    v6 = [f for f in out if f[12:14] == b"\x86\xdd" and f[20] == 58]
    # one time exceeded (type 3 code 1), quoting the echo's fragment (identification 12)
    assert [(f[54], f[55], int.from_bytes(f[62 + 44:62 + 48], "big")) for f in v6] == \
        [(3, 1, 12)]


def test_an_m_fragment_not_a_multiple_of_8_gets_a_parameter_problem():
    """RFC 8200 4.5: an IPv6 fragment with M set whose length is not a multiple of 8 is
    dropped, counted (bad_length), and answered with parameter problem code 0 pointing at
    its payload length (offset 4)."""
    ta, _ = _pair(SPECS[:2])
    _know_remotes(ta)
    first = bytearray(frag6(_frame6(ta, 17, bytes(1000)), 512, 13)[0])
    del first[-4:]                                  # 508 bytes of data, M set
    first[18:20] = (len(first) - 54).to_bytes(2, "big")
    assert ta.reassembly.take(bytes(first), 1.0)
    assert ta.tunnel_stats()["reassembly"]["bad_length"] == 1
    v6 = [f for f in ta.poll(1.0) if f[12:14] == b"\x86\xdd" and f[20] == 58]
    assert [(f[54], f[55], int.from_bytes(f[58:62], "big")) for f in v6] == [(4, 0, 4)]
    assert v6[0][38:54] == ipaddress.ip_address(B6).packed


def test_the_65535_byte_bound_counts_the_real_ihl():
    """An IPv4 fragment ending at 65512 fits with a 20-byte header, not with 24 (one option
    word): the bound is the fragment's own IHL (RFC 791)."""
    ta, _ = _pair(SPECS[:1])
    s, d = (ipaddress.ip_address(a).packed for a in (B4, A4))
    eth = ta.outer.iface.mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    for ihl, oversize in ((20, 0), (24, 1)):
        header = bytearray(build_ipv4_header(s, d, 17, 8 + ihl - 20, 40 + ihl))
        if ihl == 24:
            header = bytearray([0x46]) + header[1:20] + b"\x01\x01\x01\x01"
            header[2:4] = (24 + 8).to_bytes(2, "big")
        header[6:8] = ((65512 - 8) >> 3).to_bytes(2, "big")        # the last fragment
        header[10:12] = b"\0\0"
        header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
        assert ta.reassembly.take(eth + bytes(header) + bytes(8), 1.0)
        drops = ta.tunnel_stats()["reassembly"]["drops"]
        assert drops.get("frag_oversize", 0) == oversize, (ihl, drops)


def test_overlapping_fragments_drop_the_datagram():
    """RFC 5722 (and current IPv4 stacks): a fragment overlapping one held drops the whole
    datagram, and its later fragments never make a datagram; an exact copy of a fragment
    is ignored and the datagram completes."""
    ta, _ = _pair(SPECS[:1])
    vx = ta.tunnels[0]
    pieces = frag4(_vxlan_frame(ta, B4, pack_vxlan(10) + _inner_frame(vx, 1000), ident=9), 512)
    assert len(pieces) == 3
    # a second fragment that starts 8 bytes early (overlaps the first)
    bad = bytearray(pieces[1])
    bad[20:22] = ((0x2000 | (512 - 8) >> 3)).to_bytes(2, "big")
    bad[24:26] = b"\0\0"
    bad[24:26] = checksum(bytes(bad[14:34])).to_bytes(2, "big")
    for f in (pieces[0], bytes(bad), pieces[1], pieces[2]):
        ta.receive(f, 1.0)
    stats = ta.tunnel_stats()["reassembly"]
    assert stats["overlaps"] == 1 and stats["reassembled"] == 0
    assert vx.counters.packets_in == 0
    # the rest of the series started a new datagram, which never completes: it times out
    ta.poll(100.0)
    assert ta.tunnel_stats()["reassembly"]["datagrams"] == 0
    # an exact duplicate is harmless
    pieces = frag4(_vxlan_frame(ta, B4, pack_vxlan(10) + _inner_frame(vx, 1000), ident=10),
                   512)
    for f in (pieces[0], pieces[0], pieces[2], pieces[1]):
        ta.receive(f, 101.0)
    stats = ta.tunnel_stats()["reassembly"]
    assert stats["duplicates"] == 1 and stats["reassembled"] == 1
    assert vx.counters.packets_in == 1 and vx.counters.bytes_in == 14 + 1000


def test_too_many_datagrams_are_counted_drops_and_memory_stays_bounded():
    """A remote that starts datagrams and never completes them evicts only its own oldest
    (the per-source bound); the total stays bounded; another remote's datagram still
    completes; every eviction is counted."""
    limits = FragmentLimits(memory=64 << 10, source_memory=16 << 10, datagrams=32,
                            source_datagrams=8, timeout=30.0)
    ta = _adapter([("vxlan", 10, B4, "198.19.1.2/24"), ("vxlan", 14, C4, "198.19.4.2/24")],
                  A4, A6, MAC_A, fragments=limits)
    vx, vx14 = ta.tunnels
    # C's datagram: first fragment now, the rest after B's flood
    c_pieces = frag4(_vxlan_frame(ta, C4, pack_vxlan(14) + _inner_frame(vx14, 1400), 500),
                     1024)
    ta.receive(c_pieces[0], 1.0)
    for ident in range(100):
        first = frag4(_vxlan_frame(ta, B4, pack_vxlan(10) + _inner_frame(vx, 3000), ident),
                      1024)[0]
        ta.receive(first, 1.0)
        b_held, b_count = ta.reassembly.v4.source_held(ipaddress.ip_address(B4).packed)
        assert b_held <= limits.source_memory and b_count <= limits.source_datagrams
        assert ta.reassembly.v4.held <= limits.memory
    stats = ta.tunnel_stats()["reassembly"]
    # 16 KiB per source: 16 datagrams of 1 KiB would fit, 8 datagrams is the bound
    assert stats["datagrams"] == 8 + 1
    assert stats["over_limit"] == 100 - 8
    assert stats["drops"]["frag_source_limit"] == 100 - 8
    for f in c_pieces[1:]:
        ta.receive(f, 1.5)
    assert vx14.counters.packets_in == 1 and vx14.counters.drops == {}
    # one fragment bigger than a source's share: refused, counted
    big = frag4(_vxlan_frame(ta, C4, pack_vxlan(14) + _inner_frame(vx14, 40000), 600),
                24 << 10)[0]
    ta.receive(big, 2.0)
    assert ta.tunnel_stats()["reassembly"]["over_limit"] == 100 - 8 + 1
    assert ta.reassembly.v4.source_held(ipaddress.ip_address(C4).packed) == (0, 0)


def test_a_reassembled_datagram_that_is_not_tunnel_traffic():
    """Once whole, UDP to another port goes to the outer stack's UDP input like an
    unfragmented datagram (no socket: ``udp_no_socket``, a port unreachable); TCP is counted
    ``not_tunnel`` on the adapter and dropped without a reset (its port may be another
    instance's); ICMP echo is answered by the outer stack (the addresses every instance
    shares); fragments from an address that is no remote go to the outer stack as before."""
    ta, _ = _pair(SPECS[:1])
    _know_remotes(ta)
    for ident, (proto, port) in enumerate(((17, 5555), (6, 80))):
        if proto == 17:
            frame = _vxlan_frame(ta, B4, bytes(1500), ident=ident + 1, port=port)
        else:
            seg = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
            frame = _vxlan_frame(ta, B4, seg + bytes(1500), ident=ident + 1, proto=6)
        for f in frag4(frame, 800):
            ta.receive(f, 1.0)
    assert ta.drops == {"not_tunnel": 1}             # the TCP segment
    assert ta.outer.counters.drops.get("udp_no_socket") == 1
    sent = ta.poll(1.0)                              # the port unreachable, no reset
    assert [(f[23], f[34], f[35]) for f in sent] == [(1, 3, 3)], sent
    # ICMP echo of 1500 bytes, fragmented: answered (and the answer fragmented)
    echo = bytearray(struct.pack("!BBHHH", 8, 0, 0, 7, 1) + bytes(range(256)) * 6)
    echo[2:4] = checksum(bytes(echo)).to_bytes(2, "big")
    for f in frag4(_vxlan_frame(ta, B4, bytes(echo), ident=5, proto=1), 800):
        ta.receive(f, 1.0)
    replies = [f for f in ta.poll(1.0) if f[12:14] == b"\x08\x00" and f[23] == 1]
    assert len(replies) == 2 and replies[0][34] == 0            # echo reply, two fragments
    assert ta.drops == {"not_tunnel": 1}
    assert ta.tunnel_stats()["reassembly"]["reassembled"] == 3
    # a fragment from an address that is no tunnel's remote: the outer stack's business
    stranger = frag4(_vxlan_frame(ta, "198.18.0.9", bytes(1500), ident=8), 800)[0]
    ta.receive(stranger, 1.0)
    assert ta.outer.iface.ip4.reassembler.fragments == 1
    assert ta.tunnel_stats()["reassembly"]["fragments"] == 2 + 2 + 2     # not the stranger's


@pytest.mark.parametrize("limit", [{"memory": 0}, {"timeout": -1}, {"datagrams": 1.5},
                                   {"source_memory": True}])
def test_fragment_limits_are_checked(limit):
    from hetnic.host.stack.errors import BadArgument
    with pytest.raises(BadArgument, match="fragment limit"):
        FragmentLimits(**limit)


def test_rules_steer_a_remotes_fragments_to_the_adapter():
    """The fragment rules: one per remote, after the tunnel rules and before the base plan;
    by the classifier model, every fragment (first, middle, last; IPv4 and IPv6) from a
    remote goes to the tunnel instance, a fragment from elsewhere to the base plan's
    instance for fragments, and the tunnel's unfragmented datagrams still match the tunnel
    rules."""
    from hetnic.host.stack_steering import plan_steering
    from hetnic.host.tunnel_host import tunnel_fragment_rules, tunnel_instance, tunnel_rules
    from hetnic.params import HIL_NIC_CORE
    from hetnic.rules import RuleFields
    from hetnic.sim.model.classifier import classify
    from hetnic.sim.model.parser import parse_frame
    specs = [TunnelSpec("vxlan", 10, B4, "198.19.1.2/24"),
             TunnelSpec("vxlan-gpe", 12, B4, "198.19.3.2/24"),
             TunnelSpec("vxlan", 11, B6, "198.19.2.2/24")]
    frules = tunnel_fragment_rules(specs)
    assert [m for _, m, _ in frules] == [{"src": B4, "flags": {"fragment": True}},
                                         {"src": B6, "flags": {"fragment": True}}]
    instances, cfg = tunnel_instance(list(PROFILES.values()), rx_queues=8, tx_queues=4)
    instances.append(cfg)
    plan = plan_steering(instances, HIL_NIC_CORE, rx_queues=8, tx_queues=4, app_ports=(),
                         first_rules=tunnel_rules(specs) + frules)
    names = [r.name for r in plan.rules]
    assert names.index(frules[-1][0]) < names.index("IP fragments -> low-delay")
    rules = [RuleFields.decode(r.encode(HIL_NIC_CORE.reta_size)) for r in plan.rules]
    tunnel_index = [i.name for i in instances].index("tunnel")

    def instance_of(frame):
        return classify(parse_frame(frame), rules, plan.default,
                        reta_entries=HIL_NIC_CORE.reta_size).instance

    ta, _ = _pair(SPECS[:1])
    whole = _vxlan_frame(ta, B4, pack_vxlan(10) + _inner_frame(ta.tunnels[0], 1400))
    assert instance_of(whole) == tunnel_index
    pieces = frag4(whole, 512)
    assert len(pieces) == 3 and {instance_of(f) for f in pieces} == {tunnel_index}
    other = frag4(_vxlan_frame(ta, "198.18.0.9", bytes(1400)), 512)
    assert {instance_of(f) for f in other} == {[i.name for i in instances].index("low-delay")}
    s6, d6 = (ipaddress.ip_address(a).packed for a in (B6, A6))
    udp = struct.pack("!HHHH", 50000, VXLAN_UDP_PORT, 1408, 0) + bytes(1400)
    frame6 = ta.outer.iface.mac + bytes.fromhex("020000000001") + b"\x86\xdd" + \
        build_ipv6_header(s6, d6, 17, len(udp)) + udp
    pieces6 = frag6(frame6, 512, 3)
    assert len(pieces6) == 3 and {instance_of(f) for f in pieces6} == {tunnel_index}
