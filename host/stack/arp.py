# Ref: RFC 826 (ARP), RFC 5227 section 2.1.1 (ARP probes from 0.0.0.0), RFC 5227 section 3
#      (gratuitous ARP / announcements).
"""ARP for the stack's IPv4 addresses over Ethernet.

:class:`ArpHandler` answers requests for our addresses, learns neighbours by RFC 826's merge
rule (an existing entry is refreshed from any ARP packet; a new one is created only from a
packet whose target is us) and sends the requests the neighbour cache asks for. Requests for
addresses that are not ours are counted (``"arp_not_ours"``) and not answered; malformed
packets are counted (``"arp_malformed"``, ``"arp_truncated"``, ``"arp_bad_sender"``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .ethernet import BROADCAST_MAC, ETH_ARP, ETH_IPV4, eth_header

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = ["ArpHandler", "ARP_REQUEST", "ARP_REPLY", "build_arp"]

ARP_REQUEST = 1
ARP_REPLY = 2
_HTYPE_ETHERNET = 1
# htype, ptype, hlen, plen, oper, sha, spa, tha, tpa
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_ARP_LEN = _ARP.size  # 28
_ZERO_IP = b"\0\0\0\0"


def build_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """The 28-byte ARP packet (Ethernet / IPv4) for ``op`` (1 request, 2 reply)."""
    return _ARP.pack(_HTYPE_ETHERNET, ETH_IPV4, 6, 4, op, sha, spa, tha, tpa)


class ArpHandler:
    """The ARP side of one :class:`~hetnic.host.stack.interface.NetInterface`."""

    def __init__(self, iface: NetInterface) -> None:
        self.iface = iface

    def input(self, frame: bytes, now: float) -> None:
        """Handle one received ARP frame (Ethernet header included)."""
        iface = self.iface
        counters = iface.counters
        if len(frame) < 14 + _ARP_LEN:
            counters.drop("arp_truncated")
            return
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, 14)
        if (htype != _HTYPE_ETHERNET or ptype != ETH_IPV4 or hlen != 6 or plen != 4
                or op not in (ARP_REQUEST, ARP_REPLY)):
            counters.drop("arp_malformed")
            return
        if sha[0] & 1 or sha == b"\0" * 6 or iface.is_local(spa) or spa[0] >= 224 \
                or spa[0] == 127 or (spa != _ZERO_IP and spa[0] == 0):
            # A group or zero MAC, someone using our address, or a sender IP no host has.
            counters.drop("arp_bad_sender")
            return
        counters.arp_in += 1
        for_us = tpa in iface.ipv4_set
        neighbours = iface.neighbours
        if spa != _ZERO_IP:
            # RFC 826: refresh an entry we have; add one only when the packet is for us.
            waiting = neighbours.update(spa, sha, now, confirmed=for_us, create=for_us)
            for packet in waiting:
                iface.resend(packet, now)
        if op == ARP_REQUEST:
            if for_us:
                self.send(ARP_REPLY, sha, tpa, sha, spa)
            elif spa != tpa:
                counters.drop("arp_not_ours")
        elif not for_us:
            counters.drop("arp_not_ours")

    def send(self, op: int, dst_mac: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
        """Send an ARP packet from our MAC and ``spa`` to ``dst_mac``."""
        iface = self.iface
        iface.counters.arp_out += 1
        iface.emit(eth_header(dst_mac, iface.mac, ETH_ARP)
                   + build_arp(op, iface.mac, spa, tha, tpa))

    def request(self, ip: bytes, mac: bytes | None, now: float) -> None:
        """Ask who has ``ip``: broadcast, or unicast to ``mac`` (a probe of a stale entry)."""
        iface = self.iface
        spa = iface.source_for(ip) or (iface.ipv4[0][0] if iface.ipv4 else _ZERO_IP)
        self.send(ARP_REQUEST, mac or BROADCAST_MAC, spa, b"\0" * 6, ip)
