# Ref: Lattice FPGA-TN-02200 (ECP5 sysCLOCK PLL, EHXPLLL); RGMII version 2.0 (HP, 2002).
"""Board tops: the RX pipeline behind the RGMII ports of an ECP5 board.

A board top is two parts. :class:`BoardCore` is everything that does not depend on the
FPGA: the RGMII adapters, the MACs, the clock-domain crossings, the RX pipeline, the tag
inserter and the UART register bridge. It is simulated whole (:mod:`hetnic.boards.sim_top`).
:class:`Ecp5BoardTop` is the shell around it for an ECP5 board: PLL, resets, pin buffers
and the DDR primitives.

Two-port core (Versa ECP5, Colorlight 5A-75B), a bump in the wire::

    port 0 RX -> RgmiiPhy -> GmiiRxMac (rx0) -> AsyncFIFOBuffered -> SkidBuffer
              -> RxPipeline (sync, 125 MHz) -> TagInserter -> GmiiTxMac -> RgmiiPhy -> port 1 TX
    port 1 RX -> RgmiiPhy -> GmiiRxMac (rx1) -> AsyncFIFOBuffered -> FrameFifo (store and forward)
              -> GmiiTxMac -> RgmiiPhy -> port 0 TX
    UART -> UartBridge -+-> MacCounters (the MAC_* registers: every MAC's counters)
                        +-> CsrSlice -> RxPipeline.csr (the rest of the register table)

The network is on port 0 and the host on port 1: the host receives every frame the network
sent, tagged with the steering decision (:mod:`hetnic.steering_tag`; dropped frames are not
forwarded), and what the host sends reaches the network unchanged.

One-port core (ECPIX-5, ButterStick): the host and the network share the one link, so
frames come back on the port they came in on::

    port 0 RX -> RgmiiPhy -> GmiiRxMac (rx0) -> AsyncFIFOBuffered -> SkidBuffer -> RxPipeline
              -> TagInserter -> GmiiTxMac -> RgmiiPhy -> port 0 TX

Everything received is classified and returned tagged, including what the host itself
sends; the board is a classifier on a stick, not a bump in the wire.

Clocking (shell). ``sync`` (125 MHz) comes from an ECP5 PLL on the board oscillator, so the
core and the transmitters run whether or not a link is up; ``tx90`` is the same clock
shifted by 90 degrees and is forwarded as ``TX_CLK``, so the PHYs must *not* add their own
TX delay. Each receiver runs in its own domain (``rx0``, ``rx1``) clocked by the PHY's
``RX_CLK``, and crosses into ``sync`` through an asynchronous FIFO; the PHYs must add the RX
delay (RGMII-ID on the receive side) since no input delay is configured here. Neither PHY
delay setting has been checked on hardware: no board was available.

Reset: the board reset button (if any) or an unlocked PLL resets every domain and holds the
PHYs in reset (their ``rst`` pins). MDIO is not driven (``mdc`` low, ``mdio`` released).
"""

from typing import NamedTuple

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Elaboratable, Instance, \
    Module, ResetSignal, Signal
from amaranth.build import Resource
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer, ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFOBuffered, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from ..gateware.axil import CsrDecoder, CsrSlice
from ..gateware.beat import Beat
from ..gateware.gmii_rx_mac import GmiiRxMac
from ..gateware.gmii_tx_mac import GmiiTxMac
from ..gateware.mac_counters import MacCounters
from ..gateware.rgmii import RgmiiPhy
from ..gateware.rx_pipeline import RxPipeline
from ..gateware.skid import SkidBuffer
from ..gateware.uart_bridge import UartBridge, UartBridgedCore, uart_divisor
from ..params import CORE_CLOCK_HZ, ECP5_BOARD_CORE, NicParams
from .tag_inserter import TagInserter

__all__ = ["BoardCore", "Ecp5BoardTop", "RgmiiPins", "FrameFifo", "Ecp5Pll", "CORE_HZ",
           "UART_BAUD"]

UART_BAUD = 115200
CORE_HZ = CORE_CLOCK_HZ


