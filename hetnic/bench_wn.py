"""A software wire with RSS for N processes on frame rings (tests and the W/N benchmark).

:class:`RssWire` plays the NIC's receive side for a :class:`~hetnic.host.wn_host.WnHost`
whose N's run on wire rings: each frame to the host is steered to an N by the Toeplitz hash
of its IPv4 TCP/UDP 4-tuple (the software model :mod:`hetnic.sim.model.toeplitz`, the
NIC's default key) and a RETA whose entries name N's, the way the NIC's RSS stage picks a
queue (the hash's low bits index the table). Frames the N's send are collected from their
out rings. A RETA entry can be re-pointed (an N died) with :meth:`RssWire.repoint`.
"""

from __future__ import annotations

import numpy as np

from .host.wn import repoint_reta
from .host.wn_host import WnHost
from .regs import DEFAULT_PARAMS
from .protocol import MS_RSS_DEFAULT_KEY
from .sim.model.toeplitz import toeplitz, toeplitz_batch

__all__ = ["RssWire", "rss_index"]

_ETH_IPV4 = b"\x08\x00"


def _tuple_bytes(frame: bytes) -> bytes | None:
    """An IPv4 TCP/UDP frame's hash input (addresses, ports; big-endian), or None."""
    if len(frame) < 38 or frame[12:14] != _ETH_IPV4 or frame[23] not in (6, 17):
        return None
    ihl = (frame[14] & 15) * 4
    ports = 14 + ihl
    return frame[26:34] + frame[ports:ports + 4]


def rss_index(frames: list[bytes], reta_size: int, key: bytes = MS_RSS_DEFAULT_KEY
              ) -> np.ndarray:
    """The RETA index of each frame (the hash's low bits; 0 for a frame with no 4-tuple)."""
    rows = [_tuple_bytes(f) or bytes(12) for f in frames]
    if not rows:
        return np.zeros(0, dtype=np.int64)
    hashes = toeplitz_batch(key, np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 12))
    return (hashes & (reta_size - 1)).astype(np.int64)


class RssWire:
    """Frames to and from the N's of ``host``, steered by RSS.

    Parameters
    ----------
    host : WnHost
        A host built with ``wire=...``.
    reta : list[int] or None
        RETA entries, each an N index; None spreads the NIC's RETA size round robin over
        the N's.

    Members
    -------
    reta : list[int]
    steered : list[int]
        Frames pushed per N.
    dropped : int
        Frames not pushed (the N's in ring full).
    """

    def __init__(self, host: WnHost, reta: list[int] | None = None,
                 key: bytes = MS_RSS_DEFAULT_KEY):
        n_count = host.layout.n_count
        size = DEFAULT_PARAMS["reta_size"]
        self.host = host
        self.key = key
        self.reta = list(reta) if reta is not None else [i % n_count for i in range(size)]
        self.steered = [0] * n_count
        self.dropped = 0
        self._in = [host.wire_in(n) for n in range(n_count)]
        self._out = [host.wire_out(n) for n in range(n_count)]

    def steer(self, frame: bytes) -> int:
        """The N that gets ``frame``."""
        data = _tuple_bytes(frame)
        h = toeplitz(self.key, data) if data is not None else 0
        return self.reta[h & (len(self.reta) - 1)]

    def send(self, frames: list[bytes]) -> None:
        """Push ``frames`` (to the host) to their N's rings."""
        for frame in frames:
            n = self.steer(frame)
            if self._in[n].push(frame):
                self.steered[n] += 1
            else:
                self.dropped += 1

    def receive(self, max_frames: int = 256) -> list[bytes]:
        """Frames the N's sent (each N's oldest first)."""
        out: list[bytes] = []
        for ring in self._out:
            out += [data for data, _ in ring.pop_many(max_frames)]
        return out

    def repoint(self, dead: set[int]) -> None:
        """Re-point the RETA entries of the ``dead`` N's to the living ones (one commit: the
        new table replaces the old at once)."""
        live = sorted(set(range(len(self._in))) - set(dead))
        self.reta = repoint_reta(self.reta, dead, live)


def echo_w(w, port: int, exit_after: int | None = None, nap: float = 0.0002) -> int:
    """A W's work: listen on ``port`` (shared with the other W's), accept what its N's hand
    it, send every byte received back, close a connection at the peer's EOF; until the
    host's stop word, or until it echoed ``exit_after`` requests (it then returns: the W
    exits with its connections still open, and their N's close them). Returns the
    requests echoed."""
    import time as _time
    w.listen(port)
    w.set_ready()
    served = 0
    while not w.stopping:
        moved = False
        while w.try_accept(port) is not None:
            moved = True
        for fd in w.readable():
            moved = True
            data = w.recv(fd, timeout=None)
            if data:
                w.send(fd, data)
                served += 1
            else:
                w.close(fd)
        if exit_after is not None and served >= exit_after:
            return served
        if not moved:
            _time.sleep(nap)
    return served
