"""Receive packet steering fed by a real RX queue of a shared simulated NIC.

The RPS driver process holds one RX queue of a NIC opened with ``shared=True`` (a
:class:`~hetnic.host.queue_port.QueueGrant`), polls it with the shared
:class:`~hetnic.host.rx_ring.RxRing` code, takes each frame's RSS hash from its completion
and steers the frames to its worker processes (:class:`~hetnic.host.rps.RpsDriver`). The
NIC process runs the clock; nothing here calls into it.

:func:`serve_rx_queue` is the loop; :func:`rps_queue_process` is a process entry point
(spawn context) that serves a queue until a given number of frames has been steered and
reports what happened.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from .queue_port import QueueGrant
from .rps import RpsDriver, RpsError
from .rx_ring import RxPacket

__all__ = ["PacketStager", "serve_rx_queue", "rps_queue_process"]


class PacketStager:
    """Packs received frames into the arrays :meth:`RpsDriver.steer` takes.

    Parameters
    ----------
    max_frame : int
        Longest frame kept; longer ones are counted in :attr:`too_long` and not steered.
    capacity : int
        Frames per :meth:`stage` call at most.
    """

    def __init__(self, max_frame: int, capacity: int = 256):
        self.stride = (max_frame + 63) // 64 * 64
        self.max_frame = max_frame
        self.data = np.zeros((capacity, self.stride), np.uint8)
        self.lens = np.zeros(capacity, np.uint16)
        self.hashes = np.zeros(capacity, np.uint32)
        self.too_long = 0

    def stage(self, packets: Sequence[RxPacket]) -> int:
        """Copy ``packets`` (at most the capacity) into the arrays; how many are staged."""
        n = 0
        for p in packets[:len(self.lens)]:
            if p.length > self.max_frame:
                self.too_long += 1
                continue
            self.data[n, :p.length] = np.frombuffer(p.data, np.uint8, p.length)
            self.lens[n] = p.length
            self.hashes[n] = p.hash
            n += 1
        return n


def serve_rx_queue(rx_queue, driver: RpsDriver, *, until: Callable[[], bool],
                   batch: int = 32, poll_max: int = 64, idle_sleep: float = 50e-6,
                   on_packets: Callable[[list[RxPacket]], None] | None = None) -> int:
    """Poll ``rx_queue`` (an entry of a :class:`~hetnic.host.queue_port.QueueSet`'s
    ``rx_queues``) and steer what arrives through ``driver`` until ``until()`` is true.
    Sleeps ``idle_sleep`` when the queue is empty (the NIC process's clock is slow).
    Returns the frames steered."""
    slot = driver.slot_payload
    stager = PacketStager(slot, max(poll_max, 1))
    steered = 0
    while not until():
        packets = rx_queue.poll(poll_max)
        if not packets:
            driver.watch()
            time.sleep(idle_sleep)
            continue
        if on_packets is not None:
            on_packets(packets)
        n = stager.stage(packets)
        steered += driver.steer(stager.data[:n], stager.lens[:n], stager.hashes[:n],
                                batch=batch)
    return steered


def rps_queue_process(grant: QueueGrant, queue: int, expected: int, report, *,
                      parent: int, workers: int = 2, mode: str = "futex",
                      timeout: float = 120.0, progress=None) -> None:
    """A process entry point: serve RX ``queue`` of ``grant`` with an
    :class:`~hetnic.host.rps.RpsDriver` of ``workers`` workers until ``expected`` frames are
    steered (or ``timeout`` seconds, or the parent ``parent`` is gone), drain, and send
    ``{"stats": RpsStats, "hashes": [...], "error": str | None}`` on the ``report``
    connection (``hashes``: the RSS hash of each frame, in the order taken; ``error``: what
    went wrong, e.g. a timeout, else None). Must not run as a daemonic process (it starts
    worker processes). ``progress``:
    an optional shared integer (``multiprocessing.RawValue``) set to the frames taken."""
    qs = grant.open()
    hashes: list[int] = []
    error = None
    stats = None
    try:
        deadline = time.monotonic() + timeout

        def seen(packets: list[RxPacket]) -> None:
            hashes.extend(p.hash for p in packets)
            if progress is not None:
                progress.value = len(hashes)

        def done() -> bool:
            if len(hashes) >= expected:
                return True
            if os.getppid() != parent:
                raise RpsError("the NIC process is gone")
            if time.monotonic() > deadline:
                raise RpsError(f"only {len(hashes)} of {expected} frames arrived in "
                               f"{timeout} s")
            return False

        with RpsDriver(workers, mode=mode) as driver:
            try:
                serve_rx_queue(qs.rx_queues[queue], driver, until=done, on_packets=seen)
                if not driver.drain(60):
                    error = "the workers did not drain their rings"
            except RpsError as exc:
                error = str(exc)
            stats = driver.stats()
    except Exception as exc:       # reported to the parent, which asserts on it
        error = f"{type(exc).__name__}: {exc}"
    finally:
        report.send({"stats": stats, "hashes": hashes, "error": error})
        qs.close()
