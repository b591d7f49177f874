"""NetInterface with the Linux kernel as the peer, over a TAP device in a namespace of its own:
ARP and neighbour discovery both ways, ICMP echo v4/v6 from the kernel, fragments both ways,
and a port unreachable the kernel maps to ECONNREFUSED."""

from __future__ import annotations

import select
import socket
import struct
import time

import pytest

from hetnic.host.stack.address import to_addr as packed
from hetnic.host.stack.checksum import checksum, pseudo_sum
from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.interface import NetInterface
from hetnic.host.stack.udp import UdpLayer
from hetnic.protocol import IpProto
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

OUR_MAC = "02:00:00:00:00:02"
OUR4, OUR6 = "198.18.0.2", "2001:db8::2"
KERNEL4, KERNEL6 = "198.18.0.1", "2001:db8::1"
TIMEOUT = 10.0


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    length = 8 + len(data)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    cs = checksum(header + data, pseudo_sum(src, dst, IpProto.UDP, length)) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, cs) + data


class Harness:
    """The interface on the TAP, pumped by hand: frames both ways and its timers."""

    def __init__(self, ns, tap):
        self.ns = ns
        self.tap = tap
        self.counters = StackCounters()
        self.iface = NetInterface(bytes.fromhex(OUR_MAC.replace(":", "")),
                                  [(packed(OUR4), 24)], [(packed(OUR6), 64)], self.counters)
        self.received: list[tuple[bytes, bytes, bytes]] = []
        self.iface.transports[IpProto.UDP] = self._udp

    def _udp(self, src, dst, payload, now):
        self.received.append((src, dst, bytes(payload)))

    def flush(self):
        for frame in self.iface.out:
            self.tap.write(frame)
        self.iface.out.clear()

    def pump(self, until, timeout: float = TIMEOUT, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            if until():
                return
            now = time.monotonic()
            if now > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what or until}; "
                            f"counters {self.counters}")
            select.select([self.tap], [], [], 0.02)
            now = time.monotonic()
            for frame in self.tap.read_frames(64):
                self.iface.receive(frame, now)
            due = self.iface.next_deadline()
            if due is not None and due <= now:
                self.iface.poll(now)

    def socket(self, family, kind, proto=0):
        with in_netns(self.ns):
            sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        return sock


@pytest.fixture
def harness():
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{KERNEL4}/24", f"{KERNEL6}/64") as tap:
        yield Harness(ns, tap)


def _recv(sock, size=65536):
    try:
        return sock.recv(size)
    except BlockingIOError:
        return None


@pytest.mark.parametrize("version", [4, 6])
def test_kernel_pings_us(harness, version):
    """The kernel resolves us (ARP / NS) and our echo reply carries its id, seq and data."""
    if version == 4:
        sock = harness.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack("!HH", 0x4242, 7) + b"hetnic ping"
        message = struct.pack("!BBH", 8, 0, 0) + body
        message = message[:2] + checksum(message).to_bytes(2, "big") + message[4:]
        sock.sendto(message, (OUR4, 0))
    else:
        sock = harness.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        body = struct.pack("!HH", 0x4242, 7) + b"hetnic ping"
        sock.sendto(struct.pack("!BBH", 128, 0, 0) + body, (OUR6, 0))
    replies = []

    def got_reply():
        while (data := _recv(sock)) is not None:
            if version == 4:
                data = data[(data[0] & 15) * 4:]
            if data[0] == (0 if version == 4 else 129) and data[4:] == body:
                replies.append(data)
        return bool(replies)

    with sock:
        harness.pump(got_reply, what="the echo reply")
    neigh = ns_run(harness.ns, "ip", f"-{version}", "neigh", "show", "dev", "tap0").stdout
    assert OUR_MAC in neigh
    # The echo reply, and for IPv6 the advertisement(s) answering the kernel's solicitation.
    assert harness.counters.icmp_out >= 1 and harness.counters.arp_out == (version == 4)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("size", [100, 5000])
def test_we_resolve_the_kernel_and_fragments_reach_it(harness, version, size):
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    kernel, us = (KERNEL4, OUR4) if version == 4 else (KERNEL6, OUR6)
    sock = harness.socket(family, socket.SOCK_DGRAM)
    sock.bind((kernel, 5000))
    data = bytes(range(256)) * (size // 256) + b"!" * (size % 256)
    harness.iface.send_ip(packed(us), packed(kernel), IpProto.UDP,
                          udp(packed(us), packed(kernel), 4000, 5000, data), time.monotonic())
    got = []
    with sock:
        harness.pump(lambda: got.append(_recv(sock)) or got[-1] is not None,
                     what="the datagram at the kernel")
    assert got[-1] == data
    assert harness.iface.neighbours.mac(packed(kernel)) is not None
    assert set(harness.counters.drops) <= {"eth_not_ours"}     # the kernel's MLD reports


@pytest.mark.parametrize("version", [4, 6])
def test_kernel_fragments_are_reassembled(harness, version):
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    us = OUR4 if version == 4 else OUR6
    sock = harness.socket(family, socket.SOCK_DGRAM)
    data = bytes(range(251)) * 24
    with sock:
        sock.sendto(data, (us, 6000))
        harness.pump(lambda: bool(harness.received), what="the reassembled datagram")
    (src, dst, payload) = harness.received[0]
    assert dst == packed(us) and payload[8:] == data
    assert struct.unpack("!H", payload[2:4])[0] == 6000


@pytest.mark.parametrize("version", [4, 6])
def test_port_unreachable_refuses_the_kernels_socket(harness, version):
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    us = OUR4 if version == 4 else OUR6
    iface = harness.iface
    # The stack's own UDP layer with no socket bound: its no-socket path answers.
    layer = UdpLayer(iface, PROFILES["low-delay"], harness.counters, 0)
    iface.transports[IpProto.UDP] = layer.input
    sock = harness.socket(family, socket.SOCK_DGRAM)
    refused = []

    def was_refused():
        try:
            sock.recv(100)
        except BlockingIOError:
            return False
        except ConnectionRefusedError:
            refused.append(True)
        return bool(refused)

    with sock:
        sock.connect((us, 7777))
        sock.send(b"anyone?")
        harness.pump(was_refused, what="ECONNREFUSED")
    assert harness.counters.drops["udp_no_socket"] >= 1