class Ecp5Pll(wiring.Component):
    """``EHXPLLL``: 125 MHz on ``clk`` and ``clk90`` (90 degrees later) from ``osc_mhz``.

    The VCO runs at 625 MHz (``CLKOP`` divided by 5 is the feedback), the phase detector at
    the greatest common divisor of the oscillator and 125 MHz: 25 MHz for a 25 or 100 MHz
    oscillator (``CLKI_DIV`` 1 or 4, ``CLKFB_DIV`` 5), 5 MHz for the ButterStick's 30 MHz
    (``CLKI_DIV`` 6, ``CLKFB_DIV`` 25). The phase detector must run at 3.125 MHz or more
    and the dividers stay at 128 or less (Lattice FPGA-TN-02200), which leaves out
    oscillators such as 12 or 27 MHz. One VCO period is 1.6 ns, a 90-degree shift 2 ns =
    1.25 periods: ``CPHASE`` one more than ``CLKOP``'s and ``FPHASE`` 2/8.
    """
    clk: Out(1)
    clk90: Out(1)
    locked: Out(1)

    def __init__(self, clkin, osc_mhz):
        self.clki_div, self.clkfb_div = self.dividers(osc_mhz)
        self._clkin, self._osc_mhz = clkin, osc_mhz
        super().__init__()

    @staticmethod
    def dividers(osc_mhz):
        """``(CLKI_DIV, CLKFB_DIV)`` for 125 MHz from a whole-MHz ``osc_mhz``;
        ``ValueError`` if the PLL cannot make it exactly."""
        from math import gcd
        if not (isinstance(osc_mhz, int) or float(osc_mhz).is_integer()) or \
                not 10 <= osc_mhz <= 400:
            raise ValueError(f"osc_mhz must be a whole number of MHz from 10 to 400, not "
                             f"{osc_mhz!r}")
        pfd = gcd(int(osc_mhz), 125)
        if pfd < 5:             # 125 = 5**3: the divisors are 1, 5, 25 and 125
            raise ValueError(f"a {osc_mhz} MHz oscillator gives the PLL a {pfd} MHz phase "
                             f"detector for 125 MHz, below its 3.125 MHz minimum")
        return int(osc_mhz) // pfd, 125 // pfd

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(int(self._osc_mhz)), a_FREQUENCY_PIN_CLKOP="125",
            a_FREQUENCY_PIN_CLKOS="125", a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_CLKOP_ENABLE="ENABLED", p_CLKOS_ENABLE="ENABLED",
            p_CLKI_DIV=self.clki_div, p_CLKFB_DIV=self.clkfb_div, p_FEEDBK_PATH="CLKOP",
            p_CLKOP_DIV=5, p_CLKOP_CPHASE=4, p_CLKOP_FPHASE=0,
            p_CLKOS_DIV=5, p_CLKOS_CPHASE=5, p_CLKOS_FPHASE=2,
            i_CLKI=self._clkin, i_CLKFB=self.clk, i_RST=0, i_STDBY=0, i_PLLWAKESYNC=0,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0,
            i_ENCLKOP=0, i_ENCLKOS=0,
            o_CLKOP=self.clk, o_CLKOS=self.clk90, o_LOCK=self.locked)
        return m


class FrameFifo(wiring.Component):
    """Store and forward: a frame leaves only once its last beat is stored, so a transmit
    MAC behind it never underruns. ``depth`` beats; a frame longer than ``depth - 1`` would
    never complete, so the receive MAC in front must cut frames shorter (its ``max_frame``).

    Members
    -------
    i : In(stream.Signature(Beat(8)))
    o : Out(stream.Signature(Beat(8)))
    """
    i: In(stream.Signature(Beat(8)))
    o: Out(stream.Signature(Beat(8)))

    def __init__(self, depth=2048):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(self.i.payload.as_value()),
                                                    depth=self.depth)
        # Complete frames stored that have not started to leave; a frame is taken off the
        # count as its first beat leaves. The read data comes straight from a block RAM, so
        # only `sending` (a register's input) looks at its `last` bit.
        frames = Signal(range(self.depth + 1))
        sending = Signal()                          # a frame has started to leave
        may_read = sending | (frames != 0)
        write_last = self.i.valid & fifo.w_rdy & self.i.payload.last
        read = self.o.valid & self.o.ready
        m.d.sync += frames.eq(frames + write_last - (read & ~sending))
        with m.If(read):
            m.d.sync += sending.eq(~self.o.payload.last)
        m.d.comb += [
            fifo.w_en.eq(self.i.valid), fifo.w_data.eq(self.i.payload),
            self.i.ready.eq(fifo.w_rdy),
            self.o.valid.eq(fifo.r_rdy & may_read), self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready & may_read),
        ]
        return m


