"""The SPSC ring: order, wrap-around, full and too-long pushes, a consumer in another
process."""

import multiprocessing
import os
import random

import pytest

from hetnic.host import spsc
from hetnic.host.shm import SHM_DIR, SharedSegment
from hetnic.host.spsc import SpscError, SpscRing


def _ring(nslots=8, slot_size=32):
    return SpscRing.create(bytearray(SpscRing.bytes_needed(nslots, slot_size)), nslots,
                           slot_size)


def test_push_pop_in_order_across_many_wrap_arounds():
    seed = random.randrange(1 << 32)
    print("seed", seed)
    rng = random.Random(seed)
    ring = _ring(8, 32)
    sent = received = 0
    while received < 1000:
        for _ in range(rng.randrange(0, 9)):
            data = bytes([sent & 0xFF]) * rng.randrange(0, ring.max_payload + 1)
            if ring.push(data, aux=sent):
                sent += 1
            else:
                assert ring.free == 0
        for data, aux in ring.pop_many(rng.randrange(0, 9)):
            assert aux == received and set(data) <= {received & 0xFF}
            received += 1
        assert len(ring) == sent - received
    assert ring.producer_index == sent and ring.consumer_index == received > ring.capacity


def test_a_full_ring_refuses_and_keeps_its_contents():
    ring = _ring(4, 24)
    assert [ring.push(b"x%d" % i, i) for i in range(5)] == [True] * 4 + [False]
    assert len(ring) == 4 and ring.free == 0
    assert ring.pop() == (b"x0", 0)
    assert ring.push(b"x4", 4)
    assert [aux for _, aux in ring.pop_many(10)] == [1, 2, 3, 4]
    assert ring.pop() is None and ring.pop_many(3) == []


def test_a_payload_longer_than_a_slot_is_refused_and_nothing_is_stored():
    ring = _ring(4, 24)
    assert ring.max_payload == 16
    assert ring.push(bytes(16), 7)
    assert not ring.push(bytes(17))
    assert len(ring) == 1 and ring.pop() == (bytes(16), 7)


def test_aux_is_a_32_bit_word():
    ring = _ring()
    ring.push(b"", (1 << 32) + 5)
    assert ring.pop() == (b"", 5)


@pytest.mark.parametrize("nslots, slot_size", [(3, 32), (1, 32), (8, 12), (8, 30), (0, 0)])
def test_bad_geometry_is_a_one_line_error(nslots, slot_size):
    with pytest.raises(SpscError, match="must be"):
        SpscRing.bytes_needed(nslots, slot_size)


def test_attach_checks_the_header_and_size():
    buf = bytearray(SpscRing.bytes_needed(8, 32))
    with pytest.raises(SpscError, match="bad magic"):
        SpscRing.attach(buf)
    with pytest.raises(SpscError, match="needs"):
        SpscRing.create(buf[:-1], 8, 32)
    SpscRing.create(buf, 8, 32)
    with pytest.raises(SpscError, match="header says"):
        SpscRing.attach(buf[:-8])
    with pytest.raises(SpscError, match="writable"):
        SpscRing.attach(bytes(buf))
    other = SpscRing.attach(buf)
    assert (other.capacity, other.slot_size) == (8, 32)


def test_the_layout_reaches_c_as_defines():
    flags = spsc.c_defines()
    assert f"-DSPSC_OFF_PROD={spsc.OFF_PROD}" in flags
    assert f"-DSPSC_OFF_SLEEPING={spsc.OFF_SLEEPING}" in flags
    # producer and consumer indices on separate 64-byte lines, slots after the header
    assert spsc.OFF_PROD // 64 != spsc.OFF_CONS // 64
    assert spsc.HEADER_SIZE % 64 == 0 and spsc.OFF_WAKE_STAMP + 8 <= spsc.HEADER_SIZE


def _consume(name: str, count: int, out) -> None:
    seg = SharedSegment.attach(name)
    ring = SpscRing.attach(seg.buf)
    got = []
    try:
        while len(got) < count:
            for data, aux in ring.pop_many(16):
                got.append((aux, data))
            ring.heartbeat = ring.heartbeat + 1
        out.send(got)
    finally:
        ring.release()
        seg.close()


@pytest.mark.timeout(120)
def test_a_consumer_in_another_process_gets_everything_in_order():
    ctx = multiprocessing.get_context("spawn")
    count = 3000
    with SharedSegment.create(SpscRing.bytes_needed(16, 64), prefix="hetnic-test") as seg:
        ring = SpscRing.create(seg.buf, 16, 64)
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_consume, args=(seg.name, count, send))
        child.start()
        try:
            i = 0
            while i < count:
                if ring.push(i.to_bytes(4, "little") * (i % 14), i):
                    i += 1
                elif not child.is_alive():
                    pytest.fail(f"the consumer died (exit status {child.exitcode})")
            assert recv.poll(100), "the consumer did not finish"
            got = recv.recv()
            child.join(30)
            beat, left = ring.heartbeat, len(ring)
        finally:
            if child.is_alive():
                child.kill()
            child.join()
            ring.release()
        assert [aux for aux, _ in got] == list(range(count))
        assert all(data == aux.to_bytes(4, "little") * (aux % 14) for aux, data in got)
        assert beat > 0 and left == 0
    assert not os.path.exists(os.path.join(SHM_DIR, seg.name))
