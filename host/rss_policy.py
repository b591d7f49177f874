# Ref: Microsoft "RSS Hashing Functions" and "RSS Indirection Table" (Toeplitz hash, RETA);
#      Barbette et al., "RSS++: load and state-aware receive side scaling", CoNEXT 2019;
#      Jain, Chiu, Hawe, "A Quantitative Measure of Fairness ...", DEC-TR-301, 1984.
"""RSS policies: imbalance scores, adaptive key selection and RETA rebalancing.

Two ways to spread received packets more evenly over the queues:

* :class:`KeySelector` — every interval, score ``candidates`` random (optionally symmetric)
  keys on the flows of the recent window, packet-weighted, and switch to the best one only
  if it beats the active key by ``margin``. Caveat (see REFERENCE.md, "Balance"): a key
  picked on one window often does no better on the next one, and packet imbalance comes
  mostly from large flows that no key can split (:func:`lower_bound`).
* :class:`RetaBalancer` — RSS++-style: from per-RETA-entry packet counters (the NIC's
  ``BUCKET_PACKETS``), move a bounded number of entries from the most to the least loaded
  queues, separately in each stack instance's RETA slice.

Conventions
-----------
A RETA entry is a *bucket*. A flow of hash ``h`` goes to bucket ``h & (len(table) - 1)`` and
to queue ``table[bucket]``; traffic the NIC does not hash (hash 0) goes to bucket 0. Loads are
``float64`` packet or byte counts; sums of integer counts below 2**53 are exact. Every result
is finite (no NaN or inf), so it can go into JSON. Bad arguments raise a one-line
:class:`ValueError`.

Multi-key hashing
-----------------
The Toeplitz hash is linear over GF(2): an input hashes to the XOR of one table entry per
input byte. :func:`flow_hashes` and the scorers build, for all keys at once, the
``(input bytes, 256, keys)`` byte tables (12 KiB per key for IPv4) and then gather whole
per-byte rows, one row of ``keys`` hashes per flow and byte. Scoring keeps only the RETA index
bits (``uint16`` for a 512-entry table) and counts loads per key and bucket with ``bincount``.
The results agree bit for bit with :func:`hetnic.host.rss.toeplitz`.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import numpy as np

from ..protocol import MS_RSS_DEFAULT_KEY, RSS_KEY_LEN
from ..regs import DEFAULT_PARAMS

__all__ = [
    "DEFAULT_INDEX_BITS", "Scores", "scores", "lower_bound", "FlowSet", "validate_key",
    "is_symmetric_key", "random_keys", "symmetric_keys", "flow_hashes", "queue_loads",
    "bucket_loads", "score_keys", "KeyDecision", "KeySelector", "Move", "BalanceDecision",
    "RetaBalancer",
]

#: RETA index bits that :func:`validate_key` checks by default: those of the default build's
#: RETA (512 entries, 9 bits).
DEFAULT_INDEX_BITS = DEFAULT_PARAMS["reta_size"].bit_length() - 1

_WEIGHTS = ("packets", "bytes")
_MAX_INDEX_BITS = 16            # a port is 16 bits: no single field can reach more entries

# Fields of the 4-tuple hash inputs as (name, first input bit, bits). An IPv4 input is the
# first 96 bits of the same windows as an IPv6 one, so one set of windows serves both.
_FIELDS = (("IPv4 source address", 0, 32), ("IPv4 destination address", 32, 32),
           ("IPv4 source port", 64, 16), ("IPv4 destination port", 80, 16),
           ("IPv6 source address", 0, 128), ("IPv6 destination address", 128, 128),
           ("IPv6 source port", 256, 16), ("IPv6 destination port", 272, 16))
# Input bit ranges that a symmetric hash must treat alike: (first, second, bits).
_SWAPS = ((0, 32, 32), (64, 80, 16), (0, 128, 128), (256, 272, 16))


# --- Scores -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scores:
    """Imbalance of one set of per-queue loads.

    Members
    -------
    max_mean : float
        Max over mean queue load; 1.0 is perfect, ``n`` is everything on one of ``n``
        queues. 1.0 for an empty window.
    cov : float
        Coefficient of variation: population standard deviation over mean. 0.0 if empty.
    jain : float
        Jain's fairness index ``sum**2 / (n * sum of squares)``, from ``1/n`` to 1.0 (fair).
        1.0 if empty.
    max_min : float or None
        RSS++'s ``(max - min) / min``; None when the least loaded queue has no load (the
        ratio is undefined) or the ratio exceeds the float range, 0.0 if empty.
    total : float
        Sum of the loads.
    empty : bool
        True when ``total`` is 0.
    """
    max_mean: float
    cov: float
    jain: float
    max_min: float | None
    total: float
    empty: bool


def _load_array(loads, what: str, *, allow_empty: bool = False) -> np.ndarray:
    try:
        array = np.asarray(loads)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be a 1-D array of numbers: {error}") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{what} must hold numbers, not {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, not of shape {array.shape}")
    if not allow_empty and array.size == 0:
        raise ValueError(f"{what} must hold at least one value")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"{what} must be finite and non-negative, not {array[index]!r} "
                         f"at index {index}")
    with np.errstate(over="ignore"):
        total = array.sum()
    if not np.isfinite(total):
        raise ValueError(f"{what} sum to more than a float can hold; scale them down")
    return array


def scores(loads) -> Scores:
    """All imbalance scores of per-queue ``loads`` (1-D, at least one queue, each finite and
    non-negative; else :class:`ValueError`)."""
    array = _load_array(loads, "queue loads")
    total = float(array.sum())
    if total == 0:
        return Scores(max_mean=1.0, cov=0.0, jain=1.0, max_min=0.0, total=0.0, empty=True)
    high, low = float(array.max()), float(array.min())
    # Scale by a power of two (exact) into [0.5, 1): squares neither overflow nor vanish.
    scaled = np.ldexp(array, -math.frexp(high)[1])
    mean = float(scaled.sum()) / len(array)
    cov = float(np.sqrt(np.mean((scaled - mean) ** 2))) / mean
    jain = float(scaled.sum()) ** 2 / (len(array) * float(np.sum(scaled * scaled)))
    return Scores(max_mean=max(1.0, float(scaled.max()) / mean), cov=cov, jain=min(1.0, jain),
                  max_min=_ratio(high - low, low), total=total, empty=False)


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None if that is undefined or beyond a float."""
    if denominator == 0:
        return None
    ratio = float(numerator) / float(denominator)
    return ratio if math.isfinite(ratio) else None


