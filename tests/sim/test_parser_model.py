"""The header parser model (hetnic.sim.model.parser) against scapy's dissection, plus
directed error cases and seeded random frames."""

import ipaddress
import random

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Dot3, Ether

from hetnic.protocol import EtherType, IpProto, ParseError, ipv4_mapped
from hetnic.sim.model.parser import ParsedFrame, parse_frame

import frames as f  # noqa: E402

SEED = 0x5EED_0001


# --- an independent expectation from scapy's dissection (good frames only) ---------------

_EXT_LAYERS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrFragment, IPv6ExtHdrDestOpt)


def scapy_expect(frame: bytes, *, direct_ethertype=EtherType.DIRECT_DEFAULT) -> ParsedFrame:
    """What the parser should report for a well-formed frame, read from scapy's layers.
    The capture window is assumed large enough (tests call the model with 2048)."""
    pkt = Ether(frame)
    exp = ParsedFrame(length=len(frame))
    if isinstance(pkt, Dot3):
        exp.ethertype = pkt.len
        return exp
    ethertype, layer, tags = pkt.type, pkt.payload, 0
    while isinstance(layer, (Dot1Q, Dot1AD)) and tags < 2:
        if tags == 0:
            exp.vlan_id = layer.vlan
            exp.set_flag("vlan")
        else:
            exp.set_flag("vlan2")
        ethertype, layer, tags = layer.type, layer.payload, tags + 1
    exp.ethertype = ethertype
    if direct_ethertype and ethertype == direct_ethertype:
        exp.set_flag("direct")
        return exp
    l4 = None
    if ethertype == EtherType.IPV4:
        assert isinstance(layer, IP)
        exp.set_flag("ipv4")
        exp.set_flag("ip_options", layer.ihl > 5)
        exp.dscp = layer.tos >> 2
        exp.ip_proto = layer.proto
        exp.src_addr = ipv4_mapped(int(ipaddress.IPv4Address(layer.src)))
        exp.dst_addr = ipv4_mapped(int(ipaddress.IPv4Address(layer.dst)))
        fragment = bool(layer.flags.MF) or layer.frag != 0
        exp.set_flag("fragment", fragment)
        if not fragment:
            l4 = layer.payload
    elif ethertype == EtherType.IPV6:
        assert isinstance(layer, IPv6)
        exp.set_flag("ipv6")
        exp.dscp = layer.tc >> 2
        exp.src_addr = int(ipaddress.IPv6Address(layer.src))
        exp.dst_addr = int(ipaddress.IPv6Address(layer.dst))
        next_header, l4, skipped = layer.nh, layer.payload, 0
        while isinstance(l4, _EXT_LAYERS):
            if skipped == 4:
                return ParsedFrame(length=len(frame), error=ParseError.HEADER_LIMIT)
            skipped += 1
            next_header = l4.nh
            if isinstance(l4, IPv6ExtHdrFragment):
                exp.set_flag("fragment")
                if l4.offset or l4.m:
                    l4 = None
                    break
            l4 = l4.payload
        exp.set_flag("ip_options", skipped > 0)
        exp.ip_proto = next_header
    else:
        return exp
    exp.set_flag("tunnel", exp.ip_proto == IpProto.GRE)
    if isinstance(l4, TCP):
        exp.set_flag("tcp")
        exp.src_port, exp.dst_port, exp.tcp_flags = l4.sport, l4.dport, int(l4.flags)
    elif isinstance(l4, UDP):
        exp.set_flag("udp")
        exp.src_port, exp.dst_port = l4.sport, l4.dport
        exp.set_flag("tunnel", exp.flag("tunnel") or l4.dport in (4789, 4790))
        # The VNI counts when the UDP datagram holds the whole 8-byte header (UDP length
        # 16 or more), the datagram lies within the IP packet, and I is set. scapy's VXLAN
        # layer reads other layouts (GBP, GPE) by the flags, so the header's bytes are read
        # as RFC 7348 section 5 puts them (I = 0x08 of byte 0, VNI in 4..6). bytes() of a
        # layer runs to the frame's end (padding too), so offsets come from the lengths.
        ip_total = layer.len if isinstance(layer, IP) else 40 + layer.plen
        l4_offset = len(bytes(layer)) - len(bytes(l4))
        vxlan = bytes(l4)[8:l4.len]
        if l4.dport in (4789, 4790) and l4.len >= 16 and l4_offset + l4.len <= ip_total \
                and vxlan[0] & 0x08:
            exp.set_flag("vni")
            exp.vni = int.from_bytes(vxlan[4:7], "big")
    return exp


