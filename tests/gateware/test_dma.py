# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds DmaEngines whose __init__ raises; they are never elaborated.)
# Ref: AMBA AXI4 (ARM IHI 0022E)
"""DmaEngine in Amaranth's simulator against a Python AXI4 slave memory and client models.

The slave (:class:`AxiMemory`) checks every burst it sees (INCR, AxSIZE, length within
``max_burst_beats``, no 4 KiB crossing, AxADDR inside a request the engine accepted, WSTRB
exactly the request's bytes, WLAST) and answers with random AR/AW/W ready and random R/B
latency; pages listed as *poisoned* answer SLVERR and are never written. Clients offer
requests and write data with random gaps and stall ``rd_data``/``wr_done`` at random.
Every valid signal on both sides must hold its payload until taken. At the end the whole
memory is compared byte for byte with the expected image (guard bytes around every write
region included) and the engine's transaction and error counters with the model's.
"""

import random
from collections import deque

import pytest

from hetnic.gateware.dma import (
    AXI_BURST_INCR, AXI_RESP_OKAY, AXI_RESP_SLVERR, DmaEngine, DmaReadBeat, DmaReadRequest,
    DmaWriteBeat, DmaWriteDone, DmaWriteRequest,
)
from hetnic.gateware.nic_core import READ_BURST_BEATS, READ_OUTSTANDING
from kit import HoldRule, StreamSink, StreamSource, pack, run_simulation, unpack

SEED = 0xD3A_5EED
TOP = 1 << 64
PAGE = 4096


