"""What ``hetnic demo`` shows about a replay: a summary (per RX queue, rule, stack instance,
drop reason and hash type, with the NIC's own counters checked against what software
received), its plain-text tables and its figure."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import RxConfig
from .protocol import DropReason, HashType
from .replay import ReplayResult

__all__ = ["summarise", "format_tables", "draw_figure"]

#: Latency percentiles in the report and the tables.
PERCENTILES = {"p50": 50, "p99": 99, "max": 100}


def _indexed(counters: dict[str, int], name: str) -> dict[int, int]:
    """The numbered counters ``name[i]`` as ``{i: value}``."""
    pattern = re.compile(rf"{re.escape(name)}\[(\d+)\]")
    return {int(m.group(1)): v for k, v in counters.items() if (m := pattern.fullmatch(k))}


def _latency(cycles: Sequence[int], clock_hz: float) -> dict:
    """:data:`PERCENTILES` of ``cycles``, in cycles and in microseconds (None if empty)."""
    if not len(cycles):
        return {"cycles": None, "us": None}
    values = np.percentile(np.asarray(cycles), list(PERCENTILES.values()))
    return {"cycles": {k: round(float(v), 1) for k, v in zip(PERCENTILES, values)},
            "us": {k: round(float(v) * 1e6 / clock_hz, 3) for k, v in zip(PERCENTILES, values)}}


def summarise(result: ReplayResult, lines: list[dict], config: RxConfig, instances,
              *, source: str, nic: dict, clock_hz: float) -> dict:
    """The demo's report as a JSON-ready dict.

    Parameters
    ----------
    result : ReplayResult
        The replay; its counters are the NIC's.
    lines : list of dict
        :func:`~hetnic.replay.record_line` of every record, in frame order.
    config : RxConfig
        The configuration replayed (its rules and default action name the rule rows).
    instances : sequence of :class:`~hetnic.demo.StackInstance`
    source : str
        Where the frames came from, for the report.
    nic : dict
        The simulated NIC's parameters, for the report.
    clock_hz : float
        The datapath clock, to turn latencies in cycles into microseconds.

    Members
    -------
    per_queue, per_rule, per_instance, drops : list of dict
        Each row holds the count taken from the records beside the NIC counter. A queue's
        ``not_received`` counts the frames the model steered to it that software never
        received; the NIC's ``drops`` (no buffer, too long) must account for them.
    counter_checks : dict of str to bool
        Which groups of NIC counters agree with the records; ``counters_agree`` is them all.
    """
    counters = result.counters
    sent = [l for l in lines if l["sent"]]
    delivered = [l for l in lines if l["delivered"]]
    per_queue, queue_drops = _per_queue(counters, sent, delivered, instances)
    per_rule = _per_rule(counters, sent, config, instances)
    per_instance = _per_instance(delivered, instances, clock_hz)
    drops, pipeline_drops = _drops(counters, sent)
    checks = {
        "frames_in": counters.get("frames_in") == len(sent),
        "queue_packets_bytes_drops": all(row["agree"] for row in per_queue),
        "rule_hits": all(row["frames"] == row["nic_hits"] for row in per_rule),
        "drop_reasons": all(row["model"] == row["nic"] for row in drops),
    }
    hash_types = Counter(l["hash_type"] for l in delivered)
    return {
        "source": source, "nic": {**nic, "clock_mhz": clock_hz / 1e6},
        "frames": len(lines), "sent": len(sent), "delivered": len(delivered),
        "pipeline_drops": pipeline_drops, "queue_drops": queue_drops,
        "cycles": result.stats["cycles"],
        "per_queue": per_queue, "per_rule": per_rule, "per_instance": per_instance,
        "drops": drops, "hash_types": {t.label: hash_types[t.label] for t in HashType},
        "model_mismatches": len(result.mismatches), "counters_agree": all(checks.values()),
        "counter_checks": checks,
        "counters": {k: v for k, v in counters.items() if not k.startswith("bucket_packets")},
    }


def _per_queue(counters: dict[str, int], sent: list[dict], delivered: list[dict],
               instances) -> tuple[list[dict], int]:
    """The ``per_queue`` rows (one per queue the NIC counts, see :func:`summarise`) and the
    number of sent frames dropped at an RX queue."""
    owner = {q: inst.name for inst in instances for q in inst.queue_range}
    packets, nbytes, qdrops, qdrop_bytes = Counter(), Counter(), Counter(), Counter()
    for l in delivered:
        packets[l["queue"]] += 1
        nbytes[l["queue"]] += l["len"]
    for l in sent:
        if l["queue_drop"]:
            qdrops[l["queue"]] += 1
            qdrop_bytes[l["queue"]] += l["len"]
    nic_packets = _indexed(counters, "queue_packets")
    nic_bytes = _indexed(counters, "queue_bytes")
    no_buffer = _indexed(counters, "rxq_no_buffer")
    too_long = _indexed(counters, "rxq_too_long")
    per_queue = []
    for q in sorted(nic_packets):
        row = {"queue": q, "instance": owner.get(q), "packets": packets[q], "bytes": nbytes[q],
               "drops": no_buffer.get(q, 0) + too_long.get(q, 0), "not_received": qdrops[q],
               "nic_packets": nic_packets[q], "nic_bytes": nic_bytes.get(q)}
        # QUEUE_PACKETS/BYTES count what the pipeline steered to the queue, including the
        # frames the queue then dropped for want of a buffer or as too long for one.
        row["agree"] = (row["drops"] == row["not_received"]
                        and row["nic_packets"] == packets[q] + qdrops[q]
                        and row["nic_bytes"] == nbytes[q] + qdrop_bytes[q])
        per_queue.append(row)
    return per_queue, sum(qdrops.values())


def _per_rule(counters: dict[str, int], sent: list[dict], config: RxConfig,
              instances) -> list[dict]:
    """The ``per_rule`` rows: each rule of ``config``, then the default action, with the
    sent frames it matched, its target (an instance's name or ``drop``) and the NIC's
    ``rule_hits`` counter."""
    by_number = {inst.number: inst for inst in instances}
    hits = Counter(l["rule"] for l in sent)
    per_rule = []
    actions = [(i, r.name or f"rule {i}", r.action) for i, r in enumerate(config.rules)]
    for index, name, action in actions + [(None, "default", config.default)]:
        target = "drop" if action.drop else by_number[action.instance].name
        nic_hits = counters.get("rule_hits[default]" if index is None
                                else f"rule_hits[{index}]")
        per_rule.append({"rule": "default" if index is None else index, "name": name,
                         "action": target, "frames": hits[index], "nic_hits": nic_hits})
    return per_rule


def _per_instance(delivered: list[dict], instances, clock_hz: float) -> list[dict]:
    """The ``per_instance`` rows: each stack instance's queues, poll profile, the frames
    delivered to it and their latency (:func:`_latency`)."""
    per_instance = []
    for inst in instances:
        mine = [l["latency_cycles"] for l in delivered if l["instance"] == inst.number]
        per_instance.append({
            "instance": inst.number, "name": inst.name, "traffic": inst.traffic,
            "queues": list(inst.queue_range), "poll_interval_cycles": inst.interval,
            "poll_batch": inst.batch, "frames": len(mine),
            "latency": _latency(mine, clock_hz)})
    return per_instance


def _drops(counters: dict[str, int], sent: list[dict]) -> tuple[list[dict], int]:
    """The ``drops`` rows (each RX pipeline drop reason: the model's count beside the NIC's
    ``drop[reason]`` counter) and the number of sent frames the pipeline dropped."""
    reasons = Counter(l["drop"] for l in sent if l["drop"])
    drops = [{"reason": r.label, "model": reasons[r.label], "nic": counters.get(f"drop[{r.label}]")}
             for r in DropReason if r != DropReason.NONE]
    return drops, sum(reasons.values())


def _table(title: str, header: Sequence[str], rows: list[Sequence]) -> str:
    """A fixed-width text table: numbers right-aligned, text left-aligned."""
    cells = [["-" if c is None else f"{c:.2f}" if isinstance(c, float) else str(c)
              for c in row] for row in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(header))]

    def line(values):
        return "  " + "  ".join(v.rjust(w) if num else v.ljust(w)
                                for v, w, num in zip(values, widths, numeric)).rstrip()
    return "\n".join([title, line(header), line(["-" * w for w in widths])]
                     + [line(c) for c in cells])


def _agree(ok: bool) -> str:
    return "yes" if ok else "NO"


def format_tables(report: dict) -> str:
    """The report as the plain-text tables ``hetnic demo`` prints, ending with the model
    check line."""
    out = [f"{report['frames']} frames from {report['source']}: {report['sent']} sent, "
           f"{report['delivered']} delivered to software, {report['pipeline_drops']} dropped "
           f"by the RX pipeline, {report['queue_drops']} at the RX queues; "
           f"{report['cycles']} NIC cycles"]
    out.append(_table("Per RX queue (packets, bytes: received by software; drops: NIC no-buffer "
                      "+ too-long counters;\n  NIC steered: the NIC's queue_packets counter, "
                      "which should be packets + drops)",
                      ("queue", "instance", "packets", "bytes", "drops", "NIC steered",
                       "agree"),
                      [(r["queue"], r["instance"], r["packets"], r["bytes"], r["drops"],
                        r["nic_packets"], _agree(r["agree"])) for r in report["per_queue"]]))
    out.append(_table("Per classifier rule (first match wins)",
                      ("rule", "name", "action", "frames", "NIC hits"),
                      [(r["rule"], r["name"], r["action"], r["frames"], r["nic_hits"])
                       for r in report["per_rule"]]))
    clock = report["nic"]["clock_mhz"]
    rows = []
    for r in report["per_instance"]:
        cyc, us = r["latency"]["cycles"] or {}, r["latency"]["us"] or {}
        queues = r["queues"]
        rows.append((r["instance"], r["name"],
                     f"{queues[0]}-{queues[-1]}" if len(queues) > 1 else str(queues[0]),
                     r["frames"], r["poll_interval_cycles"], r["poll_batch"],
                     *(None if k not in cyc else round(cyc[k]) for k in PERCENTILES),
                     *(us.get(k) for k in PERCENTILES)))
    out.append(_table(f"Per stack instance (latency: frame's last beat into the RX queues -> "
                      f"software poll; in cycles and in us at {clock:g} MHz)",
                      ("instance", "name", "queues", "frames", "poll every", "batch",
                       "p50 cyc", "p99 cyc", "max cyc", "p50 us", "p99 us", "max us"), rows))
    out.append(_table("RX pipeline drops by reason (software model vs NIC counter)",
                      ("reason", "model", "NIC"),
                      [(r["reason"], r["model"], r["nic"]) for r in report["drops"]]))
    out.append(_table("Hash types of the delivered frames", ("type", "frames"),
                      list(report["hash_types"].items())))
    checks = ", ".join(f"{k} {_agree(v)}" for k, v in report["counter_checks"].items())
    out.append(f"NIC counters agree with what software received: "
               f"{_agree(report['counters_agree'])} ({checks})\n"
               f"Hash check: {report['delivered']} delivered frames compared field by field "
               f"with the software model: {report['model_mismatches']} mismatches")
    return "\n\n".join(out)


def draw_figure(report: dict, lines: list[dict], instances, path: Path, *,
                clock_hz: float) -> None:
    """Write a PNG to ``path``: left, the frames software received per RX queue, coloured by
    the instance that owns the queue; right, the latency distribution (CDF, log scale) of
    each instance's frames. Drawn with the Agg canvas: no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colour = {inst.name: inst.colour for inst in instances}
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.35))

    queues = report["per_queue"]
    bars = left.bar([r["queue"] for r in queues], [r["packets"] for r in queues],
                    color=[colour.get(r["instance"], "black") for r in queues])
    left.bar_label(bars, fontsize=8, padding=2)
    left.set_xticks([r["queue"] for r in queues])
    left.set_xlabel("RX queue")
    left.set_ylabel("frames received by software")
    left.set_title("Load per RX queue")
    left.margins(y=0.12)
    left.legend(handles=[Patch(color=inst.colour, label=f"{inst.name} ({inst.traffic})")
                         for inst in instances], fontsize=8, loc="upper left")

    for inst in instances:
        cycles = np.sort([l["latency_cycles"] for l in lines
                          if l["delivered"] and l["instance"] == inst.number])
        if not len(cycles):
            continue
        us = cycles * 1e6 / clock_hz
        right.step(us, np.arange(1, len(us) + 1) / len(us), where="post", color=inst.colour,
                   label=f"{inst.name}: every {inst.interval} cycles, batch {inst.batch}")
    right.set_xscale("log")
    right.set_ylim(0, 1.02)
    right.grid(True, which="both", alpha=0.3)
    right.set_xlabel(f"latency: frame's last beat into the RX queues to software poll (us at "
                     f"{clock_hz / 1e6:g} MHz, log scale)")
    right.set_ylabel("fraction of the instance's frames")
    right.set_title("Delivery latency per stack instance (CDF)")
    if right.lines:
        right.legend(title="poll profile", fontsize=8, title_fontsize=8, loc="upper left")

    fig.suptitle(f"hetnic demo: {report['frames']} frames from {report['source']}, "
                 f"{report['delivered']} delivered, {report['model_mismatches']} model "
                 f"mismatches")
    fig.savefig(path, dpi=110)
