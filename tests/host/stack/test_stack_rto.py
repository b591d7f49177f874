"""RFC 6298 retransmission timer (host/stack/rto.py): the RFC's first-sample rule, the
EWMA updates in the RFC's order, the clamp and the capped exponential backoff."""

from __future__ import annotations

import random

import pytest

from hetnic.errors import HetnicError
from hetnic.host.stack.rto import RtoEstimator


def test_initial_rto():
    assert RtoEstimator().rto == 1.0
    assert RtoEstimator(min_rto=2.0, max_rto=60.0, initial=1.0).rto == 2.0    # clamped up
    assert RtoEstimator(min_rto=0.1, max_rto=0.5, initial=1.0).rto == 0.5     # clamped down
    est = RtoEstimator()
    assert (est.srtt, est.rttvar, est.samples) == (0.0, 0.0, 0)


def test_first_sample_sets_srtt_and_half_variance():
    est = RtoEstimator(min_rto=0.001)
    est.sample(0.1)
    assert est.srtt == pytest.approx(0.1) and est.rttvar == pytest.approx(0.05)
    assert est.rto == pytest.approx(0.1 + 4 * 0.05)           # SRTT + K*RTTVAR


def test_later_samples_follow_rfc_order():
    est = RtoEstimator(min_rto=0.001)
    est.sample(0.1)
    est.sample(0.3)
    # RTTVAR uses the old SRTT: 3/4 * 0.05 + 1/4 * |0.1 - 0.3|; then SRTT = 7/8*0.1 + 1/8*0.3.
    assert est.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert est.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    assert est.rto == pytest.approx(est.srtt + 4 * est.rttvar)


def test_granularity_and_clamp():
    est = RtoEstimator(min_rto=0.0001)
    for _ in range(200):
        est.sample(0.01)                          # RTTVAR decays toward 0
    assert est.rto == pytest.approx(0.01 + 0.001, rel=1e-3)    # G = 1 ms floor on K*RTTVAR
    est = RtoEstimator(min_rto=0.2, max_rto=3.0)
    est.sample(0.001)
    assert est.rto == 0.2
    est.sample(10.0)
    assert est.rto == 3.0


def test_backoff_doubles_capped_and_sample_ends_it():
    est = RtoEstimator(min_rto=0.2, max_rto=5.0)
    est.sample(0.1)                                # RTO = 0.3
    rtos = []
    for _ in range(6):
        est.backoff()
        rtos.append(est.rto)
    assert rtos == pytest.approx([0.6, 1.2, 2.4, 4.8, 5.0, 5.0])
    assert est.backoffs == 6
    est.reset_backoff()
    assert est.rto == pytest.approx(0.3) and est.backoffs == 0
    est.backoff()
    est.sample(0.1)
    assert est.backoffs == 0 and est.rto < 0.6


def test_random_samples_against_formula():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    est = RtoEstimator(min_rto=0.05, max_rto=10.0)
    srtt = rttvar = None
    for _ in range(500):
        r = rng.uniform(0.0, 2.0)
        est.sample(r)
        if srtt is None:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
        assert est.srtt == pytest.approx(srtt) and est.rttvar == pytest.approx(rttvar)
        assert est.rto == pytest.approx(min(max(srtt + max(0.001, 4 * rttvar), 0.05), 10.0))


@pytest.mark.parametrize("kwargs", [dict(min_rto=0), dict(max_rto=-1), dict(initial=0),
                                    dict(min_rto=2.0, max_rto=1.0), dict(min_rto="1")])
def test_bad_arguments(kwargs):
    with pytest.raises(HetnicError) as info:
        RtoEstimator(**kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
