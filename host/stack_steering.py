# Ref: RFC 826 (ARP), RFC 4861 (neighbour discovery), RFC 792 / RFC 4443 (ICMP echo and errors).
"""How the NIC's classifier and RETA share one interface among stack instances.

The stack instances of ``hetnic stack up`` (:class:`~hetnic.host.stack_host.StackHost`) share
one MAC and one set of addresses, like F-Stack's per-core stacks: the NIC decides which
instance sees a frame. :func:`plan_steering` turns the instances into that decision:

* the RETA (:attr:`NicParams.reta_size <hetnic.params.NicParams.reta_size>` entries) is cut
  into one power-of-two slice per instance, whose entries name that instance's RX queues in
  turn (entries past the last slice name the default instance's queues);
* rules, first match wins: each application port goes to the instance of the application's
  QoS class (:data:`APP_PORTS`; :class:`~hetnic.host.stack_host.StackHost` leaves these out
  and asks the :class:`~hetnic.host.dispatcher.Dispatcher` for them when an application
  listens), IP fragments go to the instance of UDP echo (the
  classifier sees no ports in a fragment, so every fragment of a datagram lands on one
  instance, the one that can answer a fragmented UDP echo), each instance's ephemeral port
  range goes to that instance (the return traffic of connections it opened); IPv4 and IPv6
  alike (the rules carry no address);
* the default action (everything else: ICMP, ARP, NDP, other ports) is the default instance's.

The classifier hands a frame to one instance. Frames every instance needs are handed on by
the host in software (:func:`is_shared_frame`): ARP, and ICMP/ICMPv6 that is not an echo
(neighbour discovery, unreachables, packet too big), so that each instance keeps its own
neighbour cache and hears the errors about its own connections. ICMP echo, TCP, UDP and
other IP protocols stay with the one instance the NIC chose.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..errors import HetnicError
from ..protocol import IPV6_EXT_HEADERS, EtherType, IpProto
from ..rules import Action, FlowRule
from .stack import icmp, icmpv6
from .stack.instance import QOS_CLASSES

__all__ = ["SteeringError", "SteeringPlan", "APP_PORTS", "DEFAULT_INSTANCE", "QOS_CLASSES",
           "plan_steering", "is_shared_frame", "app_instance", "qos_class"]

#: The built-in applications: (name, IP protocol, port, the QoS class that serves it).
APP_PORTS: tuple[tuple[str, str, int, str], ...] = (
    ("http", "tcp", 80, "throughput"),
    ("echo", "tcp", 7, "low-delay"),
    ("echo", "udp", 7, "low-delay"),
    ("discard", "tcp", 9, "concurrency"),
)
#: The instance of UDP echo, which also takes the IP fragments (see the module).
_UDP_ECHO_OWNER = next(owner for app, proto, _, owner in APP_PORTS
                       if (app, proto) == ("echo", "udp"))
#: The class whose instance takes every frame no rule names (when an instance serves it).
DEFAULT_INSTANCE = "concurrency"

_ICMP_ECHO = (icmp.ECHO_REPLY, icmp.ECHO_REQUEST)
_ICMPV6_ECHO = (icmpv6.ECHO_REQUEST, icmpv6.ECHO_REPLY)


class SteeringError(HetnicError, ValueError):
    """The instances do not fit the NIC (queues it does not have, too many instances or
    rules). One line."""


class _Instance(Protocol):
    name: str
    rx_queues: tuple[int, ...]
    tx_queue: int
    ephemeral_ports: tuple[int, int]


class _Params(Protocol):
    reta_size: int
    n_rules: int


@dataclass(frozen=True)
class SteeringPlan:
    """The classifier program for a set of instances.

    Members
    -------
    rules : list of FlowRule
        In slot order (slot 0 first); each rule's ``name`` says why it is there.
    default : Action
        For frames no rule matches.
    reta : list of int
        One RX queue per RETA entry.
    slices : dict of str to (int, int)
        Each instance's RETA slice as ``(offset, size)``.
    default_instance : int
        Index of the instance of :attr:`default`.
    """
    rules: list[FlowRule]
    default: Action
    reta: list[int]
    slices: dict[str, tuple[int, int]]
    default_instance: int

    def program(self, nic) -> int:
        """Load the plan into ``nic`` (a :class:`~hetnic.host.nic.Nic`): the RETA, the rules
        in slots 0, 1, ... (any other rule removed), the default action; commit. Returns the
        commit's generation."""
        nic.rss.set_table(self.reta)
        for slot in [s for s, _ in nic.rules]:
            nic.rules.remove(slot)
        for slot, rule in enumerate(self.rules):
            nic.rules.add(rule, slot)
        nic.rules.set_default(self.default)
        return nic.commit()


def qos_class(instance: _Instance) -> str | None:
    """The QoS class ``instance`` serves: the one it declares (a ``qos`` member, when it has
    one), else its name when that is a class of :data:`QOS_CLASSES`, else None."""
    declared = getattr(instance, "qos", None)
    if declared is not None:
        return declared
    return instance.name if instance.name in QOS_CLASSES else None


def app_instance(instances: Sequence[_Instance], qos: str) -> int:
    """Index of the first instance that serves class ``qos`` (:func:`qos_class`); the first
    instance if none does."""
    for index, inst in enumerate(instances):
        if qos_class(inst) == qos:
            return index
    return 0


