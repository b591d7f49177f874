"""The W/N benchmark (the ``wn`` part of ``hetnic bench host``): requests/s with N = 1 and
N = 2 stack processes.

:func:`bench_wn` returns one dict: requests/s with N = 1 and N = 2 on request frames
generated ahead into shared-memory rings (:func:`requests_per_s`), trials alternating, each
count the median of its trials; the accept spread over the N's for 10,000 kernel connections
through the shared simulated NIC (:func:`~hetnic.bench_wn_runs.accept_spread`), and the
connections lost when a W exits mid-run (:func:`~hetnic.bench_wn_runs.w_exit_run`).

The software wire (:class:`~hetnic.bench_wn_wire.RssWire`), the echo W
(:func:`~hetnic.bench_wn_wire.echo_w`) and the request frames live in
:mod:`hetnic.bench_wn_wire`; this module re-exports the names tests and scripts use.
"""

from __future__ import annotations

import os
import statistics
import time

from .bench_wn_runs import accept_spread, w_exit_run
from .bench_wn_wire import (MTU, PORT, REQUEST, SERVER_IP, SERVER_MAC, RssWire,
                            check_responses, client_stack, echo_w, payload_len, ports_per_n,
                            pump, request_frames, rss_index, server_config)

__all__ = ["RssWire", "rss_index", "echo_w", "requests_per_s", "w_exit_run", "accept_spread",
           "busy_processes", "bench_wn"]

#: Seconds between two looks of the benchmark's process at the out rings while the N's
#: answer (it sleeps in between: the cores stay with the N's and W's; the end of the run is
#: the N's own stamp of their last frames out).
WATCH_INTERVAL = 0.02
#: Bytes of a slot of the W/N rings in the requests/s runs.
W_SLOT = 256


