"""``hetnic bench cluster``: sharded replay on a local Dask cluster against the one-machine
replay, both measured in the same run on the same real capture."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

__all__ = ["bench_cluster", "STABLE_FIELDS", "same_records", "DEFAULT_CAPTURES",
           "DEFAULT_FRAMES"]

#: The record fields of ``hetnic replay`` that depend only on the frame and the
#: configuration: a sharded replay gives the same values as the one-machine replay
#: (``queue_drop``, ``delivered`` and ``latency_cycles`` depend on load and timing).
STABLE_FIELDS = ("index", "len", "hash", "hash_type", "queue", "instance", "rule", "drop",
                 "error", "generation", "sent")
#: The real captures beside the checkout (as the Makefile's rss-eval-captures finds them),
#: wherever the command runs from (docs/cluster.md).
DEFAULT_CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pcap"
#: Default frames: at ~7,000 frames/s per simulated NIC the single run takes ~17 s and the
#: cluster run ~9 s on 2 workers, so its fixed costs (a simulator start per shard ~0.05 s,
#: reading the capture ~0.25 s, the task round trips) are a few percent; the cluster's own
#: start (~1.7 s) is reported apart (``cluster_start_s``, ``speedup_with_start``).
DEFAULT_FRAMES = 120_000


def same_records(a, b, n_rules: int) -> bool:
    """Whether two :class:`~hetnic.replay.ReplayResult` agree record for record on
    :data:`STABLE_FIELDS` (as ``hetnic replay`` writes them)."""
    from .replay import record_line
    if len(a.records) != len(b.records):
        return False
    for i, (x, y) in enumerate(zip(a.records, b.records)):
        lx, ly = record_line(i, x, n_rules), record_line(i, y, n_rules)
        if any(lx[f] != ly[f] for f in STABLE_FIELDS):
            return False
    return True


def _cpu() -> float:
    """CPU seconds of this process so far (user and system)."""
    t = os.times()
    return t.user + t.system


def write_bench_capture(folder: Path, path: Path, frames: int) -> tuple[int, list[str]]:
    """Write to ``path`` (pcap) the frames of every capture in ``folder``, in name order,
    over again until at least ``frames`` frames: (frames written, capture names)."""
    from scapy.utils import RawPcapWriter
    from .replay import ReplayError, read_capture
    names = sorted(p for p in folder.glob("*") if p.suffix in (".pcap", ".pcapng"))
    if not names:
        raise ReplayError(f"{folder}: no .pcap or .pcapng captures")
    once = [f for p in names for f in read_capture(p)]
    if not once:
        raise ReplayError(f"{folder}: the captures hold no frames")
    count = 0
    with RawPcapWriter(str(path), linktype=1, sync=False) as writer:
        while count < frames:
            for f in once:
                writer.write(f)
            count += len(once)
    return count, [p.name for p in names]


def bench_cluster(frames: int = DEFAULT_FRAMES, workers: int = 2,
                  captures: Path = DEFAULT_CAPTURES,
                  data_width: int = 64) -> dict:
    """Frames per second of ``hetnic replay`` (model check on) on one machine and on a local
    cluster of ``workers`` processes (``--cluster local:N``), on the real captures of
    ``captures`` replayed back to back until ``frames`` frames. The single run is the
    command's own path (read the capture, :func:`~hetnic.replay.replay_frames`); the cluster
    run is :func:`~hetnic.cluster.replay_on_cluster` with the result cache off, timed from a
    started cluster (``cluster_start_s`` is the start; ``speedup_with_start`` counts it).
    ``identical``: every record equal on :data:`STABLE_FIELDS`. ``single_cpu_s`` and
    ``cluster_cpu_s`` (client and workers; ``cluster_client_cpu_s`` the client's,
    ``cluster_replay_tasks_cpu_s`` the shard tasks') are the CPU seconds of the two runs:
    their ratio is what a loaded machine cannot hide."""
    from .cli.replay import _simulated_build
    from .cluster import ClusterSpec, open_cluster, replay_on_cluster
    from .config import RxConfig
    from .replay import read_capture, replay_frames
    from .sim.model import rx_pipeline  # noqa: F401  (imported before the timing, as on
    from .host import nic  # noqa: F401  the workers: see cluster.open_cluster)
    config = RxConfig(queues=16)
    with tempfile.TemporaryDirectory(prefix="hetnic-bench-cluster-") as tmp:
        pcap = Path(tmp) / "bench.pcap"
        total, names = write_bench_capture(Path(captures), pcap, frames)
        # A few frames first, untimed: the first simulated NIC of a changed core builds it
        # (a minute of C++ in child processes), which neither run should pay.
        replay_frames(read_capture(pcap)[:8], config, data_width=data_width, check=True)
        t0, c0 = time.perf_counter(), _cpu()
        single = replay_frames(read_capture(pcap), config, data_width=data_width, check=True)
        single_s, single_cpu = time.perf_counter() - t0, _cpu() - c0
        t0 = time.perf_counter()
        with open_cluster(ClusterSpec(workers=workers)) as client:
            start_s = time.perf_counter() - t0
            workers_cpu = sum(client.run(_cpu).values())
            t0, c0 = time.perf_counter(), _cpu()
            sharded = replay_on_cluster(client, str(pcap), config, data_width=data_width,
                                        check=True, cache=False, progress=False)
            cluster_s, client_cpu = time.perf_counter() - t0, _cpu() - c0
            workers_cpu = sum(client.run(_cpu).values()) - workers_cpu
    n_rules = _simulated_build(data_width).n_rules
    return {
        "single_frames_per_s": round(total / single_s),
        "cluster_frames_per_s": round(total / cluster_s),
        "speedup": round(single_s / cluster_s, 3),
        "speedup_with_start": round(single_s / (cluster_s + start_s), 3),
        "workers": workers,
        "shards": sharded.stats["shards"],
        "identical": same_records(single, sharded, n_rules),
        "mismatches_single": len(single.mismatches),
        "mismatches_cluster": len(sharded.mismatches),
        "frames": total,
        "captures": names,
        "single_s": round(single_s, 3),
        "cluster_s": round(cluster_s, 3),
        "cluster_start_s": round(start_s, 3),
        "single_cpu_s": round(single_cpu, 3),
        "cluster_cpu_s": round(client_cpu + workers_cpu, 3),
        "cluster_client_cpu_s": round(client_cpu, 3),
        "cluster_replay_tasks_cpu_s": round(sharded.stats["cpu_s"], 3),
        "shard_frames_max_over_mean": round(max(sharded.stats["shard_frames"]) * len(
            sharded.stats["shard_frames"]) / total, 3),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg()[0],
    }
