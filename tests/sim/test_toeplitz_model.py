"""Software Toeplitz (hetnic.sim.model.toeplitz): published vectors, agreement of the three
implementations, hash-input builders and the model of the gateware hash stage."""

import ipaddress
import random
from dataclasses import dataclass

import numpy as np
import pytest

from hetnic.host.rss_keys import random_key, symmetric_key
from hetnic.sim.model.toeplitz import (
    bench_toeplitz, hash_input_ipv4, hash_input_ipv6, meta_hash, meta_hash_input,
    select_hash_type, toeplitz, toeplitz_batch, toeplitz_byte_tables, toeplitz_scalar_table,
    toeplitz_tables,
)
from hetnic.protocol import MS_RSS_DEFAULT_KEY, RSS_KEY_LEN, HashType, ipv4_mapped

from rss_vectors import MS_IPV4_VECTORS, MS_IPV6_VECTORS

FLAG_IPV4, FLAG_IPV6, FLAG_FRAGMENT, FLAG_TCP, FLAG_UDP = 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6


@dataclass
class Parsed:
    """The parser output fields meta_hash reads."""
    flags: int
    src_addr: int = 0
    dst_addr: int = 0
    src_port: int = 0
    dst_port: int = 0
    error: int = 0


def _all_implementations(key, data):
    batch = toeplitz_batch(key, np.frombuffer(data, dtype=np.uint8).reshape(1, -1))
    return toeplitz(key, data), toeplitz_scalar_table(key, data), int(batch[0])


@pytest.mark.parametrize("src, sport, dst, dport, plain, with_ports", MS_IPV4_VECTORS)
def test_microsoft_ipv4_vectors(src, sport, dst, dport, plain, with_ports):
    key = MS_RSS_DEFAULT_KEY
    assert _all_implementations(key, hash_input_ipv4(src, dst)) == (plain,) * 3
    assert _all_implementations(key, hash_input_ipv4(src, dst, sport, dport)) == (with_ports,) * 3


@pytest.mark.parametrize("src, sport, dst, dport, plain, with_ports", MS_IPV6_VECTORS)
def test_microsoft_ipv6_vectors(src, sport, dst, dport, plain, with_ports):
    key = MS_RSS_DEFAULT_KEY
    assert _all_implementations(key, hash_input_ipv6(src, dst)) == (plain,) * 3
    assert _all_implementations(key, hash_input_ipv6(src, dst, sport, dport)) == (with_ports,) * 3


def test_single_bit_inputs_select_key_windows():
    key = bytes(range(0x10, 0x10 + RSS_KEY_LEN))
    key_int = int.from_bytes(key, "big")
    for bit in range(8 * 36):
        data = (1 << (8 * 36 - 1 - bit)).to_bytes(36, "big")
        assert toeplitz(key, data) == (key_int >> (8 * RSS_KEY_LEN - 32 - bit)) & 0xFFFF_FFFF


def test_implementations_agree_on_random_data():
    seed = 0x1DEA
    print(f"seed={seed:#x}")
    rng = np.random.default_rng(seed)
    for length in (0, 1, 2, 7, 8, 12, 13, 32, 35, 36):
        for key_len in (length + 4, RSS_KEY_LEN, 52):
            if key_len < length + 4:
                continue
            key = random_key(rng, key_len)
            inputs = rng.integers(0, 256, size=(300, length), dtype=np.uint8)
            batch = toeplitz_batch(key, inputs)
            assert batch.dtype == np.uint32 and batch.shape == (300,)
            for row, got in zip(inputs[:40], batch[:40]):
                data = row.tobytes()
                expected = toeplitz(key, data)
                assert toeplitz_scalar_table(key, data) == expected, (length, key_len)
                assert int(got) == expected, (length, key_len)
            scalar = [toeplitz_scalar_table(key, row.tobytes()) for row in inputs]
            assert batch.tolist() == scalar


