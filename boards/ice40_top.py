"""The iCEBreaker's top: the RSS hash and the RETA, fed with Toeplitz inputs over the UART.

The iCE40 UP5K has 5,280 logic cells (a LUT4 and a flip-flop each; a flip-flop takes a cell
of its own unless the LUT in front of it is its only driver), 30 4-kbit block RAMs and no
Ethernet. The RX pipeline's blocks, placed for this device by nextpnr (packed cells, the
table in docs/boards.md), do not fit together: the UART bridge, the register file and the RETA take
about 3,000 cells before any frame is handled; the 8-bit parser adds about 1,900 and the hash
stage about 2,200 (3,800 behind the parser, which must then keep every address and port it
parses). What fits beside the bridge and the register file is the Toeplitz engine with the
programmable key and the RETA (:class:`~hetnic.gateware.rss_steering.RssSteering`): the host
parses a frame and picks its hash input (the software model does it bit for bit), the
board hashes it with the key in force and looks its queue up::

    UART -> UartBridge -> CsrDecoder -+-> HashInjector (INJ_*, RES_*) -> i
                                      |        ^ result queue <--------- o
                                      +-> RssSteering.csr (everything else)

:class:`SerialCore` is that design, clocked by ``sync``; it is simulated whole in the tests.
:class:`Ice40BoardTop` puts it on the board: ``sync`` is the 12 MHz oscillator itself (no
PLL: at 115200 baud a steered frame takes about 13 ms on the line whatever the clock, and a
slow clock leaves the placer room on a nearly full device), with the platform's power-on
reset that iCE40 block RAMs need.
"""

from amaranth.hdl import Module
from amaranth.lib.wiring import connect

from ..gateware.axil import CsrDecoder
from ..gateware.hash_injector import HashInjector, injector_window
from ..gateware.rss_steering import RssSteering
from ..gateware.uart_bridge import UartBridge, UartBridgedCore, uart_divisor
from ..params import ICE40_SERIAL_CORE, NicParams
from .top import UART_BAUD, BoardTop

__all__ = ["SerialCore", "Ice40BoardTop", "ICE40_CLK_HZ"]

ICE40_CLK_HZ = 12e6


class SerialCore(UartBridgedCore):
    """UART bridge, hash injector and RSS steering (see the module documentation).

    Parameters
    ----------
    clk_hz : float
        Frequency of ``sync`` in Hz, for the UART's bit timing.
    baud : int
        UART line rate; ``clk_hz / baud`` must be 8 or more.
    params : NicParams
        The reduced serial core's build (``injector`` set), as
        :class:`~hetnic.gateware.rss_steering.RssSteering`; default
        :data:`~hetnic.params.ICE40_SERIAL_CORE`, the iCEBreaker's.
    result_depth : int
        Results the injector's queue holds.

    Members
    -------
    uart_rx, uart_tx
        The bridge's serial lines (see :class:`~hetnic.gateware.uart_bridge.UartBridgedCore`).
    """

    def __init__(self, *, clk_hz=ICE40_CLK_HZ, baud=UART_BAUD,
                 params: NicParams = ICE40_SERIAL_CORE, result_depth=256):
        uart_divisor(clk_hz, baud)
        if not isinstance(params, NicParams) or not params.injector:
            raise ValueError(f"params must be a reduced serial core's build (injector=True), "
                             f"not {params!r}")
        self.params = params
        self.regmap = params.regmap()
        self.clk_hz, self.baud, self.result_depth = clk_hz, baud, result_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = UartBridge(self.clk_hz, self.baud, addr_width=16)
        m.submodules.decoder = decoder = CsrDecoder(16, [injector_window(self.regmap)])
        m.submodules.injector = injector = HashInjector(self.regmap,
                                                        result_depth=self.result_depth)
        m.submodules.steering = steering = RssSteering(self.params)
        m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]
        connect(m, bridge.csr, decoder.bus)
        connect(m, decoder.sub[0], injector.csr)
        connect(m, decoder.default, steering.csr)
        connect(m, injector.o, steering.i)
        connect(m, steering.o, injector.meta)
        return m


class Ice40BoardTop(BoardTop):
    """The iCEBreaker's top: :class:`SerialCore` on the 12 MHz oscillator (the platform's
    default ``sync`` domain, with its power-on reset) and the FTDI UART (``uart`` 0).
    ``board`` is a :class:`~hetnic.boards.Board`; elaborate only with its platform."""
    RGMII_PORTS = (0,)
    BOARD_KIND = "the serial-fed core of a board without Ethernet"
    SIMULATE = "hetnic.boards.ice40_top.SerialCore"

    def elaborate_board(self, platform):
        m = Module()
        m.submodules.core = core = SerialCore(clk_hz=platform.default_clk_frequency,
                                              params=ICE40_SERIAL_CORE)
        uart_rx, uart_tx = self.uart(m, platform)
        m.d.comb += [core.uart_rx.eq(uart_rx), uart_tx.eq(core.uart_tx)]
        return m
