"""The NIC core's Verilog on Verilator: host ring code over cocotbext-axi's AxiRam, frames on
the MAC ports (:mod:`hetnic.sim.nic_tb`). Every received frame is checked against the
software model; every sent message byte for byte."""

import random

import pytest

from hetnic.config import RxConfig
from hetnic.params import NIC_CORE_W64, NicParams
from hetnic.protocol import EventType
from hetnic.regs import (QUEUE_CTRL_ENABLE, QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA,
                         QUEUE_STATUS_DOORBELL)
from hetnic.sim.model.rx_pipeline import RxModel
from hetnic.sim.nic_sim import run_nic_job
from hetnic.sim.traffic import traffic_mix

pytestmark = pytest.mark.timeout(900)

# The default build (the one exported to rtl/): 64 RX queues, 4 TX queues, 4 event queues.
BUILD = NIC_CORE_W64


def check_rx_against_model(result, delivered, queues):
    """Per queue: the frames the host received are the model's frames for that queue, in
    order, minus the ones counted in RXQ_NO_BUFFER; each with the model's metadata."""
    regs = result["registers"]
    for q in range(queues):
        want = [(f, e) for f, e in delivered if e["queue"] == q]
        got = result["rx"].get(str(q), [])
        assert len(got) + regs[f"NO_BUFFER[{q}]"] == len(want), f"queue {q}"
        it = iter(want)
        for p in got:
            for f, e in it:
                if bytes.fromhex(p["data"]) == f:
                    assert (p["hash"], p["hash_type"], p["rule"], p["generation"]) == \
                        (e["hash"], e["hash_type"], e["rule"], 1)
                    break
            else:
                raise AssertionError(f"queue {q}: frame out of order or not expected")


def rx_job(build, config, frames, **extra):
    regmap = build.regmap()
    model = RxModel(regmap, config, generation=1)
    delivered = [(f, e) for f, e in ((f, model.process(f)) for f in frames) if e["drop"] == 0]
    reads = {f"NO_BUFFER[{q}]": regmap.addr("RXQ_NO_BUFFER", q)
             for q in range(build.rx_queues)}
    reads.update({f"STATUS[{q}]": regmap.addr("RXQ_STATUS", q)
                  for q in range(build.rx_queues)})
    job = {"config_writes": config.register_writes(regmap), "rx_buffer_size": 2048,
           "rx_frames": [f.hex() for f in frames], "expect_rx": 0, "drain_cycles": 4000,
           "read_registers": reads, **extra}
    return run_nic_job(build, job), delivered


def test_rx_frames_land_in_their_queues():
    """Random traffic over 8 queues with DMA backpressure (write responses held back half the
    cycles). Queues 0..6 have 8-entry rings the
    host keeps re-posting (they wrap many times; a frame that finds no buffer is dropped and
    counted); queue 7 is never set up (every frame for it is dropped and counted). Every
    delivered frame matches the model, in order; nothing outside the rings and buffers is
    written."""
    frames = [f for f, err in traffic_mix(400, seed=21) if not err and len(f) > 0]
    result, delivered = rx_job(BUILD, RxConfig(queues=8), frames,
                               rx_queues_used=list(range(7)), rx_ring_size=8, dma_pause=0.2,
                               dma_b_pause=0.5, seed=21)
    assert result["guard_ok"]
    check_rx_against_model(result, delivered, 8)
    regs = result["registers"]
    assert all(regs[f"STATUS[{q}]"] == 0 for q in range(8))
    assert sum(len(v) for v in result["rx"].values()) > len(delivered) // 2
    assert regs["NO_BUFFER[7]"] == sum(1 for _, e in delivered if e["queue"] == 7) > 0


def test_rx_queue_disable_enable_under_traffic():
    """Queue 1 is disabled while frames flow and enabled again: its frames in between are
    dropped and counted, and no completion is lost or repeated."""
    frames = [f for f, err in traffic_mix(300, seed=33, kinds={"ipv4_tcp": 3, "ipv6_udp": 1})
              if not err]
    result, delivered = rx_job(BUILD, RxConfig(queues=2), frames, rx_queues_used=[0, 1],
                               rx_ring_size=256, seed=33,
                               pause_queue={"queue": 1, "after_frames": 60, "cycles": 600})
    check_rx_against_model(result, delivered, 2)
    regs = result["registers"]
    assert 0 < regs["NO_BUFFER[1]"] < sum(1 for _, e in delivered if e["queue"] == 1)
    assert regs["NO_BUFFER[0]"] == 0 and result["guard_ok"]


