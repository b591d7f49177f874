"""``hetnic bench tunnel``: TCP goodput through the tunnel adapter's tunnels beside plain TCP
on the same path, in the same run.

The path: the Linux kernel in a namespace of its own <-> TAP <-> the simulated NIC <-> the
stack instances (:class:`~hetnic.host.stack_host.StackHost`, in this process) with the tunnel
adapter carrying three tunnels: VXLAN VNI 10 over IPv4, VXLAN VNI 11 over IPv6, VXLAN-GPE VNI
12 over IPv4 (the kernel's own VXLAN and VXLAN-GPE devices at the far end,
:mod:`hetnic.host.tunnel_kernel`). A sender process in the namespace writes ``size`` bytes per
flow, kernel -> hetnic:

* ``plain``: one flow to the throughput instance's address (no tunnel), then one flow
  through each tunnel alone (``single``);
* ``concurrent``: three plain flows at once, and the three tunnels at once (one flow each),
  ``rounds`` times (default 3), alternating which goes first.

Goodput is measured at the receiver, from the accepted connection to its last byte; every
byte is checked (SHA-256). ``ratio`` is a tunnel's goodput over plain TCP's in the same
arrangement (alone: over the single plain flow; at once: the tunnel's median over the
rounds, over the median of the rounds' mean plain flow; each round's ratios are there too:
three TCP flows at once share the path unevenly, so one round is a noisy sample). ``leaked_packets`` counts, over the concurrent phase, packets that reached a
tunnel's inner stack from outside its inner prefix (every tunnel stack's receive is watched)
plus the adapter's unknown-VNI / unknown-remote drops. Without root or ``/dev/net/tun``
``skipped`` says why and there are no figures.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import statistics
import subprocess
import sys
import time

from .host.netns import netns, netns_unavailable, tap_in_netns

__all__ = ["bench_tunnel"]

_MiB = 1024 * 1024
_K4, _H4, _K6, _H6 = "198.18.0.1", "198.18.0.2", "2001:db8::1", "2001:db8::2"
_PORT = 5301
_MUST_REACH = 0.7

_SENDER = r"""
import socket, sys, threading, time
targets = [(h, int(p)) for h, p in (t.rsplit(":", 1) for t in sys.argv[2:])]
size = int(sys.argv[1])
block = bytes(range(256)) * 4096          # 1 MiB, the pattern the receiver checks
def send(target):
    c = socket.create_connection(target, timeout=120)
    left = size
    while left:
        k = min(left, len(block))
        c.sendall(block[:k])
        left -= k
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
ts = [threading.Thread(target=send, args=(t,)) for t in targets]
for t in ts: t.start()
for t in ts: t.join(300)
"""


def _expected(size: int) -> bytes:
    block = bytes(range(256)) * 4096
    h = hashlib.sha256()
    left = size
    while left:
        h.update(block[:min(left, len(block))])
        left -= min(left, len(block))
    return h.digest()


def _flows(host, ns: str, targets: list[tuple[str, object]], size: int) -> list[float]:
    """Send ``size`` bytes to each ``(address, listener)`` at once from the namespace;
    each flow's goodput (Mbit/s) at the receiver."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SENDER,
                             str(size)] + [f"{addr}:{_PORT}" for addr, _ in targets],
                            stderr=subprocess.PIPE)
    state = [{"conn": None, "t0": 0.0, "t1": 0.0, "n": 0, "h": hashlib.sha256(),
              "eof": False} for _ in targets]

    def done() -> bool:
        for (addr, listener), s in zip(targets, state):
            if s["conn"] is None:
                s["conn"] = listener.accept()
                if s["conn"] is None:
                    continue
                s["t0"] = time.perf_counter()
            conn = s["conn"]
            while not s["eof"] and (data := conn.recv(1 << 20)) is not None:
                if not data:
                    s["eof"] = True
                    s["t1"] = time.perf_counter()
                    conn.close()
                    break
                s["h"].update(data)
                s["n"] += len(data)
        return all(s["eof"] for s in state)
    try:
        host.run(until=done, timeout=600)
        host.run(until=lambda: proc.poll() is not None, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    expected = _expected(size)
    for (addr, _), s in zip(targets, state):
        if s["n"] != size or s["h"].digest() != expected:
            raise RuntimeError(f"bench tunnel: {addr}: {s['n']} bytes received, not the "
                               f"{size} sent, or not the same bytes")
    return [round(s["n"] * 8 / (s["t1"] - s["t0"]) / 1e6, 1) for s in state]


def bench_tunnel(size: int = 8 * _MiB, rounds: int = 3) -> dict:
    """The figures of the module's docstring, one dict."""
    reason = netns_unavailable()
    out: dict = {"size_bytes": size, "path": "kernel <-> TAP <-> simulated NIC <-> stack "
                 "(StackHost, one process)", "must_reach_ratio": _MUST_REACH,
                 "loadavg": _loadavg()}
    if reason is not None:
        out["skipped"] = reason
        return out
    from .host.nic import Nic
    from .host.stack_host import StackHost
    from .host.tunnel_kernel import KernelTunnel, add_kernel_tunnels
    kernel = [KernelTunnel("vx10", "vxlan", 10, _K4, _H4, "198.19.1"),
              KernelTunnel("vx11", "vxlan", 11, _K6, _H6, "198.19.2"),
              KernelTunnel("gpe0", "vxlan-gpe", 12, _K4, _H4, "198.19.3")]
    with netns("hn-tunnels-bench") as ns, \
            tap_in_netns(ns, "tap0", f"{_K4}/24", f"{_K6}/64") as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        add_kernel_tunnels(ns, kernel)
        host = StackHost(nic, tap, addr4=f"{_H4}/24", addr6=f"{_H6}/64", apps=False, seed=3,
                         tunnels=[t.spec() for t in kernel])
        try:
            adapter = host.adapter
            leaks = _watch(adapter)
            plain = host.listen("throughput", _PORT, owner="bench", backlog=8)
            inner = [t.stack.listen(_PORT) for t in adapter.tunnels]
            names = [t.name for t in adapter.tunnels]
            single_plain = _flows(host, ns, [(_H4, plain)], size)[0]
            single = {name: _flows(host, ns, [(k.base + ".2", lis)], size)[0]
                      for name, k, lis in zip(names, kernel, inner)}
            before = dict(leaks)
            plain_rounds: list[list[float]] = []
            tunnel_rounds: list[dict[str, float]] = []
            for r in range(rounds):
                # Alternate which goes first, so that a drift of the machine hits both.
                for kind in (("plain", "tunnels") if r % 2 == 0 else ("tunnels", "plain")):
                    if kind == "plain":
                        plain_rounds.append(_flows(host, ns, [(_H4, plain)] * 3, size))
                    else:
                        tunnel_rounds.append(dict(zip(names, _flows(
                            host, ns, [(k.base + ".2", lis) for k, lis in zip(kernel, inner)],
                            size))))
            stats = adapter.tunnel_stats()
            leaked = (leaks["foreign"] - before["foreign"]
                      + sum(stats["drops"].values())
                      + sum(t["drops"].get("unknown_vni", 0) for t in stats["tunnels"].values()))
        finally:
            host.close()
    mean_plain = statistics.median(sum(p) / len(p) for p in plain_rounds)
    at_once = {n: statistics.median(t[n] for t in tunnel_rounds) for n in names}
    out.update({
        "plain_tcp_mbps": single_plain,
        "tunnel_tcp_mbps": single,
        "tunnel_vs_plain": {n: round(v / single_plain, 3) for n, v in single.items()},
        "concurrent_rounds": rounds,
        "concurrent_plain_tcp_mbps_rounds": plain_rounds,
        "concurrent_tunnel_tcp_mbps_rounds": tunnel_rounds,
        "concurrent_plain_tcp_mbps_mean": round(mean_plain, 2),
        "concurrent_tunnel_tcp_mbps": at_once,
        "concurrent_tunnel_vs_plain": {n: round(v / mean_plain, 3) for n, v in at_once.items()},
        "concurrent_tunnel_vs_plain_rounds": [
            {n: round(t[n] / (sum(p) / len(p)), 3) for n in names}
            for p, t in zip(plain_rounds, tunnel_rounds)],
        "leaked_packets": leaked,
        "tunnel_drops": {n: t["drops"] for n, t in stats["tunnels"].items()},
        "loadavg_after": _loadavg(),
    })
    out["met"] = (leaked == 0 and len(at_once) >= 3
                  and all(r >= _MUST_REACH for r in out["concurrent_tunnel_vs_plain"].values()))
    return out


def _watch(adapter) -> dict:
    """Count packets a tunnel's inner stack receives from outside its inner prefix."""
    leaks = {"foreign": 0}
    for tunnel in adapter.tunnels:
        stack, net = tunnel.stack, tunnel.network
        receive = stack.receive

        def watched(frame, now, receive=receive, net=net):
            if frame[12:14] == b"\x08\x00" and len(frame) >= 34 and \
                    ipaddress.IPv4Address(bytes(frame[26:30])) not in net:
                leaks["foreign"] += 1
            receive(frame, now)
        stack.receive = watched
    return leaks


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


if __name__ == "__main__":          # pragma: no cover
    import json
    print(json.dumps(bench_tunnel(int(os.environ.get("SIZE", 8 * _MiB)))))
