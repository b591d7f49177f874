"""``hetnic stack up``: bad input is one line and exit status 2; a real run in a network
namespace serves a file to curl, answers echo, stops on SIGTERM and prints its summary."""

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from hetnic.cli import main
from kit.netns import netns, ns_run, require_netns, tap_in_netns


def _error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hetnic stack"), err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--addr", "198.18.0.2/24"], "--tap"),
    (["--tap", "tap0"], "--addr"),
    (["--tap", "tap0", "--addr", "198.18.0.2"], "must be ADDRESS/PREFIX"),
    (["--tap", "tap0", "--addr", "198.18.0.300/24"], "is not an address/prefix"),
    (["--tap", "tap0", "--addr", "198.18.0.2/33"], "is not an address/prefix"),
    (["--tap", "tap0", "--addr", "2001:db8::2/64"], "must be an IPv4 address"),
    (["--tap", "tap0", "--addr", "198.18.0.0/24"], "not a unicast host address"),
    (["--tap", "tap0", "--addr", "198.18.0.255/24"], "not a unicast host address"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--addr6", "198.18.0.3/24"],
     "must be an IPv6 address"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--addr6", "ff02::1/64"],
     "not a unicast host address"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--faults", "loss=200%"], "--faults"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--faults", "drop=1%"], "unknown fault"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--duration", "-1"], "--duration"),
    (["--tap", "tap0", "--addr", "198.18.0.2/24", "--seed", "x"], "--seed"),
])
def test_bad_arguments(capsys, argv, message):
    line = _error(capsys, ["stack", "up", *argv])
    assert message in line


def test_bad_serve_folder(capsys, tmp_path):
    line = _error(capsys, ["stack", "up", "--tap", "tap0", "--addr", "198.18.0.2/24",
                           "--serve", str(tmp_path / "missing")])
    assert "does not exist" in line
    (tmp_path / "file").write_text("x")
    line = _error(capsys, ["stack", "up", "--tap", "tap0", "--addr", "198.18.0.2/24",
                           "--serve", str(tmp_path / "file")])
    assert "is not a folder" in line


@pytest.mark.parametrize("text, message", [
    (None, "cannot read"),
    ("[[instance]\n", "not TOML"),
    ("[[instance]]\nprofile = 'fast'\n", "fast"),
    ("[[instance]]\nprofile = 'throughput'\nrx_queues = []\n", "rx_queues"),
    ("[[instance]]\nprofile = 'throughput'\n[[instance]]\nprofile = 'throughput'\n", "name"),
])
def test_bad_instances_file(capsys, tmp_path, text, message):
    path = tmp_path / "instances.toml"
    if text is not None:
        path.write_text(text)
    line = _error(capsys, ["stack", "up", "--tap", "tap0", "--addr", "198.18.0.2/24",
                           "--instances", str(path)])
    assert message in line and str(path) in line


def test_missing_tap_is_one_line(capsys):
    line = _error(capsys, ["stack", "up", "--tap", "hetnic-none0", "--addr", "198.18.0.2/24"])
    assert "hetnic-none0" in line


def test_unknown_action(capsys):
    assert "invalid choice" in _error(capsys, ["stack", "down"])
