"""The generated Verilog of the RX pipeline, on Verilator under cocotb.

cocotbext-axi drives the real ports: ``AxiLiteMaster`` programs key, RETA and rules over the
bus, ``AxiStreamSource``/``AxiStreamSink`` carry the frames (:mod:`hetnic.sim.rx_tb`). Every
metadata record is compared, field by field, with the software model
(:class:`hetnic.sim.model.rx_pipeline.RxModel`), which is itself checked against scapy and the
published RSS vectors. Each simulation is bounded in cycles (the testbench gives up and
fails) and in wall time (pytest-timeout).
"""

import random
from collections import Counter

import pytest

from frames import directed_frames, random_mix, tcp4, tcp6, udp4, udp6, vlan
from rss_vectors import MS_IPV4_VECTORS, MS_IPV6_VECTORS

from hetnic.config import RxConfig
from hetnic.host.rss_keys import random_key
from hetnic.rules import Action, FlowRule
from hetnic.protocol import DropReason, HashType, MS_RSS_DEFAULT_KEY
from hetnic.sim.model.rx_pipeline import RxModel, mismatches
from hetnic.params import RX_PIPELINE_W8, RX_PIPELINE_W64, NicParams
from hetnic.sim.rx_sim import run_rx_job
from hetnic.sim.traffic import tcp4_min_frames, traffic_mix

pytestmark = pytest.mark.timeout(900)

RULES = [
    FlowRule(name="dns", ip_proto="udp", dst_port=53,
             action=Action(instance=1, reta_offset=16, reta_size=4)),
    FlowRule(name="web", ip_proto="tcp", dst_port=(80, 443),
             action=Action(instance=2, reta_offset=64, reta_size=8)),
    FlowRule(name="v6-doc", src="2001:db8::/32", action=Action(instance=3)),
    FlowRule(name="vlan100", vlan=100, action=Action(instance=4, reta_offset=500, reta_size=16)),
    FlowRule(name="frag", flags={"fragment": True}, action=Action(instance=5)),
    FlowRule(name="drop-5000", ip_proto="udp", dst_port=5000, action=Action(drop=True)),
    FlowRule(name="syn", tcp_flags=(0x02, 0x12), action=Action(instance=6)),  # SYN, not ACK
    FlowRule(name="ef", dscp=46, action=Action(instance=7)),
]


def mixed_traffic(seed, n_mix, n_random):
    rng = random.Random(seed)
    print(f"traffic seed {seed}")
    frames = [(f, False) for f in directed_frames().values()]
    frames.append((vlan(udp4(dport=7777), 100), False))      # reaches the vlan100 rule
    frames += traffic_mix(n_mix, seed=seed)
    frames += [(f, rng.random() < 0.02) for f in random_mix(rng, n_random)]
    return [(f, e) for f, e in frames if len(f) > 0]    # AXI4-Stream has no empty frame


def counter_reads(regmap, queues):
    reads = {n: regmap.addr(n) for n in ("FRAMES_IN", "BYTES_IN", "FRAMES_DELIVERED",
                                         "FRAMES_DROPPED")}
    reads.update({f"DROP_COUNT[{d}]": regmap.addr("DROP_COUNT", d) for d in DropReason})
    reads.update({f"RULE_HITS[{r}]": regmap.addr("RULE_HITS", r)
                  for r in range(regmap.params["n_rules"] + 1)})
    for q in range(queues):
        reads[f"QUEUE_PACKETS[{q}]"] = regmap.addr("QUEUE_PACKETS", q)
        reads[f"QUEUE_BYTES[{q}]"] = regmap.addr("QUEUE_BYTES", q)
    for b in (0, 1, 16, 17, 64, 65, 500, 511):
        reads[f"BUCKET_PACKETS[{b}]"] = regmap.addr("BUCKET_PACKETS", b)
    return reads


