"""Links: what a stack's frames travel over — another stack, a TAP device, or a NIC's queues.

A :class:`Link` is the seam between the sans-I/O stack (:mod:`hetnic.host.stack`) and the
I/O around it: the runners (:mod:`hetnic.host.stack_runner`, :mod:`hetnic.host.streams`)
move frames from ``link.receive()`` into ``stack.receive()`` and from ``stack.poll()`` into
``link.send()``, and wait on ``link.fileno()`` when it has one.

* :class:`PairLink` — two in-memory ends (:meth:`PairLink.pair`) that wire two stacks
  directly, optionally through a :class:`~hetnic.host.faults.FaultInjector` per direction;
* :class:`TapLink` — a stack straight on a :class:`~hetnic.host.tap.TapDevice`, no NIC;
* :class:`NicQueueLink` — a stack instance on some RX queues and one TX queue of a
  :class:`~hetnic.host.nic.Nic` (the simulated NIC's clock is run by whoever owns its wire,
  e.g. :class:`~hetnic.host.tap_bridge.TapBridge`);
* :class:`PacketLink` — an ``AF_PACKET`` socket on a kernel interface, one EtherType (the
  kernel's side of a TAP for a protocol with no IP, e.g. NCP).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import HetnicError
from ..protocol import TX_MAX_FRAME
from .faults import FaultInjector
from .netns import in_netns

if TYPE_CHECKING:
    from .nic import Nic
    from .tap import TapDevice

__all__ = ["Link", "LinkError", "PairLink", "TapLink", "NicQueueLink", "PacketLink"]

#: Frames in one TX BATCH work item (the work item's limit).
_BATCH = 64


class LinkError(HetnicError, ValueError):
    """A link built with bad arguments (one line)."""


class Link:
    """What a stack runner needs from the medium under a stack.

    Methods
    -------
    send(frames: list[bytes]) -> None
        Transmit ``frames`` (Ethernet II, no FCS), in order. Never blocks for long; a medium
        that cannot take a frame drops it and counts it.
    receive(max_frames: int = 64) -> list[bytes]
        Up to ``max_frames`` frames that arrived, oldest first; ``[]`` when none (never
        blocks).
    fileno() -> int | None
        A descriptor that becomes readable when frames arrive (for ``select`` and
        ``loop.add_reader``), or None: the runner then polls :meth:`receive` at a short
        interval.
    service() -> None
        Housekeeping the runner calls once per loop turn (reap TX completions, release
        held-back frames); cheap when there is nothing to do.
    next_deadline() -> float | None
        When :meth:`service`/:meth:`receive` next has timed work (held-back frames of a
        fault injector), on the runner's clock; None when nothing is timed.

    A link in the same process with no descriptor may also have an ``on_arrival`` attribute
    (``Callable[[], None] | None``) that it calls when frames arrive; a runner that sets it
    need not poll the link (:class:`PairLink` has one).
    """

    frames_in: int = 0
    frames_out: int = 0

    def send(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def receive(self, max_frames: int = 64) -> list[bytes]:
        raise NotImplementedError

    def fileno(self) -> int | None:
        return None

    def service(self) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class PairLink(Link):
    """One end of an in-memory wire; :meth:`pair` makes both ends.

    Frames sent on one end are received, in order, on the other, through that direction's
    fault injector if there is one. ``fileno()`` is None: the pair lives in one process and
    the runner finds its frames by polling.

    Members
    -------
    faults : FaultInjector | None
        Applied to the frames this end sends.
    """

    def __init__(self, faults: FaultInjector | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._inbox: deque[bytes] = deque()
        self.peer: PairLink | None = None
        self.on_arrival: Callable[[], None] | None = None
        self.faults = faults
        self._clock = clock
        self.frames_in = self.frames_out = 0

    @classmethod
    def pair(cls, faults_ab: FaultInjector | None = None,
             faults_ba: FaultInjector | None = None, *,
             clock: Callable[[], float] = time.monotonic) -> tuple["PairLink", "PairLink"]:
        """Two connected ends ``(a, b)``: ``a.send`` reaches ``b.receive`` through
        ``faults_ab``, and ``b.send`` reaches ``a.receive`` through ``faults_ba``.
        ``clock`` times the injectors' held-back frames."""
        a, b = cls(faults_ab, clock), cls(faults_ba, clock)
        a.peer, b.peer = b, a
        return a, b

    def send(self, frames: list[bytes]) -> None:
        if self.faults is not None:
            frames = self.faults.process(list(frames), self._clock())
        self.frames_out += len(frames)
        peer = self.peer
        peer._inbox.extend(frames)
        if frames and peer.on_arrival is not None:
            peer.on_arrival()

    def receive(self, max_frames: int = 64) -> list[bytes]:
        peer_faults = self.peer.faults
        if peer_faults is not None and peer_faults.held:
            self._inbox.extend(peer_faults.due(self._clock()))
        inbox = self._inbox
        n = min(max_frames, len(inbox))
        if n == len(inbox):
            frames = list(inbox)
            inbox.clear()
        else:
            frames = [inbox.popleft() for _ in range(n)]
        self.frames_in += len(frames)
        return frames

    @property
    def pending(self) -> int:
        """Frames waiting to be received on this end."""
        return len(self._inbox)

    def next_deadline(self) -> float | None:
        peer_faults = self.peer.faults
        return None if peer_faults is None else peer_faults.next_deadline()


