# amaranth: UnusedElaboratable=no
# (test_bad_n_rules builds FlowClassifiers whose __init__ raises; they are never elaborated.)
"""FlowClassifier in Amaranth's simulator against the model in hetnic.sim.model.classifier."""

import ipaddress
import random
from types import SimpleNamespace

import pytest
from amaranth.lib import data

from hetnic.gateware.classifier import FlowClassifier
from hetnic.rules import Action, FlowRule, RuleFields
from hetnic.protocol import DropReason, MetaFlags, PacketMeta, ParseError, Rule, ipv4_mapped
from hetnic.sim.model.classifier import classify
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, step, unpack

RETA = 512
SEED = 0x5EED_C1A5
META = data.Layout.cast(PacketMeta)
RULE_BITS = data.Layout.cast(Rule).size
FLAG = {name: 1 << f.offset for name, f in data.Layout.cast(MetaFlags)}
OUTPUTS = ("rule", "instance", "reta_offset", "reta_size_log2", "drop")   # filled by the DUT


def v4(text: str) -> int:
    return ipv4_mapped(int(ipaddress.IPv4Address(text)))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def tcp4(**changes) -> dict:
    """An IPv4/TCP frame that none of the directed rules match; ``changes`` override fields."""
    meta = dict(length=64, error=0, flags=FLAG["ipv4"] | FLAG["tcp"], ethertype=0x0800,
                vlan_id=0, dscp=0, ip_proto=6, tcp_flags=0x10, src_addr=v4("10.1.2.3"),
                dst_addr=v4("192.168.0.1"), src_port=1234, dst_port=80, vni=0, hash=0x1234_5678,
                hash_type=2, queue=3, generation=7, rule=0xAA, instance=5, drop=3)
    meta.update(changes)
    return meta


def expected(meta: dict, rules: list[int], default: dict, pass_errors: bool) -> dict:
    result = classify(SimpleNamespace(**meta), [RuleFields.decode(r) for r in rules], default,
                      reta_entries=RETA, pass_errors=pass_errors)
    out = unpack(PacketMeta, pack(PacketMeta, **meta))
    out.update({name: int(getattr(result, name)) for name in OUTPUTS})
    return out


def simulate(n_rules: int, rules: list[int], default: Action, metas: list[dict], *,
             pass_errors: bool = False, gap: float = 0.0, stall: float = 0.0,
             rng: random.Random | None = None) -> list[dict]:
    """Run ``metas`` through a FlowClassifier and check the output stream against the model.

    The source holds each record until taken; ``gap`` and ``stall`` are the chances of an idle
    source cycle and of ``o.ready`` low. Checks that a stalled output holds its payload, that
    every record comes out exactly once and in order, that nothing comes out afterwards, and
    (without stalls) that the latency is exactly 3 cycles.
    """
    rng = rng or seeded_rng(SEED)
    rules = rules + [0] * (n_rules - len(rules))
    default_fields = default.encode(RETA)
    want = [expected(m, rules, default_fields, pass_errors) for m in metas]
    dut = FlowClassifier(n_rules)
    source = StreamSource(dut.i, rng=rng, gap=gap, name="i")
    source.extend(pack(PacketMeta, **meta) for meta in metas)
    sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")

    async def bench(ctx):
        ctx.set(dut.rules.as_value(), sum(r << (k * RULE_BITS) for k, r in enumerate(rules)))
        ctx.set(dut.default_action, default_fields)
        ctx.set(dut.pass_errors, pass_errors)
        while len(sink.received) < len(metas):
            await step(ctx, source, sink)
        await sink.expect_idle(ctx, 5)

    # ~3x the expected run
    run_simulation(dut, bench, cycle_limit=50 + int(3 * len(metas) / ((1 - gap) * (1 - stall))))
    got = [unpack(PacketMeta, payload) for payload in sink.received]
    assert len(got) == len(want), f"{len(got)} records out for {len(metas)} in"
    for index, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"record {index}: got {g}, want {w}"
    if not stall:
        assert [e - t for t, e in zip(source.taken_at, sink.emitted_at)] == [3] * len(metas)
    return got


# --- Directed cases: (rules, default, pass_errors, [(meta, rule, instance, drop)]) -----------

