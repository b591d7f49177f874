"""Adaptive RSS in the loop: a policy that reads the NIC's counters while traffic flows and
reprograms its key and indirection table.

Every call of :meth:`RssPolicyLoop.step` (the caller decides when: every N cycles in a
simulation, every 100 ms on a board) takes the per-bucket packet counts since the previous
step from the NIC's ``BUCKET_PACKETS`` counters, lets the key selector (if any) and the RETA
balancer decide, writes what changed and commits. The driver's generation ordering
(:mod:`hetnic.host.ordering`) keeps every flow in order across the change, and a commit
drops no frame, so reconfiguration loses and reorders nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import default_reta
from .rss_policy import FlowSet, KeySelector, RetaBalancer, scores

__all__ = ["RssPolicyLoop", "LoopDecision"]


@dataclass(frozen=True)
class LoopDecision:
    """What one :meth:`RssPolicyLoop.step` saw and did."""
    generation: int | None      # the new generation, or None when nothing changed
    packets: int                # packets the window's bucket counters saw
    max_mean_before: float      # max/mean of the window under the table it was steered with
    max_mean_planned: float     # the same window under the new table (the balancer's estimate)
    key_switched: bool
    buckets_moved: int
    seconds: float


class RssPolicyLoop:
    """Adaptive RSS driving a :class:`~hetnic.host.nic.Nic`.

    Parameters
    ----------
    nic : Nic
    balancer : RetaBalancer, optional
        Moves RETA buckets from the most to the least loaded queues.
    selector : KeySelector, optional
        Scores candidate keys on the window's flows; needs ``flows``.
    flows : callable, optional
        Returns the :class:`~hetnic.host.rss_policy.FlowSet` of the window that just ended
        (software knows its flows from what it received; the NIC counts only buckets).
    """

    def __init__(self, nic, *, balancer: RetaBalancer | None = None,
                 selector: KeySelector | None = None,
                 flows: Callable[[], FlowSet] | None = None):
        if selector is not None and flows is None:
            raise ValueError("a key selector needs the window's flows: pass flows=")
        if selector is not None:
            selector.key = nic.rss.key
        self.nic, self.balancer, self.selector, self.flows = nic, balancer, selector, flows
        self.queues = nic.queue_count       # the RX queues the driver uses
        self.reta_size = nic.regmap.params["reta_size"]
        self._names = [f"bucket_packets[{i}]" for i in range(self.reta_size)]
        self._last = self._buckets()
        self.decisions: list[LoopDecision] = []

    def _buckets(self) -> np.ndarray:
        counters = self.nic.counters()
        return np.array([counters[n] for n in self._names], dtype=np.int64)

    def step(self) -> LoopDecision:
        """Decide on the window since the last step, program and commit the change."""
        t0 = time.perf_counter()
        now = self._buckets()
        loads, self._last = now - self._last, now
        table = list(self.nic.rss.table)
        before = scores(np.bincount(np.asarray(table), weights=loads,
                                    minlength=self.queues)).max_mean
        switched, moved = False, 0
        if self.selector is not None:
            decision = self.selector.decide(self.flows(), table, self.queues)
            if decision.key is not None:
                self.nic.rss.set_key(decision.key)
                table = default_reta(self.queues, self.reta_size)
                self.nic.rss.set_table(table)
                switched = True
                # The window's bucket loads were measured under the old key: the balancer
                # waits for a window under the new one.
        planned = before
        if self.balancer is not None and not switched:
            balance = self.balancer.rebalance(loads, table, self.queues)
            if balance.moves:
                self.nic.rss.set_table(balance.table)
                moved = len(balance.moves)
                planned = balance.after
        generation = self.nic.commit() if switched or moved else None
        decision = LoopDecision(generation, int(loads.sum()), before, planned, switched, moved,
                                time.perf_counter() - t0)
        self.decisions.append(decision)
        return decision