def check_against_scapy(frame, **kwargs):
    got = parse_frame(frame, capture_bytes=2048, **kwargs)
    exp = scapy_expect(frame, **kwargs)
    assert got == exp, f"\nframe {frame.hex()}\n  model {got}\n  scapy {exp}"
    return got


DIRECTED = f.directed_frames()


@pytest.mark.parametrize("name", DIRECTED)
def test_directed_against_scapy(name):
    got = check_against_scapy(DIRECTED[name])
    assert got.error == ParseError.NONE


def test_directed_spot_values():
    # A few fields by hand, so the scapy expectation itself is checked.
    r = parse_frame(DIRECTED["tcp4"])
    assert (r.flag("ipv4"), r.flag("tcp"), r.src_port, r.dst_port) == (True, True, 1234, 80)
    assert r.tcp_flags == 0x12 and r.dscp == 46 and r.ip_proto == 6
    assert r.src_addr == 0xFFFF_0A00_0001 and r.length == 60
    r = parse_frame(DIRECTED["qinq_udp4"])
    assert r.vlan_id == 10 and r.flag("vlan") and r.flag("vlan2") and r.flag("udp")
    r = parse_frame(DIRECTED["ipv6_chain4"])
    assert r.flag("ip_options") and r.flag("fragment") and r.flag("tcp")
    assert r.dst_addr == 0x2001_0DB8_0000_0001_0000_0000_0000_0002
    r = parse_frame(DIRECTED["ipv6_later_frag"])
    assert r.flag("fragment") and not r.flag("udp") and r.ip_proto == 17 and r.src_port == 0
    r = parse_frame(DIRECTED["vxlan"])
    assert r.flag("tunnel") and r.flag("udp") and r.dst_port == 4789
    assert r.flag("vni") and r.vni == 42
    r = parse_frame(DIRECTED["vxlan_gpe6"])
    assert r.flag("tunnel") and r.flag("vni") and r.vni == 0xFFFFFF and r.dst_port == 4790
    r = parse_frame(DIRECTED["vxlan_i_clear"])
    assert r.flag("tunnel") and not r.flag("vni") and r.vni == 0
    r = parse_frame(DIRECTED["qinq_vxlan6"])
    assert r.flag("vlan2") and r.flag("vni") and r.vni == 0
    r = parse_frame(DIRECTED["gre"])
    assert r.flag("tunnel") and r.ip_proto == 47 and not (r.flag("tcp") or r.flag("udp"))
    r = parse_frame(DIRECTED["direct"])
    assert r.flag("direct") and r.ethertype == EtherType.DIRECT_DEFAULT


def test_third_tag_is_an_ethertype():
    r = check_against_scapy(f.vlan(f.vlan(f.vlan(f.tcp4(), 3), 2), 1))
    assert r.ethertype == EtherType.VLAN and r.vlan_id == 1 and r.flag("vlan2")
    assert not r.flag("ipv4")


def test_direct_ethertype_register():
    frame = f.direct(ethertype=0x9000)
    assert not parse_frame(frame).flag("direct")
    assert parse_frame(frame, direct_ethertype=0x9000).flag("direct")
    # 0 disables the flag even for EtherType 0 (an 802.3 length-0 frame).
    assert not parse_frame(f.ether(ethertype=0, pad_to=60), direct_ethertype=0).flag("direct")
    # A direct EtherType is not parsed past L2, even if it is an IP one.
    r = check_against_scapy(f.tcp4(), direct_ethertype=EtherType.IPV4)
    assert r.flag("direct") and not r.flag("ipv4") and r.src_port == 0


def test_random_frames_against_scapy():
    print(f"seed {SEED:#x}")
    rng = random.Random(SEED)
    for _ in range(300):
        check_against_scapy(f.random_frame(rng, max_payload=200))


# --- directed errors ----------------------------------------------------------------------

def assert_error_only(r: ParsedFrame, error: ParseError, length: int):
    assert r == ParsedFrame(length=length, error=error), str(r)


@pytest.mark.parametrize("length", range(14))
def test_runt(length):
    assert_error_only(parse_frame(f.tcp4()[:length]), ParseError.RUNT, length)


def test_error_precedence():
    frame = f.vlan(f.tcp4(), 5)[:16]                       # truncated inside the tag
    assert_error_only(parse_frame(frame), ParseError.TRUNCATED, 16)
    assert_error_only(parse_frame(frame, max_frame=15), ParseError.OVERSIZE, 16)
    assert_error_only(parse_frame(frame[:10], max_frame=5), ParseError.RUNT, 10)
    assert_error_only(parse_frame(frame[:10], mac_error=True), ParseError.MAC_ERROR, 10)
    assert_error_only(parse_frame(f.tcp4(), mac_error=True, max_frame=20),
                      ParseError.MAC_ERROR, 60)


