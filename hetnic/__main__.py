"""The ``hetnic`` command line (also ``python -m hetnic``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]

REPO_RTL = Path(__file__).resolve().parent.parent / "rtl"


class CliError(Exception):
    """Printed as one line, exit status 2."""


def _cmd_verilog(args) -> int:
    from .rtl import rtl_files, write_rtl
    out = Path(args.out)
    if args.check:
        files = rtl_files()
        stale = [name for name, text in files.items()
                 if not (out / name).exists() or (out / name).read_text() != text]
        if out.is_dir():
            stale += sorted({p.name for p in out.iterdir()} - set(files))
        if stale:
            print(f"{out}: stale or missing: {', '.join(stale)} (run 'hetnic verilog')",
                  file=sys.stderr)
            return 1
        print(f"{out}: up to date")
        return 0
    for path in write_rtl(out):
        print(path)
    return 0


def _cmd_regmap(args) -> int:
    from .regs import RegisterMap
    regmap = RegisterMap()
    text = {"md": regmap.to_markdown, "json": regmap.to_json, "h": regmap.to_c_header}
    sys.stdout.write(text[args.format]())
    return 0


def _cmd_boards(args) -> int:
    from .boards import BOARDS
    for board in BOARDS.values():
        status = "top" if board.top else "not implemented yet"
        core = "reduced core" if board.reduced else "full RX pipeline"
        print(f"{board.name:18} {board.device:22} {board.ports} RGMII port"
              f"{'s' if board.ports != 1 else ''}, {core}, {board.clock_mhz:g} MHz, {status}: "
              f"{board.note}")
    return 0


def _cmd_build(args) -> int:
    from .boards import BoardError, get_board
    from .boards.build import build_board
    board = get_board(args.board)
    out = Path(args.out or f"build/{board.name}")
    try:
        report = build_board(board, out)
    except BoardError as exc:
        raise CliError(str(exc)) from None
    for clock in report["clocks"]:
        print(f"{clock['name']}: {clock['fmax_mhz']:.1f} MHz of {clock['constraint_mhz']:g} MHz"
              f" {'met' if clock['met'] else 'NOT MET'}")
    for cell, use in report["utilisation"].items():
        print(f"{cell}: {use['used']} / {use['available']}")
    print(f"{out / 'report.json'} ({report['seconds']} s)")
    if not report["timing_met"]:
        failing = ", ".join(c["name"] for c in report["clocks"] if not c["met"])
        print(f"hetnic build: timing not met: {failing} (see {out / 'report.json'})",
              file=sys.stderr)
        return 1
    return 0


def _cmd_program(args) -> int:
    import shutil
    from .boards import get_board
    board = get_board(args.board)
    out = Path(args.out or f"build/{board.name}")
    bitstream = out / f"hetnic_{board.name}.{'bin' if board.reduced else 'bit'}"
    command = ["openFPGALoader", *(("-c", args.cable) if args.cable else board.loader),
               str(bitstream)]
    if not bitstream.exists():
        raise CliError(f"{bitstream} does not exist; run 'hetnic build --board {board.name}"
                       f"{' --out ' + str(out) if args.out else ''}' first")
    if shutil.which("openFPGALoader") is None:
        print("openFPGALoader is not on PATH; to program the board run:", file=sys.stderr)
        print(" ".join(command))
        return 0
    import subprocess
    return subprocess.call(command)


def _parse_key(text: str | None) -> bytes | None:
    from .protocol import RSS_KEY_LEN
    if text is None:
        return None
    clean = text.replace(":", "").replace(" ", "")
    if clean.lower().startswith("0x"):
        clean = clean[2:]
    try:
        key = bytes.fromhex(clean)
    except ValueError:
        raise CliError(f"--key: {text!r} is not hexadecimal") from None
    if len(key) != RSS_KEY_LEN:
        raise CliError(f"--key must be {RSS_KEY_LEN} bytes ({2 * RSS_KEY_LEN} hex digits), "
                       f"got {len(key)} bytes")
    return key


def _build(args):
    from .sim.rx_sim import RxBuild
    return RxBuild(data_width=getattr(args, "width", 64))


def _config(args):
    from .host.config import RxConfig
    from .host.rules import RuleError, load_rules
    config = RxConfig(queues=args.queues)
    key = _parse_key(args.key)
    if key is not None:
        config.key = key
    if args.symmetric:
        config.symmetric = True
    if args.rules:
        params = _build(args).regmap().params
        try:
            rules = load_rules(args.rules, max_rules=params["n_rules"],
                               reta_entries=params["reta_size"])
        except RuleError as exc:
            raise CliError(str(exc)) from None
        config.rules, config.default = rules.rules, rules.default
    return config


def _width(text: str) -> int:
    try:
        width = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bits") from None
    if width not in (8, 16, 32, 64, 128):
        raise argparse.ArgumentTypeError(f"width must be 8, 16, 32, 64 or 128 bits, "
                                         f"not {width}")
    return width


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _queues(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"queues must be from 1 to 64, not {n}")
    return n


def _cmd_replay(args) -> int:
    from .replay import read_capture, replay_frames, write_jsonl
    frames = read_capture(args.pcap)
    config = _config(args)
    try:                    # fail before a long simulation, not after it
        Path(args.out).open("w").close()
    except OSError as exc:
        raise CliError(f"--out {args.out}: {exc.strerror}") from None
    print(f"replaying {len(frames)} frames from {args.pcap} at {args.width} bits "
          f"on Verilator ...", file=sys.stderr)
    result = replay_frames(frames, config, data_width=args.width, check=not args.no_check,
                           trace=args.trace)
    write_jsonl(Path(args.out), result, n_rules=_build(args).n_rules)
    dropped = sum(1 for r in result.records if r["drop"])
    print(f"wrote {len(result.records)} lines to {args.out}: "
          f"{len(result.records) - dropped} delivered, {dropped} dropped", file=sys.stderr)
    if not args.no_check:
        print(f"model check: {len(result.mismatches)} mismatches", file=sys.stderr)
        for index, diff in result.mismatches[:5]:
            print(f"  frame {index}: {diff}", file=sys.stderr)
        if result.mismatches:
            return 1
    return 0


def _cmd_bench(args) -> int:
    from .bench import bench_core, bench_hil, bench_rss, bench_rx
    if args.what == "rss":
        result = bench_rss(flows=args.frames or 10_000)
    elif args.what == "rx":
        result = bench_rx(frames=args.frames or 10_000)
    elif args.what == "core":
        result = bench_core(frames=args.frames or 2000)
    else:
        result = bench_hil(frames=args.frames or 20_000)
    print(json.dumps(result, indent=2))
    return 0


def _trace_file(text: str) -> str:
    if Path(text).suffix.lower() not in (".vcd", ".fst"):
        raise argparse.ArgumentTypeError(f"the waveform file must end in .vcd or .fst, "
                                         f"not {text!r}")
    return text


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(frames=args.frames, out=Path(args.out), seed=args.seed,
                    pcap=args.pcap, trace=args.trace)


def _cmd_rss_eval(args) -> int:
    from .rss_eval import MAX_QUEUES, default_window, draw_figure, dumps, evaluate, format_table
    from .rss_eval import parse_window
    from .sim.workloads import WORKLOADS, synthetic_trace, trace_from_frames

    def number(option, text, low, high=None, kind=int):
        # Checked here rather than by argparse, so a bad value is one line, exit 2.
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise CliError(f"{option} {text!r} is not a {'whole ' if kind is int else ''}"
                           "number") from None
        if not value >= low or (high is not None and value > high):    # NaN fails too
            upper = f" to {high}" if high is not None else " or more"
            raise CliError(f"{option} must be from {low}{upper}, not {text}")
        return value

    if (args.pcap is None) == (args.synthetic is None):
        raise CliError("give a capture file or --synthetic WORKLOAD (one of them)")
    if args.synthetic is not None and args.synthetic not in WORKLOADS:
        raise CliError(f"--synthetic {args.synthetic!r}: choose one of {', '.join(WORKLOADS)}")
    queues = number("--queues", args.queues, 1, MAX_QUEUES)
    flows = number("--flows", args.flows, 1, 1_000_000)
    seed = number("--seed", args.seed, 0)
    candidates = number("--candidates", args.candidates, 1, 65_536)
    margin = number("--margin", args.margin, 0.0, kind=float)
    max_moves = number("--max-moves", args.max_moves, 0, 65_536)
    try:
        window = parse_window(args.window) if args.window is not None else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    out = Path(args.out)
    try:                    # fail before a long evaluation, not after it
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").open("a").close()
    except OSError as exc:
        raise CliError(f"--out {out}: {exc.strerror or exc}") from None

    if args.pcap is not None:
        from .replay import read_capture
        if window is not None and window[0] == "seconds":
            raise CliError(f"--window {args.window}: a capture is cut into windows by packet "
                           "count (its timestamps are not read); give a number of packets")
        trace = trace_from_frames(read_capture(args.pcap), name=str(args.pcap))
        if not len(trace):
            raise CliError(f"{args.pcap}: the capture holds no frames")
    else:
        trace = synthetic_trace(args.synthetic, flows=flows, seed=seed)
    kind, size = window or default_window(trace)
    try:
        report = evaluate(trace, queues=queues, candidates=candidates, margin=margin,
                          max_moves=max_moves, seed=seed,
                          **{f"window_{kind}": size})
    except ValueError as exc:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetnic", description="hetnic: an open SmartNIC reference design "
        "(Amaranth gateware, Verilator simulation, Python host).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verilog", help="write the generated Verilog and register map to rtl/")
    p.add_argument("--out", default=str(REPO_RTL), help="output folder (default: rtl/)")
    p.add_argument("--check", action="store_true",
                   help="only check that the folder matches the gateware; exit 1 if stale")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("regmap", help="print the register map")
    p.add_argument("--format", choices=("md", "json", "h"), default="md",
                   help="Markdown, JSON or a C header (default: md)")
    p.set_defaults(func=_cmd_regmap)

    p = sub.add_parser("replay", help="steer the frames of a pcap/pcapng file through the "
                       "simulated NIC core into host memory; one JSON line per frame")
    p.add_argument("pcap", help="capture file (pcap or pcapng)")
    p.add_argument("--out", required=True, help="output JSON Lines file")
    p.add_argument("--key", help="40-byte RSS key in hex (default: the Microsoft key)")
    p.add_argument("--symmetric", action="store_true",
                   help="symmetric hashing: sort addresses and ports before hashing")
    p.add_argument("--queues", type=_queues, default=16,
                   help="RX queues; the RETA maps entry i to queue i mod N (default 16)")
    p.add_argument("--rules", help="classifier rules, TOML or JSON (see README)")
    p.add_argument("--width", type=_width, default=64,
                   help="datapath width in bits: 8, 16, 32, 64 or 128 (default 64; other "
                   "widths are built on first use)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the frame-by-frame comparison with the software model")
    p.add_argument("--trace", type=_trace_file, metavar="FILE",
                   help="write a waveform of the replay to FILE (.vcd)")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("bench", help="benchmarks; print one JSON object")
    p.add_argument("what", choices=("rx", "core", "hil", "rss"),
                   help="rx: RX pipeline and software Toeplitz; core: the NIC core with DMA; "
                   "hil: the compiled harness and driver against the bare model and cocotb; "
                   "rss: key scoring speed and the RSS policies on synthetic web-search")
    p.add_argument("--frames", type=_positive, default=None,
                   help="64-byte frames (default 10000 for rx, 2000 for core, 20000 for "
                   "hil); for rss, flows (default 10000)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "demo", help="replay a traffic mix through the simulated NIC with software polling "
        "its RX queues; tables, report and figure",
        description="Generate a traffic mix with scapy (or read --pcap) and replay it through "
        "the simulated NIC core (64-bit, 8 RX queues) while each stack instance's software "
        "polls its queues: low-delay (DNS) on queues 0-1, throughput (web) on 2-5, the "
        "direct channel on 6, general on 7; UDP port 5000 is dropped. Prints per-queue, "
        "per-rule, per-instance (latency), drop and hash-type tables beside the NIC's own "
        "counters, and checks every delivered frame against the software model. Writes "
        "report.json, records.jsonl (one line per frame) and figure.png to --out. Exit "
        "status 0 when there are no model mismatches and the counters agree, 1 otherwise, "
        "2 for bad input.")
    p.add_argument("--frames", type=_positive, default=20_000,
                   help="frames to generate (default 20000; scapy takes about 0.5 ms each)")
    p.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")
    p.add_argument("--pcap", help="replay this capture (pcap or pcapng) instead of "
                   "generated traffic")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--trace", type=_trace_file, metavar="FILE",
                   help="write a waveform of the whole replay to FILE (.vcd or .fst); the "
                   "first use compiles a tracing simulator (about a minute), and a VCD grows "
                   "by about 0.3 MB a frame: use a few dozen --frames")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "rss-eval", help="judge RSS policies (static, adaptive key, RETA rebalancing) on a "
        "capture or synthetic datacenter traffic, on the window after each decision",
        description="Cut the traffic into windows; after each window every policy decides "
        "from that window alone and is scored on the next one: static (the default key and "
        "table), adaptive_key (best of random candidate keys, switched with a margin), reta "
        "(indirection-table rebalancing from per-bucket packet counts) and "
        "adaptive_key+reta. Prints per policy the next-window max/mean queue load (packets, "
        "bytes), the change against static, windows worse than static, flows migrated and "
        "decision time, beside the lower bound that steering whole flows cannot beat. Writes "
        "report.json and figure.png to --out. Exit status 2 for bad input.")
    p.add_argument("pcap", nargs="?", help="capture file (pcap or pcapng); windows are "
                   "counted in packets")
    p.add_argument("--synthetic", metavar="WORKLOAD", help="generate traffic instead: "
                   "websearch (DCTCP), datamining (VL2) or hadoop (Facebook) flow sizes, "
                   "random TCP/IPv4 5-tuples, 1 s")
    p.add_argument("--flows", default="10000", help="flows of --synthetic (default 10000)")
    p.add_argument("--queues", default="16", help="RX queues, 1 to 256 (default 16)")
    p.add_argument("--window", help="window: seconds ('0.1s', '100ms') or packets ('10000'); "
                   "default 10ms for --synthetic, 10000 packets for a capture (a tenth of a "
                   "capture shorter than 20000 packets)")
    p.add_argument("--seed", default="0", help="traffic and key-candidate seed (default 0)")
    p.add_argument("--candidates", default="256",
                   help="random keys the key selector scores per decision (default 256)")
    p.add_argument("--margin", default="0.05", help="relative improvement a candidate key "
                   "needs to replace the active one (default 0.05)")
    p.add_argument("--max-moves", default="16",
                   help="RETA entries the balancer may move per decision (default 16)")
    p.add_argument("--json", action="store_true",
                   help="print only the report, as one JSON object")
    p.add_argument("--out", default="out/rss-eval",
                   help="output folder for report.json and figure.png (default out/rss-eval)")
    p.set_defaults(func=_cmd_rss_eval)

    p = sub.add_parser("boards", help="list the boards and what each supports")
    p.set_defaults(func=_cmd_boards)

    p = sub.add_parser("build", help="build a board bitstream with the YoWASP tools and "
                       "write report.json (Fmax per clock, utilisation, seconds)",
                       description="Exit status 1 if a clock misses its constraint (the "
                       "report is still written), 2 for an unknown board or a tool failure.")
    p.add_argument("--board", required=True, help="board name (see 'hetnic boards')")
    p.add_argument("--out", help="build folder (default build/BOARD)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("program", help="load a built bitstream with openFPGALoader (or "
                       "print the command when it is not installed)")
    p.add_argument("--board", required=True, help="board name (see 'hetnic boards')")
    p.add_argument("--out", help="build folder of 'hetnic build' (default build/BOARD)")
    p.add_argument("--cable", help="openFPGALoader cable (-c) instead of the board's "
                   "default")
    p.set_defaults(func=_cmd_program)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .boards import BoardError
    from .host.nic import NicError
    from .replay import ReplayError
    from .sim.hil import HarnessError
    from .sim.rx_sim import SimulationError
    from .sim.toolchain import ToolError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, BoardError, ReplayError, ToolError, SimulationError, HarnessError,
            NicError) as exc:
        print(f"hetnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hetnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
