"""The user-mode stack with the Linux kernel as the peer (issue #14, Deliver 5).

The kernel sits in a network namespace of its own with a TAP (198.18.0.1/24,
2001:db8::1/64); the simulated NIC's MAC port is bridged to that TAP and the three stock
stack instances run on the NIC's queues (:class:`~hetnic.host.stack_host.StackHost`,
198.18.0.2/24, 2001:db8::2/64). The test thread drives the host (``host.run``); the kernel's
side of each exchange runs on a worker thread, with sockets opened inside the namespace, or
as a command in it (``curl``, ``ip``, ``nstat``).

One namespace and host serve the whole module (``peer``); the fault-injection test and the
vanishing peer have their own (faults on the bridge; an instance with a small retry limit).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from hetnic.host.faults import parse_faults
from hetnic.host.nic import Nic
from hetnic.host.stack.errors import ConnectionReset
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack_host import DEFAULT_MAC, StackHost
from kit.netns import in_netns, netns, ns_run, require_netns, tap_in_netns

pytestmark = pytest.mark.timeout(240)

K4, H4 = "198.18.0.1", "198.18.0.2"
K6, H6 = "2001:db8::1", "2001:db8::2"
MAC_TEXT = ":".join(f"{b:02x}" for b in DEFAULT_MAC)
MiB = 1 << 20
#: A listening port in the throughput instance's ephemeral range: the NIC steers it there.
THROUGHPUT_PORT = 39999


class KernelTask(threading.Thread):
    """The kernel's side of an exchange on its own thread; ``result`` or the exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # re-raised in the test thread by Peer.wait
            self.error = e


