"""Receive packet steering by system-call bypass: a driver process steers frames to worker
processes over shared-memory SPSC rings; an idle worker spins, then sleeps on a futex the
driver wakes only when the worker's ``sleeping`` word is set.

The driver (this process) owns one shared segment (layout in
:mod:`hetnic.host.rps_layout`): its block, the steering table, and per worker a block and an
:class:`~hetnic.host.spsc.SpscRing`. The hot loops are in the native helper
(:mod:`hetnic.host.native_lib`): :meth:`RpsDriver.steer` runs ``hn_drive`` (worker =
``table[hash % table_size]``, push, publish once per batch, wake a sleeper; a full ring is a
counted drop, never a wait), each worker process runs ``hn_worker_run`` (pop, decrement the
IPv4 TTL with an incremental checksum update, check per-flow order, count).

Mode ``"futex"`` is the bypass; mode ``"eventfd"`` is the baseline: the worker blocks in
``read()`` on an eventfd the driver writes once per batch.

Liveness: every worker bumps the heartbeat word of its ring (while asleep too: its futex
wait has a timeout). The watch (inside ``hn_drive``, and :meth:`RpsDriver.watch`) kills a
worker whose heartbeat has not moved for ``dead_after`` seconds (SIGKILL, and waits until
it has exited: a worker only stalled must not come back and forward frames already counted
lost), declares it dead, re-points its steering entries to the live workers and counts the
frames it never took as lost. The
watch counts silence only while it runs: when it has not run for ``dead_after / 4`` (the
driver did something else) every worker starts a new observation, so a driver must call
:meth:`~RpsDriver.steer`, :meth:`~RpsDriver.drain` or :meth:`~RpsDriver.watch` at least
that often to detect a death. A flow stays on one worker while that worker lives, so
per-flow order holds.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing import reduction

import numpy as np

from ..errors import HetnicError
from . import native_lib
from .nic_client import die_with_parent, stop_processes
from .rps_layout import DRIVER, LAT_N, MAX_WORKERS, MODES, WORKER
from .shm import SharedSegment
from .spsc import SLOT_HEADER, SpscRing

__all__ = ["RpsDriver", "RpsError", "RpsStats"]

_PAGE = 4096


class RpsError(HetnicError, RuntimeError):
    """Steering could not be set up or used (the message says what to change)."""


def _align(n: int, to: int = _PAGE) -> int:
    return (n + to - 1) // to * to


@dataclass
class RpsStats:
    """Counters of one :class:`RpsDriver` since its start.

    ``lost`` frames were in a worker's ring when it was declared dead; ``drop_full`` frames
    found their worker's ring full (or were longer than a slot); ``drop_dead`` found no live
    worker. ``drive_ns`` is the time spent inside the steering loop (:meth:`RpsDriver.steer`
    without its argument checks; its sleeps for room included). ``syscalls_driver`` counts
    the native helper's calls in this process;
    ``wake_latency_ns`` holds the latest samples (up to 4096 per worker) of the time from
    the driver's publish into the ring of a waiting worker to that worker running.
    """
    packets_in: int
    steered: int
    forwarded: list[int]
    drop_full: int
    drop_dead: int
    lost: int
    stolen: list[int]
    order_errors: int
    csum_errors: int
    not_forwarded: int
    unsequenced: int
    syscalls_driver: int
    syscalls_workers: list[int]
    wakes: int
    full_waits: int
    full_timeouts: int
    drive_ns: int
    sleeps: list[int]
    timeouts: list[int]
    deaths: int
    dead: list[bool]
    in_rings: list[int]
    wake_latency_ns: np.ndarray = field(repr=False)
    voluntary_ctxt_switches: list[int | None] = field(default_factory=list)
    cpu_ticks: list[int | None] = field(default_factory=list)

    @property
    def forwarded_total(self) -> int:
        return sum(self.forwarded)


class _Fd:
    """An fd that travels to a spawned child (duplicated for it by multiprocessing)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup) -> int:
    return dup.detach()


