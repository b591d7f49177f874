# Ref: RFC 826 (ARP), RFC 4861 section 7.3 (neighbour unreachability detection, cache states),
#      RFC 1122 section 2.3.2.2 (queueing packets while resolving).
"""The neighbour cache shared by ARP (IPv4, 4-byte keys) and NDP (IPv6, 16-byte keys).

Each entry maps an on-link IP address to a MAC and walks a simplified RFC 4861 state machine:

``INCOMPLETE``
    Being resolved: solicitations are sent every ``retry_interval`` s, up to ``retries``
    times; IP packets wait in a bounded queue. Out of retries: the entry and its queue are
    dropped (counted ``"arp_unresolved"``).
``REACHABLE``
    Confirmed recently (a reply, a solicited NA): used for ``reachable_time`` s.
``STALE``
    Past ``reachable_time``, or learnt without confirmation: still used to send; the first
    packet sent through it moves it to ``DELAY``.
``DELAY``
    Still used to send; if nothing confirms it within ``probe_delay`` s it goes to ``PROBE``.
``PROBE``
    Still used to send; solicitations go out every ``retry_interval`` s. A confirmation makes
    it ``REACHABLE``; ``retries`` unanswered ones delete it.

The cache never sends anything itself: it calls ``solicit(ip, mac_or_None, now)`` (``None``:
broadcast / multicast, a MAC: unicast probe) and hands queued packets back to the caller on
confirmation. Time is the caller's ``now``.
"""

from __future__ import annotations

from collections.abc import Callable

from .counters import StackCounters

__all__ = ["NeighbourCache", "INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE"]

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
DELAY = "DELAY"
PROBE = "PROBE"


class _Entry:
    __slots__ = ("state", "mac", "timer", "tries", "queue")

    def __init__(self, state: str, mac: bytes | None, timer: float | None) -> None:
        self.state = state
        self.mac = mac
        # INCOMPLETE/PROBE: next solicitation; REACHABLE: expiry; DELAY: first probe.
        self.timer = timer
        self.tries = 0
        self.queue: list = []


