"""hetnic: an open SmartNIC reference design — Amaranth gateware, Verilator and cocotb
simulation, a Python host driver.

The public API imports from here::

    from hetnic import Action, FlowRule, Nic, NicError

    with Nic.open("sim", rx_queues=8) as nic:
        nic.rules.add(FlowRule(ip_proto="udp", dst_port=53, action=Action(instance=1)))
        nic.commit()

============================  ==============================================================
:class:`Nic`                  the host driver (:mod:`hetnic.host.nic`)
:class:`FlowRule`, `Action`   a classifier rule and what it does (:mod:`hetnic.rules`)
:class:`NicError`             the NIC did not do what the driver asked
                              (:mod:`hetnic.host.control`)
:class:`HetnicError`          the base of every hetnic exception (:mod:`hetnic.errors`)
============================  ==============================================================

This package is also the root of the spec layer (:mod:`hetnic.regs`, :mod:`hetnic.protocol`,
...), which the gateware, the models and the driver all import. So the names above are
imported lazily, on first use (PEP 562): ``import hetnic.regs`` does not load the driver.
"""

from __future__ import annotations

import importlib

__all__ = ["Nic", "FlowRule", "Action", "NicError", "HetnicError"]

#: Where each public name is defined (imported when first asked for).
_PUBLIC = {"Nic": "hetnic.host.nic", "FlowRule": "hetnic.rules", "Action": "hetnic.rules",
           "NicError": "hetnic.host.control", "HetnicError": "hetnic.errors"}


def __getattr__(name: str):
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'hetnic' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value             # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
