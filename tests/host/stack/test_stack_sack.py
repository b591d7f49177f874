"""The RFC 6675 scoreboard (host/stack/sack.py) against an octet-by-octet model of the RFC's
definitions (IsLost, SetPipe, NextSeg), across the sequence-number wrap, plus directed cases."""

from __future__ import annotations

import random

import pytest

from hetnic.host.stack.sack import DUPTHRESH, SackScoreboard

M = 0xFFFFFFFF


class Model:
    """RFC 6675 section 4, literally: a set of SACKed octets (unwrapped offsets)."""

    def __init__(self):
        self.sacked: set[int] = set()

    def runs_above(self, s: int) -> int:
        runs, prev = 0, None
        for o in sorted(self.sacked):
            if o > s and (prev is None or o != prev + 1 or prev <= s):
                runs += 1
            prev = o
        return runs

    def is_lost(self, s: int, mss: int, dupthresh: int = DUPTHRESH) -> bool:
        return (self.runs_above(s) >= dupthresh
                or sum(1 for o in self.sacked if o > s) > (dupthresh - 1) * mss)

    def pipe(self, una: int, nxt: int, high_rxt: int, mss: int) -> int:
        pipe = 0
        for s in range(una, nxt):
            if s in self.sacked:
                continue
            if not self.is_lost(s, mss):
                pipe += 1
            if s < high_rxt:
                pipe += 1
        return pipe

    def next_seg(self, una, nxt, mss, high_rxt, new_data):
        top = max(self.sacked) if self.sacked else None
        s2 = max(una, high_rxt)
        while s2 in self.sacked:
            s2 += 1
        hole = top is not None and s2 < top and s2 < nxt
        def segment():
            end = s2
            while end < s2 + mss and end < nxt and end not in self.sacked:
                end += 1
            return s2, end - s2
        if hole and self.is_lost(s2, mss):
            return segment()
        if new_data > 0:
            return nxt, min(mss, new_data)
        if hole:
            return segment()
        return None


def test_directed_three_segments_sacked():
    board = SackScoreboard()
    mss, una = 100, 1000
    nxt = una + 10 * mss
    # Segment 0 lost, segments 1..3 arrive: three SACKed segments above seq una.
    assert board.update(una, [(una + 100, una + 200)], nxt) == 100
    assert not board.is_lost(una, mss)
    assert board.update(una, [(una + 100, una + 300)], nxt) == 100
    assert not board.is_lost(una, mss)                       # 200 bytes: not more than 2*mss
    assert board.update(una, [(una + 100, una + 301)], nxt) == 1
    assert board.is_lost(una, mss)                           # 201 bytes > 2*mss
    assert board.next_seg(una, nxt, mss, una) == (una, 100)
    assert board.next_seg(una, nxt, mss, una + 100) is None  # already retransmitted
    assert board.next_seg(una, nxt, mss, una + 100, new_data=50) == (nxt, 50)
    assert board.sacked_bytes == 201 and board.highest_sacked == una + 301
    assert board.is_sacked(una + 100) and not board.is_sacked(una + 301)
    # pipe: 100 lost bytes count 0; 699 bytes above the SACKed ones count once.
    assert board.pipe(una, nxt, una, mss) == 699
    assert board.pipe(una, nxt, una + 100, mss) == 799        # + the retransmission
    # The cumulative ACK covers the hole and the SACKed range: all forgotten.
    board.update(una + 301, [], nxt)
    assert len(board) == 0 and board.sacked_bytes == 0 and board.highest_sacked is None


def test_dupthresh_discontiguous_blocks():
    board = SackScoreboard()
    una, mss = 0, 1000
    board.update(una, [(10, 11), (20, 21)], 100)
    assert not board.is_lost(0, mss)
    board.update(una, [(30, 31)], 100)
    assert board.is_lost(0, mss) and board.is_lost(19, mss) is False
    assert board.is_lost(9, mss)


def test_invalid_blocks_ignored():
    board = SackScoreboard()
    board.update(500, [(400, 450), (600, 550), (700, 700), (800, 900)], snd_nxt=850)
    assert len(board) == 0
    assert board.update(500, [(450, 600)], snd_nxt=850) == 100      # clipped at snd_una
    assert board.blocks == [(500, 600)]


def test_clear_and_many_holes():
    board = SackScoreboard()
    una, mss = M - 50_000, 1448                   # the blocks cross the wrap
    blocks = [((una + 2 * k * mss) & M, (una + (2 * k + 1) * mss) & M) for k in range(1, 400)]
    for i in range(0, len(blocks), 4):
        board.update(una, blocks[i:i + 4], (una + 900 * mss) & M)
    assert len(board) == 399 and board.sacked_bytes == 399 * mss
    assert board.next_seg(una, (una + 900 * mss) & M, mss, una) == (una, mss)
    seq, length = board.next_seg(una, (una + 900 * mss) & M, mss, (una + 5 * mss) & M)
    assert (seq, length) == ((una + 5 * mss) & M, mss)
    board.clear()
    assert len(board) == 0 and board.next_seg(una, (una + 10) & M, mss, una) is None


@pytest.mark.parametrize("round_", range(6))
def test_random_against_model(round_):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    mss = rng.choice((1, 3, 10))
    base = rng.choice((0, M - 150, rng.randrange(1 << 32)))     # sequence of offset 0
    board, model = SackScoreboard(), Model()
    una, nxt, high_rxt = 0, rng.randrange(50, 300), 0
    for step in range(120):
        action = rng.random()
        if action < 0.6:
            blocks = []
            for _ in range(rng.randrange(1, 5)):
                left = rng.randrange(una - 20, nxt + 5)
                blocks.append((left, left + rng.randrange(-2, 3 * mss + 5)))
            want = 0
            for left, right in blocks:
                if right > max(left, una) and right <= nxt:
                    for o in range(max(left, una), right):
                        if o not in model.sacked:
                            model.sacked.add(o)
                            want += 1
            got = board.update((base + una) & M,
                               [((base + l) & M, (base + r) & M) for l, r in blocks],
                               (base + nxt) & M)
            assert got == want, (seed, step)
        elif action < 0.75:
            una = rng.randrange(una, nxt + 1)
            model.sacked = {o for o in model.sacked if o >= una}
            high_rxt = max(high_rxt, una)
            board.update((base + una) & M, [])
        elif action < 0.85:
            nxt += rng.randrange(0, 50)
        else:
            high_rxt = rng.randrange(una, nxt + 1)
        assert board.sacked_bytes == len(model.sacked)
        top = board.highest_sacked
        assert top == (None if not model.sacked else (base + max(model.sacked) + 1) & M)
        for s in range(una, nxt):
            seq = (base + s) & M
            assert board.is_sacked(seq) == (s in model.sacked), (seed, step, s)
            if s not in model.sacked:
                assert board.is_lost(seq, mss) == model.is_lost(s, mss), (seed, step, s)
        hr = max(high_rxt, una)
        assert board.pipe((base + una) & M, (base + nxt) & M, (base + hr) & M, mss) == \
            model.pipe(una, nxt, hr, mss), (seed, step)
        new_data = rng.choice((0, 0, 5))
        got = board.next_seg((base + una) & M, (base + nxt) & M, mss, (base + hr) & M,
                             new_data=new_data)
        want = model.next_seg(una, nxt, mss, hr, new_data)
        if want is not None:
            want = ((base + want[0]) & M, want[1])
        assert got == want, (seed, step)
