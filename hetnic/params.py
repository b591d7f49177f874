"""The build parameters of a hetnic design: one frozen :class:`NicParams` per build.

Every build of the gateware — the RX pipeline, the NIC core with its DMA queues, a board's
core, the reduced serial core — is described by one :class:`NicParams`. The gateware is
elaborated from it, the simulators key their caches on it, and :meth:`NicParams.regmap`
resolves the register table (:mod:`hetnic.regs`) for it. A driver never builds one from
guesses: :meth:`NicParams.from_identity` reads it back from the identification registers
(``ID``, ``PARAMS0..2``, ``CAPS``) of the device it talks to.

The named presets are the builds that exist: :data:`HIL_NIC_CORE` (the simulated NIC of
``Nic.open("sim")``), :data:`RX_PIPELINE_W64` and :data:`RX_PIPELINE_W8` (the RX pipeline
builds under ``rtl/``), :data:`NIC_CORE_W64` (the NIC core under ``rtl/``),
:data:`ECP5_BOARD_CORE` (the RX pipeline of the ECP5 boards; a board sets ``mac_ports`` to
its Ethernet ports) and :data:`ICE40_SERIAL_CORE` (the iCEBreaker's reduced serial core).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from .regs import ID_MAGIC, RegisterMap

__all__ = ["NicParams", "HIL_NIC_CORE", "RX_PIPELINE_W64", "RX_PIPELINE_W8", "NIC_CORE_W64",
           "ECP5_BOARD_CORE", "ICE40_SERIAL_CORE", "PRESETS", "CORE_CLOCK_HZ",
           "CORE_CLOCK_PERIOD_NS", "hil_rx_queues"]

#: The NIC core's clock: 125 MHz, gigabit Ethernet's byte clock (GMII/RGMII). The ECP5
#: boards constrain their core clock to it, and every simulator clocks the core at it.
CORE_CLOCK_HZ = 125_000_000
#: Its period in nanoseconds (the simulators' clock period).
CORE_CLOCK_PERIOD_NS = 1_000_000_000 // CORE_CLOCK_HZ

#: Toeplitz input bytes: the longest hash input (IPv6 addresses and ports).
_MAX_HASH_BYTES = 36


def _default_hash_bytes(data_width: int) -> int:
    """Hash bytes per cycle that match a datapath: a beat's bytes, at most the input's."""
    return min(_MAX_HASH_BYTES, data_width // 8)


def _default_queues(rx_queues: int) -> int:
    """Receive queues the RETA names: a NIC core's DMA queues, else 64."""
    return rx_queues or 64