def _connect_fifo(m, source, fifo, sink):
    """stream -> FIFO (``w_*``) and FIFO (``r_*``) -> stream."""
    m.d.comb += [fifo.w_en.eq(source.valid), fifo.w_data.eq(source.payload),
                 source.ready.eq(fifo.w_rdy),
                 sink.valid.eq(fifo.r_rdy), sink.payload.eq(fifo.r_data),
                 fifo.r_en.eq(sink.ready)]


class RgmiiPins(NamedTuple):
    """The RGMII pins of one port as :class:`~hetnic.gateware.rgmii.RgmiiPhy` takes them
    (``RX_CLK`` is not among them: it clocks the port's ``rx<n>`` domain)."""
    rxd: io.PortLike
    rx_ctl: io.PortLike
    txd: io.PortLike
    tx_ctl: io.PortLike
    tx_clk: io.PortLike


class BoardCore(UartBridgedCore):
    """The board design between the pins' buffers (see the module documentation).

    The core uses clock domains its parent creates: ``sync`` (the core clock, ``clk_hz``),
    ``tx90`` (``sync`` a quarter period later, forwarded as every port's ``TX_CLK``) and
    ``rx<n>`` for each port (clocked by the port's ``RX_CLK``). Port ``n``'s received
    bytes cross from ``rx<n>`` into ``sync`` through a 513-entry asynchronous FIFO (a block
    RAM and an output register). The receive MAC cannot wait, so the FIFO must absorb the pipeline's pauses: a
    commit stops ``rx`` while the metadata path drains and the rules are copied (about
    ``n_rules * 32`` + 30 cycles, 160 at the board's 4 rules), and the parser takes a cycle
    after every frame. What does not fit is cut by the MAC and counted (its
    ``overflow_count``, register ``MAC_RX_OVERFLOW``). The tagged copy is 12 bytes
    longer than the frame, so port 1 cannot carry a sustained line-rate stream of short
    frames from port 0: the data FIFO, then this FIFO fill, and the MAC cuts frames.

    Latency from the end of a frame on port 0 RX to the first preamble byte of its tagged
    copy: the clock-domain crossing (a few cycles), the pipeline's record (about 20 to 30
    cycles after the frame's last byte, :class:`~hetnic.gateware.rx_pipeline.RxPipeline`),
    then the transmit MAC's interframe gap if a frame is still going out. The tagged frame
    leaves whole at one byte per cycle (the pipeline's data FIFO holds it).

    Parameters
    ----------
    ports : int
        1 or 2 (see the module documentation).
    pins : sequence of RgmiiPins
        One per port.
    core_params : NicParams
        The RX pipeline's build (default :data:`~hetnic.params.ECP5_BOARD_CORE`);
        ``data_width`` must be 8 (the MACs move a byte per cycle). The core's build is this
        with ``mac_ports=ports`` (each port's ``MAC_*`` counters); ``mac_ports`` here is 0 or
        ``ports``.
    clk_hz : float
        Frequency of ``sync`` in Hz, for the UART's bit timing.
    baud : int
        UART line rate; ``clk_hz / baud`` must be 8 or more (see
        :func:`~hetnic.gateware.uart_bridge.uart_divisor`).
    ddr_buffer : type
        ``amaranth.lib.io.DDRBuffer`` on a board, :class:`~hetnic.gateware.rgmii.DdrBufferModel`
        in simulation.

    Members
    -------
    uart_rx, uart_tx
        The bridge's serial lines (see :class:`~hetnic.gateware.uart_bridge.UartBridgedCore`).
    """

    def __init__(self, ports, *, pins, core_params=ECP5_BOARD_CORE, clk_hz=CORE_HZ,
                 baud=UART_BAUD, ddr_buffer=io.DDRBuffer):
        self.params = self.check_parameters(ports, core_params=core_params, clk_hz=clk_hz,
                                            baud=baud)
        self.regmap = self.params.regmap()
        pins = list(pins)
        if len(pins) != ports or not all(isinstance(p, RgmiiPins) for p in pins):
            raise TypeError(f"pins must be {ports} RgmiiPins, one per port, not {pins!r}")
        self.ports, self.pins = ports, pins
        self.clk_hz, self.baud, self.ddr_buffer = clk_hz, baud, ddr_buffer
        super().__init__()

    @staticmethod
    def check_parameters(ports, *, core_params, clk_hz, baud) -> NicParams:
        """Raise ``ValueError`` for parameters the core cannot be built with (before anything
        is built); returns the build the core will have (``core_params`` with
        ``mac_ports=ports``)."""
        if ports not in (1, 2):
            raise ValueError(f"ports must be 1 or 2, not {ports!r}")
        if not isinstance(core_params, NicParams):
            raise TypeError(f"core_params must be a NicParams, not {core_params!r}")
        if core_params.data_width != 8:
            raise ValueError(f"the board core's RX pipeline takes a byte per cycle from the "
                             f"MAC: core_params needs data_width=8, not "
                             f"{core_params.data_width!r}")
        if core_params.mac_ports not in (0, ports) or core_params.rx_queues:
            raise ValueError(f"core_params must be an RX pipeline's build with mac_ports 0 or "
                             f"{ports} and no DMA queues, not {core_params!r}")
        uart_divisor(clk_hz, baud)
        return core_params.replace(mac_ports=ports)

    def elaborate(self, platform):
        m = Module()
        rx_macs, tx_macs = [], []
        for n, pins in enumerate(self.pins):
            rx_mac, tx_mac = self._port(m, n, pins)
            rx_macs.append(rx_mac)
            tx_macs.append(tx_mac)

        # --- port 0 -> pipeline -> tag -> port 1 (port 0 on a one-port board) ---------------
        m.submodules.cdc0 = cdc0 = _rx_crossing("rx0")
        m.submodules.pipeline = pipeline = RxPipeline(self.params)
        m.submodules.tagger = tagger = TagInserter()
        # A register slice between the crossing (placed by the PHY's pins) and the pipeline:
        # the pipeline's input handshake into its data FIFO's level was, on the ECPIX-5, a
        # path across the die from the crossing's output.
        m.submodules.rx_slice = rx_slice = SkidBuffer(Beat(8))
        _connect_fifo(m, rx_macs[0].o, cdc0, rx_slice.i)
        connect(m, rx_slice.o, pipeline.rx)
        connect(m, pipeline.data, tagger.data)
        connect(m, pipeline.meta, tagger.meta)
        connect(m, tagger.o, tx_macs[-1].i)

        # --- port 1 -> port 0, untouched ------------------------------------------------------
        if self.ports == 2:
            m.submodules.cdc1 = cdc1 = _rx_crossing("rx1")
            m.submodules.store1 = store1 = FrameFifo()
            _connect_fifo(m, rx_macs[1].o, cdc1, store1.i)
            # A register slice between the FIFO's block RAM and the transmit MAC's logic.
            m.submodules.store1_slice = store1_slice = SkidBuffer(Beat(8))
            connect(m, store1.o, store1_slice.i)
            connect(m, store1_slice.o, tx_macs[0].i)

        # --- registers over the UART ----------------------------------------------------------
        m.submodules.bridge = bridge = UartBridge(self.clk_hz, self.baud, addr_width=16)
        m.submodules.mac_counters = mac_counters = MacCounters(self.regmap)
        for n, (rx_mac, tx_mac) in enumerate(zip(rx_macs, tx_macs)):
            mac_counters.attach(m, n, rx_mac, tx_mac)
        m.submodules.csr_decoder = decoder = CsrDecoder(16, [mac_counters.window()],
                                                        registered=True)
        # A register stage between the bridge and the register file: the bridge's answer
        # path and the register file's address decode are separate paths.
        m.submodules.csr_slice = csr_slice = CsrSlice(16)
        connect(m, bridge.csr, decoder.bus)
        connect(m, decoder.sub[0], mac_counters.csr)
        connect(m, decoder.default, csr_slice.bus)
        connect(m, csr_slice.csr, pipeline.csr)
        m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]
        return m

    def _port(self, m, n, pins):
        """RGMII adapter, receive MAC (in ``rx<n>``) and transmit MAC (in ``sync``)."""
        domain = f"rx{n}"
        m.submodules[f"phy{n}"] = phy = RgmiiPhy(
            *pins, rx_domain=domain, tx_domain="sync", tx_clk_domain="tx90",
            ddr_buffer=self.ddr_buffer)
        m.submodules[f"rx_mac{n}"] = rx_mac = DomainRenamer(domain)(GmiiRxMac())
        m.submodules[f"tx_mac{n}"] = tx_mac = GmiiTxMac()
        connect(m, phy.rx, rx_mac.gmii)
        connect(m, tx_mac.gmii, phy.tx)
        return rx_mac, tx_mac


