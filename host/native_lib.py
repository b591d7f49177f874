"""The host's native helper (``host/native/rps.c``): built at first use, cached, loaded.

The C source is compiled with the C compiler on ``PATH`` (``$CC``, else ``cc``, ``gcc`` or
``clang``) into a shared library under ``$HETNIC_CACHE/native``, named by a hash of the
source, the compiler (its name and ``--version``) and the flags, so a changed source,
layout or compiler builds a new one and an unchanged one is loaded at once. Every layout
offset reaches C as a ``-D`` flag generated from :mod:`hetnic.host.spsc` and
:mod:`hetnic.host.rps_layout`.

:func:`load` returns a :class:`NativeLib` whose :attr:`~NativeLib.lib` is the
:class:`ctypes.CDLL` with argument and result types set; ctypes releases the GIL for the
duration of every call, so a worker or driver loop in C does not hold up other threads.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from pathlib import Path

from ..build_cache import build_lock, cache_dir, content_key
from ..errors import HetnicError
from . import rps_layout, spsc

__all__ = ["NativeBuildError", "NativeLib", "SharedWord", "fence", "load", "SOURCE", "CFLAGS"]

SOURCE = Path(__file__).parent / "native" / "rps.c"
CFLAGS = ["-O2", "-std=gnu11", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"]

_c = ctypes
_P = _c.c_void_p
_SIGNATURES = {
    "hn_syscalls": (_c.c_uint64, []),
    "hn_now_ns": (_c.c_uint64, []),
    "hn_waitpkg": (_c.c_int, []),
    "hn_futex_wait": (_c.c_int, [_P, _c.c_uint32, _c.c_int64]),
    "hn_futex_wake": (_c.c_int, [_P, _c.c_int]),
    "hn_eventfd_new": (_c.c_int, []),
    "hn_eventfd_write": (_c.c_int, [_c.c_int, _c.c_uint64]),
    "hn_eventfd_read": (_c.c_int64, [_c.c_int]),
    "hn_close": (_c.c_int, [_c.c_int]),
    "hn_forward_ipv4": (_c.c_int, [_P, _c.c_uint32, _c.c_int]),
    "hn_worker_init": (_c.c_int, [_P]),
    "hn_worker_run": (_c.c_int, [_P, _P, _c.c_int, _c.c_int, _c.c_int64, _P, _c.c_uint64]),
    "hn_watch": (_c.c_int, [_P, _P]),
    "hn_drive": (_c.c_uint64, [_P, _P, _P, _c.c_uint64, _P, _P, _c.c_uint64, _c.c_uint32,
                               _c.c_uint64, _c.c_uint64, _c.c_int, _c.c_int64]),
    "hn_kick": (None, [_P, _P, _c.c_int]),
    "hn_store_fence_load32": (_c.c_uint32, [_P, _c.c_uint32, _P]),
    "hn_exchange32": (_c.c_uint32, [_P, _c.c_uint32]),
    "hn_fence": (None, []),
}


class NativeBuildError(HetnicError, RuntimeError):
    """The native helper could not be built (no C compiler, or the compile failed)."""


class NativeLib:
    """The loaded helper.

    Members
    -------
    lib : ctypes.CDLL
        The library, with ``argtypes``/``restype`` set for every ``hn_*`` function.
    path : pathlib.Path
        The shared library file in the cache.
    """

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in _SIGNATURES.items():
            func = getattr(self.lib, name)
            func.restype = restype
            func.argtypes = argtypes

    @property
    def syscalls(self) -> int:
        """System calls the helper has made in this process."""
        return self.lib.hn_syscalls()

    @property
    def wait_mode(self) -> str:
        """How an idle worker waits before sleeping: ``"umwait"`` when the CPU has WAITPKG,
        else ``"futex"`` (pause-spin, then futex)."""
        return "umwait" if self.lib.hn_waitpkg() else "futex"


def _compiler() -> str:
    cc = os.environ.get("CC")
    if cc:
        if shutil.which(cc.split()[0]) is None:
            raise NativeBuildError(f"the C compiler CC={cc} is not found: fix CC or unset it "
                                   f"to use cc/gcc/clang")
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    raise NativeBuildError("no C compiler found (looked for cc, gcc and clang, CC unset): the "
                           "host's native helper needs one; install gcc (apt-get install gcc)")


@functools.lru_cache(maxsize=None)
def _compiler_id(cc: str) -> str:
    """The compiler's ``--version`` banner (part of the cache key: a new compiler rebuilds)."""
    try:
        result = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return cc
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else cc


