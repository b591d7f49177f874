"""``hetnic rss-eval --all`` on two real captures (``tests/data/pcap``, attribution in its
SOURCES.md): every guarded policy's mean next-window max/mean within 2 % of static's at 4, 8
and 16 queues, on at least 10 windows after decisions (the issue's Must-reach)."""

import json
from pathlib import Path

import pytest

from hetnic.__main__ import main
from hetnic.cli.rss_eval import ALL_QUEUES
from hetnic.rss_eval import POLICIES

pytestmark = pytest.mark.timeout(300)

CAPTURES = Path(__file__).parent.parent / "data" / "pcap"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    assert main(["rss-eval", "--all", str(CAPTURES), "--out", str(out)]) == 0
    return json.loads((out / "captures.json").read_text()), (out / "captures.md").read_text()


def test_every_capture_and_queue_count(reports):
    found, _ = reports
    assert [(r["trace"], r["queues"]) for r in found] == [
        (name, q) for name in ("ethereum.pcap", "WebattackRCE.pcap") for q in ALL_QUEUES]
    for r in found:
        assert r["scored_windows"] >= 10 and r["guard"] is True
        assert set(r["policies"]) == set(POLICIES)


def test_must_reach_guarded_policies_within_2pct_of_static(reports):
    found, _ = reports
    for r in found:
        static = r["policies"]["static"]["next_window_max_mean"]
        for name, p in r["policies"].items():
            ratio = p["next_window_max_mean"] / static
            print(r["trace"], r["queues"], name, f"{ratio:.4f}",
                  f"own {p.get('own_next_window_max_mean', static) / static:.4f}")
            assert ratio <= 1.02, (r["trace"], r["queues"], name, ratio)


def test_guard_is_what_keeps_them_there(reports):
    """Without the guard a policy does worse than static somewhere on these captures (the
    ethereum peers: few heavy flows, a key or table fitted to one window loses on the
    next); the guard kept static in force there."""
    found, table = reports
    own = [p["own_next_window_max_mean"] / r["policies"]["static"]["next_window_max_mean"]
           for r in found for name, p in r["policies"].items() if name != "static"]
    assert max(own) > 1.02
    assert "| ethereum.pcap | 2000 | 139 |" in table and "Largest" in table
