"""Restarting one stack instance of hetnicd without losing a packet (``hetnic restart``).

The original instance O keeps its *port* (its RX queues and TX queue). A transition
instance T, a new process with O's configuration and applications, runs on the daemon's
spare queue set (:attr:`StackProcs.spare <hetnic.host.stack_procs.StackProcs.spare>`: its
RX queues, a TX queue, the RETA slice after the instances' and a shared-frame ring). The
NIC's classifier and its flow table (:mod:`hetnic.host.flow_table`, checked before the
rules) move the connections so that no segment of a connection reaches an instance that
does not hold it:

1. ``transition-start``: T starts *held* (it listens but takes no frame from its RX queues:
   SYNs wait in its ring) and its applications ask for their ports (granted on O's claims).
2. ``redirect``: one commit puts a rule "TCP SYN (ACK clear) to each TCP port of O's
   applications -> T" before every other rule: O gets no new connection from here on.
3. ``pin``: O takes every frame that reached its queues into its stack and dumps its
   connections (every state, half-open included): a flow table entry per connection that
   has not ended (one in TIME-WAIT is not pinned, counted in ``time_wait``), the
   5-tuple the NIC receives (src = the peer), -> O's action, committed 24 at a time;
   then one commit sends all traffic to O's application ports to T (O's connections
   escape through their entries) and T is released. A SYN of a connection half-open at O
   that was retransmitted before its entry was in went to T's ring: T drops the frames of
   pinned flows classified before that commit (the completion's generation,
   ``pinned_drops``); the next retransmission hits O's entry.
4. ``drain``: each pinned connection that ends (closed, or in TIME-WAIT) loses its entry; when
   none is left, or the drain timeout passed (the rest are counted
   ``drain_timeout_aborted``), O hands its rings back and exits.
5. ``new-start``: the new instance N starts held on O's rings with the new configuration;
   ``redirect``: SYNs to the ports -> N (before the rules that send the ports to T);
   ``pin``: T's connections pinned to T, then one commit restores the normal rules (the
   redirect gone) and N is released.
6. ``drain`` T the same way; T hands its rings back (the spare set is free again) and exits.

Each step is an event record (the daemon's event window and audit log, kind ``restart``)
with its counters; :class:`Restart` is a state machine the daemon advances once per turn
of its loop (:meth:`Restart.advance`), so sessions and file events are served between its
steps (not during its calls to an instance process: applications' starts, snapshots,
connection looks, summaries, handovers; nor during a rollback, which runs at once).
A failure before step 4 rolls back (entries deleted, rules restored, T stopped: O keeps
serving); a failure of N's start retries N with O's old configuration. A failure from
step 4 on is recovered (:meth:`Restart._recover`): no front rule or entry is left that
targets an instance taking no frames (a held N, a stopped O or T); T or N serves.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..errors import HetnicError
from ..regs import FLOW_JOURNAL
from ..rules import Action, FlowRule, tcp_flags_from_names
from .restart_flows import connection_flow, five_tuple
from .tunnel_host import TUNNEL_INSTANCE

__all__ = ["Restart", "RestartError", "RESTART_COUNTERS", "DRAIN_TIMEOUT", "MAX_DRAIN_TIMEOUT",
           "check_restart"]

#: Seconds a drain waits for the connections to end by default.
DRAIN_TIMEOUT = 30.0
#: The longest drain timeout a restart takes, seconds.
MAX_DRAIN_TIMEOUT = 3600.0
#: Seconds a restart's instance process gets to say it is ready (its applications then
#: start, each within ``stack_procs.START_TIMEOUT``).
READY_TIMEOUT = 60.0
#: Seconds a process that handed its rings back gets to exit (then it is killed).
EXIT_TIMEOUT = 10.0
#: Seconds between two looks at a draining instance's connections.
DRAIN_EVERY = 0.05
#: The daemon's restart counters (``hetnic counters``), all 0 at start.
RESTART_COUNTERS = ("restarts", "restarts_done", "restarts_rolled_back", "restarts_failed",
                    "flows_pinned", "flows_released", "connections_drained",
                    "drain_timeout_aborted", "pinned_drops", "handover_rx_flushed",
                    "handover_tx_dropped")
#: The environment variable of the restart's fault injection (for the tests of the rollback
#: and the recovery): a comma-separated list of ``transition``, ``new``, ``pin1`` and
#: ``pin2``, taken in order, one per restart of the daemon: ``transition``/``new``: that
#: instance's first process of that restart fails as it starts (it is given no queues, so
#: it exits with status 1 before it is ready); ``pin1``/``pin2``: the pin of the original's
#: (step 3: a rollback) or the transition instance's (step 5: a recovery) connections
#: fails after staging its first batch (none when it has none).
FAULT_ENV = "HETNIC_RESTART_FAULT"
_faults: list[str] | None = None
#: States a connection has ended in, for a drain (its closing exchange done or no state).
_ENDED = ("TIME-WAIT", "CLOSED")


def _fault(which: str) -> bool:
    """Whether the fault injection (:data:`FAULT_ENV`) names ``which`` next (taken once)."""
    global _faults
    if _faults is None:
        _faults = [f for f in os.environ.get(FAULT_ENV, "").split(",") if f]
    if _faults and _faults[0] == which:
        del _faults[0]
        return True
    return False


def _error_text(exc: BaseException) -> str:
    """An exception as a failure's one-line text (its type named unless a HetnicError)."""
    return str(exc) if isinstance(exc, HetnicError) else f"{type(exc).__name__}: {exc}"


