"""Synthetic workloads (:mod:`hetnic.sim.workloads`) and the next-window evaluation of RSS
policies (:mod:`hetnic.rss_eval`)."""

import json
import math

import numpy as np
import pytest

from frames import arp, icmp4, tcp4, tcp6, udp4
from hetnic.config import default_reta
from hetnic.sim.model.toeplitz import toeplitz, hash_input_ipv4
from hetnic.host.rss_policy import FlowSet, queue_loads, scores
from hetnic.protocol import MS_RSS_DEFAULT_KEY
from hetnic.rss_eval import POLICIES, evaluate, parse_window
from hetnic.sim.workloads import (FLOW_SIZE_CDFS, Trace, load_cdf, sample_flow_sizes,
                                  synthetic_trace, trace_from_frames)

PUBLISHED_MEANS = {"websearch": 1_711_250.0, "datamining": 7_470_236.0, "hadoop": 120_420.75}


def finite(obj):
    """Every number in a JSON-ready structure is finite (NaN and inf fail json)."""
    json.dumps(obj, allow_nan=False)
    return True


# --- workloads -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FLOW_SIZE_CDFS))
def test_cdf_tables_and_sample_means(name):
    sizes, percent = load_cdf(name)
    assert percent[0] == 0 and percent[-1] == 100
    assert np.all(np.diff(sizes) >= 0) and np.all(np.diff(percent) > 0)
    # The mean of the piecewise-linear CDF is the published one...
    mean = float(np.sum(np.diff(percent) / 100 * (sizes[1:] + sizes[:-1]) / 2))
    assert mean == pytest.approx(PUBLISHED_MEANS[name], rel=1e-6)
    # ...and inverse sampling reproduces the percentiles.
    drawn = sample_flow_sizes(name, 400_000, np.random.default_rng(5))
    assert drawn.min() >= sizes[0] and drawn.max() <= sizes[-1]
    for size, pct in zip(sizes[1:-1], percent[1:-1]):
        assert np.mean(drawn <= size) * 100 == pytest.approx(pct, abs=0.5)


def test_unknown_workload():
    with pytest.raises(ValueError, match="unknown workload 'web'"):
        load_cdf("web")


def test_synthetic_trace_model():
    trace = synthetic_trace("websearch", flows=300, seed=3, duration_s=0.5)
    again = synthetic_trace("websearch", flows=300, seed=3, duration_s=0.5)
    assert np.array_equal(trace.time, again.time) and trace.inputs == again.inputs
    assert trace.flows == 300 and trace.packet_scale == 1.0
    assert all(len(b) == 12 for b in trace.inputs) and len(set(trace.inputs)) == 300
    assert np.all(np.diff(trace.time) >= 0)
    assert trace.time[0] >= 0 and trace.time[-1] < 0.5
    assert np.all(trace.flow >= 0)
    counts = np.bincount(trace.flow, minlength=300)
    assert counts.min() >= 1
    # Every packet but the last of its flow is full size; the last is 64..1500 bytes.
    assert trace.size.min() >= 64 and trace.size.max() == 1500
    assert np.count_nonzero(trace.size != 1500) <= 300
    # Wire bytes = flow bytes + 40 header bytes a packet (the 64-byte floor adds a little).
    wire = int(trace.size.sum()) - 40 * len(trace)
    assert trace.meta["flow_bytes"] <= wire <= trace.meta["flow_bytes"] + 64 * 300


def test_synthetic_trace_lifetimes_proportional_to_size():
    trace = synthetic_trace("websearch", flows=200, seed=4, duration_s=1.0)
    counts = np.bincount(trace.flow)
    big = int(np.argmax(counts))
    times = np.sort(trace.time[trace.flow == big])
    # The biggest flow sends evenly (its times wrap modulo the duration: one gap may jump).
    gaps = np.diff(times)
    assert np.median(gaps) == pytest.approx(np.percentile(gaps, 10), rel=1e-6)
    span = counts[big] * np.median(gaps)
    assert span == pytest.approx(counts[big] * 1460 / 30e6, rel=0.02)   # 30 MB/s a flow


