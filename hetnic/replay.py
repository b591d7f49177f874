"""``hetnic replay``: how would this traffic be steered? Frames of a capture file through the
simulated NIC core (the compiled Verilator harness, driven by the host driver): the wire,
the RX pipeline, the RX queues' DMA into host memory and the driver's ``poll``. One JSON line
per frame, checked against the software model."""

from __future__ import annotations

import json
import struct
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .config import RxConfig
from .errors import HetnicError
from .protocol import DropReason, HashType, ParseError

__all__ = ["ReplayError", "read_capture", "check_capture", "Consumer", "ReplayResult",
           "replay_frames",
           "replay_on_nic", "record_line", "write_jsonl"]


DLT_EN10MB = 1     # pcap link type of Ethernet
#: First four bytes of pcap (both byte orders, micro- and nanosecond) and pcapng files.
CAPTURE_MAGICS = {bytes.fromhex(m) for m in ("d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d",
                                             "0a0d0d0a")}


class ReplayError(HetnicError):
    """A user-facing problem with the input; the message is one line."""


def read_capture(path: str | Path) -> list[bytes]:
    """Every frame of a pcap or pcapng file, in file order, exactly as captured (Ethernet
    link type; frames from the destination MAC on)."""
    path = check_capture(path)
    with open(path, "rb") as fh:
        return _read_frames(path, fh)


def check_capture(path: str | Path) -> Path:
    """``path`` if it names a pcap or pcapng file (by its first bytes), else ReplayError:
    what :func:`read_capture` checks before it reads the frames."""
    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    if path.is_dir():
        raise ReplayError(f"{path}: is a folder, not a pcap or pcapng file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read capture: {exc.strerror}") from None
    if not magic:
        raise ReplayError(f"{path}: empty file, not a pcap or pcapng file")
    if magic not in CAPTURE_MAGICS:
        raise ReplayError(f"{path}: not a pcap or pcapng file (starts with "
                          f"{magic.hex()})")
    return path


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


#: Cycles the wire may stand still with frames waiting before a replay calls the NIC wedged
#: (the longest frame takes about 1200 cycles at 8 bits).
STALL_CYCLES = 200_000
#: Completion fields checked against the model for every delivered frame.
CHECKED_FIELDS = ("length", "hash", "hash_type", "queue", "instance", "rule", "generation",
                  "flags", "error")


@dataclass(frozen=True)
class Consumer:
    """How software serves an RX queue during a replay: every ``interval`` cycles it polls and
    takes up to ``batch`` frames (a low-delay stack polls often, a throughput stack in big
    batches)."""
    interval: int = 512
    batch: int = 64


@dataclass
class ReplayResult:
    records: list[dict]         # one per input frame (see record_line)
    mismatches: list[tuple[int, dict]]   # (frame index, {field: (model, NIC)})
    counters: dict[str, int]    # the NIC's counters after the replay
    stats: dict                 # cycles, seconds, frames, delivered, ...


def replay_frames(frames: list[bytes] | list[tuple[bytes, bool]], config: RxConfig, *,
                  data_width: int = 64, rx_queues: int | None = None, check: bool = True,
                  consumers: dict[int, Consumer] | None = None, progress=None,
                  trace=None, model_records: list | None = None,
                  **open_args) -> ReplayResult:
    """Replay ``frames`` (bytes, or (bytes, MAC error flag)) through the simulated NIC core:
    the wire, the RX pipeline, the RX queues with DMA into host memory and the host driver's
    ``poll``. The NIC uses ``rx_queues`` RX queues (default ``config.queues``; the harness is
    built with them rounded up, :func:`hetnic.params.hil_rx_queues`). See
    :func:`replay_on_nic`."""
    from .host.nic import Nic
    queues = rx_queues or config.queues
    try:
        nic = Nic.open("sim", width=data_width, rx_queues=queues, trace=trace, **open_args)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    with nic:
        return replay_on_nic(nic, frames, config, check=check, consumers=consumers,
                             progress=progress, model_records=model_records)


