"""NCP's sans-I/O core (hetnic.host.ncp) on a virtual clock: two endpoints on a PairLink,
with the fault injector; handshake, transfer, teardown, peer restart and bad input."""

from __future__ import annotations

import random

import pytest

from hetnic import ncp_frame
from hetnic.host.faults import FaultInjector
from hetnic.host.links import PairLink
from hetnic.host.ncp import NcpConfig, NcpEndpoint, NcpError, State
from hetnic.ncp_frame import FrameType

pytestmark = pytest.mark.timeout(60)

A = b"\x02\x00\x00\x00\x00\x0a"
B = b"\x02\x00\x00\x00\x00\x0b"
STEP = 0.0002                   # virtual seconds per loop turn


class Pair:
    """Two endpoints wired by a PairLink, stepped on a virtual clock."""

    def __init__(self, faults: dict | None = None, seed: int = 1, config=None):
        self.now = 0.0
        fab = FaultInjector(seed=seed, direction="ab", **faults) if faults else None
        fba = FaultInjector(seed=seed + 1, direction="ba", **faults) if faults else None
        self.la, self.lb = PairLink.pair(fab, fba, clock=lambda: self.now)
        self.a = NcpEndpoint(A, config, random.Random(seed))
        self.b = NcpEndpoint(B, config, random.Random(seed + 100))

    def step(self) -> None:
        now = self.now
        for f in self.la.receive(1000):
            self.a.receive(f, now)
        for f in self.lb.receive(1000):
            self.b.receive(f, now)
        self.la.send(self.a.poll(now))
        self.lb.send(self.b.poll(now))
        self.now += STEP

    def run(self, until, limit: float = 30.0) -> None:
        end = self.now + limit
        while not until():
            assert self.now < end, "virtual time ran out"
            self.step()


def test_frame_layout_is_one_table():
    assert ncp_frame.HEADER_LEN == ncp_frame.HEADER.size == 32
    assert ncp_frame.MAX_PAYLOAD == 1500 - 32
    rows = ncp_frame.table().splitlines()
    assert len(rows) == 2 + len(ncp_frame.FIELDS)
    frame = ncp_frame.encode(B, A, type=FrameType.DATA, channel=3, epoch=7, peer_epoch=8,
                             seq=9, ack=10, window=11, sack=12, payload=b"abc")
    h, payload = ncp_frame.decode(frame + bytes(20))        # Ethernet padding is ignored
    assert (h.type, h.channel, h.epoch, h.peer_epoch, h.seq, h.ack, h.window, h.sack,
            h.length, payload) == (FrameType.DATA, 3, 7, 8, 9, 10, 11, 12, 3, b"abc")


def test_transfer_under_faults_is_byte_exact_and_closes():
    """5 % loss, 5 % duplication, 5 % reordering both ways: every byte, in order."""
    p = Pair({"loss": 0.05, "dup": 0.05, "reorder": 0.05})
    sa, sb = p.a.open(B, 7, p.now), p.b.open(A, 7, p.now)
    p.run(lambda: sa.established and sb.established)
    data = random.Random(5).randbytes(1_000_000)
    for i in range(0, len(data), 100_000):
        sa.send(data[i:i + 100_000])
    got = bytearray()
    p.run(lambda: got.extend(sb.read()) or len(got) >= len(data))
    assert got == data
    assert sa.counters["retransmits"] > 0 and sa.counters["fast_retransmits"] > 0
    assert p.b.drops["duplicate"] > 0
    sa.close(p.now)
    p.run(lambda: sa.state == State.CLOSED and sb.state == State.CLOSED)
    assert sb.eof and not p.a.sessions and not p.b.sessions


def test_peer_restart_is_detected_within_1s_and_the_session_comes_back(seed=3):
    p = Pair({"loss": 0.05, "dup": 0.05, "reorder": 0.05}, seed=seed)
    sa, sb = p.a.open(B, 7, p.now), p.b.open(A, 7, p.now)
    p.run(lambda: sa.established and sb.established)
    sa.send(random.Random(1).randbytes(500_000))
    p.run(lambda: sb.readable > 50_000)               # (B reads nothing: <= one window)
    # B reboots: a new endpoint (new epochs) on the same MAC, silent at first.
    p.b = NcpEndpoint(B, None, random.Random(99))
    restart = p.now
    p.run(lambda: sa.counters["peer_restarts"] + sa.counters["peer_timeouts"] > 0)
    assert sa.restart_detected_at - restart <= 1.0
    assert sa.counters["peer_restarts"] == 1          # B's RST answered A's data
    assert sa.counters["bytes_discarded"] > 0
    assert p.b.drops["unknown_session"] > 0
    # B's application opens the channel again: a new incarnation, fresh data byte-exact.
    sb2 = p.b.open(A, 7, p.now)
    p.run(lambda: sa.established and sb2.established)
    assert sa.generation == 2 and sb2.generation == 1
    fresh = random.Random(2).randbytes(200_000)
    sa.send(fresh)
    got = bytearray()
    p.run(lambda: got.extend(sb2.read()) or len(got) >= len(fresh))
    assert got == fresh


