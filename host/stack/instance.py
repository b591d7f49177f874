"""Stack instances of unequal resources and independent algorithms.

An :class:`InstanceConfig` names one stack instance and everything that makes it differ from
its neighbours on the same NIC: the RX queues it owns and its TX queue, the memory its socket
buffers may take, how many connections it holds, its congestion control, delayed ACK and
Nagle, its initial window and minimum RTO, how often and how much it polls, SYN cookies, its
listen backlog and its ephemeral port range. Three stock profiles (:data:`PROFILES`) split an
8-queue NIC between a ``low-delay``, a ``throughput`` and a ``concurrency`` instance, with
disjoint queues and port ranges.

:func:`load_instances` reads a TOML file of ``[[instance]]`` tables, each starting from a
stock profile (``profile = "throughput"``) and overriding fields; every error is one line
naming the file, the instance and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InstanceError
from .tcp import TcpConfig

__all__ = ["InstanceConfig", "QOS_CLASSES", "PROFILES", "load_instances", "stock_instances", "NIC_QUEUES"]

#: RX queues of the NIC the stock profiles share out.
NIC_QUEUES = 8

#: The QoS classes an application may ask the dispatcher for; the stock profile of the same
#: name serves each (an instance may declare another name's class with ``qos``).
QOS_CLASSES: tuple[str, ...] = ("low-delay", "throughput", "concurrency")

_KiB = 1024
_MiB = 1024 * 1024
_CONGESTION = ("newreno", "cubic")


@dataclass(frozen=True)
class InstanceConfig:
    """The resources and algorithms of one stack instance (validated on construction).

    Members
    -------
    name : str
        The instance's name (non-empty, unique among instances).
    rx_queues : tuple[int, ...]
        The NIC RX queues whose frames this instance takes (non-empty, distinct, >= 0).
    tx_queue : int
        The NIC TX queue it sends on.
    buffer_memory : int
        Bytes all its socket buffers together may take: a connection whose ``sndbuf + rcvbuf``
        would pass it is refused (counted ``"tcp_buffer_memory"``).
    max_connections : int
        Connections held at once (TIME-WAIT included); past it a SYN is dropped (counted
        ``"tcp_max_connections"``) and ``connect`` raises.
    congestion : str
        ``"newreno"`` or ``"cubic"``.
    delayed_ack, delayed_ack_timeout : bool, float
        Delayed ACK (every second full segment, or after the timeout in seconds).
    nagle : bool
        Nagle's algorithm (coalesce small writes while data is unacknowledged).
    initial_window : int
        The initial congestion window, in segments.
    min_rto, max_rto : float
        Bounds of the retransmission timeout, seconds.
    max_retries, syn_retries : int
        Retransmissions of data / of a SYN before the connection fails with ``"timeout"``.
    poll_interval : float
        Seconds between polls of the instance's queues by its runner.
    poll_batch : int
        Frames taken per poll.
    syn_cookies : bool
        Answer SYNs with a cookie when the listen backlog is full.
    backlog : int
        Default listen backlog (accept queue plus half-open connections).
    sndbuf, rcvbuf : int
        Bytes of one connection's send and receive buffers.
    keepalive : tuple[float, float, int] | None
        ``(idle, interval, count)`` in seconds and probes, or None for no keepalive.
    time_wait : float
        Seconds a connection stays in TIME-WAIT.
    fin_wait2_timeout : float
        Seconds a connection the application closed waits in FIN-WAIT-2 for the peer's FIN
        before it is released (as Linux's ``tcp_fin_timeout``).
    ephemeral_ports : tuple[int, int]
        First and last local port (inclusive) for connections without a bound port.
    sack, timestamps, window_scale : bool
        TCP options offered (RFC 2018, RFC 7323).
    qos : str | None
        The QoS class (:data:`QOS_CLASSES`) whose applications this instance serves, for the
        dispatcher; None: the class named like the instance, if there is one (the stock
        profiles).
    """

    name: str = "default"
    rx_queues: tuple[int, ...] = (0,)
    tx_queue: int = 0
    buffer_memory: int = 64 * _MiB
    max_connections: int = 1024
    congestion: str = TcpConfig.congestion
    delayed_ack: bool = TcpConfig.delayed_ack
    delayed_ack_timeout: float = TcpConfig.delayed_ack_timeout
    nagle: bool = TcpConfig.nagle
    initial_window: int = TcpConfig.initial_window
    min_rto: float = TcpConfig.min_rto
    max_rto: float = TcpConfig.max_rto
    max_retries: int = TcpConfig.max_retries
    syn_retries: int = TcpConfig.syn_retries
    poll_interval: float = 0.001
    poll_batch: int = 64
    syn_cookies: bool = False
    backlog: int = 128
    sndbuf: int = TcpConfig.sndbuf
    rcvbuf: int = TcpConfig.rcvbuf
    keepalive: tuple[float, float, int] | None = TcpConfig.keepalive
    time_wait: float = TcpConfig.time_wait
    fin_wait2_timeout: float = TcpConfig.fin_wait2_timeout
    ephemeral_ports: tuple[int, int] = (49152, 65535)
    sack: bool = TcpConfig.sack
    timestamps: bool = TcpConfig.timestamps
    window_scale: bool = TcpConfig.window_scale
    qos: str | None = None

    def __post_init__(self) -> None:
        # Lists from TOML become tuples, so configs stay hashable and comparable.
        for key in ("rx_queues", "ephemeral_ports", "keepalive"):
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))
        problem = _check(self)
        if problem is not None:
            key, what = problem
            raise InstanceError(f"instance {self.name!r}: {key}: {what}")

    def tcp_config(self, mss: int):
        """The per-connection knobs (:class:`~hetnic.host.stack.tcp.TcpConfig`) of this
        instance for a connection whose MSS (what the link allows) is ``mss``: every other
        TcpConfig field is the instance's field of the same name."""
        return TcpConfig(mss=mss, **{key: getattr(self, key) for key in _TCP_KNOBS})

    def replace(self, **changes: Any) -> InstanceConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(InstanceConfig)}
