"""The doorbell page: a NIC's doorbell registers as a page of shared memory, like a doorbell
BAR, so that a process without the NIC can ring them.

Layout (defined here once; the simulation harness gets the slot -> register table from
:meth:`DoorbellLayout.register_table`, never the layout itself)
------------------------------------------------------------------------------------------
The page is :data:`PAGE_BYTES` bytes of 32-bit slots in the host's byte order (little-endian
on every host hetnic runs on), slot ``k`` at byte offset ``4 * k``:

=============================================  ==========================================
slots                                          register the slot rings
=============================================  ==========================================
``0 .. rx_queues - 1``                         ``RXQ_PROD[q]``  (slot ``q``)
``rx_queues .. rx_queues + tx_queues - 1``     ``TXQ_PROD[q]``  (slot ``rx_queues + q``)
then ``event_queues`` slots                    ``EQ_CONS[q]``   (slot ``rx_queues + tx_queues + q``)
=============================================  ==========================================

A slot holds the last doorbell value rung (the ring's 16-bit free-running index; the upper
16 bits are 0). Ringing is one aligned 32-bit store into the slot, made after the ring
entries it covers are in host memory (x86 keeps stores in order). The NIC side (the harness,
:meth:`hetnic.sim.hil.Harness.attach_doorbells`) scans the page while its clock runs and
turns every slot that changed since its last scan into one register write of the slot's
value: the newest index wins, so several rings between two scans cost one write, as with
a real doorbell register. A slot is written by the one process that owns its queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shm import SharedSegment, SharedSegmentError

__all__ = ["PAGE_BYTES", "SLOT_BYTES", "MAX_SLOTS", "DOORBELL_REGISTERS", "DoorbellLayout",
           "DoorbellPage"]

#: Bytes of the doorbell page, and of one slot.
PAGE_BYTES = 4096
SLOT_BYTES = 4
MAX_SLOTS = PAGE_BYTES // SLOT_BYTES
#: The slot groups in page order: queue kind -> the register each slot of the kind rings.
DOORBELL_REGISTERS = {"rx": "RXQ_PROD", "tx": "TXQ_PROD", "event": "EQ_CONS"}


@dataclass(frozen=True)
class DoorbellLayout:
    """Which slot of the page rings which queue's doorbell (see the module documentation).

    Members
    -------
    rx_queues, tx_queues, event_queues : int
        The NIC's queue counts.
    """
    rx_queues: int
    tx_queues: int
    event_queues: int

    def __post_init__(self):
        counts = (self.rx_queues, self.tx_queues, self.event_queues)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            raise ValueError(f"queue counts must be non-negative integers, not {counts}")
        if sum(counts) > MAX_SLOTS:
            raise ValueError(f"{sum(counts)} doorbells do not fit the {MAX_SLOTS} slots of a "
                             f"{PAGE_BYTES}-byte doorbell page")

    @property
    def slots(self) -> int:
        return self.rx_queues + self.tx_queues + self.event_queues

    def slot(self, kind: str, queue: int) -> int:
        """The slot of queue ``queue``'s doorbell; ``kind`` is ``"rx"``, ``"tx"`` or
        ``"event"``."""
        first = 0
        for k, count in (("rx", self.rx_queues), ("tx", self.tx_queues),
                         ("event", self.event_queues)):
            if k == kind:
                if (isinstance(queue, bool) or not isinstance(queue, int)
                        or not 0 <= queue < count):
                    raise ValueError(f"{kind} queue must be from 0 to {count - 1}, "
                                     f"not {queue!r}")
                return first + queue
            first += count
        raise ValueError(f"doorbell kind must be one of {', '.join(DOORBELL_REGISTERS)}, "
                         f"not {kind!r}")

    def register_table(self, regmap) -> list[int]:
        """The register address each slot rings, slot 0 first, from ``regmap``
        (:class:`hetnic.regs.RegisterMap` of the NIC's build)."""
        table = []
        for kind, count in (("rx", self.rx_queues), ("tx", self.tx_queues),
                            ("event", self.event_queues)):
            table += [regmap.addr(DOORBELL_REGISTERS[kind], q) for q in range(count)]
        return table


class DoorbellPage:
    """A doorbell page in a :class:`~hetnic.host.shm.SharedSegment`; build one with
    :meth:`create` (the NIC's side) or :meth:`attach` (a process that rings doorbells).

    Members
    -------
    layout : DoorbellLayout
    segment : SharedSegment
        The page's memory; ``segment.name`` is what :meth:`attach` takes.
    """

    def __init__(self, segment: SharedSegment, layout: DoorbellLayout):
        if segment.size < PAGE_BYTES:
            raise SharedSegmentError(f"shared segment {segment.name} has {segment.size} bytes, "
                              f"too few for a {PAGE_BYTES}-byte doorbell page")
        self.segment = segment
        self.layout = layout
        self._words = segment.buf[:PAGE_BYTES].cast("I")

    @classmethod
    def create(cls, layout: DoorbellLayout, *, prefix: str = "hetnic-db") -> "DoorbellPage":
        """A new zeroed page (its creator unlinks it on :meth:`close`)."""
        return cls(SharedSegment.create(PAGE_BYTES, prefix=prefix), layout)

    @classmethod
    def attach(cls, name: str, layout: DoorbellLayout) -> "DoorbellPage":
        """The page another process created, by its segment's name."""
        return cls(SharedSegment.attach(name), layout)

    @property
    def name(self) -> str:
        return self.segment.name

    @property
    def path(self) -> str:
        return self.segment.path

    @property
    def buf(self) -> memoryview:
        """The page's bytes (read-only use: a process polls it for a change)."""
        return self.segment.buf[:PAGE_BYTES]

    def ring(self, slot: int, value: int) -> None:
        """Store doorbell ``value`` in ``slot`` (one aligned 32-bit store)."""
        self._words[slot] = value

    def read(self, slot: int) -> int:
        """The value last stored in ``slot``."""
        return self._words[slot]

    def close(self) -> None:
        """Unmap the page (and unlink it, if this object created it)."""
        words, self._words = self._words, None
        if words is not None:
            words.release()
        self.segment.close()

    def __enter__(self) -> "DoorbellPage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
