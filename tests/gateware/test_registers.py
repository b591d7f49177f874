# amaranth: UnusedElaboratable=no
# (test_bad_address_width builds an AxiLiteSlave whose __init__ raises.)
"""AxiLiteSlave + RegisterFile in Amaranth's simulator, driven by an AXI4-Lite master model.

The block under test is the register path of the RX pipeline: the AXI4-Lite slave, the
register file, and the indirection table and counters it forwards to, wired as in
:class:`hetnic.gateware.rx_pipeline.RxPipeline` except that the test decides when a pending
commit is applied (``apply_en``). The Python model is the register table itself
(:class:`hetnic.regs.RegisterMap`): reset values, read-only values and the layout of the
active outputs.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, connect, flipped

from hetnic.gateware.axil import AxiLiteSignature, AxiLiteSlave
from hetnic.params import NicParams
from hetnic.protocol import Rule, RuleAction
from hetnic.regs import RULE_STRIDE, RULE_WORDS
from kit import run_simulation, seeded_rng
from kit.register_path import RegisterPath

SEED = 0x5EED_A11E
OKAY, SLVERR = 0, 2
RULE_BITS = data.Layout.cast(Rule).size
ACTION_BITS = data.Layout.cast(RuleAction).size


class RegisterBlock(wiring.Component):
    """The RX pipeline's register path behind the AXI4-Lite slave; a pending commit applies
    while ``apply_en`` is high (and the RETA is not busy), as the pipeline does at a frame
    boundary."""
    axi: In(AxiLiteSignature(16))
    apply_en: In(1)

    def __init__(self, regmap):
        super().__init__()
        self.regmap = regmap
        self.axil = AxiLiteSlave(16)
        self.path = RegisterPath(regmap)
        self.regs, self.reta, self.counters = self.path.regs, self.path.reta, self.path.counters

    def elaborate(self, platform):
        m = Module()
        m.submodules.axil, m.submodules.path = axil, path = self.axil, self.path
        connect(m, flipped(self.axi), axil.axi)
        connect(m, axil.csr, path.csr)
        m.d.comb += path.apply_en.eq(self.apply_en)
        return m


class AxiLiteMaster:
    """AXI4-Lite master model: one transaction at a time, random delays (0 ..
    ``max_delay`` cycles) before raising each of ``awvalid``, ``wvalid``, ``arvalid``,
    ``bready`` and ``rready``, garbage on the address and data lines while they are not
    valid. Every wait is bounded by ``limit`` cycles. Checks that no response comes before
    its request was accepted and that a stalled read response holds its data."""

    def __init__(self, axi, rng, max_delay=3, limit=200):
        self.axi, self.rng, self.max_delay, self.limit = axi, rng, max_delay, limit
        self.last_cycles = 0            # cycles the last transaction took

    def _delay(self):
        return self.rng.randint(0, self.max_delay)

    async def write(self, ctx, addr, value, strb=0b1111):
        axi, rng = self.axi, self.rng
        aw_wait, w_wait = self._delay(), self._delay()
        aw_done = w_done = False
        cycles = 0
        while not (aw_done and w_done):
            aw_valid = not aw_done and aw_wait <= 0
            w_valid = not w_done and w_wait <= 0
            ctx.set(axi.awvalid, aw_valid)
            ctx.set(axi.awaddr, addr if aw_valid else rng.getrandbits(16))
            ctx.set(axi.awprot, rng.getrandbits(3))
            ctx.set(axi.wvalid, w_valid)
            ctx.set(axi.wdata, value if w_valid else rng.getrandbits(32))
            ctx.set(axi.wstrb, strb if w_valid else rng.getrandbits(4))
            ctx.set(axi.bready, rng.random() < 0.5)
            _, _, awready, wready, bvalid = await ctx.tick().sample(
                axi.awready, axi.wready, axi.bvalid)
            cycles += 1
            assert cycles < self.limit, f"write {addr:#06x}: address/data not taken"
            assert not bvalid, f"write {addr:#06x}: bvalid before the write was accepted"
            aw_done |= aw_valid and bool(awready)
            w_done |= w_valid and bool(wready)
            aw_wait, w_wait = aw_wait - 1, w_wait - 1
        ctx.set(axi.awvalid, 0)
        ctx.set(axi.wvalid, 0)
        b_wait = self._delay()
        while True:
            ready = b_wait <= 0
            ctx.set(axi.bready, ready)
            _, _, bvalid, bresp = await ctx.tick().sample(axi.bvalid, axi.bresp)
            cycles += 1
            assert cycles < self.limit, f"write {addr:#06x}: no response"
            b_wait -= 1
            if bvalid and ready:
                ctx.set(axi.bready, 0)
                self.last_cycles = cycles
                return bresp

    async def read(self, ctx, addr):
        """Returns ``(rdata, rresp)``."""
        axi, rng = self.axi, self.rng
        ar_wait = self._delay()
        cycles = 0
        while True:
            valid = ar_wait <= 0
            ctx.set(axi.arvalid, valid)
            ctx.set(axi.araddr, addr if valid else rng.getrandbits(16))
            ctx.set(axi.arprot, rng.getrandbits(3))
            ctx.set(axi.rready, rng.random() < 0.5)
            _, _, arready, rvalid = await ctx.tick().sample(axi.arready, axi.rvalid)
            cycles += 1
            assert cycles < self.limit, f"read {addr:#06x}: address not taken"
            assert not rvalid, f"read {addr:#06x}: rvalid before the read was accepted"
            ar_wait -= 1
            if valid and arready:
                break
        ctx.set(axi.arvalid, 0)
        r_wait, held = self._delay(), None
        while True:
            ready = r_wait <= 0
            ctx.set(axi.rready, ready)
            _, _, rvalid, rdata, rresp = await ctx.tick().sample(
                axi.rvalid, axi.rdata, axi.rresp)
            cycles += 1
            assert cycles < self.limit, f"read {addr:#06x}: no response"
            if held is not None:
                assert rvalid and (rdata, rresp) == held, \
                    f"read {addr:#06x}: stalled response changed"
            r_wait -= 1
            if rvalid and ready:
                ctx.set(axi.rready, 0)
                self.last_cycles = cycles
                return rdata, rresp
            held = (rdata, rresp) if rvalid else None

    async def read_ok(self, ctx, addr):
        value, resp = await self.read(ctx, addr)
        assert resp == OKAY, f"read {addr:#06x}: rresp {resp}"
        return value

    async def write_ok(self, ctx, addr, value):
        resp = await self.write(ctx, addr, value)
        assert resp == OKAY, f"write {addr:#06x}: bresp {resp}"


# --- the model: register table -> shadow words -> active outputs ----------------------------

def shadow_words(rm):
    """``{name: (address, reset value)}`` of every writable shadow word except the RETA."""
    words = {}
    for name in ("CTRL", "MAX_FRAME", "DIRECT_ETHERTYPE", "DEFAULT_ACTION"):
        words[name] = (rm.addr(name), rm.reset_value(name))
    for k in range(rm.count("RSS_KEY")):
        words[f"RSS_KEY[{k}]"] = (rm.addr("RSS_KEY", k), rm.reset_value("RSS_KEY", k))
    for r in range(rm.count("RULE")):
        for w in range(RULE_WORDS):
            words[f"RULE[{r}].{w}"] = (rm.addr("RULE", r, w), 0)
    return words


def active_model(rm, shadow):
    """The active outputs the register file must show once ``shadow`` (name -> word) is
    committed."""
    ctrl = shadow["CTRL"]
    key = 0
    for k in range(rm.count("RSS_KEY")):
        key = key << 32 | shadow[f"RSS_KEY[{k}]"]
    rules = 0
    for r in range(rm.count("RULE")):
        rule = sum(shadow[f"RULE[{r}].{w}"] << 32 * w for w in range(RULE_WORDS))
        rules |= (rule & ((1 << RULE_BITS) - 1)) << r * RULE_BITS
    return {
        "hash_enable": ctrl & 0xFF, "symmetric": ctrl >> 8 & 1, "pass_errors": ctrl >> 9 & 1,
        "max_frame": shadow["MAX_FRAME"] & 0xFFFF,
        "direct_ethertype": shadow["DIRECT_ETHERTYPE"] & 0xFFFF,
        "default_action": shadow["DEFAULT_ACTION"] & ((1 << ACTION_BITS) - 1),
        "key": key, "rules": rules,
    }


def active_outputs(ctx, regs):
    out = {}
    for name in ("hash_enable", "symmetric", "pass_errors", "max_frame", "direct_ethertype",
                 "key"):
        out[name] = ctx.get(getattr(regs, name))
    out["default_action"] = ctx.get(regs.default_action.as_value())
    out["rules"] = ctx.get(regs.rules.as_value())
    return out


def random_word(rng):
    return rng.choice([0, 0xFFFF_FFFF, rng.getrandbits(32), rng.getrandbits(32),
                       1 << rng.randrange(32)])


def register_bench(seed, *, max_delay=3, **map_params):
    """The parts of one seeded run: its ``rng`` (the seed is printed), a :func:`small_map`
    with ``map_params``, the :class:`RegisterBlock` and an :class:`AxiLiteMaster` on its port
    (with its own generator, seeded ``seed + 1``)."""
    rng = seeded_rng(seed)
    rm = small_map(**map_params)
    dut = RegisterBlock(rm)
    return rng, rm, dut, AxiLiteMaster(dut.axi, random.Random(seed + 1), max_delay=max_delay)


def small_map(**overrides):
    params = dict(n_rules=2, reta_size=16, queues=4)
    params.update(overrides)
    return NicParams(data_width=64, **params).regmap()


# --- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    dict(data_width=64, n_rules=2, reta_size=16, queues=4),
    dict(data_width=256, n_rules=3, reta_size=64, queues=7, hash_bytes_per_cycle=5),
    dict(data_width=8, n_rules=4, reta_size=128, queues=16, flow_table=False),  # a board's
])
def test_identification_registers(params):
    rm = NicParams(**params).regmap()
    dut = RegisterBlock(rm)
    master = AxiLiteMaster(dut.axi, random.Random(SEED))
    print(f"seed={SEED:#x}")
    caps_flow = rm["CAPS"].field("flow_table")
    with_table = NicParams().regmap()       # where the FLOW_* registers are in a build with it
    flow_addrs = [with_table.addr(name) for name in ("FLOW_HITS", "FLOW_MISSES", "FLOW_REFUSED",
                                                     "FLOW_ENTRY", "FLOW_RESULT", "FLOW_STATUS")]

    async def bench(ctx):
        for name in ("ID", "VERSION", "PARAMS0", "PARAMS1", "CAPS"):
            value = await master.read_ok(ctx, rm.addr(name))
            assert value == rm.ro_value(name), f"{name}: {value:#x} != {rm.ro_value(name):#x}"
        assert await master.read_ok(ctx, rm.addr("ID")) == 0x484E4943
        caps = await master.read_ok(ctx, rm.addr("CAPS"))
        assert caps_flow.decode(caps) == int(rm.params["flow_table"])
        if not rm.params["flow_table"]:
            # A build without the table: its registers are absent, read 0, ignore writes.
            for addr in flow_addrs:
                await master.write_ok(ctx, addr, 0xFFFF_FFFF)
                assert await master.read(ctx, addr) == (0, OKAY), f"read {addr:#06x}"

    run_simulation(dut, bench, cycle_limit=500)


def test_shadow_reset_write_commit():
    """Reset values, read-back of every shadow word, active outputs that change only when a
    commit is applied, and the COMMIT/COMMIT_STATUS/GENERATION handshake."""
    rng, rm, dut, master = register_bench(SEED + 1)
    regs = dut.regs
    words = shadow_words(rm)

    async def status(ctx):
        return await master.read_ok(ctx, rm.addr("COMMIT_STATUS"))

    async def bench(ctx):
        shadow = {name: reset for name, (_, reset) in words.items()}
        # Reset: shadows read their reset values; active copies equal them.
        for name, (addr, reset) in words.items():
            assert await master.read_ok(ctx, addr) == reset, f"{name} reset value"
        assert active_outputs(ctx, regs) == active_model(rm, shadow)
        assert await master.read_ok(ctx, rm.addr("GENERATION")) == 0
        assert await status(ctx) == 0
        assert ctx.get(regs.generation) == 0 and not ctx.get(regs.commit_pending)

        # COMMIT with bit 0 clear is not a commit.
        await master.write_ok(ctx, rm.addr("COMMIT"), 0xFFFF_FFFE)
        assert not ctx.get(regs.commit_pending) and await status(ctx) == 0

        generation = 0
        for round_ in range(3):
            active = active_outputs(ctx, regs)
            names = list(words)
            rng.shuffle(names)
            for name in names[:len(names) // 2 + 5 * round_]:
                addr, _ = words[name]
                shadow[name] = random_word(rng)
                await master.write_ok(ctx, addr, shadow[name])
                assert active_outputs(ctx, regs) == active, f"{name}: write changed output"
                assert not ctx.get(regs.commit_pending)
            for name, (addr, _) in words.items():
                assert await master.read_ok(ctx, addr) == shadow[name], f"{name} read-back"
            assert active_outputs(ctx, regs) == active

            # COMMIT (twice: a second one while pending is merged) sets pending only.
            await master.write_ok(ctx, rm.addr("COMMIT"), 1)
            assert ctx.get(regs.commit_pending)
            await master.write_ok(ctx, rm.addr("COMMIT"), rng.getrandbits(32) | 1)
            assert await status(ctx) == 1
            assert await master.read_ok(ctx, rm.addr("GENERATION")) == generation
            # A write while the commit is pending goes into it: the commit copies the shadows
            # as they are when it applies (hetnic.regs, "shadow").
            late = rng.choice(list(words))
            shadow[late] = random_word(rng)
            await master.write_ok(ctx, words[late][0], shadow[late])
            assert ctx.get(regs.commit_pending)
            for _ in range(5):
                await ctx.tick()
                assert ctx.get(regs.commit_pending)
                assert active_outputs(ctx, regs) == active
                assert ctx.get(regs.generation) == generation

            # The apply: the rules are copied word by word (pending stays high, generation
            # holds), then commit_done: every output new right after its clock edge.
            ctx.set(dut.apply_en, 1)
            assert ctx.get(regs.commit_apply)
            copy_cycles = rm.params["n_rules"] * RULE_STRIDE // 4
            for cycle in range(copy_cycles + 10):
                await ctx.tick()
                if ctx.get(regs.commit_done):
                    break
                assert ctx.get(regs.commit_pending) and ctx.get(regs.generation) == generation
            else:
                raise AssertionError("commit_done never came")
            assert cycle >= copy_cycles
            await ctx.tick()
            ctx.set(dut.apply_en, 0)
            generation += 1
            assert not ctx.get(regs.commit_pending)
            assert ctx.get(regs.generation) == generation
            assert active_outputs(ctx, regs) == active_model(rm, shadow)

            # The RETA refresh follows every applied commit; wait for it.
            for _ in range(2 * rm.params["reta_size"] + 10):
                if not ctx.get(dut.reta.bus.busy):
                    break
                await ctx.tick()
            assert await status(ctx) == 0
            assert await master.read_ok(ctx, rm.addr("GENERATION")) == generation
            # Applying again needs a new COMMIT.
            ctx.set(dut.apply_en, 1)
            for _ in range(3):
                await ctx.tick()
            ctx.set(dut.apply_en, 0)
            assert ctx.get(regs.generation) == generation
            assert active_outputs(ctx, regs) == active_model(rm, shadow)

    run_simulation(dut, bench, cycle_limit=30_000)


def test_commit_waits_for_reta_refresh():
    """COMMIT_STATUS.busy while the RETA shadow is refreshed; a commit is not applied and a
    RETA write is not performed until the refresh is done."""
    rng, rm, dut, master = register_bench(SEED + 2, max_delay=0, reta_size=64)
    size = rm.params["reta_size"]
    regs = dut.regs

    async def bench(ctx):
        table = [rng.randrange(256) for _ in range(size)]
        for index, queue in enumerate(table):
            await master.write_ok(ctx, rm.addr("RETA", index), queue | rng.getrandbits(24) << 8)
        for index, queue in enumerate(table):
            assert await master.read_ok(ctx, rm.addr("RETA", index)) == queue
        await master.write_ok(ctx, rm.addr("COMMIT"), 1)
        ctx.set(dut.apply_en, 1)
        for _ in range(rm.params["n_rules"] * RULE_STRIDE // 4 + 10):
            await ctx.tick()
            if ctx.get(regs.commit_done):
                break
        await ctx.tick()
        ctx.set(dut.apply_en, 0)
        assert ctx.get(dut.reta.bus.busy) and ctx.get(regs.generation) == 1
        assert await master.read_ok(ctx, rm.addr("COMMIT_STATUS")) == 0b10
        # A commit while busy stays pending, even with apply_en high.
        await master.write_ok(ctx, rm.addr("COMMIT"), 1)
        assert await master.read_ok(ctx, rm.addr("COMMIT_STATUS")) == 0b11
        ctx.set(dut.apply_en, 1)
        for _ in range(3):
            assert ctx.get(dut.reta.bus.busy) and not ctx.get(regs.commit_apply)
            await ctx.tick()
        assert ctx.get(regs.generation) == 1
        # A RETA write now waits for the refresh. Then the pending commit applies: while it
        # copies the rules the write lands in the RETA shadow, so it is part of the commit
        # (the shadows as they are when the commit ends), and a second refresh follows.
        await master.write_ok(ctx, rm.addr("RETA", 3), 0xA5)
        assert master.last_cycles >= 20, "RETA write did not wait for the refresh"
        for _ in range(rm.params["n_rules"] * RULE_STRIDE // 4 + 2 * size + 20):
            if ctx.get(regs.generation) == 2 and not ctx.get(dut.reta.bus.busy):
                break
            await ctx.tick()
        ctx.set(dut.apply_en, 0)
        assert ctx.get(regs.generation) == 2 and not ctx.get(regs.commit_pending)
        assert not ctx.get(dut.reta.bus.busy)
        table[3] = 0xA5
        for index, queue in enumerate(table):
            assert await master.read_ok(ctx, rm.addr("RETA", index)) == queue, index

    run_simulation(dut, bench, cycle_limit=20_000)


def test_rule_access_waits_for_the_copy():
    """A rule write or any shadow write issued while the rules are being copied waits until
    the commit is done, and is not part of it; reads of other registers are answered."""
    rng, rm, dut, master = register_bench(SEED + 3, max_delay=0, n_rules=4)
    regs = dut.regs
    copy_cycles = rm.params["n_rules"] * RULE_STRIDE // 4

    async def bench(ctx):
        old = rng.getrandbits(32)
        await master.write_ok(ctx, rm.addr("RULE", 3, 0), old)
        await master.write_ok(ctx, rm.addr("COMMIT"), 1)
        ctx.set(dut.apply_en, 1)
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(regs.commit_pending)
        assert await master.read_ok(ctx, rm.addr("GENERATION")) == 0   # answered
        new = old ^ 0xFFFF_FFFF
        await master.write_ok(ctx, rm.addr("RULE", 3, 0), new)          # waits for the copy
        assert master.last_cycles >= copy_cycles - 10
        assert ctx.get(regs.generation) == 1 and not ctx.get(regs.commit_pending)
        ctx.set(dut.apply_en, 0)
        assert ctx.get(regs.rules[3].as_value()) & 0xFFFF_FFFF == old       # not in the commit
        assert await master.read_ok(ctx, rm.addr("RULE", 3, 0)) == new
        await master.write_ok(ctx, rm.addr("MAX_FRAME"), 0x1234)
        await master.write_ok(ctx, rm.addr("COMMIT"), 1)
        while ctx.get(dut.reta.bus.busy):           # the RETA refresh after the first commit
            await ctx.tick()
        ctx.set(dut.apply_en, 1)
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(regs.commit_pending)     # copying
        await master.write_ok(ctx, rm.addr("MAX_FRAME"), 0x4321)         # waits too
        assert ctx.get(regs.max_frame) == 0x1234 and ctx.get(regs.generation) == 2
        assert await master.read_ok(ctx, rm.addr("MAX_FRAME")) == 0x4321

    run_simulation(dut, bench, cycle_limit=5_000)


def test_byte_strobes_are_rejected():
    rng, rm, dut, master = register_bench(SEED + 3)
    targets = [("CTRL", 0), ("MAX_FRAME", 0), ("RSS_KEY", 9), ("RULE", 1), ("RETA", 5)]

    async def bench(ctx):
        for name, index in targets:
            addr = rm.addr(name, index)
            before = await master.read_ok(ctx, addr)
            for strb in (0b0000, 0b0001, 0b0111, 0b1110, 0b1011, 0b1000):
                assert await master.write(ctx, addr, before ^ 0xFFFF_FFFF, strb) == SLVERR
                assert await master.read_ok(ctx, addr) == before, f"{name} changed, {strb=:#b}"
            # The port still works afterwards.
            value = rng.getrandbits(8 if name == "RETA" else 32)
            await master.write_ok(ctx, addr, value)
            assert await master.read_ok(ctx, addr) == value
        # A rejected COMMIT commits nothing.
        assert await master.write(ctx, rm.addr("COMMIT"), 1, 0b0001) == SLVERR
        assert not ctx.get(dut.regs.commit_pending)
        assert await master.read_ok(ctx, rm.addr("COMMIT_STATUS")) == 0

    run_simulation(dut, bench, cycle_limit=10_000)


def test_unmapped_and_read_only():
    rng, rm, dut, master = register_bench(SEED + 4)
    regs = dut.regs
    words = shadow_words(rm)
    n_rules, reta_size = rm.params["n_rules"], rm.params["reta_size"]
    unmapped = [0x0014, 0x001C, 0x003C, 0x0068, 0x007C, 0x0090, 0x00BC, 0x00E4, 0x0100,
                0x0FFC, rm.addr("RETA", reta_size - 1) + 4, 0x3FFC,
                rm.addr("RULE", 0) + 4 * RULE_WORDS, rm.addr("RULE", 0) + 0x7C,
                rm.addr("RULE", n_rules - 1) + 0x80, 0x5FFC,
                rm.addr("RULE_HITS", n_rules) + 4, 0x7010, 0x7410, 0x8040, 0xC000, 0xFFFC]
    read_only = ["ID", "VERSION", "PARAMS0", "PARAMS1", "CAPS", "COMMIT_STATUS",
                 "GENERATION", "FRAMES_IN", "BYTES_IN", "FRAMES_DROPPED"]

    async def bench(ctx):
        shadow = {name: reset for name, (_, reset) in words.items()}
        for addr in unmapped:
            assert await master.read(ctx, addr) == (0, OKAY), f"read {addr:#06x}"
        counters = [rm.addr(r.name, i) for r in rm if r.access == "counter"
                    for i in range(rm.count(r))]
        for addr in counters:
            assert await master.read(ctx, addr) == (0, OKAY), f"counter {addr:#06x}"
        # Writes to unmapped and read-only addresses change no register.
        for addr in unmapped + [rm.addr(name) for name in read_only] + counters[::5]:
            await master.write_ok(ctx, addr, random_word(rng) | 1)
        for name in read_only[:5]:
            assert await master.read_ok(ctx, rm.addr(name)) == rm.ro_value(name), name
        for name in read_only[5:]:
            assert await master.read_ok(ctx, rm.addr(name)) == 0, name
        for addr in counters:
            assert await master.read(ctx, addr) == (0, OKAY), f"counter {addr:#06x}"
        for name, (addr, _) in words.items():
            assert await master.read_ok(ctx, addr) == shadow[name], name
        assert not ctx.get(regs.commit_pending) and ctx.get(regs.generation) == 0
        # The low two address bits are ignored.
        await master.write_ok(ctx, rm.addr("MAX_FRAME") + 3, 0x1234)
        assert await master.read_ok(ctx, rm.addr("MAX_FRAME") + 1) == 0x1234
        assert await master.read_ok(ctx, rm.addr("MAX_FRAME")) == 0x1234

    run_simulation(dut, bench, cycle_limit=20_000)


def test_concurrent_reads_and_writes():
    """Two masters on the one port (a reader and a writer, each with its own channels idle
    when not in use): both make progress, and every read returns a value the register held
    while the read was in flight."""
    seed = SEED + 5
    rng, rm, dut, writer = register_bench(seed, max_delay=0)       # writes back to back
    reader = AxiLiteMaster(dut.axi, random.Random(seed + 2), max_delay=1)
    names = ["CTRL", "MAX_FRAME", "DIRECT_ETHERTYPE", "RSS_KEY[0]", "RULE[1].3"]
    words = shadow_words(rm)
    history = {name: [words[name][1]] for name in names}    # every value written, in order
    finished = []
    n_ops = 40

    async def write_bench(ctx):
        for _ in range(n_ops):
            name = rng.choice(names)
            value = rng.getrandbits(32)
            history[name].append(value)
            await writer.write_ok(ctx, words[name][0], value)
        finished.append("w")

    async def read_bench(ctx):
        read_rng = random.Random(seed + 3)
        for _ in range(n_ops):
            name = read_rng.choice(names)
            before = len(history[name])
            value = await reader.read_ok(ctx, words[name][0])
            # Reads and writes alternate: a read waits for at most one write.
            assert reader.last_cycles <= 20, f"read starved for {reader.last_cycles} cycles"
            # The value held at some point during the read.
            assert value in history[name][before - 1:], f"{name}: {value:#x} never current"
            if read_rng.random() < 0.3:
                assert await reader.read_ok(ctx, rm.addr("ID")) == 0x484E4943
        for _ in range(20 * n_ops):
            if "w" in finished:
                break
            await ctx.tick()
        # Final state: the last value written to each register.
        for name in names:
            assert await reader.read_ok(ctx, words[name][0]) == history[name][-1], name
        finished.append("r")

    run_simulation(dut, write_bench, read_bench, cycle_limit=20 * n_ops * 4)
    assert sorted(finished) == ["r", "w"]


def test_bad_address_width():
    with pytest.raises(ValueError, match="not 3"):
        AxiLiteSlave(3)
