"""The board backend of the driver: a hetnic board over its serial bridge and a data link.

>>> with Nic.open("serial:/dev/ttyUSB1", data="eth1") as nic:
...     nic.rss.set_key(key)
...     nic.rules.add(FlowRule(ip_proto="udp", dst_port=53, action=Action(instance=1)))
...     generation = nic.commit()
...     for packet in nic.rx_queues[3].poll():
...         print(packet.hash, packet.instance, packet.rule, packet.generation)
...     nic.tx_queues[0].send(frame)
...     print(nic.counters()["frames_in"])

A board (:mod:`hetnic.boards`) is the RX pipeline between Ethernet ports, without DMA: it
classifies every frame from the network, inserts a steering tag
(:mod:`hetnic.steering_tag`) and sends it to the host on an Ethernet link. So the driver
talks to it over two channels:

Registers
    The board's serial bridge (:class:`~hetnic.host.serial_bridge.SerialBridge`, pyserial;
    any device path, a pseudo-terminal included). Its registers are the RX pipeline's and
    its MACs' counters; on open the driver checks the bridge identification and the ``ID``
    magic, reads the board's build from ``PARAMS0..2`` and ``CAPS``
    (:meth:`NicParams.from_identity <hetnic.params.NicParams.from_identity>`), and sizes the
    RETA, the rules and the queues from it. A board that does not answer within
    ``timeout`` seconds after ``retries`` retries raises :class:`NicError` naming the device
    (and so does every other serial failure).
Data
    A :class:`DataPort`: ``data="eth1"`` opens :class:`RawSocketPort`, a Linux
    ``AF_PACKET`` raw socket on the host interface wired to the board's host port (port 1 of
    a two-port board, the only port of a one-port board), in promiscuous mode; it needs
    CAP_NET_RAW (root, or ``setcap cap_net_raw+ep`` on the Python interpreter). Any object
    with ``send(frame)``, ``recv(timeout)`` and ``close()`` may be passed instead
    (:class:`QueuePort` is an in-process one for tests and simulations).

Receiving. :meth:`BoardRxQueue.poll` reads every frame waiting on the data link, decodes its
tag and files it under the tag's queue as a :class:`TaggedPacket` (the frame without its
tag, with ``queue``, ``instance``, ``rule``, ``hash``, ``hash_type`` and ``generation``, the
fields of :class:`~hetnic.host.rx_ring.RxPacket` a tag carries). A frame without a valid tag,
or naming a queue the board does not have, is counted in ``data_stats.bad_tag`` and
dropped; a queue holding ``rx_queue_limit`` unpolled packets drops new ones
(``data_stats.overflow``). Sending. :meth:`BoardTxQueue.send` puts a frame on the data link
as it is: a two-port board forwards it from port 1 to port 0 untouched, a one-port board
classifies it and returns it tagged like any other frame.

The same as :class:`~hetnic.host.nic.Nic` (:mod:`hetnic.host.control`, one piece of code):
``rss.set_key/set_table/configure``, ``rules.add/remove/set_default``, ``apply``,
``config``, ``commit`` (polls ``COMMIT_STATUS`` for up to ``commit_timeout`` seconds),
``generation``, ``counters()`` (every counter register, accumulated since open), ``params``,
``regmap``, ``close`` and ``with``. Also ``rx_queues[i].poll/ready`` and
``tx_queues[0].send/send_batch``.

Not on a board, each raising :class:`NicError` that says so: ``events``, ``on_event``,
``irq`` (no event queues or interrupts), ``run``, ``run_until_idle``, ``now``, ``age``
(the host cannot see or step the board's clock), ``wire.send``, ``wire.pending``,
``wire.received`` (there is no simulated wire: use the queues), ``rx_queues[i].arm``,
``tx_queues[i].send_gather``, ``tx_queues[i].completions`` (no DMA work items or
completions). There are no rings, ``allocator`` or ``event_rings``, and one TX queue (the
data link).
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from ..bridge_protocol import DEFAULT_BAUD
from ..protocol import ETH_HEADER_LEN
from ..params import NicParams
from ..steering_tag import TagError, strip_tag
from .backend import RegisterBackend
from .control import NicControl, NicError, identify, serial_commit_waiter
from .rx_ring import SteeredFrame
from .serial_bridge import BridgeError, SerialBridge

__all__ = ["BoardNic", "BoardRxQueue", "BoardTxQueue", "TaggedPacket", "DataStats",
           "DataPort", "RawSocketPort", "QueuePort", "SerialBackend"]

#: Frames one :meth:`BoardRxQueue.poll` takes off the data link at most, so a link that
#: never goes quiet cannot keep a poll from returning.
PUMP_LIMIT = 4096

# linux/if_packet.h and linux/if_ether.h (not all of them are in the socket module).
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4


# --- the data link ---------------------------------------------------------------------------

class DataPort(Protocol):
    """What the driver needs of the data link to the board."""

    def send(self, frame: bytes) -> None:
        """Put one Ethernet frame (no FCS) on the link."""

    def recv(self, timeout: float | None) -> bytes | None:
        """The next frame received from the link, waiting up to ``timeout`` seconds (0: do
        not wait, ``None``: wait for ever); ``None`` if none came."""

    def close(self) -> None: ...


class RawSocketPort:
    """A Linux ``AF_PACKET`` raw socket on network interface ``interface``.

    The interface is put in promiscuous mode for as long as the socket is open (the board
    forwards frames addressed to other stations), and frames the host itself sends on the
    interface are not returned by :meth:`recv`. Raises :class:`NicError` in one line when
    the socket cannot be opened: no CAP_NET_RAW, no such interface, not Linux.
    """

    def __init__(self, interface: str):
        if not isinstance(interface, str) or not interface:
            raise ValueError(f"interface must be a network interface name, not {interface!r}")
        self.name = interface
        if not hasattr(socket, "AF_PACKET"):
            raise NicError(f"the data link on {interface} needs a Linux AF_PACKET socket; "
                           f"this system ({sys.platform}) has none")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise NicError(f"opening a raw socket on {interface} needs CAP_NET_RAW: run as "
                           f"root, or grant it with 'sudo setcap cap_net_raw+ep "
                           f"{sys.executable}'") from None
        try:
            index = socket.if_nametoindex(interface)
            sock.bind((interface, ETH_P_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
        except OSError as e:
            sock.close()
            raise NicError(f"cannot use network interface {interface!r} for the data link: "
                           f"{e.strerror or e}") from None
        self._sock = sock

    def send(self, frame: bytes) -> None:
        try:
            self._sock.send(frame)
        except OSError as e:
            raise NicError(f"cannot send a {len(frame)}-byte frame on {self.name}: "
                           f"{e.strerror or e}") from None

    def recv(self, timeout: float | None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._sock], [], [], wait)[0]:
                return None
            frame, address = self._sock.recvfrom(65536)
            if address[2] != PACKET_OUTGOING:
                return frame

    def close(self) -> None:
        self._sock.close()


class QueuePort:
    """An in-process data link: what the driver sends is in :attr:`sent` (a
    ``queue.Queue``), and frames given to :meth:`deliver` are what it receives. Safe to use
    from two threads (a simulation on one side, the driver on the other)."""

    def __init__(self, name: str = "in-process port"):
        self.name = name
        self.sent: queue.Queue[bytes] = queue.Queue()
        self._received: queue.Queue[bytes] = queue.Queue()
        self.closed = False

    def deliver(self, frame: bytes) -> None:
        """A frame arriving from the board."""
        self._received.put(bytes(frame))

    def send(self, frame: bytes) -> None:
        self.sent.put(bytes(frame))

    def recv(self, timeout: float | None) -> bytes | None:
        try:
            return self._received.get(block=timeout != 0, timeout=timeout or None)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True


def _data_port(data) -> DataPort:
    if isinstance(data, str):
        return RawSocketPort(data)
    missing = [m for m in ("send", "recv", "close") if not callable(getattr(data, m, None))]
    if data is None or missing:
        raise ValueError(f"data must name the network interface wired to the board (like "
                         f"'eth1') or be a port with send(frame), recv(timeout) and close(), "
                         f"not {data!r}")
    return data


# --- registers over the serial bridge -------------------------------------------------------

class SerialBackend(RegisterBackend):
    """Register reads and writes through a :class:`SerialBridge`; every bridge failure
    becomes a :class:`NicError` with the bridge's one-line message."""

    def __init__(self, bridge: SerialBridge):
        self.bridge = bridge
        self.name = bridge.name

    def _call(self, method, *args):
        try:
            return method(*args)
        except BridgeError as e:
            raise NicError(str(e)) from e

    def ident(self) -> int:
        return self._call(self.bridge.ident)

    def reg_read(self, addr: int) -> int:
        return self._call(self.bridge.read, addr)

    def reg_write(self, addr: int, value: int) -> None:
        self._call(self.bridge.write, addr, value)

    def reg_read_many(self, addrs) -> list[int]:
        return self._call(self.bridge.read_many, list(addrs))

    def reg_write_many(self, writes) -> None:
        self._call(self.bridge.write_many, list(writes))

    def close(self) -> None:
        self.bridge.close()


