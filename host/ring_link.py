"""A :class:`~hetnic.host.links.Link` over two shared-memory rings: frames in, frames out.

A stack process fed with frames generated ahead of time (a benchmark with no simulated NIC
in the loop, so the cores go to the stacks), or by a process that plays the wire (a test's
software switch), reads its frames from one :class:`~hetnic.host.spsc.SpscRing` and writes
the frames it sends to another. One slot holds one Ethernet frame (no FCS).

>>> link = RingLink(in_ring, out_ring)
>>> run_stacks([(stack, link)], until=..., timeout=5.0)
"""

from __future__ import annotations

from .links import Link, LinkError
from .spsc import SpscRing

__all__ = ["RingLink"]


class RingLink(Link):
    """A link whose received frames come from ``rx_ring`` and whose sent frames go to
    ``tx_ring``.

    Parameters
    ----------
    rx_ring : SpscRing
        The ring this process pops (it is its only consumer).
    tx_ring : SpscRing
        The ring this process pushes (it is its only producer).

    Members
    -------
    frames_in, frames_out : int
        Frames taken and frames put.
    tx_dropped : int
        Frames not sent because ``tx_ring`` was full or the frame longer than a slot (the
        medium's drop, as a full wire; never blocks).
    """

    def __init__(self, rx_ring: SpscRing, tx_ring: SpscRing):
        if not isinstance(rx_ring, SpscRing) or not isinstance(tx_ring, SpscRing):
            raise LinkError(f"a ring link needs two SpscRing, not {type(rx_ring).__name__} "
                            f"and {type(tx_ring).__name__}")
        if rx_ring is tx_ring:
            raise LinkError("a ring link needs two different rings (frames in, frames out)")
        self.rx_ring = rx_ring
        self.tx_ring = tx_ring
        self.frames_in = self.frames_out = 0
        self.tx_dropped = 0

    def send(self, frames: list[bytes]) -> None:
        ring = self.tx_ring
        items = [(frame, 0) for frame in frames]
        sent = i = 0
        while i < len(items):
            done = ring.push_many(items[i:] if i else items)
            sent += done
            i += done + 1           # the frame that did not fit is dropped; the next may
            if done == 0 and ring.free == 0:
                break               # full: the rest too
        self.frames_out += sent
        self.tx_dropped += len(frames) - sent

    def receive(self, max_frames: int = 64) -> list[bytes]:
        items = self.rx_ring.pop_many(max_frames)
        self.frames_in += len(items)
        return [data for data, _ in items]

    def fileno(self) -> int | None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def service(self) -> None:
        return None

    def stats(self) -> dict:
        """Frames in and out, and the frames dropped on a full TX ring."""
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "tx_dropped": self.tx_dropped}
