"""Receive packet steering over SPSC rings: every frame forwarded once in per-flow order,
full rings are counted drops, a killed worker is detected and its flows re-steered."""

import os
import signal
import time

import numpy as np
import pytest

from hetnic.host.rps import RpsDriver, RpsError
from hetnic.host.rps_frames import FrameSet
from hetnic.host.shm import SHM_DIR


def _shm_names() -> set[str]:
    """This process's RPS and frame segments (their names carry the creator's pid), so that
    another test process running beside this one does not count."""
    mine = f"-{os.getpid()}-"
    return {n for n in os.listdir(SHM_DIR)
            if n.startswith(("hetnic-rps", "hetnic-frames")) and mine in n}


@pytest.fixture
def no_leftover_segments():
    before = _shm_names()
    yield
    assert _shm_names() <= before


def _steer_in_chunks(drv, fs, start, stop, chunk):
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        drv.steer(fs.data[a:b], fs.lens[a:b], fs.hashes[a:b], batch=32)
        assert drv.drain(60), "the workers did not empty their rings"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["futex", "eventfd"])
def test_every_frame_is_forwarded_once_in_flow_order(mode, no_leftover_segments):
    seed = 1000 + len(mode)
    print("seed", seed)
    with FrameSet.udp_flows(30_000, 700, seed=seed) as fs, \
            RpsDriver(2, mode=mode, nslots=2048, spin_us=20) as drv:
        _steer_in_chunks(drv, fs, 0, len(fs), 1024)
        st = drv.stats()
        table = drv.steering_table.copy()
    assert st.packets_in == st.steered == 30_000
    assert st.drop_full == st.drop_dead == st.lost == 0
    assert st.order_errors == st.csum_errors == st.not_forwarded == st.unsequenced == 0
    assert st.forwarded_total == 30_000 and st.deaths == 0
    with FrameSet.udp_flows(30_000, 700, seed=seed) as again:
        owner = table[again.hashes % len(table)]
        assert st.forwarded == [int((owner == w).sum()) for w in range(2)]
    assert min(st.forwarded) > 0 and st.syscalls_driver > 0


@pytest.mark.timeout(120)
def test_a_full_ring_is_a_counted_drop_and_the_driver_goes_on(no_leftover_segments):
    with FrameSet.udp_flows(100, 10, seed=7) as fs, \
            RpsDriver(1, nslots=16, dead_after=30, sleep_ms=5) as drv:
        os.kill(drv.pids[0], signal.SIGSTOP)       # the worker takes nothing for now
        try:
            steered = drv.steer(fs.data, fs.lens, fs.hashes, batch=8)
            st = drv.stats()
            assert steered == st.steered == 16 and st.drop_full == 84
        finally:
            os.kill(drv.pids[0], signal.SIGCONT)
        assert drv.drain(60)
        st = drv.stats()
        assert st.forwarded == [16] and st.order_errors == 0 and st.deaths == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["futex", "eventfd"])
