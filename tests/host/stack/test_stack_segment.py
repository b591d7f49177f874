"""TCP segments (host/stack/tcp_segment.py): parse of scapy-built segments with every option,
build -> parse round trips, byte equality with scapy, every malformed case and its reason, and
sequence-number arithmetic across the wrap."""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hetnic.errors import HetnicError
from hetnic.host.stack.tcp_segment import (
    ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, SegmentError, TcpSegment, build_tcp, parse_tcp,
    sack_option, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, syn_options, ts_option)

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SRC4, DST4 = "198.18.0.1", "198.18.0.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"
S4, D4 = ipaddress.ip_address(SRC4).packed, ipaddress.ip_address(DST4).packed
S6, D6 = ipaddress.ip_address(SRC6).packed, ipaddress.ip_address(DST6).packed


def scapy_segment(family: int = 4, **fields) -> bytes:
    """A TCP segment as scapy builds it (checksum filled in), cut out of a whole frame."""
    payload = fields.pop("payload", b"")
    ip = IP(src=SRC4, dst=DST4) if family == 4 else IPv6(src=SRC6, dst=DST6)
    frame = bytes(Ether(**MACS) / ip / TCP(**fields) / payload)
    return frame[14 + (20 if family == 4 else 40):]


def with_checksum(segment: bytes, src: bytes = S4, dst: bytes = D4) -> bytes:
    """``segment`` with its checksum field recomputed (to make malformed-but-summed cases)."""
    from hetnic.host.stack.checksum import checksum, pseudo_sum
    zeroed = segment[:16] + b"\0\0" + segment[18:]
    value = checksum(zeroed, pseudo_sum(src, dst, 6, len(segment)))
    return segment[:16] + value.to_bytes(2, "big") + segment[18:]


