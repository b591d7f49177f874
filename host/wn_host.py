"""The owner of a W/N system: its shared segment, its N and W processes, an N's death.

:class:`WnHost` creates the W/N segment (:class:`~hetnic.host.wn_rings.WnLayout`) and, when
asked, a *wire* segment with two frame rings per N (frames to the N, frames from it) for N's
that run on frames instead of NIC queues (:class:`~hetnic.host.ring_link.RingLink`: a
benchmark's frames generated ahead, or a test playing the wire). It starts N processes
(:func:`n_main`) and W processes (:func:`w_main`: ``target(WThread, *args)``), all with the
``spawn`` context, each dying with this process. :meth:`WnHost.n_died` counts a dead N's
connections lost in the routing table (whoever owns the NIC re-points its RETA entries:
:func:`~hetnic.host.wn.repoint_reta`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any, Callable

import numpy as np

from .nic_client import die_with_parent, stop_processes
from .ring_link import RingLink
from .shm import SharedSegment
from .spsc import SpscRing
from .stack.instance import InstanceConfig
from .stack.stack import Stack
from .wn import WnTimeout, WThread, dump_table
from .wn_rings import ConnState, WnLayout, WnLayoutError
from .wn_stack import WnStack

__all__ = ["WnHost", "n_main", "w_main"]

_GRACE = 2.0


class WnHost:
    """A W/N system's segment and processes.

    Parameters
    ----------
    n_count, w_count : int
        N and W processes.
    table_slots, ring_slots, slot_size : int
        See :class:`WnLayout`.
    wire : tuple[int, int] or tuple[int, int, int, int] or None
        ``(slots, slot size)`` of each N's two frame rings, or ``(slots in, slot size in,
        slots out, slot size out)``, or None for no wire segment.

    Members
    -------
    name : str
        The W/N segment's name (what :meth:`WThread.attach` takes).
    layout : WnLayout
    n_procs, w_procs : dict[int, multiprocessing.Process]
    lost : int
        Connections of dead N's (counted by :meth:`n_died`).
    """

    def __init__(self, n_count: int, w_count: int, *, table_slots: int = 4096,
                 ring_slots: int = 1024, slot_size: int = 2048,
                 wire: tuple[int, ...] | None = None):
        size = WnLayout.bytes_needed(n_count, w_count, table_slots, ring_slots, slot_size)
        self.segment = SharedSegment.create(size, prefix="hetnic-wn")
        self.wire_segment: SharedSegment | None = None
        self._wire: list[tuple[SpscRing, SpscRing]] = []
        self._ctx = multiprocessing.get_context("spawn")
        self.n_procs: dict[int, Any] = {}
        self.w_procs: dict[int, Any] = {}
        self.lost = 0
        try:
            self.layout = WnLayout.create(self.segment.buf, n_count, w_count,
                                          table_slots=table_slots, ring_slots=ring_slots,
                                          slot_size=slot_size)
            if wire is not None:
                if len(wire) == 2:
                    wire = (wire[0], wire[1], wire[0], wire[1])
                shapes = ((wire[0], wire[1]), (wire[2], wire[3]))
                spans = [(SpscRing.bytes_needed(*shape) + 63) // 64 * 64 for shape in shapes]
                self._wire_spans = spans
                self.wire_segment = SharedSegment.create(n_count * sum(spans),
                                                         prefix="hetnic-wire")
                buf = self.wire_segment.buf
                for n in range(n_count):
                    base = n * sum(spans)
                    self._wire.append((
                        SpscRing.create(buf[base:base + spans[0]], *shapes[0]),
                        SpscRing.create(buf[base + spans[0]:base + spans[0] + spans[1]],
                                        *shapes[1])))
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self.segment.name

    def wire_in(self, n: int) -> SpscRing:
        """The ring this process pushes N ``n``'s received frames on."""
        return self._wire_rings(n)[0]

    def wire_out(self, n: int) -> SpscRing:
        """The ring this process pops N ``n``'s sent frames from."""
        return self._wire_rings(n)[1]

    def _wire_rings(self, n: int) -> tuple[SpscRing, SpscRing]:
        if not self._wire:
            raise WnLayoutError("this W/N host has no wire segment (WnHost(..., wire=...))")
        return self._wire[n]

    # ------------------------------------------------------------------ processes

    def start_n(self, n: int, config: InstanceConfig, stack_kwargs: dict) -> Any:
        """Start N ``n`` on its wire rings with ``Stack(config, **stack_kwargs)``."""
        if not self._wire:
            raise WnLayoutError("start_n runs an N on the wire rings; this host has none")
        a, b = self._wire_spans
        base = n * (a + b)
        spec = (self.wire_segment.name, base, a, base + a, b)
        proc = self._ctx.Process(target=n_main, name=f"wn-n{n}", daemon=True,
                                 args=(self.name, n, config, stack_kwargs, spec, os.getpid()))
        proc.start()
        self.n_procs[n] = proc
        return proc

    def start_w(self, w: int, target: Callable[..., Any], *args: Any) -> Any:
        """Start W ``w`` running ``target(WThread, *args)`` (a picklable, module-level
        function); the W exits (:meth:`WThread.exit`) when it returns or raises."""
        proc = self._ctx.Process(target=w_main, name=f"wn-w{w}", daemon=True,
                                 args=(self.name, w, target, args, os.getpid()))
        proc.start()
        self.w_procs[w] = proc
        return proc

    def wait_ready(self, ws: list[int] | None = None, timeout: float = 60.0) -> None:
        """Wait until the W's ``ws`` (all by default) called :meth:`WThread.set_ready`;
        :class:`WnTimeout` after ``timeout`` seconds or when one of them exited first."""
        ws = list(range(self.layout.w_count)) if ws is None else ws
        end = time.monotonic() + timeout
        while not all(self.layout.w_ready(w) for w in ws):
            for w in ws:
                proc = self.w_procs.get(w)
                if proc is not None and proc.exitcode is not None:
                    raise WnTimeout(f"W {w} exited (status {proc.exitcode}) before it was "
                                    f"ready")
            if time.monotonic() >= end:
                raise WnTimeout(f"the W's were not ready within {timeout:g} s")
            time.sleep(0.01)

    def n_died(self, n: int) -> int:
        """N ``n`` is dead: its connections still in use are marked LOST in the routing
        table (it wrote its region alone; now no one else does) and counted; returns how
        many."""
        self.layout.set_dead(n)
        table = self.layout.table(n)
        live = (table["fd"] != 0) & np.isin(table["state"], _IN_USE)
        count = int(live.sum())
        table["state"][live] = ConnState.LOST
        self.lost += count
        return count

    def dump(self, closed: bool = False) -> list[dict]:
        """The routing table (:func:`dump_table`)."""
        return dump_table(self.layout, closed=closed)

    def counters(self) -> list[dict]:
        """Per N: pid, alive, heartbeat, accepts, lost, reassigned."""
        return [self.layout.n_peer(n) for n in range(self.layout.n_count)]

    # ------------------------------------------------------------------ closing

    def close(self, grace: float = _GRACE) -> None:
        """Stop every N (the stop word) and W, join them (SIGTERM, then SIGKILL, after ``grace``), close the
        segments (unlinking them). Idempotent."""
        layout = getattr(self, "layout", None)
        if layout is not None and not self.segment.closed:
            layout.stop = True
        for procs in (self.w_procs, self.n_procs):
            stop_processes(list(procs.values()), grace)
            procs.clear()
        for ring in (r for pair in self._wire for r in pair):
            ring.release()
        self._wire = []
        self.layout = None
        for seg in (self.wire_segment, self.segment):
            if seg is not None:
                seg.close()

    def __enter__(self) -> "WnHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_IN_USE = np.array([ConnState.PENDING, ConnState.OPEN, ConnState.CLOSING], dtype=np.uint8)


