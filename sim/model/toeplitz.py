# Ref: Microsoft "RSS Hashing Functions", "RSS Hashing Types" and "Verifying the RSS Hash
#      Calculation" (NdisHashFunctionToeplitz); DPDK rte_softrss (the same definition).
"""Software Toeplitz RSS hash: the oracle for :mod:`hetnic.gateware.toeplitz`, and the model
of the gateware's RSS hash stage (:func:`select_hash_type`, :func:`meta_hash`).

Definition
----------
The input is a byte string, taken bit by bit from the most significant bit of its first byte.
The key is a byte string read the same way. For every input bit ``i`` that is set, the 32 key
bits ``[i, i + 32)`` (as one big-endian 32-bit number) are XORed into the result. The key must
therefore be at least ``len(input) + 4`` bytes long: 40 bytes (:data:`RSS_KEY_LEN`) cover the
longest RSS input, IPv6 with ports (36 bytes).

Hash inputs are, in this order and in network byte order: source address, destination
address, then (for the TCP/UDP hash types) source port and destination port. That gives 8 or
12 bytes for IPv4 and 32 or 36 bytes for IPv6.

Three implementations agree bit for bit (the tests check it):

* :func:`toeplitz` — the bit-serial definition, the reference.
* :func:`toeplitz_scalar_table` — one 256-entry table per input byte position; a plain Python
  loop, the baseline of the speed ratio reported by :func:`bench_toeplitz`.
* :func:`toeplitz_batch` — numpy, vectorised over many inputs of one length, with one
  65536-entry table per 16-bit input word (six gathers for a 12-byte IPv4 tuple).
"""

import functools
import ipaddress
import numbers
import time

import numpy as np

from amaranth.lib import data

from ...protocol import HashType, MetaFlags, RSS_KEY_LEN

__all__ = [
    "toeplitz", "toeplitz_scalar_table", "toeplitz_byte_tables", "toeplitz_tables",
    "toeplitz_batch", "hash_input_ipv4", "hash_input_ipv6", "select_hash_type", "meta_hash_input", "meta_hash", "bench_toeplitz",
]

_MASK32 = 0xFFFF_FFFF

# MetaFlags bit positions, from the layout (LSB first).
_FLAG_IPV4, _FLAG_IPV6, _FLAG_TCP, _FLAG_UDP = (
    1 << data.Layout.cast(MetaFlags)[name].offset for name in ("ipv4", "ipv6", "tcp", "udp"))


def _check_key(key, length: int) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"RSS key must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) < length + 4:
        raise ValueError(f"RSS key of {len(key)} bytes is too short for a {length}-byte input: "
                         f"it needs at least {length + 4} bytes (normally {RSS_KEY_LEN})")
    return key


def _key_window(key_int: int, key_bits: int, bit: int) -> int:
    """Key bits ``[bit, bit + 32)`` (bit 0 = MSB of key byte 0) as a big-endian 32-bit value.
    Bits past the end of the key read as zero."""
    return ((key_int << 32) >> (key_bits - bit)) & _MASK32


def toeplitz(key: bytes, data: bytes) -> int:
    """Toeplitz hash of ``data`` under ``key``, bit by bit (the Microsoft definition).

    Parameters
    ----------
    key : bytes
        At least ``len(data) + 4`` bytes (normally 40).
    data : bytes
        The hash input, e.g. from :func:`hash_input_ipv4`.

    Returns
    -------
    int
        The 32-bit hash. An empty input hashes to 0.

    Raises
    ------
    ValueError
        If the key is shorter than ``len(data) + 4`` bytes.
    """
    data = bytes(data)
    key = _check_key(key, len(data))
    key_int = int.from_bytes(key, "big")
    key_bits = 8 * len(key)
    result = 0
    for byte_index, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                result ^= _key_window(key_int, key_bits, 8 * byte_index + bit)
    return result