# A second cocotb build of the core (~90 s on a fresh machine): the default run keeps the
# 64-bit core; at 8 bits the blocks run in Amaranth's simulator (tests/gateware: the TX
# engine, DMA and RX queues at 8 and 64 bits) and the RX pipeline's Verilog runs in the
# board core, so the whole core's 8-bit build is in the slow tier.
@pytest.mark.slow
def test_rx_and_tx_at_8_bits():
    """The whole core at an 8-bit datapath (a small build)."""
    build = NicParams(data_width=8, rx_queues=4, tx_queues=1, event_queues=1)
    frames = [f for f, err in traffic_mix(40, seed=8, kinds={"ipv4_tcp": 2, "ipv6_udp": 1})
              if not err]
    messages = [bytes([n]) * (17 + 13 * n) for n in range(5)]
    result, delivered = rx_job(build, RxConfig(queues=4), frames, rx_queues_used=[0, 1, 2, 3],
                               rx_ring_size=64, tx_queues_used=[0], tx_ring_size=64,
                               tx_items=[{"queue": 0, "mode": "batch",
                                          "messages": [m.hex() for m in messages]}],
                               expect_tx_frames=5, dma_pause=0.1, seed=8)
    check_rx_against_model(result, delivered, 4)
    assert sum(len(v) for v in result["rx"].values()) == len(delivered)
    assert [bytes.fromhex(h) for h in result["tx_frames"]] == messages


def test_tx_work_items_byte_exact():
    rng = random.Random(4)
    print("seed 4")
    items, expected = [], []
    for n in range(12):
        mode = ("batch", "gather", "single")[n % 3]
        count = 1 if mode == "single" else rng.randrange(1, 33)
        messages = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
                    for _ in range(count)]
        items.append({"queue": n % 2, "mode": mode, "messages": [m.hex() for m in messages]})
        expected.append(messages)
    result = run_nic_job(BUILD, {
        "config_writes": RxConfig(queues=8).register_writes(BUILD.regmap()),
        "tx_queues_used": [0, 1], "tx_ring_size": 64, "tx_items": items,
        "expect_tx_frames": sum(len(m) for m in expected), "dma_pause": 0.2, "tx_pause": 0.3,
        "seed": 4})
    frames = [bytes.fromhex(h) for h in result["tx_frames"]]
    assert sorted(frames) == sorted(m for ms in expected for m in ms)
    for q in (0, 1):     # within a queue, frames come in work-item and message order
        want = [m for it, ms in zip(items, expected) if it["queue"] == q for m in ms]
        got = [f for f in frames if f in set(want)]
        assert got == want
    assert len(result["tx_done"]) == len(items)
    assert all(d["status"] == 0 for d in result["tx_done"])


def test_events_and_interrupts():
    """Armed RX queue 0 and TX queue 1 each report one completion event to event queue 1,
    a COMMIT applied during traffic reports COMMIT_DONE with the new generation to event
    queue 0, and every event raises its interrupt line (no coalescing)."""
    regmap = BUILD.regmap()
    first, second = RxConfig(queues=1), RxConfig(queues=1, symmetric=True)
    frames = [f for f, err in traffic_mix(40, seed=5, kinds={"ipv4_tcp": 1}) if not err]
    result = run_nic_job(BUILD, {
        "config_writes": first.register_writes(regmap), "rx_queues_used": [0],
        "rx_ring_size": 64, "rx_buffer_size": 2048, "rx_frames": [f.hex() for f in frames],
        "expect_rx": len(frames), "tx_queues_used": [1], "tx_ring_size": 64,
        "tx_items": [{"queue": 1, "mode": "batch", "messages": ["ab" * 60] * 3}] * 2,
        "expect_tx_frames": 6, "event_queues_used": [0, 1], "arm_rx": {"0": 1},
        "arm_tx": {"1": 1}, "late_commit": second.register_writes(regmap),
        "drain_cycles": 2000, "seed": 5})
    events = sorted((e["eq"], e["type"], e["source"], e["info"]) for e in result["events"])
    kinds = [(eq, t, src) for eq, t, src, _ in events]
    assert kinds == [(0, EventType.COMMIT_DONE, 0), (1, EventType.RX_COMPLETION, 0),
                     (1, EventType.TX_COMPLETION, 1)], events
    assert events[0][3] == 2                        # the second commit: generation 2
    assert result["stats"]["irq_pulses"] == 3


