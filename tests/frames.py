# Ref: IEEE 802.3, IEEE 802.1Q / 802.1ad, RFC 791, RFC 8200, RFC 9293, RFC 768, RFC 7348,
#      RFC 2784 (the frame formats built here).
"""Test frame factories built with scapy, shared by the test suites.

Every factory returns the frame as ``bytes``, from the destination MAC address on, without
FCS, padded with zeros to ``pad_to`` bytes (60 by default, the Ethernet minimum without FCS;
``pad_to=0`` for no padding). Fields have fixed, documented defaults so frames are
reproducible; pass keyword arguments to change them.

Building blocks
    :func:`ether`, :func:`vlan` (adds an outer tag to any frame), :func:`ipv6_ext`.
Frames
    :func:`tcp4`, :func:`udp4`, :func:`tcp6`, :func:`udp6`, :func:`icmp4`, :func:`icmp6`,
    :func:`arp`, :func:`direct`, :func:`dot3`, :func:`vxlan4`, :func:`vxlan_udp` (VXLAN or
    VXLAN-GPE, any flags, IPv4 or IPv6 outer), :func:`gre4`;
    :func:`directed_frames`, a named catalog of one frame of each kind.
Traffic
    :func:`random_frame` (one well-formed frame of a random kind) and :func:`random_mix`
    (a list mixing well-formed and malformed frames), both driven by a caller's seeded
    :class:`random.Random`.
"""

import random

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting, PadN,
)
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from hetnic.protocol import ETH_HEADER_LEN, EtherType

__all__ = [
    "MAC_DST", "MAC_SRC", "MIN_FRAME",
    "ether", "vlan", "ipv6_ext", "tcp4", "udp4", "tcp6", "udp6", "icmp4", "icmp6", "arp",
    "direct", "dot3", "vxlan4", "vxlan_header", "vxlan_udp", "VXLAN_UDP_LENS", "udp_length_frames",
    "gre4", "directed_frames", "random_frame", "random_mix",
]

MAC_DST = "02:00:00:00:00:01"
MAC_SRC = "02:00:00:00:00:02"
MIN_FRAME = 60              # minimum Ethernet frame without its 4-byte FCS

IP4_SRC, IP4_DST = "10.0.0.1", "192.168.1.2"
IP6_SRC, IP6_DST = "2001:db8::1", "2001:db8:0:1::2"


def _pad(frame: bytes, pad_to: int) -> bytes:
    return frame + bytes(max(0, pad_to - len(frame)))


def ether(payload=b"", *, ethertype: int | None = None, dst: str = MAC_DST,
          src: str = MAC_SRC, pad_to: int = MIN_FRAME) -> bytes:
    """An Ethernet II frame around ``payload`` (a scapy layer or bytes).

    ``ethertype`` defaults to what scapy binds to the payload layer (0x0800 for ``IP``...).
    """
    header = Ether(dst=dst, src=src) if ethertype is None else \
        Ether(dst=dst, src=src, type=ethertype)
    if isinstance(payload, (bytes, bytearray)):
        payload = Raw(bytes(payload)) if payload else None
    packet = header if payload is None else header / payload
    return _pad(bytes(packet), pad_to)


def vlan(frame: bytes, vid: int, *, pcp: int = 0, dei: int = 0,
         tpid: int = EtherType.VLAN) -> bytes:
    """``frame`` with a new outermost VLAN tag (TPID ``tpid``: 0x8100 C-tag, 0x88a8 S-tag)
    inserted after the MAC addresses. Nest calls for QinQ: ``vlan(vlan(f, 20), 10, tpid=
    EtherType.QINQ)`` gives S-tag 10 outside C-tag 20."""
    if not 0 <= vid < 4096:
        raise ValueError(f"VLAN id must be from 0 to 4095, not {vid!r}")
    tci = pcp << 13 | dei << 12 | vid
    return frame[:12] + tpid.to_bytes(2, "big") + tci.to_bytes(2, "big") + frame[12:]


