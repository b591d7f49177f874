"""Pure rule merging for the :class:`~hetnic.host.dispatcher.Dispatcher`: granted ports in,
classifier rules out.

The dispatcher keeps one model: which ``(IP protocol, destination port)`` goes to which
instance. :func:`dispatch_rules` turns it into the fewest :class:`~hetnic.rules.FlowRule`
that say the same thing: the ports of one protocol that go to one instance are cut into
runs of adjacent ports (:func:`port_runs`), one rule per run (a single port or an inclusive
range). Runs of different instances or protocols never overlap, so the order of these rules
among themselves does not change what they decide; they are sorted oldest first (by the
oldest port of each run), so a rule keeps its slot while newer ports come and go, and the
same model always gives the same table (an unchanged table means no commit).

Nothing here touches a NIC.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ..protocol import IpProto
from ..rules import Action, FlowRule

__all__ = ["PROTOCOLS", "port_runs", "dispatch_rules", "rule_ports"]

#: The protocols a dispatcher rule may name (the classifier sees ports only in these),
#: by name -> IP protocol number.
PROTOCOLS: dict[str, int] = {"tcp": int(IpProto.TCP), "udp": int(IpProto.UDP)}
_NAMES = {number: name for name, number in PROTOCOLS.items()}


def port_runs(ports: Iterable[int]) -> list[tuple[int, int]]:
    """``ports`` (any order, duplicates allowed) as sorted inclusive runs of adjacent ports:
    ``[7, 9, 8, 80]`` -> ``[(7, 9), (80, 80)]``."""
    runs: list[tuple[int, int]] = []
    for port in sorted(set(ports)):
        if runs and port == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], port)
        else:
            runs.append((port, port))
    return runs


def dispatch_rules(ports: Mapping[tuple[int, int], int], actions: Sequence[Action],
                   names: Sequence[str], age: Mapping[tuple[int, int], int] | None = None
                   ) -> list[FlowRule]:
    """The rules that steer each ``(proto, port)`` of ``ports`` to its instance.

    Parameters
    ----------
    ports : mapping of (int, int) to int
        ``(IP protocol number, destination port) -> instance index``; the protocol is one of
        :data:`PROTOCOLS`.
    actions : sequence of Action
        The action of each instance (its index, its RETA slice).
    names : sequence of str
        Each instance's name, for the rules' ``name``.
    age : mapping of (int, int) to int, optional
        A rank per port, lower = older (distinct ranks); default: the port number.

    Returns
    -------
    list of FlowRule
        One rule per run of adjacent ports of one protocol and instance (``dst_port`` an int
        for a single port, ``(lo, hi)`` for a range), sorted by the lowest rank of the run's
        ports (then protocol number and first port).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for (proto, port), index in ports.items():
        groups.setdefault((proto, index), []).append(port)
    rules = []
    for (proto, index), group in groups.items():
        for lo, hi in port_runs(group):
            span = str(lo) if lo == hi else f"{lo}-{hi}"
            rank = lo if age is None else min(age[(proto, p)] for p in group if lo <= p <= hi)
            rules.append((rank, proto, lo, FlowRule(
                ip_proto=_NAMES[proto], dst_port=lo if lo == hi else (lo, hi),
                action=actions[index], name=f"dispatch {_NAMES[proto]}/{span} -> {names[index]}")))
    rules.sort(key=lambda item: item[:3])
    return [item[3] for item in rules]


def rule_ports(rule: FlowRule) -> tuple[int, int, int]:
    """``(IP protocol number, first port, last port)`` of a rule made by
    :func:`dispatch_rules`."""
    lo, hi = (rule.dst_port, rule.dst_port) if isinstance(rule.dst_port, int) else rule.dst_port
    return PROTOCOLS[rule.ip_proto], lo, hi
