"""A stream source and sink with seeded random gaps and stalls.

Both work on an ``amaranth.lib.stream`` interface or any object with ``valid``, ``ready`` and
``payload`` signals; payloads are integers (the packed value of a ``data.View``, see
:func:`kit.pack`). They can be used two ways:

* as their own testbenches: ``await source.run(ctx)``, ``await sink.receive(ctx, n)``;
* in lockstep from one testbench that also drives other ports: each cycle call
  :meth:`~StreamSource.drive` on both, tick sampling their signals, then
  :meth:`~StreamSource.update` (or let :func:`step` do the three).

Cycle numbers (``taken_at``, ``emitted_at``) count the clock edges an object has seen, from 0:
objects that start together, or step together, agree on them. The random draws are made in a
fixed order (a source's gap before a sink's stall when they share an ``rng`` in :func:`step`),
so a seed replays a run exactly.
"""

import random
from collections import deque
from collections.abc import Callable, Iterable

from amaranth.hdl import Value

__all__ = ["seeded_rng", "HoldRule", "StreamAgent", "StreamSource", "StreamSink", "step"]


def seeded_rng(seed: int, name: str = "seed") -> random.Random:
    """A ``random.Random(seed)`` whose seed is printed first (pytest shows it on a failure)."""
    print(f"{name}={seed:#x}")
    return random.Random(seed)


class HoldRule:
    """The stream (and AXI) rule, checked on named channels: a payload offered but not taken
    (``valid`` high, ``ready`` low) is offered again, unchanged, in the next cycle.

    For ports that are not a ``stream`` interface (AXI channels of separate signals, a model's
    view of several ports); a :class:`StreamSink` checks its own stream with one of these.
    """

    def __init__(self):
        self.held = {}

    def check(self, channel: str, valid, payload, ready, *, cycle: int) -> bool:
        """One cycle of ``channel`` (``payload`` any comparable value): fails if a payload left
        waiting the cycle before was dropped or changed; returns whether it is taken now."""
        held = self.held.pop(channel, None)
        if held is not None:
            assert valid and payload == held, (
                f"{channel}, cycle {cycle}: a stalled payload was "
                f"{'changed' if valid else 'dropped'} before it was taken")
        if valid and not ready:
            self.held[channel] = payload
        return bool(valid and ready)


class StreamAgent:
    """What a :class:`StreamSource` and a :class:`StreamSink` share.

    Parameters
    ----------
    stream :
        The DUT's stream: an ``amaranth.lib.stream`` interface, or any object with ``valid``,
        ``ready`` and ``payload``.
    rng :
        The random source of the gaps or stalls (see :func:`seeded_rng`), possibly shared
        with other objects of the bench.
    seed :
        Instead of ``rng``: a generator of its own with this seed (printed, and kept as
        ``seed``).
    name :
        For messages.
    """

    def __init__(self, stream, rng: random.Random | None, seed: int | None, name: str):
        if (rng is None) == (seed is None):
            raise ValueError(f"{name}: give either rng (a shared generator) or seed, not "
                             f"{'both' if rng is not None else 'neither'}")
        self.rng = rng if rng is not None else seeded_rng(seed, f"{name} seed")
        self.stream, self.seed, self.name = stream, seed, name
        self.payload = Value.cast(stream.payload)
        self.cycle = 0


class StreamSource(StreamAgent):
    """Offers payloads in order on ``stream``; each one is held until ``ready`` takes it.

    Parameters
    ----------
    stream, rng, seed, name :
        See :class:`StreamAgent`; ``valid`` and ``payload`` are driven, ``ready`` sampled.
    gap :
        The chance that the source stays idle for a cycle before offering the next payload
        (one draw per cycle while it has a payload to offer and none on offer).
    idle_payload :
        Called on every idle cycle for a value to put on ``payload`` while ``valid`` is low
        (garbage that must not be taken); by default the payload keeps its last value.

    Members
    -------
    taken_at : list[int]
        The cycle at which each payload was taken.
    stalls : int
        Cycles with a payload on offer that ``ready`` did not take.
    """

    def __init__(self, stream, *, rng: random.Random | None = None, seed: int | None = None,
                 gap: float = 0.0, idle_payload: Callable[[], int] | None = None,
                 name: str = "source"):
        if not 0.0 <= gap < 1.0:
            raise ValueError(f"gap is a chance per cycle in [0, 1), not {gap!r}")
        super().__init__(stream, rng, seed, name)
        self.gap, self.idle_payload = gap, idle_payload
        self.pending = deque()
        self.offered = None
        self.taken_at = []
        self.stalls = 0

    def send(self, *payloads: int) -> None:
        """Queue ``payloads`` to be offered after those already queued."""
        self.extend(payloads)

    def extend(self, payloads: Iterable[int]) -> None:
        """Queue every payload of ``payloads``."""
        self.pending.extend(payloads)

    @property
    def done(self) -> bool:
        """Every payload queued so far has been taken."""
        return self.offered is None and not self.pending

    @property
    def sampled(self) -> tuple:
        """The signals :meth:`update` takes, in order, sampled at the clock edge."""
        return (self.stream.ready,)

    def drive(self, ctx) -> None:
        """Before a clock edge: offer the next payload unless this cycle is a gap."""
        if self.offered is None and self.pending and self.rng.random() >= self.gap:
            self.offered = self.pending.popleft()
            ctx.set(self.payload, self.offered)
        elif self.offered is None and self.idle_payload is not None:
            ctx.set(self.payload, self.idle_payload())
        ctx.set(self.stream.valid, self.offered is not None)

    def update(self, ready) -> int | None:
        """After the edge, with ``ready`` as sampled there: the payload taken, if any."""
        taken = None
        if self.offered is not None:
            if ready:
                taken, self.offered = self.offered, None
                self.taken_at.append(self.cycle)
            else:
                self.stalls += 1
        self.cycle += 1
        return taken

    async def run(self, ctx) -> None:
        """Offer every queued payload until all are taken; ``valid`` is low afterwards."""
        while not self.done:
            await step(ctx, self)
        ctx.set(self.stream.valid, 0)


