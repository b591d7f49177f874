"""The host driver: one synchronous API over every NIC backend.

>>> with Nic.open("sim", width=64, rx_queues=8) as nic:
...     nic.rss.set_key(key)
...     nic.rules.add(FlowRule(ip_proto="udp", dst_port=53, action=Action(instance=1)))
...     generation = nic.commit()
...     nic.wire.send(frames)
...     nic.run_until_idle()
...     packets = nic.rx_queues[0].poll()

Backends (:data:`BACKENDS`) move register reads and writes, host memory, the wire and the
clock; everything else — rings, configuration, counters, events — is this module,
:mod:`hetnic.host.control` (identity, configuration, commit and counters, shared with the
board driver) and the rings (:mod:`hetnic.host.rx_ring`, :mod:`~hetnic.host.tx_ring`,
:mod:`~hetnic.host.event_ring`), the same code for every backend:

``"sim"``
    The compiled Verilator harness (:class:`hetnic.sim.backend.SimBackend`). Simulated time
    advances only in :meth:`Nic.run`, :meth:`Nic.run_until_idle`, register accesses (a few
    cycles each) and :meth:`Wire.send` when the wire's queue is full.
``"cocotb"``
    Inside a cocotb test, from a thread started with ``cocotb.task.bridge``
    (:class:`hetnic.sim.cocotb_backend.CocotbBackend`): the same driver over cocotbext-axi.
``"serial:DEVICE"``
    A board (:mod:`hetnic.boards`): registers over its serial bridge, frames over a network
    interface (``data=``). :meth:`Nic.open` returns a :class:`hetnic.host.board.BoardNic`,
    which has the configuration, commit and counters of this driver, receive queues fed
    from the frames' steering tags, and no DMA rings, events or clock (see that module).

What :meth:`Nic.open` sets up
-----------------------------
The driver imports no gateware: it reads the NIC's build from its identification registers
(``ID``, ``PARAMS0..2``, ``CAPS``; :meth:`hetnic.params.NicParams.from_identity`), keeps it
as :attr:`Nic.params` and sizes everything below from it. The RX queues it uses are the
build's, unless the backend says fewer (its ``rx_queues`` attribute: the ``"sim"`` backend
builds ``Nic.open("sim", rx_queues=N)`` with N rounded up, :func:`hetnic.params.hil_rx_queues`,
and uses N); :attr:`Nic.rx_queues` has those, the build's others are never enabled, and the
indirection table and :meth:`apply` may name only those. Every RX queue in use gets a
descriptor ring of ``rx_ring_size`` buffers of ``rx_buffer_size`` bytes, posted at once; every
TX queue a work-item ring of ``tx_ring_size`` slots; every event queue a ring of
``event_ring_size`` entries with its interrupt enabled. The RSS configuration starts as the
Microsoft default key, a RETA spreading over the RX queues in use (entry ``i`` -> queue
``i % len(rx_queues)``), no rules, and is committed once.

Queues in other processes
-------------------------
``Nic.open("sim", shared=True)`` puts host memory and a doorbell page in shared memory
(:mod:`hetnic.host.shm`, :mod:`hetnic.host.doorbells`); :attr:`Nic.shared` says how to
attach them. :meth:`Nic.export_queues` hands some RX and TX queues to another process as a
:class:`~hetnic.host.queue_port.QueueGrant`; from then on this driver does not touch them
(using one raises :class:`NicError`), and this process only runs the clock for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from amaranth.lib import data

from ..protocol import RxCompletion
from ..regs import EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, queue_eq_armed
from .control import NicControl, NicError, Rss, Rules, identify
from .ordering import GenerationOrder
from .event_ring import EventRing, NicEvent
from .memory import MemoryAllocator
from .queue_port import QueueGrant, RxQueueBase, SharedNicInfo, TxQueueBase, export_queues
from .queue_setup import queue_register_writes
from .ring import RingFullError
from .rx_ring import RxPacket, RxRing
from .tx_ring import TxDone, TxRing

if TYPE_CHECKING:
    from .board import BoardNic

__all__ = ["Nic", "NicError", "BACKENDS", "RxPacket", "TxDone", "NicEvent", "Rss", "Rules"]

_TIMESTAMP_BITS = data.Layout.cast(RxCompletion)["timestamp"].width
#: Backend names and where their class lives (imported on first use).
BACKENDS = {"sim": "hetnic.sim.backend:SimBackend",
            "cocotb": "hetnic.sim.cocotb_backend:CocotbBackend"}
#: Bus address where the driver starts allocating rings and buffers.
RING_BASE = 0x1000
#: Cycles a commit may take before :meth:`Nic.commit` gives up.
COMMIT_TIMEOUT = 1_000_000
#: Timestamps in completions are the low bits of the NIC's cycle counter (as many as the
#: RxCompletion layout's ``timestamp`` field holds: 26).
TIMESTAMP_MASK = (1 << _TIMESTAMP_BITS) - 1
#: ``EQ_CTRL`` of every event queue the driver runs: enabled, interrupt line on.
_EQ_CTRL_RUNNING = QUEUE_CTRL_ENABLE.encode(1) | EQ_CTRL_IRQ_ENABLE.encode(1)


def _backend_class(name: str):
    if not isinstance(name, str):
        raise ValueError(f"backend must be a name like 'sim', not {name!r}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} "
                         f"or 'serial:DEVICE'")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


# --- queues ----------------------------------------------------------------------------------

class RxQueue(RxQueueBase):
    """One RX queue: its ring in host memory and the doorbell register."""

    def __init__(self, nic: "Nic", index: int, ring: RxRing):
        super().__init__(index, ring)
        self._nic = nic
        self._prod_addr = nic.regmap.addr("RXQ_PROD", index)
        self.exported = False       # handed to another process (Nic.export_queues)

    def poll(self, max_packets: int = 64) -> list[RxPacket]:
        """Up to ``max_packets`` received frames, oldest first; their buffers are posted
        again at once. Does not advance simulated time.

        With ``ordered`` (the default, see :mod:`hetnic.host.ordering`) a packet of a flow
        that a commit moved here from another queue waits until that queue's consumer has
        polled the flow's older packets; the rest of this queue waits behind it."""
        if not isinstance(max_packets, int) or max_packets < 1:
            raise ValueError(f"max_packets must be a positive integer, not {max_packets!r}")
        if self.exported:
            _refuse_exported("RX", self.index)
        order = self._nic._order
        if order is None:
            return self._reap(max_packets)
        if order.empty:
            # The common case: nothing waits anywhere, so only a newer generation needs the
            # bookkeeping; the rest goes straight through.
            packets = self._reap(max_packets)
            newest = order.sweep_needed(packets)
            if newest is None:
                return packets
            order.take(self.index, packets)
            self._nic._sweep(newest)
            return order.deliver(self.index, max_packets)
        room = self.ring.size - len(order.stash[self.index])   # the stash stays bounded
        if room > 0:
            packets = self._reap(room)
            newest = order.sweep_needed(packets)
            order.take(self.index, packets)
            if newest is not None:
                self._nic._sweep(newest)
        return order.deliver(self.index, max_packets)

    def _reap(self, limit: int | None = None) -> list[RxPacket]:
        """Take completed frames off the ring, post their buffers again, ring the doorbell."""
        if self.exported:
            return []
        return self._take(self.ring.size if limit is None else limit)

    def _ring_doorbell(self, value: int) -> None:
        self._nic.backend.reg_write(self._prod_addr, value)

    def ready(self) -> bool:
        """Whether a frame is waiting: reaped but held back, or a completion in the ring (one
        memory read, no register access)."""
        if self.exported:
            _refuse_exported("RX", self.index)
        order = self._nic._order
        return bool(order and order.stash[self.index]) or super().ready()

    def arm(self, event_queue: int = 0) -> None:
        """Ask for one RX_COMPLETION (or DROP) event on ``event_queue`` at the next frame."""
        self._nic._arm("RXQ_EQ", self.index, event_queue)


