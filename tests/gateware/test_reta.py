# amaranth: UnusedElaboratable=no
# (test_bad_size builds IndirectionTables whose __init__ raises; they are never elaborated.)
"""IndirectionTable in Amaranth's simulator against a two-bank Python model.

Model: a lookup gives ``active[(reta_offset + (hash & mask)) % size]`` with
``mask = (1 << min(reta_size_log2, log2(size))) - 1`` (``reta_index``); bus accesses see the
shadow bank; ``flip_stb`` swaps the banks and the shadow becomes a copy of the new active bank.
"""

import pytest
from amaranth.lib import data

from hetnic.gateware.reta import IndirectionTable
from hetnic.protocol import PacketMeta
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, unpack

SEED = 0x5EED_4E7A
META = data.Layout.cast(PacketMeta)


def model_index(meta: dict, size: int) -> int:
    log2 = size.bit_length() - 1
    mask = (1 << min(meta["reta_size_log2"], log2)) - 1
    return (meta["reta_offset"] + (meta["hash"] & mask)) % size


def random_meta(rng) -> dict:
    """Every field random (``queue`` too: the table must overwrite it)."""
    meta = {name: rng.getrandbits(f.width) for name, f in META}
    meta["reta_size_log2"] = rng.choice([0, 1, 2, rng.randrange(16), rng.randrange(16), 15])
    if rng.random() < 0.2:
        meta["reta_offset"] = rng.choice([0, (1 << 11) - 1])
    return meta


class TableBench:
    """Drives an IndirectionTable from one testbench, one clock per :meth:`step`.

    Per cycle: the source offers the next record unless it idles (chance ``gap``), the sink
    is ready unless stalled (chance ``stall``), and at most one bus access is in progress.
    Every output record is checked against the active bank of the model as it was when the
    record entered; a stalled output must hold (the sink checks it).
    """

    def __init__(self, dut, rng, *, gap=0.0, stall=0.0):
        self.dut, self.rng = dut, rng
        size = dut.size
        self.active = list(range(size))          # the reset contents of both banks
        self.shadow = list(range(size))
        self.cycle = 0
        self.source = StreamSource(dut.i, rng=rng, gap=gap, name="i")
        self.sink = StreamSink(dut.o, rng=rng, stall=stall, name="o")
        self.in_flight = []                      # (expected output, cycle taken)
        self.out_count = 0
        self.latencies = []
        self.bus = None                          # current bus access: [kind, addr, data, start]
        self.bus_results = []                    # (kind, addr, data, cycles from request)
        self.busy_cycles = 0

    def send(self, metas):
        """Queue records (dicts of every :class:`PacketMeta` field) to be sent in order."""
        self.source.extend(pack(PacketMeta, **meta) for meta in metas)

    @property
    def idle(self) -> bool:
        """Every record sent has come out."""
        return self.source.done and not self.in_flight

    async def step(self, ctx):
        dut, rng = self.dut, self.rng
        self.source.drive(ctx)
        self.sink.drive(ctx)
        if self.bus:
            kind, addr, value, _ = self.bus
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.w_data, value if kind == "w" else rng.getrandbits(8))
            ctx.set(dut.bus.r_stb, kind == "r")
            ctx.set(dut.bus.w_stb, kind == "w")
        else:
            ctx.set(dut.bus.addr, rng.randrange(dut.size))
            ctx.set(dut.bus.r_stb, 0)
            ctx.set(dut.bus.w_stb, 0)
        _, _, i_ready, o_valid, o_payload, ack, r_data, busy = await ctx.tick().sample(
            dut.i.ready, dut.o.valid, dut.o.payload.as_value(), dut.bus.ack, dut.bus.r_data,
            dut.bus.busy)
        self.busy_cycles += busy
        if self.sink.update(o_valid, o_payload) is not None:
            assert self.in_flight, f"cycle {self.cycle}: a record nobody sent"
            want, taken_at = self.in_flight.pop(0)
            got = unpack(PacketMeta, o_payload)
            assert got == want, (f"record {self.out_count}: got {got}, want {want}")
            self.latencies.append(self.cycle - taken_at)
            self.out_count += 1
        taken = self.source.update(i_ready)
        if taken is not None:
            meta = unpack(PacketMeta, taken)
            want = dict(meta, queue=self.active[model_index(meta, self.dut.size)])
            self.in_flight.append((want, self.cycle))
        if self.bus and ack:
            kind, addr, value, start = self.bus
            assert not busy, f"cycle {self.cycle}: bus access acknowledged while busy"
            if kind == "w":
                self.shadow[addr] = value
            else:
                assert r_data == self.shadow[addr], \
                    f"cycle {self.cycle}: shadow[{addr}] read {r_data}, want {self.shadow[addr]}"
            self.bus_results.append((kind, addr, r_data, self.cycle - start))
            self.bus = None
        self.cycle += 1
        return busy

    def start_bus(self, kind, addr, value=0):
        assert self.bus is None
        self.bus = [kind, addr, value, self.cycle]

    async def bus_access(self, ctx, kind, addr, value=0):
        self.start_bus(kind, addr, value)
        while self.bus:
            await self.step(ctx)
        return self.bus_results[-1]

    async def drain(self, ctx):
        """Until every record sent came out; then check nothing more comes."""
        while not self.idle:
            await self.step(ctx)
        for _ in range(3):
            await self.step(ctx)
        assert not self.in_flight and not ctx.get(self.dut.o.valid)

    async def flip(self, ctx):
        """Commit at a quiet moment; wait until the refresh is done. Returns busy cycles."""
        assert not self.bus and not ctx.get(self.dut.bus.busy)
        assert not ctx.get(self.dut.i.valid) and not ctx.get(self.dut.o.valid)
        ctx.set(self.dut.flip_stb, 1)
        await ctx.tick()
        ctx.set(self.dut.flip_stb, 0)
        self.cycle += 1
        self.active, self.shadow = self.shadow, list(self.shadow)
        busy = 0
        while ctx.get(self.dut.bus.busy):
            assert busy < 4 * self.dut.size + 10, "busy does not end"
            await self.step(ctx)
            busy += 1
        return busy

    async def load_table(self, ctx, table):
        for addr, queue in enumerate(table):
            await self.bus_access(ctx, "w", addr, queue)