def test_a_killed_worker_is_declared_dead_and_its_flows_move(mode, no_leftover_segments):
    seed = 99
    print("seed", seed)
    with FrameSet.udp_flows(60_000, 500, seed=seed) as fs, \
            RpsDriver(2, mode=mode, nslots=4096, dead_after=0.3, sleep_ms=5,
                      spin_us=20) as drv:
        table = drv.steering_table.copy()
        _steer_in_chunks(drv, fs, 0, 20_000, 1024)
        victim = drv.pids[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        i = 20_000
        while drv.stats().deaths == 0:             # keep the traffic going until detection
            assert time.monotonic() < deadline, "the dead worker was never declared dead"
            assert i < 40_000, "ran out of frames before the death was declared"
            drv.steer(fs.data[i:i + 256], fs.lens[i:i + 256], fs.hashes[i:i + 256], batch=32)
            i += 256
            time.sleep(0.01)
        _steer_in_chunks(drv, fs, i, len(fs), 1024)
        st = drv.stats()
        now_table = drv.steering_table.copy()
        mine = table[fs.hashes % len(table)] == 1
        owned_by_1 = int(mine.sum())
    assert st.dead == [True, False] and st.deaths == 1
    assert not (now_table == 0).any() and (now_table[table == 1] == 1).all()
    assert st.order_errors == 0 and st.drop_full == 0 and st.drop_dead == 0
    assert st.lost == st.stolen[0]
    # exact: the lost are the frames the victim never counted, wherever it was killed
    assert st.forwarded_total + st.lost == st.steered
    assert st.packets_in == st.steered == 60_000
    assert st.forwarded[1] >= owned_by_1            # its own flows all arrived, plus moved ones


def _forwarded_in_ring(drv, w):
    """(flow, seq) of the frames worker ``w`` has forwarded, read from its ring's slots (a
    forwarded frame's TTL is one less than it was pushed with: 64)."""
    from hetnic.host.rps_layout import SEQ_OFFSET
    from hetnic.host.spsc import HEADER_SIZE, SLOT_HEADER
    ring = drv._rings[w]
    out = set()
    for i in range(ring.producer_index):       # these tests never wrap a ring
        base = drv._ring_off[w] + HEADER_SIZE + (i % ring.capacity) * ring.slot_size
        frame = bytes(drv._seg.buf[base + SLOT_HEADER:base + ring.slot_size])
        if frame[22] == 63:
            marks = np.frombuffer(frame[SEQ_OFFSET:SEQ_OFFSET + 12], np.uint32)
            out.add((int(marks[1]), int(marks[2])))
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["futex", "eventfd"])
def test_a_stalled_worker_declared_dead_never_comes_back(mode, no_leftover_segments):
    """A worker only stopped (SIGSTOP) past dead_after is killed before it is declared dead:
    after SIGCONT it forwards nothing, forwarded + lost == steered exactly, and no flow's
    sequence goes back across workers (the victim forwarding an old frame after worker 1
    forwarded a newer one of the same flow)."""
    seed = 3
    print("seed", seed)
    with FrameSet.udp_flows(4000, 50, seed=seed) as fs, \
            RpsDriver(2, mode=mode, nslots=4096, dead_after=0.3, sleep_ms=5,
                      spin_us=20) as drv:
        victim = drv.pids[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            drv.steer(fs.data[:2000], fs.lens[:2000], fs.hashes[:2000], batch=32)
            deadline = time.monotonic() + 30
            while not drv.stats().dead[0]:
                assert time.monotonic() < deadline, "the stopped worker was never declared dead"
                drv.watch()
                time.sleep(0.01)
            # newer frames of the victim's flows now go to worker 1, which forwards them
            _steer_in_chunks(drv, fs, 2000, 4000, 500)
            by_victim = _forwarded_in_ring(drv, 0)
            by_1 = _forwarded_in_ring(drv, 1)
        finally:
            os.kill(victim, signal.SIGCONT)
        time.sleep(0.5)                 # a worker that came back would forward now
        after = _forwarded_in_ring(drv, 0)
        st = drv.stats()
        exitcode = drv._procs[0].exitcode if not drv._procs[0].is_alive() else "alive"
    newest_1 = {}
    for flow, seq in by_1:
        newest_1[flow] = max(seq, newest_1.get(flow, -1))
    went_back = [(f, s) for f, s in after - by_victim if s < newest_1.get(f, -1)]
    assert not went_back, f"frames forwarded after newer ones of their flow: {went_back[:5]}"
    assert after == by_victim
    assert exitcode == -signal.SIGKILL
    assert st.dead == [True, False] and st.deaths == 1 and st.order_errors == 0
    assert st.forwarded_total + st.lost == st.steered == 4000
    assert st.lost == st.stolen[0] > 0


@pytest.mark.timeout(120)
def test_repoint_of_a_live_worker_drains_it_first(no_leftover_segments):
    with FrameSet.udp_flows(2000, 20, seed=5) as fs, \
            RpsDriver(2, nslots=4096, dead_after=30, sleep_ms=5, spin_us=20) as drv:
        os.kill(drv.pids[0], signal.SIGSTOP)       # frames wait in worker 0's ring
        try:
            drv.steer(fs.data[:1000], fs.lens[:1000], fs.hashes[:1000], batch=32)
            with pytest.raises(RpsError, match="did not take"):
                drv.repoint(0, 1, timeout=0.2)
            assert (drv.steering_table == 0).any()     # nothing moved yet
        finally:
            os.kill(drv.pids[0], signal.SIGCONT)
        drv.repoint(0, 1)
        assert not (drv.steering_table == 0).any()
        _steer_in_chunks(drv, fs, 1000, 2000, 500)
        st = drv.stats()
        with pytest.raises(RpsError, match="worker must be"):
            drv.repoint(2, 1)
        with pytest.raises(RpsError, match="to must be"):
            drv.repoint(0, -1)
    assert st.forwarded_total == 2000 and st.order_errors == 0 and st.deaths == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["futex", "eventfd"])