class RestartError(HetnicError, RuntimeError):
    """A restart was refused, or one of its steps failed (one line): before the original
    instance drains the restart rolls back; after, :meth:`Restart._recover` leaves the
    instance that serves."""


def check_restart(host, name: str, busy: bool) -> None:
    """Refuse a restart that cannot start (:class:`RestartError`, one line, nothing
    changed): instances not in processes, an unknown instance, the tunnel adapter, a
    restart running, a transition instance of a failed restart still running, no spare
    queue set, a NIC without a flow table, too few free rule slots."""
    if not hasattr(host, "spawn_instance"):
        raise RestartError("a restart needs the instances as processes (not --one-process)")
    names = [cfg.name for cfg in host.instances]
    if name not in names:
        raise RestartError(f"no instance {name!r}; the instances are {', '.join(names)}")
    if name == TUNNEL_INSTANCE and getattr(host, "tunnels", ()):
        raise RestartError(f"{name} is the tunnel adapter; a restart of it is not built "
                           f"(its transition instance would need the tunnels and the user)")
    if busy:
        raise RestartError("a restart is running; one at a time (try again when it is done)")
    if getattr(host, "extra", None):
        raise RestartError(f"transition instance {', '.join(host.extra)} of a failed restart "
                           f"still runs; restart the daemon")
    if host.spare is None:
        raise RestartError(getattr(host, "spare_note", None) or "this daemon has no spare "
                           "queue set for a transition instance")
    nic = host.nic
    caps = nic.backend.reg_read(nic.regmap.addr("CAPS"))
    if not nic.regmap["CAPS"].field("flow_table").decode(caps):
        raise RestartError("this NIC build has no flow table (CAPS.flow_table is 0); a "
                           "restart without packet loss needs one")
    ports = _ports(host, name)
    need = 2 * len(ports)
    free = nic.params.n_rules - host.dispatcher.used
    if need > free:
        raise RestartError(f"a restart of {name} needs {need} free rule slots (a redirect "
                           f"and a steering rule per port of its applications); {free} "
                           f"are free")


def _ports(host, name: str) -> list[tuple[str, int]]:
    """The (protocol, port) of instance ``name``'s applications."""
    return sorted({(app.proto, app.port) for app in host.apps.get(name, [])})


