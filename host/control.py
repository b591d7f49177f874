"""The control plane every hetnic NIC driver shares: identity, configuration, commit, counters.

:class:`NicControl` is the part of the driver that only reads and writes registers: it
checks that the device is a hetnic NIC of the expected build, stages the RSS key, the
indirection table, the rules and the settings in the shadow registers (:class:`Rss`,
:class:`Rules`, :meth:`NicControl.apply`), commits them, and accumulates the counters. The
simulated NIC core (:class:`hetnic.host.nic.Nic`, with DMA rings) and a board over its
serial bridge (:class:`hetnic.host.board.BoardNic`, frames over a network interface) both
build on it, so the same calls configure either.

A backend needs ``reg_read(addr)``, ``reg_write(addr, value)``, ``reg_read_many(addrs)``,
``reg_write_many(writes)`` and ``close()`` here; a subclass says how the commit waits
(:meth:`NicControl._commit_waiter`).
"""

from __future__ import annotations

import copy
import time
from typing import Iterable, Iterator, Sequence

from ..errors import HetnicError
from ..protocol import RSS_KEY_LEN, DropReason, HashType
from ..params import NicParams
from ..regs import ID_MAGIC, RULE_WORDS, RegisterMap
from ..config import RxConfig
from ..rules import Action, FlowRule
from .flow_table import FlowTable

__all__ = ["NicControl", "NicError", "Rss", "Rules", "check_magic", "identify"]


class NicError(HetnicError, RuntimeError):
    """The NIC did not do what the driver asked (a commit that never applies, a queue that
    reports an error, a device that is not a hetnic NIC, a board that does not answer)."""


