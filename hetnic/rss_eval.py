"""``hetnic rss-eval``: how well do RSS policies spread a trace over the RX queues, judged on
the traffic *after* each decision?

The trace is cut into consecutive windows. At the end of every window each policy decides
from that window alone, applies its decision, and is scored on the next window with packets
in it — never on the window it was tuned on (a key that is best on the traffic it was picked
from can be worse than the default on what follows).

Policies
--------
``static``
    The Microsoft default key and the default table (entry ``i`` -> queue ``i % queues``),
    never changed.
``adaptive_key``
    :class:`~hetnic.host.rss_policy.KeySelector`: scores random candidate keys on the
    window's flows under the current table and switches only when one beats the active key
    by the margin.
``reta``
    :class:`~hetnic.host.rss_policy.RetaBalancer` on the default key: moves table entries
    from the busiest queues, driven by the window's per-bucket packet counts under the
    current key (what the NIC's ``BUCKET_PACKETS`` counters show).
``adaptive_key+reta``
    The key decision first; a key switch resets the table to the default (the old table
    was tuned to the old key's buckets); then the balancer on the new key's bucket loads of
    the same window (known here because software has the window's flows; the in-NIC loop,
    :mod:`hetnic.host.rss_loop`, waits a window instead).

Each adaptive policy is guarded (:class:`~hetnic.host.rss_policy.GainGuard`; ``guard=False``
turns it off): it decides every window, but its decision is in force only while it has beaten
static by the margin on the windows after its past decisions (out of sample); otherwise
static's is. The report gives the policy's own decisions' scores beside (``own_...``).

Scores are per-queue loads of the next window, packet- and byte-weighted: max/mean,
coefficient of variation, Jain's index and (max - min)/min
(:func:`~hetnic.host.rss_policy.scores`). Traffic RSS does not hash (hash 0) goes to the
queue of table entry 0. The lower bound of a window is the best any steering of whole flows
could do (:func:`~hetnic.host.rss_policy.lower_bound`); that traffic counts as one flow.
Windows without packets are skipped: no decision is made on them, none is scored on them.
"""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np

from .config import default_reta
from .sim.model.toeplitz import toeplitz_batch
from .host.rss_policy import (GainGuard, KeySelector, RetaBalancer, FlowSet, bucket_loads,
                              lower_bound, scores)
from .protocol import MS_RSS_DEFAULT_KEY

__all__ = ["POLICIES", "MAX_QUEUES", "evaluate", "default_window", "parse_window",
           "format_table", "draw_figure", "dumps", "SWEEP_AXES", "parse_sweep",
           "evaluate_capture", "format_sweep", "draw_sweep_figure", "FlowHashes"]

POLICIES = ("static", "adaptive_key", "reta", "adaptive_key+reta")
MAX_QUEUES = 256
#: Default window of a trace without timestamps, in packets (shorter traces get ~10 windows).
PCAP_WINDOW_PACKETS = 10_000
#: Default window of a trace with timestamps, in seconds. RSS++ rebalances every ~100 ms, but
#: a decision can only be as good as the window it was made on predicts the next one: on the
#: synthetic web-search trace (10,000 flows in 1 s) about 28 % of a 0.1 s window's packets
#: come from flows the previous window never saw, and RETA rebalancing reaches max/mean 1.20
#: against a bound of 1.0; at 10 ms it reaches 1.095 (measured; see ``hetnic bench rss``).
TIME_WINDOW_SECONDS = 0.01


