"""The RPS part of ``hetnic bench host``: steering by system-call bypass against an eventfd
baseline, on the same frames in the same run.

Frames (64-byte IPv4/UDP from a few thousand flows, with the NIC's Toeplitz hash) are
generated ahead into shared memory: the simulated NIC is far too slow to load the path.
For each mode (``"futex"``: the bypass; ``"eventfd"``: the baseline) a fresh
:class:`~hetnic.host.rps.RpsDriver` with its worker processes runs three phases:

load
    the driver steers every frame in a closed loop (``wait_full``: at a full ring it sleeps
    on the ring's producer futex until the worker has taken half, instead of dropping), then
    the workers drain their rings. ``packets_per_s`` is the frames forwarded over that wall
    time: the loss-free forwarding rate. An open loop (drops) was tried first and rejected:
    on a 2-core host the driver then burns a whole core producing drops and the rate
    measures the scheduler. ``syscalls_per_packet`` counts the native helper's system calls
    in the driver and the workers during the phase, per frame forwarded (the producer
    futex sleeps and wakes included).
paced
    one batch every ``pace_us``, slower than the workers take it, so that they fall asleep
    between batches: the wake latency (the driver's publish into the ring of a waiting
    worker to the worker running, CLOCK_MONOTONIC) p50/p99.
idle
    nothing for ``idle_s``: each worker's CPU time (``/proc/PID/stat``) over the wall time.
alone (the ceiling)
    the work itself, with nothing else of the path running: a third driver steers one
    ring's worth of frames into the rings of stopped workers (SIGSTOP), then each worker
    in turn takes its ring while the others are idle, 40 rounds. From the low decile of
    the driver's time per packet (its steering loop's own clock, ``drive_ns``) and a
    worker's (from its first published batch to its last), :func:`ceiling` gives the most packets/s
    the host's CPUs could carry through this path (one CPU per process at most, all of
    them together the host's CPUs), whatever the waiting: ``ceiling_packets_per_s``, and
    ``ceiling_over_baseline``, the most any bypass could gain over the baseline measured
    in the same run. The rounds are short and timed from outside, so it is an estimate;
    the low decile makes it err high. A run whose rounds are too small to time a worker
    (512 frames after its first batch) reports ``None`` and a ``note``.

Driver + 2 workers are 3 processes; the host this was tuned on has 2 cores (shared with
other work, so the numbers vary from run to run: the rounds are in the result). A worker
spins (``pause``) on an empty ring before it sleeps, up to ``spin_us`` = 10 us: a batch of
32 takes the driver about a microsecond, so a spin bridges the gaps between batches. The
budget adapts: halved (down to 2 us) after a spin that ended in a sleep, doubled after one
that found frames. With 3 processes on 2 cores the scheduler often puts a worker on the
driver's CPU, where spinning only delays the driver, and the driver bounds the rate. On the
VM of session 12 (system calls of 70-110 ns), two sweeps, batch 32: 5 us 38.2 and 38.0 M
packets/s, 10 us 37.1 and 37.3, 20 us 36.0 and 35.1, 50 us 31.2 and 32.0, 100 us 26.6 and
25.8, the baseline 22-24 throughout, system calls per packet 0.0005-0.0035 at every budget.
(An earlier VM, where 100 us was chosen, measured 500 us and more worse and 10 us with many
more sleeps.) After an idle timeout (the futex wait's ``sleep_ms``, there for the
heartbeat) a worker sleeps again without spinning, so an idle worker costs next to no CPU.
Rings of 4096 slots, so a producer sleep covers 2048 frames. Pinning the driver and the
workers to cores was tried and measured worse on this shared host; nothing is pinned.

Where the time goes (``perf record`` of the three processes during the load phase, a
shared host at load 10-15, so shares rather than rates): the driver's own time is its
steering loop and the 64-byte copies; each worker's was about half in the IPv4 step, and
there in the header checksum loop (byte by byte, through the PLT: the exported
``hn_forward_ipv4`` cannot be inlined in a shared library). The work of the three
processes per packet (driver 16-19 ns alone, workers 25-32 ns alone) adds up to about one
of the two cores at the rates measured: the rest goes to where the scheduler puts three
processes on two cores, and to the spinning and sleeping that follow.

Tried and measured, not kept as the default. The A/B comparisons ran interleaved in one
process with fresh worker processes each round (the scheduler's placement of a set of
workers sticks, and differs from set to set), ``nice -20`` for all three processes, on the
shared host at load 9-15; 1 M packets a round, batch 32. What they show: whatever gives the
driver more CPU or less work per packet speeds the baseline up at least as much as the
bypass, since the baseline is bound by its driver (its eventfd writes and wake-ups).

* An inlined IPv4 step summing the header as 32-bit words (the same check, RFC 1071):
  worker CPU per packet with the workers draining full rings alone, the frames cold
  (medians of 6, two runs each): 27.8 and 31.6 ns with the byte loop, 24.7 and 24.8 ns
  with it. In the closed loop it showed no gain: in one process (old and new helper side
  by side, 6-8 rounds, load 7-15) bypass medians 9.6 -> 6.7, 12.2 -> 12.8, 9.7 -> 14.3 M
  packets/s; whole benches taking turns with the old code (8 each, load 8-15) 10.1
  against 6.1, with more system calls per packet (0.0015-0.0029 against 0.0023-0.0049: a
  worker that empties its ring sooner sleeps more, and each sleep costs the driver a
  wake). Reverted. (Benches taking turns after the revert, 2 each at load 7-8, still gave
  10.5 and 7.9 against 11.7 and 10.2, and 0.0023-0.0035 system calls per packet against
  0.0019: the load moves these figures more than the code does.)
* Workers at a higher niceness (``worker_nice=5``, both modes), so that a driver sharing a
  CPU with a worker gets it first (as a NIC driver's receive work outranks the threads it
  feeds) instead of waiting while the worker spins. The three processes' work per packet
  (driver 16-19 ns, workers 25-30 ns alone) is far less than two cores' worth at the
  measured rates: the time goes to the placement, not to the work. Medians of 8 rounds:
  bypass 12.0 -> 14.2 M packets/s (+19 %), baseline 3.17 -> 4.62 (+46 %): the ratio
  3.8x -> 3.1x. (Another run of 6: bypass 12.2 -> 17.1 with the old worker code.)

* Descriptors instead of copies (``zero_copy=True``; :class:`~hetnic.host.rps.RpsDriver`'s
  ``pool``): the driver writes a 16-byte descriptor (four to a cache line) and the
  worker forwards the frame in place, as a real RPS passes buffers. Driver alone (the
  workers stopped): 16-19 -> 8.5-10 ns per packet. But the worker now takes the frame
  from memory, not from the line the driver just wrote: 36-45 ns per packet in the
  isolated drain of the first item (a prefetch 8 descriptors ahead brought the stall on its first
  touch from 40 % of the worker's samples to 7 %). The total CPU per packet is about the
  same, and the gain goes to the side bound by its driver. Whole benches (1 M packets,
  3 rounds) in separate processes, the old code and this one with descriptors taking
  turns, 10 each (load 10-15): baseline medians 1.8 -> 2.3 M packets/s, bypass 9.1 ->
  8.6, ratio 5.1x -> 3.5x. Session 12 (quiet, spin budget 10 us, batch 32): bypass 35.6,
  baseline 38.8 M packets/s with descriptors, against 38.2 and 23.6 with copies.
* Workers that yield the CPU (``sched_yield``) when they spin on an empty ring while the
  driver is producing on their CPU (the driver tagged each ring with its CPU): yields were
  rare (0-30 per million packets unpinned), and with the driver and one worker pinned to
  one CPU (the case it is for) 6.5 against 6.25 M packets/s, while the driver's sleeps for
  room rose (150 -> 700-2,200 per million packets; 0.0009-0.0017 -> 0.0018-0.0045 system
  calls per packet). Removed.
* The driver prefetching the next ring line for writing (its stores to lines the worker
  read are ~40 % of its samples with descriptors): more driver samples, not fewer.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from .host.rps import RpsDriver, RpsError
from .host.rps_frames import FrameSet

__all__ = ["bench_rps", "ceiling"]


def _batch_summary(runs: dict[str, list[dict]]) -> dict:
    """Medians and system calls of one batch size's load rounds, bypass against baseline."""
    out = {}
    for mode, key in (("futex", ""), ("eventfd", "baseline_")):
        forwarded = sum(run["forwarded"] for run in runs[mode])
        out[f"{key}packets_per_s"] = _median([run["packets_per_s"] for run in runs[mode]])
        out[f"{key}syscalls_per_packet"] = (sum(run["syscalls"] for run in runs[mode])
                                            / max(forwarded, 1))
    out["speedup"] = out["packets_per_s"] / out["baseline_packets_per_s"]
    return out


