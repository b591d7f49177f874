# Ref: RFC 4291 section 2.5.5.2 (IPv4-mapped IPv6 addresses), RFC 4632 (CIDR prefix notation).
"""Flow classifier rules: the user-facing description and its encoding.

A :class:`FlowRule` says which frames it matches and what to do with them (an
:class:`Action`); :meth:`FlowRule.encode` packs it into the :class:`~hetnic.protocol.Rule`
layout that the gateware classifier (:class:`hetnic.gateware.classifier.FlowClassifier`)
compares against every frame's :class:`~hetnic.protocol.PacketMeta`. :class:`RuleFields`
unpacks such a value again (the software model works from the packed form, so it sees exactly
what the gateware sees).

Match semantics
---------------
Every match field is optional; ``None`` matches anything. A frame matches a rule when every
given field matches; rules are tried in order and the first match wins. A frame no rule
matches gets the rule set's default action. Addresses are prefixes: an IPv4 prefix matches
only IPv4 frames (it is encoded IPv4-mapped, ``::ffff:a.b.c.d``, with the top 96 bits in the
mask, and the rule also requires ``flags.ipv4``), an IPv6 prefix matches IPv6 addresses
(``::/0`` matches every frame). Ports are inclusive ranges; frames without TCP/UDP ports carry
port 0, so a range that contains 0 also matches them (add ``flags = {tcp = true}`` or an
``ip_proto`` to exclude them). A ``vni`` matches the VXLAN / VXLAN-GPE network identifier the
parser found after the outer UDP header (and requires ``flags.vni``, so a frame without one,
whose ``vni`` field is 0, never matches ``vni = 0``).

Rule files are read by :func:`hetnic.rule_file.load_rules`.
"""

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Mapping

from amaranth.lib import data

from .errors import HetnicError
from .protocol import (VNI_MAX, VXLAN_GPE_UDP_PORT, VXLAN_UDP_PORT, EtherType, IpProto,
                       MetaFlags, Rule, RuleAction, ipv4_mapped, pack, unpack)

__all__ = ["RuleError", "Action", "FlowRule", "RuleFields", "RuleSet", "IP_PROTO_NAMES",
           "TCP_FLAG_NAMES", "tcp_flags_from_names"]


class RuleError(HetnicError, ValueError):
    """A rule, an action or a rule file is invalid. The message is one line saying where."""


#: Names accepted for ``ip_proto``.
IP_PROTO_NAMES = {
    "icmp": IpProto.ICMP, "igmp": 2, "tcp": IpProto.TCP, "udp": IpProto.UDP, "gre": IpProto.GRE,
    "esp": 50, "ah": 51, "icmpv6": IpProto.ICMPV6, "ipv6-icmp": IpProto.ICMPV6, "sctp": 132,
    "udplite": 136,
}
#: Bit numbers of the TCP flags (bit 0 = FIN) for ``tcp_flags`` tables.
TCP_FLAG_NAMES = {"fin": 0, "syn": 1, "rst": 2, "psh": 3, "ack": 4, "urg": 5, "ece": 6, "cwr": 7}
_ETHERTYPE_NAMES = {"ipv4": EtherType.IPV4, "ipv6": EtherType.IPV6, "arp": EtherType.ARP,
                    "vlan": EtherType.VLAN, "qinq": EtherType.QINQ}
_RULE_LAYOUT = data.Layout.cast(Rule)
_FLAGS_LAYOUT = data.Layout.cast(MetaFlags)
_V4_MAPPED_MASK = ((1 << 96) - 1) << 32     # the ::ffff: part of an IPv4-mapped address
_RETA_MAX = 1 << RuleAction.as_shape()["reta_offset"].width


