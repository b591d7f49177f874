"""The RX pipeline configuration as the host programs it: key, RETA, rules, control bits.

:meth:`RxConfig.register_writes` turns a configuration into the register writes that program
it (shadow registers, then ``COMMIT``), using only :mod:`hetnic.regs`; every backend (cocotb,
the compiled harness, a board) performs the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.lib import data

from .protocol import (ETH_DEFAULT_MAX_FRAME, EtherType, HashType, MS_RSS_DEFAULT_KEY,
                        RSS_KEY_LEN, RuleAction)
from .regs import RULE_WORDS, RegisterMap
from .rules import Action, FlowRule

__all__ = ["RxConfig", "default_reta"]

ALL_HASH_TYPES = sum(1 << t for t in HashType if t != HashType.NONE)


def default_reta(queues: int, size: int = 512) -> list[int]:
    """The table Linux programs by default: entry i -> queue i mod ``queues``."""
    return [i % queues for i in range(size)]


@dataclass
class RxConfig:
    """Everything the host sets in the RX pipeline.

    Parameters
    ----------
    key : bytes
        40-byte Toeplitz key.
    queues : int
        Receive queues to spread over; the default RETA is ``i % queues``.
    reta : list of int, optional
        Explicit indirection table (one queue per entry, as many entries as the build has).
    rules : list of FlowRule or None
        Classifier rules by slot, first match wins; ``None`` is an empty slot.
    default : Action
        Action when no rule matches.
    hash_enable : int
        Bit ``n`` enables :class:`HashType` ``n``.
    symmetric, pass_errors : bool
    max_frame, direct_ethertype : int
    """
    key: bytes = MS_RSS_DEFAULT_KEY
    queues: int = 16
    reta: list[int] | None = None
    rules: list[FlowRule] = field(default_factory=list)
    default: Action = field(default_factory=Action)
    hash_enable: int = ALL_HASH_TYPES
    symmetric: bool = False
    pass_errors: bool = False
    max_frame: int = ETH_DEFAULT_MAX_FRAME
    direct_ethertype: int = EtherType.DIRECT_DEFAULT

    def table(self, regmap: RegisterMap) -> list[int]:
        size = regmap.params["reta_size"]
        return list(self.reta) if self.reta is not None else default_reta(self.queues, size)

    def validate(self, regmap: RegisterMap, queues: int | None = None) -> None:
        """Raise ``ValueError`` with a one-line reason if the build cannot take this config;
        ``queues``: the RX queues a driver uses when fewer than the build's (the table may
        name only those)."""
        p = regmap.params
        limit = min(p["queues"], 256, p["queues"] if queues is None else queues)
        if not isinstance(self.key, (bytes, bytearray)) or len(self.key) != RSS_KEY_LEN:
            n = len(self.key) if isinstance(self.key, (bytes, bytearray)) else self.key
            raise ValueError(f"RSS key must be {RSS_KEY_LEN} bytes, got {n!r}")
        if not 1 <= self.queues <= limit:
            raise ValueError(f"queues must be from 1 to {limit}, not {self.queues!r}")
        table = self.table(regmap)
        if len(table) != p["reta_size"]:
            raise ValueError(f"RETA must have {p['reta_size']} entries, not {len(table)}")
        bad = [q for q in table if not 0 <= q < limit]
        if bad:
            raise ValueError(f"the table names RX queue {bad[0]}, but this NIC has queues 0 to "
                             f"{limit - 1}")
        if len(self.rules) > p["n_rules"]:
            raise ValueError(f"{len(self.rules)} rules given, the build has {p['n_rules']}")
        if not isinstance(self.hash_enable, int) or self.hash_enable & ~ALL_HASH_TYPES:
            raise ValueError(f"hash_enable must be a mask of HashType bits 1..6 "
                             f"({ALL_HASH_TYPES:#x}), not {self.hash_enable!r}")
        if not 14 <= self.max_frame <= 65535:
            raise ValueError(f"max_frame must be from 14 to 65535, not {self.max_frame!r}")
        if not 0 <= self.direct_ethertype <= 0xFFFF:
            raise ValueError(f"direct_ethertype must be 16 bits, not {self.direct_ethertype!r}")

    def register_writes(self, regmap: RegisterMap, *, commit: bool = True
                        ) -> list[tuple[int, int]]:
        """``(address, value)`` pairs that program this configuration, ``COMMIT`` last."""
        self.validate(regmap)
        p = regmap.params
        ctrl = regmap["CTRL"]
        writes = [
            (regmap.addr("CTRL"),
             self.hash_enable << ctrl.field("hash_enable").lsb
             | int(self.symmetric) << ctrl.field("symmetric").lsb
             | int(self.pass_errors) << ctrl.field("pass_errors").lsb),
            (regmap.addr("MAX_FRAME"), self.max_frame),
            (regmap.addr("DIRECT_ETHERTYPE"), self.direct_ethertype),
            (regmap.addr("DEFAULT_ACTION"), data.Layout.cast(RuleAction).const(
                self.default.encode(p["reta_size"])).as_value().value),
        ]
        for k in range(RSS_KEY_LEN // 4):
            writes.append((regmap.addr("RSS_KEY", k),
                           int.from_bytes(self.key[4 * k:4 * k + 4], "big")))
        for i, queue in enumerate(self.table(regmap)):
            writes.append((regmap.addr("RETA", i), queue))
        for r in range(p["n_rules"]):
            rule = self.rules[r] if r < len(self.rules) else None
            packed = rule.encode(p["reta_size"]) if rule is not None else 0
            for w in range(RULE_WORDS):
                writes.append((regmap.addr("RULE", r, w), (packed >> (32 * w)) & 0xFFFF_FFFF))
        if commit:
            writes.append((regmap.addr("COMMIT"), 1))
        return writes