def _phase_load(drv: RpsDriver, fs: FrameSet, batch: int) -> dict:
    before = drv.stats()
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    drv.steer(fs.data, fs.lens, fs.hashes, batch=batch, wait_full=True)
    driver_cpu = time.thread_time() - cpu0
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
        # the driver's CPU while it steered: a share near 1 means the rate is bound by it
        "driver_cpu_share": driver_cpu / t_offered,
        "driver_cpu_ns_per_packet": driver_cpu * 1e9 / len(fs),
        "forwarded": forwarded,
        "drops_ring_full": after.drop_full - before.drop_full,
        "drops_worker_dead": after.drop_dead - before.drop_dead,
        "order_errors": after.order_errors,
        "syscalls": syscalls,
        "syscalls_per_packet": syscalls / max(forwarded, 1),
        "voluntary_ctxt_switches": [
            (a or 0) - (b or 0) for a, b in zip(after.voluntary_ctxt_switches,
                                                before.voluntary_ctxt_switches)],
        "worker_syscalls": [a - b for a, b in zip(after.syscalls_workers,
                                                  before.syscalls_workers)],
        "drained": drained,
    }


#: Voluntary context switches a worker may have beyond its system calls: the few it may
#: make outside its loop while the phase starts or ends, and its syscall counter's lag (it
#: publishes the count after each sleep, so a sleep in progress is not counted yet).
_SWITCH_SLACK = 10


