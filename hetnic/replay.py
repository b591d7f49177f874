"""``hetnic replay``: how would this traffic be steered? Frames of a capture file through the
RX pipeline's Verilog, one JSON line per frame, checked against the software model."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from .host.config import RxConfig
from .protocol import DropReason, HashType, ParseError

__all__ = ["ReplayError", "read_capture", "ReplayResult", "replay_frames", "record_line"]


DLT_EN10MB = 1     # pcap link type of Ethernet
#: First four bytes of pcap (both byte orders, micro- and nanosecond) and pcapng files.
CAPTURE_MAGICS = {bytes.fromhex(m) for m in ("d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d",
                                             "0a0d0d0a")}


class ReplayError(Exception):
    """A user-facing problem with the input; the message is one line."""


def read_capture(path: str | Path) -> list[bytes]:
    """Every frame of a pcap or pcapng file, in file order, exactly as captured (Ethernet
    link type; frames from the destination MAC on)."""
    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    if path.is_dir():
        raise ReplayError(f"{path}: is a folder, not a pcap or pcapng file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if not magic:
            raise ReplayError(f"{path}: empty file, not a pcap or pcapng file")
        if magic not in CAPTURE_MAGICS:
            raise ReplayError(f"{path}: not a pcap or pcapng file (starts with "
                              f"{magic.hex()})")
        fh.seek(0)
        return _read_frames(path, fh)


def _read_frames(path, fh) -> list[bytes]:
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader
    frames = []
    try:
        with RawPcapReader(fh) as reader:
            linktype = getattr(reader, "linktype", DLT_EN10MB)
            if linktype != DLT_EN10MB:
                raise ReplayError(f"{path}: link type {linktype} is not Ethernet (1); "
                                  "hetnic replays Ethernet captures")
            for index, (data, meta) in enumerate(reader):
                # pcapng names the link type per interface, so per record.
                linktype = getattr(meta, "linktype", DLT_EN10MB)
                if linktype != DLT_EN10MB:
                    raise ReplayError(f"{path}: record {index} has link type {linktype}, not "
                                      "Ethernet (1); hetnic replays Ethernet captures")
                caplen = getattr(meta, "caplen", None)
                if caplen is not None and len(data) < caplen:
                    raise ReplayError(f"{path}: record {index} is cut short ({len(data)} of "
                                      f"{caplen} bytes): the file is truncated")
                frames.append(bytes(data))
    except Scapy_Exception as exc:
        raise ReplayError(f"{path}: not a pcap or pcapng file ({exc})") from None
    except (EOFError, OSError, ValueError, TypeError, struct.error) as exc:
        raise ReplayError(f"{path}: cannot read capture: {exc}") from None
    return frames


@dataclass
class ReplayResult:
    records: list[dict]         # one per input frame: decoded PacketMeta, plus "sent"
    mismatches: list[tuple[int, dict]]   # (frame index, {field: (model, gateware)})
    counters: dict[str, int]
    stats: dict


def replay_frames(frames: list[bytes] | list[tuple[bytes, bool]], config: RxConfig, *,
                  data_width: int = 64, check: bool = True, counters: bool = True,
                  **run_args) -> ReplayResult:
    """Run frames through the simulated pipeline (Verilator) and, with ``check``, compare
    every record with :class:`~hetnic.sim.model.rx_pipeline.RxModel`.

    Frames of zero bytes cannot be sent on AXI4-Stream: they are not sent and are reported
    as dropped runts (``sent`` is false)."""
    from .sim.model.rx_pipeline import RxModel, mismatches
    from .sim.rx_sim import RxBuild, run_rx_job

    items = [f if isinstance(f, tuple) else (f, False) for f in frames]
    build = RxBuild(data_width=data_width)
    regmap = build.regmap()
    try:
        writes = config.register_writes(regmap)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    sendable = [(i, f, e) for i, (f, e) in enumerate(items) if len(f) > 0]
    read = {}
    if counters:
        read = {name: regmap.addr(name) for name in
                ("FRAMES_IN", "BYTES_IN", "FRAMES_DELIVERED", "FRAMES_DROPPED")}
        for q in range(config.queues):
            read[f"QUEUE_PACKETS[{q}]"] = regmap.addr("QUEUE_PACKETS", q)
        for r in range(regmap.params["n_rules"] + 1):
            read[f"RULE_HITS[{r}]"] = regmap.addr("RULE_HITS", r)
        for d in DropReason:
            read[f"DROP_COUNT[{d.label}]"] = regmap.addr("DROP_COUNT", d)
    result = run_rx_job(build, [(f, e) for _, f, e in sendable], writes,
                        read_counters=read, **run_args)
    records: list[dict] = [None] * len(items)
    for (index, _, _), rec in zip(sendable, result.records):
        records[index] = {**rec, "sent": True}
    model = RxModel(regmap, config, generation=1) if check else None
    bad = []
    for index, (frame, err) in enumerate(items):
        if records[index] is None:
            records[index] = {"length": 0, "error": int(ParseError.RUNT),
                              "drop": int(DropReason.RUNT), "hash": 0,
                              "hash_type": int(HashType.NONE), "queue": 0, "instance": 0,
                              "rule": None, "generation": 1, "flags": 0, "sent": False}
            continue
        if model is not None:
            diff = mismatches(model.process(frame, err), records[index])
            if diff:
                bad.append((index, diff))
    return ReplayResult(records, bad, result.counters, result.stats)


def record_line(index: int, rec: dict, n_rules: int) -> dict:
    """The JSON object ``hetnic replay`` writes for one frame."""
    rule = rec["rule"]
    return {
        "index": index,
        "len": rec["length"],
        "hash": rec["hash"],
        "hash_type": HashType(rec["hash_type"]).label,
        "queue": rec["queue"],
        "instance": rec["instance"],
        "rule": None if rule is None or rule >= n_rules else rule,
        "drop": None if rec["drop"] == DropReason.NONE else DropReason(rec["drop"]).label,
        "error": None if rec["error"] == ParseError.NONE else ParseError(rec["error"]).label,
        "generation": rec["generation"],
        "sent": rec["sent"],
    }


def write_jsonl(path: Path, result: ReplayResult, n_rules: int) -> None:
    with open(path, "w") as f:
        for index, rec in enumerate(result.records):
            f.write(json.dumps(record_line(index, rec, n_rules)) + "\n")
