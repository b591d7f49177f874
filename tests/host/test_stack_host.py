"""The stack host: the steering plan (pure), the frames every instance sees, and the whole
host (simulated NIC, TAP bridge, three instances, applications) with the Linux kernel in a
network namespace as the peer."""

import hashlib
import random
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, IPv6, \
    IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether

from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack_steering import SteeringError, is_shared_frame, plan_steering
from hetnic.params import HIL_NIC_CORE, NicParams

_MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:5e:00:00:02"}


def _inst(name, queues, tx, ports):
    return SimpleNamespace(name=name, rx_queues=queues, tx_queue=tx, ephemeral_ports=ports)


def test_plan_of_the_stock_profiles():
    instances = list(PROFILES.values())
    plan = plan_steering(instances, HIL_NIC_CORE, rx_queues=8)
    names = [i.name for i in instances]
    assert len(plan.reta) == 512 and plan.slices == {
        "low-delay": (0, 128), "throughput": (128, 128), "concurrency": (256, 128)}
    for inst in instances:
        lo, size = plan.slices[inst.name]
        assert set(plan.reta[lo:lo + size]) == set(inst.rx_queues)
    assert set(plan.reta[384:]) == set(PROFILES["concurrency"].rx_queues)
    assert names[plan.default.instance] == "concurrency"
    routes = {(r.ip_proto, r.dst_port): names[r.action.instance] for r in plan.rules
              if r.dst_port is not None}
    assert routes[("tcp", 80)] == "throughput"
    assert routes[("tcp", 7)] == routes[("udp", 7)] == "low-delay"
    assert routes[("tcp", 9)] == "concurrency"
    for inst in instances:
        assert routes[(None, inst.ephemeral_ports)] == inst.name
    for rule in plan.rules:         # each action's slice is its instance's
        assert plan.slices[names[rule.action.instance]] == (rule.action.reta_offset,
                                                             rule.action.reta_size)
    # every rule fits the NIC's rule table and RETA
    assert len(plan.rules) <= HIL_NIC_CORE.n_rules
    for rule in plan.rules:
        rule.encode(HIL_NIC_CORE.reta_size)


def test_plan_with_other_names_and_sizes():
    instances = [_inst(f"i{k}", (k,), k % 4, (20000 + 1000 * k, 20999 + 1000 * k))
                 for k in range(5)]
    plan = plan_steering(instances, NicParams(rx_queues=8, tx_queues=4, event_queues=4))
    assert all(size == 64 for _, size in plan.slices.values())     # 512 / 8
    assert plan.default_instance == 4                               # no "concurrency": last
    assert plan.rules[0].action.instance == 0                       # no "throughput": first


@pytest.mark.parametrize("instances, params, message", [
    ([], HIL_NIC_CORE, "1 to 16 stack instances"),
    ([_inst("a", (), 0, (20000, 20001))], HIL_NIC_CORE, "no RX queues"),
    ([_inst("a", (9,), 0, (20000, 20001))], HIL_NIC_CORE, "RX queue 9"),
    ([_inst(f"i{k}", (0,), 0, (20000 + k, 20000 + k)) for k in range(12)], HIL_NIC_CORE,
     "classifier rules"),
])
def test_plan_refuses(instances, params, message):
    with pytest.raises(SteeringError, match=message):
        plan_steering(instances, params, rx_queues=8)


@pytest.mark.parametrize("frame, shared", [
    (Ether(**_MACS) / ARP(), True),
    (Ether(**_MACS) / IP() / ICMP(type=8), False),
    (Ether(**_MACS) / IP() / ICMP(type=0), False),
    (Ether(**_MACS) / IP() / ICMP(type=3, code=3), True),
    (Ether(**_MACS) / IP(frag=3) / ICMP(type=3), False),
    (Ether(**_MACS) / IP() / TCP(), False),
    (Ether(**_MACS) / IP() / UDP(), False),
    (Ether(**_MACS) / IPv6() / ICMPv6ND_NS(), True),
    (Ether(**_MACS) / IPv6() / ICMPv6ND_NA(), True),
    (Ether(**_MACS) / IPv6() / ICMPv6EchoRequest(), False),
    (Ether(**_MACS) / IPv6() / IPv6ExtHdrFragment() / ICMPv6ND_NS(), False),
    (Ether(**_MACS) / IPv6() / TCP(), False),
    (b"\x00" * 13, False),
    (bytes(Ether(**_MACS) / IP() / ICMP())[:30], False),
])
def test_shared_frames(frame, shared):
    assert is_shared_frame(bytes(frame)) is shared


def test_the_simulated_nic_steers_by_the_plan():
    """Frames through the simulated NIC land on the queues of the instance the plan names."""
    from hetnic.host.nic import Nic
    instances = list(PROFILES.values())
    plan = plan_steering(instances, HIL_NIC_CORE, rx_queues=8)
    queues = {i.name: set(i.rx_queues) for i in instances}
    seed = 5
    print("seed", seed)
    rng = random.Random(seed)
    cases = []
    for _ in range(8):
        sport = rng.randrange(1024, 65536)
        src4 = f"198.18.0.{rng.randrange(1, 250)}"
        src6 = f"2001:db8::{rng.randrange(1, 0xffff):x}"
        cases += [
            (IP(src=src4, dst="198.18.0.2") / TCP(sport=sport, dport=80), "throughput"),
            (IPv6(src=src6, dst="2001:db8::2") / TCP(sport=sport, dport=80), "throughput"),
            (IP(src=src4, dst="198.18.0.2") / TCP(sport=sport, dport=7), "low-delay"),
            (IPv6(src=src6, dst="2001:db8::2") / UDP(sport=sport, dport=7), "low-delay"),
            (IP(src=src4, dst="198.18.0.2") / TCP(sport=sport, dport=9), "concurrency"),
            (IP(src=src4, dst="198.18.0.2") / TCP(sport=80, dport=rng.randrange(30000, 40000)),
             "throughput"),
            (IPv6(src=src6, dst="2001:db8::2") / TCP(sport=80, dport=rng.randrange(20000, 30000)),
             "low-delay"),
            (IP(src=src4, dst="198.18.0.2") / UDP(sport=53, dport=rng.randrange(40000, 60000)),
             "concurrency"),
            (IP(src=src4, dst="198.18.0.2") / TCP(sport=sport, dport=443), "concurrency"),
            (IP(src=src4, dst="198.18.0.2") / ICMP(), "concurrency"),
            (IP(src=src4, dst="198.18.0.2", flags="MF") / UDP(sport=sport, dport=7) / bytes(64),
             "low-delay"),
        ]
    cases.append((ARP(psrc="198.18.0.1", pdst="198.18.0.2"), "concurrency"))
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        plan.program(nic)
        frames = [bytes(Ether(**_MACS) / packet) for packet, _ in cases]
        nic.wire.send(frames)
        nic.run_until_idle()
        arrived = {}
        for q, rxq in enumerate(nic.rx_queues):
            for packet in rxq.poll(256):
                arrived[bytes(packet.data)] = q
    assert len(arrived) == len(set(frames))
    for frame, (packet, owner) in zip(frames, cases):
        assert arrived[frame] in queues[owner], packet.summary()
