"""Traffic traces for judging RSS policies: published datacenter flow-size distributions turned
into packet traces, and captures turned into the same form.

A :class:`Trace` is per-packet arrays (time, flow, wire bytes) sorted by time, plus one RSS
hash input per flow. :func:`synthetic_trace` draws one from a flow-size distribution;
:func:`trace_from_frames` builds one from captured frames with the software parser.

Synthetic traffic model
-----------------------
* ``flows`` flows with random 5-tuples: TCP, uniformly random IPv4 addresses (IPv6 for an
  ``ipv6_fraction`` of the flows) and uniformly random 16-bit ports.
* Flow sizes (application bytes) are drawn from the named CDF by inverting its
  piecewise-linear form (:func:`sample_flow_sizes`).
* A flow of ``s`` bytes is ``ceil(s / mtu_payload)`` packets (at least one): full packets are
  ``mtu_payload + 40`` bytes (1500 with the default; 40 bytes of IPv4/TCP headers, Ethernet
  framing not counted), the last one carries the rest, at least 64 bytes.
* Every flow sends at the same rate, chosen so that the largest flow of the distribution
  lasts the whole ``duration_s``; a flow's lifetime is therefore proportional to its size and
  never longer than the duration. It starts at a uniformly random time in ``[0, duration_s)``
  and spaces its packets evenly over its lifetime.
* The trace is one period of a stationary loop: packet times wrap modulo ``duration_s``, so
  the offered load is flat over the trace (no ramp-up at the start, no drain at the end).
* Above ``max_packets`` packets in all, every flow's packet count is scaled by the same
  factor (rounded, at least one packet) and :attr:`Trace.packet_scale` records the factor;
  below it the trace is exact. 10,000 web-search flows are about 12 million packets, exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FLOW_SIZE_CDFS", "WORKLOADS", "Trace", "load_cdf", "sample_flow_sizes",
           "synthetic_trace", "trace_from_frames"]

#: Published flow-size CDFs as ``(flow size in bytes, cumulative percent)`` points, the
#: point lists widely used by simulation studies (pFabric, HPCC, PIAS):
#:
#: * ``websearch``: DCTCP web-search workload, Alizadeh et al., "Data Center TCP (DCTCP)",
#:   SIGCOMM 2010 (mean 1,711,250 bytes).
#: * ``datamining``: VL2 data-mining workload, Greenberg et al., "VL2: A Scalable and Flexible
#:   Data Center Network", SIGCOMM 2009; sizes in multiples of 1460-byte packets (mean
#:   7,470,236 bytes).
#: * ``hadoop``: Facebook Hadoop cluster, Roy et al., "Inside the Social Network's (Datacenter)
#:   Network", SIGCOMM 2015 (mean 120,420.75 bytes).
FLOW_SIZE_CDFS: dict[str, tuple[tuple[float, float], ...]] = {
    "websearch": (
        (0, 0), (10_000, 15), (20_000, 20), (30_000, 30), (50_000, 40), (80_000, 53),
        (200_000, 60), (1_000_000, 70), (2_000_000, 80), (5_000_000, 90), (10_000_000, 97),
        (30_000_000, 100),
    ),
    "datamining": (
        (1460, 0), (1460, 50), (2920, 60), (4380, 70), (10_220, 80), (389_820, 90),
        (3_076_220, 95), (97_333_820, 99), (973_333_820, 100),
    ),
    "hadoop": (
        (0, 0), (100, 1), (200, 2), (300, 5), (350, 15), (400, 20), (500, 30), (600, 40),
        (700, 50), (1000, 60), (2000, 67), (7000, 70), (30_000, 72), (50_000, 82),
        (80_000, 87), (120_000, 90), (300_000, 95), (1_000_000, 97.5), (2_000_000, 99),
        (10_000_000, 100),
    ),
}
WORKLOADS = tuple(FLOW_SIZE_CDFS)

_HEADER_BYTES = 40          # IPv4 + TCP headers on every synthetic packet
_MIN_PACKET = 64


def load_cdf(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The flow-size CDF ``name`` (one of :data:`WORKLOADS`) as two float arrays: sizes in
    bytes and cumulative percent (0 to 100), both non-decreasing."""
    try:
        points = FLOW_SIZE_CDFS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}: choose one of "
                         f"{', '.join(WORKLOADS)}") from None
    sizes, percent = np.array(points, dtype=np.float64).T
    return sizes, percent