def test_reopened_peer_is_detected_by_its_new_epoch():
    p = Pair()
    sa, sb = p.a.open(B, 1, p.now), p.b.open(A, 1, p.now)
    p.run(lambda: sa.established and sb.established)
    p.b = NcpEndpoint(B, None, random.Random(42))
    restart = p.now
    sb2 = p.b.open(A, 1, p.now)                      # reboots and opens at once: SYN
    p.run(lambda: sa.established and sb2.established and sa.generation == 2)
    assert sa.counters["peer_restarts"] == 1
    assert sa.restart_detected_at - restart < 0.01


def test_silent_peer_times_out_within_1s():
    p = Pair()
    sa, sb = p.a.open(B, 1, p.now), p.b.open(A, 1, p.now)
    p.run(lambda: sa.established and sb.established)
    p.run(lambda: p.now > 2.0)                      # idle: keepalives keep it up
    assert sa.established and sa.counters["keepalives_out"] > 0
    p.lb.send = lambda frames: None                 # B's frames no longer arrive
    gone = p.now
    p.run(lambda: sa.counters["peer_timeouts"] > 0)
    assert sa.restart_detected_at - gone <= 1.0
    assert sa.state == State.SYN_SENT                # and sets itself up again


def test_simultaneous_open_and_one_sided_open():
    p = Pair()
    sa = p.a.open(B, 4, p.now)
    p.run(lambda: p.now > 0.5)                       # B has not opened: RSTs, SYN retried
    assert sa.state == State.SYN_SENT and p.b.drops["unknown_session"] >= 1
    sb = p.b.open(A, 4, p.now)
    p.run(lambda: sa.established and sb.established)


def _established(p):
    sa, sb = p.a.open(B, 2, p.now), p.b.open(A, 2, p.now)
    p.run(lambda: sa.established and sb.established)
    return sa, sb


def _data(sa, sb, seq, payload=b"x", **kw):
    fields = dict(type=FrameType.DATA, channel=sa.channel, epoch=sa.epoch,
                  peer_epoch=sb.epoch, seq=seq, ack=sa.rcv_nxt, window=16, payload=payload)
    fields.update(kw)
    return ncp_frame.encode(B, A, **fields)


def test_bad_input_is_counted_never_raised():
    p = Pair()
    sa, sb = _established(p)
    eb, drops = p.b, p.b.drops
    good = _data(sa, sb, sb.rcv_nxt)
    n = ncp_frame.HEADER_LEN + 14
    cases = [
        (good[:n - 1], "short"),
        (good[:n] + b"", "length"),                              # length says 1, 0 there
        (good[:12] + b"\x08\x00" + good[14:], "ethertype"),
        (good[:14] + b"\x09" + good[15:], "version"),
        (good[:-1] + bytes([good[-1] ^ 1]), "check"),
        (ncp_frame.encode(B, A, type=99, channel=2, epoch=1, peer_epoch=1, seq=0, ack=0,
                          window=0), "type"),
        (ncp_frame.encode(B, A, type=FrameType.ACK, channel=2, epoch=1, peer_epoch=1,
                          seq=0, ack=0, window=0, payload=b"zz"), "length"),
        (_data(sa, sb, sb.rcv_nxt, epoch=sa.epoch ^ 1), "stale_epoch"),
        (_data(sa, sb, sb.rcv_nxt, peer_epoch=sb.epoch ^ 1), "stale_epoch"),
        (_data(sa, sb, sb.rcv_nxt + 5000), "out_of_window"),
        (_data(sa, sb, sb.rcv_nxt - 1), "duplicate"),             # replayed
        (_data(sa, sb, sb.rcv_nxt, channel=77), "unknown_session"),
        (ncp_frame.encode(b"\x02" * 6, A, type=FrameType.DATA, channel=2, epoch=1,
                          peer_epoch=1, seq=0, ack=0, window=0), "not_for_us"),
        (b"", "short"),
        (bytes(2000), "ethertype"),
    ]
    for frame, reason in cases:
        before = drops[reason]
        eb.receive(frame, p.now)
        assert drops[reason] == before + 1, reason
    # A genuine frame, then the same one replayed: delivered once.
    eb.receive(good, p.now)
    eb.receive(good, p.now)
    assert sb.read() == b"x" and drops["duplicate"] == 2
    assert eb.rsts_out == 1                         # for the unknown session's frame
    # Random garbage of every length never raises.
    rng = random.Random(0)
    for size in range(0, 200):
        eb.receive(rng.randbytes(size), p.now)
        eb.receive(good[:14] + rng.randbytes(size), p.now)
    assert sb.established


def test_api_misuse_is_one_line_error():
    ep = NcpEndpoint(A)
    with pytest.raises(NcpError, match="channel must be"):
        ep.open(B, 70000, 0.0)
    with pytest.raises(NcpError, match="unicast"):
        ep.open(b"\x01" * 6, 1, 0.0)
    ep.open(B, 1, 0.0)
    with pytest.raises(NcpError, match="already open"):
        ep.open(B, 1, 0.0)
    with pytest.raises(NcpError, match="window"):
        NcpConfig(window=0)
    with pytest.raises(NcpError, match="MAC"):
        NcpEndpoint(b"\x02")


