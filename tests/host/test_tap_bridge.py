"""The TAP bridge with the simulated NIC and the kernel in a namespace: kernel -> TAP -> NIC RX
queues, and NIC TX queue -> TAP -> kernel, with and without faults."""

from __future__ import annotations

import json
import socket
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from hetnic.host.faults import FaultInjector, FaultSpec
from hetnic.host.links import NicQueueLink
from hetnic.host.nic import Nic
from hetnic.host.tap_bridge import TapBridge
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

OUR_MAC = "02:00:00:00:00:02"
OUR_IP4 = "198.18.0.2"
KERNEL_IP4 = "198.18.0.1"
PORT = 4242
TIMEOUT = 30.0


@pytest.fixture
def setup():
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{KERNEL_IP4}/24", None) as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        ns_run(ns, "ip", "neigh", "add", OUR_IP4, "lladdr", OUR_MAC, "dev", "tap0")
        kmac = json.loads(ns_run(ns, "ip", "-j", "link", "show", "tap0").stdout)[0]["address"]
        yield ns, tap, nic, kmac


def udp_payloads(frames: list[bytes]) -> list[bytes]:
    out = []
    for f in frames:
        p = Ether(f)
        if UDP in p and p[UDP].dport == PORT:
            out.append(bytes(p[UDP].payload))
    return out


