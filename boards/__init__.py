"""Boards: amaranth-boards platforms with what hetnic can build for each.

:data:`BOARDS` maps a board name (as ``hetnic build --board NAME`` takes it) to a
:class:`Board`. Only boards whose ``top`` is set have a board top; the others are listed so
the CLI can say what is missing (:class:`BoardNotImplemented`).
"""

import importlib
from dataclasses import dataclass

from ..errors import HetnicError

__all__ = ["Board", "BOARDS", "BoardError", "BoardNotImplemented", "get_board"]


class BoardError(HetnicError):
    """An unknown board or a board that cannot be built; the message is one line."""


class BoardNotImplemented(BoardError):
    """The board is known, but hetnic has no top for it yet."""


@dataclass(frozen=True)
class Board:
    """One board.

    Attributes
    ----------
    name : str
    platform : str
        ``module:Class`` in ``amaranth_boards``, imported on use.
    ports : int
        RGMII Ethernet ports amaranth-boards describes for it.
    reduced : bool
        Only a reduced core fits (no full RX pipeline).
    clock_mhz : float
        Core clock target.
    top : str or None
        The class building the design: a class of ``hetnic.boards.top``, or
        ``module:Class`` for one in another ``hetnic.boards`` module; ``None``: not
        implemented yet.
    oscillator : str
        The board clock resource the core PLL runs from, and ``osc_mhz`` its frequency.
    note : str
        What works and what does not, one line.
    loader : tuple of str
        openFPGALoader arguments naming the board or cable (not checked on hardware).
    """
    name: str
    platform: str
    ports: int
    reduced: bool
    clock_mhz: float
    top: str | None
    oscillator: str = ""
    osc_mhz: float = 0
    note: str = ""
    loader: tuple = ()

    def platform_class(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)

    def make_top(self):
        """The board top (an Elaboratable); :class:`BoardNotImplemented` if there is none."""
        if self.top is None:
            raise BoardNotImplemented(f"board {self.name!r}: no board top is implemented yet "
                                      f"({self.note})")
        module, _, cls = self.top.rpartition(":")
        return getattr(importlib.import_module(f".{module or 'top'}", __name__), cls)(self)

    @property
    def device(self) -> str:
        p = self.platform_class()
        return f"{p.device}-{getattr(p, 'speed', '')}{p.package}".replace("--", "-")


BOARDS: dict[str, Board] = {board.name: board for board in (
    Board("versa_ecp5", "versa_ecp5:VersaECP5Platform", ports=2, reduced=False,
          clock_mhz=125, top="Ecp5BoardTop", oscillator="clk100", osc_mhz=100,
          note="bump in the wire: port 0 classified and tagged to port 1, port 1 passed "
               "to port 0; UART register bridge; placed and routed, 125 MHz met (core "
               "130.0 MHz)", loader=("-c", "ft2232")),
    Board("colorlight_5a75b", "colorlight_5a75b_r7_0:Colorlight_5A75B_R70Platform", ports=2,
          reduced=False, clock_mhz=125, top="Ecp5BoardTop", oscillator="clk25",
          osc_mhz=25,
          note="same top as versa_ecp5 (LFE5U-25F, speed grade 6); placed and routed: "
               "125 MHz NOT met (core about 75 MHz, port 1 receiver about 104 MHz); UART "
               "on the LED/button pins", loader=("-b", "colorlight")),
    Board("ecpix5", "ecpix5:ECPIX545Platform", ports=1, reduced=False, clock_mhz=125,
          top="Ecp5BoardTop", oscillator="clk100", osc_mhz=100,
          note="one RGMII port: frames are classified, tagged and sent back on the port "
               "they came in on; UART register bridge on amaranth-boards' uart 0; "
               "placed and routed, 125 MHz met (core 141.1 MHz)", loader=("-b", "ecpix5")),
    Board("butterstick", "butterstick:ButterStickPlatform", ports=1, reduced=False,
          clock_mhz=125, top="butterstick:ButterStickTop", oscillator="clk30", osc_mhz=30,
          note="one RGMII port, as ecpix5; UART register bridge on SYZYGY port 0 (S0 = "
               "board TX, S1 = board RX, 3.3 V: the design sets all three SYZYGY banks to "
               "3.3 V); placed and routed, 125 MHz met (core 137.6 MHz)",
          loader=("-c", "ft2232")),
    Board("icebreaker", "icebreaker:ICEBreakerPlatform", ports=0, reduced=True,
          clock_mhz=12, top="ice40_top:Ice40BoardTop",
          note="iCE40UP5K, no Ethernet: a reduced core on the UART, the Toeplitz hash with "
               "the programmable key and the RETA (the host parses; no parser, rules or "
               "counters fit beside the bridge and register file)",
          loader=("-b", "icebreaker")),
)}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; boards: {', '.join(BOARDS)}") from None