def beats_of(length, lanes):
    return -(-length // lanes)


def bursts_of(addr, length, lanes, max_burst):
    """The (addr, beats) bursts the engine must issue for a request that is not refused."""
    bursts, left = [], beats_of(length, lanes)
    while left:
        n = min(left, max_burst, (PAGE - addr % PAGE) // lanes)
        bursts.append((addr, n))
        addr, left = addr + n * lanes, left - n
    return bursts


def refused(addr, length, lanes):
    return length == 0 or addr % lanes != 0 or addr + length > TOP


class Request:
    def __init__(self, addr, length, tag, lanes, payload=b""):
        self.addr, self.length, self.tag, self.payload = addr, length, tag, payload
        self.refused = refused(addr, length, lanes)
        self.beats = 1 if self.refused else beats_of(length, lanes)
        self.error = self.refused   # set by the bench when the range touches a poisoned page
        self.accepted_at = self.finished_at = None

    def __repr__(self):
        return f"Request(addr={self.addr:#x}, length={self.length}, tag={self.tag})"


class AxiMemory:
    """A sparse byte memory behind an AXI4 slave; unwritten bytes are a seeded pattern."""

    def __init__(self, seed, lanes, max_burst, rng, *, ready=1.0, aw_ready=None, valid=1.0,
                 latency=(1, 1), poisoned=(), max_read_burst=None, rlast_faults=None):
        self.seed, self.lanes, self.max_burst, self.rng = seed, lanes, max_burst, rng
        self.max_read_burst = max_burst if max_read_burst is None else max_read_burst
        # AR index -> "early" (RLAST one beat before the burst's last, not on it) or
        # "missing" (no RLAST in the burst): a misbehaving slave.
        self.rlast_faults = dict(rlast_faults or {})
        self.ready, self.valid, self.latency = ready, valid, latency
        self.aw_ready = ready if aw_ready is None else aw_ready
        self.poisoned = set(poisoned)
        self.pages = {}
        self.cycle = 0
        self.active_reads, self.active_writes = {}, {}  # id(request) -> request
        self.r_bursts, self.aw_bursts, self.w_beats, self.b_queue = (
            deque(), deque(), deque(), deque())
        self.r_offer = self.b_offer = False
        self.hold_rule = HoldRule()                     # AR, AW, W: AXI's valid/ready rule
        self.ar_count = self.aw_count = self.error_responses = 0
        self.w_before_aw = 0                            # W beats taken ahead of their AW

    def initial(self, page):
        return random.Random(self.seed * 1_000_003 + page).randbytes(PAGE)

    def page(self, page):
        if page not in self.pages:
            self.pages[page] = bytearray(self.initial(page))
        return self.pages[page]

    def read(self, addr, n):
        return bytes(self.page(addr // PAGE)[addr % PAGE:addr % PAGE + n])

    # --- per-cycle: drive the slave's inputs of the DUT, then sample its outputs
    def drive(self, ctx, axi):
        rng, lanes = self.rng, self.lanes
        ctx.set(axi.arready, rng.random() < self.ready)
        ctx.set(axi.awready, rng.random() < self.aw_ready)
        ctx.set(axi.wready, rng.random() < self.ready)
        if not self.r_offer:
            head = self.r_bursts[0] if self.r_bursts else None
            if head and head["at"] <= self.cycle and rng.random() < self.valid:
                addr = head["addr"] + head["index"] * lanes
                bad = addr // PAGE in self.poisoned
                ctx.set(axi.rdata, int.from_bytes(self.read(addr, lanes), "little"))
                ctx.set(axi.rresp, AXI_RESP_SLVERR if bad else AXI_RESP_OKAY)
                final = head["index"] == head["beats"] - 1
                rlast = {"early": head["index"] == head["beats"] - 2,
                         "missing": False}.get(head["fault"], final)
                ctx.set(axi.rlast, rlast)
                ctx.set(axi.rvalid, 1)
                self.error_responses += bad or rlast != final
                self.r_offer = True
            else:
                ctx.set(axi.rvalid, 0)
        if not self.b_offer:
            if self.b_queue and self.b_queue[0][0] <= self.cycle and rng.random() < self.valid:
                ctx.set(axi.bresp, self.b_queue[0][1])
                ctx.set(axi.bvalid, 1)
                self.b_offer = True
            else:
                ctx.set(axi.bvalid, 0)

    def _hold(self, channel, valid, payload, ready):
        """AXI: a valid stays up with a stable payload until the handshake."""
        return self.hold_rule.check(channel, valid, payload, ready, cycle=self.cycle)

    def _check_burst(self, kind, addr, length, size, burst, active):
        lanes, beats = self.lanes, length + 1
        longest = self.max_read_burst if kind == "AR" else self.max_burst
        assert burst == AXI_BURST_INCR and 1 << size == lanes, f"{kind}: burst/size"
        assert beats <= longest, f"{kind} of {beats} beats at {addr:#x}"
        assert addr % lanes == 0, f"{kind} misaligned at {addr:#x}"
        assert addr % PAGE + beats * lanes <= PAGE, f"{kind} at {addr:#x} crosses 4 KiB"
        assert any(r.addr <= addr and addr + beats * lanes <= r.addr + r.beats * lanes
                   for r in active.values()), f"{kind} at {addr:#x} in no accepted request"

    def sample(self, ctx, axi):
        get = ctx.get
        arvalid = get(axi.arvalid)
        ar = (get(axi.araddr), get(axi.arlen), get(axi.arsize), get(axi.arburst)) \
            if arvalid else None
        if self._hold("AR", arvalid, ar, get(axi.arready)):
            self._check_burst("AR", *ar, self.active_reads)
            at = self.cycle + self.rng.randint(*self.latency)
            self.r_bursts.append({"addr": ar[0], "beats": ar[1] + 1, "index": 0, "at": at,
                                  "fault": self.rlast_faults.get(self.ar_count)})
            self.ar_count += 1
        awvalid = get(axi.awvalid)
        aw = (get(axi.awaddr), get(axi.awlen), get(axi.awsize), get(axi.awburst)) \
            if awvalid else None
        if self._hold("AW", awvalid, aw, get(axi.awready)):
            self._check_burst("AW", *aw, self.active_writes)
            self.aw_bursts.append((aw[0], aw[1] + 1))
            self.aw_count += 1
        wvalid = get(axi.wvalid)
        w = (get(axi.wdata), get(axi.wstrb), get(axi.wlast)) if wvalid else None
        if self._hold("W", wvalid, w, get(axi.wready)):
            self.w_beats.append(w)
            self.w_before_aw += len(self.w_beats) > sum(n for _, n in self.aw_bursts)
        if self.r_offer and get(axi.rready):
            self.r_offer = False
            head = self.r_bursts[0]
            head["index"] += 1
            if head["index"] == head["beats"]:
                self.r_bursts.popleft()
        if self.b_offer and get(axi.bready):
            self.b_offer = False
            self.b_queue.popleft()
        while self.aw_bursts and len(self.w_beats) >= self.aw_bursts[0][1]:
            self._write_burst(*self.aw_bursts.popleft())
        self.cycle += 1

    def _write_burst(self, addr, beats):
        """Apply one burst's W beats (W may have come before AW) and queue its B."""
        lanes = self.lanes
        bad = addr // PAGE in self.poisoned
        for k in range(beats):
            wdata, wstrb, wlast = self.w_beats.popleft()
            assert wlast == (k == beats - 1), f"WLAST on beat {k} of {beats} at {addr:#x}"
            beat = addr + k * lanes
            want = sum(1 << j for j in range(lanes) if any(
                r.addr <= beat + j < r.addr + r.length for r in self.active_writes.values()))
            assert wstrb == want, f"WSTRB {wstrb:#x} at {beat:#x}, want {want:#x}"
            if not bad:
                mem = self.page(beat // PAGE)
                for j, byte in enumerate(wdata.to_bytes(lanes, "little")):
                    if wstrb >> j & 1:
                        mem[beat % PAGE + j] = byte
        self.error_responses += bad
        self.b_queue.append((self.cycle + self.rng.randint(*self.latency),
                             AXI_RESP_SLVERR if bad else AXI_RESP_OKAY))

    def idle(self):
        return not (self.r_bursts or self.aw_bursts or self.w_beats or self.b_queue)


def sample(ctx, agent):
    """A kit source's or sink's update with its signals as they are now (before the edge)."""
    return agent.update(*(ctx.get(signal) for signal in agent.sampled))


class RequestPort:
    """A client's request port: a kit source offering ``requests`` (:class:`Request`) with the
    bench's gaps. An accepted request gets its ``accepted_at`` cycle and, unless refused,
    joins ``active`` (the slave model's requests in progress)."""

    def __init__(self, bench, port, layout, requests, active, name):
        self.b, self.active, self.queued = bench, active, deque(requests)
        self.source = StreamSource(port, rng=bench.rng, gap=bench.gap, name=name)
        self.source.extend(pack(layout, addr=r.addr % TOP, length=r.length, tag=r.tag)
                           for r in requests)

    @property
    def done(self):
        return self.source.done

    def drive(self, ctx):
        self.source.drive(ctx)

    def sample(self, ctx):
        """The request accepted in this cycle, if any."""
        if sample(ctx, self.source) is None:
            return None
        r = self.queued.popleft()
        r.accepted_at = self.b.cycle
        if not r.refused:
            self.active[id(r)] = r
        return r


class ReadClient:
    def __init__(self, bench, index, requests):
        self.b, self.index = bench, index
        self.req = RequestPort(bench, bench.dut.rd_req[index], DmaReadRequest, requests,
                               bench.memory.active_reads, f"rd_req[{index}]")
        self.out = StreamSink(bench.dut.rd_data[index], rng=bench.rng, stall=bench.stall,
                              name=f"rd_data[{index}]")
        self.in_flight, self.beat = deque(), 0
        self.layout = DmaReadBeat(bench.width)
        for r in requests:
            r.client = index

    def drive(self, ctx):
        self.req.drive(ctx)
        self.out.drive(ctx)

    def sample(self, ctx):
        r = self.req.sample(ctx)
        if r is not None:
            self.in_flight.append(r)
        value = sample(ctx, self.out)
        if value is not None:
            self.check(unpack(self.layout, value))

    def check(self, got):
        b, lanes = self.b, self.b.lanes
        assert self.in_flight, f"cycle {b.cycle}: client {self.index} got a beat nobody asked"
        r = self.in_flight[0]
        where = f"client {self.index} {r} beat {self.beat}"
        last = self.beat == r.beats - 1
        assert got["tag"] == r.tag and got["last"] == last, f"{where}: {got}"
        assert got["error"] == (last and r.error), f"{where}: error {got['error']}"
        if r.refused:
            assert got["keep"] == 0, f"{where}: keep {got['keep']:#x}"
        else:
            n = min(lanes, r.length - self.beat * lanes)
            assert got["keep"] == (1 << n) - 1, f"{where}: keep {got['keep']:#x}"
            want = b.memory.read(r.addr + self.beat * lanes, n)
            assert got["data"].to_bytes(lanes, "little")[:n] == want, f"{where}: data"
        self.beat += 1
        if last:
            self.beat = 0
            r.finished_at = b.cycle
            b.memory.active_reads.pop(id(r), None)
            self.in_flight.popleft()
            b.finished.append(r)

    def idle(self):
        return self.req.done and not self.in_flight


class WriteClient:
    def __init__(self, bench, index, requests):
        self.b, self.index = bench, index
        self.expect = deque()
        self.req = RequestPort(bench, bench.dut.wr_req[index], DmaWriteRequest, requests,
                               bench.memory.active_writes, f"wr_req[{index}]")
        # Every request's data beats, in request order.
        self.data = StreamSource(bench.dut.wr_data[index], rng=bench.rng, gap=bench.gap,
                                 name=f"wr_data[{index}]")
        self.done = StreamSink(bench.dut.wr_done[index], rng=bench.rng, stall=bench.stall,
                               name=f"wr_done[{index}]")
        #: Called every cycle: while it returns true the client does not take a done.
        self.hold_done = lambda: False
        lanes = bench.lanes
        for r in requests:
            r.client = index
            n = beats_of(r.length, lanes)
            for k in range(n):
                chunk = r.payload[k * lanes:(k + 1) * lanes]
                self.data.send(pack(DmaWriteBeat(bench.width), data=int.from_bytes(
                    chunk, "little") | (bench.rng.getrandbits(8 * lanes) << 8 * len(chunk))
                    & ((1 << 8 * lanes) - 1), last=int(k == n - 1)))

    def drive(self, ctx):
        self.req.drive(ctx)
        self.data.drive(ctx)
        self.done.drive(ctx, may_take=not self.hold_done())

    def sample(self, ctx):
        b = self.b
        r = self.req.sample(ctx)
        if r is not None:
            self.expect.append(r)
        sample(ctx, self.data)
        value = sample(ctx, self.done)
        if value is not None:
            got = unpack(DmaWriteDone, value)
            assert self.expect, f"cycle {b.cycle}: client {self.index}: a done nobody asked"
            r = self.expect.popleft()
            assert got == {"tag": r.tag, "error": int(r.error)}, \
                f"client {self.index} {r}: done {got}"
            r.finished_at = b.cycle
            b.memory.active_writes.pop(id(r), None)
            b.finished.append(r)

    def idle(self):
        return self.req.done and self.data.done and not self.expect


class DmaBench:
    """One DmaEngine, its slave memory and its clients, stepped one clock at a time."""

    def __init__(self, seed, width, reads, writes, *, max_burst=256, outstanding=4,
                 max_read_burst=None, read_outstanding=None, gap=0.0, stall=0.0,
                 ready=1.0, aw_ready=None, valid=1.0, latency=(1, 1), poisoned=(),
                 rlast_faults=None, limit=50_000):
        max_read_burst = max_burst if max_read_burst is None else max_read_burst
        print(f"seed={seed:#x} width={width} max_burst={max_burst} outstanding={outstanding} "
              f"max_read_burst={max_read_burst} read_outstanding={read_outstanding}")
        self.rng = random.Random(seed)
        self.width, self.lanes = width, width // 8
        self.gap, self.stall, self.limit = gap, stall, limit
        self.dut = DmaEngine(width, len(reads), len(writes), max_burst, outstanding=outstanding,
                             max_read_burst_beats=max_read_burst,
                             read_outstanding=read_outstanding)
        self.memory = AxiMemory(seed, self.lanes, max_burst, self.rng, ready=ready,
                                aw_ready=aw_ready, valid=valid, latency=latency,
                                poisoned=poisoned, max_read_burst=max_read_burst,
                                rlast_faults=rlast_faults)
        self.requests = [r for rs in reads + writes for r in rs]
        for r in self.requests:
            if not r.refused and any(p in self.memory.poisoned for p in range(
                    r.addr // PAGE, (r.addr + r.length - 1) // PAGE + 1)):
                r.error = True
        self.expected_bursts = {
            kind: sum(len(bursts_of(r.addr, r.length, self.lanes, longest))
                      for rs in group for r in rs if not r.refused)
            for kind, group, longest in (("read", reads, max_read_burst),
                                         ("write", writes, max_burst))}
        self.readers = [ReadClient(self, i, rs) for i, rs in enumerate(reads)]
        self.writers = [WriteClient(self, j, rs) for j, rs in enumerate(writes)]
        self.cycle, self.finished = 0, []

    def step(self, ctx):
        """Drive every input for this cycle, then sample the outputs and check them."""
        clients = self.readers + self.writers
        self.memory.drive(ctx, self.dut.axi)
        for c in clients:
            c.drive(ctx)
        self.memory.sample(ctx, self.dut.axi)
        for c in clients:
            c.sample(ctx)

    async def testbench(self, ctx):
        dut, clients = self.dut, self.readers + self.writers
        while not (self.memory.idle() and all(c.idle() for c in clients)):
            assert self.cycle < self.limit, f"not finished after {self.limit} cycles"
            self.step(ctx)
            await ctx.tick()
            self.cycle += 1
        # Nothing left in flight, nothing spurious afterwards.
        for _ in range(8):
            self.step(ctx)
            for port in (dut.axi.arvalid, dut.axi.awvalid, dut.axi.wvalid,
                         *(p.valid for p in dut.rd_data), *(p.valid for p in dut.wr_done)):
                assert not ctx.get(port), f"{port.name} after the end"
            await ctx.tick()
            self.cycle += 1
        m = self.memory
        assert ctx.get(dut.read_transactions) == m.ar_count == self.expected_bursts["read"]
        assert ctx.get(dut.write_transactions) == m.aw_count == self.expected_bursts["write"]
        refusals = sum(r.refused for r in self.requests)
        assert ctx.get(dut.errors) == refusals + m.error_responses
        self.check_memory()
        print(f"{self.cycle} cycles: {len(self.requests)} requests ({refusals} refused), "
              f"{m.ar_count} AR, {m.aw_count} AW, {m.error_responses} SLVERR, "
              f"{m.w_before_aw} W beats before their AW")

    def check_memory(self):
        """Every byte the slave ever touched: written where a write was due, else as it was."""
        m = self.memory
        want = {page: bytearray(m.initial(page)) for page in m.pages}
        for r in self.requests:
            if isinstance(r.payload, bytes) and r.payload and not r.refused:
                for k, byte in enumerate(r.payload):
                    page = (r.addr + k) // PAGE
                    if page not in m.poisoned:
                        want.setdefault(page, bytearray(m.initial(page)))
                        want[page][(r.addr + k) % PAGE] = byte
        for page, image in want.items():
            got = m.pages[page] if page in m.pages else m.initial(page)
            assert got == image, f"page {page:#x} differs"

    def run(self):
        run_simulation(self.dut, self.testbench, cycle_limit=self.limit + 10)
        return self


# --- request generators -------------------------------------------------------------------

READ_BASE = 1 << 40           # reads: [READ_BASE, READ_BASE + 2**32) and the top pages
WRITE_BASE = 1 << 60          # writes: one 128 KiB window each, region in its middle
WINDOW = 1 << 17


def random_length(rng, lanes, longest):
    kind = rng.random()
    if kind < 0.15:
        return rng.choice([1, lanes, lanes + 1, 2 * lanes - 1])
    if kind < 0.5:
        return rng.randint(1, 8 * lanes)
    return rng.randint(1, longest)


def refused_request(rng, lanes, tag, *, payload=False):
    """Length 0, misaligned (W > 8) or past 2**64."""
    kinds = ["zero", "overflow"] + (["misaligned"] if lanes > 1 else [])
    kind = rng.choice(kinds)
    if kind == "zero":
        addr, length = rng.randrange(0, 1 << 44, lanes), 0
    elif kind == "misaligned":
        addr, length = rng.randrange(1 << 44) | rng.randrange(1, lanes), rng.randint(1, 300)
    else:
        k = rng.randint(0, 40)
        addr, length = TOP - k * lanes, k * lanes + rng.randint(1, 200)
    body = rng.randbytes(length) if payload else b""
    return Request(addr, length, tag, lanes, body)


def read_requests(rng, lanes, count, longest, *, poisoned, top=False):
    out = []
    for n in range(count):
        tag = rng.randrange(256)
        if rng.random() < 0.1:
            out.append(refused_request(rng, lanes, tag))
            continue
        length = random_length(rng, lanes, longest)
        where = rng.random()
        if top and where < 0.1:                 # ends exactly at 2**64
            addr = TOP - beats_of(length, lanes) * lanes
            length = beats_of(length, lanes) * lanes
        elif where < 0.3:                       # starts a little before a 4 KiB boundary
            addr = READ_BASE + rng.randrange(1 << 20) * PAGE - rng.randint(1, 8) * lanes
        elif where < 0.4 and poisoned:
            addr = rng.choice(poisoned) * PAGE + rng.randrange(0, PAGE, lanes)
        else:
            addr = READ_BASE + rng.randrange(0, 1 << 32, lanes)
        out.append(Request(addr, length, tag, lanes))
    return out


def write_requests(rng, lanes, count, longest, windows, *, poisoned_windows=()):
    out = []
    for n in range(count):
        tag = rng.randrange(256)
        if rng.random() < 0.1:
            out.append(refused_request(rng, lanes, tag, payload=True))
            continue
        length = random_length(rng, lanes, longest)
        base = windows.pop()
        offset = rng.randrange(256, WINDOW - length - 256, lanes)
        if rng.random() < 0.3:                  # straddle a 4 KiB boundary
            offset = (WINDOW // 2) - rng.randint(1, 8) * lanes
        out.append(Request(base + offset, length, tag, lanes, rng.randbytes(length)))
    return out


def write_windows(rng, count):
    return [WRITE_BASE + i * WINDOW for i in rng.sample(range(1 << 16), count)]


# --- tests --------------------------------------------------------------------------------

#: The NIC core's engine (gateware/nic_core.py): 2 read and 3 write clients, 256-beat write
#: bursts, 4 write bursts in flight, short read bursts and few of them in flight.
NIC_CORE_ENGINE = {"outstanding": 4, "max_read_burst": READ_BURST_BEATS,
                   "read_outstanding": READ_OUTSTANDING}


@pytest.mark.parametrize("width, max_burst, n_read, n_write, count, longest, top, slave, engine", [
    (8, 256, 2, 2, 14, 600, True, (0.7, 0.7, 0.7), {}),
    (8, 16, 3, 2, 10, 300, False, (0.4, 0.1, 0.4), {}),
    (64, 256, 3, 2, 14, 5000, False, (0.7, 0.7, 0.7), {}),
    (64, 16, 2, 3, 12, 2000, True, (0.6, 0.15, 0.5), {}),
    (64, 256, 2, 3, 10, 2000, True, (0.6, 0.6, 0.6), NIC_CORE_ENGINE),
    pytest.param(8, 256, 2, 3, 8, 400, False, (0.6, 0.6, 0.6), NIC_CORE_ENGINE,
                 marks=pytest.mark.slow),
], ids=["w8", "w8-burst16", "w64", "w64-burst16", "w64-nic-core", "w8-nic-core"])
def test_random_traffic(width, max_burst, n_read, n_write, count, longest, top, slave, engine):
    """Random requests from several clients; ``slave`` = chances of AR/W ready, AW ready
    and R/B valid per cycle (R and B come 1 to 12 cycles after their burst at the soonest);
    ``engine``: the engine's other parameters (the NIC core's, or the defaults)."""
    seed = SEED + 1000 * width + max_burst + 7 * bool(engine)
    rng = random.Random(seed)
    lanes = width // 8
    poisoned = [(READ_BASE >> 12) + rng.randrange(1 << 20) for _ in range(2)]
    windows = write_windows(rng, n_write * count)
    bad_windows = [windows[i] for i in range(0, len(windows), 7)]
    poisoned += [w // PAGE + WINDOW // PAGE // 2 for w in bad_windows]   # a window's middle
    reads = [read_requests(rng, lanes, count, longest, poisoned=poisoned[:2], top=top)
             for _ in range(n_read)]
    writes = [write_requests(rng, lanes, count, longest, windows) for _ in range(n_write)]
    ready, aw_ready, valid = slave
    bench = DmaBench(seed, width, reads, writes, max_burst=max_burst, gap=0.3, stall=0.3,
                     ready=ready, aw_ready=aw_ready, valid=valid, latency=(1, 12),
                     poisoned=poisoned, limit=60_000, **engine).run()
    assert len(bench.finished) == (n_read + n_write) * count
    assert any(r.error and not r.refused for r in bench.requests)      # SLVERR was seen
    if aw_ready < ready:
        assert bench.memory.w_before_aw > 0


def test_long_requests_wide():
    """W=128: 65535-byte read and write (256-beat bursts, 4 KiB crossings), then small ones."""
    seed = SEED + 128
    rng = random.Random(seed)
    lanes = 16
    windows = write_windows(rng, 8)
    reads = [[Request(READ_BASE + 0x30, 65535, 1, lanes)]
             + read_requests(rng, lanes, 6, 700, poisoned=[])]
    writes = [[Request(windows.pop() + 0x100, 65535, 2, lanes, rng.randbytes(65535))]
              + write_requests(rng, lanes, 6, 700, windows)]
    bench = DmaBench(seed, 128, reads, writes, gap=0.1, stall=0.1, ready=0.9, valid=0.9,
                     latency=(1, 6), limit=20_000).run()
    assert len(bench.finished) == 14


def test_refused_requests():
    """Every kind of refusal, between good requests of the same clients, at W=64."""
    seed = SEED + 7
    rng = random.Random(seed)
    lanes = 8
    windows = write_windows(rng, 4)
    bad = [(0x1000, 0), (0x1003, 8), (TOP - 8, 9), (TOP - 0x1000, 0x1001), (TOP - 1, 1)]
    reads = [[Request(READ_BASE, 24, 0, lanes)]
             + [Request(a, n, 10 + i, lanes) for i, (a, n) in enumerate(bad)]
             + [Request(READ_BASE + 0x2000, 1, 99, lanes)]]
    writes = [[Request(windows.pop() + 0x100, 20, 1, lanes, rng.randbytes(20)),
               Request(windows.pop() + 0x100, 1, 2, lanes, b"\xa5")]
              + [Request(a, n, 20 + i, lanes, rng.randbytes(n)) for i, (a, n) in enumerate(bad)]
              + [Request(TOP - 64, 64, 98, lanes, rng.randbytes(64))]]   # ends at 2**64: fine
    bench = DmaBench(seed, 64, reads, writes, gap=0.2, stall=0.2, ready=0.8, valid=0.8,
                     latency=(1, 4), limit=5_000).run()
    assert [r.refused for r in bench.requests].count(True) == 2 * len(bad)
    assert bench.memory.ar_count == 2 and bench.memory.aw_count == 3


@pytest.mark.parametrize("width, length, max_burst", [
    (64, 4096, 256), (8, 1024, 16), (512, 4096, 256)])
def test_throughput(width, length, max_burst):
    """A never-stalling slave with one cycle of latency: one beat per cycle, plus a few."""
    seed = SEED + 3
    rng = random.Random(seed)
    lanes = width // 8
    beats = length // lanes
    read = Request(READ_BASE, length, 5, lanes)
    write = Request(WRITE_BASE, length, 6, lanes, rng.randbytes(length))
    for reqs in (([[read]], []), ([], [[write]])):
        bench = DmaBench(seed, width, *reqs, max_burst=max_burst, limit=3 * beats).run()
    read_cycles = read.finished_at - read.accepted_at
    write_cycles = write.finished_at - write.accepted_at
    print(f"W={width}: {length}-byte read {read_cycles} cycles, write {write_cycles} cycles "
          f"(request taken to last beat / done), {beats} beats")
    assert read_cycles <= beats + 4
    assert write_cycles <= beats + 5


def test_short_read_between_bursts():
    """A client's 16-byte read, taken just after another client's 4 KiB read, is served
    after one 16-beat burst of it, not after the whole of it (bursts round robin)."""
    seed = SEED + 5
    lanes = 8
    short = Request(READ_BASE + 0x10000, 16, 1, lanes)
    long = Request(READ_BASE, 4096, 2, lanes)
    DmaBench(seed, 64, [[short], [long]], [], max_burst=16, limit=2_000).run()
    assert long.accepted_at <= short.accepted_at
    assert short.finished_at - short.accepted_at <= 16 + 8
    assert long.finished_at - long.accepted_at <= 512 + 2 + 8


def test_round_robin():
    """Clients that always have a request are served in turn, one request each."""
    seed = SEED + 4
    rng = random.Random(seed)
    lanes, n = 8, 3
    windows = write_windows(rng, 4 * n)
    reads = [[Request(READ_BASE + 0x1000 * (4 * i + k), 8 * (k + 1), 16 * i + k, lanes)
              for k in range(4)] for i in range(n)]
    writes = [[Request(windows.pop() + 0x100, 8 * (k + 1), 16 * j + k, lanes,
                       rng.randbytes(8 * (k + 1))) for k in range(4)] for j in range(n)]
    bench = DmaBench(seed, 64, reads, writes, limit=2_000).run()
    for group in (reads, writes):
        order = [r.client for r in sorted((r for rs in group for r in rs),
                                          key=lambda r: r.accepted_at)]
        assert order == [(order[0] + k) % n for k in range(4 * n)], order


def test_stalled_done_holds_only_its_client():
    """Write client 0 holds ``wr_done.ready`` low until client 1 has had every done: client 1's
    writes and dones go on meanwhile (the B channel is not held for it), client 0 gets no more
    than ``2 * outstanding`` requests into the engine, and after the release client 0's dones
    all come, in order. With one done register shared by the clients this never ends."""
    seed = SEED + 11
    rng = random.Random(seed)
    lanes, outstanding, count = 8, 4, 14
    windows = write_windows(rng, 2 * count)
    writes = [[Request(windows.pop() + 0x100, rng.choice([16, 64, 200]), 16 * j + k, lanes,
                       b"") for k in range(count)] for j in range(2)]
    for r in (r for rs in writes for r in rs):
        r.payload = rng.randbytes(r.length)
    bench = DmaBench(seed, 64, [], writes, outstanding=outstanding, gap=0.1, ready=0.8,
                     valid=0.8, latency=(1, 8), limit=5_000)
    held, other = bench.writers
    held.hold_done = lambda: not other.idle()
    bench.run()
    released = max(r.finished_at for r in writes[1])
    taken_before = [r for r in writes[0] if r.accepted_at < released]
    print(f"client 1 done at cycle {released}; client 0 had {len(taken_before)} requests "
          f"taken by then")
    assert all(r.finished_at > released for r in writes[0])
    assert len(taken_before) == 2 * outstanding
    assert [r.finished_at for r in writes[0]] == sorted(r.finished_at for r in writes[0])


@pytest.mark.parametrize("fault", ["early", "missing"])
def test_rlast_disagreeing_with_the_burst(fault):
    """A slave whose RLAST is off (one beat early, or missing) in one burst: the request of
    that burst ends with ``error`` (its data still land in their beats, the engine counts
    them), ``errors`` counts every beat whose RLAST was wrong, the other requests are clean."""
    seed = SEED + 12
    lanes = 8
    reads = [[Request(READ_BASE + 0x1000 * k, 8 * lanes * (k + 1), k, lanes)
              for k in range(4)]]
    bad_ar = 2                          # with 8-beat bursts: the 2nd burst of request 1
    reads[0][1].error = True
    bench = DmaBench(seed, 64, reads, [], max_burst=8, rlast_faults={bad_ar: fault},
                     limit=2_000).run()
    assert bench.memory.error_responses == (2 if fault == "early" else 1)
    assert [r.error for r in reads[0]] == [False, True, False, False]


def test_bad_parameters():
    for args, kwargs, match in [
        ((7, 1, 1), {}, "not 7"), ((1024, 1, 1), {}, "not 1024"),
        ((64, 0, 0), {}, "not 0"), ((64, -1, 1), {}, "not -1"), ((64, 1, 17), {}, "not 17"),
        ((64, 1, 1, 0), {}, "not 0"), ((64, 1, 1, 257), {}, "not 257"),
        ((64, 1, 1, 16.0), {}, "not 16.0"), ((64, 1, 1), {"outstanding": 1}, "not 1"),
        ((64, 1, 1), {"max_read_burst_beats": 0}, "not 0"),
        ((64, 1, 1), {"read_outstanding": 65}, "not 65"),
    ]:
        with pytest.raises(ValueError, match=match):
            DmaEngine(*args, **kwargs)
    with pytest.raises(ValueError, match="not 24"):
        DmaReadBeat(24)
