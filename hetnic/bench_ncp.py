"""``hetnic bench ncp``: NCP's goodput and latency against UDP on the same path, same run.

The path: the simulated NIC behind a TAP device in a network namespace of its own; hetnic on
the NIC, the Linux kernel on the other side of the TAP.

* UDP: the user-mode stack (:class:`~hetnic.host.stack_host.StackHost`) sends 1472-byte
  datagrams to a kernel UDP socket (goodput: the bytes that arrived over the time from the
  first to the last), and 64-byte request/response rounds against a kernel UDP echo.
* NCP: :mod:`hetnic.host.ncp` on the same NIC and TAP (after the stack host is closed),
  the kernel side the same NCP code on an ``AF_PACKET`` socket
  (:class:`~hetnic.host.links.PacketLink`): a bulk transfer hetnic -> kernel (byte-exact),
  the same 64-byte rounds, the transfer again with the TAP bridge's fault injector (5 %
  loss, 5 % reordering, 5 % duplication; byte-exact), and a kernel-side restart in the
  middle of a transfer: the time until hetnic's side detects it (and that the session
  comes back).

Without root or ``/dev/net/tun`` every figure is null and ``skipped`` says why; nothing is
estimated in its place. The machine's load average is part of the result.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Iterator

from .bench_stack import percentile
from .host.netns import in_netns, netns, netns_unavailable, tap_in_netns
from .host.ncp_io import NcpReset
from .ncp_frame import ETHERTYPE, MAX_PAYLOAD

__all__ = ["bench_ncp", "tap_path", "HETNIC_MAC", "DEFAULT_FAULTS"]

_KERNEL4, _HETNIC4 = "198.18.0.1", "198.18.0.2"
_UDP_SINK, _UDP_ECHO = 5301, 5302
_UDP_PAYLOAD = 1472
#: The MAC of hetnic's NCP endpoint on the simulated NIC.
HETNIC_MAC = b"\x02\x00\x5e\x00\x00\x0b"
#: The faults of the lossy run (and of the tests).
DEFAULT_FAULTS = "loss=5%,reorder=5%,dup=5%,seed=7"
_CHANNEL = 17
_NCP_RX_QUEUE = 1
_TX_BACKLOG = 1024


class TapPath:
    """hetnic's NCP station on the simulated NIC (its thread runs the TAP bridge) and the
    kernel's NCP station on an AF_PACKET socket on the TAP, in namespace ``ns``."""

    def __init__(self, nic, tap, ns: str, faults: str | None, config=None):
        from .host import ncp_io
        from .host.faults import parse_faults
        from .host.links import NicQueueLink, PacketLink
        from .host.tap_bridge import TapBridge

        plan = parse_faults(faults) if faults else None
        self.nic, self.tap, self.ns = nic, tap, ns
        self.rule = ncp_io.steer_direct(nic, _NCP_RX_QUEUE)
        self.bridge = TapBridge(nic, tap, faults_to_nic=plan and plan.injector("in"),
                                faults_to_tap=plan and plan.injector("out"))
        self.kernel_link = PacketLink(tap.name, ETHERTYPE, netns=ns)
        # tx_backlog: a full TX ring never makes the station wait (the frames wait in the
        # link's backlog, or are dropped there and retransmitted).
        link = NicQueueLink(nic, [_NCP_RX_QUEUE], 0, tx_backlog=_TX_BACKLOG)
        self.hetnic = ncp_io.NcpStation(link, HETNIC_MAC, config, pumps=[self.bridge.pump])
        self.kernel = ncp_io.NcpStation(self.kernel_link, config=config)

    def restart_kernel(self, config=None):
        """The kernel side "reboots": its station stops and a new one (new epochs, no
        sessions) takes the same socket."""
        from .host import ncp_io
        self.kernel.close()
        self.kernel = ncp_io.NcpStation(self.kernel_link, config=config)
        return self.kernel

    def close(self) -> None:
        self.hetnic.close()
        self.kernel.close()
        self.kernel_link.close()
        self.nic.rules.remove(self.rule)
        self.nic.commit()


