# amaranth: UnusedElaboratable=no
# (the argument tests build components whose __init__ raises; they are never elaborated.)
"""The MAC cores and the RGMII adapter in Amaranth's simulator, against zlib and a model.

GMII is driven and watched one byte per cycle. The receive model (:func:`rx_expect`) says,
for each burst of ``en``, which frame must come out, with which error flag, and which
counter it lands in; the transmit side is checked byte for byte against preamble, SFD,
padding and ``zlib.crc32``. Every simulation has a cycle budget and ends with a check that
nothing is left in flight.
"""

import random
import struct
import zlib
from dataclasses import dataclass

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import io
from amaranth.lib.wiring import connect
from amaranth.sim import Simulator

from hetnic.gateware.beat import Beat
from hetnic.gateware.crc32 import crc32_step
from hetnic.gateware.gmii_rx_mac import GmiiRxMac
from hetnic.gateware.gmii_tx_mac import GmiiTxMac
from hetnic.gateware.rgmii import DdrBufferModel, RgmiiPhy
from hetnic.protocol import CRC32_RESIDUE, ETH_DEFAULT_MAX_FRAME
from kit import StreamSource, pack, run_simulation

SEED = 0x5EED_0AC0
PREAMBLE = bytes([0x55] * 7 + [0xD5])
RX_COUNTERS = GmiiRxMac.COUNTERS


def fcs(frame: bytes) -> bytes:
    return struct.pack("<L", zlib.crc32(frame))


def payload(n: int, tag: int = 0, rng: random.Random | None = None) -> bytes:
    """``n`` frame bytes; the first byte is ``tag`` so frames can be told apart."""
    rng = rng or random.Random(n * 131 + tag)
    return bytes([tag & 0xFF]) + rng.randbytes(max(0, n - 1)) if n else b""


def burst(frame: bytes, *, preamble: bytes = PREAMBLE, er_at=()) -> list[tuple]:
    """GMII cycles ``(data, en, er)`` of one burst: ``preamble`` then ``frame`` (with FCS);
    ``er`` on the bytes of ``frame`` at the indices ``er_at``."""
    return ([(b, 1, 0) for b in preamble] +
            [(b, 1, int(k in er_at)) for k, b in enumerate(frame)])


def idle(n: int) -> list[tuple]:
    return [(0, 0, 0)] * n


@dataclass
class Expect:
    data: bytes
    error: bool
    counter: str


def rx_expect(cycles: list[tuple], max_frame: int = ETH_DEFAULT_MAX_FRAME) -> list[Expect]:
    """What the receive MAC must make of ``cycles`` with ``o`` always ready."""
    expected, bursts, current = [], [], None
    for data, en, er in cycles + [(0, 0, 0)]:
        if en:
            current = (current or []) + [(data, er)]
        elif current is not None:
            bursts.append(current)
            current = None
    for b in bursts:
        k = 0
        while k < len(b) and b[k] == (0x55, 0):
            k += 1
        if k == len(b) or b[k] != (0xD5, 0):
            continue                    # no SFD, or an error or stray byte before it
        body = bytes(d for d, _ in b[k + 1:])
        er = any(e for _, e in b[k + 1:])
        if len(body) > max_frame + 4:
            expected.append(Expect(body[:max_frame], True, "oversize_count"))
            continue
        data = body[:-4] if len(body) > 4 else b""
        if er:
            expected.append(Expect(data, True, "phy_error_count"))
        elif len(body) < 64:
            expected.append(Expect(data, True, "runt_count"))
        elif zlib.crc32(body) != 0x2144DF1C:        # the residue of a good frame and FCS
            expected.append(Expect(data, True, "fcs_error_count"))
        else:
            expected.append(Expect(data, False, "frames_ok_count"))
    return expected


def frames_of(beats: list[tuple]) -> list[tuple[bytes, bool]]:
    """Frames ``(data, error)`` from output beats ``(data, keep, last, error)``."""
    frames, data = [], bytearray()
    for byte, keep, last, error in beats:
        assert not error or last, "error set on a beat that is not last"
        if keep:
            data.append(byte)
        if last:
            frames.append((bytes(data), bool(error)))
            data = bytearray()
    assert not data, "beats after the last frame's last beat"
    return frames


