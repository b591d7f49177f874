"""The RPS part of ``hetnic bench host``: steering by system-call bypass against an eventfd
baseline, on the same frames in the same run.

Frames (64-byte IPv4/UDP from a few thousand flows, with the NIC's Toeplitz hash) are
generated ahead into shared memory: the simulated NIC is far too slow to load the path.
For each mode (``"futex"``: the bypass; ``"eventfd"``: the baseline) a fresh
:class:`~hetnic.host.rps.RpsDriver` with its worker processes runs three phases:

load
    the driver steers every frame as fast as it can (a full worker ring is a counted drop,
    never a wait), then the workers drain their rings. ``packets_per_s`` is the frames
    forwarded over that wall time (the forwarding capacity at full offered load);
    ``syscalls_per_packet`` counts the native helper's system calls in the driver and the
    workers during the phase, per frame forwarded.
paced
    one batch every ``pace_us``, slower than the workers take it, so that they fall asleep
    between batches: the wake latency (the driver's publish into the ring of a waiting
    worker to the worker running, CLOCK_MONOTONIC) p50/p99.
idle
    nothing for ``idle_s``: each worker's CPU time (``/proc/PID/stat``) over the wall time.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .host.rps import RpsDriver
from .host.rps_frames import FrameSet

__all__ = ["bench_rps"]


def _phase_load(drv: RpsDriver, fs: FrameSet, batch: int) -> dict:
    before = drv.stats()
    t0 = time.perf_counter()
    drv.steer(fs.data, fs.lens, fs.hashes, batch=batch, wait_full=True)
    t_offered = time.perf_counter() - t0
    drained = drv.drain(60)
    elapsed = time.perf_counter() - t0
    after = drv.stats()
    forwarded = after.forwarded_total - before.forwarded_total
    syscalls = (after.syscalls_driver - before.syscalls_driver
                + sum(after.syscalls_workers) - sum(before.syscalls_workers))
    return {
        "packets_per_s": forwarded / elapsed,
        "offered_packets_per_s": len(fs) / t_offered,
        "forwarded": forwarded,
        "drops_ring_full": after.drop_full - before.drop_full,
        "drops_worker_dead": after.drop_dead - before.drop_dead,
        "order_errors": after.order_errors,
        "syscalls": syscalls,
        "syscalls_per_packet": syscalls / max(forwarded, 1),
        "voluntary_ctxt_switches": [
            (a or 0) - (b or 0) for a, b in zip(after.voluntary_ctxt_switches,
                                                before.voluntary_ctxt_switches)],
        "drained": drained,
    }


def _phase_paced(drv: RpsDriver, fs: FrameSet, batches: int, batch: int, pace_us: float) -> dict:
    since = drv.latency_counts()
    n = min(len(fs), batches * batch)
    drv.steer(fs.data[:n], fs.lens[:n], fs.hashes[:n], batch=batch, pace_ns=int(pace_us * 1e3))
    drv.drain(30)
    lat = drv.wake_latencies(since).astype(np.float64) / 1e3
    if len(lat) == 0:
        return {"p50": None, "p99": None, "samples": 0}
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "samples": int(len(lat))}


def _phase_idle(drv: RpsDriver, idle_s: float) -> list[float]:
    tick = os.sysconf("SC_CLK_TCK")
    before = drv.stats().cpu_ticks
    t0 = time.perf_counter()
    time.sleep(idle_s)
    wall = time.perf_counter() - t0
    after = drv.stats().cpu_ticks
    return [100.0 * ((a or 0) - (b or 0)) / tick / wall for a, b in zip(after, before)]


def bench_rps(packets: int = 2_000_000, workers: int = 2, batch: int = 32, *,
              flows: int = 4096, nslots: int = 1024, spin_us: float = 50.0,
              sleep_ms: float = 10.0, paced_batches: int = 400, pace_us: float = 1000.0,
              idle_s: float = 1.0, seed: int = 0) -> dict:
    """Measure RPS by system-call bypass against the eventfd baseline (see the module doc).

    Returns a dict with ``packets_per_s``, ``baseline_packets_per_s``,
    ``syscalls_per_packet``, ``baseline_syscalls_per_packet``, ``wake_latency_us``
    (``p50``, ``p99``; ``baseline_wake_latency_us`` the same for the eventfd reader),
    ``idle_worker_cpu_percent`` (the busiest idle worker), ``wait_mode``, ``speedup`` and
    the detail of each mode under ``"modes"``.
    """
    result: dict = {"packets": packets, "workers": workers, "batch": batch, "flows": flows,
                    "nslots": nslots, "spin_us": spin_us, "sleep_ms": sleep_ms,
                    "cpus": os.cpu_count(), "modes": {}}
    with FrameSet.udp_flows(packets, flows, seed=seed) as fs:
        for mode in ("futex", "eventfd"):
            with RpsDriver(workers, mode=mode, nslots=nslots, spin_us=spin_us,
                           sleep_ms=sleep_ms, verify=True) as drv:
                load = _phase_load(drv, fs, batch)
                paced = _phase_paced(drv, fs, paced_batches, 1, pace_us)
                idle = _phase_idle(drv, idle_s)
                result["modes"][mode] = {"load": load, "wake_latency_us": paced,
                                         "idle_worker_cpu_percent": idle,
                                         "wait_mode": drv.wait_mode if mode == "futex"
                                         else "eventfd"}
    bypass, base = result["modes"]["futex"], result["modes"]["eventfd"]
    result.update({
        "packets_per_s": bypass["load"]["packets_per_s"],
        "baseline_packets_per_s": base["load"]["packets_per_s"],
        "speedup": bypass["load"]["packets_per_s"] / base["load"]["packets_per_s"],
        "syscalls_per_packet": bypass["load"]["syscalls_per_packet"],
        "baseline_syscalls_per_packet": base["load"]["syscalls_per_packet"],
        "wake_latency_us": {k: bypass["wake_latency_us"][k] for k in ("p50", "p99")},
        "baseline_wake_latency_us": {k: base["wake_latency_us"][k] for k in ("p50", "p99")},
        "idle_worker_cpu_percent": max(bypass["idle_worker_cpu_percent"]),
        "baseline_idle_worker_cpu_percent": max(base["idle_worker_cpu_percent"]),
        "wait_mode": bypass["wait_mode"],
        "drops": {m: result["modes"][m]["load"]["drops_ring_full"] for m in result["modes"]},
        "voluntary_ctxt_switches": {m: result["modes"][m]["load"]["voluntary_ctxt_switches"]
                                    for m in result["modes"]},
    })
    return result


if __name__ == "__main__":
    import json
    print(json.dumps(bench_rps(), indent=2))
