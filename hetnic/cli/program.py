"""``hetnic program``: load a built bitstream with openFPGALoader."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from .args import CliError
from .build import add_board_arguments, build_folder

NAME = "program"
HELP = ("load a built bitstream with openFPGALoader (or print the command when it is not "
        "installed)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_board_arguments(parser, "build folder of 'hetnic build' (default build/BOARD)")
    parser.add_argument("--cable", help="openFPGALoader cable (-c) instead of the board's "
                        "default")


def run(args: argparse.Namespace) -> int:
    """Run openFPGALoader on the bitstream ``hetnic build`` wrote (its exit status), or print
    the command (status 0) when openFPGALoader is not on ``PATH``."""
    from ..boards import get_board
    board = get_board(args.board)
    out = build_folder(args, board)
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
    return subprocess.call(command)