@dataclass(frozen=True)
class NicParams:
    """The build parameters of one hetnic design, checked when it is made.

    Parameters
    ----------
    data_width : int
        Bits per datapath beat (and DMA width of a NIC core): 8 to 512, a multiple of 8.
    n_rules : int
        Classifier rules, 1 to 64.
    reta_size : int
        Indirection table entries: a power of two, 2 to 2048.
    queues : int or None
        Receive queues the indirection table and the rules may name (1 to 256), which the
        per-queue counters count. ``None``: ``rx_queues`` in a NIC core, else 64. (A NIC core
        steers to its DMA queues: :class:`~hetnic.gateware.nic_core.NicCore` wants it equal
        to ``rx_queues``.)
    hash_bytes_per_cycle : int or None
        Toeplitz input bytes hashed per cycle, 1 to 36; ``None`` matches the datapath
        (``data_width // 8``, at most 36).
    rx_queues, tx_queues, event_queues : int
        The NIC core's RX queues with DMA rings (0 to 256), TX queues (0 to 64) and event
        queues (0 to 64); all 0 in a build without DMA (the RX pipeline, a board).
    mac_ports : int
        Ethernet MACs whose ``MAC_*`` counters are registers (a board's ports), 0 to 15.
    injector : bool
        The reduced serial core: Toeplitz inputs come in through the ``INJ_*`` registers and
        results go out through ``RES_*``. (It hashes a byte per cycle and has one rule slot:
        :class:`~hetnic.gateware.rss_steering.RssSteering` wants ``data_width=8``,
        ``hash_bytes_per_cycle=1``, ``n_rules=1``.)
    flow_table : bool
        The exact-match flow table (:class:`~hetnic.gateware.flow_table.FlowTable`) in the RX
        pipeline, with its ``FLOW_*`` registers and ``CAPS.flow_table``. The simulated NIC
        cores have it; the board builds leave it out (on the Versa ECP5 it routed at 103.95
        MHz, not the 125 MHz core clock: docs/timing.md), and the reduced serial core has no
        classifier for it to stand beside (``injector`` wants ``flow_table=False``).

    Raises
    ------
    ValueError
        One line naming the parameter and quoting its bad value.
    """
    data_width: int = 64
    n_rules: int = 16
    reta_size: int = 512
    queues: int | None = None
    hash_bytes_per_cycle: int | None = None
    rx_queues: int = 0
    tx_queues: int = 0
    event_queues: int = 0
    mac_ports: int = 0
    injector: bool = False
    flow_table: bool = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("queues", "hash_bytes_per_cycle"):
                continue
            if f.name in ("injector", "flow_table"):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be True or False, not {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{f.name} must be an integer, not {value!r}")
        w = self.data_width
        if not 8 <= w <= 512 or w % 8:
            raise ValueError(f"data_width must be a multiple of 8 from 8 to 512 bits, not {w!r}")
        if self.injector and self.flow_table:
            raise ValueError("flow_table must be False with injector (the reduced serial core "
                             "has no flow table)")
        if self.hash_bytes_per_cycle is None:
            object.__setattr__(self, "hash_bytes_per_cycle", _default_hash_bytes(w))
        if self.queues is None:
            object.__setattr__(self, "queues", _default_queues(self.rx_queues))
        # The register table checks every count against the field that reports it; the
        # resolved table is kept (not a field: equality, hashing and asdict() ignore it).
        object.__setattr__(self, "_regmap", RegisterMap(
            data_bytes=w // 8, hash_bytes_per_cycle=self.hash_bytes_per_cycle,
            n_rules=self.n_rules, reta_size=self.reta_size, queues=self.queues,
            rx_queues=self.rx_queues, tx_queues=self.tx_queues,
            event_queues=self.event_queues, mac_ports=self.mac_ports,
            injector=int(self.injector), flow_table=int(self.flow_table)))

    def regmap(self) -> RegisterMap:
        """The register table resolved for this build (what ``PARAMS0..2`` and ``CAPS`` of
        such a device read)."""
        return self._regmap

    def replace(self, **changes) -> "NicParams":
        """A copy with ``changes``, checked like a new one. A derived parameter still at its
        default follows what it derives from: ``hash_bytes_per_cycle`` a new ``data_width``,
        ``queues`` a new ``rx_queues`` (unless ``changes`` sets it too)."""
        if ("data_width" in changes and "hash_bytes_per_cycle" not in changes
                and self.hash_bytes_per_cycle == _default_hash_bytes(self.data_width)):
            changes["hash_bytes_per_cycle"] = None
        if ("rx_queues" in changes and "queues" not in changes
                and self.queues == _default_queues(self.rx_queues)):
            changes["queues"] = None
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_identity(cls, read: Callable[[int], int]) -> "NicParams":
        """The build of a device, from its identification registers.

        Parameters
        ----------
        read : callable
            ``read(address) -> int``: one 32-bit register read of the device.

        Raises
        ------
        ValueError
            ``ID`` does not read the hetnic magic, or the parameters the device reports are
            not a hetnic build.
        """
        probe = RegisterMap()   # the identification block sits at the same place in every build
        magic = read(probe.addr("ID"))
        if magic != ID_MAGIC:
            raise ValueError(f"register ID reads {magic:#010x}, not the hetnic magic "
                             f"{ID_MAGIC:#010x}: this is not a hetnic NIC")
        words = {name: read(probe.addr(name))
                 for name in ("PARAMS0", "PARAMS1", "PARAMS2", "CAPS")}

        def field(reg: str, name: str) -> int:
            return probe[reg].field(name).decode(words[reg])

        return cls(data_width=8 * field("PARAMS0", "data_bytes"),
                   hash_bytes_per_cycle=field("PARAMS0", "hash_bytes_per_cycle"),
                   n_rules=field("PARAMS0", "n_rules"),
                   reta_size=field("PARAMS1", "reta_size"), queues=field("PARAMS1", "queues"),
                   rx_queues=field("PARAMS2", "rx_queues"),
                   tx_queues=field("PARAMS2", "tx_queues"),
                   event_queues=field("PARAMS2", "event_queues"),
                   mac_ports=field("PARAMS2", "mac_ports"),
                   injector=bool(field("CAPS", "injector")),
                   flow_table=bool(field("CAPS", "flow_table")))


#: The simulated NIC core of ``Nic.open("sim")`` by default (the HIL harness).
HIL_NIC_CORE = NicParams(data_width=64, rx_queues=8, tx_queues=4, event_queues=4)


def hil_rx_queues(rx_queues: int) -> int:
    """The RX queues of the HIL build that serves a NIC using ``rx_queues`` of them.

    ``Nic.open("sim", rx_queues=N)`` builds (and caches) the harness with N rounded up, so
    that few builds serve every N: up to 8 is :data:`HIL_NIC_CORE`'s 8, 9 to 16 is 16, above
    16 is N itself. The driver uses only the first N; the others stay disabled."""
    if rx_queues <= HIL_NIC_CORE.rx_queues:
        return HIL_NIC_CORE.rx_queues
    if rx_queues <= 16:
        return 16
    return rx_queues


#: The RX pipeline builds under ``rtl/``: 64 and 8 bits, 16 rules, 512 RETA entries, 64 queues.
RX_PIPELINE_W64 = NicParams(data_width=64)
RX_PIPELINE_W8 = NicParams(data_width=8)
#: The NIC core build under ``rtl/``: 64 RX queues, 4 TX queues, 4 event queues.
NIC_CORE_W64 = NicParams(data_width=64, rx_queues=64, tx_queues=4, event_queues=4)
#: The RX pipeline of the ECP5 boards: small enough to leave room on a 25k-LUT ECP5, and
#: without the flow table (it costs the Versa its 125 MHz: docs/timing.md). The board core
#: sets ``mac_ports`` to its Ethernet ports.
ECP5_BOARD_CORE = NicParams(data_width=8, n_rules=4, reta_size=128, queues=16,
                            flow_table=False)
#: The iCEBreaker's reduced serial core: the Toeplitz engine and a 16-entry RETA.
ICE40_SERIAL_CORE = NicParams(data_width=8, hash_bytes_per_cycle=1, n_rules=1, reta_size=16,
                              queues=4, injector=True, flow_table=False)

#: The presets by name.
PRESETS = {"hil_nic_core": HIL_NIC_CORE, "rx_pipeline_w64": RX_PIPELINE_W64,
           "rx_pipeline_w8": RX_PIPELINE_W8, "nic_core_w64": NIC_CORE_W64,
           "ecp5_board_core": ECP5_BOARD_CORE, "ice40_serial_core": ICE40_SERIAL_CORE}
