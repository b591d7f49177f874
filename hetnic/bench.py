"""``hetnic bench``: throughput figures, each with its baseline measured in the same run."""

from __future__ import annotations

import time

__all__ = ["bench_rx"]


def bench_rx(frames: int = 10_000) -> dict:
    """RX pipeline throughput on Verilator and software Toeplitz speed.

    ``rx_beats_per_cycle``: ``frames`` 64-byte Eth/IPv4/TCP frames sent back to back at
    64-bit width, with every output always ready; beats accepted divided by the cycles from
    the first to the last accepted beat (1.0 = a beat every cycle, no bubbles). The ideal is
    also reported, with the cycles the input stalled.
    """
    from .host.config import RxConfig
    from .host.rss import bench_toeplitz
    from .sim.rx_sim import RxBuild, build_rx, run_rx_job
    from .sim.traffic import tcp4_min_frames

    build = RxBuild(data_width=64)
    t0 = time.perf_counter()
    build_rx(build)
    build_s = time.perf_counter() - t0
    traffic = [(f, False) for f in tcp4_min_frames(frames, size=64)]
    writes = RxConfig(queues=16).register_writes(build.regmap())
    t0 = time.perf_counter()
    result = run_rx_job(build, traffic, writes)
    sim_s = time.perf_counter() - t0
    stats = result.stats
    span = stats["last_beat"] - stats["first_beat"] + 1
    ideal_beats = frames * 8
    delivered = sum(1 for r in result.records if r["drop"] == 0)

    out = {
        "rx_beats_per_cycle": round(stats["beats"] / span, 4),
        "rx_beats_per_cycle_ideal": 1.0,
        "rx_frames": frames,
        "rx_frame_bytes": 64,
        "rx_data_width": 64,
        "rx_beats": stats["beats"],
        "rx_beats_expected": ideal_beats,
        "rx_cycles_first_to_last_beat": span,
        "rx_input_stall_cycles": stats["in_stalls"],
        "rx_records": len(result.records),
        "rx_records_delivered": delivered,
        "sim_seconds": round(sim_s, 2),
        "sim_build_seconds": round(build_s, 2),
    }
    out.update(bench_toeplitz())
    return out
