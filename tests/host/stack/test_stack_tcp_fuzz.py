"""Random segments thrown at live TcpConnections mid-transfer: nothing raises, the transfer
stays byte-exact, and the blind RSTs/SYNs in the window only earn challenge ACKs (RFC 5961).

The random segments carry valid checksums (the connection sees what survives parsing). A
blind segment whose sequence number lands in the window *with data* or with an acceptable
ACK would be taken by any TCP (that is what the 32-bit sequence space defends), so the
in-window ones here are RST and SYN only; the rest use sequence numbers outside the window.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from tcp_pair import QUICK, TcpPair

from hetnic.host.stack.tcp_segment import (
    RST, SYN, SegmentError, build_tcp, parse_tcp, sack_option, ts_option)

pytestmark = pytest.mark.timeout(300)

_M = 0xFFFFFFFF


def random_segment(rng: random.Random, conn, in_window: bool) -> bytes:
    if in_window:
        flags = rng.choice((RST, SYN, RST | 0x10, SYN | 0x10))
        seq = (conn.rcv_nxt + rng.randrange(1, 4096)) & _M
        payload = b""
    else:
        flags = rng.getrandbits(8)
        # At least 2**20 away from RCV.NXT on either side: outside any window used here.
        seq = (conn.rcv_nxt + rng.randrange(1 << 20, (1 << 32) - (1 << 20))) & _M
        payload = rng.randbytes(rng.choice((0, 1, 7, 100, 1400)))
    ack = rng.getrandbits(32)
    opts = b""
    if rng.random() < 0.5:
        opts += ts_option(rng.getrandbits(32), rng.getrandbits(32))
    if rng.random() < 0.3:
        blocks = [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(rng.randint(1, 2))]
        opts += sack_option(blocks)
    window = rng.getrandbits(16)
    return build_tcp(conn.remote, conn.local, conn.rport, conn.lport, seq, ack, flags, window,
                     opts, payload)


@pytest.mark.parametrize("seed", [21, 22])
def test_random_segments_during_a_transfer(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    cfg = dataclasses.replace(QUICK, sndbuf=128 * 1024, rcvbuf=128 * 1024, max_retries=10)
    pair = TcpPair(cfg, seed=seed, loss=0.01, reorder=0.01)
    thrown = {"n": 0, "rejected": 0}
    original_step = pair.step

    def step_with_noise() -> bool:
        for layer in (pair.a, pair.b):
            conn = layer.conn
            if conn is None or conn.state != "ESTABLISHED":
                continue
            for _ in range(rng.randint(10, 40) if thrown["n"] < 20_000 else 0):
                raw = random_segment(rng, conn, rng.random() < 0.2)
                try:
                    seg = parse_tcp(raw, conn.remote, conn.local)
                except SegmentError:
                    thrown["rejected"] += 1
                    continue
                thrown["n"] += 1
                conn.input(seg, pair.now)
        return original_step()

    pair.step = step_with_noise
    up, down = rng.randbytes(2_000_000), rng.randbytes(500_000)
    got_b, got_a = pair.transfer(up, down, limit=300)
    assert got_b == up and got_a == down
    print(thrown, pair.faults)
    assert thrown["n"] > 1000
    counters = (pair.a.counters, pair.b.counters)
    assert sum(k.tcp_challenge_acks for k in counters) > 0
    assert sum(k.drops.get("tcp_out_of_window", 0) + k.drops.get("tcp_old_duplicate", 0)
               for k in counters) > 500
    assert pair.client.error is None and pair.server.error is None