def test_oversize_and_length_saturation():
    frame = f.tcp4(payload=bytes(1518 - 54))
    assert len(frame) == 1518 and parse_frame(frame).error == ParseError.NONE
    assert parse_frame(frame, max_frame=1518).error == ParseError.NONE
    assert_error_only(parse_frame(frame, max_frame=1517), ParseError.OVERSIZE, 1518)
    huge = f.ether(ethertype=0x1234) + bytes(70000)
    assert_error_only(parse_frame(huge), ParseError.OVERSIZE, 65535)
    assert parse_frame(huge, max_frame=65535) == ParsedFrame(length=65535, ethertype=0x1234)


@pytest.mark.parametrize("tags", [0, 1, 2])
def test_truncated_tcp4_at_every_offset(tags):
    frame = f.tcp4(payload=b"0123456789", pad_to=0)
    for _ in range(tags):
        frame = f.vlan(frame, 77)
    l3 = 14 + 4 * tags
    assert parse_frame(frame).error == ParseError.NONE
    for cut in range(14, len(frame)):
        r = parse_frame(frame[:cut])
        # The IPv4 header (20 bytes) is cut: TRUNCATED; past it, the total length field
        # says more than the frame holds: BAD_LENGTH.
        expected = ParseError.TRUNCATED if cut < l3 + 20 else ParseError.BAD_LENGTH
        assert_error_only(r, expected, cut)


@pytest.mark.parametrize("ext", [[], ["hop"], ["frag", "dst"]])
def test_truncated_udp6_at_every_offset(ext):
    frame = f.udp6(ext=[f.ipv6_ext(kind) for kind in ext], payload=b"abc", pad_to=0)
    assert parse_frame(frame).error == ParseError.NONE
    for cut in range(14, len(frame)):
        expected = ParseError.TRUNCATED if cut < 54 else ParseError.BAD_LENGTH
        assert_error_only(parse_frame(frame[:cut]), expected, cut)


