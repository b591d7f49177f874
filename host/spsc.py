"""A single-producer single-consumer ring of fixed-size slots over a shared buffer.

One process pushes, one process pops; the ring lives in a writable buffer both can map (a
slice of a :class:`~hetnic.host.shm.SharedSegment`'s ``buf``). The layout below is defined
once, here: the C helper (``host/native/``) gets the same offsets as ``-D`` flags generated
from these constants (:func:`c_defines`), never a retyped copy.

Layout (native byte order, the header in 64-byte cache lines)::

    0    u32 magic, u32 nslots, u32 slot_size           (written once by create)
    64   u64 producer index   (written by the producer only)
    128  u64 consumer index   (written by the consumer only)
    192  u32 sleeping         (the consumer's futex word: 1 while it waits or is about to)
    200  u64 heartbeat        (bumped by the consumer while it lives, also while asleep)
    256  u64 wake stamp       (CLOCK_MONOTONIC ns the producer stored before waking it)
    264  u32 producer waiting (the producer's futex word: 1 while it waits for room; the
                               consumer wakes it once the ring is at most half full)
    320  nslots slots of slot_size bytes: u32 length, u32 aux, then length bytes of data;
         or, when the length word has bit 31 (SLOT_REF) set, a descriptor: the low bits are
         the length of a frame kept elsewhere (a pool both sides map) and the next u64 is
         its offset there (zero-copy; the C helper's RPS rings, not push/pop below)

The indices run free (they are never reduced modulo ``nslots``); slot ``i`` of the ring is
``index % nslots``; ``producer - consumer`` is the fill level.

Memory ordering
---------------
The producer writes the slot, then publishes the new producer index; the consumer reads the
producer index, then the slot, then publishes the new consumer index. On x86 (TSO: stores
are not reordered with stores, loads not with loads) plain aligned 8-byte stores and loads
are enough for that, provided each is one instruction: the indices and the header words are
therefore accessed through native-format ``memoryview`` casts (one ``memcpy`` of the whole
word), never through ``struct``'s ``"<Q"``, which stores and loads byte by byte, so that
the other process could see a torn index. The C helper uses
``__atomic`` release stores and acquire loads on the indices (correct on any CPU), and a
sequentially consistent fence between "store the index" and "load ``sleeping``" (producer)
and between "store ``sleeping`` = 1" and "load the producer index" (consumer), the
store-then-load pair TSO does reorder: without it a wake-up could be lost. A Python
producer therefore never decides on its own whether to wake a sleeping consumer.
"""

from __future__ import annotations

import struct

from ..errors import HetnicError

__all__ = ["SpscRing", "SpscError", "MAGIC", "OFF_MAGIC", "OFF_NSLOTS", "OFF_SLOT_SIZE",
           "OFF_PROD", "OFF_CONS", "OFF_SLEEPING", "OFF_HEARTBEAT", "OFF_WAKE_STAMP",
           "OFF_PRODUCER_WAITING",
           "HEADER_SIZE", "SLOT_HEADER", "SLOT_REF", "c_defines"]

MAGIC = 0x53505343  # "SPSC"
OFF_MAGIC = 0
OFF_NSLOTS = 4
OFF_SLOT_SIZE = 8
OFF_PROD = 64
OFF_CONS = 128
OFF_SLEEPING = 192
OFF_HEARTBEAT = 200
OFF_WAKE_STAMP = 256
OFF_PRODUCER_WAITING = 264
HEADER_SIZE = 320
SLOT_HEADER = 8  # u32 length, u32 aux
SLOT_REF = 1 << 31  # in the length word: the slot holds a u64 pool offset, not the frame

_U32 = struct.Struct("=I")   # the magic and geometry, written once before any other access
_SLOT = struct.Struct("=II")  # a slot's header, ordered by the index that publishes it


class SpscError(HetnicError, ValueError):
    """A ring cannot be built or attached over the given buffer (the message says why)."""


def c_defines() -> list[str]:
    """The layout as C preprocessor flags (``-DSPSC_OFF_PROD=64`` ...) for the C helper."""
    names = {"MAGIC": MAGIC, "OFF_NSLOTS": OFF_NSLOTS, "OFF_SLOT_SIZE": OFF_SLOT_SIZE,
             "OFF_MAGIC": OFF_MAGIC, "OFF_PROD": OFF_PROD, "OFF_CONS": OFF_CONS,
             "OFF_SLEEPING": OFF_SLEEPING, "OFF_HEARTBEAT": OFF_HEARTBEAT,
             "OFF_WAKE_STAMP": OFF_WAKE_STAMP, "OFF_PRODUCER_WAITING": OFF_PRODUCER_WAITING,
             "HEADER_SIZE": HEADER_SIZE,
             "SLOT_HEADER": SLOT_HEADER, "SLOT_REF": f"{SLOT_REF:#x}u"}
    return [f"-DSPSC_{name}={value}" for name, value in names.items()]


