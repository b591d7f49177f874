"""``hetnic rss-eval``: judge RSS policies on a capture or on synthetic datacenter traffic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cluster import add_cluster_option
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
    "steering whole flows cannot beat. Writes report.json and figure.png to --out. With "
    "--all DIR, every capture in DIR at 4, 8 and 16 queues, as one Markdown table "
    "(captures.md and captures.json in --out; --doc replaces the table in a document). "
    "Exit status 2 for bad input.")

#: Most flows ``--synthetic`` generates.
MAX_FLOWS = 1_000_000
#: Most candidate keys per decision, and most RETA entries moved per decision.
MAX_CANDIDATES = MAX_MOVES = 65_536
#: Queue counts of ``--all``.
ALL_QUEUES = (4, 8, 16)
#: Windows ``--all`` cuts a capture into: a capture of N packets gets windows of
#: ``N // ALL_WINDOWS`` packets, so at least 20 are scored (each policy is judged on the
#: window after its decision, and its guard needs 4 of them before it may act).
ALL_WINDOWS = 21
#: The lines around the table ``--all --doc FILE`` replaces.
DOC_BEGIN = "<!-- hetnic rss-eval --all: begin (generated, do not edit) -->"
DOC_END = "<!-- hetnic rss-eval --all: end -->"


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
    parser.add_argument("--all", metavar="DIR", dest="all_dir",
                        help="every .pcap and .pcapng capture in DIR at 4, 8 and 16 queues, "
                        "windows of a 21st of each capture's packets: one Markdown table")
    parser.add_argument("--doc", metavar="FILE",
                        help="with --all: replace the table between the rss-eval --all "
                        "marker lines of FILE")
    parser.add_argument("--no-guard", dest="guard", action="store_false",
                        help="put each adaptive policy's decisions in force from the start "
                        "(default: static's until the policy has beaten it on the windows "
                        "after its past decisions)")
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
    parser.add_argument("--sweep", nargs="+", metavar="AXIS=VALUES|CAPTURE",
                        help="evaluate every capture at every point of the axes queues=LIST "
                        "and seeds=LIST (integers and ranges A-B, comma-separated; e.g. "
                        "--sweep queues=4,8,16 seeds=1-10 a.pcap b.pcap): one table "
                        "(sweep.md, sweep.json) and one figure (sweep.png) in --out")
    add_cluster_option(parser, "--sweep: the evaluations")
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


def _out_folder(path: str, probe: str | None = None) -> Path:
    """The ``--out`` folder, made if missing, and ``probe`` in it opened for writing: fail
    before a long evaluation, not after it. CliError (one line) if either cannot be done."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if probe is not None:
            (out / probe).open("a").close()
    except OSError as exc:
        raise CliError(f"--out {out}: {exc.strerror or exc}") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Evaluate, write ``report.json`` and ``figure.png`` to ``--out`` and print the table
    (or, with ``--json``, the report)."""
    from ..rss_eval import default_window, draw_figure, dumps, evaluate, format_table
    if args.all_dir is not None:
        return _run_all(args)
    if args.sweep is not None:
        return _run_sweep(args)
    if args.cluster is not None:
        raise CliError("--cluster goes with --sweep")
    if args.doc is not None:
        raise CliError("--doc FILE goes with --all DIR")
    if (args.pcap is None) == (args.synthetic is None):
        raise CliError("give a capture file or --synthetic WORKLOAD (one of them)")
    out = _out_folder(args.out, "report.json")
    trace = _trace(args)
    kind, size = args.window or default_window(trace)
    try:
        report = evaluate(trace, queues=args.queues, candidates=args.candidates,
                          margin=args.margin, max_moves=args.max_moves, seed=args.seed,
                          guard=args.guard, **{f"window_{kind}": size})
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


def _captures(folder: Path) -> list[Path]:
    """The captures of ``--all``, by name; CliError if the folder is missing or has none."""
    if not folder.is_dir():
        raise CliError(f"--all {folder}: no such folder")
    found = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".pcap", ".pcapng")),
                   key=lambda p: p.name.lower())
    if not found:
        raise CliError(f"--all {folder}: no .pcap or .pcapng files in it")
    return found


def evaluate_all(folder, *, candidates: int = 256, margin: float = 0.05,
                 max_moves: int = 16, seed: int = 0, guard: bool = True) -> list[dict]:
    """:func:`hetnic.rss_eval.evaluate` on every capture in ``folder`` at each of
    :data:`ALL_QUEUES`, windows of ``packets // ALL_WINDOWS`` packets. Returns one report per
    capture and queue count (without its per-window ``series``), captures by name. Raises
    CliError for a missing folder, one without captures, or a capture that cannot be
    evaluated (named)."""
    from ..replay import read_capture
    from ..rss_eval import evaluate
    from ..sim.workloads import trace_from_frames
    reports = []
    for path in _captures(Path(folder)):
        trace = trace_from_frames(read_capture(path), name=path.name)
        for queues in ALL_QUEUES:
            try:
                report = evaluate(trace, queues=queues,
                                  window_packets=max(1, len(trace) // ALL_WINDOWS),
                                  candidates=candidates, margin=margin, max_moves=max_moves,
                                  seed=seed, guard=guard)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            report.pop("series")
            reports.append(report)
    return reports


def format_all(reports: list[dict]) -> str:
    """The reports of :func:`evaluate_all` as one Markdown table: a row per capture, queue
    count and policy, then the largest ratio of a policy's next-window max/mean to
    static's."""
    lines = ["| capture | packets | flows | window | scored | queues | lower bound | policy "
             "| max/mean | vs static | worse windows | own max/mean | own vs static "
             "| own worse windows | windows in force |",
             "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
    worst = (0.0, "")
    for r in reports:
        static = r["policies"]["static"]["next_window_max_mean"]
        for name, p in r["policies"].items():
            ratio = p["next_window_max_mean"] / static
            if name != "static" and ratio > worst[0]:
                worst = (ratio, f"{r['trace']}, {r['queues']} queues, {name}")
            own = ([f"{p['own_next_window_max_mean']:.3f}", f"{100 * p['own_vs_static']:+.1f}%",
                    str(p["own_worse_than_static_windows"]), str(p["windows_in_force"])]
                   if "own_vs_static" in p else ["", "", "", ""])
            lines.append("| " + " | ".join([
                r["trace"], str(r["packets"]), str(r["flows"]), str(r["window"]["packets"]),
                str(r["scored_windows"]), str(r["queues"]), f"{r['lower_bound']:.3f}", name,
                f"{p['next_window_max_mean']:.3f}", f"{100 * p['vs_static']:+.1f}%",
                str(p["worse_than_static_windows"]), *own]) + " |")
    guard = "on" if reports[0]["guard"] else "off"
    lines += ["", f"Guard {guard}. Largest next-window max/mean against static's: "
              f"{worst[0]:.4f}x ({worst[1]})."]
    return "\n".join(lines)


def _replace_table(doc: Path, table: str) -> None:
    """Put ``table`` between the :data:`DOC_BEGIN` and :data:`DOC_END` lines of ``doc``."""
    try:
        text = doc.read_text()
    except OSError as exc:
        raise CliError(f"--doc {doc}: {exc.strerror or exc}") from None
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise CliError(f"--doc {doc}: has no '{DOC_BEGIN}' line followed by a "
                       f"'{DOC_END}' line")
    head = text[:begin + len(DOC_BEGIN)]
    doc.write_text(f"{head}\n{table}\n{text[end:]}")


def _run_all(args: argparse.Namespace) -> int:
    """``--all DIR``: print the table, write captures.md and captures.json to ``--out``,
    and replace the table in ``--doc``."""
    import json
    if args.pcap is not None or args.synthetic is not None or args.window is not None:
        raise CliError("--all DIR takes no capture, --synthetic or --window (it evaluates "
                       "every capture in DIR with its own window)")
    _captures(Path(args.all_dir))          # a bad DIR fails before anything is written
    out = _out_folder(args.out)
    reports = evaluate_all(args.all_dir, candidates=args.candidates, margin=args.margin,
                           max_moves=args.max_moves, seed=args.seed, guard=args.guard)
    table = format_all(reports)
    (out / "captures.md").write_text(table + "\n")
    (out / "captures.json").write_text(json.dumps(reports, indent=1, allow_nan=False) + "\n")
    if args.doc is not None:
        _replace_table(Path(args.doc), table)
    print(table)
    print(f"wrote {out / 'captures.md'} and {out / 'captures.json'}"
          + (f"; the table in {args.doc}" if args.doc else ""))
    return 0


def _sweep_points(args: argparse.Namespace) -> tuple[list[Path], dict[str, list[int]]]:
    """The captures and axes of ``--sweep`` (the items with ``=`` are axes, the others
    captures, beside the positional one); CliError for bad ones."""
    from ..rss_eval import parse_sweep
    if args.synthetic is not None or args.all_dir is not None:
        raise CliError("--sweep evaluates captures: not with --synthetic or --all")
    if args.window is not None and args.window[0] == "seconds":
        raise CliError("--sweep: a capture is cut into windows by packet count")
    captures = ([Path(args.pcap)] if args.pcap else []) + [
        Path(item) for item in args.sweep if "=" not in item]
    try:
        axes = parse_sweep([item for item in args.sweep if "=" in item])
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not captures:
        raise CliError("--sweep: give one or more capture files")
    for path in captures:
        if not path.is_file():
            raise CliError(f"--sweep: {path}: no such file")
    return captures, axes


def _run_sweep(args: argparse.Namespace) -> int:
    """``--sweep``: every capture at every queue count and seed, on the cluster with
    ``--cluster`` (each point cached there), else one after the other here; print the table,
    write sweep.md, sweep.json and sweep.png to ``--out``."""
    import json
    from ..rss_eval import draw_sweep_figure, evaluate_capture, format_sweep
    captures, axes = _sweep_points(args)
    out = _out_folder(args.out, "sweep.md")
    options = {"candidates": args.candidates, "margin": args.margin,
               "max_moves": args.max_moves, "guard": args.guard,
               "window_packets": args.window[1] if args.window else None}
    points = [(path, q, s) for path in captures for q in axes.get("queues", [args.queues])
              for s in axes.get("seeds", [args.seed])]
    if args.cluster is not None:
        from ..build_cache import content_key
        from ..cluster import Task, file_digest, open_cluster, run_tasks
        digests = {path: file_digest(path) for path in captures}
        tasks = [Task(f"{path.name} at {q} queues, seed {s}", evaluate_capture,
                      (str(path.resolve()),), dict(queues=q, seed=s, **options),
                      key=content_key("rss-eval", digests[path], path.name,
                                      repr(sorted(options.items())), str(q), str(s)))
                 for path, q, s in points]
        with open_cluster(args.cluster) as client:
            reports = run_tasks(client, tasks, label="rss-eval")
    else:
        reports = []
        for path, q, s in points:
            try:
                reports.append(evaluate_capture(path, queues=q, seed=s, **options))
            except ValueError as exc:
                raise CliError(f"{path.name} at {q} queues, seed {s}: {exc}") from None
    table = format_sweep(reports)
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps(reports, indent=1, allow_nan=False) + "\n")
    draw_sweep_figure(reports, out / "sweep.png")
    print(table)
    print(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0
