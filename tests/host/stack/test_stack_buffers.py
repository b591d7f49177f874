"""TCP send and receive buffers (host/stack/tcp_buffers.py): seeded random overlapping and
out-of-order inserts against a byte-set model, the window bound on memory, and RFC 2018 SACK
block order."""

from __future__ import annotations

import random

import pytest

from hetnic.host.stack.tcp_buffers import MAX_OOO_INTERVALS, ReceiveBuffer, SendBuffer


# --- SendBuffer -----------------------------------------------------------------------------

def test_send_buffer_write_peek_consume():
    buf = SendBuffer(10)
    assert (len(buf), buf.free) == (0, 10)
    assert buf.write(b"hello") == 5
    assert buf.write(memoryview(b"world!!")) == 5            # only what fits
    assert buf.write(b"x") == 0 and buf.free == 0
    assert buf.peek(0, 3) == b"hel" and buf.peek(3, 100) == b"loworld"
    assert type(buf.peek(0, 1)) is bytes
    buf.consume(4)
    assert len(buf) == 6 and buf.peek(0, 2) == b"ow" and buf.free == 4
    buf.consume(100)
    assert len(buf) == 0 and buf.peek(0, 10) == b""


def test_send_buffer_random_against_model():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    buf, model = SendBuffer(5000), bytearray()
    for _ in range(3000):
        action = rng.random()
        if action < 0.5:
            data = rng.randbytes(rng.randrange(2000))
            n = buf.write(data)
            assert n == min(len(data), 5000 - len(model))
            model += data[:n]
        elif action < 0.8:
            offset, n = rng.randrange(len(model) + 2), rng.randrange(1600)
            assert buf.peek(offset, n) == bytes(model[offset:offset + n])
        else:
            n = rng.randrange(len(model) + 1)
            buf.consume(n)
            del model[:n]
        assert len(buf) == len(model) and buf.free == 5000 - len(model)


def test_bad_capacity():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            SendBuffer(bad)
        with pytest.raises(ValueError):
            ReceiveBuffer(bad)


# --- ReceiveBuffer --------------------------------------------------------------------------

class ReceiveModel:
    """The obvious model: a set of received stream positions and the bytes at them."""

    def __init__(self, capacity: int, stream: bytes):
        self.capacity, self.stream = capacity, stream
        self.rcv_nxt = 0          # stream offset
        self.read_pos = 0         # stream offset of the next byte the app reads
        self.held: set[int] = set()

    @property
    def readable(self) -> int:
        return self.rcv_nxt - self.read_pos

    def insert(self, start: int, end: int) -> int:
        edge = self.rcv_nxt + self.capacity - self.readable
        self.held.update(range(max(start, self.rcv_nxt), min(end, edge)))
        before = self.rcv_nxt
        while self.rcv_nxt in self.held:
            self.held.discard(self.rcv_nxt)
            self.rcv_nxt += 1
        return self.rcv_nxt - before

    def read(self, n: int) -> bytes:
        n = min(n, self.readable)
        out = self.stream[self.read_pos:self.read_pos + n]
        self.read_pos += n
        return out

    def intervals(self) -> list[tuple[int, int]]:
        out: list[list[int]] = []
        for pos in sorted(self.held):
            if out and out[-1][1] == pos:
                out[-1][1] += 1
            else:
                out.append([pos, pos + 1])
        return [tuple(x) for x in out]


