# Ref: IEEE 802.3 (Ethernet II framing), RFC 2464 section 7 (IPv6 multicast MAC addresses),
#      RFC 4291 section 2.5.1 (modified EUI-64 interface identifiers).
"""Ethernet II headers and the MAC addresses the stack answers to.

Frames are ``bytes`` without the FCS: destination MAC, source MAC, EtherType, payload. The
helpers here are pure functions; :class:`~hetnic.host.stack.interface.NetInterface` uses
them to decide which frames are ours and to build the headers it prepends. (MAC addresses
given as text are parsed by :func:`hetnic.host.stack.address.parse_mac`.)
"""

from __future__ import annotations

import struct

from hetnic.protocol import ETH_HEADER_LEN, EtherType

__all__ = [
    "ETH_HEADER_LEN", "BROADCAST_MAC", "ETH_IPV4", "ETH_IPV6", "ETH_ARP",
    "eth_header", "ipv6_multicast_mac",
]

BROADCAST_MAC = b"\xff" * 6
# Plain ints for the per-frame comparisons (an amaranth IntEnum member compares slower).
ETH_IPV4 = int(EtherType.IPV4)
ETH_IPV6 = int(EtherType.IPV6)
ETH_ARP = int(EtherType.ARP)

_ETH = struct.Struct("!6s6sH")


def eth_header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """The 14-byte Ethernet II header from ``src`` to ``dst`` (6-byte MACs)."""
    return _ETH.pack(dst, src, ethertype)


def ipv6_multicast_mac(group: bytes) -> bytes:
    """The MAC an IPv6 multicast ``group`` (16 bytes) is sent to: ``33:33`` and the group's
    last four bytes (RFC 2464 section 7)."""
    return b"\x33\x33" + bytes(group[12:16])
