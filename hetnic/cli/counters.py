"""``hetnic counters``: the NIC's, the TAP bridge's and the daemon's counters."""

from __future__ import annotations

import argparse

from .daemon import add_socket_option, call, print_json

NAME = "counters"
HELP = "the counters of the running daemon's NIC, TAP bridge and sessions (hetnic daemon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_option(parser)
    parser.add_argument("--all", action="store_true", help="also the counters that are 0")


def run(args: argparse.Namespace) -> int:
    result = call(args, "counters.read")
    if not args.all:
        result["nic"] = {k: v for k, v in result["nic"].items() if v}
    print_json(result)
    return 0
