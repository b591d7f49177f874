"""hetnicd: one long-running owner of the NIC that serves its clients on a Unix socket.

:class:`Daemon` owns one NIC and the stack instances on it (an :class:`InstanceSupervisor`
around :class:`~hetnic.host.stack_procs.StackProcs`, or
:class:`~hetnic.host.stack_host.StackHost` in one process, exactly as ``hetnic stack up``
runs them), and in the same thread, between turns of the NIC:

* serves clients (:mod:`hetnic.host.daemon_protocol`): each connection is a session whose
  peer credentials (``SO_PEERCRED``) are resolved to a user and groups and checked against
  the policy (:mod:`hetnic.host.daemon_policy`) for every request; every decision goes to
  the audit log (:mod:`hetnic.host.daemon_audit`);
* acts on file events (:mod:`hetnic.host.daemon_events`): the policy reloads, the rules
  file and the RSS key file apply with one commit (or are refused, keeping the old), an
  instance configuration is validated, a capture dropped in the watch folder is replayed
  through the NIC with its report written next to it.

The operations are one table, :attr:`Daemon.ops`: ``"INTERFACE.OPERATION" -> handler``.
A request runs only once it has fully arrived, and a configuration change is one commit on
the NIC (:meth:`Daemon.configure`), so a client that goes away mid-request leaves the old
configuration or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import stat
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..errors import HetnicError
from .daemon_audit import AuditError, AuditLog
from .daemon_client import socket_answers
from .daemon_events import REPORT_SUFFIX, Item, Reconciler, Watcher, open_for_writing
from .daemon_ops import DEFERRED, INSTRUCTIONS, TURN, Operations, OpRefused, one_line
from .daemon_restart import RESTART_COUNTERS
from .daemon_policy import (Identity, Policy, deny_all, load_policy, policy_from_bytes,
                            resolve)
from .daemon_protocol import (MAX_MESSAGE, ProtocolError, decode_request, error_reply, encode,
                              reply, split_op, VERSION)

__all__ = ["Daemon", "DaemonError", "OpRefused", "InstanceSupervisor", "default_socket"]

#: Bytes of replies and events a session may have unsent before it is closed.
MAX_BACKLOG = 8 * MAX_MESSAGE
#: File-event records kept for a client that starts following.
RECENT_EVENTS = 50
#: Sessions open at once, in all and of one uid; one more is answered ``busy`` and closed.
MAX_SESSIONS = 256
MAX_SESSIONS_PER_UID = 32
#: Seconds the daemon stops accepting after accept() failed (EMFILE, ENFILE, ENOBUFS,
#: ENOMEM: no descriptors or memory); the pending connections wait in the listen backlog.
ACCEPT_PAUSE = 0.2


class DaemonError(HetnicError, RuntimeError):
    """The daemon cannot start or serve (socket in use, no XDG_RUNTIME_DIR, ...)."""


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/hetnic.sock``; DaemonError when XDG_RUNTIME_DIR is unset."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise DaemonError("XDG_RUNTIME_DIR is not set, so there is no default socket; give "
                          "--socket PATH")
    return Path(runtime) / "hetnic.sock"


class InstanceSupervisor:
    """Starts and stops the stack instances on the NIC (all of them, as one host);
    restarting one instance is :mod:`hetnic.host.daemon_restart`'s, run by the daemon's
    loop (:meth:`Daemon.restart_step`)."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self.host = None
        self.starts = 0

    def start(self):
        if self.host is None:
            self.host = self._factory()
            self.starts += 1
        return self.host

    def stop(self) -> None:
        if self.host is not None:
            host, self.host = self.host, None
            host.close()

    def instances(self) -> list:
        return list(self.host.instances) if self.host is not None else []


class _Session:
    def __init__(self, sock: socket.socket, who: Identity):
        self.sock = sock
        self.who = who
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.follow: int | None = None      # the request id of events.read --follow
        self.closing = False


def _peer(sock: socket.socket) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