def simulate(size, bench_fn, *, seed, gap=0.0, stall=0.0, cycle_limit=20_000):
    rng = seeded_rng(seed)
    dut = IndirectionTable(size)
    tb = TableBench(dut, rng, gap=gap, stall=stall)

    async def main(ctx):
        await bench_fn(ctx, tb, rng)

    run_simulation(dut, main, cycle_limit=cycle_limit)
    return tb


@pytest.mark.parametrize("size, gap, stall", [(16, 0.0, 0.0), (16, 0.3, 0.4), (64, 0.2, 0.3)])
def test_lookups_random(size, gap, stall):
    async def bench(ctx, tb, rng):
        # The reset table first (entry i holds queue i), then a random one.
        tb.send(random_meta(rng) for _ in range(100))
        await tb.drain(ctx)
        await tb.load_table(ctx, [rng.randrange(256) for _ in range(size)])
        await tb.flip(ctx)
        tb.send(random_meta(rng) for _ in range(300))
        await tb.drain(ctx)
        assert tb.out_count == 400
        if not gap and not stall:
            assert tb.latencies == [2] * 400

    simulate(size, bench, seed=SEED + size + int(10 * gap), gap=gap, stall=stall)


@pytest.mark.parametrize("size", [2, 16])
def test_every_slice(size):
    """Every slice size and offset, with hashes that exercise the slice mask."""
    async def bench(ctx, tb, rng):
        await tb.load_table(ctx, [rng.randrange(256) for _ in range(size)])
        await tb.flip(ctx)
        metas = []
        for log2 in range(16):
            for offset in (0, 1, size - 1, size, 2047, rng.randrange(2048)):
                for hash_ in (0, 0xFFFF_FFFF, rng.getrandbits(32)):
                    meta = random_meta(rng)
                    meta.update(reta_size_log2=log2, reta_offset=offset, hash=hash_)
                    metas.append(meta)
        tb.send(metas)
        await tb.drain(ctx)
        assert tb.out_count == len(metas) == 16 * 6 * 3

    simulate(size, bench, seed=SEED + 100 + size)