def _check_count(value, what: str, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def lower_bound(flow_loads, queues: int) -> float:
    """The best max/mean any queue assignment can reach without splitting flows:
    ``max(1, largest flow load / mean queue load)``; 1.0 when there is no load.

    The queue that holds the largest flow carries at least that flow. The bound is not always
    tight (three equal flows on two queues give 4/3, the bound is 1).
    """
    queues = _check_count(queues, "queues", 1)
    array = _load_array(flow_loads, "flow loads", allow_empty=True)
    if array.size == 0 or array.max() == 0:
        return 1.0
    return max(1.0, queues / float((array / array.max()).sum()))


# --- Flows --------------------------------------------------------------------------------

def _rows(value, width: int, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros((0, width), dtype=np.uint8)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{what} must be a uint8 array of shape (n, {width}), not "
                         f"{array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def _counts(value, length: int, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size == 0:
        array = np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu" or array.shape != (length,):
        raise ValueError(f"{what} must be {length} integers, not {array.dtype} {array.shape}")
    if (array < 0).any():
        raise ValueError(f"{what} must not be negative, not {int(array.min())}")
    return array.astype(np.int64)


@dataclass
class FlowSet:
    """The flows of one window as RSS hash inputs with their packet and byte counts.

    Members
    -------
    inputs4 : numpy.ndarray
        ``(n4, 12)`` ``uint8``: IPv4 source, destination, source port, destination port,
        network byte order (:func:`hetnic.host.rss.hash_input_ipv4`).
    packets4, bytes4 : numpy.ndarray
        ``(n4,)`` ``int64`` counts per flow.
    inputs6, packets6, bytes6 : numpy.ndarray
        The same for IPv6 (36-byte inputs).
    other_packets, other_bytes : int
        Traffic the NIC does not hash: hash 0, RETA entry 0.
    """
    inputs4: np.ndarray
    packets4: np.ndarray
    bytes4: np.ndarray
    inputs6: np.ndarray
    packets6: np.ndarray
    bytes6: np.ndarray
    other_packets: int = 0
    other_bytes: int = 0

    def __post_init__(self):
        self.inputs4 = _rows(self.inputs4, 12, "inputs4")
        self.inputs6 = _rows(self.inputs6, 36, "inputs6")
        n4, n6 = len(self.inputs4), len(self.inputs6)
        self.packets4 = _counts(self.packets4, n4, "packets4")
        self.bytes4 = _counts(self.bytes4, n4, "bytes4")
        self.packets6 = _counts(self.packets6, n6, "packets6")
        self.bytes6 = _counts(self.bytes6, n6, "bytes6")
        self.other_packets = _check_count(self.other_packets, "other_packets", 0)
        self.other_bytes = _check_count(self.other_bytes, "other_bytes", 0)

    @classmethod
    def from_inputs(cls, inputs: list[bytes], packets, bytes_) -> FlowSet:
        """Flows from one hash input each (12 bytes for IPv4, 36 for IPv6; an empty input is
        traffic the NIC does not hash and adds to ``other_*``) and their counts.

        The address-only inputs (8 and 32 bytes) are accepted too: they hash like the same
        addresses with both ports 0, and are stored that way.
        """
        inputs = list(inputs)
        packets, bytes_ = np.asarray(packets), np.asarray(bytes_)
        if packets.shape != (len(inputs),) or bytes_.shape != (len(inputs),):
            raise ValueError(f"need one packet and one byte count per input: {len(inputs)} "
                             f"inputs, packets {packets.shape}, bytes {bytes_.shape}")
        rows = {12: [], 36: []}
        index = {12: [], 36: []}
        other = []
        for i, data in enumerate(inputs):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ValueError(f"input {i} must be bytes, not {type(data).__name__}")
            data = bytes(data)
            width = {0: 0, 8: 12, 12: 12, 32: 36, 36: 36}.get(len(data))
            if width is None:
                raise ValueError(f"input {i} has {len(data)} bytes; an RSS input has 12 "
                                 f"(IPv4), 36 (IPv6), 8 or 32 (no ports) or 0 (not hashed)")
            if width == 0:
                other.append(i)
            else:
                rows[width].append(data.ljust(width, b"\0"))
                index[width].append(i)

        def table(width):
            return np.frombuffer(b"".join(rows[width]), dtype=np.uint8).reshape(-1, width)

        packets, bytes_ = _counts(packets, len(inputs), "packets"), _counts(
            bytes_, len(inputs), "bytes_")
        return cls(table(12), packets[index[12]], bytes_[index[12]],
                   table(36), packets[index[36]], bytes_[index[36]],
                   int(packets[other].sum()), int(bytes_[other].sum()))

    def __len__(self) -> int:
        """Flows: IPv4, IPv6, and one more if there is unhashed traffic."""
        return (len(self.inputs4) + len(self.inputs6)
                + int(self.other_packets > 0 or self.other_bytes > 0))

    def _weights(self, weight: str) -> tuple[np.ndarray, np.ndarray, float]:
        if weight not in _WEIGHTS:
            raise ValueError(f"weight must be 'packets' or 'bytes', not {weight!r}")
        if weight == "packets":
            return (self.packets4.astype(np.float64), self.packets6.astype(np.float64),
                    float(self.other_packets))
        return (self.bytes4.astype(np.float64), self.bytes6.astype(np.float64),
                float(self.other_bytes))

    def flow_loads(self, weight: str = "packets") -> np.ndarray:
        """Per-flow loads (``float64``): the IPv4 flows, then IPv6, then the unhashed traffic
        if there is any (the order :meth:`__len__` counts)."""
        w4, w6, other = self._weights(weight)
        tail = [other] if self.other_packets > 0 or self.other_bytes > 0 else []
        return np.concatenate((w4, w6, np.asarray(tail, dtype=np.float64)))

    def subset(self, mask4, mask6, *, other: bool = False) -> FlowSet:
        """The flows selected by boolean masks (or index arrays) over the IPv4 and the IPv6
        flows. The unhashed traffic is kept only with ``other=True``."""
        return FlowSet(self.inputs4[mask4], self.packets4[mask4], self.bytes4[mask4],
                       self.inputs6[mask6], self.packets6[mask6], self.bytes6[mask6],
                       self.other_packets if other else 0, self.other_bytes if other else 0)


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
    values (REFERENCE.md: reduced hash space). Flows whose inputs XOR-fold alike collide on
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


# --- Key selection ------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyDecision:
    """One :meth:`KeySelector.decide`.

    Members
    -------
    key : bytes or None
        The key to switch to, or None: keep the active key.
    active_score, best_score : float
        Max/mean of the active key and of the best candidate on the window.
    seconds : float
        Time the decision took (drawing, validating and scoring keys).
    candidates : int
        Candidate keys scored (0 for an empty window).
    """
    key: bytes | None
    active_score: float
    best_score: float
    seconds: float
    candidates: int


class KeySelector:
    """Adaptive RSS key selection: best of random candidates, with hysteresis.

    Call :meth:`decide` once per interval with the flows of the window just past; it scores
    the active key and ``candidates`` new valid keys by packet-weighted (``weight``) max/mean
    queue load and switches only if the best candidate scores below
    ``active_score * (1 - margin)``. Judge the result on the *next* window: a key fitted to one
    window often does no better on the next.

    Parameters
    ----------
    candidates : int
        Keys drawn per decision, >= 1.
    margin : float
        Relative gain needed to switch, in ``[0, 1)``.
    symmetric : bool
        Draw :func:`symmetric_keys` instead of :func:`random_keys`. Give a symmetric active
        ``key`` too (e.g. :func:`hetnic.host.rss.symmetric_key`) to stay symmetric from the
        start.
    seed : int
        Seeds the candidate generator.
    key : bytes
        The active key at the start.
    weight : str
        ``"packets"`` or ``"bytes"``.
    interval : float
        Seconds between decisions, for :meth:`due`.

    Members
    -------
    key : bytes
        The active key.
    """
    def __init__(self, *, candidates: int = 256, margin: float = 0.05, symmetric: bool = False,
                 seed: int = 0, key: bytes = MS_RSS_DEFAULT_KEY, weight: str = "packets",
                 interval: float = 0.1):
        self.candidates = _check_count(candidates, "candidates", 1)
        if not isinstance(margin, numbers.Real) or not 0 <= margin < 1:
            raise ValueError(f"margin must be a number in [0, 1), not {margin!r}")
        if not isinstance(interval, numbers.Real) or not 0 < interval < math.inf:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if weight not in _WEIGHTS:
            raise ValueError(f"weight must be 'packets' or 'bytes', not {weight!r}")
        self.key = bytes(_key_array(key)[0])
        self.margin = float(margin)
        self.symmetric = bool(symmetric)
        self.weight = weight
        self.interval = float(interval)
        self._rng = np.random.default_rng(seed)
        self._last = None

    def due(self, now: float) -> bool:
        """True (and the interval restarts) if ``interval`` seconds have passed since the
        last time this returned True; the first call returns True."""
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True

    def decide(self, flows: FlowSet, table, queues: int) -> KeyDecision:
        """Score candidates on ``flows`` with RETA ``table`` over ``queues`` queues; switch
        (and set :attr:`key`) if the best beats the active key by the margin. An empty window
        keeps the key."""
        start = time.perf_counter()
        table = _check_table(table, queues)
        w4, w6, other = flows._weights(self.weight)
        if w4.sum() + w6.sum() + other == 0:
            return KeyDecision(None, 1.0, 1.0, time.perf_counter() - start, 0)
        bits = min(len(table).bit_length() - 1, _MAX_INDEX_BITS)
        draw = symmetric_keys if self.symmetric else random_keys
        candidates = draw(self._rng, self.candidates, index_bits=bits)
        keys = np.concatenate((_key_array(self.key), candidates))
        result = score_keys(keys, flows, table, queues, self.weight)
        best = int(np.argmin(result[1:])) + 1
        active_score, best_score = float(result[0]), float(result[best])
        switch = best_score < active_score * (1 - self.margin)
        if switch:
            self.key = keys[best].tobytes()
        return KeyDecision(self.key if switch else None, active_score, best_score,
                           time.perf_counter() - start, len(candidates))


# --- RETA rebalancing ---------------------------------------------------------------------

@dataclass(frozen=True)
class Move:
    """RETA entry ``bucket`` moved from queue ``src`` to ``dst``, carrying ``load``."""
    bucket: int
    src: int
    dst: int
    load: float


@dataclass(frozen=True)
class BalanceDecision:
    """One :meth:`RetaBalancer.rebalance`.

    Members
    -------
    table : list of int
        The new RETA (a copy; equal to the old one without moves).
    moves : list of Move
        In the order made.
    before, after : float
        Max/mean over the queues the balanced entries name, before and after; ``after <=
        before`` always.
    seconds : float
        Time the decision took.
    """
    table: list[int]
    moves: list[Move]
    before: float
    after: float
    seconds: float


class RetaBalancer:
    """RSS++-style RETA rebalancing from measured per-entry loads.

    Each slice (one stack instance's RETA entries) is balanced over the queues its entries
    name, greedily: take the most loaded of those queues (queue loads count every entry of
    the table) and move to the least loaded one the entry of the first that brings the two
    closest to equal, among entries with load whose move leaves the destination below the
    source's old load. So the maximum never rises and each move lowers the sum of squared
    queue loads. Stop when no entry qualifies or after ``max_moves`` moves in the slice;
    entries without load never move. Queue loads are exact sums (:func:`math.fsum`), so the
    guarantee holds for any float loads.

    Parameters
    ----------
    max_moves : int
        Moves per slice per call, >= 0: bounds how many flows migrate per interval.
    slices : list of (offset, size), optional
        RETA entry ranges, one per stack instance, balanced separately; entry
        ``(offset + i) % len(table)`` for ``i < size``, as the NIC indexes a slice. They must
        not overlap. None: the whole table.
    """
    def __init__(self, *, max_moves: int = 16, slices: list[tuple[int, int]] | None = None):
        self.max_moves = _check_count(max_moves, "max_moves", 0)
        if slices is not None:
            checked = []
            for item in slices:
                try:
                    offset, size = item
                except (TypeError, ValueError):
                    raise ValueError(f"a slice is (offset, size), not {item!r}") from None
                checked.append((_check_count(offset, "slice offset", 0),
                                _check_count(size, "slice size", 1)))
            slices = checked
        self.slices = slices

    def _entries(self, size: int) -> list[np.ndarray]:
        if self.slices is None:
            return [np.arange(size)]
        owner = np.full(size, -1)
        result = []
        for number, (offset, length) in enumerate(self.slices):
            if offset >= size or length > size:
                raise ValueError(f"slice {number} ({offset}, {length}) does not fit a "
                                 f"{size}-entry RETA")
            entries = (offset + np.arange(length)) % size
            if (owner[entries] >= 0).any():
                other = int(owner[entries][owner[entries] >= 0][0])
                raise ValueError(f"slices {other} and {number} overlap")
            owner[entries] = number
            result.append(entries)
        return result

    def rebalance(self, bucket_loads, table, queues: int) -> BalanceDecision:
        """Balance ``table`` (RETA entry -> queue, entries in ``range(queues)``) given
        ``bucket_loads`` (one non-negative load per entry)."""
        start = time.perf_counter()
        table = _check_table(table, queues)
        loads = _load_array(bucket_loads, "bucket loads")
        if len(loads) != len(table):
            raise ValueError(f"need one bucket load per RETA entry: {len(loads)} loads, "
                             f"{len(table)} entries")
        slices = self._entries(len(table))
        concerned = np.unique(table[np.concatenate(slices)])

        def queue_load(q):
            return math.fsum(loads[table == q].tolist())

        def max_mean():
            total = math.fsum(loads[np.isin(table, concerned)].tolist())
            if total == 0:
                return 1.0
            return max(1.0, max(queue_load(q) for q in concerned) * len(concerned) / total)

        before = max_mean()
        table = table.copy()
        qload = {int(q): queue_load(q) for q in concerned}
        moves = []
        for entries in slices:
            names = sorted({int(q) for q in table[entries]})
            for _ in range(self.max_moves):
                src = max(names, key=lambda q: (qload[q], -q))
                dst = min(names, key=lambda q: (qload[q], q))
                move = self._best_move(entries, table, loads, qload, src, dst)
                if move is None:
                    break
                table[move.bucket] = dst
                qload[src], qload[dst] = queue_load(src), queue_load(dst)
                moves.append(move)
        return BalanceDecision([int(q) for q in table], moves, before, max_mean(),
                               time.perf_counter() - start)

    @staticmethod
    def _best_move(entries, table, loads, qload, src, dst) -> Move | None:
        high, low = qload[src], qload[dst]
        mine = entries[(table[entries] == src) & (loads[entries] > 0)
                       & (low + loads[entries] < high)]
        # Closest to halving the gap first; ties by entry number.
        order = sorted(mine.tolist(), key=lambda e: (abs(high - low - 2 * loads[e]), e))
        for bucket in order:
            # Exact check: the destination must end strictly below the source's old load.
            if math.fsum(loads[table == dst].tolist() + [loads[bucket]]) < high:
                return Move(int(bucket), src, dst, float(loads[bucket]))
        return None
