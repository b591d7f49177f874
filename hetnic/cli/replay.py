"""``hetnic replay``: steer the frames of a capture through the simulated NIC core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cluster import add_cluster_option
from .args import CliError, data_width, queue_count, rss_key, waveform_file

NAME = "replay"
HELP = ("steer the frames of a pcap/pcapng file through the simulated NIC core into host "
        "memory; one JSON line per frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pcap", help="capture file (pcap or pcapng)")
    parser.add_argument("--out", required=True, help="output JSON Lines file")
    parser.add_argument("--key", type=rss_key,
                        help="40-byte RSS key in hex (default: the Microsoft key)")
    parser.add_argument("--symmetric", action="store_true",
                        help="symmetric hashing: sort addresses and ports before hashing")
    parser.add_argument("--queues", type=queue_count, default=16,
                        help="RX queues; the RETA maps entry i to queue i mod N (default 16)")
    parser.add_argument("--rules", help="classifier rules, TOML or JSON (format: docs/commands.md)")
    parser.add_argument("--width", type=data_width, default=64,
                        help="datapath width in bits: 8, 16, 32, 64 or 128 (default 64; other "
                        "widths are built on first use)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the frame-by-frame comparison with the software model")
    parser.add_argument("--trace", type=waveform_file, metavar="FILE",
                        help="write a waveform of the replay to FILE (.vcd)")
    add_cluster_option(parser, "split the capture by flow and replay the shards")


def _simulated_build(width: int):
    """The build parameters (:class:`~hetnic.params.NicParams`) of the NIC core the replay
    simulates at ``width`` bits: its rule table and RETA size bound ``--rules``."""
    from ..params import HIL_NIC_CORE
    return HIL_NIC_CORE.replace(data_width=width)


def rx_config(args: argparse.Namespace):
    """The :class:`~hetnic.config.RxConfig` of ``--queues``, ``--key``, ``--symmetric``
    and ``--rules`` (the rules checked against the simulated build's rule table and RETA)."""
    from ..config import RxConfig
    from ..rule_file import load_rules
    config = RxConfig(queues=args.queues, symmetric=args.symmetric)
    if args.key is not None:
        config.key = args.key
    if args.rules:
        build = _simulated_build(args.width)
        rules = load_rules(args.rules, max_rules=build.n_rules, reta_entries=build.reta_size)
        config.rules, config.default = rules.rules, rules.default
    return config


def run(args: argparse.Namespace) -> int:
    """Replay, write one JSON line per frame to ``--out`` and, unless ``--no-check``, compare
    with the software model: 1 if any frame differs."""
    from ..replay import read_capture, replay_frames, write_jsonl
    cluster = getattr(args, "cluster", None)
    if cluster is not None and args.trace:
        raise CliError("--trace writes one simulation's waveform: not with --cluster")
    frames = read_capture(args.pcap)
    config = rx_config(args)
    try:                    # fail before a long simulation, not after it
        Path(args.out).open("w").close()
    except OSError as exc:
        raise CliError(f"--out {args.out}: {exc.strerror}") from None
    print(f"replaying {len(frames)} frames from {args.pcap} at {args.width} bits "
          f"on Verilator{f' on cluster {cluster}' if cluster else ''} ...", file=sys.stderr)
    if cluster is not None:
        from ..cluster import open_cluster, replay_on_cluster
        with open_cluster(cluster) as client:
            result = replay_on_cluster(client, args.pcap, config, data_width=args.width,
                                       check=not args.no_check)
    else:
        result = replay_frames(frames, config, data_width=args.width,
                               check=not args.no_check, trace=args.trace)
    write_jsonl(Path(args.out), result, n_rules=_simulated_build(args.width).n_rules)
    dropped = sum(1 for r in result.records if r["drop"])
    print(f"wrote {len(result.records)} lines to {args.out}: "
          f"{len(result.records) - dropped} delivered, {dropped} dropped", file=sys.stderr)
    if not args.no_check:
        print(f"model check: {len(result.mismatches)} mismatches", file=sys.stderr)
        for index, diff in result.mismatches[:5]:
            print(f"  frame {index}: {diff}", file=sys.stderr)
        if result.mismatches:
            return 1
    return 0
