"""Reconfiguration under traffic on the simulated NIC: no flow is reordered as delivered to
software, and no packet is lost (:mod:`hetnic.host.ordering`, :mod:`hetnic.host.rss_loop`).

Every frame carries its flow number and sequence number in its payload, so the tests check
the order of every packet as the consumers receive it.
"""

import random
import struct

import numpy as np
import pytest

from frames import tcp4
from hetnic.host.nic import Nic
from hetnic.sim.model.toeplitz import hash_input_ipv4, toeplitz
from hetnic.host.rss_loop import RssPolicyLoop
from hetnic.host.rss_policy import FlowSet, KeySelector, RetaBalancer, random_keys
from hetnic.sim.model.rx_pipeline import RxModel

QUEUES = 4
PAYLOAD_AT = 14 + 20 + 20           # Ethernet, IPv4, TCP headers


def flow_templates(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``n`` TCP flows: (frame template, RSS hash input)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        dst = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        sport, dport = rng.randrange(1024, 65536), rng.choice([80, 443, 8080])
        out.append((tcp4(src=src, dst=dst, sport=sport, dport=dport, flags="A",
                         payload=bytes(8)), hash_input_ipv4(src, dst, sport, dport)))
    return out


def stamp(template: bytes, flow: int, seq: int) -> bytes:
    return template[:PAYLOAD_AT] + struct.pack(">II", flow, seq) + template[PAYLOAD_AT + 8:]


def flow_seq(packet) -> tuple[int, int]:
    return struct.unpack_from(">II", packet.data, PAYLOAD_AT)


class Consumers:
    """Per-queue consumers polling in a random order with random batch sizes; checks that
    every flow's packets arrive in sequence, and (given ``inputs`` and ``keys``: flow ->
    hash input, generation -> key) that the NIC's hash is the software Toeplitz hash of the
    key its generation used."""

    def __init__(self, nic, seed: int, inputs=None, keys=None):
        self.nic, self.rng = nic, random.Random(seed)
        self.inputs, self.keys = inputs, keys
        self.next_seq: dict[int, int] = {}
        self.received = 0
        self.reordered = []
        self.hashes_checked = 0

    def poll(self, skip: set = frozenset()):
        queues = [q for q in self.nic.rx_queues if q.index not in skip]
        self.rng.shuffle(queues)
        for q in queues:
            for p in q.poll(self.rng.choice([8, 32, 128])):
                flow, seq = flow_seq(p)
                if self.keys is not None:
                    assert p.hash == toeplitz(self.keys[p.generation], self.inputs[flow])
                    self.hashes_checked += 1
                if seq != self.next_seq.get(flow, 0):
                    self.reordered.append((flow, seq, self.next_seq.get(flow, 0), q.index))
                self.next_seq[flow] = max(seq + 1, self.next_seq.get(flow, 0))
                self.received += 1

    def drain(self):
        for _ in range(100):
            self.nic.run_until_idle()
            before = self.received
            self.poll()
            if self.received == before and not any(q.ready() for q in self.nic.rx_queues):
                return


@pytest.mark.parametrize("ordered", [True, False])
def test_moved_flow_waits_for_its_old_queue(ordered):
    """A flow moved from queue A to queue B by a RETA change: B's consumer polls first.
    With ordering B gets nothing until A's consumer has the old packets; without it (the
    control, which shows the test can fail) B's new packets come first."""
    with Nic.open("sim", rx_queues=QUEUES, ordered=ordered) as nic:
        (template, _), = flow_templates(1, seed=5)
        old = RxModel(nic.regmap, nic.config, nic.generation).process(template)["queue"]
        new = (old + 1) % QUEUES
        nic.wire.send(stamp(template, 0, s) for s in range(5))
        nic.run_until_idle()
        nic.rss.set_table([new if q == old else old if q == new else q
                           for q in nic.rss.table])
        nic.commit()
        nic.wire.send(stamp(template, 0, s) for s in range(5, 10))
        nic.run_until_idle()
        first = nic.rx_queues[new].poll()
        if ordered:
            assert first == []
            assert [flow_seq(p)[1] for p in nic.rx_queues[old].poll()] == [0, 1, 2, 3, 4]
            assert [flow_seq(p)[1] for p in nic.rx_queues[new].poll()] == [5, 6, 7, 8, 9]
        else:
            assert [flow_seq(p)[1] for p in first] == [5, 6, 7, 8, 9]


def test_reconfiguration_under_traffic_keeps_every_flow_in_order():
    """Random RETA changes and key changes committed every few hundred cycles while 64 flows
    stream in: every packet of every flow arrives in order and none is lost, and every
    packet's hash is the software Toeplitz hash under the key of its generation (candidate
    keys from random_keys, the ones the key selector scores)."""
    rng = random.Random(11)
    flows = flow_templates(64, seed=11)
    keys = random_keys(np.random.default_rng(11), 8)
    with Nic.open("sim", rx_queues=QUEUES, rx_ring_size=128) as nic:
        key_of = {nic.generation: nic.rss.key}
        consumers = Consumers(nic, seed=11, inputs=[i for _, i in flows], keys=key_of)
        seq = [0] * len(flows)
        sent = commits = 0
        for round_ in range(60):
            burst = []
            for _ in range(40):
                f = rng.randrange(len(flows)) if rng.random() < 0.5 else rng.randrange(4)
                burst.append(stamp(flows[f][0], f, seq[f]))
                seq[f] += 1
            nic.wire.send(burst)
            sent += len(burst)
            nic.run(rng.choice([64, 200, 400]))
            consumers.poll(skip={rng.randrange(QUEUES)})     # one consumer is late
            if round_ % 3 == 0:
                if round_ % 9 == 0:
                    nic.rss.set_key(bytes(keys[commits % len(keys)]))
                table = list(nic.rss.table)
                for i in rng.sample(range(len(table)), 64):
                    table[i] = rng.randrange(QUEUES)
                nic.rss.set_table(table)
                key_of[nic.commit()] = nic.rss.key
                commits += 1
        consumers.drain()
        counters = nic.counters()
        held = nic._order.held
    assert consumers.reordered == []
    assert consumers.received == sent == counters["frames_in"] == counters["frames_delivered"]
    assert sum(v for k, v in counters.items() if k.startswith("rxq_no_buffer")) == 0
    assert commits == 20 and consumers.hashes_checked == sent
    assert held > 0, "no packet ever had to wait: the test did not exercise the ordering"


def test_policy_loop_rebalances_in_the_loop_without_loss_or_reordering():
    """The RETA balancer (and the key selector) run every 2000 cycles against the NIC's
    bucket counters while skewed traffic flows: heavy flows get spread, order and packets are
    kept, and the later windows are better balanced than the first one."""
    rng = random.Random(3)
    flows = flow_templates(48, seed=3)
    weights = [30 if i < 3 else 1 for i in range(len(flows))]    # three heavy flows
    with Nic.open("sim", rx_queues=QUEUES, rx_ring_size=128) as nic:
        nic.rss.set_table([0] * 256 + [1] * 256)      # a bad start: two queues of four
        nic.commit()
        window: dict[int, int] = {}

        def window_flows() -> FlowSet:
            inputs = [flows[f][1] for f in window]
            packets = [window[f] for f in window]
            window.clear()
            return FlowSet.from_inputs(inputs, packets, [64 * n for n in packets])

        loop = RssPolicyLoop(nic, balancer=RetaBalancer(max_moves=32),
                             selector=KeySelector(candidates=32, margin=0.05, seed=1),
                             flows=window_flows)
        consumers = Consumers(nic, seed=3)
        seq = [0] * len(flows)
        sent = 0
        for _ in range(12):
            for _ in range(10):
                burst = []
                for f in rng.choices(range(len(flows)), weights, k=20):
                    burst.append(stamp(flows[f][0], f, seq[f]))
                    seq[f] += 1
                    window[f] = window.get(f, 0) + 1
                nic.wire.send(burst)
                sent += len(burst)
                nic.run(200)
                consumers.poll()
            loop.step()
        consumers.drain()
        counters = nic.counters()
    assert consumers.reordered == []
    assert consumers.received == sent
    assert sum(v for k, v in counters.items() if k.startswith("rxq_")) == 0
    changed = [d for d in loop.decisions if d.generation is not None]
    assert changed, "the policy never changed anything"
    first, last = loop.decisions[0].max_mean_before, loop.decisions[-1].max_mean_before
    assert last < first
