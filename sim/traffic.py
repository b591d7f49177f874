"""Synthetic traffic for demos, benchmarks and tests, built with scapy.

Frames are Ethernet frames without FCS, as the MAC hands them to the NIC core.
"""

from __future__ import annotations

import ipaddress
import random

from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from ..protocol import EtherType

__all__ = ["random_ipv4", "random_ipv6", "tcp4_min_frames", "traffic_mix", "MIX_KINDS"]

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def random_ipv4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def random_ipv6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address(rng.getrandbits(128)))


def _pad(frame: bytes, size: int) -> bytes:
    return frame + bytes(max(0, size - len(frame)))


def tcp4_min_frames(n: int, *, size: int = 64, flows: int = 1024, seed: int = 1) -> list[bytes]:
    """``n`` Eth/IPv4/TCP frames of exactly ``size`` bytes over ``flows`` random 5-tuples."""
    rng = random.Random(seed)
    tuples = [(random_ipv4(rng), random_ipv4(rng), rng.randrange(1024, 65536),
               rng.randrange(1, 1024)) for _ in range(flows)]
    payload = bytes(max(0, size - 54))
    per_flow = [_pad(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) /
                           TCP(sport=sport, dport=dport, flags="A") / Raw(payload)), size)[:size]
                for src, dst, sport, dport in tuples]
    return [per_flow[i % flows] for i in range(n)]


def _l4(rng, proto, size):
    payload = Raw(bytes(rng.getrandbits(8) for _ in range(size)))
    if proto == "tcp":
        return TCP(sport=rng.randrange(1024, 65536), dport=rng.choice([80, 443, 22, 8080]),
                   flags=rng.choice(["S", "A", "PA", "FA", "R"])) / payload
    if proto == "udp":
        return UDP(sport=rng.randrange(1024, 65536), dport=rng.choice([53, 123, 4789, 5000])) \
            / payload
    return ICMP() / payload


def _ipv6_ext(rng):
    kind = rng.choice(["hbh", "rt", "dst", "chain"])
    if kind == "hbh":
        return IPv6ExtHdrHopByHop()
    if kind == "rt":
        return IPv6ExtHdrRouting(addresses=[random_ipv6(rng)])
    if kind == "dst":
        return IPv6ExtHdrDestOpt()
    return IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()


#: Kinds of frame in :func:`traffic_mix`, with their relative weights.
MIX_KINDS = {
    "ipv4_tcp": 30, "ipv4_udp": 15, "ipv6_tcp": 12, "ipv6_udp": 8, "vlan_ipv4": 6,
    "qinq_ipv6": 3, "ipv4_options": 2, "ipv4_fragment": 3, "ipv6_ext": 3, "ipv6_fragment": 2,
    "icmp": 2, "arp": 2, "direct": 2, "runt": 1, "truncated": 2, "bad_ihl": 1,
    "bad_length": 1, "garbage": 2, "oversize": 1, "mac_error": 1,
}


def _frame(rng: random.Random, kind: str, flows4, flows6) -> tuple[bytes, bool]:
    eth = Ether(src=MAC_A, dst=MAC_B)
    size = rng.choice([0, 6, 18, 100, 400, 1000])
    s4, d4 = rng.choice(flows4)
    s6, d6 = rng.choice(flows6)
    if kind == "ipv4_tcp":
        return bytes(eth / IP(src=s4, dst=d4, tos=rng.choice([0, 0xB8])) / _l4(rng, "tcp", size)), False
    if kind == "ipv4_udp":
        return bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "udp", size)), False
    if kind == "ipv6_tcp":
        return bytes(eth / IPv6(src=s6, dst=d6) / _l4(rng, "tcp", size)), False
    if kind == "ipv6_udp":
        return bytes(eth / IPv6(src=s6, dst=d6) / _l4(rng, "udp", size)), False
    if kind == "vlan_ipv4":
        return bytes(eth / Dot1Q(vlan=rng.randrange(1, 4095)) / IP(src=s4, dst=d4) /
                     _l4(rng, rng.choice(["tcp", "udp"]), size)), False
    if kind == "qinq_ipv6":
        return bytes(eth / Dot1AD(vlan=rng.randrange(1, 4095)) / Dot1Q(vlan=rng.randrange(4095))
                     / IPv6(src=s6, dst=d6) / _l4(rng, "udp", size)), False
    if kind == "ipv4_options":
        return bytes(eth / IP(src=s4, dst=d4, options=[b"\x01" * 4 * rng.randrange(1, 11)]) /
                     _l4(rng, "tcp", size)), False
    if kind == "ipv4_fragment":
        pkt = IP(src=s4, dst=d4) / _l4(rng, "udp", 1200)
        return bytes(eth / rng.choice(fragment(pkt, fragsize=512))), False
    if kind == "ipv6_ext":
        return bytes(eth / IPv6(src=s6, dst=d6) / _ipv6_ext(rng) /
                     _l4(rng, rng.choice(["tcp", "udp"]), size)), False
    if kind == "ipv6_fragment":
        off = rng.choice([0, 0, 185])
        return bytes(eth / IPv6(src=s6, dst=d6) / IPv6ExtHdrFragment(offset=off, m=1, nh=17) /
                     _l4(rng, "udp", size)), False
    if kind == "icmp":
        return bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "icmp", size)), False
    if kind == "arp":
        return bytes(eth / ARP(psrc=s4, pdst=d4)), False
    if kind == "direct":
        return bytes(Ether(src=MAC_A, dst=MAC_B, type=EtherType.DIRECT_DEFAULT) /
                     Raw(bytes(46))), False
    if kind == "runt":
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 14))), False
    if kind == "truncated":
        full = bytes(eth / rng.choice([IP(src=s4, dst=d4), IPv6(src=s6, dst=d6)]) /
                     _l4(rng, "tcp", 20))
        return full[:rng.randrange(15, len(full) - 20)], False
    if kind == "bad_ihl":
        raw = bytearray(bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "udp", 20)))
        raw[14] = 0x40 | rng.randrange(0, 5)
        return bytes(raw), False
    if kind == "bad_length":
        raw = bytearray(bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "udp", 20)))
        raw[16:18] = (len(raw) + rng.randrange(1, 200)).to_bytes(2, "big")
        return bytes(raw), False
    if kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(14, 300))), False
    if kind == "oversize":
        return bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "udp", 1600)), False
    if kind == "mac_error":
        return bytes(eth / IP(src=s4, dst=d4) / _l4(rng, "tcp", size)), True
    raise ValueError(f"unknown frame kind {kind!r}")


def traffic_mix(n: int, *, seed: int = 1, flows: int = 64,
                kinds: dict[str, int] | None = None) -> list[tuple[bytes, bool]]:
    """``n`` frames (bytes, MAC-error flag) drawn from :data:`MIX_KINDS` over ``flows``
    IPv4 and ``flows`` IPv6 address pairs: good traffic of every kind the parser knows and
    a few malformed frames."""
    rng = random.Random(seed)
    kinds = kinds or MIX_KINDS
    names, weights = list(kinds), list(kinds.values())
    flows4 = [(random_ipv4(rng), random_ipv4(rng)) for _ in range(flows)]
    flows6 = [(random_ipv6(rng), random_ipv6(rng)) for _ in range(flows)]
    return [_frame(rng, rng.choices(names, weights)[0], flows4, flows6) for _ in range(n)]
