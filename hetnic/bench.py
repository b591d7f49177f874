"""``hetnic bench``: throughput figures, each with its baseline measured in the same run."""

from __future__ import annotations

import dataclasses
import time

__all__ = ["bench_rx", "bench_core", "bench_hil"]


def bench_rx(frames: int = 10_000) -> dict:
    """RX pipeline throughput on Verilator and software Toeplitz speed.

    ``rx_beats_per_cycle``: ``frames`` 64-byte Eth/IPv4/TCP frames sent back to back at
    64-bit width, with every output always ready; beats accepted divided by the cycles from
    the first to the last accepted beat (1.0 = a beat every cycle, no bubbles). The ideal is
    also reported, with the cycles the input stalled.
    """
    from .config import RxConfig
    from .sim.model.toeplitz import bench_toeplitz
    from .params import RX_PIPELINE_W64
    from .sim.rx_sim import build_rx, run_rx_job
    from .sim.traffic import tcp4_min_frames

    params = RX_PIPELINE_W64
    t0 = time.perf_counter()
    build_rx(params)
    build_s = time.perf_counter() - t0
    traffic = [(f, False) for f in tcp4_min_frames(frames, size=64)]
    writes = RxConfig(queues=16).register_writes(params.regmap())
    t0 = time.perf_counter()
    result = run_rx_job(params, traffic, writes)
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

    from .config import RxConfig
    from .params import NIC_CORE_W64
    from .sim.nic_sim import run_nic_job
    from .sim.traffic import tcp4_min_frames

    params = NIC_CORE_W64
    regmap = params.regmap()
    out = {}

    traffic = [f.hex() for f in tcp4_min_frames(frames, size=64, flows=512)]
    rx = run_nic_job(params, {
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

    lat = run_nic_job(params, {
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
        tx = run_nic_job(params, {
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


def bench_hil(frames: int = 20_000, large_frames: int = 4_000,
              cocotb_frames: int = 300) -> dict:
    """The hardware-in-the-loop harness against its own baseline and against cocotb.

    All on the default simulated NIC (64-bit, 8 RX queues, Ethernet inter-frame gaps):

    ``raw_cycles_per_s``
        The Verilated model clocked in a C++ loop with its inputs idle (no harness, no
        Python): the most any driver can get.
    ``harness_cycles_per_s``
        The same model under the Python driver while it replays a traffic mix: frames go onto
        the wire, the clock runs in chunks of 1024 cycles, software polls every RX queue after
        each chunk (the :func:`hetnic.sim.scenarios.rx_stream` scenario).
    ``packets_per_s_64``, ``packets_per_s_1500``
        End to end (wire -> RX pipeline -> DMA into host memory -> ``poll``), frames of that
        size, the same scenario.
    ``cocotb_packets_per_s``
        The same scenario with 64-byte frames and the same driver code inside cocotb on
        Verilator (cocotbext-axi host memory, register bus and wire), ``cocotb_frames`` frames.
    ``rx_cycles_per_frame_under_tx``
        Cycles per received 64-byte frame while TX queue 0 is kept full of BATCH work items
        of 4, 16 and 64 frames (``items_4`` ...), and with TX idle (``idle``, the baseline)
        (the :func:`hetnic.sim.scenarios.rx_under_tx` scenario, 200 frames, a fresh NIC
        each); ``tx_frames_per_cycle_under_rx``: the frames sent per cycle meanwhile.
    """
    from .host.nic import Nic
    from .params import HIL_NIC_CORE
    from .sim.nic_sim import run_driver_job
    from .sim.scenarios import rx_stream, rx_under_tx
    from .sim.traffic import tcp4_min_frames, traffic_mix

    mix = [f if isinstance(f, bytes) else f[0] for f in traffic_mix(frames, seed=7)]
    small = tcp4_min_frames(frames, size=64)
    large = tcp4_min_frames(large_frames, size=1500)
    t0 = time.perf_counter()
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        open_s = time.perf_counter() - t0
        harness = nic.backend.harness
        raw_cycles = 1_000_000
        t0 = time.perf_counter()
        harness.run_raw(raw_cycles)
        raw_s = time.perf_counter() - t0
        runs = {}
        for name, traffic in (("mix", mix), ("64", small), ("1500", large)):
            dropped = nic.counters()["frames_dropped"]
            r = rx_stream(nic, [f.hex() for f in traffic], keep=False)
            dropped = nic.counters()["frames_dropped"] - dropped  # the mix has bad frames
            if r["packets"] + dropped != len(traffic):
                raise RuntimeError(f"bench hil: {name}: {r['packets']} of {len(traffic)} "
                                   f"frames arrived")
            runs[name] = r
        axi = harness.counters()
    cocotb = run_driver_job(HIL_NIC_CORE, "rx_stream",
                            {"frames": [f.hex() for f in small[:cocotb_frames]],
                             "keep": False})
    if cocotb["packets"] != cocotb_frames:
        raise RuntimeError(f"bench hil: cocotb: {cocotb['packets']} of {cocotb_frames} "
                           f"frames arrived")
    under_tx = {}
    for per_item in (0, 4, 16, 64):
        with Nic.open("sim", width=64, rx_queues=8) as nic:
            r = rx_under_tx(nic, per_item)
        if r["rx_frames"] != 200:
            raise RuntimeError(f"bench hil: RX under TX ({per_item} frames per item): "
                               f"{r['rx_frames']} of 200 frames arrived")
        under_tx[f"items_{per_item}" if per_item else "idle"] = r
    raw_cps = raw_cycles / raw_s
    harness_cps = runs["mix"]["cycles"] / runs["mix"]["seconds"]
    pps64 = runs["64"]["packets"] / runs["64"]["seconds"]
    cocotb_pps = cocotb["packets"] / cocotb["seconds"]
    return {
        "raw_cycles_per_s": round(raw_cps),
        "harness_cycles_per_s": round(harness_cps),
        "harness_to_raw_ratio": round(harness_cps / raw_cps, 3),
        "packets_per_s_64": round(pps64),
        "packets_per_s_1500": round(runs["1500"]["packets"] / runs["1500"]["seconds"]),
        "cocotb_packets_per_s": round(cocotb_pps, 1),
        "speedup_64_vs_cocotb": round(pps64 / cocotb_pps, 1),
        "cycles_per_packet_64": round(runs["64"]["cycles"] / runs["64"]["packets"], 2),
        "cycles_per_packet_1500": round(runs["1500"]["cycles"] / runs["1500"]["packets"], 2),
        "cocotb_cycles_per_s": round(cocotb["cycles"] / cocotb["seconds"]),
        "frames": {"mix": len(mix), "64": len(small), "1500": len(large),
                   "cocotb_64": cocotb_frames},
        "rx_cycles_per_frame_under_tx": {k: r["rx_cycles_per_frame"]
                                         for k, r in under_tx.items()},
        "tx_frames_per_cycle_under_rx": {k: r["tx_frames_per_cycle"]
                                         for k, r in under_tx.items() if k != "idle"},
        "axi_errors": axi["axi_errors"], "axi_protocol_errors": axi["axi_protocol_errors"],
        "nic_open_s": round(open_s, 2),
        "build": dataclasses.asdict(HIL_NIC_CORE),
    }


def bench_rss_keys(keys: int = 256, flows: int = 65536, seed: int = 1) -> dict:
    """Scoring RSS keys (:func:`hetnic.host.rss_policy.score_keys`) against a per-key loop.

    ``flows`` random IPv4 4-tuples with Zipf-distributed packet counts, a 512-entry RETA
    over 16 queues (entry i -> queue i mod 16), ``keys`` random valid keys drawn beforehand.

    - ``score_keys_per_s``: key-flow pairs scored per second by one :func:`score_keys` call
      over all keys (best of three; per-key tables built inside the timing).
    - ``scalar_baseline_keys_per_s``: key-flow pairs per second, measured now, of a plain loop
      over keys: :func:`hetnic.sim.model.toeplitz.toeplitz_batch` per key (its word tables built per
      key), then ``bincount`` over RETA entries; on 8 of the keys. Its scores must equal the
      vectorised ones, else :class:`RuntimeError`.
    - ``score_keys_speedup``: their ratio; ``keygen_seconds``: drawing and validating the
      keys.
    """
    import numpy as np

    from .config import default_reta
    from .sim.model.toeplitz import _word_tables, toeplitz_batch
    from .host.rss_policy import FlowSet, random_keys, score_keys

    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 256, size=(flows, 12), dtype=np.uint8)
    packets = np.minimum(rng.zipf(1.8, size=flows), 1_000_000)
    window = FlowSet(inputs, packets, packets * 800, np.zeros((0, 36), dtype=np.uint8),
                     [], [])
    table = np.array(default_reta(16, 512))
    t0 = time.perf_counter()
    candidates = random_keys(rng, keys)
    keygen_s = time.perf_counter() - t0

    seconds = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        result = score_keys(candidates, window, table, 16)
        seconds = min(seconds, time.perf_counter() - t0)

    baseline_keys = min(keys, 8)
    weights = packets.astype(np.float64)
    _word_tables.cache_clear()          # a new key's tables are part of its cost
    t0 = time.perf_counter()
    baseline = []
    for key in candidates[:baseline_keys]:
        hashes = toeplitz_batch(key.tobytes(), inputs)
        queue = np.bincount(table[hashes & 511], weights=weights, minlength=16)
        baseline.append(queue.max() * 16 / queue.sum())
    baseline_s = time.perf_counter() - t0
    if not np.array_equal(np.array(baseline), result[:baseline_keys]):
        raise RuntimeError("bench rss_keys: score_keys disagrees with the per-key loop")

    rate, base_rate = keys * flows / seconds, baseline_keys * flows / baseline_s
    return {
        "score_keys_per_s": round(rate),
        "keys": keys,
        "flows": flows,
        "seconds": round(seconds, 4),
        "scalar_baseline_keys_per_s": round(base_rate),
        "score_keys_speedup": round(rate / base_rate, 2),
        "keygen_seconds": round(keygen_s, 4),
    }


def bench_rss(flows: int = 10_000, queues: int = 16, seed: int = 0) -> dict:
    """Adaptive RSS figures: key scoring speed (:func:`bench_rss_keys`) and the policies on
    the synthetic web-search workload, judged on the window after each decision, at the
    default 10 ms window and at RSS++'s 100 ms: the policies' own decisions (no
    :class:`~hetnic.host.rss_policy.GainGuard`)."""
    from .rss_eval import TIME_WINDOW_SECONDS, evaluate
    from .sim.workloads import synthetic_trace

    out = bench_rss_keys()
    trace = synthetic_trace("websearch", flows=flows, seed=seed)
    for name, window in (("websearch", TIME_WINDOW_SECONDS), ("websearch_100ms", 0.1)):
        t0 = time.perf_counter()
        report = evaluate(trace, queues=queues, window_seconds=window, seed=seed,
                          guard=False)          # the policies' own decisions
        policies = report["policies"]
        bound = report["lower_bound"]
        reta = policies["reta"]["next_window_max_mean"]
        out[name] = {
            "flows": flows, "queues": queues, "window_s": window,
            "windows_scored": report["scored_windows"],
            "lower_bound": round(bound, 4),
            **{f"{p}_max_mean": round(policies[p]["next_window_max_mean"], 4)
               for p in policies},
            "reta_over_lower_bound": round(reta / bound, 4),
            "reta_within_10pct_of_bound": reta <= 1.1 * bound,
            "reta_vs_static": round(policies["reta"]["vs_static"], 4),
            "reta_flows_migrated_per_decision":
                round(policies["reta"]["flows_migrated_per_decision"], 1),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    return out


__all__ += ["bench_rss_keys", "bench_rss"]
