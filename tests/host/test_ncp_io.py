"""NCP's blocking API (hetnic.host.ncp_io) on two station threads over an in-memory
PairLink: timeouts, non-blocking reads, close, and a blocking send cut short by a peer
restart."""

from __future__ import annotations

import os
import threading

import pytest

from hetnic.host import ncp_io
from hetnic.host.links import PairLink
from hetnic.host.ncp import NcpConfig, NcpError, State

pytestmark = pytest.mark.timeout(60)

A = b"\x02\x00\x00\x00\x02\x0a"
B = b"\x02\x00\x00\x00\x02\x0b"


@pytest.fixture
def pair():
    la, lb = PairLink.pair()
    cfg = NcpConfig(send_buffer=64 * 1024, window=16)
    sa = ncp_io.NcpStation(la, A, cfg)
    sb = ncp_io.NcpStation(lb, B, cfg)
    yield sa, sb
    sa.close()
    sb.close()


def test_blocking_api(pair):
    sa, sb = pair
    ca = ncp_io.open(sa.link, B, 3, station=sa)
    cb = sb.open(A, 3)
    ca.wait_established(5)
    assert cb.recv_nowait() == b""
    with pytest.raises(ncp_io.NcpTimeout, match="data on channel 3"):
        cb.recv(timeout=0.05)
    data = os.urandom(300_000)                      # more than the send buffer: send waits
    sender = threading.Thread(target=ca.send, args=(data,))
    sender.start()
    got = bytearray()
    while len(got) < len(data):
        got += cb.recv(timeout=5)
    sender.join(5)
    assert got == data
    ca.flush(5)
    ca.close(5)
    assert cb.recv(timeout=5) == b"" and cb.state == State.CLOSED
    with pytest.raises(NcpError, match="closed"):
        ca.send(b"x")


def test_blocking_send_cut_short_by_a_peer_restart(pair):
    sa, sb = pair
    ca, cb = sa.open(B, 4), sb.open(A, 4)
    ca.wait_established(5)
    cb.wait_established(5)
    errors = []

    def send():
        try:
            ca.send(os.urandom(1_000_000), timeout=10)   # B never reads: send blocks
        except ncp_io.NcpReset as e:
            errors.append(e)

    sender = threading.Thread(target=send)
    sender.start()
    sa.wait(lambda: ca.session.send_space == 0, 5, "a full send buffer")
    sb.close()                                      # B reboots: a new station, new epochs
    sb2 = ncp_io.NcpStation(sb.link, B, NcpConfig())
    try:
        sender.join(5)
        assert errors and "bytes were not queued" in str(errors[0])
        cb2 = sb2.open(A, 4)
        ca.wait_established(5)
        cb2.wait_established(5)
        assert ca.generation == 2
        ca.send(b"after")
        assert cb2.recv(timeout=5) == b"after"
    finally:
        sb2.close()


def test_flush_after_a_peer_restart_raises(pair):
    """Data queued, then the peer restarts: the new incarnation comes up idle and
    ESTABLISHED, but flush must not report success for data that was discarded."""
    sa, sb = pair
    ca, cb = sa.open(B, 5), sb.open(A, 5)
    ca.wait_established(5)
    cb.wait_established(5)
    ca.send(os.urandom(60_000))                     # B never reads: some stays unacked
    sb.close()
    sb2 = ncp_io.NcpStation(sb.link, B, NcpConfig())
    try:
        sb2.open(A, 5)
        with pytest.raises(ncp_io.NcpReset, match="bytes were discarded"):
            ca.flush(10)
        assert ca.counters()["bytes_discarded"] > 0
        ca.wait_established(5)
        ca.send(b"again")
        ca.flush(5)                                 # the new data arrives: no error
    finally:
        sb2.close()


def test_the_peer_closing_first_loses_our_queued_data_loudly(pair):
    """A closes while B still has data queued: B's data is discarded, counted, and B's
    flush / close raise NcpReset (never a silent success)."""
    sa, sb = pair
    ca, cb = sa.open(B, 6), sb.open(A, 6)
    ca.wait_established(5)
    cb.wait_established(5)
    cb.send(b"y" * 50_000)          # more than A's window of 16 frames: A does not read
    sa.wait(lambda: ca.session.readable > 0, 5, "B's data at A")
    ca.close(5)
    sb.wait(lambda: cb.state == State.CLOSED, 5, "B closed")
    assert cb.counters()["bytes_discarded"] > 0
    with pytest.raises(ncp_io.NcpReset, match="discarded"):
        cb.flush(5)


class _FakeNic:
    """What steer_direct uses of a Nic: the RETA, the rules, commit."""

    def __init__(self, table):
        class _Rss:
            pass
        self.rss = _Rss()
        self.rss.table = list(table)
        self.added = []
        self.commits = 0
        nic = self

        class _Rules:
            def add(self, rule):
                nic.added.append(rule)
                return len(nic.added) - 1
        self.rules = _Rules()

    def commit(self):
        self.commits += 1


def test_steer_direct_never_takes_a_reta_entry_from_rss():
    nic = _FakeNic([0, 1, 2, 3] * 32)
    assert ncp_io.steer_direct(nic, 2) == 0
    rule = nic.added[0]
    assert (rule.action.reta_offset, rule.action.reta_size) == (2, 1)
    assert nic.rss.table == [0, 1, 2, 3] * 32 and nic.commits == 1
    with pytest.raises(NcpError, match="no RETA entry names RX queue 5"):
        ncp_io.steer_direct(nic, 5)
    assert nic.rss.table == [0, 1, 2, 3] * 32 and len(nic.added) == 1