def sample_flow_sizes(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` flow sizes in bytes (``int64``, >= 0) drawn from the CDF ``name`` by inverting
    its piecewise-linear form: a uniform percentile ``u`` maps to the size where the CDF
    crosses ``u``, interpolated linearly between the two points around it."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"the number of flows must be a non-negative integer, not {n!r}")
    sizes, percent = load_cdf(name)
    u = rng.uniform(0.0, 100.0, size=int(n))
    # Percent is strictly increasing in every table (a jump is two points at one size).
    return np.rint(np.interp(u, percent, sizes)).astype(np.int64)


@dataclass
class Trace:
    """Packets of a trace, sorted by time, and the RSS hash input of each flow.

    Members
    -------
    name : str
        Where the trace came from (workload name or capture path).
    flow : numpy.ndarray
        ``int32`` per packet: index into :attr:`inputs`, or -1 for traffic RSS does not hash
        (non-IP, parse errors); such packets go to RETA entry 0 on the NIC.
    size : numpy.ndarray
        ``int32`` per packet: bytes on the wire.
    inputs : list[bytes]
        Per flow: the Toeplitz input, 12 bytes (IPv4 addresses and ports, the
        :func:`~hetnic.sim.model.toeplitz.hash_input_ipv4` order) or 36 (IPv6). Address-only inputs
        (8 or 32 bytes) are stored zero-padded to 12 or 36, which hashes the same.
    time : numpy.ndarray or None
        ``float64`` per packet, seconds, non-decreasing; ``None`` when the source has no
        timestamps (then only packet-count windows apply).
    duration_s : float or None
        Length of the trace in seconds, when known.
    packet_scale : float
        1.0 for an exact trace; otherwise the factor every flow's packet count was scaled by.
    """
    name: str
    flow: np.ndarray
    size: np.ndarray
    inputs: list[bytes]
    time: np.ndarray | None = None
    duration_s: float | None = None
    packet_scale: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.flow) != len(self.size) or (self.time is not None
                                                and len(self.time) != len(self.flow)):
            raise ValueError(f"trace {self.name!r}: per-packet arrays differ in length")
        if len(self.flow) and int(self.flow.max(initial=-1)) >= len(self.inputs):
            raise ValueError(f"trace {self.name!r}: flow index past the {len(self.inputs)} "
                             "flow inputs")
        bad = [len(b) for b in self.inputs if len(b) not in (12, 36)]
        if bad:
            raise ValueError(f"trace {self.name!r}: hash inputs must be 12 or 36 bytes, "
                             f"not {bad[0]}")

    def __len__(self) -> int:
        return len(self.flow)

    @property
    def flows(self) -> int:
        return len(self.inputs)

    def windows(self, *, packets: int | None = None,
                seconds: float | None = None) -> list[tuple[int, int, float]]:
        """Split the trace into consecutive windows of ``packets`` packets or ``seconds``
        seconds (exactly one of the two). Returns ``(first packet, end packet, start)`` per
        window, ``start`` in seconds for time windows and in packets otherwise. Time windows
        start at 0 (or the first packet, for a trace without a duration) and cover the whole
        trace; some may be empty. The last window may be shorter."""
        if (packets is None) == (seconds is None):
            raise ValueError("give exactly one of a window in packets or in seconds")
        n = len(self)
        if packets is not None:
            if isinstance(packets, bool) or not isinstance(packets, (int, np.integer)) \
                    or packets < 1:
                raise ValueError(f"a window must be at least 1 packet, not {packets!r}")
            return [(a, min(a + packets, n), float(a)) for a in range(0, n, packets)]
        if self.time is None:
            raise ValueError(f"{self.name}: the trace has no timestamps; use a window in "
                             "packets")
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"a time window must be a positive number of seconds, not "
                             f"{seconds!r}")
        if n == 0:
            return []
        t0 = 0.0 if self.duration_s is not None else float(self.time[0])
        end = self.duration_s if self.duration_s is not None else float(self.time[-1])
        count = max(1, math.ceil((end - t0) / seconds - 1e-9))
        edges = t0 + seconds * np.arange(count + 1)
        cuts = np.searchsorted(self.time, edges[1:-1], side="left")
        bounds = np.concatenate(([0], cuts, [n]))
        return [(int(bounds[i]), int(bounds[i + 1]), float(edges[i])) for i in range(count)]


def _flow_inputs(rng: np.random.Generator, flows: int, ipv6: np.ndarray) -> list[bytes]:
    """Random TCP 5-tuples as hash inputs: addresses then ports, big-endian."""
    inputs4 = rng.integers(0, 256, size=(flows, 12), dtype=np.uint8)
    inputs6 = rng.integers(0, 256, size=(int(ipv6.sum()), 36), dtype=np.uint8)
    out, j = [], 0
    for i in range(flows):
        if ipv6[i]:
            out.append(inputs6[j].tobytes())
            j += 1
        else:
            out.append(inputs4[i].tobytes())
    return out


def synthetic_trace(name: str, flows: int = 10_000, seed: int = 0, duration_s: float = 1.0,
                    mtu_payload: int = 1460, ipv6_fraction: float = 0.0,
                    max_packets: int = 1 << 25) -> Trace:
    """A packet trace of ``flows`` flows of the workload ``name`` (see the module docstring
    for the model). Deterministic for a given ``seed``.

    Parameters
    ----------
    name : str
        ``websearch``, ``datamining`` or ``hadoop``.
    flows : int
        Number of flows (>= 1).
    duration_s : float
        Trace length in seconds.
    mtu_payload : int
        Payload bytes of a full packet; the wire size is 40 bytes more.
    ipv6_fraction : float
        Share of the flows that are IPv6 (36-byte hash inputs).
    max_packets : int
        Packet budget; above it packet counts are scaled (see :attr:`Trace.packet_scale`).
    """
    if isinstance(flows, bool) or not isinstance(flows, (int, np.integer)) or flows < 1:
        raise ValueError(f"a synthetic trace needs at least 1 flow, not {flows!r}")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number, not {duration_s!r}")
    if not isinstance(mtu_payload, int) or not 64 <= mtu_payload <= 9000:
        raise ValueError(f"mtu_payload must be an integer from 64 to 9000, not "
                         f"{mtu_payload!r}")
    if not 0.0 <= ipv6_fraction <= 1.0:
        raise ValueError(f"ipv6_fraction must be from 0 to 1, not {ipv6_fraction!r}")
    if not isinstance(max_packets, int) or max_packets < flows:
        raise ValueError(f"max_packets must be an integer of at least the flow count "
                         f"({flows}), not {max_packets!r}")
    flows = int(flows)
    rng = np.random.default_rng(seed)
    sizes = sample_flow_sizes(name, flows, rng)
    ipv6 = rng.random(flows) < ipv6_fraction
    inputs = _flow_inputs(rng, flows, ipv6)
    start = rng.uniform(0.0, duration_s, size=flows)

    counts = np.maximum(1, -(-sizes // mtu_payload))
    last = np.maximum(_MIN_PACKET, sizes - (counts - 1) * mtu_payload + _HEADER_BYTES)
    total = int(counts.sum())
    scale = 1.0
    if total > max_packets:
        scale = max_packets / total
        counts = np.maximum(1, np.rint(counts * scale).astype(np.int64))
        total = int(counts.sum())

    max_size = float(load_cdf(name)[0][-1])
    lifetime = duration_s * np.minimum(1.0, sizes / max_size)
    gap = lifetime / counts                                 # seconds between packets

    flow = np.repeat(np.arange(flows, dtype=np.int32), counts)
    first = np.cumsum(counts) - counts                      # first packet of each flow
    rank = np.arange(total, dtype=np.int64)
    rank -= np.repeat(first, counts)                        # packet number within its flow
    time = start[flow] + rank * gap[flow]
    del rank
    np.fmod(time, duration_s, out=time)
    size = np.full(total, mtu_payload + _HEADER_BYTES, dtype=np.int32)
    size[first + counts - 1] = last
    order = np.argsort(time, kind="stable")
    return Trace(name=name, flow=flow[order], size=size[order], inputs=inputs,
                 time=time[order], duration_s=float(duration_s), packet_scale=scale,
                 meta={"workload": name, "seed": seed, "flow_bytes": int(sizes.sum())})


def trace_from_frames(frames: list[bytes], timestamps=None, *, name: str = "frames",
                      symmetric: bool = False) -> Trace:
    """A trace of captured frames, grouped into flows by their RSS hash input.

    Each frame goes through the software parser (:func:`~hetnic.sim.model.parser.parse_frame`)
    and the hash stage's type selection (all six hash types enabled); frames the NIC does not
    hash (parse errors, non-IP) are flow -1. Wire bytes are the captured frame lengths.
    ``timestamps`` (seconds, one per frame, non-decreasing) are optional: without them the
    trace has only packet-count windows.
    """
    from .model.toeplitz import meta_hash_input, select_hash_type
    from .model.parser import parse_frame

    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError(f"{len(timestamps)} timestamps for {len(frames)} frames")
    index: dict[bytes, int] = {}
    flow = np.empty(len(frames), dtype=np.int32)
    size = np.empty(len(frames), dtype=np.int32)
    for i, frame in enumerate(frames):
        parsed = parse_frame(frame)
        size[i] = len(frame)
        data = meta_hash_input(parsed, select_hash_type(parsed.error, parsed.flags),
                               symmetric)
        if not data:
            flow[i] = -1
            continue
        if len(data) in (8, 32):
            data += bytes(4)               # zero bytes add nothing to a Toeplitz hash
        flow[i] = index.setdefault(data, len(index))
    time = None
    if timestamps is not None:
        time = np.asarray(timestamps, dtype=np.float64)
        if len(time) and np.any(np.diff(time) < 0):
            raise ValueError("timestamps must not decrease")
    return Trace(name=name, flow=flow, size=size, inputs=list(index), time=time)
