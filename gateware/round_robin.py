"""Round-robin choice among requesters: the one grant logic behind every arbiter of the core
(the DMA engine's request arbiters, :class:`~.event_queues.EventArbiter`)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin"]


class RoundRobin(wiring.Component):
    """Grants, of the requesters asking, the first one after the one served last.

    ``grant`` and ``valid`` follow ``requests`` in the same cycle (no register between
    them). The requester served last is remembered from the edge at which ``served_stb`` is
    high: the one granted in that cycle. After reset requester 0 counts as served last, so
    the search starts at requester 1. A requester that keeps asking is granted at least once
    in every ``n`` grants that are served.

    Parameters
    ----------
    n : int
        Requesters, at least 1.

    Members
    -------
    requests : In(n)
        Bit ``i``: requester ``i`` asks.
    grant : Out(range(n))
        The first asking requester after the one served last, wrapping around; 0 while
        none asks.
    valid : Out(1)
        Some requester asks (``grant`` names one of them).
    served_stb : In(1)
        The granted requester is served in this cycle. Ignored while ``valid`` is low.
    """
    def __init__(self, n):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, not {n!r}")
        self.n = n
        super().__init__({
            "requests": In(n),
            "grant": Out(range(n)),
            "valid": Out(1),
            "served_stb": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        last = Signal(range(n))             # the requester served last
        with m.Switch(last):
            for prev in range(n):
                with m.Case(prev):
                    for k in reversed(range(n)):    # the last assignment has priority
                        with m.If(self.requests[(prev + 1 + k) % n]):
                            m.d.comb += self.grant.eq((prev + 1 + k) % n)
        m.d.comb += self.valid.eq(self.requests.any())
        with m.If(self.served_stb & self.valid):
            m.d.sync += last.eq(self.grant)
        return m