class Peer:
    """A namespace with the kernel on a TAP, the simulated NIC and the stack host."""

    def __init__(self, ns: str, tap, host: StackHost):
        self.ns, self.tap, self.host = ns, tap, host

    def run(self, until, timeout: float = 30.0) -> None:
        self.host.run(until=until, timeout=timeout)

    def wait(self, task: KernelTask, timeout: float = 60.0):
        """Drive the host until the kernel-side ``task`` is done; its result."""
        self.run(lambda: not task.is_alive(), timeout)
        task.join(5)
        if task.error is not None:
            raise task.error
        return task.result

    def socket(self, *args) -> socket.socket:
        """A kernel socket inside the namespace."""
        with in_netns(self.ns):
            return socket.socket(*args)

    def server(self, addr: str, port: int) -> socket.socket:
        with in_netns(self.ns):
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.create_server((addr, port), family=family)
        s.settimeout(60)
        return s

    def command(self, *cmd: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the namespace while the host keeps running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.run(lambda: proc.poll() is not None, timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        out, err = proc.communicate(timeout=10)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def nstat(self) -> dict[str, int]:
        """The namespace's kernel counters (absolute, history untouched)."""
        out = ns_run(self.ns, "nstat", "-asz").stdout
        counters = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                counters[parts[0]] = int(parts[1])
        return counters

    def connect(self, stack, host: str, port: int):
        """Our socket connected to the kernel (fails the test on an error)."""
        sock = stack.connect(host, port)
        self.run(lambda: sock.connected or sock.error is not None)
        assert sock.error is None, sock.error
        return sock

    def send_all(self, sock, data: bytes, close: bool = True) -> None:
        sent = 0

        def done() -> bool:
            nonlocal sent
            assert sock.error is None, sock.error
            if sent < len(data):
                sent += sock.send(data[sent:sent + 256 * 1024])
            return sent == len(data)
        self.run(done, 120)
        if close:
            sock.close()

    def recv_all(self, sock, timeout: float = 120.0) -> bytes:
        """Everything ``sock`` receives up to EOF."""
        chunks = []

        def eof() -> bool:
            assert sock.error is None, sock.error
            while (data := sock.recv(1 << 20)) is not None:
                if not data:
                    return True
                chunks.append(data)
            return False
        self.run(eof, timeout)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    path = tmp_path_factory.mktemp("www")
    (path / "big.bin").write_bytes(os.urandom(4 * MiB))
    return path


def _peer(instances=None, faults: str | None = None, serve_dir=None):
    """The fixtures' body: a namespace with the kernel on a TAP, the simulated NIC, a
    StackHost on it (``instances`` default: the stock three); closed and removed after."""
    require_netns()
    plan = parse_faults(faults) if faults else None
    with netns() as ns, tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        host = StackHost(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", instances=instances,
                         serve_dir=serve_dir, seed=3,
                         faults_to_nic=plan.injector("in") if plan else None,
                         faults_to_tap=plan.injector("out") if plan else None)
        try:
            yield Peer(ns, tap, host)
        finally:
            host.close()


@pytest.fixture(scope="module")
def peer(www):
    yield from _peer(serve_dir=www)


def _kernel_mac(peer: Peer) -> bytes:
    link = ns_run(peer.ns, "ip", "-o", "link", "show", "tap0").stdout
    return bytes.fromhex(link.split("link/ether ")[1].split()[0].replace(":", ""))


# -- neighbours and ICMP ------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_kernel_resolves_us(peer, version):
    """The kernel learns our MAC (ARP / neighbour solicitation) and a UDP echo comes back."""
    ours = H4 if version == 4 else H6
    ns_run(peer.ns, "ip", f"-{version}", "neigh", "flush", "dev", "tap0")
    sock = peer.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)

    def echo():
        with sock:
            sock.settimeout(20)
            sock.sendto(b"who has", (ours, 7))
            return sock.recvfrom(100)[0]
    assert peer.wait(KernelTask(echo)) == b"who has"
    shown = ns_run(peer.ns, "ip", f"-{version}", "neigh", "show", ours).stdout
    assert f"lladdr {MAC_TEXT}" in shown, shown


@pytest.mark.parametrize("version", [4, 6])
def test_we_resolve_the_kernel(peer, version):
    """Our stack asks for an address of the kernel it never heard from (a second address on
    the TAP) and caches the kernel's MAC; the datagram arrives."""
    fresh = "198.18.0.3" if version == 4 else "2001:db8::3"
    ns_run(peer.ns, "ip", "addr", "add", f"{fresh}/{24 if version == 4 else 64}", "dev", "tap0",
           *(["nodad"] if version == 6 else []))
    try:
        with in_netns(peer.ns):
            sink = socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6,
                                 socket.SOCK_DGRAM)
            sink.bind((fresh, 9999))
        sink.settimeout(20)
        task = KernelTask(lambda: sink.recvfrom(100)[0])
        stack = peer.host.stacks["throughput"]
        udp = stack.udp_socket()
        udp.sendto(b"hello kernel", (fresh, 9999))
        assert peer.wait(task) == b"hello kernel"
        udp.close()
        sink.close()
        assert stack.iface.neighbours.mac(ipaddress.ip_address(fresh).packed) == _kernel_mac(peer)
    finally:
        ns_run(peer.ns, "ip", "addr", "del", f"{fresh}/{24 if version == 4 else 64}",
               "dev", "tap0")


def _ping(sock: socket.socket, dst: str, version: int, ident: int,
          payload: bytes) -> bytes:
    """One ICMP(v6) echo request from a raw kernel socket; the reply's payload."""
    kind = 8 if version == 4 else 128
    head = struct.pack("!BBHHH", kind, 0, 0, ident, 1)
    if version == 4:            # the kernel fills in the ICMPv6 checksum, not ICMPv4's
        words = sum(struct.unpack(f"!{len(head + payload) // 2}H", head + payload))
        while words >> 16:
            words = (words & 0xFFFF) + (words >> 16)
        head = struct.pack("!BBHHH", kind, 0, ~words & 0xFFFF, ident, 1)
    sock.settimeout(10)
    sock.sendto(head + payload, (dst, 0))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = sock.recv(2048)
        icmp = data[(data[0] & 15) * 4:] if version == 4 else data
        if icmp[0] == (0 if version == 4 else 129) and struct.unpack_from("!H", icmp, 4)[0] \
                == ident:
            return icmp[8:]
    raise TimeoutError("no echo reply")


