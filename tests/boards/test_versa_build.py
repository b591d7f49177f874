"""One full build of the Versa ECP5 board with the YoWASP tools (yosys, nextpnr, ecppack).

Several minutes on one core: marked ``pnr``, so ``make test`` runs it beside the rest of
the suite (``pytest -m pnr``). The build must produce a bitstream and a report with every
clock at its 125 MHz constraint and met, the utilisation, and the time it took; ``hetnic
build`` exits 0. (The YoWASP tools are pinned, so the result is the same on every machine:
a design change that loses timing fails here.)
"""

import json

import pytest

from hetnic.__main__ import main


@pytest.mark.pnr
@pytest.mark.timeout(1800)
def test_versa_ecp5_build(tmp_path, capsys):
    status = main(["build", "--board", "versa_ecp5", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps(report, indent=2))
    assert (tmp_path / "hetnic_versa_ecp5.bit").stat().st_size > 0
    for phase in ("synthesis (yosys)", "place and route (nextpnr-ecp5)", "bitstream (ecppack)"):
        assert phase in captured.err
    assert report["board"] == "versa_ecp5" and report["device"] == "LFE5UM-45F-8BG381"
    names = {clock["name"] for clock in report["clocks"]}
    assert len(names) >= 3                  # the core clock and both RX clocks
    assert all(clock["constraint_mhz"] == 125 for clock in report["clocks"])
    assert {"TRELLIS_COMB", "TRELLIS_FF", "DP16KD"} <= set(report["utilisation"])
    assert report["seconds"] > 0
    failing = [(c["name"], c["fmax_mhz"]) for c in report["clocks"] if not c["met"]]
    assert not failing and report["timing_met"], \
        f"timing not met: {failing}; critical paths: {report['critical_paths']}"
    assert status == 0 and "timing not met" not in captured.err
