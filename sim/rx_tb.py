"""cocotb testbench that runs a job through the RX pipeline's Verilog (``RxPipelineTop``).

Driven by cocotbext-axi: ``AxiLiteMaster`` programs the registers, ``AxiStreamSource`` sends
the frames, ``AxiStreamSink`` takes the data output; a small monitor collects the metadata
records. The job (a JSON file named by ``HETNIC_JOB``) says what to write, what to send,
how much backpressure to apply, and when to commit new configuration in the middle of the
traffic; the result goes to ``HETNIC_OUT``. :func:`hetnic.sim.rx_sim.run_rx_job` is the
Python side that writes the job and reads the result.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from ..params import CORE_CLOCK_PERIOD_NS

CLOCK_NS = CORE_CLOCK_PERIOD_NS


async def write_all(axil, writes) -> None:
    """Write each ``(address, value)`` of ``writes`` over AXI-Lite, in order."""
    for addr, value in writes:
        await axil.write_dword(addr, value)


async def wait_commit(dut, axil, status_addr, limit=5000) -> None:
    """Poll ``COMMIT_STATUS`` (at ``status_addr``) until it reads 0; TimeoutError after
    ``limit`` reads."""
    for _ in range(limit):
        if await axil.read_dword(status_addr) == 0:
            return
    raise TimeoutError("COMMIT did not complete")


def pause_generator(rng, probability):
    """cocotbext-axi pause pattern: True pauses the bus for that cycle."""
    while True:
        yield rng.random() < probability


async def start_clock_and_reset(dut, clock_ns: int = CLOCK_NS) -> None:
    """Start ``dut.clk`` (period ``clock_ns``) and hold ``dut.rst`` for 4 cycles."""
    cocotb.start_soon(Clock(dut.clk, clock_ns, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0


class MetaMonitor:
    """Takes the metadata records off ``m_meta`` (``tready`` low with probability
    ``meta_pause`` each cycle) and counts the input beats, frames and stalls on ``s_axis``.

    Members
    -------
    records : list of int
        The metadata records, in output order.
    stats : dict
        ``beats``, ``frames_in``, ``in_stalls``, and the cycles (counted from the monitor's
        start) of the ``first_beat`` and ``last_beat`` taken on ``s_axis``.
    done : bool
        Set to stop :meth:`run` at the next clock edge.
    """

    def __init__(self, dut, rng: random.Random, meta_pause: float):
        self.dut, self.rng, self.meta_pause = dut, rng, meta_pause
        self.records: list[int] = []
        self.stats = {"beats": 0, "first_beat": None, "last_beat": None, "in_stalls": 0,
                      "frames_in": 0}
        self.done = False

    async def run(self) -> None:
        dut, stats = self.dut, self.stats
        cycle = 0
        while not self.done:
            ready = 0 if (self.meta_pause and self.rng.random() < self.meta_pause) else 1
            dut.m_meta_tready.value = ready
            await RisingEdge(dut.clk)
            cycle += 1
            if ready and dut.m_meta_tvalid.value:
                self.records.append(int(dut.m_meta_tdata.value))
            if dut.s_axis_tvalid.value:
                if dut.s_axis_tready.value:
                    stats["beats"] += 1
                    stats["frames_in"] += int(dut.s_axis_tlast.value)
                    if stats["first_beat"] is None:
                        stats["first_beat"] = cycle
                    stats["last_beat"] = cycle
                else:
                    stats["in_stalls"] += 1


async def commit_mid_traffic(dut, axil, commits: list[dict], monitor: MetaMonitor,
                             status_addr: int) -> None:
    """Once frame ``after_frame`` of each commit has entered the pipeline, program the
    commit's ``writes`` and wait for the commit to apply while the following frames keep
    flowing."""
    for commit in sorted(commits, key=lambda c: c["after_frame"]):
        while monitor.stats["frames_in"] < commit["after_frame"] and not monitor.done:
            await RisingEdge(dut.clk)
        await write_all(axil, commit["writes"])
        # A shadow write while a commit is pending would be taken by that commit: the
        # host waits for it to apply before it writes the next configuration.
        await wait_commit(dut, axil, status_addr)


async def read_registers(axil, names: dict[str, int]) -> dict[str, int]:
    """``{name: value}`` of the registers ``{name: address}``, read in order."""
    return {name: await axil.read_dword(addr) for name, addr in names.items()}


def data_output(data_frames: list, keep_data: bool) -> dict:
    """The result's ``data_frames`` count and, with ``keep_data``, each frame's bytes (hex)
    and error flag (``data``, ``data_tuser``; empty lists otherwise)."""
    return {
        "data_frames": len(data_frames),
        "data": [bytes(f.tdata).hex() for f in data_frames] if keep_data else [],
        "data_tuser": [int(bool(f.tuser)) if not isinstance(f.tuser, list)
                       else int(any(f.tuser)) for f in data_frames] if keep_data else [],
    }


@cocotb.test()
async def run_job(dut):
    """Program the job's ``writes`` and commit, check ``expect_reads``, send the ``frames``
    (with mid-traffic ``commits``) under the job's backpressure, and write the metadata
    records, input stats, ``read_counters`` and data output to ``HETNIC_OUT``. Fails if a
    frame gave no metadata record."""
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job.get("seed", 1))

    dut.m_meta_tready.value = 0
    await start_clock_and_reset(dut)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    if job.get("in_pause", 0):
        source.set_pause_generator(pause_generator(rng, job["in_pause"]))
    if job.get("data_pause", 0):
        sink.set_pause_generator(pause_generator(rng, job["data_pause"]))
    source.log.setLevel("WARNING")
    sink.log.setLevel("WARNING")

    status_addr = job["commit_status_addr"]
    await write_all(axil, job["writes"])
    await wait_commit(dut, axil, status_addr)
    for addr, expect in job.get("expect_reads", []):
        value = await axil.read_dword(addr)
        assert value == expect, f"register {addr:#x} reads {value:#x}, expected {expect:#x}"

    frames = [(bytes.fromhex(h), err) for h, err in job["frames"]]
    monitor = MetaMonitor(dut, rng, job.get("meta_pause", 0))
    mon = cocotb.start_soon(monitor.run())
    commit_task = cocotb.start_soon(commit_mid_traffic(dut, axil, job.get("commits", []),
                                                       monitor, status_addr))
    for frame, err in frames:
        await source.send(AxiStreamFrame(frame, tuser=int(err)))

    limit = job.get("max_cycles", 1000 + 40 * sum(len(f) for f, _ in frames))
    for _ in range(limit):
        await RisingEdge(dut.clk)
        if len(monitor.records) >= len(frames) and source.empty() \
                and sink.count() >= len(frames):
            break
    await ClockCycles(dut.clk, 4)
    monitor.done = True
    await mon
    if not commit_task.done():
        commit_task.cancel()

    data_frames = []
    while not sink.empty():
        data_frames.append(sink.recv_nowait())
    result = {
        "records": [hex(r) for r in monitor.records],
        "stats": monitor.stats,
        "counters": await read_registers(axil, job.get("read_counters", {})),
        **data_output(data_frames, job.get("keep_data", False)),
    }
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
    assert len(monitor.records) == len(frames), \
        f"{len(frames)} frames sent but {len(monitor.records)} metadata records came out"