def test_a_worker_idle_while_the_driver_looked_away_is_not_declared_dead(mode,
                                                                        no_leftover_segments):
    """The watch counts silence only while it runs: a blocked eventfd worker whose ring
    fills after the driver did nothing for longer than dead_after is alive."""
    with FrameSet.udp_flows(4000, 50, seed=3) as fs, \
            RpsDriver(2, mode=mode, dead_after=0.2, sleep_ms=5, spin_us=10) as drv:
        _steer_in_chunks(drv, fs, 0, 2000, 500)
        time.sleep(0.4)                 # the driver away for twice dead_after
        _steer_in_chunks(drv, fs, 2000, 4000, 500)
        st = drv.stats()
    assert st.deaths == 0 and st.forwarded_total == 4000 and st.order_errors == 0


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(RpsError, match="workers must be"):
        RpsDriver(0)
    with pytest.raises(RpsError, match="mode must be"):
        RpsDriver(1, mode="poll")
    with pytest.raises(RpsError, match="dead_after"):
        RpsDriver(1, sleep_ms=200, dead_after=0.5)


@pytest.mark.timeout(60)
def test_steer_checks_its_arrays(no_leftover_segments):
    with RpsDriver(1) as drv:
        data = np.zeros((4, 64), np.uint8)
        with pytest.raises(RpsError, match="uint16"):
            drv.steer(data, np.zeros(4, np.uint32), np.zeros(4, np.uint32))
        with pytest.raises(RpsError, match="stride"):
            drv.steer(data, np.full(4, 65, np.uint16), np.zeros(4, np.uint32))
        assert drv.steer(data[:0], np.zeros(0, np.uint16), np.zeros(0, np.uint32)) == 0


