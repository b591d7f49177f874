# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds components whose __init__ raises; they are never elaborated.)
"""ToeplitzHash in Amaranth's simulator against its oracle, hetnic.sim.model.toeplitz.toeplitz."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import data

from hetnic.gateware.toeplitz import ToeplitzHash, ToeplitzInput
from hetnic.sim.model.toeplitz import hash_input_ipv4, hash_input_ipv6, toeplitz
from hetnic.protocol import MS_RSS_DEFAULT_KEY
from kit import StreamSink, StreamSource, pack, run_simulation

CLOCK_PERIOD = 1e-8


def _make_jobs(rng, key, max_input, lengths, count):
    """``count`` jobs ``(data_int, length, expected_hash)`` cycling through ``lengths``. The
    bytes after ``length`` are random garbage, which the engine must ignore."""
    jobs = []
    for n in range(count):
        length = lengths[n % len(lengths)]
        data = rng.randbytes(max_input)
        jobs.append((int.from_bytes(data, "big"), length, toeplitz(key, data[:length])))
    return jobs


def _run(dut, key, jobs, *, gap, stall, seed, cycle_limit, drain_cycles=None):
    """Feed ``jobs`` into ``dut`` with random idle cycles on ``i`` (chance ``gap``, with
    garbage on the payload that must not be taken) and random backpressure on ``o`` (chance
    ``stall``). Returns the list of hashes received and ``(accept_cycle, output_cycle)``
    lists; fails if that takes more than ``cycle_limit`` cycles, or if a hash comes out
    afterwards."""
    in_rng, out_rng = random.Random(seed), random.Random(seed + 1)
    layout = dut.i.payload.shape()
    width = data.Layout.cast(layout).size
    # Both testbenches start at time 0 and count every clock edge, so their cycles agree.
    source = StreamSource(dut.i, rng=in_rng, gap=gap, name="i",
                          idle_payload=lambda: in_rng.getrandbits(width))
    source.extend(pack(layout, data=data_int, length=length) for data_int, length, _ in jobs)
    sink = StreamSink(dut.o, rng=out_rng, stall=stall, name="o")

    async def set_key(ctx):
        ctx.set(dut.key, int.from_bytes(key, "big"))

    async def consumer(ctx):
        await sink.receive(ctx, len(jobs))
        # Nothing may be left in flight: with o ready and no input, o stays idle.
        await sink.expect_idle(ctx, drain_cycles or 2 * dut.max_input + 4)

    run_simulation(dut, set_key, source.run, consumer, cycle_limit=cycle_limit,
                   clock_period=CLOCK_PERIOD)
    return sink.received, source.taken_at, sink.emitted_at


@pytest.mark.parametrize("bytes_per_cycle", [1, 4, 36])
def test_random_against_oracle(bytes_per_cycle):
    seed = 0x7E5 + bytes_per_cycle
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    key = rng.randbytes(40)
    count = {1: 200, 4: 400, 36: 800}[bytes_per_cycle]
    jobs = _make_jobs(rng, key, 36, [0, 8, 12, 32, 36], count)
    rng.shuffle(jobs)
    dut = ToeplitzHash(bytes_per_cycle)
    received, _, _ = _run(dut, key, jobs, gap=0.3, stall=0.4, seed=seed,
                          cycle_limit=40 * count + 200)
    assert len(received) == len(jobs)
    assert received == [expected for _, _, expected in jobs]


@pytest.mark.parametrize("bytes_per_cycle", [1, 4, 36])
def test_microsoft_vectors(bytes_per_cycle):
    vectors = [
        (hash_input_ipv4("66.9.149.187", "161.142.100.80"), 0x323E8FC2),
        (hash_input_ipv4("66.9.149.187", "161.142.100.80", 2794, 1766), 0x51CCC178),
        (hash_input_ipv6("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1"), 0x2CC18CD5),
        (hash_input_ipv6("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766),
         0x40207D3D),
    ]
    jobs = [(int.from_bytes(data.ljust(36, b"\xff"), "big"), len(data), expected)
            for data, expected in vectors]
    received, _, _ = _run(ToeplitzHash(bytes_per_cycle), MS_RSS_DEFAULT_KEY, jobs,
                          gap=0.0, stall=0.0, seed=1, cycle_limit=500)
    assert [hex(h) for h in received] == [hex(e) for _, _, e in jobs]


@pytest.mark.parametrize("bytes_per_cycle", [1, 4, 5, 36])
def test_latency_and_throughput(bytes_per_cycle):
    """Without stalls, every hash appears ``latency(length)`` cycles after its input was
    accepted, and inputs are accepted back to back every ``cycles(length)`` clocks."""
    rng = random.Random(3)
    key = rng.randbytes(40)
    jobs = _make_jobs(rng, key, 36, [12, 36, 0, 8, 13, 1, 40], 14)
    dut = ToeplitzHash(bytes_per_cycle)
    received, accepted_at, emitted_at = _run(dut, key, jobs, gap=0.0, stall=0.0,
                                             seed=3, cycle_limit=1000)
    assert received == [expected for _, _, expected in jobs]
    # The always-ready consumer takes each hash at the first edge it is valid, so the edge
    # difference is the latency in cycles.
    latencies = [out - inp for inp, out in zip(accepted_at, emitted_at)]
    assert latencies == [dut.latency(length) for _, length, _ in jobs]
    gaps = [b - a for a, b in zip(accepted_at, accepted_at[1:])]
    assert gaps == [dut.cycles(length) for _, length, _ in jobs[:-1]]


def test_uneven_chunks_and_small_max_input():
    """A bytes_per_cycle that does not divide max_input, and a 12-byte engine (IPv4 only)."""
    seed = 0x5EED
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    for bytes_per_cycle, max_input in [(5, 12), (12, 12), (7, 36)]:
        key = rng.randbytes(max_input + 4)
        jobs = _make_jobs(rng, key, max_input, list(range(max_input + 1)), 2 * (max_input + 1))
        received, _, _ = _run(ToeplitzHash(bytes_per_cycle, max_input), key, jobs,
                              gap=0.2, stall=0.3, seed=seed, cycle_limit=2000)
        assert received == [expected for _, _, expected in jobs], (bytes_per_cycle, max_input)


def test_overlong_length_acts_as_max_input():
    rng = random.Random(9)
    key = rng.randbytes(16)
    data = rng.randbytes(12)
    jobs = [(int.from_bytes(data, "big"), 15, toeplitz(key, data))] * 2
    for bytes_per_cycle in (5, 12):
        received, _, _ = _run(ToeplitzHash(bytes_per_cycle, 12), key, jobs,
                              gap=0.0, stall=0.0, seed=9, cycle_limit=200)
        assert received == [expected for _, _, expected in jobs]


def test_ports_and_layout():
    dut = ToeplitzHash(4)
    assert len(dut.key) == 320
    assert dut.i.payload.shape() == ToeplitzInput(36)
    assert len(dut.i.payload.data) == 288
    assert len(dut.i.payload.length) == 6
    assert len(dut.o.payload) == 32
    small = ToeplitzHash(3, max_input=12)
    assert len(small.key) == 128
    assert [small.cycles(n) for n in (0, 1, 3, 4, 12, 20)] == [1, 1, 1, 2, 4, 4]
    assert [small.latency(n) for n in (0, 4, 12)] == [2, 3, 5]
    parallel = ToeplitzHash(12, 12)
    assert [parallel.cycles(n) for n in (0, 12)] == [1, 1]
    assert [parallel.latency(n) for n in (0, 12)] == [2, 2]
    for dut in (dut, small, parallel):
        Fragment.get(dut, None)        # elaborates, and marks the component as used


@pytest.mark.parametrize("bytes_per_cycle, max_input", [
    (0, 36), (37, 36), (-1, 36), (2.0, 36), (True, 36), (1, 0), (1, "36"),
])
def test_bad_parameters(bytes_per_cycle, max_input):
    with pytest.raises(ValueError, match=r"must be"):
        ToeplitzHash(bytes_per_cycle, max_input)


def test_bad_layout_parameter():
    with pytest.raises(ValueError, match="'x'"):
        ToeplitzInput("x")