def parse_window(text: str) -> tuple[str, float | int]:
    """``"0.1s"`` or ``"100ms"`` -> ``("seconds", 0.1)``; ``"10000"`` -> ``("packets",
    10000)``. Raises ValueError with a message for anything else, zero or negative."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(ms|s)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"--window {text!r}: give seconds ('0.1s', '100ms') or a whole "
                         "number of packets ('10000')")
    number, unit = m.groups()
    if unit:
        seconds = float(number) / (1000 if unit.lower() == "ms" else 1)
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"--window {text!r}: a time window must be longer than 0")
        return "seconds", seconds
    if not number.isdigit():
        raise ValueError(f"--window {text!r}: a window in packets is a whole number; add 's' "
                         "or 'ms' for seconds")
    if int(number) < 1:
        raise ValueError(f"--window {text!r}: a window must hold at least 1 packet")
    return "packets", int(number)


def default_window(trace) -> tuple[str, float | int]:
    """10 ms for a trace with timestamps; else 10,000 packets, or a tenth of a trace shorter
    than 20 such windows."""
    if trace.time is not None:
        return "seconds", TIME_WINDOW_SECONDS
    if len(trace) >= 2 * PCAP_WINDOW_PACKETS:
        return "packets", PCAP_WINDOW_PACKETS
    return "packets", max(1, math.ceil(len(trace) / 10))


class FlowHashes:
    """Toeplitz hash of every input of ``inputs`` (hash input bytes; an empty one hashes to
    0), per key (cached): batched over the inputs of each length."""

    def __init__(self, inputs: list[bytes]):
        self.count = len(inputs)
        self.rows = {}
        for length in sorted({len(b) for b in inputs} - {0}):
            idx = np.array([i for i, b in enumerate(inputs) if len(b) == length],
                           dtype=np.int64)
            data = b"".join(inputs[i] for i in idx)
            self.rows[length] = (idx, np.frombuffer(data, dtype=np.uint8).reshape(-1, length))
        self._cache: dict[bytes, np.ndarray] = {}

    def __call__(self, key: bytes) -> np.ndarray:
        if key not in self._cache:
            out = np.zeros(self.count, dtype=np.uint32)
            for idx, rows in self.rows.values():
                if len(idx):
                    out[idx] = toeplitz_batch(key, rows)
            self._cache[key] = out
        return self._cache[key]


class _Window:
    """Per-flow packet and byte counts of one window."""

    def __init__(self, trace, first: int, end: int, start: float):
        flow, size = trace.flow[first:end], trace.size[first:end]
        hashed = flow >= 0
        f = flow[hashed]
        packets = np.bincount(f, minlength=trace.flows)
        self.active = np.flatnonzero(packets)
        self.packets = packets[self.active]
        self.bytes = np.rint(np.bincount(f, weights=size[hashed], minlength=trace.flows)
                             [self.active]).astype(np.int64)
        self.other_packets = int(len(flow) - len(f))
        self.other_bytes = int(size[~hashed].sum())
        self.total = len(flow)
        self.start = start
        self._trace = trace
        self._flowset = None

    def flowset(self) -> FlowSet:
        if self._flowset is None:
            inputs = [self._trace.inputs[i] for i in self.active]
            packets, bytes_ = self.packets, self.bytes
            if self.other_packets:
                inputs.append(b"")
                packets = np.append(packets, self.other_packets)
                bytes_ = np.append(bytes_, self.other_bytes)
            self._flowset = FlowSet.from_inputs(inputs, packets, bytes_)
        return self._flowset

    def loads(self, flow_queue: np.ndarray, table0: int, queues: int):
        q = flow_queue[self.active]
        lp = np.bincount(q, weights=self.packets, minlength=queues)
        lb = np.bincount(q, weights=self.bytes, minlength=queues)
        lp[table0] += self.other_packets
        lb[table0] += self.other_bytes
        return lp, lb

    def bounds(self, queues: int) -> tuple[float, float]:
        flows = self.flowset()             # unhashed traffic is one more (unsplittable) flow
        return (lower_bound(flows.flow_loads("packets"), queues),
                lower_bound(flows.flow_loads("bytes"), queues))


class _Policy:
    """One policy's configuration, decisions and per-window scores.

    An adaptive policy decides every window in the shadow (:attr:`key`, :attr:`table`); with
    a guard (:class:`~hetnic.host.rss_policy.GainGuard`) its decision is in force only while
    it has beaten static on the windows after its past decisions, else static's is."""

    def __init__(self, name: str, *, queues: int, reta_size: int, candidates: int,
                 margin: float, max_moves: int, seed: int, guard: bool):
        self.name, self.queues, self.reta_size = name, queues, reta_size
        self.key = MS_RSS_DEFAULT_KEY
        self.table = default_reta(queues, reta_size)
        self.static_table = self.table
        self.selector = (KeySelector(candidates=candidates, margin=margin, seed=seed)
                         if name.startswith("adaptive_key") else None)
        self.balancer = RetaBalancer(max_moves=max_moves) if "reta" in name else None
        self.adaptive = self.selector is not None or self.balancer is not None
        self.guard = GainGuard(margin=margin) if guard and self.adaptive else None
        self.scores_p, self.scores_b, self.shares, self.shadow_p = [], [], [], []
        self.decisions = self.key_switches = self.windows_in_force = 0
        self.buckets_moved, self.flows_migrated, self.seconds = [], [], []
        self.planned = []             # the balancer's max/mean on the window it tuned on

    def in_force(self) -> tuple[bytes, list[int]]:
        """The key and table steering traffic: the policy's own, or static's while its guard
        does not trust it."""
        if self.guard is None or self.guard.trusted:
            return self.key, self.table
        return MS_RSS_DEFAULT_KEY, self.static_table

    def flow_queues(self, hashes: FlowHashes, key=None, table=None) -> np.ndarray:
        """Queue of every flow under ``key`` and ``table`` (default: those in force)."""
        if key is None:
            key, table = self.in_force()
        return np.asarray(table)[hashes(key) & (self.reta_size - 1)]

    def decide(self, window: _Window) -> None:
        """Decide on ``window`` (the policy's own key and table)."""
        if not self.adaptive:
            return
        seconds, moved = 0.0, 0
        if self.selector is not None:
            decision = self.selector.decide(window.flowset(), self.table, self.queues)
            seconds += decision.seconds
            if decision.key is not None and decision.key != self.key:
                self.key = decision.key
                self.table = default_reta(self.queues, self.reta_size)
                self.key_switches += 1
        if self.balancer is not None:
            buckets = bucket_loads(self.key, window.flowset(), self.reta_size)
            balance = self.balancer.rebalance(buckets, self.table, self.queues)
            seconds += balance.seconds
            self.planned.append(balance.after)
            if balance.moves:
                self.table, moved = list(balance.table), len(balance.moves)
        self.decisions += 1
        self.buckets_moved.append(moved)
        self.seconds.append(seconds)

    def decide_on(self, window: _Window, hashes: FlowHashes) -> np.ndarray | None:
        """:meth:`decide` on ``window``; the flow -> queue map from before the decision if
        the key or table in force changed, else None."""
        old = self.in_force()
        old_queues = self.flow_queues(hashes)
        self.decide(window)
        key, table = self.in_force()
        return old_queues if (key, list(table)) != (old[0], list(old[1])) else None

    def score(self, window: _Window, hashes: FlowHashes, before: np.ndarray | None,
              static_max_mean: float | None = None) -> None:
        """Score the key and table in force on ``window`` (the one after the decision): its
        packet and byte scores and queue shares, and for an adaptive policy the flows of
        ``window`` that the decision moved to another queue (``before`` as from
        :meth:`decide_on`), the policy's own (shadow) score, and the guard's view of it
        against static's on this window (``static_max_mean``: the static policy's score,
        scored first)."""
        now = self.flow_queues(hashes)
        lp, lbytes = window.loads(now, self.in_force()[1][0], self.queues)
        self.scores_p.append(scores(lp))
        self.scores_b.append(scores(lbytes))
        self.shares.append((lp / lp.sum()).round(6).tolist())
        if not self.adaptive:
            return
        self.flows_migrated.append(0 if before is None else int(np.count_nonzero(
            before[window.active] != now[window.active])))
        in_force = self.guard is None or self.guard.trusted
        self.windows_in_force += in_force
        own = (self.scores_p[-1].max_mean if in_force else      # scored just above
               scores(window.loads(self.flow_queues(hashes, self.key, self.table),
                                   self.table[0], self.queues)[0]).max_mean)
        self.shadow_p.append(own)
        if self.guard is not None:
            self.guard.observe(own, static_max_mean)

    def summary(self, static: "_Policy") -> dict:
        mm = np.array([s.max_mean for s in self.scores_p])
        ref = np.array([s.max_mean for s in static.scores_p])
        avg = float(mm.mean())
        max_min = [s.max_min for s in self.scores_p if s.max_min is not None]
        ref_avg = float(ref.mean())
        return {
            "next_window_max_mean": avg,
            "next_window_max_mean_bytes": float(np.mean([s.max_mean for s in self.scores_b])),
            "worst_window_max_mean": float(mm.max()),
            "cov": float(np.mean([s.cov for s in self.scores_p])),
            "jain": float(np.mean([s.jain for s in self.scores_p])),
            "max_min": float(np.mean(max_min)) if max_min else None,
            "max_min_windows": len(max_min),
            "vs_static": (avg - ref_avg) / ref_avg,
            "worse_than_static_windows": int(np.sum(mm > ref + 1e-12)),
            "better_than_static_windows": int(np.sum(mm < ref - 1e-12)),
            "decisions": self.decisions,
            "key_switches": self.key_switches,
            "buckets_moved_per_decision": _mean(self.buckets_moved),
            "flows_migrated_per_decision": _mean(self.flows_migrated),
            "flows_migrated_max": max(self.flows_migrated, default=0),
            "decision_seconds": {"mean": _mean(self.seconds),
                                 "max": max(self.seconds, default=0.0)},
            "tuned_window_max_mean": _mean(self.planned) if self.balancer else None,
            **self._own_summary(ref),
            "series": {"max_mean": mm.tolist(),
                       "max_mean_bytes": [s.max_mean for s in self.scores_b],
                       "queue_share": self.shares},
        }


    def _own_summary(self, ref: np.ndarray) -> dict:
        """The policy's own decisions (as if always in force) against static's scores
        ``ref``, and the windows they were in force; empty for static."""
        if not self.adaptive:
            return {}
        own = np.array(self.shadow_p)
        return {"own_next_window_max_mean": float(own.mean()),
                "own_vs_static": float((own.mean() - ref.mean()) / ref.mean()),
                "own_worse_than_static_windows": int(np.sum(own > ref + 1e-12)),
                "windows_in_force": self.windows_in_force}


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        raise ValueError(f"{name} must be an integer from {low}{upper}, not {value!r}")
    return int(value)


