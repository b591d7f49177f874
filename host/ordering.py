"""Per-flow delivery order across configuration changes.

A new key or RETA moves flows between RX queues, and each queue is served by its own
consumer. Without care, a consumer that polls a flow's new queue sooner than another polls
its old one gets the flow's newer packets first. The NIC gives the driver what it needs to
prevent that:

* every completion carries the configuration *generation* its frame was steered with, and a
  commit applies between frames, so one generation's frames all precede the next one's;
* the RX queues handle frames in arrival order and write their completions to host memory
  in that order, so once a completion of generation ``g`` is visible in *any* ring, every
  completion of an older generation is visible in its ring too.

So when the driver first sees a packet of a newer generation it *sweeps*: it reaps every
queue's ring into a per-queue stash, repeating until a pass finds no newer generation. After
that every older packet is in a stash, and a packet ``p`` (queue ``B``, generation ``g``) may
be handed to software once no other queue's stash still holds an older packet of the same
flow — the same RSS hash, or any older packet at all if the key (or another hash setting)
changed between the two generations, since the hash then no longer identifies the flow.
A held packet holds the rest of its queue behind it (queues stay FIFO). Hash collisions only
hold packets longer, never reorder them.
"""

from __future__ import annotations

from collections import Counter, deque

__all__ = ["GenerationOrder", "GENERATION_MODULUS"]

#: Generations are 16-bit and wrap.
GENERATION_MODULUS = 1 << 16


def _older(a: int, b: int) -> bool:
    """Generation ``a`` is before ``b`` (modulo wrap; they are never 2**15 apart)."""
    return 0 < (b - a) % GENERATION_MODULUS < GENERATION_MODULUS // 2


class GenerationOrder:
    """The stashes and bookkeeping of :mod:`hetnic.host.ordering` for ``queues`` RX queues.

    The driver calls :meth:`take` with what it reaps from a queue's ring, :meth:`sweep_needed`
    to learn whether it must reap every queue first, and :meth:`deliver` to get the packets
    that may go to the queue's consumer now.
    """

    def __init__(self, queues: int, generation: int):
        self.stash = [deque() for _ in range(queues)]
        self.swept = generation         # every packet older than this is stashed
        self._gens = [Counter() for _ in range(queues)]        # queue -> generation -> n
        self._flows = [Counter() for _ in range(queues)]       # queue -> (gen, hash) -> n
        self._all_gens: Counter = Counter()
        self._hash_changes: list[int] = []   # generations whose commit changed the hash
        self.held = 0                   # deliveries postponed so far (a statistic)

    # --- bookkeeping ---------------------------------------------------------------------
    @staticmethod
    def is_older(a: int, b: int) -> bool:
        """Generation ``a`` is before ``b``."""
        return _older(a, b)

    def hash_changed(self, generation: int) -> None:
        """The commit that made ``generation`` changed the key or hash settings."""
        self._hash_changes.append(generation)
        del self._hash_changes[:-64]    # only recent ones can still matter

    @property
    def empty(self) -> bool:
        """No packet is stashed in any queue: a queue's reaped packets of a generation no
        newer than the last sweep may go straight to software."""
        return not self._all_gens

    def sweep_needed(self, packets) -> int | None:
        """The newest generation among ``packets`` if it is newer than the last sweep."""
        newest = None
        for p in packets:
            if _older(self.swept, p.generation) and (newest is None
                                                     or _older(newest, p.generation)):
                newest = p.generation
        return newest

    def take(self, queue: int, packets) -> None:
        """Stash packets reaped from ``queue``'s ring (in ring order)."""
        stash, gens, flows = self.stash[queue], self._gens[queue], self._flows[queue]
        for p in packets:
            stash.append(p)
            gens[p.generation] += 1
            flows[p.generation, p.hash] += 1
            self._all_gens[p.generation] += 1

    # --- delivery ------------------------------------------------------------------------
    def deliver(self, queue: int, limit: int) -> list:
        """Up to ``limit`` packets of ``queue`` that may be handed to software now."""
        stash, out = self.stash[queue], []
        while stash and len(out) < limit:
            p = stash[0]
            if len(self._all_gens) > 1 and self._must_wait(queue, p):
                self.held += 1
                break
            stash.popleft()
            self._forget(queue, p)
            out.append(p)
        return out

    def _must_wait(self, queue: int, p) -> bool:
        for other, gens in enumerate(self._gens):
            if other == queue:
                continue
            for g, n in gens.items():
                if n and _older(g, p.generation) and (
                        self._hash_changed_between(g, p.generation)
                        or self._flows[other][g, p.hash]):
                    return True
        return False

    def _hash_changed_between(self, old: int, new: int) -> bool:
        return any(_older(old, k) and not _older(new, k) for k in self._hash_changes)

    def _forget(self, queue: int, p) -> None:
        g = p.generation
        for counter, key in ((self._gens[queue], g), (self._flows[queue], (g, p.hash)),
                             (self._all_gens, g)):
            counter[key] -= 1
            if not counter[key]:
                del counter[key]
