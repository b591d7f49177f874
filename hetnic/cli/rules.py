"""``hetnic rules``: show or apply the operator rules of a running hetnicd."""

from __future__ import annotations

import argparse
from pathlib import Path

from .daemon import (add_socket_option, call, client_actions, print_applied, print_json,
                     read_text_file)

NAME = "rules"
HELP = "show or apply the classifier rules of the running daemon (hetnic daemon)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = client_actions(parser, "the operator rules and the whole rule table")
    apply = actions.add_parser("apply", help="apply a rule file (TOML or JSON) with one "
                               "commit, or refuse it and keep the old rules")
    apply.add_argument("file", type=Path, metavar="FILE")
    add_socket_option(apply)


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        print_json(call(args, "rules.read"))
        return 0
    text = read_text_file(args.file)
    fmt = "json" if args.file.suffix == ".json" or (
        args.file.suffix != ".toml" and text.lstrip().startswith("{")) else "toml"
    result = call(args, "rules.configure", {"text": text, "format": fmt})
    print_applied(f"applied {result['rules']} rules", result)
    return 0
