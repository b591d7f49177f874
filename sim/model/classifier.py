"""Software model of the flow classifier (:class:`hetnic.gateware.classifier.FlowClassifier`).

The model works from the *packed* :class:`~hetnic.protocol.Rule` values that the host writes
to the rule table, so it judges exactly what the gateware sees; it is the oracle of the
classifier's simulation tests.
"""

from dataclasses import dataclass
from typing import Mapping, Sequence

from ...rules import Action, RuleFields
from ...protocol import DropReason

__all__ = ["ClassifyResult", "classify", "match_rule", "drop_reason"]

# Masked fields: (PacketMeta attribute, Rule value field, Rule mask field).
_MASKED = (
    ("flags", "flags", "flags_mask"),
    ("ethertype", "ethertype", "ethertype_mask"),
    ("vlan_id", "vlan_id", "vlan_mask"),
    ("ip_proto", "ip_proto", "ip_proto_mask"),
    ("dscp", "dscp", "dscp_mask"),
    ("tcp_flags", "tcp_flags", "tcp_flags_mask"),
    ("src_addr", "src_addr", "src_mask"),
    ("dst_addr", "dst_addr", "dst_mask"),
    ("vni", "vni", "vni_mask"),
)
_ACTION_FIELDS = ("drop", "instance", "reta_offset", "reta_size_log2")


@dataclass(frozen=True)
class ClassifyResult:
    """What the classifier adds to a frame's metadata.

    Attributes
    ----------
    rule : int
        Index of the first matching rule, or the rule count for the default action.
    instance, reta_offset, reta_size_log2 : int
        From the chosen action.
    drop : DropReason
        The parse error if the frame has one (and errors are not passed), else ``RULE`` if the
        action drops, else ``NONE``.
    """
    rule: int
    instance: int
    reta_offset: int
    reta_size_log2: int
    drop: DropReason


def match_rule(parsed, rule: RuleFields) -> bool:
    """Whether the metadata ``parsed`` matches the unpacked rule ``rule``.

    A rule matches when it is enabled, every masked field agrees under its mask and both ports
    lie in their inclusive ranges.
    """
    if not rule.enable:
        return False
    for attr, value, mask in _MASKED:
        m = getattr(rule, mask)
        if (int(getattr(parsed, attr)) ^ getattr(rule, value)) & m:
            return False
    return (rule.src_port_lo <= parsed.src_port <= rule.src_port_hi and
            rule.dst_port_lo <= parsed.dst_port <= rule.dst_port_hi)


def _action_fields(action: Mapping | Action, reta_entries: int) -> dict:
    if isinstance(action, Action):
        return action.encode(reta_entries)
    missing = [name for name in _ACTION_FIELDS if name not in action]
    if missing:
        raise ValueError(f"default action {action!r} lacks {', '.join(missing)}")
    return {name: int(action[name]) for name in _ACTION_FIELDS}


def drop_reason(error: int, pass_errors: bool, action_drop: int) -> DropReason:
    """A classified frame's drop reason: its parse error unless errors are passed, else
    ``RULE`` if its action drops, else ``NONE``."""
    if error and not pass_errors:
        return DropReason(error)     # ParseError and DropReason share their numeric values
    return DropReason.RULE if action_drop else DropReason.NONE


def classify(parsed, rules: Sequence[int | RuleFields], default: Mapping | Action, *,
             reta_entries: int, pass_errors: bool = False) -> ClassifyResult:
    """Classify one frame the way the gateware does.

    Parameters
    ----------
    parsed : object
        Frame metadata with the :class:`~hetnic.protocol.PacketMeta` attributes ``error``,
        ``flags`` (an int, ``MetaFlags`` bit order), ``ethertype``, ``vlan_id``, ``dscp``,
        ``ip_proto``, ``tcp_flags``, ``src_addr``, ``dst_addr``, ``src_port``, ``dst_port``,
        ``vni``.
    rules : sequence of int or RuleFields
        The rule table as packed ``Rule`` values (0 is a disabled rule); index 0 has the
        highest priority. Decode once with :meth:`RuleFields.decode` to classify many frames.
    default : dict or Action
        The default action as ``RuleAction`` fields, or an :class:`Action`.
    reta_entries : int
        RETA size, used to encode an :class:`Action` default.
    pass_errors : bool
        If set, frames with a parse error are not dropped for it.

    Returns
    -------
    ClassifyResult
        Errored frames are classified too: ``rule`` and the action fields are reported for
        them as for any frame.
    """
    index, action = len(rules), None
    for i, rule in enumerate(rules):
        if not isinstance(rule, RuleFields):
            rule = RuleFields.decode(rule)
        if match_rule(parsed, rule):
            index, action = i, rule.action
            break
    if action is None:
        action = _action_fields(default, reta_entries)
    drop = drop_reason(int(parsed.error), pass_errors, action["drop"])
    return ClassifyResult(rule=index, instance=action["instance"],
                          reta_offset=action["reta_offset"],
                          reta_size_log2=action["reta_size_log2"], drop=drop)
