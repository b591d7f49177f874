# Ref: AMBA AXI4 (ARM IHI 0022E)
"""The RX queues, the event arbiter, the event queues and the DMA engine wired as
:class:`~hetnic.gateware.nic_core.NicCore` wires them, against an in-order AXI4 host memory:
a regression test of a loop through the DMA engine's write dones.

The loop, with one done register shared by every write client: the RX queues take a done
only for their oldest frame not yet retired; that frame retires only once its event is
posted; the event queues take one event at a time and wait for the event's own write done;
that done waits behind an RX done the RX queues will not take yet. It formed when an armed
queue delivered a frame (A), three armed queues without buffers dropped one frame each
(three DROP events to post, so the event path is busy), then a delivered frame (B): B's writes
went out before A's event write, and nothing moved again.
"""

from collections import deque

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from hetnic.gateware.beat import Beat
from hetnic.gateware.dma import AXI_RESP_OKAY, DmaEngine
from hetnic.gateware.event_queues import EventArbiter, EventQueues
from hetnic.gateware.nic_core import READ_BURST_BEATS, READ_OUTSTANDING
from hetnic.gateware.rx_queues import RxQueueManager
from hetnic.host.event_ring import EventRing
from hetnic.host.memory import BytearrayMemory, MemoryAllocator
from hetnic.host.queue_setup import queue_register_writes
from hetnic.host.rx_ring import RxRing
from hetnic.protocol import EventType, PacketMeta, QueueDrop
from hetnic.regs import EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, queue_eq_armed
from kit import HoldRule, pack, run_simulation

W, LANES = 64, 8
MEM_BASE, MEM_SIZE = 0x10_0000, 1 << 18
R_LATENCY = 3                   # cycles from AR to the first R beat


def event_path(n_queues):
    """RX queues (write client 0), event queues (write client 2) and a DMA engine with the
    NIC core's parameters; the arbiter's other two posters (TX and commit events) idle."""
    m = Module()
    m.submodules.rxq = rxq = RxQueueManager(W, n_queues)
    m.submodules.eqs = eqs = EventQueues(1, W)
    m.submodules.arbiter = arbiter = EventArbiter(3)
    m.submodules.dma = dma = DmaEngine(W, n_read_clients=2, n_write_clients=3,
                                       max_read_burst_beats=READ_BURST_BEATS,
                                       read_outstanding=READ_OUTSTANDING)
    wiring.connect(m, rxq.rd_req, dma.rd_req[0])
    wiring.connect(m, dma.rd_data[0], rxq.rd_data)
    for index, client in ((0, rxq), (2, eqs)):
        wiring.connect(m, client.wr_req, dma.wr_req[index])
        wiring.connect(m, client.wr_data, dma.wr_data[index])
        wiring.connect(m, dma.wr_done[index], client.wr_done)
    wiring.connect(m, rxq.event, arbiter.posts[0])
    wiring.connect(m, arbiter.post, eqs.post)
    return m, rxq, eqs, arbiter, dma


class InOrderMemory:
    """An AXI4 slave over ``mem`` that is always ready on AR, AW and W, returns R beats
    ``R_LATENCY`` cycles after their AR and each B ``b_latency`` cycles after its burst's
    last W beat, in order. Records how long a B response waited for BREADY."""

    def __init__(self, mem, b_latency):
        self.mem, self.b_latency = mem, b_latency
        self.reads, self.aws, self.w_beats, self.b_due = deque(), deque(), deque(), deque()
        self.hold = HoldRule()
        self.b_waiting = self.longest_b_wait = 0

    def drive(self, ctx, axi, cycle):
        for name in ("arready", "awready", "wready"):
            ctx.set(getattr(axi, name), 1)
        if self.reads and self.reads[0][0] <= cycle:
            _, addr, beats = self.reads[0]
            ctx.set(axi.rdata, int.from_bytes(self.mem.read(addr, LANES), "little"))
            ctx.set(axi.rresp, AXI_RESP_OKAY)
            ctx.set(axi.rlast, beats == 1)
            ctx.set(axi.rvalid, 1)
        else:
            ctx.set(axi.rvalid, 0)
        ctx.set(axi.bvalid, bool(self.b_due) and self.b_due[0] <= cycle)
        ctx.set(axi.bresp, AXI_RESP_OKAY)

    def sample(self, ctx, axi, cycle):
        get = ctx.get
        if get(axi.arvalid):
            self.reads.append([cycle + R_LATENCY, get(axi.araddr), get(axi.arlen) + 1])
        if get(axi.rvalid) and get(axi.rready):
            self.reads[0][1] += LANES
            self.reads[0][2] -= 1
            if self.reads[0][2] == 0:
                self.reads.popleft()
        if get(axi.awvalid):
            self.aws.append([get(axi.awaddr), get(axi.awlen) + 1])
        if get(axi.wvalid):
            self.w_beats.append((get(axi.wdata), get(axi.wstrb)))
        if get(axi.bvalid):
            if get(axi.bready):
                self.b_due.popleft()
                self.b_waiting = 0
            else:
                self.b_waiting += 1
                self.longest_b_wait = max(self.longest_b_wait, self.b_waiting)
        while self.aws and len(self.w_beats) >= self.aws[0][1]:
            addr, beats = self.aws.popleft()
            for k in range(beats):
                wdata, wstrb = self.w_beats.popleft()
                for j in range(LANES):
                    if wstrb >> j & 1:
                        self.mem.write(addr + k * LANES + j, bytes([wdata >> 8 * j & 0xFF]))
            self.b_due.append(cycle + self.b_latency)

    def idle(self):
        return not (self.reads or self.aws or self.w_beats or self.b_due)


