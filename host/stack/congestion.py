# Ref: RFC 5681 (TCP congestion control), RFC 3465 (appropriate byte counting), RFC 6582
#      (NewReno fast recovery), RFC 6928 (initial window), RFC 9438 (CUBIC).
"""Pluggable congestion control: the congestion window and slow-start threshold of one
connection, driven by the connection's ACK, recovery and timeout events.

The connection owns loss detection and recovery (fast retransmit, NewReno's window inflation
or RFC 6675's pipe); a :class:`CongestionControl` only says how big ``cwnd`` is:

- :meth:`~CongestionControl.on_ack` for every ACK of new data (``in_recovery`` true while in
  fast recovery: the window does not grow then);
- :meth:`~CongestionControl.on_enter_recovery` at fast retransmit: sets ``ssthresh`` and
  ``cwnd = ssthresh`` (any NewReno inflation is the connection's);
- :meth:`~CongestionControl.on_exit_recovery` at the ACK that ends recovery;
- :meth:`~CongestionControl.on_rto` when the retransmission timer expires: ``cwnd`` drops to
  one segment (the loss window).

``cwnd`` and ``ssthresh`` are bytes (``int``); times are seconds on the caller's clock.
"""

from __future__ import annotations

from .errors import BadArgument

__all__ = ["CongestionControl", "NewReno", "Cubic", "CONGESTION_CONTROLS", "make_congestion",
           "INITIAL_SSTHRESH"]

#: ssthresh before the first congestion event: "arbitrarily high" (RFC 5681 3.1).
INITIAL_SSTHRESH = 1 << 30


class CongestionControl:
    """The base: RFC 5681 slow start with byte counting (L = 2 SMSS, RFC 3465), shared by
    both algorithms; subclasses define congestion avoidance and the reaction to loss.

    Parameters
    ----------
    mss : int
        The sender's maximum segment size (SMSS), bytes.
    initial_window : int
        The initial window in segments (RFC 6928 allows 10).

    Members
    -------
    cwnd, ssthresh : int
        Bytes.
    mss : int
    name : str
        The key of :data:`CONGESTION_CONTROLS`.
    """

    name = "base"
    __slots__ = ("mss", "cwnd", "ssthresh", "_acked", "_timed_out")

    def __init__(self, mss: int, initial_window: int = 10):
        if not isinstance(mss, int) or mss < 1:
            raise BadArgument(f"mss must be a positive int, not {mss!r}")
        if not isinstance(initial_window, int) or initial_window < 1:
            raise BadArgument(f"initial window must be a positive number of segments, "
                              f"not {initial_window!r}")
        self.mss = mss
        self.cwnd = initial_window * mss
        self.ssthresh = INITIAL_SSTHRESH
        self._acked = 0                  # bytes acked toward the next CA increase
        self._timed_out = False          # an RTO and no new ACK since

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def on_ack(self, acked: int, now: float, rtt: float | None, in_recovery: bool) -> None:
        """``acked`` bytes of new data were acknowledged (``rtt`` is this ACK's RTT sample, if
        it gave one)."""
        if acked <= 0:
            return
        self._timed_out = False
        if in_recovery:
            return
        if self.cwnd < self.ssthresh:
            # RFC 3465: grow by the bytes acked, at most 2 SMSS per ACK.
            self.cwnd = min(self.cwnd + min(acked, 2 * self.mss), max(self.ssthresh,
                                                                       self.cwnd))
            return
        self._avoid(acked, now, rtt)

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        raise NotImplementedError

    def on_enter_recovery(self, flight: int, now: float) -> None:
        """Fast retransmit: a loss was detected with ``flight`` bytes outstanding."""
        raise NotImplementedError

    def on_exit_recovery(self, now: float) -> None:
        """The ACK covering the recovery point arrived: deflate to ``ssthresh``
        (RFC 6582 3.2 step 6, option 2)."""
        self.cwnd = max(self.ssthresh, self.mss)
        self._acked = 0

    def on_rto(self, flight: int, now: float) -> None:
        """The retransmission timer expired with ``flight`` bytes outstanding: ``cwnd`` to one
        segment; ``ssthresh`` set by the algorithm, but held constant when the timer expires
        again before any new ACK (RFC 5681 section 3.1: the same segment timed out twice)."""
        if not self._timed_out:
            self._timed_out = True
            self._rto_threshold(flight)
        self.cwnd = self.mss
        self._acked = 0

    def _rto_threshold(self, flight: int) -> None:
        raise NotImplementedError

    def info(self) -> dict:
        """The state for a connection dump."""
        return {"cc": self.name, "cwnd": self.cwnd, "ssthresh": self.ssthresh}