@pytest.mark.timeout(300)
def test_frames_from_the_nic_wire_reach_the_workers_in_flow_order(no_leftover_segments):
    """The RPS driver in its own process serves RX queue 1 of a shared simulated NIC: the
    frames sent on the wire are steered by the NIC's RSS hash and forwarded in flow order."""
    import multiprocessing
    import pickle

    from hetnic.config import RxConfig
    from hetnic.host.nic import Nic
    from hetnic.host.rps_nic import rps_queue_process

    queue, ring, n = 1, 64, 1500
    nic = Nic.open("sim", shared=True, rx_ring_size=ring)
    ctx = multiprocessing.get_context("spawn")
    child = None
    try:
        nic.apply(RxConfig(queues=len(nic.rx_queues), reta=[queue] * nic.params.reta_size))
        nic.run_until_idle()
        grant = pickle.loads(pickle.dumps(nic.export_queues(rx=[queue])))
        mine, theirs = ctx.Pipe()
        progress = ctx.RawValue("q", 0)
        child = ctx.Process(target=rps_queue_process, args=(grant, queue, n, theirs),
                            kwargs={"parent": os.getpid(), "progress": progress})
        child.start()
        with FrameSet.udp_flows(n, 40, seed=15) as fs:
            frames = [fs.data[i, :fs.lens[i]].tobytes() for i in range(n)]
            want_hashes = [int(h) for h in fs.hashes]
        sent = 0
        deadline = time.monotonic() + 240
        while not mine.poll():
            assert time.monotonic() < deadline, f"only {progress.value} of {n} frames taken"
            assert child.is_alive() or mine.poll(), "the RPS driver process died"
            if sent < n and sent - progress.value < ring // 2:
                k = min(n - sent, ring // 2)
                nic.wire.send(frames[sent:sent + k])
                sent += k
            nic.run(2000)
        report = mine.recv()
        child.join(60)
    finally:
        if child is not None:
            if child.is_alive():
                child.kill()
            child.join(10)
        nic.close()
    assert report["error"] is None
    st = report["stats"]
    assert report["hashes"] == want_hashes          # the NIC's hash, frames in wire order
    assert st.steered == st.forwarded_total == n and st.drop_full == st.lost == 0
    assert st.order_errors == st.csum_errors == st.unsequenced == 0
    table = np.arange(128) % 2                        # RpsDriver's initial table
    owner = table[np.array(want_hashes) % 128]
    assert st.forwarded == [int((owner == w).sum()) for w in range(2)]


def test_ceiling_is_the_tightest_of_the_three_cpu_limits():
    from hetnic.bench_rps import ceiling
    # all three processes together bound it: 2 CPUs / (10 + 30) ns
    assert ceiling(10, 30, workers=2, cpus=2) == pytest.approx(50e6)
    # one driver is one CPU at most, however many CPUs there are
    assert ceiling(10, 5, workers=2, cpus=64) == pytest.approx(100e6)
    # the workers bound it when they are few and slow
    assert ceiling(10, 300, workers=2, cpus=64) == pytest.approx(2e9 / 300)


@pytest.mark.timeout(120)
def test_bench_rps_too_small_to_time_the_work_alone_says_so(no_leftover_segments):
    """A run too small to time a worker alone gives no ceiling and says why (no
    traceback, no figure made up)."""
    from hetnic.bench_rps import bench_rps
    r = bench_rps(packets=200, flows=10, rounds=1, paced_batches=5, pace_us=500,
                  idle_s=0.05)
    alone = r["work_alone"]
    assert alone["ceiling_packets_per_s"] is None and r["ceiling_over_baseline"] is None
    assert "too few frames" in alone["note"]
    assert r["modes"]["futex"]["forwarded"] == r["modes"]["eventfd"]["forwarded"] == 200


@pytest.mark.timeout(180)
def test_bench_rps_reports_both_modes_on_a_small_run(no_leftover_segments):
    from hetnic.bench_rps import bench_rps, ceiling
    r = bench_rps(packets=20_000, flows=300, rounds=2, paced_batches=20, pace_us=500,
                  idle_s=0.1)
    for key in ("packets_per_s", "baseline_packets_per_s", "syscalls_per_packet",
                "baseline_syscalls_per_packet", "idle_worker_cpu_percent", "speedup"):
        assert r[key] >= 0, key
    assert set(r["wake_latency_us"]) == {"p50", "p99"}
    assert r["wait_mode"] in ("futex", "umwait")
    for mode in ("futex", "eventfd"):
        m = r["modes"][mode]
        assert m["forwarded"] == 2 * 20_000 and m["all_drained"]     # closed loop: no loss
        assert m["drops"] == m["order_errors"] == m["csum_errors"] == 0
        assert m["wake_latency_us"]["samples"] > 0
        assert 0 < m["driver_cpu_share"] and m["driver_cpu_ns_per_packet"] > 0
        check = m["ctxt_switches_vs_syscalls"]
        print(mode, check)
        assert len(check["voluntary_ctxt_switches"]) == len(check["worker_syscalls"]) == 2
        assert r["ctxt_switches_within_syscalls"][mode] is check["ok"]
        assert check["ok"], check       # every voluntary switch inside a counted syscall
    assert r["modes"]["eventfd"]["syscalls_per_packet"] > 0
    alone = r["work_alone"]
    assert alone["driver_ns_per_packet"] > 0 and alone["worker_ns_per_packet"] > 0
    assert r["ceiling_packets_per_s"] == alone["ceiling_packets_per_s"] == ceiling(
        alone["driver_ns_per_packet"], alone["worker_ns_per_packet"], 2, alone["cpus"])
    assert r["ceiling_over_baseline"] == (r["ceiling_packets_per_s"]
                                          / r["baseline_packets_per_s"])
    assert set(r["by_batch"]) == {"8", "32"}
    assert r["by_batch"]["32"]["packets_per_s"] == r["packets_per_s"]
    # The baseline pays its eventfd calls per batch: a smaller batch costs it more per packet.
    assert (r["by_batch"]["8"]["baseline_syscalls_per_packet"]
            > r["by_batch"]["32"]["baseline_syscalls_per_packet"])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["futex", "eventfd"])
