"""``hetnic rss``: show or set the RSS key and indirection table of a running hetnicd."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import rss_key
from .daemon import (add_socket_option, call, client_actions, print_applied, print_json,
                     read_text_file)

NAME = "rss"
HELP = "show or set the RSS key and RETA of the running daemon (hetnic daemon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = client_actions(parser, "the key and the RETA")
    key = actions.add_parser("set-key", help="set the Toeplitz key (one commit)")
    key.add_argument("key", type=rss_key, metavar="HEX", help="40 bytes in hex")
    add_socket_option(key)
    reta = actions.add_parser("set-reta", help="set the RETA from a JSON list of queues "
                              "(each entry stays within its instance's queues)")
    reta.add_argument("file", type=Path, metavar="FILE")
    add_socket_option(reta)


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        print_json(call(args, "rss.read"))
        return 0
    if args.action == "set-key":
        params = {"key": args.key.hex()}
    else:
        try:
            params = {"reta": json.loads(read_text_file(args.file))}
        except json.JSONDecodeError as exc:
            from ..host.daemon_client import ClientError
            raise ClientError(f"{args.file}: not a JSON list: {exc}") from None
    print_applied("applied", call(args, "rss.configure", params))
    return 0
