# Ref: RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe-13 (VXLAN-GPE), RFC 6335 (ephemeral ports),
#      RFC 6935 / RFC 6936 (zero UDP checksums over IPv6 for tunnels).
"""The tunnel encapsulations of the stack's virtual adapter: header layouts and constants,
defined once (the adapter, its tests and the docs use these).

VXLAN (RFC 7348 section 5), 8 bytes after the outer UDP header, then an inner Ethernet frame::

    | flags (8): R R R R I R R R | reserved (24) | VNI (24) | reserved (8) |

VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe section 3.1), the same 8 bytes with a version, the
P(next protocol) bit and a next-protocol byte, then the inner packet that byte names (IPv4,
IPv6 or Ethernet; the adapter carries IPv4 and IPv6 - an L3 tunnel)::

    | R R Ver(2) I P B O | reserved (16) | next protocol (8) | VNI (24) | reserved (8) |
"""

from __future__ import annotations

import struct

from .protocol import (VNI_MAX, VXLAN_FLAG_I, VXLAN_GPE_UDP_PORT, VXLAN_HEADER_LEN,
                       VXLAN_UDP_PORT)

__all__ = ["VXLAN_UDP_PORT", "VXLAN_GPE_UDP_PORT", "TUNNEL_HEADER", "VXLAN_FLAG_I",
           "GPE_FLAG_P", "GPE_FLAG_O", "GPE_FLAG_B", "GPE_VERSION_MASK", "GPE_NEXT_IPV4",
           "GPE_NEXT_IPV6", "GPE_NEXT_ETHERNET", "VNI_MAX", "SOURCE_PORTS", "TUNNEL_KINDS",
           "UDP_HEADER", "ETH_HEADER", "pack_vxlan", "pack_gpe", "overhead"]

#: Bytes of the VXLAN / VXLAN-GPE header. The ports, the header length, the I flag and
#: VNI_MAX are defined in :mod:`hetnic.protocol` (the NIC's parser reads the VNI too).
TUNNEL_HEADER = VXLAN_HEADER_LEN
UDP_HEADER = 8
ETH_HEADER = 14
#: VXLAN: the I flag (VXLAN_FLAG_I, a valid VNI); every other bit of the flags byte is
#: reserved (0).
#: VXLAN-GPE flags: version bits (must be 0), I as in VXLAN, P (next protocol present),
#: B (BUM traffic) and O (OAM packet).
GPE_VERSION_MASK = 0x30
GPE_FLAG_P = 0x04
GPE_FLAG_B = 0x02
GPE_FLAG_O = 0x01
#: VXLAN-GPE next-protocol values (draft section 3.2).
GPE_NEXT_IPV4 = 0x01
GPE_NEXT_IPV6 = 0x02
GPE_NEXT_ETHERNET = 0x03
#: Outer UDP source ports: from a hash of the inner flow (RFC 7348 section 5), in the dynamic
#: range of RFC 6335 (inclusive).
SOURCE_PORTS = (49152, 65535)
#: The encapsulations: name -> (UDP destination port, inner Ethernet?).
TUNNEL_KINDS: dict[str, tuple[int, bool]] = {
    "vxlan": (VXLAN_UDP_PORT, True),
    "vxlan-gpe": (VXLAN_GPE_UDP_PORT, False),
}

#: flags, reserved (3 bytes, the last the GPE next protocol), VNI << 8.
_HEADER = struct.Struct("!B3xI")


def pack_vxlan(vni: int) -> bytes:
    """The 8-byte VXLAN header for ``vni`` (I flag set)."""
    return _HEADER.pack(VXLAN_FLAG_I, vni << 8)


def pack_gpe(vni: int, next_protocol: int) -> bytes:
    """The 8-byte VXLAN-GPE header (version 0, I and P set) for ``vni`` and the inner
    packet's ``next_protocol``."""
    return bytes((VXLAN_FLAG_I | GPE_FLAG_P, 0, 0, next_protocol)) + (vni << 8).to_bytes(4, "big")


def overhead(kind: str, outer_version: int) -> int:
    """Bytes a packet grows by in ``kind`` over an IPv``outer_version`` outer header (outer
    IP, UDP and the tunnel header; plus the inner Ethernet header for VXLAN)."""
    ip = 20 if outer_version == 4 else 40
    return ip + UDP_HEADER + TUNNEL_HEADER + (ETH_HEADER if TUNNEL_KINDS[kind][1] else 0)
