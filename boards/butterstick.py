# Ref: Lattice FPGA-TN-02200 (ECP5 sysCLOCK PLL); ButterStick r1.0 (G. Davill): schematic
# values and the VCCIO control described in amaranth-boards' ButterStickPlatform.
"""The ButterStick's top: the one-port core, a UART on SYZYGY port 0, and the SYZYGY bank
supplies.

amaranth-boards describes the ButterStick (LFE5UM5G-85F) with one RGMII port, a 30 MHz
oscillator and no serial port: its USB connector goes to a ULPI PHY, not to a USB-serial
bridge. So the register bridge's serial line is put on two pins of SYZYGY port 0, where a
3.3 V USB-serial adapter is wired:

============  ==========  =====  ==============================
signal        SYZYGY 0    ball   direction
============  ==========  =====  ==============================
``uart.tx``   ``S0``      G2     board to host (adapter's RXD)
``uart.rx``   ``S1``      J3     host to board (adapter's TXD)
============  ==========  =====  ==============================

The SYZYGY banks have no supply until the design makes one. Each bank's regulator is set
by a voltage the FPGA makes with a pulse-density output behind an RC filter (68 kOhm,
100 nF) that injects current into the regulator's feedback node (0.6 V reference, 53.6 kOhm
from the output, 13 kOhm to ground), and is switched on by one enable pin shared by the
three banks. :class:`VccioControl` sets all three to 3.3 V, as the board designer's own
demonstration firmware does (the bootloader leaves them at 1.8 V): **do not plug a 1.8 V
or 2.5 V-only pod into any SYZYGY port while this bitstream runs**. The enable waits until
the filter has settled, so the regulators never start from an unsettled control voltage,
and the UART's receive line reads idle until the supply is up.

Everything else is :class:`~hetnic.boards.top.Ecp5BoardTop` with one port: frames are
classified, tagged and sent back on the port they came in on. Nothing here has been tried
on a ButterStick: none was available.
"""

from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import Out

from .top import CORE_HZ, Ecp5BoardTop

__all__ = ["ButterStickTop", "VccioControl", "vccio_level", "vccio_volts", "UART_PINS"]

#: The SYZYGY port 0 pins of the UART (connector pin names of amaranth-boards).
UART_PINS = {"tx": "S0", "rx": "S1"}

# The bank supply's control network (ButterStick r1.0 schematic values).
_V_REF = 0.6            # regulator feedback reference, volts
_R_INJECT = 68_000      # from the filtered control voltage into the feedback node
_R_FEEDBACK = 53_600    # from the regulator's output to the feedback node
_R_SET = 13_000         # from the feedback node to ground
_C_FILTER = 100e-9      # the RC filter's capacitor (with _R_INJECT)
_V_LOGIC = 3.3          # the pulse-density pins' high level
LEVEL_BITS = 16


def vccio_level(volts: float) -> int:
    """The pulse density (out of ``2**LEVEL_BITS``) that sets a bank supply to ``volts``.

    At the feedback node the currents balance: what the output sends through the feedback
    resistor plus what the control voltage injects equals what the set resistor takes,
    ``(V - Vref)/Rf + (Vctl - Vref)/Ri = Vref/Rs``; solved for ``Vctl``, which is the pins'
    3.3 V times the density. 3.3 V needs about 0.31 V (density 0.095), 1.8 V about 2.22 V.
    """
    if not 1.2 <= volts <= 3.3:
        raise ValueError(f"a SYZYGY bank supply must be from 1.2 to 3.3 V, not {volts!r}")
    v_ctl = _V_REF + _R_INJECT * (_V_REF / _R_SET - (volts - _V_REF) / _R_FEEDBACK)
    return round(v_ctl / _V_LOGIC * (1 << LEVEL_BITS))


def vccio_volts(level: int) -> float:
    """The bank supply a pulse density ``level`` (out of ``2**LEVEL_BITS``) sets: the
    inverse of :func:`vccio_level`."""
    v_ctl = level / (1 << LEVEL_BITS) * _V_LOGIC
    return _V_REF + _R_FEEDBACK * (_V_REF / _R_SET - (v_ctl - _V_REF) / _R_INJECT)


class VccioControl(wiring.Component):
    """Three first-order sigma-delta outputs setting the SYZYGY bank supplies, and their
    shared enable, in ``sync``.

    ``pdm[i]`` is high on average ``vccio_level(volts[i]) / 2**16`` of the cycles, spread
    as evenly as a first-order modulator does (its carry). ``en`` rises once the filter has
    settled (``settle_s``, about fifteen of its 6.8 ms time constants by default), and
    ``power_good`` when the regulators have also started (``start_s``, the regulator's
    soft start of about 1 ms, with margin). Both stay high until reset.

    Members
    -------
    pdm : Out(3)
    en : Out(1)
    power_good : Out(1)
    """
    pdm: Out(3)
    en: Out(1)
    power_good: Out(1)

    def __init__(self, volts=(3.3, 3.3, 3.3), *, clk_hz=CORE_HZ, settle_s=0.1,
                 start_s=0.002):
        if len(volts) != 3:
            raise ValueError(f"volts must give the three banks' supplies, not {volts!r}")
        self.levels = [vccio_level(v) for v in volts]
        self.settle_cycles = max(1, round(settle_s * clk_hz))
        self.start_cycles = max(1, round(start_s * clk_hz))
        super().__init__()

    @staticmethod
    def time_constant_s() -> float:
        return _R_INJECT * _C_FILTER

    def elaborate(self, platform):
        m = Module()
        for i, level in enumerate(self.levels):
            sigma = Signal(LEVEL_BITS + 1, name=f"sigma{i}")
            m.d.sync += sigma.eq(sigma[:LEVEL_BITS] + level)
            m.d.comb += self.pdm[i].eq(sigma[LEVEL_BITS])
        total = self.settle_cycles + self.start_cycles
        elapsed = Signal(range(total + 1))
        with m.If(elapsed != total):
            m.d.sync += elapsed.eq(elapsed + 1)
        m.d.sync += [self.en.eq(elapsed >= self.settle_cycles),
                     self.power_good.eq(elapsed == total)]
        return m


class ButterStickTop(Ecp5BoardTop):
    """:class:`~hetnic.boards.top.Ecp5BoardTop` for the ButterStick: its serial line on
    SYZYGY port 0 and the bank supplies that port needs (see the module documentation)."""

    def uart(self, m, platform):
        platform.add_resources([Resource(
            "uart", 0,
            Subsignal("tx", Pins(UART_PINS["tx"], dir="o", conn=("syzygy", 0))),
            Subsignal("rx", Pins(UART_PINS["rx"], dir="i", conn=("syzygy", 0)),
                      Attrs(PULLMODE="UP")),
            Attrs(IO_TYPE="LVCMOS33"))])
        m.submodules.vccio = vccio = VccioControl()
        ctrl = platform.request("vccio_ctrl", 0, dir="-")
        m.submodules.vccio_pdm = pdm = io.Buffer("o", ctrl.pdm)
        m.submodules.vccio_en = en = io.Buffer("o", ctrl.en)
        m.d.comb += [pdm.o.eq(vccio.pdm), en.o.eq(vccio.en)]
        rx, tx = super().uart(m, platform)
        line = Signal(init=1)
        m.d.comb += line.eq(Mux(vccio.power_good, rx, 1))   # idle until the bank is powered
        return line, tx