def replay_on_nic(nic, frames, config: RxConfig, *, check: bool = True,
                  consumers: dict[int, Consumer] | None = None, step: int = 256,
                  progress=None, model_records: list | None = None) -> ReplayResult:
    """Program ``config`` into ``nic``, send ``frames`` on its wire at line rate, and let
    software consumers (``consumers[queue]``, default :class:`Consumer`) poll the RX queues.
The clock runs in steps of ``step`` cycles (or the shortest poll interval, if shorter).

    Every delivered frame is matched to its input frame (per queue, in order, by content)
    and, with ``check``, compared field by field with
    :class:`~hetnic.sim.model.rx_pipeline.RxModel`; a frame the model delivers but the NIC
    does not is a mismatch unless the NIC counted a queue drop for it. ``progress`` is called
    as ``progress(frames_done, frames_total)``. Frames of zero bytes cannot be sent: they are
    reported as dropped runts with ``sent`` false.

    ``model_records``, if given, are the model's records of the frames computed beforehand
    under the same build, configuration and generation (:func:`hetnic.shard.model_slice`);
    they are used (copied) instead of running the model again.
    """
    from .sim.model.rx_pipeline import RxModel
    t0 = time.perf_counter()
    items = [f if isinstance(f, tuple) else (f, False) for f in frames]
    try:
        generation = nic.apply(config)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    replay = _Replay(nic, items, check)
    replay.model_frames(RxModel(nic.regmap, config, generation=generation), generation,
                        model_records)
    plan = _consumer_plan(nic, consumers)
    step = min(step, *(c.interval for c in plan.values()))
    replay.run(plan, step, progress)
    replay.drain()
    counters = replay.check_queue_drops()
    stats = {"frames": len(items), "sent": len(replay.sendable),
             "delivered": replay.delivered, "queue_drops": replay.queue_drops(),
             "cycles": nic.now() - replay.start_cycle, "seconds": time.perf_counter() - t0,
             "generation": generation}
    return ReplayResult(replay.records, replay.mismatches, counters, stats)


def _consumer_plan(nic, consumers: dict[int, Consumer] | None) -> dict[int, Consumer]:
    """The consumer of every RX queue of ``nic`` (:class:`Consumer` where ``consumers``
    names none); ReplayError for an interval or batch that is not a positive integer."""
    consumers = consumers or {}
    plan = {q.index: consumers.get(q.index, Consumer()) for q in nic.rx_queues}
    for q, c in plan.items():
        if not (isinstance(c.interval, int) and c.interval >= 1 and isinstance(c.batch, int)
                and c.batch >= 1):
            raise ReplayError(f"consumer of queue {q}: interval and batch must be positive "
                              f"integers, not {c}")
    return plan


