"""Runs user-mode stacks on the running asyncio event loop, and opens streams on them.

>>> async with AsyncStackDriver(stack, link) as driver:
...     server = await driver.start_server(handle, 7)
...     reader, writer = await driver.open_connection("198.18.0.1", 80)

The driver is the asyncio counterpart of :func:`hetnic.host.stack_runner.run_stacks`. One
*step* moves frames from each link into its stack (``stack.receive(frame, now)``), runs the
timers (``stack.poll(now)``) and sends what came out. Steps are scheduled, never looped:

* when a link's descriptor is readable (``loop.add_reader``), or an in-memory link says
  frames arrived (a :class:`~hetnic.host.links.PairLink` end's ``on_arrival``);
* after the application gave a socket something to do (:meth:`AsyncStackDriver.kick`: a
  stream wrote, closed, ...);
* at the earliest timer deadline of the stacks and links (``loop.call_at``);
* at once again while a batch came in full or the ``extra_pump`` (a TAP bridge) is busy;
* every ``poll_interval`` of the instance when a link has no way to say frames arrived.

The stacks' time is the loop's clock (``loop.time()``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .links import Link
from .stack_runner import _DEFAULT_BATCH, _DEFAULT_POLL, earliest_deadline, step_stack
from .streams import _LIMIT, Server, StreamReader, StreamWriter, _Readiness, _raise_error
from .stack.errors import ConnectionTimeout

__all__ = ["AsyncStackDriver"]


class _Pair:
    __slots__ = ("stack", "link", "batch", "interval", "polled")

    def __init__(self, stack, link: Link):
        cfg = getattr(stack, "config", None)
        self.stack = stack
        self.link = link
        self.batch = getattr(cfg, "poll_batch", _DEFAULT_BATCH)
        self.interval = getattr(cfg, "poll_interval", _DEFAULT_POLL)
        self.polled = False


def _register(stack, driver: "AsyncStackDriver") -> None:
    """Let ``await stack.open_connection(...)`` / ``start_server`` find the driver."""
    if hasattr(stack, "driver"):
        stack.driver = driver


class AsyncStackDriver:
    """Drives one or more ``(stack, link)`` pairs on the running event loop.

    Parameters
    ----------
    stack : Stack
        The first (default) stack; :meth:`add` adds more (e.g. the instances of one NIC).
    link : Link
        The link it sends and receives on.
    extra_pump : object with ``pump()``, or None
        Run at each step before the stacks (a :class:`~hetnic.host.tap_bridge.TapBridge`):
        its ``fileno()`` wakes the driver, its ``busy`` asks for another step at once. While
        it has a descriptor, links without one (NIC queues it feeds) are not polled.

    Use ``async with`` (or :meth:`start` from a coroutine and :meth:`close`).
    """

    def __init__(self, stack, link: Link, *, extra_pump: Any = None):
        self._pairs: list[_Pair] = [_Pair(stack, link)]
        _register(stack, self)
        self._pump = extra_pump
        self.loop: asyncio.AbstractEventLoop | None = None
        self._readers: list[int] = []
        self._pump_fd: int | None = None
        self._step_queued = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._running = False
        self.steps = 0

    @property
    def stack(self):
        """The first stack (the default of :meth:`open_connection` / :meth:`start_server`)."""
        return self._pairs[0].stack

    def add(self, stack, link: Link) -> None:
        """Drive ``stack`` on ``link`` too (before or after :meth:`start`)."""
        pair = _Pair(stack, link)
        self._pairs.append(pair)
        _register(stack, self)
        if self._running:
            self._attach(pair)
            self.kick()

    # --- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Attach to the running loop (idempotent)."""
        if self._running:
            return
        self.loop = asyncio.get_running_loop()
        self._running = True
        pump_fd = None
        if self._pump is not None and hasattr(self._pump, "fileno"):
            pump_fd = self._pump.fileno()
            self.loop.add_reader(pump_fd, self.kick)
            self._readers.append(pump_fd)
        self._pump_fd = pump_fd
        for pair in self._pairs:
            self._attach(pair)
        self.kick()

    def _attach(self, pair: _Pair) -> None:
        link = pair.link
        fd = link.fileno()
        if fd is not None:
            if fd not in self._readers:
                self.loop.add_reader(fd, self.kick)
                self._readers.append(fd)
        elif hasattr(link, "on_arrival"):
            link.on_arrival = self.kick
        else:
            pair.polled = self._pump_fd is None

    def close(self) -> None:
        """Detach from the loop: no more steps (the stacks and links stay as they are)."""
        if not self._running:
            return
        self._running = False
        for fd in self._readers:
            self.loop.remove_reader(fd)
        self._readers.clear()
        for pair in self._pairs:
            if getattr(pair.link, "on_arrival", None) == self.kick:
                pair.link.on_arrival = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __aenter__(self) -> "AsyncStackDriver":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    # --- stepping ------------------------------------------------------------------------------
    def kick(self) -> None:
        """Ask for a step soon (call after handing a socket work from outside a step)."""
        if self._running and not self._step_queued:
            self._step_queued = True
            self.loop.call_soon(self._step)

    def _step(self) -> None:
        self._step_queued = False
        if not self._running:
            return
        self.steps += 1
        now = self.loop.time()
        try:
            again = self._turn(now)
        except Exception as exc:        # a bug below: report it and keep the stacks running
            self.loop.call_exception_handler({"message": "a stack driver step failed",
                                              "exception": exc})
            again = False
        if again:
            self.kick()
        else:
            self._arm(now)

    def _turn(self, now: float) -> bool:
        """One pass over the pump and every pair; True if another should follow at once."""
        again = False
        pump = self._pump
        if pump is not None:
            again = bool(pump.pump()) or bool(getattr(pump, "busy", False))
        for pair in self._pairs:
            received, sent = step_stack(pair.stack, pair.link, pair.batch, now)
            if received >= pair.batch or (sent and pump is not None):
                again = True            # a full batch: more wait; sent: the bridge carries them
        return again

    def _arm(self, now: float) -> None:
        wake = earliest_deadline(((p.stack, p.link) for p in self._pairs), self._pump)
        for pair in self._pairs:
            if pair.polled:
                t = now + pair.interval
                if wake is None or t < wake:
                    wake = t
        if wake is None:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= wake and \
                    not self._timer.cancelled() and self._timer_at > now:
                return
            self._timer.cancel()
        self._timer_at = wake
        self._timer = self.loop.call_at(wake, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._step()

    # --- streams -------------------------------------------------------------------------------
    def _streams(self, sock, limit: int = _LIMIT) -> tuple[StreamReader, StreamWriter]:
        readiness = _Readiness(sock, self.loop)
        reader = StreamReader(sock, readiness, limit)
        return reader, StreamWriter(sock, readiness, self, reader)

    async def open_connection(self, host, port: int, *, stack=None, limit: int = _LIMIT,
                              timeout: float | None = None
                              ) -> tuple[StreamReader, StreamWriter]:
        """Connect to ``(host, port)`` from ``stack`` (default: the first); returns once the
        handshake completed.

        Raises
        ------
        ConnectionRefused, ConnectionTimeout, Unreachable, ...
            The connection failed (the stack's one-line errors). ``timeout`` (seconds) gives
            up earlier than the stack's SYN retries would, with :class:`ConnectionTimeout`.
        """
        self.start()
        stack = self.stack if stack is None else stack
        sock = stack.tcp_socket()
        readiness = _Readiness(sock, self.loop)
        sock.connect((host, port), now=self.loop.time())
        self.kick()
        end = None if timeout is None else self.loop.time() + timeout
        while not sock.connected:
            _raise_error(sock)
            if sock.closed:
                raise ConnectionTimeout(f"connect to {host} port {port}: the connection "
                                        f"closed before it was established")
            waiter = readiness.wait()
            if end is None:
                await waiter
                continue
            try:
                await asyncio.wait_for(waiter, max(0.0, end - self.loop.time()))
            except asyncio.TimeoutError:
                sock.abort()
                self.kick()
                raise ConnectionTimeout(f"connect to {host} port {port}: no answer within "
                                        f"{timeout:g} s") from None
        reader = StreamReader(sock, readiness, limit)
        return reader, StreamWriter(sock, readiness, self, reader)

    async def start_server(self, client_connected_cb: Callable, port: int, host=None, *,
                           stack=None, backlog: int | None = None,
                           limit: int = _LIMIT) -> Server:
        """Listen on ``(host, port)`` of ``stack`` (default: the first; host None: every
        address) and start ``client_connected_cb(reader, writer)`` for each connection."""
        self.start()
        stack = self.stack if stack is None else stack
        sock = stack.tcp_socket()
        try:
            sock.bind(("" if host is None else host, port))
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return Server(self, sock, client_connected_cb, limit)
