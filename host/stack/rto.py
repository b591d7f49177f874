# Ref: RFC 6298 (computing TCP's retransmission timer), RFC 9293 section 3.8.1.
"""The retransmission timeout: smoothed RTT, RTT variance, clamping and exponential backoff.

One :class:`RtoEstimator` per connection. Samples follow RFC 6298 section 2: the first sets
``SRTT = R`` and ``RTTVAR = R/2``, later ones mix in with ``alpha = 1/8`` and ``beta = 1/4``
(RTTVAR first, from the old SRTT), and ``RTO = SRTT + max(G, K*RTTVAR)`` with ``K = 4`` and a
clock granularity ``G`` of 1 ms, clamped to ``[min_rto, max_rto]`` (the instance's minimum
replaces the RFC's 1-second floor; Linux uses 200 ms). A timeout doubles the RTO (section 5.5,
capped at ``max_rto``); a new sample ends the backoff (Karn's algorithm: the caller only
samples segments that were not retransmitted, or uses timestamps).
"""

from __future__ import annotations

from .errors import BadArgument

__all__ = ["RtoEstimator"]

ALPHA = 1 / 8
BETA = 1 / 4
K = 4
GRANULARITY = 0.001


class RtoEstimator:
    """RFC 6298 RTO state of one connection.

    Parameters
    ----------
    min_rto, max_rto : float
        Clamp of the computed RTO, seconds (``0 < min_rto <= max_rto``).
    initial : float
        The RTO before the first sample (RFC 6298: 1 s), also clamped.

    Members
    -------
    rto : float
        The current retransmission timeout, seconds (backoff included); read it, do not set
        it (:meth:`sample`, :meth:`backoff` and :meth:`reset_backoff` do).
    srtt, rttvar : float
        Seconds; ``0.0`` until the first sample (see ``samples``).
    samples : int
        RTT samples taken.
    backoffs : int
        Timeouts since the last sample (each doubled the RTO).
    """

    __slots__ = ("min_rto", "max_rto", "srtt", "rttvar", "samples", "backoffs", "_base",
                 "rto")

    def __init__(self, min_rto: float = 0.2, max_rto: float = 60.0, initial: float = 1.0):
        for name, value in (("min_rto", min_rto), ("max_rto", max_rto), ("initial", initial)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise BadArgument(f"{name} must be a positive number of seconds, not {value!r}")
        if min_rto > max_rto:
            raise BadArgument(f"min_rto {min_rto} must not exceed max_rto {max_rto}")
        self.min_rto = float(min_rto)
        self.max_rto = float(max_rto)
        self.srtt = 0.0
        self.rttvar = 0.0
        self.samples = 0
        self.backoffs = 0
        self._base = min(max(float(initial), self.min_rto), self.max_rto)
        self.rto = self._base          # a plain attribute: read on every ACK

    def sample(self, rtt: float) -> None:
        """Take one RTT measurement (seconds, from a segment not retransmitted or from a
        timestamp echo) and recompute the RTO; ends any backoff."""
        if rtt < 0:
            rtt = 0.0
        if self.samples:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        else:
            self.srtt = rtt
            self.rttvar = rtt / 2
        self.samples += 1
        rto = self.srtt + max(GRANULARITY, K * self.rttvar)
        self._base = min(max(rto, self.min_rto), self.max_rto)
        self.rto = self._base
        self.backoffs = 0

    def backoff(self) -> None:
        """A retransmission timer expired: double the RTO, at most ``max_rto``
        (RFC 6298 5.5)."""
        self.backoffs += 1
        self.rto = min(self.rto * 2, self.max_rto)

    def reset_backoff(self) -> None:
        """Return to the computed RTO without a new sample (e.g. an ACK for new data after
        a backoff, RFC 6298 5.7 lets the next sample do it; this does it now)."""
        self.backoffs = 0
        self.rto = self._base
