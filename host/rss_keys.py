# Ref: Microsoft "RSS Hashing Functions" and "RSS Indirection Table" (Toeplitz hash, RETA).
"""RSS keys for adaptive selection: validation, random and symmetric candidates, and hashing
many keys over many flows at once (part of :mod:`hetnic.host.rss_policy`, which re-exports
them).

Multi-key hashing
-----------------
The Toeplitz hash is linear over GF(2): an input hashes to the XOR of one table entry per
input byte. :func:`flow_hashes` and the scorers build, for all keys at once, the
``(input bytes, 256, keys)`` byte tables (12 KiB per key for IPv4) and then gather whole
per-byte rows, one row of ``keys`` hashes per flow and byte. Scoring keeps only the RETA index
bits (``uint16`` for a 512-entry table) and counts loads per key and bucket with ``bincount``.
The results agree bit for bit with :func:`hetnic.sim.model.toeplitz.toeplitz`.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..protocol import RSS_KEY_LEN
from ..regs import DEFAULT_PARAMS
from .rss_flows import FlowSet, _check_count

__all__ = ["DEFAULT_INDEX_BITS", "validate_key", "is_symmetric_key", "symmetric_key",
           "random_key", "random_keys", "symmetric_keys", "flow_hashes", "queue_loads", "bucket_loads", "score_keys"]

#: RETA index bits that :func:`validate_key` checks by default: those of the default build's
#: RETA (512 entries, 9 bits).
DEFAULT_INDEX_BITS = DEFAULT_PARAMS["reta_size"].bit_length() - 1

_MAX_INDEX_BITS = 16            # a port is 16 bits: no single field can reach more entries

# Fields of the 4-tuple hash inputs as (name, first input bit, bits). An IPv4 input is the
# first 96 bits of the same windows as an IPv6 one, so one set of windows serves both.
_FIELDS = (("IPv4 source address", 0, 32), ("IPv4 destination address", 32, 32),
           ("IPv4 source port", 64, 16), ("IPv4 destination port", 80, 16),
           ("IPv6 source address", 0, 128), ("IPv6 destination address", 128, 128),
           ("IPv6 source port", 256, 16), ("IPv6 destination port", 272, 16))
# Input bit ranges that a symmetric hash must treat alike: (first, second, bits).
_SWAPS = ((0, 32, 32), (64, 80, 16), (0, 128, 128), (256, 272, 16))


# --- Keys ---------------------------------------------------------------------------------

def _key_array(keys) -> np.ndarray:
    """``(K, RSS_KEY_LEN)`` uint8 from one key (bytes), a sequence of keys or an array."""
    if isinstance(keys, (bytes, bytearray, memoryview)):
        keys = [keys]
    if isinstance(keys, np.ndarray):
        array = keys.reshape(1, -1) if keys.ndim == 1 else keys
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != RSS_KEY_LEN:
            raise ValueError(f"keys must be a uint8 array of shape (K, {RSS_KEY_LEN}), not "
                             f"{keys.dtype} {keys.shape}")
        return np.ascontiguousarray(array)
    rows = []
    for i, key in enumerate(keys):
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != RSS_KEY_LEN:
            raise ValueError(f"key {i} must be {RSS_KEY_LEN} bytes, not {key!r:.60}")
        rows.append(bytes(key))
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, RSS_KEY_LEN)


def _windows(keys: np.ndarray, length: int) -> np.ndarray:
    """``(K, length, 8)`` uint32: the 32 key bits starting at input bit ``8p + t`` (bit 0 =
    MSB of key byte 0), i.e. the hash of an input with only that bit set."""
    count = len(keys)
    padded = np.zeros((count, length + 4), dtype=np.uint64)
    padded[:, :min(length + 4, RSS_KEY_LEN)] = keys[:, :length + 4]
    five = np.zeros((count, length), dtype=np.uint64)        # key bytes p .. p + 4, 40 bits
    for j in range(5):
        five |= padded[:, j:j + length] << np.uint64(8 * (4 - j))
    shifts = np.uint64(8) - np.arange(8, dtype=np.uint64)
    return ((five[:, :, None] >> shifts) & np.uint64(0xFFFF_FFFF)).astype(np.uint32)


def _byte_tables(keys: np.ndarray, length: int, bits: int) -> np.ndarray:
    """``(length, 256, K)``: entry ``[p, v, k]`` is the low ``bits`` bits of key ``k``'s hash
    of an input that is zero except byte ``p``, which is ``v``."""
    dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
    windows = _windows(keys, length) & np.uint32((1 << bits) - 1)
    windows = np.ascontiguousarray(windows.astype(dtype).transpose(1, 2, 0))  # (L, 8, K)
    tables = np.zeros((length, 1, len(keys)), dtype=dtype)
    for t in range(7, -1, -1):            # from the byte's LSB: each bit doubles the table
        tables = np.concatenate((tables, tables ^ windows[:, t:t + 1]), axis=1)
    return tables


def _hash_chunks(tables: np.ndarray, inputs: np.ndarray):
    """Yield ``(start, hashes)`` with ``hashes`` of shape ``(rows, K)`` for consecutive row
    chunks of ``inputs`` (the buffer is reused: use it before the next step)."""
    keys = tables.shape[2]
    chunk = min(1 << 16, max(256, (1 << 17) // max(keys, 1)))  # ~256 KiB of uint16 per pass
    columns = np.ascontiguousarray(inputs.T)
    acc = np.empty((min(chunk, len(inputs)), keys), dtype=tables.dtype)
    tmp = np.empty_like(acc)
    for start in range(0, len(inputs), chunk):
        rows = columns[:, start:start + chunk]
        out, part = acc[:rows.shape[1]], tmp[:rows.shape[1]]
        np.take(tables[0], rows[0], axis=0, out=out)
        for position in range(1, len(rows)):
            np.take(tables[position], rows[position], axis=0, out=part)
            out ^= part
        yield start, out


def _field_ranks(keys: np.ndarray, bits: int) -> np.ndarray:
    """``(K, len(_FIELDS))``: GF(2) rank of each field's Toeplitz rows in the low ``bits``
    hash bits, i.e. ``log2`` of how many RETA indices that field alone can reach."""
    windows = _windows(keys, 36).reshape(len(keys), -1) & np.uint32((1 << bits) - 1)
    ranks = np.zeros((len(keys), len(_FIELDS)), dtype=np.int64)
    for f, (_, first, size) in enumerate(_FIELDS):
        basis = np.zeros((len(keys), bits), dtype=np.uint32)   # [k, j]: vector led by bit j
        for row in range(first, first + size):
            vector = windows[:, row].copy()
            for j in range(bits - 1, -1, -1):
                lead = (vector >> np.uint32(j)) & np.uint32(1) == 1
                have = basis[:, j] != 0
                vector = np.where(lead & have, vector ^ basis[:, j], vector)
                new = lead & ~have
                basis[new, j] = vector[new]
                vector[new] = 0
            if (basis != 0).all():
                break
        ranks[:, f] = (basis != 0).sum(axis=1)
    return ranks


def _check_index_bits(index_bits) -> int:
    if (not isinstance(index_bits, numbers.Integral) or isinstance(index_bits, bool)
            or not 0 <= index_bits <= _MAX_INDEX_BITS):
        raise ValueError(f"index_bits must be an integer from 0 to {_MAX_INDEX_BITS}, not "
                         f"{index_bits!r}")
    return int(index_bits)


def _degenerate(keys: np.ndarray, bits: int) -> list[str | None]:
    """Per key: None if valid, else why not."""
    zero = ~keys.any(axis=1)
    ranks = _field_ranks(keys, bits) if bits else np.zeros((len(keys), len(_FIELDS)))
    reasons = []
    for k in range(len(keys)):
        if zero[k]:
            reasons.append("the all-zero RSS key hashes every flow to 0")
            continue
        short = np.flatnonzero(ranks[k] < bits)
        if short.size:
            f = int(short[0])
            reasons.append(f"degenerate RSS key: varying the {_FIELDS[f][0]} alone reaches "
                           f"only 2**{ranks[k, f]} of 2**{bits} RETA entries (GF(2) rank of "
                           f"its Toeplitz rows in the low {bits} hash bits); draw another")
        else:
            reasons.append(None)
    return reasons


def validate_key(key: bytes, *, index_bits: int = DEFAULT_INDEX_BITS) -> None:
    """Raise :class:`ValueError` (one line) unless ``key`` is a usable RSS key.

    A key must be :data:`RSS_KEY_LEN` bytes (bytes, bytearray or a uint8 array) and not
    degenerate. *Degenerate* is defined for a RETA of ``2**index_bits`` entries (default: the
    512 entries of the default build): for each field of the IPv4 and the IPv6 4-tuple
    input (source address, destination address, source port, destination port), the map from
    that field alone, the others fixed, to the RETA index (the low ``index_bits`` hash bits)
    must be onto. The hash is linear over GF(2), so that holds iff the field's rows of the
    Toeplitz matrix (key bits ``[i, i + 32)`` for each input bit ``i`` of the field),
    restricted to the low ``index_bits`` columns, have rank ``index_bits``; then the field
    alone also reaches every entry equally often. A key failing it sends traffic that
    differs in one field only (one client's connections differ only in source port) to at
    most half the entries. The all-zero key fails everywhere. A random key fails about 1% of
    the time at 9 bits, 6% at 11; ``index_bits`` is at most 16, the bits of a port.
    """
    bits = _check_index_bits(index_bits)
    if isinstance(key, np.ndarray) and key.dtype == np.uint8 and key.ndim == 1:
        key = key.tobytes()
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise ValueError(f"RSS key must be bytes, not {type(key).__name__}")
    if len(key) != RSS_KEY_LEN:
        raise ValueError(f"RSS key must be {RSS_KEY_LEN} bytes, not {len(key)}")
    reason = _degenerate(_key_array(bytes(key)), bits)[0]
    if reason:
        raise ValueError(reason)


def is_symmetric_key(key: bytes) -> bool:
    """True if ``toeplitz(key, a -> b) == toeplitz(key, b -> a)`` for every IPv4 and IPv6
    4-tuple (addresses swapped and ports swapped).

    The hash is linear, so this holds iff swapped input bits have equal Toeplitz rows:
    ``w[i] == w[i + 32]`` over the IPv4 source address, ``w[i] == w[i + 16]`` over its source
    port, ``w[i] == w[i + 128]`` and ``w[i] == w[i + 16]`` for IPv6, where ``w[i]`` is key
    bits ``[i, i + 32)``. Together these make key bits 0 to 318 periodic with period 16,
    except that bit 127 need only equal bit 255 (no 4-tuple window ends elsewhere there):
    in effect a 16-bit pattern repeated.
    """
    windows = _windows(_key_array(key), 36).reshape(-1)
    return all(np.array_equal(windows[a:a + n], windows[b:b + n]) for a, b, n in _SWAPS)


def symmetric_key(length: int = RSS_KEY_LEN) -> bytes:
    """The key ``6d5a`` repeated: hash(a -> b) == hash(b -> a) without sorting the input, but
    the hash then takes at most 65,536 values (its two 16-bit halves are equal)."""
    return (b"\x6d\x5a" * (length // 2 + 1))[:length]


def random_key(rng, length: int = RSS_KEY_LEN) -> bytes:
    """A uniformly random key from ``rng``: a :class:`numpy.random.Generator` or a
    :class:`random.Random`."""
    if hasattr(rng, "bytes"):
        return bytes(rng.bytes(length))
    if hasattr(rng, "randbytes"):
        return rng.randbytes(length)
    raise TypeError(f"rng must be a numpy Generator or a random.Random, not {rng!r}")


def _draw_valid(draw, rng: np.random.Generator, n: int, index_bits: int) -> np.ndarray:
    n = _check_count(n, "n", 0)
    bits = _check_index_bits(index_bits)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    found, drawn = [], 0
    while sum(len(f) for f in found) < n:
        missing = n - sum(len(f) for f in found)
        if drawn > 1000 * (n + 10):
            raise ValueError(f"drew {drawn} keys but too few are valid at index_bits={bits}; "
                             f"use fewer index bits")
        batch = draw(rng, missing + missing // 8 + 1)
        drawn += len(batch)
        reasons = _degenerate(batch, bits)
        found.append(batch[[r is None for r in reasons]][:missing])
    return np.concatenate(found) if found else np.zeros((0, RSS_KEY_LEN), dtype=np.uint8)


def random_keys(rng: np.random.Generator, n: int, *,
                index_bits: int = DEFAULT_INDEX_BITS) -> np.ndarray:
    """``(n, RSS_KEY_LEN)`` uint8: uniformly random keys, degenerate ones (see
    :func:`validate_key`) drawn again."""
    return _draw_valid(lambda g, m: g.integers(0, 256, (m, RSS_KEY_LEN), dtype=np.uint8),
                       rng, n, index_bits)


def symmetric_keys(rng: np.random.Generator, n: int, *,
                   index_bits: int = DEFAULT_INDEX_BITS) -> np.ndarray:
    """``(n, RSS_KEY_LEN)`` uint8: random 16-bit patterns repeated, valid (see
    :func:`validate_key`) and symmetric (see :func:`is_symmetric_key`).

    The price of symmetry: with period-16 rows the hash depends only on the XOR of all 16-bit
    words of the input, and its two 16-bit halves are equal, so it takes at most 65,536
    values (a reduced hash space). Flows whose inputs XOR-fold alike collide on
    every such key, e.g. both ports changed by the same XOR.
    """
    def draw(g, m):
        return np.tile(g.integers(0, 256, (m, 2), dtype=np.uint8), RSS_KEY_LEN // 2)
    return _draw_valid(draw, rng, n, index_bits)


# --- Multi-key hashing and loads ----------------------------------------------------------

def flow_hashes(keys, flows: FlowSet) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit Toeplitz hashes of every flow under every key.

    ``keys``: one key (bytes), a sequence of keys or a ``(K, 40)`` uint8 array. Returns
    ``(K, n4)`` and ``(K, n6)`` uint32 arrays equal to ``toeplitz(key, input)``.
    """
    keys = _key_array(keys)
    result = []
    for inputs in (flows.inputs4, flows.inputs6):
        out = np.zeros((len(keys), len(inputs)), dtype=np.uint32)
        if len(inputs) and len(keys):
            tables = _byte_tables(keys, inputs.shape[1], 32)
            for start, hashes in _hash_chunks(tables, inputs):
                out[:, start:start + len(hashes)] = hashes.T
        result.append(out)
    return result[0], result[1]


def _reta_size(size) -> int:
    size = _check_count(size, "RETA size", 1)
    if size & (size - 1):
        raise ValueError(f"RETA size must be a power of two, not {size}")
    return size


def _check_table(table, queues) -> np.ndarray:
    queues = _check_count(queues, "queues", 1)
    array = np.asarray(table)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"RETA must be a 1-D sequence of queue numbers, not {array.dtype} "
                         f"{array.shape}")
    _reta_size(len(array))
    bad = (array < 0) | (array >= queues)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"RETA entry {index} names queue {int(array[index])}, but there are "
                         f"only {queues} queues (0 to {queues - 1})")
    return array.astype(np.intp)