def test_doc_page_shows_the_layout_unchanged():
    from pathlib import Path
    page = Path(__file__).resolve().parents[2] / "docs" / "ncp.md"
    assert ncp_frame.table() in page.read_text()


def test_flow_control_a_receiver_that_does_not_read_stops_the_sender():
    p = Pair(config=NcpConfig(window=8))
    sa, sb = p.a.open(B, 6, p.now), p.b.open(A, 6, p.now)
    p.run(lambda: sa.established and sb.established)
    data = random.Random(3).randbytes(100 * ncp_frame.MAX_PAYLOAD)
    sa.send(data)
    p.run(lambda: p.now > 3.0)                       # B's application reads nothing
    # at most the window's 8 frames wait at B (read through the public counters)
    assert sb.readable <= 8 * ncp_frame.MAX_PAYLOAD and sb.counters["data_in"] <= 8
    assert sa.established and sb.established
    got = bytearray()
    p.run(lambda: got.extend(sb.read()) or len(got) >= len(data))
    assert got == data


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_transfer_sweep_with_corruption(seed):
    """Heavier faults (10 % loss, 5 % duplication and reordering, 2 % corruption), many
    seeds: byte-exact, corrupted frames caught by the check."""
    p = Pair({"loss": 0.10, "dup": 0.05, "reorder": 0.05, "corrupt": 0.02}, seed=seed)
    sa, sb = p.a.open(B, 9, p.now), p.b.open(A, 9, p.now)
    p.run(lambda: sa.established and sb.established)
    data = random.Random(seed).randbytes(600_000)
    sa.send(data)
    got = bytearray()
    p.run(lambda: got.extend(sb.read()) or len(got) >= len(data), limit=120)
    assert got == data
    assert p.b.drops["check"] + p.a.drops["check"] > 0
    sa.close(p.now)
    p.run(lambda: sa.state == State.CLOSED and sb.state == State.CLOSED)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 20))
def test_peer_restart_sweep(seed):
    test_peer_restart_is_detected_within_1s_and_the_session_comes_back(seed)


def _from_b(sa, sb, type, **kw):
    """A frame of B's current incarnation to A."""
    fields = dict(type=type, channel=sa.channel, epoch=sb.epoch, peer_epoch=sa.epoch,
                  seq=sb.snd_nxt, ack=sa.snd_nxt, window=16)
    fields.update(kw)
    return ncp_frame.encode(A, B, **fields)


def test_a_late_syn_of_an_earlier_incarnation_ends_nothing():
    """B restarts and A follows it to the new incarnation; then a delayed duplicate of B's
    first SYN (the old epoch) arrives: a stale_epoch drop, the good session stays."""
    p = Pair()
    sa, sb = p.a.open(B, 1, p.now), p.b.open(A, 1, p.now)
    p.run(lambda: sa.established and sb.established)
    old_syn = ncp_frame.encode(A, B, type=FrameType.SYN, channel=1, epoch=sb.epoch,
                               peer_epoch=0, seq=1, ack=1, window=16)
    p.b = NcpEndpoint(B, None, random.Random(42))
    sb2 = p.b.open(A, 1, p.now)
    p.run(lambda: sa.established and sb2.established and sa.generation == 2)
    before = p.a.drops["stale_epoch"]
    p.a.receive(old_syn, p.now)
    assert p.a.drops["stale_epoch"] == before + 1
    assert sa.established and sa.generation == 2 and sa.counters["peer_restarts"] == 1
    sa.send(b"still here")
    p.run(lambda: sb2.readable == 10)


def test_a_reordered_old_frame_does_not_set_the_window():
    """RFC 9293's SND.WL1/WL2 rule: the window of a frame older (by seq) than the one that
    set it is ignored, so a late window-0 frame does not stall the sender."""
    p = Pair()
    sa, sb = _established(p)
    frames_in = sa.counters["frames_in"]
    p.a.receive(_from_b(sa, sb, FrameType.ACK, seq=sb.snd_nxt + 4, window=10), p.now)
    p.a.receive(_from_b(sa, sb, FrameType.ACK, seq=sb.snd_nxt + 2, window=0), p.now)
    sa.send(bytes(ncp_frame.MAX_PAYLOAD * 20))
    sent = [f for f in p.a.poll(p.now) if f[15] == FrameType.DATA]
    assert len(sent) == 10
    assert sa.counters["frames_in"] == frames_in + 2


def test_frames_in_counts_the_handshake_and_rst():
    p = Pair()
    got = []
    receive = p.a.receive
    p.a.receive = lambda frame, now: (got.append(frame), receive(frame, now))
    sa, sb = _established(p)
    p.run(lambda: p.now > 0.05)
    assert sa.counters["frames_in"] + sum(p.a.drops.values()) == len(got) > 0
    p.b = NcpEndpoint(B, None, random.Random(9))            # B forgets: RST answers A
    sa.send(b"x")
    p.run(lambda: sa.counters["peer_restarts"] == 1)
    assert sa.counters["frames_in"] + sum(p.a.drops.values()) == len(got)