@pytest.mark.parametrize("round_", range(4))
def test_receive_random_against_model(round_):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    capacity = rng.choice((1, 7, 3000, 20000))
    stream = rng.randbytes(200_000)
    buf, model = ReceiveBuffer(capacity), ReceiveModel(capacity, stream)
    isn = rng.randrange(1 << 32)
    got = bytearray()
    for step in range(4000):
        if rng.random() < 0.7:
            length = rng.choice((1, 2, 100, 536, 1448, rng.randrange(4000)))
            start = model.rcv_nxt + rng.randrange(-3000, capacity + 3000)
            start = max(0, min(start, len(stream) - 1))
            end = min(start + length, len(stream))
            chunk = stream[start:end]
            if rng.random() < 0.3:
                chunk = memoryview(chunk)
            rcv_nxt = model.rcv_nxt
            drops = buf.ooo_drops
            got_now = buf.insert(start - rcv_nxt, chunk)
            if buf.ooo_drops != drops:
                # Dropped at the store's limits: only out of order, only when full.
                assert got_now == 0 and start > rcv_nxt, (seed, step)
                assert (len(model.intervals()) >= MAX_OOO_INTERVALS - 1
                        or len(buf._pieces) + MAX_OOO_INTERVALS >= buf._max_pieces), (seed, step)
                continue
            want = model.insert(start, end)
            assert got_now == want, (seed, step)
            intervals = model.intervals()
            blocks = buf.sack_blocks((isn + model.rcv_nxt) & 0xFFFFFFFF, limit=100)
            as_offsets = sorted(((left - isn) & 0xFFFFFFFF, (right - isn) & 0xFFFFFFFF)
                                for left, right in blocks)
            # (offsets stay below 2**32 here, so the sequence numbers map back one-to-one)
            assert as_offsets == intervals, (seed, step)
            # RFC 2018: the first block holds this segment, if any of it is out of order.
            held_now = [p for p in range(max(start, model.rcv_nxt), end) if p in model.held]
            if held_now:
                left = (blocks[0][0] - isn) & 0xFFFFFFFF
                right = (blocks[0][1] - isn) & 0xFFFFFFFF
                assert left <= held_now[0] < right, (seed, step)
        else:
            n = rng.choice((1, 100, 5000, -1))
            want = model.read(model.readable if n < 0 else n)
            assert buf.read(n) == want
            got += want
        assert buf.readable == model.readable
        assert buf.window == capacity - model.readable
        assert buf.out_of_order == len(model.held)
        assert buf.readable + buf.out_of_order <= capacity
        assert buf.has_holes == bool(model.held)
    got += buf.read()
    assert bytes(got) == stream[:model.rcv_nxt]


def test_receive_in_order_and_window_trim():
    buf = ReceiveBuffer(10)
    assert buf.insert(0, b"abcd") == 4
    assert buf.insert(0, b"efghijklmn") == 6               # trimmed at the window edge
    assert buf.window == 0 and buf.insert(0, b"z") == 0
    assert buf.read(3) == b"abc" and buf.window == 3
    assert buf.insert(0, b"klmnop") == 3
    assert buf.read() == b"defghijklm"


def test_receive_old_duplicates_and_overlap():
    buf = ReceiveBuffer(100)
    assert buf.insert(-5, b"0123456789") == 5               # first 5 bytes already had
    assert buf.read() == b"56789"
    assert buf.insert(-10, b"old") == 0
    assert buf.insert(10, b"KLMNO") == 0                      # out of order
    assert buf.insert(12, b"mnopq") == 0                      # overlaps: first copy kept
    assert buf.out_of_order == 7
    assert buf.insert(0, b"ABCDEFGHIJKL") == 17               # fills the hole, joins both
    assert buf.read() == b"ABCDEFGHIJKLMNOpq"
    assert buf.out_of_order == 0 and not buf.has_holes


def test_receive_memory_bounded_by_window():
    buf = ReceiveBuffer(4096)
    assert buf.insert(0, b"x" * 1000) == 1000
    for offset in range(1, 100_000, 700):                    # flood past the hole
        buf.insert(offset, b"y" * 1448)
    assert buf.out_of_order == 4096 - 1000 - 1
    assert buf.readable + buf.out_of_order <= buf.capacity
    assert buf.sack_blocks(0) == [(1, 3096)]