@contextlib.contextmanager
def tap_path(faults: str | None = None, config=None, *, prefix: str = "hn-ncp"
             ) -> Iterator[TapPath]:
    """A namespace with a TAP, a simulated NIC behind it and an NCP station on each side
    (see :class:`TapPath`); everything is closed and deleted after."""
    from .host.nic import Nic

    with netns(prefix) as ns, tap_in_netns(ns, "tap0", None, None) as tap, \
            Nic.open("sim", width=64, rx_queues=4) as nic:
        path = TapPath(nic, tap, ns, faults, config)
        try:
            yield path
        finally:
            path.close()


def _transfer(path: TapPath, size: int, seed: int = 1) -> dict:
    """``size`` bytes hetnic -> kernel on a new channel; byte-exact or RuntimeError."""
    ch = path.hetnic.open(path.kernel_link.mac, _CHANNEL)
    ck = path.kernel.open(HETNIC_MAC, _CHANNEL)
    ch.wait_established(10)
    ck.wait_established(10)
    data = os.urandom(size)
    got = bytearray()
    t0 = time.perf_counter()
    sender = threading.Thread(target=ch.send, args=(data, 120), daemon=True)
    sender.start()
    got += _recv(path, ck)
    t_first = time.perf_counter()
    first = len(got)
    while len(got) < size:
        got += _recv(path, ck)
    t1 = time.perf_counter()
    sender.join(30)
    if bytes(got) != data:
        raise RuntimeError(f"bench ncp: {len(got)} bytes arrived and they differ from the "
                           f"{size} sent")
    # Goodput as UDP's is measured: the bytes after the first arrival over the time from
    # the first arrival to the last (and, beside it, the whole transfer from send()).
    out = {"goodput_mbps": round((size - first) * 8 / (t1 - t_first) / 1e6, 2),
           "goodput_mbps_from_send": round(size * 8 / (t1 - t0) / 1e6, 2), "bytes": size,
           "byte_exact": True, "hetnic": ch.counters(), "kernel": ck.counters()}
    ch.close(10)
    return out


def _recv(path: TapPath, channel, timeout: float = 30.0) -> bytes:
    """``channel.recv`` that gives up early, with the reason, if hetnic's station failed."""
    end = time.monotonic() + timeout
    while True:
        if path.hetnic.error is not None:
            raise RuntimeError(f"bench ncp: hetnic's NCP station failed: {path.hetnic.error}")
        try:
            return channel.recv(timeout=min(1.0, max(0.01, end - time.monotonic())))
        except TimeoutError:
            if time.monotonic() >= end:
                raise


def _ncp_rr(path: TapPath, count: int) -> dict:
    ch = path.hetnic.open(path.kernel_link.mac, _CHANNEL + 1)
    ck = path.kernel.open(HETNIC_MAC, _CHANNEL + 1)
    ch.wait_established(10)
    ck.wait_established(10)
    stop = threading.Event()

    def echo():
        while not stop.is_set():
            try:
                data = ck.recv(timeout=0.2)
            except TimeoutError:
                continue
            if not data:
                return
            ck.send(data)

    worker = threading.Thread(target=echo, daemon=True)
    worker.start()
    request = bytes(range(64))
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        ch.send(request)
        got = b""
        while len(got) < len(request):
            got += ch.recv(timeout=10)
        samples.append((time.perf_counter() - t0) * 1e6)
        if got != request:
            raise RuntimeError("bench ncp: the NCP echo differs")
    ch.close(10)
    stop.set()
    worker.join(5)
    return {"p50": round(percentile(samples, 0.5), 1),
            "p99": round(percentile(samples, 0.99), 1), "samples": count}


