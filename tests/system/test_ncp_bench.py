"""``hetnic bench ncp`` end to end, small (slow: it builds the whole path four times)."""

from __future__ import annotations

import json

import pytest
from kit.netns import require_netns

from hetnic.bench_ncp import bench_ncp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_bench_ncp_small():
    require_netns()
    out = bench_ncp(size=400_000, rr_count=10, rounds=1)
    json.dumps(out)                                 # one JSON object
    assert out["skipped"] is None
    assert out["ncp"]["byte_exact"] and out["ncp_lossy"]["byte_exact"]
    assert out["ncp_restart"]["session_back"]
    assert out["must_reach"]["restart_detected_met"]
    assert out["udp"]["goodput_mbps"] > 0 and out["ncp"]["goodput_mbps"] > 0
    assert out["ncp"]["rr_latency_us"]["samples"] == 10