def test_bus_writes_go_to_shadow_and_flip():
    """Bus writes during traffic change nothing the lookups see; the flip swaps tables between
    two records; during the refresh bus accesses wait; afterwards the shadow reads back the
    active table."""
    size = 32

    async def bench(ctx, tb, rng):
        table_a = [rng.randrange(256) for _ in range(size)]
        await tb.load_table(ctx, table_a)
        await tb.flip(ctx)
        for round_ in range(3):
            # Traffic with table A active while the whole shadow is rewritten (and read).
            table_b = [rng.randrange(256) for _ in range(size)]
            tb.send(random_meta(rng) for _ in range(120))
            order = list(range(size))
            rng.shuffle(order)
            writes = [("w", addr, table_b[addr]) for addr in order]
            reads = [("r", rng.randrange(size), 0) for _ in range(size)]
            accesses = writes + reads
            while accesses or not tb.idle or tb.bus:
                if not tb.bus and accesses and rng.random() < 0.7:
                    tb.start_bus(*accesses.pop(0))
                await tb.step(ctx)
            assert tb.shadow == table_b and tb.active != table_b
            for addr in range(size):
                _, _, value, _ = await tb.bus_access(ctx, "r", addr)
                assert value == table_b[addr]

            # Flip; a write or a read issued in the first busy cycle waits for the refresh.
            tb.busy_cycles = 0
            ctx.set(tb.dut.flip_stb, 1)
            await ctx.tick()
            ctx.set(tb.dut.flip_stb, 0)
            tb.cycle += 1
            tb.active, tb.shadow = tb.shadow, list(tb.shadow)
            kind = "w" if round_ % 2 == 0 else "r"
            target = rng.randrange(size)
            tb.start_bus(kind, target, 0x5A)
            waited = 0
            while tb.bus:
                await tb.step(ctx)
                waited += 1
            assert waited >= size, f"{kind} access answered during the refresh ({waited})"
            assert tb.busy_cycles == size + 1
            # The refresh made the shadow equal to the active table (bus_access checks every
            # read against the model's shadow), apart from the write that waited.
            want = list(tb.active)
            if kind == "w":
                want[target] = 0x5A
            assert tb.shadow == want
            for addr in range(size):
                await tb.bus_access(ctx, "r", addr)
            assert ctx.get(tb.dut.bus.busy) == 0
            # Lookups use table B now.
            tb.send(random_meta(rng) for _ in range(60))
            await tb.drain(ctx)
            if kind == "w":           # undo, so the next round starts from shadow == active
                await tb.bus_access(ctx, "w", target, tb.active[target])

    simulate(size, bench, seed=SEED + 200, gap=0.2, stall=0.3)


def test_refresh_timing_and_bus_latency():
    """``busy`` lasts ``size + 1`` cycles after the flip; reads are answered two cycles after
    the request, writes at once, one after another."""
    size = 16

    async def bench(ctx, tb, rng):
        for addr in range(size):
            _, _, _, cycles = await tb.bus_access(ctx, "w", addr, addr ^ 0x33)
            assert cycles == 0, "write not performed in the cycle of the request"
        for addr in range(size):
            _, _, value, cycles = await tb.bus_access(ctx, "r", addr)
            assert cycles == 2 and value == addr ^ 0x33
        busy = await tb.flip(ctx)
        assert busy == size + 1, f"busy for {busy} cycles"
        assert tb.shadow == tb.active == [a ^ 0x33 for a in range(size)]
        for addr in range(size):
            await tb.bus_access(ctx, "r", addr)
        # Back-to-back flips: each one swaps the banks and refreshes the shadow again.
        await tb.bus_access(ctx, "w", 5, 0xEE)
        await tb.flip(ctx)
        await tb.flip(ctx)
        tb.send(dict(random_meta(rng), reta_size_log2=15, reta_offset=5, hash=0)
                for _ in range(3))
        await tb.drain(ctx)
        assert (await tb.bus_access(ctx, "r", 5))[2] == 0xEE

    simulate(size, bench, seed=SEED + 300)


@pytest.mark.parametrize("size", [0, 1, 3, 48, 4096, 16.0, "16"])
def test_bad_size(size):
    with pytest.raises(ValueError, match="power of two"):
        IndirectionTable(size)
