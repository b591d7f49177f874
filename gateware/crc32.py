# Ref: IEEE 802.3-2022 clause 3.2.9 (Frame Check Sequence).
"""The Ethernet FCS: the CRC-32 register's step over one byte, as logic."""

from amaranth.hdl import Cat

from ..protocol import CRC32_POLY

__all__ = ["crc32_step"]


def _crc32_byte_model(crc, byte):
    crc ^= byte
    for _ in range(8):
        crc = (crc >> 1) ^ (CRC32_POLY if crc & 1 else 0)
    return crc


# The byte step is linear over GF(2) in (crc, byte): output bit j is the parity of the bits
# of ``Cat(crc, byte)`` selected by mask j, the bits whose own step sets bit j.
_CRC_MASKS = [
    sum(1 << k for k in range(32) if _crc32_byte_model(1 << k, 0) >> j & 1) |
    sum(1 << (32 + k) for k in range(8) if _crc32_byte_model(0, 1 << k) >> j & 1)
    for j in range(32)
]


def crc32_step(crc, byte):
    """The CRC-32 register after one more byte, as a combinational expression.

    ``crc`` is the 32-bit register of the reflected algorithm (polynomial
    :data:`~hetnic.protocol.CRC32_POLY`), ``byte`` the next byte as sent on the wire.
    Starting from ``0xFFFFFFFF``, the register after a frame, inverted, is ``zlib.crc32`` of
    the frame; its FCS is that value with the least significant byte sent first.
    """
    bits = Cat(crc, byte)
    return Cat(*((bits & mask).xor() for mask in _CRC_MASKS))
