"""A NIC's queues in another process: the grant that hands them over and the queues rebuilt
from it over shared memory.

The NIC process opens the NIC with ``Nic.open("sim", shared=True)`` (host memory and the
doorbell page are :class:`~hetnic.host.shm.SharedSegment`\\ s) and calls
:meth:`Nic.export_queues <hetnic.host.nic.Nic.export_queues>`, which returns a picklable
:class:`QueueGrant`. Another process calls :meth:`QueueGrant.open` and gets a
:class:`QueueSet`: the same :class:`~hetnic.host.rx_ring.RxRing` and
:class:`~hetnic.host.tx_ring.TxRing` objects, moved with their state (ring addresses,
buffers, indices, outstanding work) and bound to the shared host memory. The process polls
its completion rings in memory and rings its doorbells by storing into the doorbell page
(:mod:`hetnic.host.doorbells`); it never calls into the NIC process, whose clock (its
``nic.run``, ``run_until_idle``, a TAP bridge's pump) moves the frames and services the
page.

>>> grant = nic.export_queues(rx=[2, 3], tx=[1])        # NIC process
>>> qs = grant.open()                                    # another process
>>> packets = qs.rx_queues[2].poll()
>>> qs.tx_queues[1].send_batch([p.data for p in packets])
"""

from __future__ import annotations

import io
import pickle
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from ..params import NicParams
from .control import NicError
from .doorbells import DoorbellLayout, DoorbellPage
from .ring import RingFullError
from .rx_ring import RxPacket, RxRing
from .shm import SharedSegment
from .tx_ring import TxDone, TxRing

__all__ = ["SharedNicInfo", "QueueGrant", "QueueSet", "RxQueueBase", "TxQueueBase",
           "PortRxQueue", "PortTxQueue", "detach_ring", "attach_ring", "export_queues"]

#: The persistent id that stands for host memory in a pickled ring.
_HOST_MEMORY = "hetnic-host-memory"
#: Sleeps of a TX send waiting for a free slot: from the first to the longest, doubling.
_WAIT_FIRST, _WAIT_LONGEST = 20e-6, 1e-3


@dataclass(frozen=True)
class SharedNicInfo:
    """What another process needs to reach a NIC opened with ``shared=True`` (picklable).

    Members
    -------
    memory : str
        Name of the host memory's :class:`~hetnic.host.shm.SharedSegment` (bus address ``a``
        is byte ``a`` of the segment).
    mem_size : int
        Bytes of host memory.
    doorbells : str
        Name of the doorbell page's segment.
    layout : DoorbellLayout
        Its slots.
    params : NicParams
        The NIC's build.
    """
    memory: str
    mem_size: int
    doorbells: str
    layout: DoorbellLayout
    params: NicParams


class _RingPickler(pickle.Pickler):
    def __init__(self, file, memory):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._memory = memory

    def persistent_id(self, obj):
        return _HOST_MEMORY if obj is self._memory else None


class _RingUnpickler(pickle.Unpickler):
    def __init__(self, file, memory):
        super().__init__(file)
        self._memory = memory

    def persistent_load(self, pid):
        if pid != _HOST_MEMORY:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in a queue grant")
        return self._memory


def detach_ring(ring: RxRing | TxRing) -> bytes:
    """``ring``'s state without its host memory (every reference to ``ring.mem`` left as a
    placeholder), for :func:`attach_ring` in another process."""
    out = io.BytesIO()
    _RingPickler(out, ring.mem).dump(ring)
    return out.getvalue()


def attach_ring(state: bytes, memory) -> RxRing | TxRing:
    """The ring :func:`detach_ring` gave ``state`` for, its host memory now ``memory`` (its
    completion ring reads entries written while it reads: :class:`~hetnic.host.ring.PhaseRing`)."""
    return _RingUnpickler(io.BytesIO(state), memory).load()


