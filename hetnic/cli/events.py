"""``hetnic events``: the file-event window of a running hetnicd.

Each file event the daemon acted on: the item and its path, the instruction it chose
(reload, apply-rules, apply-key, validate-instances, replay), the result, the counters that
changed (before -> after) and the diff of the configuration; and each step of an instance
restart (item ``restart``, the instance, the step, its restart counters before -> after). ``--follow`` keeps the window
open and shows each new event as it happens (a rich panel on a terminal, one JSON line
otherwise)."""

from __future__ import annotations

import argparse
import json
import sys

from .daemon import add_socket_option, call, socket_path

NAME = "events"
HELP = "the file events of the running daemon, their instructions and results (--follow: live)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_option(parser)
    parser.add_argument("--follow", action="store_true",
                        help="keep showing new events until Ctrl-C")
    parser.add_argument("--json", action="store_true",
                        help="one JSON line per event (the default when stdout is not a "
                        "terminal)")


def panel(event: dict):
    """One event as a rich panel."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    head = Text(f"{event.get('instruction', '-')} -> {event['result']}",
                style="green" if event["result"] == "done" else "red")
    parts = [head]
    if event.get("error"):
        parts.append(Text(event["error"], style="red"))
    counters = event.get("counters") or {}
    if counters:
        table = Table("counter", "before", "after", box=None)
        for name, (before, after) in counters.items():
            table.add_row(name, str(before), str(after))
        parts.append(table)
    for line in event.get("diff") or []:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        parts.append(Text(line, style=style))
    return Panel(Group(*parts), title=f"#{event.get('seq')} {event['item']} {event['path']}",
                 subtitle=event.get("time", ""))


def run(args: argparse.Namespace) -> int:
    plain = args.json or not sys.stdout.isatty()

    def show(event: dict) -> None:
        if plain:
            print(json.dumps(event, sort_keys=True), flush=True)
        else:
            from rich.console import Console
            Console().print(panel(event))
    if not args.follow:
        for event in call(args, "events.read")["recent"]:
            show(event)
        return 0
    from ..host.daemon_client import DaemonClient
    with DaemonClient(socket_path(args)) as client:
        for event in client.events():
            show(event)
    return 0
