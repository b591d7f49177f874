"""What every ring of the host driver shares: entry images, phase-bit polling, doorbells.

Memory images
-------------
Every descriptor, work item, completion and event is one of the host-memory layouts of
:mod:`hetnic.protocol`, stored little-endian (:func:`hetnic.protocol.pack` as
``layout.size // 8`` bytes; :class:`EntryCodec` on the hot paths); no offset is retyped here.
Completion and event rings are polled by their ``phase`` bit: the NIC writes 1 on its first
pass over a ring, 0 on the second and so on, so the host expects phase 1 until its consumer
index first wraps, then 0, then 1 again. A ring's constructor zeroes its completion ring, so
nothing stale is ever taken for a completion.

Indices
-------
Producer and consumer indices are free-running. The doorbell value a ring returns is its
producer index modulo 2**16 (``TXQ_PROD`` and ``RXQ_PROD`` are 16 bits); rings have at most
2**15 entries so the NIC can tell a full ring from an empty one. Entries are freed only when
their completion is reaped, so a completion ring never overflows.
"""

from __future__ import annotations

from typing import Sequence

from amaranth.lib import data

from ..errors import HetnicError
from .memory import HostMemory, MemoryAllocator

__all__ = ["MIN_RING_SIZE", "MAX_RING_SIZE", "DOORBELL_MASK", "RingFullError",
           "RingCorruptionError", "EntryCodec", "entry_bytes", "check_ring_size",
           "write_entries", "PhaseRing", "DoorbellRing"]

#: Smallest and largest ring, in entries (``TXQ_SIZE``: a power of two, 2..32768).
MIN_RING_SIZE = 2
MAX_RING_SIZE = 1 << 15
#: Doorbells and the NIC's indices are free-running 16-bit counters.
DOORBELL_MASK = 0xFFFF


def entry_bytes(layout) -> int:
    """Bytes of one host-memory image of ``layout``."""
    return data.Layout.cast(layout).size // 8


class EntryCodec:
    """Little-endian host-memory images of one layout for the ring hot paths: the values of
    :func:`hetnic.protocol.pack` and :func:`~hetnic.protocol.unpack` as ``layout.size // 8``
    bytes (the tests check this), from field positions taken once from the layout, about ten
    times faster. Fields are plain integers; enum membership is not checked."""

    def __init__(self, layout):
        self.name = getattr(layout, "__name__", repr(layout))
        self.nbytes = entry_bytes(layout)
        self.fields = {name: (f.offset, (1 << f.width) - 1)
                       for name, f in data.Layout.cast(layout)}

    def encode(self, **values: int) -> bytes:
        raw = 0
        for name, value in values.items():
            offset, mask = self.fields[name]
            if not 0 <= value <= mask:
                raise ValueError(f"{self.name}.{name} is {mask.bit_length()} bits wide and "
                                 f"cannot hold {value!r}")
            raw |= value << offset
        return raw.to_bytes(self.nbytes, "little")

    def decode(self, image: bytes) -> dict[str, int]:
        raw = int.from_bytes(image, "little")
        return {name: raw >> offset & mask for name, (offset, mask) in self.fields.items()}


def check_ring_size(name: str, size: int) -> None:
    """Raise :class:`ValueError` naming ``name`` unless ``size`` is a ring size: a power of
    two from :data:`MIN_RING_SIZE` to :data:`MAX_RING_SIZE`."""
    if (not isinstance(size, int) or not MIN_RING_SIZE <= size <= MAX_RING_SIZE
            or size & (size - 1)):
        raise ValueError(f"{name} must be a power of two from {MIN_RING_SIZE} to "
                         f"{MAX_RING_SIZE} entries, not {size!r}")


def write_entries(mem: HostMemory, base: int, size: int, index: int,
                  images: Sequence[bytes]) -> None:
    """Write ``images`` to consecutive entries of a ring from free-running ``index`` on, in at
    most two writes (the second when the run wraps around the ring end)."""
    if not images:
        return
    slot = index % size
    first = min(len(images), size - slot)
    mem.write(base + slot * len(images[0]), b"".join(images[:first]))
    if first < len(images):
        mem.write(base, b"".join(images[first:]))