def collect_from_nic(bridge: TapBridge, link: NicQueueLink, want: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < want and time.monotonic() < deadline:
        bridge.pump()
        got += udp_payloads(link.receive(256))
        if not bridge.busy:
            time.sleep(0.001)
    return got


def test_kernel_to_nic_rx_queues(setup):
    ns, tap, nic, _ = setup
    bridge = TapBridge(nic, tap)
    link = NicQueueLink(nic, range(8), 0)
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        sent = [f"datagram {i}".encode() for i in range(200)]
        for d in sent:
            s.sendto(d, (OUR_IP4, PORT))
        got = collect_from_nic(bridge, link, len(sent))
    assert sorted(got) == sorted(sent)
    assert bridge.frames_to_nic >= len(sent) and bridge.cycles > 0
    assert not bridge.busy


def test_nic_tx_queue_to_kernel(setup):
    ns, tap, nic, kmac = setup
    bridge = TapBridge(nic, tap)
    link = NicQueueLink(nic, [0], 1)
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind((KERNEL_IP4, PORT))
        s.setblocking(False)
        sent = [f"to the kernel {i}".encode() for i in range(150)]
        frames = [bytes(Ether(src=OUR_MAC, dst=kmac) / IP(src=OUR_IP4, dst=KERNEL_IP4)
                        / UDP(sport=999, dport=PORT) / d) for d in sent]
        link.send(frames)                   # three BATCH work items (64 + 64 + 22)
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < len(sent) and time.monotonic() < deadline:
            bridge.pump()
            link.service()
            try:
                while True:
                    got.append(s.recv(2048))
            except BlockingIOError:
                pass
    assert got == sent                      # one TX queue keeps the order
    assert bridge.frames_to_tap == len(sent)
    assert bridge.bytes_to_tap == sum(map(len, frames))
    assert link.tx_errors == 0 and link.frames_out == len(sent)


def test_faults_on_both_directions(setup):
    ns, tap, nic, kmac = setup
    seed = 11
    print(f"seed={seed}")
    to_nic = FaultInjector(FaultSpec(loss=0.25, seed=seed), "in")
    to_tap = FaultInjector(FaultSpec(dup=1.0, seed=seed), "out")
    bridge = TapBridge(nic, tap, faults_to_nic=to_nic, faults_to_tap=to_tap)
    link = NicQueueLink(nic, range(8), 2)
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind((KERNEL_IP4, PORT))
        s.setblocking(False)
        for i in range(400):
            s.sendto(b"in %d" % i, (OUR_IP4, PORT))
        # Lost frames never arrive: wait until the kernel's frames are all through the bridge.
        deadline = time.monotonic() + TIMEOUT
        got: list[bytes] = []
        while time.monotonic() < deadline:
            bridge.pump()
            got += udp_payloads(link.receive(256))
            if to_nic.frames_in >= 400 and not bridge.busy:
                break
        got += udp_payloads(link.receive(256))
        assert 400 - len(got) <= to_nic.lost <= to_nic.frames_in - len(got)
        assert 40 <= to_nic.lost <= 170            # 25 % of 400, far outside any bound
        assert len(set(got)) == len(got)

        link.send([bytes(Ether(src=OUR_MAC, dst=kmac) / IP(src=OUR_IP4, dst=KERNEL_IP4)
                         / UDP(sport=999, dport=PORT) / b"out")])
        echoes = []
        deadline = time.monotonic() + TIMEOUT
        while len(echoes) < 2 and time.monotonic() < deadline:
            bridge.pump()
            try:
                echoes.append(s.recv(100))
            except BlockingIOError:
                pass
    assert echoes == [b"out", b"out"]               # duplicated on the way to the kernel
    counters = bridge.counters()
    assert counters["faults_to_tap"]["duplicated"] >= 1
    assert counters["faults_to_nic"]["lost"] == to_nic.lost


def test_link_arguments_are_checked(setup):
    _, _, nic, _ = setup
    from hetnic.host.links import LinkError
    with pytest.raises(LinkError, match="RX queue must be from 0 to 7, not 8"):
        NicQueueLink(nic, [8], 0)
    with pytest.raises(LinkError, match="TX queue must be from 0 to 3, not 4"):
        NicQueueLink(nic, [0], 4)
    with pytest.raises(LinkError, match="at least one RX queue"):
        NicQueueLink(nic, [], 0)


# --- the whole path: kernel TCP <-> TAP <-> bridge <-> sim NIC <-> NicQueueLink <-> Stack ---------

def tcp_through_the_nic(ns, tap, nic, size: int, seed: int, faults: str | None = None):
    import hashlib
    import random

    from hetnic.host.faults import parse_faults
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack.stack import Stack
    from hetnic.host.stack_runner import run_stacks

    plan = parse_faults(faults or "")
    bridge = TapBridge(nic, tap, faults_to_nic=plan.injector("in"),
                       faults_to_tap=plan.injector("out"))
    link = NicQueueLink(nic, range(8), 0)
    stack = Stack(PROFILES["throughput"], mac=OUR_MAC, ipv4=[(OUR_IP4, 24)], seed=seed)
    listener = stack.listen(5000)
    with in_netns(ns):
        k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with k:
        k.setblocking(False)
        k.connect_ex((OUR_IP4, 5000))
        accepted = []

        def have_connection() -> bool:
            s = listener.accept()
            if s is not None:
                accepted.append(s)
            return bool(accepted)

        loop = dict(until=have_connection, timeout=TIMEOUT, extra_pump=bridge)
        run_stacks([(stack, link)], **loop)
        s = accepted[0]
        data = random.Random(seed).randbytes(size)
        up, down = bytearray(), bytearray()
        sent = {"k": 0, "s": 0}

        def both_ways() -> bool:
            if sent["k"] < size:
                try:
                    sent["k"] += k.send(data[sent["k"]:sent["k"] + 65536])
                except BlockingIOError:
                    pass
            if sent["s"] < size:
                sent["s"] += s.send(data[sent["s"]:sent["s"] + 65536])
            while r := s.recv():
                up.extend(r)
            try:
                while r := k.recv(65536):
                    down.extend(r)
            except BlockingIOError:
                pass
            return len(up) == size and len(down) == size

        loop["until"] = both_ways
        run_stacks([(stack, link)], **loop)
    digest = hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(up).hexdigest() == digest
    assert hashlib.sha256(down).hexdigest() == digest
    return stack, bridge


def test_kernel_tcp_through_the_simulated_nic(setup):
    ns, tap, nic, _ = setup
    stack, bridge = tcp_through_the_nic(ns, tap, nic, 512 << 10, seed=3)
    assert stack.counters.tcp_in > 300 and bridge.frames_to_nic == stack.counters.frames_in


def test_kernel_tcp_through_the_simulated_nic_with_faults(setup):
    ns, tap, nic, _ = setup
    seed = 4
    print(f"seed={seed}")
    stack, bridge = tcp_through_the_nic(ns, tap, nic, 256 << 10, seed=seed,
                                        faults=f"loss=2%,reorder=2%,dup=1%,seed={seed}")
    c = bridge.counters()
    assert c["faults_to_nic"]["lost"] and c["faults_to_tap"]["lost"]
    assert stack.counters.tcp_retransmits + stack.counters.tcp_fast_retransmits > 0


def test_stream_server_behind_the_simulated_nic_on_asyncio(setup):
    """The asyncio driver with the bridge as its pump: the TAP's descriptor wakes it, the NIC
    queues are not polled."""
    import asyncio

    from hetnic.host.async_driver import AsyncStackDriver
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack.stack import Stack

    ns, tap, nic, _ = setup
    data = bytes(range(256)) * 256

    async def main():
        stack = Stack(PROFILES["low-delay"], mac=OUR_MAC, ipv4=[(OUR_IP4, 24)])
        bridge = TapBridge(nic, tap)
        driver = AsyncStackDriver(stack, NicQueueLink(nic, range(8), 3), extra_pump=bridge)

        async def echo(reader, writer):
            writer.write(await reader.readexactly(len(data)))
            await writer.drain()
            writer.close()

        loop = asyncio.get_running_loop()
        async with driver:
            assert not driver._pairs[0].polled
            await driver.start_server(echo, 7)
            with in_netns(ns):
                k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with k:
                k.setblocking(False)
                await loop.sock_connect(k, (OUR_IP4, 7))
                await loop.sock_sendall(k, data)
                got = bytearray()
                while chunk := await loop.sock_recv(k, 65536):
                    got += chunk
        return bytes(got), bridge

    got, bridge = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert got == data
    assert bridge.frames_to_nic > 0 and bridge.frames_to_tap > 0
