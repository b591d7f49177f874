# amaranth: UnusedElaboratable=no
"""The board registry, the build plans of every board (no tools run) and the CLI."""

import dataclasses

import pytest

from hetnic.__main__ import main
from hetnic.boards import BOARDS, BoardError, BoardNotImplemented, get_board
from hetnic.boards.build import NEXTPNR_REPORT, build_plan, read_report

EXPECTED = {"versa_ecp5", "colorlight_5a75b", "ecpix5", "butterstick", "icebreaker"}


def test_registry_names_and_platforms():
    assert set(BOARDS) == EXPECTED
    for board in BOARDS.values():
        platform = board.platform_class()
        assert board.device.startswith(platform.device)
        if board.ports:
            for n in range(board.ports):
                platform().lookup("eth_rgmii", n)      # raises if the resource is missing


def test_unknown_board_lists_the_names():
    with pytest.raises(BoardError, match="unknown board 'nope'; boards: versa_ecp5, "):
        get_board("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_build_plan(name):
    board = get_board(name)
    assert board.top is not None
    platform, plan = build_plan(board)
    script = plan.files[f"{plan.script}.sh"]
    assert f"--report {NEXTPNR_REPORT}" in script
    if not board.ports:
        return          # the serial-fed iCE40 core: tests/boards/test_ice40_build.py
    lpf = plan.files[f"hetnic_{name}.lpf"]
    ports = ["eth_rgmii_0"]
    if board.ports == 2:
        ports.append("eth_rgmii_1" if name == "versa_ecp5" else "hetnic_rgmii_data_1")
    for port in ports:
        assert f'FREQUENCY PORT "{port}__rx_clk__io" 125000000.0 HZ;' in lpf
    if board.ports == 1:
        assert "_1__rx_clk__io" not in lpf
    assert "uart_0__rx__io" in lpf


def test_one_port_build_plan():
    """ECPIX-5: the one-port core (no port 1, no store-and-forward FIFO) with its PLL, the
    ECP5 DDR primitives on the one RGMII port and the tag inserter; no tools run."""
    _, plan = build_plan(get_board("ecpix5"))
    design = plan.files["hetnic_ecpix5.il"]
    assert design.count("EHXPLLL") == 1
    assert "IDDRX1F" in design and "ODDRX1F" in design
    assert "tagger" in design and "store1" not in design
    lpf = plan.files["hetnic_ecpix5.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "R26";' in lpf
    assert "eth_rgmii_1" not in lpf


def test_a_board_without_a_top_says_what_is_missing(monkeypatch):
    board = dataclasses.replace(get_board("ecpix5"), top=None, note="no UART here")
    with pytest.raises(BoardNotImplemented, match="board 'ecpix5': no board top is "
                                                  "implemented yet \\(no UART here\\)"):
        build_plan(board)


def test_cli_boards_lists_every_board(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert name in out


def test_cli_unknown_board_is_one_line_exit_2(capsys):
    assert main(["build", "--board", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hetnic build: error: unknown board 'nope'; boards: versa_ecp5, "
                   "colorlight_5a75b, ecpix5, butterstick, icebreaker"]


def test_cli_build_of_unimplemented_board(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(BOARDS, "ecpix5", dataclasses.replace(BOARDS["ecpix5"], top=None))
    assert main(["build", "--board", "ecpix5", "--out", str(tmp_path)]) == 2
    assert "no board top is implemented yet" in capsys.readouterr().err


def test_cli_missing_tools(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ECP5", "no-such-nextpnr")
    assert main(["build", "--board", "versa_ecp5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-nextpnr is not on PATH (set by NEXTPNR_ECP5)" in err


def test_cli_program_without_bitstream(capsys, tmp_path):
    assert main(["program", "--board", "versa_ecp5", "--out", str(tmp_path)]) == 2
    assert "does not exist; run 'hetnic build --board versa_ecp5" in capsys.readouterr().err


def test_cli_program_prints_the_command(capsys, tmp_path, monkeypatch):
    (tmp_path / "hetnic_versa_ecp5.bit").write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path))       # no openFPGALoader
    assert main(["program", "--board", "versa_ecp5", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == \
        f"openFPGALoader -c ft2232 {tmp_path / 'hetnic_versa_ecp5.bit'}"


def test_read_report(tmp_path):
    (tmp_path / "r.json").write_text(
        '{"utilization": {"TRELLIS_COMB": {"used": 10, "available": 100}, '
        '"DP16KD": {"used": 0, "available": 108}}, "fmax": {"$glbnet$clk": '
        '{"achieved": 110.5, "constraint": 125.0}}, "critical_paths": []}')
    report = read_report(tmp_path / "r.json", get_board("versa_ecp5"))
    assert report["clocks"] == [{"name": "$glbnet$clk", "constraint_mhz": 125.0,
                                 "fmax_mhz": 110.5, "met": False}]
    assert report["utilisation"] == {"TRELLIS_COMB": {"used": 10, "available": 100}}
    assert report["timing_met"] is False
