"""``hetnic rss-eval``: judge RSS policies on a capture or on synthetic datacenter traffic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import CliError, float_range, int_range, queue_count, seed

NAME = "rss-eval"
HELP = ("judge RSS policies (static, adaptive key, RETA rebalancing) on a capture or "
        "synthetic datacenter traffic, on the window after each decision")
DESCRIPTION = (
    "Cut the traffic into windows; after each window every policy decides from that window "
    "alone and is scored on the next one: static (the default key and table), adaptive_key "
    "(best of random candidate keys, switched with a margin), reta (indirection-table "
    "rebalancing from per-bucket packet counts) and adaptive_key+reta. Prints per policy the "
    "next-window max/mean queue load (packets, bytes), the change against static, windows "
    "worse than static, flows migrated and decision time, beside the lower bound that "
    "steering whole flows cannot beat. Writes report.json and figure.png to --out. Exit "
    "status 2 for bad input.")

#: Most flows ``--synthetic`` generates.
MAX_FLOWS = 1_000_000
#: Most candidate keys per decision, and most RETA entries moved per decision.
MAX_CANDIDATES = MAX_MOVES = 65_536


def _window(text: str):
    """The argparse ``type`` of ``--window``: :func:`hetnic.rss_eval.parse_window`."""
    from ..rss_eval import parse_window
    try:
        return parse_window(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workload(text: str) -> str:
    """The argparse ``type`` of ``--synthetic``: a name of :data:`hetnic.sim.workloads.WORKLOADS`."""
    from ..sim.workloads import WORKLOADS
    if text not in WORKLOADS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(WORKLOADS)}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pcap", nargs="?", help="capture file (pcap or pcapng); windows are "
                        "counted in packets")
    parser.add_argument("--synthetic", metavar="WORKLOAD", type=_workload,
                        help="generate traffic instead: websearch (DCTCP), datamining (VL2) or "
                        "hadoop (Facebook) flow sizes, random TCP/IPv4 5-tuples, 1 s")
    parser.add_argument("--flows", type=int_range(1, MAX_FLOWS), default=10_000,
                        help="flows of --synthetic (default 10000)")
    parser.add_argument("--queues", type=queue_count, default=16,
                        help="RX queues, 1 to 256 (default 16)")
    parser.add_argument("--window", type=_window,
                        help="window: seconds ('0.1s', '100ms') or packets ('10000'); default "
                        "10ms for --synthetic, 10000 packets for a capture (a tenth of a "
                        "capture shorter than 20000 packets)")
    parser.add_argument("--seed", type=seed, default=0,
                        help="traffic and key-candidate seed (default 0)")
    parser.add_argument("--candidates", type=int_range(1, MAX_CANDIDATES), default=256,
                        help="random keys the key selector scores per decision (default 256)")
    parser.add_argument("--margin", type=float_range(0.0), default=0.05,
                        help="relative improvement a candidate key needs to replace the "
                        "active one (default 0.05)")
    parser.add_argument("--max-moves", type=int_range(0, MAX_MOVES), default=16,
                        help="RETA entries the balancer may move per decision (default 16)")
    parser.add_argument("--json", action="store_true",
                        help="print only the report, as one JSON object")
    parser.add_argument("--out", default="out/rss-eval",
                        help="output folder for report.json and figure.png (default "
                        "out/rss-eval)")


def _trace(args: argparse.Namespace):
    """The traffic to evaluate: the capture or the synthetic workload."""
    from ..sim.workloads import synthetic_trace, trace_from_frames
    if args.pcap is None:
        return synthetic_trace(args.synthetic, flows=args.flows, seed=args.seed)
    from ..replay import read_capture
    if args.window is not None and args.window[0] == "seconds":
        raise CliError(f"--window {args.window[1]:g}s: a capture is cut into windows by "
                       "packet count (its timestamps are not read); give a number of packets")
    trace = trace_from_frames(read_capture(args.pcap), name=str(args.pcap))
    if not len(trace):
        raise CliError(f"{args.pcap}: the capture holds no frames")
    return trace


def run(args: argparse.Namespace) -> int:
    """Evaluate, write ``report.json`` and ``figure.png`` to ``--out`` and print the table
    (or, with ``--json``, the report)."""
    from ..rss_eval import default_window, draw_figure, dumps, evaluate, format_table
    if (args.pcap is None) == (args.synthetic is None):
        raise CliError("give a capture file or --synthetic WORKLOAD (one of them)")
    out = Path(args.out)
    try:                    # fail before a long evaluation, not after it
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").open("a").close()
    except OSError as exc:
        raise CliError(f"--out {out}: {exc.strerror or exc}") from None
    trace = _trace(args)
    kind, size = args.window or default_window(trace)
    try:
        report = evaluate(trace, queues=args.queues, candidates=args.candidates,
                          margin=args.margin, max_moves=args.max_moves, seed=args.seed,
                          **{f"window_{kind}": size})
    except ValueError as exc:       # the traffic cannot be evaluated with these options
        raise CliError(str(exc)) from None
    text = dumps(report)
    (out / "report.json").write_text(text + "\n")
    draw_figure(report, out / "figure.png")
    if args.json:
        print(text)
        print(f"wrote {out / 'report.json'} and {out / 'figure.png'}", file=sys.stderr)
    else:
        print(format_table(report))
        print(f"wrote {out / 'report.json'} and {out / 'figure.png'}")
    return 0