#: The TcpConfig fields an instance sets (all but ``mss``, which follows from the link).
_TCP_KNOBS = tuple(f.name for f in dataclasses.fields(TcpConfig) if f.name != "mss")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(c: InstanceConfig) -> tuple[str, str] | None:
    """The first bad field of ``c`` as ``(key, what is wrong)``, or None."""
    if not isinstance(c.name, str) or not c.name:
        return "name", f"must be a non-empty string, not {c.name!r}"
    q = c.rx_queues
    if (not isinstance(q, tuple) or not q or not all(_is_int(i) and 0 <= i < 256 for i in q)
            or len(set(q)) != len(q)):
        return "rx_queues", f"must be a non-empty list of distinct queues 0..255, not {q!r}"
    ints = {
        "tx_queue": (0, 255), "buffer_memory": (1, 1 << 40), "max_connections": (1, 1 << 24),
        "initial_window": (1, 1000), "max_retries": (1, 100), "syn_retries": (1, 100),
        "poll_batch": (1, 1 << 16), "backlog": (1, 1 << 20), "sndbuf": (1, 1 << 30),
        "rcvbuf": (1, 1 << 30),
    }
    for key, (lo, hi) in ints.items():
        value = getattr(c, key)
        if not _is_int(value) or not lo <= value <= hi:
            return key, f"must be an integer in {lo}..{hi}, not {value!r}"
    for key in ("delayed_ack_timeout", "min_rto", "max_rto", "poll_interval", "time_wait",
                "fin_wait2_timeout"):
        value = getattr(c, key)
        if not _is_num(value) or not 0 <= value <= 3600:
            return key, f"must be a number of seconds in 0..3600, not {value!r}"
    if c.min_rto <= 0 or c.max_rto < c.min_rto:
        return "max_rto", f"need 0 < min_rto <= max_rto, not {c.min_rto!r}, {c.max_rto!r}"
    for key in ("delayed_ack", "nagle", "syn_cookies", "sack", "timestamps", "window_scale"):
        if not isinstance(getattr(c, key), bool):
            return key, f"must be true or false, not {getattr(c, key)!r}"
    if c.congestion not in _CONGESTION:
        return "congestion", f"must be one of {', '.join(_CONGESTION)}, not {c.congestion!r}"
    if c.sndbuf + c.rcvbuf > c.buffer_memory:
        return "buffer_memory", (f"{c.buffer_memory} cannot hold one connection's "
                                 f"sndbuf + rcvbuf ({c.sndbuf + c.rcvbuf})")
    if c.qos is not None and c.qos not in QOS_CLASSES:
        return "qos", f"must be one of {', '.join(QOS_CLASSES)}, not {c.qos!r}"
    p = c.ephemeral_ports
    if (not isinstance(p, tuple) or len(p) != 2 or not all(_is_int(x) for x in p)
            or not 1024 <= p[0] <= p[1] <= 65535):
        return "ephemeral_ports", f"must be [first, last] with 1024 <= first <= last <= 65535, not {p!r}"
    k = c.keepalive
    if k is not None and (not isinstance(k, tuple) or len(k) != 3 or not _is_num(k[0])
                          or not _is_num(k[1]) or not _is_int(k[2]) or k[0] <= 0 or k[1] <= 0
                          or k[2] < 1):
        return "keepalive", f"must be [idle, interval, count] (positive) or absent, not {k!r}"
    return None