def check_against_model(build, config, frames, *, seed, pauses):
    regmap = build.regmap()
    result = run_rx_job(build, frames, config.register_writes(regmap), seed=seed,
                        keep_data=True, read_counters=counter_reads(regmap, config.queues),
                        **pauses)
    assert len(result.records) == len(frames)
    model = RxModel(regmap, config, generation=1)
    expected = [model.process(f, e) for f, e in frames]
    bad = [(i, mismatches(exp, rec)) for i, (exp, rec) in enumerate(zip(expected, result.records))
           if mismatches(exp, rec)]
    assert not bad, f"{len(bad)} records differ from the model, first: {bad[:3]}"

    # The data path hands every frame on unchanged, with its MAC error flag.
    assert result.data_frames == len(frames)
    assert result.data == [f for f, _ in frames]
    assert result.data_error == [int(e) for _, e in frames]

    # Counters agree with the records.
    c = result.counters
    delivered = [e for e in expected if e["drop"] == DropReason.NONE]
    assert c["FRAMES_IN"] == len(frames)
    assert c["BYTES_IN"] == sum(len(f) for f, _ in frames)
    assert c["FRAMES_DELIVERED"] == len(delivered)
    assert c["FRAMES_DROPPED"] == len(frames) - len(delivered)
    drops = Counter(e["drop"] for e in expected)
    for d in DropReason:
        if d != DropReason.NONE:
            assert c[f"DROP_COUNT[{d}]"] == drops[d], d
    rules = Counter(e["rule"] for e in expected)
    for r in range(regmap.params["n_rules"] + 1):
        assert c[f"RULE_HITS[{r}]"] == rules[r], f"rule {r}"
    for q in range(config.queues):
        assert c[f"QUEUE_PACKETS[{q}]"] == sum(1 for e in delivered if e["queue"] == q)
        assert c[f"QUEUE_BYTES[{q}]"] == sum(e["length"] for e in delivered if e["queue"] == q)
    buckets = Counter(e["bucket"] for e in expected)
    for b in (0, 1, 16, 17, 64, 65, 500, 511):
        assert c[f"BUCKET_PACKETS[{b}]"] == buckets[b], f"bucket {b}"
    return expected


def test_w64_matches_model_with_backpressure():
    frames = mixed_traffic(seed=64, n_mix=400, n_random=300)
    config = RxConfig(queues=12, rules=RULES, key=random_key(random.Random(7)))
    expected = check_against_model(RX_PIPELINE_W64, config, frames, seed=64,
                                   pauses=dict(in_pause=0.2, data_pause=0.3, meta_pause=0.3))
    # The traffic exercised what it should: every rule, drops, every hash type.
    assert {e["rule"] for e in expected} >= set(range(len(RULES)))
    assert {e["hash_type"] for e in expected} == set(HashType)
    assert len({e["drop"] for e in expected}) >= 6


def test_w8_matches_model():
    frames = mixed_traffic(seed=8, n_mix=120, n_random=80)
    config = RxConfig(queues=5, rules=RULES, symmetric=True, pass_errors=True,
                      hash_enable=(1 << HashType.IPV4) | (1 << HashType.IPV6_TCP)
                      | (1 << HashType.IPV4_UDP))
    check_against_model(RX_PIPELINE_W8, config, frames, seed=8,
                        pauses=dict(in_pause=0.1, data_pause=0.2, meta_pause=0.2))


def test_microsoft_vectors_in_gateware():
    """The published Microsoft RSS vectors through the whole pipeline: TCP frames hash with
    ports; UDP frames, with the UDP hash types disabled, fall back to the address-only hash."""
    frames, want = [], []
    for src, sport, dst, dport, plain, with_ports in MS_IPV4_VECTORS:
        frames += [tcp4(src=src, dst=dst, sport=sport, dport=dport),
                   udp4(src=src, dst=dst, sport=sport, dport=dport)]
        want += [(with_ports, HashType.IPV4_TCP), (plain, HashType.IPV4)]
    for src, sport, dst, dport, plain, with_ports in MS_IPV6_VECTORS:
        frames += [tcp6(src=src, dst=dst, sport=sport, dport=dport),
                   udp6(src=src, dst=dst, sport=sport, dport=dport)]
        want += [(with_ports, HashType.IPV6_TCP), (plain, HashType.IPV6)]
    config = RxConfig(key=MS_RSS_DEFAULT_KEY, queues=8,
                      hash_enable=sum(1 << t for t in (HashType.IPV4, HashType.IPV4_TCP,
                                                       HashType.IPV6, HashType.IPV6_TCP)))
    build = RX_PIPELINE_W64
    result = run_rx_job(build, [(f, False) for f in frames], config.register_writes(build.regmap()))
    got = [(r["hash"], HashType(r["hash_type"])) for r in result.records]
    assert got == want