def _switches_check(switches: list[int], syscalls: list[int]) -> dict:
    """Check each worker's voluntary context switches against its system calls: in its
    loop a worker blocks only inside a system call (futex wait, eventfd read), so every
    voluntary switch needs one; more switches than syscalls (+ slack) means the syscall
    count misses some (a blocking call made outside the counted helper)."""
    ok = [v <= c + _SWITCH_SLACK + c // 100 for v, c in zip(switches, syscalls)]
    return {"ok": all(ok), "per_worker": ok, "voluntary_ctxt_switches": switches,
            "worker_syscalls": syscalls, "slack": f"{_SWITCH_SLACK} + 1%"}


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


def ceiling(driver_ns: float, worker_ns: float, workers: int, cpus: int) -> float:
    """The most packets/s ``cpus`` CPUs can carry through one driver and ``workers`` workers
    when the driver takes ``driver_ns`` of CPU per packet and a worker ``worker_ns``: one
    driver is one CPU at most, each worker one CPU, and all of them together ``cpus``."""
    return min(1e9 / driver_ns, workers * 1e9 / worker_ns,
               cpus * 1e9 / (driver_ns + worker_ns))


def _wait_stopped(drv: RpsDriver, timeout: float = 10.0) -> None:
    """Wait until every worker shows the stopped state (SIGSTOP is delivered
    asynchronously); one that is gone will not run either."""
    deadline = time.monotonic() + timeout
    while any(state not in (None, "T", "t") for state in drv.worker_states()):
        if time.monotonic() > deadline:
            raise RpsError(f"the workers did not stop within {timeout} s")
        time.sleep(0.0005)


def _worker_alone_ns(drv: RpsDriver, w: int, target: int, timeout: float = 60.0) -> float:
    """Let stopped worker ``w`` run (SIGCONT) until it has forwarded ``target`` frames in
    all; CPU per packet over what it forwarded after its first published batch (so its
    wake-up is not counted)."""
    start = drv.forwarded(w)
    if target - start <= 1:
        return float("nan")             # nothing (or one frame) to time
    os.kill(drv.pids[w], signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while (first := drv.forwarded(w)) == start:
        if time.monotonic() > deadline:
            raise RpsError(f"worker {w} forwarded nothing within {timeout} s")
    t0 = time.perf_counter()
    while drv.forwarded(w) < target:
        if time.monotonic() > deadline:
            raise RpsError(f"worker {w} did not take its ring within {timeout} s")
    elapsed = time.perf_counter() - t0
    # fewer frames than this after the first batch: too short to time from outside
    return elapsed * 1e9 / (target - first) if target - first >= 512 else float("nan")


def _phase_alone(fs: FrameSet, workers: int, batch: int, common: dict, zero_copy: bool,
                 rounds: int = 40) -> dict:
    """The work alone (module doc, "alone"). Each round: the driver steers one ring's
    worth of frames (``nslots``, the next ones of the frame set: as cold as in the load
    phase) into the rings of stopped workers (SIGSTOP), then each worker in turn takes its
    ring while the driver and the other workers are idle. The low decile over ``rounds``
    (errs towards a high ceiling)."""
    nslots = common["nslots"]
    n = min(len(fs), nslots)
    driver_ns: list[float] = []
    worker_ns: list[float] = []
    with RpsDriver(workers, mode="futex", pool=fs.segment if zero_copy else None,
                   **dict(common, dead_after=60.0)) as drv:
        first = -n
        for r in range(rounds + 1):     # round 0 faults the rings in: not counted
            first += n
            if first + n > len(fs):
                fs.renumber()           # the frame set wraps: keep per-flow order rising
                first = 0
            data, lens, hashes = (fs.data[first:first + n], fs.lens[first:first + n],
                                  fs.hashes[first:first + n])
            try:
                for pid in drv.pids:
                    os.kill(pid, signal.SIGSTOP)
                _wait_stopped(drv)
                drive_ns = drv.stats().drive_ns
                steered = drv.steer(data, lens, hashes, batch=batch)
                if steered != n:
                    raise RpsError(f"the driver alone steered {steered} of {n} frames")
                st = drv.stats()
                elapsed_ns = st.drive_ns - drive_ns     # the loop's own clock: no wrapper
                took = [_worker_alone_ns(drv, w, f + k)
                        for w, (f, k) in enumerate(zip(st.forwarded, st.in_rings))]
            finally:
                for pid in drv.pids:
                    os.kill(pid, signal.SIGCONT)
            if r:
                driver_ns.append(elapsed_ns / n)
                worker_ns.extend(t for t in took if t == t)
            if not drv.drain(60):
                raise RpsError("a worker did not empty its ring within 60 s")
        st = drv.stats()
        if st.order_errors or st.csum_errors or st.drop_full or st.deaths:
            raise RpsError(f"the work-alone passes went wrong: {st.order_errors} order errors,"
                           f" {st.csum_errors} checksum errors, {st.drop_full} drops, "
                           f"{st.deaths} deaths")
    fs.renumber()
    cpus = len(os.sched_getaffinity(0))
    out = {"frames_per_round": n, "rounds": rounds, "cpus": cpus,
           "driver_ns_per_packet": None, "worker_ns_per_packet": None,
           "ceiling_packets_per_s": None}
    if not worker_ns:
        return dict(out, note="too few frames a round to time a worker (512 after its "
                               "first batch of 64 are needed)")
    d, wk = float(np.percentile(driver_ns, 10)), float(np.percentile(worker_ns, 10))
    return dict(out, driver_ns_per_packet=d, worker_ns_per_packet=wk,
                ceiling_packets_per_s=ceiling(d, wk, workers, cpus))


def _median(values: list[float]) -> float:
    return float(np.median(values))


def bench_rps(packets: int = 2_000_000, workers: int = 2, batch: int = 32, *,
              rounds: int = 5, flows: int = 4096, nslots: int = 4096,
              spin_us: float = 10.0, sleep_ms: float = 10.0, paced_batches: int = 400,
              pace_us: float = 1000.0, idle_s: float = 1.0, dead_after: float = 2.0,
              seed: int = 0, batch_sweep: tuple[int, ...] = (8,),
              zero_copy: bool = False, worker_nice: int = 0) -> dict:
    """Measure RPS by system-call bypass against the eventfd baseline (see the module doc).

    The load phase runs ``rounds`` times per mode, the modes alternating (the order swapped
    every round) on the same frames, renumbered between passes so that per-flow order is
    still checked; the rates are the medians of the rounds.

    Returns a dict with ``packets_per_s``, ``baseline_packets_per_s``, ``speedup``,
    ``syscalls_per_packet``, ``baseline_syscalls_per_packet`` (over all rounds),
    ``wake_latency_us`` (``p50``, ``p99``; ``baseline_wake_latency_us`` the same for the
    eventfd reader), ``idle_worker_cpu_percent`` (the busiest idle worker), ``wait_mode``,
    ``drops``, ``order_errors``, ``voluntary_ctxt_switches`` (per worker, load phases),
    ``ctxt_switches_within_syscalls`` (per mode: every worker's voluntary context switches
    are at most its counted system calls plus a slack, the figures under each mode's
    ``ctxt_switches_vs_syscalls``) and each mode's detail under ``"modes"``.
    Each mode's ``driver_cpu_share`` and ``driver_cpu_ns_per_packet`` (medians of the
    load rounds) are the driver thread's CPU time while it steered, over the wall time and
    per packet: a share near 1 is a rate bound by the driver.
    ``work_alone`` holds the driver's and a worker's time per packet with nothing else
    running and the ``ceiling_packets_per_s`` they allow on this host's CPUs;
    ``ceiling_over_baseline`` is that ceiling over the baseline's rate (module doc, "alone").
    ``by_batch`` repeats the load phase (same rounds, same alternation) at each batch of
    ``batch_sweep`` besides ``batch``: the baseline pays its system calls per batch, so
    the ratio depends on the batch, and the result shows how. ``dead_after`` is the
    workers' heartbeat limit, longer than the driver's default so that a worker the shared
    host stalls for a while is not declared dead in the middle of a measurement
    (``deaths`` says if one was).
    ``zero_copy`` (both modes alike) passes descriptors of the frames in the frame set's
    shared segment through rings of 16-byte slots instead of copying each frame into a
    128-byte slot (see the module doc for why copying stays the default); ``handoff`` in
    the result says which ran. ``worker_nice`` is both modes' workers' niceness
    (:class:`~hetnic.host.rps.RpsDriver`; see the module doc).
    """
    result: dict = {"packets": packets, "workers": workers, "batch": batch, "rounds": rounds,
                    "flows": flows, "nslots": nslots, "spin_us": spin_us,
                    "sleep_ms": sleep_ms, "dead_after": dead_after, "cpus": os.cpu_count(),
                    "handoff": "descriptor" if zero_copy else "copy",
                    "worker_nice": worker_nice,
                    "load_average": list(os.getloadavg()), "modes": {}}
    modes = ("futex", "eventfd")
    common = {"nslots": nslots, "spin_us": spin_us, "sleep_ms": sleep_ms,
              "dead_after": dead_after, "slot_size": 16 if zero_copy else 128,
              "worker_nice": worker_nice}
    with FrameSet.udp_flows(packets, flows, seed=seed) as fs, \
            RpsDriver(workers, mode="futex", pool=fs.segment if zero_copy else None,
                      **common) as bypass, \
            RpsDriver(workers, mode="eventfd", pool=fs.segment if zero_copy else None,
                      **common) as baseline:
        drivers = {"futex": bypass, "eventfd": baseline}
        loads: dict[str, list[dict]] = {m: [] for m in modes}
        for r in range(rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                loads[mode].append(_phase_load(drivers[mode], fs, batch))
                fs.renumber()
        for mode in modes:
            drv, runs = drivers[mode], loads[mode]
            forwarded = sum(run["forwarded"] for run in runs)
            st = drv.stats()
            result["modes"][mode] = {
                "packets_per_s": _median([run["packets_per_s"] for run in runs]),
                "rounds_packets_per_s": [run["packets_per_s"] for run in runs],
                "syscalls_per_packet": sum(run["syscalls"] for run in runs) / max(forwarded, 1),
                "forwarded": forwarded,
                "drops": st.drop_full + st.drop_dead,
                "deaths": st.deaths,
                "lost": st.lost,
                "order_errors": st.order_errors,
                "csum_errors": st.csum_errors,
                "voluntary_ctxt_switches": [sum(c) for c in zip(
                    *(run["voluntary_ctxt_switches"] for run in runs))],
                "ctxt_switches_vs_syscalls": _switches_check(
                    [sum(c) for c in zip(*(run["voluntary_ctxt_switches"] for run in runs))],
                    [sum(c) for c in zip(*(run["worker_syscalls"] for run in runs))]),
                "all_drained": all(run["drained"] for run in runs),
                "driver_cpu_share": _median([run["driver_cpu_share"] for run in runs]),
                "driver_cpu_ns_per_packet": _median([run["driver_cpu_ns_per_packet"]
                                                     for run in runs]),
            }
        by_batch = {batch: {m: loads[m] for m in modes}}
        for b in batch_sweep:
            if b == batch:
                continue
            by_batch[b] = {m: [] for m in modes}
            for r in range(rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    by_batch[b][mode].append(_phase_load(drivers[mode], fs, b))
                    fs.renumber()
        result["by_batch"] = {str(b): _batch_summary(runs) for b, runs in sorted(by_batch.items())}
        for mode in modes:
            drv = drivers[mode]
            result["modes"][mode]["wake_latency_us"] = _phase_paced(drv, fs, paced_batches, 1,
                                                                   pace_us)
            fs.renumber()
        for mode in modes:
            result["modes"][mode]["idle_worker_cpu_percent"] = _phase_idle(drivers[mode],
                                                                           idle_s)
        wait_mode = bypass.wait_mode
        result["work_alone"] = _phase_alone(fs, workers, batch, common, zero_copy)
    result["load_average_end"] = list(os.getloadavg())
    fast, base = result["modes"]["futex"], result["modes"]["eventfd"]
    result.update({
        "packets_per_s": fast["packets_per_s"],
        "baseline_packets_per_s": base["packets_per_s"],
        "speedup": fast["packets_per_s"] / base["packets_per_s"],
        "syscalls_per_packet": fast["syscalls_per_packet"],
        "baseline_syscalls_per_packet": base["syscalls_per_packet"],
        "wake_latency_us": {k: fast["wake_latency_us"][k] for k in ("p50", "p99")},
        "baseline_wake_latency_us": {k: base["wake_latency_us"][k] for k in ("p50", "p99")},
        "idle_worker_cpu_percent": max(fast["idle_worker_cpu_percent"]),
        "baseline_idle_worker_cpu_percent": max(base["idle_worker_cpu_percent"]),
        "wait_mode": wait_mode,
        "ceiling_packets_per_s": result["work_alone"]["ceiling_packets_per_s"],
        "ceiling_over_baseline": (result["work_alone"]["ceiling_packets_per_s"]
                                  / base["packets_per_s"]
                                  if result["work_alone"]["ceiling_packets_per_s"] else None),
        "drops": {m: result["modes"][m]["drops"] for m in modes},
        "order_errors": {m: result["modes"][m]["order_errors"] for m in modes},
        "deaths": {m: result["modes"][m]["deaths"] for m in modes},
        "voluntary_ctxt_switches": {m: result["modes"][m]["voluntary_ctxt_switches"]
                                    for m in modes},
        "ctxt_switches_within_syscalls": {
            m: result["modes"][m]["ctxt_switches_vs_syscalls"]["ok"] for m in modes},
    })
    return result


if __name__ == "__main__":
    import json
    print(json.dumps(bench_rps(), indent=2))
