"""``hetnic bench``: the benchmarks of :mod:`hetnic.bench`, printed as one JSON object."""

from __future__ import annotations

import argparse
import json

from .args import frame_count

NAME = "bench"
HELP = "benchmarks; print one JSON object"

#: Default ``--frames`` per benchmark (flows for ``rss``).
DEFAULT_FRAMES = {"rx": 10_000, "core": 2000, "hil": 20_000, "rss": 10_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=tuple(DEFAULT_FRAMES),
                        help="rx: RX pipeline and software Toeplitz; core: the NIC core with "
                        "DMA; hil: the compiled harness and driver against the bare model and "
                        "cocotb; rss: key scoring speed and the RSS policies on synthetic "
                        "web-search")
    parser.add_argument("--frames", type=frame_count, default=None,
                        help="64-byte frames (default 10000 for rx, 2000 for core, 20000 for "
                        "hil); for rss, flows (default 10000)")


def run(args: argparse.Namespace) -> int:
    """Run benchmark ``what`` and print its result dict as JSON."""
    from ..bench import bench_core, bench_hil, bench_rss, bench_rx
    frames = args.frames or DEFAULT_FRAMES[args.what]
    if args.what == "rss":
        result = bench_rss(flows=frames)
    else:
        result = {"rx": bench_rx, "core": bench_core, "hil": bench_hil}[args.what](frames=frames)
    print(json.dumps(result, indent=2))
    return 0
