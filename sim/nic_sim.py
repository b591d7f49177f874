"""Run the NIC core's generated Verilog on Verilator under cocotb (:mod:`hetnic.sim.nic_tb`)."""

from __future__ import annotations

from ..rtl import nic_core_verilog
from .rx_sim import build_cocotb, run_cocotb

__all__ = ["NIC_TOPLEVEL", "nic_verilog", "run_nic_job", "run_driver_job"]

NIC_TOPLEVEL = "hetnic_nic_core"


def nic_verilog(**build) -> str:
    """Verilog of a :class:`~hetnic.gateware.top.NicCoreTop` with these build parameters."""
    return nic_core_verilog(NIC_TOPLEVEL, **build)


def run_nic_job(build: dict, job: dict) -> dict:
    """Build (cached) and run one NIC core job; see :mod:`hetnic.sim.nic_tb` for its keys."""
    build_dir = build_cocotb(nic_verilog(**build), NIC_TOPLEVEL)
    return run_cocotb(build_dir, NIC_TOPLEVEL, "hetnic.sim.nic_tb", {**job, "build": build})


def run_driver_job(build: dict, scenario: str, args: dict, driver: dict | None = None) -> dict:
    """Run a :mod:`hetnic.sim.scenarios` scenario with the host driver inside cocotb (the
    ``"cocotb"`` backend); returns the scenario's result."""
    build_dir = build_cocotb(nic_verilog(**build), NIC_TOPLEVEL)
    return run_cocotb(build_dir, NIC_TOPLEVEL, "hetnic.sim.driver_tb",
                      {"build": build, "scenario": scenario, "args": args,
                       "driver": driver or {}})
