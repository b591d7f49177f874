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
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import (AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiStreamBus,
                           AxiStreamFrame, AxiStreamSink, AxiStreamSource)

from hetnic.params import CORE_CLOCK_PERIOD_NS, NicParams
from hetnic.regs import EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, queue_eq_armed
from hetnic.sim.cocotb_backend import RamMemory
from hetnic.sim.rx_tb import pause_generator, read_registers, start_clock_and_reset, write_all
from hetnic.host.event_ring import EventRing
from hetnic.host.memory import MemoryAllocator
from hetnic.host.queue_setup import queue_register_writes
from hetnic.host.rx_ring import RxRing
from hetnic.host.tx_ring import TxRing

CLOCK_NS = CORE_CLOCK_PERIOD_NS
MEM_SIZE = 1 << 23
RING_BASE = 0x1000


class CoreMonitor:
    """Watches the core's ports every cycle, sampled mid-cycle (at the falling edge: valid &
    ready there is the handshake of the next rising edge).

    Members
    -------
    stats : dict
        ``cycles``; handshakes on ``ar`` and ``aw``; ``irq_pulses`` (once an interrupt line
        was high); ``rx_frames``, ``rx_first_beat``, ``rx_last_beat`` on ``s_axis`` and
        ``tx_frames``, ``tx_first_beat``, ``tx_last_beat`` on ``m_axis`` (beats as cycle
        numbers); ``latencies``: with a ``latency_probe`` ``{"queue": q}``, the cycles from
        each frame's last beat on ``s_axis`` to its completion showing in queue ``q``'s
        completion ring (frames taken in order, all to that queue).
    done : bool
        Set to stop :meth:`run` at the next falling edge.
    """

    def __init__(self, dut, mem: RamMemory, rx_rings: dict[int, RxRing], probe: dict | None):
        self.dut, self.mem, self.rx_rings, self.probe = dut, mem, rx_rings, probe
        self.stats = {"ar": 0, "aw": 0, "cycles": 0, "rx_frames": 0, "rx_first_beat": None,
                      "rx_last_beat": None, "tx_frames": 0, "tx_first_beat": None,
                      "tx_last_beat": None, "latencies": []}
        self.frame_ends: list[int] = []      # cycle of each frame's last beat on s_axis
        self.next_completion = 0
        self.done = False

    async def run(self) -> None:
        dut, stats = self.dut, self.stats
        while not self.done:
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
                    self.frame_ends.append(cycle)
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                if stats["tx_first_beat"] is None:
                    stats["tx_first_beat"] = cycle
                stats["tx_last_beat"] = cycle
                stats["tx_frames"] += int(dut.m_axis_tlast.value)
            if self.probe is not None and self.next_completion < len(self.frame_ends):
                self._probe_completion(cycle)

    def _probe_completion(self, cycle: int) -> None:
        """If the next awaited completion of the probed queue has been written (its phase bit
        flipped), record its latency."""
        ring = self.rx_rings[self.probe["queue"]]
        n, size = self.next_completion, ring.size
        entry = ring.cq_base + 16 * (n % size)
        phase = (self.mem.read(entry + 15, 1)[0] >> 7) & 1
        if phase == (1 - (n // size) % 2):
            self.stats["latencies"].append(cycle - self.frame_ends[n])
            self.next_completion += 1


class NicBench:
    """The world around ``NicCoreTop`` for one job, and the host's side of it.

    cocotbext-axi models on the core's ports (host memory ``ram`` on ``m_axi``, ``axil`` on
    ``s_axil``, ``source`` on ``s_axis``, ``sink`` on ``m_axis``, each with the job's pauses),
    the rings the unmodified host ring code keeps in that memory (``rx_rings``, ``tx_rings``,
    ``eq_rings`` by queue), and what the host has seen: ``received`` (RX packets by queue),
    ``tx_done`` (TX completions, as result records) and ``tx_sent`` (work items posted).
    """

    def __init__(self, dut, job: dict):
        self.dut, self.job = dut, job
        self.rng = random.Random(job.get("seed", 1))
        self.params = NicParams(**job["build"])
        self.regmap = self.params.regmap()
        self.rx_rings: dict[int, RxRing] = {}
        self.tx_rings: dict[int, TxRing] = {}
        self.eq_rings: dict[int, EventRing] = {}
        self.tx_items = job.get("tx_items", [])
        self.tx_sent = 0
        self.received: dict[int, list] = {}
        self.tx_done: list[dict] = []

    def attach(self) -> None:
        """The bus models on the core's ports (after reset), with the job's ``dma_pause``
        (AW, W, AR and R), ``dma_b_pause`` (B: write responses held back; default
        ``dma_pause``), ``tx_pause`` and ``rx_pause``, each a seeded chance per cycle, and the
        host memory allocator over ``ram``."""
        dut, job = self.dut, self.job
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_SIZE)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        ram = self.ram
        for obj in (ram.write_if, ram.read_if, self.source, self.sink):
            obj.log.setLevel("WARNING")
        if job.get("dma_pause"):
            for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.read_if.ar_channel,
                       ram.read_if.r_channel):
                ch.set_pause_generator(pause_generator(self.rng, job["dma_pause"]))
        b_pause = job.get("dma_b_pause", job.get("dma_pause"))
        if b_pause:
            ram.write_if.b_channel.set_pause_generator(pause_generator(self.rng, b_pause))
        if job.get("tx_pause"):
            self.sink.set_pause_generator(pause_generator(self.rng, job["tx_pause"]))
        if job.get("rx_pause"):
            self.source.set_pause_generator(pause_generator(self.rng, job["rx_pause"]))
        self.mem = RamMemory(ram)
        self.alloc = MemoryAllocator(self.mem, RING_BASE, MEM_SIZE - RING_BASE)

    async def configure(self) -> None:
        """The RSS/classifier writes (``config_writes``, then wait for the commit), the
        rings, the queues armed for events (``arm_rx``, ``arm_tx``), a ``late_commit``, and
        bad input on purpose: ``corrupt_rx_descriptor`` (a descriptor rewritten after
        posting) and ``raw_writes``."""
        job, axil, regmap = self.job, self.axil, self.regmap
        await write_all(axil, job["config_writes"])
        for _ in range(2000):
            if await axil.read_dword(regmap.addr("COMMIT_STATUS")) == 0:
                break
        await self._open_rings()
        for q, eq in job.get("arm_rx", {}).items():
            await axil.write_dword(regmap.addr("RXQ_EQ", int(q)), queue_eq_armed(eq))
        for q, eq in job.get("arm_tx", {}).items():
            await axil.write_dword(regmap.addr("TXQ_EQ", int(q)), queue_eq_armed(eq))
        if job.get("late_commit"):
            await write_all(axil, job["late_commit"])
        for bad in job.get("corrupt_rx_descriptor", []):
            ring = self.rx_rings[bad["queue"]]
            self.mem.write(ring.base + 16 * bad["index"], bad["addr"].to_bytes(8, "little"))
        await write_all(axil, job.get("raw_writes", []))

    async def _open_rings(self) -> None:
        """An RX ring (buffers posted) per ``rx_queues_used``, a TX ring per
        ``tx_queues_used`` and an event ring (enabled, interrupts on) per
        ``event_queues_used``, each programmed into its queue's registers."""
        job, mem, alloc, regmap = self.job, self.mem, self.alloc, self.regmap
        align = self.params.data_width // 8
        for q in job.get("rx_queues_used", []):
            ring = RxRing(mem, alloc, job["rx_ring_size"], buffer_size=job["rx_buffer_size"],
                          data_align=align)
            self.rx_rings[q] = ring
            ring.post()
            await write_all(self.axil, queue_register_writes(regmap, "rx", q, ring))
        for q in job.get("tx_queues_used", []):
            ring = TxRing(mem, alloc, job["tx_ring_size"], data_align=align)
            self.tx_rings[q] = ring
            await write_all(self.axil, queue_register_writes(regmap, "tx", q, ring))
        for q in job.get("event_queues_used", []):
            ring = EventRing(mem, alloc, 64)
            self.eq_rings[q] = ring
            await write_all(self.axil, queue_register_writes(regmap, "event", q, ring))
            await self.axil.write_dword(regmap.addr("EQ_CTRL", q), QUEUE_CTRL_ENABLE.encode(1)
                                        | EQ_CTRL_IRQ_ENABLE.encode(1))
        self.received = {q: [] for q in self.rx_rings}

    async def pause_queue(self, spec: dict, stats: dict) -> None:
        """Once ``spec["after_frames"]`` frames have come in, disable RX queue
        ``spec["queue"]`` for ``spec["cycles"]`` and enable it again (CTRL only: the NIC
        keeps its consumer index, so no completion is lost or repeated)."""
        while stats["rx_frames"] < spec["after_frames"]:
            await RisingEdge(self.dut.clk)
        ctrl = self.regmap.addr("RXQ_CTRL", spec["queue"])
        await self.axil.write_dword(ctrl, QUEUE_CTRL_ENABLE.encode(0))
        await ClockCycles(self.dut.clk, spec["cycles"])
        await self.axil.write_dword(ctrl, QUEUE_CTRL_ENABLE.encode(1))

    async def feed_tx(self) -> None:
        """Post the next of the job's ``tx_items`` (``mode`` raw, batch, gather or a single
        message) and ring its doorbell; on a full ring, try again on the next call."""
        if self.tx_sent >= len(self.tx_items):
            return
        item = self.tx_items[self.tx_sent]
        ring = self.tx_rings[item["queue"]]
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
            self.tx_sent += 1
            await self.axil.write_dword(self.regmap.addr("TXQ_PROD", item["queue"]), doorbell)

    async def reap(self) -> None:
        """Take the RX packets (refilling each RX ring and ringing its doorbell if it
        posted buffers) and the TX completions."""
        for q, ring in self.rx_rings.items():
            self.received[q].extend(ring.reap(256))
            before = ring.producer
            doorbell = ring.post()
            if doorbell != before:
                await self.axil.write_dword(self.regmap.addr("RXQ_PROD", q), doorbell)
        for q, ring in self.tx_rings.items():
            for d in ring.reap():
                self.tx_done.append({"queue": q, "cookie": d.cookie, "status": int(d.status),
                                     "messages": d.messages, "bytes": d.bytes})

    def traffic_done(self) -> bool:
        """All the job expects has happened: ``expect_rx`` packets received, the RX frames
        and every TX item sent and completed, ``expect_tx_frames`` frames out."""
        n_rx = sum(len(v) for v in self.received.values())
        return (n_rx >= self.job.get("expect_rx", 0) and self.source.empty()
                and self.tx_sent == len(self.tx_items)
                and len(self.tx_done) == len(self.tx_items)
                and self.sink.count() >= self.job.get("expect_tx_frames", 0))

    async def run_traffic(self, budget: int) -> int:
        """Feed TX and reap every 16 cycles until :meth:`traffic_done`, then for the job's
        ``drain_cycles`` more (frames still inside the core, or dropped, settle), or until
        ``budget`` cycles have passed. Returns the cycles waited."""
        waited = 0
        drain_until = None
        while waited < budget:
            await self.feed_tx()
            await self.reap()
            if self.traffic_done():
                if drain_until is None:
                    drain_until = waited + self.job.get("drain_cycles", 0)
                if waited >= drain_until:
                    break
            await ClockCycles(self.dut.clk, 16)
            waited += 16
        return waited

    async def host_view(self) -> dict:
        """What the host saw, for the result: the TX frames out, the events, the RX packets,
        the TX completions, the ``read_registers``, and ``guard_ok``: nothing outside the
        allocated rings and buffers was written (AxiRam starts zeroed)."""
        tx_frames = []
        while not self.sink.empty():
            tx_frames.append(bytes(self.sink.recv_nowait().tdata).hex())
        counters = await read_registers(self.axil, self.job.get("read_registers", {}))
        top = RING_BASE + self.alloc.used
        guard_ok = (self.mem.read(0, RING_BASE) == bytes(RING_BASE)
                    and self.mem.read(top, 1 << 16) == bytes(1 << 16))
        events = []
        for q, ring in self.eq_rings.items():
            for e in ring.reap(64):
                events.append({"eq": q, "type": int(e.type), "source": e.source, "info": e.info})
        return {
            "events": events,
            "guard_ok": guard_ok,
            "rx": {str(q): [{"data": p.data.hex(), "hash": p.hash, "hash_type": int(p.hash_type),
                             "queue": p.queue, "instance": p.instance, "rule": p.rule,
                             "generation": p.generation, "length": p.length}
                            for p in pkts] for q, pkts in self.received.items()},
            "tx_frames": tx_frames, "tx_done": self.tx_done, "registers": counters,
        }


