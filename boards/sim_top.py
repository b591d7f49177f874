"""The board core with flat pins, for cocotb on Verilator (simulation only).

:class:`BoardSimTop` is :class:`~hetnic.boards.top.BoardCore` with what the ECP5 shell adds
replaced by top-level ports: behavioural DDR buffers
(:class:`~hetnic.gateware.rgmii.DdrBufferModel`) on flat RGMII pins, the clocks as inputs and
the UART lines as plain pins. The Verilog (:func:`hetnic.rtl.to_verilog`) has these ports:

``clk``, ``rst``
    The core clock and its synchronous reset (``sync``).
``clk90``
    ``clk`` a quarter period later (``tx90``): it becomes every ``rgmii<n>_tx_clk``, as a
    PHY in RGMII-ID mode would see it.
``rgmii<n>_rx_clk``, ``rgmii<n>_rxd`` (4), ``rgmii<n>_rx_ctl``
    Port ``n``'s receive pins; ``rgmii<n>_rx_clk`` clocks the port's ``rx<n>`` domain, so a
    testbench may run it at its own phase (the core crosses it into ``sync``).
``rgmii<n>_txd`` (4), ``rgmii<n>_tx_ctl``, ``rgmii<n>_tx_clk``
    Port ``n``'s transmit pins.
``uart_rx``, ``uart_tx``
    The register bridge's serial lines, ``bit_cycles`` clock cycles per bit.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..gateware.rgmii import DdrBufferModel
from ..params import ECP5_BOARD_CORE
from .top import CORE_HZ, BoardCore, RgmiiPins

__all__ = ["BoardSimTop"]


class BoardSimTop(wiring.Component):
    """:class:`~hetnic.boards.top.BoardCore` with flat ports (see the module documentation).

    Parameters
    ----------
    ports : int
        1 or 2, as :class:`~hetnic.boards.top.BoardCore`.
    core_params : NicParams
        The RX pipeline's build (default :data:`~hetnic.params.ECP5_BOARD_CORE`, the board
        build's), as :class:`~hetnic.boards.top.BoardCore`.
    clk_hz : float
        The nominal frequency of ``clk``.
    bit_cycles : int
        Clock cycles per UART bit (at least 8): the bridge is built for
        ``clk_hz / bit_cycles`` baud, so a simulation moves a register access in a few
        thousand cycles instead of the ~200,000 of 115200 baud at 125 MHz.
    """
    def __init__(self, ports=2, *, core_params=ECP5_BOARD_CORE, clk_hz=CORE_HZ, bit_cycles=16):
        if not isinstance(bit_cycles, int) or isinstance(bit_cycles, bool) or bit_cycles < 8:
            raise ValueError(f"bit_cycles must be an integer of at least 8, not "
                             f"{bit_cycles!r}")
        baud = round(clk_hz / bit_cycles)
        self.params = BoardCore.check_parameters(ports, core_params=core_params,
                                                 clk_hz=clk_hz, baud=baud)
        self.regmap = self.params.regmap()
        self.ports, self.bit_cycles = ports, bit_cycles
        self._core_args = {"core_params": core_params, "clk_hz": clk_hz, "baud": baud}
        super().__init__({
            "clk90": In(1), "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
            **{f"rgmii{n}_rx_clk": In(1) for n in range(ports)},
        })

    @staticmethod
    def _pins(n):
        def pin(name, width, direction):
            return io.SingleEndedPort(io.IOPort(width, name=f"rgmii{n}_{name}"),
                                      direction=direction)
        return RgmiiPins(pin("rxd", 4, "i"), pin("rx_ctl", 1, "i"), pin("txd", 4, "o"),
                         pin("tx_ctl", 1, "o"), pin("tx_clk", 1, "o"))

    def elaborate(self, platform):
        m = Module()
        m.domains.tx90 = ClockDomain(reset_less=True)
        m.d.comb += ClockSignal("tx90").eq(self.clk90)
        for n in range(self.ports):
            domain = f"rx{n}"
            m.domains += ClockDomain(domain)
            m.d.comb += ClockSignal(domain).eq(getattr(self, f"rgmii{n}_rx_clk"))
            m.submodules[f"rx_rst{n}"] = ResetSynchronizer(ResetSignal("sync"), domain=domain)
        m.submodules.core = core = BoardCore(
            self.ports, pins=[self._pins(n) for n in range(self.ports)],
            ddr_buffer=DdrBufferModel, **self._core_args)
        m.d.comb += [core.uart_rx.eq(self.uart_rx), self.uart_tx.eq(core.uart_tx)]
        return m
