# Ref: RFC 6675 (conservative SACK-based loss recovery: the scoreboard, IsLost, NextSeg,
#      SetPipe), RFC 2018 (the SACK option).
"""The data sender's SACK scoreboard (RFC 6675 section 3 and 4).

The scoreboard keeps the SACKed ranges above ``snd_una`` as a sorted list of disjoint,
non-adjacent intervals, stored as unwrapped stream positions (so comparisons need no modulo
arithmetic) and converted from and to 32-bit sequence numbers at the API. Queries bisect the
interval list; byte counts over a range use prefix sums rebuilt lazily after an update, so
:meth:`SackScoreboard.pipe` is O(log n) plus a short walk from the top, not a loop over
octets or segments, and hundreds of holes stay cheap.

``IsLost`` is monotone in the sequence number (everything SACKed above a number is also above
any lower one), so the scoreboard computes one *loss threshold*: every unSACKed byte below it
is lost, every one at or above it is not. ``SetPipe`` and ``NextSeg`` both use it.

Sequence arguments are 32-bit sequence numbers. ``high_rxt`` is *exclusive*: the sequence
number just past the highest byte retransmitted in this recovery (``snd_una`` when nothing has
been; RFC 6675 ``HighRxt`` is that minus one).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate

from .tcp_segment import seq_diff

__all__ = ["SackScoreboard", "DUPTHRESH"]

#: RFC 6675's DupThresh: segments SACKed above a hole before it counts as lost.
DUPTHRESH = 3

_MASK = 0xFFFFFFFF


class SackScoreboard:
    """SACKed ranges above ``snd_una``, with RFC 6675's IsLost, NextSeg and SetPipe.

    Members
    -------
    sacked_bytes : int
        Bytes SACKed above ``snd_una``.
    highest_sacked : int or None
        The sequence number just past the highest SACKed byte (``None`` when nothing is).
    """

    __slots__ = ("_una_seq", "_una", "_starts", "_ends", "_cum")

    def __init__(self) -> None:
        self._una_seq = 0            # snd_una as a sequence number ...
        self._una = 0                # ... and as an unwrapped position
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._cum: list[int] | None = [0]   # prefix sums of block lengths; None: stale

    # --- Conversions ---------------------------------------------------------------------

    def _pos(self, seq: int) -> int:
        return self._una + seq_diff(seq, self._una_seq)

    def _seq(self, pos: int) -> int:
        return (pos - self._una + self._una_seq) & _MASK

    def _sums(self) -> list[int]:
        cum = self._cum
        if cum is None:
            cum = self._cum = list(accumulate(map(int.__sub__, self._ends, self._starts),
                                              initial=0))
        return cum

    # --- Updates -------------------------------------------------------------------------

    def update(self, snd_una: int, blocks, snd_nxt: int | None = None) -> int:
        """Take a cumulative ACK and the SACK blocks that came with it.

        Parameters
        ----------
        snd_una : int
            The (new) oldest unacknowledged sequence number. Ranges at or below it are
            forgotten.
        blocks : iterable of (int, int)
            SACK blocks ``(left, right)``, right exclusive, as parsed from the option.
            Empty, inverted, wholly acknowledged (D-SACK) blocks and, if ``snd_nxt`` is
            given, blocks reaching past it are ignored (RFC 2883, RFC 6675 section 5.1).
        snd_nxt : int, optional
            The next sequence number to be sent, to reject blocks for data never sent.

        Returns
        -------
        int
            Bytes SACKed by this ACK that were not SACKed before.
        """
        if self._starts:
            advance = seq_diff(snd_una, self._una_seq)
            if advance > 0:
                self._una += advance
                self._una_seq = snd_una
                self._forget_below(self._una)
        else:
            self._una_seq = snd_una
        una = self._una
        top = self._pos(snd_nxt) if snd_nxt is not None else None
        new = 0
        for left, right in blocks:
            start, end = self._pos(left), self._pos(right)
            if start < una:
                start = una
            if end <= start or (top is not None and end > top):
                continue
            new += self._add(start, end)
        if new:
            self._cum = None
        return new

    def _forget_below(self, una: int) -> None:
        starts, ends = self._starts, self._ends
        k = bisect_right(ends, una)
        if k:
            del starts[:k], ends[:k]
        if starts and starts[0] < una:
            starts[0] = una
        self._cum = None

    def _add(self, start: int, end: int) -> int:
        """Merge ``[start, end)``; returns the bytes that were not SACKed before."""
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, start)        # first block ending at or after start
        j = bisect_right(starts, end)       # blocks starting at or before end merge
        covered = 0
        for k in range(i, j):           # these touch [start, end); count what they overlap
            overlap = min(ends[k], end) - max(starts[k], start)
            if overlap > 0:
                covered += overlap
        if i < j:
            new_start, new_end = min(start, starts[i]), max(end, ends[j - 1])
        else:
            new_start, new_end = start, end
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        return (end - start) - covered

    def clear(self) -> None:
        """Forget every SACKed range (after an RTO, RFC 6675 section 5.1, or a reset)."""
        self._starts.clear()
        self._ends.clear()
        self._cum = [0]

    # --- Queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of disjoint SACKed ranges."""
        return len(self._starts)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        """The SACKed ranges as ``(left, right)`` sequence numbers, lowest first."""
        return [(self._seq(s), self._seq(e)) for s, e in zip(self._starts, self._ends)]

    @property
    def sacked_bytes(self) -> int:
        return self._sums()[-1]

    @property
    def highest_sacked(self) -> int | None:
        return self._seq(self._ends[-1]) if self._ends else None

    def is_sacked(self, seq: int) -> bool:
        """Whether the byte ``seq`` has been SACKed."""
        pos = self._pos(seq)
        k = bisect_right(self._starts, pos) - 1
        return k >= 0 and pos < self._ends[k]

    def _lost_below(self, mss: int, dupthresh: int) -> int:
        """The loss threshold: unSACKed bytes below it are lost (IsLost true), others not."""
        starts, ends = self._starts, self._ends
        n = len(ends)
        if not n:
            return self._una
        # dupthresh discontiguous SACKed ranges above the byte.
        threshold = ends[n - dupthresh] if n >= dupthresh else self._una
        # More than (dupthresh - 1) * mss SACKed bytes above the byte.
        limit = (dupthresh - 1) * mss
        above = 0
        for k in range(n - 1, -1, -1):
            length = ends[k] - starts[k]
            if above + length > limit:
                return max(threshold, ends[k] - limit + above)
            above += length
        return threshold

    def is_lost(self, seq: int, mss: int, dupthresh: int = DUPTHRESH) -> bool:
        """RFC 6675 IsLost(seq): ``dupthresh`` SACKed ranges, or more than
        ``(dupthresh - 1) * mss`` SACKed bytes, lie above ``seq`` (meaningful for
        unSACKed bytes at or above ``snd_una``)."""
        return bool(self._ends) and self._pos(seq) < self._lost_below(mss, dupthresh)

    def _sacked_between(self, start: int, end: int) -> int:
        """SACKed bytes in positions ``[start, end)``."""
        if end <= start:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)
        j = bisect_left(starts, end)
        if i >= j:
            return 0
        cum = self._sums()
        total = cum[j] - cum[i]
        if starts[i] < start:
            total -= start - starts[i]
        if ends[j - 1] > end:
            total -= ends[j - 1] - end
        return total

    def pipe(self, snd_una: int, snd_nxt: int, high_rxt: int, mss: int,
             dupthresh: int = DUPTHRESH) -> int:
        """RFC 6675 SetPipe(): the bytes estimated in flight.

        Every unSACKed byte in ``[snd_una, snd_nxt)`` counts once if it is not lost and once
        more if it lies below ``high_rxt`` (it was retransmitted).
        """
        if not self._starts:
            self._una_seq = snd_una           # empty: positions may be rebased freely
        una, nxt = self._pos(snd_una), self._pos(snd_nxt)
        if nxt <= una:
            return 0
        lost = max(una, min(self._lost_below(mss, dupthresh), nxt))
        rxt = max(una, min(self._pos(high_rxt), nxt))
        return ((nxt - lost) - self._sacked_between(lost, nxt)
                + (rxt - una) - self._sacked_between(una, rxt))

    def next_seg(self, snd_una: int, snd_nxt: int, mss: int, high_rxt: int, *,
                 new_data: int = 0, dupthresh: int = DUPTHRESH) -> tuple[int, int] | None:
        """RFC 6675 NextSeg(): what to send next during SACK recovery.

        Parameters
        ----------
        snd_una, snd_nxt, high_rxt : int
            Sequence numbers (``high_rxt`` exclusive, see the module docstring).
        mss : int
        new_data : int
            Bytes of new data the send buffer holds *and* the peer's window allows from
            ``snd_nxt``. Rule 2 applies only when it is positive; with the default 0 a
            caller that sends new data itself must do so before asking for rule 3.

        Returns
        -------
        (int, int) or None
            ``(seq, length)``: by rule 1 the first lost, unSACKed, not yet retransmitted
            hole below the highest SACKed byte (length up to ``mss``, not into SACKed data);
            by rule 2 ``(snd_nxt, min(mss, new_data))``; by rule 3 the first unSACKed,
            not yet retransmitted hole below the highest SACKed byte even if not lost;
            otherwise ``None``.
        """
        starts, ends = self._starts, self._ends
        if not starts:
            self._una_seq = snd_una
        una, nxt = self._pos(snd_una), self._pos(snd_nxt)
        pos = max(una, self._pos(high_rxt))
        k = bisect_right(starts, pos) - 1
        if k >= 0 and pos < ends[k]:
            pos = ends[k]                   # the first unSACKed byte at or after pos
        k += 1                              # the block after pos, if any
        top = ends[-1] if ends else una
        hole = pos < top and pos < nxt
        if hole and pos < self._lost_below(mss, dupthresh):
            return self._segment(pos, k, mss, nxt)
        if new_data > 0:
            return snd_nxt, min(mss, new_data)
        if hole:
            return self._segment(pos, k, mss, nxt)
        return None

    def _segment(self, pos: int, k: int, mss: int, nxt: int) -> tuple[int, int]:
        end = pos + mss
        if k < len(self._starts) and self._starts[k] < end:
            end = self._starts[k]
        if end > nxt:
            end = nxt
        return self._seq(pos), end - pos
