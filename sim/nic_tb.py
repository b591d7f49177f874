"""cocotb testbench for the NIC core's Verilog (``NicCoreTop``), driven by the host ring code.

cocotbext-axi provides the world around the core: ``AxiRam`` is host memory on ``m_axi``,
``AxiLiteMaster`` the register bus, ``AxiStreamSource``/``AxiStreamSink`` the MAC ports. The
unmodified host ring code (:mod:`hetnic.host.rx_ring` and its siblings) sets up the rings in that memory, posts
buffers, builds work items and reaps completions, exactly as a driver would. The job (JSON in
``HETNIC_JOB``) lists the configuration, the frames to receive and the messages to send; the
result (``HETNIC_OUT``) lists what the host saw. :func:`hetnic.sim.nic_sim.run_nic_job` is the
Python side.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import (AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiStreamBus,
                           AxiStreamFrame, AxiStreamSink, AxiStreamSource)

from hetnic.params import NicParams
from hetnic.regs import EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, QUEUE_EQ_ARM, QUEUE_EQ_QUEUE
from hetnic.sim.cocotb_backend import RamMemory
from hetnic.sim.rx_tb import pause_generator
from hetnic.host.event_ring import EventRing
from hetnic.host.memory import MemoryAllocator
from hetnic.host.queue_setup import queue_register_writes
from hetnic.host.rx_ring import RxRing
from hetnic.host.tx_ring import TxRing

CLOCK_NS = 8
MEM_SIZE = 1 << 23
RING_BASE = 0x1000


def _armed(event_queue: int) -> int:
    """An ``RXQ_EQ``/``TXQ_EQ`` value: events to ``event_queue``, armed for one."""
    return QUEUE_EQ_ARM.encode(1) | QUEUE_EQ_QUEUE.encode(event_queue)


@cocotb.test()
async def run_job(dut):
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job.get("seed", 1))
    params = NicParams(**job["build"])
    regmap = params.regmap()

    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_SIZE)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    for obj in (ram.write_if, ram.read_if, source, sink):
        obj.log.setLevel("WARNING")
    if job.get("dma_pause"):
        p = job["dma_pause"]
        for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.read_if.ar_channel,
                   ram.read_if.r_channel):
            ch.set_pause_generator(pause_generator(rng, p))
    if job.get("tx_pause"):
        sink.set_pause_generator(pause_generator(rng, job["tx_pause"]))
    if job.get("rx_pause"):
        source.set_pause_generator(pause_generator(rng, job["rx_pause"]))

    mem = RamMemory(ram)
    alloc = MemoryAllocator(mem, RING_BASE, MEM_SIZE - RING_BASE)

    async def write_all(writes):
        for addr, value in writes:
            await axil.write_dword(addr, value)

    # --- configuration: RSS/classifier, then the rings ----------------------------------
    await write_all(job["config_writes"])
    for _ in range(2000):
        if await axil.read_dword(regmap.addr("COMMIT_STATUS")) == 0:
            break
    rx_rings = {}
    for q in job.get("rx_queues_used", []):
        ring = RxRing(mem, alloc, job["rx_ring_size"], buffer_size=job["rx_buffer_size"],
                      data_align=params.data_width // 8)
        rx_rings[q] = ring
        ring.post()
        await write_all(queue_register_writes(regmap, "rx", q, ring))
    tx_rings = {}
    for q in job.get("tx_queues_used", []):
        ring = TxRing(mem, alloc, job["tx_ring_size"], data_align=params.data_width // 8)
        tx_rings[q] = ring
        await write_all(queue_register_writes(regmap, "tx", q, ring))

    eq_rings = {}
    for q in job.get("event_queues_used", []):
        ring = EventRing(mem, alloc, 64)
        eq_rings[q] = ring
        await write_all(queue_register_writes(regmap, "event", q, ring))
        await axil.write_dword(regmap.addr("EQ_CTRL", q), QUEUE_CTRL_ENABLE.encode(1)
                               | EQ_CTRL_IRQ_ENABLE.encode(1))
    for q, eq in job.get("arm_rx", {}).items():
        await axil.write_dword(regmap.addr("RXQ_EQ", int(q)), _armed(eq))
    for q, eq in job.get("arm_tx", {}).items():
        await axil.write_dword(regmap.addr("TXQ_EQ", int(q)), _armed(eq))
    if job.get("late_commit"):
        await write_all(job["late_commit"])
    # Bad input on purpose: a descriptor rewritten after posting, raw register writes.
    for bad in job.get("corrupt_rx_descriptor", []):
        ring = rx_rings[bad["queue"]]
        mem.write(ring.base + 16 * bad["index"], bad["addr"].to_bytes(8, "little"))
    await write_all(job.get("raw_writes", []))

    # --- traffic ---------------------------------------------------------------------------
    stats = {"ar": 0, "aw": 0, "cycles": 0, "rx_frames": 0, "rx_first_beat": None,
             "rx_last_beat": None, "tx_frames": 0, "tx_first_beat": None,
             "tx_last_beat": None, "latencies": []}
    done = {"flag": False}
    probe = job.get("latency_probe")         # {"queue": q}: watch that queue's completions
    frame_ends = []                          # cycle of each frame's last beat on s_axis

    async def monitor():
        # Sampled mid-cycle: valid & ready there is the handshake of the next rising edge.
        next_completion = 0
        while not done["flag"]:
            await FallingEdge(dut.clk)
            cycle = stats["cycles"] = stats["cycles"] + 1
            if dut.m_axi_arvalid.value and dut.m_axi_arready.value:
                stats["ar"] += 1
            irq = int(dut.irq.value)
            if irq:
                stats["irq_pulses"] = stats.get("irq_pulses", 0) + bin(irq).count("1")
            if dut.m_axi_awvalid.value and dut.m_axi_awready.value:
                stats["aw"] += 1
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                if stats["rx_first_beat"] is None:
                    stats["rx_first_beat"] = cycle
                stats["rx_last_beat"] = cycle
                if dut.s_axis_tlast.value:
                    stats["rx_frames"] += 1
                    frame_ends.append(cycle)
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                if stats["tx_first_beat"] is None:
                    stats["tx_first_beat"] = cycle
                stats["tx_last_beat"] = cycle
                stats["tx_frames"] += int(dut.m_axis_tlast.value)
            if probe is not None and next_completion < len(frame_ends):
                ring = rx_rings[probe["queue"]]
                size = ring.size
                entry = ring.cq_base + 16 * (next_completion % size)
                phase = (mem.read(entry + 15, 1)[0] >> 7) & 1
                if phase == (1 - (next_completion // size) % 2):
                    stats["latencies"].append(cycle - frame_ends[next_completion])
                    next_completion += 1

    mon = cocotb.start_soon(monitor())

    async def pause_queue(spec):
        # Disable an RX queue under traffic, then enable it again (CTRL only: the NIC keeps
        # its consumer index, so no completion is lost or repeated).
        while stats["rx_frames"] < spec["after_frames"]:
            await RisingEdge(dut.clk)
        ctrl = regmap.addr("RXQ_CTRL", spec["queue"])
        await axil.write_dword(ctrl, QUEUE_CTRL_ENABLE.encode(0))
        await ClockCycles(dut.clk, spec["cycles"])
        await axil.write_dword(ctrl, QUEUE_CTRL_ENABLE.encode(1))

    pauser = cocotb.start_soon(pause_queue(job["pause_queue"])) if job.get("pause_queue") else None
    for frame in job.get("rx_frames", []):
        await source.send(AxiStreamFrame(bytes.fromhex(frame)))

    tx_items = job.get("tx_items", [])
    tx_sent = 0
    received = {q: [] for q in rx_rings}
    tx_done = []
    expected_rx = job.get("expect_rx", 0)
    budget = job.get("max_cycles", 200_000)
    waited = 0
    drain_until = None
    while waited < budget:
        # Keep TX rings fed, one work item per loop turn.
        if tx_sent < len(tx_items):
            item = tx_items[tx_sent]
            ring = tx_rings[item["queue"]]
            messages = [bytes.fromhex(h) for h in item.get("messages", [])]
            try:
                if item["mode"] == "raw":
                    doorbell = ring.raw_work_item([bytes.fromhex(h) for h in item["slots"]])
                elif item["mode"] == "batch":
                    doorbell = ring.send_batch(messages)
                elif item["mode"] == "gather":
                    doorbell = ring.send_gather(messages)
                else:
                    doorbell = ring.send(messages[0])
            except Exception as exc:        # ring full: reap first, retry on the next turn
                if type(exc).__name__ != "RingFullError":
                    raise
            else:
                tx_sent += 1
                await axil.write_dword(regmap.addr("TXQ_PROD", item["queue"]), doorbell)
        for q, ring in rx_rings.items():
            for pkt in ring.reap(256):
                received[q].append(pkt)
            before = ring.producer
            doorbell = ring.post()
            if doorbell != before:
                await axil.write_dword(regmap.addr("RXQ_PROD", q), doorbell)
        for q, ring in tx_rings.items():
            for d in ring.reap():
                tx_done.append({"queue": q, "cookie": d.cookie, "status": int(d.status),
                                "messages": d.messages, "bytes": d.bytes})
        n_rx = sum(len(v) for v in received.values())
        n_tx_frames = sink.count()
        if (n_rx >= expected_rx and source.empty() and tx_sent == len(tx_items)
                and len(tx_done) == len(tx_items)
                and n_tx_frames >= job.get("expect_tx_frames", 0)):
            # Keep reaping a while: frames still inside the core (or dropped) settle.
            if drain_until is None:
                drain_until = waited + job.get("drain_cycles", 0)
            if waited >= drain_until:
                break
        await ClockCycles(dut.clk, 16)
        waited += 16
    await ClockCycles(dut.clk, 32)
    done["flag"] = True
    await mon
    if pauser is not None and not pauser.done():
        pauser.cancel()

    tx_frames = []
    while not sink.empty():
        tx_frames.append(bytes(sink.recv_nowait().tdata).hex())
    counters = {}
    for name, addr in job.get("read_registers", {}).items():
        counters[name] = await axil.read_dword(addr)
    # Nothing outside the allocated rings and buffers was written (AxiRam starts zeroed).
    top = RING_BASE + alloc.used
    guard_ok = (mem.read(0, RING_BASE) == bytes(RING_BASE)
                and mem.read(top, 1 << 16) == bytes(1 << 16))
    events = []
    for q, ring in eq_rings.items():
        for e in ring.reap(64):
            events.append({"eq": q, "type": int(e.type), "source": e.source, "info": e.info})
    result = {
        "events": events,
        "guard_ok": guard_ok,
        "rx": {str(q): [{"data": p.data.hex(), "hash": p.hash, "hash_type": int(p.hash_type),
                         "queue": p.queue, "instance": p.instance, "rule": p.rule,
                         "generation": p.generation, "length": p.length}
                        for p in pkts] for q, pkts in received.items()},
        "tx_frames": tx_frames, "tx_done": tx_done, "registers": counters,
        "stats": stats, "timed_out": waited >= budget,
    }
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
    assert waited < budget, "the job did not finish within its cycle budget"