def test_bad_input_is_refused_and_counted():
    """Doorbells past the ring, rings of size 0 or not a power of two, a descriptor whose
    buffer would wrap past 2**64, and malformed work items: each gives its STATUS bit or error
    completion; host memory outside the rings and buffers is untouched; other queues go on."""
    from kit import pack_image
    from hetnic.protocol import QueueDrop, TxOpcode, TxStatus, TxWorkItem
    regmap = BUILD.regmap()
    config = RxConfig(queues=4)
    frames = [f for f, err in traffic_mix(120, seed=8, kinds={"ipv4_tcp": 1}) if not err]
    bad_header = pack_image(TxWorkItem, opcode=TxOpcode.BATCH, count=0, cookie=7).hex()
    bad_opcode = (b"\x09"
                  + pack_image(TxWorkItem, opcode=TxOpcode.NOP, count=1, cookie=8)[1:]).hex()
    off, on = QUEUE_CTRL_ENABLE.encode(0), QUEUE_CTRL_ENABLE.encode(1)
    raw = [
        (regmap.addr("RXQ_PROD", 0), 64 + 64 + 5),      # past a 64-entry ring
        (regmap.addr("RXQ_CTRL", 3), off),              # queue 3: size 0, then size 3
        (regmap.addr("RXQ_SIZE", 3), 0), (regmap.addr("RXQ_CTRL", 3), on),
        (regmap.addr("RXQ_SIZE", 3), 3), (regmap.addr("RXQ_CTRL", 3), on),
        (regmap.addr("TXQ_PROD", 0), 500),              # past a 64-slot ring
    ]
    reads = {f"{r}[{q}]": regmap.addr(f"RXQ_{r}", q)
             for r in ("STATUS", "CTRL", "NO_BUFFER", "CONS") for q in range(4)}
    reads["TXQ_STATUS[0]"] = regmap.addr("TXQ_STATUS", 0)
    result = run_nic_job(BUILD, {
        "config_writes": config.register_writes(regmap), "rx_queues_used": [0, 1, 2, 3],
        "rx_ring_size": 64, "rx_buffer_size": 2048, "rx_frames": [f.hex() for f in frames],
        "expect_rx": 0, "drain_cycles": 3000, "raw_writes": raw,
        "corrupt_rx_descriptor": [{"queue": 2, "index": 0, "addr": 2**64 - 8}],
        "tx_queues_used": [0], "tx_ring_size": 64,
        "tx_items": [{"queue": 0, "mode": "raw", "slots": [bad_header]},
                     {"queue": 0, "mode": "raw", "slots": [bad_opcode]},
                     {"queue": 0, "mode": "batch", "messages": ["cd" * 70] * 4}],
        "expect_tx_frames": 4, "read_registers": reads, "seed": 8,
        "event_queues_used": [0], "arm_rx": {"3": 0}})
    regs = result["registers"]
    assert result["guard_ok"]
    assert QUEUE_STATUS_DOORBELL.decode(regs["STATUS[0]"])   # doorbell past the ring, ignored
    assert QUEUE_STATUS_BAD_SIZE.decode(regs["STATUS[3]"])   # bad size: stays disabled
    assert QUEUE_CTRL_ENABLE.decode(regs["CTRL[3]"]) == 0
    assert QUEUE_STATUS_DMA.decode(regs["STATUS[2]"]) and regs["CONS[2]"] == 0  # bad descriptor
    assert regs["STATUS[1]"] == 0 and len(result["rx"]["1"]) > 0  # an honest queue goes on
    assert len(result["rx"]["0"]) > 0                              # so does queue 0
    assert regs["NO_BUFFER[3]"] > 0
    # The armed queue 3 reports its first drop once (then it is disarmed).
    assert [(e["type"], e["source"], e["info"]) for e in result["events"]] == \
        [(EventType.DROP, 3, QueueDrop.NO_BUFFER)]
    statuses = [d["status"] for d in result["tx_done"]]
    assert statuses == [TxStatus.BAD_COUNT, TxStatus.BAD_OPCODE, TxStatus.OK]
    assert QUEUE_STATUS_DOORBELL.decode(regs["TXQ_STATUS[0]"])
    assert len(result["tx_frames"]) == 4
