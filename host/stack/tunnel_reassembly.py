# Ref: RFC 791 section 3.2 (IPv4 fragments and reassembly), RFC 8200 section 4.5 (IPv6
#      fragments), RFC 5722 (overlapping fragments: the datagram is dropped), RFC 792 and
#      RFC 4443 3.3 (time exceeded, code 1: fragment reassembly time exceeded), RFC 7348
#      section 4.3 (VXLAN: the outer header may be fragmented by the sender).
"""The tunnel adapter's reassembly of outer IP fragments, before it decapsulates.

A tunnel's far end may fragment the outer datagram: the kernel's VXLAN device over IPv4
without ``df set`` does so when the inner frame plus 50 bytes exceeds the underlay's MTU.
The NIC steers every outer fragment from a tunnel remote to the adapter
(:func:`~hetnic.host.tunnel_host.tunnel_fragment_rules`); :class:`OuterReassembly` takes
them before the outer stack sees them and hands each whole datagram to the adapter, which
decapsulates it as if it had come in one piece.

It takes a frame when it is an IPv4 fragment (MF or an offset) or an IPv6 packet whose
first extension header is a fragment header (not an atomic fragment), to our MAC, with a
well-formed header (IPv4: version, IHL, total length, header checksum; IPv6: payload length)
from a tunnel remote to one of the outer stack's unicast addresses. Anything else goes to the
outer stack as before, which checks and counts it the usual way.

Reassembly is :class:`~hetnic.host.stack.reassembly.Reassembler`'s (one per IP version):
RFC 791 / RFC 8200 4.5, any overlap drops the whole datagram (RFC 5722 for IPv6, and what
current stacks do for IPv4), an exact copy of a fragment held is ignored, a timeout from the
first fragment, and bounded memory (:class:`FragmentLimits`): in all and per source (a
remote), in bytes and in datagrams. The counts (:meth:`OuterReassembly.stats`): fragments,
reassembled, timeouts, overlaps, over limit (evicted or refused by a bound), bad length,
duplicates, and what is held now.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

from hetnic.protocol import IpProto

from .checksum import checksum
from .counters import StackCounters
from .errors import BadArgument
from .icmp import REASSEMBLY_TIME_EXCEEDED, TIME_EXCEEDED
from .icmpv6 import PARAMETER_PROBLEM
from .icmpv6 import REASSEMBLY_TIME_EXCEEDED as ICMPV6_REASSEMBLY_TIME_EXCEEDED
from .icmpv6 import TIME_EXCEEDED as ICMPV6_TIME_EXCEEDED
from .reassembly import Reassembler

__all__ = ["FragmentLimits", "OuterReassembly", "is_fragment"]

_FRAGMENT = int(IpProto.FRAGMENT)
_FRAG = struct.Struct("!BxHI")
#: Parameter problem code 0 (erroneous header field) and the offset of the IPv6 payload
#: length it points at (RFC 4443 3.4, RFC 8200 4.5).
_PARAM_HEADER_FIELD, _PAYLOAD_LENGTH_AT = 0, 4
#: Drop reasons of the reassemblers, grouped as :meth:`OuterReassembly.stats` reports them.
_OVER_LIMIT = ("frag_evicted", "frag_memory", "frag_source_limit", "frag_too_many")
_BAD_LENGTH = ("frag_bad_length", "frag_oversize")


def is_fragment(frame) -> bool:
    """Whether Ethernet II ``frame`` holds an IPv4 fragment (MF set or an offset) or an IPv6
    datagram whose first extension header is a fragment header: the cheap test a receive
    path makes before :meth:`OuterReassembly.take`."""
    if len(frame) < 34:
        return False
    if frame[12] == 0x08 and frame[13] == 0x00:
        return bool(frame[20] & 0x3F or frame[21])
    return frame[12] == 0x86 and frame[13] == 0xDD and frame[20] == _FRAGMENT


@dataclass(frozen=True)
class FragmentLimits:
    """The bounds of the adapter's reassembly, each per IP version (one reassembler each).

    Members
    -------
    memory : int
        Bytes of fragment data held in all; past it the oldest datagrams are evicted.
    source_memory : int
        Bytes held per source (a remote); past it that source's oldest datagrams are evicted,
        never another source's.
    datagrams, source_datagrams : int
        Datagrams in progress in all and per source.
    fragments : int
        Fragments per datagram (a 65535-byte datagram over a 1280-byte path takes 52).
    timeout : float
        Seconds from a datagram's first fragment to its drop (RFC 791 suggests 15).
    """
    memory: int = 1 << 20
    source_memory: int = 256 << 10
    datagrams: int = 256
    source_datagrams: int = 64
    fragments: int = 64
    timeout: float = 15.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not value > 0 or (f.name != "timeout" and not isinstance(value, int)):
                raise BadArgument(f"fragment limit {f.name} must be a positive "
                                  f"{'number' if f.name == 'timeout' else 'integer'}, "
                                  f"not {value!r}")


class OuterReassembly:
    """Outer fragments from the tunnel remotes, reassembled for a
    :class:`~hetnic.host.stack.tunnel.TunnelAdapter` (see the module).

    Parameters
    ----------
    iface : NetInterface
        The outer stack's interface: its MAC and addresses, its ICMP for time-exceeded
        errors, its counters (``frames_in`` and ``ip4_in`` / ``ip6_in`` count each fragment
        taken, as the stack itself would).
    remotes : iterable of bytes
        The tunnels' remote addresses (4 or 16 bytes).
    deliver : callable
        ``deliver(src, dst, proto, payload, hop_limit, now)`` for each whole datagram:
        ``proto`` the IPv4 protocol or the next header of the IPv6 fragmentable part,
        ``payload`` the transport bytes.
    limits : FragmentLimits

    Members
    -------
    v4, v6 : Reassembler
    counters : StackCounters
        The reassemblers' drops (``frag_*``), apart from the outer stack's.
    """

    def __init__(self, iface, remotes: Iterable[bytes],
                 deliver: Callable[[bytes, bytes, int, bytes, int, float], None],
                 limits: FragmentLimits = FragmentLimits()) -> None:
        self.iface = iface
        self.deliver = deliver
        self.limits = limits
        self.counters = StackCounters()
        remotes = frozenset(bytes(r) for r in remotes)
        self._remotes4 = frozenset(r for r in remotes if len(r) == 4)
        self._remotes6 = frozenset(r for r in remotes if len(r) == 16)
        bounds = dict(memory=limits.memory, max_datagrams=limits.datagrams,
                      max_fragments=limits.fragments, timeout=limits.timeout,
                      source_memory=limits.source_memory,
                      source_datagrams=limits.source_datagrams)
        self.v4 = Reassembler(self.counters, header_len_limit=20, **bounds)  # per fragment: IHL
        self.v6 = Reassembler(self.counters, header_len_limit=0, **bounds)

    def take(self, frame, now: float) -> bool:
        """Whether ``frame`` (Ethernet II) was an outer fragment from a remote, now held or
        reassembled (and delivered); False: hand it to the outer stack."""
        size = len(frame)
        if not is_fragment(frame) or frame[:6] != self.iface.mac:
            return False
        if frame[12] == 0x08:
            return bool(self._remotes4) and self._take4(frame, size, now)
        return size >= 62 and bool(self._remotes6) and self._take6(frame, size, now)

    def _take4(self, frame, size: int, now: float) -> bool:
        vihl = frame[14]
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20 or 14 + ihl > size:
            return False
        total = (frame[16] << 8) | frame[17]
        src = bytes(frame[26:30])
        dst = bytes(frame[30:34])
        if total < ihl or 14 + total > size or src not in self._remotes4 \
                or dst not in self.iface.ipv4_set or checksum(frame[14:14 + ihl]):
            return False
        counters = self.iface.counters
        counters.frames_in += 1
        counters.ip4_in += 1
        flags = (frame[20] << 8) | frame[21]
        proto = frame[23]
        offset = (flags & 0x1FFF) << 3
        # The first fragment's header and 8 bytes: what a time-exceeded error quotes.
        info = (proto, bytes(frame[14:14 + ihl + 8])) if offset == 0 else None
        done = self.v4.add((src, dst, (frame[18] << 8) | frame[19], proto), offset,
                           bool(flags & 0x2000), frame[14 + ihl:14 + total], now, info,
                           header_len=ihl)
        if done is not None:
            self.deliver(src, dst, proto, done[0], frame[22], now)
        return True

    def _take6(self, frame, size: int, now: float) -> bool:
        end = 54 + ((frame[18] << 8) | frame[19])
        if end > size or end < 62:
            return False
        src = bytes(frame[22:38])
        dst = bytes(frame[38:54])
        if src not in self._remotes6 or dst not in self.iface.ipv6_set:
            return False
        next_header, offset_flags, ident = _FRAG.unpack_from(frame, 54)
        offset = offset_flags & 0xFFF8
        more = bool(offset_flags & 1)
        if offset == 0 and not more:
            return False                # an atomic fragment (RFC 6946): the stack's path
        counters = self.iface.counters
        counters.frames_in += 1
        counters.ip6_in += 1
        if more and (end - 62) % 8:
            # RFC 8200 4.5: a fragment with M set must carry a multiple of 8 bytes; parameter
            # problem pointing at its payload length (the reassembler counts the drop).
            self.iface.icmp6.error(PARAMETER_PROBLEM, _PARAM_HEADER_FIELD, _PAYLOAD_LENGTH_AT,
                                   src, dst, bytes(frame[14:end]), now)
        # The first fragment's next header, and its headers and 8 bytes for the error.
        info = (next_header, bytes(frame[14:70])) if offset == 0 else None
        done = self.v6.add((src, dst, ident), offset, more, frame[62:end], now, info)
        if done is not None:
            self.deliver(src, dst, done[1][0], done[0], frame[21], now)
        return True

    # -- timers ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [t for t in (self.v4.next_deadline(), self.v6.next_deadline())
                 if t is not None]
        return min(times, default=None)

    def poll(self, now: float) -> None:
        """Drop the datagrams that timed out (``frag_timeout``); a time-exceeded error
        (code 1) to the remote for those whose first fragment came (RFC 792, RFC 8200
        4.5), rate limited by the outer stack's ICMP."""
        iface = self.iface
        for _proto, quote in self.v4.poll(now):
            iface.icmp4.error(TIME_EXCEEDED, REASSEMBLY_TIME_EXCEEDED, quote[12:16],
                              quote[16:20], quote, now)
        for _next_header, quote in self.v6.poll(now):
            iface.icmp6.error(ICMPV6_TIME_EXCEEDED, ICMPV6_REASSEMBLY_TIME_EXCEEDED, 0,
                              quote[8:24], quote[24:40], quote, now)

    # -- counts ----------------------------------------------------------------------------
    def stats(self) -> dict:
        """``fragments`` taken, datagrams ``reassembled``, ``timeouts``, ``overlaps``,
        ``over_limit`` (datagrams evicted or refused by a bound of :class:`FragmentLimits`),
        ``bad_length`` (past 65535 bytes, not a multiple of 8, past the last fragment's end),
        ``duplicates`` (exact copies ignored), ``held_bytes`` and ``datagrams`` in progress
        now, and the reassemblers' ``drops`` by reason."""
        drops = self.counters.drops
        return {"fragments": self.v4.fragments + self.v6.fragments,
                "reassembled": self.v4.reassembled + self.v6.reassembled,
                "timeouts": drops.get("frag_timeout", 0),
                "overlaps": drops.get("frag_overlap", 0),
                "over_limit": sum(drops.get(r, 0) for r in _OVER_LIMIT),
                "bad_length": sum(drops.get(r, 0) for r in _BAD_LENGTH),
                "duplicates": drops.get("frag_duplicate", 0),
                "held_bytes": self.v4.held + self.v6.held,
                "datagrams": len(self.v4) + len(self.v6),
                "drops": dict(drops)}
