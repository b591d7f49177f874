"""``hetnic demo``: a traffic mix through the simulated RX pipeline, and where it went."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from .host.config import RxConfig
from .host.rules import Action, FlowRule
from .protocol import DropReason, HashType

__all__ = ["DEMO_RULES", "run_demo"]

QUEUES = 8

#: The demo's classifier rules: the steering a heterogeneous stack setup would ask for.
DEMO_RULES = [
    FlowRule(name="dns->low-delay", ip_proto="udp", dst_port=53,
             action=Action(instance=1, reta_offset=0, reta_size=2)),
    FlowRule(name="web->throughput", ip_proto="tcp", dst_port=(80, 443),
             action=Action(instance=2, reta_offset=2, reta_size=4)),
    FlowRule(name="direct-channel", flags={"direct": True},
             action=Action(instance=3, reta_offset=6, reta_size=1)),
    FlowRule(name="block-udp-5000", ip_proto="udp", dst_port=5000, action=Action(drop=True)),
]


def _table(title, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [title, "  " + "  ".join(str(h).rjust(w) for h, w in zip(header, widths))]
    lines += ["  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def run_demo(frames: int = 2000, out: Path = Path("out/demo"), seed: int = 1,
             pcap: str | None = None) -> int:
    from .replay import read_capture, record_line, replay_frames, write_jsonl
    from .sim.rx_sim import RxBuild
    from .sim.traffic import traffic_mix

    t_start = time.perf_counter()
    if pcap:
        traffic = [(f, False) for f in read_capture(pcap)]
        source = pcap
    else:
        traffic = traffic_mix(frames, seed=seed)
        source = f"generated mix (seed {seed})"
    config = RxConfig(queues=QUEUES, rules=list(DEMO_RULES), default=Action(instance=0))
    print(f"[1/3] {len(traffic)} frames from {source}", flush=True)
    print("[2/3] building the RX pipeline (Verilator, cached after the first run) and "
          "replaying ...", flush=True)
    result = replay_frames(traffic, config, data_width=64)
    elapsed = time.perf_counter() - t_start
    print("[3/3] results\n", flush=True)

    recs = result.records
    n_rules = RxBuild(data_width=64).n_rules
    lines = [record_line(i, r, n_rules) for i, r in enumerate(recs)]
    delivered = [l for l in lines if l["drop"] is None]
    per_queue = Counter(l["queue"] for l in delivered)
    bytes_queue = Counter()
    for l in delivered:
        bytes_queue[l["queue"]] += l["len"]
    rows = [(q, per_queue[q], bytes_queue[q], result.counters.get(f"QUEUE_PACKETS[{q}]"))
            for q in range(QUEUES)]
    print(_table("Per RX queue (delivered frames)", ("queue", "packets", "bytes",
                                                     "NIC counter"), rows))
    names = [r.name for r in DEMO_RULES]
    per_rule = Counter(l["rule"] for l in lines)
    per_inst = Counter(l["instance"] for l in delivered)
    rows = [(i, names[i], per_rule[i], result.counters.get(f"RULE_HITS[{i}]"))
            for i in range(len(names))]
    rows.append(("-", "default", per_rule[None], result.counters.get(f"RULE_HITS[{n_rules}]")))
    print()
    print(_table("Per classifier rule", ("rule", "name", "frames", "NIC counter"), rows))
    print()
    print(_table("Per stack instance (delivered)", ("instance", "frames"),
                 sorted(per_inst.items())))
    drops = Counter(l["drop"] for l in lines if l["drop"])
    print()
    print(_table("Drops by reason", ("reason", "frames", "NIC counter"),
                 [(d.label, drops[d.label], result.counters.get(f"DROP_COUNT[{d.label}]"))
                  for d in DropReason if d != DropReason.NONE]))
    types = Counter(l["hash_type"] for l in lines)
    print()
    print(_table("Hash types", ("type", "frames"),
                 [(t.label, types[t.label]) for t in HashType]))

    counter_ok = all(result.counters.get(f"QUEUE_PACKETS[{q}]") == per_queue[q]
                     for q in range(QUEUES))
    print(f"\nModel check: {len(recs)} frames compared field by field with the software "
          f"model: {len(result.mismatches)} mismatches")
    print(f"NIC counters agree with the records: {'yes' if counter_ok else 'NO'}")

    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "records.jsonl", result, n_rules)
    summary = {
        "frames": len(recs), "source": source, "queues": QUEUES,
        "delivered": len(delivered), "dropped": len(recs) - len(delivered),
        "per_queue": {str(q): per_queue[q] for q in range(QUEUES)},
        "per_rule": {(names[i] if i is not None else "default"): c
                     for i, c in per_rule.items()},
        "drops": dict(drops), "hash_types": dict(types),
        "model_mismatches": len(result.mismatches), "counters_agree": counter_ok,
        "counters": result.counters, "seconds": round(elapsed, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nWrote {out / 'records.jsonl'} and {out / 'summary.json'} "
          f"({elapsed:.0f} s)")
    if result.mismatches:
        for index, diff in result.mismatches[:5]:
            print(f"  mismatch at frame {index}: {diff}", file=sys.stderr)
        return 1
    return 0 if counter_ok else 1
