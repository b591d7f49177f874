# Ref: AMBA 4 AXI4-Stream Protocol Specification (ARM IHI 0051A): tdata, tkeep, tlast, tuser.
"""Flat AXI4-Stream ports for top-level wrappers, so that cocotbext-axi binds to them with
``from_prefix``, and the statements that join them to :class:`~hetnic.gateware.beat.Beat`
streams."""

from amaranth.lib.wiring import In, Out

__all__ = ["axis_members", "wire_axis"]


def axis_members(w):
    """``s_axis_*`` (frames in, ``tuser`` = MAC error) and ``m_axis_*`` (frames out), for a
    ``w``-bit stream."""
    return {
        "s_axis_tdata": In(w), "s_axis_tkeep": In(w // 8), "s_axis_tlast": In(1),
        "s_axis_tuser": In(1), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
        "m_axis_tdata": Out(w), "m_axis_tkeep": Out(w // 8), "m_axis_tlast": Out(1),
        "m_axis_tuser": Out(1), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
    }


def wire_axis(top, rx, tx):
    """Statements joining the flat ``s_axis_*``/``m_axis_*`` ports of ``top`` to ``Beat``
    streams: ``s_axis`` drives ``rx`` (a sink), ``tx`` (a source) drives ``m_axis``."""
    return [
        rx.payload.data.eq(top.s_axis_tdata), rx.payload.keep.eq(top.s_axis_tkeep),
        rx.payload.last.eq(top.s_axis_tlast), rx.payload.error.eq(top.s_axis_tuser),
        rx.valid.eq(top.s_axis_tvalid), top.s_axis_tready.eq(rx.ready),
        top.m_axis_tdata.eq(tx.payload.data), top.m_axis_tkeep.eq(tx.payload.keep),
        top.m_axis_tlast.eq(tx.payload.last), top.m_axis_tuser.eq(tx.payload.error),
        top.m_axis_tvalid.eq(tx.valid), tx.ready.eq(top.m_axis_tready),
    ]
