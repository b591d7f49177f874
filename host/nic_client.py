"""The two ends of the pipe between the NIC process and one of its children.

:class:`Child` is the NIC process's handle on a child (made by
:meth:`~hetnic.host.nic_process.NicProcess.spawn`); :class:`NicClient` is what the child's
target gets as its first argument. Messages are pickled tuples, each side may start an
exchange:

* ``("req", id, kind, kw)`` child -> NIC process, answered ``("rep", id, ok, value)``
  (:meth:`NicClient.request`; ``value`` is the one-line error message when not ``ok``);
* ``("call", id, kind, kw)`` NIC process -> child, answered ``("ret", id, ok, value)``
  (:meth:`Child.call`, served by the handlers of :meth:`NicClient.on_call`).

A side waiting for its answer serves the other side's messages meanwhile, so two requests
crossing each other do not deadlock.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable, Sequence

from ..errors import HetnicError

__all__ = ["Child", "NicClient", "NicRequestError", "ParentGone", "child_main", "send_reply",
           "one_line", "die_with_parent", "stop_processes"]

_PR_SET_PDEATHSIG = 1
#: Default seconds a request or call waits for its answer.
DEFAULT_TIMEOUT = 30.0


class NicRequestError(HetnicError, RuntimeError):
    """A request or call was refused (the other side's one-line message), timed out, or the
    other side is gone."""


class ParentGone(HetnicError, ConnectionError):
    """The child's pipe to the NIC process read EOF: the parent closed it or exited."""


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def send_reply(conn, ident: int, ok: bool, value: Any, kind: str = "rep") -> None:
    """Answer message ``ident`` on ``conn`` (a closed peer is ignored: it is reaped)."""
    try:
        conn.send((kind, ident, ok, value))
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        pass


class Child:
    """The NIC process's handle on one child process.

    Members
    -------
    name : str
    pid : int
    process : multiprocessing.Process
    conn : Connection or None
        The NIC process's end of the pipe (None once closed).
    reported : bool
        Whether its exit was noticed (and logged) already.
    """

    def __init__(self, name: str, process, conn, serve: Callable[["Child", tuple], None],
                 wait: Callable[[Callable[[], bool], float], bool] | None = None):
        self.name = name
        self.process = process
        self.pid: int = process.pid
        self.conn = conn
        self.reported = False
        self._serve = serve
        self._wait = wait
        self._answers: dict[int, tuple] = {}
        self._ids = itertools.count(1)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The exit status (negative: the signal that killed it), None while it runs."""
        return self.process.exitcode

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes readable when the child exits."""
        return self.process.sentinel

    def call(self, kind: str, *, timeout: float = DEFAULT_TIMEOUT, **kw: Any) -> Any:
        """Ask the child (its ``on_call`` handler for ``kind``); its answer.

        While it waits, the NIC process's loop keeps turning (``wait``, when the loop is not
        in the middle of a turn): a child that waits for the NIC's clock (a full TX ring)
        before it can answer is not left waiting for this call.

        Raises
        ------
        NicRequestError
            The child refused (its message), did not answer within ``timeout`` seconds, or
            exited.
        """
        conn = self.conn
        if conn is None:
            raise NicRequestError(f"{self.name} (pid {self.pid}) is not running")
        ident = next(self._ids)
        try:
            conn.send(("call", ident, kind, kw))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise NicRequestError(f"{self.name} (pid {self.pid}) is gone") from None
        peer = f"{self.name} (pid {self.pid})"
        if self._wait is not None and self._wait(
                lambda: ident in self._answers or self.conn is None,
                time.monotonic() + timeout):
            msg = self._answers.pop(ident, None)
            if msg is None:
                raise NicRequestError(f"{peer} did not answer {kind!r} within {timeout:g} s"
                                      if self.conn is not None
                                      else f"{peer} is gone (asked {kind!r})")
            if msg[2]:
                return msg[3]
            raise NicRequestError(msg[3])
        return _await(conn, "ret", ident, timeout, lambda msg: self._serve(self, msg),
                      peer, kind)

    def serve_pending(self) -> int:
        """Serve the requests waiting on the pipe and keep the answers to calls; returns how
        many requests (kicks included). EOF closes the pipe."""
        conn, served = self.conn, 0
        try:
            while conn is not None and conn.poll(0):
                msg = conn.recv()
                if msg[0] == "req":
                    self._serve(self, msg)
                elif msg[0] == "ret":
                    self._answers[msg[1]] = msg
                if msg[0] in ("req", "kick"):
                    served += 1
        except (EOFError, OSError):
            self.close_pipe()
        return served

    def close_pipe(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.pid}, exitcode={self.exitcode})"