def test_synthetic_trace_ipv6_and_packet_budget():
    trace = synthetic_trace("datamining", flows=80, seed=1, ipv6_fraction=0.5,
                            max_packets=5000)
    lengths = {len(b) for b in trace.inputs}
    assert lengths == {12, 36}
    assert trace.packet_scale < 1 and len(trace) <= 5000 + 80


@pytest.mark.parametrize("kwargs, message", [
    ({"flows": 0}, "at least 1 flow"),
    ({"duration_s": 0.0}, "duration_s"),
    ({"ipv6_fraction": 2.0}, "ipv6_fraction"),
])
def test_synthetic_trace_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_trace("hadoop", **kwargs)


def test_trace_from_frames_groups_flows_and_hash_inputs():
    a = tcp4(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=80)
    b = udp4(src="10.0.0.3", dst="10.0.0.4", sport=53, dport=2000)
    c = tcp6(sport=5, dport=6)
    ping = icmp4(src="10.0.0.9", dst="10.0.0.8")
    frames = [a, b, a, arp(), c, ping, a, b"\x01\x02"]
    trace = trace_from_frames(frames, name="t")
    assert trace.flows == 4 and trace.time is None
    assert trace.flow.tolist() == [0, 1, 0, -1, 2, 3, 0, -1]
    assert trace.size.tolist() == [len(f) for f in frames]
    assert trace.inputs[0] == hash_input_ipv4("10.0.0.1", "10.0.0.2", 1000, 80)
    assert [len(x) for x in trace.inputs] == [12, 12, 36, 12]
    # ICMP hashes on addresses only: padded with zeros, which hash the same.
    assert trace.inputs[3] == hash_input_ipv4("10.0.0.9", "10.0.0.8") + bytes(4)
    assert toeplitz(MS_RSS_DEFAULT_KEY, trace.inputs[3]) == \
        toeplitz(MS_RSS_DEFAULT_KEY, hash_input_ipv4("10.0.0.9", "10.0.0.8"))