@pytest.mark.parametrize("version", [4, 6])
def test_icmp_echo_from_the_kernel(peer, version):
    if version == 4:
        sock = peer.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        sock = peer.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    payload = os.urandom(48)
    with sock:
        task = KernelTask(lambda: _ping(sock, H4 if version == 4 else H6, version, 0x4242,
                                        payload))
        assert peer.wait(task) == payload


# -- TCP ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_kernel_connects_to_us(peer, version):
    """The kernel connects to our TCP echo (port 7) and gets its bytes back."""
    sock = peer.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_STREAM)

    def talk():
        with sock:
            sock.settimeout(20)
            sock.connect((H4 if version == 4 else H6, 7))
            sock.sendall(b"ping over tcp")
            got = b""
            while len(got) < 13:
                got += sock.recv(100)
            return got
    assert peer.wait(KernelTask(talk)) == b"ping over tcp"


@pytest.mark.parametrize("version", [4, 6])
def test_we_connect_to_the_kernel(peer, version):
    """Our stack connects to a kernel listener; bytes both ways; both close."""
    listener = peer.server(K4 if version == 4 else K6, 7100 + version)

    def serve():
        conn, addr = listener.accept()
        with conn, listener:
            conn.settimeout(20)
            conn.sendall(b"hello from the kernel")
            got = b""
            while (data := conn.recv(100)):
                got += data
            return got, addr[0]
    task = KernelTask(serve)
    stack = peer.host.stacks["low-delay"]
    sock = peer.connect(stack, K4 if version == 4 else K6, 7100 + version)
    assert sock.getpeername() == (K4 if version == 4 else K6, 7100 + version)
    got = b""

    def greeted() -> bool:
        nonlocal got
        got += sock.recv(100) or b""
        return len(got) >= 21
    peer.run(greeted)
    assert got == b"hello from the kernel"
    sock.send(b"hello from hetnic")
    sock.close()
    data, addr = peer.wait(task)
    assert data == b"hello from hetnic"
    assert ipaddress.ip_address(addr) == ipaddress.ip_address(H4 if version == 4 else H6)


def _both_ways(peer: Peer, size: int, version: int, kernel_port: int) -> None:
    """``size`` random bytes kernel -> hetnic, then ``size`` others hetnic -> kernel, on the
    throughput instance (a listening port in its range; its own connection's ephemeral
    port brings the return traffic to it); equal SHA-256 both ways."""
    stack = peer.host.stacks["throughput"]
    ours_addr, kernel_addr = (H4, K4) if version == 4 else (H6, K6)
    data_in, data_out = os.urandom(size), os.urandom(size)
    listener = stack.listen(THROUGHPUT_PORT)
    sock = peer.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_STREAM)

    def upload():
        with sock:
            sock.settimeout(60)
            sock.connect((ours_addr, THROUGHPUT_PORT))
            sock.sendall(data_in)
    task = KernelTask(upload)
    conn = None

    def accepted() -> bool:
        nonlocal conn
        conn = listener.accept()
        return conn is not None
    try:
        peer.run(accepted)
        got = peer.recv_all(conn, 200)
        peer.wait(task)
        conn.close()
    finally:
        listener.close()
    assert len(got) == size
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data_in).hexdigest()

    kernel = peer.server(kernel_addr, kernel_port)

    def download():
        c, _ = kernel.accept()
        with c, kernel:
            c.settimeout(60)
            h, n = hashlib.sha256(), 0
            while (chunk := c.recv(1 << 20)):
                h.update(chunk)
                n += len(chunk)
            return n, h.hexdigest()
    task = KernelTask(download)
    ours = peer.connect(stack, kernel_addr, kernel_port)
    peer.send_all(ours, data_out)
    n, digest = peer.wait(task, 200)
    assert (n, digest) == (size, hashlib.sha256(data_out).hexdigest())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("version", [4, pytest.param(6, marks=pytest.mark.slow)])
def test_16mib_each_way(peer, version):
    """16 MiB each way with equal SHA-256."""
    _both_ways(peer, 16 * MiB, version, 7200 + version)