def evaluate(trace, *, queues: int = 16, window_packets: int | None = None,
             window_seconds: float | None = None, reta_size: int = 512,
             candidates: int = 256, margin: float = 0.05, max_moves: int = 16,
             seed: int = 0, guard: bool = True) -> dict:
    """Replay ``trace`` window by window through the four :data:`POLICIES`.

    Parameters
    ----------
    trace : hetnic.sim.workloads.Trace
    queues : int
        RX queues, 1 to :data:`MAX_QUEUES`.
    window_packets, window_seconds
        The window, in packets or seconds (at most one; default :func:`default_window`).
    reta_size : int
        Entries of the indirection table, a power of two, at least ``queues``.
    candidates, margin, seed
        Of the key selector (:class:`~hetnic.host.rss_policy.KeySelector`).
    max_moves : int
        Of the balancer (:class:`~hetnic.host.rss_policy.RetaBalancer`).
    guard : bool
        Keep static's decision in force until an adaptive policy has beaten it, by
        ``margin``, on the windows after its own past decisions
        (:class:`~hetnic.host.rss_policy.GainGuard`); False: the policy's decisions are
        always in force.

    Returns
    -------
    dict
        The report, JSON-ready (every number finite). Top level: ``lower_bound`` and
        ``lower_bound_bytes`` (the per-window bound averaged over the scored windows), trace
        and window facts (``windows``, ``empty_windows``, ``scored_windows``, ``flows``,
        ``packets``, ``packet_scale`` ...), ``seconds`` (wall time), ``policies`` and
        ``series`` (per scored window, for the figure). Per policy, averaged over the scored
        windows (the windows after the decisions):

        * ``next_window_max_mean`` (packet-weighted), ``next_window_max_mean_bytes``,
          ``worst_window_max_mean``, ``cov``, ``jain`` (packet-weighted) and ``max_min``
          (over the ``max_min_windows`` windows where no queue is idle, else None);
        * ``vs_static``: relative change of ``next_window_max_mean`` against static
          (negative is better); ``worse_than_static_windows`` and
          ``better_than_static_windows``; ``gap_to_lower_bound``;
        * ``decisions``, ``key_switches``, ``buckets_moved_per_decision``,
          ``flows_migrated_per_decision`` and ``flows_migrated_max`` (flows of the next
          window whose queue the decision changed), ``decision_seconds`` (``mean``,
          ``max``), and for the balancing policies ``tuned_window_max_mean``: what the new
          table gives on the window it was tuned on (the balancer's own estimate);
        * for the adaptive policies, ``own_next_window_max_mean``, ``own_vs_static`` and
          ``own_worse_than_static_windows``: the policy's own decisions as if always in
          force (equal to the above without the guard), and ``windows_in_force``: scored
          windows its own decision was in force (not static's).

    Raises
    ------
    ValueError
        For bad parameters, or a trace with fewer than two windows holding packets.
    """
    t0 = time.perf_counter()
    queues, reta_size, candidates, max_moves = _checked_parameters(
        queues, reta_size, candidates, margin, max_moves)
    kind, size = _window_of(trace, window_packets, window_seconds)
    bounds = trace.windows(**{kind: size})
    nonempty = _windows_with_packets(trace, bounds, kind, size)
    policies = {name: _Policy(name, queues=queues, reta_size=reta_size,
                              candidates=candidates, margin=margin, max_moves=max_moves,
                              seed=seed, guard=bool(guard)) for name in POLICIES}
    series = _replay_windows(trace, nonempty, policies, queues)
    report = {
        "trace": trace.name,
        "lower_bound": float(np.mean(series["lower_bound"])),
        "lower_bound_bytes": float(np.mean(series["lower_bound_bytes"])),
        "queues": queues, "reta_size": reta_size,
        "window": {kind: size},
        "windows": len(bounds),
        "empty_windows": len(bounds) - len(nonempty),
        "scored_windows": len(nonempty) - 1,
        "flows": trace.flows,
        "packets": len(trace),
        "unhashed_packets": int(np.count_nonzero(trace.flow < 0)),
        "packet_scale": trace.packet_scale,
        "seed": seed,
        "candidates": candidates,
        "margin": margin,
        "max_moves": max_moves,
        "guard": bool(guard),
        "policies": {},
        "seconds": 0.0,
    }
    _add_policy_summaries(report, policies, series)
    report["seconds"] = time.perf_counter() - t0
    return report