EACH_FIELD = [
    FlowRule(ethertype=0x86DD, action=Action(instance=1)),
    FlowRule(vlan=100, action=Action(instance=2)),
    FlowRule(ip_proto="udp", action=Action(instance=3)),
    FlowRule(src="172.16.0.0/12", action=Action(instance=4)),
    FlowRule(dst="2001:db8::/32", action=Action(instance=5)),
    FlowRule(src_port=5000, action=Action(instance=6)),
    FlowRule(dst_port=(8000, 8080), action=Action(instance=7)),
    FlowRule(dscp=46, action=Action(instance=8)),
    FlowRule(tcp_flags=(0x02, 0x12), action=Action(instance=9)),
    FlowRule(flags={"fragment": True}, action=Action(instance=10)),
    FlowRule(vni=0xABCDEF, action=Action(instance=11)),
]
IPV4_TCP = FLAG["ipv4"] | FLAG["tcp"]
VXLAN4 = FLAG["ipv4"] | FLAG["udp"] | FLAG["tunnel"] | FLAG["vni"]


def vxlan4(**changes) -> dict:
    """The outer metadata of VXLAN over IPv4 from 198.18.0.1."""
    return tcp4(**{"flags": VXLAN4, "ip_proto": 17, "src_addr": v4("198.18.0.1"),
                   "src_port": 49152, "dst_port": 4789, "tcp_flags": 0, **changes})

D = 16      # rule index reported for the default action (the rule count)