@pytest.mark.timeout(180)
def test_http_get_4mib_with_curl(peer, www):
    out = www.parent / "fetched.bin"
    r = peer.command("curl", "-sS", "--max-time", "100", "-o", str(out),
                     "-w", "%{http_code} %{size_download}", f"http://{H4}/big.bin")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"200 {4 * MiB}"
    assert out.read_bytes() == (www / "big.bin").read_bytes()


@pytest.mark.timeout(180)
def test_200_concurrent_connections(peer):
    """200 kernel connections open at once to our echo, each a request and its response."""
    import selectors
    n = 200
    socks = [peer.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]

    def clients():
        sel = selectors.DefaultSelector()
        want = {}
        for i, s in enumerate(socks):
            s.setblocking(False)
            s.connect_ex((H4, 7))
            want[s] = b"request %03d " % i + os.urandom(16).hex().encode()
            sel.register(s, selectors.EVENT_WRITE, i)
        got = {s: b"" for s in socks}
        pending_write, opened = set(socks), 0
        deadline = time.monotonic() + 120
        while any(len(got[s]) < len(want[s]) for s in socks):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(len(got[s]) == len(want[s]) for s in socks)} of "
                                   f"{n} answered")
            for key, events in sel.select(1.0):
                s = key.fileobj
                if events & selectors.EVENT_WRITE and s in pending_write:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, f"connect {key.data}: {os.strerror(err)}")
                    s.send(want[s])
                    pending_write.discard(s)
                    opened += 1
                    sel.modify(s, selectors.EVENT_READ, key.data)
                elif events & selectors.EVENT_READ:
                    got[s] += s.recv(4096)
        # every connection was open until it had its answer: none is closed before this
        for s in socks:
            s.close()
        return opened, all(got[s] == want[s] for s in socks)
    task = KernelTask(clients)
    stack, peak = peer.host.stacks["low-delay"], 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, stack.state_counts().get("ESTABLISHED", 0))
        return not task.is_alive()
    peer.run(done, 150)
    opened, equal = peer.wait(task)
    assert opened == n and equal
    assert peak == n            # all 200 were open at once on our side too


# -- resets and errors --------------------------------------------------------------------

def test_rst_to_a_closed_port(peer):
    """A SYN to a port nobody listens on: our RST, the kernel's ECONNREFUSED."""
    def no_socket() -> int:
        return sum(s.counters.drops.get("tcp_no_socket", 0) for s in peer.host.stacks.values())
    before = no_socket()
    sock = peer.socket(socket.AF_INET, socket.SOCK_STREAM)

    def refused():
        with sock:
            sock.settimeout(20)
            try:
                sock.connect((H4, 4444))
            except ConnectionRefusedError:
                return "refused"
            return "connected"
    assert peer.wait(KernelTask(refused)) == "refused"
    assert no_socket() > before


def test_kernel_rst_aborts_our_connection(peer):
    """The kernel closes with SO_LINGER 0 (a RST): our socket's error is "reset", recv
    raises ConnectionReset, and the connection leaves the table."""
    listener = peer.server(K4, 7300)

    def abort():
        conn, _ = listener.accept()
        with listener:
            conn.recv(100)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()                # SO_LINGER 0: close sends RST
    task = KernelTask(abort)
    stack = peer.host.stacks["low-delay"]
    sock = peer.connect(stack, K4, 7300)
    sock.send(b"are you there")
    peer.wait(task)
    peer.run(lambda: sock.error is not None)
    assert sock.error == "reset"
    with pytest.raises(ConnectionReset):
        sock.recv(10)
    sock.close()
    assert not [c for c in stack.connections() if c["rport"] == 7300]


# -- faults, and a peer that vanishes ----------------------------------------------------

#: The issue's fault mix, both directions of the bridge.
FAULTS = "loss=2%,reorder=2%,dup=1%,seed=11"


@pytest.fixture
def faulty():
    yield from _peer(faults=FAULTS)


