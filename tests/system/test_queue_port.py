"""Queues of a shared NIC used from another process (:mod:`hetnic.host.queue_port`).

A spawned child opens a :class:`~hetnic.host.queue_port.QueueGrant` of two RX queues and one
TX queue and echoes every frame it receives (MAC addresses swapped); the parent only runs
the clock and the wire. Also: the same queues under a
:class:`~hetnic.host.links.NicQueueLink`, and the one-line errors of bad grants.
"""

import multiprocessing
import os
import pickle
import random
import time

import pytest

from frames import udp4
from hetnic.config import RxConfig
from hetnic.host.control import NicError
from hetnic.host.links import LinkError, NicQueueLink
from hetnic.host.nic import Nic
from hetnic.host.queue_port import QueueGrant
from hetnic.host.shm import SHM_DIR, SharedSegmentError

RX = (2, 5)
TX = 1
RX_RING, TX_RING = 64, 32       # small rings: a few thousand frames wrap them many times




@pytest.fixture
def nic():
    nic = Nic.open("sim", shared=True, rx_ring_size=RX_RING, tx_ring_size=TX_RING)
    names = (nic.shared.memory, nic.shared.doorbells)
    try:
        size = nic.params.reta_size
        nic.apply(RxConfig(queues=len(nic.rx_queues),
                             reta=[RX[i % len(RX)] for i in range(size)]))
        nic.run_until_idle()
        yield nic
    finally:
        nic.close()
        left = set(names) & set(os.listdir(SHM_DIR))
    assert not left, f"the NIC left {left} in /dev/shm"


def swap_macs(frame: bytes) -> bytes:
    return frame[6:12] + frame[0:6] + frame[12:]


def echo_child(grant: QueueGrant, parent: int, expected: int, report) -> None:
    """Echo ``expected`` frames from the granted RX queues to the granted TX queue, then
    report which queue each frame came from, in the order taken. Exits if the parent goes."""
    qs = grant.open()
    seen = []
    try:
        rx = [qs.rx_queues[q] for q in RX]
        tx = qs.tx_queues[TX]
        deadline = time.monotonic() + 100
        while len(seen) < expected and os.getppid() == parent:
            if time.monotonic() > deadline:
                break
            idle = True
            for q in rx:
                packets = q.poll(64)
                if packets:
                    idle = False
                    tx.send_batch([swap_macs(p.data) for p in packets])
                    seen += [(q.index, p.data) for p in packets]
            tx.reap()
            if idle:
                time.sleep(50e-6)
        report.send((seen, tx.errors))
    finally:
        qs.close()


@pytest.mark.timeout(180)
def test_a_child_process_echoes_through_granted_queues(nic):
    seed = 1517
    print(f"seed {seed}")
    rng = random.Random(seed)
    n = 3000
    frames = [udp4(sport=3000 + rng.randrange(32), dport=4000 + rng.randrange(8),
                   payload=b"%6d" % i + bytes(rng.randrange(0, 200)), pad_to=60)
              for i in range(n)]
    grant = nic.export_queues(rx=RX, tx=[TX])
    grant = pickle.loads(pickle.dumps(grant))       # what a spawn hands over
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=echo_child, args=(grant, os.getpid(), n, theirs), daemon=True)
    try:
        child.start()
        out = []
        sent = 0
        window = RX_RING            # frames in flight: fewer than the RX rings hold
        deadline = time.monotonic() + 150
        while len(out) < n:
            assert time.monotonic() < deadline, f"only {len(out)} of {n} frames came back"
            assert child.is_alive() or mine.poll(), "the child died"
            if sent < n and sent - len(out) < window:
                k = min(n - sent, window - (sent - len(out)))
                nic.wire.send(frames[sent:sent + k])
                sent += k
            nic.run(2000)
            out += nic.wire.received()
        assert mine.poll(60), "the child did not report"
        seen, tx_errors = mine.recv()
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
        child.join(10)
    assert tx_errors == 0
    assert sorted(out) == sorted(swap_macs(f) for f in frames)      # byte-exact, no loss
    position = {frame: i for i, frame in enumerate(frames)}
    assert len(position) == n
    for q in RX:
        # each queue delivered its frames in wire order, and they left in that order
        got = [position[data] for queue, data in seen if queue == q]
        assert got and got == sorted(got), f"RX queue {q} reordered"
        taken = set(got)
        left = [i for i in (position[swap_macs(f)] for f in out) if i in taken]
        assert left == got, f"frames of RX queue {q} left out of order"
    assert nic.counters()["frames_dropped"] == 0