def serial_commit_waiter(where: str, timeout: float) -> Iterator[None]:
    """The commit wait of a NIC behind a serial link: every ``COMMIT_STATUS`` read is a round
    trip, so the waiter only bounds the wall-clock time, ``timeout`` seconds; ``where`` names
    the link in the error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
    raise NicError(f"the commit on the board at {where} did not apply within "
                   f"{timeout:g} s: COMMIT_STATUS stays set")


def check_magic(backend, regmap: RegisterMap) -> None:
    """Raise :class:`NicError` unless register ``ID`` holds the hetnic magic number."""
    magic = backend.reg_read(regmap.addr("ID"))
    if magic != ID_MAGIC:
        raise NicError(f"register 0 reads {magic:#010x}, not the hetnic magic "
                       f"{ID_MAGIC:#010x}: this is not a hetnic NIC")


def identify(backend) -> NicParams:
    """The build of the device behind ``backend``, read from its identification registers
    (``ID``, ``PARAMS0..2``, ``CAPS``: at the same place in every build) by
    :meth:`NicParams.from_identity <hetnic.params.NicParams.from_identity>`.

    Raises
    ------
    NicError
        ``ID`` does not hold the hetnic magic, or the device reports parameters that are not
        a hetnic build.
    """
    check_magic(backend, RegisterMap())
    try:
        return NicParams.from_identity(backend.reg_read)
    except ValueError as e:
        raise NicError(f"the device on {getattr(backend, 'name', backend)!s} reports build "
                       f"parameters that are not a hetnic build: {e}") from None


# --- configuration ---------------------------------------------------------------------------

class Rss:
    """The RSS key, hash settings and indirection table (shadow state until
    :meth:`Nic.commit`)."""

    def __init__(self, nic: "NicControl"):
        self._nic = nic

    @property
    def key(self) -> bytes:
        return self._nic._config.key

    @property
    def table(self) -> list[int]:
        return self._nic._config.table(self._nic.regmap)

    def set_key(self, key: bytes) -> None:
        """Stage a 40-byte Toeplitz key."""
        if not isinstance(key, (bytes, bytearray)) or len(key) != RSS_KEY_LEN:
            got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else repr(key)
            raise ValueError(f"an RSS key is {RSS_KEY_LEN} bytes, not {got}")
        key = bytes(key)
        self._nic._config.key = key
        self._nic._write([(self._nic.regmap.addr("RSS_KEY", k),
                           int.from_bytes(key[4 * k:4 * k + 4], "big"))
                          for k in range(RSS_KEY_LEN // 4)])

    def set_table(self, queues: Sequence[int]) -> None:
        """Stage the indirection table: one RX queue per entry. A shorter list whose length
        divides the table size is repeated (``[0, 1]`` alternates two queues)."""
        size = self._nic.regmap.params["reta_size"]
        queues = list(queues)
        if not queues or size % len(queues):
            raise ValueError(f"the table has {size} entries; give {size} queues or a list "
                             f"whose length divides {size}, not {len(queues)}")
        n = self._nic.queue_count
        for q in queues:
            if not isinstance(q, int) or isinstance(q, bool) or not 0 <= q < n:
                raise ValueError(f"the table names RX queue {q!r}, but this NIC has queues "
                                 f"0 to {n - 1}")
        table = queues * (size // len(queues))
        self._nic._config.reta = table
        self._nic._write([(self._nic.regmap.addr("RETA", i), q) for i, q in enumerate(table)])

    def configure(self, *, symmetric: bool | None = None, hash_types: Iterable | None = None
                  ) -> None:
        """Stage the hash settings: symmetric hashing, and which :class:`HashType` values are
        enabled (the others hash nothing and go to RETA entry 0)."""
        cfg = self._nic._config
        if symmetric is not None:
            cfg.symmetric = bool(symmetric)
        if hash_types is not None:
            mask = 0
            for t in hash_types:
                mask |= 1 << HashType(t)
            cfg.hash_enable = mask
        self._nic._write_config_head()


class Rules:
    """Classifier rules in the NIC's rule slots; a lower slot wins over a higher one."""

    def __init__(self, nic: "NicControl"):
        self._nic = nic

    @property
    def _slots(self) -> list[FlowRule | None]:
        rules = list(self._nic._config.rules)
        return rules + [None] * (self._nic.regmap.params["n_rules"] - len(rules))

    def _set(self, slot: int, rule: FlowRule | None) -> None:
        slots = self._slots
        slots[slot] = rule
        while slots and slots[-1] is None:
            slots.pop()
        self._nic._config.rules = slots

    def __len__(self) -> int:
        return sum(r is not None for r in self._slots)

    def __iter__(self) -> Iterator[tuple[int, FlowRule]]:
        return ((i, r) for i, r in enumerate(self._slots) if r is not None)

    def add(self, rule: FlowRule, slot: int | None = None) -> int:
        """Stage ``rule`` in the lowest free slot (or ``slot``); returns the slot, which is
        the ``rule`` number in the completions of frames it matches."""
        if not isinstance(rule, FlowRule):
            raise TypeError(f"rules.add takes a FlowRule, not {type(rule).__name__}")
        if slot is None:
            free = [i for i, r in enumerate(self._slots) if r is None]
            if not free:
                raise ValueError(f"all {len(self._slots)} rule slots are in use; remove one "
                                 f"first")
            slot = free[0]
        elif not isinstance(slot, int) or not 0 <= slot < len(self._slots):
            raise ValueError(f"rule slot must be from 0 to {len(self._slots) - 1}, not {slot!r}")
        packed = rule.encode(self._nic.regmap.params["reta_size"])
        self._set(slot, rule)
        self._write_slot(slot, packed)
        return slot

    def remove(self, id: int) -> None:
        """Stage the removal of the rule in slot ``id``."""
        if not isinstance(id, int) or not 0 <= id < len(self._slots) or self._slots[id] is None:
            used = [i for i, r in enumerate(self._slots) if r is not None]
            raise ValueError(f"no rule in slot {id!r}; slots in use: {used}")
        self._set(id, None)
        self._write_slot(id, 0)

    def set_default(self, action: Action) -> None:
        """Stage the action for frames no rule matches."""
        if not isinstance(action, Action):
            raise TypeError(f"set_default takes an Action, not {type(action).__name__}")
        self._nic._config.default = action
        self._nic._write_config_head()

    def _write_slot(self, slot: int, packed: int) -> None:
        regmap = self._nic.regmap
        self._nic._write([(regmap.addr("RULE", slot, w), packed >> (32 * w) & 0xFFFF_FFFF)
                          for w in range(RULE_WORDS)])



# --- the shared driver -----------------------------------------------------------------------

