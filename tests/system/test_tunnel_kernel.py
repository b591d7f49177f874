"""The tunnel adapter against the kernel's VXLAN and VXLAN-GPE: the kernel in a namespace
with VXLAN devices (VNIs 10 and 14 over IPv4 from two kernel addresses, VNI 11 over IPv6)
and a VXLAN-GPE device (VNI 12, lightweight-tunnel route), the simulated NIC and a
StackHost with the four tunnels on the other side of a TAP. Ping and TCP echo through every
tunnel at once, byte-exact; AF_PACKET captures on each kernel tunnel device see only that
tunnel's inner addresses; the counters agree; bad inputs are counted drops."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from kit.netns_exec import ECHO_THROUGH, run_in_netns

pytestmark = pytest.mark.timeout(240)

K4, H4, K4B, K6, H6 = "198.18.0.1", "198.18.0.2", "198.18.0.3", "2001:db8::1", "2001:db8::2"
#: (kernel device, kind, VNI, kernel outer address, inner prefix base)
TUNNELS = [("vx10", "vxlan", 10, K4, "198.19.1"), ("vx11", "vxlan", 11, K6, "198.19.2"),
           ("gpe0", "vxlan-gpe", 12, K4, "198.19.3"), ("vx14", "vxlan", 14, K4B, "198.19.4")]


def _kernel_tunnels(ns):
    from kit.netns import ns_run
    from hetnic.host.tunnel_kernel import add_kernel_tunnels
    ns_run(ns, "ip", "addr", "add", f"{K4B}/24", "dev", "tap0")
    add_kernel_tunnels(ns, _kernel())


def _kernel():
    from hetnic.host.tunnel_kernel import KernelTunnel
    return [KernelTunnel(dev, kind, vni, local, H6 if ":" in local else H4, base)
            for dev, kind, vni, local, base in TUNNELS]


def _specs():
    return [t.spec() for t in _kernel()]


@pytest.fixture(scope="module")
def tunnel_peer():
    from kit.netns import netns, require_netns, tap_in_netns
    from hetnic.host.nic import Nic
    from hetnic.host.stack_host import StackHost
    require_netns()
    with netns("hn-tunnels") as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        _kernel_tunnels(ns)
        host = StackHost(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", seed=5,
                         tunnels=_specs())
        try:
            yield ns, host
        finally:
            host.close()


PEER_SCRIPT = ECHO_THROUGH + """
import ipaddress, json, os, random, socket, struct, subprocess, threading, time
TUNNELS = {tunnels!r}
SIZE = {size}
caught = {{dev: [] for dev, *_ in TUNNELS}}
stop = threading.Event()