def n_main(segment_name: str, n: int, config: InstanceConfig, stack_kwargs: dict,
           wire: tuple[str, int, int, int, int], parent_pid: int) -> None:
    """An N process on its wire rings: ``Stack(config, **stack_kwargs)`` served by a
    :class:`WnStack` until the host's stop word or the parent's death."""
    if not die_with_parent(parent_pid):
        return                              # the parent died before the signal was set
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    segment = SharedSegment.attach(segment_name)
    wire_seg = SharedSegment.attach(wire[0])
    try:
        layout = WnLayout.attach(segment.buf)
        _, rx_off, rx_size, tx_off, tx_size = wire
        link = RingLink(SpscRing.attach(wire_seg.buf[rx_off:rx_off + rx_size]),
                        SpscRing.attach(wire_seg.buf[tx_off:tx_off + tx_size]))
        stack = Stack(config, **stack_kwargs)
        WnStack(layout, n, stack, link).run(parent_pid=parent_pid)
    finally:
        wire_seg.close()
        segment.close()


def w_main(segment_name: str, w: int, target: Callable[..., Any], args: tuple,
           parent_pid: int) -> None:
    """A W process: ``target(WThread.attach(segment_name, w), *args)``, then exit."""
    if not die_with_parent(parent_pid):
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    thread = WThread.attach(segment_name, w)
    try:
        target(thread, *args)
    finally:
        thread.exit()
        thread.close_segment()
