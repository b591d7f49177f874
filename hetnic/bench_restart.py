"""``hetnic bench restart``: instance restarts of hetnicd under the issue's load, one JSON
object.

The daemon (``hetnic daemon``, instances as processes) runs on the simulated NIC on a TAP in
a namespace; the kernel in that namespace runs the load (:mod:`hetnic.host.restart_load`: 50
echo streams of bounded random lifetimes, replaced at once, and 200 new connections a second,
every byte checked) while ``hetnic restart low-delay --config FILE`` runs 20 times in a
row, each with a changed configuration (the echo application's instance). Reported:
``failed_connects``, ``resets``, ``lost_bytes``, ``corrupted`` over the whole run; per
restart the seconds from the command to the new configuration serving new connections
(``serving_seconds``, without the drain of the original) and the drains; and what the load
actually carried (connections a second, streams), beside what was asked, measured in the
same run. Needs root (namespaces) like the other kernel-peer benches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["bench_restart", "restarts_under_load", "CONFIGS"]

#: The changed configurations the restarts cycle through (low-delay instance fields).
CONFIGS = ({"initial_window": 4, "min_rto": 0.1}, {"initial_window": 16, "nagle": True},
           {"delayed_ack": True, "poll_batch": 16}, {"congestion": "cubic",
                                                      "max_connections": 512})


def _config_text(fields: dict) -> str:
    return '[[instance]]\nprofile = "low-delay"\n' + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


def restarts_under_load(cli: Callable, load: Callable, folder: Path, *, restarts: int = 20,
                        streams: int = 50, rate: float = 200.0, warmup: float = 2.0,
                        drain_timeout: float = 30.0, baseline: float = 10.0) -> dict:
    """Run ``restarts`` restarts of low-delay with ``cli(*args)`` (a completed process)
    while ``load(addr, **options)`` (a :mod:`~hetnic.host.restart_load` process) runs; the
    report. First the same load runs ``baseline`` seconds without restarts: what the
    simulated NIC and the stack carry on this machine, measured in the same run."""
    base = None
    if baseline > 0:
        first = load("198.18.0.2", streams=streams, rate=rate, seconds=baseline, seed=7)
        first.stdin.close()
        with first.stdout:
            base = json.loads(first.stdout.read())
        first.wait(timeout=300)
    proc = load("198.18.0.2", streams=streams, rate=rate)
    runs, errors = [], []
    try:
        time.sleep(warmup)
        for i in range(restarts):
            config = folder / f"restart-{i}.toml"
            config.write_text(_config_text(CONFIGS[i % len(CONFIGS)]))
            start = time.monotonic()
            out = cli("restart", "low-delay", "--config", str(config), "--drain-timeout",
                      str(drain_timeout), "--json")
            wall = time.monotonic() - start
            if out.returncode != 0:
                errors.append(out.stderr.strip())
                continue
            lines = [json.loads(line) for line in out.stdout.splitlines()]
            result, lines = lines[-1]["result"], lines[:-1]
            pins = [e.get("flows_pinned", 0) for e in lines if e["instruction"] == "pin"]
            drains = [e for e in lines if e["instruction"] == "drain"]
            aborted = sum(e.get("drain_timeout_aborted", 0) for e in drains)
            runs.append({"wall_seconds": round(wall, 3),
                         "serving_seconds": result["serving_seconds"],
                         "drain_seconds": result["drain_seconds"],
                         "flows_pinned": pins, "drain_timeout_aborted": aborted,
                         "pinned_drops": sum(e.get("pinned_drops", 0) for e in drains),
                         "steps": {e["instruction"]: e["seconds"] for e in lines
                                   if e["instruction"] in ("transition-start",
                                                           "new-start")}})
        time.sleep(1.0)
    finally:
        proc.stdin.close()
        with proc.stdout:
            out = proc.stdout.read()
        proc.wait(timeout=300)
    carried = json.loads(out)
    serving = [r["serving_seconds"] for r in runs]
    return {
        "restarts": restarts, "restarts_done": len(runs), "errors": errors,
        "failed_connects": carried["failed_connects"], "resets": carried["resets"],
        "lost_bytes": carried["lost_bytes"], "corrupted": carried["corrupted"],
        "asked": {"streams": streams, "connections_per_second": rate},
        "carried": {"connections_per_second": carried["connects_per_second"],
                    "connects": carried["connects"],
                    "connects_tried": carried["connects_tried"],
                    "streams_done": carried["streams_done"],
                    "slow_connects": carried["slow_connects"],
                    "bytes_echoed": carried["bytes"], "seconds": carried["seconds"]},
        "serving_seconds_max": max(serving) if serving else None,
        "serving_seconds_median": sorted(serving)[len(serving) // 2] if serving else None,
        "drain_timeout_aborted": sum(r["drain_timeout_aborted"] for r in runs),
        "load_errors": carried["errors"], "runs": runs,
        "baseline_without_restarts": None if base is None else {
            k: base[k] for k in ("failed_connects", "resets", "lost_bytes", "corrupted",
                                 "connects", "connects_tried", "connects_per_second",
                                 "streams_done", "slow_connects", "bytes", "seconds")},
    }


def bench_restart(restarts: int = 20, streams: int = 50, rate: float = 200.0) -> dict:
    """Set up the namespace, the TAP and the daemon, run :func:`restarts_under_load`,
    tear them down; the report."""
    from .host.daemon_client import spawn_daemon
    from .host.netns import netns, tap_in_netns
    folder = Path(tempfile.mkdtemp(prefix="hetnic-bench-restart-"))
    sock = folder / "hetnic.sock"
    (folder / "policy.toml").write_text(
        '[[grant]]\nusers = ["*"]\ninterfaces = ["*"]\noperations = ["*"]\n')
    try:
        with netns("hn-brestart") as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24",
                                                      "2001:db8::1/64", open_device=False):
            with spawn_daemon(
                    ["--tap", "tap0", "--addr", "198.18.0.2/24", "--addr6", "2001:db8::2/64",
                     "--policy", str(folder / "policy.toml"), "--audit",
                     str(folder / "audit.log")], sock, folder / "daemon.err", netns=ns):
                def cli(*args):
                    return subprocess.run([sys.executable, "-m", "hetnic", *args, "--socket",
                                           str(sock)], capture_output=True, text=True,
                                          timeout=600)

                def load(addr, **kw):
                    argv = []
                    for k, v in kw.items():
                        argv += [f"--{k}", str(v)]
                    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                             "hetnic.host.restart_load", addr, *argv],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True)
                report = restarts_under_load(cli, load, folder, restarts=restarts,
                                             streams=streams, rate=rate)
                report["must_reach"] = {
                    "all_restarts_done": report["restarts_done"] == restarts
                    and not report["errors"],
                    "zero_loss": report["failed_connects"] == report["resets"]
                    == report["lost_bytes"] == report["corrupted"] == 0,
                    "serving_within_2s": report["serving_seconds_max"] is not None
                    and report["serving_seconds_max"] <= 2.0}
                return report
    finally:
        if os.environ.get("HETNIC_KEEP") is None:
            shutil.rmtree(folder, ignore_errors=True)