def defines() -> list[str]:
    """The ``-D`` flags the C source is compiled with (the shared layouts)."""
    return spsc.c_defines() + rps_layout.c_defines()


def build() -> Path:
    """Compile the helper into the cache if it is not there yet; its path."""
    cc = _compiler()
    flags = CFLAGS + defines()
    source = SOURCE.read_bytes()
    key = content_key(source, cc, _compiler_id(cc), *flags)
    entry = cache_dir("native") / f"rps-{key}.so"
    with build_lock(entry):     # one build per entry, however many processes ask
        if entry.exists():
            return entry
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        cmd = [*cc.split(), *flags, "-o", str(tmp), str(SOURCE)]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except OSError as exc:
            raise NativeBuildError(f"cannot run the C compiler {cc!r}: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            raise NativeBuildError(f"the C compiler {cc!r} did not finish compiling "
                                   f"{SOURCE.name} within 300 s") from None
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
            raise NativeBuildError(f"compiling {SOURCE.name} failed: {first}")
        os.replace(tmp, entry)
    return entry


_loaded: dict[Path, NativeLib] = {}


def load(path: Path | str | None = None) -> NativeLib:
    """The helper, built first if needed (``path``: a library :func:`build` made, e.g. in the
    parent process, to load without checking the cache)."""
    lib_path = Path(path) if path is not None else build()
    if lib_path not in _loaded:
        _loaded[lib_path] = NativeLib(lib_path)
    return _loaded[lib_path]


@functools.lru_cache(maxsize=None)
def _this_process() -> NativeLib:
    """The helper as :func:`load` gives it, looked up once per process (:func:`load`
    checks the build cache on every call: a file read, a hash and a lock)."""
    return load()


def fence() -> None:
    """A sequentially consistent memory fence (``__atomic_thread_fence``), for a Python
    store that must be visible before a later Python load of another word (x86 reorders
    the two: a store buffer). No system call; about a microsecond through ctypes."""
    _this_process().lib.hn_fence()


class SharedWord:
    """A 32-bit word in shared memory, for the two sides of a wake-up protocol.

    A side that announces (``"I sleep"``, ``"I rang a doorbell"``) and then looks at the
    other side's word must not have its load overtake its store: :meth:`announce` is the
    store and a sequentially consistent fence in C, after which the caller's loads see
    every store the other side made before its own fence. :meth:`exchange` replaces the
    word atomically (``"clear it, and wake only if it was set"``: one wake per sleep).

    Parameters
    ----------
    buf : memoryview
        Writable memory holding the word (e.g. a slice of a
        :class:`~hetnic.host.shm.SharedSegment`'s ``buf``).
    offset : int
        Byte offset of the word in ``buf`` (4-byte aligned in the segment).

    Call :meth:`release` before the memory behind ``buf`` is released (this object holds
    an export of it).
    """

    def __init__(self, buf: memoryview, offset: int = 0):
        self._lib = _this_process().lib
        self._cell: ctypes.c_uint32 | None = ctypes.c_uint32.from_buffer(buf, offset)
        self.address = ctypes.addressof(self._cell)
        if self.address % 4:
            self.release()
            raise ValueError(f"a shared word must be 4-byte aligned (address {self.address:#x})")

    @property
    def value(self) -> int:
        """The word now (a plain load)."""
        return self._cell.value

    def store(self, value: int) -> None:
        """A plain store (no fence: for a store no later load depends on)."""
        self._cell.value = value

    def announce(self, value: int) -> None:
        """Store ``value``, then a full fence: loads the caller makes after this see the
        other side's stores made before its own fence."""
        self._lib.hn_store_fence_load32(self.address, value, self.address)

    def exchange(self, value: int) -> int:
        """Atomically store ``value``; the word's old value (a full barrier)."""
        return self._lib.hn_exchange32(self.address, value)

    def release(self) -> None:
        """Drop the export of the memory (idempotent)."""
        self._cell = None
