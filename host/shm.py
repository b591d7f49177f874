"""Shared memory segments: host memory that several processes map at once.

A :class:`SharedSegment` is a file in ``/dev/shm`` mapped into every process that attaches it
by name, addressed from 0 like the NIC's host memory (it implements
:class:`hetnic.host.memory.HostMemory`). The process that :meth:`~SharedSegment.create`\\ s a
segment owns it: its :meth:`~SharedSegment.close` unlinks the file; an attaching process only
unmaps. This is not :mod:`multiprocessing.shared_memory`, whose resource tracker (Python 3.11)
unlinks a segment when any process that attached it exits.

>>> with SharedSegment.create(1 << 20) as seg:
...     seg.write(0x100, b"hello")
...     other = SharedSegment.attach(seg.name)      # in another process, usually
...     assert other.read(0x100, 5) == b"hello"
...     other.close()
"""

from __future__ import annotations

import mmap
import os
import re
import secrets

from ..errors import HetnicError

__all__ = ["SHM_DIR", "SharedSegment", "SharedSegmentError"]

#: Where POSIX shared memory lives on Linux (what ``shm_open`` uses).
SHM_DIR = "/dev/shm"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")
_MAX_SIZE = 1 << 40


class SharedSegmentError(HetnicError, OSError):
    """A shared memory segment could not be created, attached or reached."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise SharedSegmentError(f"a shared segment name is 1 to 200 characters from "
                                 f"A-Z a-z 0-9 _ . - (no '/'), not {name!r}")
    return name


class SharedSegment:
    """A shared memory segment mapped read-write, bytes ``0 .. size - 1``.

    Build one with :meth:`create` or :meth:`attach`, not the constructor.

    Members
    -------
    name : str
        The segment's name (its file is ``/dev/shm/<name>``); what another process passes to
        :meth:`attach`.
    size : int
        Bytes in the segment.
    buf : memoryview
        The whole segment, writable (unsigned bytes); slices of it are zero-copy views.
    owner : bool
        Whether this object created the segment (and unlinks it on :meth:`close`).
    """

    def __init__(self, name: str, size: int, mm: mmap.mmap, owner: bool):
        self.name = name
        self.size = size
        self.owner = owner
        self._mmap: mmap.mmap | None = mm
        self.buf = memoryview(mm)
        self._unlinked = False

    # --- opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, size: int, *, prefix: str = "hetnic") -> "SharedSegment":
        """A new, zeroed segment of ``size`` bytes, named ``<prefix>-<pid>-<random>``, created
        exclusively with mode 0600. The caller owns it: :meth:`close` unlinks it."""
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_SIZE:
            raise SharedSegmentError(f"a shared segment is 1 to {_MAX_SIZE} bytes, "
                                     f"not {size!r}")
        _check_name(prefix)
        for _ in range(8):
            name = f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"
            path = os.path.join(SHM_DIR, name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise SharedSegmentError(f"cannot create shared segment {path}: "
                                         f"{exc.strerror}; is {SHM_DIR} mounted and "
                                         f"writable?") from None
            break
        else:
            raise SharedSegmentError(f"could not find a free name for a shared segment "
                                     f"with prefix {prefix!r} in {SHM_DIR}")
        try:
            os.ftruncate(fd, size)          # a new file reads as zeros
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise SharedSegmentError(f"cannot map {size} bytes of shared segment {path}: "
                                     f"{exc.strerror}; is {SHM_DIR} full?") from None
        os.close(fd)
        return cls(name, size, mm, owner=True)

    @classmethod
    def attach(cls, name: str) -> "SharedSegment":
        """Map the existing segment ``name`` (as :attr:`name` gives it), whole. The caller
        does not own it: :meth:`close` only unmaps."""
        path = os.path.join(SHM_DIR, _check_name(name))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SharedSegmentError(f"no shared segment {name!r} in {SHM_DIR}; has its "
                                     f"creator closed it already?") from None
        except OSError as exc:
            raise SharedSegmentError(f"cannot open shared segment {path}: "
                                     f"{exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size < 1:
                raise SharedSegmentError(f"shared segment {path} is empty; it is not a "
                                         f"segment made by SharedSegment.create")
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise SharedSegmentError(f"cannot map shared segment {path}: "
                                     f"{exc.strerror}") from None
        finally:
            os.close(fd)
        return cls(name, size, mm, owner=False)

    @property
    def path(self) -> str:
        """The segment's file, ``/dev/shm/<name>``."""
        return os.path.join(SHM_DIR, self.name)

    @property
    def closed(self) -> bool:
        return self._mmap is None

    # --- HostMemory -----------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        """The ``n`` bytes at ``addr`` (a copy)."""
        if addr < 0 or n < 0 or addr + n > self.size:
            self._out_of_range("read", addr, n)
        return self.buf[addr:addr + n].tobytes()

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` (any bytes-like object) at ``addr``."""
        n = len(data)
        if addr < 0 or addr + n > self.size:
            self._out_of_range("write", addr, n)
        self.buf[addr:addr + n] = data

    def _out_of_range(self, what: str, addr: int, n: int):
        if self._mmap is None:
            raise SharedSegmentError(f"shared segment {self.name} is closed")
        raise IndexError(f"{what} of {n} bytes at {addr:#x} is outside shared segment "
                         f"{self.name} (0..{self.size - 1:#x})")

    # --- closing --------------------------------------------------------------------------
    def unlink(self) -> None:
        """Remove the segment's name from ``/dev/shm`` (processes that mapped it keep their
        mapping); done by :meth:`close` of the creator. Unlinking twice does nothing."""
        if self._unlinked:
            return
        self._unlinked = True
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmap the segment, and unlink it if this object created it. Views of :attr:`buf`
        still held elsewhere keep the mapping alive until they are released; closing twice
        does nothing."""
        if self._mmap is None:
            return
        mm, self._mmap = self._mmap, None
        self.size = 0               # every access now fails with "closed"
        buf, self.buf = self.buf, memoryview(b"")
        try:
            buf.release()
            mm.close()
        except BufferError:
            pass        # someone still holds a view: the mapping goes when it does
        if self.owner:
            self.unlink()

    def __enter__(self) -> "SharedSegment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._mmap is None else f"{self.size} bytes"
        return f"SharedSegment({self.name!r}, {state}{', owner' if self.owner else ''})"

    def __reduce__(self):
        raise TypeError(f"a SharedSegment is not pickled; pass its name ({self.name!r}) and "
                        f"SharedSegment.attach it in the other process")