def run_rx(cycles, *, max_frame=ETH_DEFAULT_MAX_FRAME, ready=None, seed=SEED):
    """Drive ``cycles`` into a GmiiRxMac; return the output frames and the counters.

    ``ready(index, rng)`` says whether ``o.ready`` is high in cycle ``index`` (always, if not
    given; always after the input). Bounded: the frames must be out 40 cycles after the last
    input cycle.
    """
    dut = GmiiRxMac(max_frame=max_frame)
    beats, counters = [], {}

    async def bench(ctx):
        rng = random.Random(seed)
        for index, (data, en, er) in enumerate(cycles + idle(40)):
            ctx.set(dut.gmii.data, data)
            ctx.set(dut.gmii.en, en)
            ctx.set(dut.gmii.er, er)
            take = ready is None or index >= len(cycles) or ready(index, rng)
            ctx.set(dut.o.ready, take)
            *_, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and take:
                beats.append((p.data, p.keep, p.last, p.error))
        # Nothing in flight: the output is empty and stays so with the line idle.
        for _ in range(8):
            *_, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "a beat left after the traffic"
        for name in RX_COUNTERS:
            counters[name] = ctx.get(getattr(dut, name))

    run_simulation(dut, bench, cycle_limit=len(cycles) + 40 + 8 + 1, clock_period=8e-9)
    return frames_of(beats), counters


def check_rx(cycles, **kwargs):
    frames, counters = run_rx(cycles, **kwargs)
    expected = rx_expect(cycles, kwargs.get("max_frame", ETH_DEFAULT_MAX_FRAME))
    assert len(frames) == len(expected), f"{len(frames)} frames out, {len(expected)} expected"
    for index, ((data, error), exp) in enumerate(zip(frames, expected)):
        assert (data, error) == (exp.data, exp.error), (
            f"frame {index} ({exp.counter}): got {len(data)} bytes error={error}, "
            f"expected {len(exp.data)} bytes error={exp.error}")
    want = {name: sum(e.counter == name for e in expected) for name in RX_COUNTERS}
    assert counters == want
    return frames


# --- CRC-32 ---------------------------------------------------------------------------------

def test_crc32_step_matches_zlib():
    rng = random.Random(SEED)
    print(f"seed={SEED:#x}")
    messages = [b"", b"\x00", b"\xff", b"123456789", rng.randbytes(64), rng.randbytes(300)]
    m = Module()
    crc, byte, out = Signal(32), Signal(8), Signal(32)
    m.d.comb += out.eq(crc32_step(crc, byte))

    async def bench(ctx):
        for message in messages:
            state = 0xFFFFFFFF
            for b in message:
                ctx.set(crc, state)
                ctx.set(byte, b)
                state = ctx.get(out)
            assert state ^ 0xFFFFFFFF == zlib.crc32(message), message.hex()
            # The same register run over the FCS ends at the residue.
            for b in fcs(message):
                ctx.set(crc, state)
                ctx.set(byte, b)
                state = ctx.get(out)
            assert state == CRC32_RESIDUE

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


# --- receive --------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [60, 61, 64, 127, 1000, ETH_DEFAULT_MAX_FRAME])
def test_rx_good_frame(length):
    frame = payload(length)
    frames = check_rx(idle(3) + burst(frame + fcs(frame)) + idle(12) +
                      burst(frame + fcs(frame)))
    assert frames == [(frame, False)] * 2


def test_rx_latency():
    """As documented: a byte is on ``o`` 6 cycles after it was on ``gmii``, and the last
    beat comes out the cycle after ``en`` falls."""
    frame = payload(70)
    cycles = idle(2) + burst(frame + fcs(frame)) + idle(10)
    first_in = 2 + len(PREAMBLE)
    fall = first_in + len(frame) + 4
    dut = GmiiRxMac()
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for index, (data, en, er) in enumerate(cycles):
            ctx.set(dut.gmii.data, data)
            ctx.set(dut.gmii.en, en)
            *_, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                seen.append((index, p.data, p.last))

    run_simulation(dut, bench, cycle_limit=len(cycles) + 1, clock_period=8e-9)
    assert seen[0] == (first_in + 6, frame[0], 0)
    assert seen[-2] == (first_in + len(frame) - 2 + 6, frame[-2], 0)
    assert seen[-1] == (fall + 1, frame[-1], 1)
    assert len(seen) == len(frame)


