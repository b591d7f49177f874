# Ref: RFC 4987 section 3.6 (SYN cookies), RFC 9293 section 3.4.1 (ISN selection).
"""SYN cookies: a listener whose backlog is full answers a SYN with a SYN-ACK whose initial
sequence number encodes what it must remember, and keeps no state; the ACK that completes
the handshake brings the cookie back (``SEG.ACK - 1``) and :meth:`SynCookies.check` recovers
the MSS, or says the ACK is forged or too old.

Cookie layout (32 bits, the ISN of our SYN-ACK)::

    bits 31..27  a slow time counter (now // 32 s), modulo 32
    bits 26..24  the index of the peer's MSS in :data:`MSS_TABLE` (rounded down)
    bits 23..0   a keyed BLAKE2s hash of the 4-tuple, the peer's ISN, the full counter and
                 the MSS index

A cookie is accepted while its counter is at most :data:`MAX_AGE` periods old: between 96 and
128 seconds, about 2 minutes. Window scale, SACK and timestamps are not encoded: a connection
made from a cookie runs without them.
"""

from __future__ import annotations

from bisect import bisect_right
from hashlib import blake2s

from .errors import BadArgument

__all__ = ["SynCookies", "MSS_TABLE", "COOKIE_PERIOD", "MAX_AGE"]

#: The MSS values a cookie can carry (3 bits); a peer's MSS is rounded down to one of them
#: (below the first, the first: 536 is every host's minimum).
MSS_TABLE = (536, 1220, 1300, 1380, 1400, 1440, 1460, 8960)
#: Seconds per counter step.
COOKIE_PERIOD = 32.0
#: The oldest accepted counter, in periods behind the current one.
MAX_AGE = 3


class SynCookies:
    """Make and check SYN cookies with one secret.

    Parameters
    ----------
    secret : bytes
        16 to 32 random bytes (the BLAKE2s key), chosen once per stack.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: bytes):
        if not isinstance(secret, (bytes, bytearray)) or not 16 <= len(secret) <= 32:
            raise BadArgument("the SYN-cookie secret must be 16 to 32 bytes")
        self._key = bytes(secret)

    def _hash(self, src: bytes, dst: bytes, sport: int, dport: int, peer_isn: int,
              counter: int, index: int) -> int:
        data = b"".join((src, dst, sport.to_bytes(2, "big"), dport.to_bytes(2, "big"),
                         peer_isn.to_bytes(4, "big"),
                         (counter & 0xFFFFFFFFFFFF).to_bytes(6, "big"), bytes((index,))))
        return int.from_bytes(blake2s(data, key=self._key, digest_size=3).digest(), "big")

    def make(self, src: bytes, dst: bytes, sport: int, dport: int, peer_isn: int, mss: int,
             now: float) -> int:
        """The ISN for our SYN-ACK to a SYN ``src:sport -> dst:dport`` with sequence number
        ``peer_isn`` and MSS option ``mss`` (536 if it had none), at time ``now`` (seconds).
        ``src``/``dst`` are the SYN's (the peer's address first)."""
        index = max(bisect_right(MSS_TABLE, mss) - 1, 0)
        counter = int(now // COOKIE_PERIOD)
        digest = self._hash(src, dst, sport, dport, peer_isn, counter, index)
        return ((counter & 0x1F) << 27) | (index << 24) | digest

    def check(self, src: bytes, dst: bytes, sport: int, dport: int, peer_isn: int,
              cookie: int, now: float) -> int | None:
        """The MSS encoded in ``cookie`` (``SEG.ACK - 1`` of the handshake's ACK, whose
        ``SEG.SEQ - 1`` is ``peer_isn``), or ``None`` if it was not made by :meth:`make`
        for this 4-tuple and ISN or is more than :data:`MAX_AGE` periods old."""
        current = int(now // COOKIE_PERIOD)
        age = (current - (cookie >> 27)) & 0x1F
        if age > MAX_AGE:
            return None
        index = (cookie >> 24) & 0x7
        if self._hash(src, dst, sport, dport, peer_isn, current - age, index) != \
                cookie & 0xFFFFFF:
            return None
        return MSS_TABLE[index]
