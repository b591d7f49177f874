"""The software wire of the W/N benchmark: RSS steering, the echo W, the request frames.

:class:`RssWire` plays the NIC's receive side for a :class:`~hetnic.host.wn_host.WnHost`
whose N's run on wire rings (tests use it too): each frame to the host is steered to an N by
the Toeplitz hash of its IPv4 TCP/UDP 4-tuple (the software model
:mod:`hetnic.sim.model.toeplitz`, the NIC's default key) and a RETA whose entries name N's,
the way the NIC's RSS stage picks a queue (the hash's low bits index the table). Frames the
N's send are collected from their out rings. :meth:`RssWire.repoint` re-points a dead N's
entries. :func:`echo_w` is the W's work in every W/N run (echo every byte, close at EOF).

The rest serves :func:`hetnic.bench_wn.requests_per_s`: the server's and the client's stack
configurations, the client ports RSS brings to each N (:func:`ports_per_n`), the request
frames generated ahead (:func:`request_frames`) and the byte-exact check of the responses
(:func:`check_responses`).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import numpy as np

from .host.wn import repoint_reta
from .protocol import MS_RSS_DEFAULT_KEY
from .regs import DEFAULT_PARAMS
from .sim.model.toeplitz import toeplitz, toeplitz_batch

if TYPE_CHECKING:
    from .host.stack.instance import InstanceConfig
    from .host.stack.stack import Stack
    from .host.wn_host import WnHost

__all__ = ["RssWire", "rss_index", "echo_w", "server_config", "client_stack", "pump",
           "ports_per_n", "request_frames", "payload_len", "check_responses", "PORT",
           "REQUEST", "MTU", "CLIENT_MAC", "SERVER_MAC", "CLIENT_IP", "SERVER_IP"]

_ETH_IPV4 = b"\x08\x00"
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
CLIENT_IP, SERVER_IP = "198.18.0.1", "198.18.0.2"
#: The echo service's port, a request's bytes, the N's MTU in the requests/s runs.
PORT, REQUEST, MTU = 7, 64, 960
#: Chunks in a turn of :func:`echo_w` after which it does not sleep before the next.
_LARGE_BATCH = 512


def _tuple_bytes(frame: bytes) -> bytes | None:
    """An IPv4 TCP/UDP frame's hash input (addresses, ports; big-endian), or None."""
    if len(frame) < 38 or frame[12:14] != _ETH_IPV4 or frame[23] not in (6, 17):
        return None
    ihl = (frame[14] & 15) * 4
    ports = 14 + ihl
    return frame[26:34] + frame[ports:ports + 4]


def rss_index(frames: list[bytes], reta_size: int, key: bytes = MS_RSS_DEFAULT_KEY
              ) -> np.ndarray:
    """The RETA index of each frame (the hash's low bits; 0 for a frame with no 4-tuple)."""
    rows = [_tuple_bytes(f) or bytes(12) for f in frames]
    if not rows:
        return np.zeros(0, dtype=np.int64)
    hashes = toeplitz_batch(key, np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 12))
    return (hashes & (reta_size - 1)).astype(np.int64)


class RssWire:
    """Frames to and from the N's of ``host``, steered by RSS.

    Parameters
    ----------
    host : WnHost
        A host built with ``wire=...``.
    reta : list[int] or None
        RETA entries, each an N index; None spreads the NIC's RETA size round robin over
        the N's.

    Members
    -------
    reta : list[int]
    steered : list[int]
        Frames pushed per N.
    dropped : int
        Frames not pushed (the N's in ring full).
    """

    def __init__(self, host: "WnHost", reta: list[int] | None = None,
                 key: bytes = MS_RSS_DEFAULT_KEY):
        n_count = host.layout.n_count
        size = DEFAULT_PARAMS["reta_size"]
        self.host = host
        self.key = key
        self.reta = list(reta) if reta is not None else [i % n_count for i in range(size)]
        self.steered = [0] * n_count
        self.dropped = 0
        self._in = [host.wire_in(n) for n in range(n_count)]
        self._out = [host.wire_out(n) for n in range(n_count)]

    def steer(self, frame: bytes) -> int:
        """The N that gets ``frame``."""
        data = _tuple_bytes(frame)
        h = toeplitz(self.key, data) if data is not None else 0
        return self.reta[h & (len(self.reta) - 1)]

    def send(self, frames: list[bytes]) -> None:
        """Push ``frames`` (to the host) to their N's rings."""
        for frame in frames:
            n = self.steer(frame)
            if self._in[n].push(frame):
                self.steered[n] += 1
            else:
                self.dropped += 1

    def receive(self, max_frames: int = 256) -> list[bytes]:
        """Frames the N's sent (each N's oldest first)."""
        out: list[bytes] = []
        for ring in self._out:
            out += [data for data, _ in ring.pop_many(max_frames)]
        return out

    def repoint(self, dead: set[int]) -> None:
        """Re-point the RETA entries of the ``dead`` N's to the living ones (one commit: the
        new table replaces the old at once)."""
        live = sorted(set(range(len(self._in))) - set(dead))
        self.reta = repoint_reta(self.reta, dead, live)


