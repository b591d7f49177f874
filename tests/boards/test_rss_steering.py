"""RssSteering (the iCEBreaker core's hash engine, register file and RETA) in Amaranth's
simulator, without the UART: seeded random Toeplitz inputs of every length with idle
cycles, checked against the Toeplitz oracle and the RETA slice arithmetic, across commits
of a new key, table and default action issued while inputs are in flight."""

import pytest

from hetnic.gateware.rss_steering import RssSteering
from hetnic.params import ICE40_SERIAL_CORE
from hetnic.sim.model.toeplitz import toeplitz
from hetnic.rules import Action
from hetnic.protocol import MS_RSS_DEFAULT_KEY, RSS_MAX_INPUT_LEN, RuleAction
from kit import StreamSink, StreamSource, pack, run_simulation, seeded_rng, unpack

pytestmark = pytest.mark.timeout(60)

SEED = 0x5733_41A6
LIMIT = 200_000                 # cycles


async def csr_access(ctx, csr, addr, value=None):
    """One register access; returns the value read (writes: None)."""
    ctx.set(csr.addr, addr)
    if value is None:
        ctx.set(csr.r_stb, 1)
    else:
        ctx.set(csr.w_data, value)
        ctx.set(csr.w_stb, 1)
    for _ in range(5000):
        _, _, ack, r_data = await ctx.tick().sample(csr.ack, csr.r_data)
        if ack:
            ctx.set(csr.r_stb, 0)
            ctx.set(csr.w_stb, 0)
            return None if value is not None else r_data
    raise AssertionError(f"no ack for register {addr:#06x}")


def configuration_writes(rm, key, table, action):
    writes = [(rm.addr("RSS_KEY", k), int.from_bytes(key[4 * k:4 * k + 4], "big"))
              for k in range(10)]
    writes += [(rm.addr("RETA", i), q) for i, q in enumerate(table)]
    packed = pack(RuleAction, **action.encode(len(table)))
    writes.append((rm.addr("DEFAULT_ACTION"), packed))
    return writes


def expected(key, table, action, data_bytes):
    h = toeplitz(key, data_bytes) if data_bytes else 0
    fields = action.encode(len(table))
    log2 = min(fields["reta_size_log2"], len(table).bit_length() - 1)
    return h, table[(fields["reta_offset"] + (h & ((1 << log2) - 1))) % len(table)]


def test_random_inputs_across_commits():
    rng = seeded_rng(SEED)
    print(f"seed {SEED:#x}")
    dut = RssSteering(ICE40_SERIAL_CORE)
    rm = dut.regmap
    reset_table = list(range(16))           # IndirectionTable: entry i starts as queue i
    configs = [(MS_RSS_DEFAULT_KEY, reset_table, Action())]     # generation 0: resets
    for _ in range(3):
        configs.append((bytes(rng.randrange(256) for _ in range(40)),
                        [rng.randrange(4) for _ in range(16)],
                        Action(instance=rng.randrange(16), reta_offset=rng.randrange(16),
                               reta_size=rng.choice([0, 1, 2, 4, 8, 16]))))
    inputs = [bytes(rng.randrange(256) for _ in range(rng.choice(
        [0, 8, 12, 32, 36, rng.randrange(RSS_MAX_INPUT_LEN + 1)]))) for _ in range(240)]
    # A third of the inputs per generation; the commit is written while they flow.
    source = StreamSource(dut.i, rng=rng, gap=0.6, name="i")
    source.extend(pack(dut.i.payload.shape(), length=len(value), data=int.from_bytes(
        value + bytes(RSS_MAX_INPUT_LEN - len(value)), "big")) for value in inputs)
    sink = StreamSink(dut.o, rng=rng, stall=0.3, name="o")

    async def consumer(ctx):
        await sink.receive(ctx, len(inputs))
        await sink.expect_idle(ctx, 50)         # no record beyond the inputs sent

    async def control(ctx):
        for generation in range(1, len(configs)):
            while len(source.taken_at) < generation * len(inputs) // len(configs):
                await ctx.tick()
            for addr, value in configuration_writes(rm, *configs[generation]):
                await csr_access(ctx, dut.csr, addr, value)
            await csr_access(ctx, dut.csr, rm.addr("COMMIT"), 1)
            while await csr_access(ctx, dut.csr, rm.addr("COMMIT_STATUS")):
                pass
            assert await csr_access(ctx, dut.csr, rm.addr("GENERATION")) == generation

    run_simulation(dut, consumer, background=(source.run, control), cycle_limit=LIMIT + 50,
                   clock_period=1e-6)
    layout = dut.o.payload.shape()
    records = [(r["hash"], r["queue"], r["instance"], r["generation"])
               for r in (unpack(layout, payload) for payload in sink.received)]
    generations = [g for *_, g in records]
    assert generations == sorted(generations) and set(generations) == set(range(len(configs)))
    for value, (h, queue, instance, generation) in zip(inputs, records):
        key, table, action = configs[generation]
        assert (h, queue) == expected(key, table, action, value), \
            f"input {value.hex()} under generation {generation}"
        assert instance == action.instance