class _Replay:
    """The state of one :func:`replay_on_nic`: a record per input frame (the model's, then
    what the NIC's completion said), the frames each queue should still deliver, in order,
    and the mismatches found.

    Members
    -------
    records : list of dict
        One per input frame, in frame order (see :func:`record_line`).
    sendable : list of int
        Indices of the frames that go on the wire (all but the empty ones).
    mismatches : list of (int, dict)
        ``(frame index or -1, {field: (model, NIC)})``.
    delivered : int
        Frames software has received so far.
    """

    def __init__(self, nic, items: list[tuple[bytes, bool]], check: bool):
        self.nic, self.items, self.check = nic, items, check
        self.records: list[dict | None] = [None] * len(items)
        self.expected: dict[int, deque] = {q.index: deque() for q in nic.rx_queues}
        self.sendable: list[int] = []
        self.mismatches: list[tuple[int, dict]] = []
        self.delivered = 0
        self.start_cycle = nic.now()

    def model_frames(self, model, generation: int, precomputed: list | None = None) -> None:
        """The model's record of every frame (``precomputed[i]``, a copy, if given); a frame
        the model delivers joins its queue's expected frames unless it is too long for the
        queue's buffers."""
        buffer_size = self.nic.rx_queues[0].ring.buffer_size
        for index, (frame, err) in enumerate(self.items):
            if not frame:
                self.records[index] = _unsent_record(generation)
                continue
            rec = dict(precomputed[index]) if precomputed else model.process(frame, err)
            rec["sent"], rec["delivered"], rec["latency"] = True, False, None
            rec["queue_drop"] = None
            if rec["drop"] == DropReason.NONE and len(frame) > buffer_size:
                rec["queue_drop"] = "too_long"
            self.records[index] = rec
            self.sendable.append(index)
            if rec["drop"] == DropReason.NONE and rec["queue_drop"] is None:
                self.expected[rec["queue"]].append(index)

    def take(self, queue, packets) -> None:
        """Match the ``packets`` software polled from ``queue`` to their input frames (the
        queue's expected frames in order; those skipped were dropped for want of a buffer),
        check them against the model and record what the NIC said."""
        exp = self.expected[queue.index]
        now = self.nic.now()
        for p in packets:
            # Frames the NIC dropped at the queue (no buffer) leave gaps: skip to the match.
            while exp and self.items[exp[0]][0] != p.data:
                self.records[exp.popleft()]["queue_drop"] = "no_buffer"
            if not exp:
                self.mismatches.append((-1, {"unexpected_frame": (None, p.data[:32].hex())}))
                continue
            index = exp.popleft()
            rec = self.records[index]
            got = {k: int(getattr(p, k)) for k in CHECKED_FIELDS}
            if self.check:
                diff = {k: (rec[k], got[k]) for k in CHECKED_FIELDS if rec[k] != got[k]}
                if diff:
                    self.mismatches.append((index, diff))
            rec.update(got)
            rec["delivered"] = True
            rec["latency"] = self.nic.age(p, now)
            self.delivered += 1

    def run(self, plan: dict[int, Consumer], step: int, progress) -> None:
        """Send the frames (512 at a time, whenever fewer than 256 wait on the wire), run the
        clock ``step`` cycles at a time and poll each queue as its consumer says, until every
        expected frame is delivered, or the wire is empty and the time allowed for the rest
        has passed. ReplayError if the wire stands still (:data:`STALL_CYCLES`)."""
        nic, sendable = self.nic, self.sendable
        next_poll = {q: 0 for q in plan}
        self.start_cycle = nic.now()
        sent = 0
        stalled_since, last_pending = None, None     # the wire not moving: a wedged NIC
        while True:
            if sent < len(sendable) and nic.wire.pending() < 256:
                chunk = sendable[sent:sent + 512]
                nic.wire.send([self.items[i][0] for i in chunk],
                              [self.items[i][1] for i in chunk])
                sent += len(chunk)
            nic.run(step)
            now = nic.now()
            for q in nic.rx_queues:
                if now >= next_poll[q.index]:
                    next_poll[q.index] = now + plan[q.index].interval
                    self.take(q, q.poll(plan[q.index].batch))
            if progress:
                progress(min(sent, len(sendable)) - nic.wire.pending(), len(sendable))
            if sent == len(sendable) and nic.wire.pending() == 0 and \
                    not any(self.expected.values()):
                break
            if sent == len(sendable) and nic.wire.pending() == 0 and \
                    now - self.start_cycle > 64 * len(sendable) + 1_000_000:
                break                                   # whatever is missing stays missing
            pending = nic.wire.pending()
            if pending and pending == last_pending:
                if now - stalled_since > STALL_CYCLES:
                    raise ReplayError(f"the NIC took no frame from the wire for {STALL_CYCLES} "
                                      f"cycles ({pending} frames waiting, {self.delivered} "
                                      f"delivered): it is wedged")
            else:
                stalled_since, last_pending = now, pending

    def drain(self) -> None:
        """Let the NIC go idle and take everything left in the queues; whatever the model
        delivers and the NIC did not was dropped at its queue (no buffer)."""
        self.nic.run_until_idle()
        for q in self.nic.rx_queues:
            while True:
                got = q.poll(1024)
                if not got:
                    break
                self.take(q, got)
        for exp in self.expected.values():
            for index in exp:
                self.records[index]["queue_drop"] = "no_buffer"

    def queue_drops(self) -> int:
        """Sent frames dropped at an RX queue (no buffer or too long), by the records."""
        return sum(1 for i in self.sendable if self.records[i]["queue_drop"])

    def check_queue_drops(self) -> dict[str, int]:
        """The NIC's counters; with ``check``, a mismatch unless its queue drop counters
        account for every frame :meth:`queue_drops` counts."""
        counters = self.nic.counters()
        nic_queue_drops = sum(v for k, v in counters.items()
                              if k.startswith(("rxq_no_buffer", "rxq_too_long")))
        queue_drops = self.queue_drops()
        if self.check and queue_drops != nic_queue_drops:
            self.mismatches.append((-1, {"queue_drops": (queue_drops, nic_queue_drops)}))
        return counters


def _unsent_record(generation: int) -> dict:
    return {"length": 0, "error": int(ParseError.RUNT), "drop": int(DropReason.RUNT),
            "hash": 0, "hash_type": int(HashType.NONE), "queue": 0, "instance": 0,
            "rule": None, "generation": generation, "flags": 0, "sent": False,
            "delivered": False, "latency": None, "queue_drop": None}


def record_line(index: int, rec: dict, n_rules: int) -> dict:
    """The JSON object ``hetnic replay`` writes for one frame. For a delivered frame the
    fields are what the NIC's completion said; for a dropped one, the model's reason."""
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
        "queue_drop": rec.get("queue_drop"),
        "error": None if rec["error"] == ParseError.NONE else ParseError(rec["error"]).label,
        "generation": rec["generation"],
        "sent": rec["sent"],
        "delivered": rec.get("delivered", False),
        "latency_cycles": rec.get("latency"),
    }


def write_jsonl(path: Path, result: ReplayResult, n_rules: int) -> None:
    with open(path, "w") as f:
        for index, rec in enumerate(result.records):
            f.write(json.dumps(record_line(index, rec, n_rules)) + "\n")
