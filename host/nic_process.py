"""The NIC process: the process that owns the simulated NIC, runs its clock and serves the
processes (children) that work on its queues.

>>> with NicProcess(nic, tap) as owner:
...     owner.on_request("listen", lambda child, **kw: dispatcher.request(**kw))
...     child = owner.spawn("low-delay", instance_main, config)
...     owner.run(until=lambda: done(), timeout=30)

A child is started with the ``spawn`` context (never ``fork``: this process holds the
Verilator harness) and gets a :class:`~hetnic.host.nic_client.NicClient` over a pipe as the
first argument of its target. The pipe carries both ways:

* a child's ``client.request(kind, **kw)`` reaches ``handler(child, **kw)`` registered with
  :meth:`NicProcess.on_request`; the handler's return value, or the one-line message of the
  :class:`~hetnic.errors.HetnicError` it raised, goes back;
* the NIC process's ``child.call(kind, **kw)`` reaches the child's handler registered with
  ``client.on_call`` (counters, connection dumps, a clean stop).

A child dies with its parent: its end of the pipe reads EOF when this process is gone (also
when it is killed), and the kernel sends it SIGKILL when the thread that spawned it exits
(``PR_SET_PDEATHSIG``).

The loop (:meth:`NicProcess.run`, one turn is :meth:`NicProcess.step`) pumps the TAP bridge
(or, without a TAP, runs the clock while the NIC has work); runs the clock when a child wrote
the doorbell page (the loop compares the page with what it saw last, so an idle NIC costs no
cycles); calls the :meth:`on_turn` hooks (a stack host wakes its sleeping children there)
and hands the frames it puts on the wire to the :meth:`on_wire_frames` hooks; serves
requests, notices children that exited (one line naming the
child and its exit code, :meth:`on_child_exit` callbacks) and, when a turn moved nothing (no
TAP frame, the wire idle, no bus activity, no doorbell written, no request), sleeps in
``select`` on the TAP, the pipes and the children's sentinels: ``busy_wait`` seconds
(0.2 ms) while the NIC was active recently, so that a child's doorbell is noticed at once,
then ``idle_wait`` (2 ms), so that an idle host does not burn a core. With a ``wake_word``
(a 32-bit word in memory the children share) the idle sleep is ``LONG_WAIT`` (50 ms): the
loop sets the word to 1 while it sleeps so (a store and a full fence through
:class:`~hetnic.host.native_lib.SharedWord`, then it looks at the doorbell page again), and a
child that rings a doorbell, fences and sees it set sends a kick on its pipe (:meth:`NicClient.kick
<hetnic.host.nic_client.NicClient.kick>`), which ends the sleep at once.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import select
import sys
import threading
import time
from typing import Any, Callable

from ..errors import HetnicError
from .doorbells import SLOT_BYTES
from .native_lib import SharedWord
from .nic_client import Child, NicClient, NicRequestError, child_main, one_line, \
    send_reply, stop_processes
from .tap_bridge import TapBridge

__all__ = ["NicProcess", "NicProcessTimeout", "Child", "NicClient", "NicRequestError"]

#: Sleep of an idle turn while the NIC moved within the last ``_ACTIVE_WINDOW`` seconds.
BUSY_WAIT = 0.0002
#: Sleep of an idle turn after that.
IDLE_WAIT = 0.002
#: Sleep of an idle turn with a wake word the children check.
LONG_WAIT = 0.05
_ACTIVE_WINDOW = 0.05
#: Wall time one turn's clock run aims at while the NIC stays busy: frames that leave the
#: NIC reach the TAP (and the turn hooks, requests and doorbells are looked at) at least
#: this often. The cycles per run follow from the measured simulation speed, between
#: ``_MIN_CYCLES`` and ``_MAX_CYCLES``.
RUN_SECONDS = 0.002
_MIN_CYCLES = 256
_MAX_CYCLES = 20_000
#: The idle criterion (cycles with no bus move).
_QUIET = 64
#: Seconds :meth:`NicProcess.close` gives children to exit before SIGTERM, then SIGKILL.
_GRACE = 2.0


class NicProcessTimeout(HetnicError, TimeoutError):
    """:meth:`NicProcess.run` reached its timeout before its condition held."""


class NicProcess:
    """The owner of a NIC and of the processes that use its queues (see the module).

    Parameters
    ----------
    nic : Nic
        An open NIC with a clock (the ``"sim"`` backend), usually opened with
        ``shared=True`` so that children can be granted its queues.
    tap : TapDevice, optional
        The kernel's side: a :class:`~hetnic.host.tap_bridge.TapBridge` moves frames
        between it and the NIC's wire. Without one, frames that leave the NIC stay in
        ``nic.wire`` for the caller.
    faults_to_nic, faults_to_tap : FaultInjector, optional
        Faults on the bridge, each direction.
    log : Callable[[str], None], optional
        Where one-line messages go (a child that exited); default: standard error.
    busy_wait, idle_wait : float
        Sleep of a turn that moved nothing, shortly after activity and long after it.
    wake_word : memoryview, optional
        4 writable bytes the children can read (shared memory): 1 while the loop sleeps
        longer than ``busy_wait`` (then up to ``LONG_WAIT`` instead of ``idle_wait``), else 0.

    Members
    -------
    nic : Nic
    bridge : TapBridge or None
    children : list of Child
        Every child spawned, alive or not, in spawn order.
    child_exits : int
        Children that exited while the loop ran (before :meth:`close`).
    messages : list of str
        The one-line messages logged.
    """

    def __init__(self, nic, tap=None, *, faults_to_nic=None, faults_to_tap=None,
                 log: Callable[[str], None] | None = None,
                 busy_wait: float = BUSY_WAIT, idle_wait: float = IDLE_WAIT,
                 wake_word: memoryview | None = None):
        if not (0 < busy_wait <= idle_wait):
            raise ValueError(f"need 0 < busy_wait <= idle_wait, not {busy_wait!r} and "
                             f"{idle_wait!r}")
        self.nic = nic
        self._slice = 1_000                 # cycles per run; adapted to RUN_SECONDS
        self.bridge = None if tap is None else TapBridge(
            nic, tap, faults_to_nic=faults_to_nic, faults_to_tap=faults_to_tap,
            quiet=_QUIET, max_cycles=self._slice)
        self.children: list[Child] = []
        self.child_exits = 0
        self.messages: list[str] = []
        self.busy_wait, self.idle_wait = busy_wait, idle_wait
        if wake_word is not None and len(wake_word) != 4:
            raise ValueError(f"wake_word must be 4 bytes, not {len(wake_word)}")
        self._wake_word = None if wake_word is None else SharedWord(wake_word.cast("B"))
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._exit_callbacks: list[Callable[[Child], None]] = []
        self._turn_hooks: list[Callable[[], bool]] = []
        self._wire_hooks: list[Callable[[list[bytes]], None]] = []
        self._out_hooks: list[Callable[[list[bytes]], list[bytes]]] = []
        if self.bridge is not None:
            self.bridge.nic = _NicView(nic, _WireTee(nic.wire, self._tee, self._out))
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._busy = False
        self._last_active = 0.0
        self._activity = self._activity_count()
        self._doorbells = _doorbell_view(nic)
        self._doorbell_seen = bytes(self._doorbells) if self._doorbells is not None else b""
        self._closed = False
        self._in_step = False

    # --- children ------------------------------------------------------------------------
    def spawn(self, name: str, target: Callable[..., Any], *args: Any) -> Child:
        """Start ``target(client, *args)`` in a new process (spawn context) named ``name``.

        ``target`` and ``args`` must be picklable (a module-level function). The child's
        first argument is its :class:`NicClient`; when ``target`` returns the child exits
        with status 0, when it raises a :class:`HetnicError` it prints one line and exits 1.
        As with every ``spawn`` start, a script that spawns must guard its main code with
        ``if __name__ == "__main__":`` (the child imports the script's module).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a child needs a non-empty name, not {name!r}")
        if any(c.name == name and c.alive for c in self.children):
            raise ValueError(f"a child named {name!r} is already running")
        ours, theirs = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=child_main, name=f"hetnic-{name}",
                                 args=(theirs, os.getpid(), name, target, args), daemon=True)
        proc.start()
        theirs.close()
        child = Child(name, proc, ours, self._serve_request, self._wait)
        self.children.append(child)
        return child

    def on_request(self, kind: str, handler: Callable[..., Any]) -> None:
        """Serve a child's ``client.request(kind, **kw)`` with ``handler(child, **kw)``."""
        self._handlers[kind] = handler

    def on_child_exit(self, callback: Callable[[Child], None]) -> None:
        """Call ``callback(child)`` when a child is found exited (its ``exitcode`` set)."""
        self._exit_callbacks.append(callback)

    def on_wire_frames(self, hook: Callable[[list[bytes]], None]) -> None:
        """Call ``hook(frames)`` with the frames the TAP bridge puts on the NIC's wire (after
        its faults), before the NIC sees them (e.g. to copy frames every consumer needs)."""
        if self.bridge is None:
            raise ValueError("on_wire_frames needs a TAP bridge (NicProcess(nic, tap))")
        self._wire_hooks.append(hook)

    def on_wire_out(self, hook: Callable[[list[bytes]], list[bytes]]) -> None:
        """Pass the frames that left the NIC's wire through ``hook(frames) -> frames``
        before the TAP bridge writes them (e.g. to drop duplicates)."""
        if self.bridge is None:
            raise ValueError("on_wire_out needs a TAP bridge (NicProcess(nic, tap))")
        self._out_hooks.append(hook)

    def on_turn(self, hook: Callable[[], bool]) -> None:
        """Call ``hook()`` once per loop turn after the NIC ran; it returns whether it moved
        something (then the loop does not sleep)."""
        self._turn_hooks.append(hook)

    def _tee(self, frames: list[bytes]) -> None:
        for hook in self._wire_hooks:
            hook(frames)

    def _out(self, frames: list[bytes]) -> list[bytes]:
        for hook in self._out_hooks:
            frames = hook(frames)
        return frames

    @property
    def activity(self) -> int:
        """The NIC's cycle count as of the last turn: a turn hook that sees it change knows
        the NIC ran (it runs only while it has work)."""
        return self._activity

    @property
    def busy(self) -> bool:
        """Whether the NIC had work left after the last turn (the loop turns again at once)."""
        return self._busy

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (the loop returns at once while it is)."""
        return self._stop.is_set()

    @property
    def alive(self) -> list[Child]:
        return [c for c in self.children if c.alive]

    def _serve_request(self, child: Child, msg: tuple) -> None:
        _, ident, kind, kw = msg
        handler = self._handlers.get(kind)
        if handler is None:
            send_reply(child.conn, ident, False, f"the NIC process serves no request "
                       f"{kind!r} (it serves {', '.join(sorted(self._handlers)) or 'none'})")
            return
        try:
            inspect.signature(handler).bind(child, **kw)
        except TypeError as exc:        # wrong keywords: the child's misuse, one line
            send_reply(child.conn, ident, False, f"request {kind!r}: {exc}")
            return
        try:
            value = handler(child, **kw)
        except HetnicError as exc:
            send_reply(child.conn, ident, False, one_line(exc))
            return
        send_reply(child.conn, ident, True, value)

    def _serve_children(self) -> bool:
        """Serve every request waiting on a pipe and notice children that exited; returns
        whether there was something."""
        moved = False
        watched = [c for c in self.children if not c.reported]
        if not watched:
            return False
        fds = [c.conn for c in watched if c.conn is not None] + [c.sentinel for c in watched]
        ready = set(select.select(fds, [], [], 0)[0])
        for child in watched:
            if child.conn is not None and child.conn in ready:
                moved |= child.serve_pending() > 0
            if child.sentinel in ready or child.conn is None:
                if not child.alive:
                    self._reap(child)
                    moved = True
        return moved

    def _reap(self, child: Child) -> None:
        child.reported = True
        child.close_pipe()
        if self._closed:
            return
        self.child_exits += 1
        code = child.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 \
            else f"exited with status {code}"
        text = f"hetnic: {child.name} (pid {child.pid}) {how}"
        self.messages.append(text)
        self._log(text)
        for callback in self._exit_callbacks:
            callback(child)

    # --- the loop ------------------------------------------------------------------------
    def _activity_count(self) -> int:
        """The NIC's cycle count: the clock runs only while the NIC has work (a frame, a
        doorbell, a TX item; ``run_until_idle`` stops after ``_QUIET`` quiet cycles), so a
        change means the NIC moved something."""
        return self.nic.now()

    def _doorbell_rung(self) -> bool:
        view = self._doorbells
        if view is None:
            return False
        now = bytes(view)
        if now == self._doorbell_seen:
            return False
        self._doorbell_seen = now
        return True

    def step(self) -> bool:
        """One turn: run the NIC (through the bridge when there is a TAP) if frames came,
        a doorbell was written or the NIC was busy; serve the children; the turn hooks.
        Returns whether anything moved."""
        self._in_step = True
        try:
            return self._step()
        finally:
            self._in_step = False

    def _wait(self, ready: Callable[[], bool], end: float) -> bool:
        """Turn the loop until ``ready()`` or ``end`` (monotonic) while a call waits for
        its answer; False (nothing done) when called from inside a turn (a handler)."""
        if self._in_step:
            return False
        while not ready():
            now = time.monotonic()
            if now >= end:
                break
            if self.step() or self._busy:
                continue
            self._sleep(now, end)
        return True

    def _step(self) -> bool:
        moved = False
        rung = self._doorbell_rung()
        nic = self.nic
        ran_out = False
        cycles = self._slice
        before, t0 = nic.now(), time.perf_counter()
        bridge = self.bridge
        if bridge is None:
            if rung or self._busy or nic.wire.pending():
                # A doorbell, or work left when the last run stopped at its cycle budget
                # (exported TX queues' work is seen by the NIC only): run until idle.
                ran_out = nic.run_until_idle(max_cycles=cycles, quiet=_QUIET) >= cycles
        else:
            # One run per turn, inside the pump, so that the frames it sends reach the TAP
            # at the end of this (short) run.
            bridge.max_cycles = cycles
            moved = bridge.pump(256, run=rung or self._busy) > 0
            ran_out = bridge.busy
        self._busy = ran_out
        ran = nic.now() - before
        if ran >= cycles:
            self._adapt(ran, time.perf_counter() - t0)
        activity = self._activity_count()
        if activity != self._activity:
            self._activity = activity
            moved = True
        moved |= rung
        for hook in self._turn_hooks:
            moved |= bool(hook())
        moved |= self._serve_children()
        if moved:
            self._last_active = time.monotonic()
        return moved

    def _adapt(self, ran: int, seconds: float) -> None:
        """Set the cycles of the next runs so that one takes about ``RUN_SECONDS``, from a
        turn that used its whole budget (``ran`` cycles in ``seconds``)."""
        if seconds <= 0:
            return
        goal = ran * RUN_SECONDS / seconds
        goal = (self._slice * 3 + goal) / 4          # smoothed: one slow turn is not a trend
        self._slice = int(min(_MAX_CYCLES, max(_MIN_CYCLES, goal)))

    def run(self, until: Callable[[], bool] | None = None,
            timeout: float | None = None) -> bool:
        """Turn until ``until()`` holds, :meth:`stop` is called or ``timeout`` seconds pass.

        Returns
        -------
        bool
            True if ``until()`` held (with no ``until``: if the loop was stopped); False
            when ``timeout`` passed with no ``until``.

        Raises
        ------
        NicProcessTimeout
            ``timeout`` passed before ``until()`` held.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, "
                             f"not {timeout!r}")
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if until is not None and until():
                return True
            if self._stop.is_set():
                return until is None
            now = time.monotonic()
            if end is not None and now >= end:
                if until is None:
                    return False
                raise NicProcessTimeout(f"the NIC process did not reach its condition "
                                        f"within {timeout:g} s")
            if self.step() or self._busy:
                continue
            self._sleep(now, end)

    def _sleep(self, now: float, end: float | None) -> None:
        long = now - self._last_active >= _ACTIVE_WINDOW
        word = self._wake_word if long else None
        wait = self.busy_wait if not long else (self.idle_wait if word is None else LONG_WAIT)
        if self.bridge is not None:
            deadline = self.bridge.next_deadline()
            if deadline is not None:
                wait = min(wait, deadline - now)
        if end is not None:
            wait = min(wait, end - now)
        if wait <= 0:
            return
        fds: list[Any] = [] if self.bridge is None else [self.bridge.fileno()]
        for child in self.children:
            if not child.reported:
                fds.append(child.sentinel)
                if child.conn is not None:
                    fds.append(child.conn)
        if word is not None:
            # announce, fence, look again (a child stores its doorbell, fences, loads the
            # word): one of the two sees the other's store, so no doorbell is slept through
            word.announce(1)
            if self._doorbells is not None and bytes(self._doorbells) != self._doorbell_seen:
                word.store(0)               # a doorbell came before the word was set
                return
        try:
            if fds:
                select.select(fds, [], [], wait)
            else:
                time.sleep(wait)
        finally:
            if word is not None:
                word.store(0)

    def stop(self) -> None:
        """Make :meth:`run` return, now and from then on (safe from a signal handler or
        another thread)."""
        self._stop.set()

    # --- closing -------------------------------------------------------------------------
    def close(self, grace: float = _GRACE) -> None:
        """Stop every child: close its pipe (it exits on EOF), wait up to ``grace`` seconds,
        then SIGTERM, then SIGKILL; join them. The NIC and the TAP stay open."""
        if self._closed:
            return
        self._closed = True
        for child in self.children:
            child.close_pipe()
        stop_processes([c.process for c in self.children], grace)
        for child in self.children:
            child.reported = True
        if self._wake_word is not None:
            self._wake_word.release()       # the caller may close the memory behind it
            self._wake_word = None

    def __enter__(self) -> "NicProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _doorbell_view(nic) -> memoryview | None:
    """The used slots of the NIC's doorbell page (``shared=True``), read to notice a child's
    doorbell without running the clock; None for a NIC without one."""
    page = getattr(nic, "doorbell_page", None)
    if page is None:
        return None
    return page.buf[:page.layout.slots * SLOT_BYTES]


class _WireTee:
    """``nic.wire`` for the bridge: ``hook(frames)`` sees every frame put on it, ``out``
    filters the frames taken off it."""

    def __init__(self, wire, hook: Callable[[list[bytes]], None],
                 out: Callable[[list[bytes]], list[bytes]]):
        self._wire, self._hook, self._out = wire, hook, out

    def send(self, frames, errors=None) -> int:
        frames = list(frames)
        if frames:
            self._hook(frames)
        return self._wire.send(frames, errors)

    def received(self) -> list[bytes]:
        frames = self._wire.received()
        return self._out(frames) if frames else frames

    def __getattr__(self, name: str):
        return getattr(self._wire, name)


class _NicView:
    """The NIC as the bridge sees it: the same, but its wire is a :class:`_WireTee`."""

    def __init__(self, nic, wire: _WireTee):
        self._nic, self.wire = nic, wire

    def __getattr__(self, name: str):
        return getattr(self._nic, name)