def set_bytes(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


def test_l4_header_cut_by_ip_length():
    # The frame is long enough, but the IP packet ends inside the L4 header.
    tcp = set_bytes(f.tcp4(), 16, (20 + 19).to_bytes(2, "big"))
    assert_error_only(parse_frame(tcp), ParseError.TRUNCATED, 60)
    udp = set_bytes(f.udp4(), 16, (20 + 8).to_bytes(2, "big"))
    assert parse_frame(udp).flag("udp")
    udp = set_bytes(udp, 16, (20 + 7).to_bytes(2, "big"))
    assert_error_only(parse_frame(udp), ParseError.TRUNCATED, 60)
    udp6 = set_bytes(f.udp6(ext=[f.ipv6_ext("hop")]), 18, (8 + 7).to_bytes(2, "big"))
    assert_error_only(parse_frame(udp6), ParseError.TRUNCATED, 70)
    # An extension header past the IP payload (inside the frame's padding) is cut, too.
    hop = set_bytes(f.udp6(ext=[f.ipv6_ext("hop")], pad_to=90), 18, (4).to_bytes(2, "big"))
    assert_error_only(parse_frame(hop), ParseError.TRUNCATED, 90)


def test_bad_ihl_and_version():
    tcp = f.tcp4()
    for first in (0x44, 0x40, 0x55, 0x65, 0x00):
        assert_error_only(parse_frame(set_bytes(tcp, 14, bytes([first]))),
                          ParseError.BAD_IHL, 60)
    udp6 = f.udp6()
    for first in (0x40, 0x00, 0x70, 0xF6):
        assert_error_only(parse_frame(set_bytes(udp6, 14, bytes([first]))),
                          ParseError.BAD_IHL, 62)
    # IHL 15 needs 60 header bytes: a 60-byte frame cuts it.
    assert_error_only(parse_frame(set_bytes(tcp, 14, b"\x4f")), ParseError.TRUNCATED, 60)


def test_bad_lengths():
    tcp = f.tcp4(payload=bytes(20), pad_to=0)                  # 74 bytes, total length 60
    assert parse_frame(tcp).error == ParseError.NONE
    for total in (0, 19, 61, 65535):
        assert_error_only(parse_frame(set_bytes(tcp, 16, total.to_bytes(2, "big"))),
                          ParseError.BAD_LENGTH, 74)
    # Padding after the total length is fine; total length 40 still holds the TCP header.
    assert parse_frame(set_bytes(tcp, 16, (40).to_bytes(2, "big"))).flag("tcp")
    options = f.tcp4(options=2, pad_to=0)                       # IHL 7: total >= 28
    assert_error_only(parse_frame(set_bytes(options, 16, (27).to_bytes(2, "big"))),
                      ParseError.BAD_LENGTH, len(options))
    udp6 = f.udp6(pad_to=0)                                     # 62 bytes, payload 8
    assert_error_only(parse_frame(set_bytes(udp6, 18, (9).to_bytes(2, "big"))),
                      ParseError.BAD_LENGTH, 62)
    assert parse_frame(set_bytes(udp6 + bytes(10), 18, (8).to_bytes(2, "big"))).flag("udp")


def test_header_limit():
    # Five extension headers.
    five = f.udp6(ext=[f.ipv6_ext("dst")] * 5)
    assert_error_only(parse_frame(five), ParseError.HEADER_LIMIT, len(five))
    four = f.udp6(ext=[f.ipv6_ext("dst")] * 4)
    assert parse_frame(four).flag("udp")
    # A fragment header that ends the walk before a fifth header is not a limit.
    later = f.udp6(ext=[f.ipv6_ext("dst")] * 3 + [f.ipv6_ext("frag", offset=8)] +
                   [f.ipv6_ext("dst")])
    assert parse_frame(later).flag("fragment")
    # An extension header reaching past the capture window: 54 + 80 > 128.
    long_hop = f.udp6(ext=[f.ipv6_ext("hop", length=80)])
    assert_error_only(parse_frame(long_hop), ParseError.HEADER_LIMIT, len(long_hop))
    assert parse_frame(long_hop, capture_bytes=256).flag("udp")
    # The first 8 bytes of a header past the window: HEADER_LIMIT before its length is read.
    edge = f.udp6(ext=[f.ipv6_ext("hop", length=72), f.ipv6_ext("dst")])
    assert_error_only(parse_frame(edge), ParseError.HEADER_LIMIT, len(edge))
    # The first 8 bytes fit the IP packet (ends at 140) but not the window, the whole
    # header (at 122, 64 bytes) fits neither: the window is checked first.
    first = f.vlan(f.udp6(ext=[f.ipv6_ext("hop", length=64), f.ipv6_ext("dst", length=64)]),
                   1)
    first = set_bytes(first, 22, (140 - 58).to_bytes(2, "big"))
    assert_error_only(parse_frame(first), ParseError.HEADER_LIMIT, len(first))
    # L4 past the window: UDP (8 bytes) fits at 118, TCP (20 bytes) does not.
    assert parse_frame(f.udp6(ext=[f.ipv6_ext("hop", length=64)])).flag("udp")
    tcp = f.tcp6(ext=[f.ipv6_ext("hop", length=64)])
    assert_error_only(parse_frame(tcp), ParseError.HEADER_LIMIT, len(tcp))
    # IPv4 options past a 64-byte window.
    options = f.vlan(f.tcp4(options=10), 1)
    assert parse_frame(options).flag("tcp")
    assert_error_only(parse_frame(options, capture_bytes=64), ParseError.HEADER_LIMIT,
                      len(options))


def test_short_frames_never_hit_the_capture_limit():
    print(f"seed {SEED + 1:#x}")
    rng = random.Random(SEED + 1)
    for frame in f.random_mix(rng, 300, max_payload=40):
        r = parse_frame(frame, capture_bytes=len(frame) if len(frame) >= 64 else 64)
        if r.error == ParseError.HEADER_LIMIT:
            # Only the extension-header count can cause it.
            assert parse_frame(frame, capture_bytes=2048).error == ParseError.HEADER_LIMIT


def test_random_garbage_never_raises():
    print(f"seed {SEED + 2:#x}")
    rng = random.Random(SEED + 2)
    errors = set()
    templates = [f.tcp4(), f.udp6(ext=[f.ipv6_ext("hop"), f.ipv6_ext("frag")]),
                 f.vlan(f.tcp6(), 3)]
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(150)))
        else:
            # Valid L2/L3 with random bytes behind: exercises the deeper checks.
            frame = bytearray(rng.choice(templates))
            for _ in range(rng.randint(1, 6)):
                frame[rng.randrange(12, len(frame))] = rng.randrange(256)
            frame = bytes(frame[:rng.randrange(len(frame) + 1)])
        r = parse_frame(frame, mac_error=rng.random() < 0.05,
                        max_frame=rng.choice([1522, 100]), capture_bytes=rng.choice([64, 128]))
        assert isinstance(r.error, ParseError)
        r.to_meta_bits()                                  # every field fits its width
        if r.error:
            assert_error_only(r, r.error, min(len(frame), 65535))
        errors.add(r.error)
    assert errors == set(ParseError)


