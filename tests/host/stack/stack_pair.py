"""Two stacks wired back to back on a simulated clock, for the stack's API tests.

``Pair`` moves frames from ``a.poll`` to ``b.receive`` and back, and advances its clock to the
next timer deadline when nothing is in flight. A ``drop`` filter loses chosen frames (a peer
that vanishes); ``trace`` records every frame with its direction (``"ab"`` or ``"ba"``).
Nothing here sleeps: time is a float the pair owns.
"""

from __future__ import annotations

from typing import Callable

from hetnic.host.stack.instance import PROFILES, InstanceConfig
from hetnic.host.stack.stack import Stack

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
IP4_A, IP4_B = "198.18.0.1", "198.18.0.2"
IP6_A, IP6_B = "2001:db8::a", "2001:db8::b"

#: Small and quick: short TIME-WAIT and RTOs so a test's simulated time stays short.
QUICK = PROFILES["low-delay"].replace(name="quick", time_wait=1.0, max_retries=4,
                                      syn_retries=3, max_rto=2.0)


class Pair:
    """Stacks ``a`` (198.18.0.1, 2001:db8::a) and ``b`` (198.18.0.2, 2001:db8::b) on one
    link."""

    def __init__(self, config_a: InstanceConfig = QUICK, config_b: InstanceConfig | None = None,
                 *, seed: int = 0, mtu: int = 1500):
        self.a = Stack(config_a, mac=MAC_A, ipv4=[(IP4_A, 24)], ipv6=[(IP6_A, 64)], mtu=mtu,
                       seed=seed)
        self.b = Stack(config_b or config_a, mac=MAC_B, ipv4=[(IP4_B, 24)],
                       ipv6=[(IP6_B, 64)], mtu=mtu, seed=seed + 1)
        self.now = 0.0
        self.drop: Callable[[str, bytes], bool] | None = None
        self.trace: list[tuple[str, bytes]] = []
        self.tracing = False
        self.listeners: dict = {}

    def exchange(self) -> int:
        """Move the frames both stacks have now; returns how many moved."""
        now = self.now
        moved = 0
        for direction, src, dst in (("ab", self.a, self.b), ("ba", self.b, self.a)):
            for frame in src.poll(now):
                moved += 1
                if self.tracing:
                    self.trace.append((direction, frame))
                if self.drop is not None and self.drop(direction, frame):
                    continue
                dst.receive(frame, now)
        return moved

    def next_deadline(self) -> float | None:
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        return min(times) if times else None

    def run(self, until: Callable[[], bool] | None = None, *, timeout: float = 30.0,
            max_steps: int = 200_000) -> bool:
        """Exchange frames and advance the clock until ``until()`` is true (returns True) or,
        without ``until``, until nothing is in flight and no timer is due before ``timeout``
        simulated seconds from now. Returns False when the time or steps run out first."""
        end = self.now + timeout
        for _ in range(max_steps):
            if until is not None and until():
                return True
            if self.exchange():
                continue
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                if until is None:
                    return True
                return bool(until())
            self.now = max(self.now, deadline)
        raise AssertionError(f"the pair did not settle in {max_steps} steps")

    def connect(self, family: int = 4, port: int = 7):
        """Listen on ``b`` (once per port), connect from ``a``, run the handshake; returns
        ``(listener, client, server)``."""
        listener = self.listeners.get(port)
        if listener is None or listener.closed:
            listener = self.listeners[port] = self.b.listen(port)
        client = self.a.connect(IP4_B if family == 4 else IP6_B, port)
        server = []
        assert self.run(lambda: client.connected and (server or _take(listener, server)),
                        timeout=10.0)
        return listener, client, server[0]


def _take(listener, out: list) -> bool:
    sock = listener.accept()
    if sock is not None:
        out.append(sock)
    return bool(out)


def pump(pair: Pair, sender, receiver, data: bytes, *, timeout: float = 60.0) -> bytes:
    """Send ``data`` on ``sender`` and read it on ``receiver``; returns what was read."""
    sent = 0
    got = bytearray()

    def done() -> bool:
        nonlocal sent
        while sent < len(data):
            n = sender.send(data[sent:sent + 65536])
            if not n:
                break
            sent += n
        while (chunk := receiver.recv(1 << 20)):
            got.extend(chunk)
        return len(got) >= len(data)

    assert pair.run(done, timeout=timeout), f"moved {len(got)} of {len(data)} bytes"
    return bytes(got)
