"""Frames generated ahead into shared memory for receive packet steering (tests, benchmarks).

A :class:`FrameSet` holds ``n`` Ethernet II / IPv4 / UDP frames of a fixed length from a
number of flows, each with the flow's RSS hash (the NIC's Toeplitz hash over the IPv4
4-tuple) and, in its UDP payload at :data:`~hetnic.host.rps_layout.SEQ_OFFSET`, the
magic word, the flow number and the frame's sequence number within its flow (1, 2, ...),
which the workers use to check per-flow order.
"""

from __future__ import annotations

import numpy as np

from ..errors import HetnicError
from ..protocol import MS_RSS_DEFAULT_KEY
from .rps_layout import SEQ_MAGIC, SEQ_OFFSET
from .rss_flows import FlowSet
from .rss_keys import flow_hashes
from .shm import SharedSegment

__all__ = ["FrameSet", "FrameSetError"]

_MIN_LEN = SEQ_OFFSET + 12
_TTL_AT = 14 + 8        # the IPv4 TTL, then the protocol and the header checksum
_MAX_FLOWS = 65536
_SRC_MAC = bytes.fromhex("02000000aa01")
_DST_MAC = bytes.fromhex("02000000bb01")


class FrameSetError(HetnicError, ValueError):
    """Frames cannot be generated as asked (the message says which argument)."""


def _ipv4_checksums(headers: np.ndarray) -> np.ndarray:
    """The header checksum of each row of an ``(n, 20)`` uint8 array (checksum field 0)."""
    words = headers.astype(np.uint32).reshape(len(headers), 10, 2)
    total = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    while (total >> 16).any():
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


