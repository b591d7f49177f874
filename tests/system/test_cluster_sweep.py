"""``hetnic rss-eval --sweep`` on a local Dask cluster of 2 workers: its table is the table
of the single-run evaluations it is made of; the bad sweeps."""

import json
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="needs the cluster extra: pip install hetnic[cluster]")

from hetnic.__main__ import main  # noqa: E402
from hetnic.rss_eval import evaluate_capture, format_sweep  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "pcap"


def test_sweep_table_equals_single_runs(tmp_path, capsys):
    capture = CAPTURES / "ethereum.pcap"
    assert main(["rss-eval", "--sweep", "queues=4,8", "seeds=1-2", str(capture),
                 "--cluster", "local:2", "--out", str(tmp_path / "sweep")]) == 0
    capsys.readouterr()
    table = (tmp_path / "sweep" / "sweep.md").read_text().strip()
    singles = [evaluate_capture(capture, queues=q, seed=s) for q in (4, 8) for s in (1, 2)]
    assert table == format_sweep(singles)
    assert len(table.splitlines()) == 2 + 4 * 4
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 0
    # A point of the sweep is what the one-capture command reports.
    assert main(["rss-eval", str(capture), "--queues", "8", "--seed", "2", "--json",
                 "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)
    swept = json.loads((tmp_path / "sweep" / "sweep.json").read_text())[3]
    for name, policy in one["policies"].items():
        for field in ("next_window_max_mean", "vs_static", "key_switches",
                      "flows_migrated_per_decision"):
            assert swept["policies"][name][field] == policy[field]


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "queues=4", "cores=2", "C"], "the axes are queues and seeds"),
    (["--sweep", "queues=4,x", "C"], "give integers and ranges A-B"),
    (["--sweep", "seeds=5-1", "C"], "bad range 5-1"),
    (["--sweep", "queues=0,4", "C"], "queues: 0 is not from 1 to 256"),
    (["--sweep", "queues=4"], "give one or more capture files"),
    (["--sweep", "queues=4", "missing.pcap"], "missing.pcap: no such file"),
    (["--cluster", "local:2", "C"], "--cluster goes with --sweep"),
])
def test_bad_sweeps(tmp_path, capsys, argv, message):
    argv = [str(CAPTURES / "ethereum.pcap") if a == "C" else a for a in argv]
    assert main(["rss-eval", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
