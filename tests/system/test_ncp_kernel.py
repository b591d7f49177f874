"""NCP between hetnic on the simulated NIC and the same NCP code on an AF_PACKET socket on
the kernel's side of the TAP (a namespace of its own), through the TAP bridge's fault
injector: byte-exact and in order under 5 % loss, reordering and duplication; the kernel
side restarted mid-transfer is detected and the session comes back; bad frames from the
kernel side are counted drops."""

from __future__ import annotations

import os
import threading

import pytest
from kit.netns import require_netns

from hetnic import ncp_frame
from hetnic.bench_ncp import DEFAULT_FAULTS, HETNIC_MAC, tap_path
from hetnic.host import ncp_io
from hetnic.host.ncp import State
from hetnic.ncp_frame import FrameType

pytestmark = pytest.mark.timeout(180)


def _pair(path, channel):
    ch = path.hetnic.open(path.kernel_link.mac, channel)
    ck = path.kernel.open(HETNIC_MAC, channel)
    ch.wait_established(10)
    ck.wait_established(10)
    return ch, ck


def _receive(channel, size):
    got = bytearray()
    while len(got) < size:
        got += channel.recv(timeout=20)
    return bytes(got)


def _bulk(ch, ck, size):
    """``size`` random bytes ch -> ck from a thread (send blocks on a full buffer), checked
    byte for byte."""
    data = os.urandom(size)
    sender = threading.Thread(target=ch.send, args=(data,), daemon=True)
    sender.start()
    assert _receive(ck, size) == data
    sender.join(10)


def test_ncp_kernel_peer_under_faults_restart_and_bad_input():
    require_netns()
    with tap_path(DEFAULT_FAULTS) as path:
        # 1. Byte-exact and in order both ways under loss, reordering and duplication.
        ch, ck = _pair(path, 21)
        _bulk(ch, ck, 400_000)
        back = os.urandom(50_000)
        ck.send(back)
        assert _receive(ch, len(back)) == back
        faults = path.bridge.counters()
        assert faults["faults_to_tap"]["lost"] > 0 and faults["faults_to_tap"]["reordered"] > 0
        assert faults["faults_to_tap"]["duplicated"] > 0
        assert ch.counters()["retransmits"] > 0

        # 2. Bad frames from the kernel side: counted drops, the session unharmed.
        k, h = ck.session, ch.session
        drops = path.hetnic.endpoint.drops
        before = dict(drops)

        def data_frame(seq, **kw):
            fields = dict(type=FrameType.DATA, channel=21, epoch=k.epoch,
                          peer_epoch=k.peer_epoch, seq=seq & 0xFFFFFFFF, ack=k.rcv_nxt, window=16,
                          payload=b"bad")
            fields.update(kw)
            return ncp_frame.encode(HETNIC_MAC, path.kernel_link.mac, **fields)

        good = data_frame(h.rcv_nxt)
        bad = {
            "length": [good[:-1], good[:14 + 4] + b"\xff\xff" + good[20:]],
            "unknown_session": [data_frame(0, channel=999)],
            "duplicate": [data_frame(h.rcv_nxt - 1), data_frame(h.rcv_nxt - 100)],
            "out_of_window": [data_frame(h.rcv_nxt + 10_000)],
            "stale_epoch": [data_frame(h.rcv_nxt, epoch=k.epoch ^ 0x5A5A)],
        }
        # The path loses 5 % of frames: send the batch again until every one was counted.
        for _ in range(20):
            path.kernel_link.send([f for frames in bad.values() for f in frames])
            try:
                path.hetnic.wait(lambda: all(drops[r] >= before[r] + len(f)
                                             for r, f in bad.items()),
                                 1, "the bad frames to be counted")
                break
            except ncp_io.NcpTimeout:
                continue
        assert all(drops[r] >= before[r] + len(f) for r, f in bad.items()), dict(drops)
        ck.send(b"still fine")
        assert _receive(ch, 10) == b"still fine"

        # 3. The kernel side restarts mid-transfer and opens the channel again.
        ch.send(os.urandom(300_000))
        _receive(ck, 50_000)
        kernel = path.restart_kernel()
        ck2 = kernel.open(HETNIC_MAC, 21)
        path.hetnic.wait(lambda: h.counters["peer_restarts"] >= 1, 10,
                         "hetnic's side to notice the restart")
        ch.wait_established(10)
        ck2.wait_established(10)
        assert ch.generation == 2 and h.counters["bytes_discarded"] > 0
        with pytest.raises(ncp_io.NcpReset, match="bytes were discarded"):
            ch.flush(10)                # the old incarnation's data was lost: said once
        fresh = os.urandom(100_000)
        ch.send(fresh)
        assert _receive(ck2, len(fresh)) == fresh
        ch.close(10)
        assert ck2.recv(timeout=10) == b"" and ck2.state == State.CLOSED


@pytest.mark.slow
def test_ncp_kernel_peer_goes_silent():
    """The kernel side stops answering (no restart, no RST): keepalives find it gone and
    the session starts over, then comes back when a new station opens the channel."""
    require_netns()
    with tap_path() as path:
        ch, ck = _pair(path, 22)
        path.kernel.close()
        h = ch.session
        path.hetnic.wait(lambda: h.counters["peer_timeouts"] >= 1, 5, "the peer timeout")
        assert h.state in (State.SYN_SENT, State.SYN_RCVD)
        kernel = path.restart_kernel()
        ck2 = kernel.open(HETNIC_MAC, 22)
        ch.wait_established(10)
        ck2.wait_established(10)
        ch.send(b"again")
        assert _receive(ck2, 5) == b"again"


@pytest.mark.slow
def test_ncp_kernel_peer_bulk_clean():
    require_netns()
    with tap_path() as path:
        ch, ck = _pair(path, 23)
        _bulk(ch, ck, 4_000_000)
        bad = {k: v for k, v in path.hetnic.endpoint.drops.items()
               if v and k not in ("duplicate", "out_of_window", "ethertype")}
        assert not bad, bad                 # ("ethertype": the kernel's own IPv6 frames)