def _worker_main(seg_name: str, lib_path: str, wblock_off: int, ring_off: int, mode: int,
                 efd, sleep_ns: int, pool_name: str | None = None, nice: int = 0) -> None:
    """A worker process: attach the segment (and the frame pool), run the native loop until
    told to stop."""
    fd = efd if isinstance(efd, int) else -1
    die_with_parent()           # hn_worker_init then checks the parent is still there
    if nice:
        os.nice(nice)
    seg = SharedSegment.attach(seg_name)
    pool = SharedSegment.attach(pool_name) if pool_name else None
    anchor = ctypes.c_char.from_buffer(seg.buf)
    pool_anchor = ctypes.c_char.from_buffer(pool.buf) if pool else None
    try:
        base = ctypes.addressof(anchor)
        pool_base = ctypes.addressof(pool_anchor) if pool else None
        lib = native_lib.load(lib_path).lib
        if lib.hn_worker_init(base + wblock_off) != 0:
            return      # the driver is gone already
        rc = lib.hn_worker_run(base + wblock_off, base + ring_off, mode, fd, sleep_ns,
                               pool_base, pool.size if pool else 0)
        if rc != 0:
            raise RpsError(f"the worker loop failed: {os.strerror(-rc)}")
    finally:
        del anchor, pool_anchor
        seg.close()
        if pool:
            pool.close()