def test_batch_crosses_chunk_boundaries_and_accepts_views():
    rng = np.random.default_rng(5)
    key = random_key(rng)
    wide = rng.integers(0, 256, size=(70_001, 16), dtype=np.uint8)
    inputs = wide[:, 2:14]                  # non-contiguous rows of 12 bytes
    batch = toeplitz_batch(key, inputs)
    picks = [0, 1, 32_767, 32_768, 65_536, 70_000]
    assert [int(batch[i]) for i in picks] == [toeplitz(key, inputs[i].tobytes()) for i in picks]


def test_linearity():
    rng = random.Random(11)
    key = rng.randbytes(RSS_KEY_LEN)
    for _ in range(50):
        a, b = rng.randbytes(36), rng.randbytes(36)
        xor = bytes(x ^ y for x, y in zip(a, b))
        assert toeplitz(key, xor) == toeplitz(key, a) ^ toeplitz(key, b)


def test_tables():
    tables = toeplitz_tables(MS_RSS_DEFAULT_KEY, 13)
    assert tables.shape == (7, 65536) and tables.dtype == np.uint32
    assert not tables.flags.writeable
    assert tables[0, 0x0102] == toeplitz(MS_RSS_DEFAULT_KEY, b"\x01\x02" + bytes(11))
    byte_tables = toeplitz_byte_tables(MS_RSS_DEFAULT_KEY, 12)
    assert len(byte_tables) == 12 and all(len(t) == 256 for t in byte_tables)
    assert byte_tables[11][0x81] == toeplitz(MS_RSS_DEFAULT_KEY, bytes(11) + b"\x81")


def test_bad_key_length():
    with pytest.raises(ValueError, match=r"39 bytes .* 36-byte input.* at least 40"):
        toeplitz(bytes(39), bytes(36))
    with pytest.raises(ValueError, match=r"at least 16"):
        toeplitz_scalar_table(bytes(15), bytes(12))
    with pytest.raises(ValueError, match=r"at least 16"):
        toeplitz_batch(bytes(15), np.zeros((4, 12), dtype=np.uint8))
    with pytest.raises(TypeError, match="str"):
        toeplitz("6d5a" * 20, bytes(12))
    assert toeplitz(bytes(16), bytes(12)) == 0          # exactly len + 4 is enough


