# Ref: IEEE 802.3-2022 clause 35 (GMII).
"""The gigabit media independent interface between the MAC cores and a PHY adapter."""

from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["GmiiSignature"]


class GmiiSignature(wiring.Signature):
    """One direction of GMII at 1000 Mb/s, seen from the side that drives it.

    Members
    -------
    data : Out(8)
        The byte of this cycle (``TXD`` / ``RXD``).
    en : Out(1)
        A frame byte (preamble, SFD, data or FCS) is on ``data`` (``TX_EN`` / ``RX_DV``).
    er : Out(1)
        With ``en``: the byte is in error (``TX_ER`` / ``RX_ER``). Without ``en`` (carrier
        extension, false carrier) the receiver ignores it.
    """
    def __init__(self):
        super().__init__({"data": Out(8), "en": Out(1), "er": Out(1)})
