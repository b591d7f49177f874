"""The RX pipeline's register path as one component, for the tests of the buses in front of
it (the AXI4-Lite slave, the UART bridge)."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped

from hetnic.gateware.axil import CsrSignature
from hetnic.gateware.counters import RxCounters
from hetnic.gateware.registers import RegisterFile
from hetnic.gateware.reta import IndirectionTable

__all__ = ["RegisterPath"]


class RegisterPath(wiring.Component):
    """A :class:`~hetnic.gateware.registers.RegisterFile` with the indirection table and the
    receive counters it forwards accesses to, wired as in
    :class:`hetnic.gateware.rx_pipeline.RxPipeline`, except that the test decides when a
    pending commit is applied.

    Members
    -------
    csr : In(CsrSignature(16))
        The register file's access port.
    apply_en : In(1)
        A pending commit is applied while this is high and the RETA is not busy (as the
        pipeline does at a frame boundary); low, no commit is ever applied.
    """
    csr: In(CsrSignature(16))
    apply_en: In(1)

    def __init__(self, regmap):
        super().__init__()
        self.regmap = regmap
        self.regs = RegisterFile(regmap)
        self.reta = IndirectionTable(regmap.params["reta_size"])
        self.counters = RxCounters(regmap)

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs, m.submodules.reta = regs, reta = self.regs, self.reta
        m.submodules.counters = self.counters
        connect(m, flipped(self.csr), regs.csr)
        connect(m, regs.counters, self.counters.csr)
        connect(m, regs.reta, reta.bus)
        m.d.comb += [
            regs.commit_apply.eq(regs.commit_pending & ~reta.bus.busy & self.apply_en),
            reta.flip_stb.eq(regs.commit_done),
        ]
        return m
