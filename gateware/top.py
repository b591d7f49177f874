"""Top-level wrappers whose Verilog ports follow AXI naming (``s_axis_tdata``, ...), so
cocotbext-axi binds to them with ``from_prefix``."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect

from ..params import NIC_CORE_W64, RX_PIPELINE_W64, NicParams
from ..protocol import PacketMeta
from .axil import AxiLiteSignature, AxiLiteSlave
from .axis_ports import axis_members, wire_axis
from .dma import Axi4Signature
from .nic_core import NicCore
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


def _top_members(data_width, extra):
    """The members of a flat top: ``s_axis_*``/``m_axis_*``, then ``extra``, then
    ``s_axil_*`` (the Verilog port order)."""
    return {**axis_members(data_width), **extra,
            **_flat("s_axil", AxiLiteSignature(16), master=False)}


def _elaborate_top(top, name, inner, rx, tx):
    """A module holding ``inner`` (as submodule ``name``) behind the flat ports of ``top``:
    an :class:`AxiLiteSlave` on ``s_axil_*`` drives ``inner.csr``, ``s_axis_*`` drives the
    ``rx`` stream and the ``tx`` stream drives ``m_axis_*``."""
    m = Module()
    m.submodules[name] = inner
    m.submodules.axil = axil = AxiLiteSlave(16)
    connect(m, axil.csr, inner.csr)
    m.d.comb += wire_axis(top, rx, tx) + _wire_axil(top, axil.axi)
    return m


class RxPipelineTop(wiring.Component):
    """:class:`RxPipeline` with flat AXI4-Stream and AXI4-Lite ports.

    Ports: ``s_axis_*`` frames in (``tuser`` = MAC error), ``m_axis_*`` frames out,
    ``m_meta_*`` one record per frame (``tdata`` is the :class:`PacketMeta` layout, bit 0 of
    the layout in bit 0), ``s_axil_*`` registers. ``params`` as :class:`RxPipeline`.
    """
    def __init__(self, params: NicParams = RX_PIPELINE_W64):
        self.pipeline = RxPipeline(params)
        self.regmap = self.pipeline.regmap
        super().__init__(_top_members(params.data_width, {
            "m_meta_tdata": Out(META_BITS), "m_meta_tvalid": Out(1), "m_meta_tready": In(1),
        }))

    def elaborate(self, platform):
        p = self.pipeline
        m = _elaborate_top(self, "pipeline", p, p.rx, p.data)
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
        self.core = NicCore(params)
        self.regmap = self.core.regmap
        self._axi = Axi4Signature(params.data_width)
        super().__init__({**_top_members(params.data_width, {"irq": Out(len(self.core.irq))}),
                          **_flat("m_axi", self._axi, master=True)})

    def elaborate(self, platform):
        core = self.core
        m = _elaborate_top(self, "core", core, core.rx_mac, core.tx_mac)
        m.d.comb += self.irq.eq(core.irq)
        for name, member in self._axi.members.items():
            port, inner = getattr(self, f"m_axi_{name}"), getattr(core.dma, name)
            m.d.comb += port.eq(inner) if member.flow == Out else inner.eq(port)
        return m
