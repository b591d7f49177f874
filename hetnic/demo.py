"""``hetnic demo``: the project's main job. A traffic mix through the simulated NIC core while
software consumers poll its RX queues, then where every frame went and how long it waited.

The demo host runs the network stack instances of :data:`INSTANCES`. Each owns a disjoint set
of RX queues: its classifier actions select a RETA slice, and with the default table (entry
``i`` -> queue ``i % 8``) a slice of entries is the same range of queues. Each instance polls
its queues with its own :class:`~hetnic.replay.Consumer` profile, so the latencies show the
cost of a throughput stack's big batches against a low-delay stack's frequent polls.

Output (in the ``out`` folder): ``report.json`` (the summary of
:func:`hetnic.demo_report.summarise`, plus ``seconds`` per phase and the output paths),
``records.jsonl`` (one :func:`~hetnic.replay.record_line` per frame) and ``figure.png``
(queue load and latency). Latency is counted from the cycle a frame's last beat enters the
RX queues (after the RX pipeline, the completion's timestamp) to the poll that returns it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .config import RxConfig
from .rules import Action, FlowRule
from .replay import Consumer, ReplayError

__all__ = ["StackInstance", "INSTANCES", "DATA_WIDTH", "RX_QUEUES", "CLOCK_HZ", "demo_rules",
           "demo_config", "demo_consumers", "ProgressBar", "run_demo"]

DATA_WIDTH = 64
RX_QUEUES = 8
#: The datapath clock of a 64-bit 10GBASE-R NIC: 10.3125 Gbaud, 64b/66b, 64 bits a cycle.
CLOCK_HZ = 156.25e6


@dataclass(frozen=True)
class StackInstance:
    """One network stack instance of the demo host: what it receives, which RX queues it
    owns and how its software polls them.

    Members
    -------
    number : int
        The classifier's ``instance`` value (0..15).
    name, traffic : str
        Its name and what the rules steer to it, for tables and the figure.
    first_queue, queues : int
        It owns RX queues ``first_queue .. first_queue + queues - 1``; ``queues`` is a power
        of two (the RETA slice size).
    interval, batch : int
        Its consumer polls each queue every ``interval`` cycles for up to ``batch`` frames.
    colour : str
        Its colour in the figure (a Matplotlib colour name).
    """
    number: int
    name: str
    traffic: str
    first_queue: int
    queues: int
    interval: int
    batch: int
    colour: str

    @property
    def queue_range(self) -> range:
        return range(self.first_queue, self.first_queue + self.queues)

    def action(self) -> Action:
        """Steer to this instance, spread over its queues by the RSS hash."""
        return Action(instance=self.number, reta_offset=self.first_queue,
                      reta_size=self.queues)

    def consumer(self) -> Consumer:
        return Consumer(interval=self.interval, batch=self.batch)


#: The demo's stack instances, in the order of the tables.
INSTANCES = (
    StackInstance(1, "low-delay", "DNS: udp dst 53", 0, 2, 128, 8, "tab:orange"),
    StackInstance(2, "throughput", "web: tcp dst 80, 443", 2, 4, 4096, 256, "tab:blue"),
    StackInstance(3, "direct channel", "direct EtherType frames", 6, 1, 512, 32, "tab:green"),
    StackInstance(0, "general", "everything else", 7, 1, 1024, 64, "tab:gray"),
)


def _instance(name: str) -> StackInstance:
    return next(i for i in INSTANCES if i.name == name)


def demo_rules() -> list[FlowRule]:
    """The classifier rules, first match wins; frames no rule matches go to ``general``."""
    return [
        FlowRule(name="dns", ip_proto="udp", dst_port=53, action=_instance("low-delay").action()),
        FlowRule(name="http", ip_proto="tcp", dst_port=80,
                 action=_instance("throughput").action()),
        FlowRule(name="https", ip_proto="tcp", dst_port=443,
                 action=_instance("throughput").action()),
        FlowRule(name="direct", flags={"direct": True},
                 action=_instance("direct channel").action()),
        FlowRule(name="block-udp-5000", ip_proto="udp", dst_port=5000, action=Action(drop=True)),
    ]


def demo_config() -> RxConfig:
    """The RX configuration: :func:`demo_rules`, the default RETA over :data:`RX_QUEUES`."""
    return RxConfig(queues=RX_QUEUES, rules=demo_rules(), default=_instance("general").action())


def demo_consumers() -> dict[int, Consumer]:
    """RX queue -> the consumer profile of the instance that owns it."""
    return {q: inst.consumer() for inst in INSTANCES for q in inst.queue_range}


class ProgressBar:
    """``progress(done, total)`` for :func:`~hetnic.replay.replay_frames`, drawn on
    ``stream``: on a terminal one line redrawn in place at most ten times a second, otherwise
    one line at each further 10 %. ``title`` is printed at the first call; :attr:`started` is
    the time of that call (``time.perf_counter``)."""

    def __init__(self, stream: TextIO, title: str):
        self.stream = stream
        self.title = title
        self.tty = stream.isatty()
        self.started: float | None = None
        self._first = 0
        self._drawn = 0.0
        self._next_tenth = 1
        self._last = (0, 0)
        self._width = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started, self._first = now, done
            print(self.title, file=self.stream, flush=True)
        self._last = (done, total)
        if self.tty:
            if now - self._drawn >= 0.1 or done == total:
                self._drawn = now
                self._draw("\r")
        elif done * 10 >= self._next_tenth * total:
            self._next_tenth = done * 10 // total + 1 if total else 11
            self._draw("")

    def _draw(self, start: str) -> None:
        done, total = self._last
        seconds = time.perf_counter() - self.started
        rate = (done - self._first) / seconds if seconds > 0 else 0.0
        percent = 100 * done / total if total else 100.0
        line = f"  {percent:3.0f}%  {done:>{len(str(total))}}/{total} frames  {rate:7.0f} frames/s"
        self._width = max(self._width, len(line))
        end = "" if self.tty else "\n"
        print(start + line.ljust(self._width), end=end, file=self.stream, flush=True)

    def finish(self) -> None:
        """End the redrawn line (on a terminal) with its final state."""
        if self.tty and self.started is not None:
            self._draw("\r")
            print(file=self.stream, flush=True)


def _phase(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_demo(frames: int = 20_000, out: Path = Path("out/demo"), seed: int = 1,
             pcap: str | None = None, trace: str | None = None) -> int:
    """Replay ``frames`` generated frames (or the frames of ``pcap``) through the simulated
    NIC with the demo's configuration and consumers; print the tables, write the report,
    records and figure into ``out``. ``trace`` is a ``.vcd`` or ``.fst`` waveform file.

    Returns 0 if every delivered frame agrees with the software model and every checked NIC
    counter agrees with what software received, else 1. Raises
    :class:`~hetnic.replay.ReplayError` for an unreadable or empty capture (before any
    output) and ``OSError`` if ``out`` cannot be created.
    """
    from .demo_report import draw_figure, format_tables, summarise
    from .replay import read_capture, record_line, replay_frames, write_jsonl
    from .sim.traffic import traffic_mix

    t_start = time.perf_counter()
    out = Path(out).resolve()
    if pcap is not None:
        traffic = read_capture(pcap)
        if not traffic:
            raise ReplayError(f"{pcap}: the capture holds no frames")
        source = str(pcap)
    out.mkdir(parents=True, exist_ok=True)
    if pcap is None:
        _phase(f"generating {frames} frames (scapy, seed {seed}) ...")
        traffic = traffic_mix(frames, seed=seed)
        source = f"generated mix (seed {seed})"
    else:
        _phase(f"read {len(traffic)} frames from {pcap}")
    t_generated = time.perf_counter()

    _phase(f"building/loading the simulated NIC ({DATA_WIDTH}-bit, {RX_QUEUES} RX queues; "
           "Verilator, cached after the first build) ...")
    bar = ProgressBar(sys.stderr, f"replaying {len(traffic)} frames, software polling the "
                                  f"RX queues ...")
    config = demo_config()
    result = replay_frames(traffic, config, data_width=DATA_WIDTH, rx_queues=RX_QUEUES,
                           consumers=demo_consumers(), progress=bar, trace=trace)
    bar.finish()
    t_replayed = time.perf_counter()

    # The build's rule table size, as the NIC's counters show it (one hit counter per slot).
    n_rules = sum(1 for name in result.counters
                  if name.startswith("rule_hits[") and name != "rule_hits[default]")
    lines = [record_line(i, rec, n_rules) for i, rec in enumerate(result.records)]
    report = summarise(result, lines, config, INSTANCES, source=source, clock_hz=CLOCK_HZ,
                       nic={"data_width": DATA_WIDTH, "rx_queues": RX_QUEUES})
    loaded = bar.started if bar.started is not None else t_replayed
    report["seconds"] = {"generate": round(t_generated - t_start, 2),
                         "load_nic": round(loaded - t_generated, 2),
                         "replay": round(t_replayed - loaded, 2)}
    print(format_tables(report), flush=True)

    figure = out / "figure.png"
    draw_figure(report, lines, INSTANCES, figure, clock_hz=CLOCK_HZ)
    write_jsonl(out / "records.jsonl", result, n_rules)
    report["figure"] = str(figure)
    report["records"] = str(out / "records.jsonl")
    report["trace"] = str(Path(trace).resolve()) if trace else None
    report["seconds"]["report"] = round(time.perf_counter() - t_replayed, 2)
    report["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    s = report["seconds"]
    rate = len(traffic) / s["replay"] if s["replay"] > 0 else 0
    print(f"\nTime: {s['total']:.1f} s: generate {s['generate']:.1f} s, load the NIC "
          f"{s['load_nic']:.1f} s, replay {s['replay']:.1f} s ({rate:.0f} frames/s), "
          f"report and figure {s['report']:.1f} s")
    print(f"Output: {out} (report.json, records.jsonl, figure.png)")
    if trace:
        print(f"Waveform: {report['trace']}")
    for index, diff in result.mismatches[:5]:
        where = f"frame {index}" if index >= 0 else "replay"
        print(f"hetnic demo: mismatch at {where}: {diff}", file=sys.stderr)
    return 0 if not result.mismatches and report["counters_agree"] else 1
