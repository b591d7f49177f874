"""cocotb testbench of the whole two-port board core (:class:`~hetnic.boards.sim_top.BoardSimTop`),
driven by the unmodified board driver through a pseudo-terminal.

The simulation is the board; a Python thread is the host. The thread runs
``Nic.open("serial:<pty>", data=<QueuePort>)``, the real board backend with pyserial on the
slave side of a pseudo-terminal, and does what a user would: program a key, a table and
rules, commit, receive the tagged frames, send frames, read the counters. It is a plain
thread, not a ``cocotb.task.bridge`` one: a bridged thread stops the simulator until it calls
back into cocotb, so a driver blocked in a serial read would wait for an answer the frozen
simulation can never give. Here the simulation runs on while the host blocks, as a board
does; the two sides share only the pseudo-terminal, thread-safe queues and events.

The pins:

- UART: :func:`uart_to_board` reads the pseudo-terminal's master side (non-blocking) and
  drives each byte onto ``uart_rx`` bit by bit (8N1, ``bit_ns`` a bit);
  :func:`uart_from_board` samples ``uart_tx`` at the middle of each bit and writes the bytes
  back.
- Port 0, the network: cocotbext-eth ``RgmiiSource`` sends the job's ``network`` frames
  (each ``[hex, bad_fcs]``, sent as given: one shorter than 60 bytes is a runt) once the
  host has committed; ``RgmiiSink`` takes what the board forwards from the host.
- Port 1, the host's link: ``RgmiiSink`` takes the tagged frames and hands their payload to
  the host's :class:`~hetnic.host.board.QueuePort`; ``RgmiiSource`` sends what the host
  sends (padded to 60 bytes and given an FCS, as a host NIC does).

The network traffic is over once the source is idle and no tagged frame has come for
``SETTLE_NS``; then the host polls its queues. The host thread drops the GIL often enough
only with a short switch interval (:data:`SWITCH_INTERVAL`).

The job (JSON in ``HETNIC_JOB``): ``bit_ns``, ``gap_ns`` (the bridge's gap timeout),
``key`` (hex), ``table``, ``rules`` (:func:`rule_from_spec` specs), ``network``,
``host_tx`` (hex frames the host sends), ``garbage`` (hex bytes sent before any request),
``budget_ns`` (simulated time after which the testbench gives up) and ``host_timeout``
(seconds the host waits for any one thing). The result (``HETNIC_OUT``) holds what each
side saw, the host's progress (``stages``, with the simulated time of each) and a
traceback if the host failed; the pytest side (``tests/boards/test_board_top_rtl.py``)
compares it with the software model.
"""

import dataclasses
import json
import os
import queue
import sys
import threading
import time
import traceback
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, Timer
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource

from hetnic.bridge_protocol import Command
from hetnic.host.board import QueuePort
from hetnic.host.nic import Nic
from hetnic.rules import Action, FlowRule
from hetnic.host.serial_bridge import FdPort, Request, Response, SerialBridge
from hetnic.regs import RegisterMap
from hetnic.params import CORE_CLOCK_PERIOD_NS

CLOCK_NS = CORE_CLOCK_PERIOD_NS
POLL_NS = 2_000            # how often the testbench looks at the host's queues
SETTLE_NS = 50_000         # no frame for this long after the traffic: nothing more comes
#: The simulator's thread holds the GIL while Verilator runs; a host thread that wakes
#: for a byte waits up to one switch interval for it (5 ms by default, long enough for
#: the bridge to sit idle most of the time).
SWITCH_INTERVAL = 1e-4


def rule_from_spec(spec: dict) -> FlowRule:
    """A :class:`FlowRule` from JSON: its keyword arguments, ``action`` as Action's."""
    spec = dict(spec)
    action = Action(**spec.pop("action", {}))
    return FlowRule(**spec, action=action)


