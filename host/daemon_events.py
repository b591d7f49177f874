# Ref: inotify(7) (IN_CLOSE_WRITE, IN_MOVED_TO, IN_Q_OVERFLOW).
"""File events for hetnicd: the kernel's inotify, through ``asyncinotify``.

The daemon watches *items*: single files (the policy, the rules, the RSS key, the instance
configuration) and one drop folder. It watches the folder each file is in, not the file, so a
file an editor replaces (write a temporary file, rename it over the old one) keeps being
watched, and it acts only on two events:

``IN_CLOSE_WRITE``
    a file opened for writing was closed: it is complete (a writer that holds the file open
    half-written triggers nothing);
``IN_MOVED_TO``
    a file was renamed into the folder (``mv``, an editor's rename, ``git checkout``): it
    was complete before the rename. The temporary file's own close is ignored, since its name
    is not an item (a hidden name, or a ``~``/``.tmp``/``.swp`` suffix in the drop folder).

For the single files it also acts on ``IN_DELETE``, ``IN_MOVED_FROM`` and ``IN_ATTRIB``: a
policy removed, renamed away or made unreadable is read again, fails, and denies everything
(the hash check makes a ``chmod`` or ``touch`` that leaves the file readable do nothing).

``IN_Q_OVERFLOW`` means the kernel dropped events: :meth:`Watcher.poll` then reports every
item and every file in the drop folder that nobody holds open for writing (a read lease
probe, :func:`open_for_writing`: a half-written file triggers on its close), and
:class:`Reconciler` compares each one's content hash with the one it last acted on, so
nothing is done twice and nothing is missed. The same
hash check makes a second event for unchanged content (``touch``, an editor saving the same
text, a duplicate close) do nothing.

A file that vanishes between the event and the read, a symlink loop, a permission denied:
the reconciler reports the error in the event's record and carries on. A file in the drop
folder (which others may write) is read only if it is a regular file and not a symlink.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from asyncinotify import Inotify, Mask

__all__ = ["Item", "Watcher", "Reconciler", "DROP_SUFFIXES", "REPORT_SUFFIX",
           "open_for_writing"]

#: The files in the drop folder that are replayed.
DROP_SUFFIXES = (".pcap", ".pcapng", ".cap")
#: What the report of ``NAME`` is called (next to it): ``NAME.report.json``.
REPORT_SUFFIX = ".report.json"
_MASK = (Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.DELETE | Mask.MOVED_FROM | Mask.ATTRIB
         | Mask.ONLYDIR)
_GONE = Mask.DELETE | Mask.MOVED_FROM
#: Drop-folder files whose last hash the reconciler remembers, at most.
MAX_DROPS_REMEMBERED = 65536


@dataclass(frozen=True)
class Item:
    """A watched path and its kind: ``policy``, ``rules``, ``rss-key``, ``instances``, or
    ``drop`` (a folder: each file in it)."""
    kind: str
    path: Path


def open_for_writing(path: Path) -> bool:
    """Whether some process holds ``path`` open for writing, by asking the kernel for a read
    lease (``F_SETLEASE F_RDLCK`` fails with EAGAIN exactly then; fcntl(2)). Taking a lease
    needs the file's owner or CAP_LEASE; when the kernel cannot tell (no such right, a file
    system without leases, not a regular file), False: the file's content decides."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _ignored_drop_name(name: str) -> bool:
    return (name.startswith(".") or name.endswith(("~", ".tmp", ".swp", ".part"))
            or name.endswith(REPORT_SUFFIX) or not name.endswith(DROP_SUFFIXES))