#: The stock profiles: three instances that share out an 8-queue NIC (disjoint RX queues,
#: one TX queue each, disjoint ephemeral port ranges).
PROFILES: dict[str, InstanceConfig] = {
    "low-delay": InstanceConfig(
        name="low-delay", rx_queues=(0, 1), tx_queue=0, buffer_memory=32 * _MiB,
        max_connections=256, congestion="newreno", delayed_ack=False, nagle=False,
        initial_window=10, min_rto=0.05, max_rto=10.0, poll_interval=0.0001, poll_batch=8,
        backlog=64, sndbuf=64 * _KiB, rcvbuf=64 * _KiB, ephemeral_ports=(20000, 29999)),
    "throughput": InstanceConfig(
        name="throughput", rx_queues=(2, 3, 4, 5), tx_queue=1, buffer_memory=512 * _MiB,
        max_connections=64, congestion="cubic", delayed_ack=True, nagle=True,
        initial_window=10, min_rto=0.2, poll_interval=0.002, poll_batch=256, backlog=128,
        sndbuf=4 * _MiB, rcvbuf=4 * _MiB, ephemeral_ports=(30000, 39999)),
    "concurrency": InstanceConfig(
        name="concurrency", rx_queues=(6, 7), tx_queue=2, buffer_memory=64 * _MiB,
        max_connections=4096, congestion="newreno", delayed_ack=True, nagle=True,
        initial_window=4, min_rto=0.2, poll_interval=0.001, poll_batch=64,
        syn_cookies=True, backlog=1024, sndbuf=16 * _KiB, rcvbuf=16 * _KiB,
        time_wait=10.0, ephemeral_ports=(40000, 59999)),
}


def stock_instances() -> list[InstanceConfig]:
    """The three stock profiles, in order low-delay, throughput, concurrency."""
    return list(PROFILES.values())


def _overlap(a: InstanceConfig, b: InstanceConfig) -> str | None:
    shared = sorted(set(a.rx_queues) & set(b.rx_queues))
    if shared:
        return f"rx_queues: queue {shared[0]} is also {b.name!r}'s"
    if a.tx_queue == b.tx_queue:
        return f"tx_queue: queue {a.tx_queue} is also {b.name!r}'s"
    (a0, a1), (b0, b1) = a.ephemeral_ports, b.ephemeral_ports
    if a0 <= b1 and b0 <= a1:
        return f"ephemeral_ports: {a0}-{a1} overlaps {b.name!r}'s {b0}-{b1}"
    return None


def check_instances(configs: list[InstanceConfig], where: str = "instances") -> None:
    """Refuse (:class:`InstanceError`, one line) instances that share a name, an RX or TX
    queue or ephemeral ports."""
    for i, a in enumerate(configs):
        for b in configs[:i]:
            if a.name == b.name:
                raise InstanceError(f"{where}: instance {a.name!r}: name: used twice")
            problem = _overlap(a, b)
            if problem is not None:
                raise InstanceError(f"{where}: instance {a.name!r}: {problem}")


def load_instances(path: str | Path) -> list[InstanceConfig]:
    """Read instances from a TOML file of ``[[instance]]`` tables.

    Each table starts from a stock ``profile`` if it names one (else from the
    :class:`InstanceConfig` defaults) and overrides any field; lists stand for tuples (``rx_queues = [2, 3]``,
    ``ephemeral_ports = [30000, 39999]``, ``keepalive = [60, 10, 5]``).

    Returns
    -------
    list[InstanceConfig]
        In file order; names unique, RX queues, TX queues and ephemeral ranges disjoint.

    Raises
    ------
    InstanceError
        One line naming the file and the key: unreadable file, bad TOML, no ``[[instance]]``,
        an unknown profile or key, a bad value, overlapping instances.
    """
    where = str(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as err:
        raise InstanceError(f"{where}: cannot read: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise InstanceError(f"{where}: not TOML: {err}") from None
    extra = sorted(set(doc) - {"instance"})
    if extra:
        raise InstanceError(f"{where}: {extra[0]}: unknown key (only [[instance]] tables)")
    tables = doc.get("instance")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise InstanceError(f"{where}: instance: need at least one [[instance]] table")
    configs = [_from_table(t, i, where) for i, t in enumerate(tables)]
    check_instances(configs, where)
    return configs


def _from_table(table: dict, index: int, where: str) -> InstanceConfig:
    label = f"{where}: instance[{index}]"
    table = dict(table)
    profile = table.pop("profile", None)
    if profile is None:
        base = InstanceConfig()
    elif isinstance(profile, str) and profile in PROFILES:
        base = PROFILES[profile]
    else:
        raise InstanceError(f"{label}: profile: must be one of {', '.join(PROFILES)}, "
                            f"not {profile!r}")
    for key in table:
        if key not in _FIELDS:
            raise InstanceError(f"{label}: {key}: unknown key")
    if "name" in table and isinstance(table["name"], str):
        label = f"{where}: instance {table['name']!r}"
    try:
        return dataclasses.replace(base, **table)
    except InstanceError as err:
        # Re-label with the file; the config's own message names the key.
        text = str(err).split(": ", 1)[1]
        raise InstanceError(f"{label}: {text}") from None
