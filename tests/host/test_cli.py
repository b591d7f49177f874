"""The ``hetnic`` command line: one module per command, argument types with one limit per
thing, and every error one line from one place with exit status 2."""

import argparse
import subprocess
import sys

import pytest

from hetnic.cli import COMMANDS, command_parser, main
from hetnic.cli import boards as boards_command
from hetnic.cli.args import MAX_QUEUES, float_range, int_range
from hetnic.errors import HetnicError
from hetnic.host.control import NicError
from hetnic.regs import PARAM_LIMITS


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_command_module_has_the_shape():
    names = [command.NAME for command in COMMANDS]
    assert names == ["verilog", "regmap", "replay", "bench", "demo", "rss-eval", "boards",
                     "build", "program", "stack", "daemon", "rules", "rss", "counters",
                     "events", "restart"]
    for command in COMMANDS:
        assert callable(command.add_arguments) and callable(command.run) and command.HELP


def test_int_range():
    parse = int_range(1, 4)
    assert [parse(t) for t in ("1", "4", " 3 ")] == [1, 4, 3]
    for text, message in (("0", "must be from 1 to 4, not 0"), ("5", "must be from 1 to 4"),
                          ("2.5", "'2.5' is not a whole number"), ("x", "not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
    assert int_range(0)("123456789") == 123456789
    with pytest.raises(argparse.ArgumentTypeError, match="must be from 0 or more, not -1"):
        int_range(0)("-1")


def test_float_range_refuses_nan_and_infinity():
    parse = float_range(0.0, 1.0)
    assert parse("0.5") == 0.5
    for text in ("nan", "inf", "-0.1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be from 0 to 1"):
            parse(text)


def test_the_queue_limit_is_the_register_tables():
    assert MAX_QUEUES == PARAM_LIMITS["queues"][1] == 256


@pytest.mark.parametrize("command", ["replay", "rss-eval"])
def test_same_queue_limits_in_every_command(capsys, command):
    """``--queues`` is the same thing in replay and rss-eval: 1 to 256 in both."""
    parser = command_parser()
    base = {"replay": ["replay", "x.pcap", "--out", "o"], "rss-eval": ["rss-eval"]}[command]
    assert parser.parse_args(base + ["--queues", "256"]).queues == 256
    assert parser.parse_args(base + ["--queues", "1"]).queues == 1
    for bad in ("0", "257"):
        code, out, err = run(capsys, *base, "--queues", bad)
        assert (code, out) == (2, "")
        assert err == f"hetnic {command}: error: --queues must be from 1 to 256, not {bad}\n"


@pytest.mark.parametrize("argv, message", [
    ([], "hetnic: error: the following arguments are required: COMMAND"),
    (["nope"], "hetnic: error: COMMAND: invalid choice: 'nope'"),
    (["regmap", "--format", "pdf"], "hetnic regmap: error: --format: invalid choice: 'pdf'"),
    (["replay", "x.pcap"], "hetnic replay: error: the following arguments are required: "
                           "--out"),
    (["replay", "x.pcap", "--out", "o", "--width", "24"],
     "hetnic replay: error: --width must be 8, 16, 32, 64 or 128 bits, not 24"),
    (["replay", "x.pcap", "--out", "o", "--queues", "many"],
     "hetnic replay: error: --queues 'many' is not a whole number"),
    (["replay", "x.pcap", "--out", "o", "--key", "abcd"],
     "hetnic replay: error: --key must be 40 bytes (80 hex digits), got 2 bytes"),
    (["replay", "x.pcap", "--out", "o", "--trace", "wave.txt"],
     "hetnic replay: error: --trace must name a .vcd or .fst waveform file, not "
     "'wave.txt'"),
    (["bench", "rx", "--frames", "0"], "hetnic bench: error: --frames must be from 1 or more"),
    (["demo", "--frames", "-5"], "hetnic demo: error: --frames must be from 1 or more"),
    (["demo", "--seed", "-1"], "hetnic demo: error: --seed must be from 0 or more, not -1"),
    (["rss-eval", "--seed", "-1"], "hetnic rss-eval: error: --seed must be from 0 or more"),
    (["rss-eval", "--margin", "inf"], "hetnic rss-eval: error: --margin must be from 0 or more"),
    (["build"], "hetnic build: error: the following arguments are required: --board"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "usage" not in err


def test_any_hetnic_error_from_a_command_is_one_line(capsys, monkeypatch):
    def fails(args):
        raise NicError("the board at /dev/ttyUSB9 does not answer\n(second line)")
    monkeypatch.setattr(boards_command, "run", fails)
    code, out, err = run(capsys, "boards")
    assert code == 2 and out == ""
    assert err.startswith("hetnic boards: error: the board at /dev/ttyUSB9 does not answer")


def test_an_os_error_is_one_line(capsys, monkeypatch):
    def fails(args):
        raise PermissionError(13, "Permission denied", "out/x")
    monkeypatch.setattr(boards_command, "run", fails)
    code, _, err = run(capsys, "boards")
    assert code == 2 and err.count("\n") == 1 and "Permission denied" in err


def test_a_bug_is_not_hidden(monkeypatch):
    """Only HetnicError and OSError are input errors: anything else is a bug with a
    traceback."""
    def fails(args):
        raise KeyError("bug")
    monkeypatch.setattr(boards_command, "run", fails)
    with pytest.raises(KeyError):
        main(["boards"])
    assert not issubclass(KeyError, HetnicError)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command.NAME} " in out


def test_python_m_hetnic_and_the_error_line():
    done = subprocess.run([sys.executable, "-m", "hetnic", "replay", "x.pcap", "--out", "o",
                           "--queues", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "hetnic replay: error: --queues must be from 1 to 256, not 0\n"


def test_a_reader_that_went_away_is_not_an_error():
    # `hetnic regmap | head -1`: the pipe closes before hetnic has written everything.
    import os
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "hetnic", "regmap"], stdout=write_end,
                                stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == b""


def test_restart_step_lines():
    from hetnic.cli.restart import step_line
    assert step_line({"seq": 3, "path": "low-delay", "instruction": "pin", "result": "done",
                      "seconds": 0.0104, "flows_pinned": 2, "to": "t"}) == \
        'low-delay: pin done (0.010 s) flows_pinned=2 to="t"'
    assert step_line({"path": "low-delay", "instruction": "done", "result": "done",
                      "seconds": 0.347}) == "low-delay: done (0.347 s)"
    assert step_line({"path": "x", "instruction": "pin", "result": "failed"}) == \
        "x: pin failed (0.000 s)"
