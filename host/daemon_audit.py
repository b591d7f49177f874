"""hetnicd's audit log: one JSON object per line for every access decision and every file
event.

A decision record::

    {"time": "2026-12-06T20:41:07.123456+00:00", "kind": "access",
     "session": {"pid": 4242, "uid": 1001, "gid": 1001}, "user": "alice",
     "interface": "rules", "operation": "configure", "op": "rules.configure",
     "result": "allowed", "rule": "operators"}

``result`` is ``allowed``, ``denied``, ``done``, ``refused``, ``failed`` or ``unsupported``
(an allowed request is logged once it has run, with its outcome); ``rule`` is the grant that
decided, ``default-deny`` or ``invalid-policy``. File events are records of ``kind``
``file-event`` (see :mod:`hetnic.host.daemon_events`), and policy loads ``kind`` ``policy``.
The log is appended to and flushed line by line, so ``tail -f`` follows it. A log file the
daemon creates has mode 0640 (whatever the umask). A record that cannot be written (disk
full, I/O error) raises :class:`AuditError`, which stops the daemon: no decision goes
unaudited.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import IO

from ..errors import HetnicError

__all__ = ["AuditLog", "AuditError"]

#: The mode of an audit log file the daemon creates.
AUDIT_MODE = 0o640


class AuditError(HetnicError, OSError):
    """The audit log cannot be written; the daemon stops rather than act unaudited."""


class AuditLog:
    """Appends records to ``path`` (or a stream); keeps the count of records written."""

    def __init__(self, path: str | Path | None = None, stream: IO[str] | None = None):
        self._own = stream is None and path is not None
        self.path = path
        if self._own:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         AUDIT_MODE)
            self._stream = open(fd, "a", encoding="utf-8")
        else:
            self._stream = stream
        self.records = 0

    def write(self, kind: str, **fields) -> dict:
        record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "kind": kind, **fields}
        if self._stream is not None:
            try:
                self._stream.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                self._stream.flush()
            except (OSError, ValueError) as exc:
                raise AuditError(f"cannot write the audit log {self.path or '(stream)'}: "
                                 f"{getattr(exc, 'strerror', None) or exc}; stopping, since "
                                 f"no decision may go unaudited") from None
        self.records += 1
        return record

    def close(self) -> None:
        if self._own and self._stream is not None:
            try:
                self._stream.close()
            except OSError:                 # a write failed already: AuditError said so
                pass
        self._stream = None