def test_descriptors_of_pool_frames_forward_each_frame_once_in_place(mode,
                                                                     no_leftover_segments):
    """Zero-copy: with the frame set's segment as the pool, the rings carry 16-byte
    descriptors and the workers forward the frames where they are: each frame's TTL is one
    less afterwards (64 -> 63: forwarded exactly once), its checksum still valid, and
    renumber() puts the TTL back for another pass."""
    from hetnic.host.rps_frames import _ipv4_checksums
    seed = 21 + len(mode)
    print("seed", seed)
    with FrameSet.udp_flows(20_000, 300, seed=seed) as fs, \
            RpsDriver(2, mode=mode, nslots=1024, slot_size=16, pool=fs.segment,
                      spin_us=20) as drv:
        _steer_in_chunks(drv, fs, 0, len(fs), 1024)
        st = drv.stats()
        ttl = fs.data[:, 22].copy()
        csum_ok = (_ipv4_checksums(fs.data[:, 14:34]) == 0).all()
        fs.renumber()
        assert (fs.data[:, 22] == 64).all() and (_ipv4_checksums(fs.data[:, 14:34]) == 0).all()
        _steer_in_chunks(drv, fs, 0, len(fs), 1024)      # a second pass, renumbered
        again = drv.stats()
    assert (ttl == 63).all() and csum_ok
    assert st.steered == st.forwarded_total == 20_000 and st.drop_full == st.lost == 0
    assert st.order_errors == st.csum_errors == st.not_forwarded == st.unsequenced == 0
    assert again.forwarded_total == 40_000 and again.order_errors == again.not_forwarded == 0


@pytest.mark.timeout(120)
def test_frames_outside_the_pool_are_copied(no_leftover_segments):
    """A driver with a pool still takes frames from elsewhere: copied into the slots when
    they fit, counted drops when the slots only hold descriptors."""
    with FrameSet.udp_flows(2000, 20, seed=8) as pooled, \
            FrameSet.udp_flows(2000, 20, seed=8) as other, \
            RpsDriver(1, nslots=4096, pool=pooled.segment, spin_us=10) as big, \
            RpsDriver(1, nslots=4096, slot_size=16, pool=pooled.segment, spin_us=10) as small:
        big.steer(other.data, other.lens, other.hashes)
        small.steer(other.data, other.lens, other.hashes)
        assert big.drain(30) and small.drain(30)
        st_big, st_small = big.stats(), small.stats()
        assert (other.data[:, 22] == 64).all()          # copies were forwarded, not these
        assert (pooled.data[:, 22] == 64).all()
    assert st_big.forwarded == [2000] and st_big.order_errors == 0
    assert st_small.steered == 0 and st_small.drop_full == 2000


def test_a_pool_must_be_a_shared_segment():
    with pytest.raises(RpsError, match="pool must be"):
        RpsDriver(1, pool=np.zeros(64, np.uint8))



@pytest.mark.timeout(60)
def test_workers_run_at_the_niceness_asked(no_leftover_segments):
    with RpsDriver(2, worker_nice=7) as drv:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, p) for p in drv.pids] == [min(mine + 7, 19)] * 2
    with pytest.raises(RpsError, match="worker_nice"):
        RpsDriver(1, worker_nice=-1)
