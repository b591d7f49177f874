"""The ButterStick's board top: the PLL dividers for its 30 MHz oscillator, the SYZYGY bank
supply control (model and gateware, in Amaranth's simulator) and the build plan (no tools
run)."""

import pytest

from hetnic.boards import get_board
from hetnic.boards.build import build_plan
from hetnic.boards.butterstick import (LEVEL_BITS, VccioControl, vccio_level, vccio_volts)
from hetnic.boards.top import Ecp5Pll
from kit import run_simulation


@pytest.mark.parametrize("osc_mhz, dividers", [
    (25, (1, 5)), (100, (4, 5)), (30, (6, 25)), (50, (2, 5)), (10, (2, 25)), (125, (1, 1)),
    (375, (3, 1)), (30.0, (6, 25))])
def test_pll_dividers_make_125_mhz(osc_mhz, dividers):
    clki_div, clkfb_div = Ecp5Pll.dividers(osc_mhz)
    assert (clki_div, clkfb_div) == dividers
    assert osc_mhz / clki_div * clkfb_div == 125           # feedback from CLKOP
    assert osc_mhz / clki_div >= 3.125                      # phase detector minimum


@pytest.mark.parametrize("osc_mhz, message", [
    (12, "a 12 MHz oscillator gives the PLL a 1 MHz phase detector"),
    (27, "a 27 MHz oscillator gives the PLL a 1 MHz phase detector"),
    (12.5, "whole number of MHz"), (8, "from 10 to 400"), (500, "from 10 to 400")])
def test_pll_refuses_what_it_cannot_make(osc_mhz, message):
    with pytest.raises(ValueError, match=message):
        Ecp5Pll.dividers(osc_mhz)


def test_vccio_level_matches_the_designers_firmware():
    """The ButterStick's own demonstration firmware writes 6500 (its comment: 3.3 V) and
    45000 (1.8 V) to the same 16-bit pulse-density channels: the model must put those
    within 0.05 V of what the firmware says."""
    assert vccio_volts(6500) == pytest.approx(3.3, abs=0.05)
    assert vccio_volts(45000) == pytest.approx(1.8, abs=0.05)
    for volts in (1.2, 1.5, 1.8, 2.5, 3.3):
        assert vccio_volts(vccio_level(volts)) == pytest.approx(volts, abs=0.001)
    assert 0 < vccio_level(3.3) < vccio_level(1.2) < 1 << LEVEL_BITS


@pytest.mark.parametrize("volts", [1.0, 3.6, -1])
def test_vccio_level_refuses_supplies_out_of_range(volts):
    with pytest.raises(ValueError, match="from 1.2 to 3.3 V"):
        vccio_level(volts)


def test_vccio_control_density_and_enable_order():
    """Each output's density is its level (exactly, for a first-order modulator); ``en``
    stays low for the settle time and ``power_good`` for the start time after it, and both
    stay high."""
    dut = VccioControl((3.3, 1.8, 2.5), clk_hz=1e6, settle_s=300e-6, start_s=100e-6)
    assert (dut.settle_cycles, dut.start_cycles) == (300, 100)
    window = 4096
    ones, en_rise, good_rise = [0, 0, 0], [], []

    async def bench(ctx):
        for cycle in range(window):
            pdm = ctx.get(dut.pdm)
            for i in range(3):
                ones[i] += pdm >> i & 1
            if ctx.get(dut.en) and not en_rise:
                en_rise.append(cycle)
            if ctx.get(dut.power_good) and not good_rise:
                good_rise.append(cycle)
            if en_rise:
                assert ctx.get(dut.en)
            if good_rise:
                assert ctx.get(dut.power_good) and ctx.get(dut.en)
            await ctx.tick()

    run_simulation(dut, bench, cycle_limit=window + 1, clock_period=1e-6)
    # A first-order modulator's carries over k steps from zero: floor(k * level / 2**16)
    # (the first cycle shows the reset value).
    for count, level in zip(ones, dut.levels):
        assert count == (window - 1) * level >> LEVEL_BITS
    assert en_rise == [301] and good_rise == [401]


def test_butterstick_build_plan():
    """The one-port core with the PLL at 30 MHz -> 125 MHz, the UART on SYZYGY 0 (S0 = G2
    board TX, S1 = J3 board RX, 3.3 V, RX pulled up), the bank supply pins, the RGMII RX
    clock constrained; no tools run."""
    board = get_board("butterstick")
    _, plan = build_plan(board)
    design = plan.files["hetnic_butterstick.il"]
    assert design.count("EHXPLLL") == 1
    assert "parameter \\CLKI_DIV 6" in design and "parameter \\CLKFB_DIV 25" in design
    assert "IDDRX1F" in design and "ODDRX1F" in design and "store1" not in design
    lpf = plan.files["hetnic_butterstick.lpf"]
    for line in ('LOCATE COMP "uart_0__tx__io" SITE "G2";',
                 'LOCATE COMP "uart_0__rx__io" SITE "J3";',
                 'IOBUF PORT "uart_0__rx__io" IO_TYPE=LVCMOS33 PULLMODE=UP;',
                 'LOCATE COMP "vccio_ctrl_0__en__io" SITE "E12";',
                 'FREQUENCY PORT "clk30_0__io" 30000000.0 HZ;',
                 'FREQUENCY PORT "eth_rgmii_0__rx_clk__io" 125000000.0 HZ;'):
        assert line in lpf
    assert "--um5g-85k" in plan.files["build_hetnic_butterstick.sh"]