@dataclass(frozen=True)
class QueueGrant:
    """Queues of a shared NIC handed to another process (picklable); made by
    :meth:`Nic.export_queues <hetnic.host.nic.Nic.export_queues>`, used with :meth:`open`.

    A grant is opened by one process: two processes using the same rings corrupt them.

    Members
    -------
    shared : SharedNicInfo
    rx, tx : tuple of (int, bytes)
        Queue numbers and their detached rings (:func:`detach_ring`).
    tx_timeout : float
        Seconds a TX send waits for a free slot before it gives up.
    """
    shared: SharedNicInfo
    rx: tuple[tuple[int, bytes], ...]
    tx: tuple[tuple[int, bytes], ...]
    tx_timeout: float = 10.0

    @property
    def rx_queues(self) -> list[int]:
        return [q for q, _ in self.rx]

    @property
    def tx_queues(self) -> list[int]:
        return [q for q, _ in self.tx]

    def open(self) -> "QueueSet":
        """Attach the NIC's host memory and doorbell page and rebuild the granted queues."""
        return QueueSet(self)


def export_queues(nic, rx: Sequence[int], tx: Sequence[int], tx_timeout: float) -> QueueGrant:
    """What :meth:`Nic.export_queues <hetnic.host.nic.Nic.export_queues>` does (see there)
    once the NIC has checked its own state (packets held back for ordering): check the
    request, detach the rings into a grant, mark the queues exported and store their current
    doorbell values into the page."""
    if nic.shared is None:
        raise NicError("export_queues needs host memory other processes can map: open "
                       "the NIC with Nic.open('sim', shared=True)")
    rx, tx = list(rx), list(tx)
    for kind, queues, have in (("RX", rx, nic.rx_queues), ("TX", tx, nic.tx_queues)):
        for q in queues:
            if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q < len(have):
                raise NicError(f"{kind} queue must be from 0 to {len(have) - 1}, "
                               f"not {q!r}: the NIC has {len(have)} {kind} queues")
            if queues.count(q) > 1:
                raise NicError(f"{kind} queue {q} is listed twice")
            if have[q].exported:
                raise NicError(f"{kind} queue {q} was exported already; a queue is "
                               f"handed to one process")
    if not isinstance(tx_timeout, (int, float)) or not tx_timeout > 0:
        raise ValueError(f"tx_timeout must be a positive number of seconds, "
                         f"not {tx_timeout!r}")
    page, layout = nic.doorbell_page, nic.shared.layout
    for q in tx:
        nic.tx_queues[q].reap()        # what finished so far stays with this driver
    grant = QueueGrant(
        nic.shared,
        tuple((q, detach_ring(nic.rx_queues[q].ring)) for q in rx),
        tuple((q, detach_ring(nic.tx_queues[q].ring)) for q in tx),
        float(tx_timeout))
    for q in rx:
        nic.rx_queues[q].exported = True
        page.ring(layout.slot("rx", q), nic.rx_queues[q].ring.producer)
    for q in tx:
        nic.tx_queues[q].exported = True
        page.ring(layout.slot("tx", q), nic.tx_queues[q].ring.producer)
        # Its work in flight moved with the grant: this copy of the ring must not look
        # busy to whoever waits for outstanding TX work (TapBridge.busy and the like).
        nic.tx_queues[q].ring.hand_over()
    return grant


class RxQueueBase:
    """What an RX queue does wherever it runs: take completions off its ring, post their
    buffers again, ring the doorbell (:meth:`_ring_doorbell`, the subclass's: a register
    write in the NIC's process, a store into the doorbell page in another).

    Members
    -------
    index : int
        The queue's number on the NIC.
    ring : RxRing
    """

    def __init__(self, index: int, ring: RxRing):
        self.index = index
        self.ring = ring

    def _take(self, limit: int) -> list[RxPacket]:
        """Up to ``limit`` completed frames; their buffers posted again and rung."""
        ring = self.ring
        packets = ring.reap(limit)
        if packets:
            ring.post()
            self._ring_doorbell(ring.producer)
        return packets

    def ready(self) -> bool:
        """Whether a completion waits in the ring (one memory read)."""
        return self.ring.completion_ready()

    def _ring_doorbell(self, value: int) -> None:
        raise NotImplementedError


