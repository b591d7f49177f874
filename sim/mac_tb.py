"""cocotb testbench for the MAC's Verilog (``RgmiiMacTop``) on its RGMII pins.

cocotbext-eth drives the pins: ``RgmiiSource`` sends the job's receive bursts (raw bytes
from the preamble on, with a per-byte ``RX_ER`` list) into ``rgmii_rxd``/``rgmii_rx_ctl``,
and ``RgmiiSink`` records what the MAC sends on ``rgmii_txd``/``rgmii_tx_ctl``, clocked by
``rgmii_tx_clk``. ``clk90`` (``clk`` 2 ns later) is the forwarded TX clock, so the sink
samples each nibble a quarter period after the MAC changed it, as a PHY in RGMII-ID mode
does. cocotbext-axi carries the frame side: ``AxiStreamSource`` feeds ``s_axis`` (frames to
send, ``tuser`` = error) and ``AxiStreamSink`` takes ``m_axis`` (received frames).

The job (JSON named by ``HETNIC_JOB``): ``rx`` bursts ``{"wire": hex, "er": [0/1 per byte]
or null}``, ``tx`` frames ``[hex, error]``, ``rx_ifg`` (the source's gap in cycles) and
``expect_rx`` (how many frames should come out). The testbench stops when everything
is out or after a cycle budget proportional to the traffic, and writes the result
(``HETNIC_OUT``) for the Python side to check: received frames ``{"data", "error"}``, sent
bursts ``{"wire", "er", "start_ns", "end_ns"}`` and every counter.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_time_from_sim_steps
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource

from ..params import CORE_CLOCK_PERIOD_NS

CLOCK_NS = CORE_CLOCK_PERIOD_NS
COUNTERS = ("rx_frames_ok_count", "rx_fcs_error_count", "rx_runt_count",
            "rx_oversize_count", "rx_phy_error_count", "rx_overflow_count",
            "tx_frames_count", "tx_error_count", "tx_underrun_count")


def received(frame):
    """(data, error) of an uncompacted AxiStreamFrame: lanes with ``tkeep`` only, and the
    OR of ``tuser`` over every beat (a last beat may keep no byte and still carry it)."""
    keep = frame.tkeep or [1] * len(frame.tdata)
    user = frame.tuser if isinstance(frame.tuser, list) else [frame.tuser or 0]
    return bytes(b for b, k in zip(frame.tdata, keep) if k), any(user)


@cocotb.test()
async def run_job(dut):
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)

    dut.clk90.value = 0
    dut.rst.value = 1
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    await Timer(CLOCK_NS // 4, unit="ns")
    Clock(dut.clk90, CLOCK_NS, unit="ns").start()

    rgmii_in = RgmiiSource(dut.rgmii_rxd, dut.rgmii_rx_ctl, dut.clk, dut.rst)
    rgmii_out = RgmiiSink(dut.rgmii_txd, dut.rgmii_tx_ctl, dut.rgmii_tx_clk, dut.rst)
    frames_in = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    frames_out = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    for model in (rgmii_in, rgmii_out, frames_in, frames_out):
        model.log.setLevel("WARNING")
    rgmii_in.ifg = job.get("rx_ifg", 12)

    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    for burst in job["rx"]:
        await rgmii_in.send(GmiiFrame(bytes.fromhex(burst["wire"]), burst["er"]))
    for data, error in job["tx"]:
        await frames_in.send(AxiStreamFrame(bytes.fromhex(data), tuser=int(error)))

    rx, tx = [], []
    busy_bytes = sum(len(b["wire"]) // 2 + 20 for b in job["rx"]) + \
        sum(max(len(d) // 2, 60) + 30 for d, _ in job["tx"])
    for _ in range(busy_bytes + 200):
        await RisingEdge(dut.clk)
        while not frames_out.empty():
            rx.append(received(frames_out.recv_nowait(compact=False)))
        while not rgmii_out.empty():
            tx.append(rgmii_out.recv_nowait())
        if (len(rx) >= job["expect_rx"] and len(tx) >= len(job["tx"]) and
                rgmii_in.idle() and frames_in.empty()):
            break
    await ClockCycles(dut.clk, 20)
    while not frames_out.empty():
        rx.append(received(frames_out.recv_nowait(compact=False)))
    while not rgmii_out.empty():
        tx.append(rgmii_out.recv_nowait())

    result = {
        "rx": [{"data": data.hex(), "error": error} for data, error in rx],
        "tx": [{"wire": bytes(f.data).hex(), "er": f.error,
                "start_ns": get_time_from_sim_steps(f.sim_time_start, "ns"),
                "end_ns": get_time_from_sim_steps(f.sim_time_end, "ns")} for f in tx],
        "counters": {name: int(getattr(dut, name).value) for name in COUNTERS},
    }
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
