"""The iCEBreaker's reduced core (:class:`~hetnic.boards.ice40_top.SerialCore`) in Amaranth's
simulator, driven by the unmodified host code over its UART.

The host side is :class:`~hetnic.host.serial_core.ReducedCore` on a
:class:`~hetnic.host.serial_bridge.SerialBridge` whose port is :class:`SimulatedPort`: the
bytes it writes are sent bit by bit on the core's ``uart_rx`` by a testbench, and the
characters on ``uart_tx`` are decoded back into it. The host code runs in a thread beside
the simulator, so the register accesses are the real protocol frames at 8 clock cycles a
bit. Results are checked against the software model
(:class:`~hetnic.sim.model.rx_pipeline.RxModel`, the Toeplitz oracle included).
"""

import queue
import random
import threading
import time

import pytest
from amaranth.sim import Simulator

from frames import directed_frames, random_mix, tcp4

from hetnic.boards.ice40_top import SerialCore
from hetnic.host.board import SerialBackend
from hetnic.config import RxConfig
from hetnic.host.control import NicError
from hetnic.sim.model.toeplitz import toeplitz
from hetnic.rules import Action, FlowRule
from hetnic.host.serial_bridge import BusTimeoutError, SerialBridge
from hetnic.host.serial_core import ReducedCore
from hetnic.protocol import HashType
from hetnic.sim.model.rx_pipeline import RxModel

pytestmark = pytest.mark.timeout(240)

SEED = 0x1CEB_4EA7
CLK_HZ, BAUD = 8_000_000, 1_000_000          # 8 cycles a bit
BIT = CLK_HZ // BAUD
HOST_TIMEOUT = 60.0         # wall-clock seconds the host waits for an answer (a slow sim)
SIM_LIMIT = 3_000_000       # cycles


class SimulatedPort:
    """A pyserial-like port whose far end is the simulated UART (see the module docs)."""
    def __init__(self):
        self.timeout = None
        self.name = "simulated uart"
        self.to_board = queue.Queue()
        self.from_board = queue.Queue()

    def write(self, data: bytes) -> int:
        for byte in data:
            self.to_board.put(byte)
        return len(data)

    def read(self, size: int) -> bytes:
        out = bytearray()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while len(out) < size:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            try:
                out.append(self.from_board.get(timeout=wait))
            except queue.Empty:
                break
        return bytes(out)

    def reset_input_buffer(self) -> None:
        while not self.from_board.empty():
            self.from_board.get_nowait()


async def ticks(ctx, n):
    """``n`` cycles, one await each: background testbenches avoid ``repeat`` (an async
    generator), so the simulation may end in the middle of a wait."""
    for _ in range(n):
        await ctx.tick()


