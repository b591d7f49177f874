"""Congestion control (host/stack/congestion.py): NewReno's slow start, byte-counting
congestion avoidance and loss reactions (RFC 5681/3465/6582), and CUBIC's window against RFC
9438's formulas: W_cubic(t) = C (t - K)^3 + W_max, K = cbrt(W_max (1 - beta) / C), the
Reno-friendly estimate and fast convergence."""

from __future__ import annotations

import pytest

from hetnic.errors import HetnicError
from hetnic.host.stack.congestion import (
    CONGESTION_CONTROLS, INITIAL_SSTHRESH, Cubic, NewReno, make_congestion)

MSS = 1000


def ack_round(cc, now: float, rtt: float, in_recovery: bool = False) -> int:
    """Acknowledge one window's worth of full segments at ``now``; returns segments acked."""
    n = cc.cwnd // cc.mss
    for _ in range(n):
        cc.on_ack(cc.mss, now, rtt, in_recovery)
    return n


def test_registry_and_factory():
    assert set(CONGESTION_CONTROLS) == {"newreno", "cubic"}
    for name, cls in CONGESTION_CONTROLS.items():
        cc = make_congestion(name, 1460, 10)
        assert type(cc) is cls and cc.name == name
        assert (cc.cwnd, cc.ssthresh, cc.mss) == (14600, INITIAL_SSTHRESH, 1460)
        assert cc.info()["cc"] == name
    with pytest.raises(HetnicError) as info:
        make_congestion("vegas", 1460, 10)
    assert isinstance(info.value, ValueError) and "newreno" in str(info.value)
    assert "\n" not in str(info.value)
    for bad in ((0, 10), (1460, 0), (1460.0, 10)):
        with pytest.raises(ValueError):
            NewReno(*bad)


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_slow_start_byte_counting(cls):
    cc = cls(MSS, 2)
    cc.on_ack(MSS, 0.0, 0.1, False)
    assert cc.cwnd == 3 * MSS
    cc.on_ack(5 * MSS, 0.0, None, False)         # RFC 3465: at most 2 SMSS per ACK
    assert cc.cwnd == 5 * MSS
    cc.on_ack(100, 0.0, None, False)
    assert cc.cwnd == 5 * MSS + 100
    # One RTT of per-segment ACKs doubles the window.
    cc = cls(MSS, 4)
    ack_round(cc, 0.0, 0.1)
    assert cc.cwnd == 8 * MSS and cc.in_slow_start
    # No growth during recovery.
    cc.on_ack(MSS, 0.0, 0.1, True)
    assert cc.cwnd == 8 * MSS


def test_slow_start_stops_at_ssthresh():
    cc = NewReno(MSS, 10)
    cc.ssthresh = 11 * MSS + 500
    cc.on_ack(2 * MSS, 0.0, None, False)
    assert cc.cwnd == 11 * MSS + 500 and not cc.in_slow_start


def test_newreno_congestion_avoidance():
    cc = NewReno(MSS, 10)
    cc.ssthresh = 10 * MSS
    for rtt_round in range(5):
        before = cc.cwnd
        ack_round(cc, float(rtt_round), 0.1)
        assert cc.cwnd == before + MSS           # one SMSS per window of bytes acked
    # Byte counting: small ACKs add up to the same growth.
    cc = NewReno(MSS, 10)
    cc.ssthresh = 10 * MSS
    for _ in range(100):
        cc.on_ack(100, 0.0, None, False)
    assert cc.cwnd == 11 * MSS


def test_newreno_loss_reactions():
    cc = NewReno(MSS, 10)
    cc.cwnd = 40 * MSS
    cc.on_enter_recovery(30 * MSS, 1.0)
    assert cc.ssthresh == 15 * MSS and cc.cwnd == 15 * MSS
    cc.on_ack(MSS, 1.1, None, True)
    assert cc.cwnd == 15 * MSS
    cc.on_exit_recovery(1.2)
    assert cc.cwnd == 15 * MSS and not cc.in_slow_start
    cc.on_enter_recovery(3 * MSS, 2.0)
    assert cc.ssthresh == 2 * MSS                 # at least 2 SMSS
    cc.cwnd = 20 * MSS
    cc.on_rto(20 * MSS, 3.0)
    assert (cc.cwnd, cc.ssthresh) == (MSS, 10 * MSS)
    assert cc.in_slow_start


