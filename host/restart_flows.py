# Ref: RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293 (TCP).
"""The flows an instance restart pins: a TCP connection as the NIC receives it.

A restart (:mod:`~hetnic.host.daemon_restart`) keeps each established connection on the
instance that holds it with a flow table entry keyed by the 5-tuple of the frames the NIC
*receives* for it: source = the peer, destination = us. :func:`connection_flow` makes that
key from a stack's connection dump (:meth:`Stack.connections
<hetnic.host.stack.stack.Stack.connections>`), :func:`frame_flow` from a received frame
(Ethernet II, IPv4 or IPv6 without extension headers, TCP), so an instance can tell a
frame of a pinned connection that reached it while it was held.

A flow here is a plain tuple ``(src, dst, src_port, dst_port)`` of the addresses as
``ipaddress`` text (compressed) and the ports, picklable and hashable; the protocol is TCP.
"""

from __future__ import annotations

import ipaddress
import struct

from ..protocol import EtherType, IpProto

__all__ = ["Flow", "frame_flow", "connection_flow", "five_tuple"]

#: ``(src, dst, src_port, dst_port)`` of a TCP flow as the NIC receives it.
Flow = tuple[str, str, int, int]


def frame_flow(frame: bytes) -> Flow | None:
    """The TCP flow of a received Ethernet II frame (no VLAN tag), or None when the frame is
    not TCP over IPv4 / IPv6 (an IPv6 extension header, a fragment, too short)."""
    if len(frame) < 14:
        return None
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == EtherType.IPV4:
        if len(frame) < 34 or frame[23] != IpProto.TCP:
            return None
        ihl = (frame[14] & 0x0F) * 4
        if struct.unpack_from("!H", frame, 20)[0] & 0x1FFF or len(frame) < 14 + ihl + 4:
            return None                 # a fragment past the first: no ports
        src = str(ipaddress.IPv4Address(frame[26:30]))
        dst = str(ipaddress.IPv4Address(frame[30:34]))
        at = 14 + ihl
    elif ethertype == EtherType.IPV6:
        if len(frame) < 58 or frame[20] != IpProto.TCP:
            return None
        src = str(ipaddress.IPv6Address(frame[22:38]))
        dst = str(ipaddress.IPv6Address(frame[38:54]))
        at = 54
    else:
        return None
    sport, dport = struct.unpack_from("!HH", frame, at)
    return (src, dst, sport, dport)


def connection_flow(info: dict) -> Flow:
    """The flow of a connection in a stack's dump (``local``, ``lport``, ``remote``,
    ``rport``): what the NIC receives, from the peer to us."""
    return (str(ipaddress.ip_address(info["remote"])),
            str(ipaddress.ip_address(info["local"])), int(info["rport"]), int(info["lport"]))


def five_tuple(flow: Flow):
    """``flow`` as the flow table's :class:`~hetnic.host.flow_table.FiveTuple` (TCP)."""
    from .flow_table import FiveTuple
    src, dst, sport, dport = flow
    return FiveTuple(src, dst, sport, dport, "tcp")