#: SO_PEERGROUPS (Linux 4.13+, asm-generic/socket.h); Python 3.11 does not name it.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def _peer_groups(sock: socket.socket) -> list[int] | None:
    """The supplementary gids the peer had when it connected (``SO_PEERGROUPS``), or None
    when the kernel cannot say (older kernel, more groups than fit in 1,024 bytes)."""
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
    except OSError:
        return None
    return list(struct.unpack(f"{len(data) // 4}I", data[:len(data) // 4 * 4]))


def _listen(path: Path) -> socket.socket:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise DaemonError(f"cannot use {path} as the socket: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISSOCK(mode):
        raise DaemonError(f"{path} exists and is not a socket; the daemon replaces only a "
                          f"stale socket: remove it or give another --socket")
    if mode is not None:
        if socket_answers(path):
            raise DaemonError(f"a daemon already serves {path}")
        path.unlink()                       # a stale socket of a daemon that is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o666)               # anyone may connect; the policy decides
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock



class Daemon(Operations):
    """hetnicd (see the module). ``host`` is the running stack host (or a supervisor's);
    ``socket_path`` where clients connect; ``policy``, ``rules``, ``rss_key``,
    ``instances``: the files it watches; ``watch``: the drop folder, whose captures
    ``read_capture(path) -> frames`` reads (:func:`hetnic.replay.read_capture`, passed in by
    the command: the host layer does not import it)."""

    def __init__(self, supervisor: InstanceSupervisor, *, socket_path: Path,
                 policy: Path | None = None, audit: AuditLog | None = None,
                 rules: Path | None = None, rss_key: Path | None = None,
                 instances: Path | None = None, watch: Path | None = None,
                 read_capture: Callable[[Path], list[bytes]] | None = None,
                 log: Callable[[str], None] = lambda text: None):
        self.supervisor = supervisor
        self.host = supervisor.start()
        self.socket_path = Path(socket_path)
        self.policy_path = policy
        self.audit = audit or AuditLog()
        self.log = log
        self.read_capture = read_capture
        self.operator_rules: list = []
        self._base = self.host.dispatcher.base_plan
        self.commits = 0
        self.ops: dict[str, Callable[[_Session, int, dict], Any]] = {
            "rules.read": self._rules_read, "rules.configure": self._rules_configure,
            "rss.read": self._rss_read, "rss.configure": self._rss_configure,
            "counters.read": self._counters_read, "instances.read": self._instances_read,
            "rx_queues.read": self._queues_read, "tx_queues.read": self._queues_read,
            "tap.read": self._tap_read, "direct.read": self._direct_read,
            "events.read": self._events_read,
            "instances.configure": self._instances_configure,
        }
        self.restart = None                 # the Restart running (or the last one)
        self._restart_session: tuple | None = None      # (session, id, access record)
        #: Rules and key files refused while a restart ran: applied when it is over.
        self._after_restart: dict[Path, str] = {}
        self.restart_counters = {name: 0 for name in RESTART_COUNTERS}
        self._restart_seen = dict(self.restart_counters)
        self.events: deque[dict] = deque(maxlen=RECENT_EVENTS)
        self.replays: deque = deque()
        self._queued = None                 # the replay _on_drop just queued
        self.event_seq = 0
        self.sessions: dict[int, _Session] = {}
        self.stats = {"sessions": 0, "requests": 0, "allowed": 0, "denied": 0,
                      "bad_requests": 0, "busy": 0, "accept_errors": 0}
        self.max_sessions, self.max_sessions_per_uid = MAX_SESSIONS, MAX_SESSIONS_PER_UID
        self._accept_paused_until: float | None = None
        self.policy: Policy = self._load_policy()
        items = [Item(kind, Path(p)) for kind, p in (("policy", policy), ("rules", rules),
                                                     ("rss-key", rss_key),
                                                     ("instances", instances),
                                                     ("drop", watch)) if p is not None]
        self._server = _listen(self.socket_path)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ, "accept")
        self.watcher = Watcher(items) if items else None
        self.reconciler = Reconciler(self._instruction, self._event_record)
        if self.watcher is not None:
            self._selector.register(self.watcher.fileno(), selectors.EVENT_READ, "events")
            files = self.watcher.scan()
            # done already: the policy just loaded, each capture that has its report
            self.reconciler.prime([(k, p) for k, p in files if k == "policy" or (
                k == "drop" and p.with_name(p.name + REPORT_SUFFIX).exists())])
            for kind, path in files:        # the rules and key files as they are at start,
                if kind in ("rules", "rss-key") and path.exists():      # and the captures
                    self.reconciler.one(kind, path)                     # not replayed yet
                elif kind == "drop" and path not in self.reconciler.done and \
                        not open_for_writing(path):
                    self.reconciler.one(kind, path)
        self._stopped = False

    # --- the loop ---------------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> None:
        """Serve until :meth:`stop` (or ``timeout`` seconds)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._stopped and not self.host.stopped:
            if end is not None and time.monotonic() >= end:
                break
            self.host.run(timeout=TURN)
            self.replay_step()
            self.restart_step()
            self.poll(0)

    def poll(self, timeout: float = 0) -> None:
        if self._accept_paused_until is not None and \
                time.monotonic() >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._server, selectors.EVENT_READ, "accept")
        ready = self._selector.select(timeout)
        # file events first: a policy change seen in this turn decides this turn's requests
        ready.sort(key=lambda pair: pair[0].data != "events")
        for key, mask in ready:
            if key.data == "accept":
                self._accept()
            elif key.data == "events":
                self._file_events()
            else:
                session = key.data
                if mask & selectors.EVENT_READ:
                    self._read(session)
                if mask & selectors.EVENT_WRITE and session.sock.fileno() >= 0:
                    self._flush(session)

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        if self.restart is not None and not self.restart.done:
            # stopped mid-restart: the instances stop with the daemon, nothing to roll back;
            # the asking session gets its answer and the audit log its record
            self.restart.abort("the daemon stopped during the restart")
            if self._restart_session is not None:
                self._answer_restart()
        for session in list(self.sessions.values()):
            self._close(session)
        self._selector.close()
        self._server.close()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
        if self.watcher is not None:
            self.watcher.close()
        self.audit.close()

    # --- sessions ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:     # the peer gave up first
                    continue
                self.stats["accept_errors"] += 1
                self.log(f"cannot accept a connection: {exc.strerror or exc}; not accepting "
                         f"for {ACCEPT_PAUSE} s")
                self._selector.unregister(self._server)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            try:
                sock.setblocking(False)
                who = resolve(*_peer(sock), gids=_peer_groups(sock))
            except OSError:
                sock.close()
                continue
            mine = sum(1 for s in self.sessions.values() if s.who.uid == who.uid)
            if len(self.sessions) >= self.max_sessions or mine >= self.max_sessions_per_uid:
                self.stats["busy"] += 1
                with contextlib.suppress(OSError):
                    sock.send(error_reply(None, "busy", f"too many sessions ({mine} of uid "
                                          f"{who.uid}, {len(self.sessions)} in all; at most "
                                          f"{self.max_sessions_per_uid} and "
                                          f"{self.max_sessions})"))
                sock.close()
                continue
            session = _Session(sock, who)
            self.sessions[sock.fileno()] = session
            self._selector.register(sock, selectors.EVENT_READ, session)
            self.stats["sessions"] += 1

    def _read(self, session: _Session) -> None:
        try:
            data = session.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                        # gone (a half line is dropped, never run)
            self._close(session)
            return
        session.inbuf += data
        while not session.closing:
            end = session.inbuf.find(b"\n")
            if end < 0:
                if len(session.inbuf) > MAX_MESSAGE:
                    self._bad(session, None, f"message longer than {MAX_MESSAGE} bytes")
                break
            line = bytes(session.inbuf[:end])
            del session.inbuf[:end + 1]
            self._request(session, line)
        if session.closing and not session.outbuf:
            self._close(session)

    def _bad(self, session: _Session, id, error: str) -> None:
        self.stats["bad_requests"] += 1
        self.audit.write("access", session=session.who.record(), user=session.who.user,
                         interface=None, operation=None, op=None, result="bad-request",
                         rule=None,
                         error=error)
        self._send(session, error_reply(id, "bad-request", error))
        session.closing = True

    def _request(self, session: _Session, line: bytes) -> None:
        self.stats["requests"] += 1
        try:
            id, op, args = decode_request(line)
        except ProtocolError as exc:
            self._bad(session, None, str(exc))
            return
        who = session.who
        if op == "session.whoami":
            self._send(session, reply(id, {"pid": who.pid, "uid": who.uid, "gid": who.gid,
                                           "user": who.user, "groups": sorted(who.groups),
                                           "protocol": VERSION}))
            return
        cell = split_op(op)
        if cell is None:
            self._bad(session, id, f"unknown op {op!r}; ops are INTERFACE.OPERATION or "
                      f"session.whoami")
            return
        interface, operation = cell
        decision = self.policy.decide(who, interface, operation)
        record = dict(session=who.record(), user=who.user, interface=interface,
                      operation=operation, op=op, rule=decision.rule)
        if not decision.allowed:
            self.stats["denied"] += 1
            why = self.policy.error or f"the policy grants {op} to none of user " \
                f"{who.user!r} and its groups"
            self.audit.write("access", **record, result="denied")
            self._send(session, error_reply(id, "denied", f"permission denied: {why}"))
            return
        self.stats["allowed"] += 1
        handler = self.ops.get(op)
        if handler is None:
            self.audit.write("access", **record, result="unsupported")
            self._send(session, error_reply(id, "unsupported", f"{op} is allowed but this "
                                            f"daemon has no such operation"))
            return
        try:
            result = handler(session, id, args)
            if result is DEFERRED:          # answered when it is over (a restart)
                self._restart_session = (session, id, record)
                return
            answer = reply(id, result)
        except OpRefused as exc:
            self.audit.write("access", **record, result="refused", error=str(exc))
            self._send(session, error_reply(id, "refused", str(exc)))
            return
        except AuditError:
            raise                           # fatal: nothing may go unaudited
        except Exception as exc:            # HetnicError, or a bug no check caught: not fatal
            error = str(exc) if isinstance(exc, HetnicError) else one_line(exc)
            if not isinstance(exc, HetnicError):
                self.log(f"{op} of session {who.record()} failed: {error}")
            self.audit.write("access", **record, result="failed", error=error)
            self._send(session, error_reply(id, "failed", error[:4096]))
            return
        self.audit.write("access", **record, result="done")
        self._send(session, answer)

    def _send(self, session: _Session, data: bytes) -> None:
        if session.sock.fileno() < 0:
            return
        session.outbuf += data
        if len(session.outbuf) > MAX_BACKLOG:
            self._close(session)            # a client that does not read
            return
        self._flush(session)

    def _flush(self, session: _Session) -> None:
        try:
            sent = session.sock.send(session.outbuf)
            del session.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(session)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.outbuf else 0)
        self._selector.modify(session.sock, want, session)
        if session.closing and not session.outbuf:
            self._close(session)

    def _close(self, session: _Session) -> None:
        if session.sock.fileno() < 0:
            return
        self.sessions.pop(session.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(session.sock)
        session.sock.close()

    # --- restarts ----------------------------------------------------------------------------
    def restart_step(self) -> None:
        """Advance the running restart a little; once it is over, answer the session that
        asked for it (if it is still there) and audit the request's result."""
        restart = self.restart
        if restart is None or self._restart_session is None:
            return
        restart.advance()
        if restart.done:
            self._answer_restart()
            self._apply_after_restart()

    def _answer_restart(self) -> None:
        restart = self.restart
        session, id, record = self._restart_session
        self._restart_session = None
        if restart.result is not None and restart.error is None:
            self.audit.write("access", **record, result="done")
            self._send(session, reply(id, restart.result))
        else:
            self.audit.write("access", **record, result="failed", error=restart.error)
            self._send(session, error_reply(id, "failed", restart.error[:4096]))

    def _apply_after_restart(self) -> None:
        """The rules and key files that changed while the restart ran (refused then): each
        as it is now, a file event of its own."""
        queued, self._after_restart = self._after_restart, {}
        for path, kind in queued.items():
            self.reconciler.forget([path])  # its content was refused: act on it again
            if path.exists():
                self.reconciler.one(kind, path)

    def restart_event(self, step: str, record: dict) -> None:
        """A restart step's record: the event window (followers), the audit log, and the
        session that asked for the restart (an event line with its request id)."""
        before, after = self._restart_seen, dict(self.restart_counters)
        self._restart_seen = after
        failed = step == "rolled-back" or "error" in record
        self.event_seq += 1
        record = self.audit.write(
            "restart", seq=self.event_seq, item="restart", path=record["instance"],
            instruction=step, result="failed" if failed else "done",
            **{k: v for k, v in record.items() if k not in ("instance", "step")},
            counters={k: [before[k], after[k]] for k in after if after[k] != before[k]})
        self.events.append(record)
        self.log(f"restart {record['path']}: {step}" + (f" ({record['error']})"
                                                       if "error" in record else ""))
        asker = self._restart_session[0] if self._restart_session else None
        for session in list(self.sessions.values()):
            if session.follow is not None:
                self._send(session, self._event_line(session.follow, record))
            elif session is asker:
                self._send(session, self._event_line(self._restart_session[1], record))

    # --- file events -------------------------------------------------------------------------
    def _file_events(self) -> None:
        due = self.watcher.poll()
        self.reconciler.forget(self.watcher.gone)
        self.watcher.gone.clear()
        for error in self.watcher.errors:
            self.log(error)
        self.watcher.errors.clear()
        self.reconciler.handle(due)

    def _event_record(self, record: dict) -> None:
        if record.get("result") == "queued":    # a replay: recorded once it has run
            self._queued.record = record
            return
        if record["item"] == "policy" and record["result"] == "error":
            # a policy that cannot be read denies everything, as one that does not parse
            self.policy = deny_all(f"policy unreadable: {record['error']}",
                                   record["path"])
            self.audit.write("policy", path=record["path"], grants=0,
                             error=self.policy.error)
            record = {**record, "result": "refused"}
        if record.pop("busy", False):      # refused only because a restart runs
            self._after_restart[Path(record["path"])] = record["item"]
            record = {**record, "queued": "applied when the restart is over"}
        record = {"instruction": INSTRUCTIONS[record["item"]], **record}
        self.event_seq += 1
        record = self.audit.write("file-event", seq=self.event_seq, **record)
        self.events.append(record)
        self.log(f"file event {record['item']} {record['path']}: {record.get('instruction')}"
                 f" -> {record['result']}" + (f" ({record['error']})" if "error" in record
                                              else ""))
        for session in list(self.sessions.values()):
            if session.follow is not None:
                self._send(session, self._event_line(session.follow, record))

    @staticmethod
    def _event_line(id: int, record: dict) -> bytes:
        """The event line of ``record`` for a follower; a record too long for one message
        is sent without its counters and diff (the audit log has it whole)."""
        try:
            return encode({"v": VERSION, "id": id, "event": record})
        except (ProtocolError, TypeError, ValueError):
            short = {k: record.get(k) for k in ("seq", "time", "item", "path", "instruction",
                                                 "result", "error")}
            short["truncated"] = True
            return encode({"v": VERSION, "id": id, "event": short})

    def _load_policy(self, data: bytes | None = None) -> Policy:
        """The policy file's policy (``data``: its content, read already), logged."""
        policy = load_policy(self.policy_path) if data is None else \
            policy_from_bytes(data, self.policy_path)
        self.audit.write("policy", path=str(self.policy_path), grants=len(policy.grants),
                         error=policy.error)
        self.log(policy.error or f"policy {self.policy_path}: {len(policy.grants)} grants")
        return policy