class StreamSink(StreamAgent):
    """Takes payloads from ``stream``, with ``ready`` low at random, and checks that a payload
    on offer is held (``valid`` stays high, the payload unchanged) until it is taken.

    Parameters
    ----------
    stream, rng, seed, name :
        See :class:`StreamAgent`; ``ready`` is driven, ``valid`` and ``payload`` sampled.
    stall :
        The chance that ``ready`` is low in a cycle (one draw per cycle).
    check_hold :
        Whether to check the hold rule; off only for a DUT that does not promise it.

    Members
    -------
    received : list[int]
        The payloads taken, in order.
    emitted_at : list[int]
        The cycle at which each was taken.
    """

    def __init__(self, stream, *, rng: random.Random | None = None, seed: int | None = None,
                 stall: float = 0.0, check_hold: bool = True, name: str = "sink"):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"stall is a chance per cycle in [0, 1), not {stall!r}")
        super().__init__(stream, rng, seed, name)
        self.stall, self.check_hold = stall, check_hold
        self.ready = False
        self.rule = HoldRule()
        self.received = []
        self.emitted_at = []

    @property
    def sampled(self) -> tuple:
        """The signals :meth:`update` takes, in order, sampled at the clock edge."""
        return (self.stream.valid, self.payload)

    def drive(self, ctx, *, may_take: bool = True) -> None:
        """Before a clock edge: ``ready`` high unless this cycle stalls. With ``may_take``
        false (the bench's model cannot take a payload now) ``ready`` is low and nothing is
        drawn."""
        self.ready = may_take and self.rng.random() >= self.stall
        ctx.set(self.stream.ready, self.ready)

    def update(self, valid, payload) -> int | None:
        """After the edge, with ``valid`` and ``payload`` as sampled there: the payload taken,
        if any. Fails if a payload left waiting the cycle before was dropped or changed."""
        if self.check_hold:
            self.rule.check(self.name, valid, payload, self.ready, cycle=self.cycle)
        taken = None
        if valid and self.ready:
            taken = payload
            self.received.append(payload)
            self.emitted_at.append(self.cycle)
        self.cycle += 1
        return taken

    async def receive(self, ctx, count: int) -> list[int]:
        """Take payloads until ``count`` have been received in all; return them all."""
        while len(self.received) < count:
            await step(ctx, self)
        return self.received

    async def expect_idle(self, ctx, cycles: int) -> None:
        """Nothing left in flight: with ``ready`` high, ``valid`` stays low for ``cycles``."""
        self.ready = True
        ctx.set(self.stream.ready, 1)
        for _ in range(cycles):
            *_, valid, payload = await ctx.tick().sample(*self.sampled)
            assert not valid, (f"{self.name}, cycle {self.cycle}: a payload nobody sent "
                               f"({payload:#x}) after the {len(self.received)} expected")
            self.cycle += 1


async def step(ctx, *agents, sample: tuple = ()) -> tuple:
    """One clock cycle of ``agents`` (sources and sinks) in lockstep: drive each in order,
    tick, update each with its signals as sampled at the edge. Returns the values of the
    extra ``sample`` signals at the same edge."""
    for agent in agents:
        agent.drive(ctx)
    signals = [signal for agent in agents for signal in agent.sampled]
    values = await ctx.tick().sample(*signals, *sample)
    values = values[len(values) - len(signals) - len(sample):]     # after the clock and reset
    for agent in agents:
        count = len(agent.sampled)
        agent.update(*values[:count])
        values = values[count:]
    return tuple(values)