CASES = {
    "each_field": (EACH_FIELD, Action(instance=15, reta_size=8), False, [
        (tcp4(), D, 15, 0),
        (tcp4(ethertype=0x86DD), 0, 1, 0),
        (tcp4(vlan_id=100, flags=IPV4_TCP | FLAG["vlan"]), 1, 2, 0),
        (tcp4(vlan_id=100), D, 15, 0),                       # VID without the tag flag
        (tcp4(vlan_id=101, flags=IPV4_TCP | FLAG["vlan"]), D, 15, 0),
        (tcp4(ip_proto=17), 2, 3, 0),
        (tcp4(src_addr=v4("172.31.255.255")), 3, 4, 0),
        (tcp4(src_addr=v4("172.32.0.0")), D, 15, 0),
        (tcp4(dst_addr=v6("2001:db8:ffff::1")), 4, 5, 0),
        (tcp4(dst_addr=v6("2001:db9::")), D, 15, 0),
        (tcp4(src_port=5000), 5, 6, 0),
        (tcp4(src_port=5001), D, 15, 0),
        (tcp4(dst_port=8080), 6, 7, 0),
        (tcp4(dscp=46), 7, 8, 0),
        (tcp4(dscp=47), D, 15, 0),
        (tcp4(tcp_flags=0x02 | 0x08), 8, 9, 0),              # SYN without ACK; PSH is ignored
        (tcp4(tcp_flags=0x12), D, 15, 0),                    # SYN+ACK
        (tcp4(flags=IPV4_TCP | FLAG["fragment"]), 9, 10, 0),
        (tcp4(flags=IPV4_TCP | FLAG["vni"], vni=0xABCDEF), 10, 11, 0),
        (tcp4(vni=0xABCDEF), D, 15, 0),                      # the VNI without its flag
        (tcp4(flags=IPV4_TCP | FLAG["vni"], vni=0xABCDEE), D, 15, 0),
        (tcp4(flags=IPV4_TCP | FLAG["vni"], vni=0x2BCDEF), D, 15, 0),
    ]),
    # Two VNIs from one remote to two instances; an unknown VNI, a VNI 0 without the flag
    # (no VXLAN header found) and another remote go by the rules after them.
    "vni": ([FlowRule(ip_proto="udp", dst_port=4789, src="198.18.0.1", vni=10,
                      action=Action(instance=1)),
             FlowRule(ip_proto="udp", dst_port=4789, src="198.18.0.1", vni=11,
                      action=Action(instance=2)),
             FlowRule(dst_port=(4789, 4790), vni=0, action=Action(instance=3)),
             FlowRule(ip_proto="udp", dst_port=4789, action=Action(instance=4))],
            Action(), False, [
        (vxlan4(vni=10), 0, 1, 0),
        (vxlan4(vni=11), 1, 2, 0),
        (vxlan4(vni=12), 3, 4, 0),
        (vxlan4(vni=10, src_addr=v4("198.18.0.2")), 3, 4, 0),
        (vxlan4(vni=0), 2, 3, 0),
        (vxlan4(vni=0, flags=VXLAN4 & ~FLAG["vni"]), 3, 4, 0),
        (vxlan4(vni=0, dst_port=4790), 2, 3, 0),
        (vxlan4(vni=10, dst_port=4790), D, 0, 0),
    ]),
    "priority": ([FlowRule(action=Action(instance=9)).encode(RETA) & ~1,   # disabled
                  FlowRule(ip_proto="tcp", action=Action(instance=1)),
                  FlowRule(ip_proto="tcp", dst_port=80, action=Action(instance=2)),
                  FlowRule(dst_port=80, action=Action(instance=3))]
                 + [0] * 11 + [FlowRule(dst_port=443, action=Action(instance=4))],
                 Action(), False, [
        (tcp4(), 1, 1, 0),                                   # rule 0 is disabled
        (tcp4(ip_proto=17, flags=FLAG["ipv4"] | FLAG["udp"]), 3, 3, 0),
        (tcp4(ip_proto=17, dst_port=443), 15, 4, 0),         # the last slot
        (tcp4(ip_proto=17, dst_port=81), D, 0, 0),
    ]),
    "drop_actions": ([FlowRule(dst_port=80, action=Action(instance=2, drop=True))],
                     Action(instance=7, drop=True), False, [
        (tcp4(), 0, 2, DropReason.RULE),
        (tcp4(dst_port=81), D, 7, DropReason.RULE),
    ]),
    "errors_dropped": ([FlowRule(dst_port=80, action=Action(instance=2, drop=True)),
                        FlowRule(dst_port=81, action=Action(instance=3))], Action(), False, [
        (tcp4(error=ParseError.TRUNCATED), 0, 2, DropReason.TRUNCATED),   # error beats RULE
        (tcp4(error=ParseError.MAC_ERROR, dst_port=81), 1, 3, DropReason.MAC_ERROR),
        (tcp4(error=ParseError.HEADER_LIMIT, dst_port=82), D, 0, DropReason.HEADER_LIMIT),
        (tcp4(dst_port=81), 1, 3, 0),
    ]),
    "errors_passed": ([FlowRule(dst_port=80, action=Action(instance=2, drop=True)),
                       FlowRule(dst_port=81, action=Action(instance=3))], Action(), True, [
        (tcp4(error=ParseError.TRUNCATED), 0, 2, DropReason.RULE),
        (tcp4(error=ParseError.RUNT, dst_port=81), 1, 3, 0),
    ]),
    "address_families": ([FlowRule(src="10.0.0.0/8", action=Action(instance=1)),
                          FlowRule(dst="0.0.0.0/0", action=Action(instance=2)),
                          FlowRule(src="fe80::/10", action=Action(instance=3)),
                          FlowRule(dst="::/0", action=Action(instance=4))], Action(), False, [
        (tcp4(), 0, 1, 0),
        (tcp4(src_addr=v4("11.0.0.1")), 1, 2, 0),           # any IPv4 destination
        (tcp4(src_addr=v6("a00::1"), dst_addr=v6("2001:db8::1")), 3, 4, 0),  # 10/8 is v4 only
        (tcp4(src_addr=v6("fe80::1"), dst_addr=v6("::1")), 2, 3, 0),
        (tcp4(src_addr=0, dst_addr=0, flags=0, ethertype=0x0806), 3, 4, 0),  # not IP
        (tcp4(src_addr=v6("::ffff:10.9.9.9")), 0, 1, 0),    # IPv4-mapped in IPv6 looks v4
    ]),
    "port_edges": ([FlowRule(src_port=(1000, 2000), action=Action(instance=1)),
                    FlowRule(dst_port=(65000, 65535), action=Action(instance=2)),
                    FlowRule(dst_port=(0, 0), action=Action(instance=3))], Action(), False, [
        (tcp4(src_port=999), D, 0, 0),
        (tcp4(src_port=1000), 0, 1, 0),
        (tcp4(src_port=2000), 0, 1, 0),
        (tcp4(src_port=2001), D, 0, 0),
        (tcp4(src_port=3000, dst_port=64999), D, 0, 0),
        (tcp4(src_port=3000, dst_port=65000), 1, 2, 0),
        (tcp4(src_port=3000, dst_port=65535), 1, 2, 0),
        (tcp4(src_port=3000, dst_port=0), 2, 3, 0),
        (tcp4(src_port=3000, dst_port=1), D, 0, 0),
    ]),
}


@pytest.mark.parametrize("case", CASES)
def test_directed(case):
    rules, default, pass_errors, frames = CASES[case]
    packed = [r if isinstance(r, int) else r.encode(RETA) for r in rules]
    metas = [meta for meta, *_ in frames]
    got = simulate(16, packed, default, metas, pass_errors=pass_errors)
    for index, (meta, rule, instance, drop) in enumerate(frames):
        assert (got[index]["rule"], got[index]["instance"], got[index]["drop"]) \
            == (rule, instance, drop), f"{case} frame {index}"


