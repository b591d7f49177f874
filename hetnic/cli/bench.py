"""``hetnic bench``: the benchmarks of :mod:`hetnic.bench`, printed as one JSON object."""

from __future__ import annotations

import argparse
import json

from .args import frame_count, int_range

NAME = "bench"
HELP = "benchmarks; print one JSON object"

#: Default ``--frames`` per benchmark (flows for ``rss``).
DEFAULT_FRAMES = {"rx": 10_000, "core": 2000, "hil": 20_000, "rss": 10_000, "stack": 4000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=tuple(DEFAULT_FRAMES),
                        help="rx: RX pipeline and software Toeplitz; core: the NIC core with "
                        "DMA; hil: the compiled harness and driver against the bare model and "
                        "cocotb; rss: key scoring speed and the RSS policies on synthetic "
                        "web-search; stack: the user-mode TCP/IP stack, alone and against "
                        "the kernel over a TAP")
    parser.add_argument("--frames", type=frame_count, default=None,
                        help="64-byte frames (default 10000 for rx, 2000 for core, 20000 for "
                        "hil); for rss, flows (default 10000); for stack, 1500-byte frames "
                        "through the harness (default 4000)")
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


def run(args: argparse.Namespace) -> int:
    """Run benchmark ``what`` and print its result dict as JSON."""
    from ..bench import bench_core, bench_hil, bench_rss, bench_rx
    frames = args.frames or DEFAULT_FRAMES[args.what]
    if args.what == "rss":
        result = bench_rss(flows=frames)
    elif args.what == "stack":
        from ..bench_stack import bench_stack
        result = bench_stack(size=args.mib << 20, goodput_size=args.goodput_mib << 20,
                             rr_count=args.rr, veth_size=args.veth_mib << 20,
                             hil_frames=frames, kernel=not args.no_kernel)
    else:
        result = {"rx": bench_rx, "core": bench_core, "hil": bench_hil}[args.what](frames=frames)
    print(json.dumps(result, indent=2))
    return 0