def test_rx_bad_input_and_recovery():
    """Each bad case, then a good frame that must come out intact."""
    rng = random.Random(SEED + 1)
    print(f"seed={SEED + 1:#x}")
    good = [payload(60 + 37 * k, tag=k, rng=rng) for k in range(12)]

    def ok(k):
        return burst(good[k] + fcs(good[k])) + idle(12)

    long = payload(ETH_DEFAULT_MAX_FRAME + 1, tag=0xEE)
    bad_fcs = bytearray(good[0] + fcs(good[0]))
    bad_fcs[-1] ^= 0x80
    runt = payload(40, tag=0xAA)
    cases = [
        bytes(bad_fcs),                                     # FCS error
        runt + fcs(runt),                                   # runt with a good FCS
        long + fcs(long),                                   # oversize by one byte
        rng.randbytes(3000),                                # jabber: oversize, no FCS
    ]
    cycles = ok(0)
    for k, case in enumerate(cases):
        cycles += burst(case) + idle(12) + ok(k + 1)
    cycles += burst(good[5] + fcs(good[5]), er_at={30}) + idle(12) + ok(6)   # rx_er
    cycles += burst(b"", preamble=bytes([0x55] * 7)) + idle(12) + ok(7)      # no SFD
    cycles += burst(good[8] + fcs(good[8]), preamble=b"\x55\xd5") + idle(12)  # short preamble
    cycles += burst(good[9] + fcs(good[9]), preamble=b"\xd5") + idle(1)      # SFD only
    cycles += burst(rng.randbytes(100), preamble=b"\x55\x55\x12") + idle(5) + ok(10)  # garbage
    cycles += burst(good[1], preamble=b"\x55\x55") + idle(3) + ok(11)        # no SFD, data
    cycles += burst(b"\x01\x02\x03") + idle(2) + burst(b"") + idle(2) + ok(0)  # 3 and 0 bytes
    # RX_ER in the preamble: the whole burst, SFD and frame included, is ignored.
    cycles += [(0x55, 1, 1), (0xD5, 1, 0)] + burst(good[2] + fcs(good[2])) + idle(4) + ok(3)
    frames = check_rx(cycles)
    # The good frames are all there, in order, and intact.
    intact = [data for data, error in frames if not error]
    assert intact == [good[k] for k in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 0, 3)]


def test_rx_back_to_back():
    """Frames separated by the minimum gap, and by a single idle cycle."""
    rng = random.Random(SEED + 2)
    print(f"seed={SEED + 2:#x}")
    cycles = []
    for k in range(40):
        frame = payload(rng.choice([60, 61, 64, 100, rng.randrange(60, 600)]), tag=k, rng=rng)
        cycles += burst(frame + fcs(frame)) + idle(12 if k < 20 else 1)
    frames = check_rx(cycles)
    assert len(frames) == 40 and not any(error for _, error in frames)


def test_rx_max_frame_parameter():
    frames = [payload(n, tag=n) for n in (99, 100, 101, 140)]
    cycles = [c for f in frames for c in burst(f + fcs(f)) + idle(12)]
    out = check_rx(cycles, max_frame=100)
    assert [error for _, error in out] == [False, False, True, True]


def test_rx_random_traffic():
    """Seeded random mix of good and bad bursts with random gaps."""
    rng = random.Random(SEED + 3)
    print(f"seed={SEED + 3:#x}")
    cycles = []
    for k in range(60):
        frame = payload(rng.choice([0, 2, 30, 59, 60, 61, 200, rng.randrange(1, 700)]),
                        tag=k, rng=rng)
        wire = bytearray(frame + fcs(frame))
        kind = rng.random()
        er_at = ()
        if kind < 0.1 and wire:
            wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
        elif kind < 0.2:
            er_at = {rng.randrange(len(wire) + 1)}
        preamble = PREAMBLE[-rng.choice([1, 2, 8, 8, 8]):]
        if kind > 0.95:
            preamble = rng.randbytes(3)
        cycles += burst(bytes(wire), preamble=preamble, er_at=er_at) + idle(rng.randrange(1, 20))
    check_rx(cycles)