def run_with_host(host_code, *, result_depth=256):
    """Simulate a :class:`SerialCore` while ``host_code(bridge)`` runs in a thread on a
    :class:`SerialBridge` to it; re-raise what the host code raised, return what it
    returned."""
    dut = SerialCore(clk_hz=CLK_HZ, baud=BAUD, result_depth=result_depth)
    port = SimulatedPort()
    outcome = {}

    def host():
        try:
            bridge = SerialBridge(port, timeout=HOST_TIMEOUT, retries=0)
            outcome["value"] = host_code(bridge)
        except BaseException as e:          # handed to the test below
            outcome["error"] = e

    async def line_driver(ctx):
        while True:
            try:
                byte = port.to_board.get_nowait()
            except queue.Empty:
                await ticks(ctx, BIT)
                continue
            for level in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                ctx.set(dut.uart_rx, level)
                await ticks(ctx, BIT)

    async def line_monitor(ctx):
        while True:
            await ctx.negedge(dut.uart_tx)
            await ticks(ctx, BIT // 2)
            assert ctx.get(dut.uart_tx) == 0, "start bit too short"
            byte = 0
            for i in range(8):
                await ticks(ctx, BIT)
                byte |= ctx.get(dut.uart_tx) << i
            await ticks(ctx, BIT)
            assert ctx.get(dut.uart_tx) == 1, f"character {byte:#04x} has no stop bit"
            port.from_board.put(byte)

    async def main(ctx):
        thread = threading.Thread(target=host, daemon=True)
        thread.start()
        for _ in range(SIM_LIMIT // (64 * BIT)):
            if not thread.is_alive():
                return
            await ctx.tick().repeat(64 * BIT)
        raise AssertionError(f"the host code was not done after {SIM_LIMIT} cycles")

    sim = Simulator(dut)
    sim.add_clock(1 / CLK_HZ)
    sim.add_testbench(main)
    sim.add_testbench(line_driver, background=True)
    sim.add_testbench(line_monitor, background=True)
    sim.run()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def expect(model: RxModel, result, frame: bytes) -> None:
    want = model.process(frame)
    got = {"length": result.length, "error": int(result.error),
           "hash_type": int(result.hash_type), "hash": result.hash, "queue": result.queue,
           "instance": result.instance, "drop": int(result.drop),
           "generation": result.generation}
    assert got == {name: want[name] for name in got}, f"frame {frame.hex()}"


#: Directed frames covering every hash input the board sees: 8, 12, 32 and 36 bytes, and
#: none (not IP, fragments fall back to addresses, errors).
DIRECTED = ("tcp4", "udp4", "tcp6", "udp6", "icmp4", "icmp6", "arp", "vlan_tcp4",
            "ipv4_later_fragment", "ipv6_later_frag", "tcp4_1518", "min_ether")

CONFIGS = {
    "slice": lambda rng: RxConfig(key=bytes(rng.randrange(256) for _ in range(40)), queues=4,
                                  reta=[rng.randrange(4) for _ in range(16)],
                                  default=Action(instance=5, reta_offset=4, reta_size=8)),
    "symmetric": lambda rng: RxConfig(key=bytes(range(40)), queues=3, symmetric=True,
                                      pass_errors=True,
                                      hash_enable=(1 << HashType.IPV4) |
                                      (1 << HashType.IPV6_TCP)),
}


# Each configuration drives the core over its UART in Amaranth's simulator for two to three
# minutes on 2 cores: both are slow ("slice": a random key, a RETA slice, the default action;
# "symmetric": the host's sort before hashing, errors passed); the default tier drives the
# core through test_bad_input_and_the_result_queue below.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CONFIGS)])
def test_steering_matches_the_model(name):
    """The host opens the core (identity, default configuration, generation 1), applies a
    configuration (a random key and RETA with a default action on an 8-entry RETA slice;
    or symmetric hashing of two hash types with errors passed) and steers directed frames
    and seeded random ones, malformed ones included: every result equals the model's.
    Rules and oversize frames or inputs are refused before anything is sent."""
    seed = SEED + sorted(CONFIGS).index(name)
    print(f"seed {seed:#x}")
    rng = random.Random(seed)
    config = CONFIGS[name](rng)
    directed = directed_frames()
    frames = [directed[k] for k in DIRECTED] + random_mix(rng, 6)

    def host(bridge):
        core = ReducedCore(SerialBackend(bridge))
        opened = core.generation
        with pytest.raises(NicError, match="no classifier rules"):
            core.rules.add(FlowRule(ip_proto="udp", action=Action(instance=1)))
        with pytest.raises(ValueError, match="no classifier rules"):
            core.apply(RxConfig(queues=4, rules=[FlowRule(ip_proto="tcp")]))
        generation = core.apply(config)
        results = [core.steer(frame) for frame in frames]
        with pytest.raises(ValueError, match="longer than MAX_FRAME"):
            core.steer(tcp4(payload=bytes(1600)))
        with pytest.raises(ValueError, match="at most 36 bytes"):
            core.submit(bytes(37))
        return opened, generation, results, core.regmap, core.injector_status()

    opened, generation, results, regmap, status = run_with_host(host)
    assert (opened, generation) == (1, 2)
    model = RxModel(regmap, config, generation)
    for frame, result in zip(frames, results):
        expect(model, result, frame)
    assert [r.seq for r in results] == list(range(len(frames)))
    assert status == {"requests": len(frames), "ignored": 0, "cut": 0, "waiting": 0,
                      "lost": 0}


def test_bad_input_and_the_result_queue():
    """Register-level edge cases through the host code, with a four-result queue: no result
    reads as all zeros and take() returns None at once; requests beyond the queue are
    dropped and counted, their seq skipped, and waiting for one is a clear error once a
    later result shows; a pop with another seq and a repeated pop remove nothing more; a
    repeated INJ_END is ignored and counted; a length above 36 hashes 36 bytes and is
    counted; the absent counters time out on the bus; the bridge needs no retry."""
    key = bytes(range(0x40, 0x68))
    inputs = [bytes(range(k, k + 12)) for k in range(6)]
    long_input = bytes(range(1, 37))

    def host(bridge):
        core = ReducedCore(SerialBackend(bridge))
        core.rss.set_key(key)
        core.commit()
        r = core.regmap
        out = {"empty": bridge.read_many([r.addr(n) for n in ("RES_INFO", "RES_HASH",
                                                               "RES_TAG")]),
               "nothing": core.take()}
        out["seqs"] = [core.submit(data) for data in inputs]     # six requests, four places
        out["status"] = core.injector_status()
        out["first"] = core.take()
        out["head"] = core._head()
        bridge.write(r.addr("RES_POP"), out["head"].seq + 7)     # not the oldest's seq
        out["same"] = core._head()
        core._pop(out["head"].seq)
        core._pop(out["head"].seq)                               # a repeat
        out["after"] = core._head()
        bridge.write(r.addr("INJ_END"), 12 | out["seqs"][-1] << 16)      # already taken
        for k in range(9):
            bridge.write(r.addr("INJ_DATA", k),
                         int.from_bytes(long_input[4 * k:4 * k + 4], "big"))
        seq = core.injector_status()["requests"]
        bridge.write(r.addr("INJ_END"), 40 | seq << 16)
        with pytest.raises(NicError, match="result of request 4 was lost"):
            core.result(4)
        out["discarded"] = core.discarded
        out["last"] = core.take()
        out["final"] = core.injector_status()
        with pytest.raises(BusTimeoutError):
            bridge.read(r.addr("FRAMES_IN"))
        with pytest.raises(NicError, match="no counters"):
            core.counters()
        out["stats"] = bridge.stats
        return out

    out = run_with_host(host, result_depth=4)
    assert out["empty"] == [0, 0, 0] and out["nothing"] is None
    assert out["seqs"] == list(range(6))
    assert out["status"] == {"requests": 6, "ignored": 0, "cut": 0, "waiting": 4, "lost": 2}
    assert out["first"].seq == 0 and out["first"].hash == toeplitz(key, inputs[0])
    assert out["head"].seq == 1 and out["same"] == out["head"]
    assert out["head"].hash == toeplitz(key, inputs[1])
    assert out["after"].seq == 2
    assert out["discarded"] == 2                                 # results 2 and 3
    assert out["last"].seq == 6 and out["last"].hash == toeplitz(key, long_input)
    assert out["final"] == {"requests": 7, "ignored": 1, "cut": 1, "waiting": 0, "lost": 2}
    assert out["stats"].retries == 0 and out["stats"].corrupt == 0