class FrameSet:
    """``n`` frames in a shared segment, with their lengths and flow hashes.

    Build one with :meth:`udp_flows`; :meth:`close` frees the segment.

    Members
    -------
    data : numpy.ndarray
        ``(n, stride)`` uint8, frame ``i`` in row ``i`` (its first ``lens[i]`` bytes).
    lens : numpy.ndarray
        ``(n,)`` uint16 frame lengths.
    hashes : numpy.ndarray
        ``(n,)`` uint32 RSS hashes.
    flows, seqs : numpy.ndarray
        ``(n,)`` uint32: each frame's flow number and its sequence number in that flow.
    """

    def __init__(self, segment: SharedSegment, n: int, stride: int):
        self.segment = segment
        self.stride = stride
        off = 0
        arrays = {}
        for name, dtype, count in (("data", np.uint8, n * stride), ("lens", np.uint16, n),
                                   ("hashes", np.uint32, n), ("flows", np.uint32, n),
                                   ("seqs", np.uint32, n)):
            arrays[name] = np.frombuffer(segment.buf, dtype=dtype, count=count, offset=off)
            off += (count * np.dtype(dtype).itemsize + 63) // 64 * 64
        self.data = arrays["data"].reshape(n, stride)
        self.lens, self.hashes = arrays["lens"], arrays["hashes"]
        self.flows, self.seqs = arrays["flows"], arrays["seqs"]
        #: Per flow, the IPv4 TTL, protocol and header checksum bytes as generated
        #: (:meth:`renumber` puts them back after workers forwarded the frames in place).
        self._ttl_csum: np.ndarray | None = None

    @staticmethod
    def bytes_needed(n: int, stride: int) -> int:
        return sum((count * size + 63) // 64 * 64
                   for count, size in ((n * stride, 1), (n, 2), (n, 4), (n, 4), (n, 4)))

    def __len__(self) -> int:
        return len(self.lens)

    @classmethod
    def udp_flows(cls, packets: int, flows: int, *, frame_len: int = 64, seed: int = 0,
                  ttl: int = 64, key: bytes = MS_RSS_DEFAULT_KEY) -> "FrameSet":
        """``packets`` frames of ``frame_len`` bytes from ``flows`` UDP flows
        (198.18.x.y:port -> 198.19.0.1:7000), flows drawn at random (``seed``)."""
        if not isinstance(packets, int) or packets < 1:
            raise FrameSetError(f"packets must be a positive count, not {packets!r}")
        if not isinstance(flows, int) or not 1 <= flows <= _MAX_FLOWS:
            raise FrameSetError(f"flows must be 1 to {_MAX_FLOWS}, not {flows!r}")
        if not isinstance(frame_len, int) or not _MIN_LEN <= frame_len <= 1514:
            raise FrameSetError(f"frame_len must be {_MIN_LEN} to 1514 bytes, not {frame_len!r}")
        if not isinstance(ttl, int) or not 0 <= ttl <= 255:
            raise FrameSetError(f"ttl must be 0 to 255, not {ttl!r}")
        rng = np.random.default_rng(seed)
        stride = (frame_len + 63) // 64 * 64
        ids = np.arange(flows, dtype=np.uint32)
        # per flow: the IPv4 header and the RSS hash input (src, dst, sport, dport)
        src = np.zeros((flows, 4), np.uint8)
        src[:, 0], src[:, 1] = 198, 18
        src[:, 2], src[:, 3] = (ids >> 8) & 0xFF, ids & 0xFF
        dst = np.array([198, 19, 0, 1], np.uint8)
        sport = (1024 + ids).astype(">u2").view(np.uint8).reshape(flows, 2)
        dport = np.array([7000 >> 8, 7000 & 0xFF], np.uint8)
        inputs = np.concatenate([src, np.tile(dst, (flows, 1)), sport,
                                 np.tile(dport, (flows, 1))], axis=1)
        empty = np.zeros((0, 36), np.uint8)
        zero = np.zeros(0, np.int64)
        flow_hash = flow_hashes(key, FlowSet(inputs, np.ones(flows, np.int64),
                                             np.ones(flows, np.int64), empty, zero, zero))[0][0]
        ip = np.zeros((flows, 20), np.uint8)
        ip[:, 0] = 0x45
        ip[:, 2:4] = np.frombuffer((frame_len - 14).to_bytes(2, "big"), np.uint8)
        ip[:, 8], ip[:, 9] = ttl, 17
        ip[:, 12:16], ip[:, 16:20] = src, dst
        csum = _ipv4_checksums(ip)
        ip[:, 10], ip[:, 11] = csum >> 8, csum & 0xFF
        udp = np.zeros((flows, 8), np.uint8)
        udp[:, 0:2], udp[:, 2:4] = sport, dport
        udp[:, 4:6] = np.frombuffer((frame_len - 34).to_bytes(2, "big"), np.uint8)
        eth = np.frombuffer(_DST_MAC + _SRC_MAC + b"\x08\x00", np.uint8)
        headers = np.concatenate([np.tile(eth, (flows, 1)), ip, udp], axis=1)  # 42 bytes
        # per packet: a flow, and its sequence number in that flow (1, 2, ...)
        flow_of = rng.integers(0, flows, size=packets, dtype=np.uint32)
        order = np.argsort(flow_of, kind="stable")
        sorted_flows = flow_of[order]
        starts = np.searchsorted(sorted_flows, sorted_flows, side="left")
        seqs = np.empty(packets, np.uint32)
        seqs[order] = np.arange(packets, dtype=np.uint32) - starts.astype(np.uint32) + 1
        segment = SharedSegment.create(cls.bytes_needed(packets, stride), prefix="hetnic-frames")
        try:
            fs = cls(segment, packets, stride)
            fs.data[:, :SEQ_OFFSET] = headers[flow_of]
            marks = fs.data[:, SEQ_OFFSET:SEQ_OFFSET + 12].view(np.uint32)
            marks[:, 0], marks[:, 1], marks[:, 2] = SEQ_MAGIC, flow_of, seqs
            fs.lens[:] = frame_len
            fs.hashes[:] = flow_hash[flow_of]
            fs.flows[:], fs.seqs[:] = flow_of, seqs
            fs._ttl_csum = headers[:, _TTL_AT:_TTL_AT + 4].copy()
        except BaseException:
            segment.close()
            raise
        return fs

    def renumber(self) -> None:
        """Continue every flow's sequence numbers after this set's last one (frame ``i`` of
        flow ``f`` gets ``seq + count(f)``), so the same frames can be steered again
        through the same workers without breaking per-flow order. The IPv4 TTL and header
        checksum go back to their generated values too: workers that forwarded the frames
        in place (zero-copy steering from this set's segment) decremented the TTL."""
        counts = np.bincount(self.flows, minlength=int(self.flows.max()) + 1)
        self.seqs += counts[self.flows].astype(np.uint32)
        self.data[:, SEQ_OFFSET + 8:SEQ_OFFSET + 12].view(np.uint32)[:, 0] = self.seqs
        if self._ttl_csum is not None:
            self.data[:, _TTL_AT:_TTL_AT + 4] = self._ttl_csum[self.flows]

    def close(self) -> None:
        """Free the segment (the arrays become unusable)."""
        self.data = self.lens = self.hashes = self.flows = self.seqs = None
        self.segment.close()

    def __enter__(self) -> "FrameSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