def _proc_status(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _proc_cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (``/proc/PID/stat``)."""
    fields = _proc_stat(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


class RpsDriver:
    """The steering driver and its worker processes.

    Parameters
    ----------
    workers : int
        Worker processes (1 to 64).
    mode : str
        ``"futex"`` (spin, then futex sleep; the bypass) or ``"eventfd"`` (the baseline).
    nslots, slot_size : int
        Each worker ring's geometry (a slot holds a frame of ``slot_size - 8`` bytes).
    table_size : int
        Steering table entries; entry ``hash % table_size`` names the worker.
    spin_us : float
        How long at most an idle worker spins (``pause``) before it sleeps (futex mode);
        the budget adapts between 2 us and this (halved after a spin that ended in a sleep,
        doubled after one that found frames), and is skipped after an idle timeout.
    sleep_ms : float
        The futex wait's timeout: a sleeping worker's heartbeat moves at least this often.
    dead_after : float
        Seconds of heartbeat silence after which a worker is declared dead.
    verify : bool
        Workers verify each IPv4 header checksum before forwarding (counted errors).
    pool : SharedSegment, optional
        A shared segment holding frames (e.g. a :class:`~hetnic.host.rps_frames.FrameSet`'s
        ``segment``), mapped by the workers too: :meth:`steer` of frames inside it passes
        each frame's offset in the pool (zero-copy, as a NIC driver passes its receive
        buffers), not the frame; the worker forwards it in place. Frames elsewhere are
        copied into the ring's slots. With a pool, ``slot_size`` 16 (a descriptor) is
        enough.
    worker_nice : int
        Niceness (0 to 19) the worker processes add to their own: a driver that shares a
        CPU with a worker then gets it first (a NIC driver's receive work outranks the
        threads it feeds), instead of waiting while the worker spins on an empty ring.

    The workers start with :meth:`start` (or ``with``); :meth:`close` stops them.
    """

    def __init__(self, workers: int = 2, *, mode: str = "futex", nslots: int = 1024,
                 slot_size: int = 128, table_size: int = 128, spin_us: float = 10.0,
                 sleep_ms: float = 10.0, dead_after: float = 0.5, verify: bool = True,
                 pool: SharedSegment | None = None, worker_nice: int = 0):
        if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            raise RpsError(f"workers must be 1 to {MAX_WORKERS}, not {workers!r}")
        if mode not in MODES:
            raise RpsError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        if not isinstance(table_size, int) or not 1 <= table_size <= 1 << 20:
            raise RpsError(f"table_size must be 1 to 2**20 entries, not {table_size!r}")
        if not 0 < sleep_ms * 1e-3 * 4 <= dead_after or not 0 <= spin_us * 1e-6 * 4 <= dead_after:
            raise RpsError(f"dead_after ({dead_after} s) must be at least 4 times sleep_ms "
                           f"({sleep_ms} ms) and spin_us ({spin_us} us), both positive")
        if (not isinstance(worker_nice, int) or isinstance(worker_nice, bool)
                or not 0 <= worker_nice <= 19):
            raise RpsError(f"worker_nice must be 0 to 19, not {worker_nice!r}")
        if pool is not None and (not isinstance(pool, SharedSegment) or pool.closed):
            what = "a closed one" if isinstance(pool, SharedSegment) else type(pool).__name__
            raise RpsError(f"pool must be an open SharedSegment, not {what}")
        ring_bytes = SpscRing.bytes_needed(nslots, slot_size)
        self.workers = workers
        self._pool = pool
        self._worker_nice = worker_nice
        self._pool_anchor = ctypes.c_char.from_buffer(pool.buf) if pool else None
        self._pool_base = ctypes.addressof(self._pool_anchor) if pool else 0
        #: The longest frame a ring slot holds.
        self.slot_payload = slot_size - SLOT_HEADER
        self.mode = mode
        self._sleep_ns = int(sleep_ms * 1e6)
        self._lib = native_lib.load()
        table_off = _align(DRIVER.size, 64)
        off = _align(table_off + 4 * table_size)
        wblocks, rings = [], []
        for _ in range(workers):
            wblocks.append(off)
            rings.append(_align(off + WORKER.size))
            off = _align(rings[-1] + ring_bytes)
        self._seg = SharedSegment.create(off, prefix="hetnic-rps")
        self._anchor = ctypes.c_char.from_buffer(self._seg.buf)
        self._base = ctypes.addressof(self._anchor)
        self._drv = DRIVER.words(self._seg.buf, 0)
        self._wk = [WORKER.words(self._seg.buf, o) for o in wblocks]
        self._rings = [SpscRing.create(self._seg.buf[o:o + ring_bytes], nslots, slot_size)
                       for o in rings]
        self.steering_table = np.frombuffer(self._seg.buf, np.uint32, table_size, table_off)
        self.steering_table[:] = np.arange(table_size) % workers
        d = DRIVER.index
        self._drv[d("nworkers")] = workers
        self._drv[d("table_size")] = table_size
        self._drv[d("table_off")] = table_off
        self._drv[d("mode")] = MODES[mode]
        self._drv[d("dead_after_ns")] = int(dead_after * 1e9)
        self._efds: list[int] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._wblock_off, self._ring_off = wblocks, rings
        for w in range(workers):
            self._drv[d("ring_off") + w] = rings[w]
            self._drv[d("wblock_off") + w] = wblocks[w]
            self._wk[w][WORKER.index("spin_ns")] = int(spin_us * 1e3)
            self._wk[w][WORKER.index("verify")] = int(verify)
            self._wk[w][WORKER.index("parent_pid")] = os.getpid()
            if mode == "eventfd":
                fd = self._lib.lib.hn_eventfd_new()
                if fd < 0:
                    self.close()
                    raise RpsError(f"eventfd failed: {os.strerror(-fd)}")
                self._efds.append(fd)
                self._drv[d("efd") + w] = fd

    # --- life ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "RpsDriver":
        """Start the worker processes and wait until each runs its loop."""
        if self._procs:
            raise RpsError("the workers are started already")
        ctx = multiprocessing.get_context("spawn")
        for w in range(self.workers):
            efd = _Fd(self._efds[w]) if self._efds else None
            proc = ctx.Process(target=_worker_main, name=f"hetnic-rps-worker{w}", daemon=True,
                               args=(self._seg.name, str(self._lib.path), self._wblock_off[w],
                                     self._ring_off[w], MODES[self.mode], efd, self._sleep_ns,
                                     self._pool.name if self._pool else None,
                                     self._worker_nice))
            proc.start()
            self._procs.append(proc)
        deadline = time.monotonic() + timeout
        started = WORKER.index("started")
        while not all(wk[started] for wk in self._wk):
            dead = [p for p in self._procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                self.close()
                raise RpsError(f"worker {dead[0].name} exited with status {dead[0].exitcode}"
                               if dead else f"the workers did not start within {timeout} s")
            time.sleep(0.005)
        return self

    @property
    def pids(self) -> list[int]:
        """The worker processes' pids."""
        return [p.pid for p in self._procs]

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (join within ``timeout``, then terminate and kill what is left),
        free the segment. Idempotent."""
        if self._seg is None:
            return
        try:
            stop = WORKER.index("stop")
            for w, proc in enumerate(self._procs):
                self._wk[w][stop] = 1
                if proc.is_alive():
                    self._lib.lib.hn_kick(self._base, self._base, w)
        finally:
            stop_processes(self._procs, timeout)
            for fd in self._efds:
                self._lib.lib.hn_close(fd)
            self._efds = []
            for ring in self._rings:
                ring.release()
            self._drv = self._wk = self.steering_table = self._anchor = None
            self._pool_anchor = self._pool = None
            self._rings = []
            seg, self._seg = self._seg, None
            seg.close()

    def __enter__(self) -> "RpsDriver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- steering -----------------------------------------------------------------------
    def steer(self, data: np.ndarray, lens: np.ndarray, hashes: np.ndarray, *,
              batch: int = 32, pace_ns: int = 0, watch_ns: int = 1_000_000,
              wait_full: bool = False) -> int:
        """Steer frames: row ``i`` of ``data`` (uint8, C-contiguous ``(n, stride)``) holds
        frame ``i`` of ``lens[i]`` bytes (uint16) with RSS hash ``hashes[i]`` (uint32).
        Batches of ``batch`` frames, ``pace_ns`` apart when nonzero. Returns the frames
        pushed into a ring (the rest are counted drops). When ``data`` lies in the driver's
        ``pool``, the rings carry each frame's offset there instead of a copy.

        A full ring is a drop, never a wait, unless ``wait_full`` (for benchmarks that
        measure the loss-free rate): then the driver sleeps on the ring's producer futex
        (woken by the worker once it has emptied half the ring, or after 1 ms, when the
        heartbeat watch runs) until the worker makes room or is declared dead."""
        if self._seg is None:
            raise RpsError("the driver is closed")
        if (data.dtype != np.uint8 or data.ndim != 2 or not data.flags.c_contiguous
                or lens.dtype != np.uint16 or hashes.dtype != np.uint32
                or not lens.flags.c_contiguous or not hashes.flags.c_contiguous
                or not len(data) == len(lens) == len(hashes)):
            raise RpsError("steer takes data (n, stride) uint8, lens (n,) uint16 and hashes "
                           "(n,) uint32, C-contiguous and of one length")
        if len(lens) and int(lens.max()) > data.shape[1]:
            raise RpsError(f"a frame length ({int(lens.max())}) exceeds the row stride "
                           f"({data.shape[1]})")
        if not isinstance(batch, int) or not 1 <= batch <= 1 << 20:
            raise RpsError(f"batch must be 1 to 2**20 frames, not {batch!r}")
        if len(lens) == 0:
            return 0
        return self._lib.lib.hn_drive(self._base, self._base, data.ctypes.data, data.shape[1],
                                      lens.ctypes.data, hashes.ctypes.data, len(lens), batch,
                                      pace_ns, watch_ns, int(wait_full), self._pool_ref(data))

    def _pool_ref(self, data: np.ndarray) -> int:
        """The offset of ``data`` in the pool when all of it lies there, else -1 (copy)."""
        if self._pool is None or self._pool.closed:
            return -1
        start = data.ctypes.data - self._pool_base
        return start if 0 <= start and start + data.nbytes <= self._pool.size else -1

    def watch(self) -> int:
        """Run the heartbeat watch once; the number of workers it declared dead."""
        return self._lib.lib.hn_watch(self._base, self._base)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every live worker's ring is empty (running the watch meanwhile);
        False if ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            self.watch()
            dead = self._dead()
            if all(dead[w] or len(ring) == 0 for w, ring in enumerate(self._rings)):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)

    def repoint(self, worker: int, to: int, timeout: float = 30.0) -> None:
        """Send every steering entry of ``worker`` to worker ``to`` (a live one) without
        reordering a flow: drain first. The driver is the only producer and steers nothing
        meanwhile, so once ``worker``'s consumer index has reached its producer index as
        it is at this call, no frame of a moved flow is still waiting behind it (Linux
        RFS's ``last_qtail`` rule); only then do the entries move. A ``worker`` declared
        dead meanwhile has had its entries moved by the watch already.

        Raises :class:`RpsError` for a bad worker number, a dead ``to``, or when
        ``worker`` has not drained within ``timeout`` seconds (the entries then stay)."""
        if self._seg is None:
            raise RpsError("the driver is closed")
        for name, w in (("worker", worker), ("to", to)):
            if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w < self.workers:
                raise RpsError(f"{name} must be a worker of 0..{self.workers - 1}, not {w!r}")
        if self._dead()[to]:
            raise RpsError(f"worker {to} is dead: re-point to a live worker")
        if worker == to:
            return
        ring = self._rings[worker]
        tail = ring.producer_index
        deadline = time.monotonic() + timeout
        while not self._dead()[worker] and ring.consumer_index < tail:
            if time.monotonic() > deadline:
                raise RpsError(f"worker {worker} did not take its {tail - ring.consumer_index}"
                               f" waiting frames within {timeout} s: its entries stay")
            self.watch()
            time.sleep(0.0005)
        if self._dead()[to]:
            raise RpsError(f"worker {to} died meanwhile: re-point to a live worker")
        self.steering_table[self.steering_table == worker] = to

    def _dead(self) -> list[bool]:
        d = DRIVER.index("dead")
        return [bool(self._drv[d + w]) for w in range(self.workers)]

    # --- numbers ------------------------------------------------------------------------
    def latency_counts(self) -> list[int]:
        """How many wake latency samples each worker has taken so far."""
        return [int(block[WORKER.index("lat_count")]) for block in self._wk]

    def wake_latencies(self, since: list[int] | None = None) -> np.ndarray:
        """Wake latency samples in ns (all workers) taken after :meth:`latency_counts`
        returned ``since`` (all kept ones when None); at most the latest 4096 per worker."""
        out = []
        start = WORKER.index("lat")
        for w, block in enumerate(self._wk):
            n = int(block[WORKER.index("lat_count")])
            first = max(since[w] if since else 0, n - LAT_N)
            idx = np.arange(first, n) % LAT_N
            out.append(block[start + idx].copy())
        return np.concatenate(out) if out else np.zeros(0, np.uint64)

    @property
    def wait_mode(self) -> str:
        """How an idle futex-mode worker waits before it sleeps: ``"umwait"`` with WAITPKG,
        else ``"futex"`` (pause-spin, then futex)."""
        return self._lib.wait_mode

    @property
    def syscalls(self) -> int:
        """System calls the native helper has made in this (the driver) process."""
        return self._lib.syscalls

    def worker_states(self) -> list[str | None]:
        """Each worker process's state letter (``/proc/PID/stat``: ``R``, ``S``, ``T`` for
        stopped...), None for one that is gone."""
        return [None if (f := _proc_stat(p.pid)) is None else f[0] for p in self._procs]

    def forwarded(self, worker: int) -> int:
        """The frames ``worker`` has forwarded so far: one word read, no system call (for
        callers that poll it; :meth:`stats` reads ``/proc`` too)."""
        return int(self._wk[worker][WORKER.index("forwarded")])

    def stats(self) -> RpsStats:
        """The counters now (see :class:`RpsStats`)."""
        drv, d = self._drv, DRIVER.index
        wk = lambda name: [int(block[WORKER.index(name)]) for block in self._wk]  # noqa: E731
        return RpsStats(
            packets_in=int(drv[d("packets_in")]), steered=int(drv[d("steered")]),
            forwarded=wk("forwarded"), drop_full=int(drv[d("drop_full")]),
            drop_dead=int(drv[d("drop_dead")]), lost=int(drv[d("lost")]),
            stolen=[int(drv[d("stolen") + w]) for w in range(self.workers)],
            order_errors=sum(wk("order_errors")), csum_errors=sum(wk("csum_errors")),
            not_forwarded=sum(wk("not_forwarded")), unsequenced=sum(wk("unsequenced")),
            syscalls_driver=self.syscalls, syscalls_workers=wk("syscalls"),
            wakes=int(drv[d("wakes")]), full_waits=int(drv[d("full_waits")]),
            full_timeouts=int(drv[d("full_timeouts")]), drive_ns=int(drv[d("drive_ns")]),
            sleeps=wk("sleeps"),
            timeouts=wk("timeouts"),
            deaths=int(drv[d("deaths")]), dead=self._dead(),
            in_rings=[len(ring) for ring in self._rings],
            wake_latency_ns=self.wake_latencies(),
            voluntary_ctxt_switches=[_proc_status(p.pid, "voluntary_ctxt_switches")
                                     for p in self._procs],
            cpu_ticks=[_proc_cpu_ticks(p.pid) for p in self._procs])