class TxQueue(TxQueueBase):
    """One TX queue: work-item ring, staging memory and the doorbell register. A full ring
    runs the simulated clock until the NIC frees a slot, at most the NIC's ``tx_timeout``
    cycles."""

    def __init__(self, nic: "Nic", index: int, ring: TxRing, keep: int):
        super().__init__(index, ring, keep)
        self._nic = nic
        self._prod_addr = nic.regmap.addr("TXQ_PROD", index)
        self.exported = False       # handed to another process (Nic.export_queues)

    def _check_usable(self) -> None:
        if self.exported:
            _refuse_exported("TX", self.index)

    def _wait_for_room(self, full: RingFullError, waited: int | None) -> int:
        waited = waited or 0
        self.reap()
        if self.ring.free_slots and waited and self.ring.outstanding == 0:
            raise full
        if waited >= self._nic.tx_timeout:
            status = self._nic.backend.reg_read(self._nic.regmap.addr("TXQ_STATUS",
                                                                      self.index))
            raise NicError(f"TX queue {self.index} did not finish a work item in {waited} "
                           f"cycles; is the queue enabled (TXQ_STATUS {status:#x})?") from None
        self._nic._advance(256)
        return waited + 256

    def _ring_doorbell(self, value: int) -> None:
        self._nic.backend.reg_write(self._prod_addr, value)


