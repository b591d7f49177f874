"""The QoS dispatcher: an application states its class, the NIC steers its port there.

>>> dispatcher = Dispatcher(nic, instances, base_plan=plan_steering(instances, nic.params,
...                                                                    app_ports=()))
>>> dispatcher.program()                    # RETA, base rules, default action: one commit
>>> grant = dispatcher.request("low-delay", "tcp", 7, owner="echo")
>>> grant.instance, grant.rule
('low-delay', 0)
>>> dispatcher.release(grant)               # the last socket on tcp/7: the rule goes

Each stack instance serves one QoS class (:data:`~hetnic.host.stack.instance.QOS_CLASSES`:
``low-delay``, ``throughput``, ``concurrency``; by default the instance named after the class,
or the class an instance declares, see :func:`~hetnic.host.stack_steering.qos_class`). A
class no instance serves falls back to the first instance, as the built-in applications
always did. When an application listens, or binds or connects on a fixed local port, it asks
:meth:`Dispatcher.request` for ``(class, protocol, port)``; the dispatcher picks the class's
instance (the one with the fewest ports when several serve it) and steers that port to it in
the NIC's classifier: ``ip_proto`` and ``dst_port`` -> :class:`~hetnic.rules.Action` with the
instance and its RETA slice, so the frames reach that instance's RX queues with no software
hop. More sockets on the same ``(protocol, port, class)`` only count references; the rule
goes when :meth:`Dispatcher.release` drops the last one.

A socket's claim outlives the socket: the connections a listener accepted use its port after
it closes (TIME-WAIT included), and their segments must still reach that instance (the
default instance would answer them with RSTs). A host hands the grant of a closed socket to
:class:`PortHolds`, which releases it once no connection of the instance uses the port.

The rule table is one model
---------------------------
The dispatcher keeps which port goes to which instance; every change rebuilds the whole
table from it — the dispatcher's rules first (adjacent ports of one protocol and instance
merged into one range rule, oldest first, :mod:`hetnic.host.rule_merge`), then the base
plan's rules
(fragments, ephemeral ranges) in their order — stages the slots that differ and commits
once. First match wins, and a dispatcher rule never overlaps another instance's port or
ephemeral range, so putting them first changes nothing the base plan decides.

A port inside the chosen instance's own ephemeral range needs no rule (the base plan's
ephemeral rule already steers it there: the grant's ``rule`` is None). A release that would
split a range when the table has no free slot for the second half keeps the range as it is
(the released port stays steered to that instance, shown as ``lingering`` in :meth:`dump`)
until the next change that fits.

Refusals are one-line :class:`DispatchError`\\ s and change nothing (model, staged rules,
NIC): an unknown class, a bad protocol or port, a port granted to another class or inside
another instance's ephemeral range (``port in use``), a full rule table. If the commit
itself fails (:class:`~hetnic.host.control.NicError`), the previous rules are staged again
and the error is raised; the model stays as before.

The NIC is reached only through ``nic.params`` (``n_rules``), ``nic.rules``
(:class:`~hetnic.host.control.Rules`), ``nic.rss.set_table`` and ``nic.commit()``: a
:class:`~hetnic.host.nic.Nic` or a :class:`~hetnic.host.board.BoardNic`. Arguments in and
:class:`Grant` out are plain values (picklable), so a process that owns the NIC can serve
requests for others.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import HetnicError
from ..rules import Action, FlowRule
from .rule_merge import PROTOCOLS, dispatch_rules, rule_ports
from .stack.instance import QOS_CLASSES
from .stack_steering import SteeringPlan, qos_class

__all__ = ["Dispatcher", "DispatchError", "Grant", "PortHolds", "port_idle"]


class DispatchError(HetnicError, ValueError):
    """A dispatcher request or release was refused (unknown class, bad protocol or port,
    port in use, full rule table, a grant not held). One line; nothing changed."""


@dataclass(frozen=True)
class Grant:
    """One socket's claim on a port, as :meth:`Dispatcher.request` returns it.

    Members
    -------
    qos : str
        The class asked for.
    instance : str
        The name of the instance that serves the port.
    instance_index : int
        Its index (the classifier action's ``instance``).
    proto : str
        ``"tcp"`` or ``"udp"``.
    port : int
        The destination port, 1..65535.
    rule : int or None
        The rule slot that steered the port when granted (slots move as other ports come and
        go), None when no dispatcher rule is needed (the instance's own ephemeral range).
    ticket : int
        Unique per request: :meth:`Dispatcher.release` takes each ticket once.
    owner : str
        Who asked (for :meth:`Dispatcher.dump`).
    """
    qos: str
    instance: str
    instance_index: int
    proto: str
    port: int
    rule: int | None
    ticket: int
    owner: str = ""


@dataclass
class _Claim:
    """The sockets on one ``(proto, port)``: their class, instance, tickets -> owners, and
    the claim's age (its first ticket: older claims keep the lower rule slots)."""
    qos: str
    index: int
    tickets: dict[int, str] = field(default_factory=dict)
    age: int = 0


class Dispatcher:
    """Steers application ports to the instance of their QoS class (see the module).

    Parameters
    ----------
    nic_control : Nic or BoardNic
        The NIC whose rules the dispatcher owns (see the module for what it uses).
    instances : sequence of InstanceConfig
        The instances of ``base_plan``, in the same order (their ``name``,
        ``ephemeral_ports`` and, when present, ``qos``).
    base_plan : SteeringPlan
        RETA, slices, default action and the rules that follow the dispatcher's (usually
        :func:`~hetnic.host.stack_steering.plan_steering` with ``app_ports=()``).

    Members
    -------
    base_plan : SteeringPlan
    classes : dict of str to tuple of str
        Each QoS class and the instances that serve it.
    commits : int
        Commits made by :meth:`program`, :meth:`request` and :meth:`release`.
    generation : int or None
        The configuration generation of the last of them.

    Raises
    ------
    DispatchError
        An instance declares a class that is not one of ``QOS_CLASSES``, or an instance has
        no slice in ``base_plan``.
    """

    def __init__(self, nic_control, instances: Sequence, *, base_plan: SteeringPlan):
        self._nic = nic_control
        self._instances = list(instances)
        self.base_plan = base_plan
        self._names = [inst.name for inst in self._instances]
        self._n_rules = int(nic_control.params.n_rules)
        self._actions = []
        for index, name in enumerate(self._names):
            if name not in base_plan.slices:
                raise DispatchError(f"instance {name!r} has no RETA slice in the base plan "
                                    f"(it has {', '.join(base_plan.slices) or 'none'})")
            offset, size = base_plan.slices[name]
            self._actions.append(Action(instance=index, reta_offset=offset, reta_size=size))
        served: dict[str, list[int]] = {qos: [] for qos in QOS_CLASSES}
        for index, inst in enumerate(self._instances):
            qos = qos_class(inst)
            if qos is not None and qos not in served:
                raise DispatchError(f"instance {inst.name!r} declares QoS class {qos!r}; the "
                                    f"classes are {', '.join(QOS_CLASSES)}")
            if qos is not None:
                served[qos].append(index)
        self._served = {qos: tuple(idx) or (0,) for qos, idx in served.items()}
        self.classes = {qos: tuple(self._names[i] for i in idx)
                        for qos, idx in self._served.items()}
        self._claims: dict[tuple[int, int], _Claim] = {}
        self._table: list[FlowRule] = []            # the dispatcher's rules, as committed
        self._tickets = itertools.count(1)
        self.commits = 0
        self.generation: int | None = None

    # --- the NIC ---------------------------------------------------------------------------
    def program(self) -> int:
        """Stage the base plan's RETA and default action and the whole rule table (the
        dispatcher's rules, then the base plan's) and commit once; returns the generation."""
        self._nic.rss.set_table(self.base_plan.reta)
        self._nic.rules.set_default(self.base_plan.default)
        self._stage(self._table + self.base_plan.rules)
        return self._commit()

    def _stage(self, table: list[FlowRule]) -> None:
        """Stage ``table`` in slots 0.. (and no rule after it), writing only the slots that
        differ from what is staged."""
        rules = self._nic.rules
        staged = dict(rules)
        for slot in range(max(self._n_rules, len(table))):
            want = table[slot] if slot < len(table) else None
            if want == staged.get(slot):
                continue
            if want is None:
                rules.remove(slot)
            else:
                rules.add(want, slot)

    def _reserved(self) -> int:
        """Rule slots staged before the dispatcher's own (none here; see
        :class:`~hetnic.host.stack_procs.FrontDispatcher`)."""
        return 0

    def _commit(self) -> int:
        self.generation = self._nic.commit()
        self.commits += 1
        return self.generation

    def _change(self, claims: dict[tuple[int, int], _Claim], *, releasing: bool) -> None:
        """Make ``claims`` the model: rebuild the table, stage and commit it once (nothing if
        it is unchanged). A release that does not fit keeps the table (the port lingers); a
        request that does not fit is refused."""
        table = self._rules_for(claims)
        reserved = self._reserved()
        if len(table) + len(self.base_plan.rules) + reserved > self._n_rules:
            if releasing:
                self._claims = claims
                return
            held = f", {reserved} by a restart" if reserved else ""
            raise DispatchError(
                f"the NIC's rule table is full: it has {self._n_rules} rules and "
                f"{len(self._table) + len(self.base_plan.rules) + reserved} are in use "
                f"({len(self.base_plan.rules)} by the base plan, {len(self._table)} by the "
                f"dispatcher{held}); this request needs {len(table) - len(self._table)} more")
        if table != self._table:
            try:
                self._stage(table + self.base_plan.rules)
                self._commit()
            except BaseException:
                try:
                    self._stage(self._table + self.base_plan.rules)
                except HetnicError:
                    pass                    # the commit's error is the one to report
                raise
        self._table = table
        self._claims = claims

    def _rules_for(self, claims: dict[tuple[int, int], _Claim]) -> list[FlowRule]:
        """The dispatcher's rules for ``claims`` (ports in their own instance's ephemeral
        range need none)."""
        ports = {key: claim.index for key, claim in claims.items()
                 if not self._in_ephemeral(claim.index, key[1])}
        return dispatch_rules(ports, self._actions, self._names,
                              {key: claims[key].age for key in ports})

    def _in_ephemeral(self, index: int, port: int) -> bool:
        lo, hi = self._instances[index].ephemeral_ports
        return lo <= port <= hi

    # --- requests ----------------------------------------------------------------------------
    def request(self, qos: str, proto: str | int, port: int, *, owner: str = "") -> Grant:
        """Steer ``proto``/``port`` to the instance of class ``qos`` for one more socket.

        Parameters
        ----------
        qos : str
            One of :data:`~hetnic.host.stack.instance.QOS_CLASSES`.
        proto : str or int
            ``"tcp"``, ``"udp"`` or their IP protocol numbers (6, 17).
        port : int
            The local (destination) port, 1..65535.
        owner : str
            Who asks, for :meth:`dump`.

        Returns
        -------
        Grant
            The first socket on the port installs its rule (one commit); the next ones on
            the same ``(proto, port, qos)`` only count a reference (no commit).

        Raises
        ------
        DispatchError
            Unknown class, bad protocol or port, the port granted to another class or inside
            another instance's ephemeral range, or a full rule table. Nothing is changed.
        HetnicError
            The commit failed (see the module); nothing is granted.
        """
        if not isinstance(qos, str) or qos not in self._served:
            raise DispatchError(f"unknown QoS class {qos!r}; the classes are "
                                f"{', '.join(QOS_CLASSES)}")
        number = _proto_number(proto)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 0xFFFF:
            raise DispatchError(f"port must be an integer from 1 to 65535, not {port!r}")
        if not isinstance(owner, str):
            raise DispatchError(f"owner must be a string, not {owner!r}")
        key = (number, port)
        name = _proto_name(number)
        claim = self._claims.get(key)
        if claim is not None:
            if claim.qos != qos:
                raise DispatchError(
                    f"port in use: {name}/{port} is granted to class {claim.qos!r} (instance "
                    f"{self._names[claim.index]!r}), not {qos!r}")
            ticket = next(self._tickets)
            claim.tickets[ticket] = owner
            return self._grant(key, claim, ticket, owner)
        index = self._pick(qos, port)
        for other, inst in enumerate(self._instances):
            if other != index and self._in_ephemeral(other, port):
                lo, hi = inst.ephemeral_ports
                raise DispatchError(
                    f"port in use: {name}/{port} is in instance {inst.name!r}'s ephemeral "
                    f"range {lo}-{hi} (its connections' return traffic)")
        ticket = next(self._tickets)
        claims = dict(self._claims)
        claims[key] = _Claim(qos, index, {ticket: owner}, age=ticket)
        self._change(claims, releasing=False)
        return self._grant(key, claims[key], ticket, owner)

    def _pick(self, qos: str, port: int) -> int:
        """The instance of ``qos`` for ``port``: one whose ephemeral range holds the port if
        any, else the one with the fewest ports (the first of them on a tie)."""
        load = {i: 0 for i in self._served[qos]}
        for claim in self._claims.values():
            if claim.index in load:
                load[claim.index] += 1
        return min(load, key=lambda i: (not self._in_ephemeral(i, port), load[i], i))

    def _grant(self, key: tuple[int, int], claim: _Claim, ticket: int, owner: str) -> Grant:
        return Grant(qos=claim.qos, instance=self._names[claim.index],
                     instance_index=claim.index, proto=_proto_name(key[0]), port=key[1],
                     rule=self._slot_of(key), ticket=ticket, owner=owner)

    def _slot_of(self, key: tuple[int, int]) -> int | None:
        """The slot of the dispatcher rule that matches ``key`` now, or None."""
        proto, port = key
        for slot, rule in enumerate(self._table):
            number, lo, hi = rule_ports(rule)
            if number == proto and lo <= port <= hi:
                return slot
        return None

    def release(self, grant: Grant) -> None:
        """Drop ``grant``'s reference; the last one on its port removes the port from the
        rules (one commit, unless the table stays the same).

        Raises
        ------
        DispatchError
            ``grant`` is not a Grant this dispatcher holds (for instance, released already).
        """
        if not isinstance(grant, Grant):
            raise DispatchError(f"release takes a Grant, not {type(grant).__name__}")
        key = (PROTOCOLS.get(grant.proto, -1), grant.port)
        claim = self._claims.get(key)
        if claim is None or grant.ticket not in claim.tickets \
                or claim.index != grant.instance_index:
            raise DispatchError(f"{grant.proto}/{grant.port} ticket {grant.ticket} is not "
                                f"held (released already, or another dispatcher's)")
        if len(claim.tickets) > 1:
            del claim.tickets[grant.ticket]
            return
        claims = dict(self._claims)
        del claims[key]
        self._change(claims, releasing=True)

    # --- display -------------------------------------------------------------------------------
    def port_map(self, running: dict[tuple[int, str], str]) -> list[dict]:
        """The classifier rules installed, one dict per rule and one for the default:
        ``rule`` (slot, None for the default), ``match`` (text), ``proto``, ``ports``,
        ``instance``, ``rx_queues``, ``reta`` ((offset, size)) and ``app`` (from
        ``running``: ``(port, proto) -> application name`` of what serves each port now;
        a range rule lists every application in its range, ``""`` if none)."""
        rows = []
        for slot, rule in enumerate(self.rules()):
            proto = rule.ip_proto or "any"
            ports = rule.dst_port
            app = ""
            if isinstance(ports, tuple):
                app = ",".join(name for (port, p), name in sorted(running.items())
                               if p == proto and ports[0] <= port <= ports[1])
                ports = f"{ports[0]}-{ports[1]}"
                match = f"dst port {ports}" if proto == "any" else f"{proto} dst port {ports}"
            elif rule.flags.get("fragment"):
                match = "IPv4/IPv6 fragments"
            else:
                match = f"{proto} dst port {ports}"
                app = running.get((ports, proto), "")
            rows.append(self._row(slot, match, proto, ports, rule.action.instance, app))
        rows.append(self._row(None, "everything else", "any", None,
                              self.base_plan.default_instance, ""))
        return rows

    def _row(self, slot, match, proto, ports, index: int, app) -> dict:
        inst = self._instances[index]
        return {"rule": slot, "match": match, "proto": proto, "ports": ports,
                "instance": inst.name, "rx_queues": tuple(inst.rx_queues),
                "reta": self.base_plan.slices[inst.name], "app": app}

    def rules(self) -> list[FlowRule]:
        """The whole rule table in slot order: the dispatcher's rules, then the base
        plan's."""
        return self._table + list(self.base_plan.rules)

    @property
    def used(self) -> int:
        """Rule slots in use (dispatcher and base plan)."""
        return len(self._table) + len(self.base_plan.rules)

    def dump(self) -> dict:
        """What the dispatcher holds, for display.

        Returns
        -------
        dict
            ``classes`` (class -> instance names), ``rules`` (the dispatcher's, one dict
            each: ``slot``, ``proto``, ``ports`` (lo, hi), ``instance``, ``granted`` (the
            ports of the range held by sockets), ``lingering`` (ports of the range no socket
            holds, see the module)), ``grants`` (one dict per port: ``proto``, ``port``,
            ``qos``, ``instance``, ``refs``, ``owners``, ``rule``), ``rule_slots``,
            ``rules_used``, ``commits``, ``generation``.
        """
        rules = []
        for slot, rule in enumerate(self._table):
            number, lo, hi = rule_ports(rule)
            granted = sorted(port for (proto, port) in self._claims
                             if proto == number and lo <= port <= hi)
            rules.append({"slot": slot, "proto": _proto_name(number), "ports": (lo, hi),
                          "instance": self._names[rule.action.instance], "granted": granted,
                          "lingering": hi - lo + 1 - len(granted)})
        grants = [{"proto": _proto_name(proto), "port": port, "qos": claim.qos,
                   "instance": self._names[claim.index], "refs": len(claim.tickets),
                   "owners": sorted(set(claim.tickets.values())),
                   "rule": self._slot_of((proto, port))}
                  for (proto, port), claim in sorted(self._claims.items())]
        return {"classes": {qos: list(names) for qos, names in self.classes.items()},
                "rules": rules, "grants": grants, "rule_slots": self._n_rules,
                "rules_used": self.used, "commits": self.commits,
                "generation": self.generation}


def port_idle(stack, proto: str, port: int, *, settled: bool = False) -> bool:
    """Whether no connection of ``stack`` (a :class:`~hetnic.host.stack.stack.Stack`) uses
    local ``proto``/``port``; with ``settled``, whether each that does is in TIME-WAIT (its
    closing exchange done: what a host waits for at shutdown). UDP keeps no connections:
    idle once its socket is closed."""
    if proto != "tcp":
        return True
    return all(c["lport"] != port or (settled and c["state"] == "TIME-WAIT")
               for c in stack.connections())


class PortHolds:
    """Grants of closed sockets, held until their port is idle on their instance.

    Parameters
    ----------
    release : Callable[[Grant], Any]
        Gives a grant back (:meth:`Dispatcher.release`, or a request to the process that
        owns the dispatcher).
    every : float
        Seconds between two looks at the held ports (:meth:`check` does nothing sooner:
        the look walks the instance's connections).
    """

    def __init__(self, release: Callable[[Grant], Any], every: float = 0.05):
        self._release = release
        self._every = every
        self._next = 0.0
        self._held: list[tuple[Any, Grant]] = []

    def __len__(self) -> int:
        return len(self._held)

    @property
    def grants(self) -> list[Grant]:
        """The grants held now."""
        return [grant for _, grant in self._held]

    def hold(self, stack, grant: Grant) -> None:
        """Keep ``grant`` (its socket on ``stack`` just closed) until its port is idle; a
        port idle already is released at once."""
        if port_idle(stack, grant.proto, grant.port):
            self._release(grant)
        else:
            self._held.append((stack, grant))

    def check(self, now: float) -> int:
        """Release the held grants whose port is idle now (at most every ``every``
        seconds of ``now``, a monotonic time); how many."""
        if not self._held or now < self._next:
            return 0
        self._next = now + self._every
        return self._release_where(lambda stack, grant: port_idle(stack, grant.proto,
                                                                  grant.port))

    def settled(self) -> bool:
        """Whether every held port's connections have finished their closing exchange (each
        gone or in TIME-WAIT)."""
        return all(port_idle(stack, g.proto, g.port, settled=True) for stack, g in self._held)

    def release_all(self) -> int:
        """Release every held grant (at shutdown, after the FIN exchange); how many."""
        return self._release_where(lambda stack, grant: True)

    def _release_where(self, done: Callable[[Any, Grant], bool]) -> int:
        keep, out = [], []
        for stack, grant in self._held:
            (out if done(stack, grant) else keep).append((stack, grant))
        self._held = keep
        for _, grant in out:
            self._release(grant)
        return len(out)


def _proto_number(proto) -> int:
    if isinstance(proto, str) and proto.lower() in PROTOCOLS:
        return PROTOCOLS[proto.lower()]
    if isinstance(proto, int) and not isinstance(proto, bool) and proto in PROTOCOLS.values():
        return proto
    raise DispatchError(f"protocol must be one of {', '.join(PROTOCOLS)} (or "
                        f"{', '.join(map(str, PROTOCOLS.values()))}), not {proto!r}")


def _proto_name(number: int) -> str:
    return next(name for name, n in PROTOCOLS.items() if n == number)
