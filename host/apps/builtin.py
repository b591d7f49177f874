"""The built-in applications by name: one table for every host that starts them (the
one-process :class:`~hetnic.host.stack_host.StackHost` and the instance processes of
:class:`~hetnic.host.stack_procs.StackProcs`). Their ports and QoS classes are
:data:`~hetnic.host.stack_steering.APP_PORTS`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .discard import DiscardServer
from .echo import EchoServer, UdpEchoServer
from .http_static import HttpStaticServer

__all__ = ["APP_MAKERS", "app_key", "make_app"]


def _http(stack, port: int, serve_dir: str | Path | None):
    if serve_dir is None:
        raise ValueError("the HTTP server needs a folder to serve (serve_dir)")
    return HttpStaticServer(stack, Path(serve_dir), port)


#: Application key (:func:`app_key`) -> ``make(stack, port, serve_dir) -> app``.
APP_MAKERS: dict[str, Callable[[Any, int, Any], Any]] = {
    "http": _http,
    "echo/tcp": lambda stack, port, _: EchoServer(stack, port),
    "echo/udp": lambda stack, port, _: UdpEchoServer(stack, port),
    "discard": lambda stack, port, _: DiscardServer(stack, port),
}


def app_key(app: str, proto: str) -> str:
    """The :data:`APP_MAKERS` key of application ``app`` on ``proto``: its name when that
    is a key (one protocol only), else ``"app/proto"``."""
    return app if app in APP_MAKERS else f"{app}/{proto}"


def make_app(app: str, proto: str, stack, port: int, serve_dir: str | Path | None = None):
    """Start built-in application ``app`` (``"http"``, ``"echo"``, ``"discard"``) on
    ``proto``/``port`` of ``stack``.

    Raises
    ------
    KeyError
        No such built-in application on that protocol.
    """
    key = app_key(app, proto)
    if key not in APP_MAKERS:
        raise KeyError(f"no built-in application {app!r} on {proto} (there are "
                       f"{', '.join(sorted(APP_MAKERS))})")
    return APP_MAKERS[key](stack, port, serve_dir)
