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


def bench_core(frames: int = 2000, batches: int = 20) -> dict:
    """The NIC core on Verilator (cocotbext-axi AxiRam as host memory that never stalls).

    - ``rx_frames_per_cycle_64b``: 64-byte frames offered back to back at 64 bits to 8 RX
      queues; frames accepted per cycle from the first to the last beat. Two ideals beside
      it: back to back on the stream (1/8) and Ethernet line rate (64 + 20 bytes of preamble
      and gap per frame: 1/10.5 at 8 bytes per cycle).
    - ``rx_completion_latency_cycles``: cycles from a frame's last beat on ``rx_mac`` to its
      completion's phase bit showing in host memory (frames spaced out; median and max).
    - ``tx_dma_reads_per_message_batched`` / ``_single``: AXI read transactions (work items
      and data) per message with 32 x 64-byte messages per BATCH work item, and with one
      SINGLE work item per message; their ratio; ``tx_frames_per_cycle_64b`` for both.
    """
    import statistics

    from .gateware.nic_core import nic_regmap
    from .host.config import RxConfig
    from .sim.nic_sim import run_nic_job
    from .sim.traffic import tcp4_min_frames

    build = {"data_width": 64, "rx_queues": 64, "tx_queues": 4, "event_queues": 4}  # default
    regmap = nic_regmap(**build)
    out = {}

    traffic = [f.hex() for f in tcp4_min_frames(frames, size=64, flows=512)]
    rx = run_nic_job(build, {
        "config_writes": RxConfig(queues=8).register_writes(regmap),
        "rx_queues_used": list(range(8)), "rx_ring_size": 1024, "rx_buffer_size": 128,
        "rx_frames": traffic, "expect_rx": frames})["stats"]
    span = rx["rx_last_beat"] - rx["rx_first_beat"] + 1
    out.update({
        "rx_frames": rx["rx_frames"],
        "rx_frames_per_cycle_64b": round(rx["rx_frames"] / span, 4),
        "rx_frames_per_cycle_ideal_back_to_back": 0.125,
        "rx_frames_per_cycle_ideal_ethernet": round(8 / 84, 4),
    })

    lat = run_nic_job(build, {
        "config_writes": RxConfig(queues=1).register_writes(regmap),
        "rx_queues_used": [0], "rx_ring_size": 256, "rx_buffer_size": 128,
        "rx_frames": traffic[:200], "expect_rx": 200, "rx_pause": 0.8,
        "latency_probe": {"queue": 0}})["stats"]["latencies"]
    out.update({"rx_completion_latency_cycles": {
        "median": statistics.median(lat), "max": max(lat), "samples": len(lat)}})

    for mode, per_item in (("batched", 32), ("single", 1)):
        messages = [bytes([i % 251]) * 64 for i in range(per_item)]
        items = [{"queue": 0, "mode": "batch" if per_item > 1 else "single",
                  "messages": [m.hex() for m in messages]}
                 for _ in range(batches * 32 // per_item)]
        tx = run_nic_job(build, {
            "config_writes": RxConfig(queues=8).register_writes(regmap),
            "tx_queues_used": [0], "tx_ring_size": 1024, "tx_items": items,
            "expect_tx_frames": batches * 32})["stats"]
        n = tx["tx_frames"]
        out[f"tx_dma_reads_per_message_{mode}"] = round(tx["ar"] / n, 4)
        out[f"tx_frames_per_cycle_64b_{mode}"] = round(
            n / (tx["tx_last_beat"] - tx["tx_first_beat"] + 1), 4)
    out["tx_dma_reads_ratio_single_to_batched"] = round(
        out["tx_dma_reads_per_message_single"] / out["tx_dma_reads_per_message_batched"], 2)
    return out
