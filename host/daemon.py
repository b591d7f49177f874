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
import dataclasses
import difflib
import os
import selectors
import socket
import struct
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..errors import HetnicError
from ..protocol import RSS_KEY_LEN
from .daemon_audit import AuditLog
from .daemon_events import REPORT_SUFFIX, Item, Reconciler, Watcher
from .daemon_policy import Identity, Policy, deny_all, load_policy, resolve
from .daemon_protocol import (MAX_MESSAGE, ProtocolError, decode_request, error_reply, encode,
                              reply, split_op, VERSION)

__all__ = ["Daemon", "DaemonError", "OpRefused", "InstanceSupervisor", "default_socket"]

#: Seconds the NIC runs between two looks at the sockets and the file events.
TURN = 0.005
#: Bytes of replies and events a session may have unsent before it is closed.
MAX_BACKLOG = 8 * MAX_MESSAGE
#: The instruction of a file event on each kind of item.
INSTRUCTIONS = {"policy": "reload", "rules": "apply-rules", "rss-key": "apply-key",
                "instances": "validate-instances", "drop": "replay"}
#: File-event records kept for a client that starts following.
RECENT_EVENTS = 50


class DaemonError(HetnicError, RuntimeError):
    """The daemon cannot start or serve (socket in use, no XDG_RUNTIME_DIR, ...)."""


class OpRefused(HetnicError, ValueError):
    """An operation that was tried and refused; the configuration is as it was."""


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/hetnic.sock``; DaemonError when XDG_RUNTIME_DIR is unset."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise DaemonError("XDG_RUNTIME_DIR is not set, so there is no default socket; give "
                          "--socket PATH")
    return Path(runtime) / "hetnic.sock"


class InstanceSupervisor:
    """Starts and stops the stack instances on the NIC (all of them, as one host); the
    place where restarting one instance will go."""

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


def _listen(path: Path) -> socket.socket:
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()                   # a stale socket of a daemon that is gone
        else:
            raise DaemonError(f"a daemon already serves {path}")
        finally:
            probe.close()
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


@contextlib.contextmanager
def _as_file(data: bytes, suffix: str, shown: str):
    """``data`` in a private temporary file named ``*suffix`` (for readers that take a
    path), removed afterwards. A HetnicError inside becomes OpRefused naming ``shown``
    instead of the temporary file."""
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="hetnicd-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield Path(name)
    except HetnicError as exc:
        raise OpRefused(str(exc).replace(name, shown)) from None
    finally:
        os.unlink(name)


def _rule_text(rule) -> str:
    fields = {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)}
    return ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "name") \
        + (f"  # {rule.name}" if rule.name else "")


