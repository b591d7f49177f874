# Ref: RFC 863 (Discard Protocol).
"""The discard service of RFC 863 over TCP (port 9 by default): everything received is
thrown away and counted; when a connection ends, a report says how many bytes it brought.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from .tcp_server import Handler, TcpServerApp

__all__ = ["DiscardServer"]


class _DiscardHandler(Handler):
    def service(self) -> None:
        while (data := self.sock.recv(1 << 20)) is not None:
            if not data:
                self.finish()
                return
            self.received(len(data))

    def closed(self, reason: str | None) -> None:
        self.app._report(self, reason)


class DiscardServer(TcpServerApp):
    """TCP discard on ``port`` of ``stack``.

    Parameters
    ----------
    on_report : callable, optional
        Called with each connection's report when it ends.

    Members
    -------
    reports : deque of dict
        The last 1000 connections' reports: ``{"peer": (host, port), "bytes": int,
        "error": str | None}`` (``error`` is ``None`` for a connection the peer closed).
    """

    def __init__(self, stack, port: int = 9, *, backlog: int | None = None,
                 on_report: Callable[[dict], None] | None = None):
        super().__init__(stack, port, _DiscardHandler, name="discard", backlog=backlog)
        self.reports: deque[dict] = deque(maxlen=1000)
        self.on_report = on_report

    def _report(self, handler: Handler, reason: str | None) -> None:
        report = {"peer": handler.peer, "bytes": handler.bytes_in, "error": reason}
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