def test_action_fields_and_passthrough():
    rule = FlowRule(dst_port=80, action=Action(instance=11, reta_offset=300, reta_size=64))
    got = simulate(16, [rule.encode(RETA)], Action(instance=4, reta_offset=5, reta_size=2),
                   [tcp4(), tcp4(dst_port=1)])
    assert [(g["instance"], g["reta_offset"], g["reta_size_log2"]) for g in got] \
        == [(11, 300, 6), (4, 5, 1)]
    for g, meta in zip(got, [tcp4(), tcp4(dst_port=1)]):
        assert {k: g[k] for k in meta if k not in OUTPUTS} == \
            {k: v for k, v in meta.items() if k not in OUTPUTS}


def test_two_rule_table():
    rules = [FlowRule(ip_proto="udp", action=Action(instance=1)).encode(RETA),
             FlowRule(dst_port=80, action=Action(instance=2, drop=True)).encode(RETA)]
    got = simulate(2, rules, Action(instance=3), [tcp4(), tcp4(ip_proto=17), tcp4(dst_port=1)],
                   gap=0.3, stall=0.3, rng=random.Random(SEED))
    assert [(g["rule"], g["instance"], g["drop"]) for g in got] \
        == [(1, 2, DropReason.RULE), (0, 1, 0), (2, 3, 0)]


def test_model_inputs():
    rules = [FlowRule(dst_port=80, action=Action(instance=2)).encode(RETA)]
    meta = SimpleNamespace(**tcp4(dst_port=81))
    by_int = classify(meta, rules, Action(instance=3, reta_size=4), reta_entries=RETA)
    by_fields = classify(meta, [RuleFields.decode(rules[0])],
                         {"drop": 0, "instance": 3, "reta_offset": 0, "reta_size_log2": 2},
                         reta_entries=RETA)
    assert by_int == by_fields
    assert (by_int.rule, by_int.instance, by_int.reta_size_log2) == (1, 3, 2)
    with pytest.raises(ValueError, match="lacks reta_offset, reta_size_log2"):
        classify(meta, rules, {"drop": 0, "instance": 1}, reta_entries=RETA)


@pytest.mark.parametrize("n_rules", [0, 65, "16", True])
def test_bad_n_rules(n_rules):
    with pytest.raises(ValueError, match=f"n_rules must be an integer from 1 to 64, "
                                         f"not {n_rules!r}"):
        FlowClassifier(n_rules)


# --- Seeded random rules and metadata ---------------------------------------------------------

def random_prefix(rng: random.Random) -> str:
    if rng.random() < 0.5:
        plen = rng.randrange(33)
        addr = rng.getrandbits(32) & ~((1 << (32 - plen)) - 1)
        return f"{ipaddress.IPv4Address(addr)}/{plen}"
    plen = rng.randrange(129)
    addr = rng.getrandbits(128) & ~((1 << (128 - plen)) - 1)
    return f"{ipaddress.IPv6Address(addr)}/{plen}"


def random_range(rng: random.Random):
    lo = rng.choice([0, rng.randrange(1024), rng.randrange(65536)])
    return lo if rng.random() < 0.3 else (lo, rng.randrange(lo, 65536))


def random_rule(rng: random.Random) -> int:
    """A packed rule with one to four random match fields; now and then disabled."""
    pick = {
        "ethertype": lambda: rng.choice([0x0800, 0x86DD, 0x0806, 0x88B5]),
        "vlan": lambda: rng.randrange(4096),
        "ip_proto": lambda: rng.choice([1, 6, 17, 47, 58]),
        "src": lambda: random_prefix(rng), "dst": lambda: random_prefix(rng),
        "src_port": lambda: random_range(rng), "dst_port": lambda: random_range(rng),
        "dscp": lambda: rng.randrange(64),
        "tcp_flags": lambda: (lambda mask: (rng.getrandbits(8) & mask, mask))(rng.getrandbits(8)),
        "flags": lambda: {name: rng.random() < 0.5 for name in rng.sample(sorted(FLAG), 2)},
        "vni": lambda: rng.choice([0, rng.randrange(1 << 24)]),
    }
    kw = {key: pick[key]() for key in rng.sample(sorted(pick), rng.randint(1, 4))}
    if kw.get("flags", {}).get("vlan") is False:
        kw.pop("vlan", None)
    if "vni" in kw:         # only what a VNI rule allows (FlowRule refuses the rest)
        kw["flags"] = {name: value for name, value in kw.get("flags", {}).items()
                       if name not in ("vni", "udp", "tcp", "fragment", "tunnel", "direct")}
        for key in ("ip_proto", "tcp_flags"):
            kw.pop(key, None)
        if kw.get("ethertype") not in (None, 0x0800, 0x86DD):
            kw.pop("ethertype")
        kw["dst_port"] = rng.choice([4789, 4790, (4000, 5000), None])
    action = Action(instance=rng.randrange(16), reta_offset=rng.randrange(RETA),
                    reta_size=rng.choice([0, 1, 2, 16, 256, RETA]), drop=rng.random() < 0.2)
    packed = FlowRule(**kw, action=action).encode(RETA)
    return packed & ~1 if rng.random() < 0.1 else packed


