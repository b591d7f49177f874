"""Sharded replay: split a capture by flow, replay the shards on their own simulated NICs and
merge the results back into one :class:`~hetnic.replay.ReplayResult` in input order.

A frame's shard is its Toeplitz hash under the run's key (and ``--symmetric``), exactly as
the NIC's hash stage computes it (:func:`~hetnic.sim.model.toeplitz.meta_hash` of the
parser model's fields, hashed in batches), modulo the number of shards. Every frame of a flow
has the same hash, so a flow stays in one shard, in its input order. Frames without a hash
(non-IP, parse errors) have hash 0 and go to shard 0.

The functions here are what :mod:`hetnic.cluster` runs on the workers
(:func:`hash_slice`, :func:`replay_shard`) and on the client (:func:`shard_indices`,
:func:`merge_results`); they import nothing of Dask. A frame *source* is a capture path (the
workers read the file themselves; a worker process keeps the last capture it read) or the
list of frames itself.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from .config import RxConfig
from .protocol import RX_MAX_FRAME_LIMIT
from .replay import ReplayResult, read_capture, replay_frames

__all__ = ["frames_of", "hash_slice", "shard_indices", "replay_shard", "merge_results",
           "SUMMED_STATS"]

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


def hash_slice(source: str | list[bytes], part: int, parts: int,
               config: RxConfig) -> np.ndarray:
    """The Toeplitz hash (``uint32``) of slice ``part`` of ``parts`` equal slices of the
    frames of ``source`` (in order; concatenated, the slices are every frame) under
    ``config``'s key, hash types and symmetry, as the NIC computes it."""
    from .sim.model.parser import parse_frame
    from .sim.model.toeplitz import meta_hash_input, select_hash_type, toeplitz_batch
    frames = frames_of(source)
    step = -(-len(frames) // parts)
    start, end = part * step, min((part + 1) * step, len(frames))
    max_frame = min(config.max_frame, RX_MAX_FRAME_LIMIT)
    # meta_hash's hash input for every frame, then the Toeplitz hashes in batches of inputs
    # of the same length (IPv4 or IPv6, with or without ports).
    by_length: dict[int, tuple[list[int], list[bytes]]] = {}
    for i, frame in enumerate(frames[start:end]):
        parsed = parse_frame(frame, max_frame=max_frame,
                             direct_ethertype=config.direct_ethertype)
        hash_type = select_hash_type(parsed.error, parsed.flags, config.hash_enable)
        if hash_type:
            data = meta_hash_input(parsed, hash_type, config.symmetric)
            rows, inputs = by_length.setdefault(len(data), ([], []))
            rows.append(i)
            inputs.append(data)
    out = np.zeros(max(0, end - start), dtype=np.uint32)
    for length, (rows, inputs) in by_length.items():
        batch = np.frombuffer(b"".join(inputs), dtype=np.uint8).reshape(len(rows), length)
        out[rows] = toeplitz_batch(config.key, batch)
    return out


def shard_indices(hashes: np.ndarray, shards: int) -> list[np.ndarray]:
    """The frame indices of each of ``shards`` shards (ascending: input order), frame ``i``
    going to shard ``hashes[i] % shards``."""
    if not (isinstance(shards, int) and shards >= 1):
        raise ValueError(f"shards must be a positive integer, not {shards!r}")
    which = np.asarray(hashes, dtype=np.uint64) % shards
    return [np.flatnonzero(which == s) for s in range(shards)]


def replay_shard(source: str | list[bytes], indices, config: RxConfig, *,
                 data_width: int = 64, check: bool = True) -> ReplayResult:
    """Replay frames ``indices`` of ``source`` (in that order) on a simulated NIC of its own,
    as ``hetnic replay`` does (:func:`~hetnic.replay.replay_frames`). Record ``k`` of the
    result is frame ``indices[k]``'s; mismatch indices are the shard's own."""
    frames = frames_of(source)
    return replay_frames([frames[int(i)] for i in indices], config, data_width=data_width,
                         check=check)


def merge_results(total: int, parts: list[tuple[np.ndarray, ReplayResult]]) -> ReplayResult:
    """One result of ``total`` frames from the ``(indices, result)`` of every shard: the
    records back in input order, the mismatches under their input indices (in input order;
    shard-wide ones, index -1, last), the counters and :data:`SUMMED_STATS` summed;
    ``shards`` and ``shard_frames`` (frames per shard) added to the statistics."""
    records: list[dict | None] = [None] * total
    mismatches, whole = [], []
    counters: Counter = Counter()
    stats = {name: 0 for name in SUMMED_STATS}
    stats.update(cycles=0, seconds=0.0, generation=None, shards=len(parts),
                 shard_frames=[len(indices) for indices, _ in parts])
    for indices, result in parts:
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
        stats["cycles"] = max(stats["cycles"], result.stats["cycles"])
        stats["seconds"] = max(stats["seconds"], result.stats["seconds"])
        if stats["generation"] is None:
            stats["generation"] = result.stats["generation"]
    missing = [i for i, rec in enumerate(records) if rec is None]
    if missing:
        raise ValueError(f"{len(missing)} frames are in no shard (first: {missing[0]})")
    return ReplayResult(records, sorted(mismatches, key=lambda m: m[0]) + whole,
                        dict(counters), stats)