class Watcher:
    """inotify watches on the folders of ``items``; :meth:`poll` returns the ``(kind,
    path)`` pairs that are due. :attr:`overflows` counts ``IN_Q_OVERFLOW``."""

    def __init__(self, items: list[Item], cache: int = 512):
        self.items = list(items)
        self._files: dict[Path, str] = {}
        self._drops: dict[Path, str] = {}
        self.overflows = 0
        self.errors: list[str] = []
        #: Drop-folder files removed or renamed away since the last look (the daemon
        #: forgets them, :meth:`Reconciler.forget`).
        self.gone: list[Path] = []
        self._inotify = Inotify(cache_size=cache, sync_timeout=0)
        dirs: set[Path] = set()
        for item in self.items:
            path = Path(os.path.abspath(item.path))
            if item.kind == "drop":
                self._drops[path] = item.kind
                dirs.add(path)
            else:
                self._files[path] = item.kind
                dirs.add(path.parent)
        for folder in sorted(dirs):
            self._inotify.add_watch(folder, _MASK)

    def fileno(self) -> int:
        return self._inotify.fd

    def _kind(self, path: Path) -> str | None:
        if path in self._files:
            return self._files[path]
        if path.parent in self._drops and not _ignored_drop_name(path.name):
            return "drop"
        return None

    def scan(self) -> list[tuple[str, Path]]:
        """Every item as it is now: the files, and each file of each drop folder."""
        out = [(kind, path) for path, kind in self._files.items()]
        for folder in self._drops:
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                self.errors.append(f"cannot list {folder}: {exc}")
                continue
            out += [("drop", folder / n) for n in names if not _ignored_drop_name(n)]
        return out

    def rescan(self) -> list[tuple[str, Path]]:
        """:meth:`scan` without the files someone holds open for writing (half-written:
        their close is still to come, and triggers then)."""
        return [(kind, path) for kind, path in self.scan() if not open_for_writing(path)]

    def poll(self) -> list[tuple[str, Path]]:
        """The items due now (without blocking), in event order; all of them after an
        overflow."""
        due: list[tuple[str, Path]] = []
        while True:
            try:
                event = self._inotify.sync_get()
            except BlockingIOError:
                event = None
            if event is None:
                break
            if Mask.Q_OVERFLOW in event.mask:
                self.overflows += 1
                due = self.rescan()
                continue
            if event.path is None or event.name is None:
                continue
            path = Path(os.path.abspath(event.path))
            kind = self._kind(path)
            if kind is None:
                continue
            if kind != "drop":              # a file item: any change, removal or chmod
                due.append((kind, path))
            elif event.mask & _GONE:
                self.gone.append(path)
            elif event.mask & (Mask.CLOSE_WRITE | Mask.MOVED_TO):
                due.append((kind, path))
        return due

    def close(self) -> None:
        self._inotify.close()


def _read_drop(path: Path) -> bytes:
    """The content of a file in the drop folder, which others may write: never through a
    symlink (O_NOFOLLOW: ELOOP) and only a regular file (not a FIFO, a device, a folder)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, a FIFO, a device)")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


class Reconciler:
    """Acts on due items once per content: reads the file, hashes it, and calls
    ``instruction(kind, path, data)`` only if the hash differs from the last one acted on.

    ``instruction`` returns a dict (the result, merged into the record) or raises; the
    record of each call goes to ``record`` and :attr:`done` holds the last hash per path.
    A path removed or renamed away is forgotten (:meth:`forget`), and of the drop folder's
    files only the ``max_drops`` acted on last are remembered (the oldest is forgotten
    first), so :attr:`done` stays bounded however many captures pass through."""

    def __init__(self, instruction: Callable[[str, Path, bytes], dict],
                 record: Callable[[dict], None], max_drops: int = MAX_DROPS_REMEMBERED):
        self._instruction = instruction
        self._record = record
        self.done: dict[Path, str] = {}
        self.max_drops = max_drops
        self._drops: dict[Path, None] = {}      # the drop files in done, oldest first
        self.acted = 0
        self.unchanged = 0
        self.errors = 0

    def prime(self, items: list[tuple[str, Path]]) -> None:
        """Take the current content of ``items`` as already acted on (what the daemon
        loaded at start)."""
        for kind, path in items:
            try:
                data = _read_drop(path) if kind == "drop" else path.read_bytes()
            except OSError:
                continue
            self._remember(kind, path, hashlib.sha256(data).hexdigest())

    def _remember(self, kind: str, path: Path, digest: str) -> None:
        self.done[path] = digest
        if kind == "drop":
            self._drops.pop(path, None)
            self._drops[path] = None
            while len(self._drops) > self.max_drops:
                oldest = next(iter(self._drops))
                del self._drops[oldest]
                self.done.pop(oldest, None)

    def forget(self, paths: list[Path]) -> None:
        """Forget what ``paths`` held (removed or renamed away): the same content put back
        under the name is acted on again."""
        for path in paths:
            self.done.pop(path, None)
            self._drops.pop(path, None)

    def handle(self, due: list[tuple[str, Path]]) -> list[dict]:
        records = []
        for kind, path in due:
            record = self.one(kind, path)
            if record is not None:
                records.append(record)
        return records

    def one(self, kind: str, path: Path) -> dict | None:
        base = {"path": str(path), "item": kind}
        try:
            data = _read_drop(path) if kind == "drop" else path.read_bytes()
        except OSError as exc:
            self.errors += 1
            self.forget([path])             # what it held is gone: act on it when it is back
            record = {**base, "result": "error", "error": f"cannot read {path}: "
                      f"{exc.strerror or exc}"}
            self._record(record)
            return record
        digest = hashlib.sha256(data).hexdigest()
        if self.done.get(path) == digest:
            self.unchanged += 1
            return None
        self._remember(kind, path, digest)
        self.acted += 1
        record = {**base, "sha256": digest, **self._instruction(kind, path, data)}
        self._record(record)
        return record
