"""A bounded simulation run: async testbenches on ``amaranth.sim.Simulator`` that fail the test
after a cycle limit instead of hanging it."""

import gc
import sys
from collections.abc import Awaitable, Callable

from amaranth.sim import Simulator

__all__ = ["SimulationTimeout", "run_simulation"]

Testbench = Callable[[object], Awaitable[None]]


class SimulationTimeout(AssertionError):
    """The testbenches of a :func:`run_simulation` were not done within its cycle limit."""


def run_simulation(dut, *testbenches: Testbench, background: tuple[Testbench, ...] = (),
                   cycle_limit: int, clock_period: float = 1e-8, vcd: str | None = None
                   ) -> None:
    """Simulate ``dut`` with one clock on its ``sync`` domain until every testbench is done.

    Parameters
    ----------
    dut :
        The elaboratable under test.
    *testbenches :
        ``async def bench(ctx)`` functions; the run ends when all of them have returned.
        They start together at time 0, in the order given.
    background :
        Testbenches that run beside them (models, monitors) and are dropped, wherever they
        are, once the others are done.
    cycle_limit :
        Clock cycles the run may take. Past it the run raises :class:`SimulationTimeout`
        naming the testbenches still running; an exception in any testbench propagates.
    clock_period :
        Seconds per cycle of ``sync``.
    vcd :
        A file to write the waveforms to, for debugging.
    """
    if cycle_limit < 1:
        raise ValueError(f"cycle_limit must be a positive number of cycles, not {cycle_limit!r}")
    running = {}

    def tracked(bench, key):
        async def run(ctx):
            await bench(ctx)
            del running[key]
        return run

    async def watchdog(ctx):
        # One delay, not a tick per cycle: the limit costs the simulation nothing.
        await ctx.delay(cycle_limit * clock_period)
        raise SimulationTimeout(
            f"not done after {cycle_limit} cycles: {', '.join(running.values())} still "
            f"running (a hang, or a cycle_limit too small for the traffic)")

    sim = Simulator(dut)
    sim.add_clock(clock_period)
    for key, bench in enumerate(testbenches):
        running[key] = getattr(bench, "__qualname__", repr(bench))
        sim.add_testbench(tracked(bench, key))
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.add_testbench(watchdog, background=True)
    message = None
    try:
        if vcd is None:
            sim.run()
        else:
            with sim.write_vcd(vcd):
                sim.run()
    except SimulationTimeout as timeout:
        message = str(timeout)
    if message is not None:
        del sim
        _finalize_abandoned_testbenches()
        raise SimulationTimeout(message)
    assert not running, f"testbenches not done: {', '.join(running.values())}"


def _finalize_abandoned_testbenches():
    """Collect the testbenches a timeout left mid-wait, now rather than in a later test.

    A coroutine abandoned inside ``ctx.tick().until(...)`` or ``.repeat(...)`` (async
    generators) cannot close them when it is finalized and reports a ``RuntimeError`` as an
    unraisable exception; that report would fail whichever test runs next."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda report: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