def requests_per_s(n_count: int, *, w_count: int | None = None, conns_per_n: int = 16,
                   rounds: int = 200, pin_ws: bool = True, timeout: float = 120.0) -> dict:
    """Requests/s of ``n_count`` N's on request frames generated ahead into their wire
    rings (64-byte requests echoed by ``w_count`` echo W's, one per N by default); see
    :func:`bench_wn`.

    ``pin_ws``: W ``j`` runs on CPU ``j`` (modulo the CPUs this process may use), so that
    the W's work is spread evenly over the cores; the N's are placed by the scheduler. (A
    W left to the scheduler stays on the core it woke on: with one W and two N's, the N
    beside it had its own work and all the W's, and the run ended with the other core
    idle.)

    The result's ``cpu_seconds`` (and the CPU per request) count each process's CPU from
    the N's release to the first look after the last response that saw no new frame
    (within ``WATCH_INTERVAL`` of it); ``watcher_cpu_seconds`` is this process's own over
    the same time.

    The request frames, written before any response exists, acknowledge no response (an
    ACK of data not yet sent makes the N drop the segment, RFC 9293 3.10.7.4); the N's
    instance has an initial window of 1000 segments and a 5 s minimum RTO instead, so its
    sender neither stalls nor retransmits during the run, and a connection's responses
    must fit the client's unscaled 64 KiB window: ``rounds`` at most 1023."""
    from .host.wn_host import WnHost
    if not 1 <= rounds <= 65535 // REQUEST:
        raise ValueError(f"rounds must be 1..{65535 // REQUEST} (a connection's responses "
                         f"fit the client's 64 KiB window), not {rounds!r}")
    total = n_count * conns_per_n * rounds
    w_count = n_count if w_count is None else w_count
    # A slot takes a whole frame. Out, the N's coalesce responses into segments up to the
    # MSS (an MTU of MTU keeps them in 1 KiB slots) and ACK every second request: the out
    # rings have room for two frames per request, so a drain late under load drops none.
    slots = 1 << max(10, (conns_per_n * (rounds + 4)).bit_length())
    # The W/N rings carry 64-byte requests and their echoes: 256-byte slots (an event or
    # command of up to 244 bytes; more is split) keep each ring at 1 MiB, not the 8 MiB of
    # the default 2 KiB slots, whose every message touched a new cache line and half a page.
    with WnHost(n_count, w_count, wire=(slots, 256, 2 * slots, 1024), ring_slots=4096,
                slot_size=W_SLOT, table_slots=1024) as host:
        for n in range(n_count):
            host.start_n(n, server_config(f"n{n}"),
                         dict(mac=SERVER_MAC, ipv4=[(SERVER_IP, 24)], mtu=MTU))
        cpus = sorted(os.sched_getaffinity(0))
        pinned = pin_ws
        for w in range(w_count):
            proc = host.start_w(w, echo_w, PORT)
            if pin_ws:
                try:
                    os.sched_setaffinity(proc.pid, {cpus[w % len(cpus)]})
                except OSError:
                    pinned = False          # (reported: ws_pinned)
        host.wait_ready()
        wire = RssWire(host)
        client = client_stack()
        socks = []
        for port in ports_per_n(wire, n_count, conns_per_n):
            s = client.tcp_socket()
            s.bind(("", port))
            s.connect((SERVER_IP, PORT))
            socks.append(s)
        end = time.monotonic() + timeout
        want = n_count * conns_per_n
        while not (all(s.connected for s in socks)
                   and sum(r["state"] == "OPEN" for r in host.dump()) == want):
            if time.monotonic() > end:
                raise TimeoutError("the connections were not set up in time")
            pump(client, wire)
            time.sleep(0.0005)
        time.sleep(0.3)                      # let the last ACKs and window updates settle
        wire.receive()
        frames, expect = request_frames(socks, rounds)
        steer = rss_index(frames, len(wire.reta), wire.key)
        per_n = [[f for f, i in zip(frames, steer) if wire.reta[i] == n]
                 for n in range(n_count)]
        rings_in = [host.wire_in(n) for n in range(n_count)]
        got: list[bytes] = []
        want_bytes = total * REQUEST
        received = 0
        host.layout.hold = True               # the N's take no frame until the clock starts
        for n, ring in enumerate(rings_in):
            if ring.push_many([(f, 0) for f in per_n[n]]) != len(per_n[n]):
                raise RuntimeError(f"N {n}'s wire ring is too small for the run")
        procs = {f"n{n}": p.pid for n, p in host.n_procs.items()}
        procs.update({f"w{w}": p.pid for w, p in host.w_procs.items()})
        procs["watcher"] = os.getpid()
        cpu0 = {k: _cpu_seconds(pid) for k, pid in procs.items()}
        cpu1: dict[str, float] = {}
        start = time.monotonic()
        host.layout.hold = False
        # While frames come out this process looks at the out rings' producer indices every
        # WATCH_INTERVAL and sleeps in between (the rings hold every frame of the run): the
        # cores stay with the N's and W's. It reads the frames once the rings were quiet for
        # a look, and stops once every response byte is out (or after 5 s of quiet). The
        # clock stops at the last frames out: each N stamps the time (monotonic, the clock
        # of ``start``) it last sent frames in its peer entry.
        rings_out = [host.wire_out(n) for n in range(n_count)]
        layout = host.layout
        last = start
        seen = [0] * n_count
        while received < want_bytes:
            time.sleep(WATCH_INTERVAL)
            produced = [r.producer_index for r in rings_out]
            now = time.monotonic()
            if produced != seen:
                seen, last = produced, now
                cpu1 = {}
                continue
            if not cpu1:                    # the first quiet look (maybe the end)
                cpu1 = {k: _cpu_seconds(pid) - cpu0[k] for k, pid in procs.items()}
            batch = wire.receive(1 << 20)
            got += batch
            received += sum(payload_len(f) for f in batch)
            if now - last > 5.0 or now > start + timeout:
                break
        n_last = [layout.n_last_out(n) for n in range(n_count)]
        elapsed = max(n_last) - start
        exact, missing = check_responses(got, expect)
        accepts = [c["accepts"] for c in host.counters()]
        cpu = cpu1 or {k: _cpu_seconds(pid) - cpu0[k] for k, pid in procs.items()}
        watcher = cpu.pop("watcher")
        frames_out = len(got)
    n_cpu = sum(v for k, v in cpu.items() if k[0] == "n")
    w_cpu = sum(v for k, v in cpu.items() if k[0] == "w")
    n_us, w_us = n_cpu / total * 1e6, w_cpu / total * 1e6
    return {"requests": total, "responses_exact": exact, "bytes_missing": missing,
            "seconds": round(elapsed, 4),
            "seconds_per_n": [round(max(0.0, t - start), 4) for t in n_last],
            "requests_per_s": round(exact / elapsed) if elapsed > 0 else 0,
            "connections": n_count * conns_per_n, "w_count": w_count,
            "accepts_per_n": accepts, "frames_out": frames_out,
            "cpu_seconds": {k: round(v, 4) for k, v in cpu.items()},
            "watcher_cpu_seconds": round(watcher, 4), "ws_pinned": pinned,
            "n_cpu_us_per_request": round(n_us, 2), "w_cpu_us_per_request": round(w_us, 2),
            # With every process on 2 cores, N = 2 over N = 1 is at most 2n / (n + w): N = 1
            # is bound by one N's CPU per request (its W has the other core), N = 2 by the
            # CPU of two requests, one per N, plus their W's on both cores.
            "bound_n2_over_n1": round(2 * n_us / (n_us + w_us), 3) if n_us else None,
            "load_1min": round(os.getloadavg()[0], 2)}


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of process ``pid`` so far (its main thread's time on a CPU, in ns from
    /proc/PID/schedstat; user + system from /proc/PID/stat in clock ticks without it; 0 if
    it is gone)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reference_loop_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop in this process: how fast a core is
    right now (a virtual machine's cores slow down when the host is busy, which the load
    average and the process list do not show)."""
    t0 = time.process_time()
    x, d = 0, {}
    for i in range(200_000):
        x += i * i % 7
        d[i & 1023] = x
    return round((time.process_time() - t0) * 1000, 1)


def busy_processes(window: float = 0.5, min_percent: float = 5.0) -> list[dict]:
    """The processes other than this one (and its children) that used at least
    ``min_percent`` of a core over ``window`` seconds: pid, nice, CPU percent, name and the
    head of the command line (another benchmark running beside this one shows here)."""
    me = os.getpid()

    def sample() -> dict[int, tuple[float, int, int, str]]:
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.find(b"(") + 1:raw.rfind(b")")].decode(errors="replace")
            fields = raw.rsplit(b")", 1)[1].split()
            out[int(name)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[16]),
                              int(fields[1]), comm)
        return out
    first = sample()
    time.sleep(window)
    rows = []
    for pid, (cpu, nice, ppid, comm) in sample().items():
        if pid == me or ppid == me or pid not in first:
            continue
        percent = (cpu - first[pid][0]) / window * 100
        if percent >= min_percent:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = ""
            rows.append({"pid": pid, "nice": nice, "cpu_percent": round(percent),
                         "comm": comm, "cmdline": cmd[:100]})
    rows.sort(key=lambda r: -r["cpu_percent"])
    return rows


# ---------------------------------------------------------------------------------------------

def bench_wn(*, conns_per_n: int = 256, rounds: int = 125, w_count: int | None = None,
             pin_ws: bool = True, trials: int = 5, spread_connections: int = 10_000) -> dict:
    """The ``wn`` part of ``hetnic bench host``.

    * ``requests_per_s_n1`` / ``requests_per_s_n2``: 64-byte requests echoed through 1 and
      2 N processes on request frames generated ahead into their wire rings (no simulated
      NIC in the loop): ``conns_per_n`` connections per N are set up through the rings by a
      client stack, then ``rounds`` requests per connection are written, steered by the
      Toeplitz hash (default key) and a RETA over the N's, with the N's held; the clock runs
      from their release to the last response byte; every response is checked byte-exact
      (only exact ones count). 256 connections of 125 requests per N (32,000 requests
      per N): a connection has less than one request waiting per turn of its W, so each
      response goes out in its own segment (with 64 connections of 500, three or so
      requests of a connection waited per W turn and their responses shared a segment,
      0.3-0.4 frames out per request, more so at N = 1's higher rate per N: the N's work
      per request depended on its own speed). ``w_count`` echo W processes (by default
      one per N), W ``j`` on CPU ``j`` (``pin_ws``; see :func:`requests_per_s`). Each
      count is the median of ``trials`` runs, N = 1 and N = 2 alternating;
      ``requests.all_runs`` lists every run, with its N's and W's CPU per request and the
      bound on N = 2 over N = 1 those imply (``2n / (n + w)``). The host's other load
      varies between runs:
      ``load_average_at_start``, ``busy_processes_at_start``/``_at_end`` and each run's
      ``busy_processes_before`` (other processes using the cores, e.g. another benchmark)
      say what the runs shared the cores with, and each run's ``reference_loop_ms`` (the
      CPU time of a fixed loop just before it) how fast a core was.
    * ``accept_spread_max_over_min``: the busiest N's accepts over the least busy's, for
      ``spread_connections`` connections from the kernel through the NIC to 2 N's.
    * ``connections_lost_on_w_exit``: connections lost when one of 3 W's exits mid-run of
      60 request/response connections (:func:`w_exit_run`).
    """
    load = os.getloadavg()
    busy_start = busy_processes()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for t in range(trials):
        for n in ((1, 2) if t % 2 == 0 else (2, 1)):    # counterbalanced: drift hits both
            busy = busy_processes(0.3)
            speed = _reference_loop_ms()
            run = requests_per_s(n, w_count=w_count, conns_per_n=conns_per_n, rounds=rounds,
                                 pin_ws=pin_ws)
            run["busy_processes_before"] = [f"{b['pid']} nice {b['nice']} {b['cpu_percent']}% "
                                            f"{b['cmdline'][:60]}" for b in busy]
            run["reference_loop_ms"] = speed
            runs[n].append(run)
    busy_end = busy_processes()
    median = {n: statistics.median(r["requests_per_s"] for r in runs[n]) for n in (1, 2)}
    spread = accept_spread(spread_connections) if spread_connections else {"skipped": "0"}
    exit_run = w_exit_run()
    n1, n2 = median[1], median[2]
    keys = ("requests_per_s", "responses_exact", "seconds", "seconds_per_n", "cpu_seconds",
            "watcher_cpu_seconds", "frames_out",
            "n_cpu_us_per_request", "w_cpu_us_per_request", "bound_n2_over_n1", "load_1min",
            "busy_processes_before", "reference_loop_ms")
    return {
        "requests_per_s_n1": round(n1),
        "requests_per_s_n2": round(n2),
        "n2_over_n1": round(n2 / n1, 3) if n1 else None,
        "n2_over_n1_per_trial": [round(b["requests_per_s"] / a["requests_per_s"], 3)
                                 if a["requests_per_s"] else None
                                 for a, b in zip(runs[1], runs[2])],
        "accept_spread_max_over_min": spread.get("accept_spread_max_over_min"),
        "connections_lost_on_w_exit": exit_run["lost"],
        "w_count": {f"n{n}": runs[n][0]["w_count"] for n in (1, 2)},
        "ws_pinned": pin_ws,
        "trials": trials,
        "requests_per_n": conns_per_n * rounds,
        "connections_per_n": conns_per_n,
        "load_average_at_start": [round(x, 2) for x in load],
        "busy_processes_at_start": busy_start,
        "busy_processes_at_end": busy_end,
        "requests": {"all_runs": {f"n{n}": [{k: r[k] for k in keys} for r in runs[n]]
                                  for n in (1, 2)}},
        "accept_spread": spread,
        "w_exit": exit_run,
    }
