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


# --- the stack host: its applications and StackHost.listen go through the dispatcher ---------

K4, H4, KMAC = "198.18.0.1", "198.18.0.2", "02:00:00:00:00:01"


class FakeTap:
    """A TAP stand-in: frames put in ``inbox`` go to the NIC, frames the NIC sends out are
    collected in ``written``."""

    def __init__(self):
        self.inbox = []
        self.written = []

    def read_frames(self, max_frames):
        frames, self.inbox = self.inbox[:max_frames], self.inbox[max_frames:]
        return frames

    def write(self, frame):
        self.written.append(bytes(frame))

    def fileno(self):
        raise AssertionError("the test steps the host itself")


def _step_until(host, cond, steps=2000):
    import time
    for _ in range(steps):
        host.step(time.monotonic())
        if cond():
            return
    raise AssertionError("the host did not get there")


def _syn_answer(host, tap, sport):
    """Send a SYN from the 'kernel' to H4:5555; the TCP answer the host sends back."""
    from hetnic.host.stack_host import DEFAULT_MAC
    mac = ":".join(f"{b:02x}" for b in DEFAULT_MAC)
    tap.written.clear()
    tap.inbox.append(bytes(Ether(src=KMAC, dst=mac) / IP(src=K4, dst=H4)
                           / TCP(sport=sport, dport=5555, flags="S", seq=1000)))

    def answer():
        return next((Ether(f)[TCP] for f in tap.written
                     if TCP in Ether(f) and Ether(f)[TCP].sport == 5555), None)
    _step_until(host, lambda: answer() is not None)
    return answer()


@pytest.mark.timeout(120)
def test_stack_host_listens_through_the_dispatcher(nic):
    from hetnic.host.dispatcher import DispatchError
    from hetnic.host.stack.errors import AddressInUse
    from hetnic.host.stack_host import DEFAULT_MAC, StackHost
    from scapy.layers.l2 import ARP
    tap = FakeTap()
    host = StackHost(nic, tap, addr4=f"{H4}/24", seed=3)
    try:
        grants = {(g["proto"], g["port"]): (g["instance"], g["owners"])
                  for g in host.summary()["dispatcher"]["grants"]}
        assert grants == {("tcp", 7): ("low-delay", ["echo"]),
                          ("udp", 7): ("low-delay", ["echo"]),
                          ("tcp", 9): ("concurrency", ["discard"])}
        mac = ":".join(f"{b:02x}" for b in DEFAULT_MAC)
        tap.inbox.append(bytes(Ether(src=KMAC, dst="ff:ff:ff:ff:ff:ff")
                               / ARP(op=1, hwsrc=KMAC, psrc=K4, hwdst="00:00:00:00:00:00",
                                     pdst=H4)))
        _step_until(host, lambda: any(ARP in Ether(f) for f in tap.written))

        generation = nic.generation
        listener = host.listen("low-delay", 5555, owner="test-app")
        assert nic.generation == generation + 1
        assert listener.grant.instance == "low-delay" and listener.port == 5555
        row = next(r for r in host.port_map() if r["ports"] == 5555)
        assert row["instance"] == "low-delay" and row["app"] == "test-app"
        low, conc = host.stacks["low-delay"], host.stacks["concurrency"]
        before = (low.counters.tcp_in, conc.counters.tcp_in)
        answer = _syn_answer(host, tap, 40001)
        assert answer.flags == "SA"                             # the low-delay instance
        assert low.counters.tcp_in == before[0] + 1 and conc.counters.tcp_in == before[1]
        sock = listener.accept()
        assert sock is None                                     # not established yet

        # refusals: another class on a granted port; the instance's own port taken
        with pytest.raises(DispatchError, match="port in use: tcp/5555"):
            host.listen("throughput", 5555)
        with pytest.raises(AddressInUse):
            host.listen("low-delay", 7)                         # echo listens there
        refs = {(g["proto"], g["port"]): g["refs"] for g in host.dispatcher.dump()["grants"]}
        assert refs[("tcp", 7)] == 1 and refs[("tcp", 5555)] == 1

        listener.close()
        assert nic.generation == generation + 2 and listener.closed
        assert not any(r["ports"] == 5555 for r in host.port_map())
        answer = _syn_answer(host, tap, 40002)                  # now the default instance
        assert "R" in answer.flags
        assert conc.counters.tcp_in == before[1] + 1
        udp = host.listen("throughput", 5556, "udp")
        assert udp.grant.instance == "throughput" and udp.getsockname()[1] == 5556
        udp.close()
    finally:
        host.close()
    assert host.dispatcher.dump()["grants"] == []
    assert host.dispatcher.rules() == host.plan.rules


@pytest.mark.timeout(120)
def test_a_closed_listeners_accepted_connection_keeps_its_port(nic):
    """The port stays steered to the instance while a connection the listener accepted
    lives: its data reaches that instance (an ACK), not the default one (an RST); the rule
    goes once the connection is gone."""
    import time
    from hetnic.host.stack_host import DEFAULT_MAC, StackHost
    from scapy.layers.l2 import ARP
    tap = FakeTap()
    host = StackHost(nic, tap, addr4=f"{H4}/24", seed=3)
    try:
        mac = ":".join(f"{b:02x}" for b in DEFAULT_MAC)
        tap.inbox.append(bytes(Ether(src=KMAC, dst="ff:ff:ff:ff:ff:ff")
                               / ARP(op=1, hwsrc=KMAC, psrc=K4, hwdst="00:00:00:00:00:00",
                                     pdst=H4)))
        _step_until(host, lambda: any(ARP in Ether(f) for f in tap.written))
        listener = host.listen("low-delay", 5555, owner="t")
        synack = _syn_answer(host, tap, 40001)
        assert synack.flags == "SA"
        tap.inbox.append(bytes(Ether(src=KMAC, dst=mac) / IP(src=K4, dst=H4)
                               / TCP(sport=40001, dport=5555, flags="A", seq=1001,
                                     ack=synack.seq + 1)))
        accepted = []
        _step_until(host, lambda: accepted.append(listener.accept()) or accepted[-1])
        conn = accepted[-1]
        listener.close()
        assert any(r["ports"] == 5555 for r in host.port_map())     # held: a connection lives
        low, conc = host.stacks["low-delay"], host.stacks["concurrency"]
        before = (low.counters.tcp_in, conc.counters.tcp_in)
        tap.written.clear()
        tap.inbox.append(bytes(Ether(src=KMAC, dst=mac) / IP(src=K4, dst=H4)
                               / TCP(sport=40001, dport=5555, flags="PA", seq=1001,
                                     ack=synack.seq + 1) / b"hello"))

        def answer():
            return next((Ether(f)[TCP] for f in tap.written
                         if TCP in Ether(f) and Ether(f)[TCP].sport == 5555), None)
        _step_until(host, lambda: answer() is not None)
        assert "R" not in answer().flags and "A" in answer().flags
        assert low.counters.tcp_in == before[0] + 1 and conc.counters.tcp_in == before[1]
        conn.abort()                                # gone at once: the port is idle now
        end = time.monotonic() + 10
        while any(r["ports"] == 5555 for r in host.port_map()):
            assert time.monotonic() < end, "the idle port was never released"
            host.step(time.monotonic())
    finally:
        host.close()
    assert host.dispatcher.dump()["grants"] == []