def test_batch_input_checks():
    with pytest.raises(TypeError, match="int64"):
        toeplitz_batch(MS_RSS_DEFAULT_KEY, np.zeros((4, 12), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(12,\)"):
        toeplitz_batch(MS_RSS_DEFAULT_KEY, np.zeros(12, dtype=np.uint8))
    assert toeplitz_batch(MS_RSS_DEFAULT_KEY, np.zeros((3, 0), dtype=np.uint8)).tolist() == [0] * 3


def test_input_builders():
    expected = bytes([66, 9, 149, 187, 161, 142, 100, 80, 0x0A, 0xEA, 0x06, 0xE6])
    assert hash_input_ipv4("66.9.149.187", "161.142.100.80", 2794, 1766) == expected
    assert hash_input_ipv4(ipaddress.IPv4Address("66.9.149.187"), 0xA18E6450,
                           2794, 1766) == expected
    assert hash_input_ipv4("66.9.149.187", "161.142.100.80") == expected[:8]
    v6 = hash_input_ipv6("::1", ipaddress.IPv6Address("ff02::2"), 1, 0xFFFF)
    assert v6 == (1).to_bytes(16, "big") + bytes.fromhex("ff02" + "00" * 13 + "02") \
        + b"\x00\x01\xff\xff"
    assert hash_input_ipv6(1 << 127, 5) == (1 << 127).to_bytes(16, "big") + (5).to_bytes(16, "big")
    assert len(hash_input_ipv6("::", "::")) == 32


@pytest.mark.parametrize("call, error", [
    (lambda: hash_input_ipv4("1.2.3.4", "5.6.7.8", 80), ValueError),
    (lambda: hash_input_ipv4("1.2.3.4", "5.6.7.8", None, 80), ValueError),
    (lambda: hash_input_ipv4("1.2.3.4", "5.6.7.8", 65536, 80), ValueError),
    (lambda: hash_input_ipv4("1.2.3.4", "5.6.7.8", -1, 80), ValueError),
    (lambda: hash_input_ipv4("::1", "5.6.7.8"), ValueError),
    (lambda: hash_input_ipv4(1 << 32, 0), ValueError),
    (lambda: hash_input_ipv4(1.5, 0), TypeError),
    (lambda: hash_input_ipv6("1.2.3.4", "::1"), ValueError),
    (lambda: hash_input_ipv6(-1, 0), ValueError),
])
def test_input_builder_errors(call, error):
    with pytest.raises(error):
        call()


def test_keys():
    key = symmetric_key()
    assert len(key) == RSS_KEY_LEN and key[:4] == b"\x6d\x5a\x6d\x5a" and key[-2:] == b"\x6d\x5a"
    assert len(symmetric_key(52)) == 52
    assert random_key(np.random.default_rng(1)) == random_key(np.random.default_rng(1))
    assert random_key(random.Random(1)) == random_key(random.Random(1))
    assert len(random_key(random.Random(2), 52)) == 52
    assert random_key(random.Random(1)) != random_key(random.Random(2))
    with pytest.raises(TypeError):
        random_key(42)


def test_symmetric_key_is_symmetric_without_sorting():
    rng = random.Random(17)
    key = symmetric_key()
    for _ in range(50):
        a, b = rng.getrandbits(32), rng.getrandbits(32)
        pa, pb = rng.getrandbits(16), rng.getrandbits(16)
        forward, reverse = hash_input_ipv4(a, b, pa, pb), hash_input_ipv4(b, a, pb, pa)
        assert toeplitz(key, forward) == toeplitz(key, reverse)


def _v4(flags, src, dst, sport=0, dport=0, error=0):
    return Parsed(FLAG_IPV4 | flags, ipv4_mapped(int(ipaddress.IPv4Address(src))),
                  ipv4_mapped(int(ipaddress.IPv4Address(dst))), sport, dport, error)


def _v6(flags, src, dst, sport=0, dport=0, error=0):
    return Parsed(FLAG_IPV6 | flags, int(ipaddress.IPv6Address(src)),
                  int(ipaddress.IPv6Address(dst)), sport, dport, error)


def test_meta_hash_microsoft_vectors():
    key = MS_RSS_DEFAULT_KEY
    for src, sport, dst, dport, plain, with_ports in MS_IPV4_VECTORS:
        parsed = _v4(FLAG_TCP, src, dst, sport, dport)
        assert meta_hash(parsed, key) == (with_ports, HashType.IPV4_TCP)
        assert meta_hash(_v4(0, src, dst, sport, dport), key) == (plain, HashType.IPV4)
    for src, sport, dst, dport, plain, with_ports in MS_IPV6_VECTORS:
        parsed = _v6(FLAG_TCP, src, dst, sport, dport)
        assert meta_hash(parsed, key) == (with_ports, HashType.IPV6_TCP)
        assert meta_hash(_v6(FLAG_FRAGMENT, src, dst), key) == (plain, HashType.IPV6)


ALL = 0x7E


def _without(*types):
    mask = ALL
    for t in types:
        mask &= ~(1 << t)
    return mask


@pytest.mark.parametrize("make", [_v4, _v6])
@pytest.mark.parametrize("flags, enabled, base_offset", [
    (FLAG_TCP, ALL, 1),                      # L4 type, offset from the address-only type
    (FLAG_UDP, ALL, 2),
    (0, ALL, 0),                             # other protocol: addresses only
    (FLAG_FRAGMENT, ALL, 0),                 # fragment: no L4 flag, addresses only
    (FLAG_TCP, "no_tcp", 0),                 # disabled L4 type falls back to addresses
    (FLAG_UDP, "no_udp", 0),
    (FLAG_UDP, "no_tcp", 2),                 # disabling TCP leaves UDP alone
    (FLAG_TCP, "l4_only", 1),
    (0, "l4_only", None),                    # address-only disabled: no hash
    (FLAG_TCP, "none", None),
])
def test_meta_hash_type_selection(make, flags, enabled, base_offset):
    base = HashType.IPV4 if make is _v4 else HashType.IPV6
    enabled = {
        "no_tcp": _without(base + 1), "no_udp": _without(base + 2),
        "l4_only": _without(base), "none": 0,
    }.get(enabled, enabled)
    src, dst = ("10.0.0.1", "192.168.7.9") if make is _v4 else ("2001:db8::1", "fe80::9")
    parsed = make(flags, src, dst, 1234, 80)
    key = random_key(random.Random(23))
    value, hash_type = meta_hash(parsed, key, enabled)
    if base_offset is None:
        assert (value, hash_type) == (0, HashType.NONE)
        return
    assert hash_type == HashType(base + base_offset)
    builder = hash_input_ipv4 if make is _v4 else hash_input_ipv6
    ports = (1234, 80) if base_offset else ()
    assert value == toeplitz(key, builder(src, dst, *ports))


def test_meta_hash_no_hash_cases():
    key = MS_RSS_DEFAULT_KEY
    good = _v4(FLAG_TCP, "1.2.3.4", "5.6.7.8", 1, 2)
    assert meta_hash(good, key)[1] == HashType.IPV4_TCP
    assert meta_hash(_v4(FLAG_TCP, "1.2.3.4", "5.6.7.8", 1, 2, error=4), key) == (0, HashType.NONE)
    assert meta_hash(Parsed(FLAG_TCP, 1, 2, 3, 4), key) == (0, HashType.NONE)   # not IP
    assert select_hash_type(0, FLAG_IPV4 | FLAG_UDP) == HashType.IPV4_UDP
    assert meta_hash_input(good, HashType.NONE) == b""


def test_meta_hash_ipv4_uses_low_32_bits():
    key = MS_RSS_DEFAULT_KEY
    mapped = _v4(FLAG_UDP, "1.2.3.4", "5.6.7.8", 53, 5353)
    junk = Parsed(mapped.flags, mapped.src_addr | (0xABCD << 96), mapped.dst_addr, 53, 5353)
    assert meta_hash(junk, key) == meta_hash(mapped, key)
    assert (meta_hash_input(mapped, HashType.IPV4_UDP)
            == hash_input_ipv4("1.2.3.4", "5.6.7.8", 53, 5353))


def test_symmetric_mode_with_random_keys():
    seed = 0x5133
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    asymmetric = 0
    for n in range(200):
        key = random_key(rng)
        v6 = n % 2
        bits = 128 if v6 else 32
        a, b = rng.getrandbits(bits), rng.getrandbits(bits)
        pa, pb = rng.getrandbits(16), rng.getrandbits(16)
        if n % 10 == 0:
            b = a                               # equal addresses: only the ports sort
        if not v6:
            a, b = ipv4_mapped(a), ipv4_mapped(b)
        flags = (FLAG_IPV6 if v6 else FLAG_IPV4) | rng.choice([FLAG_TCP, FLAG_UDP, 0])
        forward = Parsed(flags, a, b, pa, pb)
        reverse = Parsed(flags, b, a, pb, pa)
        hash_f, type_f = meta_hash(forward, key, symmetric=True)
        assert (hash_f, type_f) == meta_hash(reverse, key, symmetric=True)
        # The sort form: smaller address first, smaller port first, independently.
        sorted_parsed = Parsed(flags, min(a, b), max(a, b), min(pa, pb), max(pa, pb))
        assert hash_f == meta_hash(sorted_parsed, key)[0]
        asymmetric += meta_hash(forward, key)[0] != meta_hash(reverse, key)[0]
    assert asymmetric > 150                     # without symmetric mode the directions differ


def test_bench_toeplitz_reports_ratio():
    result = bench_toeplitz(0.05)
    assert set(result) == {"toeplitz_sw_hashes_per_s", "toeplitz_scalar_hashes_per_s",
                           "toeplitz_sw_speedup"}
    assert result["toeplitz_sw_hashes_per_s"] > 0 and result["toeplitz_scalar_hashes_per_s"] > 0
    print(result)