def echo_w(w, port: int, exit_after: int | None = None, nap: float = 0.002,
           idle_nap: float = 0.004) -> int:
    """A W's work: listen on ``port`` (shared with the other W's), accept what its N's hand
    it, send every byte received back, close a connection at the peer's EOF (or failure);
    until the host's stop word, or until it echoed ``exit_after`` chunks (it then returns:
    the W exits with its connections still open, and their N's close them). Returns the
    chunks echoed.

    Each turn takes everything waiting at once (:meth:`WThread.recv_many`) and queues the
    answers in one batch (:meth:`WThread.send_many`), then sleeps ``nap`` seconds unless it
    took a large batch: the cores stay with the N's, and each turn (a sleep costs a few
    microseconds of CPU) finds a batch; a request waits up to ``nap`` for its answer. Idle
    turns sleep longer, up to ``idle_nap`` (the first request after a quiet spell waits up
    to that)."""
    import time as _time
    sleep = _time.sleep
    w.listen(port)
    w.set_ready()
    served = 0
    wait = nap
    while not w.stopping:
        items = w.recv_many()
        accepted = False
        while w.try_accept(port, poll=False) is not None:
            accepted = True
        if items:
            replies = [item for item in items if item[1]]
            if replies:
                w.send_many(replies)
                served += len(replies)
            for fd, data in items:
                if not data:
                    w.close(fd)
            if exit_after is not None and served >= exit_after:
                return served
            if len(items) >= _LARGE_BATCH:
                continue
            wait = nap
        elif accepted:
            continue
        else:
            wait = min(wait * 1.5, idle_nap)
        sleep(wait)
    return served


# ---------------------------------------------------------------------------------------------
# the requests/s run's stacks and frames

def server_config(name: str) -> "InstanceConfig":
    """An N's stack configuration in the requests/s run (see the comment inside)."""
    from .host.stack.instance import InstanceConfig
    # Nagle off: each response goes at once. The request frames, generated before any
    # response exists, cannot acknowledge a response (an ACK of data not yet sent makes the
    # N drop the segment, RFC 9293 3.10.7.4), so the responses stay unacknowledged during
    # the run: an initial window of 1000 segments and a 5 s minimum RTO keep the sender from
    # stalling or retransmitting (a run's responses per connection fit the client's 64 KiB
    # window). The receive buffer is what the unscaled window can announce: a larger one
    # makes every read send a window update (host.stack.tcp recv compares the free space
    # with an announced window that cannot grow past 65535).
    return InstanceConfig(name=name, nagle=False, delayed_ack=True, delayed_ack_timeout=0.2,
                          min_rto=5.0, max_rto=60.0, initial_window=1000, backlog=4096,
                          max_connections=8192, sndbuf=1 << 20, rcvbuf=65535,
                          buffer_memory=1 << 34, poll_batch=64)


def client_stack() -> "Stack":
    """The client's stack (in the benchmark's process): no window scaling, no SACK."""
    from .host.stack.instance import InstanceConfig
    from .host.stack.stack import Stack
    cfg = InstanceConfig(name="client", nagle=False, delayed_ack=False, timestamps=False,
                         sack=False, window_scale=False, max_connections=16384,
                         buffer_memory=1 << 34, backlog=4096)
    return Stack(cfg, mac=CLIENT_MAC, ipv4=[(CLIENT_IP, 24)])


