"""``hetnic bench stack``: the user-mode TCP/IP stack's speed, each figure beside the ceiling
or the reference it should be read against, all measured in the same run.

* The stack alone: two :class:`~hetnic.host.stack.stack.Stack` s wired directly in this
  process (no NIC, no TAP, no threads), a bulk transfer at MSS 1460 on the stack's clock.
* The stack against the Linux kernel over a TAP device and the simulated NIC (a network
  namespace of its own, :class:`~hetnic.host.stack_host.StackHost`), wall time: goodput both
  ways and request/response latency per instance.
* The references: the harness's own rate for 1500-byte frames (the ceiling of the TAP path)
  and the kernel talking to itself over a veth pair between two namespaces.

Without root or ``/dev/net/tun`` the kernel figures are null and ``kernel_skipped`` says why;
nothing is ever estimated in their place.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from typing import Callable

from .host.netns import in_netns, ip, netns, netns_unavailable, tap_in_netns
from .protocol import ETH_HEADER_LEN, EtherType, IpProto

__all__ = ["bench_stack", "netns_unavailable", "percentile"]

_MiB = 1024 * 1024
_MAC_A = b"\x02\x00\x5e\x00\x00\x01"
_MAC_B = b"\x02\x00\x5e\x00\x00\x02"
#: Payload bytes of a 1500-byte TCP/IPv4 frame with timestamps (the stack's full segment).
_PAYLOAD_1500 = 1448
_KERNEL4, _HETNIC4 = "198.18.0.1", "198.18.0.2"
_KERNEL6, _HETNIC6 = "2001:db8::1", "2001:db8::2"
_VETH_A, _VETH_B = "198.18.1.1", "198.18.1.2"
_SINK_PORT, _ECHO_PORT, _LISTEN_PORT = 5201, 5007, 80


# -- the stack alone ---------------------------------------------------------------------

def _payload_len(frame: bytes) -> int:
    """TCP payload bytes of an Ethernet/IPv4/TCP frame (0 for anything else)."""
    eth = ETH_HEADER_LEN
    if (len(frame) < eth + 40 or int.from_bytes(frame[12:14], "big") != EtherType.IPV4
            or frame[eth + 9] != IpProto.TCP):
        return 0
    ihl = (frame[eth] & 15) * 4
    total = frame[eth + 2] << 8 | frame[eth + 3]
    return total - ihl - (frame[eth + ihl + 12] >> 4) * 4


def bench_direct(size: int = 64 * _MiB, profile: str = "throughput") -> dict:
    """Two stacks wired directly, one bulk transfer of ``size`` bytes A -> B at MSS 1460.

    The loop moves every frame A's ``poll`` returns into B's ``receive`` and back, on
    ``time.perf_counter`` as the stacks' clock, the application writing as the send buffer
    allows and reading all it can. Data segments are the frames A sends with a payload;
    ``stack_segments_per_s`` is their count over the wall time from connect to the last
    byte read (so it includes both stacks: building, parsing, delivering, ACK processing),
    ``stack_us_per_segment`` its inverse. The data read must equal the data written
    (SHA-256), else :class:`RuntimeError`.
    """
    from .host.stack.instance import PROFILES
    from .host.stack.stack import Stack

    cfg = PROFILES[profile]
    a = Stack(cfg, mac=_MAC_A, ipv4=[("198.18.0.1", 24)], mtu=1500, seed=1)
    b = Stack(cfg, mac=_MAC_B, ipv4=[("198.18.0.2", 24)], mtu=1500, seed=2)
    data = os.urandom(size)
    listener = b.listen(5001)
    clock = time.perf_counter
    t0 = clock()
    client = a.connect("198.18.0.2", 5001)
    server = None
    chunks: list[bytes] = []
    sent = received = segments = acks = 0
    chunk = _MiB
    view = memoryview(data)
    while received < size:
        now = clock()
        if now - t0 > 600:
            raise RuntimeError(f"bench stack: direct transfer stalled at {received} of "
                               f"{size} bytes")
        if sent < size and client.connected and client.writable:
            sent += client.send(view[sent:sent + chunk])
        for frame in a.poll(now):
            if _payload_len(frame):
                segments += 1
            b.receive(frame, now)
        if server is None:
            server = listener.accept()
        if server is not None:
            while (piece := server.recv(1 << 20)):
                chunks.append(piece)
                received += len(piece)
        for frame in b.poll(now):
            acks += 1
            a.receive(frame, now)
        if client.error:
            raise RuntimeError(f"bench stack: direct transfer failed: {client.error}")
    seconds = clock() - t0
    if hashlib.sha256(b"".join(chunks)).digest() != hashlib.sha256(data).digest():
        raise RuntimeError("bench stack: the bytes read differ from the bytes written")
    return {
        "stack_segments_per_s": round(segments / seconds),
        "stack_us_per_segment": round(seconds / segments * 1e6, 2),
        "stack_bytes": size,
        "stack_data_segments": segments,
        "stack_frames_b_to_a": acks,
        "stack_seconds": round(seconds, 3),
        "stack_mss": 1460,
        "stack_profile": profile,
        "stack_data_equal": True,
    }


# -- the kernel side ----------------------------------------------------------------------

class _Worker(threading.Thread):
    """A kernel-side task on its own thread; its result or exception kept for the caller."""

    def __init__(self, fn: Callable[[], object]):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:          # handed to the caller by outcome()
            self.error = e

    def outcome(self, timeout: float):
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError("bench stack: a kernel-side task did not finish")
        if self.error is not None:
            raise RuntimeError(f"bench stack: kernel side: {self.error}")
        return self.result


def _sink(listener: socket.socket) -> tuple[int, bytes, float]:
    """Accept one connection, read to EOF: (bytes, SHA-256, perf_counter at EOF)."""
    conn, _ = listener.accept()
    h, n = hashlib.sha256(), 0
    with conn:
        while (data := conn.recv(1 << 20)):
            h.update(data)
            n += len(data)
    return n, h.digest(), time.perf_counter()


def _send_blocks(client: socket.socket, addr: tuple[str, int], block: bytes, count: int,
                 timeout: float) -> float:
    """Connect ``client`` to ``addr``, send ``block`` ``count`` times and close it; returns
    ``perf_counter`` from just before the connect."""
    t0 = time.perf_counter()
    with client:
        client.settimeout(timeout)
        client.connect(addr)
        for _ in range(count):
            client.sendall(block)
    return t0


def bench_veth(size: int = 64 * _MiB) -> dict:
    """The kernel to itself: ``size`` bytes over TCP between two namespaces on a veth pair."""
    with netns("hetnic-bench-va") as na, netns("hetnic-bench-vb") as nb:
        ip("link", "add", "hnb0", "netns", na, "type", "veth", "peer", "name", "hnb1",
            "netns", nb)
        ip("-n", na, "addr", "add", f"{_VETH_A}/24", "dev", "hnb0")
        ip("-n", nb, "addr", "add", f"{_VETH_B}/24", "dev", "hnb1")
        ip("-n", na, "link", "set", "hnb0", "up")
        ip("-n", nb, "link", "set", "hnb1", "up")
        with in_netns(na):
            listener = socket.create_server((_VETH_A, _SINK_PORT))
        with in_netns(nb):
            client = socket.socket()
        worker = _Worker(lambda: _sink(listener))
        worker.start()
        t0 = _send_blocks(client, (_VETH_A, _SINK_PORT), os.urandom(_MiB), size // _MiB, 60)
        n, _, t_end = worker.outcome(120)
        listener.close()
    if n != size // _MiB * _MiB:
        raise RuntimeError(f"bench stack: veth: {n} of {size} bytes arrived")
    return {"kernel_veth_goodput_mbps": round(n * 8 / (t_end - t0) / 1e6, 1)}


# -- the harness's ceiling ----------------------------------------------------------------

def bench_hil_1500(frames: int = 4000) -> dict:
    """The harness's own rate of 1500-byte frames, wire -> RX queue -> ``poll``
    (:func:`hetnic.sim.scenarios.rx_stream`), as TCP payload: frames/s x 1448 bytes."""
    from .host.nic import Nic
    from .sim.scenarios import rx_stream
    from .sim.traffic import tcp4_min_frames

    with Nic.open("sim", width=64, rx_queues=8) as nic:
        r = rx_stream(nic, [f.hex() for f in tcp4_min_frames(frames, size=1500)], keep=False)
    if r["packets"] != frames:
        raise RuntimeError(f"bench stack: hil: {r['packets']} of {frames} frames arrived")
    pps = r["packets"] / r["seconds"]
    return {"hil_payload_mbps_1500": round(pps * _PAYLOAD_1500 * 8 / 1e6, 1),
            "hil_packets_per_s_1500": round(pps), "hil_frames_1500": frames}


# -- the stack against the kernel, over the TAP and the simulated NIC ---------------------

def _drive(host, until: Callable[[], bool], timeout: float, what: str) -> None:
    """Run ``host`` until ``until()`` (it sleeps on the TAP when idle, so the kernel-side
    threads get the interpreter)."""
    from .host.stack_host import StackHostTimeout
    try:
        host.run(until=until, timeout=timeout)
    except StackHostTimeout:
        raise RuntimeError(f"bench stack: {what} did not finish in {timeout:.0f} s") from None


def _echo_server(listener: socket.socket, connections: int) -> int:
    """Echo every byte back on ``connections`` connections, one after the other."""
    served = 0
    for _ in range(connections):
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while (data := conn.recv(65536)):
                conn.sendall(data)
                served += len(data)
    return served


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` (non-empty): the sample at rank
    ``floor(q * n)`` of the sorted list, the last for ``q = 1``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _kernel_to_hetnic(host, ns: str, size: int) -> dict:
    # The throughput class's port through the dispatcher (no static application rules).
    listener = host.listen("throughput", _LISTEN_PORT, owner="bench")
    with in_netns(ns):
        client = socket.socket()
    block = os.urandom(_MiB)
    expected = hashlib.sha256(block * (size // _MiB)).digest()

    worker = _Worker(lambda: _send_blocks(client, (_HETNIC4, _LISTEN_PORT), block,
                                          size // _MiB, 120))
    worker.start()
    h, state = hashlib.sha256(), {"conn": None, "n": 0, "eof": False}

    def done() -> bool:
        if state["conn"] is None:
            state["conn"] = listener.accept()
        conn = state["conn"]
        while conn is not None and (data := conn.recv(1 << 20)) is not None:
            if not data:
                state["eof"] = True
                break
            h.update(data)
            state["n"] += len(data)
        return state["eof"]

    _drive(host, done, 300, "kernel -> hetnic transfer")
    t_end = time.perf_counter()
    t0 = worker.outcome(30)
    state["conn"].close()
    listener.close()
    if h.digest() != expected:
        raise RuntimeError(f"bench stack: kernel -> hetnic: {state['n']} bytes, not the "
                           f"{size // _MiB * _MiB} written")
    return {"tcp_goodput_mbps_kernel_to_hetnic": round(state["n"] * 8 / (t_end - t0) / 1e6, 1)}


def _hetnic_to_kernel(host, ns: str, size: int) -> dict:
    stack = host.stacks["throughput"]
    with in_netns(ns):
        listener = socket.create_server((_KERNEL4, _SINK_PORT))
    worker = _Worker(lambda: _sink(listener))
    worker.start()
    data = os.urandom(size)
    t0 = time.perf_counter()
    sock = stack.connect(_KERNEL4, _SINK_PORT)
    state = {"sent": 0, "closed": False}

    def done() -> bool:
        if sock.error:
            raise RuntimeError(f"bench stack: hetnic -> kernel: {sock.error}")
        if sock.connected and state["sent"] < size:
            state["sent"] += sock.send(data[state["sent"]:state["sent"] + 256 * 1024])
        if state["sent"] == size and not state["closed"]:
            sock.close()
            state["closed"] = True
        return not worker.is_alive()

    _drive(host, done, 300, "hetnic -> kernel transfer")
    n, digest, t_end = worker.outcome(30)
    listener.close()
    if digest != hashlib.sha256(data).digest():
        raise RuntimeError(f"bench stack: hetnic -> kernel: {n} bytes arrived, not the "
                           f"{size} written")
    return {"tcp_goodput_mbps_hetnic_to_kernel": round(n * 8 / (t_end - t0) / 1e6, 1)}


def _rr_latency(host, ns: str, count: int) -> dict:
    """p50/p99 of 64-byte request/response, each instance a client of a kernel echo server
    (the replies come back to the instance by its ephemeral port range)."""
    names = list(host.stacks)
    with in_netns(ns):
        listener = socket.create_server((_KERNEL4, _ECHO_PORT))
    worker = _Worker(lambda: _echo_server(listener, len(names)))
    worker.start()
    request = bytes(range(64))
    out = {}
    for name in names:
        sock = host.stacks[name].connect(_KERNEL4, _ECHO_PORT)
        _drive(host, lambda: sock.connected or bool(sock.error), 30,
               f"{name}: connect to the kernel")
        if sock.error:
            raise RuntimeError(f"bench stack: {name}: connect: {sock.error}")
        samples = []
        for _ in range(count):
            got = bytearray()
            t0 = time.perf_counter()
            sock.send(request)

            def answered() -> bool:
                while (data := sock.recv(4096)):
                    got.extend(data)
                return len(got) >= len(request)

            _drive(host, answered, 30, f"{name}: request/response")
            samples.append((time.perf_counter() - t0) * 1e6)
            if bytes(got) != request:
                raise RuntimeError(f"bench stack: {name}: the echo differs")
        sock.close()
        out[name] = {"p50": round(percentile(samples, 0.5), 1),
                     "p99": round(percentile(samples, 0.99), 1), "samples": count}
    _drive(host, lambda: not worker.is_alive(), 30, "closing the echo connections")
    worker.outcome(5)
    listener.close()
    return {"rr_latency_us": out}


def bench_kernel(goodput_size: int = 8 * _MiB, rr_count: int = 200) -> dict:
    """Goodput both ways and request/response latency between the kernel in a namespace and
    the stack instances on the simulated NIC behind a TAP there (wall time)."""
    from .host.nic import Nic
    from .host.stack_host import StackHost

    with netns("hetnic-bench-tap") as ns, \
            tap_in_netns(ns, "tap0", f"{_KERNEL4}/24", f"{_KERNEL6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        host = StackHost(nic, tap, addr4=f"{_HETNIC4}/24", addr6=f"{_HETNIC6}/64",
                         apps=False, seed=1)
        try:
            out = {}
            out.update(_kernel_to_hetnic(host, ns, goodput_size))
            out.update(_hetnic_to_kernel(host, ns, goodput_size))
            out.update(_rr_latency(host, ns, rr_count))
        finally:
            host.close()
    return out


_KERNEL_FIELDS = ("tcp_goodput_mbps_kernel_to_hetnic", "tcp_goodput_mbps_hetnic_to_kernel",
                  "rr_latency_us", "kernel_veth_goodput_mbps")


def bench_stack(size: int = 64 * _MiB, goodput_size: int = 8 * _MiB, rr_count: int = 200,
                veth_size: int = 64 * _MiB, hil_frames: int = 4000,
                kernel: bool = True) -> dict:
    """Every figure of ``hetnic bench stack`` as one dict (see the module docstring).

    ``size``: bytes of the direct stack-to-stack transfer; ``goodput_size``: bytes each way
    between the kernel and the stack over the TAP (whole MiB); ``rr_count``: request/response
    rounds per instance; ``veth_size``: bytes kernel to kernel over veth (whole MiB);
    ``hil_frames``: 1500-byte frames through the harness. With ``kernel`` false, or without
    namespace rights, the kernel figures are None and ``kernel_skipped`` gives the reason.
    """
    out: dict = {"sizes": {"stack_bytes": size, "goodput_bytes": goodput_size // _MiB * _MiB,
                           "veth_bytes": veth_size // _MiB * _MiB, "rr_rounds": rr_count,
                           "hil_frames_1500": hil_frames}}
    out.update(bench_direct(size))
    out["stack_must_reach_segments_per_s"] = 50_000
    out["stack_vs_must_reach"] = round(out["stack_segments_per_s"] / 50_000, 3)
    out.update(bench_hil_1500(hil_frames))
    reason = None if kernel else "not asked for (kernel=False)"
    reason = reason or netns_unavailable()
    if reason is not None:
        out.update(dict.fromkeys(_KERNEL_FIELDS))
        out["kernel_skipped"] = reason
        return out
    out.update(bench_kernel(goodput_size, rr_count))
    out.update(bench_veth(veth_size))
    out["kernel_skipped"] = None
    hil = out["hil_payload_mbps_1500"]
    for way in ("kernel_to_hetnic", "hetnic_to_kernel"):
        out[f"goodput_{way}_vs_hil_payload"] = round(out[f"tcp_goodput_mbps_{way}"] / hil, 3)
    out["goodput_must_reach_vs_hil_payload"] = 0.5
    return out