def _bucket_loads(keys: np.ndarray, flows: FlowSet, size: int, weight: str) -> np.ndarray:
    """``(K, size)`` float64 load per RETA entry under each key."""
    w4, w6, other = flows._weights(weight)
    bits = size.bit_length() - 1
    loads = np.zeros(len(keys) * size)
    offsets = np.arange(len(keys), dtype=np.intp) * size
    for inputs, weights in ((flows.inputs4, w4), (flows.inputs6, w6)):
        if not len(inputs) or not len(keys):
            continue
        if bits == 0:
            loads += weights.sum()
            continue
        tables = _byte_tables(keys, inputs.shape[1], bits)
        for start, index in _hash_chunks(tables, inputs):
            bins = (index + offsets).ravel()
            loads += np.bincount(bins, minlength=len(loads),
                                 weights=np.repeat(weights[start:start + len(index)], len(keys)))
    loads = loads.reshape(len(keys), size)
    loads[:, 0] += other
    return loads


def bucket_loads(key: bytes, flows: FlowSet, reta_size: int, weight: str = "packets"
                 ) -> np.ndarray:
    """``(reta_size,)`` float64: the load each RETA entry sees under ``key`` (what the NIC's
    ``BUCKET_PACKETS`` counters measure, with ``weight="packets"``)."""
    return _bucket_loads(_key_array(key)[:1], flows, _reta_size(reta_size), weight)[0]


