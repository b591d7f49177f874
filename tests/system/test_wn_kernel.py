"""W/N threads with shadow listeners on the shared simulated NIC, the Linux kernel as the
peer (issue #15, Deliver 5): two N processes on RX/TX queues 0 and 1 (the RETA alternates
them), two echo W processes, this process the NIC process bridging the NIC to a TAP in a
network namespace (198.18.0.1/24 kernel, 198.18.0.2/24 the W/N stack)."""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from hetnic.bench_wn import echo_w
from hetnic.host.nic import Nic
from hetnic.host.wn_nic import WnNic
from kit.netns import in_netns, netns, require_netns, tap_in_netns

pytestmark = pytest.mark.timeout(300)

K4, H4, PORT = "198.18.0.1", "198.18.0.2", 7


def _our_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if f"-{os.getpid()}-" in n}


def _kernel(wn: WnNic, fn, timeout: float = 120.0):
    """Run ``fn()`` (kernel sockets) on a thread while the NIC process runs; its result."""
    box: dict = {}

    def work():
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        wn.run(until=lambda: not thread.is_alive(), timeout=timeout)
    finally:
        thread.join(5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _echo_clients(ns: str, count: int, seed: int, parallel: int = 10) -> list[bytes]:
    """``count`` connections from the kernel, ``parallel`` at a time, each sending a random
    payload and reading it back; the payloads received, in order."""
    rng = random.Random(seed)
    payloads = [rng.randbytes(rng.randint(1, 3000)) for _ in range(count)]
    got: list[bytes] = [b""] * count

    def one(i: int) -> None:
        with in_netns(ns):
            s = socket.create_connection((H4, PORT), timeout=60)
        with s:
            s.sendall(payloads[i])
            buf = b""
            while len(buf) < len(payloads[i]):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            got[i] = buf

    def run() -> list[bytes]:
        for start in range(0, count, parallel):
            threads = [threading.Thread(target=one, args=(i,))
                       for i in range(start, min(count, start + parallel))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        return got
    return payloads, run


def test_kernel_clients_echoed_through_the_nic_over_both_ns():
    require_netns()
    seed = 1515
    print("seed", seed)
    before = _our_segments()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{K4}/24", None) as tap, \
            Nic.open("sim", width=64, rx_queues=2, shared=True) as nic:
        wn = WnNic(nic, tap, n_count=2, w_count=2, addr4=(H4, 24), log=lambda text: None)
        try:
            wn.start_w(0, echo_w, PORT)
            wn.start_w(1, echo_w, PORT)
            wn.wait_ready()
            payloads, run = _echo_clients(ns, 100, seed)
            got = _kernel(wn, run, timeout=240)
            assert sum(g == p for g, p in zip(got, payloads)) == len(payloads)
            accepts = [c["accepts"] for c in wn.counters()]
            assert sum(accepts) == 100 and min(accepts) > 0, accepts
        finally:
            wn.close()
    assert _our_segments() == before


def test_n_death_repoints_the_reta_in_one_commit_and_new_connections_succeed():
    require_netns()
    seed = 1516
    print("seed", seed)
    before = _our_segments()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{K4}/24", None) as tap, \
            Nic.open("sim", width=64, rx_queues=2, shared=True) as nic:
        wn = WnNic(nic, tap, n_count=2, w_count=1, addr4=(H4, 24), log=lambda text: None)
        try:
            wn.start_w(0, echo_w, PORT)
            wn.wait_ready()
            # Connections held open on both N's.
            held = []

            def open_held():
                for _ in range(16):
                    with in_netns(ns):
                        held.append(socket.create_connection((H4, PORT), timeout=30))
                return True
            _kernel(wn, open_held)
            wn.run(until=lambda: len([r for r in wn.dump() if r["state"] == "OPEN"]) == 16,
                   timeout=60)
            on_n1 = sum(r["n"] == 1 for r in wn.dump())
            assert 0 < on_n1 < 16
            commits = wn.commits
            n1 = next(c for c in wn.owner.children if c.name == "wn-n1")
            n1.process.kill()
            wn.run(until=lambda: wn.dead == {1}, timeout=60)
            assert wn.commits == commits + 1
            assert set(nic.rss.table) == {0}
            assert wn.lost == on_n1
            assert sum(r["state"] == "LOST" for r in wn.dump()) == on_n1
            payloads, run = _echo_clients(ns, 20, seed)
            got = _kernel(wn, run)
            assert got == payloads
            assert all(r["n"] == 0 for r in wn.dump() if r["state"] == "OPEN")
        finally:
            for s in held:
                s.close()
            wn.close()
    assert _our_segments() == before
