"""An event queue's ring on the host (:class:`EventRing`), giving :class:`NicEvent`
records.

See :mod:`hetnic.host.ring` for the memory images, phase bits and indices every ring shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import Event, EventType
from .memory import HostMemory, MemoryAllocator
from .ring import DOORBELL_MASK, PhaseRing, RingCorruptionError, check_ring_size

__all__ = ["NicEvent", "EventRing"]


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
        check_ring_size("size", size)
        self._ring = PhaseRing(mem, allocator, Event, size, 1)
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