class TxQueueBase:
    """What a TX queue does wherever it runs: post work items, ring the doorbell, reap
    completions. Two hooks differ by where it runs: :meth:`_wait_for_room` (the ring is
    full: the NIC's own process runs the clock, another process sleeps while the NIC
    process's clock runs) and :meth:`_ring_doorbell`; :meth:`_check_usable` refuses a queue
    that was handed away.

    Members
    -------
    index : int
    ring : TxRing
    sent_items : int
        Work items posted.
    errors : int
        Completions with an error status.
    """

    def __init__(self, index: int, ring: TxRing, keep: int):
        self.index = index
        self.ring = ring
        self._done: deque[TxDone] = deque(maxlen=keep)
        self.sent_items = 0
        self.errors = 0

    def send(self, message: bytes) -> int:
        """Send one frame as one SINGLE work item (the baseline path); returns its cookie."""
        return self._post(lambda: self.ring.send(message))

    def send_batch(self, messages: Sequence[bytes]) -> int:
        """Send ``messages`` (1 to 64 frames) as one BATCH work item; returns its cookie."""
        return self._post(lambda: self.ring.send_batch(messages))

    def send_gather(self, messages: Sequence[bytes]) -> int:
        """Send ``messages`` as one GATHER work item (a buffer per message); its cookie."""
        return self._post(lambda: self.ring.send_gather(messages))

    def try_send_batch(self, messages: Sequence[bytes]) -> int | None:
        """:meth:`send_batch` that never waits: when the ring (or its staging memory) has no
        room even after reaping what finished, nothing is written and the result is None
        (the caller keeps the frames and tries again later); else the work item's cookie.

        Raises
        ------
        ValueError, TypeError
            No work item can carry ``messages``: none or more than a work item takes, a
            frame empty or longer than ``TX_MAX_FRAME``, not bytes, or more than the ring or
            its staging memory holds at all.
        RingFullError
            No room although nothing is outstanding (the ring's bookkeeping disagrees with
            itself); waiting would not help.
        """
        self._check_usable()
        ring = self.ring
        cookie = ring.next_cookie
        try:
            doorbell = ring.send_batch(messages)
        except RingFullError:
            if ring.outstanding == 0:
                raise
            self.reap()
            try:
                doorbell = ring.send_batch(messages)
            except RingFullError:
                if ring.outstanding == 0:
                    raise
                return None
        self._ring_doorbell(doorbell)
        self.sent_items += 1
        return cookie

    def reap(self) -> None:
        """Take finished work items off the completion ring (kept for :meth:`completions`)."""
        self._check_usable()
        for d in self.ring.reap():
            self.errors += d.status != 0
            self._done.append(d)

    def completions(self) -> list[TxDone]:
        """Work items finished since the last call (at most the last ``keep``)."""
        self.reap()
        done = list(self._done)
        self._done.clear()
        return done

    def _post(self, build: Callable[[], int]) -> int:
        self._check_usable()
        cookie = self.ring.next_cookie
        state = None
        while True:
            try:
                doorbell = build()
                break
            except RingFullError as exc:
                state = self._wait_for_room(exc, state)
        self._ring_doorbell(doorbell)
        self.sent_items += 1
        return cookie

    def _check_usable(self) -> None:
        """Raise when this queue may not be used here (default: it may)."""

    def _wait_for_room(self, full: RingFullError, state):
        """The ring was full (``full``): reap, wait, or raise (``full`` itself when waiting
        cannot help); ``state`` is what the previous call returned (None the first time)."""
        raise NotImplementedError

    def _ring_doorbell(self, value: int) -> None:
        raise NotImplementedError


class PortRxQueue(RxQueueBase):
    """A granted RX queue: poll its completions, post the buffers again, ring the doorbell
    page.

    Members
    -------
    index : int
        The queue's number on the NIC.
    ring : RxRing
    """

    def __init__(self, index: int, ring: RxRing, page: DoorbellPage):
        super().__init__(index, ring)
        self._page = page
        self._slot = page.layout.slot("rx", index)

    def poll(self, max_packets: int = 64) -> list[RxPacket]:
        """Up to ``max_packets`` received frames, oldest first; their buffers are posted
        again at once and the doorbell rung (a store into the page, no call). Packets of a
        flow a commit moved between queues are not held back here (no
        :mod:`~hetnic.host.ordering` across processes)."""
        if not isinstance(max_packets, int) or max_packets < 1:
            raise ValueError(f"max_packets must be a positive integer, not {max_packets!r}")
        return self._take(max_packets)

    def _ring_doorbell(self, value: int) -> None:
        self._page.ring(self._slot, value)