def _board_params(backend) -> NicParams:
    """The build of the board behind ``backend`` (``ID``, ``PARAMS0..2``, ``CAPS``); refuses
    the reduced serial core and a NIC core with DMA queues."""
    params = identify(backend)
    if params.injector:
        raise NicError(f"the board on {backend.name} is the reduced serial core (no Ethernet, "
                       f"no parser): drive it with hetnic.host.serial_core.ReducedCore")
    queues = {k: getattr(params, k) for k in ("rx_queues", "tx_queues", "event_queues")}
    if any(queues.values()):
        raise NicError(f"the device on {backend.name} is a NIC core with DMA queues "
                       f"({queues}); the board backend drives boards whose registers are the "
                       f"RX pipeline's only")
    return params


# --- receive and send ------------------------------------------------------------------------

@dataclass(frozen=True)
class TaggedPacket(SteeredFrame):
    """A frame from the board and the decisions its steering tag carries (the fields of
    :class:`~hetnic.host.rx_ring.RxPacket` a tag has).

    Members
    -------
    data : bytes
        The frame as the board received it (the tag removed), without FCS.
    """
    generation: int


@dataclass
class DataStats:
    """What the data link has carried since open."""
    received: int = 0           # frames read from the link
    delivered: int = 0          # frames filed under a queue
    bad_tag: int = 0            # frames without a valid tag, or naming a queue not there
    overflow: int = 0           # frames dropped: their queue held rx_queue_limit packets
    sent: int = 0               # frames sent by the TX queue


