"""Stack instances as processes (issue #15, Deliver 3) with the Linux kernel as the peer.

The kernel sits in a network namespace with a TAP (198.18.0.1/24, 2001:db8::1/64); the
simulated NIC (host memory shared) is bridged to it by this process, the NIC process, and
each of the three stock instances runs in a process of its own on its exported queues
(:class:`~hetnic.host.stack_procs.StackProcs`, 198.18.0.2/24, 2001:db8::2/64). The kernel's
side of each exchange is a command in the namespace or a socket on a worker thread; the test
thread drives the NIC process (``host.run``).

One namespace and host serve the module; the test that SIGKILLs an instance runs last and
has its own.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time

import pytest

from hetnic.host.nic import Nic
from hetnic.bench_dispatch import homogeneous_instance
from hetnic.host.stack_procs import StackProcs
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

pytestmark = pytest.mark.timeout(300)

K4, H4 = "198.18.0.1", "198.18.0.2"
K6, H6 = "2001:db8::1", "2001:db8::2"
SEED = 15


def _our_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if f"-{os.getpid()}-" in n}


class Peer:
    """The namespace, the TAP, the shared NIC and the stack processes."""

    def __init__(self, ns: str, host: StackProcs):
        self.ns, self.host = ns, host

    def command(self, *cmd: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the namespace while the NIC process keeps running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.host.run(until=lambda: proc.poll() is not None, timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        out, err = proc.communicate(timeout=10)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def kernel(self, fn, timeout: float = 60.0):
        """Run ``fn()`` (kernel sockets) on a thread while the NIC process runs; its
        result."""
        box: dict = {}

        def work():
            try:
                box["result"] = fn()
            except BaseException as exc:        # re-raised in the test thread
                box["error"] = exc
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.host.run(until=lambda: not thread.is_alive(), timeout=timeout)
        thread.join(5)
        if "error" in box:
            raise box["error"]
        return box["result"]

    def socket(self, family, kind) -> socket.socket:
        with in_netns(self.ns):
            return socket.socket(family, kind)


def _peer(serve_dir=None, instances=None):
    require_netns()
    before = _our_segments()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8, shared=True) as nic:
        host = StackProcs(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", serve_dir=serve_dir,
                          instances=instances, seed=SEED, log=lambda text: None)
        children = list(host.owner.children)
        try:
            yield Peer(ns, host)
        finally:
            host.close()
            assert not any(c.process.is_alive() for c in children)
    assert _our_segments() == before


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    path = tmp_path_factory.mktemp("www")
    print("seed", SEED)
    (path / "file.bin").write_bytes(random.Random(SEED).randbytes(1 << 20))
    return path


@pytest.fixture(scope="module")
def peer(www):
    yield from _peer(serve_dir=www)


def test_instances_run_in_three_processes(peer):
    summary = peer.host.summary()
    pids = {name: inst["pid"] for name, inst in summary["instances"].items()}
    assert set(pids) == {"low-delay", "throughput", "concurrency"}
    assert len(set(pids.values())) == 3 and os.getpid() not in pids.values()
    for name, inst in summary["instances"].items():
        assert inst["mode"] == "process" and inst["exit"] is None
        with open(f"/proc/{inst['pid']}/status") as f:
            assert f"PPid:\t{os.getpid()}\n" in f.read()
    grants = {(g["proto"], g["port"]): g["instance"] for g in summary["dispatcher"]["grants"]}
    assert grants == {("tcp", 80): "throughput", ("tcp", 7): "low-delay",
                      ("udp", 7): "low-delay", ("tcp", 9): "concurrency"}
    rows = peer.host.port_map()
    assert [(r["rule"], r["match"], r["instance"], r["app"]) for r in rows[:4]] == [
        (0, "tcp dst port 80", "throughput", "http"), (1, "tcp dst port 7", "low-delay", "echo"),
        (2, "udp dst port 7", "low-delay", "udp-echo"),
        (3, "tcp dst port 9", "concurrency", "discard")]
    assert rows[-1]["match"] == "everything else" and rows[-1]["instance"] == "concurrency"


def test_http_over_curl_is_byte_exact(peer, www, tmp_path):
    got = tmp_path / "got.bin"
    result = peer.command("curl", "-sS", "--max-time", "90", "-o", str(got),
                          f"http://{H4}/file.bin")
    assert result.returncode == 0, result.stderr
    assert got.read_bytes() == (www / "file.bin").read_bytes()
    apps = peer.host.summary()["instances"]["throughput"]["apps"]
    assert apps[0]["app"] == "http" and apps[0]["statuses"] == {200: 1}


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_echo(peer, version):
    payload = random.Random(SEED + version).randbytes(100_000)
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    sock = peer.socket(family, socket.SOCK_STREAM)

    def echo():
        with sock:
            sock.settimeout(60)
            sock.connect((H4 if version == 4 else H6, 7))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            return b"".join(iter(lambda: sock.recv(65536), b""))
    assert peer.kernel(echo) == payload


def test_connection_dump_comes_from_the_instance_process(peer):
    sock = peer.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(30)

        def established():
            sock.connect((H4, 7))
            sock.sendall(b"x")
            return sock.recv(1)
        assert peer.kernel(established) == b"x"
        port = sock.getsockname()[1]
        rows = [c for c in peer.host.connections("low-delay") if c["rport"] == port]
        assert [(c["state"], c["lport"], c["remote"]) for c in rows] == \
            [("ESTABLISHED", 7, K4)]
        assert not [c for c in peer.host.connections("throughput") if c["rport"] == port]


def test_udp_echo(peer):
    sock = peer.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def echo():
        with sock:
            sock.settimeout(20)
            replies = []
            for i in range(5):
                sock.sendto(b"datagram %d" % i, (H4, 7))
                replies.append(sock.recvfrom(100)[0])
            return replies
    assert peer.kernel(echo) == [b"datagram %d" % i for i in range(5)]
    summary = peer.host.summary()["instances"]
    udp = next(a for a in summary["low-delay"]["apps"] if a["app"] == "udp-echo")
    assert udp["datagrams"] >= 5
    # The kernel's ARP requests reach the default instance (concurrency) through the NIC and
    # the others as copies over their rings.
    assert summary["low-delay"]["shared_frames_in"] >= 1
    assert summary["throughput"]["shared_frames_in"] >= 1
    assert summary["concurrency"]["shared_frames_in"] == 0


def test_one_arp_reply_per_request(peer):
    """Every instance answers the kernel's ARP request (each got it, two as copies); the
    kernel gets one reply."""
    from scapy.layers.l2 import ARP, Ether
    link = ns_run(peer.ns, "ip", "-o", "link", "show", "tap0").stdout
    mac = link.split("link/ether ")[1].split()[0]
    with in_netns(peer.ns):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    with raw:
        raw.bind(("tap0", 0x0806))
        raw.settimeout(0.05)
        request = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=K4,
                                                                 pdst=H4)
        before = peer.host.summary()["shared_duplicates"]
        raw.send(bytes(request))
        replies = []
        end = time.monotonic() + 1.0

        def listen() -> bool:
            try:
                frame = raw.recv(2048)
            except TimeoutError:
                return time.monotonic() >= end
            arp = Ether(frame).getlayer(ARP)
            if arp is not None and arp.op == 2 and arp.psrc == H4 and arp.pdst == K4:
                replies.append(arp.hwsrc)
            return time.monotonic() >= end
        peer.host.run(until=listen, timeout=30)
    assert replies == ["02:00:5e:00:00:02"]
    assert peer.host.summary()["shared_duplicates"] - before == 2


def test_discard_reports_reach_the_nic_process(peer):
    reports = []
    peer.host.on_report(reports.append)
    sock = peer.socket(socket.AF_INET6, socket.SOCK_STREAM)

    def send():
        with sock:
            sock.settimeout(30)
            sock.connect((H6, 9))
            sock.sendall(bytes(54321))
    peer.kernel(send)
    peer.host.run(until=lambda: reports, timeout=30)
    assert reports[0]["bytes"] == 54321 and reports[0]["error"] is None


def test_one_homogeneous_instance_on_every_queue(www, tmp_path):
    """The baseline of the dispatch benchmark: one instance process with every RX queue and
    the summed resources serves every application."""
    cfg = homogeneous_instance()
    assert cfg.rx_queues == tuple(range(8))
    gen = _peer(serve_dir=www, instances=[cfg])
    peer = next(gen)
    try:
        got = tmp_path / "got.bin"
        result = peer.command("curl", "-sS", "--max-time", "90", "-o", str(got),
                              f"http://{H4}/file.bin")
        assert result.returncode == 0, result.stderr
        assert got.read_bytes() == (www / "file.bin").read_bytes()
        sock = peer.socket(socket.AF_INET6, socket.SOCK_DGRAM)

        def echo():
            with sock:
                sock.settimeout(20)
                sock.sendto(b"one process", (H6, 7))
                return sock.recvfrom(100)[0]
        assert peer.kernel(echo) == b"one process"
        summary = peer.host.summary()
        assert list(summary["instances"]) == [cfg.name]
        assert {g["instance"] for g in summary["dispatcher"]["grants"]} == {cfg.name}
    finally:
        gen.close()


def test_a_killed_instance_is_reported_and_the_others_keep_answering(www):
    import signal
    messages = []
    gen = _peer(serve_dir=www)
    peer = next(gen)
    try:
        host = peer.host
        host.owner._log = messages.append
        victim = host.pids["concurrency"]
        os.kill(victim, signal.SIGKILL)
        host.run(until=lambda: "concurrency" in host.exits, timeout=30)
        assert host.exits == {"concurrency": -signal.SIGKILL}
        assert messages == [f"hetnic: concurrency (pid {victim}) was killed by signal 9"]
        ports = {(g["proto"], g["port"]) for g in host.dispatcher.dump()["grants"]}
        assert ("tcp", 9) not in ports and ("tcp", 80) in ports
        sock = peer.socket(socket.AF_INET, socket.SOCK_STREAM)

        def echo():
            with sock:
                sock.settimeout(30)
                sock.connect((H4, 7))
                sock.sendall(b"still here")
                sock.shutdown(socket.SHUT_WR)
                return b"".join(iter(lambda: sock.recv(100), b""))
        assert peer.kernel(echo) == b"still here"
        result = peer.command("curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w",
                              "%{http_code}", f"http://{H4}/file.bin")
        assert result.stdout == b"200"
        summary = host.summary()["instances"]
        assert summary["concurrency"]["exit"] == -signal.SIGKILL
        assert summary["throughput"]["exit"] is None
        # Closing the host closes the applications: an open echo connection gets its FIN.
        held = peer.socket(socket.AF_INET, socket.SOCK_STREAM)
        with held:
            held.settimeout(30)

            def established():
                held.connect((H4, 7))
                held.sendall(b"x")
                return held.recv(1)         # echoed: the connection is accepted there
            assert peer.kernel(established) == b"x"
            host.close()
            assert held.recv(100) == b""
    finally:
        gen.close()
