# Ref: AMBA AXI and ACE Protocol Specification (ARM IHI 0022E), part B: AXI4-Lite.
"""AXI4-Lite slave that turns bus transactions into single register accesses."""

from functools import reduce
from operator import or_

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiLiteSignature", "CsrSignature", "AxiLiteSlave", "CsrDecoder", "CsrSlice",
           "registered_reads",
           "one_hot_select"]


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite, seen from the master (the slave uses ``.flip()``). 32-bit data."""
    def __init__(self, addr_width):
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })


class CsrSignature(wiring.Signature):
    """A register access port, seen from the bus side (the register file uses ``.flip()``).

    Members
    -------
    addr : Out(addr_width)
        Byte address, word aligned.
    r_stb, w_stb : Out(1)
        Held high until ``ack``; exactly one of them is high during an access.
    w_data : Out(32)
    ack : In(1)
        The register file finished the access; ``r_data`` is valid in the same cycle.
        May come in the cycle of the request or any later cycle (a memory read, a write
        that waits for a table refresh).
    r_data : In(32)
    """
    def __init__(self, addr_width):
        self.addr_width = addr_width
        super().__init__({
            "addr": Out(addr_width), "r_stb": Out(1), "w_stb": Out(1), "w_data": Out(32),
            "ack": In(1), "r_data": In(32),
        })


def one_hot_select(sel, values, width=32):
    """``values[k]`` where bit ``k`` of ``sel`` is set, as an AND-OR tree (no priority chain):
    ``sel`` must be one-hot or zero (zero selects 0). Meant for a register bus's read
    multiplexer with its selects coming from flops."""
    return reduce(or_, (sel[k].replicate(width) & value for k, value in enumerate(values)),
                  Const(0, width))


def registered_reads(m, csr, registers):
    """The bus side of a read-only block of flop registers on ``csr``, with no address
    compare or read multiplexer on a path into the bus.

    ``registers`` is ``[(address, value), ...]``. Returns ``(step, data)``: ``step`` counts
    an access's cycles (0 to 3; the address holds until ``ack``). Step 0 puts every address
    compare into a flop, step 1 the one-hot multiplexer's choice into ``data`` (0 for an
    address that names none of them). The caller puts ``data`` (or more) into
    ``csr.r_data`` at step 2 and acknowledges at step 3; writes are acknowledged the same
    way and ignored.
    """
    step = Signal(2)
    with m.If((csr.r_stb | csr.w_stb) & ~csr.ack):
        m.d.sync += step.eq(step + (step != 3))
    with m.Else():
        m.d.sync += step.eq(0)
    select, data = Signal(len(registers)), Signal(32)
    m.d.sync += [select.eq(Cat(csr.addr == addr for addr, _ in registers)),
                 data.eq(one_hot_select(select, [value for _, value in registers]))]
    return step, data


class AxiLiteSlave(wiring.Component):
    """Serialises AXI4-Lite reads and writes into :class:`CsrSignature` accesses.

    One access is in flight at a time; a write needs both its address and data beats before it
    starts, and reads and writes alternate when both wait. Byte strobes are not supported: a
    write with ``wstrb != 0b1111`` is answered SLVERR and not performed (all registers are
    32-bit). The low two address bits are ignored.

    Parameters
    ----------
    addr_width : int
        Width of the byte address.

    Members
    -------
    axi : In(AxiLiteSignature(addr_width))
        The bus.
    csr : Out(CsrSignature(addr_width))
        Register accesses.
    """
    def __init__(self, addr_width):
        if not isinstance(addr_width, int) or not 4 <= addr_width <= 32:
            raise ValueError(f"addr_width must be an integer from 4 to 32, not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "axi": In(AxiLiteSignature(addr_width)),
            "csr": Out(CsrSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        axi, csr = self.axi, self.csr

        r_data = Signal(32)
        bad_strb = Signal()
        prefer_read = Signal()      # alternate when both a read and a write wait

        with m.FSM():
            with m.State("IDLE"):
                write_ready = axi.awvalid & axi.wvalid
                with m.If(axi.arvalid & (prefer_read | ~write_ready)):
                    m.d.comb += axi.arready.eq(1)
                    m.d.sync += [
                        csr.addr.eq(axi.araddr & ~3),
                        prefer_read.eq(0),
                    ]
                    m.next = "READ"
                with m.Elif(write_ready):
                    m.d.comb += [axi.awready.eq(1), axi.wready.eq(1)]
                    m.d.sync += [
                        csr.addr.eq(axi.awaddr & ~3),
                        csr.w_data.eq(axi.wdata),
                        bad_strb.eq(axi.wstrb != 0b1111),
                        prefer_read.eq(1),
                    ]
                    m.next = "WRITE"
            with m.State("READ"):
                m.d.comb += csr.r_stb.eq(1)
                with m.If(csr.ack):
                    m.d.sync += r_data.eq(csr.r_data)
                    m.next = "READ_RESP"
            with m.State("READ_RESP"):
                m.d.comb += [axi.rvalid.eq(1), axi.rdata.eq(r_data)]
                with m.If(axi.rready):
                    m.next = "IDLE"
            with m.State("WRITE"):
                with m.If(bad_strb):
                    m.next = "WRITE_RESP"
                with m.Else():
                    m.d.comb += csr.w_stb.eq(1)
                    with m.If(csr.ack):
                        m.next = "WRITE_RESP"
            with m.State("WRITE_RESP"):
                m.d.comb += [axi.bvalid.eq(1), axi.bresp.eq(bad_strb << 1)]   # 0b10 SLVERR
                with m.If(axi.bready):
                    m.next = "IDLE"
        return m


class CsrDecoder(wiring.Component):
    """Splits one register access port into windows of the address space.

    Parameters
    ----------
    addr_width : int
    windows : list of (lo, hi)
        Byte address ranges ``lo <= addr < hi``, one per ``sub`` port, non-overlapping.
        Accesses outside every window go to ``default``.
    registered : bool
        Compare the address into flops first and pass the strobes on from an access's
        second cycle: one cycle more per access, and no address compare on the path from
        the bus's address into the ports' strobes or from their ``ack`` back.

    Members
    -------
    bus : In(CsrSignature(addr_width))
    sub : list of Out(CsrSignature(addr_width))
        The full address is passed on unchanged.
    default : Out(CsrSignature(addr_width))
    """
    def __init__(self, addr_width, windows, *, registered=False):
        self.registered = registered
        windows = [tuple(w) for w in windows]
        for lo, hi in windows:
            if not 0 <= lo < hi <= 1 << addr_width:
                raise ValueError(f"window {(lo, hi)!r} is not inside the {addr_width}-bit space")
        spans = sorted(windows)
        for (_, a1), (b0, _) in zip(spans, spans[1:]):
            if a1 > b0:
                raise ValueError(f"CSR windows overlap: {windows!r}")
        self.windows = windows
        super().__init__({
            "bus": In(CsrSignature(addr_width)),
            "sub": Out(CsrSignature(addr_width)).array(len(windows)),
            "default": Out(CsrSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        ports = list(self.sub) + [self.default]
        for port in ports:
            m.d.comb += [port.addr.eq(bus.addr), port.w_data.eq(bus.w_data)]
        hits = [(bus.addr >= lo) & (bus.addr < hi) for lo, hi in self.windows]
        hits.append(~Cat(*hits).any())              # the default port
        if self.registered:
            # The address holds until ack: the compares settle into flops in the first
            # cycle, and the strobes go out from the second (`decoded`).
            hit_flops, decoded = Signal(len(hits)), Signal()
            stb = bus.r_stb | bus.w_stb
            m.d.sync += [hit_flops.eq(Cat(*hits)), decoded.eq(stb & ~bus.ack)]
            hits = [hit_flops[k] & decoded for k in range(len(hits))]
        for hit, port in zip(hits, ports):
            with m.If(hit):
                m.d.comb += [port.r_stb.eq(bus.r_stb), port.w_stb.eq(bus.w_stb),
                             bus.ack.eq(port.ack), bus.r_data.eq(port.r_data)]
        return m


class CsrSlice(wiring.Component):
    """A register stage on a :class:`CsrSignature` port: no combinational path from ``bus``
    to ``csr`` or back, nor from ``csr.ack`` into the stage's own state.

    An access on ``bus`` is latched (address, data, kind) and performed on ``csr`` from the
    next cycle until ``csr.ack``. The acknowledge and the read data go into flops; the
    cycle after, the strobe is off and ``bus`` gets its ``ack`` and the data from those
    flops. The access is performed once even though ``bus`` holds its strobe until it sees
    ``ack``. Two cycles more per access.

    Members
    -------
    bus : In(CsrSignature(addr_width))
    csr : Out(CsrSignature(addr_width))
    """
    def __init__(self, addr_width):
        super().__init__({"bus": In(CsrSignature(addr_width)),
                          "csr": Out(CsrSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        bus, csr = self.bus, self.csr
        write = Signal()
        acked = Signal()                # csr.ack was seen in the previous cycle
        m.d.sync += bus.r_data.eq(csr.r_data)       # valid the cycle after csr.ack
        with m.FSM():
            with m.State("IDLE"):
                with m.If(bus.r_stb | bus.w_stb):
                    m.d.sync += [csr.addr.eq(bus.addr), csr.w_data.eq(bus.w_data),
                                 write.eq(bus.w_stb)]
                    m.next = "ACCESS"
            with m.State("ACCESS"):
                m.d.comb += [csr.r_stb.eq(~write & ~acked), csr.w_stb.eq(write & ~acked)]
                m.d.sync += acked.eq(csr.ack & ~acked)
                with m.If(acked):
                    m.d.comb += bus.ack.eq(1)
                    m.next = "IDLE"
        return m