def test_commit_under_traffic_is_atomic():
    """Key, RETA and rules are committed five times while frames flow, with the metadata
    output mostly stalled so records sit inside the pipeline: every record is entirely one
    configuration, the one its generation names; generations never go back; and every
    committed configuration is used."""
    build = RX_PIPELINE_W64
    regmap = build.regmap()
    rng = random.Random(3)
    print("seed 3")
    first = RxConfig(queues=4, rules=RULES[:3])
    configs = [first]
    for n in range(5):
        configs.append(RxConfig(
            queues=16, key=random_key(rng), reta=[rng.randrange(16) for _ in range(512)],
            rules=[FlowRule(ip_proto=rng.choice(["tcp", "udp"]),
                            action=Action(instance=9, reta_offset=rng.randrange(512),
                                          reta_size=32))] + RULES[rng.randrange(8):],
            default=Action(instance=8), symmetric=bool(n % 2)))
    # Minimum-size frames arrive faster (one per 8 cycles) than the stalled metadata output
    # drains (one per 10), so the pipeline is full of records whenever a commit comes.
    frames = [(f, False) for f in tcp4_min_frames(4000, flows=300, seed=3)]
    commits = [{"after_frame": 200 * (n + 1), "writes": c.register_writes(regmap)}
               for n, c in enumerate(configs[1:])]
    result = run_rx_job(build, frames, first.register_writes(regmap), commits=commits, seed=3,
                        in_pause=0.0, meta_pause=0.9, data_pause=0.1)
    gens = [r["generation"] for r in result.records]
    assert gens == sorted(gens), "generation went backwards"
    assert set(gens) == set(range(1, len(configs) + 1)), f"generations seen: {set(gens)}"
    models = {g + 1: RxModel(regmap, c, g + 1) for g, c in enumerate(configs)}
    for i, ((frame, err), rec) in enumerate(zip(frames, result.records)):
        diff = mismatches(models[rec["generation"]].process(frame, err), rec)
        assert not diff, f"frame {i} (generation {rec['generation']}) mixes configs: {diff}"


def test_register_readback():
    build = RX_PIPELINE_W64
    regmap = build.regmap()
    key = bytes(range(40))
    config = RxConfig(key=key, queues=3, rules=RULES[:2])
    reads = [(regmap.addr("ID"), regmap.ro_value("ID")),
             (regmap.addr("VERSION"), regmap.ro_value("VERSION")),
             (regmap.addr("PARAMS0"), regmap.ro_value("PARAMS0")),
             (regmap.addr("PARAMS1"), regmap.ro_value("PARAMS1")),
             (regmap.addr("RSS_KEY", 9), int.from_bytes(key[36:40], "big")),
             (regmap.addr("RETA", 5), 5 % 3),
             (regmap.addr("RETA", 511), 511 % 3),
             (regmap.addr("RULE", 1, 0), RULES[1].encode(512) & 0xFFFF_FFFF),
             (regmap.addr("GENERATION"), 1),
             (regmap.addr("COMMIT_STATUS"), 0)]
    run_rx_job(build, [(tcp4(), False)], config.register_writes(regmap), expect_reads=reads)


@pytest.mark.slow
@pytest.mark.parametrize("width", [16, 32, 128, 512])
def test_width_sweep(width):
    """Other datapath widths (the default run covers 8 and 64): every record against the
    model, with backpressure. Each width is a separate Verilator build."""
    frames = mixed_traffic(seed=width, n_mix=200, n_random=200)
    config = RxConfig(queues=7, rules=RULES)
    check_against_model(NicParams(data_width=width), config, frames, seed=width,
                        pauses=dict(in_pause=0.1, data_pause=0.2, meta_pause=0.2))


def test_partial_reta_update_after_commit():
    """A second commit that rewrites only four RETA entries: the other 508 must be the ones
    committed first (the shadow bank was refreshed from the active one after the flip)."""
    build = RX_PIPELINE_W64
    regmap = build.regmap()
    first = RxConfig(queues=16, reta=[(7 * i + 3) % 16 for i in range(512)])
    second = RxConfig(queues=16, reta=list(first.reta))
    writes = []
    for entry in (0, 1, 255, 511):
        second.reta[entry] = 15 - first.reta[entry]
        writes.append((regmap.addr("RETA", entry), second.reta[entry]))
    writes.append((regmap.addr("COMMIT"), 1))
    frames = [(f, False) for f in tcp4_min_frames(1200, flows=600, seed=9)]
    result = run_rx_job(build, frames, first.register_writes(regmap),
                        commits=[{"after_frame": 100, "writes": writes}])
    models = {1: RxModel(regmap, first, 1), 2: RxModel(regmap, second, 2)}
    gens = [r["generation"] for r in result.records]
    assert gens == sorted(gens) and set(gens) == {1, 2}
    for i, ((frame, err), rec) in enumerate(zip(frames, result.records)):
        diff = mismatches(models[rec["generation"]].process(frame, err), rec)
        assert not diff, f"frame {i} (generation {rec['generation']}): {diff}"
    assert any(r["generation"] == 2 and (r["hash"] & 511) in (0, 1, 255, 511)
               for r in result.records), "no frame used an updated entry"
