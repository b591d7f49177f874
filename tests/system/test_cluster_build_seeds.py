"""``hetnic build --seeds K --cluster local:2``: K place-and-route runs with different nextpnr
seeds on a local Dask cluster, the Fmax distribution and the best build kept (slow: an
iCE40 build takes minutes)."""

import json

import pytest

pytest.importorskip("distributed", reason="needs the cluster extra: pip install hetnic[cluster]")

from hetnic.__main__ import main  # noqa: E402

@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_seeds_on_cluster_keep_the_best(tmp_path, capsys):
    out = tmp_path / "ice"
    assert main(["build", "--board", "icebreaker", "--out", str(out), "--seeds", "2",
                 "--cluster", "local:2"]) == 0
    summary = json.loads((out / "seeds.json").read_text())
    reports = {s: json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (1, 2)}
    assert summary["seeds"] == [1, 2] and all(r["seed"] == s for s, r in reports.items())
    (clock, dist), = summary["clocks"].items()
    fmax = {s: next(c["fmax_mhz"] for c in r["clocks"] if c["name"] == clock)
            for s, r in reports.items()}
    assert dist["fmax_mhz"] == {str(s): f for s, f in fmax.items()}
    assert dist["min"] == min(fmax.values()) and dist["max"] == max(fmax.values())
    best = summary["best_seed"]
    assert fmax[best] == dist["max"]
    assert json.loads((out / "report.json").read_text()) == reports[best]
    assert (out / "hetnic_icebreaker.bin").read_bytes() == \
        (out / f"seed-{best}" / "hetnic_icebreaker.bin").read_bytes()
    assert "best: seed" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_cluster_needs_seeds(capsys):
    assert main(["build", "--board", "icebreaker", "--cluster", "local:2"]) == 2
    assert "--cluster goes with --seeds K" in capsys.readouterr().err
