"""RSS policies (hetnic.host.rss_policy): imbalance scores, the multi-key Toeplitz scorer
against the bit-serial oracle, key validity and symmetry, the key selector's hysteresis and
the RETA balancer's guarantees. Random tests carry their seed in the test id."""

import dataclasses
import json
import math

import numpy as np
import pytest

from hetnic.host.rss_keys import symmetric_key
from hetnic.sim.model.toeplitz import hash_input_ipv4, hash_input_ipv6, toeplitz
from hetnic.host.rss_policy import (
    BalanceDecision, FlowSet, GainGuard, KeySelector, RetaBalancer, Scores, bucket_loads,
    flow_hashes,
    is_symmetric_key, lower_bound, queue_loads, random_keys, score_keys, scores,
    symmetric_keys, validate_key,
)
from hetnic.protocol import MS_RSS_DEFAULT_KEY, RSS_KEY_LEN

from rss_vectors import MS_IPV4_VECTORS, MS_IPV6_VECTORS

SEEDS = [pytest.param(seed, id=f"seed={seed}") for seed in (1, 2, 3)]


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def random_flows(rng, n4: int, n6: int = 0, other: int = 0) -> FlowSet:
    return FlowSet(rng.integers(0, 256, (n4, 12), dtype=np.uint8),
                   rng.integers(0, 50, n4), rng.integers(0, 5000, n4),
                   rng.integers(0, 256, (n6, 36), dtype=np.uint8),
                   rng.integers(0, 50, n6), rng.integers(0, 5000, n6),
                   other, other * 100)


def empty_flows() -> FlowSet:
    return FlowSet.from_inputs([], [], [])


def assert_json_safe(record):
    json.dumps(dataclasses.asdict(record), allow_nan=False)


# --- Scores ---------------------------------------------------------------------------------

@pytest.mark.parametrize("loads, expected", [
    ([1, 1, 1, 1], Scores(1.0, 0.0, 1.0, 0.0, 4.0, False)),
    ([4, 0, 0, 0], Scores(4.0, math.sqrt(3), 0.25, None, 4.0, False)),
    ([3, 1], Scores(1.5, 0.5, 0.8, 2.0, 4.0, False)),
    ([0, 0, 0], Scores(1.0, 0.0, 1.0, 0.0, 0.0, True)),
    ([7], Scores(1.0, 0.0, 1.0, 0.0, 7.0, False)),
    ([0], Scores(1.0, 0.0, 1.0, 0.0, 0.0, True)),
    (np.array([2.0, 4.0, 6.0]), Scores(1.5, math.sqrt(8 / 3) / 4, 144 / 168, 2.0, 12.0, False)),
])
def test_scores_hand_computed(loads, expected):
    result = scores(loads)
    assert result.max_min == pytest.approx(expected.max_min)
    assert result.empty is expected.empty
    for name in ("max_mean", "cov", "jain", "total"):
        assert getattr(result, name) == pytest.approx(getattr(expected, name)), name
    assert_json_safe(result)


@pytest.mark.parametrize("loads", [[1e-300, 1e-300, 0], [1e300] * 5, [1e300, 1e-300]])
def test_scores_extreme_values_stay_finite(loads):
    result = scores(loads)
    assert_json_safe(result)
    assert 1.0 <= result.max_mean <= len(loads)
    assert 1 / len(loads) <= result.jain <= 1.0


@pytest.mark.parametrize("loads", [[], [[1, 2]], [-1, 2], [float("nan")], [float("inf")],
                                   ["a"], [1e308, 1e308]])
def test_scores_bad_loads(loads):
    one_line_error(scores, loads)


@pytest.mark.parametrize("flow_loads, queues, expected", [
    ([10], 4, 4.0),                 # one flow: everything on one queue
    ([1, 1, 1, 1], 2, 1.0),         # flows smaller than the mean queue load
    ([6, 1, 1], 2, 1.5),            # 6 / (8 / 2)
    ([], 8, 1.0),
    ([0, 0], 8, 1.0),
    (np.array([1e300, 1e300]), 4, 2.0),
])
def test_lower_bound(flow_loads, queues, expected):
    assert lower_bound(flow_loads, queues) == pytest.approx(expected)