def _refuse_exported(kind: str, index: int) -> None:
    raise NicError(f"{kind} queue {index} was exported to another process "
                   f"(Nic.export_queues); use it there, through its QueueSet")


class Wire:
    """The Ethernet side of the NIC: frames into ``rx_mac``, frames out of ``tx_mac``."""

    def __init__(self, nic: "Nic"):
        self._nic = nic
        self.sent = 0

    def send(self, frames: Iterable[bytes], errors: Iterable[bool] | None = None) -> int:
        """Queue ``frames`` for ``rx_mac`` (with optional MAC error flags, e.g. a bad FCS);
        returns how many. The wire's queue is bounded: when it is full the clock runs until
        it has room. Zero-length frames are refused."""
        frames = [bytes(f) for f in frames]
        errs = None if errors is None else [bool(e) for e in errors]
        if errs is not None and len(errs) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(errs)} error flags")
        for i, f in enumerate(frames):
            if not f:
                raise ValueError(f"frame {i} is empty; a frame has at least one byte")
        backend = self._nic.backend
        done = 0
        while done < len(frames):
            took = backend.wire_send(frames[done:], None if errs is None else errs[done:])
            done += took
            if done < len(frames):
                self._nic._advance(1024)
        self.sent += done
        return done

    def pending(self) -> int:
        """Frames queued on the wire and not yet taken by ``rx_mac``."""
        return self._nic.backend.wire_pending()

    def received(self) -> list[bytes]:
        """Frames that left ``tx_mac`` since the last call."""
        return [data for data, _ in self._nic.backend.wire_received()]


# --- the driver ------------------------------------------------------------------------------

