"""Links and the synchronous runner: PairLink, TapLink with the kernel, run_stacks."""

from __future__ import annotations

import json
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from hetnic.errors import HetnicError
from hetnic.host.faults import FaultInjector, FaultSpec
from hetnic.host.links import PairLink, TapLink
from hetnic.host.stack_runner import RunnerTimeout, run_stacks
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

OUR_MAC = "02:00:00:00:00:02"
OUR_IP4 = "198.18.0.2"
KERNEL_IP4 = "198.18.0.1"


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


# --- PairLink ---------------------------------------------------------------------------------

def test_pair_link_carries_frames_in_order_both_ways():
    a, b = PairLink.pair()
    arrivals = []
    b.on_arrival = lambda: arrivals.append(b.pending)
    a.send([b"one", b"two", b"three"])
    assert arrivals == [3]
    assert b.receive(2) == [b"one", b"two"] and b.receive() == [b"three"] and b.receive() == []
    b.send([b"back"])
    assert a.receive() == [b"back"]
    assert (a.frames_out, b.frames_in, b.frames_out, a.frames_in) == (3, 3, 1, 1)
    assert a.fileno() is None and a.next_deadline() is None


def test_pair_link_faults_and_held_frames():
    clock = FakeClock()
    hold = FaultInjector(FaultSpec(reorder=1.0, depth=100, hold=0.5, seed=1), "ab")
    a, b = PairLink.pair(hold, None, clock=clock)
    a.send([b"late"])
    assert b.receive() == [] and b.next_deadline() == pytest.approx(100.5)
    clock.t = 100.5
    assert b.receive() == [b"late"] and b.next_deadline() is None


# --- run_stacks -------------------------------------------------------------------------------

class PingStack:
    """Answers every frame it receives with the next number, up to ``last``."""

    def __init__(self, start: bool, last: int = 200):
        self.out = [b"0"] if start else []
        self.seen: list[int] = []
        self.last = last

    def receive(self, frame, now):
        n = int(frame)
        self.seen.append(n)
        if n < self.last:
            self.out.append(b"%d" % (n + 1))

    def poll(self, now):
        out, self.out = self.out, []
        return out

    def next_deadline(self):
        return None


class TimerStack:
    """Sends one frame at ``when`` (its only timer)."""

    def __init__(self, when: float):
        self.when = when
        self.sent_at = None

    def receive(self, frame, now):
        pass

    def poll(self, now):
        if self.sent_at is None and now >= self.when:
            self.sent_at = now
            return [b"1000"]
        return []

    def next_deadline(self):
        return None if self.sent_at is not None else self.when


def test_run_stacks_ping_pong():
    a, b = PairLink.pair()
    x, y = PingStack(True), PingStack(False)
    run_stacks([(x, a), (y, b)], until=lambda: 200 in y.seen or 200 in x.seen, timeout=10)
    assert y.seen == list(range(0, 201, 2)) and x.seen == list(range(1, 200, 2))


def test_run_stacks_waits_for_the_deadline():
    import time
    a, b = PairLink.pair()
    when = time.monotonic() + 0.05
    t, sink = TimerStack(when), PingStack(False, last=-1)
    run_stacks([(t, a), (sink, b)], until=lambda: sink.seen == [1000],
               timeout=10)
    assert t.sent_at >= when


def test_run_stacks_timeout_is_a_one_line_error():
    a, b = PairLink.pair()
    with pytest.raises(RunnerTimeout, match="within 0.05 s") as info:
        run_stacks([(PingStack(False), a)], until=lambda: False, timeout=0.05)
    assert isinstance(info.value, HetnicError) and isinstance(info.value, TimeoutError)


# --- TapLink with the kernel --------------------------------------------------------------------

class UdpEchoStack:
    """Reflects every UDP datagram to ``OUR_IP4`` (a stand-in for a stack)."""

    def __init__(self):
        self.out: list[bytes] = []
        self.echoed = 0

    def receive(self, frame, now):
        p = Ether(frame)
        if UDP in p and IP in p and p[IP].dst == OUR_IP4:
            self.out.append(bytes(Ether(src=OUR_MAC, dst=p.src)
                                  / IP(src=OUR_IP4, dst=p[IP].src)
                                  / UDP(sport=p[UDP].dport, dport=p[UDP].sport)
                                  / bytes(p[UDP].payload)))

    def poll(self, now):
        out, self.out = self.out, []
        self.echoed += len(out)
        return out

    def next_deadline(self):
        return None


@pytest.mark.parametrize("dup", [0.0, 1.0])
def test_tap_link_echo_through_run_stacks(dup):
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{KERNEL_IP4}/24", None) as tap:
        ns_run(ns, "ip", "neigh", "add", OUR_IP4, "lladdr", OUR_MAC, "dev", "tap0")
        faults = FaultInjector(FaultSpec(dup=dup, seed=2), "out") if dup else None
        link = TapLink(tap, faults_out=faults)
        assert link.fileno() == tap.fileno()
        with in_netns(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.bind((KERNEL_IP4, 0))
            s.setblocking(False)
            got: list[bytes] = []

            def done() -> bool:
                try:
                    while True:
                        got.append(s.recv(100))
                except BlockingIOError:
                    pass
                return len(got) >= 20 * (2 if dup else 1)

            stack = UdpEchoStack()
            for i in range(20):
                s.sendto(b"echo %d" % i, (OUR_IP4, 7))
            run_stacks([(stack, link)], until=done, timeout=10)
    expected = [b"echo %d" % i for i in range(20)]
    if dup:
        expected = [d for d in expected for _ in range(2)]
    assert got == expected
    assert link.frames_out == len(expected)
    if dup:
        assert faults.duplicated == 20


def test_run_stacks_without_timeout_stops_on_a_flag():
    import threading
    a, b = PairLink.pair()
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    turns = run_stacks([(PingStack(False), a)], until=stop.is_set, timeout=None)
    assert turns >= 1
    with pytest.raises(ValueError, match="positive number of seconds or None"):
        run_stacks([(PingStack(False), a)], until=stop.is_set, timeout=0)


class RecordingTap:
    """Stands in for a TapDevice: records writes, hands out queued frames."""

    def __init__(self, incoming=()):
        self.written: list[bytes] = []
        self.incoming = list(incoming)

    def write(self, frame):
        self.written.append(frame)

    def read_frames(self, max_frames=64):
        out, self.incoming = self.incoming[:max_frames], self.incoming[max_frames:]
        return out

    def fileno(self):
        return 99


def test_tap_link_holds_and_releases_in_both_directions():
    clock = FakeClock()
    hold = FaultSpec(reorder=1.0, depth=100, hold=0.25, seed=3)
    tap = RecordingTap([b"in-1", b"in-2"])
    link = TapLink(tap, faults_in=FaultInjector(hold, "in"), faults_out=FaultInjector(hold, "out"),
                   clock=clock)
    assert link.receive() == []
    link.send([b"out-1"])
    link.service()
    assert tap.written == [] and link.next_deadline() == pytest.approx(100.25)
    clock.t = 100.25
    link.service()
    assert tap.written == [b"out-1"]
    assert link.receive() == [b"in-1", b"in-2"]
    assert link.next_deadline() is None
    assert (link.frames_in, link.frames_out) == (2, 1)
