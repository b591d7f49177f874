# Ref: AMBA 4 AXI4-Stream Protocol Specification (ARM IHI 0051A): tdata, tkeep, tlast, tuser.
"""The data beat of hetnic's frame streams."""

from amaranth.lib import data

__all__ = ["Beat"]


class Beat(data.StructLayout):
    """One beat of a frame on an AXI4-Stream-style port.

    Parameters
    ----------
    width : int
        Data width in bits: a multiple of 8, from 8 to 512.

    Members
    -------
    data : unsigned(width)
        Frame bytes. Byte lane ``k`` (bits ``8k+7 .. 8k``) carries the frame byte that comes
        ``k`` bytes after the first byte of the beat, as in AXI4-Stream: the first wire byte
        is in the least significant lane.
    keep : unsigned(width // 8)
        One bit per byte lane. Every beat but the last is full; the last beat keeps a
        contiguous run of lanes starting at lane 0.
    last : unsigned(1)
        Last beat of the frame.
    error : unsigned(1)
        The MAC marked the frame bad (AXI4-Stream ``tuser``). Sampled on every beat.
    """
    def __init__(self, width):
        if not isinstance(width, int) or width < 8 or width > 512 or width % 8:
            raise ValueError(f"Beat width must be a multiple of 8 between 8 and 512, "
                             f"not {width!r}")
        self.width = width
        super().__init__({
            "data": width,
            "keep": width // 8,
            "last": 1,
            "error": 1,
        })
