"""SpscRing.push_many (hetnic.host.spsc): a batch in order, one index update, stopping at
the first item that does not fit; the batch pop_many reads what push and push_many wrote."""

import random

from hetnic.host.spsc import SpscRing


def _ring(nslots=8, slot_size=32):
    return SpscRing.create(memoryview(bytearray(SpscRing.bytes_needed(nslots, slot_size))),
                           nslots, slot_size)


def test_push_many_in_order_until_full():
    ring = _ring()
    items = [(bytes([i]) * (i + 1), i) for i in range(10)]
    assert ring.push_many(items) == 8            # 8 slots
    assert len(ring) == 8 and ring.free == 0
    assert ring.push_many(items[8:]) == 0
    assert ring.pop_many(3) == items[:3]
    assert ring.push_many(items[8:]) == 2
    assert ring.pop_many(100) == items[3:]
    assert ring.push_many([]) == 0 and ring.pop_many(5) == []


def test_push_many_stops_at_an_item_longer_than_a_slot():
    ring = _ring()
    long = b"x" * (ring.max_payload + 1)
    assert ring.push_many([(b"a", 1), (long, 2), (b"c", 3)]) == 1
    assert ring.pop_many(10) == [(b"a", 1)]
    assert ring.push_many([(b"y" * ring.max_payload, 0xFFFFFFFF)]) == 1
    assert ring.pop() == (b"y" * ring.max_payload, 0xFFFFFFFF)


def test_push_many_and_push_interleaved_wrap_around():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    ring = _ring(nslots=4, slot_size=24)
    sent, got = [], []
    for k in range(2000):
        if rng.random() < 0.5:
            batch = [(rng.randbytes(rng.randrange(0, 17)), k) for _ in range(rng.randrange(0, 6))]
            sent += batch[:ring.push_many(batch)]
        else:
            item = (rng.randbytes(rng.randrange(0, 17)), k)
            if ring.push(*item):
                sent.append(item)
        got += ring.pop_many(rng.randrange(0, 4))
    got += ring.pop_many(10)
    assert got == sent
