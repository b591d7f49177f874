"""The build cache: where compiled artefacts (the simulation harness, generated Verilog, the
host's native helper) are kept between runs, keyed by a hash of what they are built from.

The cache lives in ``$HETNIC_CACHE`` (default ``~/.cache/hetnic``). An entry's name holds
the :func:`content_key` of its inputs, so a changed source or flag builds a new entry and
an unchanged one is reused; :func:`build_lock` makes concurrent processes build an entry
once. This module is part of the base layer: it imports only the standard library and
:mod:`hetnic.errors`, and the host driver, the simulation and the CLI all use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_dir", "content_key", "build_lock"]


def cache_dir(*parts: str) -> Path:
    """A folder under the build cache (``$HETNIC_CACHE``, default ``~/.cache/hetnic``)."""
    base = Path(os.environ.get("HETNIC_CACHE") or Path.home() / ".cache" / "hetnic")
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_key(*items: str | bytes) -> str:
    """A short hash of build inputs (Verilog text, harness sources, parameters)."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode() if isinstance(item, str) else item)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def build_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock for building cache entry ``entry``, so that processes that need
    the same build at once (pytest workers, two commands) build it once: the first builds,
    the others wait and then find it built. The lock files live in the cache's ``locks/``
    folder, never beside the entries; a lock goes with its process, so a build that dies
    leaves none behind."""
    path = cache_dir("locks") / f"{entry.parent.name}.{entry.name}.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