class NeighbourCache:
    """IP address -> MAC, with resolution, expiry and bounded queues of waiting packets.

    Parameters
    ----------
    counters : StackCounters
        Drops are counted here.
    solicit : callable
        ``solicit(ip, mac, now)``: send an ARP request / neighbour solicitation for ``ip``;
        ``mac`` is ``None`` to broadcast (multicast) or the MAC to probe by unicast.
    on_change : callable
        Called with the IP whenever its MAC or usability changes (the interface drops its
        prebuilt headers for that neighbour).
    reachable_time, retry_interval, retries, probe_delay : float, float, int, float
        See the module docstring.
    queue_per_neighbour, queue_total : int
        Packets waiting for one unresolved neighbour, and for all of them together; a packet
        beyond either bound is dropped (``"arp_queue_full"``).
    max_entries : int
        Entries in all. A new one past it replaces the oldest resolved entry (counted
        ``"neighbour_evicted"``; it is resolved again when next used), or is refused when
        every entry is still being resolved (``"neighbour_table_full"``), so spoofed ARP
        requests or solicitations from many addresses cannot grow the cache without bound.
    """

    def __init__(self, counters: StackCounters, solicit: Callable, on_change: Callable, *,
                 reachable_time: float = 60.0, retry_interval: float = 1.0, retries: int = 3,
                 probe_delay: float = 5.0,
                 queue_per_neighbour: int = 64, queue_total: int = 256,
                 max_entries: int = 1024) -> None:
        self.counters = counters
        self._solicit = solicit
        self._on_change = on_change
        self.reachable_time = reachable_time
        self.retry_interval = retry_interval
        self.retries = retries
        self.probe_delay = probe_delay
        self.queue_per_neighbour = queue_per_neighbour
        self.queue_total = queue_total
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry] = {}
        self._queued = 0
        self._deadline: float | None = None

    # -- queries ---------------------------------------------------------------------------

    def state(self, ip: bytes) -> str | None:
        """The entry's state, or ``None`` when there is no entry."""
        entry = self._entries.get(ip)
        return entry.state if entry else None

    def mac(self, ip: bytes) -> bytes | None:
        """The MAC known for ``ip`` (in any state but ``INCOMPLETE``), else ``None``."""
        entry = self._entries.get(ip)
        return entry.mac if entry else None

    def usable(self, ip: bytes) -> bool:
        """True when packets to ``ip`` may use a prebuilt header (``REACHABLE``)."""
        entry = self._entries.get(ip)
        return entry is not None and entry.state == REACHABLE

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` has work (may be early, never late)."""
        return self._deadline

    # -- sending through the cache ---------------------------------------------------------

    def resolve(self, ip: bytes, packet: object, now: float) -> bytes | None:
        """The MAC to send ``packet`` to ``ip`` with, or ``None`` when the packet was queued
        (or dropped: queue full) while ``ip`` is being resolved."""
        entry = self._entries.get(ip)
        if entry is None:
            if not self._room():
                return None
            entry = self._entries[ip] = _Entry(INCOMPLETE, None, now + self.retry_interval)
            entry.tries = 1
            self._arm(entry.timer)
            self._enqueue(entry, packet)
            self._solicit(ip, None, now)
            return None
        if entry.state == INCOMPLETE:
            self._enqueue(entry, packet)
            return None
        if entry.state == STALE:
            entry.state = DELAY
            entry.timer = now + self.probe_delay
            self._arm(entry.timer)
        return entry.mac

    def _enqueue(self, entry: _Entry, packet: object) -> None:
        if len(entry.queue) >= self.queue_per_neighbour or self._queued >= self.queue_total:
            self.counters.drop("arp_queue_full")
            return
        entry.queue.append(packet)
        self._queued += 1

    # -- learning --------------------------------------------------------------------------

    def update(self, ip: bytes, mac: bytes, now: float, *, confirmed: bool, override: bool = True,
               create: bool = True) -> list:
        """Learn that ``ip`` is at ``mac``; returns the packets that were waiting for it.

        Parameters
        ----------
        confirmed : bool
            The peer proved reachability (an ARP reply or request to us, a solicited NA):
            the entry becomes ``REACHABLE``. Otherwise a new or changed MAC makes it ``STALE``.
        override : bool
            False (an NA without the O flag): a different MAC does not replace a known one.
        create : bool
            False: only refresh an existing entry (RFC 826's merge rule for a packet not
            addressed to us; gratuitous ARP).
        """
        entry = self._entries.get(ip)
        if entry is None:
            if not create or not self._room():
                return []
            entry = self._entries[ip] = _Entry(STALE, mac, None)
            if confirmed:
                entry.state = REACHABLE
                entry.timer = now + self.reachable_time
                self._arm(entry.timer)
            self._on_change(ip)
            return []
        changed = entry.mac is not None and entry.mac != mac
        if changed and not override:
            if entry.state == REACHABLE:
                entry.state = STALE
                entry.timer = None
                self._on_change(ip)
            return []
        waiting = entry.queue
        if waiting:
            entry.queue = []
            self._queued -= len(waiting)
        was = entry.state
        entry.mac = mac
        if confirmed:
            entry.state = REACHABLE
            entry.timer = now + self.reachable_time
            entry.tries = 0
            self._arm(entry.timer)
        elif was == INCOMPLETE or changed:
            entry.state = STALE
            entry.timer = None
        if changed or entry.state != was:
            self._on_change(ip)
        return waiting

    def _room(self) -> bool:
        """Whether a new entry fits (evicting the oldest resolved one if the table is full)."""
        entries = self._entries
        if len(entries) < self.max_entries:
            return True
        for ip, entry in entries.items():
            if entry.state != INCOMPLETE:
                del entries[ip]
                self.counters.drop("neighbour_evicted")
                self._on_change(ip)
                return True
        self.counters.drop("neighbour_table_full")
        return False

    def __len__(self) -> int:
        return len(self._entries)

    def _drop_queue(self, entry: _Entry) -> None:
        if entry.queue:
            self.counters.drop("arp_unresolved", len(entry.queue))
            self._queued -= len(entry.queue)
            entry.queue = []

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self._deadline is None or when < self._deadline:
            self._deadline = when

    def poll(self, now: float) -> None:
        """Retry solicitations, expire ``REACHABLE`` entries, give up on silent neighbours."""
        if self._deadline is None or now < self._deadline:
            return
        earliest: float | None = None
        for ip, entry in list(self._entries.items()):
            timer = entry.timer
            if timer is not None and timer <= now:
                if entry.state == REACHABLE:
                    entry.state = STALE
                    entry.timer = None
                    self._on_change(ip)
                elif entry.state == DELAY:
                    entry.state = PROBE
                    entry.tries = 1
                    entry.timer = now + self.retry_interval
                    self._solicit(ip, entry.mac, now)
                elif entry.tries >= self.retries:
                    del self._entries[ip]
                    self._drop_queue(entry)
                    self._on_change(ip)
                    continue
                else:
                    entry.tries += 1
                    entry.timer = now + self.retry_interval
                    self._solicit(ip, entry.mac if entry.state == PROBE else None, now)
                timer = entry.timer
            if timer is not None and (earliest is None or timer < earliest):
                earliest = timer
        self._deadline = earliest
