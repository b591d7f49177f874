"""cocotb testbench that runs a driver scenario (:mod:`hetnic.sim.scenarios`) with the
unmodified :class:`~hetnic.host.nic.Nic` over the ``"cocotb"`` backend.

The job (JSON in ``HETNIC_JOB``) names the scenario, its arguments and the driver options
(the driver reads the build from the core's identification registers); the scenario's result is written to ``HETNIC_OUT``.
:func:`hetnic.sim.nic_sim.run_driver_job` is the Python side.
"""

import json
import os

import cocotb
from cocotb.task import bridge

from hetnic.host.nic import Nic
from hetnic.sim.scenarios import SCENARIOS


@cocotb.test()
async def run_scenario(dut):
    with open(os.environ["HETNIC_JOB"]) as f:
        job = json.load(f)

    @bridge
    def body():
        with Nic.open("cocotb", dut=dut, **job.get("driver", {})) as nic:
            return SCENARIOS[job["scenario"]](nic, **job.get("args", {}))

    result = await body()
    with open(os.environ["HETNIC_OUT"], "w") as f:
        json.dump(result, f)