def test_parsed_frame_helpers():
    r = parse_frame(f.vlan(f.tcp6(sport=7, dport=9), 12))
    assert ParsedFrame.from_meta_bits(r.to_meta_bits()) == r
    assert r.flag("vlan") and r.flag("ipv6") and r.flag("tcp") and not r.flag("udp")
    with pytest.raises(ValueError, match="'bogus'"):
        r.flag("bogus")
    with pytest.raises(ValueError, match="capture_bytes .* not 32"):
        parse_frame(f.tcp4(), capture_bytes=32)


# --- the VNI of VXLAN / VXLAN-GPE ---------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("dport", [4789, 4790])
def test_vni_header_cut_at_every_length(version, dport):
    # The VXLAN header cut to 0..7 bytes (IP and UDP lengths agree, the frame padded with
    # zeros to 60): outer headers fine, no VNI, flag clear, no error. 8 bytes: the VNI.
    for cut in range(9):
        frame = f.vxlan_udp(version, dport=dport, vni=0x123456, cut=cut)
        r = check_against_scapy(frame)
        assert r.error == ParseError.NONE and r.flag("udp") and r.flag("tunnel")
        assert (r.flag("vni"), r.vni) == ((True, 0x123456) if cut == 8 else (False, 0)), cut


def test_vni_bounded_by_the_udp_length():
    # The VNI only when the UDP length holds the whole VXLAN header and the datagram lies
    # within the IP packet (not the IP length alone); never an error.
    for frame, udp_len in zip(f.udp_length_frames(), f.VXLAN_UDP_LENS * 2):
        r = check_against_scapy(frame)
        found = 16 <= udp_len <= 32
        assert r.error == ParseError.NONE and r.flag("udp"), udp_len
        assert (r.flag("vni"), r.vni) == ((True, 0x5A5A5A) if found else (False, 0)), udp_len


def test_vni_frame_cut_short():
    # The frame itself cut inside the VXLAN header: the IP length no longer fits, BAD_LENGTH,
    # a record with only length and error.
    frame = f.vxlan_udp(4, vni=5, pad_to=0)
    r = parse_frame(frame[:14 + 20 + 8 + 4])
    assert r.error == ParseError.BAD_LENGTH and r.vni == 0 and r.flags == 0


def test_vni_flags_byte():
    # Only I (0x08) decides; reserved bits, GPE's version/P/B/O bits are not looked at.
    for flags in range(256):
        r = parse_frame(f.vxlan_udp(4, flags=flags, vni=77))
        assert (r.flag("vni"), r.vni) == ((True, 77) if flags & 0x08 else (False, 0)), flags


def test_vni_needs_the_port_and_udp():
    assert not parse_frame(f.udp4(dport=4788, payload=f.vxlan_header(5))).flag("vni")
    assert not parse_frame(f.udp4(dport=4791, payload=f.vxlan_header(5))).flag("tunnel")
    r = parse_frame(f.tcp4(dport=4789, payload=f.vxlan_header(5)))
    assert r.flag("tcp") and not r.flag("tunnel") and not r.flag("vni")
    # Source port 4789, another destination: not VXLAN.
    assert not parse_frame(f.vxlan_udp(4, dport=5000, sport=4789)).flag("vni")
    # A first fragment of a VXLAN datagram: no L4 fields at all.
    frag = f.udp4(dport=4789, mf=True, payload=f.vxlan_header(5) + bytes(16))
    assert not parse_frame(frag).flag("vni") and parse_frame(frag).flag("fragment")


def test_vni_past_the_capture_window():
    # IPv6 with extension headers pushes the VXLAN header's end from inside the window to
    # past it: the VNI only when its 8 bytes are all inside (not an error either way).
    for hop in (40, 48, 56, 64):
        frame = f.vlan(f.udp6(dport=4789, ext=[f.ipv6_ext("hop", length=hop)],
                              payload=f.vxlan_header(9)), 1)
        end = 14 + 4 + 40 + hop + 8 + 8
        # end - 8: the window ends with the UDP header (the last bytes the walk needs).
        for window in (end - 8, end - 1, end, 2048):
            r = parse_frame(frame, capture_bytes=window)
            assert r.error == ParseError.NONE and r.flag("udp"), (hop, window)
            assert (r.flag("vni"), r.vni) == ((True, 9) if end <= window else (False, 0)), \
                (hop, window)