class TapLink(Link):
    """A stack straight on a TAP device (no NIC), optionally with fault injectors.

    Parameters
    ----------
    tap : TapDevice
        The open device; :meth:`close` closes it.
    faults_in, faults_out : FaultInjector | None
        Applied to frames from the kernel and to frames to the kernel.
    """

    def __init__(self, tap: "TapDevice", *, faults_in: FaultInjector | None = None,
                 faults_out: FaultInjector | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tap = tap
        self.faults_in, self.faults_out = faults_in, faults_out
        self._clock = clock
        self.frames_in = self.frames_out = 0

    def send(self, frames: list[bytes]) -> None:
        if self.faults_out is not None:
            frames = self.faults_out.process(list(frames), self._clock())
        self._write(frames)

    def _write(self, frames: list[bytes]) -> None:
        write = self.tap.write
        for frame in frames:
            write(frame)
        self.frames_out += len(frames)

    def receive(self, max_frames: int = 64) -> list[bytes]:
        frames = self.tap.read_frames(max_frames)
        if self.faults_in is not None:
            frames = self.faults_in.process(frames, self._clock())
        self.frames_in += len(frames)
        return frames

    def fileno(self) -> int | None:
        return self.tap.fileno()

    def service(self) -> None:
        if self.faults_out is not None and self.faults_out.held:
            self._write(self.faults_out.due(self._clock()))

    def next_deadline(self) -> float | None:
        times = [f.next_deadline() for f in (self.faults_in, self.faults_out) if f is not None]
        times = [t for t in times if t is not None]
        return min(times, default=None)

    def close(self) -> None:
        self.tap.close()


class NicQueueLink(Link):
    """A stack instance on a :class:`~hetnic.host.nic.Nic`: frames from its RX queues, frames
    to one of its TX queues.

    Parameters
    ----------
    nic : Nic or BoardNic or QueueSet
        The open NIC: a NIC core's DMA queues (``"sim"``, ``"cocotb"``) or a board's tagged
        receive queues and data link (``"serial:DEVICE"``); or, in another process, the
        queues granted to it (:class:`~hetnic.host.queue_port.QueueSet`).
    rx_queues : Sequence[int]
        The RX queues this instance owns; :meth:`receive` polls them round-robin.
    tx_queue : int
        The TX queue it sends on: :meth:`send` posts BATCH work items of at most
        ``tx_batch`` frames.

    tx_batch : int
        Frames per BATCH work item at most (1 to 64, default 64). The simulated NIC serves
        RX DMA between TX work items, so long items delay the RX path under TX load.
    tx_backlog : int, optional
        Without it (the default) :meth:`send` posts at once and, when the TX ring is full,
        waits for room (in the NIC's own process the driver runs the clock meanwhile; a
        granted queue sleeps until the NIC process has freed a slot). With it, :meth:`send`
        never waits: frames the ring cannot take now wait in a software backlog of at most
        ``tx_backlog`` frames, posted in order as room frees (on every :meth:`send` and
        :meth:`service`); a frame beyond the bound is dropped and counted
        (``tx_backlog_drops``), as a NIC driver's full queue drops (TCP recovers). An
        instance in its own process uses this, so that a full TX ring never stops it from
        polling its RX queues.

    Notes
    -----
    The link does not run the NIC's clock (several instances share one NIC): the owner of
    the NIC's wire does, e.g. :meth:`hetnic.host.tap_bridge.TapBridge.pump`. Without
    ``tx_backlog``, posting to a full TX ring does advance the clock (the driver waits for
    a free slot).

    Members
    -------
    tx_errors : int
        TX work items that completed with an error status.
    tx_posts : int
        TX work items posted.
    tx_backlog_drops : int
        Frames dropped because the backlog was full (``tx_backlog`` only).
    tx_bad_frames : int
        Frames dropped because no work item can carry them: empty, or longer than
        ``TX_MAX_FRAME`` (``tx_backlog`` only; without it the post raises ``ValueError``).
    """

    #: How soon :meth:`next_deadline` asks for a :meth:`service` while frames wait in the
    #: backlog (seconds).
    BACKLOG_RETRY = 0.0002

    def __init__(self, nic: "Nic", rx_queues: Sequence[int], tx_queue: int, *,
                 tx_backlog: int | None = None, tx_batch: int = _BATCH):
        n_rx, n_tx = len(nic.rx_queues), len(nic.tx_queues)
        rx = tuple(rx_queues)
        if not rx:
            raise LinkError("a NIC queue link needs at least one RX queue")
        for q in rx:
            if not isinstance(q, int) or not 0 <= q < n_rx:
                raise LinkError(f"RX queue must be from 0 to {n_rx - 1}, not {q!r}")
        if len(set(rx)) != len(rx):
            raise LinkError(f"RX queues listed twice: {list(rx)}")
        if not isinstance(tx_queue, int) or not 0 <= tx_queue < n_tx:
            raise LinkError(f"TX queue must be from 0 to {n_tx - 1}, not {tx_queue!r}")
        self.nic = nic
        self.rx_queues = rx
        self.tx_queue = tx_queue
        self._rx = [nic.rx_queues[q] for q in rx]
        self._tx = nic.tx_queues[tx_queue]
        # A QueueSet (hetnic.host.queue_port) lists the queues it was not granted as None.
        for kind, q, entry in [*(("RX", q, e) for q, e in zip(rx, self._rx)),
                               ("TX", tx_queue, self._tx)]:
            if entry is None:
                raise LinkError(f"{kind} queue {q} is not among the queues granted to this "
                                f"process")
        if tx_backlog is not None and (isinstance(tx_backlog, bool)
                                       or not isinstance(tx_backlog, int) or tx_backlog < 1):
            raise LinkError(f"tx_backlog must be a positive number of frames or None, "
                            f"not {tx_backlog!r}")
        if tx_backlog is not None and not hasattr(self._tx, "try_send_batch"):
            raise LinkError("tx_backlog needs a TX queue with a ring (a NIC core's DMA "
                            "queue or a granted one)")
        if isinstance(tx_batch, bool) or not isinstance(tx_batch, int) \
                or not 1 <= tx_batch <= _BATCH:
            raise LinkError(f"tx_batch must be from 1 to {_BATCH} frames, not {tx_batch!r}")
        self.tx_batch = tx_batch
        self.tx_backlog = tx_backlog
        self._backlog: deque[bytes] = deque()
        self._next = 0
        self.frames_in = self.frames_out = 0
        self.tx_errors = 0
        self.tx_posts = 0
        self.tx_backlog_drops = 0
        self.tx_bad_frames = 0

    @property
    def backlog(self) -> int:
        """Frames waiting in the software backlog for room in the TX ring."""
        return len(self._backlog)

    def send(self, frames: list[bytes]) -> None:
        if self.tx_backlog is not None:
            # Frames the ring would refuse are dropped here, counted, before they can wedge
            # the backlog (every later post would raise on them).
            good = [f for f in frames if 1 <= len(f) <= TX_MAX_FRAME]
            self.tx_bad_frames += len(frames) - len(good)
            frames = good
        self.frames_out += len(frames)
        if self.tx_backlog is None:
            post = self._tx.send_batch
            n = self.tx_batch
            for i in range(0, len(frames), n):
                post(frames[i:i + n])
            self.tx_posts += (len(frames) + n - 1) // n
            return
        backlog = self._backlog
        if backlog:
            self._flush()                       # older frames first
        if not backlog:
            frames = self._post_now(frames)
        room = self.tx_backlog - len(backlog)
        if len(frames) > room:
            self.tx_backlog_drops += len(frames) - room
            frames = frames[:room]
        backlog.extend(frames)

    def _post_now(self, frames: list[bytes]) -> list[bytes]:
        """Post ``frames`` in batches while the ring takes them; the frames it did not."""
        post = self._tx.try_send_batch
        n = self.tx_batch
        for i in range(0, len(frames), n):
            if post(frames[i:i + n]) is None:
                return frames[i:]
            self.tx_posts += 1
        return []

    def _flush(self) -> None:
        """Post the backlog's frames, oldest first, while the ring has room."""
        backlog, post = self._backlog, self._tx.try_send_batch
        while backlog:
            batch = [backlog[i] for i in range(min(self.tx_batch, len(backlog)))]
            if post(batch) is None:
                return
            self.tx_posts += 1
            for _ in batch:
                backlog.popleft()

    def next_deadline(self) -> float | None:
        """Soon (``BACKLOG_RETRY``) while frames wait in the backlog, else None."""
        return time.monotonic() + self.BACKLOG_RETRY if self._backlog else None

    def receive(self, max_frames: int = 64) -> list[bytes]:
        frames: list[bytes] = []
        queues = self._rx
        n = len(queues)
        start = self._next
        for i in range(n):
            room = max_frames - len(frames)
            if room <= 0:
                break
            q = queues[(start + i) % n]
            frames += [p.data for p in q.poll(room)]
        self._next = (start + 1) % n            # the next call starts at the next queue
        self.frames_in += len(frames)
        return frames

    def service(self) -> None:
        tx = self._tx
        ring = getattr(tx, "ring", None)       # a board's data link has no ring to reap
        if ring is not None and ring.outstanding:
            tx.reap()
        if self._backlog:
            self._flush()
        self.tx_errors = getattr(tx, "errors", 0)


class PacketLink(Link):
    """An ``AF_PACKET`` socket on a kernel interface: frames of one EtherType, sent and
    received raw (the kernel side of a TAP, a veth, ...), e.g. for NCP
    (:mod:`hetnic.host.ncp_io`) on the kernel's side of the simulated NIC's TAP.

    Parameters
    ----------
    ifname : str
        The interface to bind to.
    ethertype : int
        The EtherType to receive (frames of other types never reach the socket).
    netns : str, optional
        The network namespace the interface is in (the socket is made inside it).

    Members
    -------
    mac : bytes
        The interface's MAC address.
    tx_drops : int
        Frames the kernel refused (no buffer space, interface down); dropped, counted.
    rx_errors : int
        Receive errors: ``ENETDOWN`` (the interface went down) is counted and the receive
        ends; any other raises :class:`LinkError` (one line; an
        :class:`~hetnic.host.ncp_io.NcpStation` surfaces it to its callers).

    Needs ``CAP_NET_RAW`` (:class:`LinkError` without). ``fileno()`` is the socket's;
    :meth:`receive` never blocks.
    """

    def __init__(self, ifname: str, ethertype: int, *, netns: str | None = None):
        if not isinstance(ethertype, int) or not 0x600 <= ethertype <= 0xFFFF:
            raise LinkError(f"ethertype must be from 0x0600 to 0xffff, not {ethertype!r}")
        ctx = in_netns(netns) if netns is not None else contextlib.nullcontext()
        with ctx:
            # Protocol 0: the socket receives nothing until bind() names the interface and
            # the EtherType (with the EtherType here it would see every interface's frames
            # in between).
            try:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            except PermissionError:
                raise LinkError(f"an AF_PACKET socket on {ifname!r} needs CAP_NET_RAW "
                                f"(run as root)") from None
            except OSError as e:
                raise LinkError(f"cannot make an AF_PACKET socket: {e.strerror}") from None
            try:
                sock.bind((ifname, ethertype))
            except OSError as e:
                sock.close()
                raise LinkError(f"cannot bind an AF_PACKET socket to {ifname!r}: "
                                f"{e.strerror}") from None
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self._sock = sock
        self.mac = sock.getsockname()[4]
        self.ifname = ifname
        self.frames_in = self.frames_out = 0
        self.tx_drops = 0
        self.rx_errors = 0

    def send(self, frames: list[bytes]) -> None:
        send = self._sock.send
        for frame in frames:
            try:
                send(frame)
            except OSError:                 # ENOBUFS, EAGAIN, ENETDOWN: a full queue drops
                self.tx_drops += 1
                continue
            self.frames_out += 1

    def receive(self, max_frames: int = 64) -> list[bytes]:
        frames = []
        recv = self._sock.recvfrom
        while len(frames) < max_frames:
            try:
                data, addr = recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.rx_errors += 1
                if e.errno == errno.ENETDOWN:   # the interface went down: it may come back
                    break
                raise LinkError(f"receive on {self.ifname!r} failed: "
                                f"{e.strerror or e}") from None
            if addr[2] != 4:                # not PACKET_OUTGOING (our own frames)
                frames.append(data)
        self.frames_in += len(frames)
        return frames

    def fileno(self) -> int | None:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()
