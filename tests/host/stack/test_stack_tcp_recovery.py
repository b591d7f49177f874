"""TcpConnection's data transfer under faults: SACK recovery (RFC 6675), NewReno fast
retransmit and partial ACKs (RFC 5681 / 6582), the RTO with backoff and its retry limit
(RFC 6298), CUBIC and NewReno both completing, zero-window probes and keepalive.

Random faults are seeded; every such test prints its seed.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from tcp_pair import QUICK, TcpPair

from hetnic.host.stack.tcp_segment import ACK, FIN, SYN

pytestmark = pytest.mark.timeout(120)

BIG = dataclasses.replace(QUICK, sndbuf=256 * 1024, rcvbuf=256 * 1024, max_retries=10)


def payload(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def data_segments(pair: TcpPair, direction: str = "ab") -> list:
    return [s for s in pair.segments(direction) if s.payload]


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "newreno"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_transfer_is_byte_exact_and_recovers_fast(sack, seed):
    print(f"seed={seed}")
    cfg = dataclasses.replace(BIG, sack=sack)
    pair = TcpPair(cfg, seed=seed, loss=0.02, dup=0.01, reorder=0.02)
    up, down = payload(seed, 1_500_000), payload(seed + 50, 400_000)
    got_b, got_a = pair.transfer(up, down, limit=300)
    assert got_b == up and got_a == down
    c, s = pair.client, pair.server
    assert c.error is None and s.error is None
    assert pair.faults["lost"] > 10
    counters = (pair.a.counters, pair.b.counters)
    fast = sum(k.tcp_fast_retransmits for k in counters)
    rto = sum(k.tcp_rto for k in counters)
    assert fast > 0 and fast > rto                   # recovery, not only timeouts
    assert c.sack_ok == sack and s.sack_ok == sack
    # SACK blocks on data segments never push a segment past the MSS (+ 20 header bytes).
    assert pair.largest <= 20 + cfg.mss
    pair.run(limit=60)
    assert c.state == s.state == "CLOSED" and c.deadline is None and s.deadline is None


def drop_nth_data(indices: set[int], direction: str = "ab"):
    """A drop filter losing the first transmission of the listed data segments (by order)."""
    seen: list[int] = []
    sent: set[int] = set()

    def drop(d, seg):
        if d != direction or not seg.payload or seg.seq in sent:
            return False
        sent.add(seg.seq)
        seen.append(seg.seq)
        return len(seen) - 1 in indices

    return drop


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "newreno"])
def test_one_loss_is_one_fast_retransmit(sack):
    cfg = dataclasses.replace(BIG, sack=sack)
    pair = TcpPair(cfg, drop=drop_nth_data({20}))
    up = payload(7, 200_000)
    got_b, _ = pair.transfer(up)
    assert got_b == up
    k = pair.a.counters
    assert k.tcp_fast_retransmits == 1 and k.tcp_rto == 0 and k.tcp_retransmits == 1


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "newreno"])
def test_limited_transmit_makes_a_small_window_recover_fast(sack):
    """Initial window 3, the first segment lost: two duplicate ACKs only, unless each sends
    one new segment (RFC 3042); then fast retransmit instead of an RTO."""
    cfg = dataclasses.replace(BIG, sack=sack, initial_window=3)
    pair = TcpPair(cfg, drop=drop_nth_data({0}))
    up = payload(12, 1448 * 6)
    got_b, _ = pair.transfer(up)
    assert got_b == up
    k = pair.a.counters
    assert k.tcp_rto == 0 and k.tcp_fast_retransmits == 1 and k.tcp_retransmits == 1


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "newreno"])
def test_several_losses_in_one_window(sack):
    """SACK resends every hole in one recovery; NewReno walks them with partial ACKs."""
    cfg = dataclasses.replace(BIG, sack=sack)
    pair = TcpPair(cfg, drop=drop_nth_data({30, 33, 36, 40}))
    up = payload(8, 300_000)
    got_b, _ = pair.transfer(up)
    assert got_b == up
    k = pair.a.counters
    assert k.tcp_rto == 0
    assert k.tcp_fast_retransmits == 1
    assert k.tcp_retransmits == 4
    if sack:
        assert any(seg.sack_blocks for seg in pair.segments("ba"))
    else:
        assert not any(seg.sack_blocks for seg in pair.segments("ba"))


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_congestion_controls_complete_lossy_transfers(cc):
    seed = 11
    print(f"seed={seed}")
    cfg = dataclasses.replace(BIG, congestion=cc)
    pair = TcpPair(cfg, seed=seed, loss=0.01, reorder=0.01)
    up = payload(seed, 1_000_000)
    got_b, _ = pair.transfer(up, limit=300)
    assert got_b == up
    assert type(pair.client.cc).__name__.lower() == cc
    assert pair.a.counters.tcp_fast_retransmits > 0


def test_rto_backoff_then_timeout_and_release():
    pair = TcpPair(BIG)
    c = pair.connect()
    assert pair.run(lambda: c.state == "ESTABLISHED" and pair.server is not None
                    and pair.server.state == "ESTABLISHED", limit=5)
    pair.drop = lambda direction, seg: True             # the peer vanishes
    first = len(pair.trace)
    c.send(b"x" * 5000)
    assert pair.run(lambda: c.state == "CLOSED", limit=600)
    assert c.error == "timeout" and c.deadline is None
    assert pair.a.released_conns == [c]
    assert pair.a.counters.tcp_rto == BIG.max_retries
    resent = [(t, seg) for t, d, seg in pair.trace[first:] if d == "ab"
              and seg.seq == pair.trace[first][2].seq and seg.payload]
    times = [t for t, _ in resent]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == BIG.max_retries
    assert all(later >= earlier * 1.99 or later == BIG.max_rto
               for earlier, later in zip(gaps, gaps[1:]))
    pair.run(limit=100)
    assert pair.a.released_conns == [c]


def test_rto_collapses_cwnd_and_recovers():
    pair = TcpPair(BIG)

    def drop(direction, seg):                   # a 0.5 s blackout of the data direction
        return direction == "ab" and 0.03 <= pair.now < 0.5

    pair.drop = drop
    up = payload(9, 600_000)
    got_b, _ = pair.transfer(up)
    assert got_b == up
    assert pair.a.counters.tcp_rto >= 1
    assert pair.client.cc.ssthresh < 1 << 20


def test_zero_window_probes_then_resume():
    cfg = dataclasses.replace(QUICK, rcvbuf=8192, sndbuf=64 * 1024, window_scale=False)
    pair = TcpPair(cfg)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    s = pair.server
    up = payload(3, 40_000)
    sent = c.send(up)
    # The receiver does not read: its window closes, the sender probes with backoff.
    pair.run(limit=10)
    assert s.readable == 8192 and c.snd_wnd == 0
    zero_acks = [seg for seg in pair.segments("ba") if seg.window == 0]
    assert zero_acks
    probes = [(t, seg) for t, d, seg in pair.trace if d == "ab" and not seg.payload
              and seg.seq == (c.snd_una - 1) & 0xFFFFFFFF]
    assert len(probes) >= 3
    gaps = [b[0] - a[0] for a, b in zip(probes, probes[1:])]
    assert gaps[1] > gaps[0]
    assert c.state == "ESTABLISHED" and c.error is None
    got = bytearray()
    while len(got) < len(up):
        got += s.recv()
        if sent < len(up):
            sent += c.send(up[sent:])
        pair.run(lambda: s.readable > 0 and len(got) + s.readable >= min(len(up), len(got) + 4096),
                 limit=30)
    assert bytes(got) == up


def test_lost_window_update_is_recovered_by_the_probe():
    cfg = dataclasses.replace(QUICK, rcvbuf=4096, window_scale=False)
    state = {"armed": False, "dropped": 0}

    def drop(direction, seg):
        if state["armed"] and direction == "ba" and seg.window > 0 and not seg.payload:
            state["armed"] = False
            state["dropped"] += 1
            return True
        return False

    pair = TcpPair(cfg, drop=drop)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    s = pair.server
    c.send(b"a" * 10000)
    pair.run(limit=3)
    assert c.snd_wnd == 0 and s.readable == 4096
    state["armed"] = True
    assert s.recv() == b"a" * 4096             # the window update is lost
    assert pair.run(lambda: s.readable == 4096, limit=30)
    assert state["dropped"] == 1


def test_small_reads_send_no_window_update_the_window_field_cannot_carry():
    """Without window scaling the window field tops out at 65535: a 256 KiB receive buffer
    read 64 bytes at a time must not announce "more" space on every read (the announced
    window cannot grow past 65535, so every such update would be the same window)."""
    cfg = dataclasses.replace(QUICK, rcvbuf=256 * 1024, window_scale=False)
    pair = TcpPair(cfg)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    s = pair.server
    for _ in range(50):
        c.send(b"q" * 64)
        assert pair.run(lambda: s.readable == 64, limit=5)
        before = len(pair.segments("ba"))
        assert s.recv() == b"q" * 64
        assert len(pair.segments("ba")) == before      # the read itself sent nothing
    assert max(seg.window for seg in pair.segments("ba")) == 0xFFFF


def test_keepalive_keeps_a_live_peer_and_times_out_a_dead_one():
    cfg = dataclasses.replace(QUICK, keepalive=(2.0, 0.5, 3))
    pair = TcpPair(cfg, QUICK)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    pair.advance(10.0)
    probes = [seg for seg in pair.segments("ab") if not seg.payload and not seg.flags & SYN
              and seg.seq == (c.snd_nxt - 1) & 0xFFFFFFFF]
    assert len(probes) == 4 and c.state == "ESTABLISHED"
    pair.drop = lambda direction, seg: True
    t = pair.now
    assert pair.run(lambda: c.state == "CLOSED", limit=30)
    assert c.error == "timeout" and c.deadline is None
    assert pair.now - t <= 2.0 + 4 * 0.5 + 0.1


@pytest.mark.parametrize("nagle", [True, False])
def test_nagle_coalesces_small_writes(nagle):
    cfg = dataclasses.replace(QUICK, nagle=nagle, timestamps=False)
    pair = TcpPair(cfg)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    for _ in range(100):
        c.send(b"0123456789")
    pair.run(lambda: pair.server.readable == 1000, limit=5)
    segs = data_segments(pair)
    if nagle:
        assert len(segs) == 2 and len(segs[0].payload) == 10 and len(segs[1].payload) == 990
    else:
        assert len(segs) == 100
    assert pair.server.recv() == b"0123456789" * 100


@pytest.mark.parametrize("delayed", [True, False])
def test_delayed_ack_acks_every_second_segment(delayed):
    cfg = dataclasses.replace(BIG, delayed_ack=delayed)
    pair = TcpPair(cfg)
    up = payload(4, 1460 * 200)
    got_b, _ = pair.transfer(up, close=False)
    assert got_b == up
    segs = data_segments(pair)
    acks = [s for s in pair.segments("ba", ACK) if not s.payload and not s.flags & (SYN | FIN)]
    if delayed:
        assert len(acks) <= len(segs) // 2 + 3
    else:
        assert len(acks) >= len(segs) - 1


def test_delayed_ack_timeout_acks_a_lone_segment():
    pair = TcpPair(QUICK)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    pair.run(limit=1)
    c.send(b"one")
    t = pair.now
    assert pair.run(lambda: c.snd_una == c.snd_nxt, limit=2)
    ack_time = [tt for tt, d, seg in pair.trace if d == "ba"][-1]
    assert ack_time - t == pytest.approx(pair.delay + QUICK.delayed_ack_timeout, abs=1e-6)


def test_ipv6_transfer():
    seed = 5
    print(f"seed={seed}")
    pair = TcpPair(BIG, v6=True, seed=seed, loss=0.01)
    up = payload(5, 300_000)
    got_b, got_a = pair.transfer(up, b"ok")
    assert got_b == up and got_a == b"ok"


def test_karn_no_rtt_sample_from_a_retransmission():
    """Without timestamps, the ACK of a retransmitted segment gives no RTT sample (RFC 6298
    section 3, Karn); a fresh segment does."""
    cfg = dataclasses.replace(QUICK, timestamps=False)
    dropped = []

    def drop(direction, seg):
        if direction == "ab" and seg.payload == b"first" and not dropped:
            dropped.append(seg)
            return True
        return False

    pair = TcpPair(cfg, drop=drop)
    c = pair.connect()
    assert pair.run(lambda: pair.server is not None and pair.server.state == "ESTABLISHED",
                    limit=5)
    pair.run(limit=1)
    samples = c.rto.samples
    c.send(b"first")
    assert pair.run(lambda: c.snd_una == c.snd_nxt, limit=10)
    assert dropped and pair.a.counters.tcp_rto == 1
    assert c.rto.samples == samples
    c.send(b"second")
    assert pair.run(lambda: c.snd_una == c.snd_nxt, limit=10)
    assert c.rto.samples == samples + 1


def test_timestamps_give_a_sample_per_ack():
    pair = TcpPair(BIG)
    got_b, _ = pair.transfer(payload(6, 100_000), close=False)
    c = pair.client
    acks = [s for s in pair.segments("ba") if s.flags & ACK and not s.flags & SYN]
    assert c.rto.samples >= len(acks) // 2
    # The round trip, plus at most the delayed-ACK hold (RFC 7323 echoes the earliest
    # unacknowledged segment's TSval).
    assert 2 * pair.delay - 0.002 <= c.rto.srtt <= 2 * pair.delay + BIG.delayed_ack_timeout
