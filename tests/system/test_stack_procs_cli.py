"""``hetnic stack up`` runs each stack instance in a process of its own by default: curl gets
a file byte-exact, the status lines and the summary name each instance's pid, an instance
killed mid-run is reported in one line while the others keep serving, and no process is left
after SIGTERM; ``--one-process`` runs them all in the command's own process."""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from kit.netns import netns, ns_run, require_netns, tap_in_netns

pytestmark = pytest.mark.timeout(300)

SEED = 15


class _Lines:
    """The lines a stream carries, collected by a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, proc, timeout: float) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if (match := re.search(pattern, line)) is not None:
                    return match
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in: {self.lines}")

    def text(self, timeout=10) -> str:
        self._thread.join(timeout)
        self._stream.close()
        return "\n".join(self.lines)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return True


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def _stack_up(ns, *extra):
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "hetnic", "stack", "up", "--tap",
         "tap0", "--addr", "198.18.0.2/24", "--no-live", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, _Lines(proc.stdout), _Lines(proc.stderr)


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise


_STATUS = r"low-delay \(pid (\d+)\).*throughput \(pid (\d+)\).*concurrency \(pid (\d+)\)"


def test_instances_are_processes_and_one_killed_is_reported(tmp_path):
    require_netns()
    print("seed", SEED)
    content = random.Random(SEED).randbytes(1 << 19)
    (tmp_path / "file.bin").write_bytes(content)
    pids: list[int] = []
    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False):
        proc, out, err = _stack_up(ns, "--serve", str(tmp_path), "--duration", "200")
        try:
            out.wait_for("everything else", proc, 120)
            got = ns_run(ns, "curl", "-sS", "--max-time", "60", "-o", str(tmp_path / "got"),
                         "http://198.18.0.2/file.bin", timeout=90)
            assert got.returncode == 0
            assert (tmp_path / "got").read_bytes() == content
            pids = [int(p) for p in out.wait_for(_STATUS, proc, 60).groups()]
            assert len(set(pids)) == 3 and proc.pid not in pids
            assert all(_parent(pid) == proc.pid for pid in pids)
            os.kill(pids[0], signal.SIGKILL)                      # low-delay
            err.wait_for(rf"^hetnic: low-delay \(pid {pids[0]}\) was killed by signal 9$",
                         proc, 30)
            again = ns_run(ns, "curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w",
                           "%{http_code}", "http://198.18.0.2/file.bin", timeout=90)
            assert again.stdout == "200"
        finally:
            status = _stop(proc)
        text, errors = out.text(), err.text()
    assert status == 0, errors
    summary = text[text.index("summary after"):]
    assert f"instance low-delay (pid {pids[0]} (killed by signal 9), process)" in summary
    assert f"instance throughput (pid {pids[1]}, process)" in summary
    assert "statuses {200: 2}" in summary
    assert "Traceback" not in errors
    assert all(_gone(pid) for pid in pids)


def test_one_process_mode():
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False):
        proc, out, err = _stack_up(ns, "--one-process", "--duration", "120")
        try:
            out.wait_for("everything else", proc, 120)
            echo = ns_run(ns, sys.executable, "-c", (
                "import socket\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(20)\n"
                "s.sendto(b'one', ('198.18.0.2', 7)); print(s.recv(100).decode())\n"),
                timeout=60)
            assert echo.stdout.strip() == "one"
        finally:
            status = _stop(proc)
        text, errors = out.text(), err.text()
    assert status == 0, errors
    for name in ("low-delay", "throughput", "concurrency"):
        assert f"instance {name} (pid {proc.pid}, one-process)" in text
