"""Where the tunnel adapter runs on the NIC: its instance (queues of its own) and the
classifier rules that steer every tunnel's outer traffic to it.

With ``--tunnel`` given, ``hetnic stack up`` runs one more stack instance, ``tunnel``
(:func:`tunnel_instance`): two RX queues no other instance uses (the last half of the widest
instance's queues, two at most, when every queue is taken), a TX queue of its own and a
block of ephemeral ports no other instance has. :func:`tunnel_rules` are the rules that send
every outer datagram from a tunnel's remote (outer source address) to a tunnel port (UDP
4789 VXLAN, 4790 VXLAN-GPE) there, placed before every other rule of the base plan
(:func:`~hetnic.host.stack_steering.plan_steering`, ``first_rules``), so tunnel traffic never
passes through another instance: one rule per tunnel that also matches its VNI (the NIC's
parser reads it; the rule's hit counter counts that tunnel's frames in the NIC), then per
(port, remote) a catch-all without a VNI, which takes what the VNI rules leave (an unknown
VNI, the I flag clear, a header cut short): the adapter counts those (``unknown_vni``,
``bad_header``, ``truncated``). When the plan does not fit the NIC's rule table,
:func:`plan_tunnel_steering` leaves the per-VNI rules out (the catch-alls alone steer
correctly) and says so in one line.

An outer datagram the remote fragmented has no UDP header past its first fragment, and the
classifier reads no ports in any fragment, so :func:`tunnel_rules` cannot match it:
:func:`tunnel_fragment_rules` send every IP fragment from a tunnel remote (IPv4 MF or an
offset, an IPv6 fragment header) to the adapter, which reassembles before it decapsulates.
The NIC's RSS hashes a fragment by its addresses only, so all fragments of one datagram take
one of the adapter's queues. :func:`plan_tunnel_steering` puts both sets before the base
plan (``first_rules=tunnel_rules(tunnels) + tunnel_fragment_rules(tunnels)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .stack.instance import PROFILES, InstanceConfig
from .stack_steering import SteeringError, SteeringPlan, plan_steering
from .stack.tunnel import TunnelError, TunnelSpec
from hetnic.tunnel_format import TUNNEL_KINDS

__all__ = ["TUNNEL_INSTANCE", "tunnel_instance", "tunnel_rules", "tunnel_fragment_rules",
           "plan_tunnel_steering", "tunnel_apps"]

#: The adapter's instance name.
TUNNEL_INSTANCE = "tunnel"
#: RX queues the adapter takes at most (RSS spreads the tunnels' outer flows over them: the
#: outer UDP source port follows the inner flow).
_RX_QUEUES = 2
#: Ephemeral ports the adapter's outer stack gets (it opens no connection itself).
_PORT_BLOCK = 1000


def tunnel_instance(instances: Sequence[InstanceConfig], *, rx_queues: int, tx_queues: int
                    ) -> tuple[list[InstanceConfig], InstanceConfig]:
    """The instances with the adapter's room made, and the adapter's own instance (the
    ``throughput`` profile's knobs on up to two free RX queues, a free TX queue and a free
    block of ephemeral ports).

    Raises
    ------
    TunnelError
        No RX queue can be spared, no TX queue is free, no free block of ephemeral ports, or
        an instance is already called ``tunnel`` (one line).
    """
    instances = list(instances)
    if any(i.name == TUNNEL_INSTANCE for i in instances):
        raise TunnelError(f"an instance is already called {TUNNEL_INSTANCE!r}")
    used = {q for i in instances for q in i.rx_queues}
    free = [q for q in range(rx_queues) if q not in used]
    if free:
        rx = tuple(free[:_RX_QUEUES])
    else:
        widest = max(range(len(instances)), key=lambda k: len(instances[k].rx_queues))
        donor = instances[widest]
        if len(donor.rx_queues) < 2:
            raise TunnelError(f"the tunnel adapter needs an RX queue, and every one of the "
                              f"{rx_queues} is the only queue of its instance")
        give = min(_RX_QUEUES, len(donor.rx_queues) // 2)
        rx = donor.rx_queues[-give:]
        instances[widest] = donor.replace(rx_queues=donor.rx_queues[:-give])
    tx_used = {i.tx_queue for i in instances}
    tx_free = [q for q in range(tx_queues) if q not in tx_used]
    if not tx_free:
        raise TunnelError(f"the tunnel adapter needs a TX queue, and all {tx_queues} are used")
    hi = 65535
    for i in sorted(instances, key=lambda i: -i.ephemeral_ports[1]):
        lo0, hi0 = i.ephemeral_ports
        if hi - _PORT_BLOCK + 1 > hi0:
            break
        hi = min(hi, lo0 - 1)
    if hi - _PORT_BLOCK + 1 < 1024:
        raise TunnelError("no free block of ephemeral ports for the tunnel adapter")
    # The throughput profile's knobs (its inner stacks carry bulk traffic), queues and
    # ports of its own.
    config = PROFILES["throughput"].replace(
        name=TUNNEL_INSTANCE, rx_queues=rx, tx_queue=tx_free[0], qos=None,
        ephemeral_ports=(hi - _PORT_BLOCK + 1, hi))
    return instances, config


def tunnel_rules(tunnels: Sequence[TunnelSpec], instance: str = TUNNEL_INSTANCE, *,
                 per_vni: bool = True) -> list[tuple[str, dict, str]]:
    """``(label, FlowRule match fields, instance)``: with ``per_vni``, one rule per
    (encapsulation port, remote, VNI) - UDP to the port from the remote whose VXLAN /
    VXLAN-GPE header carries the VNI (the NIC parser's ``vni``, with ``MetaFlags.vni``) -
    then one catch-all per (port, remote) without a VNI, after that remote's VNI rules. All
    go to ``instance``: every datagram from a tunnel's remote to its port reaches the
    adapter, which counts an unknown VNI or a bad header. The VNI rules change no steering;
    their hit counters count each tunnel's frames in the NIC (docs/tunnels.md,
    *Steering*)."""
    vnis: dict[tuple[int, str, int], None] = {}
    for spec in tunnels:
        vnis.setdefault((TUNNEL_KINDS[spec.kind][0], spec.remote, spec.vni), None)
    rules = []
    if per_vni:
        rules += [(f"tunnel udp/{port} vni {vni} from {remote} -> {instance}",
                   {"ip_proto": "udp", "dst_port": port, "src": remote, "vni": vni}, instance)
                  for port, remote, vni in vnis]
    remotes = dict.fromkeys((port, remote) for port, remote, _ in vnis)
    rules += [(f"tunnel udp/{port} from {remote} -> {instance}",
               {"ip_proto": "udp", "dst_port": port, "src": remote}, instance)
              for port, remote in remotes]
    return rules


def plan_tunnel_steering(instances, params, tunnels: Sequence[TunnelSpec], *, reserve: int = 0,
                         **kwargs) -> tuple[SteeringPlan, str | None]:
    """:func:`~hetnic.host.stack_steering.plan_steering` with :func:`tunnel_rules` and
    :func:`tunnel_fragment_rules` first (``kwargs`` go to it), and a one-line note (or None).

    When the plan with the per-VNI rules does not fit the NIC's rule table with ``reserve``
    rules to spare (the application rules a dispatcher installs later), the plan without
    them (the catch-alls steer every tunnel datagram alike) and a note saying so.

    Raises
    ------
    SteeringError
        As ``plan_steering``: the plan does not fit even without the per-VNI rules, or
        another error of the instances.
    """
    rest = tunnel_fragment_rules(tunnels)
    vni_rules = len(tunnel_rules(tunnels)) - len(tunnel_rules(tunnels, per_vni=False))
    try:
        plan = plan_steering(instances, params, first_rules=tunnel_rules(tunnels) + rest,
                             **kwargs)
        if not vni_rules or len(plan.rules) + reserve <= params.n_rules:
            return plan, None
    except SteeringError:
        pass
    # Only the rule count depends on the per-VNI rules: a plan without them either fits or
    # raises the same error.
    plan = plan_steering(instances, params,
                         first_rules=tunnel_rules(tunnels, per_vni=False) + rest, **kwargs)
    return plan, (f"tunnel steering: the {vni_rules} per-VNI rules do not fit the NIC's "
                  f"{params.n_rules} rules, left out (the per-remote rules steer all "
                  f"tunnel traffic; no per-tunnel NIC rule counts)")


def tunnel_fragment_rules(tunnels: Sequence[TunnelSpec], instance: str = TUNNEL_INSTANCE
                          ) -> list[tuple[str, dict, str]]:
    """``(label, FlowRule match fields, instance)`` per remote: every IP fragment from the
    remote (any protocol: a fragment past the first has no ports to tell) goes to
    ``instance``. What is not tunnel traffic once reassembled is the adapter's to count
    (:class:`~hetnic.host.stack.tunnel.TunnelAdapter`, ``not_tunnel``)."""
    remotes = dict.fromkeys(spec.remote for spec in tunnels)
    return [(f"fragments from {remote} -> {instance}",
             {"src": remote, "flags": {"fragment": True}}, instance)
            for remote in remotes]


def tunnel_apps(adapter, serve_dir=None) -> list:
    """The built-in applications on every tunnel's inner stack: echo on TCP and UDP 7, and
    HTTP on TCP 80 with ``serve_dir`` (no dispatcher grant: the NIC steers the tunnels'
    outer traffic, the ports are the inner stacks' own)."""
    from .apps.builtin import make_app
    apps = []
    for tunnel in adapter.tunnels:
        if serve_dir is not None:
            apps.append(make_app("http", "tcp", tunnel.stack, 80, serve_dir))
        apps.append(make_app("echo", "tcp", tunnel.stack, 7))
        apps.append(make_app("echo", "udp", tunnel.stack, 7))
    return apps