def _checked_parameters(queues, reta_size, candidates, margin,
                        max_moves) -> tuple[int, int, int, int]:
    """``queues``, ``reta_size``, ``candidates`` and ``max_moves`` as ints, checked against
    the limits :func:`evaluate` documents (``margin`` only checked). Raises ValueError
    naming the first bad one."""
    queues = _check_int("queues", queues, 1, MAX_QUEUES)
    reta_size = _check_int("reta_size", reta_size, 1, 1 << 16)
    if reta_size & (reta_size - 1) or reta_size < queues:
        raise ValueError(f"reta_size must be a power of two of at least queues ({queues}), "
                         f"not {reta_size}")
    candidates = _check_int("candidates", candidates, 1)
    max_moves = _check_int("max_moves", max_moves, 0)
    if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
        raise ValueError(f"margin must be a number from 0 up to (not including) 1, not "
                         f"{margin!r}")
    return queues, reta_size, candidates, max_moves


def _window_of(trace, window_packets, window_seconds) -> tuple[str, float | int]:
    """The window as ``(kind, size)``: the one given, or :func:`default_window` if neither
    is. Raises ValueError if both are given."""
    if window_packets is not None and window_seconds is not None:
        raise ValueError("give a window in packets or in seconds, not both")
    if window_packets is None and window_seconds is None:
        return default_window(trace)
    return (("packets", window_packets) if window_packets is not None
            else ("seconds", window_seconds))


