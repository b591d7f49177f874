"""``hetnic bench host``: the dispatch benchmark scaled down (both configurations, the three
kernel-side loads at once, byte-exact), the shape of its result, the part selection and the
CLI's argument checks. No speed is asserted: the benchmark measures speeds, tests do not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hetnic.bench_dispatch import bench_dispatch, homogeneous_instance
from hetnic.bench_host import bench_host
from hetnic.host.stack.instance import PROFILES
from kit.netns import require_netns

SEED = 15
FIGURES = ("low_delay_p99_us", "bulk_goodput_mbps", "connections_per_s")


def _our_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if f"-{os.getpid()}-" in n}


@pytest.mark.timeout(600)
def test_bench_dispatch_scaled_down():
    require_netns()
    print("seed", SEED)
    before = _our_segments()
    result = bench_dispatch(rounds=50, bulk_size=1 << 20, connections=20, idle_rounds=10,
                            timeout=300, seed=SEED)
    assert _our_segments() == before
    assert result["errors"] == [], result
    for label, names in (("heterogeneous", set(PROFILES)), ("homogeneous", {"general"})):
        run = result[label]
        for key in FIGURES:
            assert run[key] > 0, (label, key)
        assert run["low_delay_rounds"] >= 50
        assert sum(run["low_delay_histogram_ms"].values()) == run["low_delay_rounds"]
        assert run["bulk_bytes"] >= 1 << 20 and run["bulk_gets"] >= 1
        assert run["connections"] >= 20
        assert run["byte_exact"] is True
        assert set(run["instances"]) == names
        assert run["messages"] == []            # no instance died
    # Each application on its class's instance, or all of them on the one instance.
    het = {(r["proto"], r["port"]): r["instance"] for r in result["heterogeneous"]["rules"]}
    assert het[("tcp", 7)] == "low-delay" and het[("tcp", 80)] == "throughput"
    assert het[("tcp", 9)] == "concurrency"
    assert {r["instance"] for r in result["homogeneous"]["rules"]} == {"general"}
    for key in ("low_delay_p99_ratio", "bulk_goodput_ratio", "connections_per_s_ratio"):
        assert result[key] > 0
        assert result["met"][key] == (result[key] >= result["must_reach"][key])


def test_homogeneous_instance_has_the_summed_resources():
    general, profiles = homogeneous_instance(), list(PROFILES.values())
    assert sorted(general.rx_queues) == sorted(q for p in profiles for q in p.rx_queues)
    assert general.buffer_memory == sum(p.buffer_memory for p in profiles)
    assert general.max_connections == sum(p.max_connections for p in profiles)


def test_bench_dispatch_refuses_bad_sizes():
    with pytest.raises(ValueError, match="rounds must be an integer >= 1, not 0"):
        bench_dispatch(rounds=0)
    with pytest.raises(ValueError, match="bulk_size"):
        bench_dispatch(bulk_size=-1)


def test_bench_host_refuses_unknown_parts_and_scales():
    with pytest.raises(ValueError, match="parts are rps, dispatch, wn, not dns"):
        bench_host(["dns"])
    with pytest.raises(ValueError, match="scale must be a positive number"):
        bench_host(["dispatch"], scale=0)


def test_bench_host_reports_a_failing_part_and_runs_no_other():
    # A bad argument for the dispatch part: its entry is the error, the run goes on.
    result = bench_host(["dispatch"], dispatch={"parallel": 0})
    assert result["errors"] == ["dispatch"]
    assert result["dispatch"] == {
        "error": "ValueError: bench dispatch: parallel must be an integer >= 1, not 0"}
    assert "rps" not in result and "wn" not in result


@pytest.mark.timeout(60)
def test_cli_refuses_bad_parts():
    run = subprocess.run([sys.executable, "-m", "hetnic", "bench", "host", "--only",
                          "dispatch,dns"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--only: parts are rps,dispatch,wn, not 'dispatch,dns'" in run.stderr
