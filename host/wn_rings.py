"""The shared memory of a W/N system: per-(W, N) rings, the routing table, per-N counters.

One :class:`~hetnic.host.shm.SharedSegment` holds everything the application (W) processes
and the stack (N) processes share; :class:`WnLayout` computes where each piece lives, from
the numbers of W's and N's and the ring and table sizes, the same way in every process (the
parameters are stored in the segment's header, so a process attaching needs only the name).

Layout::

    0                  header: magic, n_count, w_count, table_slots, ring_slots, slot_size,
                       u32 stop (set by the host: every N exits), u32 hold (set by the
                       host: the N's take no frames from their links, e.g. while a
                       benchmark fills their rings), u64 dead (set by the host: bit n
                       once N n died, before its entries become LOST)
    PEERS              per W: u32 pid, u32 flags (bit 0: gone, bit 1: ready) (by the W)
                       per N: u32 pid, u32 alive, u64 heartbeat, u64 accepts, u64 lost
                              (0: a dead N's are counted by the host), u64 reassigned,
                              f64 last out (monotonic seconds when it last sent frames)
                                                                        (written by the N)
    TABLE              per N: table_slots routing entries (written by that N only; once
                       it died, by the host: its open entries become LOST)
    RINGS              per (W, N): a command ring (W -> N) then an event ring (N -> W);
                       then per (N, N'): a ring of frames every N must see (ARP, neighbour
                       discovery, ICMP errors) that N received and passes to N'

Each ring has one producer and one consumer (:class:`~hetnic.host.spsc.SpscRing`), each
routing-table region one writer: no lock is shared between N's.

Messages: the ring slot's ``aux`` word is the message kind; the data starts with the FD
(u32 little-endian), then the kind's body (see :class:`Cmd` and :class:`Evt`).

FDs: N ``n`` of ``n_count`` numbers its connections ``1 + n + n_count * seq`` with ``seq``
counting from 0, so an FD names its N (``(fd - 1) % n_count``) and its table slot
(``seq % table_slots``), and FDs are unique across N's and never reused.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import numpy as np

from ..errors import HetnicError
from .spsc import SpscRing

__all__ = ["WnLayout", "WnLayoutError", "Cmd", "Evt", "ConnState", "ENTRY_DTYPE", "ENTRY_STATE",
           "fd_owner", "fd_slot", "encode", "decode"]

_MAGIC = 0x574E3031        # "WN01"
_HEADER = struct.Struct("<IIIIII")
_HEADER_SIZE = 64
_OFF_STOP = 24
_OFF_HOLD = 28
_OFF_DEAD = 32
_U64 = struct.Struct("<Q")
_W_PEER = struct.Struct("<II")
_N_PEER = struct.Struct("<IIQQQQ")
_N_LAST_OUT = struct.Struct("<d")      # after _N_PEER in an N's entry
_N_ENTRY = _N_PEER.size + _N_LAST_OUT.size
_FD = struct.Struct("<I")
_ACCEPTED = struct.Struct("<IH")   # fd, local port; then the peer as text "host port"


class WnLayoutError(HetnicError, ValueError):
    """A W/N segment that cannot be built or attached (the message says why)."""


class Cmd(IntEnum):
    """Commands, W -> N (the ring slot's aux word)."""

    HELLO = 1       #: body: u32 pid
    LISTEN = 2      #: fd 0; body: u16 port (creates the shadow listener, shared)
    ACCEPT = 3      #: fd 0; body: u16 port (this W takes connections of that port)
    TAKEN = 4       #: the W's application accepted ``fd``
    SEND = 5        #: body: bytes to send
    CLOSE = 6       #: close ``fd`` gracefully (queued data sent, then FIN)
    BYE = 7         #: the W exits: close its FDs, give its untaken ones to other W's


class Evt(IntEnum):
    """Events, N -> W."""

    LISTENED = 1    #: fd 0; body: u16 port, then an error text (empty: listening)
    ACCEPTED = 2    #: body: u16 local port, then "host port" of the peer
    DATA = 3        #: body: bytes received
    EOF = 4         #: the peer closed its side
    ERROR = 5       #: body: the error text (reset, timeout...)


class ConnState(IntEnum):
    """A routing-table entry's state."""

    FREE = 0
    PENDING = 1     #: accepted by the N, handed to a W, not yet taken by its application
    OPEN = 2
    CLOSING = 3     #: close asked: queued data going out, then FIN
    CLOSED = 4
    LOST = 5        #: its N died
    ERROR = 6


#: One routing-table entry (FD -> N, W, peer, state), as the N writes it.
ENTRY_DTYPE = np.dtype([("fd", "<u4"), ("w", "<i2"), ("state", "u1"), ("family", "u1"),
                        ("lport", "<u2"), ("rport", "<u2"), ("raddr", "u1", (16,)),
                        ("pad", "u1", (4,))])
assert ENTRY_DTYPE.itemsize == 32
#: Byte offset of ``state`` in an entry (for readers of the raw bytes).
ENTRY_STATE = ENTRY_DTYPE.fields["state"][1]


def fd_owner(fd: int, n_count: int) -> int:
    """The N that numbered ``fd``."""
    return (fd - 1) % n_count


def fd_slot(fd: int, n_count: int, table_slots: int) -> int:
    """``fd``'s slot in its N's routing-table region."""
    return ((fd - 1) // n_count) % table_slots


def encode(fd: int, body: bytes = b"") -> bytes:
    """A message's data: the FD, then ``body``."""
    return _FD.pack(fd) + body


def decode(data: bytes) -> tuple[int, bytes]:
    """``(fd, body)`` of a message's data."""
    return _FD.unpack_from(data)[0], data[4:]


def encode_port(port: int, text: str = "") -> bytes:
    """The body of LISTEN/ACCEPT/LISTENED/ACCEPTED: a u16 port and a text."""
    return struct.pack("<H", port) + text.encode()


def decode_port(body: bytes) -> tuple[int, str]:
    return struct.unpack_from("<H", body)[0], body[2:].decode(errors="replace")


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


class WnLayout:
    """Where everything lives in a W/N segment.

    Parameters
    ----------
    buf : memoryview
        The segment's whole buffer.
    n_count, w_count : int
        Stack (N) and application (W) processes.
    table_slots : int
        Routing-table entries per N (FDs of one N still in use at once must be fewer).
    ring_slots, slot_size : int
        Each per-(W, N) ring's slots and slot size (a power of two; a multiple of 8).
    """

    def __init__(self, buf: memoryview, n_count: int, w_count: int, table_slots: int,
                 ring_slots: int, slot_size: int):
        self.buf = buf
        self.n_count, self.w_count = n_count, w_count
        self.table_slots, self.ring_slots, self.slot_size = table_slots, ring_slots, slot_size
        self.ring_bytes = _align(SpscRing.bytes_needed(ring_slots, slot_size))
        self.off_wpeers = _HEADER_SIZE
        self.off_npeers = self.off_wpeers + _align(w_count * _W_PEER.size)
        self.off_table = self.off_npeers + _align(n_count * _N_ENTRY)
        self.off_rings = self.off_table + _align(n_count * table_slots * ENTRY_DTYPE.itemsize)
        self.off_peer_rings = self.off_rings + 2 * n_count * w_count * self.ring_bytes
        self.size = self.off_peer_rings + n_count * n_count * self.ring_bytes

    # ----------------------------------------------------------------------- building

    @staticmethod
    def bytes_needed(n_count: int, w_count: int, table_slots: int = 4096,
                     ring_slots: int = 1024, slot_size: int = 2048) -> int:
        """Bytes of segment a layout with these sizes takes."""
        WnLayout._check(n_count, w_count, table_slots)
        return WnLayout(memoryview(b""), n_count, w_count, table_slots, ring_slots,
                        slot_size).size

    @staticmethod
    def _check(n_count: int, w_count: int, table_slots: int) -> None:
        for name, value, top in (("n_count", n_count, 64), ("w_count", w_count, 256),
                                 ("table_slots", table_slots, 1 << 20)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise WnLayoutError(f"{name} must be an integer 1..{top}, not {value!r}")

    @classmethod
    def create(cls, buf: memoryview, n_count: int, w_count: int, *, table_slots: int = 4096,
               ring_slots: int = 1024, slot_size: int = 2048) -> "WnLayout":
        """Initialise the header and every ring in ``buf`` (a fresh, zeroed segment)."""
        cls._check(n_count, w_count, table_slots)
        layout = cls(buf, n_count, w_count, table_slots, ring_slots, slot_size)
        if len(buf) < layout.size:
            raise WnLayoutError(f"{n_count} N's and {w_count} W's need {layout.size} bytes, "
                                f"the segment has {len(buf)}")
        for w in range(w_count):
            for n in range(n_count):
                for kind in (0, 1):
                    SpscRing.create(layout._ring_buf(w, n, kind), ring_slots, slot_size)
        for a in range(n_count):
            for b in range(n_count):
                SpscRing.create(layout._peer_buf(a, b), ring_slots, slot_size)
        _HEADER.pack_into(buf, 0, _MAGIC, n_count, w_count, table_slots, ring_slots,
                          slot_size)
        return layout

    @classmethod
    def attach(cls, buf: memoryview) -> "WnLayout":
        """The layout :meth:`create` wrote at the start of ``buf``."""
        if len(buf) < _HEADER_SIZE:
            raise WnLayoutError("not a W/N segment (too short)")
        magic, n, w, table, slots, size = _HEADER.unpack_from(buf, 0)
        if magic != _MAGIC:
            raise WnLayoutError("not a W/N segment (bad magic): WnHost creates it")
        return cls(buf, n, w, table, slots, size)

    # ----------------------------------------------------------------------- pieces

    def _ring_buf(self, w: int, n: int, kind: int) -> memoryview:
        off = self.off_rings + ((w * self.n_count + n) * 2 + kind) * self.ring_bytes
        return self.buf[off:off + self.ring_bytes]

    def _peer_buf(self, a: int, b: int) -> memoryview:
        off = self.off_peer_rings + (a * self.n_count + b) * self.ring_bytes
        return self.buf[off:off + self.ring_bytes]

    def peer_ring(self, a: int, b: int) -> SpscRing:
        """The ring N ``a`` passes shared frames (ARP...) on to N ``b``."""
        return SpscRing.attach(self._peer_buf(a, b))

    def command_ring(self, w: int, n: int) -> SpscRing:
        """The ring W ``w`` pushes commands on and N ``n`` pops."""
        return SpscRing.attach(self._ring_buf(w, n, 0))

    def event_ring(self, w: int, n: int) -> SpscRing:
        """The ring N ``n`` pushes events on and W ``w`` pops."""
        return SpscRing.attach(self._ring_buf(w, n, 1))

    def entry_offset(self, n: int, slot: int) -> int:
        """Byte offset in the segment of N ``n``'s routing-table entry ``slot``."""
        return self.off_table + (n * self.table_slots + slot) * ENTRY_DTYPE.itemsize

    def table(self, n: int) -> np.ndarray:
        """N ``n``'s routing-table region (a writable numpy view of ENTRY_DTYPE entries)."""
        size = self.table_slots * ENTRY_DTYPE.itemsize
        off = self.off_table + n * size
        return np.frombuffer(self.buf[off:off + size], dtype=ENTRY_DTYPE)

    @property
    def stop(self) -> bool:
        """Set by the host when every N is to exit."""
        return bool(struct.unpack_from("<I", self.buf, _OFF_STOP)[0])

    @stop.setter
    def stop(self, value: bool) -> None:
        struct.pack_into("<I", self.buf, _OFF_STOP, int(value))

    @property
    def hold(self) -> bool:
        """Set by the host while the N's are to take no frames from their links."""
        return bool(struct.unpack_from("<I", self.buf, _OFF_HOLD)[0])

    @hold.setter
    def hold(self, value: bool) -> None:
        struct.pack_into("<I", self.buf, _OFF_HOLD, int(value))

    @property
    def dead(self) -> int:
        """Bit ``n`` set once the host declared N ``n`` dead (0: every N lives; readers use
        only whether it is 0, so a read of a word being stored cannot mislead them)."""
        return _U64.unpack_from(self.buf, _OFF_DEAD)[0]

    def set_dead(self, n: int) -> None:
        """Declare N ``n`` dead (the host, before it marks the N's entries LOST)."""
        _U64.pack_into(self.buf, _OFF_DEAD, self.dead | (1 << n))

    # W peers: pid, "gone" and "ready" flags.
    def w_peer(self, w: int) -> tuple[int, bool]:
        """W ``w``'s pid and whether it has gone."""
        pid, flags = _W_PEER.unpack_from(self.buf, self.off_wpeers + w * _W_PEER.size)
        return pid, bool(flags & 1)

    def w_ready(self, w: int) -> bool:
        """Whether W ``w`` said it is ready (its application set up, e.g. listening)."""
        return bool(_W_PEER.unpack_from(self.buf, self.off_wpeers + w * _W_PEER.size)[1] & 2)

    def set_w_peer(self, w: int, pid: int, gone: bool = False, ready: bool = False) -> None:
        _W_PEER.pack_into(self.buf, self.off_wpeers + w * _W_PEER.size, pid,
                          int(gone) | (int(ready) << 1))

    # N peers: pid, alive, heartbeat and counters.
    def n_peer(self, n: int) -> dict:
        """N ``n``'s pid, alive flag, heartbeat, accepts, lost and reassigned counters."""
        pid, alive, beat, accepts, lost, moved = _N_PEER.unpack_from(
            self.buf, self.off_npeers + n * _N_ENTRY)
        return {"pid": pid, "alive": bool(alive), "heartbeat": beat, "accepts": accepts,
                "lost": lost, "reassigned": moved}

    def set_n_peer(self, n: int, pid: int, alive: bool, heartbeat: int, accepts: int,
                   lost: int, reassigned: int) -> None:
        _N_PEER.pack_into(self.buf, self.off_npeers + n * _N_ENTRY, pid, int(alive),
                          heartbeat & ((1 << 64) - 1), accepts, lost, reassigned)

    def n_last_out(self, n: int) -> float:
        """When N ``n`` last sent frames (``time.monotonic`` seconds; 0.0: never)."""
        return _N_LAST_OUT.unpack_from(self.buf,
                                       self.off_npeers + n * _N_ENTRY + _N_PEER.size)[0]

    def set_n_last_out(self, n: int, when: float) -> None:
        _N_LAST_OUT.pack_into(self.buf, self.off_npeers + n * _N_ENTRY + _N_PEER.size, when)
