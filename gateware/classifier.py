"""The flow classifier: a priority table of masked-match rules applied to frame metadata."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import DropReason, PacketMeta, Rule, RuleAction

__all__ = ["FlowClassifier", "rule_terms", "drop_reason"]


def rule_terms(rule, meta) -> Value:
    """One comparator set: one bit per condition of the ``Rule`` view ``rule`` on the
    ``PacketMeta`` view ``meta`` (enabled, each masked field equal under its mask, each port
    bound); the rule matches when every bit is 1."""
    masked = [
        (meta.flags, rule.flags, rule.flags_mask),
        (meta.ethertype, rule.ethertype, rule.ethertype_mask),
        (meta.vlan_id, rule.vlan_id, rule.vlan_mask),
        (meta.ip_proto, rule.ip_proto, rule.ip_proto_mask),
        (meta.dscp, rule.dscp, rule.dscp_mask),
        (meta.tcp_flags, rule.tcp_flags, rule.tcp_flags_mask),
        (meta.src_addr, rule.src_addr, rule.src_mask),
        (meta.dst_addr, rule.dst_addr, rule.dst_mask),
        (meta.vni, rule.vni, rule.vni_mask),
    ]
    terms = [rule.enable]
    for field, value, mask in masked:
        field, value, mask = (Value.cast(x) for x in (field, value, mask))
        terms.append(((field ^ value) & mask) == 0)
    terms += [
        meta.src_port >= rule.src_port_lo, meta.src_port <= rule.src_port_hi,
        meta.dst_port >= rule.dst_port_lo, meta.dst_port <= rule.dst_port_hi,
    ]
    return Cat(*terms)


def drop_reason(error, pass_errors, action_drop) -> Value:
    """A classified frame's :class:`DropReason`: its parse error ``error`` (``ParseError`` and
    ``DropReason`` share values) unless ``pass_errors``; else ``RULE`` if ``action_drop``;
    else ``NONE``."""
    error = Value.cast(error)
    return Mux((error != 0) & ~pass_errors, error,
               Mux(action_drop, DropReason.RULE, DropReason.NONE))


def or_tree(values: list[Value]) -> Value:
    """The OR of ``values`` as a balanced tree (log depth for one-hot selection)."""
    if len(values) == 1:
        return values[0]
    half = len(values) // 2
    return or_tree(values[:half]) | or_tree(values[half:])


class FlowClassifier(wiring.Component):
    """Match each frame's metadata against a table of rules; the first match names the action.

    Every rule has its own comparator set, so all rules are tried in parallel; a priority
    encoder picks the lowest-index match. A frame no rule matches gets ``default_action`` and
    ``rule = n_rules``. The record passes through with ``rule``, ``instance``,
    ``reta_offset``, ``reta_size_log2`` and ``drop`` filled in; every other field is unchanged.

    ``drop`` is the frame's parse error (``ParseError`` and ``DropReason`` share values) when
    ``error != 0`` and ``pass_errors`` is low; else ``RULE`` if the action's drop bit is set;
    else ``NONE``. Errored frames are still classified (``rule`` and the action are reported).

    Timing: three pipeline stages (``s1``: every rule's conditions, each a bit; ``s2``: the
    first matching rule, one-hot; ``o``: the action it selects): a record taken from ``i``
    in cycle *c* is offered on ``o`` in cycle *c + 3* when ``o`` does not stall, a fixed
    latency of 3 cycles. One record per cycle while ``o.ready`` is high. Each stage
    advances when it is empty or the stage after it moves, so a stalled ``o`` holds its
    payload and ``i.ready`` falls only when all three stages are full. ``o.valid`` is a
    register; ``i.ready`` depends combinationally on ``o.ready``.

    Parameters
    ----------
    n_rules : int
        Number of rules in the table, 1 to 64.

    Members
    -------
    rules : In(data.ArrayLayout(Rule, n_rules))
        The active rule table, index 0 first. Must stay stable while records are in flight
        (the register block swaps it at a frame boundary).
    default_action : In(RuleAction)
        Action for frames no rule matches; stable while records are in flight.
    pass_errors : In(1)
        Do not set ``drop`` for parse errors; stable while records are in flight.
    i : In(stream.Signature(PacketMeta))
        Metadata from the parser.
    o : Out(stream.Signature(PacketMeta))
        The same metadata with the classification filled in.
    """

    def __init__(self, n_rules: int = 16):
        if isinstance(n_rules, bool) or not isinstance(n_rules, int) or not 1 <= n_rules <= 64:
            raise ValueError(f"n_rules must be an integer from 1 to 64, not {n_rules!r}")
        self.n_rules = n_rules
        super().__init__({
            "rules": In(data.ArrayLayout(Rule, n_rules)),
            "default_action": In(RuleAction),
            "pass_errors": In(1),
            "i": In(stream.Signature(PacketMeta)),
            "o": Out(stream.Signature(PacketMeta)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_rules

        # A stage loads when it is empty or its content moves on in the same cycle.
        o_advance = ~self.o.valid | self.o.ready
        s1_valid = Signal()
        s1_meta = Signal(PacketMeta)
        s2_valid = Signal()
        s2_meta = Signal(PacketMeta)
        s2_advance = ~s2_valid | o_advance
        s1_advance = ~s1_valid | s2_advance
        m.d.comb += self.i.ready.eq(s1_advance)

        # Stage 1: one comparator set per rule, each condition into its own flop (the
        # compares and the AND of a rule's conditions in one cycle were too long a path at
        # 125 MHz on ECP5).
        terms = [rule_terms(self.rules[k], self.i.payload) for k in range(n)]
        s1_terms = [Signal(len(t), name=f"s1_terms{k}") for k, t in enumerate(terms)]
        with m.If(s1_advance):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_meta.eq(self.i.payload),
            ]
            m.d.sync += [reg.eq(t) for reg, t in zip(s1_terms, terms)]
        s1_match = Signal(n)            # bit k: rule k matches s1_meta
        m.d.comb += s1_match.eq(Cat(*(t.all() for t in s1_terms)))

        # Stage 2: each rule's match, the lowest one kept (two's complement trick).
        s2_first = Signal(n)            # one-hot: the first matching rule, or 0
        s2_any = Signal()
        with m.If(s2_advance):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_meta.eq(s1_meta),
                s2_first.eq(s1_match & (~s1_match + 1)[:n]), s2_any.eq(s1_match.any()),
            ]

        # Stage 3: select the action by the one-hot.
        first = s2_first
        index = or_tree([Const(k, 8) & first[k].replicate(8) for k in range(n)])
        action_width = RuleAction.as_shape().size
        hit_action = or_tree([
            Value.cast(self.rules[k].action) & first[k].replicate(action_width)
            for k in range(n)])
        action = Signal(RuleAction)
        rule_index = Signal(8)
        with m.If(s2_any):
            m.d.comb += [action.eq(hit_action), rule_index.eq(index)]
        with m.Else():
            m.d.comb += [action.eq(self.default_action), rule_index.eq(n)]

        drop = Signal(DropReason)
        # The same choice as drop_reason() (which the flow table uses), written out as it was
        # before the table: the board builds' RTL, and so their routed placement, stay as
        # they were (docs/timing.md: a rename alone moves the Versa's Fmax by a few MHz).
        with m.If((s2_meta.error != 0) & ~self.pass_errors):
            m.d.comb += drop.eq(s2_meta.error)
        with m.Elif(action.drop):
            m.d.comb += drop.eq(DropReason.RULE)
        with m.Else():
            m.d.comb += drop.eq(DropReason.NONE)

        with m.If(o_advance):
            m.d.sync += [
                self.o.valid.eq(s2_valid),
                self.o.payload.eq(s2_meta),
                self.o.payload.rule.eq(rule_index),
                self.o.payload.instance.eq(action.instance),
                self.o.payload.reta_offset.eq(action.reta_offset),
                self.o.payload.reta_size_log2.eq(action.reta_size_log2),
                self.o.payload.drop.eq(drop),
            ]
        return m