async def write_csr(ctx, port, addr, value):
    ctx.set(port.addr, addr)
    ctx.set(port.w_data, value)
    ctx.set(port.w_stb, 1)
    for _ in range(100):
        ack = ctx.get(port.ack)
        await ctx.tick()
        if ack:
            ctx.set(port.w_stb, 0)
            return
    raise AssertionError(f"register {addr:#x} not acknowledged in 100 cycles")


@pytest.mark.parametrize("b_latency, drops", [(1, 3), (6, 4)])
def test_drop_events_then_a_frame_do_not_lock_the_event_path(b_latency, drops):
    """Armed queue 0 (with buffers) receives frame A; armed queues 1..``drops`` (no buffer)
    drop a frame each; queue 0 receives frame B. Every event is written (A's RX_COMPLETION
    and the DROPs, in order), both frames and their completions land, B responses are taken
    within a few cycles, and everything is idle at the end."""
    n_queues = drops + 1
    m, rxq, eqs, arbiter, dma = event_path(n_queues)
    mem = BytearrayMemory(MEM_BASE, MEM_SIZE)
    alloc = MemoryAllocator(mem, MEM_BASE, MEM_SIZE)
    rings = [RxRing(mem, alloc, 8, 256, data_align=LANES) for _ in range(n_queues)]
    events = EventRing(mem, alloc, 64)
    memory = InOrderMemory(mem, b_latency)
    frames = [(0, bytes(range(64)))]
    frames += [(q, bytes([q]) * 64) for q in range(1, n_queues)]
    frames += [(0, bytes(range(100, 164)))]
    got_events, got_packets = [], []

    async def bench(ctx):
        for port in arbiter.posts[1:]:
            ctx.set(port.valid, 0)
        for q, ring in enumerate(rings):
            for addr, value in queue_register_writes(rxq.regmap, "rx", q, ring):
                await write_csr(ctx, rxq.csr, addr, value)
            await write_csr(ctx, rxq.csr, rxq.regmap.addr("RXQ_PROD", q),
                            ring.post(None if q == 0 else 0))
            await write_csr(ctx, rxq.csr, rxq.regmap.addr("RXQ_EQ", q), queue_eq_armed(0))
        for addr, value in queue_register_writes(eqs.regmap, "event", 0, events):
            await write_csr(ctx, eqs.csr, addr, value)
        await write_csr(ctx, eqs.csr, eqs.regmap.addr("EQ_CTRL", 0),
                        QUEUE_CTRL_ENABLE.encode(1) | EQ_CTRL_IRQ_ENABLE.encode(1))
        metas = deque(pack(PacketMeta, length=len(body), queue=q) for q, body in frames)
        beats = deque()
        for _, body in frames:
            for k in range(0, len(body), LANES):
                beats.append(pack(Beat(W), data=int.from_bytes(body[k:k + LANES], "little"),
                                  keep=0xFF, last=k + LANES >= len(body)))
        cycle = 0
        while len(got_events) < n_queues or len(got_packets) < 2 or not memory.idle():
            ctx.set(rxq.meta.valid, bool(metas))
            ctx.set(rxq.meta.payload.as_value(), metas[0] if metas else 0)
            ctx.set(rxq.data.valid, bool(beats))
            ctx.set(rxq.data.payload.as_value(), beats[0] if beats else 0)
            ctx.set(rxq.timestamp, cycle)
            ctx.set(eqs.timestamp, cycle)
            memory.drive(ctx, dma.axi, cycle)
            if ctx.get(rxq.meta.ready) and metas:
                metas.popleft()
            if ctx.get(rxq.data.ready) and beats:
                beats.popleft()
            memory.sample(ctx, dma.axi, cycle)
            await ctx.tick()
            cycle += 1
            got_events.extend(events.reap())
            got_packets.extend(rings[0].reap())
        print(f"B latency {b_latency}, {drops} drops: done in {cycle} cycles; longest wait "
              f"of a B response for BREADY {memory.longest_b_wait} cycles")

    run_simulation(m, bench, cycle_limit=4_000)
    assert [(e.type, e.source, e.info) for e in got_events] == [
        (EventType.RX_COMPLETION, 0, 1),
        *((EventType.DROP, q, QueueDrop.NO_BUFFER) for q in range(1, n_queues))]
    assert [p.data for p in got_packets] == [frames[0][1], frames[-1][1]]
    assert memory.longest_b_wait <= 2
