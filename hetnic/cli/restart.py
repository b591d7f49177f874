"""``hetnic restart``: restart one stack instance of a running hetnicd without losing a
packet (a transition instance on the spare queues takes the new connections, the flow table
keeps the established ones where they are; see docs/daemon.md#restarting-an-instance).

Prints one line per step as the daemon reports it (``--json``: the step records as JSON
lines) and exits 0 only when the daemon reports the restart done."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import float_range
from .daemon import add_socket_option, read_text_file, socket_path

NAME = "restart"
HELP = "restart a stack instance of the running daemon without losing a packet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..host.daemon_restart import DRAIN_TIMEOUT, MAX_DRAIN_TIMEOUT
    parser.add_argument("instance", metavar="INSTANCE", help="the instance to restart")
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="an instances file (TOML) with the instance's new configuration "
                        "(default: the same configuration)")
    parser.add_argument("--drain-timeout", metavar="S",
                        type=float_range(0.0, MAX_DRAIN_TIMEOUT), default=DRAIN_TIMEOUT,
                        help="seconds the old instances get for their connections to end "
                        f"(default {DRAIN_TIMEOUT:g}); the rest are cut and counted")
    parser.add_argument("--json", action="store_true", help="one JSON line per step")
    add_socket_option(parser)


def step_line(event: dict) -> str:
    """One restart step as a line of text."""
    skip = {"seq", "time", "kind", "item", "path", "instruction", "result", "counters",
            "seconds"}
    fields = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}"
                      for k, v in event.items() if k not in skip)
    step, result = event["instruction"], event["result"]
    what = step if step == result else f"{step} {result}"        # not "done done"
    return (f"{event['path']}: {what} ({event.get('seconds', 0):.3f} s)"
            + (f" {fields}" if fields else ""))


def run(args: argparse.Namespace) -> int:
    from ..host.daemon_client import ClientError, DaemonClient
    params: dict = {"instance": args.instance, "drain_timeout": args.drain_timeout}
    if args.config is not None:
        params["config"] = read_text_file(args.config)
    with DaemonClient(socket_path(args), timeout=None) as client:
        id = client.send("instances.configure", params)
        while True:
            message = client.receive()
            if "event" in message:
                event = message["event"]
                print(json.dumps(event, sort_keys=True) if args.json else step_line(event),
                      flush=True)
                continue
            if message.get("id") != id:
                raise ClientError(f"reply to request {message.get('id')}, expected {id}")
            if not message.get("ok"):
                raise ClientError(message.get("error", "the daemon failed the restart"),
                                  message.get("code"))
            result = message["result"]
            if args.json:
                print(json.dumps({"result": result}, sort_keys=True))
            else:
                print(f"{args.instance}: restarted in {result['seconds']:.3f} s (new "
                      f"configuration serving after {result['serving_seconds']:.3f} s "
                      f"without the drain; drains {result['drain_seconds']} s)")
            return 0
