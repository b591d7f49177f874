"""``hetnic bench``: the benchmarks of :mod:`hetnic.bench`, printed as one JSON object."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import frame_count, int_range

NAME = "bench"
HELP = "benchmarks; print one JSON object"

#: Default ``--frames`` per benchmark (flows for ``rss``).
DEFAULT_FRAMES = {"rx": 10_000, "core": 2000, "hil": 20_000, "rss": 10_000, "stack": 4000,
                  "cluster": 120_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=tuple(DEFAULT_FRAMES) + ("host", "tunnel", "ncp",
                                                                 "restart"),
                        help="rx: RX pipeline and software Toeplitz; core: the NIC core with "
                        "DMA; hil: the compiled harness and driver against the bare model and "
                        "cocotb; rss: key scoring speed and the RSS policies on synthetic "
                        "web-search; stack: the user-mode TCP/IP stack, alone and against "
                        "the kernel over a TAP; host: the host's processes side by side "
                        "(RPS by system-call bypass, the QoS dispatcher, W/N threads); tunnel: TCP "
                        "goodput through the tunnel adapter's three tunnels beside plain TCP on "
                        "the same path (uses --goodput-mib per flow); ncp: the NCP direct "
                        "channel's goodput and latency beside the stack's UDP on the simulated "
                        "NIC <-> TAP <-> kernel path, under 5 %% loss, and a peer restart "
                        "(uses --goodput-mib and --rr); restart: hetnicd's instance restarts "
                        "under 50 kernel streams and 200 new connections a second (uses "
                        "--restarts, --streams, --rate)")
    parser.add_argument("--frames", type=frame_count, default=None,
                        help="64-byte frames (default 10000 for rx, 2000 for core, 20000 for "
                        "hil); for rss, flows (default 10000); for stack, 1500-byte frames "
                        "through the harness (default 4000); for cluster, frames of the real "
                        "captures (default 120000: fixed costs a few percent)")
    parser.add_argument("--mib", type=int_range(1, 4096), default=64,
                        help="stack: MiB moved between two stacks wired directly (default 64)")
    parser.add_argument("--goodput-mib", type=int_range(1, 1024), default=8,
                        help="stack: MiB each way between the kernel and the stack over the "
                        "TAP (default 8)")
    parser.add_argument("--veth-mib", type=int_range(1, 4096), default=64,
                        help="stack: MiB kernel to kernel over veth (default 64)")
    parser.add_argument("--rr", type=int_range(1, 100_000), default=200,
                        help="stack: 64-byte request/response rounds per instance "
                        "(default 200)")
    parser.add_argument("--no-kernel", action="store_true",
                        help="stack: skip the figures that need the kernel in a namespace")
    parser.add_argument("--workers", type=int_range(1, 256), default=2,
                        help="cluster: worker processes of the local cluster (default 2)")
    parser.add_argument("--captures", type=Path, default=None,
                        help="cluster: folder of real pcap/pcapng captures (default "
                        "../shared/data/pcap beside the checkout)")
    parser.add_argument("--restarts", type=int_range(1, 1000), default=20,
                        help="restart: restarts in a row (default 20)")
    parser.add_argument("--streams", type=int_range(0, 10_000), default=50,
                        help="restart: echo streams kept open (default 50)")
    parser.add_argument("--rate", type=int_range(0, 100_000), default=200,
                        help="restart: new connections a second (default 200)")
    parser.add_argument("--only", type=_parts, default=None,
                        help="host: comma-separated parts to run, of rps,dispatch,wn "
                        "(default all)")
    parser.add_argument("--scale", type=_scale, default=1.0,
                        help="host: multiply the sizes of rps (2,000,000 packets) and "
                        "dispatch (1000 request/response rounds, an 8 MiB file, 500 "
                        "connections) by this (default 1)")
    parser.add_argument("--dispatch-rounds", type=int_range(1, 1_000_000), default=None,
                        help="host: request/response rounds under load, at least (overrides "
                        "--scale)")
    parser.add_argument("--dispatch-mib", type=int_range(1, 4096), default=None,
                        help="host: MiB of the file the bulk load GETs (overrides --scale)")
    parser.add_argument("--dispatch-connections", type=int_range(1, 1_000_000), default=None,
                        help="host: short connections, at least (overrides --scale)")


def _parts(text: str) -> tuple[str, ...]:
    from ..bench_host import PARTS
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"parts are {','.join(PARTS)}, not {text!r}")
    return parts


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"need a number in (0, 1000], not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run benchmark ``what`` and print its result dict as JSON."""
    from ..bench import bench_core, bench_hil, bench_rss, bench_rx
    if args.what == "host":
        from ..bench_host import PARTS, bench_host
        dispatch = {key: value for key, value in (
            ("rounds", args.dispatch_rounds),
            ("bulk_size", None if args.dispatch_mib is None else args.dispatch_mib << 20),
            ("connections", args.dispatch_connections)) if value is not None}
        print(json.dumps(bench_host(args.only or PARTS, scale=args.scale, dispatch=dispatch),
                         indent=2))
        return 0
    if args.what == "tunnel":
        from ..bench_tunnel import bench_tunnel
        print(json.dumps(bench_tunnel(size=args.goodput_mib << 20), indent=2))
        return 0
    if args.what == "restart":
        from ..bench_restart import bench_restart
        print(json.dumps(bench_restart(restarts=args.restarts, streams=args.streams,
                                       rate=float(args.rate)), indent=2))
        return 0
    if args.what == "ncp":
        from ..bench_ncp import bench_ncp
        print(json.dumps(bench_ncp(size=args.goodput_mib << 20, rr_count=args.rr), indent=2))
        return 0
    frames = args.frames or DEFAULT_FRAMES[args.what]
    if args.what == "rss":
        result = bench_rss(flows=frames)
    elif args.what == "cluster":
        from ..bench_cluster import bench_cluster
        from ..bench_cluster import DEFAULT_CAPTURES
        result = bench_cluster(frames=frames, workers=args.workers,
                               captures=args.captures or DEFAULT_CAPTURES)
    elif args.what == "stack":
        from ..bench_stack import bench_stack
        result = bench_stack(size=args.mib << 20, goodput_size=args.goodput_mib << 20,
                             rr_count=args.rr, veth_size=args.veth_mib << 20,
                             hil_frames=frames, kernel=not args.no_kernel)
    else:
        result = {"rx": bench_rx, "core": bench_core, "hil": bench_hil}[args.what](frames=frames)
    print(json.dumps(result, indent=2))
    return 0
