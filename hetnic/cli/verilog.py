"""``hetnic verilog``: write the generated Verilog and register map to ``rtl/``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "verilog"
HELP = "write the generated Verilog and register map to rtl/"

#: The repository's ``rtl/`` folder, the default output.
REPO_RTL = Path(__file__).resolve().parents[2] / "rtl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(REPO_RTL), help="output folder (default: rtl/)")
    parser.add_argument("--check", action="store_true",
                        help="only check that the folder matches the gateware; exit 1 if stale")


def run(args: argparse.Namespace) -> int:
    """Write every file of :func:`hetnic.rtl.rtl_files` to ``--out`` and print its path; with
    ``--check``, write nothing and return 1 if a file is missing, different or extra."""
    from ..rtl import rtl_differences, rtl_files, write_rtl
    out = Path(args.out)
    if args.check:
        stale, extra = rtl_differences(out, rtl_files())
        stale += extra
        if stale:
            print(f"{out}: stale or missing: {', '.join(stale)} (run 'hetnic verilog')",
                  file=sys.stderr)
            return 1
        print(f"{out}: up to date")
        return 0
    for path in write_rtl(out):
        print(path)
    return 0
