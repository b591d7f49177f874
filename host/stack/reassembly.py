# Ref: RFC 791 section 3.2 (IPv4 reassembly), RFC 815 (hole-based reassembly), RFC 8200
#      section 4.5 (IPv6 fragments), RFC 5722 (overlapping fragments are dropped),
#      RFC 6946 (atomic fragments).
"""Reassembly of IPv4 and IPv6 fragments with bounded memory.

One :class:`Reassembler` serves one IP version. Datagrams are keyed by whatever the caller
passes (``(src, dst, id, proto)`` for IPv4, ``(src, dst, id)`` for IPv6). The bounds:

- ``memory`` bytes of fragment data held in all, across datagrams: a fragment that would go
  past it evicts the oldest datagrams first (``"frag_evicted"``), or is dropped if it alone
  does not fit;
- ``max_datagrams`` datagrams in progress (the oldest is evicted) and ``max_fragments``
  fragments per datagram (more: the datagram is dropped, ``"frag_too_many"``);
- ``timeout`` s from a datagram's first fragment (``"frag_timeout"``);
- a datagram longer than 65535 bytes (``"frag_oversize"``);
- optionally, per source (the first item of the key): ``source_memory`` bytes and
  ``source_datagrams`` datagrams in progress. A source past either evicts its own oldest
  datagrams first, never another source's (``"frag_source_limit"``), or has the fragment's
  datagram dropped if that is its only one (also ``"frag_source_limit"``). So one source
  cannot take the whole of ``memory`` from the others.

:attr:`Reassembler.fragments` counts the fragments offered, :attr:`Reassembler.reassembled`
the datagrams completed.

Any overlap between two fragments drops the whole datagram (``"frag_overlap"``), except an
exact copy of a fragment already held, which is ignored (``"frag_duplicate"``: the network
duplicates packets, an attacker gains nothing from a copy). Fragments other than the last
must carry a multiple of 8 bytes, and no fragment may reach past the end the last one
declared (``"frag_bad_length"``).
"""

from __future__ import annotations

from collections.abc import Hashable

from .counters import StackCounters

__all__ = ["Reassembler"]

MAX_DATAGRAM = 65535


class _Datagram:
    __slots__ = ("parts", "held", "total", "deadline", "info")

    def __init__(self, deadline: float, info: object) -> None:
        self.parts: list[tuple[int, int, bytes]] = []   # (start, end, data), unsorted
        self.held = 0
        self.total: int | None = None                     # known once the last fragment came
        self.deadline = deadline
        self.info = info