def _rx_crossing(domain):
    # Buffered: the read side is a register, not the block RAM's output (4 ns clock to out
    # on ECP5, which then started the core's critical path).
    return AsyncFIFOBuffered(width=Beat(8).size, depth=513, w_domain=domain, r_domain="sync")


class BoardTop(Elaboratable):
    """Base of a board's top: a :class:`~hetnic.boards.Board` with as many RGMII ports as
    the top takes, built for the board's platform only, its register bridge on a UART.

    A subclass sets ``RGMII_PORTS`` (the port counts it takes), ``BOARD_KIND`` (which boards
    those are, for the error message) and ``SIMULATE`` (what to simulate instead), and
    builds its design in :meth:`elaborate_board`.
    """
    RGMII_PORTS: tuple[int, ...]
    BOARD_KIND: str
    SIMULATE: str

    def __init__(self, board):
        if board.ports not in self.RGMII_PORTS:
            raise ValueError(f"{type(self).__name__} is for {self.BOARD_KIND}; "
                             f"{board.name} has {board.ports} RGMII ports")
        self.board = board

    def elaborate(self, platform):
        if platform is None:
            raise TypeError(f"{type(self).__name__} is built for a board platform only; "
                            f"simulate {self.SIMULATE} instead")
        return self.elaborate_board(platform)

    def elaborate_board(self, platform) -> Module:
        raise NotImplementedError

    def uart(self, m, platform):
        """The register bridge's serial line: ``(rx, tx)``, the received line (idle high)
        and the line to drive. Here amaranth-boards' ``uart`` 0; a board without one
        overrides this (:class:`~hetnic.boards.butterstick.ButterStickTop`)."""
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        return rx.i, tx.o