@cocotb.test()
async def run_job(dut):
    """Configure the core and its rings as the job says, receive its ``rx_frames``, send its
    ``tx_items`` and write what the host saw, with the monitor's ``stats``, to
    ``HETNIC_OUT``. Fails if the job does not finish within ``max_cycles``."""
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)
    bench = NicBench(dut, job)
    await start_clock_and_reset(dut, CLOCK_NS)
    bench.attach()
    await bench.configure()

    monitor = CoreMonitor(dut, bench.mem, bench.rx_rings, job.get("latency_probe"))
    mon = cocotb.start_soon(monitor.run())
    pauser = (cocotb.start_soon(bench.pause_queue(job["pause_queue"], monitor.stats))
              if job.get("pause_queue") else None)
    for frame in job.get("rx_frames", []):
        await bench.source.send(AxiStreamFrame(bytes.fromhex(frame)))
    budget = job.get("max_cycles", 200_000)
    waited = await bench.run_traffic(budget)
    await ClockCycles(dut.clk, 32)
    monitor.done = True
    await mon
    if pauser is not None and not pauser.done():
        pauser.cancel()

    result = await bench.host_view()
    result.update({"stats": monitor.stats, "timed_out": waited >= budget})
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
    assert waited < budget, "the job did not finish within its cycle budget"