def test_out_of_order_intervals_are_capped():
    """A flood of one-byte segments, each its own interval, in a 256 KiB window: past
    MAX_OOO_INTERVALS they are dropped and counted; what is held is kept and delivered."""
    buf = ReceiveBuffer(256 * 1024)
    for offset in range(2, 256 * 1024, 2):
        buf.insert(offset, b"z")
    assert len(buf._starts) == MAX_OOO_INTERVALS
    assert buf.ooo_drops == len(range(2, 256 * 1024, 2)) - MAX_OOO_INTERVALS
    assert buf.out_of_order == MAX_OOO_INTERVALS
    assert len(buf.sack_blocks(0)) == 4
    # A segment inside or touching a held interval still merges (no new interval).
    assert buf.insert(3, b"y") == 0 and len(buf._starts) == MAX_OOO_INTERVALS - 1
    assert buf.insert(0, b"ab") == 5 and buf.read() == b"abzyz"


def test_out_of_order_pieces_are_capped():
    """Intervals made and then joined by one-byte fillers: the pieces that tile them stay
    bounded too (by capacity // 256), with the drops counted."""
    buf = ReceiveBuffer(64 * 1024)
    pos = 10
    for _ in range(200):
        for k in range(MAX_OOO_INTERVALS):
            buf.insert(pos + 2 * k, b"a")
        for k in range(MAX_OOO_INTERVALS):
            buf.insert(pos + 2 * k + 1, b"b")
        pos += 2 * MAX_OOO_INTERVALS + 1
    assert len(buf._pieces) <= buf._max_pieces and buf.ooo_drops > 0
    assert len(buf._starts) <= MAX_OOO_INTERVALS
    assert buf.readable + buf.out_of_order <= buf.capacity
    assert buf._starts[0] == 10                 # the first round joined into one interval
    first = buf._ends[0] - buf._starts[0]
    assert first == 2 * MAX_OOO_INTERVALS
    assert buf.insert(0, bytes(10)) == 10 + first
    assert buf.read() == bytes(10) + b"ab" * MAX_OOO_INTERVALS


def test_sack_block_order():
    buf = ReceiveBuffer(100_000)
    rcv_nxt = 0xFFFFFF00                                       # wraps within the blocks
    for offset in (1000, 3000, 5000, 7000, 9000):
        buf.insert(offset, b"s" * 100)
    assert buf.sack_blocks(rcv_nxt) == [
        ((rcv_nxt + a) & 0xFFFFFFFF, (rcv_nxt + a + 100) & 0xFFFFFFFF)
        for a in (9000, 7000, 5000, 3000)]
    buf.insert(3100, b"t" * 50)                               # extends the 3000 block
    blocks = buf.sack_blocks(rcv_nxt, limit=3)
    assert [((left - rcv_nxt) & 0xFFFFFFFF, (right - rcv_nxt) & 0xFFFFFFFF)
            for left, right in blocks] == [(3000, 3150), (9000, 9100), (7000, 7100)]
    buf.insert(0, b"h" * 1000)                                # first block now in order
    assert buf.readable == 1100
    assert len(buf.sack_blocks(rcv_nxt + 1100, limit=10)) == 4
    assert buf.sack_blocks(0, limit=1) == [(3000 - 1100, 3150 - 1100)]


def test_clear():
    buf = ReceiveBuffer(100)
    buf.insert(0, b"ab")
    buf.insert(5, b"cd")
    buf.clear()
    assert (buf.readable, buf.out_of_order, buf.sack_blocks(0)) == (0, 0, [])
    assert buf.insert(0, b"xy") == 2 and buf.read() == b"xy"


def test_send_buffer_skips_acked_bytes_and_cuts_its_front_per_capacity():
    """Acknowledged bytes are skipped, not cut, until a capacity's worth accumulated; the
    buffer's contents and free space stay exact through the cut."""
    buf, model = SendBuffer(1000), bytearray()
    stream = bytes(range(256)) * 40
    at = 0
    cuts = 0
    for _ in range(60):
        n = buf.write(stream[at:at + 700])
        model += stream[at:at + n]
        at += n
        head_before = buf._head
        buf.consume(300)
        del model[:300]
        if buf._head < head_before + 300 and len(model):
            cuts += 1
        assert len(buf) == len(model) and buf.free == 1000 - len(model)
        assert buf.peek(0, 5000) == bytes(model)
        assert buf._head < 1000                  # never a capacity's worth kept
    assert cuts > 0
