"""The shared-memory layout of receive packet steering (:mod:`hetnic.host.rps`), defined once.

The driver process and the worker processes share one segment: a driver block, one worker
block and one :class:`~hetnic.host.spsc.SpscRing` per worker, and the steering table. The
blocks are arrays of 64-bit words (native byte order); a word is written by one side only
(the owner named below) and read by the other. The C helper gets every offset as a ``-D``
flag from :func:`c_defines` (``-DRPS_DRV_STEERED=...``), never a retyped copy; Python reads
the words through :class:`Block`.

Driver block (written by the driver unless noted)::

    nworkers, table_size, table_off      geometry; the table is u32 worker indices
    mode                                 MODE_FUTEX or MODE_EVENTFD
    dead_after_ns                        heartbeat silence that declares a worker dead
    packets_in, steered                  frames offered to / pushed by the steering loop
    drop_full, drop_dead                 frames dropped: worker ring full / no live worker
    lost                                 frames left in a dead worker's ring
    syscalls, wakes, deaths              driver syscalls, futex/eventfd wakes, workers declared dead
    last_watch_ns                        when the heartbeat watch last ran
    full_waits, full_timeouts            closed loop: sleeps for room in a full ring, timed out
    drive_ns                             time inside the steering loop (its sleeps included)
    ring_off[w], wblock_off[w]           where worker w's ring and block are
    efd[w]                               worker w's eventfd in the driver (eventfd mode)
    dead[w], hb_seen[w], hb_change_ns[w] the heartbeat watch's state
    stolen[w]                            frames that were in w's ring when it was declared dead

Worker block (written by the worker unless noted)::

    stop                                 set by the driver: return from the run loop
    spin_ns, verify, parent_pid          set by the driver before the start
    pid, started                         the worker process
    forwarded, order_errors, csum_errors, not_forwarded, unsequenced
    syscalls, sleeps, timeouts           futex (or eventfd read) waits, waits that timed out
    lat_count, lat[LAT_N]                wake latency samples in ns, a ring of LAT_N
"""

from __future__ import annotations

import numpy as np

__all__ = ["Block", "DRIVER", "WORKER", "MAX_WORKERS", "LAT_N", "MODE_FUTEX", "MODE_EVENTFD",
           "MODES", "c_defines", "SEQ_MAGIC", "SEQ_OFFSET"]

MAX_WORKERS = 64
LAT_N = 4096
MODE_FUTEX = 0
MODE_EVENTFD = 1
MODES = {"futex": MODE_FUTEX, "eventfd": MODE_EVENTFD}

#: Generated frames carry, at this byte offset (the UDP payload of an IPv4 header without
#: options), the u32 magic, the u32 flow number and the u32 sequence number in that flow
#: (native order); the worker checks per-flow order on frames that carry the magic.
SEQ_OFFSET = 42
SEQ_MAGIC = 0x51534E48  # "HNSQ"


class Block:
    """A named layout of 64-bit words, some of them arrays.

    Parameters
    ----------
    prefix : str
        The C name prefix (``DRV``, ``WK``).
    fields : list of (str, int)
        Field names and word counts, in order.
    """

    def __init__(self, prefix: str, fields: list[tuple[str, int]]):
        self.prefix = prefix
        self.offsets: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        off = 0
        for name, count in fields:
            self.offsets[name] = off
            self.counts[name] = count
            off += 8 * count
        self.size = (off + 63) // 64 * 64

    def words(self, buf, base: int) -> np.ndarray:
        """The block at byte ``base`` of ``buf`` as a writable array of u64."""
        return np.frombuffer(buf, dtype=np.uint64, count=self.size // 8, offset=base)

    def index(self, name: str) -> int:
        """The word index of field ``name`` (its first word for an array)."""
        return self.offsets[name] // 8

    def c_defines(self) -> list[str]:
        flags = [f"-DRPS_{self.prefix}_{name.upper()}={off}"
                 for name, off in self.offsets.items()]
        return flags + [f"-DRPS_{self.prefix}_SIZE={self.size}"]


DRIVER = Block("DRV", [
    ("nworkers", 1), ("table_size", 1), ("table_off", 1), ("mode", 1), ("dead_after_ns", 1),
    ("packets_in", 1), ("steered", 1), ("drop_full", 1), ("drop_dead", 1), ("lost", 1),
    ("syscalls", 1), ("wakes", 1), ("deaths", 1), ("last_watch_ns", 1),
    ("full_waits", 1), ("full_timeouts", 1), ("drive_ns", 1),
    ("ring_off", MAX_WORKERS), ("wblock_off", MAX_WORKERS), ("efd", MAX_WORKERS),
    ("dead", MAX_WORKERS), ("hb_seen", MAX_WORKERS), ("hb_change_ns", MAX_WORKERS),
    ("stolen", MAX_WORKERS),
])

WORKER = Block("WK", [
    ("stop", 1), ("spin_ns", 1), ("verify", 1), ("parent_pid", 1), ("pid", 1), ("started", 1),
    ("forwarded", 1), ("order_errors", 1), ("csum_errors", 1), ("not_forwarded", 1),
    ("unsequenced", 1), ("syscalls", 1), ("sleeps", 1), ("timeouts", 1),
    ("lat_count", 1), ("lat", LAT_N),
])


def c_defines() -> list[str]:
    """The layouts and constants above as C preprocessor flags."""
    return (DRIVER.c_defines() + WORKER.c_defines()
            + [f"-DRPS_MAX_WORKERS={MAX_WORKERS}", f"-DRPS_LAT_N={LAT_N}",
               f"-DRPS_MODE_FUTEX={MODE_FUTEX}", f"-DRPS_MODE_EVENTFD={MODE_EVENTFD}",
               f"-DRPS_SEQ_OFFSET={SEQ_OFFSET}", f"-DRPS_SEQ_MAGIC={SEQ_MAGIC}u"])
