"""The host driver's rings: RX descriptor and completion rings, TX work-item rings, event rings.

This module is written once and used by every backend (a cocotb testbench, the compiled
simulation harness, a board). It never touches hardware: it reads and writes a
:class:`HostMemory` and returns the values the caller writes to doorbell registers (and, from
:func:`queue_register_writes`, the register writes that set a queue up), so the same ring code
runs against every NIC backend and against the plain-Python fake NIC of its tests.

Memory images
-------------
Every descriptor, work item, completion and event is one of the host-memory layouts of
:mod:`hetnic.protocol`, stored little-endian (:func:`pack` and :func:`unpack`); no offset is
retyped here. Completion and event rings are polled by their ``phase`` bit: the NIC writes 1
on its first pass over a ring, 0 on the second and so on, so the host expects phase 1 until
its consumer index first wraps, then 0, then 1 again. A ring's constructor zeroes its
completion ring, so nothing stale is ever taken for a completion.

Indices
-------
Producer and consumer indices are free-running. The doorbell value a ring returns is its
producer index modulo 2**16 (``TXQ_PROD`` and ``RXQ_PROD`` are 16 bits); rings have at most
2**15 entries so the NIC can tell a full ring from an empty one. Entries are freed only when
their completion is reaped, so a completion ring never overflows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from amaranth.lib import data

from ..errors import HetnicError
from ..protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, Event, EventType, HashType, MetaFlags,
                        ParseError, RxCompletion, RxDescriptor, TxCompletion, TxGatherEntry,
                        TxLengths, TxOpcode, TxStatus, TxWorkItem)
from ..protocol import unpack as unpack_value
from ..regs import QUEUE_CTRL_ENABLE, RegisterMap

__all__ = ["HostMemory", "BytearrayMemory", "MemoryAllocator", "OutOfHostMemoryError",
           "RingFullError", "RingCorruptionError", "pack", "unpack",
           "RxPacket", "RxRing", "TxDone", "TxRing", "NicEvent", "EventRing",
           "QueueRing", "queue_register_writes", "SLOT_BYTES", "MIN_RING_SIZE",
           "MAX_RING_SIZE", "DOORBELL_MASK"]

#: Smallest and largest ring, in entries (``TXQ_SIZE``: a power of two, 2..32768).
MIN_RING_SIZE = 2
MAX_RING_SIZE = 1 << 15
#: Doorbells and the NIC's indices are free-running 16-bit counters.
DOORBELL_MASK = 0xFFFF


# --- memory --------------------------------------------------------------------------------

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
        if not isinstance(base, int) or base < 0 or not isinstance(size, int) or size < 0:
            raise ValueError(f"base and size must be non-negative integers, not "
                             f"{base!r} and {size!r}")
        self.mem = mem
        self.base = base
        self.size = size
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
        _check_power_of_two("align", align)
        addr = _align_up(self._next, align)
        if addr + n > self.base + self.size:
            raise OutOfHostMemoryError(
                f"cannot allocate {n} bytes aligned to {align}: {self.available} of "
                f"{self.size} bytes left at {self.base:#x}; give the allocator a larger region "
                f"or use smaller rings and buffers")
        self._next = addr + n
        return addr


# --- packing -------------------------------------------------------------------------------

def _layout_name(layout) -> str:
    return getattr(layout, "__name__", repr(layout))


def pack(layout, **fields: int) -> bytes:
    """The little-endian memory image of ``layout`` with ``fields`` set (others 0).

    Integers are range-checked against their field width; a nested struct field (such as
    ``flags``) accepts its packed integer value; an enum field accepts the enum or its value.
    """
    lay = data.Layout.cast(layout)
    by_name = dict(lay)
    init = {}
    for name, value in fields.items():
        if name not in by_name:
            raise ValueError(f"{_layout_name(layout)} has no field {name!r}; its fields are "
                             f"{', '.join(by_name)}")
        field = by_name[name]
        if isinstance(value, int):
            if not 0 <= value < 1 << field.width:
                raise ValueError(f"{_layout_name(layout)}.{name} is {field.width} bits wide "
                                 f"and cannot hold {value!r}")
            try:
                value = data.Layout.cast(field.shape).from_bits(value)
            except TypeError:
                pass        # a plain or enum shape takes the integer as it is
        init[name] = value
    return lay.const(init).as_value().value.to_bytes(lay.size // 8, "little")


def unpack(layout, image: bytes) -> dict[str, int]:
    """The top-level fields (as integers) of a little-endian memory image of ``layout``."""
    nbytes = data.Layout.cast(layout).size // 8
    if len(image) != nbytes:
        raise ValueError(f"a {_layout_name(layout)} image is {nbytes} bytes, not {len(image)}")
    return unpack_value(layout, int.from_bytes(image, "little"))


def _entry_bytes(layout) -> int:
    return data.Layout.cast(layout).size // 8


class _Codec:
    """:func:`pack` and :func:`unpack` for the ring hot paths: the same images (the tests
    check this), from field positions taken once from the layout, about ten times faster.
    Fields are plain integers; enum membership is not checked."""

    def __init__(self, layout):
        self.name = _layout_name(layout)
        self.nbytes = _entry_bytes(layout)
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


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & -align


def _check_power_of_two(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value!r}")


def _check_ring_size(name: str, size: int) -> None:
    if (not isinstance(size, int) or not MIN_RING_SIZE <= size <= MAX_RING_SIZE
            or size & (size - 1)):
        raise ValueError(f"{name} must be a power of two from {MIN_RING_SIZE} to "
                         f"{MAX_RING_SIZE} entries, not {size!r}")


def _write_entries(mem: HostMemory, base: int, size: int, index: int,
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


class _PhaseRing:
    """A ring the NIC writes and the host polls by phase bit (completions, events)."""

    def __init__(self, mem: HostMemory, allocator: MemoryAllocator, layout, size: int,
                 align: int):
        self.mem = mem
        self.codec = _Codec(layout)
        self.size = size
        self.entry_bytes = self.codec.nbytes
        phase = data.Layout.cast(layout)["phase"]
        self._phase_byte, self._phase_shift = divmod(phase.offset, 8)
        self.base = allocator.alloc(size * self.entry_bytes, max(self.entry_bytes, align))
        mem.write(self.base, bytes(size * self.entry_bytes))
        self.cons = 0           # free-running consumer index

    def peek(self, max_entries: int) -> list[dict[str, int]]:
        """Up to ``max_entries`` ready entries from the consumer index on, not consumed.
        Reads up to :data:`_READ_ENTRIES` entries per backend call, not one per call."""
        entries: list[dict[str, int]] = []
        index = self.cons
        while len(entries) < max_entries:
            slot = index % self.size
            expected = (index // self.size & 1) ^ 1
            n = min(max_entries - len(entries), self.size - slot, _READ_ENTRIES)
            chunk = self.mem.read(self.base + slot * self.entry_bytes, n * self.entry_bytes)
            for k in range(n):
                image = chunk[k * self.entry_bytes:(k + 1) * self.entry_bytes]
                if (image[self._phase_byte] >> self._phase_shift) & 1 != expected:
                    return entries
                entries.append(self.codec.decode(image))
            index += n
        return entries


# --- RX ------------------------------------------------------------------------------------

_FLAG_BITS = {name: field.offset for name, field in data.Layout.cast(MetaFlags)}
_RX_DESCRIPTOR = _Codec(RxDescriptor)


@dataclass(frozen=True)
class RxPacket:
    """One received frame and the metadata of its :class:`~hetnic.protocol.RxCompletion`.

    Members
    -------
    data : bytes
        The frame as it landed in the buffer (``length`` bytes).
    flags : int
        Packed :class:`~hetnic.protocol.MetaFlags`; test one with :meth:`flag`.
    desc_index : int
        Descriptor ring slot whose buffer held the frame.
    """
    data: bytes
    length: int
    hash: int
    hash_type: HashType
    queue: int
    instance: int
    rule: int
    flags: int
    error: ParseError
    generation: int
    timestamp: int
    desc_index: int

    def flag(self, name: str) -> bool:
        """Whether the :class:`~hetnic.protocol.MetaFlags` bit ``name`` is set."""
        if name not in _FLAG_BITS:
            raise KeyError(f"no flag {name!r}; flags are {', '.join(_FLAG_BITS)}")
        return bool(self.flags >> _FLAG_BITS[name] & 1)


class _DoorbellRing:
    """What RX and TX rings share: a completion ring (``_cq``) and a free-running producer
    index (``_prod``) rung as a 16-bit doorbell."""
    _cq: _PhaseRing
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


class RxRing(_DoorbellRing):
    """Descriptor ring and completion ring of one RX queue, with their buffers.

    Owns ``size`` buffers; :meth:`post` hands free ones to the NIC and :meth:`reap` takes
    frames out of completed ones and frees them again.

    Parameters
    ----------
    mem : HostMemory
    allocator : MemoryAllocator
        Gives the rings and buffers their memory, once, in the constructor.
    size : int
        Descriptors (and completion entries): a power of two, 2..32768.
    buffer_size : int
        Bytes per buffer, the ``length`` of every descriptor.
    data_align : int
        Datapath width in bytes; buffers are aligned to it.

    Members
    -------
    base, cq_base : int
        Addresses of the descriptor and completion rings; ``size == cq_size``.
    """

    def __init__(self, mem: HostMemory, allocator: MemoryAllocator, size: int,
                 buffer_size: int, data_align: int = 8):
        _check_ring_size("size", size)
        _check_power_of_two("data_align", data_align)
        max_buffer = (1 << data.Layout.cast(RxDescriptor)["length"].width) - 1
        if not isinstance(buffer_size, int) or not 1 <= buffer_size <= max_buffer:
            raise ValueError(f"buffer_size must be from 1 to {max_buffer} bytes, "
                             f"not {buffer_size!r}")
        self.mem = mem
        self.size = size
        self.buffer_size = buffer_size
        self.data_align = data_align
        desc_bytes = _entry_bytes(RxDescriptor)
        self.base = allocator.alloc(size * desc_bytes, max(desc_bytes, data_align))
        mem.write(self.base, bytes(size * desc_bytes))
        self._cq = _PhaseRing(mem, allocator, RxCompletion, size, data_align)
        stride = _align_up(buffer_size, data_align)
        region = allocator.alloc(size * stride, data_align)
        self._free: deque[int] = deque(region + i * stride for i in range(size))
        self._outstanding: dict[int, int] = {}      # descriptor slot -> buffer address
        self._prod = 0

    @property
    def outstanding(self) -> int:
        """Buffers posted to the NIC and not yet reaped."""
        return len(self._outstanding)

    def post(self, n: int | None = None) -> int:
        """Post up to ``n`` free buffers (all free ones by default).

        Returns
        -------
        int
            The new producer index, for the queue's doorbell register.
        """
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ValueError(f"n must be a non-negative integer or None, not {n!r}")
        limit = len(self._free) if n is None else min(n, len(self._free))
        images = []
        while len(images) < limit:
            slot = (self._prod + len(images)) % self.size
            if slot in self._outstanding:   # completed out of order: wait for this one
                break
            addr = self._free.popleft()
            self._outstanding[slot] = addr
            images.append(_RX_DESCRIPTOR.encode(addr=addr, length=self.buffer_size))
        _write_entries(self.mem, self.base, self.size, self._prod, images)
        self._prod += len(images)
        return self.producer

    def reap(self, max_packets: int = 64) -> list[RxPacket]:
        """Up to ``max_packets`` received frames, in completion order; their buffers are freed
        for the next :meth:`post`.

        Raises
        ------
        RingCorruptionError
            A completion names a descriptor that is not outstanding, a length beyond its
            buffer, or an undefined code. Frames before it are consumed; it is not.
        """
        packets = []
        for c in self._cq.peek(max_packets):
            where = f"RX completion {self._cq.cons} (slot {self._cq.cons % self.size})"
            # Completions come in descriptor order: completion i is for descriptor slot i.
            slot = self._cq.cons % self.size
            addr = self._outstanding.get(slot)
            if addr is None:
                posted = sorted(self._outstanding)
                raise RingCorruptionError(
                    f"{where} names descriptor {slot}, which is not outstanding (outstanding: "
                    f"{posted[:8]}{'...' if len(posted) > 8 else ''}); disable the queue and "
                    f"set it up again")
            if c["length"] > self.buffer_size:
                raise RingCorruptionError(
                    f"{where} says {c['length']} bytes landed in a {self.buffer_size}-byte "
                    f"buffer; disable the queue and set it up again")
            try:
                hash_type, error = HashType(c["hash_type"]), ParseError(c["error"])
            except ValueError as exc:
                raise RingCorruptionError(f"{where}: {exc}; disable the queue and set it up "
                                          f"again") from None
            packets.append(RxPacket(
                data=self.mem.read(addr, c["length"]), length=c["length"], hash=c["hash"],
                hash_type=hash_type, queue=c["queue"], instance=c["instance"], rule=c["rule"],
                flags=c["flags"], error=error, generation=c["generation"],
                timestamp=c["timestamp"], desc_index=slot))
            del self._outstanding[slot]
            self._free.append(addr)
            self._cq.cons += 1
        return packets


# --- TX ------------------------------------------------------------------------------------

SLOT_BYTES = _entry_bytes(TxWorkItem)
_WORK_ITEM, _LENGTHS, _GATHER_ENTRY = _Codec(TxWorkItem), _Codec(TxLengths), _Codec(TxGatherEntry)
_LENGTH_FIELDS = [name for name, _ in data.Layout.cast(TxLengths)]
assert all(_entry_bytes(lay) == SLOT_BYTES for lay in (TxLengths, TxGatherEntry))


class _StagingArea:
    """A circular arena of DMA buffers, freed in allocation order (completions are in
    work-item order). An allocation never wraps: the tail of the arena is skipped instead."""

    def __init__(self, base: int, capacity: int, align: int):
        self.base, self.capacity, self.align = base, capacity, align
        self.head = self.tail = 0           # free-running byte offsets

    def alloc(self, n: int) -> int | None:
        n = _align_up(n, self.align)
        if self.head == self.tail:          # empty: restart at the front, nothing is skipped
            self.head = self.tail = -(-self.head // self.capacity) * self.capacity
        pos = self.head % self.capacity
        skip = self.capacity - pos if pos + n > self.capacity else 0
        if self.head - self.tail + skip + n > self.capacity:
            return None
        self.head += skip + n
        return self.base + (0 if skip else pos)

    def free_to(self, end: int) -> None:
        """Free everything allocated before the head was ``end``."""
        self.tail = max(self.tail, end)     # a restart may have moved past an older end


@dataclass
class _PendingWorkItem:
    header: int         # free-running slot index of the header
    slots: int
    cookie: int
    staging_end: int    # staging head after this work item's buffers


@dataclass(frozen=True)
class TxDone:
    """One :class:`~hetnic.protocol.TxCompletion`: a work item the NIC finished.

    Members
    -------
    cookie : int
        As echoed by the NIC.
    messages, bytes : int
        Frames and bytes sent.
    wqe_index : int
        Ring slot of the work item's header.
    """
    cookie: int
    status: TxStatus
    messages: int
    bytes: int
    wqe_index: int


class TxRing(_DoorbellRing):
    """Work-item ring (16-byte slots) and completion ring of one TX queue.

    The ``send`` methods copy messages into a staging area, write one work item and return
    the doorbell value (``TXQ_PROD``); :meth:`reap` frees slots and staging memory of finished
    work items. A request the ring cannot take now raises :class:`RingFullError` and one it can
    never take raises :class:`ValueError`; either way nothing is written.

    Parameters
    ----------
    mem : HostMemory
    allocator : MemoryAllocator
    size : int
        Work-item slots: a power of two, 2..32768.
    data_align : int
        Datapath width in bytes; message buffers are aligned to it and BATCH messages padded
        to it.
    completion_size : int
        Completion entries (default ``size``); at most this many work items are outstanding.
    staging_size : int
        Bytes of staging memory for message data (default 2 KiB per slot, at least 64 KiB).
    """

    def __init__(self, mem: HostMemory, allocator: MemoryAllocator, size: int,
                 data_align: int = 8, completion_size: int | None = None,
                 staging_size: int | None = None):
        _check_ring_size("size", size)
        completion_size = size if completion_size is None else completion_size
        _check_ring_size("completion_size", completion_size)
        _check_power_of_two("data_align", data_align)
        staging_size = max(size * 2048, 1 << 16) if staging_size is None else staging_size
        if not isinstance(staging_size, int) or staging_size < 1:
            raise ValueError(f"staging_size must be a positive byte count, not {staging_size!r}")
        self.mem = mem
        self.size = size
        self.data_align = data_align
        self.base = allocator.alloc(size * SLOT_BYTES, max(SLOT_BYTES, data_align))
        mem.write(self.base, bytes(size * SLOT_BYTES))
        self._cq = _PhaseRing(mem, allocator, TxCompletion, completion_size, data_align)
        staging_size = _align_up(staging_size, data_align)
        self._staging = _StagingArea(allocator.alloc(staging_size, data_align), staging_size,
                                     data_align)
        self._pending: deque[_PendingWorkItem] = deque()
        self._prod = 0          # free-running slot indices
        self._cons = 0
        self._items = 0         # work items ever posted: the default cookie

    @property
    def free_slots(self) -> int:
        return self.size - (self._prod - self._cons)

    @property
    def outstanding(self) -> int:
        """Work items posted and not yet reaped."""
        return len(self._pending)

    @property
    def next_cookie(self) -> int:
        """The cookie the next work item gets when none is given (a sequence number)."""
        return self._items & 0xFFFF_FFFF

    def send(self, message: bytes, cookie: int | None = None) -> int:
        """Send one frame as a SINGLE work item (the baseline path); returns the doorbell."""
        (message,) = self._check_messages([message], 1)
        cookie = self._check_cookie(cookie)
        (addr,) = self._reserve(1, [len(message)])
        self.mem.write(addr, message)
        # count is not used by SINGLE; 1 keeps the header valid for a check of every opcode
        return self._post([_WORK_ITEM.encode(opcode=TxOpcode.SINGLE, count=1,
                                             length=len(message), cookie=cookie, addr=addr)],
                          cookie)

    def send_batch(self, messages: Sequence[bytes], cookie: int | None = None) -> int:
        """Send ``messages`` as one BATCH work item: one staging buffer, each message padded to
        ``data_align``, lengths in ``ceil(n / 8)`` TxLengths slots. Returns the doorbell."""
        messages = self._check_messages(messages, TX_MAX_MESSAGES)
        cookie = self._check_cookie(cookie)
        padded = [m + bytes(_align_up(len(m), self.data_align) - len(m)) for m in messages]
        image = b"".join(padded)
        lengths = [len(m) for m in messages]
        groups = [lengths[k:k + len(_LENGTH_FIELDS)]
                  for k in range(0, len(lengths), len(_LENGTH_FIELDS))]
        (addr,) = self._reserve(1 + len(groups), [len(image)])
        self.mem.write(addr, image)
        header = _WORK_ITEM.encode(opcode=TxOpcode.BATCH, count=len(messages), cookie=cookie,
                                   addr=addr)
        return self._post([header, *(_LENGTHS.encode(**dict(zip(_LENGTH_FIELDS, group)))
                                     for group in groups)], cookie)

    def send_gather(self, messages: Sequence[bytes], cookie: int | None = None) -> int:
        """Send ``messages`` as one GATHER work item: each message in its own buffer, one
        TxGatherEntry slot each. Returns the doorbell."""
        messages = self._check_messages(messages, TX_MAX_MESSAGES)
        cookie = self._check_cookie(cookie)
        addrs = self._reserve(1 + len(messages), [len(m) for m in messages])
        for addr, m in zip(addrs, messages):
            self.mem.write(addr, m)
        header = _WORK_ITEM.encode(opcode=TxOpcode.GATHER, count=len(messages), cookie=cookie)
        return self._post([header, *(_GATHER_ENTRY.encode(addr=addr, length=len(m))
                                     for addr, m in zip(addrs, messages))], cookie)

    def raw_work_item(self, slots: Sequence[bytes]) -> int:
        """Post ``slots`` (16-byte images, header first) as one work item, unchecked, for
        tests of malformed work items. The NIC must consume exactly ``len(slots)`` slots for
        it, or the next completion raises :class:`RingCorruptionError`."""
        slots = [bytes(s) for s in slots]
        if not slots or any(len(s) != SLOT_BYTES for s in slots):
            raise ValueError(f"a work item is one or more {SLOT_BYTES}-byte slots, not "
                             f"{[len(s) for s in slots]} bytes")
        self._reserve(len(slots), [])
        return self._post(slots, _WORK_ITEM.decode(slots[0])["cookie"])

    def reap(self, max_items: int | None = None) -> list[TxDone]:
        """Completions of finished work items in order (all ready ones by default); frees
        their slots and staging memory.

        Raises
        ------
        RingCorruptionError
            A completion arrives with no work item outstanding, names another header slot
            than the oldest outstanding work item's, carries an undefined status, or (status
            OK) another cookie. Completions before it are consumed; it is not.
        """
        done = []
        for c in self._cq.peek(self._cq.size if max_items is None else max_items):
            where = f"TX completion {self._cq.cons} (slot {self._cq.cons % self._cq.size})"
            if not self._pending:
                raise RingCorruptionError(f"{where} arrived with no work item outstanding; "
                                          f"disable the queue and set it up again")
            item = self._pending[0]
            try:
                status = TxStatus(c["status"])
            except ValueError as exc:
                raise RingCorruptionError(f"{where}: {exc}; disable the queue and set it up "
                                          f"again") from None
            if c["wqe_index"] != item.header % self.size or (
                    status == TxStatus.OK and c["cookie"] != item.cookie):
                raise RingCorruptionError(
                    f"{where} is for slot {c['wqe_index']} cookie {c['cookie']:#x}, but the "
                    f"oldest work item is at slot {item.header % self.size} with cookie "
                    f"{item.cookie:#x}; disable the queue and set it up again")
            self._pending.popleft()
            self._cons += item.slots
            self._staging.free_to(item.staging_end)
            self._cq.cons += 1
            done.append(TxDone(cookie=c["cookie"], status=status, messages=c["messages"],
                               bytes=c["bytes"], wqe_index=c["wqe_index"]))
        return done

    # --- internals ------------------------------------------------------------------------

    def _check_messages(self, messages: Sequence[bytes], limit: int) -> list[bytes]:
        if isinstance(messages, (bytes, bytearray, memoryview)):
            raise TypeError("messages must be a sequence of byte strings, not one byte "
                            "string; use send() for a single frame")
        messages = list(messages)
        for i, m in enumerate(messages):
            if not isinstance(m, (bytes, bytearray, memoryview)):
                raise TypeError(f"message {i} must be bytes, not {type(m).__name__}")
        messages = [bytes(m) for m in messages]
        if not 1 <= len(messages) <= limit:
            raise ValueError(f"a work item carries 1 to {limit} messages, not "
                             f"{len(messages)}; split the batch")
        for i, m in enumerate(messages):
            if not 1 <= len(m) <= TX_MAX_FRAME:
                raise ValueError(f"message {i} is {len(m)} bytes; a frame is 1 to "
                                 f"{TX_MAX_FRAME} bytes")
        return messages

    def _check_cookie(self, cookie: int | None) -> int:
        if cookie is None:
            return self.next_cookie
        if not isinstance(cookie, int) or not 0 <= cookie < 1 << 32:
            raise ValueError(f"cookie must be a 32-bit unsigned integer, not {cookie!r}")
        return cookie

    def _reserve(self, slots: int, buffers: list[int]) -> list[int]:
        """Check that a work item of ``slots`` slots and staging ``buffers`` (byte counts)
        fits, and allocate the buffers; raises before anything is taken."""
        need = sum(_align_up(n, self.data_align) for n in buffers)
        if slots > self.size or need > self._staging.capacity:
            raise ValueError(f"a work item of {slots} slots and {need} staging bytes never "
                             f"fits a ring of {self.size} slots and {self._staging.capacity} "
                             f"staging bytes; send fewer messages per work item or build a "
                             f"larger TxRing")
        if slots > self.free_slots or len(self._pending) >= self._cq.size:
            raise RingFullError(f"the TX ring has {self.free_slots} free slots and "
                                f"{self._cq.size - len(self._pending)} free completion "
                                f"entries, the work item needs {slots} and 1; reap "
                                f"completions first")
        mark = self._staging.head, self._staging.tail
        addrs = [self._staging.alloc(n) for n in buffers]
        if None in addrs:
            self._staging.head, self._staging.tail = mark
            raise RingFullError(f"the TX staging area cannot take {need} more bytes now; "
                                f"reap completions first")
        return addrs

    def _post(self, images: list[bytes], cookie: int) -> int:
        _write_entries(self.mem, self.base, self.size, self._prod, images)
        self._pending.append(_PendingWorkItem(self._prod, len(images), cookie,
                                              self._staging.head))
        self._prod += len(images)
        self._items += 1
        return self.producer


# --- events --------------------------------------------------------------------------------

@dataclass(frozen=True)
class NicEvent:
    """One :class:`~hetnic.protocol.Event`. ``source`` is a queue number where the event
    concerns a queue; ``info`` depends on ``type`` (see :class:`~hetnic.protocol.EventType`)."""
    type: EventType
    source: int
    info: int
    timestamp: int


class EventRing:
    """An event queue the NIC writes and the host polls by phase bit.

    Parameters
    ----------
    mem : HostMemory
    allocator : MemoryAllocator
    size : int
        Entries: a power of two, 2..32768.
    """

    def __init__(self, mem: HostMemory, allocator: MemoryAllocator, size: int):
        _check_ring_size("size", size)
        self._ring = _PhaseRing(mem, allocator, Event, size, 1)
        self.base = self._ring.base
        self.size = size

    @property
    def consumer(self) -> int:
        """The consumer index modulo 2**16, for the queue's ``EQ_CONS`` register: the NIC
        writes no entry the host has not consumed, so write it after :meth:`reap`."""
        return self._ring.cons & DOORBELL_MASK

    def reap(self, max_events: int = 64) -> list[NicEvent]:
        """Up to ``max_events`` new events in order.

        Raises
        ------
        RingCorruptionError
            An event has an undefined type; it is not consumed.
        """
        events = []
        for e in self._ring.peek(max_events):
            try:
                kind = EventType(e["type"])
            except ValueError as exc:
                raise RingCorruptionError(f"event {self._ring.cons}: {exc}; disable the event "
                                          f"queue and set it up again") from None
            events.append(NicEvent(kind, e["source"], e["info"], e["timestamp"]))
            self._ring.cons += 1
        return events


# --- queue registers -----------------------------------------------------------------------

class QueueRing(Protocol):
    """What every ring a queue is set up with has (see ``_RING_ATTRIBUTE`` for the rest)."""
    base: int
    size: int


@dataclass(frozen=True)
class _QueueKind:
    prefix: str             # register name prefix
    ring: type              # the ring class a queue of this kind is set up with
    registers: tuple[str, ...]  # what is programmed, in order, between disable and enable


#: Rings and the register blocks that set them up. ``BASE`` and ``CQ_BASE`` stand for their
#: ``_LO``/``_HI`` register pairs.
_QUEUE_KINDS = {
    "tx": _QueueKind("TXQ", TxRing, ("BASE", "SIZE", "CQ_BASE", "CQ_SIZE", "PROD")),
    "rx": _QueueKind("RXQ", RxRing, ("BASE", "SIZE", "CQ_BASE", "PROD")),
    "event": _QueueKind("EQ", EventRing, ("BASE", "SIZE", "CONS")),
}
#: The ring attribute each register is programmed from.
_RING_ATTRIBUTE = {"BASE": "base", "SIZE": "size", "CQ_BASE": "cq_base", "CQ_SIZE": "cq_size",
                   "PROD": "producer", "CONS": "consumer"}


def queue_register_writes(regmap: RegisterMap, kind: str, index: int,
                          ring: QueueRing) -> list[tuple[int, int]]:
    """The register writes, in order, that set queue ``index`` up with ``ring``.

    Disables the queue, programs the rings' addresses and sizes and the ring's current
    producer (or, for an event queue, consumer) index, then enables it.

    Parameters
    ----------
    regmap : RegisterMap
    kind : str
        ``"tx"`` (a :class:`TxRing`, ``TXQ_*``), ``"rx"`` (a :class:`RxRing`, ``RXQ_*``) or
        ``"event"`` (an :class:`EventRing`, ``EQ_*``).
    index : int
        Queue number.
    ring : TxRing, RxRing or EventRing

    Returns
    -------
    list of (int, int)
        ``(address, value)`` pairs for the backend's register write.
    """
    if kind not in _QUEUE_KINDS:
        raise ValueError(f"kind must be one of {sorted(_QUEUE_KINDS)}, not {kind!r}")
    spec = _QUEUE_KINDS[kind]
    if not isinstance(ring, spec.ring):
        raise TypeError(f"a {kind} queue is set up with a {spec.ring.__name__}, "
                        f"not {type(ring).__name__}")
    try:
        ctrl = regmap[f"{spec.prefix}_CTRL"]
    except KeyError:
        raise NotImplementedError(f"the register table has no {spec.prefix}_* registers; "
                                  f"{kind} queues cannot be set up through registers "
                                  f"yet") from None
    n = regmap.count(ctrl)
    if not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"{kind} queue {index!r} does not exist: this build has {n} "
                         f"(build parameter {ctrl.count})")
    writes = [("CTRL", 0)]
    for name in spec.registers:
        value = getattr(ring, _RING_ATTRIBUTE[name])
        if name.endswith("BASE"):
            writes += [(f"{name}_LO", value & 0xFFFF_FFFF), (f"{name}_HI", value >> 32)]
        else:
            writes.append((name, value))
    writes.append(("CTRL", QUEUE_CTRL_ENABLE.encode(1)))
    return [(regmap.addr(f"{spec.prefix}_{name}", index), value) for name, value in writes]