@pytest.mark.parametrize("args", [([1], 0), ([1], 1.5), ([-1], 2), ([[1]], 2)])
def test_lower_bound_bad_input(args):
    one_line_error(lower_bound, *args)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_key_beats_the_lower_bound(seed):
    rng = np.random.default_rng(seed)
    flows = random_flows(rng, 40, 5, other=30)
    keys = random_keys(rng, 32)
    table = rng.integers(0, 8, 64)
    bound = lower_bound(flows.flow_loads(), 8)
    assert (score_keys(keys, flows, table, 8) >= bound - 1e-12).all()


# --- Flows and multi-key hashing ------------------------------------------------------------

def test_flow_set_from_inputs():
    a = hash_input_ipv4("10.0.0.1", "10.0.0.2", 1000, 80)
    b = hash_input_ipv6("2001:db8::1", "2001:db8::2", 1000, 443)
    c = hash_input_ipv4("10.0.0.3", "10.0.0.4")              # no ports: stored with ports 0
    flows = FlowSet.from_inputs([a, b, b"", c, b""], [1, 2, 3, 4, 5], [10, 20, 30, 40, 50])
    assert len(flows) == 4
    assert flows.inputs4.tolist() == [list(a), list(c + bytes(4))]
    assert flows.packets4.tolist() == [1, 4] and flows.bytes6.tolist() == [20]
    assert (flows.other_packets, flows.other_bytes) == (8, 80)
    assert flows.flow_loads().tolist() == [1, 4, 2, 8]
    assert flows.flow_loads("bytes").tolist() == [10, 40, 20, 80]
    h4, h6 = flow_hashes(MS_RSS_DEFAULT_KEY, flows)
    assert h4[0].tolist() == [toeplitz(MS_RSS_DEFAULT_KEY, a), toeplitz(MS_RSS_DEFAULT_KEY, c)]
    assert h6[0].tolist() == [toeplitz(MS_RSS_DEFAULT_KEY, b)]
    assert len(flows.subset([True, False], [False])) == 1
    assert len(flows.subset([False, False], [False], other=True)) == 1
    assert len(empty_flows()) == 0


@pytest.mark.parametrize("inputs, packets, bytes_", [
    ([b"\0" * 11], [1], [1]),
    ([b"\0" * 40], [1], [1]),
    (["10.0.0.1"], [1], [1]),
    ([b"\0" * 12], [1, 2], [1]),
    ([b"\0" * 12], [-1], [1]),
])
def test_flow_set_bad_inputs(inputs, packets, bytes_):
    one_line_error(FlowSet.from_inputs, inputs, packets, bytes_)


def test_flow_set_bad_arrays():
    one_line_error(FlowSet, np.zeros((2, 8), np.uint8), [1, 1], [1, 1],
                   np.zeros((0, 36), np.uint8), [], [])
    one_line_error(FlowSet, np.zeros((2, 12), np.uint8), [1], [1, 1],
                   np.zeros((0, 36), np.uint8), [], [])
    one_line_error(empty_flows().flow_loads, "frames")


def test_microsoft_vectors():
    rows = [hash_input_ipv4(s, d, sp, dp) for s, sp, d, dp, _, _ in MS_IPV4_VECTORS]
    rows += [hash_input_ipv6(s, d, sp, dp) for s, sp, d, dp, _, _ in MS_IPV6_VECTORS]
    flows = FlowSet.from_inputs(rows, [1] * len(rows), [1] * len(rows))
    h4, h6 = flow_hashes([MS_RSS_DEFAULT_KEY], flows)
    assert h4[0].tolist() == [v[5] for v in MS_IPV4_VECTORS]
    assert h6[0].tolist() == [v[5] for v in MS_IPV6_VECTORS]


@pytest.mark.parametrize("seed", SEEDS)
def test_flow_hashes_match_toeplitz(seed):
    rng = np.random.default_rng(seed)
    flows = random_flows(rng, 300, 40)
    keys = np.concatenate((rng.integers(0, 256, (5, RSS_KEY_LEN), dtype=np.uint8),
                           np.frombuffer(MS_RSS_DEFAULT_KEY + symmetric_key(), np.uint8)
                           .reshape(2, RSS_KEY_LEN)))
    h4, h6 = flow_hashes(keys, flows)
    assert h4.dtype == h6.dtype == np.uint32
    assert h4.shape == (7, 300) and h6.shape == (7, 40)
    for k, key in enumerate(keys):
        key = key.tobytes()
        assert h4[k].tolist() == [toeplitz(key, row.tobytes()) for row in flows.inputs4]
        assert h6[k].tolist() == [toeplitz(key, row.tobytes()) for row in flows.inputs6]


