"""The tunnel adapter's classifier rules (hetnic.host.tunnel_host.tunnel_rules): one per
(encapsulation port, remote, VNI), judged by the parser and classifier models in the plan
``hetnic stack up`` programs: a tunnel's VNI reaches the adapter, any other VNI (or none)
from the same remote goes by the base plan."""

import pytest

from frames import vxlan_udp
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.tunnel import TunnelSpec
from hetnic.host.stack_steering import DEFAULT_INSTANCE, plan_steering
from hetnic.host.tunnel_host import tunnel_fragment_rules, tunnel_instance, tunnel_rules
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


def test_one_rule_per_port_remote_and_vni():
    rules = tunnel_rules(SPECS + [TunnelSpec("vxlan", 10, B4, "198.19.9.2/24", "x")])
    assert [match for _, match, _ in rules] == [
        {"ip_proto": "udp", "dst_port": 4789, "src": B4, "vni": 10},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4, "vni": 14},
        {"ip_proto": "udp", "dst_port": 4789, "src": B4b, "vni": 10},
        {"ip_proto": "udp", "dst_port": 4790, "src": B4, "vni": 12},
        {"ip_proto": "udp", "dst_port": 4789, "src": B6, "vni": 11}]
    assert rules[1][0] == "tunnel udp/4789 vni 14 from 198.18.0.1 -> tunnel"
    assert {instance for *_, instance in rules} == {"tunnel"}


@pytest.fixture(scope="module")
def steer():
    """The instance name the plan (tunnel rules, fragment rules, base plan) gives a frame."""
    instances, cfg = tunnel_instance(list(PROFILES.values()), rx_queues=8, tx_queues=4)
    instances.append(cfg)
    # No application port rules (the dispatcher's, installed as applications listen): with
    # them, 5 tunnel and 3 fragment rules do not fit the 16 of the stock core.
    plan = plan_steering(instances, HIL_NIC_CORE, rx_queues=8, tx_queues=4, app_ports=(),
                         first_rules=tunnel_rules(SPECS) + tunnel_fragment_rules(SPECS))
    rules = [RuleFields.decode(r.encode(HIL_NIC_CORE.reta_size)) for r in plan.rules]
    names = [i.name for i in instances]

    def instance_name(frame):
        result = classify(parse_frame(frame), rules, plan.default,
                          reta_entries=HIL_NIC_CORE.reta_size)
        return names[result.instance]
    return instance_name


@pytest.mark.parametrize("frame, where", [
    (vxlan_udp(4, vni=10, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, vni=14, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(4, vni=10, src=B4b, dst=A4), "tunnel"),
    (vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=12, src=B4, dst=A4), "tunnel"),
    (vxlan_udp(6, vni=11, src=B6, dst=A6), "tunnel"),
    # not the adapter's: an unknown VNI from a known remote, a known VNI from the wrong
    # remote or on the other port, no VNI (I flag clear, the header cut short), port 4788
    (vxlan_udp(4, vni=99, src=B4, dst=A4), DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=14, src=B4b, dst=A4), DEFAULT_INSTANCE),
    (vxlan_udp(4, dport=4790, flags=0x0C, next_protocol=1, vni=10, src=B4, dst=A4),
     DEFAULT_INSTANCE),
    (vxlan_udp(6, vni=10, src=B6, dst=A6), DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=10, flags=0, src=B4, dst=A4), DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=10, cut=7, src=B4, dst=A4), DEFAULT_INSTANCE),
    (vxlan_udp(4, vni=10, dport=4788, src=B4, dst=A4), DEFAULT_INSTANCE),
], ids=["vni10", "vni14", "vni10-other-remote", "gpe12", "v6-vni11", "unknown-vni",
        "vni14-wrong-remote", "gpe-vni10", "v6-vni10", "i-clear", "cut", "port4788"])
def test_only_the_tunnels_vnis_reach_the_adapter(steer, frame, where):
    assert steer(frame) == where
