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

CLOCK_NS = 8


async def write_all(axil, writes):
    for addr, value in writes:
        await axil.write_dword(addr, value)


async def wait_commit(dut, axil, status_addr, limit=5000):
    for _ in range(limit):
        if await axil.read_dword(status_addr) == 0:
            return
    raise TimeoutError("COMMIT did not complete")


def pause_generator(rng, probability):
    """cocotbext-axi pause pattern: True pauses the bus for that cycle."""
    while True:
        yield rng.random() < probability


@cocotb.test()
async def run_job(dut):
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job.get("seed", 1))

    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    dut.m_meta_tready.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

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
    records = []
    stats = {"beats": 0, "first_beat": None, "last_beat": None, "in_stalls": 0,
             "frames_in": 0}
    meta_pause = job.get("meta_pause", 0)
    keep_data = job.get("keep_data", False)
    done = {"monitor": False}

    async def monitor():
        cycle = 0
        while not done["monitor"]:
            ready = 0 if (meta_pause and rng.random() < meta_pause) else 1
            dut.m_meta_tready.value = ready
            await RisingEdge(dut.clk)
            cycle += 1
            if ready and dut.m_meta_tvalid.value:
                records.append(int(dut.m_meta_tdata.value))
            if dut.s_axis_tvalid.value:
                if dut.s_axis_tready.value:
                    stats["beats"] += 1
                    stats["frames_in"] += int(dut.s_axis_tlast.value)
                    if stats["first_beat"] is None:
                        stats["first_beat"] = cycle
                    stats["last_beat"] = cycle
                else:
                    stats["in_stalls"] += 1

    mon = cocotb.start_soon(monitor())

    # Mid-traffic commits: once frame k has entered the pipeline, program the new
    # configuration and commit it while the following frames keep flowing.
    async def committer():
        for commit in sorted(job.get("commits", []), key=lambda c: c["after_frame"]):
            while stats["frames_in"] < commit["after_frame"] and not done["monitor"]:
                await RisingEdge(dut.clk)
            await write_all(axil, commit["writes"])
            # A shadow write while a commit is pending would be taken by that commit: the
            # host waits for it to apply before it writes the next configuration.
            await wait_commit(dut, axil, status_addr)

    commit_task = cocotb.start_soon(committer())
    for frame, err in frames:
        await source.send(AxiStreamFrame(frame, tuser=int(err)))

    limit = job.get("max_cycles", 1000 + 40 * sum(len(f) for f, _ in frames))
    for _ in range(limit):
        await RisingEdge(dut.clk)
        if len(records) >= len(frames) and source.empty() and sink.count() >= len(frames):
            break
    await ClockCycles(dut.clk, 4)
    done["monitor"] = True
    await mon
    if not commit_task.done():
        commit_task.cancel()

    data_frames = []
    while not sink.empty():
        data_frames.append(sink.recv_nowait())

    counters = {}
    for name, addr in job.get("read_counters", {}).items():
        counters[name] = await axil.read_dword(addr)

    result = {
        "records": [hex(r) for r in records],
        "stats": stats,
        "counters": counters,
        "data_frames": len(data_frames),
        "data": [bytes(f.tdata).hex() for f in data_frames] if keep_data else [],
        "data_tuser": [int(bool(f.tuser)) if not isinstance(f.tuser, list)
                       else int(any(f.tuser)) for f in data_frames] if keep_data else [],
    }
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
    assert len(records) == len(frames), \
        f"{len(frames)} frames sent but {len(records)} metadata records came out"
