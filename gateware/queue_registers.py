"""What the RX and TX queue register files share: the address decode of a per-queue window,
the ring checks applied when a queue is enabled, the doorbell check, and register words put
together from :class:`~hetnic.regs.Field`\\ s.

All of these are pure functions of Amaranth values (no state); the callers,
:class:`~.rx_queue_state.RxQueueFile` and :class:`~.tx_queues.TxQueueFile`, decide when they
are sampled.
"""

from functools import reduce
from operator import or_

from amaranth.hdl import Const, Signal, Value

from ..regs import (QUEUE_INDEX, QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_BAD_SIZE,
                    QUEUE_STATUS_DMA, QUEUE_STATUS_DOORBELL, Field)

__all__ = ["MIN_RING", "MAX_RING", "ENTRY_BYTES", "STATUS_BITS", "ring_size_ok",
           "ring_addr_ok", "doorbell_ok", "field_word", "QueueWindowDecode"]

#: Ring sizes an RX or TX queue (and its completion ring) accepts, in entries.
MIN_RING, MAX_RING = 2, 32768
#: Bytes of one ring entry: an RX descriptor or completion, a TX slot or completion.
ENTRY_BYTES = 16
#: Width of a queue's ``STATUS`` flops: up to its highest error bit.
STATUS_BITS = max(f.lsb + f.width for f in (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DOORBELL,
                                            QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_DMA))


def ring_size_ok(size):
    """``size`` (a 32-bit register value) is a power of two from :data:`MIN_RING` to
    :data:`MAX_RING`."""
    return (size >= MIN_RING) & (size <= MAX_RING) & ((size & (size - 1)) == 0)


def ring_addr_ok(base, size):
    """A ring of ``size`` 16-byte entries at ``base`` (64 bits) is 16-byte aligned and ends
    at or below ``2**64``."""
    return (base[:4] == 0) & (base + size * ENTRY_BYTES <= (1 << 64))


def doorbell_ok(new_prod, prod, cons, size):
    """A doorbell may move ``PROD`` from ``prod`` to ``new_prod``: it moves forward and posts
    at most ``size`` entries past ``cons``, ``prod - cons <= new_prod - cons <= size`` in
    the free-running index arithmetic (:data:`~hetnic.regs.QUEUE_INDEX` bits)."""
    bits = QUEUE_INDEX.width
    posted = (new_prod - cons)[:bits]
    return (posted <= size) & (posted >= (prod - cons)[:bits])


def field_word(*pairs: tuple[Field, object]) -> Value:
    """A register word with each ``(field, value)`` of ``pairs`` in its field's bits (the
    value truncated to the field's width) and 0 elsewhere; as wide as its highest field."""
    return reduce(or_, (Value.cast(value)[:field.width] << field.lsb
                        for field, value in pairs), Const(0, 1))


class QueueWindowDecode:
    """The decode of a bus address into a per-queue register window (``n`` queues of
    ``stride`` bytes, a power of two, from ``window``), as combinational signals added to
    ``m``.

    Attributes
    ----------
    in_window : Signal(1)
        The address is inside the window.
    queue : Signal(range(n))
        The addressed queue (meaningful while ``in_window``).
    word : Value
        The byte offset inside the queue's block, compared against the register table's
        offsets (:meth:`~hetnic.regs.RegisterMap.queue_window`).
    """
    def __init__(self, m, addr, window, stride, n):
        rel = Signal(len(addr), name="window_rel")
        self.in_window = Signal(name="in_window")
        self.queue = Signal(range(n), name="window_queue")
        m.d.comb += [rel.eq(addr - window),
                     self.in_window.eq((addr >= window) & (addr < window + n * stride)),
                     self.queue.eq(rel[stride.bit_length() - 1:])]
        self.word = rel[:stride.bit_length() - 1]

    def is_any(self, offsets):
        """The addressed register is one of ``offsets`` (byte offsets inside the block)."""
        return reduce(or_, (self.word == offset for offset in offsets))
