# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds components whose __init__ raises; they are never elaborated.)
"""RoundRobin in Amaranth's simulator against a Python model of the grant."""

import random

import pytest

from hetnic.gateware.round_robin import RoundRobin
from kit import run_simulation

SEED = 0x5EED_4242


def model_grant(requests, last, n):
    """The first asking requester after ``last``, wrapping; 0 while none asks."""
    for k in range(1, n + 1):
        if requests >> ((last + k) % n) & 1:
            return (last + k) % n
    return 0


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_against_model(n):
    seed = SEED + n
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    dut = RoundRobin(n)

    async def bench(ctx):
        last = 0                        # requester 0 counts as served last after reset
        for _ in range(400):
            requests = rng.getrandbits(n) if rng.random() < 0.8 else (1 << n) - 1
            served = rng.random() < 0.7
            ctx.set(dut.requests, requests)
            ctx.set(dut.served_stb, served)
            grant = model_grant(requests, last, n)
            assert ctx.get(dut.valid) == (requests != 0)
            assert ctx.get(dut.grant) == grant
            await ctx.tick()
            if served and requests:
                last = grant

    run_simulation(dut, bench, cycle_limit=410)


def test_fair_under_full_load():
    """All asking and every grant served: each requester in turn, starting after 0."""
    dut = RoundRobin(4)
    grants = []

    async def bench(ctx):
        ctx.set(dut.requests, 0b1111)
        ctx.set(dut.served_stb, 1)
        for _ in range(9):
            grants.append(ctx.get(dut.grant))
            await ctx.tick()

    run_simulation(dut, bench, cycle_limit=20)
    assert grants == [1, 2, 3, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_bad_parameters(n):
    with pytest.raises(ValueError, match=f"not {n!r}"):
        RoundRobin(n)