def ipv6_ext(kind: str, *, length: int = 8, offset: int = 0, m: int = 0,
             ident: int = 0x1234) -> Packet:
    """One IPv6 extension header layer for ``tcp6``/``udp6``'s ``ext`` list.

    ``kind`` is ``"hop"`` (hop-by-hop options), ``"routing"``, ``"dst"`` (destination
    options) or ``"frag"``. ``length`` (a multiple of 8, at least 8; 8 + 16k for routing)
    sizes the first three;
    ``offset`` (in 8-byte units) and ``m`` fill the fragment header.
    """
    if kind == "frag":
        return IPv6ExtHdrFragment(offset=offset, m=m, id=ident)
    if length < 8 or length % 8:
        raise ValueError(f"Extension header length must be a multiple of 8 from 8, "
                         f"not {length!r}")
    if kind == "routing":
        # Type 0 routing header: 8 fixed bytes, then 16-byte addresses (scapy dissects
        # nothing else), so its length is 8 + 16k.
        if (length - 8) % 16:
            raise ValueError(f"Routing header length must be 8 plus a multiple of 16, "
                             f"not {length!r}")
        return IPv6ExtHdrRouting(addresses=[f"2001:db8::{k + 1:x}"
                                            for k in range((length - 8) // 16)])
    options = [PadN(optdata=bytes(length - 4))]     # 2 header bytes + PadN's 2 + data
    if kind == "hop":
        return IPv6ExtHdrHopByHop(options=options)
    if kind == "dst":
        return IPv6ExtHdrDestOpt(options=options)
    raise ValueError(f"Extension header kind must be 'hop', 'routing', 'dst' or 'frag', "
                     f"not {kind!r}")


def _chain(layers):
    packet = layers[0]
    for layer in layers[1:]:
        packet = packet / layer
    return packet


def _ip4(proto_layer, *, src, dst, tos, ttl, options, frag, mf, ident):
    ip = IP(src=src, dst=dst, tos=tos, ttl=ttl, frag=frag, id=ident,
            flags="MF" if mf else 0)
    if options:
        ip.options = IPOption(bytes([1]) * (4 * options))   # NOP words
    return ip / proto_layer


_NEXT_HEADER = {IPv6ExtHdrHopByHop: 0, IPv6ExtHdrRouting: 43, IPv6ExtHdrFragment: 44,
                IPv6ExtHdrDestOpt: 60, TCP: 6, UDP: 17, ICMPv6EchoRequest: 58}


def _ip6(layers, *, src, dst, tc, hlim, ext):
    # Next-header values are set explicitly, so any layer may follow any other.
    ext = [layer.copy() for layer in ext]
    chain = [IPv6(src=src, dst=dst, tc=tc, hlim=hlim), *ext, *layers]
    for layer, following in zip(chain, chain[1:]):
        if type(following) in _NEXT_HEADER:
            layer.nh = _NEXT_HEADER[type(following)]
    return _chain(chain)


def tcp4(*, src: str = IP4_SRC, dst: str = IP4_DST, sport: int = 40000, dport: int = 80,
         flags: str | int = "S", tos: int = 0, ttl: int = 64, options: int = 0,
         frag: int = 0, mf: bool = False, ident: int = 1, payload: bytes = b"",
         pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv4 / TCP. ``options`` adds that many 4-byte NOP option words (IHL 5 +
    ``options``); ``frag`` (8-byte units) and ``mf`` make a fragment."""
    return ether(_ip4(TCP(sport=sport, dport=dport, flags=flags) / Raw(payload),
                      src=src, dst=dst, tos=tos, ttl=ttl, options=options, frag=frag,
                      mf=mf, ident=ident), pad_to=pad_to)


def udp4(*, src: str = IP4_SRC, dst: str = IP4_DST, sport: int = 40000, dport: int = 53,
         tos: int = 0, ttl: int = 64, options: int = 0, frag: int = 0, mf: bool = False,
         ident: int = 1, payload: bytes = b"", pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv4 / UDP; the arguments are those of :func:`tcp4`."""
    return ether(_ip4(UDP(sport=sport, dport=dport) / Raw(payload),
                      src=src, dst=dst, tos=tos, ttl=ttl, options=options, frag=frag,
                      mf=mf, ident=ident), pad_to=pad_to)


def tcp6(*, src: str = IP6_SRC, dst: str = IP6_DST, sport: int = 40000, dport: int = 80,
         flags: str | int = "S", tc: int = 0, hlim: int = 64, ext=(), payload: bytes = b"",
         pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv6 / ``ext`` headers (see :func:`ipv6_ext`) / TCP."""
    return ether(_ip6([TCP(sport=sport, dport=dport, flags=flags), Raw(payload)],
                      src=src, dst=dst, tc=tc, hlim=hlim, ext=ext), pad_to=pad_to)


def udp6(*, src: str = IP6_SRC, dst: str = IP6_DST, sport: int = 40000, dport: int = 53,
         tc: int = 0, hlim: int = 64, ext=(), payload: bytes = b"",
         pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv6 / ``ext`` headers (see :func:`ipv6_ext`) / UDP."""
    return ether(_ip6([UDP(sport=sport, dport=dport), Raw(payload)],
                      src=src, dst=dst, tc=tc, hlim=hlim, ext=ext), pad_to=pad_to)


def icmp4(*, src: str = IP4_SRC, dst: str = IP4_DST, tos: int = 0,
          pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv4 / ICMP echo request."""
    return ether(IP(src=src, dst=dst, tos=tos) / ICMP(), pad_to=pad_to)


def icmp6(*, src: str = IP6_SRC, dst: str = IP6_DST, tc: int = 0, ext=(),
          pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv6 / ``ext`` headers / ICMPv6 echo request."""
    return ether(_ip6([ICMPv6EchoRequest()], src=src, dst=dst, tc=tc, hlim=64, ext=ext),
                 pad_to=pad_to)


def arp(*, psrc: str = IP4_SRC, pdst: str = IP4_DST, pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / ARP who-has request."""
    return ether(ARP(op=1, hwsrc=MAC_SRC, psrc=psrc, pdst=pdst), pad_to=pad_to)


def direct(payload: bytes = b"hetnic direct", *, ethertype: int = EtherType.DIRECT_DEFAULT,
           pad_to: int = MIN_FRAME) -> bytes:
    """A direct-channel frame: Ethernet with ``ethertype`` and a raw payload."""
    return ether(payload, ethertype=ethertype, pad_to=pad_to)


def dot3(payload: bytes = b"\xaa\xaa\x03" + bytes(40), *, pad_to: int = MIN_FRAME) -> bytes:
    """An IEEE 802.3 frame: a length field (< 0x0600) where the EtherType would be."""
    return ether(payload, ethertype=len(payload), pad_to=pad_to)


def vxlan4(inner: bytes | None = None, *, src: str = IP4_SRC, dst: str = IP4_DST,
           sport: int = 49152, vni: int = 42, pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv4 / UDP to port 4789 / VXLAN / ``inner`` frame (default: tcp4())."""
    inner = tcp4(pad_to=0) if inner is None else inner
    return ether(IP(src=src, dst=dst) / UDP(sport=sport, dport=4789) / VXLAN(vni=vni) /
                 Raw(inner), pad_to=pad_to)


def vxlan_header(vni: int, *, flags: int = 0x08, next_protocol: int = 0) -> bytes:
    """The 8 bytes of a VXLAN (RFC 7348 section 5) or VXLAN-GPE header, written out here
    byte by byte: ``flags`` (0x08 is I; GPE adds P 0x04), two reserved bytes, the GPE next
    protocol (0 for VXLAN), the VNI big-endian in three bytes, a reserved byte."""
    return bytes([flags, 0, 0, next_protocol]) + vni.to_bytes(3, "big") + b"\0"


def vxlan_udp(version: int = 4, inner: bytes | None = None, *, dport: int = 4789,
              vni: int = 42, flags: int = 0x08, next_protocol: int = 0, sport: int = 49152,
              src: str | None = None, dst: str | None = None, cut: int | None = None,
              udp_len: int | None = None, pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv``version`` / UDP to ``dport`` / :func:`vxlan_header` / ``inner`` (default:
    the IP packet of tcp4()). ``cut`` keeps only that many bytes of the VXLAN header and
    drops what follows (the IP and UDP lengths say so: a short datagram, not a cut frame).
    ``udp_len`` puts that UDP length in the header (the IP length stays the bytes'), say one
    that cuts the VXLAN header short or runs past the IP packet."""
    inner = tcp4(pad_to=0)[ETH_HEADER_LEN:] if inner is None else inner
    payload = vxlan_header(vni, flags=flags, next_protocol=next_protocol) + inner
    if cut is not None:
        payload = payload[:cut]
    udp = UDP(sport=sport, dport=dport, len=udp_len) / Raw(payload)
    if version == 4:
        ip = IP(src=src or IP4_SRC, dst=dst or IP4_DST) / udp
    else:
        ip = IPv6(src=src or IP6_SRC, dst=dst or IP6_DST) / udp
    return ether(ip, pad_to=pad_to)


#: UDP lengths for :func:`udp_length_frames` (their datagrams have 32 bytes).
VXLAN_UDP_LENS = (0, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 0xFFFF)


def udp_length_frames() -> list[bytes]:
    """VXLAN frames (a whole header, I set, 16 inner bytes: 32 UDP bytes) whose UDP length
    field says ``VXLAN_UDP_LENS``: cut inside the UDP header, inside the VXLAN header (8..15),
    just whole (16 and more) and past the IP packet (33, 0xFFFF); IPv4 and IPv6."""
    return [vxlan_udp(version, vni=0x5A5A5A, inner=bytes(16), udp_len=udp_len)
            for version in (4, 6) for udp_len in VXLAN_UDP_LENS]


def gre4(inner: bytes | None = None, *, src: str = IP4_SRC, dst: str = IP4_DST,
         pad_to: int = MIN_FRAME) -> bytes:
    """Ethernet / IPv4 / GRE / ``inner`` IPv4 packet (default: the IP part of tcp4())."""
    inner = tcp4(pad_to=0)[ETH_HEADER_LEN:] if inner is None else inner
    return ether(IP(src=src, dst=dst) / GRE(proto=EtherType.IPV4) / Raw(inner),
                 pad_to=pad_to)


def directed_frames() -> dict[str, bytes]:
    """One well-formed frame of each kind the parser must know, by name: IPv4/IPv6 with
    TCP/UDP/ICMP, one and two VLAN tags, IPv4 options and fragments, each IPv6 extension
    header and chains of them, IPv6 fragments, ARP, direct, 802.3, VXLAN, GRE, and the
    minimum (14 bytes) and a maximum untagged (1518 bytes) frame."""
    return {
        "tcp4": tcp4(sport=1234, dport=80, flags="SA", tos=0xB8),
        "udp4": udp4(sport=5353, dport=53, payload=b"x" * 20),
        "tcp4_1518": tcp4(payload=bytes(1518 - 54), flags="PA"),
        "vlan_tcp4": vlan(tcp4(), 100, pcp=5),
        "qinq_udp4": vlan(vlan(udp4(), 20), 10, tpid=EtherType.QINQ),
        "qinq_8100_8100": vlan(vlan(udp6(), 4095), 1),
        "ipv4_options": tcp4(options=3),
        "ipv4_max_ihl": udp4(options=10),
        "ipv4_first_fragment": tcp4(mf=True, payload=bytes(32)),
        "ipv4_later_fragment": tcp4(frag=185, payload=bytes(32)),
        "ipv4_last_fragment": udp4(frag=7, mf=False),
        "tcp6": tcp6(sport=443, dport=50000, flags="FA", tc=0x2E << 2),
        "udp6": udp6(payload=b"dns?"),
        "vlan_udp6": vlan(udp6(), 7),
        "ipv6_hop": udp6(ext=[ipv6_ext("hop")]),
        "ipv6_routing": tcp6(ext=[ipv6_ext("routing", length=24)]),
        "ipv6_dst": udp6(ext=[ipv6_ext("dst", length=16)]),
        "ipv6_atomic_frag": tcp6(ext=[ipv6_ext("frag")]),
        "ipv6_first_frag": udp6(ext=[ipv6_ext("frag", m=1)]),
        "ipv6_later_frag": udp6(ext=[ipv6_ext("frag", offset=100)]),
        "ipv6_chain4": tcp6(ext=[ipv6_ext("hop"), ipv6_ext("dst"),
                                 ipv6_ext("routing", length=24), ipv6_ext("frag")]),
        "ipv6_chain_frag_later": udp6(ext=[ipv6_ext("hop"), ipv6_ext("frag", offset=1),
                                           ipv6_ext("dst")]),
        "icmp4": icmp4(tos=0x10),
        "icmp6": icmp6(),
        "icmp6_after_dst": icmp6(ext=[ipv6_ext("dst")]),
        "arp": arp(),
        "vlan_arp": vlan(arp(), 3),
        "direct": direct(),
        "vlan_direct": vlan(direct(), 9),
        "dot3": dot3(),
        "vxlan": vxlan4(),
        "vxlan6": vxlan_udp(6, vni=0xABCDEF),
        "vxlan_gpe4": vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=12),
        "vxlan_gpe6": vxlan_udp(6, dport=4790, flags=0x0C, next_protocol=2, vni=0xFFFFFF),
        "vxlan_i_clear": vxlan_udp(4, flags=0x00, vni=10),
        "vlan_vxlan4": vlan(vxlan_udp(4, vni=1), 100),
        "qinq_vxlan6": vlan(vlan(vxlan_udp(6, vni=0), 20), 10, tpid=EtherType.QINQ),
        "gre": gre4(),
        "min_ether": ether(ethertype=0x1234, pad_to=14),
    }


def _random_ip4(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(256)) for _ in range(4))


def _random_ip6(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(65536):x}" for _ in range(8))


def random_frame(rng: random.Random, *, max_payload: int = 64) -> bytes:
    """One well-formed frame of a random kind (IPv4/IPv6 TCP/UDP with random fields,
    options, extension headers and fragments; ICMP, ARP, direct, 802.3, VXLAN, GRE) with 0,
    1 or 2 random VLAN tags and up to ``max_payload`` payload bytes."""
    payload = bytes(rng.randrange(256) for _ in range(rng.randrange(max_payload + 1)))
    ports = dict(sport=rng.randrange(65536), dport=rng.choice([80, 443, 53, 4789,
                                                               rng.randrange(65536)]))
    kind = rng.choice(["tcp4", "tcp4", "udp4", "tcp6", "udp6", "udp6", "icmp4", "icmp6",
                       "arp", "direct", "dot3", "vxlan4", "gre4"])
    if kind in ("tcp4", "udp4"):
        fragment = rng.random() < 0.15
        kwargs = dict(src=_random_ip4(rng), dst=_random_ip4(rng), tos=rng.randrange(256),
                      options=rng.choice([0, 0, 0, 1, 3, 10]), payload=payload,
                      frag=rng.choice([0, 0, 5]) if fragment else 0,
                      mf=fragment and rng.random() < 0.5, **ports)
        if kind == "tcp4":
            frame = tcp4(flags=rng.randrange(256), **kwargs)
        else:
            frame = udp4(**kwargs)
    elif kind in ("tcp6", "udp6", "icmp6"):
        ext = [ipv6_ext("routing", length=rng.choice([8, 24, 40])) if rng.random() < 0.25
               else ipv6_ext(rng.choice(["hop", "dst"]), length=8 * rng.randint(1, 4))
               if rng.random() < 0.7 else
               ipv6_ext("frag", offset=rng.choice([0, 0, 3]), m=rng.randrange(2))
               for _ in range(rng.choice([0, 0, 0, 1, 2, 4, 5]))]
        kwargs = dict(src=_random_ip6(rng), dst=_random_ip6(rng), tc=rng.randrange(256),
                      ext=ext)
        if kind == "tcp6":
            frame = tcp6(flags=rng.randrange(256), payload=payload, **ports, **kwargs)
        elif kind == "udp6":
            frame = udp6(payload=payload, **ports, **kwargs)
        else:
            frame = icmp6(**kwargs)
    elif kind == "icmp4":
        frame = icmp4(src=_random_ip4(rng), tos=rng.randrange(256))
    elif kind == "arp":
        frame = arp(psrc=_random_ip4(rng))
    elif kind == "direct":
        frame = direct(payload)
    elif kind == "dot3":
        frame = dot3(payload[:1500])
    elif kind == "vxlan4":
        frame = vxlan4(udp4(pad_to=0, payload=payload[:16]), vni=rng.randrange(1 << 24))
    else:
        frame = gre4()
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        frame = vlan(frame, rng.randrange(4096), pcp=rng.randrange(8),
                     tpid=rng.choice([EtherType.VLAN, EtherType.QINQ]))
    return frame


def random_mix(rng: random.Random, n: int, *, malformed: float = 0.3,
               max_payload: int = 64) -> list[bytes]:
    """``n`` frames: well-formed ones from :func:`random_frame` and, with probability
    ``malformed`` each, a malformed one: cut at a random byte, a runt (0-13 bytes), random
    bytes, a well-formed frame with one random header byte changed, or a frame with an
    IPv4/IPv6 length field set to a random value."""
    frames = []
    for _ in range(n):
        frame = random_frame(rng, max_payload=max_payload)
        if rng.random() < malformed:
            how = rng.choice(["cut", "runt", "garbage", "corrupt", "length"])
            if how == "cut":
                frame = frame[:rng.randrange(len(frame))]
            elif how == "runt":
                frame = frame[:rng.randrange(ETH_HEADER_LEN)]
            elif how == "garbage":
                frame = bytes(rng.randrange(256) for _ in range(rng.randrange(14, 100)))
            elif how == "corrupt":
                index = rng.randrange(12, min(len(frame), 90))
                frame = frame[:index] + bytes([rng.randrange(256)]) + frame[index + 1:]
            else:
                index = _ip_length_offset(frame)
                if index is not None:
                    value = rng.randrange(len(frame) + 8).to_bytes(2, "big")
                    frame = frame[:index] + value + frame[index + 2:]
        frames.append(frame)
    return frames


def _ip_length_offset(frame: bytes) -> int | None:
    """Offset of the IPv4 total length or IPv6 payload length field, if any."""
    offset = 12
    while frame[offset:offset + 2] in (b"\x81\x00", b"\x88\xa8"):
        offset += 4
    ethertype = int.from_bytes(frame[offset:offset + 2], "big")
    if ethertype == EtherType.IPV4:
        return offset + 4
    if ethertype == EtherType.IPV6:
        return offset + 6
    return None
