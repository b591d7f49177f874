"""The tunnel adapter's classifier rules (hetnic.host.tunnel_host.tunnel_rules): one per
(encapsulation port, remote, VNI), then a catch-all per (port, remote), judged by the parser
and classifier models in the plan ``hetnic stack up`` programs: every datagram from a
tunnel's remote to its port reaches the adapter (a tunnel's VNI by its own rule, any other
VNI or none by the catch-all); a known VNI from another remote or to port 4788 goes by the
base plan. A plan that does not fit the rule table leaves the per-VNI rules out."""

from dataclasses import replace

import pytest

from frames import vxlan_udp
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.tunnel import TunnelSpec
from hetnic.host.stack_steering import APP_PORTS, DEFAULT_INSTANCE, SteeringError, plan_steering
from hetnic.host.tunnel_host import (plan_tunnel_steering, tunnel_fragment_rules,
                                     tunnel_instance, tunnel_rules)
from hetnic.params import HIL_NIC_CORE
from hetnic.rules import RuleFields
from hetnic.sim.model.classifier import classify
from hetnic.sim.model.parser import parse_frame

B4, B4b, A4, B6, A6 = "198.18.0.1", "198.18.0.3", "198.18.0.2", "2001:db8::1", "2001:db8::2"
SPECS = [TunnelSpec("vxlan", 10, B4, "198.19.1.2/24"),
         TunnelSpec("vxlan", 14, B4, "198.19.4.2/24"),        # a second VNI, same remote
         TunnelSpec("vxlan", 10, B4b, "198.19.5.2/24", "b"),   # VNI 10 from another remote
         TunnelSpec("vxlan-gpe", 12, B4, "198.19.3.2/24"),
         TunnelSpec("vxlan", 11, B6, "198.19.2.2/24")]


def test_vni_rules_then_a_catch_all_per_port_and_remote():
    rules = tunnel_rules(SPECS + [TunnelSpec("vxlan", 10, B4, "198.19.9.2/24", "x")])
    assert [match for _, match, _ in rules] == [
        {"ip_proto": "udp", "dst_port": 4789, "src": B4, "vni": 10},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4, "vni": 14},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4b, "vni": 10},
        {"ip_proto": "udp", "dst_port": 4790, "src": B4, "vni": 12},
        {"ip_proto": "udp", "dst_port": 4789, "src": B6, "vni": 11},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4b},
        {"ip_proto": "udp", "dst_port": 4790, "src": B4},
        {"ip_proto": "udp", "dst_port": 4789, "src": B6}]
    assert rules[1][0] == "tunnel udp/4789 vni 14 from 198.18.0.1 -> tunnel"
    assert rules[5][0] == "tunnel udp/4789 from 198.18.0.1 -> tunnel"
    assert {instance for *_, instance in rules} == {"tunnel"}
    assert tunnel_rules(SPECS, per_vni=False) == rules[5:]


def _planned(specs, app_ports=(), params=HIL_NIC_CORE, reserve=0):
    instances, cfg = tunnel_instance(list(PROFILES.values()), rx_queues=8, tx_queues=4)
    instances.append(cfg)
    plan, note = plan_tunnel_steering(instances, params, specs, rx_queues=8, tx_queues=4,
                                      app_ports=app_ports, reserve=reserve)
    rules = [RuleFields.decode(r.encode(params.reta_size)) for r in plan.rules]
    names = [i.name for i in instances]

    def instance_name(frame):
        result = classify(parse_frame(frame), rules, plan.default,
                          reta_entries=HIL_NIC_CORE.reta_size)
        return names[result.instance]
    return plan, note, instance_name


