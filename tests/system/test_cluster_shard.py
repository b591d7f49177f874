"""The sharding of ``hetnic replay --cluster`` (hetnic.shard) without a cluster: hashes as
the NIC's hash stage computes them (the model's), every flow in one shard and in order, the
merge back into input order."""

from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from hetnic.config import RxConfig
from hetnic.replay import ReplayResult, read_capture, replay_frames
from hetnic.shard import (merge_results, model_slice, replay_shard, shard_indices,
                          unpack_records)
from hetnic.sim.model.parser import parse_frame
from hetnic.sim.model.toeplitz import meta_hash

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "pcap"


@pytest.mark.parametrize("config", [RxConfig(queues=16),
                                    RxConfig(queues=4, symmetric=True, key=bytes(range(40)))])
def test_hashes_are_the_models(config):
    frames = read_capture(CAPTURES / "ethereum.pcap") + [b"", b"\x00" * 5]
    want = [meta_hash(parse_frame(f, max_frame=config.max_frame,
                                  direct_ethertype=config.direct_ethertype),
                      config.key, config.hash_enable, config.symmetric)[0] for f in frames]
    slices = [model_slice(frames, k, 3, config)[0] for k in range(3)]
    assert all(h.dtype == np.uint32 for h in slices)
    assert np.concatenate(slices).tolist() == want
    assert len(set(want)) > 50


def test_a_shard_is_the_replay_of_its_frames():
    frames = read_capture(CAPTURES / "WebattackRCE.pcap")[:200]
    config = RxConfig(queues=4)
    ix = np.arange(0, 200, 2)
    alone = replay_frames([frames[i] for i in ix], config)
    # The model's records computed beforehand in slices (the cluster's first pass) give the
    # same replay as the model run inside it.
    models = [model_slice(frames, k, 3, config) for k in range(3)]
    for shard in (replay_shard(frames, ix, config),
                  replay_shard(frames, ix, config, models=models)):
        assert shard.mismatches == alone.mismatches == []
        drop_timing = ("latency",)
        assert [{k: v for k, v in r.items() if k not in drop_timing}
                for r in unpack_records(shard.records)] \
            == [{k: v for k, v in r.items() if k not in drop_timing} for r in alone.records]


def test_flows_stay_in_one_shard_in_order():
    frames = read_capture(CAPTURES / "ethereum.pcap")
    hashes = model_slice(frames, 0, 1, RxConfig())[0]
    shards = shard_indices(hashes, 5)
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(frames)))
    shard_of = {int(i): s for s, ix in enumerate(shards) for i in ix}
    flows = {}
    for i, f in enumerate(frames):
        p = Ether(f)
        l4 = p.getlayer(TCP) or p.getlayer(UDP)
        if p.haslayer(IP) and l4 is not None:
            flows.setdefault((p[IP].src, p[IP].dst, l4.sport, l4.dport, p[IP].proto),
                             []).append(i)
    assert len(flows) > 50
    for indices in flows.values():
        assert len({shard_of[i] for i in indices}) == 1
    assert all(np.all(np.diff(ix) > 0) for ix in shards)


def _result(records, mismatches=(), drops=0):
    return ReplayResult(list(records), list(mismatches), {"rx_frames": len(records)},
                        {"frames": len(records), "sent": len(records),
                         "delivered": len(records) - drops, "queue_drops": drops,
                         "cycles": 100 * len(records), "seconds": 0.5, "generation": 2})


def test_merge_back_into_input_order():
    a, b = np.array([0, 2, 3]), np.array([1, 4])
    ra = _result([{"i": 0}, {"i": 2}, {"i": 3}], [(1, {"queue": (1, 2)}), (-1, {"x": 1})])
    rb = _result([{"i": 1}, {"i": 4}], [(1, {"hash": (3, 4)})], drops=1)
    merged = merge_results(5, [(a, ra), (b, rb)])
    assert [r["i"] for r in merged.records] == [0, 1, 2, 3, 4]
    assert merged.mismatches == [(2, {"queue": (1, 2)}), (4, {"hash": (3, 4)}), (-1, {"x": 1})]
    assert merged.counters == {"rx_frames": 5}
    assert merged.stats["delivered"] == 4 and merged.stats["queue_drops"] == 1
    assert merged.stats["cycles"] == 300 and merged.stats["shards"] == 2
    with pytest.raises(ValueError, match="1 frames are in no shard"):
        merge_results(6, [(a, ra), (b, rb)])
    with pytest.raises(ValueError, match="positive integer"):
        shard_indices(np.zeros(3), 0)