def test_windows():
    trace = Trace("t", flow=np.zeros(5, dtype=np.int32), size=np.full(5, 64, np.int32),
                  inputs=[bytes(12)], time=np.array([0.0, 0.05, 0.31, 0.32, 0.95]),
                  duration_s=1.0)
    assert trace.windows(packets=2) == [(0, 2, 0.0), (2, 4, 2.0), (4, 5, 4.0)]
    w = trace.windows(seconds=0.1)
    assert len(w) == 10 and [b - a for a, b, _ in w] == [2, 0, 0, 2, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="at least 1 packet"):
        trace.windows(packets=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        trace.windows(seconds=0.0)


# --- evaluation ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def websearch_report():
    trace = synthetic_trace("websearch", flows=1500, seed=7)
    return trace, evaluate(trace, queues=16, window_seconds=0.1, candidates=64, seed=7,
                           guard=False)


def test_evaluate_report_structure(websearch_report):
    _, report = websearch_report
    assert finite(report)
    assert set(report["policies"]) == set(POLICIES)
    assert report["windows"] == 10 and report["scored_windows"] == 9
    assert report["empty_windows"] == 0 and report["window"] == {"seconds": 0.1}
    keys = {"next_window_max_mean", "next_window_max_mean_bytes", "cov", "jain", "max_min",
            "vs_static", "worse_than_static_windows", "decisions", "key_switches",
            "buckets_moved_per_decision", "flows_migrated_per_decision", "decision_seconds"}
    for name, p in report["policies"].items():
        assert keys <= set(p), name
        assert len(report["series"][name]["max_mean"]) == 9
        assert all(len(s) == 16 and math.isclose(sum(s), 1, abs_tol=1e-4)
                   for s in report["series"][name]["queue_share"])
        assert 0 < p["jain"] <= 1
    static = report["policies"]["static"]
    assert static["vs_static"] == 0 and static["decisions"] == 0
    assert static["key_switches"] == 0 and static["flows_migrated_per_decision"] == 0
    assert report["policies"]["reta"]["key_switches"] == 0
    assert report["policies"]["reta"]["decisions"] == 9


def test_evaluate_invariants(websearch_report):
    _, report = websearch_report
    lb = report["series"]["lower_bound"]
    for name in POLICIES:
        p = report["policies"][name]
        assert p["next_window_max_mean"] >= report["lower_bound"] - 1e-9, name
        assert p["next_window_max_mean_bytes"] >= report["lower_bound_bytes"] - 1e-9, name
        assert all(m >= b - 1e-9 for m, b in zip(report["series"][name]["max_mean"], lb))
    pol = report["policies"]
    print({k: round(v["next_window_max_mean"], 3) for k, v in pol.items()},
          "lower bound", round(report["lower_bound"], 3))
    # Rebalancing from the last window's buckets helps on the next one, on average.
    assert pol["reta"]["next_window_max_mean"] < pol["static"]["next_window_max_mean"]
    assert pol["reta"]["vs_static"] < 0
    assert pol["reta"]["flows_migrated_per_decision"] > 0


def test_websearch_10k_flows():
    """The must-reach workload: 10,000 web-search flows on 16 queues. Next-window max/mean
    of RETA rebalancing's own decisions comes within 10% of the lower bound at the default
    10 ms windows (within 11% with the guard's warm-up on static);
    at 0.1 s it does not (about 1.20: a quarter of each window's packets come from flows the
    previous window did not see, so no table tuned on the past can place them)."""
    trace = synthetic_trace("websearch", flows=10_000, seed=0)
    report = evaluate(trace, queues=16, candidates=16)
    pol = report["policies"]
    print({k: round(v["next_window_max_mean"], 3) for k, v in pol.items()},
          "lower bound", round(report["lower_bound"], 3))
    assert report["window"] == {"seconds": 0.01}
    assert report["scored_windows"] == 99 and report["empty_windows"] == 0
    assert report["lower_bound"] == pytest.approx(1.0)
    assert 1.15 < pol["static"]["next_window_max_mean"] < 1.45
    assert pol["reta"]["own_next_window_max_mean"] <= 1.10 * report["lower_bound"]
    # The guard keeps static in force until RETA has won 5 windows in a row: that warm-up
    # costs about 0.01 here, and no window after it is worse than static.
    assert pol["reta"]["windows_in_force"] >= 90
    assert pol["reta"]["next_window_max_mean"] <= 1.11 * report["lower_bound"]
    assert pol["reta"]["worse_than_static_windows"] < 10
    assert pol["reta"]["tuned_window_max_mean"] < pol["reta"]["next_window_max_mean"]


def test_static_scores_match_queue_loads(websearch_report):
    """The evaluator's own per-flow steering agrees with rss_policy.queue_loads."""
    trace, report = websearch_report
    first, end, _ = trace.windows(seconds=0.1)[1]
    flow, size = trace.flow[first:end], trace.size[first:end]
    active = np.unique(flow)
    packets = np.bincount(flow, minlength=trace.flows)[active]
    bytes_ = np.bincount(flow, weights=size, minlength=trace.flows)[active].astype(np.int64)
    flows = FlowSet.from_inputs([trace.inputs[i] for i in active], packets, bytes_)
    keys = np.frombuffer(MS_RSS_DEFAULT_KEY, dtype=np.uint8)[None, :]
    loads = queue_loads(keys, flows, default_reta(16), 16)[0]
    assert scores(loads).max_mean == pytest.approx(
        report["series"]["static"]["max_mean"][0], rel=1e-9)


def one_flow_trace(packets=100, other=0):
    flow = np.array([0] * packets + [-1] * other, dtype=np.int32)
    time = np.linspace(0, 0.99, len(flow))
    return Trace("one", flow=flow, size=np.full(len(flow), 100, np.int32),
                 inputs=[hash_input_ipv4("10.0.0.1", "10.0.0.2", 1, 2)], time=time,
                 duration_s=1.0)


@pytest.mark.parametrize("queues", [1, 4, 16])
def test_one_flow_trace(queues):
    report = evaluate(one_flow_trace(), queues=queues, window_seconds=0.1, candidates=8)
    assert finite(report)
    assert report["lower_bound"] == pytest.approx(queues)
    for name, p in report["policies"].items():
        assert p["next_window_max_mean"] == pytest.approx(queues), name
        assert p["next_window_max_mean_bytes"] == pytest.approx(queues), name
        assert p["vs_static"] == 0 and p["worse_than_static_windows"] == 0
        if queues > 1:
            assert p["max_min"] is None        # idle queues: (max - min)/min undefined


def test_unhashed_traffic_is_one_lump_on_entry_0():
    report = evaluate(one_flow_trace(packets=0, other=50), queues=8, window_packets=10,
                      candidates=8)
    assert report["unhashed_packets"] == 50 and report["flows"] == 1
    assert report["lower_bound"] == pytest.approx(8)
    assert all(p["next_window_max_mean"] == pytest.approx(8)
               for p in report["policies"].values())


def test_empty_windows_are_skipped():
    trace = Trace("gaps", flow=np.array([0, 1, 0, 1, 0, 1], np.int32),
                  size=np.full(6, 64, np.int32),
                  inputs=[hash_input_ipv4("1.1.1.1", "2.2.2.2", 1, 2),
                          hash_input_ipv4("3.3.3.3", "4.4.4.4", 3, 4)],
                  time=np.array([0.01, 0.02, 0.51, 0.52, 0.91, 0.92]), duration_s=1.0)
    report = evaluate(trace, queues=2, window_seconds=0.1, candidates=8)
    assert finite(report)
    assert report["windows"] == 10 and report["empty_windows"] == 7
    assert report["scored_windows"] == 2
    assert report["policies"]["reta"]["decisions"] == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"queues": 0}, "queues must be an integer from 1 to 256"),
    ({"queues": 257}, "queues must be an integer from 1 to 256"),
    ({"reta_size": 100}, "power of two"),
    ({"queues": 16, "reta_size": 8}, "at least queues"),
    ({"window_packets": 0}, "at least 1 packet"),
    ({"window_seconds": 0.0}, "positive number of seconds"),
    ({"window_packets": 1000}, "at least 2 are needed"),
    ({"window_seconds": 2.0}, "at least 2 are needed"),
    ({"margin": float("nan")}, "margin"),
])
def test_evaluate_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(one_flow_trace(), **kwargs)


def test_packet_windows_without_timestamps():
    frames = [tcp4(sport=1000 + i % 5) for i in range(60)]
    report = evaluate(trace_from_frames(frames), queues=4, candidates=8)
    assert report["window"] == {"packets": 6} and report["scored_windows"] == 9
    with pytest.raises(ValueError, match="no timestamps"):
        evaluate(trace_from_frames(frames), window_seconds=0.1)


@pytest.mark.parametrize("text, expected", [
    ("0.1s", ("seconds", 0.1)), ("100ms", ("seconds", 0.1)), ("2s", ("seconds", 2.0)),
    ("10000", ("packets", 10000)), ("1", ("packets", 1)),
])
def test_parse_window(text, expected):
    kind, value = parse_window(text)
    assert kind == expected[0] and value == pytest.approx(expected[1])


@pytest.mark.parametrize("text", ["0", "0s", "0ms", "-1", "1.5", "abc", "", "1h"])
def test_parse_window_rejects(text):
    with pytest.raises(ValueError, match="--window"):
        parse_window(text)