def loop_queue_loads(key, flows, table, queues, weight):
    """Plain Python: hash each flow with the bit-serial oracle and add up."""
    loads = [0.0] * queues
    counts = flows.packets4 if weight == "packets" else flows.bytes4
    counts6 = flows.packets6 if weight == "packets" else flows.bytes6
    for inputs, weights in ((flows.inputs4, counts), (flows.inputs6, counts6)):
        for row, w in zip(inputs, weights):
            loads[table[toeplitz(key, row.tobytes()) & (len(table) - 1)]] += int(w)
    loads[table[0]] += flows.other_packets if weight == "packets" else flows.other_bytes
    return loads


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weight", ["packets", "bytes"])
def test_loads_match_a_plain_loop(seed, weight):
    rng = np.random.default_rng(seed)
    flows = random_flows(rng, 200, 30, other=7)
    keys = random_keys(rng, 3)
    table = rng.integers(0, 6, 128).tolist()
    loads = queue_loads(keys, flows, table, 6, weight)
    assert loads.shape == (3, 6)
    for k, key in enumerate(keys):
        key = key.tobytes()
        assert loads[k].tolist() == loop_queue_loads(key, flows, table, 6, weight)
        identity = list(range(128))
        assert bucket_loads(key, flows, 128, weight).tolist() == loop_queue_loads(
            key, flows, identity, 128, weight)
    ratios = [max(row) * 6 / sum(row) for row in loads.tolist()]
    assert score_keys(keys, flows, table, 6, weight).tolist() == pytest.approx(ratios)


def test_one_entry_table_and_empty_windows():
    rng = np.random.default_rng(5)
    flows = random_flows(rng, 20, 3, other=2)
    assert queue_loads(MS_RSS_DEFAULT_KEY, flows, [1], 2).tolist() == [
        [0.0, float(flows.flow_loads().sum())]]
    assert score_keys(random_keys(rng, 4), empty_flows(), [0, 1], 2).tolist() == [1.0] * 4
    silent = FlowSet(flows.inputs4, np.zeros(20, int), np.zeros(20, int),
                     flows.inputs6, [0, 0, 0], [0, 0, 0])
    assert score_keys(MS_RSS_DEFAULT_KEY, silent, [0, 1], 2).tolist() == [1.0]


def test_one_flow_trace():
    flows = FlowSet.from_inputs([hash_input_ipv4(1, 2, 3, 4)], [1000], [1_500_000])
    assert score_keys(MS_RSS_DEFAULT_KEY, flows, list(range(8)), 8).tolist() == [8.0]
    assert lower_bound(flows.flow_loads(), 8) == 8.0


@pytest.mark.parametrize("table, queues", [([0, 1, 2, 4], 4), ([0, 1, 2], 3), ([], 1),
                                           ([0, -1], 2), ([0.0, 1.0], 2), ([0, 1], 0)])
def test_bad_tables(table, queues):
    flows = empty_flows()
    one_line_error(queue_loads, MS_RSS_DEFAULT_KEY, flows, table, queues)
    one_line_error(score_keys, MS_RSS_DEFAULT_KEY, flows, table, queues)
    one_line_error(KeySelector().decide, flows, table, queues)
    one_line_error(RetaBalancer().rebalance, [1] * len(table), table, queues)


@pytest.mark.parametrize("keys", [b"\0" * 39, [MS_RSS_DEFAULT_KEY, b"\1" * 41],
                                  np.zeros((2, 39), np.uint8), np.zeros((2, 40), np.int64)])
def test_bad_keys(keys):
    one_line_error(flow_hashes, keys, empty_flows())
    one_line_error(score_keys, keys, empty_flows(), [0], 1)


def test_bad_weight_and_reta_size():
    one_line_error(queue_loads, MS_RSS_DEFAULT_KEY, empty_flows(), [0], 1, "frames")
    one_line_error(bucket_loads, MS_RSS_DEFAULT_KEY, empty_flows(), 100)


# --- Key validity and symmetry --------------------------------------------------------------

def ports_only_key() -> bytes:
    """The Microsoft key with bytes 10 to 15 zeroed: the IPv4 ports never reach the RETA
    index bits (their Toeplitz rows read key bits 64 to 126)."""
    key = bytearray(MS_RSS_DEFAULT_KEY)
    key[10:16] = bytes(6)
    return bytes(key)