class PortTxQueue(TxQueueBase):
    """A granted TX queue: post work items, ring the doorbell page, reap completions.

    When the ring is full a send reaps completions and sleeps (20 us, doubling up to 1 ms)
    until the NIC process's clock has freed a slot, at most ``timeout`` seconds; then it
    raises :class:`~hetnic.host.control.NicError`.

    Members
    -------
    index : int
    ring : TxRing
    sent_items : int
        Work items posted.
    errors : int
        Completions with an error status.
    """

    def __init__(self, index: int, ring: TxRing, page: DoorbellPage, timeout: float,
                 keep: int = 4096):
        super().__init__(index, ring, keep)
        self.timeout = timeout
        self._page = page
        self._slot = page.layout.slot("tx", index)

    def _wait_for_room(self, full: RingFullError, state):
        if self.ring.outstanding == 0:
            raise full              # it cannot fit even in an empty ring's staging now
        self.reap()
        if self.ring.outstanding == 0:
            return state            # the reap emptied the ring: try again before waiting
        now = time.monotonic()
        deadline, wait = state if state is not None else (now + self.timeout, _WAIT_FIRST)
        if state is not None and now >= deadline:
            raise NicError(f"TX queue {self.index} did not finish a work item in "
                           f"{self.timeout:g} s; is the NIC process running its "
                           f"clock?") from None
        time.sleep(wait)
        return deadline, min(wait * 2, _WAIT_LONGEST)

    def _ring_doorbell(self, value: int) -> None:
        self._page.ring(self._slot, value)


class QueueSet:
    """The queues of a :class:`QueueGrant`, opened in this process.

    Members
    -------
    shared : SharedNicInfo
    memory : SharedSegment
        The NIC's host memory, attached.
    doorbells : DoorbellPage
        The NIC's doorbell page, attached.
    rx_queues : list of PortRxQueue or None
        As long as the NIC's RX queue count; ``None`` for a queue not granted.
    tx_queues : list of PortTxQueue or None
        The same for TX queues.
    """

    def __init__(self, grant: QueueGrant):
        if not isinstance(grant, QueueGrant):
            raise TypeError(f"a QueueSet opens a QueueGrant, not {grant!r}")
        info = grant.shared
        self.shared = info
        self.memory = SharedSegment.attach(info.memory)
        try:
            if self.memory.size < info.mem_size:
                raise NicError(f"shared segment {info.memory} has {self.memory.size} bytes, "
                               f"the NIC's host memory {info.mem_size}; it is not this "
                               f"NIC's memory")
            self.doorbells = DoorbellPage.attach(info.doorbells, info.layout)
        except BaseException:
            self.memory.close()
            raise
        layout = info.layout
        self.rx_queues: list[PortRxQueue | None] = [None] * layout.rx_queues
        self.tx_queues: list[PortTxQueue | None] = [None] * layout.tx_queues
        try:
            for q, state in grant.rx:
                self.rx_queues[q] = PortRxQueue(q, attach_ring(state, self.memory),
                                                self.doorbells)
            for q, state in grant.tx:
                self.tx_queues[q] = PortTxQueue(q, attach_ring(state, self.memory),
                                                self.doorbells, grant.tx_timeout)
        except BaseException:
            self.close()            # a ring that cannot be rebuilt: nothing stays mapped
            raise

    def close(self) -> None:
        """Detach the memory and the doorbell page; the queues are unusable after."""
        self.rx_queues = [None] * len(self.rx_queues)
        self.tx_queues = [None] * len(self.tx_queues)
        self.doorbells.close()
        self.memory.close()

    def __enter__(self) -> "QueueSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