def test_eight_tunnels_from_one_remote_plan():
    """8 VNIs from one remote: with the application port rules the per-VNI rules do not fit
    the 16 of the stock core (nor with room kept for them); they are left out with a note,
    and every VNI (and an unknown one) still reaches the adapter. Without application rules
    they fit."""
    specs = [TunnelSpec("vxlan", 100 + k, B4, f"198.19.{k}.2/24", f"t{k}") for k in range(8)]
    with pytest.raises(SteeringError):       # what the per-VNI rules alone would do
        instances, cfg = tunnel_instance(list(PROFILES.values()), rx_queues=8, tx_queues=4)
        plan_steering(instances + [cfg], HIL_NIC_CORE, rx_queues=8, tx_queues=4,
                      first_rules=tunnel_rules(specs) + tunnel_fragment_rules(specs))
    plan, note, steer = _planned(specs, app_ports=APP_PORTS)
    assert note is not None and "8 per-VNI rules" in note and "\n" not in note
    assert not any("vni" in r.name for r in plan.rules)
    assert len(plan.rules) <= HIL_NIC_CORE.n_rules
    for k in range(8):
        assert steer(vxlan_udp(4, vni=100 + k, src=B4, dst=A4)) == "tunnel"
    assert steer(vxlan_udp(4, vni=99, src=B4, dst=A4)) == "tunnel"
    # StackHost's plan: no application rules yet, but room kept for them
    plan, note, steer = _planned(specs, reserve=len(APP_PORTS))
    assert note is not None and len(plan.rules) + len(APP_PORTS) <= HIL_NIC_CORE.n_rules
    assert steer(vxlan_udp(4, vni=103, src=B4, dst=A4)) == "tunnel"
    plan, note, steer = _planned(specs)
    assert note is None and sum("vni" in r.name for r in plan.rules) == 8
    assert steer(vxlan_udp(4, vni=107, src=B4, dst=A4)) == "tunnel"
    names = [r.name for r in plan.rules]
    assert names.index("tunnel udp/4789 vni 107 from 198.18.0.1 -> tunnel") \
        < names.index("tunnel udp/4789 from 198.18.0.1 -> tunnel")


@pytest.fixture(scope="module", params=["per-vni", "catch-alls"])
def steer(request):
    """The instance name the plan (tunnel rules, fragment rules, base plan) gives a frame:
    with the per-VNI rules (a core with 32 rules), and without them (the stock 16 do not
    hold SPECS' 17). No application port rules (the dispatcher's, installed as applications
    listen), as StackHost plans."""
    if request.param == "per-vni":
        plan, note, instance_name = _planned(SPECS, params=replace(HIL_NIC_CORE, n_rules=32))
        assert note is None and sum("vni" in r.name for r in plan.rules) == 5
    else:
        plan, note, instance_name = _planned(SPECS)
        assert note is not None and not any("vni" in r.name for r in plan.rules)
    return instance_name


@pytest.mark.parametrize("frame, where", [
    (vxlan_udp(4, vni=10, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, vni=14, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, vni=10, src=B4b, dst=A4), "tunnel"),
    (vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=12, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(6, vni=11, src=B6, dst=A6), "tunnel"),
    # the adapter's too (by the catch-all; it counts them): an unknown VNI from a known
    # remote, a known VNI from a remote on the other port, no VNI (I flag clear, the header
    # cut short)
    (vxlan_udp(4, vni=99, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=10, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(6, vni=10, src=B6, dst=A6), "tunnel"),
    (vxlan_udp(4, vni=10, flags=0, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, vni=10, cut=7, src=B4, dst=A4), "tunnel"),
    # not the adapter's: a known VNI from a remote without a tunnel on that port, port 4788
    (vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=12, src=B4b, dst=A4),
     DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=14, src="198.18.0.9", dst=A4), DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=10, dport=4788, src=B4, dst=A4), DEFAULT_INSTANCE),
], ids=["vni10", "vni14", "vni10-other-remote", "gpe12", "v6-vni11", "unknown-vni",
        "gpe-vni10", "v6-vni10", "i-clear", "cut", "gpe12-wrong-remote", "vni14-no-tunnel",
        "port4788"])
def test_every_datagram_from_a_tunnel_remote_reaches_the_adapter(steer, frame, where):
    assert steer(frame) == where
