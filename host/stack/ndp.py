# Ref: RFC 4861 (neighbour discovery: sections 4.3, 4.4, 4.6.1, 7.1, 7.2), RFC 4862 section
#      5.4 (duplicate address detection: solicitations from the unspecified address).
"""Neighbour solicitation and advertisement for one interface's IPv6 addresses.

Received solicitations (hop limit 255, code 0, a unicast target, well-formed options) for one
of our addresses are answered with an advertisement carrying our MAC, the *override* flag,
and the *solicited* flag unless the solicitation came from ``::`` (duplicate address
detection: the answer then goes to all-nodes). A solicitation's source link-layer address
creates or refreshes a neighbour entry (``STALE``). Advertisements update entries we already
have, as RFC 4861 7.2.5 says (solicited -> ``REACHABLE``; without the override flag a
different MAC does not replace a known one). Solicitations for other targets are counted
(``"ndp_not_ours"``) and not answered. Resolution sends a solicitation to the target's
solicited-node group (or unicast when probing). We do not run duplicate address detection
for our own addresses, and we ignore routers (addresses are configured).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .icmpv6 import NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION
from .ipv6 import ALL_NODES, UNSPECIFIED, solicited_node

if TYPE_CHECKING:
    from .interface import NetInterface

__all__ = ["Ndp", "OPT_SOURCE_LLADDR", "OPT_TARGET_LLADDR", "NA_ROUTER", "NA_SOLICITED",
           "NA_OVERRIDE"]

OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
NA_ROUTER = 0x80000000
NA_SOLICITED = 0x40000000
NA_OVERRIDE = 0x20000000
_NDP_HOP_LIMIT = 255


class _Bad(Exception):
    """A malformed NDP message (internal: becomes a counted drop)."""


def _lladdr_option(message: memoryview | bytes, kind: int) -> bytes | None:
    """The link-layer address option ``kind`` of an NS/NA (options from byte 24)."""
    found = None
    at, size = 24, len(message)
    while at < size:
        if at + 2 > size:
            raise _Bad
        length = message[at + 1] << 3
        if length == 0 or at + length > size:
            raise _Bad
        if message[at] == kind:
            if length != 8:
                raise _Bad          # Ethernet addresses: one 8-byte unit
            found = bytes(message[at + 2:at + 8])
        at += length
    return found


class Ndp:
    """Neighbour discovery on one interface."""

    def __init__(self, iface: NetInterface) -> None:
        self.iface = iface

    def _parse(self, message: memoryview | bytes, hop_limit: int, kind: int
               ) -> tuple[bytes, bytes | None] | None:
        """The checks an NS and an NA share (RFC 4861 7.1.1 / 7.1.2: hop limit 255, code 0,
        length, a target that is not multicast, well-formed options): ``(target, the
        link-layer address of option ``kind`` or None)``, or None when the message was
        dropped (counted)."""
        counters = self.iface.counters
        if hop_limit != _NDP_HOP_LIMIT:
            counters.drop("ndp_bad_hop_limit")
            return None
        if message[1] != 0:
            counters.drop("ndp_bad_code")
            return None
        if len(message) < 24:
            counters.drop("ndp_truncated")
            return None
        target = bytes(message[8:24])
        if target[0] == 0xFF:
            counters.drop("ndp_malformed")
            return None
        try:
            lladdr = _lladdr_option(message, kind)
        except _Bad:
            counters.drop("ndp_bad_option")
            return None
        return target, lladdr

    def solicitation_in(self, src: bytes, dst: bytes, message: memoryview | bytes,
                        hop_limit: int, now: float) -> None:
        """Handle a neighbour solicitation (RFC 4861 7.1.1 checks, then 7.2.3)."""
        iface = self.iface
        counters = iface.counters
        parsed = self._parse(message, hop_limit, OPT_SOURCE_LLADDR)
        if parsed is None:
            return
        target, sll = parsed
        dad = src == UNSPECIFIED
        if dad and (dst != solicited_node(target) or sll is not None):
            counters.drop("ndp_malformed")
            return
        if target not in iface.ipv6_set:
            counters.drop("ndp_not_ours")
            return
        if sll is not None:
            for packet in iface.neighbours.update(src, sll, now, confirmed=False):
                iface.resend(packet, now)
        flags = NA_OVERRIDE if dad else NA_OVERRIDE | NA_SOLICITED
        self._advertise(target, ALL_NODES if dad else src, flags, now)

    def advertisement_in(self, src: bytes, dst: bytes, message: memoryview | bytes,
                         hop_limit: int, now: float) -> None:
        """Handle a neighbour advertisement (RFC 4861 7.1.2 checks, then 7.2.5)."""
        iface = self.iface
        counters = iface.counters
        parsed = self._parse(message, hop_limit, OPT_TARGET_LLADDR)
        if parsed is None:
            return
        target, tll = parsed
        flags = int.from_bytes(message[4:8], "big")
        if dst[0] == 0xFF and flags & NA_SOLICITED:
            counters.drop("ndp_malformed")
            return
        if target in iface.ipv6_set:
            counters.drop("ndp_address_conflict")
            return
        neighbours = iface.neighbours
        if tll is None:
            tll = neighbours.mac(target)
            if tll is None:
                counters.drop("ndp_unsolicited")
                return
        if neighbours.state(target) is None:
            counters.drop("ndp_unsolicited")
            return
        for packet in neighbours.update(target, tll, now, confirmed=bool(flags & NA_SOLICITED),
                                        override=bool(flags & NA_OVERRIDE), create=False):
            iface.resend(packet, now)

    def _advertise(self, target: bytes, dst: bytes, flags: int, now: float) -> None:
        iface = self.iface
        body = (flags.to_bytes(4, "big") + target
                + bytes((OPT_TARGET_LLADDR, 1)) + iface.mac)
        iface.icmp6.send(target, dst, NEIGHBOR_ADVERTISEMENT, 0, body, now,
                         hop_limit=_NDP_HOP_LIMIT, limited=False)

    def solicit(self, target: bytes, mac: bytes | None, now: float) -> None:
        """Send a solicitation for ``target``: to its solicited-node group, or unicast to
        ``target`` when ``mac`` is given (probing a known neighbour)."""
        iface = self.iface
        src = iface.source_for(target) or iface.ipv6[0][0]
        dst = target if mac is not None else solicited_node(target)
        body = bytes(4) + target + bytes((OPT_SOURCE_LLADDR, 1)) + iface.mac
        iface.icmp6.send(src, dst, NEIGHBOR_SOLICITATION, 0, body, now,
                         hop_limit=_NDP_HOP_LIMIT, limited=False)