def _windows_with_packets(trace, bounds, kind: str, size) -> list:
    """The ``(first, end, start)`` bounds of the windows holding packets; ValueError if
    fewer than two (a policy is scored on the window after its decision)."""
    nonempty = [b for b in bounds if b[1] > b[0]]
    if len(nonempty) < 2:
        raise ValueError(f"{trace.name}: {len(trace)} packets make {len(nonempty)} window(s) "
                         f"with packets at a window of {size} {kind}; a policy is judged on "
                         "the window after its decision, so at least 2 are needed: use a "
                         "smaller window")
    return nonempty


def _replay_windows(trace, nonempty: list, policies: dict[str, "_Policy"],
                    queues: int) -> dict:
    """Every policy decides on each window with packets and is scored on the next one (its
    scores accumulate in the policy). Returns the per-scored-window series of the report:
    ``window_start`` (rounded to ns), ``lower_bound`` and ``lower_bound_bytes``."""
    hashes = FlowHashes(trace.inputs)
    lb_p, lb_b, starts = [], [], []
    window = _Window(trace, *nonempty[0])
    for w in range(len(nonempty) - 1):
        # per policy: flow -> queue before a decision that changed something, else None
        before = {p.name: p.decide_on(window, hashes) for p in policies.values()}
        window = _Window(trace, *nonempty[w + 1])
        starts.append(round(window.start, 9))
        bp, bb = window.bounds(queues)
        lb_p.append(bp)
        lb_b.append(bb)
        static = policies["static"]
        static.score(window, hashes, before["static"])
        for p in policies.values():
            if p is not static:
                p.score(window, hashes, before[p.name], static.scores_p[-1].max_mean)
    return {"window_start": starts, "lower_bound": lb_p, "lower_bound_bytes": lb_b}


