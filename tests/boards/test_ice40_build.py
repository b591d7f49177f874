# amaranth: UnusedElaboratable=no
"""The iCEBreaker board: its build plan (no tools run) and, marked ``pnr`` (``make test`` runs
it beside the rest of the suite), the whole build with the YoWASP tools (yosys,
nextpnr-ice40, icepack; about a minute on one core).

The full build asserts what issue #6 requires of the board: the reduced core fits with
margin (at most 90 % of the logic cells, so the placer has room) and meets its 12 MHz clock.
"""

import json

import pytest

from hetnic.__main__ import main
from hetnic.boards import get_board
from hetnic.boards.build import build_plan
from hetnic.boards.ice40_top import Ice40BoardTop, SerialCore

pytestmark = pytest.mark.timeout(60)


def test_build_plan():
    """The plan places the FTDI UART and the 12 MHz oscillator, runs nextpnr for the UP5K in
    its SG48 package and packs a .bin; the design is the bridge, the hash injector and the
    RSS steering (hash engine, register file, RETA), with no parser or classifier."""
    _, plan = build_plan(get_board("icebreaker"))
    pcf = plan.files["hetnic_icebreaker.pcf"].splitlines()
    for line in ("set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9", "set_io clk12_0__io 35",
                 "set_frequency clk12_0__io 12.0"):
        assert line in pcf
    script = plan.files["build_hetnic_icebreaker.sh"]
    assert '"$NEXTPNR_ICE40"' in script and "--up5k --package sg48" in script
    assert '"$ICEPACK" hetnic_icebreaker.asc hetnic_icebreaker.bin' in script
    design = plan.files["hetnic_icebreaker.il"]
    for block in ("core.bridge", "core.decoder", "core.injector.results",
                  "core.steering.engine", "core.steering.regs", "core.steering.reta"):
        assert f"hetnic_icebreaker.{block}" in design
    assert "parser" not in design and "classifier" not in design


def test_bad_parameters():
    with pytest.raises(ValueError, match="has 2 RGMII ports"):
        Ice40BoardTop(get_board("versa_ecp5"))
    with pytest.raises(TypeError, match="simulate hetnic.boards.ice40_top.SerialCore"):
        Ice40BoardTop(get_board("icebreaker")).elaborate(None)
    with pytest.raises(ValueError, match="at least 8 clock cycles per bit"):
        SerialCore(clk_hz=12e6, baud=3_000_000)


@pytest.mark.pnr
@pytest.mark.timeout(900)
def test_icebreaker_build(tmp_path, capsys):
    status = main(["build", "--board", "icebreaker", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps(report, indent=2))
    assert status == 0, captured.err
    assert (tmp_path / "hetnic_icebreaker.bin").stat().st_size > 0
    assert "place and route (nextpnr-ice40)" in captured.err
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K-SG48"
    assert report["timing_met"]
    (clock,) = report["clocks"]
    assert clock["constraint_mhz"] == 12 and clock["met"]
    cells = report["utilisation"]["ICESTORM_LC"]
    assert cells["available"] == 5280 and cells["used"] <= 0.9 * cells["available"]
    assert report["utilisation"]["ICESTORM_RAM"]["used"] <= 30
