"""``hetnic daemon``: hetnicd, the one owner of the NIC, serving clients on a Unix socket.

It runs the simulated NIC on a TAP and the stack instances exactly as ``hetnic stack up``
(the same instance options), and serves ``hetnic rules``, ``hetnic rss``, ``hetnic counters``
and ``hetnic events`` over ``--socket PATH`` (default ``$XDG_RUNTIME_DIR/hetnic.sock``; when
XDG_RUNTIME_DIR is unset, ``--socket`` is required) under the ``--policy`` file, and acts on
file events of the policy, ``--rules``, ``--rss-key``, ``--instances`` and the ``--watch``
drop folder. See docs/daemon.md.

This module also holds what the client commands share: :func:`add_socket_option` and
:func:`call`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .stack import add_instance_options

NAME = "daemon"
HELP = "hetnicd: own the NIC, run the stack, serve rules/rss/counters/events clients"
DESCRIPTION = (
    "hetnicd: the simulated NIC on a TAP with the stack instances (as `hetnic stack up`), "
    "serving clients on a Unix socket under a TOML access policy (default deny; every "
    "decision in the audit log), and acting on file events: the policy reloads, the rules "
    "and RSS key files apply with one commit, a capture dropped in the --watch folder is "
    "replayed through the NIC with a report next to it. Stops on SIGTERM or Ctrl-C.")


def _folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return path


def add_socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", type=Path,
                        help="the daemon's Unix socket (default $XDG_RUNTIME_DIR/hetnic.sock;"
                        " required when XDG_RUNTIME_DIR is unset)")


def socket_path(args) -> Path:
    from ..host.daemon import default_socket
    return args.socket if args.socket is not None else default_socket()


def call(args, op: str, params: dict | None = None):
    """Run one request on the daemon of ``args.socket``; the result, or ClientError (the
    CLI prints it as one line, exit 2)."""
    from ..host.daemon_client import DaemonClient
    with DaemonClient(socket_path(args)) as client:
        return client.call(op, params)


def read_text_file(path: Path) -> str:
    """The text of ``path`` (UTF-8); a file that is not text is ClientError (one line)."""
    from ..host.daemon_client import ClientError
    data = path.read_bytes()
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ClientError(f"{path}: not a text file (not UTF-8 at byte {exc.start})") \
            from None


def print_json(value) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def client_actions(parser: argparse.ArgumentParser, show_help: str):
    """The ACTION sub-parsers of a client command, with its ``show`` action (``--socket``
    only) added; returns the sub-parsers for the others."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_socket_option(actions.add_parser("show", help=show_help))
    return actions


def print_applied(head: str, result: dict) -> None:
    """A configuration change the daemon reports done: ``head`` and the diff."""
    print(f"{head}: generation {result['generation']}")
    for line in result["diff"]:
        print(line)


#: RX queues of the spare set a restart's transition instance runs on.
SPARE_RX_QUEUES = 2


def spare_queues(instances) -> tuple[int, tuple]:
    """The RX queue count the daemon opens the NIC with and its spare queue set
    ``(rx_queues, tx_queue)`` for a restart's transition instance: the
    :data:`SPARE_RX_QUEUES` RX queues after the instances' (8 with the stock profiles, so
    10 in all) and the TX queue after theirs (of the NIC's 4)."""
    from ..host.stack.instance import PROFILES
    from ..params import HIL_NIC_CORE
    configs = list(PROFILES.values()) if instances is None else instances
    first = max(q for cfg in configs for q in cfg.rx_queues) + 1
    tx = max(cfg.tx_queue for cfg in configs) + 1
    if tx >= HIL_NIC_CORE.tx_queues:
        return first, None              # no TX queue to spare: no restarts
    return first + SPARE_RX_QUEUES, (tuple(range(first, first + SPARE_RX_QUEUES)), tx)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_instance_options(parser)
    add_socket_option(parser)
    parser.add_argument("--policy", metavar="FILE", type=Path,
                        help="the access policy (TOML); without one, every request is denied")
    parser.add_argument("--watch", metavar="DIR", type=_folder,
                        help="drop folder: a pcap/pcapng closed or moved into it is replayed "
                        "through the NIC, its report written next to it")
    parser.add_argument("--rules", metavar="FILE", type=Path,
                        help="operator rules file (hetnic rule-file TOML/JSON), applied at "
                        "start and whenever it changes")
    parser.add_argument("--rss-key", metavar="FILE", type=Path,
                        help="RSS key file (80 hex digits, or 40 raw bytes: decided by the "
                        "content), applied at start "
                        "and whenever it changes")
    parser.add_argument("--audit", metavar="FILE", type=Path,
                        help="append the audit log (JSON lines) to FILE (default: stdout)")


def run(args: argparse.Namespace) -> int:
    from ..host.daemon import Daemon, InstanceSupervisor
    from ..host.daemon_audit import AuditLog
    from ..host.tap import TapDevice
    from ..replay import read_capture
    from .stack import instances_from
    path = socket_path(args)
    instances = instances_from(args.instances)
    tap = TapDevice(args.tap)

    def say(text: str) -> None:
        print(f"hetnicd: {text}", file=sys.stderr, flush=True)
    try:
        from ..host.nic import Nic
        from ..host.stack_host import StackHost
        from ..host.stack_procs import StackProcs
        plan = args.faults
        rx_queues, spare = 8, None
        if not args.one_process:
            rx_queues, spare = spare_queues(instances)
        say(f"opening the simulated NIC ({rx_queues} RX queues; the first run builds it) ...")
        nic = Nic.open("sim", width=64, rx_queues=rx_queues, shared=not args.one_process)
        try:
            kind = StackHost if args.one_process else StackProcs
            extra = {} if args.one_process else {"spare": spare}

            def factory():
                return kind(
                    nic, tap, addr4=str(args.addr),
                    addr6=str(args.addr6) if args.addr6 else None, instances=instances,
                    serve_dir=args.serve, seed=args.seed,
                    faults_to_nic=plan.injector("in") if plan else None,
                    faults_to_tap=plan.injector("out") if plan else None, **extra)
            supervisor = InstanceSupervisor(factory)
            try:
                audit = AuditLog(args.audit) if args.audit else AuditLog(stream=sys.stdout)
                daemon = Daemon(supervisor, socket_path=path, policy=args.policy, audit=audit,
                                rules=args.rules, rss_key=args.rss_key,
                                instances=Path(args.instances) if args.instances else None,
                                watch=args.watch, read_capture=read_capture, log=say)
                previous = {sig: signal.signal(sig, lambda *_: daemon.stop())
                            for sig in (signal.SIGINT, signal.SIGTERM)}
                say(f"serving on {path} (protocol v1)")
                try:
                    daemon.run()
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
                    daemon.close()
                say("stopped")
                return 0
            finally:
                supervisor.stop()
        finally:
            nic.close()
    finally:
        tap.close()
