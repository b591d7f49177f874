"""The Internet checksum (host/stack/checksum.py) against a slow word-by-word reference and
against the checksums scapy writes into IPv4, TCP, UDP, ICMP and ICMPv6 packets."""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from hetnic.host.stack.checksum import checksum, ones_sum, pseudo_sum, word_sum
from hetnic.protocol import IpProto

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SRC4, DST4 = "198.18.0.1", "198.18.0.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def reference_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, word by word with end-around carry."""
    if len(data) % 2:
        data = data + b"\0"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_every_length_against_reference():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    for length in range(0, 301):
        for kind in range(3):
            if kind == 0:
                data = rng.randbytes(length)
            elif kind == 1:
                data = b"\xff" * length      # sums to the 0xFFFF "negative zero"
            else:
                data = bytes(length)
            initial = rng.choice((0, 0xFFFF, rng.randrange(0x10000)))
            want = reference_sum(data, initial)
            assert ones_sum(data, initial) == want, (length, kind, initial)
            assert ones_sum(memoryview(data), initial) == want
            assert checksum(data, initial) == (~want & 0xFFFF)


def test_zero_and_negative_zero():
    assert ones_sum(b"") == 0
    assert ones_sum(bytes(10)) == 0
    assert checksum(bytes(10)) == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x80\x00\x80\x00") == 0x0001          # carry wraps around
    assert checksum(b"\xff\xff") == 0
    assert ones_sum(b"\x12", 0) == 0x1200                    # odd: padded on the right


def test_data_with_its_checksum_verifies():
    rng = random.Random(7)
    for length in range(0, 64, 2):
        data = bytearray(rng.randbytes(length) + b"\0\0")
        value = checksum(data)
        data[-2:] = value.to_bytes(2, "big")
        assert checksum(data) == 0


def test_ipv4_header_against_scapy():
    for ttl in (1, 64, 255):
        frame = bytes(Ether(**MACS) / IP(src=SRC4, dst=DST4, ttl=ttl, id=ttl * 7) / (b"x" * 3))
        header = frame[14:34]
        assert checksum(header) == 0
        zeroed = header[:10] + b"\0\0" + header[12:]
        assert checksum(zeroed) == int.from_bytes(header[10:12], "big")


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_transport_against_scapy(family, proto):
    rng = random.Random(11)
    for length in (0, 1, 2, 3, 100, 1459, 1460):
        payload = rng.randbytes(length)
        l4 = (TCP(sport=1234, dport=80, seq=rng.randrange(1 << 32), flags="PA")
              if proto == "tcp" else UDP(sport=1234, dport=7))
        if family == 4:
            ip, src, dst = IP(src=SRC4, dst=DST4), packed(SRC4), packed(DST4)
        else:
            ip, src, dst = IPv6(src=SRC6, dst=DST6), packed(SRC6), packed(DST6)
        frame = bytes(Ether(**MACS) / ip / l4 / payload)
        segment = frame[14 + (20 if family == 4 else 40):]
        number = IpProto.TCP if proto == "tcp" else IpProto.UDP
        pseudo = pseudo_sum(src, dst, number, len(segment))
        assert checksum(segment, pseudo) == 0
        field = 16 if proto == "tcp" else 6
        zeroed = segment[:field] + b"\0\0" + segment[field + 2:]
        want = int.from_bytes(segment[field:field + 2], "big")
        got = checksum(zeroed, pseudo)
        if proto == "udp" and got == 0:
            got = 0xFFFF                     # RFC 768: a computed 0 is sent as all ones
        assert got == want


def test_icmp_against_scapy():
    frame = bytes(Ether(**MACS) / IP(src=SRC4, dst=DST4) / ICMP(id=5, seq=9) / (b"ping" * 5))
    assert checksum(frame[34:]) == 0


def test_icmpv6_against_scapy():
    frame = bytes(Ether(**MACS) / IPv6(src=SRC6, dst=DST6)
                  / ICMPv6EchoRequest(id=3, seq=4, data=b"hello!!"))
    message = frame[54:]
    pseudo = pseudo_sum(packed(SRC6), packed(DST6), IpProto.ICMPV6, len(message))
    assert checksum(message, pseudo) == 0


def test_pseudo_sum_matches_explicit_headers():
    rng = random.Random(3)
    for _ in range(200):
        src4, dst4 = rng.randbytes(4), rng.randbytes(4)
        length = rng.randrange(0x10000)
        header4 = src4 + dst4 + bytes((0, 6)) + length.to_bytes(2, "big")
        assert pseudo_sum(src4, dst4, 6, length) == reference_sum(header4)
        src6, dst6 = rng.randbytes(16), rng.randbytes(16)
        length = rng.randrange(1 << 32)
        header6 = src6 + dst6 + length.to_bytes(4, "big") + bytes((0, 0, 0, 17))
        assert pseudo_sum(src6, dst6, 17, length) == reference_sum(header6)


def test_large_buffers_against_reference():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    for length in (255, 256, 257, 258, 1499, 1500, 2047, 2048, 2049, 2050, 9001, 65535):
        for data in (rng.randbytes(length), b"\xff" * length, bytes(length)):
            want = reference_sum(data)
            assert ones_sum(data) == want, length
            assert checksum(data) == (~want & 0xFFFF)
            assert word_sum(data) == want % 0xFFFF