@functools.lru_cache(maxsize=16)
def _byte_tables(key: bytes, length: int) -> tuple:
    key_int = int.from_bytes(key, "big")
    key_bits = 8 * len(key)
    tables = []
    for position in range(length):
        windows = [_key_window(key_int, key_bits, 8 * position + bit) for bit in range(8)]
        table = [0] * 256
        for value in range(1, 256):
            low = value & -value                      # lowest set bit: reuse the smaller entry
            table[value] = table[value ^ low] ^ windows[8 - low.bit_length()]
        tables.append(tuple(table))
    return tuple(tables)


def toeplitz_byte_tables(key: bytes, length: int) -> tuple:
    """Per-byte-position lookup tables: ``tables[p][b]`` is the hash of a ``length``-byte input
    that is all zero except byte ``p``, which is ``b``. Cached per ``(key, length)``."""
    key = _check_key(key, length)
    return _byte_tables(key, length)


def toeplitz_scalar_table(key: bytes, data: bytes) -> int:
    """Toeplitz hash of one input by table lookup (one lookup per byte). Same result as
    :func:`toeplitz`; the scalar baseline for the vectorised :func:`toeplitz_batch`."""
    data = bytes(data)
    tables = toeplitz_byte_tables(key, len(data))
    result = 0
    for table, byte in zip(tables, data):
        result ^= table[byte]
    return result


@functools.lru_cache(maxsize=8)
def _word_tables(key: bytes, length: int) -> np.ndarray:
    key_int = int.from_bytes(key, "big")
    key_bits = 8 * len(key)
    words = (length + 1) // 2
    tables = np.empty((words, 1 << 16), dtype=np.uint32)
    for word in range(words):
        # Build the table one index bit at a time, starting from the word's LSB (input bit
        # 16 * word + 15): each step doubles the table, the new half has that bit set. A pad
        # byte of an odd length reads key bits past the end, which are zero: harmless, as the
        # pad byte is zero.
        table = np.zeros(1, dtype=np.uint32)
        for bit in range(15, -1, -1):
            window = np.uint32(_key_window(key_int, key_bits, 16 * word + bit))
            table = np.concatenate((table, table ^ window))
        tables[word] = table
    tables.setflags(write=False)
    return tables


def toeplitz_tables(key: bytes, length: int) -> np.ndarray:
    """Lookup tables for :func:`toeplitz_batch`, cached per ``(key, length)``.

    Returns
    -------
    numpy.ndarray
        Read-only ``uint32`` array of shape ``(ceil(length / 2), 65536)``: entry ``[w, v]`` is
        the hash contribution of input bytes ``2w, 2w + 1`` holding the big-endian 16-bit
        value ``v`` (an odd length is padded with a zero byte).
    """
    key = _check_key(key, length)
    return _word_tables(key, length)


_BATCH_CHUNK = 1 << 15    # rows per pass: keeps the temporaries (and the result slice) in L2


