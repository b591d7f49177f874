"""SYN cookies (host/stack/syncookies.py): round trip, MSS rounding, the age limit, and
rejection of any change to the 4-tuple, the peer's ISN, the cookie or the secret."""

from __future__ import annotations

import random

import pytest

from hetnic.errors import HetnicError
from hetnic.host.stack.syncookies import COOKIE_PERIOD, MAX_AGE, MSS_TABLE, SynCookies

SRC, DST = bytes((198, 18, 0, 1)), bytes((198, 18, 0, 2))


def test_round_trip_and_mss_rounding():
    cookies = SynCookies(bytes(range(32)))
    for mss, want in ((1460, 1460), (1459, 1440), (9000, 8960), (100, 536), (536, 536),
                      (1220, 1220), (65535, 8960)):
        cookie = cookies.make(SRC, DST, 40000, 80, 12345, mss, 1000.0)
        assert 0 <= cookie < 1 << 32
        assert cookies.check(SRC, DST, 40000, 80, 12345, cookie, 1000.5) == want
    assert set(MSS_TABLE) == {cookies.check(SRC, DST, 1, 2, 3, cookies.make(
        SRC, DST, 1, 2, 3, m, 0.0), 0.0) for m in MSS_TABLE}


def test_age_limit():
    cookies = SynCookies(b"k" * 16)
    made = 5000.0
    cookie = cookies.make(SRC, DST, 1, 2, 3, 1460, made)
    start = (made // COOKIE_PERIOD) * COOKIE_PERIOD       # start of the counter period
    assert cookies.check(SRC, DST, 1, 2, 3, cookie, start + (MAX_AGE + 1) * COOKIE_PERIOD
                         - 0.001) == 1460
    assert cookies.check(SRC, DST, 1, 2, 3, cookie,
                         start + (MAX_AGE + 1) * COOKIE_PERIOD) is None
    assert 90 <= MAX_AGE * COOKIE_PERIOD and (MAX_AGE + 1) * COOKIE_PERIOD <= 130
    # Much later (the 5-bit counter has wrapped) the hash over the full counter fails.
    assert cookies.check(SRC, DST, 1, 2, 3, cookie, made + 32 * COOKIE_PERIOD) is None


def test_any_change_rejected():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    cookies = SynCookies(rng.randbytes(32))
    other = SynCookies(rng.randbytes(32))
    accepted = 0
    for _ in range(300):
        src, dst = rng.randbytes(16), rng.randbytes(16)
        sport, dport, isn = rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 32)
        now = rng.uniform(0, 1e6)
        cookie = cookies.make(src, dst, sport, dport, isn, 1440, now)
        assert cookies.check(src, dst, sport, dport, isn, cookie, now + 1) == 1440
        assert other.check(src, dst, sport, dport, isn, cookie, now) is None
        assert cookies.check(src, dst, sport, dport ^ 1, isn, cookie, now) is None
        assert cookies.check(src, dst, sport ^ 0x100, dport, isn, cookie, now) is None
        assert cookies.check(dst, src, sport, dport, isn, cookie, now) is None
        assert cookies.check(src, dst, sport, dport, (isn + 1) & 0xFFFFFFFF, cookie, now) is None
        for bit in (0, 23, 24, 27):
            if cookies.check(src, dst, sport, dport, isn, cookie ^ (1 << bit), now) is not None:
                accepted += 1
    # A flipped bit passes only by a 24-bit hash collision.
    assert accepted <= 1


def test_bad_secret():
    for bad in (b"short", b"x" * 33, "x" * 20):
        with pytest.raises(HetnicError):
            SynCookies(bad)