def test_rx_overflow_is_counted_and_recovers():
    """With ``o`` ready half of the time, frames are cut or dropped, each is counted once,
    and every frame that comes out is a prefix of its input (whole if and only if it has no
    error). Once ``o`` is always ready, the next frames come out whole."""
    rng = random.Random(SEED + 4)
    print(f"seed={SEED + 4:#x}")
    sent = [payload(rng.randrange(60, 300), tag=k, rng=rng) for k in range(30)]
    after = [payload(100, tag=0x80 + k) for k in range(3)]
    cycles = [c for f in sent for c in burst(f + fcs(f)) + idle(12)]
    switch = len(cycles)
    cycles += [c for f in after for c in burst(f + fcs(f)) + idle(12)]
    frames, counters = run_rx(cycles, ready=lambda index, rng: index >= switch or
                              rng.random() < 0.5, seed=SEED + 4)
    assert frames[-3:] == [(f, False) for f in after]
    position = 0
    for data, error in frames[:-3]:
        while not sent[position].startswith(data) or (not error and sent[position] != data):
            position += 1           # a frame dropped without a trace
        assert data, "a cut frame came out without any byte"
        position += 1
    intact = sum(not error for _, error in frames)
    assert counters["frames_ok_count"] == intact
    assert counters["overflow_count"] == len(sent) + len(after) - intact > 0
    assert sum(counters.values()) == len(sent) + len(after)


# --- transmit -------------------------------------------------------------------------------

def run_tx(frames, *, gaps=None, underrun_at=None, ifg=12, budget=None):
    """Send ``frames`` ``(bytes, error)`` through a GmiiTxMac; return the GMII bursts
    ``[(cycles, idle_before)]`` and the counters. ``error`` is False, True (``error`` on the
    last beat) or the index of the beat that carries it. ``gaps[k]`` idle input cycles
    before frame ``k``; ``underrun_at = (k, n)`` stops feeding frame ``k`` for 3 cycles
    after ``n`` beats."""
    dut = GmiiTxMac(ifg=ifg)
    gaps = gaps or [0] * len(frames)
    budget = budget or sum(max(len(f), 60) + 30 + g for (f, _), g in zip(frames, gaps)) + 100
    line, done, counters = [], [], {}

    async def producer(ctx):
        for k, (frame, error) in enumerate(frames):
            for _ in range(gaps[k]):
                await ctx.tick()
            chunks = list(frame) or [None]
            for index, byte in enumerate(chunks):
                if underrun_at == (k, index):
                    ctx.set(dut.i.valid, 0)
                    for _ in range(3):
                        await ctx.tick()
                last = index == len(chunks) - 1
                ctx.set(dut.i.valid, 1)
                error_here = index == error if type(error) is int else error and last
                ctx.set(dut.i.payload, {"data": byte or 0, "keep": byte is not None,
                                        "last": last, "error": error_here})
                for _ in range(budget):
                    *_, ready = await ctx.tick().sample(dut.i.ready)
                    if ready:
                        break
                else:
                    raise AssertionError("beat not taken within the cycle budget")
                ctx.set(dut.i.valid, 0)
        done.append(True)

    async def monitor(ctx):
        for _ in range(budget):
            *_, data, en, er = await ctx.tick().sample(dut.gmii.data, dut.gmii.en, dut.gmii.er)
            line.append((data, en, er))
        counters.update({name: ctx.get(getattr(dut, name)) for name in GmiiTxMac.COUNTERS})

    run_simulation(dut, producer, monitor, cycle_limit=budget + 1, clock_period=8e-9)
    assert done, "the producer did not finish"
    assert not any(en for _, en, _ in line[-20:]), "still sending at the end of the budget"
    bursts, current, gap = [], None, 0
    for cycle in line:
        if cycle[1]:
            if current is None:
                current = []
                bursts.append((current, gap))
            current.append(cycle)
            gap = 0
        else:
            current, gap = None, gap + 1
    return bursts, counters


def expected_wire(frame: bytes, error: bool = False) -> list[tuple]:
    padded = frame + bytes(max(0, 60 - len(frame)))
    check = fcs(padded)
    if error:
        check = bytes(b ^ 0xFF for b in check)
    return ([(b, 1, 0) for b in PREAMBLE + padded] + [(b, 1, int(error)) for b in check])


