"""``hetnic build``: build a board's bitstream with the YoWASP tools and report timing."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .args import CliError

NAME = "build"
HELP = ("build a board bitstream with the YoWASP tools and write report.json (Fmax per clock, "
        "utilisation, seconds)")
DESCRIPTION = ("Exit status 1 if a clock misses its constraint (the report is still written), "
               "2 for an unknown board or a tool failure.")


def add_board_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``--board`` and ``--out``, shared with ``hetnic program``."""
    parser.add_argument("--board", required=True, help="board name (see 'hetnic boards')")
    parser.add_argument("--out", help=out_help)


def build_folder(args: argparse.Namespace, board) -> Path:
    """``--out``, or ``build/BOARD`` by default."""
    return Path(args.out or f"build/{board.name}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cluster import add_cluster_option
    from .args import int_range
    add_board_arguments(parser, "build folder (default build/BOARD)")
    parser.add_argument("--seeds", type=int_range(1, 1000), metavar="K",
                        help="build with nextpnr placer seeds 1 to K (each in --out/seed-N), "
                        "report the Fmax distribution (seeds.json) and keep the best build "
                        "in --out")
    add_cluster_option(parser, "--seeds: the builds")


def run(args: argparse.Namespace) -> int:
    """Build ``--board`` into ``--out`` and print Fmax per clock and utilisation; 1 if a
    clock misses timing. An unknown board or a tool failure raises a
    :class:`~hetnic.boards.BoardError`."""
    from ..boards import get_board
    from ..boards.build import build_board
    board = get_board(args.board)
    out = build_folder(args, board)
    if args.seeds is not None:
        report = _build_seeds(args, board, out)
    elif args.cluster is not None:
        raise CliError("--cluster goes with --seeds K")
    else:
        report = build_board(board, out)
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


def _build_seeds(args: argparse.Namespace, board, out: Path) -> dict:
    """``--seeds K``: build with seeds 1 to K (on ``--cluster``, else one after the other),
    write ``seeds.json`` (the Fmax distribution) and copy the best seed's build into
    ``out``; its report."""
    from ..boards.build import build_seed, seeds_summary
    if board.top is None:
        board.make_top()            # raises BoardNotImplemented with what is missing
    seeds = list(range(1, args.seeds + 1))
    folders = {s: (out / f"seed-{s}").resolve() for s in seeds}
    if args.cluster is not None:
        from ..cluster import Task, open_cluster, run_tasks
        tasks = [Task(f"seed {s}", build_seed, (board.name, str(folders[s]), s))
                 for s in seeds]
        with open_cluster(args.cluster) as client:
            reports = run_tasks(client, tasks, label="build")
    else:
        reports = [build_seed(board.name, str(folders[s]), s) for s in seeds]
    summary = seeds_summary(reports)
    for name, clock in summary["clocks"].items():
        print(f"{name}: Fmax over {len(seeds)} seeds: min {clock['min']:.1f}, median "
              f"{clock['median']:.1f}, max {clock['max']:.1f} MHz "
              f"(constraint {clock['constraint_mhz']:g} MHz)")
    best = summary["best_seed"]
    print(f"best: seed {best}; its build copied to {out}")
    shutil.copytree(folders[best], out, dirs_exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    return reports[seeds.index(best)]
