"""The W/N benchmark (the ``wn`` part of ``hetnic bench host``) and its software wire.

:func:`bench_wn` returns one dict: requests/s with N = 1 and N = 2 stack processes on
request frames generated ahead into shared-memory rings (:func:`requests_per_s`), the
accept spread over the N's for 10,000 kernel connections through the shared simulated NIC
(:func:`accept_spread`), and the connections lost when a W exits mid-run
(:func:`w_exit_run`).

:class:`RssWire` plays the NIC's receive side for a :class:`~hetnic.host.wn_host.WnHost`
whose N's run on wire rings (tests use it too): each frame to the host is steered to an N by
the Toeplitz hash of its IPv4 TCP/UDP 4-tuple (the software model
:mod:`hetnic.sim.model.toeplitz`, the NIC's default key) and a RETA whose entries name N's,
the way the NIC's RSS stage picks a queue (the hash's low bits index the table). Frames the
N's send are collected from their out rings. :meth:`RssWire.repoint` re-points a dead N's
entries. :func:`echo_w` is the W's work in all three (echo every byte, close at EOF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .host.wn import repoint_reta
from .host.wn_host import WnHost
from .regs import DEFAULT_PARAMS
from .protocol import MS_RSS_DEFAULT_KEY
from .sim.model.toeplitz import toeplitz, toeplitz_batch

if TYPE_CHECKING:
    from .host.stack.instance import InstanceConfig

__all__ = ["RssWire", "rss_index", "echo_w", "requests_per_s", "w_exit_run", "accept_spread",
           "bench_wn"]

_ETH_IPV4 = b"\x08\x00"


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

    def __init__(self, host: WnHost, reta: list[int] | None = None,
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


def echo_w(w, port: int, exit_after: int | None = None, nap: float = 0.0005) -> int:
    """A W's work: listen on ``port`` (shared with the other W's), accept what its N's hand
    it, send every byte received back, close a connection at the peer's EOF (or failure);
    until the host's stop word, or until it echoed ``exit_after`` chunks (it then returns:
    the W exits with its connections still open, and their N's close them). Returns the
    chunks echoed.

    Each turn takes everything waiting at once (:meth:`WThread.recv_many`) and queues the
    answers in one batch (:meth:`WThread.send_many`); a turn with nothing to do sleeps
    ``nap`` seconds (the cores stay with the N's)."""
    import time as _time
    sleep = _time.sleep
    w.listen(port)
    w.set_ready()
    served = 0
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
        elif not accepted:
            sleep(nap)
    return served


# ---------------------------------------------------------------------------------------------
# requests/s on frames generated ahead

_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")
_CLIENT_IP, _SERVER_IP = "198.18.0.1", "198.18.0.2"
_REQUEST = 64
_MTU = 960


def _server_config(name: str) -> "InstanceConfig":
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


def _client_stack():
    from .host.stack.instance import InstanceConfig
    from .host.stack.stack import Stack
    cfg = InstanceConfig(name="client", nagle=False, delayed_ack=False, timestamps=False,
                         sack=False, window_scale=False, max_connections=16384,
                         buffer_memory=1 << 34, backlog=4096)
    return Stack(cfg, mac=_CLIENT_MAC, ipv4=[(_CLIENT_IP, 24)])


def _ports_per_n(wire: RssWire, n_count: int, per_n: int, first: int = 20000) -> list[int]:
    """Client ports whose connections RSS brings to each N, ``per_n`` each."""
    import ipaddress
    src = ipaddress.ip_address(_CLIENT_IP).packed
    dst = ipaddress.ip_address(_SERVER_IP).packed
    counts = [0] * n_count
    ports = []
    port = first
    while min(counts) < per_n:
        data = src + dst + port.to_bytes(2, "big") + (_PORT).to_bytes(2, "big")
        n = wire.reta[toeplitz(wire.key, data) & (len(wire.reta) - 1)]
        if counts[n] < per_n:
            counts[n] += 1
            ports.append(port)
        port += 1
    return ports


_PORT = 7


def _request_frames(socks, rounds: int) -> tuple[list[bytes], dict]:
    """Every request frame, round by round over the connections, and what each connection's
    responses must be."""
    import ipaddress
    from .host.stack.ethernet import eth_header
    from .host.stack.ipv4 import build_ipv4_header
    from .host.stack.tcp_segment import build_tcp
    src = ipaddress.ip_address(_CLIENT_IP).packed
    dst = ipaddress.ip_address(_SERVER_IP).packed
    eth = eth_header(_SERVER_MAC, _CLIENT_MAC, 0x0800)
    frames = []
    expect = {}
    state = []
    for i, s in enumerate(socks):
        info = s.info()
        sport = s.getsockname()[1]
        state.append((sport, info["snd_nxt"], info["rcv_nxt"]))
        expect[sport] = (info["rcv_nxt"], bytearray())
    for r in range(rounds):
        for i, (sport, seq, ack) in enumerate(state):
            payload = (b"%08d %06d " % (sport, r)).ljust(_REQUEST, b"r")
            tcp = build_tcp(src, dst, sport, _PORT, (seq + _REQUEST * r) & 0xFFFFFFFF,
                            ack,
                            0x18, 65535, payload=payload)
            frames.append(eth + build_ipv4_header(src, dst, 6, len(tcp), r & 0xFFFF) + tcp)
            expect[sport][1].extend(payload)
    return frames, expect


def _payload_len(frame: bytes) -> int:
    """The TCP payload bytes of an IPv4 TCP frame (0 for anything else)."""
    if len(frame) < 54 or frame[23] != 6:
        return 0
    t = 14 + (frame[14] & 15) * 4
    return int.from_bytes(frame[16:18], "big") - (t - 14) - (frame[t + 12] >> 4) * 4


def _check_responses(frames: list[bytes], expect: dict) -> tuple[int, int]:
    """(responses byte-exact, bytes that differ or are missing) of the N's frames."""
    got: dict[int, dict[int, bytes]] = {port: {} for port in expect}
    for f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
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
        exact += sum(1 for k in range(0, len(want), _REQUEST)
                     if stream[k:k + _REQUEST] == want[k:k + _REQUEST])
        bad += max(0, len(want) - len(stream))
    return exact, bad


def _pump(client, wire: RssWire) -> None:
    import time as _time
    now = _time.monotonic()
    for frame in wire.receive():
        client.receive(frame, now)
    out = client.poll(now)
    if out:
        wire.send(out)


def requests_per_s(n_count: int, *, w_count: int = 1, conns_per_n: int = 16,
                   rounds: int = 200, timeout: float = 120.0) -> dict:
    """Requests/s of ``n_count`` N's on request frames generated ahead into their wire
    rings (64-byte requests echoed by ``w_count`` echo W's); see :func:`bench_wn`.

    The request frames, written before any response exists, acknowledge no response (an
    ACK of data not yet sent makes the N drop the segment, RFC 9293 3.10.7.4); the N's
    instance has an initial window of 1000 segments and a 5 s minimum RTO instead, so its
    sender neither stalls nor retransmits during the run, and a connection's responses
    must fit the client's unscaled 64 KiB window: ``rounds`` at most 1023."""
    import time as _time
    from .host.wn_host import WnHost
    if not 1 <= rounds <= 65535 // _REQUEST:
        raise ValueError(f"rounds must be 1..{65535 // _REQUEST} (a connection's responses "
                         f"fit the client's 64 KiB window), not {rounds!r}")
    total = n_count * conns_per_n * rounds
    # A slot takes a whole frame. Out, the N's coalesce responses into segments up to the
    # MSS (an MTU of _MTU keeps them in 1 KiB slots) and ACK every second request: the out
    # rings have room for two frames per request, so a drain late under load drops none.
    slots = 1 << max(10, (conns_per_n * (rounds + 4)).bit_length())
    with WnHost(n_count, w_count, wire=(slots, 256, 2 * slots, 1024), ring_slots=4096,
                table_slots=1024) as host:
        for n in range(n_count):
            host.start_n(n, _server_config(f"n{n}"),
                         dict(mac=_SERVER_MAC, ipv4=[(_SERVER_IP, 24)], mtu=_MTU))
        for w in range(w_count):
            host.start_w(w, echo_w, _PORT)
        host.wait_ready()
        wire = RssWire(host)
        client = _client_stack()
        socks = []
        for port in _ports_per_n(wire, n_count, conns_per_n):
            s = client.tcp_socket()
            s.bind(("", port))
            s.connect((_SERVER_IP, _PORT))
            socks.append(s)
        end = _time.monotonic() + timeout
        want = n_count * conns_per_n
        while not (all(s.connected for s in socks)
                   and sum(r["state"] == "OPEN" for r in host.dump()) == want):
            if _time.monotonic() > end:
                raise TimeoutError("the connections were not set up in time")
            _pump(client, wire)
            _time.sleep(0.0005)
        _time.sleep(0.3)                      # let the last ACKs and window updates settle
        wire.receive()
        frames, expect = _request_frames(socks, rounds)
        steer = rss_index(frames, len(wire.reta), wire.key)
        per_n = [[f for f, i in zip(frames, steer) if wire.reta[i] == n]
                 for n in range(n_count)]
        rings_in = [host.wire_in(n) for n in range(n_count)]
        got: list[bytes] = []
        want_bytes = total * _REQUEST
        received = 0
        cpu0 = {f"n{n}": _cpu_seconds(p.pid) for n, p in host.n_procs.items()}
        cpu0.update({f"w{w}": _cpu_seconds(p.pid) for w, p in host.w_procs.items()})
        host.layout.hold = True               # the N's take no frame until the clock starts
        for n, ring in enumerate(rings_in):
            for f in per_n[n]:
                if not ring.push(f):
                    raise RuntimeError(f"N {n}'s wire ring is too small for the run")
        start = _time.perf_counter()
        host.layout.hold = False
        # While frames come out this process only watches the out rings' producer indices
        # (the rings hold every frame of the run): the cores stay with the N's and W's.
        # It reads the frames when the rings were quiet for a moment, and stops once every
        # response byte is out (or after 5 s of quiet).
        rings_out = [host.wire_out(n) for n in range(n_count)]
        last = start
        seen = 0
        while received < want_bytes:
            _time.sleep(0.0005)
            produced = sum(r.producer_index for r in rings_out)
            now = _time.perf_counter()
            if produced != seen:
                seen, last = produced, now
                continue
            if now - last < 0.02:
                continue
            batch = wire.receive(1 << 20)
            got += batch
            received += sum(_payload_len(f) for f in batch)
            if now - last > 5.0:
                break
        elapsed = last - start
        exact, missing = _check_responses(got, expect)
        accepts = [c["accepts"] for c in host.counters()]
        cpu = {f"n{n}": _cpu_seconds(p.pid) - cpu0[f"n{n}"] for n, p in host.n_procs.items()}
        cpu.update({f"w{w}": _cpu_seconds(p.pid) - cpu0[f"w{w}"]
                    for w, p in host.w_procs.items()})
        frames_out = len(got)
    return {"requests": total, "responses_exact": exact, "bytes_missing": missing,
            "seconds": round(elapsed, 3),
            "requests_per_s": round(exact / elapsed) if elapsed > 0 else 0,
            "connections": n_count * conns_per_n, "w_count": w_count,
            "accepts_per_n": accepts, "frames_out": frames_out,
            "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()}}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    import os as _os
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# a W exits mid-run

def w_exit_run(*, n_count: int = 2, w_count: int = 3, connections: int = 60,
               rounds: int = 20, timeout: float = 120.0, seed: int = 15) -> dict:
    """Request/response connections over ``n_count`` N's and ``w_count`` echo W's (a client
    stack in this process, frames through an :class:`RssWire`); the last W exits after a
    third of its share of the requests. Each connection sends ``rounds`` requests, one at a
    time. A connection counts as lost unless every request was answered byte-exact, or it
    was closed cleanly (FIN, no reset) after data that is exactly the echo of its first
    requests."""
    import os as _os
    import random
    import time as _time
    from .host.stack.errors import StackError
    from .host.wn_host import WnHost
    rng = random.Random(seed)
    leaver = w_count - 1
    share = connections * rounds // w_count
    with WnHost(n_count, w_count, wire=(4096, 2048), ring_slots=1024,
                table_slots=1024) as host:
        for n in range(n_count):
            host.start_n(n, _server_config(f"n{n}").replace(min_rto=0.2, initial_window=10),
                         dict(mac=_SERVER_MAC, ipv4=[(_SERVER_IP, 24)]))
        for w in range(w_count):
            host.start_w(w, echo_w, _PORT, share // 3 if w == leaver else None)
        host.wait_ready()
        wire = RssWire(host)
        client = _client_stack()
        socks = [client.connect(_SERVER_IP, _PORT) for _ in range(connections)]
        end = _time.monotonic() + timeout
        while not (all(s.connected for s in socks)
                   and sum(r["w"] >= 0 for r in host.dump()) == connections):
            if _time.monotonic() > end:
                raise TimeoutError("the connections were not set up in time")
            _pump(client, wire)
            _time.sleep(0.0005)
        table = host.dump()
        owner = {int(r["peer"].split()[1]): r["w"] for r in table}
        sent = [bytearray() for _ in socks]
        got = [bytearray() for _ in socks]
        done_rounds = [0] * connections
        eof = [False] * connections
        error: list[str | None] = [None] * connections
        closed = [False] * connections
        for i, s in enumerate(socks):
            req = rng.randbytes(rng.randint(16, 256))
            sent[i] += req
            s.send(req)
        while _time.monotonic() < end:
            _pump(client, wire)
            active = False
            for i, s in enumerate(socks):
                if closed[i] or eof[i] or error[i]:
                    continue
                active = True
                try:
                    while s.readable:
                        data = s.recv()
                        if data is None:
                            break
                        if data == b"":
                            eof[i] = True
                            s.close()
                            break
                        got[i] += data
                except StackError as err:
                    error[i] = str(err)
                    continue
                if not eof[i] and len(got[i]) == len(sent[i]):
                    done_rounds[i] += 1
                    if done_rounds[i] == rounds:
                        s.close()
                        closed[i] = True
                    else:
                        req = rng.randbytes(rng.randint(16, 256))
                        sent[i] += req
                        s.send(req)
            if not active:
                break
            _time.sleep(0.0002)
        for _ in range(200):                  # the last FINs and ACKs
            _pump(client, wire)
            _time.sleep(0.001)
        answered = clean = lost = 0
        leaver_conns = 0
        for i, s in enumerate(socks):
            mine = owner.get(s.getsockname()[1]) == leaver
            leaver_conns += mine
            if closed[i] and got[i] == sent[i]:
                answered += 1
            elif eof[i] and error[i] is None and bytes(got[i]) == bytes(sent[i][:len(got[i])]):
                clean += 1
            else:
                lost += 1
                if _os.environ.get("WN_DEBUG"):
                    print("lost", i, mine, closed[i], eof[i], error[i], len(got[i]),
                          len(sent[i]), done_rounds[i], s.state)
        host.w_procs[leaver].join(10)
        leaver_exit = host.w_procs[leaver].exitcode
        others_alive = all(p.is_alive() for w, p in host.w_procs.items() if w != leaver)
    return {"connections": connections, "w_count": w_count, "rounds": rounds,
            "answered": answered, "closed_cleanly_by_exiting_w": clean,
            "exiting_w_connections": leaver_conns, "lost": lost,
            "exiting_w_exit_status": leaver_exit, "other_ws_alive": others_alive,
            "routing_table_head": table[:6]}


# ---------------------------------------------------------------------------------------------
# the accept spread over the N's, through the NIC from the kernel

def accept_spread(connections: int = 10_000, *, n_count: int = 2, w_count: int = 2,
                  parallel: int = 32, timeout: float = 1800.0) -> dict:
    """``connections`` connections from the Linux kernel (a TAP in a network namespace)
    through the shared simulated NIC to ``n_count`` N's (RSS over their queues) served by
    ``w_count`` echo W's; each sends 16 bytes, reads them back and closes. Returns the
    accepts per N and the busiest over the least busy."""
    import socket
    import threading
    import time as _time
    from .host.netns import in_netns, netns, netns_unavailable, tap_in_netns
    from .host.nic import Nic
    from .host.wn_nic import WnNic
    reason = netns_unavailable()
    if reason is not None:
        return {"skipped": reason}
    kernel, server = "198.18.0.1", "198.18.0.2"
    errors: list[str] = []
    echoed = [0]
    lock = threading.Lock()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{kernel}/24", None) as tap, \
            Nic.open("sim", width=64, rx_queues=n_count, tx_queues=n_count,
                     shared=True) as nic:
        wn = WnNic(nic, tap, n_count=n_count, w_count=w_count, addr4=(server, 24),
                   log=lambda text: None)
        try:
            for w in range(w_count):
                wn.start_w(w, echo_w, _PORT)
            wn.wait_ready()
            todo = iter(range(connections))

            def client() -> None:
                while True:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    payload = b"%015d\n" % i
                    try:
                        with in_netns(ns):
                            s = socket.create_connection((server, _PORT), timeout=60)
                        with s:
                            s.sendall(payload)
                            got = b""
                            while len(got) < len(payload):
                                chunk = s.recv(64)
                                if not chunk:
                                    break
                                got += chunk
                        with lock:
                            if got == payload:
                                echoed[0] += 1
                            else:
                                errors.append(f"connection {i}: echo differs")
                    except OSError as err:
                        with lock:
                            errors.append(f"connection {i}: {err}")
            threads = [threading.Thread(target=client, daemon=True) for _ in range(parallel)]
            start = _time.perf_counter()
            for t in threads:
                t.start()
            wn.run(until=lambda: not any(t.is_alive() for t in threads), timeout=timeout)
            elapsed = _time.perf_counter() - start
            wn.run(until=lambda: sum(c["accepts"] for c in wn.counters()) >= connections,
                   timeout=10)
            accepts = [c["accepts"] for c in wn.counters()]
        finally:
            wn.close()
    return {"connections": connections, "echoed": echoed[0], "errors": len(errors),
            "first_error": errors[0] if errors else None, "accepts_per_n": accepts,
            "accept_spread_max_over_min": round(max(accepts) / max(1, min(accepts)), 4),
            "connections_per_s": round(connections / elapsed, 1)}


# ---------------------------------------------------------------------------------------------

def bench_wn(*, conns_per_n: int = 64, rounds: int = 500, w_count: int = 1, trials: int = 3,
             spread_connections: int = 10_000) -> dict:
    """The ``wn`` part of ``hetnic bench host``.

    * ``requests_per_s_n1`` / ``requests_per_s_n2``: 64-byte requests echoed through 1 and
      2 N processes on request frames generated ahead into their wire rings (no simulated
      NIC in the loop): ``conns_per_n`` connections per N are set up through the rings by a
      client stack, then ``rounds`` requests per connection are written, steered by the
      Toeplitz hash (default key) and a RETA over the N's, with the N's held; the clock runs
      from their release to the last response byte; every response is checked byte-exact
      (only exact ones count). ``w_count`` echo W processes (1 by default: the W's work is
      light). Each count is the best of ``trials`` runs, N = 1 and N = 2 alternating (the
      host's other load varies between runs: ``load_average_at_start`` and each run's
      ``cpu_seconds`` per process say how much of the 2 cores the run got).
    * ``accept_spread_max_over_min``: the busiest N's accepts over the least busy's, for
      ``spread_connections`` connections from the kernel through the NIC to 2 N's.
    * ``connections_lost_on_w_exit``: connections lost when one of 3 W's exits mid-run of
      60 request/response connections (:func:`w_exit_run`).
    """
    import os as _os
    load = _os.getloadavg()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(trials):
        for n in (1, 2):
            runs[n].append(requests_per_s(n, w_count=w_count, conns_per_n=conns_per_n,
                                          rounds=rounds))
    best = {n: max(runs[n], key=lambda r: r["requests_per_s"]) for n in (1, 2)}
    spread = accept_spread(spread_connections) if spread_connections else {"skipped": "0"}
    exit_run = w_exit_run()
    n1, n2 = best[1]["requests_per_s"], best[2]["requests_per_s"]
    return {
        "requests_per_s_n1": n1,
        "requests_per_s_n2": n2,
        "n2_over_n1": round(n2 / n1, 3) if n1 else None,
        "accept_spread_max_over_min": spread.get("accept_spread_max_over_min"),
        "connections_lost_on_w_exit": exit_run["lost"],
        "w_count": w_count,
        "load_average_at_start": [round(x, 2) for x in load],
        "requests": {"n1": best[1], "n2": best[2],
                     "all_runs": {f"n{n}": [{k: r[k] for k in ("requests_per_s",
                                                                "responses_exact", "seconds")}
                                            for r in runs[n]] for n in (1, 2)}},
        "accept_spread": spread,
        "w_exit": exit_run,
    }
