"""Sharded replay: split a capture by flow, replay the shards on their own simulated NICs and
merge the results back into one :class:`~hetnic.replay.ReplayResult` in input order.

A frame's shard is its Toeplitz hash under the run's key (and ``--symmetric``), exactly as
the NIC's hash stage and the software model compute it, modulo the number of shards. Every
frame of a flow has the same hash, so a flow stays in one shard, in its input order. Frames
without a hash (non-IP, parse errors) have hash 0 and go to shard 0.

The functions here are what :mod:`hetnic.cluster` runs on the workers
(:func:`model_slice`, :func:`replay_shard`) and on the client (:func:`shard_indices`,
:func:`merge_results`); they import nothing of Dask. A frame *source* is a capture path (the
workers read the file themselves; a worker process keeps the last capture it read) or the
list of frames itself.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from .config import RxConfig
from .replay import ReplayResult, read_capture, replay_frames

__all__ = ["frames_of", "model_slice", "shard_indices", "replay_shard", "merge_results",
           "pack_records", "unpack_records", "SUMMED_STATS"]

#: The statistics of :class:`~hetnic.replay.ReplayResult` that add up over shards (the
#: others: ``cycles`` and ``seconds`` are the longest shard's, ``generation`` the first's).
SUMMED_STATS = ("frames", "sent", "delivered", "queue_drops")

_last_capture: tuple[tuple, list[bytes]] | None = None


def frames_of(source: str | list[bytes]) -> list[bytes]:
    """The frames of ``source``: a capture path (read once per worker process while the
    file's size and modification time stay the same) or a list of frames."""
    global _last_capture
    if not isinstance(source, str):
        return source
    st = os.stat(source)
    ident = (os.path.abspath(source), st.st_size, st.st_mtime_ns)
    if _last_capture is None or _last_capture[0] != ident:
        _last_capture = (ident, read_capture(source))
    return _last_capture[1]


def model_slice(source: str | list[bytes], part: int, parts: int, config: RxConfig, *,
                data_width: int = 64) -> tuple[np.ndarray, tuple[tuple, list]]:
    """The software model's records of slice ``part`` of ``parts`` equal slices of the frames
    of ``source`` under ``config``, as :func:`~hetnic.replay.replay_frames` computes them for
    its model check (the same build, configuration and generation): ``(hashes, (fields,
    rows))``, the Toeplitz hash of every frame (``uint32``; 0 for a frame without one) and the
    records as :func:`pack_records` packs them (a row of None for an empty frame). The
    sharded replay keeps this on the worker that computed it and hands it to the shard tasks
    worker to worker (:func:`replay_shard`), so the model runs once per frame."""
    from .host.nic import Nic
    from .sim.model.rx_pipeline import RxModel
    frames = frames_of(source)
    step = -(-len(frames) // parts)
    mine = frames[part * step:(part + 1) * step]
    with Nic.open("sim", width=data_width, rx_queues=config.queues) as nic:
        generation = nic.apply(config)
        model = RxModel(nic.regmap, config, generation=generation)
    records = [model.process(frame) if frame else None for frame in mine]
    fields = next((tuple(r) for r in records if r is not None), ())
    hashes = np.array([r["hash"] if r is not None else 0 for r in records], dtype=np.uint32)
    return hashes, (fields, [tuple(r.values()) if r is not None else None for r in records])


def shard_indices(hashes: np.ndarray, shards: int) -> list[np.ndarray]:
    """The frame indices of each of ``shards`` shards (ascending: input order), frame ``i``
    going to shard ``hashes[i] % shards``."""
    if not (isinstance(shards, int) and shards >= 1):
        raise ValueError(f"shards must be a positive integer, not {shards!r}")
    which = np.asarray(hashes, dtype=np.uint64) % shards
    return [np.flatnonzero(which == s) for s in range(shards)]


def replay_shard(source: str | list[bytes], indices, config: RxConfig, *,
                 data_width: int = 64, check: bool = True,
                 models: list | None = None) -> ReplayResult:
    """Replay frames ``indices`` of ``source`` (in that order) on a simulated NIC of its own,
    as ``hetnic replay`` does (:func:`~hetnic.replay.replay_frames`, the model check
    included). ``models``, the :func:`model_slice` of every slice (in order) under the same
    ``config`` and ``data_width``, saves running the model again on these frames. Record
    ``k`` of the result is frame ``indices[k]``'s; mismatch indices are the shard's own. The records come back packed (:func:`pack_records`); ``stats["cpu_s"]`` is
    the CPU seconds the task's thread spent (what is left of the worker's CPU is Dask's)."""
    cpu = time.thread_time()
    frames = frames_of(source)
    records = None
    if models:
        step = -(-len(frames) // len(models))
        fields = next((m[1][0] for m in models if m[1][0]), ())
        rows = [models[int(i) // step][1][1][int(i) % step] for i in indices]
        records = [None if row is None else dict(zip(fields, row)) for row in rows]
    result = replay_frames([frames[int(i)] for i in indices], config, data_width=data_width,
                           check=check, model_records=records)
    result.records = pack_records(result.records)
    result.stats["cpu_s"] = time.thread_time() - cpu
    return result


def pack_records(records: list[dict]) -> tuple[tuple, list[tuple]]:
    """Records as ``(fields, rows)``, a tuple of values per record: what a worker sends back
    (a fraction of the pickled size of the dicts). :func:`unpack_records` undoes it."""
    fields = tuple(records[0]) if records else ()
    if any(tuple(r) != fields for r in records):
        raise ValueError("records with different fields cannot be packed")
    return fields, [tuple(r.values()) for r in records]


def unpack_records(packed) -> list[dict]:
    """The records of :func:`pack_records`' ``(fields, rows)``; a list of dicts unchanged."""
    if isinstance(packed, list):
        return packed
    fields, rows = packed
    return [dict(zip(fields, row)) for row in rows]


def merge_results(total: int, parts: list[tuple[np.ndarray, ReplayResult]]) -> ReplayResult:
    """One result of ``total`` frames from the ``(indices, result)`` of every shard (records
    as dicts or packed by :func:`pack_records`): the
    records back in input order, the mismatches under their input indices (in input order;
    shard-wide ones, index -1, last), the counters and :data:`SUMMED_STATS` summed;
    ``shards``, ``shard_frames`` (frames per shard), ``cpu_s`` (the shards' CPU seconds,
    :func:`replay_shard`) and ``cached_shards`` (results from the cache, marked
    ``stats["cached"]``: their seconds, cycles and CPU seconds are of an earlier run) added to
    the statistics."""
    records: list[dict | None] = [None] * total
    mismatches, whole = [], []
    counters: Counter = Counter()
    stats = {name: 0 for name in SUMMED_STATS}
    stats.update(cycles=0, seconds=0.0, cpu_s=0.0, generation=None, shards=len(parts),
                 cached_shards=sum(bool(r.stats.get("cached")) for _, r in parts),
                 shard_frames=[len(indices) for indices, _ in parts])
    for indices, result in parts:
        result.records = unpack_records(result.records)
        if len(indices) != len(result.records):
            raise ValueError(f"a shard of {len(indices)} frames returned "
                             f"{len(result.records)} records")
        for i, rec in zip(indices, result.records):
            records[int(i)] = rec
        for k, diff in result.mismatches:
            (whole.append((-1, diff)) if k < 0 else mismatches.append((int(indices[k]), diff)))
        counters.update(result.counters)
        for name in SUMMED_STATS:
            stats[name] += result.stats[name]
        stats["cpu_s"] += result.stats.get("cpu_s", 0.0)
        stats["cycles"] = max(stats["cycles"], result.stats["cycles"])
        stats["seconds"] = max(stats["seconds"], result.stats["seconds"])
        if stats["generation"] is None:
            stats["generation"] = result.stats["generation"]
    missing = [i for i, rec in enumerate(records) if rec is None]
    if missing:
        raise ValueError(f"{len(missing)} frames are in no shard (first: {missing[0]})")
    return ReplayResult(records, sorted(mismatches, key=lambda m: m[0]) + whole,
                        dict(counters), stats)
