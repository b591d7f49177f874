"""TapDevice against the Linux kernel, in a namespace of its own."""

from __future__ import annotations

import json
import select
import socket
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from hetnic.errors import HetnicError
from hetnic.host.tap import TapDevice, TapError
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

OUR_MAC = "02:00:00:00:00:02"
OUR_IP4 = "198.18.0.2"
OUR_IP6 = "2001:db8::2"
KERNEL_IP4 = "198.18.0.1"
KERNEL_IP6 = "2001:db8::1"


def kernel_mac(ns: str, ifname: str) -> str:
    info = json.loads(ns_run(ns, "ip", "-j", "link", "show", ifname).stdout)
    return info[0]["address"]


def wait_frames(tap: TapDevice, match, timeout: float = 5.0) -> bytes:
    """The first frame from ``tap`` that ``match`` accepts, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([tap], [], [], 0.1)
        for frame in tap.read_frames(64):
            if match(frame):
                return frame
    pytest.fail(f"no matching frame on {tap.name} within {timeout} s")


@pytest.fixture
def ns_tap():
    require_netns()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{KERNEL_IP4}/24", f"{KERNEL_IP6}/64") as tap:
        yield ns, tap


def test_kernel_udp_appears_on_tap(ns_tap):
    ns, tap = ns_tap
    ns_run(ns, "ip", "neigh", "add", OUR_IP4, "lladdr", OUR_MAC, "dev", "tap0")
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.sendto(b"hello tap", (OUR_IP4, 4242))

        def is_ours(frame: bytes) -> bool:
            p = Ether(frame)
            return UDP in p and p[UDP].dport == 4242

        p = Ether(wait_frames(tap, is_ours))
    assert p.dst == OUR_MAC and p.src == kernel_mac(ns, "tap0")
    assert p[IP].src == KERNEL_IP4 and p[IP].dst == OUR_IP4
    assert bytes(p[UDP].payload) == b"hello tap"
    assert tap.frames_in >= 1 and tap.bytes_in >= len(p)


def test_kernel_arp_request_appears_on_tap(ns_tap):
    ns, tap = ns_tap
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.sendto(b"x", (OUR_IP4, 4242))     # no neighbour entry: the kernel asks first
        p = Ether(wait_frames(tap, lambda f: ARP in Ether(f)))
    assert p.dst == "ff:ff:ff:ff:ff:ff"
    assert p[ARP].op == 1 and p[ARP].pdst == OUR_IP4 and p[ARP].psrc == KERNEL_IP4


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_frame_written_to_tap_reaches_kernel_socket(ns_tap, family):
    ns, tap = ns_tap
    kmac = kernel_mac(ns, "tap0")
    if family == "ipv4":
        af, ip, bind = socket.AF_INET, IP(src=OUR_IP4, dst=KERNEL_IP4), KERNEL_IP4
    else:
        af, ip, bind = socket.AF_INET6, IPv6(src=OUR_IP6, dst=KERNEL_IP6), KERNEL_IP6
    with in_netns(ns):
        s = socket.socket(af, socket.SOCK_DGRAM)
    with s:
        s.bind((bind, 5555))
        s.settimeout(5.0)
        frame = bytes(Ether(src=OUR_MAC, dst=kmac) / ip / UDP(sport=1234, dport=5555)
                      / b"from the tap")
        tap.write(frame)
        data, addr = s.recvfrom(100)
    assert data == b"from the tap"
    assert addr[0] == (OUR_IP4 if family == "ipv4" else OUR_IP6) and addr[1] == 1234
    assert tap.frames_out == 1 and tap.bytes_out == len(frame)


def test_missing_interface_is_a_one_line_error():
    require_netns()
    with netns() as ns, in_netns(ns):
        with pytest.raises(TapError, match="no interface 'nosuch0'") as info:
            TapDevice("nosuch0")
    assert isinstance(info.value, HetnicError) and "\n" not in str(info.value)


def test_misuse_is_a_one_line_error(ns_tap):
    _, tap = ns_tap
    with pytest.raises(TapError, match="at least 14 bytes"):
        tap.write(b"\x00" * 13)
    with pytest.raises(TapError, match="1 to 15 bytes"):
        TapDevice("x" * 16)
    assert tap.read_frames(0) == []
    tap.close()
    assert tap.closed
    with pytest.raises(TapError, match="closed"):
        tap.read_frames()
    with pytest.raises(TapError, match="closed"):
        tap.fileno()
