# Ref: Jain, Chiu, Hawe, "A Quantitative Measure of Fairness ...", DEC-TR-301, 1984.
"""RSS balance measures and the flows they are measured on: :class:`Scores`, :func:`scores`,
:func:`lower_bound` and :class:`FlowSet` (part of :mod:`hetnic.host.rss_policy`, which
re-exports them).

Conventions
-----------
A RETA entry is a *bucket*. A flow of hash ``h`` goes to bucket ``h & (len(table) - 1)`` and
to queue ``table[bucket]``; traffic the NIC does not hash (hash 0) goes to bucket 0. Loads are
``float64`` packet or byte counts; sums of integer counts below 2**53 are exact. Every result
is finite (no NaN or inf), so it can go into JSON. Bad arguments raise a one-line
:class:`ValueError`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["Scores", "scores", "lower_bound", "FlowSet"]

_WEIGHTS = ("packets", "bytes")

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
        network byte order (:func:`hetnic.sim.model.toeplitz.hash_input_ipv4`).
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
