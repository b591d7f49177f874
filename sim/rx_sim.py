"""Run frames through the RX pipeline's generated Verilog on Verilator, under cocotb.

:func:`run_rx_job` builds the Verilog for the requested parameters (cached by content hash),
writes a job file for :mod:`hetnic.sim.rx_tb`, runs it, and returns the decoded metadata
records in frame order. Used by ``hetnic replay``, ``hetnic bench rx``, ``hetnic demo`` and
the RTL tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HetnicError
from ..protocol import PacketMeta, unpack
from ..params import NicParams
from ..rtl import rx_pipeline_verilog
from .toolchain import build_lock, cache_dir, content_key, use_verilator

__all__ = ["RxRunResult", "SimulationError", "build_rx", "build_cocotb",
           "run_cocotb", "run_rx_job"]

TOPLEVEL = "hetnic_rx_pipeline"
_BUILD_FLAGS_VERSION = "2"   # bump when the build commands change


class SimulationError(HetnicError, RuntimeError):
    """The simulation could not be built or did not finish; the message says why."""


@dataclass
class RxRunResult:
    records: list[dict]                 # one decoded PacketMeta per frame, in order
    stats: dict                         # beats, first_beat, last_beat, in_stalls (cycles)
    counters: dict[str, int]
    data: list[bytes] = field(default_factory=list)
    data_error: list[int] = field(default_factory=list)
    data_frames: int = 0


def build_rx(params: NicParams, *, waves: bool = False) -> Path:
    """Generate and Verilate the RX pipeline built with ``params`` for cocotb (``waves``: with
    waveform tracing); returns the build folder."""
    return build_cocotb(rx_pipeline_verilog(params, TOPLEVEL), TOPLEVEL, waves=waves)


def build_cocotb(verilog: str, toplevel: str, *, waves: bool = False) -> Path:
    """Verilate ``verilog`` (top module ``toplevel``) for cocotb; returns the build folder.

    Cached by content: a second call with the same Verilog, cocotb version and installation,
    and options does not rebuild. Unlike cocotb's stock Verilator runner this does not pass
    ``--public-flat-rw`` (which exports every internal signal and makes the C++ of a design
    this size take many minutes to compile): only the top-level ports are made visible to
    cocotb, through a Verilator control file. Internal signals are still in waveforms.
    """
    import cocotb
    import cocotb_tools.config
    use_verilator()
    # the simulator links cocotb's library by its path (rpath): a build made by another
    # installation (another checkout's venv, one since removed) does not load here
    key = content_key(verilog, cocotb.__version__, str(waves), _BUILD_FLAGS_VERSION,
                      str(cocotb_tools.config.libs_dir))
    build_dir = cache_dir("verilator", f"{toplevel}-{key}")
    with build_lock(build_dir):         # one build per entry, however many processes ask
        if not (build_dir / ".built").exists():
            _verilate_for_cocotb(verilog, toplevel, build_dir, key, waves)
    return build_dir


def _verilate_for_cocotb(verilog: str, toplevel: str, build_dir: Path, key: str,
                         waves: bool) -> None:
    """Verilate and compile into ``build_dir``; the ``.built`` stamp is written last."""
    import cocotb_tools.config
    stamp = build_dir / ".built"
    src = build_dir / f"{toplevel}.v"
    src.write_text(verilog)
    vlt = build_dir / "ports.vlt"
    vlt.write_text("`verilator_config\n"
                   f'public_flat_rw -module "{toplevel}" -var "*"\n'
                   'lint_off -rule WIDTH\nlint_off -rule UNUSED\n')
    libs = cocotb_tools.config.libs_dir
    harness = cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"
    verilate = [
        "verilator", "-cc", "--exe", "-Mdir", str(build_dir), "--top-module", toplevel,
        "--vpi", "--prefix", "Vtop", "-o", toplevel,
        "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
        "-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast",
        *(["--trace"] if waves else []),
        str(vlt), str(harness), str(src),
    ]
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    compile_ = ["make", "-j", jobs, "-C", str(build_dir), "-f", "Vtop.mk",
                f"VM_TRACE={int(waves)}", "OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"]
    log = build_dir / "build.log"
    with open(log, "w") as f:
        for cmd in (verilate, compile_):
            f.write(" ".join(cmd) + "\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
            if rc:
                raise SimulationError(f"{cmd[0]} failed (exit {rc}); see {log}")
    # A warning that means the model would not behave like the Verilog: refuse the build.
    for fatal in ("ALWNEVER", "MULTIDRIVEN"):
        if f"%Warning-{fatal}" in log.read_text():
            raise SimulationError(f"Verilator reports {fatal} for {toplevel}; see {log}")
    stamp.write_text(key)


def run_cocotb(build_dir: Path, toplevel: str, test_module: str, job: dict) -> dict:
    """Run the cocotb ``test_module`` on a build with ``job`` (handed over as JSON in
    ``HETNIC_JOB``); returns the JSON the testbench wrote to ``HETNIC_OUT``."""
    from cocotb_tools.runner import get_runner
    with tempfile.TemporaryDirectory(prefix="hetnic-sim-") as tmp:
        tmp = Path(tmp)
        (tmp / "job.json").write_text(json.dumps(job))
        out = tmp / "out.json"
        env = {"HETNIC_JOB": str(tmp / "job.json"), "HETNIC_OUT": str(out),
               "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING"),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        runner = get_runner("verilator")
        try:
            results = runner.test(test_module=test_module, hdl_toplevel=toplevel,
                                  hdl_toplevel_lang="verilog", build_dir=build_dir,
                                  test_dir=tmp, extra_env=env,
                                  results_xml=str(tmp / "results.xml"),
                                  log_file=tmp / "sim.log")
        except (SystemExit, subprocess.CalledProcessError) as exc:
            results = None
            failure = f"simulation failed (exit {exc})"
        else:
            failure = _failures(results)
        log = (tmp / "sim.log").read_text()[-3000:] if (tmp / "sim.log").exists() else ""
        if failure:
            raise SimulationError(f"{failure}\n{log}")
        if not out.exists():
            raise SimulationError(f"simulation ended without a result\n{log}")
        return json.loads(out.read_text())


def run_rx_job(params: NicParams, frames: list[tuple[bytes, bool]], writes: list[tuple[int, int]],
               *, commits: list[dict] = (), in_pause: float = 0.0, data_pause: float = 0.0,
               meta_pause: float = 0.0, seed: int = 1, keep_data: bool = False,
               read_counters: dict[str, int] | None = None,
               expect_reads: list[tuple[int, int]] = (), waves: bool = False) -> RxRunResult:
    """Send ``frames`` (bytes, MAC error flag) through the pipeline built with ``params``
    after ``writes``.

    ``commits`` is a list of ``{"after_frame": k, "writes": [...]}``: configuration written
    (and committed, if the writes end with COMMIT) while the traffic flows. The pause
    arguments are per-cycle probabilities of idling the input, the data output and the
    metadata output. The testbench gives up (and this raises :class:`SimulationError`) when
    the records are not all out within a cycle budget proportional to the traffic.
    """
    build_dir = build_rx(params, waves=waves)
    regmap = params.regmap()
    job = {
        "writes": list(writes), "frames": [(f.hex(), bool(e)) for f, e in frames],
        "commits": list(commits), "in_pause": in_pause, "data_pause": data_pause,
        "meta_pause": meta_pause, "seed": seed, "keep_data": keep_data,
        "read_counters": read_counters or {},
        "expect_reads": list(expect_reads),
        "commit_status_addr": regmap.addr("COMMIT_STATUS"),
    }
    result = run_cocotb(build_dir, TOPLEVEL, "hetnic.sim.rx_tb", job)
    return RxRunResult(
        records=[unpack(PacketMeta, int(r, 16)) for r in result["records"]],
        stats=result["stats"], counters=result["counters"],
        data=[bytes.fromhex(d) for d in result["data"]], data_error=result["data_tuser"],
        data_frames=result["data_frames"])


def _failures(results_xml) -> str:
    from cocotb_tools.check_results import get_results
    try:
        total, failed = get_results(Path(results_xml))
    except (RuntimeError, FileNotFoundError) as exc:
        return str(exc)
    return f"{failed} of {total} failed" if failed else ""
