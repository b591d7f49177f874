# Ref: Microsoft "RSS Hashing Functions" and "RSS Indirection Table" (Toeplitz hash, RETA);
#      Barbette et al., "RSS++: load and state-aware receive side scaling", CoNEXT 2019;
#      Jain, Chiu, Hawe, "A Quantitative Measure of Fairness ...", DEC-TR-301, 1984.
"""RSS policies: imbalance scores, adaptive key selection and RETA rebalancing.

Two ways to spread received packets more evenly over the queues:

* :class:`KeySelector` — every interval, score ``candidates`` random (optionally symmetric)
  keys on the flows of the recent window, packet-weighted, and switch to the best one only
  if it beats the active key by ``margin``. Caveat: a key
  picked on one window often does no better on the next one, and packet imbalance comes
  mostly from large flows that no key can split (:func:`lower_bound`).
* :class:`RetaBalancer` — RSS++-style: from per-RETA-entry packet counters (the NIC's
  ``BUCKET_PACKETS``), move a bounded number of entries from the most to the least loaded
  queues, separately in each stack instance's RETA slice.

Either can do worse than the default on the traffic that follows its decision (few flows,
one elephant, windows too short to predict the next). :class:`GainGuard` keeps the static
decision in force until the policy has shown a gain on windows it was not tuned on.

The scores and flows are in :mod:`hetnic.host.rss_flows` and the keys and multi-key hashing
in :mod:`hetnic.host.rss_keys`; this module re-exports them. Conventions (buckets, loads,
finite results, one-line errors) are in :mod:`hetnic.host.rss_flows`.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import numpy as np

from ..protocol import MS_RSS_DEFAULT_KEY
from .rss_flows import (_WEIGHTS, FlowSet, Scores, _check_count, _load_array, lower_bound,
                        scores)
from .rss_keys import (_MAX_INDEX_BITS, DEFAULT_INDEX_BITS, _check_table, _key_array,
                       bucket_loads, flow_hashes, is_symmetric_key, queue_loads, random_keys,
                       score_keys, symmetric_keys, validate_key)

__all__ = [
    "DEFAULT_INDEX_BITS", "Scores", "scores", "lower_bound", "FlowSet", "validate_key",
    "is_symmetric_key", "random_keys", "symmetric_keys", "flow_hashes", "queue_loads",
    "bucket_loads", "score_keys", "KeyDecision", "KeySelector", "Move", "BalanceDecision",
    "RetaBalancer", "GainGuard",
]


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
        ``key`` too (e.g. :func:`hetnic.host.rss_keys.symmetric_key`) to stay symmetric from the
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


# --- Keeping the static decision until a policy shows a gain ----------------------------------

class GainGuard:
    """Keeps the static decision (default key and table) in force until an adaptive policy
    has shown, out of sample, that it does better.

    The policy runs in the shadow: it decides every window as usual, and after each window
    :meth:`observe` gets its score on that window (of its decision made on the window
    *before*, so never the window it was tuned on) beside the static decision's score on the
    same window. The policy's decision is put in force (:attr:`trusted`) only while it beat
    static on each of the last ``streak`` observed windows and its mean score over every
    observed window is below static's by ``margin``; one lost window puts static back in
    force until the policy has won ``streak`` in a row again. Scores are "lower is better"
    (max/mean).

    On short real captures a window predicts the next one poorly (a key or table fitted to
    one window's few heavy flows is as likely to do worse as better on the next), and a
    single wrong switch costs as much as several right ones gain; hence a streak, not a
    majority.

    Parameters
    ----------
    margin : float
        Relative gain over static the policy must show on average, in ``[0, 1)``.
    streak : int
        Consecutive windows, the most recent ones, the policy must have beaten static on,
        >= 1.

    Members
    -------
    trusted : bool
        The policy's decision is in force (else static's).
    """
    def __init__(self, *, margin: float = 0.05, streak: int = 5):
        if not isinstance(margin, numbers.Real) or not 0 <= margin < 1:
            raise ValueError(f"margin must be a number in [0, 1), not {margin!r}")
        self.streak = _check_count(streak, "streak", 1)
        self.margin = float(margin)
        self._policy_sum = self._static_sum = 0.0
        self._wins = 0
        self.trusted = False

    def observe(self, policy_score: float, static_score: float) -> bool:
        """Record one window's scores (each of a decision made before the window); returns
        :attr:`trusted` as it now stands, for the next decision."""
        for name, value in (("policy_score", policy_score), ("static_score", static_score)):
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        self._policy_sum += policy_score
        self._static_sum += static_score
        self._wins = self._wins + 1 if policy_score < static_score else 0
        self.trusted = (self._wins >= self.streak
                        and self._policy_sum < self._static_sum * (1 - self.margin))
        return self.trusted
