"""Run the NIC core's generated Verilog on Verilator under cocotb (:mod:`hetnic.sim.nic_tb`)."""

from __future__ import annotations

import dataclasses

from ..params import NicParams
from ..rtl import nic_core_verilog
from .rx_sim import build_cocotb, run_cocotb

__all__ = ["NIC_TOPLEVEL", "nic_verilog", "run_nic_job", "run_driver_job"]

NIC_TOPLEVEL = "hetnic_nic_core"


def nic_verilog(params: NicParams) -> str:
    """Verilog of a :class:`~hetnic.gateware.top.NicCoreTop` built with ``params``."""
    return nic_core_verilog(params, NIC_TOPLEVEL)


def run_nic_job(params: NicParams, job: dict) -> dict:
    """Build (cached) and run one NIC core job on the core built with ``params``; see
    :mod:`hetnic.sim.nic_tb` for its keys (``build`` is added: ``params`` as a dict)."""
    build_dir = build_cocotb(nic_verilog(params), NIC_TOPLEVEL)
    return run_cocotb(build_dir, NIC_TOPLEVEL, "hetnic.sim.nic_tb",
                      {**job, "build": dataclasses.asdict(params)})


def run_driver_job(params: NicParams, scenario: str, args: dict,
                   driver: dict | None = None) -> dict:
    """Run a :mod:`hetnic.sim.scenarios` scenario with the host driver inside cocotb (the
    ``"cocotb"`` backend) on the core built with ``params``; returns the scenario's
    result."""
    build_dir = build_cocotb(nic_verilog(params), NIC_TOPLEVEL)
    return run_cocotb(build_dir, NIC_TOPLEVEL, "hetnic.sim.driver_tb",
                      {"scenario": scenario, "args": args, "driver": driver or {}})
