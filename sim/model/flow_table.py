# Ref: ISO 3309 / IEEE 802.3 CRC-32 (zlib.crc32) as the bucket hash.
"""Software model of the exact-match flow table (:mod:`hetnic.gateware.flow_table`).

The model keeps the same slots as the gateware (``FLOW_BUCKETS`` buckets of ``FLOW_WAYS``
ways, then ``FLOW_STASH`` stash entries), places an insert the way the gateware does (the
first free way of its bucket, else the first free stash entry, else refused) and applies
staged changes only at :meth:`FlowTableModel.commit`, so a replay through the model and
through the gateware agree frame by frame. The host driver (:mod:`hetnic.host.flow_table`)
uses :func:`flow_key` and :func:`flow_bucket` to name entries and predict placement.

The bucket hash is CRC-32 (``zlib.crc32``) of the packed :class:`~hetnic.protocol.FlowKey`
as :data:`FLOW_KEY_BYTES` little-endian bytes, its low bits the bucket. It is fixed, so a
change of the RSS key never moves a flow; a CRC is linear over GF(2), so in gateware each
bucket bit is the parity of a fixed subset of the key bits (no key register, no multiplier).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from amaranth.lib import data

from ...protocol import FlowEntry, FlowKey, MetaFlags, pack
from ...regs import FLOW_BUCKETS, FLOW_JOURNAL, FLOW_STASH, FLOW_WAYS, FlowStatus

__all__ = ["FLOW_KEY_BYTES", "flow_key", "meta_flow_key", "flow_bucket", "FlowTableModel"]

#: Bytes of a packed FlowKey (297 bits) as hashed.
FLOW_KEY_BYTES = (data.Layout.cast(FlowKey).size + 7) // 8
_FLAGS = data.Layout.cast(MetaFlags)
_IPV4, _IPV6 = (1 << _FLAGS[name].offset for name in ("ipv4", "ipv6"))


def flow_key(*, ipv6: bool, ip_proto: int, src_addr: int, dst_addr: int, src_port: int,
             dst_port: int) -> int:
    """The packed :class:`~hetnic.protocol.FlowKey` (IPv4 addresses IPv4-mapped)."""
    return pack(FlowKey, ipv6=int(bool(ipv6)), ip_proto=ip_proto, src_port=src_port,
                dst_port=dst_port, src_addr=src_addr, dst_addr=dst_addr)


def meta_flow_key(meta) -> int | None:
    """The flow key of a frame's metadata (``PacketMeta`` attributes, ``flags`` an int), or
    ``None`` for a frame that is neither IPv4 nor IPv6 (it is not looked up)."""
    flags = int(meta.flags)
    if not flags & (_IPV4 | _IPV6):
        return None
    return flow_key(ipv6=bool(flags & _IPV6), ip_proto=int(meta.ip_proto),
                    src_addr=int(meta.src_addr), dst_addr=int(meta.dst_addr),
                    src_port=int(meta.src_port), dst_port=int(meta.dst_port))


def flow_bucket(key: int) -> int:
    """The bucket of a packed flow key: the low bits of its CRC-32."""
    return zlib.crc32(key.to_bytes(FLOW_KEY_BYTES, "little")) & (FLOW_BUCKETS - 1)


@dataclass
class FlowTableModel:
    """The flow table: committed slots, and the changes staged for the next commit.

    ``slots[i]`` is ``(key, action)`` (action a :class:`~hetnic.protocol.RuleAction` field
    dict) or ``None``; ``staged`` is the gateware's journal of ``(slot, entry or None)``.
    """
    slots: list = field(default_factory=lambda: [None] * (FLOW_BUCKETS * FLOW_WAYS + FLOW_STASH))
    staged: list = field(default_factory=list)
    _next: list = field(default=None)       # the slots as they will be after the commit
    refused: int = 0

    def __post_init__(self):
        self._next = list(self.slots)

    @property
    def entries(self) -> int:
        """Entries in use once the staged changes are committed (``FLOW_STATUS.entries``)."""
        return sum(s is not None for s in self._next)

    def insert(self, key: int, action: dict) -> tuple[int, int]:
        """Stage an insert: ``(FlowStatus, slot)`` as the gateware's ``FLOW_RESULT``."""
        if len(self.staged) >= FLOW_JOURNAL:
            return FlowStatus.JOURNAL_FULL, 0
        base = flow_bucket(key) * FLOW_WAYS
        candidates = [*range(base, base + FLOW_WAYS),
                      *range(FLOW_BUCKETS * FLOW_WAYS, len(self._next))]
        for slot in candidates:
            if self._next[slot] is None:
                self._next[slot] = (key, dict(action))
                self.staged.append((slot, self._next[slot]))
                return FlowStatus.OK, slot
        self.refused += 1
        return FlowStatus.FULL, 0

    def delete(self, slot: int) -> int:
        """Stage the removal of ``slot``'s entry: the ``FlowStatus``."""
        if len(self.staged) >= FLOW_JOURNAL:
            return FlowStatus.JOURNAL_FULL
        if not 0 <= slot < len(self._next) or self._next[slot] is None:
            return FlowStatus.BAD_SLOT
        self._next[slot] = None
        self.staged.append((slot, None))
        return FlowStatus.OK

    def commit(self) -> None:
        """Apply the staged changes (as ``COMMIT`` does between two frames)."""
        for slot, entry in self.staged:
            self.slots[slot] = entry
        self.staged.clear()

    def lookup(self, key: int | None) -> tuple[int, dict] | None:
        """``(slot, action)`` of the committed entry a frame's key hits, or ``None``; the
        lowest slot of its bucket wins, then the lowest stash slot (as in gateware)."""
        if key is None:
            return None
        base = flow_bucket(key) * FLOW_WAYS
        for slot in [*range(base, base + FLOW_WAYS),
                     *range(FLOW_BUCKETS * FLOW_WAYS, len(self.slots))]:
            entry = self.slots[slot]
            if entry is not None and entry[0] == key:
                return slot, entry[1]
        return None

    @staticmethod
    def entry_value(key: int, action: dict) -> int:
        """The packed :class:`~hetnic.protocol.FlowEntry` the host writes to FLOW_ENTRY."""
        return pack(FlowEntry, valid=1, action=action, key=key)
