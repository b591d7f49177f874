"""The flow table's driver: exact-match 5-tuple entries, staged and applied with COMMIT.

``nic.flows`` (:class:`FlowTable`) installs entries in the gateware flow table
(:mod:`hetnic.gateware.flow_table`): a frame whose 5-tuple equals an entry's takes the
entry's :class:`~hetnic.rules.Action` instead of the rules' (its completion's ``rule`` is
:data:`~hetnic.protocol.FLOW_HIT_RULE`). Changes are staged, as the rules are: frames see
them only after :meth:`FlowTable.commit` (or any :meth:`NicControl.commit`), all at once.

    flow = FiveTuple("198.18.0.1", "198.18.0.2", 40000, 80, "tcp")
    handle = nic.flows.insert(flow, Action(instance=1))
    nic.flows.commit()
    ...
    nic.flows.delete(flow)
    nic.flows.commit()

The gateware places an insert (the first free way of its bucket, else the stash); when both
are full it refuses it, counts it (``flow_refused``) and this driver raises
:class:`FlowTableFull`. The driver keeps the keys it installed, so it refuses a duplicate and
deletes by 5-tuple or by handle (the slot the gateware chose).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import HetnicError
from ..protocol import IpProto, ipv4_mapped
from ..regs import FLOW_ENTRY_WORDS, FLOW_JOURNAL, FlowOp, FlowStatus
from ..rules import IP_PROTO_NAMES, Action
from ..sim.model.flow_table import FlowTableModel, flow_key

if TYPE_CHECKING:
    from .control import NicControl

__all__ = ["FiveTuple", "FlowTable", "FlowTableError", "FlowTableFull"]


class FlowTableError(HetnicError, ValueError):
    """A flow table request that cannot be done (bad 5-tuple, duplicate, unknown flow, too
    many staged changes, no flow table in this build). The message says what to do."""


class FlowTableFull(FlowTableError):
    """The flow's bucket and the stash are full: the gateware refused the insert (and
    counted it in ``flow_refused``)."""


@dataclass(frozen=True)
class FiveTuple:
    """A flow as the NIC receives it: source and destination address and port, protocol.

    Addresses are IPv4 or IPv6 (both the same version), as strings or ``ipaddress``
    objects; ``proto`` a name (``"tcp"``, ``"udp"``, ...) or a number. Only TCP and UDP
    flows have ports: the NIC's parser reads no ports for other protocols (they are 0 in
    the frame's key), so their ports must be 0. A TCP or UDP fragment other than the first
    carries no ports either and does not match its flow's entry.
    """
    src: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    src_port: int
    dst_port: int
    proto: str | int = "tcp"

    def key(self) -> int:
        """The packed :class:`~hetnic.protocol.FlowKey`; :class:`FlowTableError` if a field
        is invalid."""
        try:
            src, dst = ipaddress.ip_address(self.src), ipaddress.ip_address(self.dst)
        except ValueError as e:
            raise FlowTableError(f"bad flow address: {e}") from None
        if src.version != dst.version:
            raise FlowTableError(f"flow addresses {src} and {dst} are not the same IP version")
        for name in ("src_port", "dst_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
                raise FlowTableError(f"flow {name} must be 0..65535, not {port!r}")
        proto = self.proto
        if isinstance(proto, str):
            if proto.lower() not in IP_PROTO_NAMES:
                raise FlowTableError(f"unknown flow protocol {proto!r}; use a number or one "
                                     f"of {', '.join(IP_PROTO_NAMES)}")
            proto = int(IP_PROTO_NAMES[proto.lower()])
        elif isinstance(proto, bool) or not isinstance(proto, int) or not 0 <= proto <= 255:
            raise FlowTableError(f"flow protocol must be 0..255, not {proto!r}")
        if proto not in (IpProto.TCP, IpProto.UDP) and (self.src_port or self.dst_port):
            raise FlowTableError(f"a protocol {self.proto!r} flow has no ports (the NIC reads "
                                 f"ports of TCP and UDP only), so give ports 0, not "
                                 f"{self.src_port} and {self.dst_port}")

        def addr(a):
            return ipv4_mapped(int(a)) if a.version == 4 else int(a)

        return flow_key(ipv6=src.version == 6, ip_proto=proto, src_addr=addr(src),
                        dst_addr=addr(dst), src_port=self.src_port, dst_port=self.dst_port)


class FlowTable:
    """The flow table of one NIC (``nic.flows``).

    Parameters
    ----------
    nic : NicControl
        The driver whose registers and commit it uses.
    """

    def __init__(self, nic: "NicControl"):
        self._nic = nic
        self._slots: dict[int, int] = {}        # key -> slot, as after the next commit
        self._staged = 0
        self._checked = False

    def _require(self) -> None:
        if self._checked:
            return
        r = self._nic.regmap
        caps = self._nic.backend.reg_read(r.addr("CAPS"))
        if not r["CAPS"].field("flow_table").decode(caps):
            raise FlowTableError("this NIC build has no flow table (CAPS.flow_table is 0)")
        self._checked = True

    def __len__(self) -> int:
        """Entries once the staged changes are committed."""
        return len(self._slots)

    def __contains__(self, flow: FiveTuple) -> bool:
        return flow.key() in self._slots

    def handle(self, flow: FiveTuple) -> int | None:
        """The slot of ``flow``'s entry (staged or committed), or ``None``."""
        return self._slots.get(flow.key())

    @property
    def staged(self) -> int:
        """Changes staged for the next commit (at most :data:`~hetnic.regs.FLOW_JOURNAL`)."""
        return self._staged

    def insert(self, flow: FiveTuple, action: Action) -> int:
        """Stage an entry: frames of ``flow`` take ``action`` after the next commit. Returns
        its handle (the slot). Raises :class:`FlowTableFull` when its bucket and the stash
        are full, :class:`FlowTableError` for a flow already in the table or too many
        staged changes (commit first)."""
        if not isinstance(action, Action):
            raise TypeError(f"flows.insert takes an Action, not {type(action).__name__}")
        key = flow.key()
        if key in self._slots:
            raise FlowTableError(f"flow {flow} is already in the table (handle "
                                 f"{self._slots[key]}); delete it first")
        fields = action.encode(self._nic.regmap.params["reta_size"])
        self._require()
        value = FlowTableModel.entry_value(key, fields)
        r = self._nic.regmap
        self._nic._write([(r.addr("FLOW_ENTRY", 0, w), value >> (32 * w) & 0xFFFF_FFFF)
                          for w in range(FLOW_ENTRY_WORDS)])
        status, slot = self._op(FlowOp.INSERT, 0)
        if status == FlowStatus.FULL:
            raise FlowTableFull(f"flow table full for {flow}: its bucket and the stash are "
                                f"full ({len(self._slots)} entries); delete flows first")
        self._slots[key] = slot
        return slot

    def delete(self, flow: FiveTuple | int) -> None:
        """Stage the removal of a flow's entry, by 5-tuple or handle."""
        if isinstance(flow, FiveTuple):
            key = flow.key()
            if key not in self._slots:
                raise FlowTableError(f"flow {flow} is not in the table")
        else:
            keys = [k for k, s in self._slots.items() if s == flow]
            if not keys:
                raise FlowTableError(f"no flow has handle {flow!r}")
            key = keys[0]
        self._require()
        self._op(FlowOp.DELETE, self._slots[key])
        del self._slots[key]

    def _op(self, op: int, slot: int) -> tuple[int, int]:
        if self._staged >= FLOW_JOURNAL:
            raise FlowTableError(f"{FLOW_JOURNAL} flow changes are staged already; commit "
                                 f"them first")
        b, r = self._nic.backend, self._nic.regmap
        b.reg_write(r.addr("FLOW_OP"), r["FLOW_OP"].field("op").encode(op)
                    | r["FLOW_OP"].field("slot").encode(slot))
        word = b.reg_read(r.addr("FLOW_RESULT"))
        result = r["FLOW_RESULT"]
        status, got = result.field("status").decode(word), result.field("slot").decode(word)
        if status == FlowStatus.OK:
            self._staged += 1
        elif status != FlowStatus.FULL:
            # The driver's own bookkeeping prevents these; one means it and the NIC disagree.
            raise FlowTableError(f"the NIC refused flow op {op} (slot {slot}) with status "
                                 f"{status}; the driver and the NIC disagree")
        return status, got

    def commit(self) -> int:
        """Apply the staged changes (with the rest of the staged configuration); returns the
        new configuration generation."""
        return self._nic.commit()

    def _committed(self) -> None:
        """The NIC applied a commit: nothing is staged any more."""
        self._staged = 0

    def counters(self) -> dict[str, int]:
        """``hits``, ``misses`` and ``refused`` (accumulated as :meth:`NicControl.counters`
        does), and ``entries`` and ``staged`` as the NIC reports them now."""
        self._require()
        c = self._nic.counters()
        r = self._nic.regmap
        status = self._nic.backend.reg_read(r.addr("FLOW_STATUS"))
        reg = r["FLOW_STATUS"]
        return {"hits": c["flow_hits"], "misses": c["flow_misses"],
                "refused": c["flow_refused"], "entries": reg.field("entries").decode(status),
                "staged": reg.field("staged").decode(status)}