def test_cubic_reduction_and_k():
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_enter_recovery(100 * MSS, 0.0)
    assert cc.w_max == 100 and cc.ssthresh == 70 * MSS and cc.cwnd == 70 * MSS
    cc.on_exit_recovery(0.5)
    cc.on_ack(MSS, 0.5, 0.1, False)
    assert cc.epoch_start == 0.5
    assert cc.k == pytest.approx((100 * (1 - 0.7) / 0.4) ** (1 / 3))
    assert cc.w_cubic(cc.k) == pytest.approx(100)
    assert cc.w_cubic(0) == pytest.approx(70)


def test_cubic_window_follows_w_cubic():
    """Large window, moderate RTT: the cubic region. cwnd tracks W_cubic(t) (it aims at
    W_cubic(t + RTT) each ACK), flattens at W_max around t = K, then probes above it."""
    cc = Cubic(MSS, 10)
    cc.cwnd = 1000 * MSS
    cc.on_enter_recovery(1000 * MSS, 0.0)
    cc.on_exit_recovery(0.0)
    rtt, now = 0.05, 0.0
    k = (1000 * 0.3 / 0.4) ** (1 / 3)
    seen = []
    while now < k + 3:
        ack_round(cc, now, rtt)
        now += rtt
        w = cc.cwnd / MSS
        t = now - cc.epoch_start
        expect = 0.4 * (t - k) ** 3 + 1000
        assert expect * 0.99 - 1 <= w <= 0.4 * (t + rtt - k) ** 3 + 1000 + 1, (t, w, expect)
        seen.append((t, w))
    plateau = [w for t, w in seen if abs(t - k) < 0.5]
    assert all(abs(w - 1000) < 5 for w in plateau)
    assert seen[-1][1] > 1000 + 0.4 * 2 ** 3 - 1      # convex region past K


def test_cubic_reno_friendly_region():
    """Short RTT, small window: many RTTs per second, so the Reno-friendly estimate W_est
    (alpha = 3(1-beta)/(1+beta) per RTT, 1 after W_max) is above W_cubic and sets cwnd."""
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_enter_recovery(100 * MSS, 0.0)
    cc.on_exit_recovery(0.0)
    rtt, now = 0.001, 0.0
    alpha = 3 * 0.3 / 1.7
    w_est = 70.0
    for _ in range(150):
        acked = ack_round(cc, now, rtt)
        now += rtt
        t = now - cc.epoch_start
        # The RFC's update per ACK of one segment: W_est += alpha / cwnd.
        step = alpha if w_est < 100 else 1.0
        w_est += step * acked / (cc.cwnd / MSS)
        assert cc.w_cubic(t) < cc.w_est
        assert cc.cwnd / MSS == pytest.approx(cc.w_est, abs=0.01)
        assert cc.w_est == pytest.approx(w_est, rel=0.02)
    assert cc.w_est > 100 + 10               # past W_max with alpha = 1


def test_cubic_fast_convergence():
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_enter_recovery(100 * MSS, 0.0)
    assert cc.w_max == 100
    cc.on_exit_recovery(0.0)
    cc.cwnd = 80 * MSS                       # lost again below the previous W_max
    cc.on_enter_recovery(80 * MSS, 1.0)
    assert cc.w_max == pytest.approx(80 * (1 + 0.7) / 2)
    assert cc.ssthresh == 56 * MSS
    cc.cwnd = 120 * MSS                      # and above it: no fast convergence
    cc.on_enter_recovery(120 * MSS, 2.0)
    assert cc.w_max == 120


