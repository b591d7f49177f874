"""The TAP bridge: the simulated NIC's MAC port attached to a Linux TAP device.

>>> with Nic.open("sim", width=64, rx_queues=8) as nic, TapDevice("tap0") as tap:
...     bridge = TapBridge(nic, tap, faults_to_nic=plan.injector("in"))
...     while running:
...         bridge.pump()                       # kernel -> NIC RX, NIC TX -> kernel

Frames the kernel sends out of the TAP go onto the NIC's wire (into ``rx_mac``); frames that
leave ``tx_mac`` are written to the TAP, so the kernel sees them arrive. Each direction can go
through a :class:`~hetnic.host.faults.FaultInjector` (this kernel has no ``netem``).

The simulated clock advances only inside :meth:`TapBridge.pump`, and only while something is
in flight: frames on the wire, TX work items outstanding, or a bus that moved in the last
``quiet`` cycles (``Nic.run_until_idle``). An idle bridge costs no simulated cycles, and a
busy one runs at most ``max_cycles`` per pump, so a caller's loop stays responsive.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .faults import FaultInjector
from .tap import TapError

if TYPE_CHECKING:
    from .nic import Nic
    from .tap import TapDevice

__all__ = ["TapBridge"]


class TapBridge:
    """Moves frames between a :class:`~hetnic.host.nic.Nic`'s wire and a TAP device.

    Parameters
    ----------
    nic : Nic
        A NIC with a clock (the ``"sim"`` or ``"cocotb"`` backend).
    tap : TapDevice
        The open TAP; the bridge reads and writes it but does not close it.
    faults_to_nic, faults_to_tap : FaultInjector | None
        Faults on frames from the kernel to the NIC and from the NIC to the kernel.
    quiet : int
        Cycles with no bus activity after which the NIC counts as idle (default 64).
    max_cycles : int
        Most cycles one :meth:`pump` runs (default 20,000); an attribute of the same name,
        which the caller may change between pumps (the NIC process sizes it to a wall time).
    clock : Callable[[], float]
        Wall clock for the injectors' hold times (default ``time.monotonic``).

    Members
    -------
    frames_to_nic, bytes_to_nic, frames_to_tap, bytes_to_tap : int
        Frames and bytes the bridge moved each way (after faults).
    tap_write_errors : int
        Frames the kernel refused (e.g. the interface was down); dropped.
    cycles : int
        Simulated cycles the bridge ran.
    """

    def __init__(self, nic: "Nic", tap: "TapDevice", *,
                 faults_to_nic: FaultInjector | None = None,
                 faults_to_tap: FaultInjector | None = None,
                 quiet: int = 64, max_cycles: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        if not isinstance(quiet, int) or quiet < 1:
            raise ValueError(f"quiet must be a positive number of cycles, not {quiet!r}")
        if not isinstance(max_cycles, int) or max_cycles < quiet:
            raise ValueError(f"max_cycles must be an integer >= quiet ({quiet}), "
                             f"not {max_cycles!r}")
        self.nic = nic
        self.tap = tap
        self.faults_to_nic = faults_to_nic
        self.faults_to_tap = faults_to_tap
        self.quiet = quiet
        self.max_cycles = max_cycles
        self._clock = clock
        self._busy = False              # the last pump stopped before the NIC went idle
        self.frames_to_nic = self.bytes_to_nic = 0
        self.frames_to_tap = self.bytes_to_tap = 0
        self.tap_write_errors = 0
        self.cycles = 0

    def fileno(self) -> int:
        """The TAP's descriptor: readable when the kernel sent a frame."""
        return self.tap.fileno()

    @property
    def busy(self) -> bool:
        """Whether the NIC has work in flight (call :meth:`pump` again soon)."""
        return (self._busy or self.nic.wire.pending() > 0
                or any(q.ring.outstanding for q in self.nic.tx_queues)
                or any(f is not None and f.held for f in (self.faults_to_nic,
                                                          self.faults_to_tap)))

    def next_deadline(self) -> float | None:
        """When a held-back frame of an injector is due, or None."""
        times = [f.next_deadline() for f in (self.faults_to_nic, self.faults_to_tap)
                 if f is not None]
        return min((t for t in times if t is not None), default=None)

    def pump(self, max_frames: int = 64, run: bool = False) -> int:
        """One turn: up to ``max_frames`` frames from the TAP onto the wire, the clock run
        until the NIC is idle (or ``max_cycles``), and every frame that left ``tx_mac``
        written to the TAP. Returns the frames moved both ways.

        The clock runs when frames came, the NIC had work left, or ``run`` is true (the
        caller knows of work the bridge cannot see, e.g. a doorbell written by another
        process into the doorbell page)."""
        now = self._clock()
        frames = self.tap.read_frames(max_frames)
        f = self.faults_to_nic
        if f is not None:
            frames = f.process(frames, now)     # also releases held frames now due
        if frames:
            self.nic.wire.send(frames)
            self.frames_to_nic += len(frames)
            self.bytes_to_nic += sum(map(len, frames))
        self._run(bool(frames) or run)
        out = self.nic.wire.received()
        f = self.faults_to_tap
        if f is not None:
            out = f.process(out, now)
        self._write(out)
        return len(frames) + len(out)

    def _run(self, sent: bool) -> None:
        nic = self.nic
        if not (sent or self._busy or nic.wire.pending()
                or any(q.ring.outstanding for q in nic.tx_queues)):
            return
        ran = nic.run_until_idle(max_cycles=self.max_cycles, quiet=self.quiet)
        self.cycles += ran
        self._busy = ran >= self.max_cycles

    def _write(self, frames: list[bytes]) -> None:
        write = self.tap.write
        for frame in frames:
            try:
                write(frame)
            except TapError:
                self.tap_write_errors += 1
                continue
            self.frames_to_tap += 1
            self.bytes_to_tap += len(frame)

    def flush(self) -> int:
        """Release every frame an injector holds back and pump until the NIC is idle;
        returns the frames moved (for the end of a run)."""
        moved = 0
        if self.faults_to_nic is not None and self.faults_to_nic.held:
            held = self.faults_to_nic.flush()
            self.nic.wire.send(held)
            self.frames_to_nic += len(held)
            moved += len(held)
        if self.faults_to_tap is not None and self.faults_to_tap.held:
            held = self.faults_to_tap.flush()
            self._write(held)
            moved += len(held)
        self._busy = True
        while self._busy:
            moved += self.pump(0)
        return moved

    def counters(self) -> dict[str, object]:
        """The bridge's counters, with each injector's under ``faults_to_nic``/``_to_tap``."""
        return {
            "frames_to_nic": self.frames_to_nic, "bytes_to_nic": self.bytes_to_nic,
            "frames_to_tap": self.frames_to_tap, "bytes_to_tap": self.bytes_to_tap,
            "tap_write_errors": self.tap_write_errors, "cycles": self.cycles,
            "faults_to_nic": None if self.faults_to_nic is None
            else self.faults_to_nic.counters(),
            "faults_to_tap": None if self.faults_to_tap is None
            else self.faults_to_tap.counters(),
        }
