# amaranth: UnusedElaboratable=no
# (test_bad_parameters builds components whose __init__ raises; they are never elaborated.)
"""TxWorkItemFetcher on its own, in Amaranth's simulator: a model of the TX queue file and of
the DMA slot reads around it, directed work items of every kind, and the cycle count the
docstring gives for cached SINGLE work items. (The whole TX path, with random traffic and
errors, is tested through TxWorkItemEngine in test_tx_engine.py.)"""

import random
from collections import deque

import pytest

from hetnic.gateware.tx_fetch import (TAG_FETCH_BIT, TAG_LAST_BIT, FetchedWorkItem,
                                      TxWorkItemFetcher)
from hetnic.protocol import (TxGatherEntry, TxLengths, TxOpcode, TxStatus, TxWorkItem, pack,
                             unpack)
from kit import StreamSink, run_simulation

SEED = 0x7F_E7C4
W = 64
RING = 0x0000_7F00_0000_0000        # ring of queue q at RING + q * 0x10000
DATA = 0x0000_7E00_0000_0000
FETCH, LAST = 1 << TAG_FETCH_BIT, 1 << TAG_LAST_BIT


def single(addr, length, cookie):
    return [pack(TxWorkItem, opcode=TxOpcode.SINGLE, length=length, addr=addr, cookie=cookie)]


def gather(entries, cookie):
    return ([pack(TxWorkItem, opcode=TxOpcode.GATHER, count=len(entries), cookie=cookie)]
            + [pack(TxGatherEntry, addr=a, length=n) for a, n in entries])


def batch(addr, lengths, cookie):
    slots = [pack(TxWorkItem, opcode=TxOpcode.BATCH, count=len(lengths), addr=addr,
                  cookie=cookie)]
    for i in range(0, len(lengths), 8):
        slots.append(pack(TxLengths, **{f"length{j}": n for j, n in
                                        enumerate(lengths[i:i + 8])}))
    return slots