def test_cubic_rto_then_slow_start_then_new_epoch():
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_rto(100 * MSS, 0.0)
    assert (cc.cwnd, cc.ssthresh, cc.w_max) == (MSS, 70 * MSS, 100)
    now, acks = 0.0, 0
    while cc.in_slow_start:
        cc.on_ack(MSS, now, 0.1, False)
        acks += 1
        now += 0.001
    assert cc.cwnd == 70 * MSS and cc.epoch_start is None and acks == 69
    cc.on_ack(MSS, now, 0.1, False)
    # RFC 9438 4.8: the first epoch after a timeout has W_max = the window at its start
    # and K = 0, so it grows convexly from there.
    assert cc.epoch_start == now
    assert cc.w_max == pytest.approx(70) and cc.k == 0
    # W_est starts at the window of the epoch start, below cwnd_prior (100, the window when
    # ssthresh was set), so alpha is 3(1-beta)/(1+beta) (RFC 9438 4.3): the Reno-friendly
    # estimate leads at first ...
    start = now
    for _ in range(20):
        ack_round(cc, now, 0.1)
        now += 0.1
    assert cc.cwnd / MSS == pytest.approx(70 + 20 * Cubic.ALPHA, abs=1.5)
    assert cc.w_cubic(now - start) < cc.cwnd / MSS
    # ... until the convex curve 70 + 0.4 t^3 overtakes it (t > 5 s).
    while now < start + 7.0:
        ack_round(cc, now, 0.1)
        now += 0.1
    assert cc.cwnd / MSS == pytest.approx(cc.w_cubic(now - start), rel=0.03)
    assert cc.cwnd / MSS > 70 + 70 + 10


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_repeated_rto_holds_ssthresh(cls):
    cc = cls(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_rto(100 * MSS, 0.0)
    first = cc.ssthresh
    assert first in (50 * MSS, 70 * MSS) and cc.cwnd == MSS
    cc.on_rto(100 * MSS, 1.0)                   # the same segment timed out again
    cc.on_rto(100 * MSS, 3.0)
    assert cc.ssthresh == first and cc.cwnd == MSS
    cc.on_ack(MSS, 3.5, None, False)           # progress: the next RTO reduces again
    cc.on_rto(2 * MSS, 4.0)
    assert cc.ssthresh == 2 * MSS


def test_cubic_window_never_shrinks_on_acks():
    cc = Cubic(MSS, 10)
    cc.cwnd = 50 * MSS
    cc.on_enter_recovery(50 * MSS, 0.0)
    cc.on_exit_recovery(0.0)
    last, now = cc.cwnd, 0.0
    for i in range(3000):
        cc.on_ack(MSS // 3, now, None if i % 5 else 0.02, False)
        now += 0.0005
        assert cc.cwnd >= last
        last = cc.cwnd


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_app_limited_loss_takes_ssthresh_from_the_flight(cls):
    """RFC 5681 3.1 / RFC 9438 4.6: ssthresh from the bytes in flight, not from a cwnd an
    application-limited sender never filled."""
    beta = 0.5 if cls is NewReno else Cubic.BETA
    cc = cls(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.on_enter_recovery(10 * MSS, 0.0)
    assert cc.ssthresh == int(10 * MSS * beta) and cc.cwnd == cc.ssthresh
    cc.cwnd = 100 * MSS
    cc.on_ack(MSS, 0.5, None, False)
    cc.on_rto(20 * MSS, 1.0)
    assert cc.ssthresh == int(20 * MSS * beta) and cc.cwnd == MSS
    cc.on_ack(MSS, 1.5, None, False)
    cc.on_enter_recovery(MSS, 2.0)
    assert cc.ssthresh == 2 * MSS


def test_cubic_reno_friendly_alpha_switches_at_cwnd_prior():
    """RFC 9438 4.3: alpha stays 3(1-beta)/(1+beta) until W_est reaches cwnd_prior (the
    window at the reduction), also when fast convergence put W_max below it."""
    cc = Cubic(MSS, 10)
    cc.w_max = 200.0
    cc.cwnd = 100 * MSS
    cc.on_enter_recovery(100 * MSS, 0.0)
    assert cc.w_max == pytest.approx(85) and cc.cwnd_prior == 100
    cc.on_exit_recovery(0.0)
    cc.on_ack(MSS, 0.0, 0.001, False)           # the epoch starts
    cc.w_est = 90.0                             # above W_max, below cwnd_prior
    w = cc._w
    cc.on_ack(MSS, 0.001, 0.001, False)
    assert cc.w_est - 90.0 == pytest.approx(Cubic.ALPHA / w)
    cc.w_est = 100.0
    w = cc._w
    cc.on_ack(MSS, 0.002, 0.001, False)
    assert cc.w_est - 100.0 == pytest.approx(1.0 / w)