def toeplitz_batch(key: bytes, inputs: np.ndarray) -> np.ndarray:
    """Toeplitz hashes of many inputs of the same length.

    Parameters
    ----------
    key : bytes
        At least ``L + 4`` bytes.
    inputs : numpy.ndarray
        ``uint8`` array of shape ``(N, L)``, one input per row, bytes in wire order.

    Returns
    -------
    numpy.ndarray
        ``uint32`` array of shape ``(N,)``, equal to ``toeplitz(key, row)`` for every row.
    """
    if not isinstance(inputs, np.ndarray) or inputs.dtype != np.uint8:
        raise TypeError(f"inputs must be a numpy uint8 array, not "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    if inputs.ndim != 2:
        raise ValueError(f"inputs must have shape (N, L), not {inputs.shape!r}")
    count, length = inputs.shape
    tables = toeplitz_tables(key, length)
    result = np.zeros(count, dtype=np.uint32)
    if length == 0:
        return result
    for start in range(0, count, _BATCH_CHUNK):
        rows = inputs[start:start + _BATCH_CHUNK]
        if length % 2:
            rows = np.concatenate((rows, np.zeros((len(rows), 1), dtype=np.uint8)), axis=1)
        # Big-endian 16-bit words, one contiguous column per word position, so that each
        # gather walks a dense index vector.
        columns = np.ascontiguousarray(
            np.ascontiguousarray(rows).view(">u2").astype(np.uint16).T)
        out = result[start:start + len(rows)]
        np.take(tables[0], columns[0], out=out)
        for word in range(1, len(columns)):
            out ^= np.take(tables[word], columns[word])
    return result


def _address(value, version: int) -> int:
    if isinstance(value, str):
        value = ipaddress.ip_address(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        if value.version != version:
            raise ValueError(f"expected an IPv{version} address, not {value!r}")
        return int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if not 0 <= value < 1 << (32 if version == 4 else 128):
            raise ValueError(f"IPv{version} address value out of range: {value!r}")
        return int(value)
    raise TypeError(f"IPv{version} address must be an ipaddress object, a string or an int, "
                    f"not {value!r}")


def _ports(sport, dport) -> bytes:
    if sport is None and dport is None:
        return b""
    if sport is None or dport is None:
        raise ValueError(f"give both ports or neither, not sport={sport!r}, dport={dport!r}")
    for port in (sport, dport):
        if (not isinstance(port, numbers.Integral) or isinstance(port, bool)
                or not 0 <= port <= 0xFFFF):
            raise ValueError(f"port must be an int in 0..65535, not {port!r}")
    return int(sport).to_bytes(2, "big") + int(dport).to_bytes(2, "big")


def hash_input_ipv4(src, dst, sport: int | None = None, dport: int | None = None) -> bytes:
    """RSS input for IPv4: source address, destination address, then (if given) source and
    destination port, all big-endian: 8 bytes, or 12 with ports. Addresses may be
    :class:`ipaddress.IPv4Address`, strings or 32-bit ints."""
    return (_address(src, 4).to_bytes(4, "big") + _address(dst, 4).to_bytes(4, "big")
            + _ports(sport, dport))


def hash_input_ipv6(src, dst, sport: int | None = None, dport: int | None = None) -> bytes:
    """RSS input for IPv6: source address, destination address, then (if given) source and
    destination port, all big-endian: 32 bytes, or 36 with ports. Addresses may be
    :class:`ipaddress.IPv6Address`, strings or 128-bit ints."""
    return (_address(src, 6).to_bytes(16, "big") + _address(dst, 6).to_bytes(16, "big")
            + _ports(sport, dport))


def select_hash_type(error: int, flags: int, enabled: int = 0x7E) -> HashType:
    """The hash type the gateware hash stage picks for one frame.

    A parse error or a non-IP frame gives ``NONE``. For IP, the L4 type (TCP, UDP) is used
    if its flag is set and the type is enabled, else the address-only type if enabled (so
    fragments, other protocols and disabled L4 types fall back to it), else ``NONE``.
    ``enabled`` has bit ``t`` set for each enabled :class:`HashType` value ``t``.
    """
    if error:
        return HashType.NONE
    flags = int(flags)
    if flags & _FLAG_IPV4:
        base = HashType.IPV4
    elif flags & _FLAG_IPV6:
        base = HashType.IPV6
    else:
        return HashType.NONE
    tcp, udp = HashType(base + 1), HashType(base + 2)
    if flags & _FLAG_TCP and enabled >> tcp & 1:
        return tcp
    if flags & _FLAG_UDP and enabled >> udp & 1:
        return udp
    if enabled >> base & 1:
        return base
    return HashType.NONE


def meta_hash_input(parsed, hash_type: HashType, symmetric: bool = False) -> bytes:
    """The Toeplitz input bytes for ``hash_type`` from a parsed frame (see :func:`meta_hash`).

    In symmetric mode the smaller address goes first and, independently, the smaller port.
    """
    src, dst = parsed.src_addr, parsed.dst_addr
    sport, dport = parsed.src_port, parsed.dst_port
    if symmetric:
        if src > dst:
            src, dst = dst, src
        if sport > dport:
            sport, dport = dport, sport
    if hash_type in (HashType.IPV4_TCP, HashType.IPV4_UDP, HashType.IPV6_TCP,
                     HashType.IPV6_UDP):
        ports = (sport, dport)
    else:
        ports = (None, None)
    if hash_type in (HashType.IPV4, HashType.IPV4_TCP, HashType.IPV4_UDP):
        return hash_input_ipv4(src & _MASK32, dst & _MASK32, *ports)
    if hash_type in (HashType.IPV6, HashType.IPV6_TCP, HashType.IPV6_UDP):
        return hash_input_ipv6(src, dst, *ports)
    return b""


def meta_hash(parsed, key: bytes, enabled: int = 0x7E,
              symmetric: bool = False) -> tuple[int, HashType]:
    """Model of the gateware RSS hash stage for one parsed frame.

    Parameters
    ----------
    parsed
        Any object with ``error``, ``flags`` (int, :class:`~hetnic.protocol.MetaFlags` bit
        order), ``src_addr``/``dst_addr`` (128-bit ints; IPv4 stored IPv4-mapped, so the IPv4
        address is the low 32 bits) and ``src_port``/``dst_port``.
    key : bytes
        The RSS key (40 bytes covers every hash type).
    enabled : int
        Bit mask of enabled hash types, bit ``t`` for :class:`HashType` value ``t``. The
        default ``0x7E`` enables all six.
    symmetric : bool
        Sort addresses and ports before hashing, so both directions of a flow hash the same
        under any key.

    Returns
    -------
    tuple[int, HashType]
        The 32-bit hash (0 for ``NONE``) and the hash type used (see :func:`select_hash_type`).
    """
    hash_type = select_hash_type(parsed.error, parsed.flags, enabled)
    if hash_type == HashType.NONE:
        return 0, HashType.NONE
    return toeplitz_scalar_table(key, meta_hash_input(parsed, hash_type, symmetric)), hash_type


def bench_toeplitz(seconds: float = 1.0) -> dict:
    """Throughput of :func:`toeplitz_batch` on 2**20 random 12-byte IPv4+port tuples against
    the scalar table loop (:func:`toeplitz_scalar_table`'s tables) on 20,000 of them, both
    measured now with the Microsoft key. ``seconds`` is the measuring budget, split between
    the two; table building and data generation come on top (well under a second).

    Returns
    -------
    dict
        ``toeplitz_sw_hashes_per_s``, ``toeplitz_scalar_hashes_per_s`` and their ratio
        ``toeplitz_sw_speedup``.
    """
    from hetnic.protocol import MS_RSS_DEFAULT_KEY as key
    rng = np.random.default_rng(0x7EE)
    tuples = rng.integers(0, 256, size=(1 << 20, 12), dtype=np.uint8)
    toeplitz_batch(key, tuples[:16])                  # build the tables outside the timing

    done, start = 0, time.perf_counter()
    while True:
        toeplitz_batch(key, tuples)
        done += len(tuples)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.6 * seconds:
            break
    vector_rate = done / elapsed

    sample = [bytes(row) for row in tuples[:20_000]]
    tables = toeplitz_byte_tables(key, 12)
    done, start = 0, time.perf_counter()
    while True:
        for tuple_bytes in sample:
            result = 0
            for table, byte in zip(tables, tuple_bytes):
                result ^= table[byte]
        done += len(sample)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.4 * seconds:
            break
    scalar_rate = done / elapsed

    return {
        "toeplitz_sw_hashes_per_s": vector_rate,
        "toeplitz_scalar_hashes_per_s": scalar_rate,
        "toeplitz_sw_speedup": vector_rate / scalar_rate,
    }