def source_port_sweep(key: bytes) -> np.ndarray:
    """RETA entry (of 512) of each of the 65,536 source ports, other fields fixed."""
    inputs = np.tile(np.frombuffer(hash_input_ipv4("10.1.2.3", "192.0.2.1", 0, 443),
                                   np.uint8), (65536, 1))
    inputs[:, 8] = np.arange(65536) >> 8
    inputs[:, 9] = np.arange(65536) & 0xFF
    flows = FlowSet(inputs, np.ones(65536, int), np.ones(65536, int),
                    np.zeros((0, 36), np.uint8), [], [])
    return flow_hashes(key, flows)[0][0] & 511


@pytest.mark.parametrize("key", [b"", b"\1" * 39, b"\1" * 41, "6d5a" * 20, 12345])
def test_validate_key_rejects_bad_lengths_and_types(key):
    one_line_error(validate_key, key)


def test_validate_key_rejects_degenerate_keys():
    assert "all-zero" in one_line_error(validate_key, bytes(RSS_KEY_LEN))
    assert "IPv4 source port" in one_line_error(validate_key, ports_only_key())
    only_bit_63 = (1 << (8 * RSS_KEY_LEN - 64)).to_bytes(RSS_KEY_LEN, "big")
    assert "IPv4 source address" in one_line_error(validate_key, only_bit_63)
    one_line_error(validate_key, MS_RSS_DEFAULT_KEY, index_bits=17)
    # What the rank deficit means: one client's connections all land in one RETA entry.
    assert len(np.unique(source_port_sweep(ports_only_key()))) == 1


def test_validate_key_accepts_the_standard_keys():
    validate_key(MS_RSS_DEFAULT_KEY)
    validate_key(symmetric_key())
    validate_key(bytearray(MS_RSS_DEFAULT_KEY), index_bits=11)
    validate_key(np.frombuffer(MS_RSS_DEFAULT_KEY, np.uint8))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_keys_are_valid_and_spread_one_field(seed):
    keys = random_keys(np.random.default_rng(seed), 40)
    assert keys.shape == (40, RSS_KEY_LEN) and keys.dtype == np.uint8
    assert len({k.tobytes() for k in keys}) == 40
    for key in keys:
        validate_key(key.tobytes())
    assert np.array_equal(keys, random_keys(np.random.default_rng(seed), 40))
    # Valid means onto: the source port alone reaches every entry, each equally often.
    for key in keys[:3]:
        assert np.bincount(source_port_sweep(key.tobytes()), minlength=512).tolist() == [
            128] * 512


