"""``hetnic bench host``: how the host's cores share the work (issue #15), one dict.

* ``rps``: :func:`hetnic.bench_rps.bench_rps`, RPS by system-call bypass against workers
  that block in ``read()`` on an eventfd;
* ``dispatch``: :func:`hetnic.bench_dispatch.bench_dispatch`, the heterogeneous instances
  behind the QoS dispatcher against one homogeneous instance with the same resources;
* ``wn``: :func:`hetnic.bench_wn.bench_wn`, W/N threads with shadow listeners, N = 1
  against N = 2.

Each part measures its baseline in the same run. A part that fails does not take the others
with it: its entry is ``{"error": "<one line>"}`` and ``errors`` names it, so nothing is
ever reported in its place.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

__all__ = ["bench_host", "PARTS"]

#: The parts, in the order they run.
PARTS: tuple[str, ...] = ("rps", "dispatch", "wn")

_MiB = 1024 * 1024


def _rps(scale: float, kw: dict) -> dict:
    from .bench_rps import bench_rps
    args = {"packets": max(10_000, int(2_000_000 * scale))}
    args.update(kw)
    return bench_rps(**args)


def _dispatch(scale: float, kw: dict) -> dict:
    from .bench_dispatch import bench_dispatch
    args = {"rounds": max(20, int(1000 * scale)),
            "bulk_size": max(_MiB, int(8 * _MiB * scale)),
            "connections": max(10, int(500 * scale))}
    args.update(kw)
    return bench_dispatch(**args)


def _wn(scale: float, kw: dict) -> dict:
    from .bench_wn import bench_wn
    return bench_wn(**kw)


_RUNNERS: dict[str, Callable[[float, dict], dict]] = {
    "rps": _rps, "dispatch": _dispatch, "wn": _wn}


def bench_host(only: Sequence[str] = PARTS, *, scale: float = 1.0,
               rps: dict | None = None, dispatch: dict | None = None,
               wn: dict | None = None) -> dict:
    """Run the parts ``only`` (a subset of :data:`PARTS`, run in that order) and return
    ``{part: its dict}`` plus ``seconds`` (each part's wall time), ``errors`` (the parts
    that failed, each ``{"error": ...}`` in its entry) and ``cpus``.

    Parameters
    ----------
    only : sequence of str
        Which parts to run.
    scale : float
        Multiplies the sizes of ``rps`` (packets, default 2,000,000) and ``dispatch``
        (request/response rounds 1000, bulk file 8 MiB, short connections 500), each kept
        above a floor; ``wn`` runs at its own defaults.
    rps, dispatch, wn : dict, optional
        Keyword arguments for that part's function, over the scaled ones.

    Raises
    ------
    ValueError
        An unknown part or a scale that is not a positive number.
    """
    parts = list(only)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"bench host: parts are {', '.join(PARTS)}, not "
                         f"{', '.join(unknown) or 'none'}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"bench host: scale must be a positive number, not {scale!r}")
    extra = {"rps": rps or {}, "dispatch": dispatch or {}, "wn": wn or {}}
    out: dict = {}
    seconds: dict[str, float] = {}
    errors: list[str] = []
    for part in PARTS:
        if part not in parts:
            continue
        t0 = time.monotonic()
        try:
            out[part] = _RUNNERS[part](float(scale), extra[part])
        except Exception as exc:     # the other parts still run; the failure is reported
            text = " ".join(str(exc).split()) or type(exc).__name__
            out[part] = {"error": f"{type(exc).__name__}: {text}"}
            errors.append(part)
        seconds[part] = round(time.monotonic() - t0, 1)
    out["seconds"] = seconds
    out["errors"] = errors
    out["cpus"] = os.cpu_count()
    return out