def raw_with_options(options: bytes, flags: int = ACK, payload: bytes = b"") -> bytes:
    """A 4-byte-aligned option area placed raw into a header, checksum fixed up."""
    assert len(options) % 4 == 0
    hl = 20 + len(options)
    header = (b"\x04\xd2\x00\x50" + (1000).to_bytes(4, "big") + (2000).to_bytes(4, "big")
              + bytes(((hl // 4) << 4, flags)) + b"\xff\xff" + b"\0\0\0\0")
    return with_checksum(header + options + payload)


@pytest.mark.parametrize("family", [4, 6])
def test_scapy_syn_with_every_option(family):
    src, dst = (S4, D4) if family == 4 else (S6, D6)
    options = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""),
               ("Timestamp", (123456789, 0)), ("EOL", None)]
    segment = scapy_segment(family, sport=40000, dport=80, seq=0xFFFFFFF0, flags="S",
                            window=64240, options=options)
    seg = parse_tcp(segment, src, dst)
    assert (seg.sport, seg.dport, seg.seq, seg.flags, seg.window) == (
        40000, 80, 0xFFFFFFF0, SYN, 64240)
    assert (seg.mss, seg.wscale, seg.sack_permitted) == (1460, 7, True)
    assert (seg.ts_val, seg.ts_ecr) == (123456789, 0)
    assert seg.sack_blocks == () and seg.payload == b""
    assert len(seg) == 1


def test_scapy_data_with_sack_and_timestamp():
    blocks = (1000, 2448, 5000, 6448, 9000, 10448)
    segment = scapy_segment(sport=80, dport=40000, seq=7, ack=99, flags="PA", window=501,
                            options=[("NOP", None), ("NOP", None), ("Timestamp", (5, 6)),
                                     ("NOP", None), ("NOP", None), ("SAck", blocks)],
                            payload=b"hello world")
    seg = parse_tcp(segment, S4, D4)
    assert seg.flags == PSH | ACK and seg.ack == 99
    assert seg.sack_blocks == ((1000, 2448), (5000, 6448), (9000, 10448))
    assert (seg.ts_val, seg.ts_ecr) == (5, 6)
    assert seg.payload == b"hello world" and len(seg) == 11
    assert isinstance(seg.payload, bytes)


def test_scapy_four_sack_blocks_and_memoryview():
    blocks = tuple(range(100, 900, 100))
    segment = scapy_segment(sport=1, dport=2, flags="A",
                            options=[("NOP", None), ("NOP", None), ("SAck", blocks)],
                            payload=b"z" * 3)
    seg = parse_tcp(memoryview(segment), S4, D4)
    assert seg.sack_blocks == ((100, 200), (300, 400), (500, 600), (700, 800))
    assert seg.payload == b"zzz" and type(seg.payload) is bytes


def test_fast_path_timestamp_only():
    segment = scapy_segment(sport=1, dport=2, flags="A",
                            options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
                            payload=b"x" * 1448)
    seg = parse_tcp(segment, S4, D4)
    assert (seg.ts_val, seg.ts_ecr, seg.mss, seg.sack_blocks) == (1, 2, None, ())


def test_unknown_option_skipped_and_eol_stops():
    options = bytes((30, 4, 0xAB, 0xCD)) + bytes((2, 4, 0x05, 0xB4))   # unknown kind, MSS
    seg = parse_tcp(raw_with_options(options), S4, D4)
    assert seg.mss == 1460
    # After EOL the rest of the area is padding, even if it looks like garbage.
    options = bytes((1, 0, 0xEE, 0)) + bytes((0xEE,)) * 4
    seg = parse_tcp(raw_with_options(options), S4, D4)
    assert seg.mss is None and seg.sack_blocks == ()


def test_window_scale_clamped_to_14():
    seg = parse_tcp(raw_with_options(bytes((1, 3, 3, 15)), flags=SYN), S4, D4)
    assert seg.wscale == 14


@pytest.mark.parametrize("options, what", [
    (bytes((2, 0, 0, 0)), "length 0"),
    (bytes((2, 1, 0, 0)), "length 1"),
    (bytes((1, 1, 1, 30)), "no length byte"),
    (bytes((1, 1, 30, 8)), "past the header"),
    (bytes((2, 3, 5, 0)), "MSS length 3"),
    (bytes((2, 6, 5, 0, 0, 0, 1, 1)), "MSS length 6"),
    (bytes((3, 4, 7, 0)), "WS length 4"),
    (bytes((1, 3, 2, 7)), "WS length 2"),
    (bytes((4, 3, 0, 0)), "SACK-permitted length 3"),
    (bytes((5, 2, 1, 1)), "SACK no blocks"),
    (bytes((5, 6, 0, 0, 0, 1, 0, 0)), "SACK half block"),
    (bytes((1, 1, 5, 14)) + bytes(12), "SACK length 14"),
    (bytes((1, 1, 8, 8)) + bytes(8), "timestamp length 8"),
    (bytes((1, 1, 8, 12)) + bytes(12), "timestamp length 12"),
])
def test_bad_options(options, what):
    with pytest.raises(SegmentError) as info:
        parse_tcp(raw_with_options(options), S4, D4)
    assert info.value.reason == "tcp_bad_option", what
    assert "\n" not in str(info.value)


def test_truncated_and_bad_offset():
    good = scapy_segment(sport=1, dport=2, flags="A", payload=b"abc")
    for cut in range(20):
        with pytest.raises(SegmentError) as info:
            parse_tcp(good[:cut], S4, D4)
        assert info.value.reason == "tcp_truncated"
    for offset in (0, 1, 4):
        bad = with_checksum(good[:12] + bytes((offset << 4,)) + good[13:])
        with pytest.raises(SegmentError) as info:
            parse_tcp(bad, S4, D4)
        assert info.value.reason == "tcp_bad_offset"
    # Offset 6 (24 bytes) on a 23-byte segment: the header runs past the end.
    bad = with_checksum(good[:12] + bytes((6 << 4,)) + good[13:])
    with pytest.raises(SegmentError) as info:
        parse_tcp(bad, S4, D4)
    assert info.value.reason == "tcp_bad_offset"


def test_bad_checksum_every_byte():
    good = scapy_segment(sport=1, dport=2, seq=3, ack=4, flags="PA", window=5,
                         options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
                         payload=b"payload!")
    parse_tcp(good, S4, D4)
    for i in range(len(good)):
        bad = good[:i] + bytes((good[i] ^ 0x01,)) + good[i + 1:]
        with pytest.raises(SegmentError) as info:
            parse_tcp(bad, S4, D4)
        assert info.value.reason in ("tcp_bad_checksum", "tcp_bad_offset"), i
    with pytest.raises(SegmentError) as info:
        parse_tcp(good, S4, bytes((198, 18, 0, 3)))           # wrong pseudo-header
    assert info.value.reason == "tcp_bad_checksum"


@pytest.mark.parametrize("flags, reason", [(SYN | FIN, "tcp_syn_fin"),
                                           (SYN | FIN | ACK, "tcp_syn_fin"),
                                           (SYN | RST, "tcp_bad_flags"),
                                           (SYN | RST | ACK, "tcp_bad_flags")])
def test_bad_flags(flags, reason):
    with pytest.raises(SegmentError) as info:
        parse_tcp(raw_with_options(b"", flags=flags), S4, D4)
    assert info.value.reason == reason
    assert isinstance(info.value, HetnicError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("flags", [0, FIN, RST, RST | ACK, FIN | PSH | URG, ECE | CWR | ACK])
def test_other_flag_combinations_parse(flags):
    assert parse_tcp(raw_with_options(b"", flags=flags), S4, D4).flags == flags


@pytest.mark.parametrize("family", [4, 6])
def test_build_matches_scapy(family):
    src, dst = (S4, D4) if family == 4 else (S6, D6)
    rng = random.Random(5)
    for length in (0, 1, 2, 1447, 1448):
        payload = rng.randbytes(length)
        ours = build_tcp(src, dst, 443, 50000, 0xFFFFFFFF, 12345, PSH | ACK, 65535,
                         ts_option(0xDEADBEEF, 42), payload)
        theirs = scapy_segment(family, sport=443, dport=50000, seq=0xFFFFFFFF, ack=12345,
                               flags="PA", window=65535,
                               options=[("NOP", None), ("NOP", None),
                                        ("Timestamp", (0xDEADBEEF, 42))], payload=payload)
        assert ours == theirs


def test_build_parse_round_trip():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    for _ in range(500):
        family = rng.choice((4, 6))
        src, dst = (rng.randbytes(4), rng.randbytes(4)) if family == 4 else (
            rng.randbytes(16), rng.randbytes(16))
        flags = rng.randrange(256) & ~(SYN | FIN | RST) | rng.choice((0, SYN, FIN, RST))
        options, want = b"", {}
        if flags & SYN:
            ts = rng.choice((None, (rng.randrange(1 << 32), rng.randrange(1 << 32))))
            wscale = rng.choice((None, rng.randrange(15)))
            sack_ok = rng.random() < 0.5
            options = syn_options(rng.randrange(1 << 16), wscale, sack_ok, ts)
            want = dict(wscale=wscale, sack_permitted=sack_ok,
                        ts_val=ts and ts[0], ts_ecr=ts and ts[1])
        else:
            blocks = tuple((rng.randrange(1 << 32), rng.randrange(1 << 32))
                           for _ in range(rng.randrange(4)))
            if rng.random() < 0.5:
                ts = (rng.randrange(1 << 32), rng.randrange(1 << 32))
                options = ts_option(*ts)
                want.update(ts_val=ts[0], ts_ecr=ts[1])
            options += sack_option(blocks)
            want["sack_blocks"] = blocks
        payload = rng.randbytes(rng.choice((0, 1, rng.randrange(1500))))
        fields = (rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 32),
                  rng.randrange(1 << 32), flags, rng.randrange(1 << 16))
        seg = parse_tcp(build_tcp(src, dst, *fields, options, payload), src, dst)
        assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window) == fields
        assert seg.payload == payload
        for name, value in want.items():
            assert getattr(seg, name) == value, (name, seed)
        assert len(seg) == len(payload) + bool(flags & SYN) + bool(flags & FIN)


def test_option_builders():
    assert len(syn_options(1460, 7, True, (1, 0))) == 20
    assert syn_options(1460, None, False, None) == bytes((2, 4, 0x05, 0xB4))
    assert syn_options(536, 0, True, None) == bytes((2, 4, 2, 24, 1, 1, 4, 2, 1, 3, 3, 0))
    assert ts_option(1, 2) == bytes((1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2))
    assert sack_option([]) == b""
    assert sack_option([(1, 2)]) == bytes((1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2))
    assert len(ts_option(0, 0) + sack_option([(0, 1)] * 3)) == 40
    with pytest.raises(SegmentError):
        sack_option([(0, 1)] * 5)
    with pytest.raises(SegmentError):
        syn_options(1460, 15)
    with pytest.raises(SegmentError):
        build_tcp(S4, D4, 1, 2, 0, 0, ACK, 0, b"\x01\x01\x01")
    with pytest.raises(SegmentError):
        build_tcp(S4, D4, 1, 2, 0, 0, ACK, 0, bytes(44))


def test_segment_repr_and_len():
    seg = TcpSegment(1, 2, 3, 4, SYN | ACK, 5, b"", mss=1460)
    assert len(seg) == 1 and "S." in repr(seg) and "mss=1460" in repr(seg)
    assert len(TcpSegment(1, 2, 3, 4, FIN | ACK, 5, b"abc")) == 4


def test_sequence_arithmetic_across_the_wrap():
    top = 0xFFFFFFFF
    assert seq_add(top, 1) == 0 and seq_add(0, -1) == top
    assert seq_diff(0, top) == 1 and seq_diff(top, 0) == -1
    assert seq_lt(top, 0) and seq_gt(0, top) and not seq_lt(0, top)
    assert seq_le(5, 5) and seq_ge(5, 5) and not seq_lt(5, 5) and not seq_gt(5, 5)
    rng = random.Random(1)
    for _ in range(2000):
        a = rng.randrange(1 << 32)
        d = rng.randrange(-(1 << 31) + 1, 1 << 31)
        b = seq_add(a, d)
        assert seq_diff(b, a) == d
        assert seq_lt(a, b) == (d > 0) and seq_gt(a, b) == (d < 0)
        assert seq_le(a, b) == (d >= 0) and seq_ge(a, b) == (d <= 0)
    # Exactly half the space apart: diff is -2**31 both ways; lt/le and gt/ge stay consistent.
    assert seq_diff(1 << 31, 0) == -(1 << 31)
    assert seq_lt(1 << 31, 0) and seq_le(1 << 31, 0)
    assert not seq_gt(1 << 31, 0) and not seq_ge(1 << 31, 0)


def test_fuzz_only_segment_errors():
    """Random headers and option areas (checksum made valid so the option parser runs) and
    every truncation: parse either succeeds or raises SegmentError, nothing else."""
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    kinds = (0, 1, 2, 3, 4, 5, 8, 30, 254)
    reasons = set()
    for _ in range(5000):
        olen = rng.randrange(0, 41) & ~3
        area = bytearray()
        while len(area) < olen:
            area.append(rng.choice(kinds))
            area.append(rng.choice((0, 1, 2, 3, 4, 10, 18, 26, 34, rng.randrange(256))))
        area = bytes(area[:olen])
        header = bytearray(rng.randbytes(20))
        header[12] = ((20 + olen) // 4) << 4 if rng.random() < 0.9 else rng.randrange(256)
        segment = with_checksum(bytes(header) + area + rng.randbytes(rng.randrange(40)))
        try:
            seg = parse_tcp(segment, S4, D4)
        except SegmentError as error:
            reasons.add(error.reason)
        else:
            assert isinstance(seg, TcpSegment)
    assert {"tcp_bad_option", "tcp_bad_offset"} <= reasons
    good = build_tcp(S4, D4, 1, 2, 3, 4, ACK, 5, ts_option(6, 7) + sack_option([(1, 2)] * 2),
                     b"data")
    for cut in range(len(good)):
        with pytest.raises(SegmentError):
            parse_tcp(good[:cut], S4, D4)