class Nic(NicControl):
    """A hetnic NIC, opened with :meth:`open`. See the module documentation."""

    def __init__(self, backend, *, rx_ring_size: int = 256, rx_buffer_size: int = 2048,
                 tx_ring_size: int = 256, event_ring_size: int = 256, tx_keep: int = 4096,
                 tx_timeout: int = 1_000_000, ordered: bool = True):
        self._order: GenerationOrder | None = None
        params = identify(backend)
        if not (params.rx_queues and params.tx_queues and params.event_queues):
            raise NicError(f"the device on {backend.name} has no DMA queues (PARAMS2 reads "
                           f"{params.rx_queues} RX, {params.tx_queues} TX, "
                           f"{params.event_queues} event queues): it is not a NIC core; open "
                           f"a board with Nic.open('serial:DEVICE', data=...)")
        in_use = getattr(backend, "rx_queues", None)
        if in_use is None:
            in_use = params.rx_queues
        elif not 1 <= in_use <= params.rx_queues:
            raise NicError(f"the backend {backend.name} asks the driver to use {in_use} RX "
                           f"queues, but its device has {params.rx_queues}")
        super().__init__(backend, params, queues=in_use)
        #: How another process attaches this NIC's memory (``shared=True``), else None.
        self.shared: SharedNicInfo | None = getattr(backend, "shared", None)
        #: The doorbell page the backend services (``shared=True``), else None.
        self.doorbell_page = getattr(backend, "doorbell_page", None)
        self.tx_timeout = tx_timeout
        self._event_callbacks: list[Callable[[NicEvent], None]] = []

        align = params.data_width // 8
        mem = backend.memory
        self.allocator = MemoryAllocator(mem, RING_BASE, backend.mem_size - RING_BASE)
        self.wire = Wire(self)
        writes = []
        self.event_rings = []
        for q in range(params.event_queues):
            ring = EventRing(mem, self.allocator, event_ring_size)
            self.event_rings.append(ring)
            writes += queue_register_writes(self.regmap, "event", q, ring)
            writes.append((self.regmap.addr("EQ_CTRL", q), _EQ_CTRL_RUNNING))
        self.rx_queues: list[RxQueue] = []
        for q in range(in_use):
            ring = RxRing(mem, self.allocator, rx_ring_size, rx_buffer_size, align)
            ring.post()
            self.rx_queues.append(RxQueue(self, q, ring))
            writes += queue_register_writes(self.regmap, "rx", q, ring)
        self.tx_queues: list[TxQueue] = []
        for q in range(params.tx_queues):
            ring = TxRing(mem, self.allocator, tx_ring_size, align)
            self.tx_queues.append(TxQueue(self, q, ring, tx_keep))
            writes += queue_register_writes(self.regmap, "tx", q, ring)
        self._write(writes)
        self._start()
        if ordered:
            self._order = GenerationOrder(len(self.rx_queues), self.generation)

    # --- opening and closing -------------------------------------------------------------
    @classmethod
    def open(cls, backend: str = "sim", **params) -> "Nic | BoardNic":
        """Open a NIC on ``backend`` (see :data:`BACKENDS`).

        Driver parameters (the NIC core backends): ``rx_ring_size``, ``rx_buffer_size``,
        ``tx_ring_size``, ``event_ring_size``, ``tx_keep``, ``tx_timeout``, ``ordered``
        (default true: per-flow order across commits, :mod:`hetnic.host.ordering`). The rest
        go to the backend; for ``"sim"``: ``width`` (8..128), ``rx_queues`` (the queues in
        use; the harness is built with them rounded up, :func:`~hetnic.params.hil_rx_queues`),
        ``tx_queues``,
        ``event_queues``, ``n_rules``, ``reta_size``, ``mem_size``, ``trace`` (a ``.vcd`` or
        ``.fst`` file), ``ifg_bytes``, ``read_latency``, ``shared`` (host memory and a
        doorbell page in shared memory, for :meth:`export_queues`).

        ``"serial:DEVICE"`` opens a board and returns a
        :class:`~hetnic.host.board.BoardNic`; its parameters are those of
        :meth:`BoardNic.open <hetnic.host.board.BoardNic.open>` (``data=`` is required).
        """
        if isinstance(backend, str) and backend.startswith("serial:"):
            from .board import BoardNic
            return BoardNic.open(backend.removeprefix("serial:"), **params)
        driver_keys = ("rx_ring_size", "rx_buffer_size", "tx_ring_size", "event_ring_size",
                       "tx_keep", "tx_timeout", "ordered")
        driver = {k: params.pop(k) for k in driver_keys if k in params}
        for k in ("rx_ring_size", "tx_ring_size", "event_ring_size"):
            v = driver.get(k, 2)
            if not isinstance(v, int) or v < 2 or v > 1 << 15 or v & (v - 1):
                raise ValueError(f"{k} must be a power of two from 2 to 32768, not {v!r}")
        buf = driver.get("rx_buffer_size", 2048)
        if not isinstance(buf, int) or not 64 <= buf <= 65535:
            raise ValueError(f"rx_buffer_size must be from 64 to 65535 bytes, not {buf!r}")
        klass = _backend_class(backend)
        if params.get("shared") and backend != "sim":
            raise ValueError(f"shared=True needs the 'sim' backend (its harness services the "
                             f"doorbell page), not {backend!r}")
        need = _memory_needed(params, driver)
        b = klass(min_memory=need, **params)
        try:
            return cls(b, **driver)
        except BaseException:
            b.close()
            raise

    # --- configuration -------------------------------------------------------------------
    def _commit_waiter(self) -> Iterator[None]:
        for _ in range(0, COMMIT_TIMEOUT, 64):
            self._advance(64)
            yield
        raise NicError(f"the commit did not apply within {COMMIT_TIMEOUT} cycles")

    def _hash_changed(self, generation: int) -> None:
        if self._order is not None:
            self._order.hash_changed(generation)

    def _sweep(self, newest: int) -> None:
        """Reap every RX queue into its stash until a whole pass finds no generation newer
        than ``newest``: then every older packet is stashed (see
        :mod:`hetnic.host.ordering`)."""
        order = self._order
        while True:
            order.swept = newest        # a pass started after ``newest`` became visible
            found = None
            for q in self.rx_queues:
                if q.exported:
                    continue
                packets = q._reap()
                newer = order.sweep_needed(packets)
                order.take(q.index, packets)
                if newer is not None and (found is None or order.is_older(found, newer)):
                    found = newer
            if found is None:
                return
            newest = found

    def _arm(self, reg: str, queue: int, event_queue: int) -> None:
        n = self.params.event_queues
        if not isinstance(event_queue, int) or not 0 <= event_queue < n:
            raise ValueError(f"event queue must be from 0 to {n - 1}, not {event_queue!r}")
        self.backend.reg_write(self.regmap.addr(reg, queue), queue_eq_armed(event_queue))

    # --- time ----------------------------------------------------------------------------
    def run(self, cycles: int) -> None:
        """Advance the NIC ``cycles`` clock cycles, then reap TX completions and hand new
        events to the :meth:`on_event` callbacks."""
        if not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        self.backend.run(cycles)
        self._service()

    def run_until_idle(self, max_cycles: int = 10_000_000, quiet: int = 512) -> int:
        """Run until the wire is empty and nothing has moved on any bus for ``quiet``
        cycles (or ``max_cycles`` passed); returns the cycles run."""
        ran = self.backend.run_until_idle(quiet, max_cycles)
        self._service()
        return ran

    def now(self) -> int:
        """The NIC's cycle count since reset; completion timestamps are the low 26 bits of the
        core's own counter, which counts the same cycles (give or take one at reset)."""
        return self.backend.cycle

    def age(self, packet: RxPacket, now: int | None = None) -> int:
        """Cycles from ``packet``'s completion timestamp until ``now`` (default: the current
        cycle; pass :meth:`now` once for a whole batch), mod 2**26. The timestamp is taken when
        the frame's last beat reaches the RX queues, after the RX pipeline (a few cycles after
        the frame left the wire)."""
        return ((self.now() if now is None else now) - packet.timestamp) & TIMESTAMP_MASK

    def _advance(self, cycles: int) -> None:
        self.backend.run(cycles)

    def _service(self) -> None:
        for q in self.tx_queues:
            if q.ring.outstanding and not q.exported:
                q.reap()
        if self._event_callbacks:
            for event in self.events():
                for cb in self._event_callbacks:
                    cb(event)

    # --- queues in other processes --------------------------------------------------------
    def export_queues(self, rx: Sequence[int] = (), tx: Sequence[int] = (), *,
                      tx_timeout: float = 10.0) -> QueueGrant:
        """Hand RX queues ``rx`` and TX queues ``tx`` to another process.

        Returns a picklable :class:`~hetnic.host.queue_port.QueueGrant`; the other process
        calls its :meth:`~hetnic.host.queue_port.QueueGrant.open`. The rings move with their
        state; this driver no longer touches them (``rx_queues[q].poll()`` and the like raise
        :class:`NicError`), :meth:`run` no longer reaps them, and per-flow ordering across
        commits (:mod:`hetnic.host.ordering`) covers only the queues this process keeps.
        The other process needs this one to run the clock. ``tx_timeout`` is how long (in
        seconds) its sends wait for a free TX slot.

        Raises
        ------
        NicError
            The NIC was not opened with ``shared=True``, a queue it does not have, a queue
            listed twice, exported already, or with packets this driver holds back for
            ordering.
        ValueError
            ``tx_timeout`` is not a positive number.
        """
        order = self._order
        if order is not None and self.shared is not None:
            for q in rx:
                if isinstance(q, int) and 0 <= q < len(order.stash) and order.stash[q]:
                    raise NicError(f"RX queue {q} has {len(order.stash[q])} packets held back "
                                   f"for ordering; poll it empty before exporting it")
        return export_queues(self, rx, tx, tx_timeout)

    # --- events and counters -------------------------------------------------------------
    def events(self, queue: int | None = None) -> Iterator[NicEvent]:
        """New events from event queue ``queue``, or from every event queue, queue 0 first
        (consumed as they are read)."""
        if queue is not None and not (isinstance(queue, int)
                                      and 0 <= queue < len(self.event_rings)):
            raise ValueError(f"event queue must be from 0 to {len(self.event_rings) - 1}, "
                             f"not {queue!r}")
        for q, ring in enumerate(self.event_rings):
            if queue is not None and q != queue:
                continue
            while True:
                batch = ring.reap(64)
                if not batch:
                    break
                self.backend.reg_write(self.regmap.addr("EQ_CONS", q), ring.consumer)
                yield from batch

    def on_event(self, callback: Callable[[NicEvent], None]) -> None:
        """Call ``callback(event)`` for every new event after each :meth:`run`."""
        self._event_callbacks.append(callback)

    def irq(self) -> int:
        """Interrupt lines that went high since the last call (bit ``q``: event queue q)."""
        return self.backend.irq()


def _memory_needed(params: dict, driver: dict) -> int:
    """Host memory the driver allocates for these parameters (an upper bound; RX rings only
    for the ``rx_queues`` in use)."""
    rx = params.get("rx_queues", 8)
    tx = params.get("tx_queues", 4)
    eq = params.get("event_queues", 4)
    if not all(isinstance(v, int) for v in (rx, tx, eq)):
        return 0                    # the backend reports the bad parameter
    rx_ring = driver.get("rx_ring_size", 256)
    tx_ring = driver.get("tx_ring_size", 256)
    buf = driver.get("rx_buffer_size", 2048)
    if not isinstance(buf, int):
        return 0
    per_rx = rx_ring * (32 + buf + 128)
    per_tx = tx_ring * 32 + max(tx_ring * 2048, 1 << 16) + 256
    per_eq = driver.get("event_ring_size", 256) * 16 + 64
    return RING_BASE + rx * per_rx + tx * per_tx + eq * per_eq + (1 << 16)