class RingFullError(HetnicError, RuntimeError):
    """The ring lacks free entries, buffers or staging memory for a request right now; reap
    completions and try again."""


class RingCorruptionError(HetnicError, RuntimeError):
    """A completion contradicts what the host posted. The host and the NIC no longer agree
    about the ring: disable the queue and set it up again."""


_READ_ENTRIES = 64      # completions read from host memory at once while polling


class PhaseRing:
    """A ring the NIC writes and the host polls by phase bit (completions, events).

    The phase bit is an entry's last bit, so the NIC's DMA writes it in the entry's last
    beat, after the body. The NIC may be writing while the host reads (its clock runs in
    another process when the memory is shared), so :meth:`peek` reads the entries again
    once it has seen their phase bits, and decodes only that second copy: a body read after
    its phase bit is never older than it. The writer's side holds by construction: the
    harness stores each DMA write beat's highest strobed byte last, with a release store
    (``sim/hil_memory.h``, ``store_write_beat``), so the phase byte is never visible before
    the body; the reader's side: x86 keeps loads in order (the second read is a separate
    backend call after the first).
    """

    def __init__(self, mem: HostMemory, allocator: MemoryAllocator, layout, size: int,
                 align: int):
        self.mem = mem
        self.codec = EntryCodec(layout)
        self.size = size
        self.entry_bytes = self.codec.nbytes
        phase = data.Layout.cast(layout)["phase"]
        if phase.offset != data.Layout.cast(layout).size - 1:
            raise ValueError(f"{self.codec.name}.phase must be the entry's last bit, so that "
                             f"the NIC writes it after the body")
        self._phase_byte, self._phase_shift = divmod(phase.offset, 8)
        self.base = allocator.alloc(size * self.entry_bytes, max(self.entry_bytes, align))
        mem.write(self.base, bytes(size * self.entry_bytes))
        self.cons = 0           # free-running consumer index

    def peek(self, max_entries: int) -> list[dict[str, int]]:
        """Up to ``max_entries`` ready entries from the consumer index on, not consumed.
        Reads up to :data:`_READ_ENTRIES` entries per backend call (twice when some are
        ready: see the class), not one per call."""
        entries: list[dict[str, int]] = []
        index = self.cons
        eb, phase_at, shift = self.entry_bytes, self._phase_byte, self._phase_shift
        while len(entries) < max_entries:
            slot = index % self.size
            expected = (index // self.size & 1) ^ 1
            n = min(max_entries - len(entries), self.size - slot, _READ_ENTRIES)
            addr = self.base + slot * eb
            chunk = self.mem.read(addr, n * eb)
            ready = 0
            while ready < n and (chunk[ready * eb + phase_at] >> shift) & 1 == expected:
                ready += 1
            if ready:
                chunk = self.mem.read(addr, ready * eb)     # the bodies, after their phases
                decode = self.codec.decode
                entries += [decode(chunk[k * eb:(k + 1) * eb]) for k in range(ready)]
            if ready < n:
                return entries
            index += n
        return entries


class DoorbellRing:
    """What RX and TX rings share: a completion ring (``_cq``) and a free-running producer
    index (``_prod``) rung as a 16-bit doorbell."""
    _cq: PhaseRing
    _prod: int

    @property
    def cq_base(self) -> int:
        return self._cq.base

    @property
    def cq_size(self) -> int:
        return self._cq.size

    @property
    def producer(self) -> int:
        """The doorbell value (``RXQ_PROD``/``TXQ_PROD``): the producer index modulo 2**16."""
        return self._prod & DOORBELL_MASK

    def completion_ready(self) -> bool:
        """Whether the next completion entry has been written (one memory read of its phase
        byte, no register access)."""
        return bool(self._cq.peek(1))