def _restart(path: TapPath, size: int) -> dict:
    """A transfer hetnic -> kernel; the kernel side restarts in the middle (a new station,
    no sessions); the time hetnic's side took to notice, then the channel reopened on the
    kernel side and the session back (fresh data byte-exact)."""
    ch = path.hetnic.open(path.kernel_link.mac, _CHANNEL + 2)
    ck = path.kernel.open(HETNIC_MAC, _CHANNEL + 2)
    ch.wait_established(10)
    ck.wait_established(10)
    size = min(size, 2 * 1024 * 1024)          # fits the send buffer: send() returns
    ch.send(os.urandom(size))
    got = 0
    while got < size // 4:
        got += len(_recv(path, ck))
    kernel = path.restart_kernel()
    t_restart = path.hetnic.clock()
    # The restarted side stays silent until hetnic's side noticed (its RST to hetnic's
    # frames, or hetnic's keepalive timeout, not a SYN of its own, tells), then reopens.
    path.hetnic.wait(lambda: ch.session.restart_detected_at is not None, 10,
                     "the peer restart to be detected")
    detected = ch.session.restart_detected_at - t_restart
    ck2 = kernel.open(HETNIC_MAC, _CHANNEL + 2)
    ch.wait_established(10)
    ck2.wait_established(10)
    try:
        ch.flush(10)            # the first session's lost data is reported once, here
    except NcpReset:
        pass
    fresh = os.urandom(64 * 1024)
    ch.send(fresh)
    back = bytearray()
    while len(back) < len(fresh):
        back += _recv(path, ck2)
    out = {"detected_s": round(detected, 4), "session_back": bytes(back) == fresh,
           "generation": ch.generation, "hetnic": ch.counters()}
    ch.close(10)
    return out


def _udp(nic, tap, ns: str, size: int, count: int) -> dict:
    from .host.stack_host import StackHost, StackHostTimeout

    host = StackHost(nic, tap, addr4=f"{_HETNIC4}/24", apps=False, seed=1)
    try:
        with in_netns(ns):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sink.bind((_KERNEL4, _UDP_SINK))
        echo.bind((_KERNEL4, _UDP_ECHO))
        sink.settimeout(1.0)
        echo.settimeout(0.2)
        got = {"n": 0, "total": 0, "first": None, "last": None}
        stop, stop_echo = threading.Event(), threading.Event()

        def receive():
            while True:
                try:
                    data = sink.recv(65536)
                except TimeoutError:
                    if got["n"] and stop.is_set():
                        return
                    continue
                now = time.perf_counter()
                if got["first"] is None:
                    got["first"] = now
                else:
                    got["n"] += len(data)       # the bytes after the first datagram
                got["last"] = now
                got["total"] += len(data)

        def echoer():
            while not stop_echo.is_set():
                try:
                    data, addr = echo.recvfrom(65536)
                except TimeoutError:
                    continue
                echo.sendto(data, addr)

        rx = threading.Thread(target=receive, daemon=True)
        ex = threading.Thread(target=echoer, daemon=True)
        rx.start()
        ex.start()
        stack = host.stacks["throughput"]
        s = stack.udp_socket()
        payload = os.urandom(_UDP_PAYLOAD)
        datagrams = size // _UDP_PAYLOAD
        state = {"sent": 0}

        def blast() -> bool:
            # As many datagrams per step as a 64-frame TX batch, so the stack never queues
            # more than the NIC drains.
            for _ in range(min(64, datagrams - state["sent"])):
                s.sendto(payload, (_KERNEL4, _UDP_SINK))
                state["sent"] += 1
            return state["sent"] >= datagrams

        host.run(until=blast, timeout=300)
        host.run(until=lambda: not host.bridge.busy, timeout=30)
        stop.set()
        rx.join(10)
        s.close()
        span = (got["last"] - got["first"]) if got["first"] else 0.0
        goodput = got["n"] * 8 / span / 1e6 if span > 0 else 0.0
        # Request/response from the low-delay instance.
        c = host.stacks["low-delay"].udp_socket()
        request = bytes(range(64))
        samples = []
        lost = 0
        for _ in range(count):
            t0 = time.perf_counter()
            c.sendto(request, (_KERNEL4, _UDP_ECHO))
            reply: list = []
            try:
                host.run(until=lambda: _take(c, reply), timeout=1.0)
            except StackHostTimeout:
                lost += 1
                continue
            samples.append((time.perf_counter() - t0) * 1e6)
        c.close()
        stop_echo.set()
        ex.join(5)
        sink.close()
        echo.close()
        return {"goodput_mbps": round(goodput, 2), "bytes_sent": datagrams * _UDP_PAYLOAD,
                "bytes_received": got["total"],
                "rr_latency_us": {"p50": round(percentile(samples, 0.5), 1) if samples else None,
                                  "p99": round(percentile(samples, 0.99), 1) if samples else None,
                                  "samples": len(samples), "lost": lost}}
    finally:
        host.close()