#: The kernel's counters (``nstat``) printed for the fault run; the test needs retransmitted
#: segments, fast retransmits and SACK recovery episodes.
RECOVERY = ("TcpExtTCPSackRecovery", "TcpExtTCPRenoRecovery", "TcpExtTCPFastRetrans",
            "TcpExtTCPLossProbes", "TcpExtTCPLossProbeRecovery", "TcpExtTCPLostRetransmit",
            "TcpExtTCPTimeouts", "TcpExtTCPSACKReorder", "TcpExtTCPDSACKRecv")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("version", [4, pytest.param(6, marks=pytest.mark.slow)])
def test_4mib_each_way_through_faults(faulty, version):
    """2 % loss, 2 % reordering, 1 % duplication both ways: 4 MiB each way byte-exact, and
    both the kernel's counters and ours show the recovery."""
    peer = faulty
    before = peer.nstat()
    _both_ways(peer, 4 * MiB, version, 7400)
    after = peer.nstat()
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in ("TcpRetransSegs", *RECOVERY)}
    faults = {d: f.counters() for d, f in (("in", peer.host.bridge.faults_to_nic),
                                           ("out", peer.host.bridge.faults_to_tap))}
    ours = {k: peer.host.stacks["throughput"].counters.as_dict()[k] for k in
            ("tcp_retransmits", "tcp_fast_retransmits", "tcp_rto")}
    print(f"faults {FAULTS}\nkernel: {moved}\nours: {ours}\nfaults: {faults}")
    assert faults["in"]["lost"] > 0 and faults["out"]["lost"] > 0
    assert moved["TcpRetransSegs"] > 0
    assert moved["TcpExtTCPFastRetrans"] > 0
    # the kernel entered loss recovery (SACK-based: it had our SACK blocks)
    assert moved["TcpExtTCPSackRecovery"] > 0
    assert ours["tcp_retransmits"] > 0
    assert ours["tcp_fast_retransmits"] > 0


def _fragile():
    """The stock instances, low-delay with a small retry limit and short timeouts."""
    low = PROFILES["low-delay"].replace(max_retries=4, min_rto=0.1, max_rto=1.0)
    return [low, PROFILES["throughput"], PROFILES["concurrency"]]


@pytest.fixture
def fragile():
    yield from _peer(instances=_fragile())


@pytest.mark.timeout(120)
def test_vanishing_peer_times_out_cleanly(fragile):
    """The kernel's addresses vanish mid-transfer: our retransmission timer backs off, the
    connection fails with "timeout" at the retry limit, and afterwards no connection and no
    TCP timer is left."""
    peer = fragile
    kernel = peer.server(K4, 7500)
    received = []

    def sink():
        c, _ = kernel.accept()
        with kernel:
            c.settimeout(30)
            received.append(c.recv(65536))
            return c                    # kept open: the kernel never closes or resets
    task = KernelTask(sink)
    stack = peer.host.stacks["low-delay"]
    sock = peer.connect(stack, K4, 7500)
    sock.send(b"first words")
    kept = peer.wait(task)
    assert received == [b"first words"]
    ns_run(peer.ns, "ip", "addr", "flush", "dev", "tap0")       # the peer vanishes
    sock.send(b"x" * 20_000)
    rtos: list[float] = []

    def failed() -> bool:
        for c in stack.connections():
            if c["rport"] == 7500 and (not rtos or c["rto"] != rtos[-1]):
                rtos.append(c["rto"])
        return sock.error is not None
    peer.run(failed, 60)
    kept.close()
    print(f"RTOs seen: {rtos}")
    assert sock.error == "timeout"
    # backoff: every RTO seen after the first doubled (up to max_rto)
    backoff = [b for a, b in zip(rtos, rtos[1:]) if b > a]
    assert len(backoff) >= 3, rtos
    assert all(b == pytest.approx(min(2 * a, 1.0)) for a, b in zip(rtos, rtos[1:]) if b > a)
    assert stack.counters.tcp_rto >= 4
    sock.close()
    assert stack.connections() == []
    assert stack.tcp.timers == 0 and stack.tcp.next_deadline() is None
