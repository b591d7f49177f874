"""The QoS dispatcher on the simulated NIC: after a request, frames to the port land on the
chosen instance's RX queues, decided by the dispatcher's rule; after the last release they
go back to the default action; every change is one commit (one generation)."""

import random

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hetnic.host.dispatcher import Dispatcher
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack_steering import plan_steering

_MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:5e:00:00:02"}
INSTANCES = list(PROFILES.values())
NAMES = [i.name for i in INSTANCES]


@pytest.fixture(scope="module")
def nic():
    from hetnic.host.nic import Nic
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        yield nic


@pytest.fixture
def dispatcher(nic):
    plan = plan_steering(INSTANCES, nic.params, rx_queues=len(nic.rx_queues),
                         tx_queues=len(nic.tx_queues), app_ports=())
    dispatcher = Dispatcher(nic, INSTANCES, base_plan=plan)
    dispatcher.program()
    return dispatcher


def _frames(proto, port, seed, n=8):
    """``n`` frames to ``port`` from random sources, IPv4 and IPv6 alternately."""
    rng = random.Random(seed)
    layer = TCP if proto == "tcp" else UDP
    frames = []
    for k in range(n):
        sport = rng.randrange(1024, 65536)
        ip = IP(src=f"198.18.0.{rng.randrange(1, 250)}", dst="198.18.0.2") if k % 2 else \
            IPv6(src=f"2001:db8::{rng.randrange(1, 0xffff):x}", dst="2001:db8::2")
        frames.append(bytes(Ether(**_MACS) / ip / layer(sport=sport, dport=port) / bytes(20)))
    return frames


def _deliver(nic, frames):
    """Send ``frames`` through the NIC; the RxPackets that arrived, by frame."""
    nic.wire.send(frames)
    nic.run_until_idle()
    arrived = {}
    for rxq in nic.rx_queues:
        for packet in rxq.poll(256):
            arrived[bytes(packet.data)] = packet
    assert set(arrived) == set(frames)
    return [arrived[f] for f in frames]


@pytest.mark.timeout(120)
def test_a_granted_port_lands_on_its_instance_and_returns_to_the_default(nic, dispatcher):
    seed = 11
    print("seed", seed)
    default = dispatcher.base_plan.default.instance
    assert NAMES[default] == "concurrency"
    frames = _frames("tcp", 5001, seed)
    for packet in _deliver(nic, frames):                    # before: the default action
        assert packet.instance == default and packet.rule == nic.params.n_rules

    generation = nic.generation
    grant = dispatcher.request("low-delay", "tcp", 5001, owner="test")
    assert nic.generation == generation + 1 == dispatcher.generation
    low = INSTANCES[grant.instance_index]
    assert grant.instance == low.name == "low-delay"
    for packet in _deliver(nic, frames):
        assert packet.queue in low.rx_queues, packet
        assert packet.instance == grant.instance_index and packet.rule == grant.rule
        assert packet.generation == dispatcher.generation
    # the same port over UDP is not granted: still the default
    for packet in _deliver(nic, _frames("udp", 5001, seed)):
        assert packet.instance == default

    second = dispatcher.request("low-delay", "tcp", 5001)           # a reference, no commit
    dispatcher.release(grant)
    assert nic.generation == generation + 1
    dispatcher.release(second)                                      # the last: one commit
    assert nic.generation == generation + 2
    for packet in _deliver(nic, frames):
        assert packet.instance == default and packet.rule == nic.params.n_rules
        assert packet.queue in PROFILES["concurrency"].rx_queues


@pytest.mark.timeout(120)
def test_a_merged_range_steers_every_port_and_splits_again(nic, dispatcher):
    seed = 12
    print("seed", seed)
    throughput = NAMES.index("throughput")
    grants = [dispatcher.request("throughput", "udp", port) for port in (6000, 6001, 6002)]
    assert len({g.rule for g in grants}) == 1                       # one range rule
    assert dispatcher.rules()[0].dst_port == (6000, 6002)
    frames = [f for port in (6000, 6001, 6002) for f in _frames("udp", port, seed, 4)]
    for packet in _deliver(nic, frames):
        assert packet.instance == throughput and packet.rule == 0
        assert packet.queue in PROFILES["throughput"].rx_queues
    generation = nic.generation
    dispatcher.release(grants[1])                                   # 6000 and 6002 apart
    assert nic.generation == generation + 1
    got = _deliver(nic, frames)
    assert {p.rule for p in got[:4]} == {0} and {p.rule for p in got[8:]} == {1}
    assert all(p.instance == throughput for p in got[:4] + got[8:])
    assert all(p.instance == dispatcher.base_plan.default.instance for p in got[4:8])
    dispatcher.release(grants[0])
    dispatcher.release(grants[2])
    assert dispatcher.rules() == dispatcher.base_plan.rules