class Restart:
    """One restart of instance ``name`` of ``host`` (a
    :class:`~hetnic.host.stack_procs.StackProcs`) into ``config`` (an
    :class:`~hetnic.host.stack.instance.InstanceConfig` with the same name, queues and
    ephemeral ports). ``emit(step, record)`` receives each step's record as it ends;
    :meth:`advance` does the next bit of work (called once per turn of the daemon's loop);
    :attr:`result` is set (a dict, or :attr:`error`) once it is over."""

    def __init__(self, host, name: str, config, *, drain_timeout: float = DRAIN_TIMEOUT,
                 emit: Callable[[str, dict], None], counters: dict[str, int]):
        self.host, self.name, self.config = host, name, config
        self.drain_timeout = drain_timeout
        self.emit = emit
        self.counters = counters
        self.index = [c.name for c in host.instances].index(name)
        self.old = host.instances[self.index]
        self.t_name = f"{name}~transition"
        self.ports = _ports(host, name)
        offset, size = host.base_plan.slices[name]
        self.o_action = Action(instance=self.index, reta_offset=offset, reta_size=size)
        t_offset, t_size = host.spare_slice()
        self.t_action = Action(instance=len(host.instances), reta_offset=t_offset,
                               reta_size=t_size)
        self.started = time.monotonic()
        self.result: dict | None = None
        self.error: str | None = None
        self.steps: list[dict] = []
        self._pinned: dict = {}             # flow -> owner name, entries in the table
        self.drains: list[float] = []       # seconds of each drain
        self.serving = 0.0
        #: Frames each process took from its RX queues: original, transition, new.
        self.frames: dict[str, int] = {}
        self._gen = self._run()
        self._wait_until: float = 0.0
        #: The step running past the point of return (what :meth:`_recover` undoes).
        self.phase = "take-over"
        #: What a failure past the point of return did (the ``failed`` step's fields).
        self.recovery: dict = {}
        #: The grant of O's rings when a failure left them to no process (kept, unused).
        self.rings_grant = None
        #: Connections of the last pin's snapshot in TIME-WAIT (not pinned).
        self.time_wait = 0
        #: Instances that took a snapshot: they open no new connection (``"reopen"``).
        self._closed: set[str] = set()
        counters["restarts"] += 1

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def advance(self) -> None:
        """Do the next bit of the restart (returns soon; the loop calls again)."""
        if self.done or time.monotonic() < self._wait_until:
            return
        try:
            delay = next(self._gen)
            self._wait_until = time.monotonic() + (delay or 0.0)
        except StopIteration:
            pass
        except Exception as exc:
            self.error = _error_text(exc)
            if not self.steps or self.steps[-1]["step"] != "rolled-back":
                # past the point of return (the original is gone): what serves is left
                # as it is, and the next restart is refused while a transition runs
                self.counters["restarts_failed"] += 1
                self._step("failed", self.started, error=self.error, **self.recovery)

    def abort(self, reason: str) -> None:
        """Stop the sequence where it is (the daemon is stopping: every instance stops with
        it, so nothing is rolled back or recovered); a ``failed`` step with ``reason``."""
        if self.done:
            return
        self._gen.close()
        self.error = reason
        self.counters["restarts_failed"] += 1
        self._step("failed", self.started, error=reason, **self.recovery)

    # --- the sequence ----------------------------------------------------------------------
    def _run(self):
        host, t_name = self.host, self.t_name
        t_cfg = self.old.replace(name=t_name, rx_queues=host.spare[0], tx_queue=host.spare[1])
        ring = len(host.instances)
        # 1-3: the transition instance takes over; any failure rolls back to O alone
        try:
            yield from self._standby()
            start = time.monotonic()
            host.spawn_instance(t_cfg, self._grant("transition", host.spare_grant),
                                ring=ring, held=True, alias=self.name)
            yield from self._wait_ready(t_name)
            host.start_apps(t_name)
            self._step("transition-start", start, instance=t_name, pid=host.pids[t_name],
                       rx_queues=list(t_cfg.rx_queues), tx_queue=t_cfg.tx_queue)
            start = time.monotonic()
            self._front(self._syn_rules(self.t_action, t_name))
            self._step("redirect", start, to=t_name, ports=self._port_text())
            yield 0.0                       # a turn of the NIC: the frames before it land
            start = time.monotonic()
            pinned = yield from self._pin(self.name, self.o_action)
            generation = self._front(self._port_rules(self.t_action, t_name))
            self._release(t_name, pinned, generation)
            self._step("pin", start, instance=self.name, flows_pinned=len(pinned),
                       time_wait=self.time_wait, to=t_name)
        except GeneratorExit:
            raise                           # abort(): the daemon stops, no rollback to run
        except BaseException as exc:
            self._rollback(exc)
            raise
        # 4-6: past the point of return (O goes): a failure is recovered so that every
        # front rule and entry targets an instance that takes frames (_recover)
        try:
            config, note = yield from self._second_half()
        except Exception:
            yield from self._recover()
            raise
        self.result = {"instance": self.name, "config_changed": config != self.old,
                       "seconds": round(time.monotonic() - self.started, 3),
                       "serving_seconds": round(self.serving, 3),
                       "drain_seconds": [round(d, 3) for d in self.drains],
                       "frames": dict(self.frames), "steps": len(self.steps)}
        if note:
            self.error = note
            self.counters["restarts_failed"] += 1
        else:
            self.counters["restarts_done"] += 1
        self._step("done", self.started, **{k: v for k, v in self.result.items()
                                              if k != "steps"},
                   **({"error": note} if note else {}))    # failed: the old config runs

    def _second_half(self):
        """Steps 4-6 (:attr:`phase` names the one running); ``(config, note)``: the
        configuration that runs and why it is not the new one (or None)."""
        host, t_name = self.host, self.t_name
        # 4: drain O, which then hands its rings back and exits
        self.phase = "drain-original"
        grant = yield from self._drain(self.name, self.o_action)
        # 5: N on O's rings, with the new configuration (the old one if it fails)
        self.phase = "new-start"
        start = time.monotonic()
        config, note = self.config, None
        try:
            yield from self._start_new(config, grant)
        except HetnicError as exc:
            note = f"the new configuration did not start ({exc}); the old one runs"
            config = self.old
            grant = yield from self._stop_failed(grant)
            yield from self._start_new(config, grant)
        host.instances[self.index] = config
        self._step("new-start", start, instance=self.name, pid=host.pids[self.name],
                   **({"error": note} if note else {}))
        self.phase = "second-pin"
        start = time.monotonic()
        self._front(self._syn_rules(self.o_action, self.name)
                    + self._port_rules(self.t_action, t_name))
        self._step("redirect", start, to=self.name, ports=self._port_text())
        yield 0.0
        start = time.monotonic()
        pinned = yield from self._pin(t_name, self.t_action)
        generation = self._front([])
        self._release(self.name, pinned, generation)
        self.serving = time.monotonic() - self.started - self.drains[0]
        self._step("pin", start, instance=t_name, flows_pinned=len(pinned),
                   time_wait=self.time_wait, to=self.name)
        # 6: drain T; its rings go back to the spare set
        self.phase = "drain-transition"
        host.spare_grant = yield from self._drain(t_name, self.t_action)
        host.forget(t_name)
        self.phase = "done"
        try:                                # a count for the record: N serves either way
            self.frames["new"] = self._frames_in(self.name)
        except HetnicError:
            self.frames["new"] = None
        return config, note

    def _start_new(self, config, grant):
        host = self.host
        yield from self._standby()
        host.spawn_instance(config, self._grant("new", grant), ring=self.index, held=True)
        yield from self._wait_ready(self.name)
        host.start_apps(self.name)

    def _grant(self, which: str, grant):
        """``grant``, or None (the process fails at once) when the fault injection names
        ``which`` (once)."""
        return None if _fault(which) else grant

    def _stop_failed(self, grant):
        """Stop a new instance that failed to start; the rings' grant to start the next
        one with: its handover, or ``grant`` when it exited before it was ready (it never
        touched the rings). One that was ready and handed nothing back (it died, or its
        handover failed) may have sent on O's TX ring while held (ARP and NDP answers):
        ``grant`` no longer matches the ring, so the restart fails on (:meth:`_recover`:
        T serves on)."""
        ready = self.host.ready(self.name)
        handed = yield from self._stop(self.name)
        if handed is not None:
            return handed
        if ready:
            raise RestartError(f"the new instance {self.name} failed after it was ready and "
                               f"did not hand its rings back; {self.t_name} serves on")
        return grant

    def _standby(self):
        """Wait for a standby process to be ready when one is starting (quicker than
        starting another)."""
        host = self.host
        end = time.monotonic() + READY_TIMEOUT
        while host.standbys and not any(host.ready(c.name) for c in host.standbys) \
                and time.monotonic() < end:
            yield 0.0

    def _wait_ready(self, name: str):
        host = self.host
        end = time.monotonic() + READY_TIMEOUT
        while not host.ready(name):
            if name in host.exits:
                raise RestartError(f"instance process {name} exited with status "
                                   f"{host.exits[name]} while starting")
            if time.monotonic() > end:
                raise RestartError(f"instance process {name} did not start within "
                                   f"{READY_TIMEOUT:g} s")
            yield 0.0

    # --- rules and flows -------------------------------------------------------------------
    def _syn_rules(self, action: Action, to: str) -> list[FlowRule]:
        flags = tcp_flags_from_names({"syn": True, "ack": False})
        return [FlowRule(ip_proto="tcp", dst_port=port, tcp_flags=flags, action=action,
                         name=f"restart: tcp SYN dst port {port} -> {to}")
                for proto, port in self.ports if proto == "tcp"]

    def _port_rules(self, action: Action, to: str) -> list[FlowRule]:
        return [FlowRule(ip_proto=proto, dst_port=port, action=action,
                         name=f"restart: {proto} dst port {port} -> {to}")
                for proto, port in self.ports]

    def _front(self, rules: list[FlowRule]) -> int:
        """Make ``rules`` the first rules (one commit; its generation); the old ones back if
        it fails."""
        dispatcher = self.host.dispatcher
        old = dispatcher.front
        if len(rules) - len(old) > self.host.nic.params.n_rules - dispatcher.used:
            raise RestartError(f"{len(rules)} restart rules do not fit in the rule table")
        dispatcher.front = rules
        try:
            return dispatcher.program_rules()
        except BaseException:
            dispatcher.front = old
            dispatcher.program_rules()
            raise

    def _pin(self, name: str, action: Action):
        """Pin instance ``name``'s connections to ``action``: flow entries, 24 a commit."""
        host, flows = self.host, self.host.nic.flows
        self._closed.add(name)              # from the snapshot on it opens no connection
        conns = host.children[name].call("snapshot", timeout=10.0)
        # a connection in TIME-WAIT has ended: not pinned (an entry would only fill the
        # table, and a new SYN for its 4-tuple would meet the old instance through it)
        pinned = sorted({connection_flow(c) for c in conns if c["state"] not in _ENDED})
        self.time_wait = sum(c["state"] == "TIME-WAIT" for c in conns)
        which = "pin2" if name == self.t_name else "pin1"
        fault = _fault(which)
        for i in range(0, len(pinned), FLOW_JOURNAL):
            batch = pinned[i:i + FLOW_JOURNAL]
            for flow in batch:
                flows.insert(five_tuple(flow), action)
                self._pinned[flow] = name
                # counted as staged: a failure later commits and deletes it (released)
                self.counters["flows_pinned"] += 1
            if fault:
                break
            flows.commit()
            yield 0.0
        if fault:
            raise RestartError(f"fault injection ({FAULT_ENV}={which}): the pin of "
                               f"{name}'s connections failed")
        return pinned

    def _release(self, name: str, foreign, generation: int) -> None:
        """Let held instance ``name`` take frames; the frames of ``foreign`` flows (pinned
        elsewhere) classified before ``generation`` reached it while it was held: dropped."""
        self.host.children[name].call("release_rx", foreign=list(foreign),
                                      generation=generation, timeout=10.0)

    def _unpin(self, flows: list) -> None:
        """Delete the entries of ``flows``, 24 a commit."""
        table = self.host.nic.flows
        flows = [f for f in flows if f in self._pinned]
        for i in range(0, len(flows), FLOW_JOURNAL):
            for flow in flows[i:i + FLOW_JOURNAL]:
                table.delete(five_tuple(flow))
                del self._pinned[flow]
            table.commit()
            self.counters["flows_released"] += len(flows[i:i + FLOW_JOURNAL])

    def _drain(self, name: str, action: Action):
        """Release the entries of ``name``'s connections as they end; then its rings back
        (its handover) and it exits. Returns the rings' grant."""
        host = self.host
        host.start_standbys()               # the next processes start while it drains
        start = time.monotonic()
        end = start + self.drain_timeout
        drained = 0
        while True:
            mine = [f for f, owner in self._pinned.items() if owner == name]
            if not mine:
                break
            conns = host.children[name].call("connections", timeout=10.0)
            live = {connection_flow(c) for c in conns if c["state"] not in _ENDED}
            ended = [f for f in mine if f not in live]
            if ended:
                self._unpin(ended)
                drained += len(ended)
            if time.monotonic() >= end:
                break
            yield DRAIN_EVERY
        aborted = [f for f, owner in self._pinned.items() if owner == name]
        self._unpin(aborted)
        self.counters["connections_drained"] += drained
        self.counters["drain_timeout_aborted"] += len(aborted)
        summary = host.children[name].call("summary", timeout=10.0)
        self.counters["pinned_drops"] += summary.get("pinned_drops", 0)
        frames = summary["link"]["frames_in"]
        self.frames["original" if name == self.name else "transition"] = frames
        grant = self._handover(name)
        yield from self._wait_exit(name)    # reaped: its grants released, its name free
        self.drains.append(time.monotonic() - start)
        self._step("drain", start, instance=name, connections_drained=drained,
                   drain_timeout_aborted=len(aborted), frames=frames,
                   pinned_drops=summary.get("pinned_drops", 0), exit=host.exits[name])
        return grant

    # --- failure ---------------------------------------------------------------------------
    def _recover(self):
        """A failure past the point of return (:attr:`phase`): leave no front rule or entry
        that targets an instance that takes no frames; what serves then is recorded in
        :attr:`recovery` (the ``failed`` step)."""
        host, t_name, phase = self.host, self.t_name, self.phase
        errors: list[str] = []

        def attempt(what: str, do: Callable[[], Any]) -> None:
            try:
                do()
            except Exception as e:          # noqa: BLE001 - reported in the step
                errors.append(f"{what}: {e}")
        serving = t_name
        if phase == "drain-original":
            # O failed while draining: its entries point at rings nobody will poll
            attempt("flows", lambda: self._unpin_owned(self.name))
            yield from self._stop(self.name)
        elif phase == "new-start":
            yield from self._stop(self.name)    # N started neither way: T serves on
        elif phase == "second-pin":
            # "SYN -> N (held), ports -> T": T serves everything again, its partly pinned
            # entries go (they point at T anyway), N hands O's rings back (kept)
            attempt("rules", lambda: self._front(self._port_rules(self.t_action, t_name)))
            attempt("flows", lambda: self._unpin_owned(t_name))
            if t_name in self._closed:      # its snapshot closed it to new connections
                attempt(t_name, lambda: host.children[t_name].call("reopen", timeout=10.0))
            self.rings_grant = yield from self._stop(self.name)
        elif phase == "drain-transition":
            # N serves (the normal rules); T's connections that are left are lost
            serving = self.name
            attempt("flows", lambda: self._unpin_owned(t_name))
            grant = yield from self._stop(t_name)
            if grant is None:
                self._lose_spare()          # its rings' state is lost with it
            else:
                host.spare_grant = grant
            host.forget(t_name)
            host.start_standbys()
        self.recovery = {"phase": phase, "serving": serving,
                         **({"recovery_errors": errors} if errors else {})}

    def _unpin_owned(self, name: str) -> None:
        """Commit what is staged, then delete every entry pinned to ``name``."""
        if self.host.nic.flows.staged:
            self.host.nic.flows.commit()
        self._unpin([f for f, owner in self._pinned.items() if owner == name])

    def _stop(self, name: str):
        """Stop instance process ``name`` if it runs: its handover (the rings' grant), or
        killed (None) when that fails; waits for its exit (killed after
        :data:`EXIT_TIMEOUT`)."""
        host = self.host
        child = host.children.get(name)
        if child is None or name in host.exits:
            return None
        grant = None
        try:
            grant = self._handover(name)
        except HetnicError:
            child.process.kill()
        yield from self._wait_exit(name)
        return grant

    def _handover(self, name: str):
        """Instance process ``name`` hands its rings back: the grant; the frames it
        flushed from its RX rings and left in its TX backlog are counted."""
        out = self.host.children[name].call("handover", timeout=10.0)
        self.counters["handover_rx_flushed"] += out["rx_flushed"]
        self.counters["handover_tx_dropped"] += out["tx_dropped"]
        return out["grant"]

    def _wait_exit(self, name: str):
        """Wait (turns of the loop) for process ``name`` to be reaped; killed after
        :data:`EXIT_TIMEOUT` s, then :class:`RestartError` if still not gone."""
        host = self.host
        end = time.monotonic() + EXIT_TIMEOUT
        killed = False
        while name not in host.exits:
            if time.monotonic() > end:
                if killed:
                    raise RestartError(f"instance process {name} did not exit")
                host.children[name].process.kill()
                killed, end = True, time.monotonic() + EXIT_TIMEOUT
            yield 0.0

    def _rollback(self, exc: BaseException) -> None:
        """Back to O alone: the restart's rules gone (one commit), then its entries (a
        commit per 24), T stopped with its rings handed back to the spare set."""
        host = self.host
        errors = []
        # the rules first: while the entries (to O) are deleted, the ports go to O already
        try:
            host.dispatcher.front = []
            host.dispatcher.program()
        except Exception as e:              # noqa: BLE001 - reported below
            errors.append(f"rules: {e}")
        try:
            if host.nic.flows.staged:
                host.nic.flows.commit()     # the half batch (to O, as the rules): then out
            self._unpin(list(self._pinned))
        except Exception as e:              # noqa: BLE001
            errors.append(f"flows: {e}")
        if self.name in self._closed:       # O serves everything again
            try:
                host.children[self.name].call("reopen", timeout=10.0)
            except Exception as e:          # noqa: BLE001
                errors.append(f"{self.name}: {e}")
        child = host.children.get(self.t_name)
        try:
            if child is not None and self.t_name not in host.exits:
                try:
                    host.spare_grant = self._handover(self.t_name)
                except HetnicError as e:
                    errors.append(f"{self.t_name}: {e}")
                    self._lose_spare()      # its rings' state is lost with it
                    child.process.kill()
                for _ in self._wait_exit(self.t_name):     # the same wait, driven here:
                    host.run(timeout=0.01)                  # the loop is not running
        except Exception as e:              # noqa: BLE001
            errors.append(f"{self.t_name}: {e}")
        for what, undo in (("forget", lambda: host.forget(self.t_name)),
                           ("standbys", host.start_standbys)):
            try:
                undo()
            except Exception as e:          # noqa: BLE001
                errors.append(f"{what}: {e}")
        self.counters["restarts_rolled_back"] += 1
        self._step("rolled-back", self.started, error=_error_text(exc),
                   **({"rollback_errors": errors} if errors else {}))

    def _lose_spare(self) -> None:
        """The spare queue set went with a killed transition instance (its rings' state is
        unknown): no further restart until the daemon restarts, and a refusal that says so."""
        self.host.spare = None
        self.host.spare_note = (f"the spare queue set was lost with the killed transition "
                                f"instance {self.t_name}; restart the daemon to restart "
                                f"an instance again")

    # --- records ---------------------------------------------------------------------------
    def _port_text(self) -> list[str]:
        return [f"{proto}/{port}" for proto, port in self.ports]

    def _frames_in(self, name: str) -> int:
        """Frames instance process ``name`` took from its RX queues so far."""
        return self.host.children[name].call("summary", timeout=10.0)["link"]["frames_in"]

    def _step(self, step: str, start: float, **fields: Any) -> None:
        record = {"step": step, "instance": self.name, "seconds": round(
            time.monotonic() - start, 4), **fields}
        record.setdefault("instance", self.name)
        self.steps.append(record)
        self.emit(step, record)
