"""The register writes that set a queue up with its ring (:func:`queue_register_writes`).

The driver performs them through its backend; the rings themselves never touch registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..regs import QUEUE_CTRL_ENABLE, RegisterMap
from .event_ring import EventRing
from .rx_ring import RxRing
from .tx_ring import TxRing

__all__ = ["QueueRing", "queue_register_writes"]


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
    writes = [("CTRL", QUEUE_CTRL_ENABLE.encode(0))]
    for name in spec.registers:
        value = getattr(ring, _RING_ATTRIBUTE[name])
        if name.endswith("BASE"):
            writes += [(f"{name}_LO", value & 0xFFFF_FFFF), (f"{name}_HI", value >> 32)]
        else:
            writes.append((name, value))
    writes.append(("CTRL", QUEUE_CTRL_ENABLE.encode(1)))
    return [(regmap.addr(f"{spec.prefix}_{name}", index), value) for name, value in writes]