class Ecp5BoardTop(BoardTop):
    """An ECP5 board's top: the clocks, resets and pins around a :class:`BoardCore` with
    ``board.ports`` ports (see the module documentation). ``board`` is a
    :class:`~hetnic.boards.Board`; elaborate only with its platform (the PLL and DDR
    buffers are ECP5 primitives). The core is built in ``elaborate``, so a top that is never
    built leaves nothing unused behind.
    """
    RGMII_PORTS = (1, 2)
    BOARD_KIND = "a board with one or two RGMII ports"
    SIMULATE = "hetnic.boards.sim_top.BoardSimTop"

    def elaborate_board(self, platform):
        m = Module()

        # --- clocks and resets --------------------------------------------------------------
        osc = platform.request(self.board.oscillator, 0, dir="-")
        m.submodules.osc_buf = osc_buf = io.Buffer("i", osc)
        m.submodules.pll = pll = Ecp5Pll(osc_buf.i, self.board.osc_mhz)
        # nextpnr derives the 125 MHz constraints of the PLL outputs from the oscillator's.
        arst = ~pll.locked
        if platform.default_rst is not None:
            rst = platform.request(platform.default_rst, 0, dir="-")
            m.submodules.rst_buf = rst_buf = io.Buffer("i", rst)
            arst = arst | rst_buf.i
        m.domains.sync = ClockDomain("sync")
        m.domains.tx90 = ClockDomain("tx90", reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(pll.clk), ClockSignal("tx90").eq(pll.clk90)]
        # The core's reset reaches some ten thousand flip-flops: synchronise it, then put it
        # on a global network (a DCCA, which nextpnr routes like a clock) instead of the
        # general routing, where a net that size ruins both timing and routing time.
        sync_rst = Signal()
        m.submodules.sync_rst = AsyncFFSynchronizer(arst, sync_rst, o_domain="sync")
        m.submodules.sync_rst_global = Instance("DCCA", i_CLKI=sync_rst, i_CE=1,
                                                o_CLKO=ResetSignal("sync"))

        # --- pins: RX clocks, PHY management, the RGMII data pins for the core -----------------
        core_pins = []
        for n in range(self.board.ports):
            pins, rx_ctl, tx_ctl = _request_rgmii(platform, n)
            domain = f"rx{n}"
            m.domains += ClockDomain(domain)
            m.submodules[f"rx_clk_buf{n}"] = clk_buf = io.Buffer("i", pins.rx_clk)
            m.d.comb += ClockSignal(domain).eq(clk_buf.i)
            platform.add_clock_constraint(pins.rx_clk.io, CORE_HZ)     # FREQUENCY PORT
            m.submodules[f"rx_rst{n}"] = ResetSynchronizer(arst, domain=domain)
            if hasattr(pins, "rst"):
                m.submodules[f"phy_rst{n}"] = phy_rst = io.Buffer("o", pins.rst)
                m.submodules[f"mdc{n}"] = mdc = io.Buffer("o", pins.mdc)
                m.submodules[f"mdio{n}"] = io.Buffer("io", pins.mdio)     # oe = 0: released
                m.d.comb += [phy_rst.o.eq(ResetSignal("sync")), mdc.o.eq(0)]
            core_pins.append(RgmiiPins(pins.rx_data, rx_ctl, pins.tx_data, tx_ctl,
                                       pins.tx_clk))

        m.submodules.core = core = BoardCore(self.board.ports, pins=core_pins,
                                             clk_hz=CORE_HZ, baud=UART_BAUD)
        uart_rx, uart_tx = self.uart(m, platform)
        m.d.comb += [core.uart_rx.eq(uart_rx), uart_tx.eq(core.uart_tx)]
        return m