def _add_policy_summaries(report: dict, policies: dict[str, "_Policy"], series: dict) -> None:
    """Fill ``report["policies"]`` with each policy's summary (and its
    ``gap_to_lower_bound``) and ``report["series"]`` with ``series`` plus each policy's."""
    static = policies["static"]
    for name, p in policies.items():
        summary = p.summary(static)
        summary["gap_to_lower_bound"] = summary["next_window_max_mean"] / report["lower_bound"] - 1
        series[name] = summary.pop("series")
        report["policies"][name] = summary
    report["series"] = series


def dumps(report: dict) -> str:
    """The report as indented JSON with every list of numbers on one line."""
    def enc(obj, depth):
        pad = "  " * (depth + 1)
        if isinstance(obj, dict):
            if not obj:
                return "{}"
            items = [f"{pad}{_json_scalar(k)}: {enc(v, depth + 1)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
        if isinstance(obj, (list, tuple)):
            if all(not isinstance(v, (dict, list, tuple)) for v in obj):
                return "[" + ", ".join(_json_scalar(v) for v in obj) + "]"
            return "[\n" + ",\n".join(pad + enc(v, depth + 1) for v in obj) + "\n" + \
                "  " * depth + "]"
        return _json_scalar(obj)
    return enc(report, 0)


def _json_scalar(value) -> str:
    return json.dumps(value, allow_nan=False)


def format_table(report: dict) -> str:
    """The report as a plain-text table, one row per policy."""
    header = ("policy", "max/mean pkts", "max/mean bytes", "vs static", "worse windows",
              "own vs static", "in force", "key switches", "buckets/decision",
              "flows migrated/decision", "decision ms")
    rows = []
    for name, p in report["policies"].items():
        own = ((f"{100 * p['own_vs_static']:+.1f}%", str(p["windows_in_force"]))
               if "own_vs_static" in p else ("", ""))
        rows.append((name, f"{p['next_window_max_mean']:.3f}",
                     f"{p['next_window_max_mean_bytes']:.3f}", f"{100 * p['vs_static']:+.1f}%",
                     str(p["worse_than_static_windows"]), *own, str(p["key_switches"]),
                     f"{p['buckets_moved_per_decision']:.1f}",
                     f"{p['flows_migrated_per_decision']:.1f}",
                     f"{1000 * p['decision_seconds']['mean']:.2f}"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]

    def line(values):
        return "  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                for i, (v, w) in enumerate(zip(values, widths)))
    (kind, size), = report["window"].items()
    window = f"{size:g} s" if kind == "seconds" else f"{size} packets"
    out = [f"{report['trace']}: {report['packets']} packets, {report['flows']} flows, "
           f"{report['queues']} queues, windows of {window}: {report['scored_windows']} "
           f"scored, {report['empty_windows']} empty",
           "Next-window imbalance (max/mean queue load; 1.0 is perfect), averaged over the "
           "windows after each decision; " + ("guarded: 'own' is the policy's decisions "
                                              "always in force, 'in force' the windows they "
                                              "were" if report.get("guard") else "no guard"),
           line(header), line(["-" * w for w in widths]), *(line(r) for r in rows),
           f"  lower bound (largest flow share per window): {report['lower_bound']:.3f} "
           f"packets, {report['lower_bound_bytes']:.3f} bytes"]
    return "\n".join(out)


def draw_figure(report: dict, path) -> None:
    """Write a PNG to ``path``: one panel per policy, each queue's packet load of every
    scored window relative to the mean (thin lines), the policy's max/mean (bold) and the
    window's lower bound (dashed). Drawn with the Agg canvas: no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = report["series"]
    x = np.asarray(series["window_start"], dtype=float)
    (kind, _), = report["window"].items()
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True, sharey=True).ravel()
    queues = report["queues"]
    for ax, name in zip(axes, POLICIES):
        s = series[name]
        rel = np.asarray(s["queue_share"], dtype=float) * queues
        ax.plot(x, rel, color="tab:blue", lw=0.6, alpha=0.35)
        ax.plot(x, s["max_mean"], color="tab:red", lw=2,
                label=f"max/mean (avg {report['policies'][name]['next_window_max_mean']:.3f})")
        ax.plot(x, series["lower_bound"], color="black", ls="--", lw=1.2,
                label=f"lower bound (avg {report['lower_bound']:.3f})")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    for ax in axes[2:]:
        ax.set_xlabel("window start (s)" if kind == "seconds" else "window start (packet)")
    for ax in axes[::2]:
        ax.set_ylabel("queue packet load / mean")
    fig.suptitle(f"hetnic rss-eval: {report['trace']}, {report['flows']} flows, "
                 f"{queues} queues; per-queue load of the window after each decision")
    fig.savefig(path, dpi=100)


#: The axes of ``hetnic rss-eval --sweep`` (``seed`` and ``queue`` are accepted too).
SWEEP_AXES = ("queues", "seeds")


def parse_sweep(items: list[str]) -> dict[str, list[int]]:
    """The axes of ``--sweep queues=4,8,16 seeds=1-10``: each a comma-separated list of
    integers and ``A-B`` ranges (inclusive). ValueError (one line) for an unknown axis, a
    repeated one, or a bad value."""
    axes: dict[str, list[int]] = {}
    for item in items:
        name, _, text = item.partition("=")
        name = {"seed": "seeds", "queue": "queues"}.get(name, name)
        if name not in SWEEP_AXES:
            raise ValueError(f"--sweep {item!r}: the axes are {' and '.join(SWEEP_AXES)} "
                             "(queues=4,8,16 seeds=1-10)")
        if name in axes:
            raise ValueError(f"--sweep: {name} given twice")
        values = []
        for part in text.split(","):
            low, dash, high = part.partition("-")
            if not (low.isdigit() and (not dash or high.isdigit())):
                raise ValueError(f"--sweep {item!r}: give integers and ranges A-B, "
                                 "comma-separated")
            first, last = int(low), int(high) if dash else int(low)
            if last < first or last - first > 10_000:
                raise ValueError(f"--sweep {item!r}: bad range {part}")
            values += [v for v in range(first, last + 1) if v not in values]
        axes[name] = values
    bad = [q for q in axes.get("queues", []) if not 1 <= q <= MAX_QUEUES]
    if bad:
        raise ValueError(f"--sweep queues: {bad[0]} is not from 1 to {MAX_QUEUES}")
    bad = [s for s in axes.get("seeds", []) if s >= 2 ** 32]
    if bad:
        raise ValueError(f"--sweep seeds: {bad[0]} is not below 2**32")
    return axes


def evaluate_capture(path, *, queues: int, seed: int, window_packets: int | None = None,
                     **options) -> dict:
    """One point of a sweep, as ``hetnic rss-eval CAPTURE --queues Q --seed S`` evaluates
    it: :func:`evaluate` on the capture at ``path`` (windows of ``window_packets``, default
    :func:`default_window`), the report without its per-window ``series``."""
    from pathlib import Path
    from .replay import ReplayError, read_capture
    from .sim.workloads import trace_from_frames
    trace = trace_from_frames(read_capture(path), name=str(path))
    if not len(trace):
        raise ReplayError(f"{path}: the capture holds no frames")
    if window_packets is None:
        _, window_packets = default_window(trace)
    report = evaluate(trace, queues=queues, seed=seed, window_packets=window_packets,
                      **options)
    report["trace"] = Path(path).name
    report.pop("series")
    return report


#: Columns of the sweep table (per point and policy; no wall-clock figures, so a sweep's
#: table is exactly the one of the single-run evaluations it is made of).
SWEEP_COLUMNS = ("capture", "queues", "seed", "packets", "flows", "window", "scored",
                 "lower bound", "policy", "max/mean", "max/mean bytes", "vs static",
                 "worse windows", "key switches", "flows migrated/decision")


def format_sweep(reports: list[dict]) -> str:
    """The reports of a sweep as one Markdown table: a row per capture, queue count, seed and
    policy."""
    lines = ["| " + " | ".join(SWEEP_COLUMNS) + " |",
             "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|"]
    for r in reports:
        for name, p in r["policies"].items():
            lines.append("| " + " | ".join([
                r["trace"], str(r["queues"]), str(r["seed"]), str(r["packets"]),
                str(r["flows"]), str(r["window"]["packets"]), str(r["scored_windows"]),
                f"{r['lower_bound']:.3f}", name, f"{p['next_window_max_mean']:.3f}",
                f"{p['next_window_max_mean_bytes']:.3f}", f"{100 * p['vs_static']:+.1f}%",
                str(p["worse_than_static_windows"]), str(p["key_switches"]),
                f"{p['flows_migrated_per_decision']:.1f}"]) + " |")
    return "\n".join(lines)


def draw_sweep_figure(reports: list[dict], path) -> None:
    """Write a PNG to ``path``: per capture, each policy's next-window max/mean against the
    queue count (the mean over the seeds, bars from the lowest to the highest seed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    captures = list(dict.fromkeys(r["trace"] for r in reports))
    fig = Figure(figsize=(6 * min(3, len(captures)), 4.5 * math.ceil(len(captures) / 3)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(math.ceil(len(captures) / 3), min(3, len(captures)),
                                      squeeze=False)).ravel()
    for ax, capture in zip(axes, captures):
        mine = [r for r in reports if r["trace"] == capture]
        queues = sorted({r["queues"] for r in mine})
        for name in POLICIES:
            values = [[r["policies"][name]["next_window_max_mean"] for r in mine
                       if r["queues"] == q] for q in queues]
            mean = np.array([np.mean(v) for v in values])
            low = mean - np.array([min(v) for v in values])
            high = np.array([max(v) for v in values]) - mean
            ax.errorbar(queues, mean, yerr=[low, high], marker="o", capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(queues, [str(q) for q in queues])
        ax.set_xlabel("queues")
        ax.set_ylabel("next-window max/mean")
        ax.set_title(capture)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(captures):]:
        ax.set_visible(False)
    seeds = sorted({r["seed"] for r in reports})
    fig.suptitle(f"hetnic rss-eval --sweep: {len(reports)} evaluations, seeds "
                 f"{seeds[0]}-{seeds[-1]}")
    fig.savefig(path, dpi=100)
