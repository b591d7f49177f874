# Ref: AMBA AXI4-Stream register slice ("full" mode); the same buffer Corundum and
#      verilog-axis call a skid buffer (axis_register with REG_TYPE=2).
"""A stream register slice: cuts every combinational path between two stream stages."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A two-entry register slice between a stream source and sink, at full throughput.

    ``o.valid`` and ``o.payload`` come straight from registers, and so does ``i.ready``: no
    combinational path crosses the slice in either direction. A long ``ready`` chain through
    several stages, which fans out to every payload register's enable, is what limits the
    clock of a pipeline built from stages that each pass ``ready`` on combinationally; one
    slice between two stages ends that chain.

    When ``o`` stalls, the beat taken in the same cycle goes to the skid register; ``i.ready``
    falls while the skid register is full. Records leave in the order they came, one per
    cycle while ``o.ready`` is high; latency one cycle.

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """
    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)),
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):       # the output register loads
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload),
                             self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):       # output stalled: keep the new beat
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
