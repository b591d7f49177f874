"""Per-instance counters of the user-mode stack: frames, segments and drops by reason.

Every layer of the stack counts into one :class:`StackCounters`. Counters are plain integer
attributes (``counters.tcp_in += 1`` on the hot path: no method call, no dictionary), and every
frame or segment the stack refuses is counted once in :attr:`StackCounters.drops` under a
short reason such as ``"ip_bad_checksum"`` or ``"tcp_bad_option"``.
"""

from __future__ import annotations

__all__ = ["StackCounters"]


class StackCounters:
    """The counters of one stack instance.

    Members
    -------
    frames_in, frames_out : int
        Ethernet frames received (all, before any check) and handed out to send.
    arp_in, arp_out : int
        ARP packets accepted and sent.
    ip4_in, ip6_in : int
        IPv4 / IPv6 packets accepted for this host (after the header checks; a reassembled
        datagram counts once per fragment here).
    ip_out : int
        IP packets sent (each fragment counts).
    icmp_in, icmp_out : int
        ICMP and ICMPv6 messages accepted and sent (NDP included).
    udp_in, udp_out, tcp_in, tcp_out : int
        Datagrams and segments accepted and sent by the transports.
    tcp_retransmits, tcp_fast_retransmits, tcp_rto : int
        Segments retransmitted (all causes), fast retransmissions, retransmission timeouts.
    tcp_challenge_acks, tcp_syn_cookies_sent, tcp_syn_cookies_ok : int
        Challenge ACKs sent (RFC 5961), SYN cookies sent and accepted.
    drops : dict[str, int]
        Frames, packets and segments refused, by reason.
    """

    __slots__ = (
        "frames_in", "frames_out", "arp_in", "arp_out", "ip4_in", "ip6_in", "ip_out",
        "icmp_in", "icmp_out", "udp_in", "udp_out", "tcp_in", "tcp_out",
        "tcp_retransmits", "tcp_fast_retransmits", "tcp_rto", "tcp_challenge_acks",
        "tcp_syn_cookies_sent", "tcp_syn_cookies_ok", "drops",
    )

    _FIELDS = __slots__[:-1]

    def __init__(self) -> None:
        for name in self._FIELDS:
            setattr(self, name, 0)
        self.drops: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items dropped for ``reason`` (a short snake_case word such as
        ``"ip_bad_checksum"``)."""
        drops = self.drops
        drops[reason] = drops.get(reason, 0) + n

    @property
    def dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.drops.values())

    def as_dict(self) -> dict:
        """A flat snapshot: every counter by name, and the drops (a copy) under ``"drops"``."""
        out: dict = {name: getattr(self, name) for name in self._FIELDS}
        out["drops"] = dict(self.drops)
        return out

    def __repr__(self) -> str:
        busy = ", ".join(f"{name}={getattr(self, name)}" for name in self._FIELDS
                         if getattr(self, name))
        return f"StackCounters({busy}, drops={self.drops})"
