"""Run a Python script in a network namespace while a host (anything with
``run(until=..., timeout=...)``: StackHost, StackProcs) keeps running here."""

from __future__ import annotations

import subprocess
import sys
import textwrap

__all__ = ["run_in_netns", "ECHO_THROUGH"]

# For a kernel-peer script: echo_through(c, data) sends ``data`` on connected TCP socket ``c``
# while a thread reads the echo back (at most 90 s); the bytes that came back. Put it in a
# script with ``ECHO_THROUGH + script`` (it has no braces: safe before ``str.format``).
ECHO_THROUGH = """
import threading

def echo_through(c, data):
    got = bytearray()
    def reader():
        while len(got) < len(data):
            chunk = c.recv(65536)
            if not chunk:
                break
            got.extend(chunk)
    t = threading.Thread(target=reader)
    t.start()
    c.sendall(data)
    t.join(90)
    return bytes(got)
"""


def run_in_netns(ns: str, host, script: str, timeout: float = 60) -> str:
    """Run ``script`` (dedented) with this Python in namespace ``ns`` while ``host`` runs,
    at most ``timeout`` seconds (then killed); its stdout. Fails the test (with the tail of
    its stderr) when the script fails."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                             textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        host.run(until=lambda: proc.poll() is not None, timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()
