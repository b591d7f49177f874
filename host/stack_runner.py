"""The synchronous loop that runs sans-I/O stacks on their links.

>>> a, b = PairLink.pair()
>>> run_stacks([(client, a), (server, b)], until=lambda: sock.connected, timeout=5.0)

Each turn, for every ``(stack, link)``: the link's housekeeping (:meth:`Link.service`), up to
the instance's ``poll_batch`` frames from the link into ``stack.receive(frame, now)``, then
``stack.poll(now)`` (every timer due) and its frames out on the link. A turn that moved
nothing sleeps in ``select`` until the earliest of: a stack's or link's next deadline, a
link's (or the ``extra_pump``'s) descriptor becoming readable, the timeout. A link that can
get frames from outside the loop with no descriptor to say so (a board's queues) caps the
sleep at the shortest ``poll_interval`` of the stacks; a PairLink or NIC queues behind a TAP
bridge do not (their frames only come from inside the loop).
"""

from __future__ import annotations

import select
import time
from typing import Callable, Protocol, Sequence

from ..errors import HetnicError
from .links import Link

__all__ = ["run_stacks", "step_stack", "earliest_deadline", "RunnerTimeout", "Pumpable"]

#: Sleep cap when a link has no descriptor and a stack has no ``poll_interval``.
_DEFAULT_POLL = 0.001
_DEFAULT_BATCH = 64
#: Longest single sleep, so that ``until()`` sees a flag set by a signal handler soon.
_MAX_SLEEP = 0.25


class RunnerTimeout(HetnicError, TimeoutError):
    """:func:`run_stacks` reached its timeout before ``until()`` became true."""


class Pumpable(Protocol):
    """Something with its own I/O that runs inside the loop (e.g. a
    :class:`~hetnic.host.tap_bridge.TapBridge`): ``pump() -> int`` moves what is ready and
    returns how much; ``fileno()`` wakes the loop; ``busy`` asks for another turn at once;
    ``next_deadline()`` is its next timed work."""

    busy: bool

    def pump(self) -> int: ...

    def fileno(self) -> int: ...

    def next_deadline(self) -> float | None: ...


def step_stack(stack, link: Link, batch: int, now: float) -> tuple[int, bool]:
    """One step of ``stack`` on ``link``: the link's housekeeping, up to ``batch`` frames from
    the link into ``stack.receive(frame, now)``, then ``stack.poll(now)`` and its frames out
    on the link. Returns (frames received, whether frames were sent); shared by
    :func:`run_stacks` and :class:`~hetnic.host.async_driver.AsyncStackDriver`."""
    link.service()
    frames = link.receive(batch)
    if frames:
        receive = stack.receive
        for frame in frames:
            receive(frame, now)
    out = stack.poll(now)
    if out:
        link.send(out)
    return len(frames), bool(out)


def earliest_deadline(stacks_and_links, pump: object = None) -> float | None:
    """The earliest ``next_deadline()`` of the stacks, their links and ``pump`` (if it has
    one), or None when none has a deadline."""
    wake = None
    for stack, link in stacks_and_links:
        for t in (stack.next_deadline(), link.next_deadline()):
            if t is not None and (wake is None or t < wake):
                wake = t
    if pump is not None and hasattr(pump, "next_deadline"):
        t = pump.next_deadline()
        if t is not None and (wake is None or t < wake):
            wake = t
    return wake


def run_stacks(stacks_and_links: Sequence[tuple[object, Link]], *,
               until: Callable[[], bool], timeout: float | None,
               clock: Callable[[], float] = time.monotonic,
               extra_pump: "Pumpable | Callable[[], int] | None" = None) -> int:
    """Run the stacks until ``until()`` is true; returns the loop turns taken.

    Parameters
    ----------
    stacks_and_links : sequence of (Stack, Link)
        Each stack with the link it sends and receives on.
    until : Callable[[], bool]
        Called once before every turn (it may do the application's work too: read and write
        sockets); the loop returns as soon as it is true.
    timeout : float or None
        Seconds on ``clock`` after which :class:`RunnerTimeout` is raised; None runs until
        ``until()`` (a signal handler that sets a flag is seen within ``_MAX_SLEEP``).
    clock : Callable[[], float]
        The time given to the stacks (seconds, monotonic).
    extra_pump : Pumpable or Callable[[], int] or None
        Run once per turn before the stacks: an object with ``pump()`` (and ``fileno()``,
        ``busy``, ``next_deadline()``) such as a ``TapBridge``, or a bare callable returning
        how much it moved (the loop then polls at the short interval).

    Raises
    ------
    RunnerTimeout
        ``until()`` did not become true within ``timeout`` seconds.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, "
                         f"not {timeout!r}")
    pairs = list(stacks_and_links)
    batches = [getattr(getattr(s, "config", None), "poll_batch", _DEFAULT_BATCH) for s, _ in pairs]
    intervals = [getattr(getattr(s, "config", None), "poll_interval", _DEFAULT_POLL)
                 for s, _ in pairs]
    poll_cap = min(intervals, default=_DEFAULT_POLL)
    fds = [link.fileno() for _, link in pairs]
    pump = pump_fd = None
    pumpable = None
    if extra_pump is not None:
        if hasattr(extra_pump, "pump"):
            pumpable = extra_pump
            pump = extra_pump.pump
            pump_fd = extra_pump.fileno() if hasattr(extra_pump, "fileno") else None
        else:
            pump = extra_pump
    # A link with no descriptor gets frames only from inside this loop when it is in-process
    # (``on_arrival``: a PairLink) or fed by a pump that has a descriptor (NIC queues behind a
    # TAP bridge); any other (a board's queues) and a bare pump callable are polled.
    polled = (any(fd is None and not hasattr(link, "on_arrival") and pump_fd is None
                  for fd, (_, link) in zip(fds, pairs))
              or (pump is not None and pump_fd is None))
    wait_fds = [fd for fd in fds if fd is not None] + ([pump_fd] if pump_fd is not None else [])
    work = list(zip((s for s, _ in pairs), (link for _, link in pairs), batches))

    end = float("inf") if timeout is None else clock() + timeout
    turns = 0
    while not until():
        now = clock()
        if now >= end:
            raise RunnerTimeout(f"the stacks did not reach their goal within {timeout:g} s")
        turns += 1
        moved = bool(pump()) if pump is not None else False
        if pumpable is not None and getattr(pumpable, "busy", False):
            moved = True
        for stack, link, batch in work:
            received, sent = step_stack(stack, link, batch, now)
            moved = moved or received > 0 or sent
        if moved:
            continue
        wake = earliest_deadline(pairs, pumpable)
        wake = end if wake is None else min(wake, end)
        delay = min(wake - clock(), _MAX_SLEEP)
        if polled and delay > poll_cap:
            delay = poll_cap
        if delay <= 0:
            continue
        if wait_fds:
            select.select(wait_fds, [], [], delay)
        else:
            time.sleep(delay)
    return turns