class Reassembler:
    """Collects fragments until their datagram is whole.

    Parameters
    ----------
    counters : StackCounters
        Where drops are counted.
    header_len_limit : int
        Bytes of IP header (and unfragmentable part) that count against the 65535-byte limit
        for a fragment's end offset when :meth:`add` is not told (``header_len``): 20 for
        IPv4 (callers pass each fragment's IHL), 0 for IPv6 (whose limit is on the payload).
    memory, max_datagrams, max_fragments, timeout : int, int, int, float
        The bounds of the module docstring.
    source_memory, source_datagrams : int or None
        The per-source bounds of the module docstring (None: none). With either, every key
        is a tuple whose first item is the source address.

    Members
    -------
    held : int
        Bytes of fragment data held now.
    fragments : int
        Fragments offered to :meth:`add` (every call).
    reassembled : int
        Datagrams completed.
    """

    def __init__(self, counters: StackCounters, *, header_len_limit: int = 0,
                 memory: int = 256 * 1024, max_datagrams: int = 64, max_fragments: int = 128,
                 timeout: float = 30.0, source_memory: int | None = None,
                 source_datagrams: int | None = None) -> None:
        self.counters = counters
        self.header_len_limit = header_len_limit
        self.memory = memory
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.timeout = timeout
        self.source_memory = source_memory
        self.source_datagrams = source_datagrams
        self._per_source = source_memory is not None or source_datagrams is not None
        self._datagrams: dict[Hashable, _Datagram] = {}
        self.held = 0
        self.fragments = 0
        self.reassembled = 0
        #: Per source (with the per-source bounds): [bytes held, datagrams in progress].
        self._sources: dict[object, list[int]] = {}

    def __len__(self) -> int:
        return len(self._datagrams)

    def add(self, key: Hashable, offset: int, more: bool, data: bytes | memoryview,
            now: float, info: object = None, *, header_len: int | None = None
            ) -> tuple[bytes, object] | None:
        """Add one fragment: ``data`` at byte ``offset`` of the datagram's payload, ``more``
        the MF / M flag. ``info`` is kept from the first fragment (offset 0) and returned with
        the payload (the caller stores what it needs to deliver: protocol, header).
        ``header_len``: this fragment's IP header bytes that count against the 65535-byte
        limit (an IPv4 fragment's IHL), else ``header_len_limit``.

        Returns
        -------
        (bytes, object) or None
            The whole payload and the first fragment's ``info`` once complete, else ``None``.
        """
        counters = self.counters
        self.fragments += 1
        size = len(data)
        end = offset + size
        if end + (self.header_len_limit if header_len is None else header_len) > MAX_DATAGRAM:
            counters.drop("frag_oversize")
            self._discard(key)
            return None
        if (more and size % 8) or (more and size == 0):
            counters.drop("frag_bad_length")
            self._discard(key)
            return None
        if size > self.memory:
            counters.drop("frag_memory")
            return None
        dgram = self._datagrams.get(key)
        if dgram is None:
            if self._per_source and not self._source_room(key, 0, True):
                return None
            if len(self._datagrams) >= self.max_datagrams:
                self._evict_oldest()
            dgram = self._datagrams[key] = _Datagram(now + self.timeout, None)
            if self._per_source:
                self._sources.setdefault(key[0], [0, 0])[1] += 1
        total = dgram.total
        if not more:
            if total is not None and total != end:
                counters.drop("frag_bad_length")
                self._discard(key)
                return None
            total = end
        if total is not None and (end > total or any(e > total for _, e, _ in dgram.parts)):
            counters.drop("frag_bad_length")
            self._discard(key)
            return None
        for start, stop, held in dgram.parts:
            if start < end and offset < stop:
                if start == offset and stop == end and held == data:
                    counters.drop("frag_duplicate")
                    return None
                counters.drop("frag_overlap")
                self._discard(key)
                return None
        if len(dgram.parts) >= self.max_fragments:
            counters.drop("frag_too_many")
            self._discard(key)
            return None
        if self._per_source and not self._source_room(key, size, False):
            return None
        while self.held + size > self.memory and self._datagrams:
            oldest = next(iter(self._datagrams))
            if oldest == key:
                counters.drop("frag_memory")
                self._discard(key)
                return None
            self._evict_oldest()
        dgram.total = total
        dgram.parts.append((offset, end, bytes(data)))
        dgram.held += size
        self.held += size
        if self._per_source:
            self._sources[key[0]][0] += size
        if offset == 0:
            dgram.info = info
        if total is None or dgram.held != total:
            return None
        # No overlaps and every byte of 0..total held: the datagram is whole.
        self._discard(key)
        self.reassembled += 1
        dgram.parts.sort()
        return b"".join(part for _, _, part in dgram.parts), dgram.info

    def _source_room(self, key: Hashable, size: int, new: bool) -> bool:
        """Make room within ``key``'s source's bounds for ``size`` more bytes (and, when
        ``new``, one more datagram) by evicting that source's oldest other datagrams; False
        (``key``'s datagram dropped) when only ``key``'s own datagram is left to evict."""
        source = key[0]
        limit_bytes = self.source_memory
        limit_count = self.source_datagrams
        while True:
            held, count = self._sources.get(source, (0, 0))
            if (limit_bytes is None or held + size <= limit_bytes) and \
                    (not new or limit_count is None or count < limit_count):
                return True
            victim = next((k for k in self._datagrams if k[0] == source and k != key), None)
            self.counters.drop("frag_source_limit")
            if victim is None:
                self._discard(key)
                return False
            self._discard(victim)

    def _discard(self, key: Hashable) -> None:
        dgram = self._datagrams.pop(key, None)
        if dgram is not None:
            self.held -= dgram.held
            if self._per_source:
                entry = self._sources[key[0]]
                entry[0] -= dgram.held
                entry[1] -= 1
                if not entry[1]:
                    del self._sources[key[0]]

    def source_held(self, source: object) -> tuple[int, int]:
        """``(bytes held, datagrams in progress)`` of ``source`` (with the per-source
        bounds; ``(0, 0)`` without them)."""
        entry = self._sources.get(source)
        return (entry[0], entry[1]) if entry else (0, 0)

    def _evict_oldest(self) -> None:
        key = next(iter(self._datagrams))
        self.counters.drop("frag_evicted")
        self._discard(key)

    def next_deadline(self) -> float | None:
        """When the oldest datagram times out (datagrams are kept in arrival order)."""
        if not self._datagrams:
            return None
        for dgram in self._datagrams.values():
            return dgram.deadline
        return None

    def poll(self, now: float) -> list[object]:
        """Drop the datagrams that timed out; returns their ``info`` where the first fragment
        had come (RFC 792 allows a time-exceeded error for those)."""
        expired = []
        datagrams = self._datagrams
        while datagrams:
            key, dgram = next(iter(datagrams.items()))
            if dgram.deadline > now:
                break
            self.counters.drop("frag_timeout")
            self._discard(key)
            if dgram.info is not None:
                expired.append(dgram.info)
        return expired
