# Ref: RFC 9293 section 3.8.6 (send and receive windows, buffering), RFC 2018 section 4
#      (generating SACK blocks at the data receiver).
"""A TCP connection's send and receive buffers.

:class:`SendBuffer` holds what the application queued and the peer has not acknowledged yet,
from ``snd_una`` on; the connection sends and resends slices of it with :meth:`SendBuffer.peek`
and drops acknowledged bytes with :meth:`SendBuffer.consume`.

:class:`ReceiveBuffer` holds in-order bytes the application has not read and the
out-of-order data that arrived past a hole. Positions inside it are plain stream offsets
(``int``, never wrapping); the connection speaks to it in offsets from ``rcv_nxt`` and it
hands SACK blocks back in sequence numbers. Out-of-order data is kept as non-overlapping
pieces that tile the covered intervals, so delivering an interval once its hole is filled is
one dict lookup per piece and no copy of the stored data; memory is bounded by the window,
since nothing past ``rcv_nxt + window`` is accepted, and the bookkeeping by
:data:`MAX_OOO_INTERVALS` intervals and ``capacity // 256`` pieces: an out-of-order segment
past either limit is dropped (:attr:`ReceiveBuffer.ooo_drops` counts them).

Both use a ``bytearray`` for the in-order bytes. :class:`ReceiveBuffer` deletes read bytes
from its front (CPython does that in O(1): it moves the start pointer). :class:`SendBuffer`
only skips acknowledged bytes and cuts the front once a capacity's worth accumulated: after a
front cut the next append copies everything left, which per ACK would cost a copy of the
whole buffer every few ACKs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .errors import BadArgument

__all__ = ["SendBuffer", "ReceiveBuffer"]

_SEQ_MASK = 0xFFFFFFFF
_RECENT = 16            # positions of recent out-of-order arrivals remembered for SACK order
#: Out-of-order intervals (runs of held data between holes) kept at most: a segment that
#: would make one more is dropped (the peer resends it), so a flood of tiny segments cannot
#: make the store a long list (each insert is a bisect and a short list splice).
MAX_OOO_INTERVALS = 128
#: Out-of-order pieces kept at most, per byte of capacity (at least 4 per interval): a
#: peer's segments are at least this size on average before any is dropped.
_PIECE_BYTES = 256


def _check_capacity(capacity: int) -> int:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise BadArgument(f"buffer capacity must be a positive int, not {capacity!r}")
    return capacity


class SendBuffer:
    """Bytes queued by the application, from ``snd_una`` on (sent-unacknowledged bytes first,
    then not-yet-sent ones).

    Parameters
    ----------
    capacity : int
        The most bytes held at once (the socket's send buffer size).

    Members
    -------
    capacity : int
        May be changed later; a smaller value only limits future writes.
    """

    __slots__ = ("capacity", "_data", "_head")

    def __init__(self, capacity: int):
        self.capacity = _check_capacity(capacity)
        self._data = bytearray()
        self._head = 0                  # acknowledged bytes still at the front of _data

    def __len__(self) -> int:
        return len(self._data) - self._head

    @property
    def free(self) -> int:
        """Bytes :meth:`write` would accept now."""
        return max(0, self.capacity - len(self._data) + self._head)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of ``data`` as fits; returns the number of bytes accepted."""
        room = self.capacity - len(self._data) + self._head
        if room <= 0:
            return 0
        if len(data) > room:
            data = memoryview(data)[:room]
        self._data += data
        return len(data)

    def peek(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes starting ``offset`` bytes after ``snd_una`` (fewer at the end)."""
        start = self._head + offset
        return bytes(self._data[start:start + n])

    def consume(self, n: int) -> None:
        """Drop the first ``n`` bytes (acknowledged by the peer); ``n`` beyond the length
        empties the buffer.

        The bytes are only skipped; the front is cut once a capacity's worth accumulated.
        (Cutting a bytearray's front is O(1), but the next append then copies everything
        left to a new block: once per ``capacity`` bytes, not once per ACK.)"""
        head = self._head + n
        data = self._data
        if head >= len(data):
            data.clear()
            head = 0
        elif head >= self.capacity:
            del data[:head]
            head = 0
        self._head = head

    def clear(self) -> None:
        """Drop everything (the connection was reset or aborted)."""
        self._data.clear()
        self._head = 0


class ReceiveBuffer:
    """In-order bytes for the application plus the out-of-order store.

    Parameters
    ----------
    capacity : int
        The receive buffer size: readable bytes plus out-of-order bytes never exceed it, and
        the advertised window is what is left after the readable bytes.
    """

    __slots__ = ("capacity", "_data", "_base", "_starts", "_ends", "_pieces", "_recent",
                 "_ooo", "_max_pieces", "ooo_drops")

    def __init__(self, capacity: int):
        self.capacity = _check_capacity(capacity)
        self._data = bytearray()          # in order, not read yet
        self._base = 0                    # stream offset of rcv_nxt
        self._starts: list[int] = []      # out-of-order intervals [start, end), sorted,
        self._ends: list[int] = []        # disjoint and not adjacent (stream offsets)
        self._pieces: dict[int, bytes] = {}   # start -> bytes; pieces tile the intervals
        self._recent: list[int] = []      # stream offsets of recent arrivals, newest first
        self._ooo = 0                     # bytes held out of order
        self._max_pieces = max(4 * MAX_OOO_INTERVALS, self.capacity // _PIECE_BYTES)
        #: Out-of-order segments dropped at the interval or piece limit.
        self.ooo_drops = 0

    @property
    def readable(self) -> int:
        """In-order bytes waiting for :meth:`read`."""
        return len(self._data)

    @property
    def window(self) -> int:
        """Free space from ``rcv_nxt`` on: the receive window to advertise (unscaled bytes)."""
        return max(0, self.capacity - len(self._data))

    @property
    def out_of_order(self) -> int:
        """Bytes held past a hole."""
        return self._ooo

    @property
    def has_holes(self) -> bool:
        """True while out-of-order data is waiting for a hole to be filled."""
        return bool(self._starts)

    def read(self, n: int = -1) -> bytes:
        """Take up to ``n`` in-order bytes (all of them for a negative ``n``)."""
        data = self._data
        if n < 0 or n >= len(data):
            out = bytes(data)
            data.clear()
            return out
        out = bytes(data[:n])
        del data[:n]
        return out

    def insert(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Store a segment's payload that starts ``offset`` bytes after ``rcv_nxt``.

        Bytes before ``rcv_nxt`` (negative offsets) and past the window are dropped; bytes
        already held out of order are kept as first received. An out-of-order segment
        (``offset > 0``) that would need more than :data:`MAX_OOO_INTERVALS` intervals or
        the piece limit is dropped whole and counted in :attr:`ooo_drops`.

        Returns
        -------
        int
            How many bytes became in order (``rcv_nxt`` advances by this much): this
            segment's in-order part plus any out-of-order data it joined.
        """
        size = len(data)
        limit = self.capacity - len(self._data)      # window right edge, from rcv_nxt
        if offset == 0 and not self._starts:
            # The common case: the next bytes, nothing out of order.
            if size > limit:
                if limit <= 0:
                    return 0
                data = memoryview(data)[:limit]
                size = limit
            self._data += data
            self._base += size
            return size
        lo = max(offset, 0)
        hi = min(offset + size, limit)
        if lo >= hi:
            return 0
        if lo != offset or hi != offset + size or type(data) is not bytes:
            data = bytes(memoryview(data)[lo - offset:hi - offset])
        base = self._base
        if lo:
            starts = self._starts
            i = bisect_left(self._ends, base + lo)
            j = bisect_right(starts, base + hi)
            if (len(starts) - (j - i) >= MAX_OOO_INTERVALS
                    or len(self._pieces) + (j - i) >= self._max_pieces):
                self.ooo_drops += 1
                return 0
        self._store(base + lo, base + hi, data)
        if lo:
            self._recent.insert(0, base + lo)
            del self._recent[_RECENT:]
            return 0
        return self._deliver()

    def _store(self, start: int, end: int, data: bytes) -> None:
        """Merge ``[start, end)`` into the intervals; keep the bytes of its uncovered parts."""
        starts, ends, pieces = self._starts, self._ends, self._pieces
        i = bisect_left(ends, start)           # first interval ending at or after start
        j = bisect_right(starts, end)          # intervals starting at or before end merge
        pos = start
        for k in range(i, j):
            if starts[k] > pos:
                pieces[pos] = data[pos - start:starts[k] - start]
                self._ooo += starts[k] - pos
            pos = max(pos, ends[k])
        if pos < end:
            pieces[pos] = data[pos - start:] if pos > start else data
            self._ooo += end - pos
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]

    def _deliver(self) -> int:
        """Move the first interval (which now starts at ``rcv_nxt``) to the in-order bytes."""
        end = self._ends[0]
        del self._starts[0], self._ends[0]
        pieces, data = self._pieces, self._data
        pos = self._base
        while pos < end:
            piece = pieces.pop(pos)
            data += piece
            pos += len(piece)
        moved = end - self._base
        self._ooo -= moved
        self._base = end
        return moved

    def sack_blocks(self, rcv_nxt: int, limit: int = 4) -> list[tuple[int, int]]:
        """SACK blocks for the out-of-order data, as RFC 2018 section 4 orders them.

        Parameters
        ----------
        rcv_nxt : int
            The connection's ``RCV.NXT`` (sequence number of stream offset ``rcv_nxt``).
        limit : int
            The most blocks to return (4, or 3 beside a timestamp option).

        Returns
        -------
        list of (int, int)
            ``(left, right)`` sequence numbers, right exclusive: first the block holding
            the most recently received out-of-order segment, then the blocks of earlier
            arrivals, most recent first, then any other blocks, highest first.
        """
        starts, ends = self._starts, self._ends
        if not starts:
            return []
        offset = rcv_nxt - self._base
        chosen: list[int] = []
        for pos in self._recent:
            k = bisect_right(starts, pos) - 1
            if k >= 0 and pos < ends[k] and k not in chosen:
                chosen.append(k)
                if len(chosen) == limit:
                    break
        for k in range(len(starts) - 1, -1, -1):
            if len(chosen) >= limit:
                break
            if k not in chosen:
                chosen.append(k)
        return [((starts[k] + offset) & _SEQ_MASK, (ends[k] + offset) & _SEQ_MASK)
                for k in chosen]

    def clear(self) -> None:
        """Drop everything (the connection was reset or aborted)."""
        self._data.clear()
        self._starts.clear()
        self._ends.clear()
        self._pieces.clear()
        self._recent.clear()
        self._ooo = 0