def plan_steering(instances: Sequence[_Instance], params: _Params, *,
                  rx_queues: int | None = None, tx_queues: int | None = None,
                  app_ports: Sequence[tuple[str, str, int, str]] = APP_PORTS,
                  first_rules: Sequence[tuple[str, dict, str]] = ()) -> SteeringPlan:
    """The rules, default action and RETA that steer frames to ``instances``.

    Parameters
    ----------
    instances : sequence of InstanceConfig
        Their ``name``, ``rx_queues`` and ``ephemeral_ports`` are used; at most 16 (the
        action's instance field).
    params : NicParams
        The NIC's build: ``reta_size`` and ``n_rules``.
    rx_queues, tx_queues : int, optional
        The NIC's RX and TX queue counts, to check the instances' queues against.
    app_ports : sequence of (name, proto, port, QoS class)
        The application port rules to put first (default :data:`APP_PORTS`); ``()`` for the
        base plan of a :class:`~hetnic.host.dispatcher.Dispatcher`, which installs them
        itself when the applications listen.
    first_rules : sequence of (label, match, instance name)
        Rules put before every other one: the :class:`~hetnic.rules.FlowRule` match fields
        ``match`` steer to the named instance (the tunnel adapter's outer traffic,
        :func:`~hetnic.host.tunnel_host.tunnel_rules`).

    Raises
    ------
    SteeringError
        No instances, more than 16, an instance without RX queues or with a queue (RX or
        TX) the NIC lacks, or more rules than the NIC's rule table holds.
    """
    n = len(instances)
    if not 1 <= n <= 16:
        raise SteeringError(f"the NIC steers to 1 to 16 stack instances, not {n}")
    for inst in instances:
        if not inst.rx_queues:
            raise SteeringError(f"instance {inst.name!r} has no RX queues")
        bad = [q for q in inst.rx_queues if rx_queues is not None and not 0 <= q < rx_queues]
        if bad:
            raise SteeringError(f"instance {inst.name!r} names RX queue {bad[0]}, but the NIC "
                                f"has queues 0 to {rx_queues - 1}")
        if tx_queues is not None and not 0 <= inst.tx_queue < tx_queues:
            raise SteeringError(f"instance {inst.name!r} names TX queue {inst.tx_queue}, but "
                                f"the NIC has TX queues 0 to {tx_queues - 1}")
    reta_size = params.reta_size
    size = reta_size // (1 << (n - 1).bit_length())     # the largest equal power-of-two slice
    default_index = app_instance(instances, DEFAULT_INSTANCE) \
        if any(qos_class(i) == DEFAULT_INSTANCE for i in instances) else n - 1
    actions = [Action(instance=i, reta_offset=i * size, reta_size=size) for i in range(n)]
    default_queues = instances[default_index].rx_queues
    reta = [default_queues[e % len(default_queues)] for e in range(reta_size)]
    slices = {}
    for i, inst in enumerate(instances):
        for e in range(size):
            reta[i * size + e] = inst.rx_queues[e % len(inst.rx_queues)]
        slices[inst.name] = (i * size, size)

    rules = []
    names = [inst.name for inst in instances]
    for label, match, owner_name in first_rules:
        if owner_name not in names:
            raise SteeringError(f"rule {label!r} names instance {owner_name!r}, which is not "
                                f"one of {', '.join(names)}")
        rules.append(FlowRule(**match, action=actions[names.index(owner_name)], name=label))
    for app, proto, port, owner in app_ports:
        index = app_instance(instances, owner)
        rules.append(FlowRule(ip_proto=proto, dst_port=port, action=actions[index],
                              name=f"{app} {proto}/{port} -> {instances[index].name}"))
    udp_echo = app_instance(instances, _UDP_ECHO_OWNER)
    rules.append(FlowRule(flags={"fragment": True}, action=actions[udp_echo],
                          name=f"IP fragments -> {instances[udp_echo].name}"))
    for i, inst in enumerate(instances):
        lo, hi = inst.ephemeral_ports
        rules.append(FlowRule(dst_port=(lo, hi), action=actions[i],
                              name=f"ephemeral {lo}-{hi} -> {inst.name}"))
    if len(rules) > params.n_rules:
        raise SteeringError(f"{n} instances need {len(rules)} classifier rules, but the NIC "
                            f"has {params.n_rules}")
    return SteeringPlan(rules=rules, default=actions[default_index], reta=reta,
                        slices=slices, default_instance=default_index)


def is_shared_frame(frame: bytes) -> bool:
    """Whether every instance should see ``frame`` (Ethernet II, no FCS): ARP, and ICMP or
    ICMPv6 other than echo (neighbour discovery, errors). A frame too short to tell is not
    shared (the instance that got it counts the drop)."""
    if len(frame) < 14:
        return False
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == EtherType.ARP:
        return True
    if ethertype == EtherType.IPV4:
        if len(frame) < 34:
            return False
        ihl = (frame[14] & 0x0F) * 4
        frag = struct.unpack_from("!H", frame, 20)[0] & 0x1FFF
        if frame[23] != IpProto.ICMP or frag or len(frame) <= 14 + ihl:
            return False
        return frame[14 + ihl] not in _ICMP_ECHO
    if ethertype == EtherType.IPV6:
        next_header, offset = (frame[20] if len(frame) > 20 else -1), 54
        while next_header in IPV6_EXT_HEADERS and len(frame) >= offset + 8:
            if next_header == IpProto.FRAGMENT:
                return False            # a fragment: it stays with one instance
            next_header, offset = frame[offset], offset + (frame[offset + 1] + 1) * 8
        if next_header != IpProto.ICMPV6 or len(frame) <= offset:
            return False
        return frame[offset] not in _ICMPV6_ECHO
    return False