@pytest.mark.parametrize("seed", SEEDS)
def test_symmetric_keys_are_valid_and_symmetric(seed):
    rng = np.random.default_rng(seed)
    keys = symmetric_keys(rng, 20)
    assert keys.shape == (20, RSS_KEY_LEN)
    for key in keys:
        key = key.tobytes()
        validate_key(key)
        assert is_symmetric_key(key)
        assert key == key[:2] * (RSS_KEY_LEN // 2)
        for _ in range(10):
            a4, b4 = (int(x) for x in rng.integers(0, 1 << 32, 2))
            a6, b6 = (int.from_bytes(rng.bytes(16), "big") for _ in range(2))
            p, q = (int(x) for x in rng.integers(0, 1 << 16, 2))
            assert (toeplitz(key, hash_input_ipv4(a4, b4, p, q))
                    == toeplitz(key, hash_input_ipv4(b4, a4, q, p)))
            assert (toeplitz(key, hash_input_ipv6(a6, b6, p, q))
                    == toeplitz(key, hash_input_ipv6(b6, a6, q, p)))
            h = toeplitz(key, hash_input_ipv4(a4, b4, p, q))
            assert h >> 16 == h & 0xFFFF            # the reduced hash space: 2**16 values


def test_is_symmetric_key_on_asymmetric_keys():
    assert is_symmetric_key(symmetric_key())
    assert not is_symmetric_key(MS_RSS_DEFAULT_KEY)
    assert not any(is_symmetric_key(k.tobytes())
                   for k in random_keys(np.random.default_rng(9), 20))
    almost = bytearray(symmetric_key())
    almost[3] ^= 0x10
    almost = bytes(almost)
    assert not is_symmetric_key(almost)
    rng = np.random.default_rng(10)
    tuples = [[int(x) for x in rng.integers(0, 1 << 16, 4)] for _ in range(20)]
    assert any(toeplitz(almost, hash_input_ipv4(a, b, p, q))
               != toeplitz(almost, hash_input_ipv4(b, a, q, p)) for a, b, p, q in tuples)


def test_key_generators_reject_bad_arguments():
    rng = np.random.default_rng(0)
    one_line_error(random_keys, rng, -1)
    one_line_error(random_keys, rng, 4, index_bits=20)
    one_line_error(symmetric_keys, 0, 4)
    assert random_keys(rng, 0).shape == (0, RSS_KEY_LEN)


# --- Key selector ---------------------------------------------------------------------------

def small_window(seed):
    rng = np.random.default_rng(seed)
    return random_flows(rng, 60, 4, other=3)


@pytest.mark.parametrize("seed", SEEDS)
def test_selector_switches_only_beyond_the_margin(seed):
    flows, table, candidates = small_window(seed), list(range(16)) * 32, 64
    drawn = random_keys(np.random.default_rng(seed), candidates)  # what the selector draws
    active = score_keys(MS_RSS_DEFAULT_KEY, flows, table, 16)[0]
    trial = score_keys(drawn, flows, table, 16)
    best = float(trial.min())
    gain = 1 - best / active
    assert 0 < gain < 0.5, "precondition: some candidate beats the default key"

    keep = KeySelector(candidates=candidates, seed=seed, margin=min(0.99, gain * 1.5))
    decision = keep.decide(flows, table, 16)
    assert decision.key is None and keep.key == MS_RSS_DEFAULT_KEY
    assert (decision.active_score, decision.best_score) == (active, best)
    assert decision.candidates == candidates
    assert_json_safe(decision)

    switch = KeySelector(candidates=candidates, seed=seed, margin=gain * 0.5)
    decision = switch.decide(flows, table, 16)
    assert decision.key == switch.key == drawn[int(trial.argmin())].tobytes()
    # The new key is now the one to beat.
    assert switch.decide(flows, table, 16).active_score == best


def test_selector_keeps_the_key_on_an_empty_window():
    selector = KeySelector(candidates=4)
    silent = FlowSet(np.zeros((3, 12), np.uint8), [0, 0, 0], [0, 0, 0],
                     np.zeros((0, 36), np.uint8), [], [])
    for flows in (empty_flows(), silent):
        decision = selector.decide(flows, [0, 1, 2, 3], 4)
        assert decision.key is None and decision.candidates == 0
        assert (decision.active_score, decision.best_score) == (1.0, 1.0)
        assert selector.key == MS_RSS_DEFAULT_KEY


def test_symmetric_selector_draws_symmetric_keys():
    selector = KeySelector(candidates=8, margin=0.0, symmetric=True, key=symmetric_key(),
                           seed=4)
    for seed in range(6):
        selector.decide(small_window(seed), list(range(8)) * 16, 8)
        assert is_symmetric_key(selector.key)
    assert selector.key != symmetric_key()


def test_selector_interval():
    selector = KeySelector(interval=0.25)
    assert [selector.due(t) for t in (1.0, 1.125, 1.25, 1.375, 1.75)] == [
        True, False, True, False, True]


@pytest.mark.parametrize("kwargs", [{"candidates": 0}, {"margin": 1.0}, {"margin": -0.1},
                                    {"key": b"\1" * 16}, {"weight": "frames"},
                                    {"interval": 0}])
def test_selector_bad_arguments(kwargs):
    one_line_error(KeySelector, **kwargs)


# --- RETA balancer --------------------------------------------------------------------------

def queue_totals(loads, table, queues):
    """Exact (correctly rounded) sums, so that comparisons do not depend on order."""
    return [math.fsum(load for load, q in zip(loads, table) if q == queue)
            for queue in range(queues)]


def check_decision(decision: BalanceDecision, loads, table, queues, balancer):
    """Invariants of every rebalance: the moves explain the new table, loaded entries only,
    each within its slice and to a queue the slice named, the max never rises."""
    assert_json_safe(decision)
    slices = balancer.slices or [(0, len(table))]
    owner = {}
    for number, (offset, size) in enumerate(slices):
        for i in range(size):
            owner[(offset + i) % len(table)] = number
    replay, per_slice = list(table), {}
    for move in decision.moves:
        assert replay[move.bucket] == move.src != move.dst
        assert move.load == loads[move.bucket] > 0
        number = owner[move.bucket]
        offset, size = slices[number]
        named = {table[(offset + i) % len(table)] for i in range(size)}
        assert move.dst in named
        per_slice[number] = per_slice.get(number, 0) + 1
        replay[move.bucket] = move.dst
    assert replay == decision.table
    assert all(count <= balancer.max_moves for count in per_slice.values())
    concerned = sorted({table[i] for i in owner})
    before = queue_totals(loads, table, queues)
    after = queue_totals(loads, decision.table, queues)
    assert max(after[q] for q in concerned) <= max(before[q] for q in concerned)
    assert decision.after <= decision.before
    assert decision.before == pytest.approx(scores([before[q] for q in concerned]).max_mean)
    assert decision.after == pytest.approx(scores([after[q] for q in concerned]).max_mean)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed={s}") for s in range(60)])
def test_balancer_never_raises_the_max(seed):
    rng = np.random.default_rng(seed)
    size = int(2 ** rng.integers(1, 8))
    queues = int(rng.integers(1, 12))
    table = rng.integers(0, queues, size).tolist()
    kind = seed % 3
    if kind == 0:
        loads = rng.integers(0, 4, size) * rng.integers(0, 1000, size)   # many zeros
    elif kind == 1:
        loads = np.minimum(rng.zipf(1.5, size), 10 ** 6)
    else:
        loads = rng.random(size) * 10.0 ** rng.integers(-5, 5)          # floats
    slices = None
    if size >= 4 and seed % 2:
        half = size // 2
        slices = [(int(rng.integers(0, size)), half)]
        slices.append(((slices[0][0] + half) % size, half))
    balancer = RetaBalancer(max_moves=int(rng.integers(0, 20)), slices=slices)
    decision = balancer.rebalance(loads.tolist(), table, queues)
    check_decision(decision, loads.tolist(), table, queues, balancer)


def test_balancer_hand_cases():
    decision = RetaBalancer().rebalance([4, 4, 0, 0], [0, 0, 1, 1], 2)
    assert decision.moves and decision.table[2:] == [1, 1]
    assert (decision.before, decision.after) == (2.0, 1.0)
    # Two queues share the maximum: moves still go on until the loads are even.
    decision = RetaBalancer().rebalance([1] * 8, [0, 0, 0, 1, 1, 1, 2, 2], 3)
    assert sorted(queue_totals([1] * 8, decision.table, 3)) == [2, 3, 3]
    # One entry carries everything: nothing can lower the max.
    decision = RetaBalancer().rebalance([100, 0, 0, 0], [0, 1, 2, 3], 4)
    assert decision.moves == [] and decision.before == decision.after == 4.0


def test_balancer_moves_nothing_when_balanced_or_empty():
    table = list(range(8)) * 4
    for loads in ([5] * 32, [0] * 32):
        decision = RetaBalancer().rebalance(loads, table, 8)
        assert decision.moves == [] and decision.table == table
        assert decision.before == decision.after == 1.0


def test_balancer_never_moves_empty_buckets():
    table, loads = [0, 0, 0, 0, 1, 1, 1, 1], [9, 0, 0, 0, 1, 0, 0, 0]
    decision = RetaBalancer().rebalance(loads, table, 2)
    assert decision.moves == []


def test_balancer_respects_max_moves():
    loads, table = [1] * 64 + [0] * 64, [0] * 64 + [1] * 64
    for limit in (0, 1, 5):
        assert len(RetaBalancer(max_moves=limit).rebalance(loads, table, 2).moves) == limit
    decision = RetaBalancer(max_moves=100).rebalance(loads, table, 2)
    assert len(decision.moves) == 32 and decision.after == 1.0


def test_balancer_slices_stay_apart():
    # Instance 0 owns entries 0-3 over queues 0, 1; instance 1 entries 4-7 over queues 2, 3.
    table = [0, 0, 0, 1, 2, 3, 3, 3]
    loads = [5, 5, 5, 1, 1, 5, 5, 5]
    balancer = RetaBalancer(slices=[(0, 4), (4, 4)])
    decision = balancer.rebalance(loads, table, 5)
    check_decision(decision, loads, table, 5, balancer)
    assert decision.table[:4].count(1) == 2 and decision.table[4:].count(2) == 2
    # Queue 4 is named by no entry: it never receives one.
    assert 4 not in decision.table
    # A slice that wraps around the end, as the NIC indexes it: entries 6, 7, 0, 1.
    table, loads = [0, 0, 1, 1, 1, 1, 1, 1], [1] * 8
    wrapped = RetaBalancer(slices=[(6, 4)])
    decision = wrapped.rebalance(loads, table, 2)
    check_decision(decision, loads, table, 2, wrapped)
    assert [move.bucket for move in decision.moves] == [6, 7]
    assert decision.table == [0, 0, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("kwargs, loads, table", [
    ({"slices": [(0, 4), (2, 4)]}, [1] * 8, [0] * 8),        # overlapping
    ({"slices": [(8, 2)]}, [1] * 8, [0] * 8),                # past the end
    ({"slices": [(0, 16)]}, [1] * 8, [0] * 8),
    ({}, [1] * 4, [0] * 8),                                  # one load per entry
    ({}, [1, -1], [0, 1]),                                   # negative load
    ({}, [1, float("nan")], [0, 1]),
])
def test_balancer_bad_input(kwargs, loads, table):
    one_line_error(RetaBalancer(**kwargs).rebalance, loads, table, 2)


@pytest.mark.parametrize("kwargs", [{"max_moves": -1}, {"slices": [(0, 0)]},
                                    {"slices": [(0,)]}, {"slices": [(-1, 2)]}])
def test_balancer_bad_arguments(kwargs):
    one_line_error(RetaBalancer, **kwargs)


def test_balancer_with_measured_bucket_loads():
    """End to end: bucket loads from the multi-key scorer, one heavy window."""
    rng = np.random.default_rng(11)
    flows = random_flows(rng, 500)
    loads = bucket_loads(MS_RSS_DEFAULT_KEY, flows, 128)
    table = [i % 4 for i in range(128)]
    balancer = RetaBalancer(max_moves=8)
    decision = balancer.rebalance(loads, table, 4)
    check_decision(decision, loads.tolist(), table, 4, balancer)
    assert decision.after < decision.before
    assert decision.after >= lower_bound(flows.flow_loads(), 4)


def test_bench_rss_keys_small():
    from hetnic.bench import bench_rss_keys
    result = bench_rss_keys(keys=4, flows=1000)
    assert (result["keys"], result["flows"]) == (4, 1000)
    json.dumps(result, allow_nan=False)


# --- GainGuard ---------------------------------------------------------------------------

def test_gain_guard_needs_a_streak_and_the_margin():
    guard = GainGuard(margin=0.05, streak=3)
    assert not guard.trusted
    # Two wins are not a streak of three; the third is, and the mean gain is 10 %.
    assert [guard.observe(1.8, 2.0) for _ in range(3)] == [False, False, True]
    # One lost window puts static back until three more wins in a row.
    assert guard.observe(2.2, 2.0) is False
    assert [guard.observe(1.8, 2.0) for _ in range(3)] == [False, False, True]


def test_gain_guard_margin_is_on_the_mean_of_every_window_seen():
    guard = GainGuard(margin=0.05, streak=2)
    guard.observe(4.0, 2.0)                      # one big loss early on
    assert guard.observe(1.9, 2.0) is False      # a streak of 1
    # Winning by 5 % per window: the mean over all windows is still worse than static's.
    assert guard.observe(1.9, 2.0) is False
    for _ in range(40):
        guard.observe(1.8, 2.0)
    assert guard.trusted                         # the early loss is paid back


def test_gain_guard_ties_are_not_wins():
    guard = GainGuard(margin=0.0, streak=1)
    assert guard.observe(2.0, 2.0) is False
    assert guard.observe(1.0, 2.0) is True


@pytest.mark.parametrize("kwargs, message", [
    ({"margin": 1.0}, "margin must be a number in"),
    ({"margin": -0.1}, "margin must be a number in"),
    ({"streak": 0}, "streak must be an integer >= 1"),
])
def test_gain_guard_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GainGuard(**kwargs)


@pytest.mark.parametrize("scores", [(float("nan"), 1.0), (1.0, float("inf")), (-1.0, 1.0)])
def test_gain_guard_bad_scores(scores):
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        GainGuard().observe(*scores)
