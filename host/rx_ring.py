"""The RX queue's rings on the host: descriptors with their buffers, and completions
(:class:`RxRing`), giving received frames as :class:`RxPacket` records.

See :mod:`hetnic.host.ring` for the memory images, phase bits and indices every ring shares.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from amaranth.lib import data

from ..protocol import HashType, MetaFlags, ParseError, RxCompletion, RxDescriptor
from .memory import HostMemory, MemoryAllocator, align_up, check_power_of_two
from .ring import (DoorbellRing, EntryCodec, PhaseRing, RingCorruptionError, check_ring_size,
                   entry_bytes, write_entries)

__all__ = ["SteeredFrame", "RxPacket", "RxRing"]

_FLAG_BITS = {name: field.offset for name, field in data.Layout.cast(MetaFlags)}
_RX_DESCRIPTOR = EntryCodec(RxDescriptor)


@dataclass(frozen=True)
class SteeredFrame:
    """A received frame and where the RX pipeline steered it: what every receive path
    reports (an :class:`RxPacket` from an RX ring, a board's tagged frame).

    Members
    -------
    data : bytes
        The frame (``length`` bytes).
    hash, hash_type : int, HashType
        The RSS hash and the input it was computed over.
    queue, instance, rule : int
        The RX queue, the stack instance and the classifier rule that decided.
    """
    data: bytes
    length: int
    hash: int
    hash_type: HashType
    queue: int
    instance: int
    rule: int


@dataclass(frozen=True)
class RxPacket(SteeredFrame):
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


class RxRing(DoorbellRing):
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
        check_ring_size("size", size)
        check_power_of_two("data_align", data_align)
        max_buffer = (1 << data.Layout.cast(RxDescriptor)["length"].width) - 1
        if not isinstance(buffer_size, int) or not 1 <= buffer_size <= max_buffer:
            raise ValueError(f"buffer_size must be from 1 to {max_buffer} bytes, "
                             f"not {buffer_size!r}")
        self.mem = mem
        self.size = size
        self.buffer_size = buffer_size
        self.data_align = data_align
        desc_bytes = entry_bytes(RxDescriptor)
        self.base = allocator.alloc(size * desc_bytes, max(desc_bytes, data_align))
        mem.write(self.base, bytes(size * desc_bytes))
        self._cq = PhaseRing(mem, allocator, RxCompletion, size, data_align)
        stride = align_up(buffer_size, data_align)
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
        write_entries(self.mem, self.base, self.size, self._prod, images)
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