class SpscRing:
    """A single-producer single-consumer ring over a writable buffer (see the module doc).

    Build one with :meth:`create` (initialises the header) or :meth:`attach` (an existing
    ring, e.g. in the other process). Exactly one process may call :meth:`push` and exactly
    one :meth:`pop`/:meth:`pop_many`.

    Members
    -------
    capacity : int
        Slots in the ring (``nslots``).
    slot_size : int
        Bytes per slot, header included.
    max_payload : int
        Longest ``data`` a slot holds (``slot_size - 8``).
    """

    def __init__(self, buf: memoryview, nslots: int, slot_size: int):
        self._buf = buf
        self.capacity = nslots
        self.slot_size = slot_size
        self.max_payload = slot_size - SLOT_HEADER
        self._mask = nslots - 1
        self._w32 = buf[:HEADER_SIZE].cast("I")  # whole-word (untorn) header access
        self._w64 = buf[:HEADER_SIZE].cast("Q")

    @staticmethod
    def _check(nslots: int, slot_size: int) -> None:
        if not isinstance(nslots, int) or nslots < 2 or nslots & (nslots - 1) or nslots >= 1 << 31:
            raise SpscError(f"nslots must be a power of two from 2 to 2**30, not {nslots!r}")
        if (not isinstance(slot_size, int) or slot_size < SLOT_HEADER + 8 or slot_size % 8
                or slot_size >= 1 << 31):
            raise SpscError(f"slot_size must be a multiple of 8 of at least {SLOT_HEADER + 8} "
                            f"bytes (header included), not {slot_size!r}")

    @staticmethod
    def bytes_needed(nslots: int, slot_size: int) -> int:
        """Bytes of buffer a ring of ``nslots`` slots of ``slot_size`` bytes takes."""
        SpscRing._check(nslots, slot_size)
        return HEADER_SIZE + nslots * slot_size

    @staticmethod
    def _view(buf) -> memoryview:
        view = memoryview(buf)
        if view.readonly:
            raise SpscError("the ring's buffer must be writable")
        return view.cast("B") if view.format != "B" or view.ndim != 1 else view

    @classmethod
    def create(cls, buf, nslots: int, slot_size: int) -> "SpscRing":
        """Initialise an empty ring at the start of ``buf`` (its first
        :meth:`bytes_needed` bytes; the header is overwritten, the slots are not cleared)."""
        need = cls.bytes_needed(nslots, slot_size)
        view = cls._view(buf)
        if len(view) < need:
            raise SpscError(f"a ring of {nslots} slots of {slot_size} bytes needs {need} bytes, "
                            f"the buffer has {len(view)}")
        view[:HEADER_SIZE] = bytes(HEADER_SIZE)
        _U32.pack_into(view, OFF_NSLOTS, nslots)
        _U32.pack_into(view, OFF_SLOT_SIZE, slot_size)
        _U32.pack_into(view, OFF_MAGIC, MAGIC)
        return cls(view[:need], nslots, slot_size)

    @classmethod
    def attach(cls, buf) -> "SpscRing":
        """The ring :meth:`create` initialised at the start of ``buf``."""
        view = cls._view(buf)
        if len(view) < HEADER_SIZE or _U32.unpack_from(view, OFF_MAGIC)[0] != MAGIC:
            raise SpscError("no SPSC ring at the start of this buffer (bad magic); "
                            "the producer side builds it with SpscRing.create")
        nslots = _U32.unpack_from(view, OFF_NSLOTS)[0]
        slot_size = _U32.unpack_from(view, OFF_SLOT_SIZE)[0]
        need = cls.bytes_needed(nslots, slot_size)
        if len(view) < need:
            raise SpscError(f"the ring's header says {need} bytes, the buffer has {len(view)}")
        return cls(view[:need], nslots, slot_size)

    # -- indices -------------------------------------------------------------------------

    def _get(self, off: int) -> int:
        return self._w64[off >> 3]

    def __len__(self) -> int:
        return self._get(OFF_PROD) - self._get(OFF_CONS)

    @property
    def free(self) -> int:
        """Slots a push can fill now."""
        return self.capacity - len(self)

    @property
    def producer_index(self) -> int:
        """Free-running count of slots ever pushed."""
        return self._get(OFF_PROD)

    @property
    def consumer_index(self) -> int:
        """Free-running count of slots ever popped."""
        return self._get(OFF_CONS)

    @property
    def sleeping(self) -> int:
        """The consumer's futex word: nonzero while it waits (or is about to)."""
        return self._w32[OFF_SLEEPING >> 2]

    @sleeping.setter
    def sleeping(self, value: int) -> None:
        self._w32[OFF_SLEEPING >> 2] = value

    @property
    def heartbeat(self) -> int:
        """A counter the consumer bumps while it lives (wraps at 2**64)."""
        return self._get(OFF_HEARTBEAT)

    @heartbeat.setter
    def heartbeat(self, value: int) -> None:
        self._w64[OFF_HEARTBEAT >> 3] = value & ((1 << 64) - 1)

    @property
    def wake_stamp(self) -> int:
        """CLOCK_MONOTONIC nanoseconds the producer stored before its last futex wake."""
        return self._get(OFF_WAKE_STAMP)

    # -- data ----------------------------------------------------------------------------

    def push(self, data: bytes, aux: int = 0) -> bool:
        """Append ``data`` (with the 32-bit ``aux`` word) at the tail.

        Returns False, storing nothing, when the ring is full or ``data`` is longer than
        :attr:`max_payload`: the caller counts the drop. Producer side only.
        """
        n = len(data)
        prod = self._get(OFF_PROD)
        if n > self.max_payload or prod - self._get(OFF_CONS) >= self.capacity:
            return False
        base = HEADER_SIZE + (prod & self._mask) * self.slot_size
        _SLOT.pack_into(self._buf, base, n, aux & 0xFFFFFFFF)
        self._buf[base + SLOT_HEADER:base + SLOT_HEADER + n] = data
        self._w64[OFF_PROD >> 3] = prod + 1  # publish after the slot (TSO)
        return True

    def push_many(self, items: list[tuple[bytes, int]]) -> int:
        """:meth:`push` each ``(data, aux)`` of ``items`` in order, one producer-index update
        for the batch; stops at the first item that does not fit (the ring full, or
        ``data`` longer than :attr:`max_payload`). Returns how many were pushed: the caller
        keeps or counts the rest. Producer side only."""
        w64 = self._w64
        prod = w64[OFF_PROD >> 3]
        room = self.capacity - (prod - w64[OFF_CONS >> 3])
        buf, mask, size, limit = self._buf, self._mask, self.slot_size, self.max_payload
        pack = _SLOT.pack_into
        count = 0
        for data, aux in items:
            n = len(data)
            if count >= room or n > limit:
                break
            base = HEADER_SIZE + ((prod + count) & mask) * size
            pack(buf, base, n, aux & 0xFFFFFFFF)
            buf[base + SLOT_HEADER:base + SLOT_HEADER + n] = data
            count += 1
        if count:
            w64[OFF_PROD >> 3] = prod + count  # publish after the slots (TSO)
        return count

    def pop(self) -> tuple[bytes, int] | None:
        """The oldest ``(data, aux)``, removed from the ring, or None when it is empty.
        Consumer side only."""
        cons = self._get(OFF_CONS)
        if self._get(OFF_PROD) == cons:
            return None
        item = self._read(cons)
        self._w64[OFF_CONS >> 3] = cons + 1
        return item

    def pop_many(self, max_n: int) -> list[tuple[bytes, int]]:
        """Up to ``max_n`` of the oldest ``(data, aux)`` pairs, oldest first, removed from
        the ring (one consumer-index update for the batch). Consumer side only."""
        if max_n < 0:
            raise SpscError(f"max_n must be 0 or more, not {max_n!r}")
        w64 = self._w64
        cons = w64[OFF_CONS >> 3]
        n = min(max_n, w64[OFF_PROD >> 3] - cons)
        if n <= 0:
            return []
        buf, mask, size, limit = self._buf, self._mask, self.slot_size, self.max_payload
        unpack = _SLOT.unpack_from
        items = []
        for index in range(cons, cons + n):
            base = HEADER_SIZE + (index & mask) * size
            length, aux = unpack(buf, base)
            if length > limit:
                self._read(index)           # raises: the ring's memory is corrupted
            items.append((bytes(buf[base + SLOT_HEADER:base + SLOT_HEADER + length]), aux))
        w64[OFF_CONS >> 3] = cons + n
        return items

    def _read(self, index: int) -> tuple[bytes, int]:
        base = HEADER_SIZE + (index & self._mask) * self.slot_size
        n, aux = _SLOT.unpack_from(self._buf, base)
        if n > self.max_payload:
            raise SpscError(f"slot {index & self._mask} says {n} bytes, more than a slot holds "
                            f"({self.max_payload}): the ring's memory is corrupted")
        return bytes(self._buf[base + SLOT_HEADER:base + SLOT_HEADER + n]), aux

    def release(self) -> None:
        """Drop this object's views of the buffer (so the segment can be closed)."""
        for view in (self._w32, self._w64, self._buf):
            view.release()