def _take(sock, into: list) -> bool:
    got = sock.recvfrom()
    if got is not None:
        into.append(got)
    return bool(into)


def bench_ncp(size: int = 4 * 1024 * 1024, rr_count: int = 200,
              faults: str = DEFAULT_FAULTS, rounds: int = 3) -> dict:
    """Every figure of ``hetnic bench ncp`` as one dict (see the module docstring).

    UDP and NCP goodput are measured ``rounds`` times, alternately (a fresh simulated NIC
    for each, the same TAP), so that a change in the machine's load between them does not
    decide the ratio; the figures are the medians, each round's beside them. The latency
    rounds run in the first round, the restart in the last."""
    out: dict = {"sizes": {"bytes": size, "rr_rounds": rr_count, "ncp_payload": MAX_PAYLOAD,
                           "udp_payload": _UDP_PAYLOAD, "rounds": rounds}, "faults": faults,
                 "loadavg_before": _loadavg()}
    reason = netns_unavailable()
    if reason is not None:
        out.update(udp=None, ncp=None, ncp_lossy=None, ncp_restart=None, skipped=reason)
        return out
    from .host.nic import Nic

    udp_runs, ncp_runs = [], []
    with netns("hn-ncp-bench") as ns, \
            tap_in_netns(ns, "tap0", f"{_KERNEL4}/24", None) as tap:
        for i in range(rounds):
            with Nic.open("sim", width=64, rx_queues=8) as nic:
                udp_runs.append(_udp(nic, tap, ns, size, rr_count if i == 0 else 0))
            with Nic.open("sim", width=64, rx_queues=8) as nic:
                path = TapPath(nic, tap, ns, None)
                try:
                    ncp_runs.append(_transfer(path, size))
                    if i == 0:
                        ncp_runs[0]["rr_latency_us"] = _ncp_rr(path, rr_count)
                    if i == rounds - 1:
                        out["ncp_restart"] = _restart(path, size)
                finally:
                    path.close()
    udp_gp = [r["goodput_mbps"] for r in udp_runs]
    ncp_gp = [r["goodput_mbps"] for r in ncp_runs]
    out["udp"] = {"goodput_mbps": _median(udp_gp), "goodput_mbps_rounds": udp_gp,
                  "rr_latency_us": udp_runs[0]["rr_latency_us"],
                  "bytes_sent": udp_runs[0]["bytes_sent"],
                  "bytes_received_rounds": [r["bytes_received"] for r in udp_runs]}
    out["ncp"] = dict(ncp_runs[0], goodput_mbps=_median(ncp_gp), goodput_mbps_rounds=ncp_gp,
                      goodput_mbps_from_send=_median([r["goodput_mbps_from_send"]
                                                      for r in ncp_runs]),
                      byte_exact=all(r["byte_exact"] for r in ncp_runs))
    with tap_path(faults, prefix="hn-ncp-bench") as lossy:
        out["ncp_lossy"] = _transfer(lossy, size)
    out["skipped"] = None
    udp, ncp = out["udp"]["goodput_mbps"], out["ncp"]["goodput_mbps"]
    out["ncp_vs_udp_goodput"] = round(ncp / udp, 3) if udp else None
    out["ncp_vs_udp_goodput_rounds"] = [round(n / u, 3) if u else None
                                        for n, u in zip(ncp_gp, udp_gp)]
    out["must_reach"] = {
        "ncp_byte_exact_under_loss": out["ncp_lossy"]["byte_exact"],
        "ncp_vs_udp_goodput_min": 0.8,
        "ncp_vs_udp_goodput_met": bool(udp) and ncp / udp >= 0.8,
        "restart_detected_max_s": 1.0,
        "restart_detected_met": out["ncp_restart"]["detected_s"] <= 1.0
        and out["ncp_restart"]["session_back"],
    }
    out["loadavg_after"] = _loadavg()
    return out


def _median(values: list[float]) -> float:
    return round(percentile(values, 0.5), 2)


def _loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]