@pytest.mark.timeout(60)
def test_nic_queue_link_runs_on_a_queue_set(nic):
    qs = nic.export_queues(rx=RX, tx=[TX]).open()
    try:
        link = NicQueueLink(qs, RX, TX)
        frames = [udp4(sport=5000 + i, payload=b"%4d" % i) for i in range(40)]
        nic.wire.send(frames)
        nic.run_until_idle()
        got = []
        for _ in range(10):
            got += link.receive(64)
        assert sorted(got) == sorted(frames)
        link.send([swap_macs(f) for f in got])
        nic.run_until_idle()
        link.service()
        assert sorted(nic.wire.received()) == sorted(swap_macs(f) for f in frames)
        assert link.tx_errors == 0
        with pytest.raises(LinkError, match="RX queue 0 is not among the queues granted"):
            NicQueueLink(qs, [0], TX)
        with pytest.raises(LinkError, match="TX queue 0 is not among"):
            NicQueueLink(qs, RX, 0)
    finally:
        qs.close()


@pytest.mark.timeout(60)
def test_exported_queues_are_refused_to_the_nic(nic):
    nic.export_queues(rx=[2], tx=[1])
    for call in (lambda: nic.rx_queues[2].poll(), lambda: nic.rx_queues[2].ready(),
                 lambda: nic.tx_queues[1].send(bytes(60)),
                 lambda: nic.tx_queues[1].send_batch([bytes(60)]),
                 lambda: nic.tx_queues[1].completions()):
        with pytest.raises(NicError, match="exported to another process") as info:
            call()
        assert "\n" not in str(info.value)
    nic.run(1000)                                   # the clock skips the exported queues
    nic.rx_queues[0].poll()                         # the others work as before
    nic.tx_queues[0].send(udp4())
    nic.run_until_idle()
    assert len(nic.wire.received()) == 1