class QueueFileModel:
    """The TX queue file as the fetcher sees it: per queue a ring (dict of slots), ``prod``
    and the fetch index ``head``; answers ``sel_*`` for ``sel`` and takes ``head_stb``."""

    def __init__(self, n_queues, size=64):
        self.size = size
        self.rings = [{} for _ in range(n_queues)]
        self.prod = [0] * n_queues
        self.head = [0] * n_queues
        self.halted = [False] * n_queues
        self.starts = 0

    def post(self, q, slots):
        for s in slots:
            self.rings[q][self.prod[q] % self.size] = s
            self.prod[q] += 1

    def base(self, q):
        return RING + q * 0x10000

    def slot_at(self, addr):
        q, offset = divmod(addr - RING, 0x10000)
        return self.rings[q].get(offset // 16, 0)

    def drive(self, ctx, port):
        runnable = sum(1 << q for q in range(len(self.prod))
                       if self.prod[q] != self.head[q] and not self.halted[q])
        ctx.set(port.runnable, runnable)
        q = ctx.get(port.sel)
        ctx.set(port.sel_base, self.base(q))
        ctx.set(port.sel_mask, self.size - 1)
        ctx.set(port.sel_prod, self.prod[q] & 0xFFFF)
        ctx.set(port.sel_head, self.head[q] & 0xFFFF)

    def update(self, ctx, port):
        q = ctx.get(port.sel)
        self.starts += ctx.get(port.start_stb)
        if ctx.get(port.head_stb):
            self.head[q] += ctx.get(port.head_slots)
        if ctx.get(port.halt_stb):
            self.halted[q] = True


def run(dut, queues, *, rng, stall=0.0, cycles):
    """Step the fetcher until it is idle and everything posted is fetched: returns the jobs,
    the lengths, the data reads and the slot reads, each with the cycle it was taken."""
    data_reads, slot_reads = [], []
    beats = deque()                     # (first cycle it may be offered, beat fields)
    # The fetcher's outputs, each ready unless it stalls; the sinks check the hold rule.
    rd_req, jobs, lengths = (StreamSink(port, rng=rng, stall=stall, name=name) for name, port
                             in (("rd_req", dut.rd_req), ("jobs", dut.jobs),
                                 ("lengths", dut.lengths)))

    async def bench(ctx):
        cycle = idle = 0
        while idle < 20:
            queues.drive(ctx, dut.queues)
            for sink in (rd_req, jobs, lengths):
                sink.drive(ctx)
            offer = bool(beats) and beats[0][0] <= cycle
            ctx.set(dut.slot_data.valid, offer)
            if offer:
                ctx.set(dut.slot_data.payload, beats[0][1])
            taken = rd_req.update(*(ctx.get(signal) for signal in rd_req.sampled))
            if taken is not None:
                req = unpack(dut.rd_req.payload.shape(), taken)
                if req["tag"] & FETCH:
                    slot_reads.append((cycle, req))
                    for k in range(req["length"] // 16):
                        slot = queues.slot_at(req["addr"] + 16 * k)
                        for b in range(128 // W):
                            beats.append((cycle + 3, {
                                "data": slot >> (W * b) & ((1 << W) - 1), "keep": 0xFF,
                                "last": k == req["length"] // 16 - 1 and b == 128 // W - 1,
                                "error": 0, "tag": req["tag"]}))
                else:
                    data_reads.append((cycle, req["addr"], req["length"], req["tag"]))
            if offer and ctx.get(dut.slot_data.ready):
                beats.popleft()
            jobs.update(*(ctx.get(signal) for signal in jobs.sampled))
            lengths.update(*(ctx.get(signal) for signal in lengths.sampled))
            queues.update(ctx, dut.queues)
            busy = (ctx.get(dut.queues.runnable) or ctx.get(dut.rd_req.valid) or bool(beats)
                    or ctx.get(dut.jobs.valid) or ctx.get(dut.lengths.valid))
            idle = 0 if busy else idle + 1
            await ctx.tick()
            cycle += 1

    run_simulation(dut, bench, cycle_limit=cycles)
    return ([unpack(FetchedWorkItem, value) for value in jobs.received], lengths.received,
            data_reads, slot_reads)


def job(q, cookie, wqe_index, slots, status=TxStatus.OK, messages=0):
    return {"queue": q, "cookie": cookie, "wqe_index": wqe_index, "slots": slots,
            "status": status, "messages": messages}


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_directed_work_items(stall):
    seed = SEED + int(stall * 10)
    print(f"seed={seed:#x}")
    queues = QueueFileModel(2)
    gathered = [(DATA + 0x100, 60), (DATA + 0x200, 1514), (DATA + 0x800, 8)]
    batched = [64] * 9 + [7]
    queues.post(0, single(DATA, 100, cookie=1))
    queues.post(0, [pack(TxWorkItem, opcode=TxOpcode.NOP, cookie=2)])
    queues.post(0, gather(gathered, cookie=3))
    queues.post(0, batch(DATA + 0x1000, batched, cookie=4))
    queues.post(0, [pack(TxWorkItem, opcode=9, cookie=5)])
    queues.post(0, single(DATA + 4, 100, cookie=6))                 # misaligned
    queues.post(0, [pack(TxWorkItem, opcode=TxOpcode.BATCH, count=0, cookie=7)])
    queues.post(1, single(DATA + 0x4000, 64, cookie=8))
    dut = TxWorkItemFetcher(W, 2)
    jobs, lengths, data_reads, _ = run(dut, queues, rng=random.Random(seed), stall=stall,
                                       cycles=5_000)

    assert [j for j in jobs if j["queue"] == 0] == [
        job(0, 1, 0, 1, messages=1), job(0, 2, 1, 1), job(0, 3, 2, 4, messages=3),
        job(0, 4, 6, 3, messages=10), job(0, 5, 9, 1, TxStatus.BAD_OPCODE),
        job(0, 6, 10, 1, TxStatus.BAD_LENGTH), job(0, 7, 11, 1, TxStatus.BAD_COUNT)]
    assert [j for j in jobs if j["queue"] == 1] == [job(1, 8, 0, 1, messages=1)]
    assert jobs[0]["queue"] == 1          # after reset the round robin starts at queue 1
    assert queues.head == queues.prod and queues.starts == 8

    reads = [(a, n, t) for _, a, n, t in data_reads]
    assert [r for r in reads if r[2] & 0x3F == 0] == [
        (DATA, 100, LAST), *[(a, n, 0) for a, n in gathered[:2]], (*gathered[2], LAST),
        (DATA + 0x1000, 9 * 64 + 8, LAST)]
    assert [r for r in reads if r[2] & 0x3F == 1] == [(DATA + 0x4000, 64, LAST | 1)]
    expected_lengths = {0: [100, 60, 1514, 8, *batched], 1: [64]}
    # The lengths of one queue's messages keep their order; queue 1's single length goes
    # in first (it is served first).
    assert lengths == expected_lengths[1] + expected_lengths[0]


def test_cached_singles_take_six_cycles():
    """Twenty SINGLE work items posted together: one slot read brings them all, then a data
    read every 6 cycles (SELECT, LATCH, ENSURE, HEADER, RECORD, SINGLE)."""
    queues = QueueFileModel(1)
    for k in range(20):
        queues.post(0, single(DATA + 0x1000 * k, 60 + k, cookie=k))
    dut = TxWorkItemFetcher(W, 1)
    jobs, lengths, data_reads, slot_reads = run(dut, queues, rng=random.Random(SEED),
                                                cycles=2_000)
    assert [(r["addr"], r["length"]) for _, r in slot_reads] == [(RING, 20 * 16)]
    assert [(a, n) for _, a, n, _ in data_reads] == [(DATA + 0x1000 * k, 60 + k)
                                                     for k in range(20)]
    assert lengths == [60 + k for k in range(20)]
    assert [j["cookie"] for j in jobs] == list(range(20))
    cycles = [c for c, *_ in data_reads]
    assert {b - a for a, b in zip(cycles, cycles[1:])} == {6}


@pytest.mark.parametrize("args", [(7, 1), (256, 1), (64, 0), (64, 65), (64, True)])
def test_bad_parameters(args):
    with pytest.raises(ValueError, match="must be"):
        TxWorkItemFetcher(*args)
