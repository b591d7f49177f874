"""The host driver (:class:`hetnic.host.nic.Nic`) on the compiled Verilator harness (``"sim"``).

Every public driver method is exercised against the NIC core's Verilog; every received
frame is checked against the software model of the RX pipeline
(:class:`~hetnic.sim.model.rx_pipeline.RxModel`), every sent frame byte for byte. Most tests
share one NIC of the default build (64-bit datapath, 8 RX queues), reset to the
configuration ``Nic.open`` programs before each test.
"""

import dataclasses
import json
import random

import pytest
from scapy.utils import wrpcap

from frames import tcp4, udp4
from hetnic.__main__ import main
from hetnic.config import RxConfig
from hetnic.host.nic import Nic
from hetnic.params import NicParams
from hetnic.rules import Action, FlowRule
from hetnic.protocol import MS_RSS_DEFAULT_KEY, EventType, HashType, QueueDrop, TxStatus
from hetnic.replay import read_capture, record_line, replay_frames
from hetnic.sim.hil import HarnessError
from hetnic.sim.model.rx_pipeline import RxModel
from hetnic.sim.traffic import tcp4_min_frames, traffic_mix

QUEUES = 8                  # the default build: width 64, 8 RX queues
N_RULES = 16
RETA_SIZE = 512
DEFAULT_RULE = N_RULES      # the rule number the default action reports
#: Completion fields compared with the model for every delivered frame.
FIELDS = ("hash", "hash_type", "queue", "instance", "rule", "generation")


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_nic():
    with Nic.open("sim", width=64, rx_queues=QUEUES) as nic:
        yield nic


@pytest.fixture
def nic(shared_nic):
    """The module's NIC with the configuration ``Nic.open`` programs (committed) and nothing
    left in its RX queues, TX completions, wire capture, event rings or interrupt lines."""
    shared_nic.apply(RxConfig(queues=QUEUES))
    shared_nic.run_until_idle()
    drain(shared_nic)
    return shared_nic


def drain(nic):
    for q in nic.rx_queues:
        while q.poll(1024):
            pass
    for q in nic.tx_queues:
        q.completions()
    nic.wire.received()
    list(nic.events())
    nic.irq()


def poll_all(nic) -> dict[int, list]:
    out = {}
    for q in nic.rx_queues:
        out[q.index] = []
        while got := q.poll(1024):
            out[q.index] += got
    return out


