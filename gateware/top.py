"""Top-level wrappers whose Verilog ports follow AXI naming (``s_axis_tdata``, ...), so
cocotbext-axi binds to them with ``from_prefix``."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect

from ..params import NIC_CORE_W64, RX_PIPELINE_W64, NicParams
from ..protocol import PacketMeta
from .axil import AxiLiteSignature, AxiLiteSlave
from .axis_ports import axis_members, wire_axis
from .rx_pipeline import RxPipeline

__all__ = ["RxPipelineTop", "NicCoreTop", "META_BITS"]

META_BITS = data.Layout.cast(PacketMeta).size


def _flat(prefix, signature, *, master):
    """Flat top-level members for an interface given in its master view."""
    members = {}
    for name, member in signature.members.items():
        flow = member.flow if master else member.flow.flip()
        members[f"{prefix}_{name}"] = flow(member.shape)
    return members


def _wire_axil(top, axi):
    """Statements joining the flat ``s_axil_*`` ports to an AXI4-Lite slave's bus."""
    return [getattr(axi, name).eq(getattr(top, f"s_axil_{name}")) if member.flow == Out
            else getattr(top, f"s_axil_{name}").eq(getattr(axi, name))
            for name, member in AxiLiteSignature(16).members.items()]


class RxPipelineTop(wiring.Component):
    """:class:`RxPipeline` with flat AXI4-Stream and AXI4-Lite ports.

    Ports: ``s_axis_*`` frames in (``tuser`` = MAC error), ``m_axis_*`` frames out,
    ``m_meta_*`` one record per frame (``tdata`` is the :class:`PacketMeta` layout, bit 0 of
    the layout in bit 0), ``s_axil_*`` registers. ``params`` as :class:`RxPipeline`.
    """
    def __init__(self, params: NicParams = RX_PIPELINE_W64):
        self.pipeline = RxPipeline(params)
        self.regmap = self.pipeline.regmap
        data_width = params.data_width
        members = {
            **axis_members(data_width),
            "m_meta_tdata": Out(META_BITS), "m_meta_tvalid": Out(1), "m_meta_tready": In(1),
            **_flat("s_axil", AxiLiteSignature(16), master=False),
        }
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipeline = p = self.pipeline
        m.submodules.axil = axil = AxiLiteSlave(16)
        connect(m, axil.csr, p.csr)
        m.d.comb += wire_axis(self, p.rx, p.data) + _wire_axil(self, axil.axi)
        m.d.comb += [
            self.m_meta_tdata.eq(p.meta.payload), self.m_meta_tvalid.eq(p.meta.valid),
            p.meta.ready.eq(self.m_meta_tready),
        ]
        return m


class NicCoreTop(wiring.Component):
    """:class:`NicCore` with flat AXI ports for cocotbext-axi: ``s_axis_*`` (rx MAC, ``tuser``
    = MAC error), ``m_axis_*`` (tx MAC), ``s_axil_*`` (registers), ``m_axi_*`` (host memory,
    AXI4 master) and ``irq``. ``params`` as :class:`NicCore`."""
    def __init__(self, params: NicParams = NIC_CORE_W64):
        from .dma import Axi4Signature
        from .nic_core import NicCore
        self.core = NicCore(params)
        self.regmap = self.core.regmap
        data_width = params.data_width
        self._axi = Axi4Signature(data_width)
        members = {**axis_members(data_width), "irq": Out(len(self.core.irq))}
        members.update(_flat("s_axil", AxiLiteSignature(16), master=False))
        members.update(_flat("m_axi", self._axi, master=True))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.axil = axil = AxiLiteSlave(16)
        connect(m, axil.csr, core.csr)
        m.d.comb += wire_axis(self, core.rx_mac, core.tx_mac) + _wire_axil(self, axil.axi)
        m.d.comb += self.irq.eq(core.irq)
        for name, member in self._axi.members.items():
            port, inner = getattr(self, f"m_axi_{name}"), getattr(core.dma, name)
            m.d.comb += port.eq(inner) if member.flow == Out else inner.eq(port)
        return m