class NewReno(CongestionControl):
    """RFC 5681 congestion avoidance (one SMSS per window of bytes acked) and RFC 5681/6582
    reactions: ``ssthresh = max(flight / 2, 2 SMSS)``."""

    name = "newreno"
    __slots__ = ()

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        # RFC 5681 3.1 byte counting: +1 SMSS each time a cwnd's worth of bytes is acked.
        self._acked += acked
        if self._acked >= self.cwnd:
            self._acked -= self.cwnd
            self.cwnd += self.mss

    def _halve(self, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self._acked = 0

    def on_enter_recovery(self, flight: int, now: float) -> None:
        self._halve(flight)
        self.cwnd = self.ssthresh

    def _rto_threshold(self, flight: int) -> None:
        self._halve(flight)


class Cubic(CongestionControl):
    """CUBIC (RFC 9438): after a congestion event the window follows
    ``W_cubic(t) = C (t - K)^3 + W_max`` in segments, with ``K = cbrt((W_max - cwnd_epoch) /
    C)``, ``C = 0.4``, ``beta_cubic = 0.7``, a Reno-friendly estimate ``W_est`` as a floor,
    and fast convergence. Slow start is the base class's.

    Members
    -------
    w_max : float
        Segments: the window just before the last reduction (after fast convergence).
    k : float
        Seconds from the epoch start to reach ``w_max`` again.
    w_est : float
        Segments: the Reno-friendly window estimate.
    """

    name = "cubic"
    C = 0.4
    BETA = 0.7
    ALPHA = 3 * (1 - BETA) / (1 + BETA)     # RFC 9438 eq. 4: the Reno-friendly AIMD step
    __slots__ = ("w_max", "k", "w_est", "epoch_start", "cwnd_epoch", "cwnd_prior", "srtt",
                 "_w", "_after_rto")

    def __init__(self, mss: int, initial_window: int = 10):
        super().__init__(mss, initial_window)
        self.w_max = 0.0
        self.k = 0.0
        self.w_est = 0.0
        self.epoch_start: float | None = None
        self.cwnd_epoch = 0.0
        self.cwnd_prior = 0.0               # segments: cwnd at the last congestion event
        self.srtt: float | None = None      # own smoothed RTT for W_cubic(t + RTT)
        self._w = 0.0                       # cwnd in segments, with the fraction
        self._after_rto = False             # the next epoch is the first after a timeout

    def w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1: the cubic window (segments) ``t`` seconds into the epoch."""
        return self.C * (t - self.k) ** 3 + self.w_max

    def on_ack(self, acked: int, now: float, rtt: float | None, in_recovery: bool) -> None:
        if rtt is not None and rtt >= 0:
            self.srtt = rtt if self.srtt is None else self.srtt + (rtt - self.srtt) / 8
        # CongestionControl.on_ack, inline (it runs on every ACK).
        if acked <= 0:
            return
        self._timed_out = False
        if in_recovery:
            return
        cwnd = self.cwnd
        ssthresh = self.ssthresh
        if cwnd < ssthresh:
            # RFC 3465: grow by the bytes acked, at most 2 SMSS per ACK, up to ssthresh.
            grow = 2 * self.mss
            cwnd += acked if acked < grow else grow
            self.cwnd = cwnd if cwnd < ssthresh else ssthresh
            return
        self._avoid(acked, now, rtt)

    def _avoid(self, acked: int, now: float, rtt: float | None) -> None:
        mss = self.mss
        if self.epoch_start is None:
            # RFC 9438 4.2: a new epoch starts at the first ACK of congestion avoidance.
            self.epoch_start = now
            self._w = self.cwnd / mss
            self.cwnd_epoch = self._w
            if self._after_rto or self.w_max < self._w:
                # RFC 9438 4.8: after a timeout, W_max is the window at the epoch start and
                # K is 0 (and so whenever the window already passed W_max).
                self._after_rto = False
                self.w_max = self._w
            self.k = ((self.w_max - self.cwnd_epoch) / self.C) ** (1 / 3)
            self.w_est = self.cwnd_epoch
        w = self._w
        segments = acked / mss
        t = now - self.epoch_start
        # RFC 9438 4.3: the Reno-friendly estimate (alpha becomes 1 once it reaches
        # cwnd_prior, the window before the reduction, not W_max: fast convergence may
        # have lowered that).
        alpha = self.ALPHA if self.w_est < self.cwnd_prior else 1.0
        self.w_est += alpha * segments / w
        if self.w_cubic(t) < self.w_est:
            w = self.w_est                                  # Reno-friendly region
        else:
            # RFC 9438 4.4/4.5: move toward W_cubic(t + RTT), at most 1.5 cwnd.
            target = self.w_cubic(t + (self.srtt or 0.0))
            if target < w:
                target = w
            elif target > 1.5 * w:
                target = 1.5 * w
            w += (target - w) / w * segments
        self._w = w
        self.cwnd = max(int(w * mss), self.cwnd)

    def _reduce(self, flight: int) -> None:
        """RFC 9438 4.6 and 4.7: cwnd_prior, W_max with fast convergence, and
        ssthresh = max(beta * flight size, 2 SMSS): from the bytes in flight, not cwnd, so an
        application-limited sender does not keep a window it never used."""
        w = self.cwnd / self.mss
        self.cwnd_prior = w
        if w < self.w_max:
            self.w_max = w * (1 + self.BETA) / 2            # fast convergence
        else:
            self.w_max = w
        self.ssthresh = max(int(flight * self.BETA), 2 * self.mss)
        self.epoch_start = None
        self._acked = 0

    def on_enter_recovery(self, flight: int, now: float) -> None:
        self._reduce(flight)
        self._after_rto = False
        self.cwnd = self.ssthresh

    def _rto_threshold(self, flight: int) -> None:
        # RFC 9438 4.8: ssthresh as for any congestion event, cwnd as Reno (one segment),
        # and the next congestion avoidance stage starts a fresh cubic curve.
        self._reduce(flight)
        self._after_rto = True

    def info(self) -> dict:
        out = super().info()
        out.update(w_max=self.w_max * self.mss, k=self.k)
        return out


#: The algorithms an instance can name (``InstanceConfig.congestion``).
CONGESTION_CONTROLS: dict[str, type[CongestionControl]] = {"newreno": NewReno, "cubic": Cubic}


def make_congestion(name: str, mss: int, initial_window_segments: int) -> CongestionControl:
    """A new :class:`CongestionControl` of algorithm ``name`` (a key of
    :data:`CONGESTION_CONTROLS`); an unknown name raises :class:`BadArgument` (a
    ``ValueError``)."""
    try:
        cls = CONGESTION_CONTROLS[name]
    except (KeyError, TypeError):
        raise BadArgument(f"unknown congestion control {name!r}: choose one of "
                          f"{', '.join(sorted(CONGESTION_CONTROLS))}") from None
    return cls(mss, initial_window_segments)
