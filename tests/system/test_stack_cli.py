"""``hetnic stack up``: bad input is one line and exit status 2; a real run in a network
namespace serves a file to curl, answers echo, stops on SIGTERM and prints its summary."""

import hashlib
import random
import re
import signal
import subprocess
import sys
import threading
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


class _Lines:
    """The lines a process writes, collected by a thread (so a test can wait for one)."""

    def __init__(self, stream):
        self.lines = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, proc, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in self.lines):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in: {self.lines}")

    def text(self, timeout=10):
        """Every line, once the stream ended (it is closed then)."""
        self._thread.join(timeout)
        self._stream.close()
        return "\n".join(self.lines)


def test_stack_up_serves_curl_and_echo_and_stops_on_sigterm(tmp_path):
    require_netns()
    seed = 21
    print("seed", seed)
    content = random.Random(seed).randbytes(1 << 20)
    (tmp_path / "file.bin").write_bytes(content)
    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", "2001:db8::1/64",
                                     open_device=False):
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "hetnic", "stack", "up",
             "--tap", "tap0", "--addr", "198.18.0.2/24", "--addr6", "2001:db8::2/64",
             "--serve", str(tmp_path), "--duration", "120", "--seed", str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = _Lines(proc.stdout), _Lines(proc.stderr)
        try:
            out.wait_for("everything else", proc, 120)
            got = ns_run(ns, "curl", "-sS", "--max-time", "60", "-o", str(tmp_path / "got"),
                         "http://198.18.0.2/file.bin", timeout=90)
            assert got.returncode == 0
            assert hashlib.sha256((tmp_path / "got").read_bytes()).digest() == \
                hashlib.sha256(content).digest()
            head = ns_run(ns, "curl", "-sS", "-g", "-o", "/dev/null", "-w", "%{http_code}",
                          "--max-time", "30", "http://[2001:db8::2]/nothing", timeout=60)
            assert head.stdout == "404"
            echo = ns_run(ns, sys.executable, "-c", (
                "import socket\n"
                "s = socket.create_connection(('198.18.0.2', 7), timeout=30)\n"
                "s.sendall(b'hello hetnic'); s.shutdown(socket.SHUT_WR)\n"
                "print(b''.join(iter(lambda: s.recv(100), b'')).decode())\n"), timeout=60)
            assert echo.stdout.strip() == "hello hetnic"
            ns_run(ns, sys.executable, "-c", (
                "import socket\n"
                "s = socket.create_connection(('2001:db8::2', 9), timeout=30)\n"
                "s.sendall(bytes(54321)); s.close()\n"), timeout=60)
            out.wait_for("sent 54321 bytes (closed)", proc, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        text, errors = out.text(), err.text()
        assert status == 0, errors
        assert "port -> instance map" in text
        assert re.search(r"\n +0 +tcp dst port 80 +throughput +2-5 +128-255 +http\n", text)
        summary = text[text.index("summary after"):]
        assert "instance throughput" in summary and "app http port 80" in summary
        assert "statuses {200: 1, 404: 1}" in summary
        assert f"body_bytes {len(content)}" in summary
        assert "app echo port 7" in summary and "bytes_out 12" in summary
        assert "Traceback" not in errors


@pytest.mark.parametrize("table, message", [
    ("rx_queues = [2, 9]", "instance 'throughput' names RX queue 9, but the NIC has queues 0 to 7"),
    ("tx_queue = 7", "instance 'throughput' names TX queue 7, but the NIC has TX queues 0 to 3"),
])
def test_instances_the_nic_cannot_hold(capsys, tmp_path, table, message):
    """Checked against the default build before the TAP or the NIC is opened."""
    path = tmp_path / "instances.toml"
    path.write_text(f"[[instance]]\nprofile = 'throughput'\n{table}\n")
    line = _error(capsys, ["stack", "up", "--tap", "hetnic-none0", "--addr", "198.18.0.2/24",
                           "--instances", str(path)])
    assert line == f"hetnic stack: error: {message}"


def _stack_up(ns, *extra, **popen):
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "hetnic", "stack", "up", "--tap",
         "tap0", "--addr", "198.18.0.2/24", *extra], **popen)


def test_ctrl_c_stops_cleanly():
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False):
        proc = _stack_up(ns, "--no-live", "--duration", "120", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        out, err = _Lines(proc.stdout), _Lines(proc.stderr)
        try:
            out.wait_for("everything else", proc, 120)
        finally:
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=60)
        text, errors = out.text(), err.text()
    assert status == 0, errors
    assert "summary after" in text and "Traceback" not in errors


def test_live_table_on_a_terminal():
    """With a terminal as stdout the status is rich's live table, then the summary."""
    import os
    import pty
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False):
        main_fd, child_fd = pty.openpty()
        proc = _stack_up(ns, "--duration", "3", stdout=child_fd, stderr=subprocess.PIPE)
        os.close(child_fd)
        chunks = []
        while True:             # read until the child closes the terminal
            try:
                data = os.read(main_fd, 65536)
            except OSError:     # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        os.close(main_fd)
        status = proc.wait(timeout=60)
        errors = proc.stderr.read().decode()
        proc.stderr.close()
    screen = b"".join(chunks).decode(errors="replace")
    assert status == 0, errors
    assert "hetnic stack (Ctrl-C to stop)" in screen and "concurrency" in screen
    assert "summary after" in screen
