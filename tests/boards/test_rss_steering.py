"""RssSteering (the iCEBreaker core's hash engine, register file and RETA) in Amaranth's
simulator, without the UART: seeded random Toeplitz inputs of every length with idle
cycles, checked against the Toeplitz oracle and the RETA slice arithmetic, across commits
of a new key, table and default action issued while inputs are in flight."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hetnic.gateware.rss_steering import RssSteering
from hetnic.params import ICE40_SERIAL_CORE
from hetnic.sim.model.toeplitz import toeplitz
from hetnic.rules import Action
from hetnic.protocol import MS_RSS_DEFAULT_KEY, RSS_MAX_INPUT_LEN, RuleAction

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
    packed = data.Layout.cast(RuleAction).const(action.encode(len(table))).as_value().value
    writes.append((rm.addr("DEFAULT_ACTION"), packed))
    return writes


def expected(key, table, action, data_bytes):
    h = toeplitz(key, data_bytes) if data_bytes else 0
    fields = action.encode(len(table))
    log2 = min(fields["reta_size_log2"], len(table).bit_length() - 1)
    return h, table[(fields["reta_offset"] + (h & ((1 << log2) - 1))) % len(table)]


def test_random_inputs_across_commits():
    rng = random.Random(SEED)
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
    sent, records = [], []

    async def producer(ctx):
        # A third of the inputs per generation; the commit is written while they flow.
        for k, value in enumerate(inputs):
            ctx.set(dut.i.payload.data,
                    int.from_bytes(value + bytes(RSS_MAX_INPUT_LEN - len(value)), "big"))
            ctx.set(dut.i.payload.length, len(value))
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    break
            ctx.set(dut.i.valid, 0)
            sent.append(value)
            for _ in range(rng.choice([0, 0, 1, 5])):       # idle cycles
                await ctx.tick()

    async def consumer(ctx):
        while len(records) < len(inputs):
            ctx.set(dut.o.ready, rng.random() < 0.7)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                records.append((payload.hash, payload.queue, payload.instance,
                                payload.generation))

    async def control(ctx):
        for generation in range(1, len(configs)):
            while len(sent) < generation * len(inputs) // len(configs):
                await ctx.tick()
            for addr, value in configuration_writes(rm, *configs[generation]):
                await csr_access(ctx, dut.csr, addr, value)
            await csr_access(ctx, dut.csr, rm.addr("COMMIT"), 1)
            while await csr_access(ctx, dut.csr, rm.addr("COMMIT_STATUS")):
                pass
            assert await csr_access(ctx, dut.csr, rm.addr("GENERATION")) == generation

    async def main(ctx):
        for _ in range(LIMIT):
            if len(records) == len(inputs):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"{len(records)} of {len(inputs)} records after {LIMIT} "
                                 f"cycles")
        for _ in range(50):
            await ctx.tick()
        assert not ctx.get(dut.o.valid), "a record beyond the inputs sent"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(main)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer, background=True)
    sim.add_testbench(control, background=True)
    sim.run()

    generations = [g for *_, g in records]
    assert generations == sorted(generations) and set(generations) == set(range(len(configs)))
    for value, (h, queue, instance, generation) in zip(inputs, records):
        key, table, action = configs[generation]
        assert (h, queue) == expected(key, table, action, value), \
            f"input {value.hex()} under generation {generation}"
        assert instance == action.instance
