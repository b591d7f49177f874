"""``hetnic boards``: list the boards and what each supports."""

from __future__ import annotations

import argparse

NAME = "boards"
HELP = "list the boards and what each supports"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    """One line per board of :data:`hetnic.boards.BOARDS`."""
    from ..boards import BOARDS
    for board in BOARDS.values():
        status = "top" if board.top else "not implemented yet"
        core = "reduced core" if board.reduced else "full RX pipeline"
        print(f"{board.name:18} {board.device:22} {board.ports} RGMII port"
              f"{'s' if board.ports != 1 else ''}, {core}, {board.clock_mhz:g} MHz, {status}: "
              f"{board.note}")
    return 0