@pytest.mark.timeout(60)
def test_bad_exports_are_one_line_errors(nic):
    nic.export_queues(rx=[2])
    cases = [
        (dict(rx=[2]), NicError, "exported already"),
        (dict(tx=[1, 1]), NicError, "listed twice"),
        (dict(rx=[8]), NicError, "RX queue must be from 0 to 7"),
        (dict(tx=[-1]), NicError, "TX queue must be from 0 to 3"),
        (dict(rx=["1"]), NicError, "RX queue must be"),
        (dict(tx=[0], tx_timeout=0), ValueError, "tx_timeout"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message) as info:
            nic.export_queues(**kwargs)
        assert "\n" not in str(info.value)
    nic.export_queues(tx=[0])                       # the refused calls exported nothing


@pytest.mark.timeout(60)
def test_a_full_tx_ring_without_a_clock_times_out(nic):
    """The granted TX queue waits for the NIC process's clock, then gives up in one line."""
    qs = nic.export_queues(tx=[TX], tx_timeout=0.2).open()
    try:
        tx = qs.tx_queues[TX]
        with pytest.raises(NicError, match=r"did not finish a work item in 0.2 s") as info:
            for i in range(TX_RING + 1):            # nobody runs the clock
                tx.send(udp4(sport=6000 + i))
        assert "\n" not in str(info.value)
        assert tx.sent_items == TX_RING and tx.ring.outstanding == TX_RING
        nic.run_until_idle()                        # the clock runs: the ring drains
        tx.reap()
        assert tx.ring.outstanding == 0 and tx.errors == 0
        assert len(nic.wire.received()) == TX_RING
    finally:
        qs.close()


@pytest.mark.timeout(60)
def test_a_link_with_a_backlog_never_waits_and_keeps_order(nic):
    """With ``tx_backlog`` a full TX ring does not stop the sender: what the ring cannot take
    waits in the backlog (beyond it: counted drops), and goes out in order as room frees."""
    qs = nic.export_queues(rx=RX, tx=[TX], tx_timeout=0.2).open()
    try:
        bound = 3 * 64
        link = NicQueueLink(qs, RX, TX, tx_backlog=bound)
        frames = [udp4(sport=6000 + i, payload=b"%5d" % i) for i in range(TX_RING + bound + 50)]
        for frame in frames:        # one work item each: the ring fills; a wait for the
            link.send([frame])      # (stopped) clock would raise after 0.2 s
        posted = link.tx_posts
        assert 0 < posted == qs.tx_queues[TX].ring.outstanding <= TX_RING
        assert link.backlog == bound
        assert link.tx_backlog_drops == len(frames) - posted - bound
        assert link.next_deadline() is not None
        out = []
        for _ in range(100):
            nic.run_until_idle()                    # the NIC process's clock
            out += nic.wire.received()
            link.service()                          # reap, then post from the backlog
            if not link.backlog and not qs.tx_queues[TX].ring.outstanding:
                break
        nic.run_until_idle()
        out += nic.wire.received()
        assert out == frames[:posted + bound]       # in order, the dropped ones last
        assert link.backlog == 0 and link.next_deadline() is None and link.tx_errors == 0
        for bad in (0, -1, True, 1.5):
            with pytest.raises(LinkError, match="tx_backlog must be"):
                NicQueueLink(qs, RX, TX, tx_backlog=bad)
        for bad in (0, 65, True, 2.0):
            with pytest.raises(LinkError, match="tx_batch must be from 1 to 64"):
                NicQueueLink(qs, RX, TX, tx_batch=bad)
        small = NicQueueLink(qs, RX, TX, tx_batch=4)    # work items of at most 4 frames
        small.send(frames[:10])
        assert small.tx_posts == 3
        nic.run_until_idle()
        assert nic.wire.received() == frames[:10]
        # Frames no work item can carry are counted drops, never a backlog that cannot move.
        from hetnic.protocol import TX_MAX_FRAME
        careful = NicQueueLink(qs, RX, TX, tx_backlog=8)
        careful.send([b"", frames[0], bytes(TX_MAX_FRAME + 1), frames[1]])
        careful.service()
        nic.run_until_idle()
        careful.service()
        assert careful.tx_bad_frames == 2 and careful.backlog == 0
        assert nic.wire.received() == frames[:2]
    finally:
        qs.close()


@pytest.mark.timeout(60)
def test_a_send_that_finds_the_staging_area_full_reaps_and_retries(nic):
    """A batch that fits only once the finished (not yet reaped) one is reaped goes out."""
    qs = nic.export_queues(tx=[TX], tx_timeout=5).open()
    try:
        tx = qs.tx_queues[TX]
        batch = [udp4(sport=7000 + i, payload=bytes(1400)) for i in range(40)]
        tx.send_batch(batch)                        # most of the staging area
        nic.run_until_idle()                        # finished; its completion not reaped
        assert tx.ring.outstanding == 1
        tx.send_batch(batch)                        # full until the reap: then it fits
        nic.run_until_idle()
        tx.reap()
        assert tx.ring.outstanding == 0 and tx.errors == 0
        assert len(nic.wire.received()) == 2 * len(batch)
    finally:
        qs.close()


@pytest.mark.timeout(60)
def test_a_nic_without_shared_memory_refuses_to_export():
    with Nic.open("sim") as plain:
        assert plain.shared is None
        with pytest.raises(NicError, match="shared=True"):
            plain.export_queues(rx=[0])


@pytest.mark.timeout(60)
def test_a_grant_whose_segments_are_gone_fails_to_open(nic):
    grant = nic.export_queues(rx=[3])
    nic.close()
    with pytest.raises(SharedSegmentError, match="no shared segment") as info:
        grant.open()
    assert "\n" not in str(info.value)



def _mappings(name: str) -> int:
    with open("/proc/self/maps") as f:
        return sum(name in line for line in f)


@pytest.mark.timeout(60)
def test_a_ring_that_cannot_be_rebuilt_leaves_nothing_mapped(nic):
    import dataclasses
    grant = nic.export_queues(rx=[3], tx=[TX])
    names = (nic.shared.memory, nic.shared.doorbells)
    before = [_mappings(n) for n in names]      # the NIC's own mappings (this process)
    broken = dataclasses.replace(grant, tx=((TX, b"not a pickled ring"),))
    with pytest.raises(pickle.UnpicklingError):
        broken.open()
    assert [_mappings(n) for n in names] == before
    qs = grant.open()                           # the good grant still opens
    assert [_mappings(n) for n in names] > before
    qs.close()
