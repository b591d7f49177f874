"""Every exception class of hetnic derives from HetnicError and keeps its built-in base."""

import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

from hetnic.errors import HetnicError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def hetnic_modules() -> list[str]:
    """Every module of every package pyproject.toml installs (and no package it misses)."""
    packages = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]
    names = set()
    for package in packages:
        names.add(package)
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__,
                                         package + "."):
            if info.ispkg:
                assert info.name in packages, f"{info.name} is not installed by pyproject.toml"
            names.add(info.name)
    return sorted(names)


def exception_classes() -> dict[str, type]:
    """Exception classes by qualified name, each from the module that defines it; private
    ones (``_HeaderError``, a control-flow signal that never leaves its module) left out."""
    found = {}
    for name in hetnic_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == name and not value.__name__.startswith("_")):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_derives_from_hetnic_error():
    classes = exception_classes()
    for known in ("hetnic.replay.ReplayError", "hetnic.rules.RuleError",
                  "hetnic.host.control.NicError", "hetnic.sim.hil.HarnessError",
                  "hetnic.boards.BoardError", "hetnic.host.serial_bridge.NoAnswerError",
                  "hetnic.cli.args.CliError"):
        assert known in classes                 # the walk reaches every layer
    outside = sorted(name for name, cls in classes.items()
                     if cls is not HetnicError and not issubclass(cls, HetnicError))
    assert outside == [], f"not derived from HetnicError: {outside}"


@pytest.mark.parametrize("name, builtin", [
    ("hetnic.rules.RuleError", ValueError),
    ("hetnic.steering_tag.TagError", ValueError),
    ("hetnic.host.serial_bridge.FrameError", ValueError),
    ("hetnic.host.serial_bridge.BridgeError", RuntimeError),
    ("hetnic.host.serial_bridge.NoAnswerError", TimeoutError),
    ("hetnic.host.control.NicError", RuntimeError),
    ("hetnic.sim.hil.HarnessError", RuntimeError),
    ("hetnic.sim.toolchain.ToolError", RuntimeError),
    ("hetnic.sim.rx_sim.SimulationError", RuntimeError),
])
def test_the_builtin_base_is_kept(name, builtin):
    """``except ValueError`` (and the others) still catch what they caught before."""
    cls = exception_classes()[name]
    assert issubclass(cls, HetnicError) and issubclass(cls, builtin)


def test_ring_errors_keep_their_bases():
    # The ring classes may live in a module split out of host/rings.py: find them by name.
    by_name = {cls.__name__: cls for cls in exception_classes().values()}
    assert issubclass(by_name["OutOfHostMemoryError"], MemoryError)
    assert issubclass(by_name["RingFullError"], RuntimeError)
    assert issubclass(by_name["RingCorruptionError"], RuntimeError)
