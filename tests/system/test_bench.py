"""``hetnic bench rx`` measures what it claims (in cycles; wall-clock figures are only
reported, never asserted)."""

import json

import pytest

from hetnic.__main__ import main

pytestmark = pytest.mark.timeout(600)


def test_bench_rx_line_rate(capsys):
    assert main(["bench", "rx", "--frames", "600"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rx_beats"] == out["rx_beats_expected"] == 600 * 8
    assert out["rx_records"] == out["rx_records_delivered"] == 600
    # 64-byte frames back to back at 64 bits: a beat accepted every cycle, no bubble.
    assert out["rx_beats_per_cycle"] == 1.0
    assert out["rx_input_stall_cycles"] == 0
    for key in ("toeplitz_sw_hashes_per_s", "toeplitz_scalar_hashes_per_s",
                "toeplitz_sw_speedup"):
        assert out[key] > 0