class SimClock:
    """Simulated time as the host thread sees it: the testbench publishes it every poll."""

    def __init__(self):
        self._now = 0
        self._cond = threading.Condition()

    @property
    def now(self) -> int:
        with self._cond:
            return self._now

    def publish(self, ns: int) -> None:
        with self._cond:
            self._now = ns
            self._cond.notify_all()

    def wait(self, ns: int, timeout: float) -> None:
        """Block until ``ns`` more simulated nanoseconds have passed."""
        with self._cond:
            until = self._now + ns
            if not self._cond.wait_for(lambda: self._now >= until, timeout):
                raise TimeoutError(f"simulated time did not advance {ns} ns in {timeout} s")


# --- the UART pins ---------------------------------------------------------------------------

async def uart_to_board(dut, master: int, bit_ns: int) -> None:
    dut.uart_rx.value = 1
    while True:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):      # nothing written, or no slave side open
            data = b""
        if not data:
            await Timer(4 * bit_ns, "ns")
            continue
        for byte in data:
            for level in (0, *(byte >> k & 1 for k in range(8)), 1):
                dut.uart_rx.value = level
                await Timer(bit_ns, "ns")


async def uart_from_board(dut, master: int, bit_ns: int, stats: dict) -> None:
    pending = b""
    while True:
        await FallingEdge(dut.uart_tx)          # a start bit
        await Timer(bit_ns * 3 // 2, "ns")      # the middle of data bit 0
        byte = 0
        for k in range(8):
            byte |= int(dut.uart_tx.value) << k
            await Timer(bit_ns, "ns")
        stats["framing_errors"] += not int(dut.uart_tx.value)       # the stop bit
        pending += bytes([byte])
        try:
            pending = pending[os.write(master, pending):]
        except BlockingIOError:
            pass                                # the host has not read; try with the next


# --- the host --------------------------------------------------------------------------------

def bad_input_then_recover(path: str, job: dict, clock: SimClock) -> dict:
    """Garbage and half a request on the line, then a valid request; a request with a bad
    CRC; the bridge's counters. Straight on the serial line, before the driver opens it."""
    regmap = RegisterMap()
    port = FdPort.open(path, timeout=0.05)
    try:
        garbage = bytes.fromhex(job["garbage"])
        port.write(garbage)
        port.write(Request(Command.READ, 0x77, regmap.addr("ID")).encode()[:4])
        # Until those bytes are on the line and the bridge's gap timeout has passed.
        bits = 10 * (len(garbage) + 4) + 50
        clock.wait(bits * job["bit_ns"] + job["gap_ns"], job["host_timeout"])
        bridge = SerialBridge(port, timeout=job["host_timeout"], retries=0)
        magic = bridge.read(regmap.addr("ID"))
        bad = bytearray(Request(Command.READ, 0x42, regmap.addr("ID")).encode())
        bad[-1] ^= 0xFF
        port.timeout = job["host_timeout"]
        port.write(bytes(bad))
        answer = Response.decode(port.read(8))
        port.timeout = 0.05
        counters = bridge.counters()
    finally:
        port.close()
    return {"magic": magic, "retries": bridge.stats.retries,
            "bad_crc_answer": [int(answer.status), answer.seq],
            "bridge_counters": {c.label: v for c, v in counters.items()}}


def host_session(job: dict, path: str, port: QueuePort, clock: SimClock,
                 network_go: threading.Event, network_done: threading.Event,
                 out: dict) -> None:
    """What a user does with the board, through the unmodified driver; what it sees goes
    into ``out`` as it goes (so a failure still shows how far it got)."""
    out["stages"] = []

    def stage(name):            # how far the host got, with the simulated time (us)
        out["stages"].append((name, clock.now / 1000))

    out["bad_input"] = bad_input_then_recover(path, job, clock)
    stage("bad input")
    with Nic.open(f"serial:{path}", data=port, timeout=job["host_timeout"]) as nic:
        stage("open")
        out["params"] = dataclasses.asdict(nic.params)
        out["open_generation"] = nic.generation
        nic.rss.set_key(bytes.fromhex(job["key"]))
        nic.rss.set_table(job["table"])
        out["slots"] = [nic.rules.add(rule_from_spec(spec)) for spec in job["rules"]]
        out["generation"] = nic.commit()
        stage("configured")
        network_go.set()
        if not network_done.wait(job["host_timeout"] * 10):
            raise TimeoutError("the network traffic did not finish")
        out["rx"] = {}
        for q in nic.rx_queues:
            packets = q.poll(1 << 16)
            if packets:
                out["rx"][q.index] = [
                    {"data": p.data.hex(), "hash": p.hash, "hash_type": int(p.hash_type),
                     "instance": p.instance, "rule": p.rule, "generation": p.generation}
                    for p in packets]
        out["data_stats"] = vars(nic.data_stats).copy()
        stage("received")
        for frame in job["host_tx"]:
            nic.tx_queues[0].send(bytes.fromhex(frame))
        out["counters"] = nic.counters()
        stage("counters")
        out["link"] = vars(nic.backend.bridge.stats).copy()


# --- the test --------------------------------------------------------------------------------

def wire_records(frames: list[GmiiFrame]) -> list[dict]:
    """Each frame as the result shows it: ``payload`` (hex), ``fcs_ok``, ``preamble`` (hex)
    and ``error`` (an error flag on any byte)."""
    return [{"payload": bytes(f.get_payload()).hex(), "fcs_ok": f.check_fcs(),
             "preamble": bytes(f.data[:f.get_preamble_len()]).hex(),
             "error": any(f.error or [])} for f in frames]


class BoardBench:
    """The world around the board core for one job: its clocks, the RGMII models of port 0
    (``net_in``, ``net_out``: the network) and port 1 (``host_in``, ``host_out``: the host's
    link), the UART on a pseudo-terminal, and the host thread.

    Members
    -------
    to_host, to_network : list of GmiiFrame
        What the board sent on port 1 and on port 0.
    host : dict
        What the host thread saw (:func:`host_session`), with ``error`` if it failed.
    uart : dict
        ``framing_errors`` seen on ``uart_tx``.
    """

    def __init__(self, dut, job: dict):
        self.dut, self.job = dut, job
        self.port, self.clock = QueuePort("port 1"), SimClock()
        self.network_go, self.network_done = threading.Event(), threading.Event()
        self.host: dict = {}
        self.uart = {"framing_errors": 0}
        self.to_host: list[GmiiFrame] = []
        self.to_network: list[GmiiFrame] = []

    async def start(self) -> None:
        """The clocks (``clk90`` a quarter period behind ``clk``, port 1's RX clock on its
        own phase), the RGMII models, and reset for 8 cycles."""
        dut = self.dut
        dut.clk90.value = 0
        dut.uart_rx.value = 1
        dut.rst.value = 1
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        Clock(dut.rgmii0_rx_clk, CLOCK_NS, unit="ns").start()
        await Timer(CLOCK_NS // 4, unit="ns")
        Clock(dut.clk90, CLOCK_NS, unit="ns").start()
        await Timer(1, unit="ns")
        Clock(dut.rgmii1_rx_clk, CLOCK_NS, unit="ns").start()      # its own phase

        self.net_in = RgmiiSource(dut.rgmii0_rxd, dut.rgmii0_rx_ctl, dut.rgmii0_rx_clk, dut.rst)
        self.net_out = RgmiiSink(dut.rgmii0_txd, dut.rgmii0_tx_ctl, dut.rgmii0_tx_clk, dut.rst)
        self.host_in = RgmiiSource(dut.rgmii1_rxd, dut.rgmii1_rx_ctl, dut.rgmii1_rx_clk,
                                   dut.rst)
        self.host_out = RgmiiSink(dut.rgmii1_txd, dut.rgmii1_tx_ctl, dut.rgmii1_tx_clk,
                                  dut.rst)
        for model in (self.net_in, self.net_out, self.host_in, self.host_out):
            model.log.setLevel("WARNING")
        await ClockCycles(dut.clk, 8)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 8)

    def start_host(self) -> threading.Thread:
        """Open the pseudo-terminal, wire its master side to the UART pins and start the
        host thread on its slave side; returns the thread."""
        bit_ns = self.job["bit_ns"]
        master, slave = os.openpty()
        tty.setraw(slave)           # the slave stays open: the master never sees a hang-up
        os.set_blocking(master, False)
        cocotb.start_soon(uart_to_board(self.dut, master, bit_ns))
        cocotb.start_soon(uart_from_board(self.dut, master, bit_ns, self.uart))

        def run_host():
            try:
                host_session(self.job, os.ttyname(slave), self.port, self.clock,
                             self.network_go, self.network_done, self.host)
            except BaseException:                   # reported to the pytest side
                self.host["error"] = traceback.format_exc()

        thread = threading.Thread(target=run_host, name="host", daemon=True)
        thread.start()
        return thread

    def exchange_frames(self) -> None:
        """Send what the host has sent on port 1; take what the board sent on either port,
        handing the good frames of port 1 to the host (a host NIC drops bad frames)."""
        while True:
            try:
                frame = self.port.sent.get_nowait()
            except queue.Empty:
                break
            self.host_in.send_nowait(GmiiFrame.from_payload(frame))
        while not self.host_out.empty():
            frame = self.host_out.recv_nowait()
            self.to_host.append(frame)
            if frame.check_fcs() and not any(frame.error or []):
                self.port.deliver(frame.get_payload())
        self.collect_network()

    def collect_network(self) -> None:
        """Take what the board sent to the network (port 0)."""
        while not self.net_out.empty():
            self.to_network.append(self.net_out.recv_nowait())

    def send_network(self) -> None:
        """The job's ``network`` frames on port 0, each sent as given (a frame shorter than
        60 bytes is a runt on the wire), its FCS spoilt where it says ``bad_fcs``."""
        for data, bad_fcs in self.job["network"]:
            frame = GmiiFrame.from_payload(bytes.fromhex(data), min_len=0)
            if bad_fcs:
                frame.data[-1] ^= 0xFF
            self.net_in.send_nowait(frame)

    async def serve(self, thread: threading.Thread, start: int) -> bool:
        """Every :data:`POLL_NS`: publish the simulated time to the host and exchange
        frames; send the network traffic once the host has committed and tell it the traffic
        is over once the source is idle and no tagged frame has come for :data:`SETTLE_NS`.
        Until the host thread ends or ``budget_ns`` from ``start``; returns True if the
        budget ran out first."""
        sent_network = False
        tagged_seen = quiet_since = 0
        while thread.is_alive() and get_sim_time("ns") - start < self.job["budget_ns"]:
            await Timer(POLL_NS, "ns")
            now = get_sim_time("ns")
            self.clock.publish(now)
            self.exchange_frames()
            if self.network_go.is_set() and not sent_network:
                self.send_network()
                sent_network = True
            if sent_network and not self.network_done.is_set():
                if len(self.to_host) != tagged_seen or not self.net_in.idle():
                    tagged_seen, quiet_since = len(self.to_host), now
                elif now - quiet_since >= SETTLE_NS:
                    self.network_done.set()
        return thread.is_alive()

    async def let_out(self, budget_hit: bool) -> None:
        """The host's last frames still cross the board: wait for them (up to 200 us, not at
        all if the budget ran out), then :data:`SETTLE_NS` more, and take what came out."""
        for _ in range(0, 200_000, POLL_NS):
            if len(self.to_network) >= len(self.job["host_tx"]) or budget_hit:
                break
            await Timer(POLL_NS, "ns")
            self.collect_network()
        await Timer(SETTLE_NS, "ns")
        self.collect_network()
        while not self.host_out.empty():
            self.to_host.append(self.host_out.recv_nowait())


@cocotb.test()
async def run_job(dut):
    """Run the job of ``HETNIC_JOB`` (see the module docstring) and write what each side saw
    to ``HETNIC_OUT``."""
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)
    sys.setswitchinterval(SWITCH_INTERVAL)
    bench = BoardBench(dut, job)
    await bench.start()
    thread = bench.start_host()
    start = get_sim_time("ns")
    wall = time.monotonic()
    budget_hit = await bench.serve(thread, start)
    await bench.let_out(budget_hit)
    result = {
        "host": bench.host, "budget_hit": budget_hit, "to_host": wire_records(bench.to_host),
        "to_network": wire_records(bench.to_network), "uart": bench.uart,
        "sim_us": (get_sim_time("ns") - start) / 1000, "wall_s": time.monotonic() - wall,
    }
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
