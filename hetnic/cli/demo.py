"""``hetnic demo``: a traffic mix through the simulated NIC with software polling its queues."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import frame_count, seed, waveform_file

NAME = "demo"
HELP = ("replay a traffic mix through the simulated NIC with software polling its RX queues; "
        "tables, report and figure")
DESCRIPTION = (
    "Generate a traffic mix with scapy (or read --pcap) and replay it through the simulated "
    "NIC core (64-bit, 8 RX queues) while each stack instance's software polls its queues: "
    "low-delay (DNS) on queues 0-1, throughput (web) on 2-5, the direct channel on 6, general "
    "on 7; UDP port 5000 is dropped. Prints per-queue, per-rule, per-instance (latency), drop "
    "and hash-type tables beside the NIC's own counters, and checks every delivered frame "
    "against the software model. Writes report.json, records.jsonl (one line per frame) and "
    "figure.png to --out. Exit status 0 when there are no model mismatches and the counters "
    "agree, 1 otherwise, 2 for bad input.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=frame_count, default=20_000,
                        help="frames to generate (default 20000; scapy takes about 0.5 ms "
                        "each)")
    parser.add_argument("--seed", type=seed, default=1, help="traffic seed (default 1)")
    parser.add_argument("--pcap", help="replay this capture (pcap or pcapng) instead of "
                        "generated traffic")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--trace", type=waveform_file, metavar="FILE",
                        help="write a waveform of the whole replay to FILE (.vcd or .fst); "
                        "the first use compiles a tracing simulator (about a minute), and a "
                        "VCD grows by about 0.3 MB a frame: use a few dozen --frames")


def run(args: argparse.Namespace) -> int:
    """:func:`hetnic.demo.run_demo` with the options; its exit status."""
    from ..demo import run_demo
    return run_demo(frames=args.frames, out=Path(args.out), seed=args.seed,
                    pcap=args.pcap, trace=args.trace)
