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
from kit.netns_exec import run_in_netns
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
    ([_inst("a", (1,), 4, (20000, 20001))], HIL_NIC_CORE, "TX queue 4"),
    ([_inst(f"i{k}", (0,), 0, (20000 + k, 20000 + k)) for k in range(12)], HIL_NIC_CORE,
     "classifier rules"),
])
def test_plan_refuses(instances, params, message):
    with pytest.raises(SteeringError, match=message):
        plan_steering(instances, params, rx_queues=8, tx_queues=4)


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


# --- the whole host, the kernel in a namespace as the peer -------------------------------------

K4, H4, K6, H6 = "198.18.0.1", "198.18.0.2", "2001:db8::1", "2001:db8::2"


@pytest.fixture(scope="module")
def kernel_peer(tmp_path_factory):
    """A namespace with a TAP (the kernel at .1 and ::1), the simulated NIC and a StackHost
    (at .2 and ::2) serving a folder; yields (namespace, host, folder)."""
    from kit.netns import netns, require_netns, tap_in_netns
    from hetnic.host.nic import Nic
    from hetnic.host.stack_host import StackHost
    require_netns()
    www = tmp_path_factory.mktemp("www")
    (www / "index.html").write_bytes(b"<h1>hetnic</h1>\n")
    (www / "one.bin").write_bytes(random.Random(3).randbytes(1 << 20))
    with netns() as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        host = StackHost(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", serve_dir=www, seed=9)
        try:
            yield ns, host, www
        finally:
            host.close()


def _tcp_in(host):
    return {name: s.counters.tcp_in for name, s in host.stacks.items()}


def test_curl_reaches_the_throughput_instance(kernel_peer):
    ns, host, www = kernel_peer
    before = _tcp_in(host)
    got = www.parent / "got.bin"
    for url in (f"http://{H4}/one.bin", f"http://[{H6}]/one.bin"):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "60",
                                 "-g", "-o", str(got), url], stderr=subprocess.PIPE)
        host.run(until=lambda: proc.poll() is not None, timeout=90)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(
            (www / "one.bin").read_bytes()).digest()
    after = _tcp_in(host)
    assert after["throughput"] - before["throughput"] > 100
    assert after["low-delay"] == before["low-delay"]
    assert after["concurrency"] == before["concurrency"]
    http = host.app("http")
    assert http.statuses.get(200, 0) >= 2 and http.body_bytes >= 2 << 20


def test_echo_and_discard_on_their_instances(kernel_peer):
    ns, host, _ = kernel_peer
    before = _tcp_in(host)
    discard = host.app("discard")
    reports = len(discard.reports)
    out = run_in_netns(ns, host, f"""
        import socket
        data = bytes(range(256)) * 1000
        for addr in ("{H4}", "{H6}"):
            with socket.create_connection((addr, 7), timeout=30) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = b"".join(iter(lambda: s.recv(65536), b""))
                assert got == data, len(got)
            u = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET,
                              socket.SOCK_DGRAM)
            u.settimeout(10)
            u.sendto(b"ping " + addr.encode(), (addr, 7))
            assert u.recvfrom(2048)[0] == b"ping " + addr.encode()
            with socket.create_connection((addr, 9), timeout=30) as s:
                s.sendall(bytes(123456))
        print("ok")
    """)
    assert out.strip() == "ok"
    host.run(until=lambda: len(discard.reports) >= reports + 2, timeout=30)
    assert [r["bytes"] for r in list(discard.reports)[reports:]] == [123456, 123456]
    after = _tcp_in(host)
    assert after["low-delay"] > before["low-delay"] and after["concurrency"] > before[
        "concurrency"]
    assert host.app("udp-echo").datagrams >= 2
    assert host.app("echo").stats()["bytes_out"] >= 2 * 256_000


def test_every_instance_learns_the_kernel_by_arp(kernel_peer, monkeypatch):
    """The kernel's ARP request reaches every instance; the TAP sees one reply, not one per
    instance."""
    from kit.netns import ns_run
    ns, host, _ = kernel_peer
    ns_run(ns, "ip", "neigh", "flush", "dev", "tap0")
    before = {name: s.counters.arp_in for name, s in host.stacks.items()}
    written = []
    write = host.bridge.tap.write
    monkeypatch.setattr(host.bridge.tap, "write", lambda frame: (written.append(frame),
                                                                 write(frame))[1])
    run_in_netns(ns, host, f"""
        import socket
        socket.create_connection(("{H4}", 80), timeout=30).close()
    """)
    assert all(s.counters.arp_in > before[name] for name, s in host.stacks.items())
    replies = [f for f in written if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02"]
    assert len(replies) == 1


def test_an_instance_connects_out_and_gets_its_return_traffic(kernel_peer):
    """A connection the low-delay instance opens: its ephemeral port steers the kernel's
    answers to it."""
    ns, host, _ = kernel_peer
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(f"""
        import socket
        with socket.create_server(("{K4}", 5555)) as srv:
            srv.settimeout(30)
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"hello from the kernel " + conn.recv(100))
    """)], stderr=subprocess.PIPE)
    stack = host.stacks["low-delay"]
    for _ in range(50):         # the server needs a moment to listen: retry refused
        sock = stack.connect(K4, 5555)
        host.run(until=lambda: sock.connected or sock.error is not None, timeout=30)
        if sock.connected:
            break
        host.run(timeout=0.1)
    assert sock.connected, sock.error
    lo, hi = stack.config.ephemeral_ports
    assert lo <= sock.getsockname()[1] <= hi
    sock.send(b"low-delay")
    got = bytearray()

    def done():
        while (data := sock.recv()) is not None:
            if not data:
                return True
            got.extend(data)
        return False
    try:
        host.run(until=done, timeout=30)
        host.run(until=lambda: proc.poll() is not None, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    assert bytes(got) == b"hello from the kernel low-delay"
    sock.close()


def test_port_map_and_summary(kernel_peer):
    _, host, _ = kernel_peer
    rows = host.port_map()
    assert rows[-1]["rule"] is None and rows[-1]["instance"] == "concurrency"
    http = next(r for r in rows if r["proto"] == "tcp" and r["ports"] == 80)
    assert http["instance"] == "throughput" and http["rx_queues"] == (2, 3, 4, 5)
    assert http["app"] == "http" and http["reta"] == (128, 128)
    apps = {(r["proto"], r["ports"]): r["app"] for r in rows}
    assert apps[("tcp", 7)] == "echo" and apps[("udp", 7)] == "udp-echo"
    assert apps[("tcp", 9)] == "discard" and apps[("any", "40000-59999")] == ""
    summary = host.summary()
    assert set(summary["instances"]) == {"low-delay", "throughput", "concurrency"}
    apps = {a["app"] for inst in summary["instances"].values() for a in inst["apps"]}
    assert apps == {"http", "echo", "udp-echo", "discard"}
    assert summary["bridge"]["frames_to_nic"] > 0


def test_run_times_out_and_stops(kernel_peer):      # last: the host stays stopped
    import threading
    from hetnic.host.stack_host import StackHostTimeout
    _, host, _ = kernel_peer
    with pytest.raises(StackHostTimeout, match="within 0.2 s"):
        host.run(until=lambda: False, timeout=0.2)
    assert host.run(timeout=0.05) is False
    timer = threading.Timer(0.2, host.stop)
    timer.start()
    assert host.run(timeout=30) is True and host.stopped
    timer.join()