def capture(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((dev, 0))
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        caught[dev].append((addr[3], data))    # hatype: 1 Ethernet, else L3 (no header)

def echo(base, out, index):
    rnd = random.Random(index)
    data = rnd.randbytes(SIZE)
    c = socket.create_connection((base + ".2", 7), timeout=60)
    got = echo_through(c, data)
    c.close()
    out[index] = got == data

caps = [threading.Thread(target=capture, args=(dev,), daemon=True) for dev, *_ in TUNNELS]
for t in caps:
    t.start()
time.sleep(0.3)
def csum(data):
    if len(data) % 2:
        data += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def ping(base, index, replies):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(5)
    target = base + ".2"
    for seq in range(3):
        body = struct.pack("!HH", 0x4800 + index, seq) + b"hetnic-tunnel" * 4
        msg = struct.pack("!BBH", 8, 0, 0) + body
        msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
        s.sendto(msg, (target, 0))
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                break
            ihl = (data[0] & 15) * 4
            if addr[0] == target and data[ihl] == 0 and data[ihl + 4:] == body:
                replies[index] = replies.get(index, 0) + 1
                break
    s.close()

replies = {{}}
pings = [threading.Thread(target=ping, args=(base, i, replies))
         for i, (dev, kind, vni, local, base) in enumerate(TUNNELS)]
for p in pings:
    p.start()
out = {{}}
workers = [threading.Thread(target=echo, args=(base, out, i))
           for i, (dev, kind, vni, local, base) in enumerate(TUNNELS)]
for w in workers:
    w.start()
for w in workers:
    w.join(120)
for p in pings:
    p.join(60)
codes = [replies.get(i, 0) for i in range(len(TUNNELS))]
time.sleep(0.3)
stop.set()
for t in caps:
    t.join(2)
leaks = 0
for dev, kind, vni, local, base in TUNNELS:
    net = ipaddress.ip_network(base + ".0/24")
    for hatype, data in caught[dev]:
        ip = data[14:] if hatype == 1 else data
        if hatype == 1 and data[12:14] == b"\\x08\\x06":
            addrs = [data[28:32], data[38:42]]
        elif ip[:1] and ip[0] >> 4 == 4:
            addrs = [ip[12:16], ip[16:20]]
        else:
            continue
        if not all(ipaddress.ip_address(a) in net for a in addrs):
            leaks += 1
print(json.dumps([codes, [out.get(i) for i in range(len(TUNNELS))], leaks,
                  [len(caught[dev]) for dev, *_ in TUNNELS]]))
"""


def test_ping_and_tcp_through_every_tunnel_at_once(tunnel_peer):
    ns, host = tunnel_peer
    out = run_in_netns(ns, host, PEER_SCRIPT.format(tunnels=TUNNELS, size=300_000), 120)
    codes, ok, leaks, seen = json.loads(out.strip().splitlines()[-1])
    assert codes == [3] * len(TUNNELS), out
    assert ok == [True] * len(TUNNELS), out
    assert leaks == 0 and all(n > 20 for n in seen), out
    stats = host.adapter.tunnel_stats()
    assert stats["drops"] == {}
    for name, row in stats["tunnels"].items():
        assert row["packets_in"] > 20 and row["packets_out"] > 20, (name, row)
        assert row["drops"] == {}, (name, row)
        assert row["bytes_in"] >= 300_000
    # the tunnels' outer traffic reached the tunnel instance only (the classifier rules)
    for name, stack in host.stacks.items():
        if name != "tunnel":
            assert stack.counters.drops.get("udp_no_socket", 0) == 0


@pytest.mark.slow
def test_process_mode_adapter_runs_unprivileged(tmp_path):
    """``hetnic stack up``'s default mode: the adapter's process drops to ``nobody`` after
    mapping its queues (uid not 0, no capability, no_new_privs set), and still carries TCP and
    ping through the tunnels; the segments it maps stay root's, mode 0600 (no other process of
    that user can map them)."""
    import os
    import stat
    from kit.netns import netns, require_netns, tap_in_netns
    from hetnic.host.nic import Nic
    from hetnic.host.stack_procs import StackProcs
    from hetnic.host.tunnel_privs import process_identity, resolve_user
    require_netns()
    uid, _ = resolve_user("nobody")
    with netns("hn-tunnels") as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8, shared=True) as nic:
        _kernel_tunnels(ns)
        host = StackProcs(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", seed=5,
                          tunnels=_specs(), tunnel_user="nobody")
        try:
            pid = host.pids["tunnel"]
            identity = process_identity(pid)
            assert identity == {"uid": uid, "cap_eff": 0, "no_new_privs": 1}
            for name in (nic.shared.memory, nic.shared.doorbells, host._segment.name):
                info = os.stat(f"/dev/shm/{name}")
                assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o600
            out = run_in_netns(ns, host, PEER_SCRIPT.format(tunnels=TUNNELS, size=100_000), 120)
            codes, ok, leaks, seen = json.loads(out.strip().splitlines()[-1])
            assert codes == [3] * len(TUNNELS) and ok == [True] * len(TUNNELS), out
            assert leaks == 0
            summary = host.summary()["instances"]["tunnel"]
            assert summary["identity"] == {"uid": uid, "cap_eff": 0, "no_new_privs": 1}
            for name, row in summary["tunnels"]["tunnels"].items():
                assert row["packets_in"] > 10 and row["drops"] == {}, (name, row)
        finally:
            host.close()


BAD_SCRIPT = r"""
import errno, json, socket, struct, subprocess, time
out = {}
# truncated inner frame: a VXLAN header for VNI 10 and 10 bytes, from the kernel's address
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 0))
s.sendto(struct.pack("!B3xI", 8, 10 << 8) + b"0123456789", ("198.18.0.2", 4789))
# a bad VXLAN header (I flag clear) and a truncated one
s.sendto(struct.pack("!B3xI", 0, 10 << 8) + b"x" * 60, ("198.18.0.2", 4789))
s.sendto(b"\x08\0\0", ("198.18.0.2", 4789))
# unknown VNI: the kernel's vx99 (VNI 99) tries to reach its peer (ARP over VNI 99)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"hello", ("198.19.9.2", 9))
# wrong outer port: the kernel's vx98 sends to UDP 4788
u.sendto(b"hello", ("198.19.8.2", 9))
# no route: the adapter has no tunnel for 198.19.99.0/24 in vx10's domain
n = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n.setsockopt(socket.IPPROTO_IP, 11, 1)           # IP_RECVERR: net unreachable is soft
n.connect(("198.19.99.5", 9))
n.settimeout(3)
n.send(b"x")
try:
    n.recv(10)
    out["no_route"] = "answer"