def _int(value, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(f"{key} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise RuleError(f"{key} must be between {lo} and {hi}, not {value!r}")
    return value


def _port_range(value, key: str) -> tuple[int, int]:
    """A port, ``(lo, hi)`` or ``"lo-hi"`` as an inclusive range; ``None`` is every port."""
    if value is None:
        return 0, 0xFFFF
    if isinstance(value, str):
        lo, sep, hi = value.partition("-")
        try:
            value = (int(lo, 0), int(hi, 0)) if sep else int(value, 0)
        except ValueError:
            raise RuleError(f"{key} must be a port or 'lo-hi', not {value!r}") from None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise RuleError(f"{key} range must be [lo, hi], not {value!r}")
        lo = _int(value[0], f"{key} low end", 0, 0xFFFF)
        hi = _int(value[1], f"{key} high end", 0, 0xFFFF)
        if lo > hi:
            raise RuleError(f"{key} range {list(value)!r} is empty: low end above high end")
        return lo, hi
    port = _int(value, key, 0, 0xFFFF)
    return port, port


def _prefix(value, key: str) -> tuple[int, int]:
    """An IPv4 or IPv6 prefix as (value, mask) over the 128-bit (IPv4-mapped) address."""
    if not isinstance(value, str):
        raise RuleError(f"{key} must be a prefix string like '10.0.0.0/8', not {value!r}")
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise RuleError(f"bad {key} prefix {value!r}: {e}") from None
    if net.version == 4:
        return (ipv4_mapped(int(net.network_address)),
                _V4_MAPPED_MASK | int(net.netmask))
    return int(net.network_address), int(net.netmask)


def _prefix_version(value, key: str) -> int:
    _prefix(value, key)             # the same validation and messages
    return ipaddress.ip_network(value, strict=True).version


def _ip_proto(value) -> int:
    if isinstance(value, str):
        try:
            return int(IP_PROTO_NAMES[value.lower()])
        except KeyError:
            raise RuleError(f"unknown ip_proto name {value!r}; use a number or one of "
                            f"{', '.join(IP_PROTO_NAMES)}") from None
    return _int(value, "ip_proto", 0, 255)


def _ethertype(value) -> int:
    if isinstance(value, str):
        if value.lower() in _ETHERTYPE_NAMES:
            return int(_ETHERTYPE_NAMES[value.lower()])
        try:
            value = int(value, 0)
        except ValueError:
            raise RuleError(f"unknown ethertype {value!r}; use a number or one of "
                            f"{', '.join(_ETHERTYPE_NAMES)}") from None
    return _int(value, "ethertype", 0, 0xFFFF)


def _flag_bits(flags: Mapping, key: str, names: Mapping[str, int]) -> tuple[int, int]:
    """``{name: bool}`` as (value, mask) bits; ``names`` maps a name to its bit number."""
    if not isinstance(flags, Mapping):
        raise RuleError(f"{key} must be a table of flag names, not {flags!r}")
    value = mask = 0
    for name, wanted in flags.items():
        if name not in names:
            raise RuleError(f"unknown {key} name {name!r}; use {', '.join(names)}")
        if not isinstance(wanted, bool):
            raise RuleError(f"{key}.{name} must be true or false, not {wanted!r}")
        mask |= 1 << names[name]
        value |= int(wanted) << names[name]
    return value, mask


def tcp_flags_from_names(flags: Mapping[str, bool]) -> tuple[int, int]:
    """:attr:`FlowRule.tcp_flags` (value, mask) from a table of TCP flag names
    (:data:`TCP_FLAG_NAMES`), e.g. ``{"syn": True, "ack": False}``; :class:`RuleError` for an
    unknown name or a value that is not a bool."""
    return _flag_bits(flags, "tcp_flags", TCP_FLAG_NAMES)


_META_FLAG_BITS = {name: f.offset for name, f in _FLAGS_LAYOUT}


@dataclass
class Action:
    """What the classifier does with a matching frame.

    Attributes
    ----------
    instance : int
        Stack instance 0..15 that receives the frame.
    reta_offset : int
        First RETA entry of the instance's slice; below the RETA size.
    reta_size : int
        Slice size: a power of two up to the RETA size, or 0 for the whole RETA.
    drop : bool
        Drop the frame (counted as :attr:`~hetnic.protocol.DropReason.RULE`).
    """
    instance: int = 0
    reta_offset: int = 0
    reta_size: int = 0
    drop: bool = False

    def __post_init__(self):
        _int(self.instance, "instance", 0, 15)
        _int(self.reta_offset, "reta_offset", 0, _RETA_MAX - 1)
        _int(self.reta_size, "reta_size", 0, _RETA_MAX)
        if self.reta_size & (self.reta_size - 1):
            raise RuleError(f"reta_size must be 0 or a power of two, not {self.reta_size!r}")
        if not isinstance(self.drop, bool):
            raise RuleError(f"drop must be true or false, not {self.drop!r}")

    def encode(self, reta_entries: int) -> dict:
        """The :class:`~hetnic.protocol.RuleAction` fields for a RETA of ``reta_entries``."""
        if (isinstance(reta_entries, bool) or not isinstance(reta_entries, int)
                or not 1 <= reta_entries <= _RETA_MAX or reta_entries & (reta_entries - 1)):
            raise RuleError(f"reta_entries must be a power of two between 1 and {_RETA_MAX}, "
                            f"not {reta_entries!r}")
        if self.reta_offset >= reta_entries:
            raise RuleError(f"reta_offset {self.reta_offset} is outside the "
                            f"{reta_entries}-entry RETA")
        if self.reta_size > reta_entries:
            raise RuleError(f"reta_size {self.reta_size} is larger than the "
                            f"{reta_entries}-entry RETA")
        size = self.reta_size or reta_entries
        return {"drop": int(self.drop), "instance": self.instance,
                "reta_offset": self.reta_offset, "reta_size_log2": size.bit_length() - 1}


@dataclass
class FlowRule:
    """One classifier rule: optional match fields (``None`` = any) and an action.

    Attributes
    ----------
    ethertype : int or None
        EtherType after the VLAN tags.
    vlan : int or None
        VID of the outer VLAN tag; also requires a tag (``flags.vlan``).
    ip_proto : int or str or None
        L4 protocol number or a name from :data:`IP_PROTO_NAMES`.
    src, dst : str or None
        IPv4 or IPv6 prefix (``"10.0.0.0/8"``, ``"2001:db8::/32"``) or a bare address.
    src_port, dst_port : int or (int, int) or None
        A port or an inclusive ``(lo, hi)`` range.
    dscp : int or None
        DSCP 0..63.
    tcp_flags : (int, int) or None
        ``(value, mask)``: the masked TCP flag bits (bit 0 = FIN .. bit 7 = CWR) must equal
        ``value``.
    vni : int or None
        VXLAN / VXLAN-GPE network identifier 0..2**24-1 of UDP to port 4789 or 4790; also
        requires ``flags.vni`` (a VNI found). Needs a rule that can match such a frame:
        ``ip_proto`` UDP or none, a ``dst_port`` range holding 4789 or 4790 (or none), an
        ``ethertype`` IPv4 or IPv6 (or none), ``tcp_flags`` wanting 0 (or none), and neither
        ``flags.tcp``, ``flags.fragment``, ``flags.direct`` nor a false
        ``flags.udp``/``flags.tunnel``/``flags.vni``.
    flags : dict of str to bool
        Required :class:`~hetnic.protocol.MetaFlags` values by name.
    action : Action
    name : str
        Optional label, used by :class:`RuleSet` and in error messages.

    Raises
    ------
    RuleError
        On construction, for any out-of-range or malformed field.
    """
    ethertype: int | str | None = None
    vlan: int | None = None
    ip_proto: int | str | None = None
    src: str | None = None
    dst: str | None = None
    src_port: int | tuple[int, int] | None = None
    dst_port: int | tuple[int, int] | None = None
    dscp: int | None = None
    tcp_flags: tuple[int, int] | None = None
    vni: int | None = None
    flags: dict[str, bool] = field(default_factory=dict)
    action: Action = field(default_factory=Action)
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.action, Action):
            raise RuleError(f"action must be an Action, not {self.action!r}")
        self._match()           # validate now, so a bad rule fails where it is written

    def _match(self) -> dict:
        """The match part of the :class:`~hetnic.protocol.Rule` layout, as a field dict."""
        m = {}
        flags, flags_mask = _flag_bits(self.flags, "flags", _META_FLAG_BITS)
        if self.vlan is not None:
            m["vlan_id"], m["vlan_mask"] = _int(self.vlan, "vlan", 0, 0xFFF), 0xFFF
            if self.flags.get("vlan", True) is False:
                raise RuleError("vlan is given but flags.vlan is false")
            flags |= 1 << _META_FLAG_BITS["vlan"]
            flags_mask |= 1 << _META_FLAG_BITS["vlan"]
        # An IPv4 prefix is matched on the IPv4-mapped address *and* the ipv4 flag, so an
        # IPv6 frame that carries a ::ffff:a.b.c.d address does not match it.
        for key in ("src", "dst"):
            value = getattr(self, key)
            if value is not None and _prefix_version(value, key) == 4:
                if self.flags.get("ipv4", True) is False:
                    raise RuleError(f"{key} is an IPv4 prefix but flags.ipv4 is false")
                flags |= 1 << _META_FLAG_BITS["ipv4"]
                flags_mask |= 1 << _META_FLAG_BITS["ipv4"]
        if self.vni is not None:
            m["vni"], m["vni_mask"] = self._vni(), VNI_MAX
            flags |= 1 << _META_FLAG_BITS["vni"]
            flags_mask |= 1 << _META_FLAG_BITS["vni"]
        m["flags"], m["flags_mask"] = flags, flags_mask
        if self.ethertype is not None:
            m["ethertype"], m["ethertype_mask"] = _ethertype(self.ethertype), 0xFFFF
        if self.ip_proto is not None:
            m["ip_proto"], m["ip_proto_mask"] = _ip_proto(self.ip_proto), 0xFF
        if self.dscp is not None:
            m["dscp"], m["dscp_mask"] = _int(self.dscp, "dscp", 0, 63), 0x3F
        if self.tcp_flags is not None:
            if not isinstance(self.tcp_flags, (tuple, list)) or len(self.tcp_flags) != 2:
                raise RuleError(f"tcp_flags must be (value, mask), not {self.tcp_flags!r}")
            value = _int(self.tcp_flags[0], "tcp_flags value", 0, 0xFF)
            mask = _int(self.tcp_flags[1], "tcp_flags mask", 0, 0xFF)
            if value & ~mask:
                raise RuleError(f"tcp_flags value {value:#04x} sets bits outside "
                                f"mask {mask:#04x}")
            m["tcp_flags"], m["tcp_flags_mask"] = value, mask
        if self.src is not None:
            m["src_addr"], m["src_mask"] = _prefix(self.src, "src")
        if self.dst is not None:
            m["dst_addr"], m["dst_mask"] = _prefix(self.dst, "dst")
        m["src_port_lo"], m["src_port_hi"] = _port_range(self.src_port, "src_port")
        m["dst_port_lo"], m["dst_port_hi"] = _port_range(self.dst_port, "dst_port")
        return m

    def _vni(self) -> int:
        """The VNI, checked, and checked against the fields that could rule its frames out."""
        vni = _int(self.vni, "vni", 0, VNI_MAX)
        ports = f"{VXLAN_UDP_PORT} (VXLAN) or {VXLAN_GPE_UDP_PORT} (VXLAN-GPE)"
        for name, required in (("vni", True), ("udp", True), ("tunnel", True), ("tcp", False),
                               ("fragment", False), ("direct", False)):
            if self.flags.get(name, required) is not required:
                raise RuleError(f"vni matches UDP to port {ports} with a VXLAN header, but "
                                f"flags.{name} is {str(not required).lower()}")
        if self.ip_proto is not None and _ip_proto(self.ip_proto) != IpProto.UDP:
            raise RuleError(f"vni matches UDP to port {ports}, but ip_proto is "
                            f"{self.ip_proto!r}, not udp")
        if self.ethertype is not None and \
                _ethertype(self.ethertype) not in (EtherType.IPV4, EtherType.IPV6):
            raise RuleError(f"vni matches UDP to port {ports}, but ethertype is "
                            f"{self.ethertype!r}, not IPv4 or IPv6")
        if isinstance(self.tcp_flags, (tuple, list)) and len(self.tcp_flags) == 2 and \
                _int(self.tcp_flags[0], "tcp_flags value", 0, 0xFF):
            raise RuleError(f"vni matches UDP to port {ports} (TCP flags 0), but tcp_flags "
                            f"wants {self.tcp_flags[0]!r}")
        lo, hi = _port_range(self.dst_port, "dst_port")
        if not (lo <= VXLAN_UDP_PORT <= hi or lo <= VXLAN_GPE_UDP_PORT <= hi):
            raise RuleError(f"vni matches UDP to port {ports}, but dst_port is "
                            f"{self.dst_port!r}")
        return vni

    def encode(self, reta_entries: int) -> int:
        """The packed :class:`~hetnic.protocol.Rule` value (``enable`` set), bit 0 first."""
        return pack(Rule, enable=1, action=self.action.encode(reta_entries), **self._match())


@dataclass(frozen=True)
class RuleFields:
    """A packed :class:`~hetnic.protocol.Rule` value unpacked into plain integers.

    The attributes are the layout's fields by name (``enable``, ``flags``, ``flags_mask``,
    ``ethertype``, ..., ``dst_mask``) with ``action`` as a dict of
    :class:`~hetnic.protocol.RuleAction` fields.
    """
    enable: int
    action: dict
    flags: int
    flags_mask: int
    ethertype: int
    ethertype_mask: int
    vlan_id: int
    vlan_mask: int
    ip_proto: int
    ip_proto_mask: int
    dscp: int
    dscp_mask: int
    tcp_flags: int
    tcp_flags_mask: int
    src_port_lo: int
    src_port_hi: int
    dst_port_lo: int
    dst_port_hi: int
    src_addr: int
    src_mask: int
    dst_addr: int
    dst_mask: int
    vni: int
    vni_mask: int

    @classmethod
    def decode(cls, value: int) -> "RuleFields":
        """Unpack ``value`` (an integer of ``Rule`` width, bit 0 = ``enable``)."""
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value < 1 << _RULE_LAYOUT.size:
            raise ValueError(f"a packed rule must be an integer of {_RULE_LAYOUT.size} bits, "
                             f"not {value!r}")
        out = unpack(Rule, value)
        out["action"] = unpack(RuleAction, out["action"])
        return cls(**out)

    def encode(self) -> int:
        """Pack the fields again (inverse of :meth:`decode`)."""
        return pack(Rule, **{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class RuleSet:
    """An ordered list of rules (index 0 has the highest priority) and a default action.

    Attributes
    ----------
    rules : list of FlowRule
    default : Action
        For frames no rule matches; the classifier reports them as rule ``len(rules)`` (the
        rule count of the table it was loaded into).
    """
    rules: list[FlowRule] = field(default_factory=list)
    default: Action = field(default_factory=Action)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> list[str]:
        """Each rule's name, or ``"rule<index>"`` for an unnamed rule."""
        return [rule.name or f"rule{index}" for index, rule in enumerate(self.rules)]

    def encode(self, reta_entries: int, n_rules: int | None = None) -> list[int]:
        """Packed rule values, padded with disabled rules (0) to ``n_rules`` if given.

        Raises
        ------
        RuleError
            If there are more than ``n_rules`` rules, or an action does not fit the RETA.
        """
        if n_rules is not None and len(self.rules) > n_rules:
            raise RuleError(f"{len(self.rules)} rules do not fit a table of {n_rules}")
        packed = []
        for index, rule in enumerate(self.rules):
            try:
                packed.append(rule.encode(reta_entries))
            except ValueError as e:
                raise RuleError(f"rule {index} ({self.names[index]!r}): {e}") from None
        return packed + [0] * ((n_rules or 0) - len(packed))
