"""``hetnic bench stack`` at small sizes: one JSON object with every figure the issue names,
each a positive number measured this run (or null with the reason when the kernel side cannot
run). Wall-clock figures are only reported, never compared with a threshold."""

import json

import pytest

from hetnic.__main__ import main
from hetnic.bench_stack import bench_direct
from kit.netns import require_netns

pytestmark = pytest.mark.timeout(600)


def test_direct_transfer_counts_segments():
    """Two stacks wired directly: 2 MiB at MSS 1460 needs at least 2 MiB / 1460 data
    segments, and the bytes arrive unchanged (bench_direct raises otherwise)."""
    out = bench_direct(2 << 20)
    assert out["stack_data_equal"] is True
    assert out["stack_data_segments"] >= (2 << 20) // 1460
    assert out["stack_segments_per_s"] > 0 and out["stack_us_per_segment"] > 0
    assert out["stack_frames_b_to_a"] > 0          # the receiver's ACKs
    assert out["stack_mss"] == 1460


def test_bench_stack_json(capsys):
    require_netns()
    assert main(["bench", "stack", "--mib", "2", "--goodput-mib", "1", "--veth-mib", "4",
                 "--rr", "20", "--frames", "400"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kernel_skipped"] is None
    for key in ("stack_segments_per_s", "stack_us_per_segment", "hil_payload_mbps_1500",
                "tcp_goodput_mbps_kernel_to_hetnic", "tcp_goodput_mbps_hetnic_to_kernel",
                "kernel_veth_goodput_mbps", "goodput_kernel_to_hetnic_vs_hil_payload",
                "goodput_hetnic_to_kernel_vs_hil_payload"):
        assert isinstance(out[key], (int, float)) and out[key] > 0, key
    assert set(out["rr_latency_us"]) == {"low-delay", "throughput", "concurrency"}
    for name, rr in out["rr_latency_us"].items():
        assert 0 < rr["p50"] <= rr["p99"], name
        assert rr["samples"] == 20
    assert out["sizes"] == {"stack_bytes": 2 << 20, "goodput_bytes": 1 << 20,
                            "veth_bytes": 4 << 20, "rr_rounds": 20, "hil_frames_1500": 400}
    assert out["stack_data_equal"] is True
    assert out["stack_must_reach_segments_per_s"] == 50_000
    assert out["goodput_must_reach_vs_hil_payload"] == 0.5


def test_bench_stack_without_kernel_says_why(capsys):
    """--no-kernel: the kernel figures are null with a reason, never estimated."""
    assert main(["bench", "stack", "--mib", "1", "--frames", "200", "--no-kernel"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("tcp_goodput_mbps_kernel_to_hetnic", "tcp_goodput_mbps_hetnic_to_kernel",
                "rr_latency_us", "kernel_veth_goodput_mbps"):
        assert out[key] is None, key
    assert out["kernel_skipped"]
    assert out["stack_segments_per_s"] > 0 and out["hil_payload_mbps_1500"] > 0
