"""The harness's doorbell page (``Nic.open("sim", shared=True)``): a doorbell stored into
the page, with no register write from the host, reaches the NIC while the clock runs; host
register accesses and doorbell writes share the register bus without disturbing each other.

The NIC is the default build (the cached harness of the driver tests) with host memory and
the doorbell page in /dev/shm; every test leaves nothing there.
"""

import os
import random
from collections import defaultdict

import pytest

from frames import udp4
from hetnic.config import RxConfig
from hetnic.host.nic import Nic
from hetnic.host.shm import SHM_DIR

RING = 16           # RX descriptors per queue: a few frames per queue need re-posting




@pytest.fixture
def nic():
    nic = Nic.open("sim", shared=True, rx_ring_size=RING, tx_ring_size=16)
    names = (nic.shared.memory, nic.shared.doorbells)
    try:
        yield nic
    finally:
        nic.close()
    left = set(names) & set(os.listdir(SHM_DIR))
    assert not left, f"the NIC left {left} in /dev/shm"


def flow_frames(n: int, flows: int, seed: int) -> list[bytes]:
    """``n`` UDP frames over ``flows`` flows, each carrying its flow and sequence number."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        flow = rng.randrange(flows)
        out.append(udp4(sport=1000 + flow, payload=b"%4d %6d" % (flow, i) + bytes(24)))
    return out


def forbid_doorbell_registers(nic):
    """Fail the test if the host writes an RX or TX doorbell register."""
    doorbells = {nic.regmap.addr("RXQ_PROD", q) for q in range(len(nic.rx_queues))}
    doorbells |= {nic.regmap.addr("TXQ_PROD", q) for q in range(len(nic.tx_queues))}
    write, write_many = nic.backend.reg_write, nic.backend.reg_write_many

    def checked(addr, value):
        assert addr not in doorbells, f"host wrote doorbell register {addr:#x}"
        write(addr, value)

    def checked_many(writes):
        writes = list(writes)
        for addr, _ in writes:
            assert addr not in doorbells, f"host wrote doorbell register {addr:#x}"
        write_many(writes)

    nic.backend.reg_write, nic.backend.reg_write_many = checked, checked_many


@pytest.mark.timeout(120)
def test_rx_buffers_posted_through_the_page_only(nic):
    seed = 1515
    print(f"seed {seed}")
    queues = list(range(len(nic.rx_queues)))
    qs = nic.export_queues(rx=queues).open()
    try:
        forbid_doorbell_registers(nic)
        frames = flow_frames(40 * len(queues), flows=64, seed=seed)
        got = defaultdict(list)
        for k in range(0, len(frames), RING):       # at most one ring's worth in flight
            nic.wire.send(frames[k:k + RING])
            nic.run_until_idle()
            for q in queues:
                got[q] += [p.data for p in qs.rx_queues[q].poll(RING)]
        received = [f for q in queues for f in got[q]]
        assert sorted(received) == sorted(frames)
        for q in queues:                            # per queue: the order they were sent in
            mine = set(got[q])
            assert got[q] == [f for f in frames if f in mine]
        counters = nic.backend.harness.counters()
        assert counters["doorbell_writes"] >= len(frames) // RING
        assert counters["doorbell_errors"] == 0
        assert nic.counters()["frames_dropped"] == 0
    finally:
        qs.close()


def steer_all_to_queue_0(nic) -> None:
    nic.apply(RxConfig(queues=1))
    nic.run_until_idle()


def land_one_frame(nic, qs, seq: int) -> int:
    """Send one frame (to queue 0), take it off the ring and post its buffer again without
    ringing; returns the new producer index, for the test to ring."""
    frame = udp4(sport=2000, payload=b"%8d" % seq + bytes(24))
    nic.wire.send([frame])
    nic.run_until_idle()
    ring = qs.rx_queues[0].ring
    (packet,) = ring.reap(RING)
    assert packet.data == frame
    return ring.post()


@pytest.mark.timeout(60)
def test_a_doorbell_stored_while_idle_is_serviced(nic):
    steer_all_to_queue_0(nic)
    qs = nic.export_queues(rx=[0]).open()
    try:
        prod = nic.regmap.addr("RXQ_PROD", 0)
        slot = nic.shared.layout.slot("rx", 0)
        for seq in range(3 * RING):                 # the ring wraps: every buffer re-posted
            new = land_one_frame(nic, qs, seq)
            assert nic.backend.reg_read(prod) != new
            writes = nic.backend.harness.counters()["doorbell_writes"]
            qs.doorbells.ring(slot, new)            # the NIC is idle now
            assert nic.run_until_idle(quiet=32) >= 32
            assert nic.backend.harness.counters()["doorbell_writes"] == writes + 1
            assert nic.backend.reg_read(prod) == new
        assert nic.counters()["frames_dropped"] == 0
    finally:
        qs.close()


@pytest.mark.timeout(60)
def test_host_register_access_waits_for_a_doorbell_write(nic):
    """Store a doorbell into the page, then make host register accesses at every phase of
    the harness's page scan: every host write lands, every read answers for its own
    register, and every doorbell reaches its register."""
    steer_all_to_queue_0(nic)
    qs = nic.export_queues(rx=[0]).open()
    try:
        slot = nic.shared.layout.slot("rx", 0)
        prod = nic.regmap.addr("RXQ_PROD", 0)
        scratch = nic.regmap.addr("EQ_COALESCE_TIME", len(nic.event_rings) - 1)
        nic.run_until_idle()            # the export's own ring of the page is serviced
        writes = nic.backend.harness.counters()["doorbell_writes"]
        for phase in range(40):
            new = land_one_frame(nic, qs, phase)
            qs.doorbells.ring(slot, new)
            nic.backend.run(phase)
            nic.backend.reg_write(scratch, 1000 + phase)
            assert nic.backend.reg_read(scratch) == 1000 + phase
            assert nic.backend.reg_read(nic.regmap.addr("ID")) == 0x484E4943
            nic.run_until_idle(quiet=32)
            assert nic.backend.reg_read(prod) == new
        counters = nic.backend.harness.counters()
        assert counters["doorbell_writes"] == writes + 40
        assert counters["doorbell_errors"] == 0
    finally:
        qs.close()
