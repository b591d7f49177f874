"""hetnicd's operations: what the requests and the file events do to the NIC.

:class:`Operations` is the half of :class:`~hetnic.host.daemon.Daemon` that touches the
configuration: :meth:`Operations.configure` (the one commit), the handlers of the ops table
(``INTERFACE.OPERATION``) and the instruction of each kind of file event. The other half
(the loop, the sessions, the policy, the audit log) is in :mod:`hetnic.host.daemon`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
import tempfile
import time
from pathlib import Path

from ..errors import HetnicError
from ..protocol import RSS_KEY_LEN
from .daemon_audit import AuditError
from .daemon_events import REPORT_SUFFIX
from .daemon_protocol import encode

__all__ = ["Operations", "OpRefused", "INSTRUCTIONS", "DEFERRED", "one_line",
           "key_from_file"]

#: Seconds the NIC runs between two looks at the sockets and the file events.
TURN = 0.005
#: Seconds a replay may take (from its first frame) before it is reported ``timeout``.
REPLAY_TIMEOUT = 10.0
#: Bytes of capture files waiting in the replay queue, at most (one more is refused; a
#: capture alone in the queue may be larger).
MAX_QUEUED_BYTES = 256 << 20
#: Frames a replay feeds the wire per turn of the loop, at most.
REPLAY_CHUNK = 64
#: What a handler returns when it answers later (a restart: when it is over).
DEFERRED = object()
#: The instruction of a file event on each kind of item.
INSTRUCTIONS = {"policy": "reload", "rules": "apply-rules", "rss-key": "apply-key",
                "instances": "validate-instances", "drop": "replay"}


class OpRefused(HetnicError, ValueError):
    """An operation that was tried and refused; the configuration is as it was."""


class RestartBusy(OpRefused):
    """Refused because a restart is running (not for what was asked): a rules or key file
    refused so is applied again when the restart is over."""


def one_line(exc: BaseException) -> str:
    """An unexpected exception as one line: its type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def _write_new(target: Path, data: bytes) -> None:
    """Write ``target`` as a new file (mode 0644) and rename it into place: the data goes to
    a fresh hidden file made with O_EXCL (never through a symlink or a file someone planted)
    and the rename replaces whatever name ``target`` was (a symlink there is replaced, not
    followed)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(data)
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


_HEX_TEXT = re.compile(rb"[0-9a-fA-F:\s]*")


def key_from_file(data: bytes, path: Path) -> bytes:
    """The RSS key in a key file, decided by its content: text of only hex digits, ``:``
    and white space is a hex key (it must hold 2 x RSS_KEY_LEN digits); anything else is a
    raw key of exactly RSS_KEY_LEN bytes. OpRefused otherwise."""
    if _HEX_TEXT.fullmatch(data):
        digits = re.sub(rb"[:\s]", b"", data)
        if len(digits) != 2 * RSS_KEY_LEN:
            raise OpRefused(f"{path}: a hex RSS key has {2 * RSS_KEY_LEN} hex digits, this "
                            f"file {len(digits)}")
        return bytes.fromhex(digits.decode())
    if len(data) != RSS_KEY_LEN:
        raise OpRefused(f"{path}: an RSS key file is {RSS_KEY_LEN} raw bytes or "
                        f"{2 * RSS_KEY_LEN} hex digits; this is {len(data)} bytes of neither")
    return data


def _rule_text(rule) -> str:
    fields = {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)}
    return ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "name") \
        + (f"  # {rule.name}" if rule.name else "")


@dataclasses.dataclass
class _Replay:
    """A capture queued for replay: its frames, how many are sent, when its time is up and
    the NIC counters before it (both from when its turn came), and its file-event record
    (filled when it is queued)."""
    path: Path
    frames: list[bytes]
    size: int                           # the capture file's bytes
    deadline: float | None = None       # set when it reaches the head of the queue
    before: dict = dataclasses.field(default_factory=dict)
    sent: int = 0
    record: dict = dataclasses.field(default_factory=dict)


class Operations:
    """The configuration and the operations of the daemon (a mixin of
    :class:`~hetnic.host.daemon.Daemon`, which provides ``host``, ``operator_rules``,
    ``_base``, ``commits``, ``events``, ``read_capture``, ``replays`` (a deque),
    ``_load_policy`` and ``_event_record``)."""

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
        running = getattr(self, "restart", None)
        if running is not None and not running.done:
            raise RestartBusy(f"a restart of instance {running.name} is running; change the "
                              f"configuration when it is done")
        dispatcher, nic = self.host.dispatcher, self.host.nic
        old_plan, old_key = dispatcher.base_plan, nic.rss.key
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
    def _rules_read(self, session, id, args) -> dict:
        return {"operator": [_rule_text(r) for r in self.operator_rules],
                "table": [_rule_text(r) for r in self.host.dispatcher.rules()],
                "generation": self.host.nic.generation}

    def _rules_configure(self, session, id, args) -> dict:
        text, fmt = args.get("text"), args.get("format", "toml")
        if not isinstance(text, str) or fmt not in ("toml", "json"):
            raise OpRefused("rules.configure takes 'text' (the rule file) and 'format' "
                            "(toml or json)")
        try:
            data = text.encode()
        except UnicodeEncodeError as exc:
            raise OpRefused(f"the rule file is not valid Unicode: {exc.reason} at "
                            f"{exc.start}") from None
        rules = self._load_rules(data, f".{fmt}", "rules")
        before = self.config_text()
        generation = self.configure(rules=rules)
        return {"generation": generation, "rules": len(rules),
                "diff": self._diff(before)}

    def _rss_read(self, session, id, args) -> dict:
        nic = self.host.nic
        return {"key": nic.rss.key.hex(), "reta": list(nic.rss.table),
                "generation": nic.generation}

    def _rss_configure(self, session, id, args) -> dict:
        if "key" not in args and "reta" not in args:
            raise OpRefused("rss.configure takes 'key' (hex) and/or 'reta' (a list)")
        key = self._key(args["key"]) if "key" in args else None
        reta = self._check_reta(args["reta"]) if "reta" in args else None
        before = self.config_text()
        generation = self.configure(key=key, reta=reta)
        return {"generation": generation, "diff": self._diff(before)}

    def _counters_read(self, session, id, args) -> dict:
        return {"nic": self.host.nic.counters(), "tap": self.host.bridge.counters(),
                "daemon": self.daemon_counters()}

    def daemon_counters(self) -> dict:
        running = getattr(self, "restart", None)
        return {**self.stats, "commits": self.commits, "audit_records": self.audit.records,
                "file_events": self.event_seq, "replays_queued": len(self.replays),
                "overflows": self.watcher.overflows if self.watcher else 0,
                "restart": {**self.restart_counters,
                            "running": running.name if running is not None
                            and not running.done else None,
                            "last": running.steps[-1] if running is not None
                            and running.steps else None,
                            "flow_entries": self._flow_entries()}}

    def _flow_entries(self) -> int | None:
        """The NIC's flow table entries in use (a restart's pins), None without a table."""
        flows = getattr(self.host.nic, "flows", None)
        try:
            return flows.counters()["entries"] if flows is not None else None
        except HetnicError:
            return None

    def _instances_configure(self, session, id, args):
        """``instances.configure``: restart ``instance`` (with the ``config`` text: an
        instances TOML file; absent: the same configuration) draining at most
        ``drain_timeout`` seconds. Checked before anything changes; the reply comes when the
        restart is over (the session gets each step as an event line meanwhile)."""
        from .daemon_restart import (DRAIN_TIMEOUT, MAX_DRAIN_TIMEOUT, Restart, RestartError,
                                     check_restart)
        extra = set(args) - {"instance", "config", "drain_timeout"}
        if extra:
            raise OpRefused(f"instances.configure takes 'instance', 'config' and "
                            f"'drain_timeout', not {', '.join(sorted(extra))}")
        name, text = args.get("instance"), args.get("config")
        timeout = args.get("drain_timeout", DRAIN_TIMEOUT)
        if not isinstance(name, str) or not name:
            raise OpRefused("instances.configure takes 'instance', the name of the instance "
                            "to restart")
        if text is not None and not isinstance(text, str):
            raise OpRefused("'config' is the text of an instances file (TOML)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not 0 <= timeout <= MAX_DRAIN_TIMEOUT:
            raise OpRefused(f"'drain_timeout' is a number of seconds from 0 to "
                            f"{MAX_DRAIN_TIMEOUT:g}, not {timeout!r}")
        running = self.restart is not None and not self.restart.done
        try:
            check_restart(self.host, name, running)
        except RestartError as exc:
            raise OpRefused(str(exc)) from None
        old = next(cfg for cfg in self.host.instances if cfg.name == name)
        config = old if text is None else self._restart_config(text, old)
        self.restart = Restart(self.host, name, config, drain_timeout=float(timeout),
                               emit=lambda step, record: self.restart_event(step, record),
                               counters=self.restart_counters)
        return DEFERRED

    def _restart_config(self, text: str, old):
        """The configuration of instance ``old.name`` in the instances file ``text``;
        OpRefused when it is not valid or changes what a restart keeps (the queues, the
        ephemeral ports, the QoS class)."""
        from .stack.instance import load_instances
        try:
            data = text.encode()
        except UnicodeEncodeError as exc:
            raise OpRefused(f"the instances file is not valid Unicode: {exc.reason}") \
                from None
        with _as_file(data, ".toml", "config") as tmp:
            configs = load_instances(tmp)
        mine = [cfg for cfg in configs if cfg.name == old.name]
        if not mine:
            raise OpRefused(f"config: no [[instance]] named {old.name!r} (it has "
                            f"{', '.join(cfg.name for cfg in configs)})")
        new = mine[0]
        for key in ("rx_queues", "tx_queue", "ephemeral_ports", "qos"):
            if getattr(new, key) != getattr(old, key):
                raise OpRefused(f"config: instance {old.name!r}: {key}: a restart keeps "
                                f"{getattr(old, key)!r} (the instance's port and steering), "
                                f"not {getattr(new, key)!r}")
        return new

    def _instances_read(self, session, id, args) -> dict:
        summary = self.host.summary()
        return {"instances": summary["instances"], "ports": self.host.port_map(),
                "configs": {cfg.name: dataclasses.asdict(cfg) for cfg in self.host.instances}}

    def _queues_read(self, session, id, args) -> dict:
        return {cfg.name: {"rx": list(cfg.rx_queues), "tx": cfg.tx_queue}
                for cfg in self.host.instances}

    def _tap_read(self, session, id, args) -> dict:
        return {"tap": getattr(self.host.bridge.tap, "name", None),
                **self.host.bridge.counters()}

    def _direct_read(self, session, id, args) -> dict:
        return {"ethertype": self.host.nic.config.direct_ethertype}

    def _events_read(self, session, id, args) -> dict:
        if args.get("follow"):
            session.follow = id
        return {"recent": list(self.events), "follow": bool(args.get("follow"))}

    # --- file events ---------------------------------------------------------------------------
    def _diff(self, before: str) -> list[str]:
        return list(difflib.unified_diff(before.splitlines(), self.config_text().splitlines(),
                                         "before", "after", lineterm="", n=0))

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
        except AuditError:
            raise                           # fatal: nothing may go unaudited
        except HetnicError as exc:
            out.update(result="refused", error=str(exc))
            if isinstance(exc, RestartBusy):
                out["busy"] = True          # the daemon applies it again after the restart
        except Exception as exc:            # a bug or an input no check caught: not fatal
            out.update(result="failed", error=one_line(exc))
        after = self.host.nic.counters()
        out["counters"] = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
        out["diff"] = self._diff(before_text)
        return out

    def _on_policy(self, path: Path, data: bytes) -> dict:
        self.policy = self._load_policy(data)     # what was hashed, not a second read
        if self.policy.error:
            return {"result": "refused", "error": self.policy.error + " (everything is "
                    "denied until it is fixed)"}
        return {"grants": len(self.policy.grants)}

    def _on_rules(self, path: Path, data: bytes) -> dict:
        rules = self._load_rules(data, path.suffix or ".toml", str(path))
        return {"generation": self.configure(rules=rules), "rules": len(rules)}

    def _on_rss_key(self, path: Path, data: bytes) -> dict:
        return {"generation": self.configure(key=key_from_file(data, path))}

    def _on_instances(self, path: Path, data: bytes) -> dict:
        from .stack.instance import load_instances
        with _as_file(data, ".toml", str(path)) as tmp:
            instances = load_instances(tmp)
        return {"instances": [cfg.name for cfg in instances],
                "note": "valid; a changed instance configuration takes effect at the "
                "instance's restart"}

    def _on_drop(self, path: Path, data: bytes) -> dict:
        if self.read_capture is None:
            raise OpRefused("this daemon was started without a capture reader")
        waiting = sum(job.size for job in self.replays)
        if self.replays and waiting + len(data) > MAX_QUEUED_BYTES:
            raise OpRefused(f"the replay queue is full ({len(self.replays)} captures, "
                            f"{waiting} bytes); remove {path.name} and drop it again later")
        with _as_file(data, path.suffix, str(path)) as tmp:
            frames = self.read_capture(tmp)
        empty = [i for i, frame in enumerate(frames) if not frame]
        if empty:
            raise OpRefused(f"{path}: record {empty[0]} is empty; a frame has at least one "
                            f"byte")
        job = _Replay(path, frames, len(data))
        self.replays.append(job)
        self._queued = job
        return {"result": "queued", "frames": len(frames)}

    def replay_step(self) -> None:
        """Feed the oldest queued replay a little (at most :data:`REPLAY_CHUNK` frames, and
        only while the wire has room); when its frames are in and the NIC is idle, or its
        time is up, write its report and its file-event record."""
        if not self.replays:
            return
        job, wire = self.replays[0], self.host.nic.wire
        if job.deadline is None:            # its turn has come: its time and counters start
            job.deadline = time.monotonic() + REPLAY_TIMEOUT
            job.before = self.host.nic.counters()
        timeout = time.monotonic() >= job.deadline
        if not timeout and job.sent < len(job.frames) and wire.pending() < REPLAY_CHUNK:
            chunk = job.frames[job.sent:job.sent + REPLAY_CHUNK]
            job.sent += wire.send(chunk)
            return
        if not timeout and (job.sent < len(job.frames) or self.host.bridge.busy):
            return
        self.replays.popleft()
        self._event_record(self._replay_done(job, timeout))

    def _replay_done(self, job: "_Replay", timeout: bool) -> dict:
        after = self.host.nic.counters()
        frames = job.frames
        report = {"capture": str(job.path), "frames": len(frames), "sent": job.sent,
                  "bytes": sum(map(len, frames)), "generation": self.host.nic.generation,
                  "result": "timeout" if timeout else "done",
                  "counters": {k: after[k] - job.before[k] for k in after
                               if after[k] != job.before.get(k)}}
        if timeout:
            report["error"] = (f"not finished after {REPLAY_TIMEOUT:g} s: {job.sent} of "
                               f"{len(frames)} frames sent" + (", the NIC still busy"
                                                               if self.host.bridge.busy
                                                               else ""))
        record = {**job.record, **report, "diff": [],
                  "counters": {k: [job.before.get(k, 0), after[k]] for k in after
                               if after[k] != job.before.get(k)}}
        target = job.path.with_name(job.path.name + REPORT_SUFFIX)
        try:
            _write_new(target, encode(report))
        except OSError as exc:
            return {**record, "result": "failed", "error": f"cannot write {target}: {exc}"}
        return {**record, "report": str(target)}
