"""``hetnic build``: build a board's bitstream with the YoWASP tools and report timing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    add_board_arguments(parser, "build folder (default build/BOARD)")


def run(args: argparse.Namespace) -> int:
    """Build ``--board`` into ``--out`` and print Fmax per clock and utilisation; 1 if a
    clock misses timing. An unknown board or a tool failure raises a
    :class:`~hetnic.boards.BoardError`."""
    from ..boards import get_board
    from ..boards.build import build_board
    board = get_board(args.board)
    out = build_folder(args, board)
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