except OSError as exc:
    out["no_route"] = errno.errorcode.get(exc.errno, str(exc))
# MTU: a DF datagram of vx10's MTU to a host behind vx11 (MTU 1430 at the adapter)
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m.setsockopt(socket.IPPROTO_IP, 10, 2)           # IP_MTU_DISCOVER = IP_PMTUDISC_DO
m.connect(("198.19.2.77", 9))
m.send(b"y" * (1450 - 28))
time.sleep(1.0)
try:
    m.send(b"y" * (1450 - 28))
    out["mtu_send"] = "sent"
except OSError as exc:
    out["mtu_send"] = errno.errorcode.get(exc.errno, str(exc))
out["path_mtu"] = m.getsockopt(socket.IPPROTO_IP, 14)  # IP_MTU
time.sleep(1.5)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_bad_inputs_are_counted_drops_and_icmp(tmp_path):
    """Unknown VNI, wrong outer port, truncated / bad headers, no route and an MTU overrun
    from the kernel's side: counted drops (at the adapter for every datagram from a tunnel's
    remote to its port, an unknown VNI too), ICMP net unreachable and fragmentation needed
    (the kernel learns the path MTU), nothing else disturbed; TCP still works after."""
    from kit.netns import netns, ns_run, require_netns, tap_in_netns
    from hetnic.host.nic import Nic
    from hetnic.host.stack.tunnel import TunnelSpec
    from hetnic.host.stack_host import StackHost
    from hetnic.host.tunnel_kernel import KernelTunnel, add_kernel_tunnels
    require_netns()
    with netns("hn-tunnels") as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        add_kernel_tunnels(ns, [KernelTunnel("vx10", "vxlan", 10, K4, H4, "198.19.1"),
                                KernelTunnel("vx11", "vxlan", 11, K6, H6, "198.19.2"),
                                KernelTunnel("vx99", "vxlan", 99, K4, H4, "198.19.9")])
        ns_run(ns, "ip", "link", "add", "vx98", "type", "vxlan", "id", "10", "local", K4,
               "remote", H4, "dstport", "4788")
        ns_run(ns, "ip", "addr", "add", "198.19.8.1/24", "dev", "vx98")
        ns_run(ns, "ip", "link", "set", "vx98", "up")
        ns_run(ns, "ip", "route", "add", "198.19.99.0/24", "via", "198.19.1.2", "dev", "vx10")
        ns_run(ns, "ip", "route", "add", "198.19.2.77/32", "via", "198.19.1.2", "dev", "vx10")
        specs = [TunnelSpec("vxlan", 10, K4, "198.19.1.2/24", "d"),
                 TunnelSpec("vxlan", 11, K6, "198.19.2.2/24", "d")]
        host = StackHost(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", seed=5, tunnels=specs)
        try:
            out = json.loads(run_in_netns(ns, host, BAD_SCRIPT, 120).strip().splitlines()[-1])
            stats = host.adapter.tunnel_stats()
            vx10, vx11 = (stats["tunnels"][s.name] for s in specs)
            assert out["no_route"] == "ENETUNREACH", out
            assert out["mtu_send"] == "EMSGSIZE" and out["path_mtu"] == 1430, out
            # Every bad datagram from the remote to port 4789 reaches the adapter (the
            # per-remote catch-all rule after the VNI rules): counted drops there.
            assert vx10["drops"].get("truncated") == 2, vx10
            assert vx10["drops"].get("bad_header") == 1, vx10
            assert vx10["drops"].get("unknown_vni", 0) >= 1, vx10
            assert vx10["drops"].get("no_route") == 1, vx10
            assert vx11["drops"] == {"mtu": 1}, vx11
            assert stats["drops"] == {}
            # the datagram to port 4788 went to another instance (no rule steers it to the
            # adapter), which has no socket there
            others = sum(s.counters.udp_in for n, s in host.stacks.items() if n != "tunnel")
            assert others >= 1
            # and the tunnels still carry TCP, byte-exact
            again = run_in_netns(ns, host, PEER_SCRIPT.format(
                tunnels=[("vx10", "vxlan", 10, K4, "198.19.1"),
                         ("vx11", "vxlan", 11, K6, "198.19.2")], size=50_000), 120)
            codes, ok, leaks, _ = json.loads(again.strip().splitlines()[-1])
            assert ok == [True, True] and leaks == 0, again
        finally:
            host.close()


CLI_CLIENT = r"""
import socket, time
for attempt in range(200):
    try:
        c = socket.create_connection(("198.19.3.2", 7), timeout=2)
        break
    except OSError:
        time.sleep(0.1)
data = bytes(range(256)) * 64
c.sendall(data)
got = b""
while len(got) < len(data):
    chunk = c.recv(65536)
    if not chunk:
        break
    got += chunk
c.close()
print(got == data)
"""


@pytest.mark.slow
def test_cli_stack_up_with_tunnels():
    """``hetnic stack up --tunnel ... --tunnel vxlan-gpe,...``: echo answers on a tunnel's
    inner address; the summary has each tunnel's counters and the routes; a bad --tunnel is
    a one-line error (exit 2)."""
    from kit.netns import netns, require_netns, tap_in_netns
    require_netns()
    bad = subprocess.run([sys.executable, "-m", "hetnic", "stack", "up", "--tap", "x",
                          "--addr", "198.18.0.2/24", "--tunnel", "vxlan,vni=1,remote=nowhere,"
                          "addr=198.19.1.2/24"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "remote must be" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    with netns("hn-tunnels") as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64",
                                                  open_device=False):
        _kernel_tunnels(ns)
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "hetnic", "stack", "up",
                "--tap", "tap0", "--addr", f"{H4}/24", "--addr6", f"{H6}/64", "--no-live",
                "--duration", "12"]
        for t in _specs():
            argv += ["--tunnel", f"{t.kind},vni={t.vni},remote={t.remote},addr={t.addr}"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            client = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                     CLI_CLIENT], capture_output=True, text=True, timeout=120)
            assert client.stdout.strip() == "True", client.stderr
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "tunnel vxlan-gpe:12@198.18.0.1 addr 198.19.3.2/24" in out
        assert "routes: [#0] 198.19.1.0/24 -> vxlan:10@198.18.0.1" in out
        assert re.search(r"udp dst port 4790 +tunnel ", out), out
