"""Host memory as the driver sees it: the :class:`HostMemory` interface a backend provides,
a ``bytearray`` implementation, and the allocator the rings take their memory from.

The NIC reaches host memory by DMA; the driver reads and writes it only through
:class:`HostMemory`, so the same ring code runs against every backend (the compiled
simulation harness, cocotb, a plain-Python fake NIC in the tests).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import HetnicError

__all__ = ["HostMemory", "BytearrayMemory", "OutOfHostMemoryError", "MemoryAllocator",
           "align_up", "check_power_of_two"]


@runtime_checkable
class HostMemory(Protocol):
    """Byte-addressed host memory the NIC reaches by DMA (a backend implements this)."""

    def read(self, addr: int, n: int) -> bytes:
        """The ``n`` bytes at ``addr``."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``."""
        ...


class BytearrayMemory:
    """Host memory held in a ``bytearray``, covering addresses ``base .. base + size - 1``.

    Parameters
    ----------
    base : int
        Address of the first byte.
    size : int
        Bytes of memory.
    """

    def __init__(self, base: int, size: int):
        if not isinstance(base, int) or not 0 <= base < 1 << 64:
            raise ValueError(f"base must be an address from 0 to 2**64 - 1, not {base!r}")
        if not isinstance(size, int) or size < 1 or base + size > 1 << 64:
            raise ValueError(f"size must be a positive byte count that keeps the memory below "
                             f"2**64, not {size!r}")
        self.base = base
        self.size = size
        self.buffer = bytearray(size)

    def _offset(self, addr: int, n: int, what: str) -> int:
        if n < 0:
            raise ValueError(f"cannot {what} {n} bytes at {addr:#x}: the count is negative")
        if addr < self.base or addr + n > self.base + self.size:
            raise IndexError(f"{what} of {n} bytes at {addr:#x} is outside host memory "
                             f"{self.base:#x}..{self.base + self.size - 1:#x}; take addresses "
                             f"from a MemoryAllocator over this memory")
        return addr - self.base

    def read(self, addr: int, n: int) -> bytes:
        off = self._offset(addr, n, "read")
        return bytes(self.buffer[off:off + n])

    def write(self, addr: int, data: bytes) -> None:
        off = self._offset(addr, len(data), "write")
        self.buffer[off:off + len(data)] = data


class OutOfHostMemoryError(HetnicError, MemoryError):
    """A :class:`MemoryAllocator` has no room left for an allocation."""


class MemoryAllocator:
    """A bump allocator handing out regions of a host memory; nothing is ever freed.

    Rings take their entries and buffers from it once, when they are built, and recycle them.

    Parameters
    ----------
    mem : HostMemory
        The memory the addresses belong to.
    base, size : int
        The region to allocate from.
    """

    def __init__(self, mem: HostMemory, base: int, size: int):
        for name, value in (("base", base), ("size", size)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        self.mem, self.base, self.size = mem, base, size
        self._next = base

    @property
    def used(self) -> int:
        """Bytes handed out so far, alignment padding included."""
        return self._next - self.base

    @property
    def available(self) -> int:
        return self.size - self.used

    def alloc(self, n: int, align: int = 1) -> int:
        """The address of ``n`` fresh bytes aligned to ``align`` (a power of two)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"allocation size must be a positive integer, not {n!r}")
        check_power_of_two("align", align)
        addr = align_up(self._next, align)
        if addr + n > self.base + self.size:
            raise OutOfHostMemoryError(
                f"cannot allocate {n} bytes aligned to {align}: {self.available} of "
                f"{self.size} bytes left at {self.base:#x}; give the allocator a larger region "
                f"or use smaller rings and buffers")
        self._next = addr + n
        return addr


def align_up(value: int, align: int) -> int:
    """``value`` rounded up to a multiple of ``align`` (a power of two)."""
    return (value + align - 1) & -align


def check_power_of_two(name: str, value: int) -> None:
    """Raise :class:`ValueError` naming ``name`` unless ``value`` is a power of two."""
    if not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value!r}")
