"""The public API imports from the top of the package, lazily."""

import subprocess
import sys

import pytest

import hetnic


def test_the_public_names_import_from_the_top():
    from hetnic import Action, FlowRule, HetnicError, Nic, NicError
    from hetnic.errors import HetnicError as base
    from hetnic.host.control import NicError as nic_error
    from hetnic.host.nic import Nic as nic
    from hetnic.rules import Action as action, FlowRule as flow_rule
    assert (Nic, FlowRule, Action, NicError, HetnicError) == \
        (nic, flow_rule, action, nic_error, base)
    assert sorted(hetnic.__all__) == ["Action", "FlowRule", "HetnicError", "Nic", "NicError"]
    assert set(hetnic.__all__) <= set(dir(hetnic))
    assert issubclass(NicError, HetnicError)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nick'"):
        hetnic.Nick
    with pytest.raises(ImportError):
        from hetnic import Nick  # noqa: F401


def test_the_spec_layer_does_not_load_the_driver():
    """``hetnic`` is the root of the spec layer: importing it, or a spec module, must not
    pull in the driver, the gateware or the simulators."""
    code = ("import sys, hetnic, hetnic.regs, hetnic.protocol, hetnic.errors\n"
            "heavy = [m for m in sys.modules if m.startswith(('hetnic.host', 'hetnic.sim', "
            "'hetnic.gateware', 'hetnic.boards', 'hetnic.cli'))]\n"
            "assert not heavy, heavy\n"
            "from hetnic import Nic\n"
            "assert 'hetnic.host.nic' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