@pytest.mark.parametrize("lengths", [[0, 1, 59, 60, 61, 64, 200], [1514, 60, 1]])
def test_tx_frames_and_gap(lengths):
    frames = [(payload(n, tag=n), False) for n in lengths]
    bursts, _ = run_tx(frames)
    assert [cycles for cycles, _ in bursts] == [expected_wire(f) for f, _ in frames]
    # Back to back input: exactly the minimum gap between frames.
    assert [gap for _, gap in bursts[1:]] == [12] * (len(frames) - 1)


def test_tx_gap_random_input_idles():
    rng = random.Random(SEED + 5)
    print(f"seed={SEED + 5:#x}")
    frames = [(payload(rng.randrange(0, 200), tag=k, rng=rng), False) for k in range(25)]
    gaps = [rng.choice([0, 0, 1, 5, 11, 12, 13, 30]) for _ in frames]
    bursts, _ = run_tx(frames, gaps=gaps)
    assert [cycles for cycles, _ in bursts] == [expected_wire(f) for f, _ in frames]
    assert all(gap >= 12 for _, gap in bursts[1:])


@pytest.mark.parametrize("ifg", [12, 20])
def test_tx_error_frames_and_ifg(ifg):
    """``error`` on the last beat, on the first, and on an empty last beat: the frame goes
    out whole with its FCS inverted and ``er`` on the FCS bytes."""
    frames = [(payload(80, tag=1), False), (payload(70, tag=2), True), (payload(90, tag=4), 0),
              (b"", True), (payload(64, tag=3), False)]
    bursts, counters = run_tx(frames, ifg=ifg)
    assert [cycles for cycles, _ in bursts] == [expected_wire(f, e is not False)
                                               for f, e in frames]
    assert [gap for _, gap in bursts[1:]] == [ifg] * 4
    assert counters == {"frames_count": 5, "error_count": 3, "underrun_count": 0}


def test_tx_underrun_aborts_and_recovers():
    frames = [(payload(100, tag=k), False) for k in range(3)]
    bursts, counters = run_tx(frames, underrun_at=(1, 40))
    assert len(bursts) == 3
    # The rest of the cut frame is discarded, not sent as a frame of its own.
    assert [cycles for cycles, _ in bursts][0::2] == [expected_wire(f) for f, _ in frames[::2]]
    cut = bursts[1][0]
    # 7 + 1 preamble bytes, the 40 bytes sent in time, then one byte with er: the end.
    assert cut[:48] == expected_wire(frames[1][0])[:48]
    assert len(cut) == 49 and cut[48][1:] == (1, 1)
    assert bursts[2][1] >= 12
    assert counters == {"frames_count": 2, "error_count": 0, "underrun_count": 1}


# --- loopback and RGMII ---------------------------------------------------------------------

def test_tx_rx_loopback_random():
    """Random frames through GmiiTxMac into GmiiRxMac: the good ones come back whole, the
    ones sent with ``error`` come back marked and counted as PHY errors."""
    rng = random.Random(SEED + 6)
    print(f"seed={SEED + 6:#x}")
    frames = [(payload(rng.choice([0, 1, 59, 60, 61, rng.randrange(0, 1522)]), tag=k,
                       rng=rng), rng.random() < 0.15) for k in range(30)]
    m = Module()
    m.submodules.tx = tx = GmiiTxMac()
    m.submodules.rx = rx = GmiiRxMac()
    connect(m, tx.gmii, rx.gmii)
    budget = sum(max(len(f), 60) + 26 for f, _ in frames) + 100
    out = []
    source = StreamSource(tx.i, rng=rng, name="tx.i")      # back to back: no gaps
    for frame, error in frames:
        chunks = list(frame) or [None]
        source.extend(pack(Beat(8), data=byte or 0, keep=byte is not None,
                           last=index == len(chunks) - 1,
                           error=error and index == len(chunks) - 1)
                      for index, byte in enumerate(chunks))

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        beats = []
        for _ in range(budget):
            *_, valid, p = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                beats.append((p.data, p.keep, p.last, p.error))
        out.extend(frames_of(beats))
        counts = {name: ctx.get(getattr(rx, name)) for name in RX_COUNTERS}
        assert counts["phy_error_count"] == sum(e for _, e in frames)
        assert counts["frames_ok_count"] == sum(not e for _, e in frames)
        assert ctx.get(tx.frames_count) == len(frames)
        assert ctx.get(tx.error_count) == sum(e for _, e in frames)

    run_simulation(m, source.run, consumer, cycle_limit=budget + 1, clock_period=8e-9)
    # The receiver sees the padding: a short frame comes back 60 bytes long.
    assert out == [(f + bytes(max(0, 60 - len(f))), e) for f, e in frames]