def _no_such(what: str, instead: str):
    """A method of the NIC core driver that a board cannot have."""
    def method(self, *args, **kwargs):
        raise NicError(f"the board backend has no {what}: {instead}")
    method.__doc__ = f"Not on a board: raises :class:`NicError` (no {what})."
    return method


class BoardRxQueue:
    """One receive queue: the tagged frames whose tag names it, oldest first."""

    def __init__(self, nic: "BoardNic", index: int):
        self._nic = nic
        self.index = index
        self._packets: deque[TaggedPacket] = deque()

    def poll(self, max_packets: int = 64) -> list[TaggedPacket]:
        """Up to ``max_packets`` frames, after reading what waits on the data link."""
        if not isinstance(max_packets, int) or max_packets < 1:
            raise ValueError(f"max_packets must be a positive integer, not {max_packets!r}")
        self._nic._pump()
        take = min(max_packets, len(self._packets))
        return [self._packets.popleft() for _ in range(take)]

    def ready(self) -> bool:
        """Whether a frame waits for this queue (after reading the data link)."""
        self._nic._pump()
        return bool(self._packets)

    arm = _no_such("event queues", "poll the queue instead")


class BoardTxQueue:
    """The data link's sending side: frames go to the board as they are."""

    def __init__(self, nic: "BoardNic", index: int):
        self._nic = nic
        self.index = index

    def send(self, message: bytes) -> int:
        """Send one Ethernet frame (without FCS); returns how many this queue has sent."""
        message = bytes(message)
        if len(message) < ETH_HEADER_LEN:
            raise ValueError(f"a frame has at least the {ETH_HEADER_LEN}-byte Ethernet "
                             f"header, not {len(message)} bytes")
        self._nic._data.send(message)
        self._nic.data_stats.sent += 1
        return self._nic.data_stats.sent

    def send_batch(self, messages: Sequence[bytes]) -> int:
        """Send ``messages`` one after the other; returns the count after the last."""
        count = self._nic.data_stats.sent
        for message in messages:
            count = self.send(message)
        return count

    send_gather = _no_such("TX work items", "send each frame with send()")
    completions = _no_such("TX completions", "a frame is on the link once send() returns")


class _NoWire:
    """``nic.wire`` of a board: every use says where the frames are instead."""
    _instead = ("frames from the network arrive tagged on rx_queues[i].poll(), and "
                "tx_queues[0].send() puts frames on the data link")
    send = _no_such("simulated wire", _instead)
    pending = _no_such("simulated wire", _instead)
    received = _no_such("simulated wire", _instead)


