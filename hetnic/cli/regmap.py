"""``hetnic regmap``: print the register map as Markdown, JSON or a C header."""

from __future__ import annotations

import argparse
import sys

NAME = "regmap"
HELP = "print the register map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("md", "json", "h"), default="md",
                        help="Markdown, JSON or a C header (default: md)")


def run(args: argparse.Namespace) -> int:
    """Print :class:`hetnic.regs.RegisterMap` (default build parameters) in ``--format``."""
    from ..regs import RegisterMap
    regmap = RegisterMap()
    text = {"md": regmap.to_markdown, "json": regmap.to_json, "h": regmap.to_c_header}
    sys.stdout.write(text[args.format]())
    return 0