class Daemon:
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
        self.ops: dict[str, Callable[[_Session, dict], Any]] = {
            "rules.read": self._rules_read, "rules.configure": self._rules_configure,
            "rss.read": self._rss_read, "rss.configure": self._rss_configure,
            "counters.read": self._counters_read, "instances.read": self._instances_read,
            "rx_queues.read": self._queues_read, "tx_queues.read": self._queues_read,
            "tap.read": self._tap_read, "direct.read": self._direct_read,
            "events.read": self._events_read,
        }
        self.events: deque[dict] = deque(maxlen=RECENT_EVENTS)
        self.event_seq = 0
        self.sessions: dict[int, _Session] = {}
        self.stats = {"sessions": 0, "requests": 0, "allowed": 0, "denied": 0,
                      "bad_requests": 0}
        self.policy: Policy = self._load_policy()
        items = [Item(kind, Path(p)) for kind, p in (("policy", policy), ("rules", rules),
                                                     ("rss-key", rss_key),
                                                     ("instances", instances),
                                                     ("drop", watch)) if p is not None]
        self._selector = selectors.DefaultSelector()
        self._server = _listen(self.socket_path)
        self._selector.register(self._server, selectors.EVENT_READ, "accept")
        self.watcher = Watcher(items) if items else None
        self.reconciler = Reconciler(self._instruction, self._event_record)
        if self.watcher is not None:
            self._selector.register(self.watcher.fileno(), selectors.EVENT_READ, "events")
            files = [(k, p) for k, p in self.watcher.scan() if k != "drop"]
            self.reconciler.prime([(k, p) for k, p in files if k == "policy"])
            for kind, path in files:        # the rules and key files as they are at start
                if kind in ("rules", "rss-key") and path.exists():
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
            self.poll(0)

    def poll(self, timeout: float = 0) -> None:
        for key, mask in self._selector.select(timeout):
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
            except BlockingIOError:
                return
            sock.setblocking(False)
            session = _Session(sock, resolve(*_peer(sock)))
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
            result = handler(session, {"id": id, **args})
        except OpRefused as exc:
            self.audit.write("access", **record, result="refused", error=str(exc))
            self._send(session, error_reply(id, "refused", str(exc)))
            return
        except HetnicError as exc:
            self.audit.write("access", **record, result="failed", error=str(exc))
            self._send(session, error_reply(id, "failed", str(exc)))
            return
        self.audit.write("access", **record, result="done")
        self._send(session, reply(id, result))

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

    # --- configuration: one commit or none -------------------------------------------------
    def config_text(self) -> str:
        """The configuration the daemon sets, as text (for diffs)."""
        nic = self.host.nic
        lines = [f"rss.key = {nic.rss.key.hex()}", f"rss.reta = {list(nic.rss.table)}",
                 f"default = {self.host.dispatcher.base_plan.default}"]
        lines += [f"rule[{i}] = {_rule_text(r)}"
                  for i, r in enumerate(self.host.dispatcher.rules())]
        return "\n".join(lines) + "\n"

    def configure(self, *, rules: list | None = None, key: bytes | None = None,
                  reta: list[int] | None = None) -> int:
        """Stage the operator rules, the RSS key and/or the RETA and commit them once;
        returns the generation. OpRefused (nothing changed) when they do not fit; a failed
        commit puts the previous configuration back."""
        dispatcher, nic = self.host.dispatcher, self.host.nic
        old_plan, old_key, old_rules = dispatcher.base_plan, nic.rss.key, self.operator_rules
        new_rules = self.operator_rules if rules is None else list(rules)
        plan = dataclasses.replace(old_plan, rules=new_rules + list(self._base.rules),
                                   reta=list(reta) if reta is not None else old_plan.reta)
        free = nic.params.n_rules - (dispatcher.used - len(old_plan.rules))
        if len(plan.rules) > free:
            raise OpRefused(f"{len(new_rules)} rules do not fit: the NIC has "
                            f"{nic.params.n_rules} slots, {dispatcher.used - len(old_plan.rules)}"
                            f" used by the applications' ports and {len(self._base.rules)} by "
                            f"the instances' base plan, leaving {free - len(self._base.rules)}")
        try:
            if key is not None:
                nic.rss.set_key(key)
            dispatcher.base_plan = plan
            generation = dispatcher.program()
        except BaseException:
            dispatcher.base_plan = old_plan
            with contextlib.suppress(HetnicError, ValueError):
                nic.rss.set_key(old_key)
                dispatcher.program()
            raise
        self.operator_rules = new_rules
        self.commits += 1
        return generation

    def _load_rules(self, data: bytes, suffix: str, where: str) -> list:
        from ..rule_file import load_rules
        nic = self.host.nic
        with _as_file(data, suffix, where) as path:
            ruleset = load_rules(path, max_rules=nic.params.n_rules,
                                 reta_entries=nic.regmap.params["reta_size"])
        n = len(self.host.instances)
        for rule in ruleset.rules:
            if not rule.action.drop and rule.action.instance >= n:
                raise OpRefused(f"{where}: rule {rule.name or ''} sends to instance "
                                f"{rule.action.instance}, but {n} instances run")
        return ruleset.rules

    def _check_reta(self, reta) -> list[int]:
        base = self._base.reta
        if not isinstance(reta, list) or len(reta) != len(base) or not all(
                isinstance(q, int) and not isinstance(q, bool) for q in reta):
            raise OpRefused(f"the RETA is a list of {len(base)} RX queue numbers")
        owner = {q: cfg.name for cfg in self.host.instances for q in cfg.rx_queues}
        for i, (q, b) in enumerate(zip(reta, base)):
            if owner.get(q) != owner.get(b):
                raise OpRefused(f"RETA entry {i} is in instance {owner.get(b)}'s slice; "
                                f"queue {q} is not one of its RX queues")
        return reta

    @staticmethod
    def _key(text) -> bytes:
        try:
            key = bytes.fromhex(text.strip().replace(":", "")) if isinstance(text, str) \
                else None
        except ValueError:
            key = None
        if key is None or len(key) != RSS_KEY_LEN:
            raise OpRefused(f"an RSS key is {RSS_KEY_LEN} bytes in hex ({2 * RSS_KEY_LEN} "
                            f"hex digits, ':' allowed)")
        return key

    # --- operations ---------------------------------------------------------------------------
    def _rules_read(self, session, args) -> dict:
        return {"operator": [_rule_text(r) for r in self.operator_rules],
                "table": [_rule_text(r) for r in self.host.dispatcher.rules()],
                "generation": self.host.nic.generation}

    def _rules_configure(self, session, args) -> dict:
        text, fmt = args.get("text"), args.get("format", "toml")
        if not isinstance(text, str) or fmt not in ("toml", "json"):
            raise OpRefused("rules.configure takes 'text' (the rule file) and 'format' "
                            "(toml or json)")
        rules = self._load_rules(text.encode(), f".{fmt}", "rules")
        before = self.config_text()
        generation = self.configure(rules=rules)
        return {"generation": generation, "rules": len(rules),
                "diff": self._diff(before)}

    def _rss_read(self, session, args) -> dict:
        nic = self.host.nic
        return {"key": nic.rss.key.hex(), "reta": list(nic.rss.table),
                "generation": nic.generation}

    def _rss_configure(self, session, args) -> dict:
        if "key" not in args and "reta" not in args:
            raise OpRefused("rss.configure takes 'key' (hex) and/or 'reta' (a list)")
        key = self._key(args["key"]) if "key" in args else None
        reta = self._check_reta(args["reta"]) if "reta" in args else None
        before = self.config_text()
        generation = self.configure(key=key, reta=reta)
        return {"generation": generation, "diff": self._diff(before)}

    def _counters_read(self, session, args) -> dict:
        return {"nic": self.host.nic.counters(), "tap": self.host.bridge.counters(),
                "daemon": self.daemon_counters()}

    def daemon_counters(self) -> dict:
        return {**self.stats, "commits": self.commits, "audit_records": self.audit.records,
                "file_events": self.event_seq,
                "overflows": self.watcher.overflows if self.watcher else 0}

    def _instances_read(self, session, args) -> dict:
        summary = self.host.summary()
        return {"instances": summary["instances"], "ports": self.host.port_map()}

    def _queues_read(self, session, args) -> dict:
        return {cfg.name: {"rx": list(cfg.rx_queues), "tx": cfg.tx_queue}
                for cfg in self.host.instances}

    def _tap_read(self, session, args) -> dict:
        return {"tap": getattr(self.host.bridge.tap, "name", None),
                **self.host.bridge.counters()}

    def _direct_read(self, session, args) -> dict:
        return {"ethertype": self.host.nic.config.direct_ethertype}

    def _events_read(self, session, args) -> dict:
        if args.get("follow"):
            session.follow = args["id"]
        return {"recent": list(self.events), "follow": bool(args.get("follow"))}

    # --- file events -------------------------------------------------------------------------
    def _diff(self, before: str) -> list[str]:
        return list(difflib.unified_diff(before.splitlines(), self.config_text().splitlines(),
                                         "before", "after", lineterm="", n=0))

    def _file_events(self) -> None:
        due = self.watcher.poll()
        for error in self.watcher.errors:
            self.log(error)
        self.watcher.errors.clear()
        self.reconciler.handle(due)

    def _event_record(self, record: dict) -> None:
        if record["item"] == "policy" and record["result"] == "error":
            # a policy that cannot be read denies everything, as one that does not parse
            self.policy = deny_all(f"policy unreadable: {record['error']}",
                                   record["path"])
            self.audit.write("policy", path=record["path"], grants=0,
                             error=self.policy.error)
            record = {**record, "result": "refused"}
        record = {"instruction": INSTRUCTIONS[record["item"]], **record}
        self.event_seq += 1
        record = self.audit.write("file-event", seq=self.event_seq, **record)
        self.events.append(record)
        self.log(f"file event {record['item']} {record['path']}: {record.get('instruction')}"
                 f" -> {record['result']}" + (f" ({record['error']})" if "error" in record
                                              else ""))
        for session in list(self.sessions.values()):
            if session.follow is not None:
                self._send(session, encode({"v": VERSION, "id": session.follow,
                                            "event": record}))

    def _instruction(self, kind: str, path: Path, data: bytes) -> dict:
        """Do what a changed item says; the record's ``instruction``, ``result``,
        counters before and after and the configuration diff."""
        instruction = INSTRUCTIONS[kind]
        before_text = self.config_text()
        before = self.host.nic.counters()
        out: dict = {"instruction": instruction}
        try:
            out.update(getattr(self, "_on_" + kind.replace("-", "_"))(path, data))
            out.setdefault("result", "done")
        except HetnicError as exc:
            out.update(result="refused", error=str(exc))
        after = self.host.nic.counters()
        out["counters"] = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
        out["diff"] = self._diff(before_text)
        return out

    def _load_policy(self) -> Policy:
        policy = load_policy(self.policy_path)
        self.audit.write("policy", path=str(self.policy_path), grants=len(policy.grants),
                         error=policy.error)
        self.log(policy.error or f"policy {self.policy_path}: {len(policy.grants)} grants")
        return policy

    def _on_policy(self, path: Path, data: bytes) -> dict:
        self.policy = self._load_policy()
        if self.policy.error:
            return {"result": "refused", "error": self.policy.error + " (everything is "
                    "denied until it is fixed)"}
        return {"grants": len(self.policy.grants)}

    def _on_rules(self, path: Path, data: bytes) -> dict:
        rules = self._load_rules(data, path.suffix or ".toml", str(path))
        return {"generation": self.configure(rules=rules), "rules": len(rules)}

    def _on_rss_key(self, path: Path, data: bytes) -> dict:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = None
        key = self._key(text) if text is not None and len(data) != RSS_KEY_LEN else data
        return {"generation": self.configure(key=key)}

    def _on_instances(self, path: Path, data: bytes) -> dict:
        from ..host.stack.instance import load_instances
        with _as_file(data, ".toml", str(path)) as tmp:
            instances = load_instances(tmp)
        return {"instances": [cfg.name for cfg in instances],
                "note": "valid; a changed instance configuration takes effect at the "
                "instance's restart"}

    def _on_drop(self, path: Path, data: bytes) -> dict:
        if self.read_capture is None:
            raise OpRefused("this daemon was started without a capture reader")
        with _as_file(data, path.suffix, str(path)) as tmp:
            frames = self.read_capture(tmp)
        bridge = self.host.bridge
        before = self.host.nic.counters()
        bridge.nic.wire.send(frames)
        end = time.monotonic() + 10.0
        while time.monotonic() < end:
            self.host.run(timeout=TURN)
            if not bridge.busy:
                break
        after = self.host.nic.counters()
        report = {"capture": str(path), "frames": len(frames),
                  "bytes": sum(map(len, frames)), "generation": self.host.nic.generation,
                  "counters": {k: after[k] - before[k] for k in after
                               if after[k] != before[k]}}
        target = path.with_name(path.name + REPORT_SUFFIX)
        try:
            tmp_report = target.with_name("." + target.name + ".tmp")
            tmp_report.write_text(encode(report).decode())
            os.replace(tmp_report, target)
        except OSError as exc:
            return {**report, "result": "failed", "error": f"cannot write {target}: {exc}"}
        return {**report, "report": str(target)}
