"""The TX queue's rings on the host: 16-byte work-item slots, the staging memory their
messages are copied to, and completions (:class:`TxRing`, :class:`TxDone`).

See :mod:`hetnic.host.ring` for the memory images, phase bits and indices every ring shares.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

from amaranth.lib import data

from ..protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, TxCompletion, TxGatherEntry, TxLengths,
                        TxOpcode, TxStatus, TxWorkItem)
from .memory import HostMemory, MemoryAllocator, align_up, check_power_of_two
from .ring import (DoorbellRing, EntryCodec, PhaseRing, RingCorruptionError, RingFullError,
                   check_ring_size, entry_bytes, write_entries)

__all__ = ["SLOT_BYTES", "TxDone", "TxRing"]

SLOT_BYTES = entry_bytes(TxWorkItem)
_WORK_ITEM, _LENGTHS, _GATHER_ENTRY = EntryCodec(TxWorkItem), EntryCodec(TxLengths), EntryCodec(TxGatherEntry)
_LENGTH_FIELDS = [name for name, _ in data.Layout.cast(TxLengths)]
assert all(entry_bytes(lay) == SLOT_BYTES for lay in (TxLengths, TxGatherEntry))


class _StagingArea:
    """A circular arena of DMA buffers, freed in allocation order (completions are in
    work-item order). An allocation never wraps: the tail of the arena is skipped instead."""

    def __init__(self, base: int, capacity: int, align: int):
        self.base, self.capacity, self.align = base, capacity, align
        self.head = self.tail = 0           # free-running byte offsets

    def alloc(self, n: int) -> int | None:
        n = align_up(n, self.align)
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


class TxRing(DoorbellRing):
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
        check_ring_size("size", size)
        completion_size = size if completion_size is None else completion_size
        check_ring_size("completion_size", completion_size)
        check_power_of_two("data_align", data_align)
        staging_size = max(size * 2048, 1 << 16) if staging_size is None else staging_size
        if not isinstance(staging_size, int) or staging_size < 1:
            raise ValueError(f"staging_size must be a positive byte count, not {staging_size!r}")
        self.mem = mem
        self.size = size
        self.data_align = data_align
        self.base = allocator.alloc(size * SLOT_BYTES, max(SLOT_BYTES, data_align))
        mem.write(self.base, bytes(size * SLOT_BYTES))
        self._cq = PhaseRing(mem, allocator, TxCompletion, completion_size, data_align)
        staging_size = align_up(staging_size, data_align)
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

    def hand_over(self) -> int:
        """Forget the work items in flight: a copy of this ring (its state pickled before
        this call) took them to another process, which reaps them there
        (:meth:`Nic.export_queues <hetnic.host.nic.Nic.export_queues>`). This copy no longer
        looks busy (:attr:`outstanding` is 0) and must not be used to post again. Returns
        how many were forgotten."""
        n = len(self._pending)
        self._pending.clear()
        return n

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
        padded = [m + bytes(align_up(len(m), self.data_align) - len(m)) for m in messages]
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
        need = sum(align_up(n, self.data_align) for n in buffers)
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
        write_entries(self.mem, self.base, self.size, self._prod, images)
        self._pending.append(_PendingWorkItem(self._prod, len(images), cookie,
                                              self._staging.head))
        self._prod += len(images)
        self._items += 1
        return self.producer