def _request_rgmii(platform, number):
    """The RGMII pins of port ``number`` as ports for DDR buffers, tolerating the
    ``rx_ctrl``/``tx_ctrl`` spelling of some amaranth-boards resources. Management pins
    (``rst``, ``mdc``, ``mdio``) are included, unless they are the same pins as
    port 0's (Colorlight 5A-75B): then port 0 drives them."""
    resource = platform.lookup("eth_rgmii", number)
    names = {sub.name for sub in resource.ios}
    rx_ctl = "rx_ctl" if "rx_ctl" in names else "rx_ctrl"
    tx_ctl = "tx_ctl" if "tx_ctl" in names else "tx_ctrl"
    dirs = {name: "-" for name in names}
    if number > 0 and _pins(resource, "rst") == _pins(platform.lookup("eth_rgmii", 0), "rst"):
        # The same physical pins cannot be requested twice: describe this port's data pins
        # as a resource of their own.
        data_subs = [sub for sub in resource.ios if sub.name not in ("rst", "mdc", "mdio")]
        platform.add_resources([Resource("hetnic_rgmii_data", number, *data_subs,
                                         resource.attrs)])
        pins = platform.request("hetnic_rgmii_data", number, dir=dirs)
        return _Shared(pins), getattr(pins, rx_ctl), getattr(pins, tx_ctl)
    pins = platform.request("eth_rgmii", number, dir=dirs)
    return pins, getattr(pins, rx_ctl), getattr(pins, tx_ctl)


def _pins(resource, name):
    for sub in resource.ios:
        if sub.name == name:
            return tuple(tuple(io.names) for io in sub.ios)
    return None


class _Shared:
    """The pins of a port whose management pins belong to port 0 (no ``rst`` attribute)."""
    def __init__(self, pins):
        for name in ("rx_clk", "rx_data", "tx_clk", "tx_data"):
            setattr(self, name, getattr(pins, name))