MASKED = (("flags", "flags_mask", data.Layout.cast(MetaFlags).size),
          ("ethertype", "ethertype_mask", 16),
          ("vlan_id", "vlan_mask", 12), ("ip_proto", "ip_proto_mask", 8),
          ("dscp", "dscp_mask", 6), ("tcp_flags", "tcp_flags_mask", 8),
          ("src_addr", "src_mask", 128), ("dst_addr", "dst_mask", 128), ("vni", "vni_mask", 24))


def random_meta(rng: random.Random, rules: list[RuleFields], seq: int) -> dict:
    """Random metadata; usually built to match a random rule, sometimes nudged off it."""
    meta = {name: rng.getrandbits(f.width) for name, f in META}
    meta.update(error=0 if rng.random() < 0.85 else rng.randrange(1, 8), hash_type=2,
                generation=seq & 0xFFFF)
    if rng.random() < 0.2:
        meta["src_addr"], meta["dst_addr"] = (ipv4_mapped(rng.getrandbits(32)),
                                              ipv4_mapped(rng.getrandbits(32)))
    if rng.random() < 0.1:
        return meta                                          # unrelated to any rule
    rule = rng.choice(rules)
    for field, mask_name, width in MASKED:
        mask = getattr(rule, mask_name)
        meta[field] = (getattr(rule, field) & mask) | (meta[field] & ~mask & ((1 << width) - 1))
    for port in ("src_port", "dst_port"):
        lo, hi = getattr(rule, f"{port}_lo"), getattr(rule, f"{port}_hi")
        meta[port] = rng.choice([lo, hi, rng.randint(lo, hi)])
    if rng.random() < 0.3:                                   # miss by one bit or one port
        field, mask_name, width = rng.choice(MASKED)
        mask = getattr(rule, mask_name)
        if mask:
            bits = [b for b in range(width) if mask >> b & 1]
            meta[field] ^= 1 << rng.choice(bits)
        else:
            port = rng.choice(["src_port", "dst_port"])
            lo, hi = getattr(rule, f"{port}_lo"), getattr(rule, f"{port}_hi")
            meta[port] = rng.choice([max(lo - 1, 0), min(hi + 1, 0xFFFF)])
    return meta


@pytest.mark.parametrize("n_rules, count, pass_errors, gap, stall", [
    (16, 2000, False, 0.3, 0.3),
    (16, 400, True, 0.0, 0.0),
    (2, 400, False, 0.2, 0.5),
])
def test_random(n_rules, count, pass_errors, gap, stall):
    seed = SEED ^ n_rules ^ count
    print(f"seed={seed:#x}")
    rng = random.Random(seed)
    rules = [random_rule(rng) for _ in range(n_rules)]
    if n_rules > 2:
        rules[rng.randrange(n_rules)] &= ~1                  # at least one disabled rule
    decoded = [RuleFields.decode(r) for r in rules]
    metas = [random_meta(rng, decoded, seq) for seq in range(count)]
    default = Action(instance=rng.randrange(16), reta_size=32, drop=rng.random() < 0.5)
    got = simulate(n_rules, rules, default, metas, pass_errors=pass_errors, gap=gap,
                   stall=stall, rng=rng)
    # The bias must make the traffic exercise the table, not only the default action.
    hits = {g["rule"] for g in got}
    assert not hits & {k for k, r in enumerate(rules) if not r & 1}, "a disabled rule matched"
    assert n_rules in hits and len(hits) >= min(n_rules, 8), f"rules hit: {sorted(hits)}"
