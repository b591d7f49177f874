"""The fault injector: rates within binomial bounds, reproducible, and its spec grammar."""

from __future__ import annotations

import math

import pytest

from hetnic.errors import HetnicError
from hetnic.host.faults import FaultInjector, FaultSpec, FaultSpecError, parse_faults

N = 50_000


def frames(n: int) -> list[bytes]:
    """Frames that carry their index twice, so a frame with one byte changed can still be
    matched with the one it came from."""
    return [i.to_bytes(4, "big") + bytes(56) + i.to_bytes(4, "big") for i in range(n)]


def bytes_changed(frame: bytes, sent: list[bytes]) -> int:
    """Bytes in which ``frame`` differs from the sent frame it is closest to."""
    candidates = {int.from_bytes(frame[:4], "big"), int.from_bytes(frame[-4:], "big")}
    return min(sum(a != b for a, b in zip(frame, sent[i]))
               for i in candidates if i < len(sent))


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_rates_within_binomial_bounds(seed):
    print(f"seed={seed}")
    spec = FaultSpec(loss=0.02, dup=0.01, reorder=0.02, corrupt=0.001, seed=seed)
    inj = FaultInjector(spec, "in")
    sent = frames(N)
    out = inj.process(sent, 0.0) + inj.flush()
    assert within_binomial(inj.lost, N, 0.02)
    survivors = N - inj.lost
    assert within_binomial(inj.corrupted, survivors, 0.001)
    assert within_binomial(inj.duplicated, survivors, 0.01)
    assert within_binomial(inj.reordered, survivors, 0.02)
    assert len(out) == N - inj.lost + inj.duplicated
    assert inj.frames_in == N and inj.frames_out == len(out)
    # Every frame that comes out is one that went in, or one with exactly one byte changed.
    changed = 0
    for f in out:
        diff = bytes_changed(f, sent)
        assert diff <= 1
        changed += diff
    assert inj.corrupted <= changed <= 2 * inj.corrupted     # a duplicate carries it too


def test_corruption_changes_exactly_one_byte():
    inj = FaultInjector(FaultSpec(corrupt=1.0, seed=3), "out")
    sent = [bytes(range(64))] * 1000
    out = inj.process(sent, 0.0)
    assert inj.corrupted == 1000 and len(out) == 1000
    offsets = set()
    for f in out:
        diff = [i for i in range(64) if f[i] != sent[0][i]]
        assert len(diff) == 1
        offsets.add(diff[0])
    assert len(offsets) > 50        # uniform over the frame, not always one place


def test_reproducible_and_directions_independent():
    spec = FaultSpec(loss=0.05, dup=0.05, reorder=0.05, corrupt=0.01, seed=7)
    a = FaultInjector(spec, "in").process(frames(5000), 0.0)
    b = FaultInjector(spec, "in").process(frames(5000), 0.0)
    c = FaultInjector(spec, "out").process(frames(5000), 0.0)
    assert a == b
    assert a != c


def test_reorder_releases_after_depth_frames():
    inj = FaultInjector(FaultSpec(reorder=1.0, depth=2, seed=0))
    held = inj.process([b"A"], 0.0)
    assert held == [] and inj.held == 1 and inj.next_deadline() == pytest.approx(0.005)
    inj.spec = FaultSpec(depth=2)               # nothing more is held back
    assert inj.process([b"B"], 0.0) == [b"B"]
    assert inj.process([b"C", b"D"], 0.0) == [b"C", b"A", b"D"]
    assert inj.held == 0 and inj.next_deadline() is None


def test_reorder_releases_after_hold_time():
    inj = FaultInjector(FaultSpec(reorder=1.0, depth=100, hold=0.01, seed=0))
    assert inj.process([b"A", b"B"], 1.0) == []
    assert inj.due(1.005) == []
    assert inj.due(1.01) == [b"A", b"B"]
    assert inj.frames_out == 2 and inj.held == 0


def test_no_faults_passes_everything_through():
    inj = FaultInjector()
    f = frames(100)
    assert inj.process(f, 0.0) == f
    assert inj.counters() == {"frames_in": 100, "frames_out": 100, "lost": 0,
                              "duplicated": 0, "reordered": 0, "corrupted": 0, "held": 0}


def test_parse_both_directions():
    plan = parse_faults("loss=2%,reorder=2%,dup=1%,corrupt=0.1%,seed=7")
    for spec in (plan.inbound, plan.outbound):
        assert spec == FaultSpec(loss=0.02, reorder=0.02, dup=0.01, corrupt=0.001, seed=7)
    assert plan.injector("in") is not None and plan.injector("out") is not None


def test_parse_per_direction():
    plan = parse_faults("seed=9; in:loss=2%,depth=5; out:loss=0.01,hold=2ms")
    assert plan.inbound == FaultSpec(loss=0.02, depth=5, seed=9)
    assert plan.outbound == FaultSpec(loss=0.01, hold=0.002, seed=9)
    assert parse_faults("in:dup=1%").injector("out") is None
    assert parse_faults("") == parse_faults(" ; ")
    assert parse_faults("both:loss=1%;out:loss=3%").outbound.loss == pytest.approx(0.03)


@pytest.mark.parametrize("spec, message", [
    ("loss=2", "must be from 0 to 100%"),
    ("loss=abc", "expected a probability"),
    ("lost=2%", "unknown fault 'lost'"),
    ("sideways:loss=1%", "fault direction 'sideways'"),
    ("loss", "expected key=value"),
    ("depth=0", "depth must be an integer >= 1"),
    ("hold=-1ms", "must be positive"),
    ("seed=x", "expected an integer"),
    ("loss=150%", "must be from 0 to 100%"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(FaultSpecError, match=message) as info:
        parse_faults(spec)
    assert isinstance(info.value, HetnicError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