class NicClient:
    """A child's end of the pipe to the NIC process.

    Members
    -------
    name : str
        The name the child was spawned with.
    parent_pid : int
    """

    def __init__(self, conn, parent_pid: int, name: str):
        self._conn = conn
        self.parent_pid = parent_pid
        self.name = name
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._ids = itertools.count(1)

    def request(self, kind: str, *, timeout: float = DEFAULT_TIMEOUT, **kw: Any) -> Any:
        """Ask the NIC process (its handler for ``kind``, given ``**kw``); its answer.

        Raises
        ------
        NicRequestError
            Refused (the handler's one-line message), no answer within ``timeout``.
        ParentGone
            The NIC process is gone.
        """
        ident = next(self._ids)
        try:
            self._conn.send(("req", ident, kind, kw))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise ParentGone("the NIC process is gone") from None
        return _await(self._conn, "rep", ident, timeout, self._dispatch, "the NIC process",
                      kind)

    def on_call(self, kind: str, handler: Callable[..., Any]) -> None:
        """Answer the NIC process's ``child.call(kind, **kw)`` with ``handler(**kw)``."""
        self._handlers[kind] = handler

    def serve(self, timeout: float = 0.0) -> int:
        """Serve the NIC process's calls, waiting up to ``timeout`` seconds for the first;
        returns how many were served.

        Raises
        ------
        ParentGone
            The pipe read EOF (the NIC process closed it or exited): the child should exit.
        """
        served = 0
        conn = self._conn
        try:
            if not conn.poll(timeout):
                return 0
            while True:
                self._dispatch(conn.recv())
                served += 1
                if not conn.poll(0):
                    return served
        except (EOFError, OSError):
            raise ParentGone("the NIC process closed the pipe") from None

    def kick(self) -> None:
        """Wake the NIC process's loop from its sleep (after ringing a doorbell while its
        wake word is set, see :class:`~hetnic.host.nic_process.NicProcess`)."""
        try:
            self._conn.send(("kick",))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise ParentGone("the NIC process is gone") from None

    def fileno(self) -> int:
        """Readable when the NIC process sent a call (or exited)."""
        return self._conn.fileno()

    def _dispatch(self, msg: tuple) -> None:
        if msg[0] != "call":
            return                          # a late answer to a request that timed out
        _, ident, kind, kw = msg
        handler = self._handlers.get(kind)
        if handler is None:
            send_reply(self._conn, ident, False, f"{self.name} answers no call {kind!r}",
                       "ret")
            return
        try:
            value = handler(**kw)
        except HetnicError as exc:
            send_reply(self._conn, ident, False, one_line(exc), "ret")
            return
        except Exception as exc:                # noqa: BLE001  a bug in one handler
            # Answer it rather than die: the process's connections and queued frames live
            # on; the traceback goes to its log for the bug report.
            traceback.print_exc()
            send_reply(self._conn, ident, False, f"{self.name} failed {kind!r} (a bug): "
                       f"{type(exc).__name__}: {one_line(exc)}", "ret")
            return
        send_reply(self._conn, ident, True, value, "ret")

    def close(self) -> None:
        self._conn.close()


def _await(conn, answer: str, ident: int, timeout: float, serve: Callable[[tuple], None],
           peer: str, kind: str) -> Any:
    """Wait on ``conn`` for ``(answer, ident, ok, value)``, serving other messages."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        try:
            if left <= 0 or not conn.poll(left):
                raise NicRequestError(f"{peer} did not answer {kind!r} within {timeout:g} s")
            msg = conn.recv()
        except (EOFError, OSError):
            raise (ParentGone if answer == "rep" else NicRequestError)(
                f"{peer} is gone (asked {kind!r})") from None
        if msg[0] == answer and msg[1] == ident:
            if msg[2]:
                return msg[3]
            raise NicRequestError(msg[3])
        if msg[0] in ("req", "call"):
            serve(msg)


def stop_processes(procs: Sequence, grace: float) -> None:
    """Let ``procs`` (multiprocessing processes that were told to stop) exit within
    ``grace`` seconds together, then SIGTERM what is left, then SIGKILL; all joined."""
    end = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel for SIGKILL when the thread of the parent that spawned this process
    exits (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing: the caller's pipe EOF or parent
    check still ends it). With ``parent_pid``, returns whether the parent is still that
    process after the request (False: it died before, the signal will never come: exit);
    without, True."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return parent_pid is None or os.getppid() == parent_pid


def child_main(conn, parent_pid: int, name: str, target: Callable[..., Any],
               args: tuple) -> None:
    """The spawned process's entry: die with the parent, ignore Ctrl-C (the NIC process
    stops its children), run ``target(client, *args)``; a :class:`HetnicError` is one line
    on standard error and exit status 1; the parent gone is a quiet exit 0."""
    alive = die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not alive:
        sys.exit(0)                         # the parent died before the death signal was set
    client = NicClient(conn, parent_pid, name)
    try:
        target(client, *args)
    except ParentGone:
        sys.exit(0)
    except HetnicError as exc:
        print(f"hetnic: {name}: error: {one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        client.close()