def test_rgmii_phy_ddr_encoding():
    """RgmiiPhy with behavioural DDR buffers between the RGMII pins and both MAC cores.

    The test drives the receive pins as a PHY does (low nibble and ``RX_DV`` around the
    rising edge, high nibble and ``RX_DV ^ RX_ER`` around the falling edge) and samples the
    transmit pins 2 ns after each edge, as a PHY with the RGMII-ID delay does."""
    rxd, rx_ctl = io.SimulationPort("i", 4), io.SimulationPort("i", 1)
    txd, tx_ctl, tx_clk = (io.SimulationPort("o", 4), io.SimulationPort("o", 1),
                           io.SimulationPort("o", 1))
    m = Module()
    m.submodules.phy = phy = RgmiiPhy(rxd, rx_ctl, txd, tx_ctl, tx_clk, rx_domain="sync",
                                      tx_domain="sync", ddr_buffer=DdrBufferModel)
    m.submodules.rx = rx = GmiiRxMac()
    m.submodules.tx = tx = GmiiTxMac()
    connect(m, phy.rx, rx.gmii)
    connect(m, tx.gmii, phy.tx)
    frames = [payload(n, tag=n) for n in (60, 75, 64)]
    line = []
    for k, frame in enumerate(frames):
        line += burst(frame + fcs(frame), er_at={20} if k == 1 else ()) + idle(12)
    line += idle(60)
    sent, clocks, received = [], [], []

    async def pins(ctx):
        ctx.set(rxd.i, line[0][0] & 0xF)
        ctx.set(rx_ctl.i, line[0][1])
        for k, (data, en, er) in enumerate(line):
            await ctx.tick()                # rising edge: 0 ns
            await ctx.delay(1e-9)
            ctx.set(rxd.i, data >> 4)
            ctx.set(rx_ctl.i, en ^ er)
            await ctx.delay(1e-9)
            low, dv, clk_rise = ctx.get(txd.o), ctx.get(tx_ctl.o), ctx.get(tx_clk.o)
            await ctx.delay(3e-9)           # 1 ns after the falling edge
            data, en, _ = line[k + 1] if k + 1 < len(line) else (0, 0, 0)
            ctx.set(rxd.i, data & 0xF)
            ctx.set(rx_ctl.i, en)
            await ctx.delay(1e-9)
            high, ctl, clk_fall = ctx.get(txd.o), ctx.get(tx_ctl.o), ctx.get(tx_clk.o)
            sent.append((low | high << 4, dv, dv ^ ctl))
            clocks.append((clk_rise, clk_fall))

    async def sink(ctx):
        ctx.set(rx.o.ready, 1)
        for _ in range(len(line) - 2):
            *_, valid, p = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                received.append((p.data, p.keep, p.last, p.error))

    source = StreamSource(tx.i, seed=SEED, name="tx.i")     # back to back: no gaps
    source.extend(pack(Beat(8), data=byte, keep=1, last=index == len(frame) - 1)
                  for frame in frames for index, byte in enumerate(frame))

    run_simulation(m, pins, sink, source.run, cycle_limit=len(line) + 1, clock_period=8e-9)
    assert frames_of(received) == [(frames[0], False), (frames[1], True), (frames[2], False)]
    assert [c for c in sent if c[1]] == [c for f in frames for c in expected_wire(f)]
    assert all(c == (1, 0) for c in clocks[2:]), "TX_CLK is not forwarded as (1, 0)"


# --- arguments ------------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match=r"max_frame must be .* not 59"):
        GmiiRxMac(max_frame=59)
    with pytest.raises(ValueError, match=r"ifg must be .* not 11"):
        GmiiTxMac(ifg=11)
    with pytest.raises(ValueError, match=r"counter_width must be .* not 0"):
        GmiiTxMac(counter_width=0)
    with pytest.raises(TypeError, match=r"rxd must be a 4-bit PortLike"):
        RgmiiPhy(io.SimulationPort("i", 3), *(io.SimulationPort("i", w) for w in (1, 4, 1, 1)))