def queue_loads(keys, flows: FlowSet, table, queues: int, weight: str = "packets"
                ) -> np.ndarray:
    """``(K, queues)`` float64: load per queue under each key, with flow ``h`` going to queue
    ``table[h & (len(table) - 1)]`` and unhashed traffic to ``table[0]``. The table length
    must be a power of two and its entries in ``range(queues)``."""
    table = _check_table(table, queues)
    buckets = _bucket_loads(_key_array(keys), flows, len(table), weight)
    bins = (np.arange(len(buckets), dtype=np.intp)[:, None] * queues + table).ravel()
    return np.bincount(bins, weights=buckets.ravel(),
                       minlength=len(buckets) * queues).reshape(len(buckets), queues)


def _max_mean(loads: np.ndarray) -> np.ndarray:
    """Max/mean along the last axis; 1.0 where the total is 0."""
    total = loads.sum(axis=-1)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, np.maximum(1.0, loads.max(axis=-1) * loads.shape[-1] / safe), 1.0)


def score_keys(keys, flows: FlowSet, table, queues: int, weight: str = "packets") -> np.ndarray:
    """``(K,)`` max/mean queue load per key (see :func:`queue_loads`); 1.0 for an empty
    window."""
    return _max_mean(queue_loads(keys, flows, table, queues, weight))