class NicControl:
    """Identity check, staged configuration, commit and counters over a backend's registers.

    Parameters
    ----------
    backend
        Register access (see the module documentation); closed by :meth:`close`.
    params : NicParams
        The build the driver expects (usually :func:`identify`'s); ``PARAMS0..2`` must read
        what its register map says.
    queues : int
        Receive queues the indirection table and the rules may name.

    Members
    -------
    rss : Rss
    rules : Rules
    flows : FlowTable
        The exact-match flow table (:mod:`hetnic.host.flow_table`).
    regmap : RegisterMap
        ``params.regmap()``.
    params : NicParams
    queue_count : int
        ``queues`` (may be fewer than the build's: :class:`hetnic.host.nic.Nic`).
    generation : int
        The configuration generation of the last :meth:`commit`.
    """

    def __init__(self, backend, params: NicParams, *, queues: int):
        self._backend = backend
        self.params = params
        self.regmap = params.regmap()
        self.queue_count = queues
        self._check_identity()
        self._counter_regs = self._counter_addresses()
        self._counter_last: list[int] | None = None
        self._counter_total = [0] * len(self._counter_regs)
        self._config = RxConfig(queues=queues)
        self._committed_hash = self._hash_settings()
        self.generation: int | None = None
        self.rss = Rss(self)
        self.rules = Rules(self)
        self.flows = FlowTable(self)

    def _start(self) -> None:
        """Program the default configuration (Microsoft key, RETA entry i -> queue i mod
        ``queues``, no rules), commit it and take the counters' baseline."""
        self._write(self._config.register_writes(self.regmap, commit=False))
        self.generation = self.commit()
        self.counters()

    @property
    def backend(self):
        """What moves the register reads and writes (and, by backend, the rest)."""
        if self._backend is None:
            raise NicError("the NIC is closed; open it again with Nic.open()")
        return self._backend

    def close(self) -> None:
        """Close the backend."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- configuration -------------------------------------------------------------------
    def commit(self) -> int:
        """Apply the staged key, table, rules, flow table changes and settings atomically at a
        frame boundary; returns the new configuration generation (carried by every later
        frame's metadata)."""
        b, r = self.backend, self.regmap
        before = b.reg_read(r.addr("GENERATION"))
        b.reg_write(r.addr("COMMIT"), 1)
        waiter = self._commit_waiter()
        while b.reg_read(r.addr("COMMIT_STATUS")) != 0:
            next(waiter)            # raises NicError once the wait is over
        self.generation = b.reg_read(r.addr("GENERATION"))
        self.flows._committed()
        if self.generation == before:
            raise NicError(f"COMMIT_STATUS cleared but GENERATION stayed {before}")
        settings = self._hash_settings()
        if settings != self._committed_hash:
            self._committed_hash = settings
            self._hash_changed(self.generation)
        return self.generation

    def _commit_waiter(self) -> Iterator[None]:
        """Yields once per ``COMMIT_STATUS`` read that finds the commit pending, after
        letting the NIC run a while; raises :class:`NicError` when it has waited too long."""
        raise NotImplementedError

    def _hash_changed(self, generation: int) -> None:
        """The key or hash settings changed with the commit that made ``generation``."""

    def _hash_settings(self) -> tuple:
        c = self._config
        return c.key, c.symmetric, c.hash_enable

    def apply(self, config: RxConfig) -> int:
        """Stage a whole :class:`~hetnic.config.RxConfig` (key, table, hash settings,
        rules in slots 0.., default action, frame limits) and commit it; returns the new
        generation. Raises ``ValueError`` (nothing written) if this NIC cannot take it: the
        build cannot, or its table names a queue beyond the ``queues`` this driver uses."""
        config.validate(self.regmap, queues=self.queue_count)
        self._config = copy.deepcopy(config)
        self._write(self._config.register_writes(self.regmap, commit=False))
        return self.commit()

    @property
    def config(self) -> RxConfig:
        """The staged configuration (what :meth:`commit` applies)."""
        return self._config

    def _write_config_head(self) -> None:
        # CTRL, MAX_FRAME, DIRECT_ETHERTYPE, DEFAULT_ACTION: the first writes of the config.
        self._write(self._config.register_writes(self.regmap, commit=False)[:4])

    def _write(self, writes: list[tuple[int, int]]) -> None:
        self.backend.reg_write_many(writes)

    def _check_identity(self) -> None:
        b, r = self.backend, self.regmap
        check_magic(b, r)
        for name in ("PARAMS0", "PARAMS1", "PARAMS2"):
            got, want = b.reg_read(r.addr(name)), r.ro_value(name)
            if got != want:
                raise NicError(f"{name} reads {got:#x}, expected {want:#x} for the build "
                               f"{self.params}; the backend and the driver disagree")

    # --- counters ------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Every NIC counter, accumulated since :meth:`open` (the registers are 32-bit and
        wrap; the driver adds up the differences, so read at least every 2**32 frames)."""
        raw = self.backend.reg_read_many([a for _, a in self._counter_regs])
        if self._counter_last is None:
            self._counter_last = raw
            return {name: 0 for name, _ in self._counter_regs}
        for i, (new, old) in enumerate(zip(raw, self._counter_last)):
            self._counter_total[i] += (new - old) & 0xFFFF_FFFF
        self._counter_last = raw
        return {name: total for (name, _), total in zip(self._counter_regs,
                                                          self._counter_total)}

    def _counter_addresses(self) -> list[tuple[str, int]]:
        r = self.regmap
        out = []
        for reg in r:
            if reg.access != "counter":
                continue
            n = r.count(reg)
            for i in range(n):
                if reg.name == "DROP_COUNT":
                    label = f"drop[{DropReason(i).name.lower()}]" if i in DropReason._value2member_map_ else f"drop[{i}]"
                elif reg.name == "RULE_HITS" and i == n - 1:
                    label = "rule_hits[default]"
                elif n == 1:
                    label = reg.name.lower()
                else:
                    label = f"{reg.name.lower()}[{i}]"
                out.append((label, r.addr(reg.name, i)))
        return out