def pump(client: "Stack", wire: RssWire) -> None:
    """One exchange of the client stack with the wire: the N's frames in, its frames out."""
    import time as _time
    now = _time.monotonic()
    for frame in wire.receive():
        client.receive(frame, now)
    out = client.poll(now)
    if out:
        wire.send(out)


def ports_per_n(wire: RssWire, n_count: int, per_n: int, first: int = 20000) -> list[int]:
    """Client ports whose connections RSS brings to each N, ``per_n`` each."""
    src = ipaddress.ip_address(CLIENT_IP).packed
    dst = ipaddress.ip_address(SERVER_IP).packed
    counts = [0] * n_count
    ports = []
    port = first
    while min(counts) < per_n:
        data = src + dst + port.to_bytes(2, "big") + PORT.to_bytes(2, "big")
        n = wire.reta[toeplitz(wire.key, data) & (len(wire.reta) - 1)]
        if counts[n] < per_n:
            counts[n] += 1
            ports.append(port)
        port += 1
    return ports


def request_frames(socks, rounds: int) -> tuple[list[bytes], dict]:
    """Every request frame, round by round over the client's connected ``socks``, and what
    each connection's responses must be (``{client port: (first response seq, bytes)}``)."""
    from .host.stack.ethernet import eth_header
    from .host.stack.ipv4 import build_ipv4_header
    from .host.stack.tcp_segment import build_tcp
    src = ipaddress.ip_address(CLIENT_IP).packed
    dst = ipaddress.ip_address(SERVER_IP).packed
    eth = eth_header(SERVER_MAC, CLIENT_MAC, 0x0800)
    frames = []
    expect = {}
    state = []
    for s in socks:
        info = s.info()
        sport = s.getsockname()[1]
        state.append((sport, info["snd_nxt"], info["rcv_nxt"]))
        expect[sport] = (info["rcv_nxt"], bytearray())
    for r in range(rounds):
        for sport, seq, ack in state:
            payload = (b"%08d %06d " % (sport, r)).ljust(REQUEST, b"r")
            tcp = build_tcp(src, dst, sport, PORT, (seq + REQUEST * r) & 0xFFFFFFFF, ack,
                            0x18, 65535, payload=payload)
            frames.append(eth + build_ipv4_header(src, dst, 6, len(tcp), r & 0xFFFF) + tcp)
            expect[sport][1].extend(payload)
    return frames, expect


def payload_len(frame: bytes) -> int:
    """The TCP payload bytes of an IPv4 TCP frame (0 for anything else)."""
    if len(frame) < 54 or frame[23] != 6:
        return 0
    t = 14 + (frame[14] & 15) * 4
    return int.from_bytes(frame[16:18], "big") - (t - 14) - (frame[t + 12] >> 4) * 4


def check_responses(frames: list[bytes], expect: dict) -> tuple[int, int]:
    """(responses byte-exact, bytes that differ or are missing) of the N's frames."""
    got: dict[int, dict[int, bytes]] = {port: {} for port in expect}
    for f in frames:
        if len(f) < 54 or f[12:14] != _ETH_IPV4 or f[23] != 6:
            continue
        ihl = (f[14] & 15) * 4
        t = 14 + ihl
        total = int.from_bytes(f[16:18], "big")
        off = (f[t + 12] >> 4) * 4
        payload = f[t + off:14 + total]
        dport = int.from_bytes(f[t + 2:t + 4], "big")
        if payload and dport in got:
            seq = int.from_bytes(f[t + 4:t + 8], "big")
            got[dport][seq] = payload
    exact = bad = 0
    for port, (base, want) in expect.items():
        stream = bytearray()
        for seq in sorted(got[port], key=lambda s: (s - base) & 0xFFFFFFFF):
            rel = (seq - base) & 0xFFFFFFFF
            if rel == len(stream):
                stream += got[port][seq]
        exact += sum(1 for k in range(0, len(want), REQUEST)
                     if stream[k:k + REQUEST] == want[k:k + REQUEST])
        bad += max(0, len(want) - len(stream))
    return exact, bad
