# Ref: Reduced Gigabit Media Independent Interface (RGMII) version 2.0 (HP, 2002);
#      IEEE 802.3-2022 clause 35 (GMII).
"""RGMII pins to GMII for the MAC cores, a simulation model of the DDR buffers it uses, and
both MAC cores behind it as one simulation top.

The MAC cores (:class:`~hetnic.gateware.gmii_rx_mac.GmiiRxMac`,
:class:`~hetnic.gateware.gmii_tx_mac.GmiiTxMac`) work on GMII, one byte per 125 MHz cycle
(:class:`~hetnic.gateware.gmii.GmiiSignature`), so they are simulated directly and sit
unchanged behind :class:`RgmiiPhy`, which turns the RGMII pins (4 data bits on each clock
edge) into GMII with ``amaranth.lib.io.DDRBuffer`` on ECP5, or with :class:`DdrBufferModel`
in simulation. Only 1000 Mb/s is supported: RGMII at 10/100 Mb/s (a 2.5/25 MHz clock, one
nibble per cycle) and the in-band link status that RGMII sends between frames are out of
scope.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out, connect

from ..protocol import ETH_DEFAULT_MAX_FRAME
from .axis_ports import axis_members, wire_axis
from .gmii import GmiiSignature
from .gmii_rx_mac import GmiiRxMac
from .gmii_tx_mac import GmiiTxMac

__all__ = ["DdrBufferModel", "RgmiiPhy", "RgmiiMacTop"]


class DdrBufferModel(io.DDRBuffer):
    """A behavioural :class:`~amaranth.lib.io.DDRBuffer`, for simulation only.

    Same interface and timing as ``DDRBuffer`` (input and output latency 1): ``i[0]`` is the
    value at a rising edge and ``i[1]`` the value at the falling edge after it, both
    presented at the next rising edge; ``o[0]`` is driven from the rising edge after it is
    given, ``o[1]`` from the falling edge after that. Built from rising- and falling-edge
    flip-flops around a plain :class:`~amaranth.lib.io.Buffer`, so it runs in Amaranth's
    simulator (with a ``SimulationPort``) and in Verilator (an ``IOPort`` becomes a
    top-level port). Not for synthesis: the output multiplexes on the clock.
    """
    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = io.Buffer(self.direction, self.port)
        width = len(self.port)
        if self.direction is not io.Direction.Output:
            m.domains.i_fall = ClockDomain(clk_edge="neg", local=True, reset_less=True)
            m.d.comb += ClockSignal("i_fall").eq(ClockSignal(self.i_domain))
            rise, fall = Signal(width, reset_less=True), Signal(width, reset_less=True)
            m.d[self.i_domain] += [rise.eq(buf.i), self.i[0].eq(rise), self.i[1].eq(fall)]
            m.d.i_fall += fall.eq(buf.i)
        if self.direction is not io.Direction.Input:
            m.domains.o_fall = ClockDomain(clk_edge="neg", local=True, reset_less=True)
            m.d.comb += ClockSignal("o_fall").eq(ClockSignal(self.o_domain))
            o0, o1 = Signal(width, reset_less=True), Signal(width, reset_less=True)
            o1_fall, oe = Signal(width, reset_less=True), Signal(reset_less=True)
            m.d[self.o_domain] += [o0.eq(self.o[0]), o1.eq(self.o[1]), oe.eq(self.oe)]
            m.d.o_fall += o1_fall.eq(o1)
            m.d.comb += [buf.o.eq(Mux(ClockSignal(self.o_domain), o0, o1_fall)),
                         buf.oe.eq(oe)]
        return m


class RgmiiPhy(wiring.Component):
    """RGMII pins to GMII at 1000 Mb/s, through double data rate I/O buffers.

    Receive: the PHY sends ``RXD[3:0]`` (data bits 3..0) and ``RX_CTL`` = ``RX_DV`` at the
    rising edge of its ``RX_CLK``, ``RXD[3:0]`` (data bits 7..4) and ``RX_CTL`` = ``RX_DV
    XOR RX_ER`` at the falling edge. ``rx`` is registered in ``rx_domain``, which the board
    top clocks from ``RX_CLK`` (with the PHY's internal RX delay, or a delay line, centring
    the clock on the data). ``rx`` follows the pins by the buffers' input latency (1 cycle
    for :class:`DdrBufferModel`; see ``DDRBuffer`` for a platform's).

    Transmit: the same encoding from ``tx`` (in ``tx_domain``) onto ``TXD``/``TX_CTL``, and
    ``TX_CLK`` forwarded as a DDR output of (1, 0) in ``tx_clk_domain``. By default that is
    ``tx_domain``, so the clock is edge-aligned with the data and the PHY must add the 2 ns
    TX delay (RGMII-ID); a board without one passes a 90-degree-shifted PLL output instead.

    Parameters
    ----------
    rxd, rx_ctl, txd, tx_ctl, tx_clk : PortLike
        The RGMII pins: 4, 1, 4, 1 and 1 wide.
    rx_domain, tx_domain, tx_clk_domain : str
        Clock domains of ``rx``, of ``tx`` and of the forwarded clock.
    ddr_buffer : type
        ``amaranth.lib.io.DDRBuffer`` (the platform picks the primitives, ``IDDRX1F`` and
        ``ODDRX1F`` on ECP5) or :class:`DdrBufferModel` for simulation.

    Members
    -------
    rx : Out(GmiiSignature())
        Received bytes, in ``rx_domain``.
    tx : In(GmiiSignature())
        Bytes to send, in ``tx_domain``.
    """
    def __init__(self, rxd, rx_ctl, txd, tx_ctl, tx_clk, *, rx_domain="rx", tx_domain="tx",
                 tx_clk_domain=None, ddr_buffer=io.DDRBuffer):
        for name, port, width in (("rxd", rxd, 4), ("rx_ctl", rx_ctl, 1), ("txd", txd, 4),
                                  ("tx_ctl", tx_ctl, 1), ("tx_clk", tx_clk, 1)):
            if not isinstance(port, io.PortLike) or len(port) != width:
                raise TypeError(f"{name} must be a {width}-bit PortLike, not {port!r}")
        self._ports = {"rxd": rxd, "rx_ctl": rx_ctl, "txd": txd, "tx_ctl": tx_ctl,
                       "tx_clk": tx_clk}
        self._rx_domain, self._tx_domain = rx_domain, tx_domain
        self._tx_clk_domain = tx_clk_domain or tx_domain
        self._ddr_buffer = ddr_buffer
        super().__init__({"rx": Out(GmiiSignature()), "tx": In(GmiiSignature())})

    def elaborate(self, platform):
        m = Module()
        ddr, ports = self._ddr_buffer, self._ports
        m.submodules.rxd = rxd = ddr("i", ports["rxd"], i_domain=self._rx_domain)
        m.submodules.rx_ctl = rx_ctl = ddr("i", ports["rx_ctl"], i_domain=self._rx_domain)
        m.d.comb += [self.rx.data.eq(Cat(rxd.i[0], rxd.i[1])), self.rx.en.eq(rx_ctl.i[0]),
                     self.rx.er.eq(rx_ctl.i[0] ^ rx_ctl.i[1])]

        m.submodules.txd = txd = ddr("o", ports["txd"], o_domain=self._tx_domain)
        m.submodules.tx_ctl = tx_ctl = ddr("o", ports["tx_ctl"], o_domain=self._tx_domain)
        m.submodules.tx_clk = tx_clk = ddr("o", ports["tx_clk"], o_domain=self._tx_clk_domain)
        m.d.comb += [txd.o[0].eq(self.tx.data[:4]), txd.o[1].eq(self.tx.data[4:]),
                     tx_ctl.o[0].eq(self.tx.en), tx_ctl.o[1].eq(self.tx.en ^ self.tx.er),
                     tx_clk.o[0].eq(1), tx_clk.o[1].eq(0)]
        return m


class RgmiiMacTop(wiring.Component):
    """Both MAC cores behind :class:`RgmiiPhy` with :class:`DdrBufferModel` buffers, with
    flat ports for cocotb (simulation only).

    Ports: ``clk``/``rst`` clock everything (the PHY's ``RX_CLK`` is taken to be ``clk``);
    ``clk90`` is ``clk`` delayed by a quarter period and becomes ``rgmii_tx_clk``, as a PHY
    in RGMII-ID mode would see it. ``rgmii_rxd``/``rgmii_rx_ctl`` in and ``rgmii_txd``/
    ``rgmii_tx_ctl``/``rgmii_tx_clk`` out are the RGMII pins; ``m_axis_*`` the received
    frames (``tuser`` = error), ``s_axis_*`` the frames to send; ``rx_*_count`` and
    ``tx_*_count`` the counters of :class:`~hetnic.gateware.gmii_rx_mac.GmiiRxMac` and
    :class:`~hetnic.gateware.gmii_tx_mac.GmiiTxMac`.
    """
    def __init__(self, *, max_frame=ETH_DEFAULT_MAX_FRAME, ifg=12):
        self.rx_mac = GmiiRxMac(max_frame=max_frame)
        self.tx_mac = GmiiTxMac(ifg=ifg)
        super().__init__({
            "clk90": In(1), **axis_members(8),
            **{f"rx_{name}": Out(32) for name in GmiiRxMac.COUNTERS},
            **{f"tx_{name}": Out(32) for name in GmiiTxMac.COUNTERS},
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.tx90 = ClockDomain(reset_less=True)
        m.d.comb += ClockSignal("tx90").eq(self.clk90)

        def pin(name, width, direction):
            return io.SingleEndedPort(io.IOPort(width, name=name), direction=direction)

        m.submodules.phy = phy = RgmiiPhy(
            pin("rgmii_rxd", 4, "i"), pin("rgmii_rx_ctl", 1, "i"), pin("rgmii_txd", 4, "o"),
            pin("rgmii_tx_ctl", 1, "o"), pin("rgmii_tx_clk", 1, "o"), rx_domain="sync",
            tx_domain="sync", tx_clk_domain="tx90", ddr_buffer=DdrBufferModel)
        m.submodules.rx_mac = rx_mac = self.rx_mac
        m.submodules.tx_mac = tx_mac = self.tx_mac
        connect(m, phy.rx, rx_mac.gmii)
        connect(m, tx_mac.gmii, phy.tx)
        m.d.comb += wire_axis(self, tx_mac.i, rx_mac.o)
        for prefix, mac in (("rx", rx_mac), ("tx", tx_mac)):
            for name in mac.COUNTERS:
                m.d.comb += getattr(self, f"{prefix}_{name}").eq(getattr(mac, name))
        return m
