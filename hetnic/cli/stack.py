"""``hetnic stack up``: the user-mode TCP/IP stack on the simulated NIC, bridged to a TAP.

The simulated NIC (the default build, :data:`~hetnic.params.HIL_NIC_CORE`) is attached to a
Linux TAP device (:class:`~hetnic.host.tap_bridge.TapBridge`); its RX queues are shared out
among the stack instances (the three stock profiles, or ``--instances FILE``) by classifier
rules and RETA slices (:mod:`hetnic.host.stack_steering`, the ports through the QoS
dispatcher), and the built-in applications run on them: HTTP/1.1 static files for ``--serve
DIR`` on TCP 80, echo on TCP and UDP 7, discard on TCP 9. Each instance runs in a process of
its own on its queues, over the NIC's shared host memory
(:class:`~hetnic.host.stack_procs.StackProcs`; this process runs the NIC and the bridge);
``--one-process`` runs them all in this process instead
(:class:`~hetnic.host.stack_host.StackHost`, for debugging). The kernel side of the TAP is
the peer::

    ip netns add demo
    ip netns exec demo ip tuntap add dev tap0 mode tap
    ip netns exec demo ip addr add 198.18.0.1/24 dev tap0
    ip netns exec demo ip link set tap0 up
    ip netns exec demo hetnic stack up --tap tap0 --addr 198.18.0.2/24 --serve ./www &
    ip netns exec demo curl http://198.18.0.2/index.html
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from pathlib import Path

from .args import float_range, seed

NAME = "stack"
HELP = "run the user-mode TCP/IP stack on the simulated NIC, attached to a TAP device"
DESCRIPTION = (
    "hetnic stack up: the simulated NIC (default build), its driver, the stack instances "
    "(three stock profiles: low-delay, throughput, concurrency) and the built-in applications "
    "(HTTP static files on TCP 80 with --serve, echo on TCP/UDP 7, discard on TCP 9), attached "
    "to a Linux TAP device in this network namespace. Each instance runs in a process of its "
    "own (--one-process: all in one). Prints the port -> instance map and a live table; stops "
    "on Ctrl-C or SIGTERM with a summary.")

#: Seconds between two plain status lines (no terminal, or --no-live).
PLAIN_EVERY = 5.0
#: Refreshes of the live table per second.
LIVE_PER_SECOND = 2


def _address(version: int):
    """The argparse ``type`` of an interface address ``A/N`` of IP ``version``: a unicast
    host address (not an IPv4 network's own or broadcast address) and its prefix length."""
    example = "198.18.0.2/24" if version == 4 else "2001:db8::2/64"

    def parse(text: str):
        if "/" not in text:
            raise argparse.ArgumentTypeError(f"must be ADDRESS/PREFIX (e.g. {example}), "
                                             f"not {text!r}")
        try:
            value = ipaddress.ip_interface(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not an address/prefix: {exc}") \
                from None
        if value.version != version:
            raise argparse.ArgumentTypeError(f"must be an IPv{version} address/prefix (e.g. "
                                             f"{example}), not {text!r}")
        net = value.network
        if value.ip.is_multicast or value.ip.is_unspecified or (
                version == 4 and net.prefixlen < 31
                and value.ip in (net.network_address, net.broadcast_address)):
            raise argparse.ArgumentTypeError(f"{text!r} is not a unicast host address of "
                                             f"{net}")
        return value
    parse.__name__ = f"IPv{version} address/prefix"
    return parse


def _folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder" if path.exists()
                                         else f"{text!r} does not exist")
    return path


def _tunnel(text: str):
    from ..host.stack.tunnel import TunnelError, parse_tunnel
    try:
        return parse_tunnel(text)
    except TunnelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _faults(text: str):
    from ..host.faults import FaultSpecError, parse_faults
    try:
        return parse_faults(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="bring the stack up on a TAP device and run it",
                            description=DESCRIPTION)
    add_instance_options(up)
    up.add_argument("--duration", type=float_range(0), metavar="S",
                    help="stop after S seconds (default: run until Ctrl-C or SIGTERM)")
    up.add_argument("--no-live", action="store_true",
                    help="print a plain status line every few seconds instead of the live "
                    "table (also when stdout is not a terminal)")
    up.add_argument("--tunnel", action="append", type=_tunnel, default=[],
                    metavar="KIND,vni=N,remote=ADDR,addr=INNER/LEN",
                    help="a tunnel of the virtual adapter (repeatable): KIND vxlan (RFC 7348) "
                    "or vxlan-gpe; remote IPv4 or IPv6 (the outer header's version); "
                    "optional domain=NAME shares a routing domain (default: one per tunnel). "
                    "The adapter runs as one more instance, 'tunnel'; see docs/tunnels.md")
    up.add_argument("--tunnel-user", default=None, metavar="USER",
                    help="the user the tunnel adapter's process drops to after mapping its "
                    "queues (default as root: nobody; not root: no drop, and only the "
                    "current user; never root; not with --one-process)")


def add_instance_options(up: argparse.ArgumentParser) -> None:
    """The options that say what runs on the NIC: the TAP, the addresses, the instances, the
    served folder, faults, the seed and the process mode. ``hetnic stack up`` takes them, and
    any other command that runs the stack on a TAP takes the same."""
    up.add_argument("--tap", required=True, metavar="IFACE",
                    help="TAP interface in this network namespace (ip tuntap add dev IFACE "
                    "mode tap)")
    up.add_argument("--addr", required=True, type=_address(4), metavar="A/N",
                    help="the stack's IPv4 address and prefix, e.g. 198.18.0.2/24 (any valid "
                    "address; the tests and examples use 198.18.0.0/15)")
    up.add_argument("--addr6", type=_address(6), metavar="A/N",
                    help="the stack's IPv6 address and prefix, e.g. 2001:db8::2/64 (a "
                    "link-local address from the MAC is always added)")
    up.add_argument("--instances", metavar="FILE",
                    help="stack instances, a TOML file of [[instance]] tables (default: the "
                    "three stock profiles low-delay, throughput, concurrency)")
    up.add_argument("--serve", type=_folder, metavar="DIR",
                    help="serve the files under DIR over HTTP/1.1 on TCP port 80")
    up.add_argument("--faults", type=_faults, metavar="SPEC",
                    help="inject faults between the TAP and the NIC, e.g. "
                    "'loss=2%%,reorder=2%%,dup=1%%,seed=7' or 'in:loss=1%%;out:corrupt=0.1%%'")
    up.add_argument("--seed", type=seed, default=0,
                    help="seed of the stacks' initial sequence numbers and keys (default 0)")
    up.add_argument("--one-process", action="store_true",
                    help="run every stack instance in this process (the NIC's process) "
                    "instead of one process per instance; for debugging")


def instances_from(path: str | None, tunnels=()):
    """The instances of ``--instances`` (or the stock profiles), checked against the NIC
    ``hetnic stack up`` opens before it is opened (with the tunnel adapter's instance and
    rules when there are ``tunnels``)."""
    from ..host.stack.instance import PROFILES, load_instances
    from ..host.stack.tunnel import TunnelAdapter
    from ..host.tunnel_host import plan_tunnel_steering, tunnel_instance
    from ..params import HIL_NIC_CORE
    instances = load_instances(path) if path else list(PROFILES.values())
    checked = instances
    if tunnels:
        checked, cfg = tunnel_instance(instances, rx_queues=HIL_NIC_CORE.rx_queues,
                                       tx_queues=HIL_NIC_CORE.tx_queues)
        checked = checked + [cfg]
        from ..host.stack.stack import Stack
        TunnelAdapter(Stack(cfg, mac=b"\x02\0\0\0\0\1", ipv4=[("198.18.0.2", 24)]),
                      tunnels)           # duplicate tunnels, overlapping prefixes: now
    plan_tunnel_steering(checked, HIL_NIC_CORE, tunnels, rx_queues=HIL_NIC_CORE.rx_queues,
                         tx_queues=HIL_NIC_CORE.tx_queues)
    return instances


def run(args: argparse.Namespace) -> int:
    """Bring the stack up, run until the duration ends or a signal arrives, print the
    summary; 0 after a clean stop."""
    from ..host.tap import TapDevice
    tunnels = getattr(args, "tunnel", None) or []
    if getattr(args, "tunnel_user", None) is not None and args.one_process:
        from ..errors import HetnicError
        raise HetnicError("--tunnel-user needs the adapter in a process of its own (not "
                          "with --one-process)")
    instances = instances_from(args.instances, tunnels)
    tunnel_user = None
    if tunnels and not args.one_process:
        from ..host.tunnel_privs import tunnel_user_for
        tunnel_user = tunnel_user_for(getattr(args, "tunnel_user", None))
    tap = TapDevice(args.tap)                   # a missing TAP fails before the NIC starts
    try:
        from ..host.nic import Nic
        from ..host.stack_host import StackHost
        from ..host.stack_procs import StackProcs
        plan = args.faults
        print("opening the simulated NIC (the default build; the first run builds it) ...",
              file=sys.stderr, flush=True)
        nic = Nic.open("sim", width=64, rx_queues=8, shared=not args.one_process)
        try:
            kind = StackHost if args.one_process else StackProcs
            extra = {}
            if tunnels:
                extra["tunnels"] = tunnels
                if tunnel_user is not None:
                    extra["tunnel_user"] = tunnel_user
            host = kind(
                nic, tap, addr4=str(args.addr), addr6=str(args.addr6) if args.addr6 else None,
                instances=instances, serve_dir=args.serve, seed=args.seed,
                faults_to_nic=plan.injector("in") if plan else None,
                faults_to_tap=plan.injector("out") if plan else None, **extra)
            if getattr(host, "tunnel_note", None):
                print(host.tunnel_note, file=sys.stderr, flush=True)
            try:
                return _serve(host, args)
            finally:
                host.close()
        finally:
            nic.close()
    finally:
        tap.close()


def _summary(host) -> dict:
    """The host's summary with every instance's ``pid`` and ``mode`` (the one-process host
    runs them all in this process)."""
    summary = host.summary()
    for inst in summary["instances"].values():
        inst.setdefault("pid", os.getpid())
        inst.setdefault("mode", "one-process")
    return summary


def _on_report(host, callback) -> None:
    """Call ``callback`` with each discard connection's report, whichever host runs it."""
    if hasattr(host, "on_report"):
        host.on_report(callback)
        return
    discard = host.app("discard")
    if discard is not None:
        discard.on_report = callback


def _serve(host, args) -> int:
    from .stack_view import port_map_table, report_line, status_line, status_table, \
        summary_text
    reports: list[dict] = []
    _on_report(host, reports.append)
    # Ctrl-C stops the host from before the port map is out: the map is what a user (or a
    # script) waits for before sending the signal
    previous = {sig: signal.signal(sig, lambda *_: host.stop())
                for sig in (signal.SIGINT, signal.SIGTERM)}

    def lines(say):
        while reports:
            say(report_line(reports.pop(0)))
    try:
        print(port_map_table(host.port_map(), tap=args.tap, addr4=str(args.addr),
                             addr6=str(args.addr6) if args.addr6 else None), flush=True)
        start = time.monotonic()
        end = None if args.duration is None else start + args.duration
        if not args.no_live and sys.stdout.isatty():
            from rich.live import Live
            with Live(status_table(_summary(host)), refresh_per_second=LIVE_PER_SECOND) as view:
                def show(due: bool) -> None:
                    lines(lambda text: view.console.print(text, highlight=False))
                    if due:
                        view.update(status_table(_summary(host)))
                _loop(host, end, 1.0 / LIVE_PER_SECOND, show)
        else:
            def show(due: bool) -> None:
                lines(lambda text: print(text, flush=True))
                if due:
                    print(status_line(_summary(host), time.monotonic() - start), flush=True)
            _loop(host, end, PLAIN_EVERY, show)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary_text(_summary(host), time.monotonic() - start), flush=True)
    return 0


def _loop(host, end: float | None, every: float, show) -> None:
    """Run ``host`` until it is stopped or ``end`` (monotonic) passes; every half second
    call ``show(due)``, ``due`` true once ``every`` seconds passed since the last time."""
    shown = time.monotonic()
    while not host.stopped:
        now = time.monotonic()
        if end is not None and now >= end:
            break
        host.run(timeout=0.5 if end is None else min(0.5, end - now))
        due = time.monotonic() - shown >= every
        if due:
            shown = time.monotonic()
        show(due)