def delta(before: dict, after: dict) -> dict:
    """Counters that changed, and by how much."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def check_against_model(model: RxModel, items, received: dict[int, list]) -> int:
    """Per queue, the packets are exactly the frames the model delivers to that queue, in
    order, each with the model's hash, hash type, queue, instance, rule and generation.
    Returns the number of packets checked."""
    expected = [(f, model.process(f, err)) for f, err in items]
    checked = 0
    for q, packets in received.items():
        want = [(f, r) for f, r in expected if r["drop"] == 0 and r["queue"] == q]
        assert [p.data for p in packets] == [f for f, _ in want], f"queue {q}"
        for p, (f, r) in zip(packets, want):
            got = {k: int(getattr(p, k)) for k in FIELDS}
            assert got == {k: r[k] for k in FIELDS}, f"queue {q}, frame {f[:40].hex()}"
            assert p.length == len(f)
            checked += 1
    return checked


def send_and_receive(nic, items) -> dict[int, list]:
    nic.wire.send([f for f, _ in items], [e for _, e in items])
    nic.run_until_idle()
    return poll_all(nic)


def frames_to_queue(nic, queue: int, n: int) -> list[bytes]:
    """``n`` distinct minimum TCP frames the current configuration steers to ``queue``."""
    model = RxModel(nic.regmap, nic.config, nic.generation)
    out = [f for f in tcp4_min_frames(64 * n, flows=64 * n, seed=queue + 100)
           if model.process(f)["queue"] == queue]
    assert len(out) >= n
    return out[:n]


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message, message
    return message


# --- opening and closing -----------------------------------------------------------------------

def test_open_close_and_context_manager():
    with Nic.open("sim", width=64, rx_queues=QUEUES) as nic:
        assert nic.params.rx_queues == QUEUES and nic.params.data_width == 64
        assert len(nic.rx_queues) == QUEUES and len(nic.tx_queues) == 4
        assert nic.generation == 1                  # Nic.open commits once
        assert nic.rss.key == MS_RSS_DEFAULT_KEY
        assert nic.rss.table == [i % QUEUES for i in range(RETA_SIZE)]
        assert all(v == 0 for v in nic.counters().values())
        harness = nic.backend.harness
        assert harness.reg_read(0) == 0x484E4943
    with pytest.raises(HarnessError, match="closed"):  # the context manager closed it
        harness.reg_read(0)
    nic.close()                                     # closing twice is harmless

    nic = Nic.open("sim")
    assert nic.now() > 0
    nic.close()
    nic.close()


def test_fewer_rx_queues_share_the_default_build():
    # rx_queues=4 runs on the 8-queue build (hetnic.params.hil_rx_queues) and uses queues
    # 0..3 only: RSS spreads over them, the table may name no other, the rest stay disabled.
    with Nic.open("sim", width=64, rx_queues=4) as nic:
        lib = nic.backend.harness.lib_path
        assert nic.params.rx_queues == QUEUES       # the build, as its registers say
        assert len(nic.rx_queues) == 4 and nic.queue_count == 4
        assert nic.rss.table == [i % 4 for i in range(RETA_SIZE)]
        ctrl = nic.backend.reg_read_many([nic.regmap.addr("RXQ_CTRL", q) for q in range(QUEUES)])
        assert [c & 1 for c in ctrl] == [1, 1, 1, 1, 0, 0, 0, 0]

        frames = [udp4(sport=20000 + 7 * i, dport=1000 + i) for i in range(48)]
        nic.wire.send(frames)
        nic.run_until_idle()
        got = {q.index: q.poll(256) for q in nic.rx_queues}
        assert sorted(p.data for ps in got.values() for p in ps) == sorted(frames)
        assert all(p.queue == q for q, ps in got.items() for p in ps)
        assert all(got[q] for q in range(4)), {q: len(ps) for q, ps in got.items()}
        c = nic.counters()
        assert c["frames_delivered"] == len(frames)
        assert all(c[f"rxq_no_buffer[{q}]"] == 0 for q in range(QUEUES))

        with pytest.raises(ValueError) as exc:
            nic.rss.set_table([0, 1, 2, 5])
        assert "queue 5" in one_line(exc) and "0 to 3" in str(exc.value)
        with pytest.raises(ValueError) as exc:
            nic.apply(RxConfig(queues=4, reta=[5] * RETA_SIZE))
        assert "queue 5" in one_line(exc) and "0 to 3" in str(exc.value)
        with pytest.raises(ValueError) as exc:
            nic.apply(RxConfig(queues=8))
        assert "from 1 to 4" in one_line(exc)
        assert nic.rss.table == [i % 4 for i in range(RETA_SIZE)]     # nothing staged
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        assert nic.backend.harness.lib_path == lib
        assert len(nic.rx_queues) == 8


def test_closed_nic_raises_a_clear_error():
    nic = Nic.open("sim")
    nic.close()
    uses = {
        "commit": nic.commit, "now": nic.now, "run": lambda: nic.run(10),
        "run_until_idle": nic.run_until_idle, "counters": nic.counters,
        "events": lambda: list(nic.events()), "irq": nic.irq,
        "set_key": lambda: nic.rss.set_key(bytes(40)),
        "rules.add": lambda: nic.rules.add(FlowRule(dst_port=1)),
        "wire.send": lambda: nic.wire.send([bytes(60)]),
        "wire.pending": nic.wire.pending, "wire.received": nic.wire.received,
        "rx poll": lambda: nic.rx_queues[0].poll(), "rx ready": nic.rx_queues[0].ready,
        "tx send": lambda: nic.tx_queues[0].send(bytes(60)),
    }
    unclear = {}
    for name, use in uses.items():
        try:
            use()
        except RuntimeError as exc:
            if "closed" not in str(exc):
                unclear[name] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            unclear[name] = f"{type(exc).__name__}: {exc}"
        else:
            unclear[name] = "no error"
    assert not unclear, unclear


# --- RSS key, table, commit ----------------------------------------------------------------------

def test_key_table_commit_steer_like_the_model(nic):
    regmap = nic.regmap
    generation = nic.generation
    key = bytes(range(1, 41))
    nic.rss.set_key(key)
    nic.rss.set_table([3, 5])           # divides 512: repeated
    assert nic.rss.key == key
    assert nic.rss.table == [3, 5] * (RETA_SIZE // 2)
    assert nic.backend.reg_read_many([regmap.addr("RETA", i) for i in range(RETA_SIZE)]) == \
        [3, 5] * (RETA_SIZE // 2)
    assert nic.commit() == generation + 1 == nic.generation

    items = traffic_mix(240, seed=7)
    received = send_and_receive(nic, items)
    model = RxModel(regmap, nic.config, nic.generation)
    assert check_against_model(model, items, received) > 150
    assert {q for q, got in received.items() if got} == {3, 5}
    # the new key is in use: the default key would have given other hashes
    old = RxModel(regmap, RxConfig(queues=QUEUES), nic.generation)
    hashed = [p for got in received.values() for p in got if p.hash_type != HashType.NONE]
    assert sum(p.hash != old.process(p.data)["hash"] for p in hashed) > 0.9 * len(hashed)

    # one generation per commit, also without changes; later frames carry it
    assert nic.commit() == generation + 2
    assert nic.commit() == generation + 3
    items = [(f, False) for f in tcp4_min_frames(40, flows=40)]
    received = send_and_receive(nic, items)
    model = RxModel(regmap, nic.config, generation + 3)
    assert check_against_model(model, items, received) == 40


def test_key_and_table_errors_write_nothing(nic):
    regmap = nic.regmap
    key_regs = [regmap.addr("RSS_KEY", k) for k in range(10)]
    table_regs = [regmap.addr("RETA", i) for i in range(RETA_SIZE)]
    before = (nic.rss.key, nic.rss.table, nic.backend.reg_read_many(key_regs),
              nic.backend.reg_read_many(table_regs), dataclasses.asdict(nic.config))

    with pytest.raises(ValueError) as exc:
        nic.rss.set_key(bytes(39))
    assert "40 bytes" in one_line(exc) and "39" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        nic.rss.set_table([0] * (RETA_SIZE - 1) + [QUEUES])
    assert f"queue {QUEUES}" in one_line(exc) and f"0 to {QUEUES - 1}" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        nic.rss.set_table([0, 1, 2])
    assert "512" in one_line(exc) and "not 3" in str(exc.value)
    with pytest.raises(ValueError):
        nic.rss.set_table([])
    with pytest.raises(ValueError):
        nic.rss.set_table([0, -1])
    with pytest.raises(ValueError):
        nic.rss.set_key("not bytes")

    after = (nic.rss.key, nic.rss.table, nic.backend.reg_read_many(key_regs),
             nic.backend.reg_read_many(table_regs), dataclasses.asdict(nic.config))
    assert after == before


# --- rules ---------------------------------------------------------------------------------------

def test_rules_match_drop_and_remove(nic):
    dns = FlowRule(ip_proto="udp", dst_port=53, action=Action(instance=3))
    discard = FlowRule(ip_proto="udp", dst_port=9, action=Action(drop=True))
    assert nic.rules.add(dns) == 0
    assert nic.rules.add(discard) == 1
    assert len(nic.rules) == 2 and dict(nic.rules) == {0: dns, 1: discard}
    generation = nic.commit()

    f53 = [udp4(sport=1000 + i, dport=53) for i in range(3)]
    f9 = [udp4(sport=2000 + i, dport=9) for i in range(2)]
    other = [tcp4(sport=3000)]
    items = [(f, False) for f in f53 + f9 + other]
    before = nic.counters()
    received = send_and_receive(nic, items)
    change = delta(before, nic.counters())
    packets = [p for got in received.values() for p in got]
    assert sorted(p.data for p in packets) == sorted(f53 + other)
    for p in packets:
        if p.data in f53:
            assert (p.rule, p.instance) == (0, 3)
        else:
            assert (p.rule, p.instance) == (DEFAULT_RULE, 0)
    assert change["drop[rule]"] == 2 and change["frames_dropped"] == 2
    assert change["rule_hits[0]"] == 3 and change["rule_hits[1]"] == 2
    assert change["rule_hits[default]"] == 1 and change["frames_delivered"] == 4
    # the model, given the rules in their slots, agrees on every field
    model = RxModel(nic.regmap, dataclasses.replace(nic.config, rules=[dns, discard]),
                    generation)
    assert check_against_model(model, items, received) == 4

    nic.rules.remove(1)
    assert dict(nic.rules) == {0: dns}
    nic.commit()
    before = nic.counters()
    received = send_and_receive(nic, [(f, False) for f in f9])
    change = delta(before, nic.counters())
    packets = [p for got in received.values() for p in got]
    assert sorted(p.data for p in packets) == sorted(f9)
    assert all(p.rule == DEFAULT_RULE for p in packets)
    assert "drop[rule]" not in change and change["rule_hits[default]"] == 2

    with pytest.raises(ValueError) as exc:
        nic.rules.remove(1)
    assert "slot 1" in one_line(exc)
    with pytest.raises(ValueError):
        nic.rules.remove(N_RULES)
    assert nic.rules.add(discard) == 1             # the lowest free slot again
    for slot in range(2, N_RULES):
        assert nic.rules.add(FlowRule(dst_port=10_000 + slot)) == slot
    with pytest.raises(ValueError) as exc:
        nic.rules.add(FlowRule(dst_port=1))
    assert f"all {N_RULES} rule slots" in one_line(exc)
    with pytest.raises(ValueError):
        nic.rules.add(FlowRule(dst_port=1), slot=N_RULES)
    assert len(nic.rules) == N_RULES


def test_config_reflects_rules_added(nic):
    rule = FlowRule(ip_proto="udp", dst_port=53, action=Action(instance=3))
    nic.rules.add(rule)
    generation = nic.commit()
    items = [(udp4(dport=53), False)]
    received = send_and_receive(nic, items)
    assert check_against_model(RxModel(nic.regmap, nic.config, generation), items,
                               received) == 1


def test_default_action_hash_settings_and_apply(nic):
    nic.rss.configure(symmetric=True, hash_types=[HashType.IPV4_TCP, HashType.IPV6])
    nic.rules.set_default(Action(instance=7, reta_offset=8, reta_size=4))
    assert nic.config.symmetric and nic.config.default.instance == 7
    generation = nic.commit()
    items = traffic_mix(200, seed=9)
    received = send_and_receive(nic, items)
    model = RxModel(nic.regmap, nic.config, generation)
    assert check_against_model(model, items, received) > 150
    packets = [p for got in received.values() for p in got]
    assert {p.instance for p in packets} == {7}
    assert {p.queue for p in packets} <= {(8 + i) % QUEUES for i in range(4)}
    assert {p.hash_type for p in packets} <= {HashType.NONE, HashType.IPV4_TCP, HashType.IPV6}

    config = RxConfig(queues=QUEUES, key=bytes(range(40)), rules=[
        FlowRule(ip_proto="tcp", action=Action(instance=2, reta_size=2)),
        FlowRule(ip_proto="udp", dst_port=(0, 1000), action=Action(drop=True))])
    assert nic.apply(config) == generation + 1
    assert dict(nic.rules) == {0: config.rules[0], 1: config.rules[1]}
    received = send_and_receive(nic, items)
    model = RxModel(nic.regmap, config, generation + 1)
    assert check_against_model(model, items, received) > 100

    bad = RxConfig(queues=QUEUES, reta=[QUEUES + 1] * RETA_SIZE)
    with pytest.raises(ValueError):
        nic.apply(bad)
    assert nic.generation == generation + 1 and nic.config.reta is None


# --- TX ------------------------------------------------------------------------------------------

def test_tx_single_batch_gather_on_the_wire(nic):
    rng = random.Random(4)
    msgs = [bytes(rng.getrandbits(8) for _ in range(n))
            for n in (60, 61, 100, 1514, 64, 1, 9, 255)]
    tx = nic.tx_queues[0]
    first = tx.ring.next_cookie
    cookies = [tx.send(msgs[0]), tx.send_batch(msgs[1:4]), tx.send_gather(msgs[4:])]
    assert cookies == [first, first + 1, first + 2]
    nic.run_until_idle()
    assert nic.wire.received() == msgs
    assert nic.wire.received() == []
    done = [(d.cookie, d.status, d.messages, d.bytes) for d in tx.completions()]
    assert done == [(cookies[0], TxStatus.OK, 1, len(msgs[0])),
                    (cookies[1], TxStatus.OK, 3, sum(map(len, msgs[1:4]))),
                    (cookies[2], TxStatus.OK, 4, sum(map(len, msgs[4:])))]
    assert tx.completions() == []

    # a full batch of 64 on another queue, and a few single frames after it, in order
    batch = [bytes([i]) * (60 + i) for i in range(64)]
    singles = [bytes([0xA0 + i]) * 70 for i in range(5)]
    tx1 = nic.tx_queues[1]
    c = tx1.send_batch(batch)
    for m in singles:
        tx1.send(m)
    nic.run_until_idle()
    assert nic.wire.received() == batch + singles
    done = tx1.completions()
    assert [(d.cookie, d.status, d.messages) for d in done][:1] == [(c, TxStatus.OK, 64)]
    assert [d.bytes for d in done] == [sum(map(len, batch))] + [70] * 5
    assert tx1.errors == 0

    with pytest.raises(ValueError):
        tx.send_batch([])
    with pytest.raises(ValueError):
        tx.send_batch([bytes(60)] * 65)
    with pytest.raises(TypeError):
        tx.send_batch(bytes(60))


# --- RX queues -----------------------------------------------------------------------------------

def test_poll_reposts_buffers():
    """200 frames to one queue with a 16-entry ring: the consumer polls every 100 cycles and
    every frame arrives, in order, none dropped."""
    with Nic.open("sim", rx_ring_size=16) as nic:
        nic.rss.set_table([0])
        nic.commit()
        q = nic.rx_queues[0]
        assert not q.ready()
        with pytest.raises(ValueError):
            q.poll(0)
        frames = tcp4_min_frames(200, flows=200, seed=3)
        nic.wire.send(frames)
        got = []
        for _ in range(1000):
            nic.run(100)
            got += q.poll(16)
            if len(got) == len(frames):
                break
        assert [p.data for p in got] == frames
        assert not q.ready()
        c = nic.counters()
        assert c["rxq_no_buffer[0]"] == 0 and c["rxq_too_long[0]"] == 0
        assert c["queue_packets[0]"] == 200 and c["frames_delivered"] == 200
        nic.wire.send(frames[:1])
        nic.run_until_idle()
        assert q.ready()
        assert [p.data for p in q.poll()] == frames[:1]


def test_frame_longer_than_the_buffer_is_dropped_and_counted():
    """A frame longer than the posted buffer is dropped and counted in RXQ_TOO_LONG; the
    buffer stays posted and takes the next frame; an armed queue reports the drop."""
    with Nic.open("sim", rx_buffer_size=128) as nic:
        list(nic.events())
        small, big = frames_to_queue(nic, 1, 2)
        big = big + bytes(200)              # longer than 128 bytes, the same flow
        assert RxModel(nic.regmap, nic.config, 1).process(big)["queue"] == 1
        nic.rx_queues[1].arm(0)
        nic.wire.send([big, small])
        nic.run_until_idle()
        c = nic.counters()
        assert c["rxq_too_long[1]"] == 1 and c["rxq_no_buffer[1]"] == 0
        packets = nic.rx_queues[1].poll()
        assert [p.data for p in packets] == [small] and packets[0].desc_index == 0
        assert [(e.type, e.source, e.info) for e in nic.events()] == \
            [(EventType.DROP, 1, QueueDrop.TOO_LONG)]


def test_jumbo_frames_beyond_the_data_fifo_do_not_wedge_the_nic(nic):
    """Frames longer than the RX data FIFO (2 KiB) used to fill it while the queue manager
    waited for their record, so the NIC stopped taking frames for good. Now they are cut,
    reported OVERSIZE even with MAX_FRAME above the limit, and traffic after them flows."""
    config = RxConfig(queues=QUEUES, max_frame=9000)
    generation = nic.apply(config)
    normal = frames_to_queue(nic, 2, 20)
    items = [(bytes([0x55]) * 9000, False), (normal[0] + bytes(2600), False)]
    items += [(f, False) for f in normal[1:]]
    before = nic.counters()
    received = send_and_receive(nic, items)
    assert nic.wire.pending() == 0
    changed = delta(before, nic.counters())
    assert changed["drop[oversize]"] == 2 and changed["frames_in"] == len(items)
    model = RxModel(nic.regmap, config, generation)
    assert check_against_model(model, items, received) == len(normal) - 1


def test_counters_accumulate(nic):
    frames1 = tcp4_min_frames(50, size=100, flows=50, seed=11)
    frames2 = [f for f, e in traffic_mix(120, seed=12) if not e]
    c0 = nic.counters()
    nic.wire.send(frames1)
    nic.run_until_idle()
    polled1 = poll_all(nic)
    c1 = nic.counters()
    nic.wire.send(frames2)
    nic.run_until_idle()
    polled2 = poll_all(nic)
    c2 = nic.counters()

    assert c1["frames_in"] - c0["frames_in"] == 50
    assert c1["bytes_in"] - c0["bytes_in"] == 50 * 100
    assert c2["frames_in"] - c1["frames_in"] == len(frames2)
    assert c2["bytes_in"] - c1["bytes_in"] == sum(map(len, frames2))
    assert all(c2[k] >= c1[k] >= c0[k] for k in c0)
    for before, after, polled in ((c0, c1, polled1), (c1, c2, polled2)):
        for q in range(QUEUES):
            assert after[f"queue_packets[{q}]"] - before[f"queue_packets[{q}]"] == \
                len(polled[q])
            assert after[f"queue_bytes[{q}]"] - before[f"queue_bytes[{q}]"] == \
                sum(p.length for p in polled[q])
        assert after["frames_delivered"] - before["frames_delivered"] == \
            sum(map(len, polled.values()))
        assert after["frames_in"] - before["frames_in"] == \
            (after["frames_delivered"] - before["frames_delivered"]) + \
            (after["frames_dropped"] - before["frames_dropped"])
    assert c2["frames_dropped"] > c1["frames_dropped"]     # the mix has malformed frames


# --- events, interrupts, time ----------------------------------------------------------------

def test_events_arm_and_irq():
    with Nic.open("sim") as nic:
        assert [(e.type, e.source, e.info) for e in nic.events()] == \
            [(EventType.COMMIT_DONE, 0, 1)]       # the commit of Nic.open
        nic.irq()
        assert nic.irq() == 0

        generation = nic.commit()
        nic.run(200)
        assert nic.irq() == 0b0001               # the line of event queue 0
        assert [(e.type, e.info) for e in nic.event_rings[0].reap()] == \
            [(EventType.COMMIT_DONE, generation)]
        assert list(nic.events()) == []

        seen = []
        nic.on_event(seen.append)
        frames = frames_to_queue(nic, 2, 6)
        nic.rx_queues[2].arm(1)
        nic.wire.send(frames[:3])
        nic.run_until_idle()
        assert [(e.type, e.source) for e in seen] == [(EventType.RX_COMPLETION, 2)]
        assert nic.irq() == 0b0010
        assert list(nic.events()) == []          # the callback took it

        nic.wire.send(frames[3:5])               # disarmed: no event
        nic.run_until_idle()
        assert len(seen) == 1 and nic.irq() == 0
        nic.rx_queues[2].arm(3)
        nic.wire.send(frames[5:])
        nic.run_until_idle()
        assert [(e.type, e.source) for e in seen[1:]] == [(EventType.RX_COMPLETION, 2)]
        assert nic.irq() == 0b1000
        assert [p.data for p in nic.rx_queues[2].poll()] == frames
        with pytest.raises(ValueError):
            nic.rx_queues[0].arm(4)


def test_run_now_age_and_run_until_idle(nic):
    t = nic.now()
    nic.run(1234)
    assert nic.now() == t + 1234
    nic.run(0)
    assert nic.now() == t + 1234
    with pytest.raises(ValueError):
        nic.run(-1)

    frames = tcp4_min_frames(300, flows=300, seed=5)
    nic.wire.send(frames)
    assert nic.wire.pending() > 0
    t = nic.now()
    ran = nic.run_until_idle()
    assert ran > 300 * 8 and nic.now() == t + ran
    assert nic.wire.pending() == 0
    packets = [p for got in poll_all(nic).values() for p in got]
    assert len(packets) == 300
    age = nic.age(packets[-1])
    assert 0 < age < ran
    nic.run(1000)
    assert nic.age(packets[-1]) == age + 1000
    assert nic.age(packets[0]) > nic.age(packets[-1])


# --- a consumer that stops polling, a full wire ---------------------------------------------

def test_stopped_consumer_drops_are_counted_per_queue():
    with Nic.open("sim", rx_ring_size=16) as nic:
        model = RxModel(nic.regmap, nic.config, nic.generation)
        frames = tcp4_min_frames(3000, flows=256, seed=8)
        per_queue = [0] * QUEUES
        for f in frames:
            per_queue[model.process(f)["queue"]] += 1
        assert min(per_queue) > 16
        nic.wire.send(frames)
        nic.run_until_idle()
        assert nic.wire.pending() == 0 and nic.backend.harness.wire_pending() == 0
        c = nic.counters()
        assert c["frames_in"] == 3000
        for q in range(QUEUES):
            assert c[f"rxq_no_buffer[{q}]"] == per_queue[q] - 16, f"queue {q}"
            assert c[f"rxq_too_long[{q}]"] == 0
        got = poll_all(nic)
        for q in range(QUEUES):
            want = [f for f in frames if model.process(f)["queue"] == q][:16]
            assert [p.data for p in got[q]] == want, f"queue {q}"
            # QUEUE_PACKETS counts the frames steered to the queue, dropped ones included
            assert c[f"queue_packets[{q}]"] == len(got[q]) + c[f"rxq_no_buffer[{q}]"]
        assert all(q.poll() == [] for q in nic.rx_queues)


def test_wire_queue_is_bounded():
    """10 MB of frames into a 64 KiB wire queue: Wire.send runs the clock while the queue is
    full, never holds much more than the limit, and every frame reaches the NIC."""
    limit, size = 65536, 1500
    with Nic.open("sim", wire_queue_bytes=limit, rx_ring_size=16) as nic:
        frames = tcp4_min_frames((10 << 20) // size + 1, size=size, flows=64, seed=2)
        harness = nic.backend.harness
        send, peak = nic.backend.wire_send, [0]

        def spy(batch, errors=None):
            took = send(batch, errors)
            peak[0] = max(peak[0], harness.wire_pending())
            return took

        nic.backend.wire_send = spy
        t = nic.now()
        assert nic.wire.send(frames) == len(frames)
        assert nic.wire.sent == len(frames)
        assert 0 < peak[0] * size <= limit + size
        assert nic.wire.pending() * size <= limit + size
        assert nic.now() - t > (len(frames) - limit // size) * size // 8   # the clock ran
        nic.run_until_idle()
        assert nic.wire.pending() == 0
        assert nic.counters()["frames_in"] == len(frames)
        assert harness.counters()["rx_frames"] == len(frames)


def test_wire_send_checks_its_input(nic):
    with pytest.raises(ValueError):
        nic.wire.send([bytes(60), b""])
    with pytest.raises(ValueError):
        nic.wire.send([bytes(60)] * 2, [False])
    assert nic.wire.pending() == 0
    assert nic.wire.send([]) == 0


# --- replay ----------------------------------------------------------------------------------

def test_replay_of_a_pcap_matches_the_model(tmp_path, capsys):
    items = traffic_mix(1500)
    frames = [f for f, _ in items]
    pcap = tmp_path / "mix.pcap"
    wrpcap(str(pcap), frames, linktype=1)
    assert read_capture(pcap) == frames

    config = RxConfig(queues=QUEUES)
    result = replay_frames(read_capture(pcap), config, rx_queues=QUEUES)
    assert result.mismatches == []
    assert len(result.records) == len(frames)
    params = NicParams(data_width=64, rx_queues=QUEUES, tx_queues=4, event_queues=4)
    model = RxModel(params.regmap(), config, result.stats["generation"])
    delivered = 0
    for frame, rec in zip(frames, result.records):
        want = model.process(frame)
        if rec["delivered"]:
            delivered += 1
            assert want["drop"] == 0
            assert {k: rec[k] for k in FIELDS} == {k: want[k] for k in FIELDS}
        else:
            assert rec["drop"] != 0 or rec["queue_drop"], rec     # dropped, with a reason
            assert rec["drop"] == want["drop"]
    assert delivered == result.stats["delivered"] > 1300
    assert result.counters["frames_in"] == len(frames)
    assert result.counters["frames_delivered"] == delivered + result.stats["queue_drops"]

    out = tmp_path / "out.jsonl"
    assert main(["replay", str(pcap), "--out", str(out), "--queues", str(QUEUES)]) == 0
    err = capsys.readouterr().err
    assert "0 mismatches" in err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(frames)
    assert [line["index"] for line in lines] == list(range(len(frames)))
    assert [line["len"] for line in lines] == [len(f) for f in frames]
    keys = ("hash", "hash_type", "queue", "instance", "rule", "drop", "delivered")
    for i, (line, rec) in enumerate(zip(lines, result.records)):
        want = record_line(i, rec, N_RULES)
        assert {k: line[k] for k in keys} == {k: want[k] for k in keys}, i


def test_cli_replay_of_a_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["replay", "/nonexistent.pcap", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "/nonexistent.pcap" in err
    assert "Traceback" not in err


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("params, name", [
    ({"width": 12}, "width"),
    ({"width": "64"}, "width"),
    ({"rx_queues": 0}, "rx_queues"),
    ({"rx_queues": 300}, "rx_queues"),
    ({"tx_queues": 0}, "tx_queues"),
    ({"reta_size": 500}, "reta_size"),
    ({"colour": "blue"}, "colour"),
    ({"rx_ring_size": 3}, "rx_ring_size"),
    ({"tx_ring_size": 1 << 16}, "tx_ring_size"),
    ({"mem_size": 1 << 20}, "mem_size"),
    ({"mem_size": "lots"}, "mem_size"),
    ({"ifg_bytes": -1}, "ifg_bytes"),
    ({"wire_queue_bytes": 0}, "wire_queue_bytes"),
    ({"trace": "waves.txt"}, "trace"),
])
def test_open_rejects_impossible_parameters(params, name):
    with pytest.raises(ValueError) as exc:
        Nic.open("sim", **params)
    assert name in one_line(exc)


def test_open_rejects_unknown_backends():
    with pytest.raises(ValueError) as exc:
        Nic.open("foo")
    assert "foo" in one_line(exc) and "sim" in str(exc.value)
    # "serial:DEVICE" is the board backend (tests/host/test_board_backend.py); it needs data=.
    with pytest.raises(ValueError) as exc:
        Nic.open("serial:/dev/ttyUSB0", data=None)
    assert "data must name the network interface" in one_line(exc)