class BoardNic(NicControl):
    """A board, opened with :meth:`open` (or ``Nic.open("serial:DEVICE", data=...)``).
    See the module documentation."""

    def __init__(self, backend: SerialBackend, data: DataPort, *, commit_timeout: float = 2.0,
                 rx_queue_limit: int = 4096):
        if not isinstance(commit_timeout, (int, float)) or commit_timeout <= 0:
            raise ValueError(f"commit_timeout must be a positive number of seconds, not "
                             f"{commit_timeout!r}")
        if not isinstance(rx_queue_limit, int) or rx_queue_limit < 1:
            raise ValueError(f"rx_queue_limit must be a positive integer, not "
                             f"{rx_queue_limit!r}")
        self._data = data
        self.commit_timeout = commit_timeout
        self.rx_queue_limit = rx_queue_limit
        self.data_stats = DataStats()
        backend.ident()
        params = _board_params(backend)
        super().__init__(backend, params, queues=params.queues)
        self.rx_queues = [BoardRxQueue(self, q) for q in range(params.queues)]
        self.tx_queues = [BoardTxQueue(self, 0)]
        self.wire = _NoWire()
        self._start()

    @classmethod
    def open(cls, device: str, *, data, baud: int = DEFAULT_BAUD, timeout: float = 0.5,
             retries: int = 2, window: int = 8, commit_timeout: float = 2.0,
             rx_queue_limit: int = 4096) -> "BoardNic":
        """Open the board on serial ``device`` with its data link ``data``.

        Parameters
        ----------
        device : str
            The serial device (``/dev/ttyUSB1``, a pseudo-terminal's path, ...).
        data : str or DataPort
            The host's network interface wired to the board, or a port object. The driver
            owns it and closes it with the NIC.
        baud, timeout, retries, window
            Of the :class:`~hetnic.host.serial_bridge.SerialBridge`: line rate, seconds to
            wait for an answer, retries, requests in flight.
        commit_timeout : float
            Seconds :meth:`commit` waits for ``COMMIT_STATUS`` to clear.
        rx_queue_limit : int
            Packets a receive queue holds before it drops new ones.
        """
        if not isinstance(device, str) or not device:
            raise ValueError(f"the board backend is 'serial:DEVICE' with a serial device "
                             f"path, not {device!r}")
        port = _data_port(data)
        try:
            try:
                bridge = SerialBridge.open(device, baud=baud, timeout=timeout,
                                           retries=retries, window=window)
            except BridgeError as e:
                raise NicError(str(e)) from e
            backend = SerialBackend(bridge)
            try:
                return cls(backend, port, commit_timeout=commit_timeout,
                           rx_queue_limit=rx_queue_limit)
            except BaseException:
                backend.close()
                raise
        except BaseException:
            port.close()
            raise

    def close(self) -> None:
        """Close the serial port and the data link."""
        if self._backend is not None:
            self._data.close()
        super().close()

    # --- commit --------------------------------------------------------------------------
    def _commit_waiter(self) -> Iterator[None]:
        return serial_commit_waiter(self.backend.name, self.commit_timeout)

    # --- the data link -------------------------------------------------------------------
    def _pump(self) -> None:
        """File every frame waiting on the data link (at most :data:`PUMP_LIMIT`) under its
        queue."""
        stats, queues = self.data_stats, self.rx_queues
        for _ in range(PUMP_LIMIT):
            frame = self._data.recv(0)
            if frame is None:
                return
            stats.received += 1
            try:
                tag, data = strip_tag(frame)
            except TagError:
                stats.bad_tag += 1
                continue
            if tag.queue >= len(queues):
                stats.bad_tag += 1
                continue
            packets = queues[tag.queue]._packets
            if len(packets) >= self.rx_queue_limit:
                stats.overflow += 1
                continue
            packets.append(TaggedPacket(data, len(data), tag.hash, tag.hash_type, tag.queue,
                                        tag.instance, tag.rule, tag.generation))
            stats.delivered += 1

    # --- what a board does not have ------------------------------------------------------
    events = _no_such("event queues", "poll the RX queues instead")
    on_event = _no_such("event queues", "poll the RX queues instead")
    irq = _no_such("interrupts", "poll the RX queues instead")
    run = _no_such("clock to run", "the board runs by itself; poll the RX queues")
    run_until_idle = _no_such("clock to run", "the board runs by itself; poll the RX queues")
    now = _no_such("cycle count the host can read", "use time.monotonic()")
    age = _no_such("completion timestamps", "the tag carries none")
