"""Software model of the whole RX pipeline: parser, RSS hash, classifier, flow table,
indirection table.

It chains the block models, each checked on its own (the parser against scapy, the
Toeplitz hash against the published Microsoft vectors), and is the oracle the Verilog is
compared with frame by frame in the RTL tests, ``hetnic replay --check`` and ``hetnic demo``.
"""

from __future__ import annotations

from amaranth.lib import data

from ...config import RxConfig
from ...rules import RuleFields
from .toeplitz import meta_hash
from ...protocol import FLOW_HIT_RULE, RX_MAX_FRAME_LIMIT, PacketMeta
from ...regs import RegisterMap
from .classifier import ClassifyResult, classify, drop_reason
from .flow_table import FlowTableModel, meta_flow_key
from .parser import parse_frame

__all__ = ["RxModel", "COMPARED_FIELDS", "mismatches"]

#: Every metadata field the model predicts (all of PacketMeta).
COMPARED_FIELDS = tuple(name for name, _ in data.Layout.cast(PacketMeta))


class RxModel:
    """The RX pipeline of one build, programmed with one configuration.

    Parameters
    ----------
    regmap : RegisterMap
        The build (RETA size, rule count).
    config : RxConfig
        The active configuration.
    generation : int
        Configuration generation the records carry.
    flows : FlowTableModel, optional
        The flow table (its committed entries are looked up; empty if not given).
    """
    def __init__(self, regmap: RegisterMap, config: RxConfig, generation: int = 1,
                 flows: FlowTableModel | None = None):
        config.validate(regmap)
        self.regmap, self.config, self.generation = regmap, config, generation
        self.flows = flows if flows is not None else FlowTableModel()
        self.reta_size = regmap.params["reta_size"]
        self.table = config.table(regmap)
        # The gateware's table always has n_rules entries; unused ones are disabled (0), and
        # the default action reports the table size as its rule index.
        self.rules = [r.encode(self.reta_size) if r is not None else 0 for r in config.rules]
        self.rules += [0] * (regmap.params["n_rules"] - len(self.rules))
        self.rules = [RuleFields.decode(r) for r in self.rules]   # once, not per frame

    def process(self, frame: bytes, mac_error: bool = False) -> dict[str, int]:
        """The metadata record (PacketMeta fields as integers) of one frame."""
        c = self.config
        # The gateware's effective MAX_FRAME is capped by its data FIFO.
        parsed = parse_frame(frame, mac_error=mac_error,
                             max_frame=min(c.max_frame, RX_MAX_FRAME_LIMIT),
                             direct_ethertype=c.direct_ethertype)
        hash_value, hash_type = meta_hash(parsed, c.key, c.hash_enable, c.symmetric)
        cls = classify(parsed, self.rules, c.default, reta_entries=self.reta_size,
                       pass_errors=c.pass_errors)
        hit = self.flows.lookup(meta_flow_key(parsed))
        if hit is not None:         # the flow's action replaces the rules'
            action = hit[1]
            cls = ClassifyResult(rule=FLOW_HIT_RULE, instance=action["instance"],
                                 reta_offset=action["reta_offset"],
                                 reta_size_log2=action["reta_size_log2"],
                                 drop=drop_reason(int(parsed.error), c.pass_errors,
                                                  action["drop"]))
        log2 = self.reta_size.bit_length() - 1
        size_log2 = min(cls.reta_size_log2, log2)
        index = (cls.reta_offset + (hash_value & ((1 << size_log2) - 1))) % self.reta_size
        return {
            "length": parsed.length, "error": int(parsed.error), "flags": parsed.flags,
            "ethertype": parsed.ethertype, "vlan_id": parsed.vlan_id, "dscp": parsed.dscp,
            "ip_proto": parsed.ip_proto, "tcp_flags": parsed.tcp_flags,
            "src_addr": parsed.src_addr, "dst_addr": parsed.dst_addr,
            "src_port": parsed.src_port, "dst_port": parsed.dst_port, "vni": parsed.vni,
            "hash": hash_value, "hash_type": int(hash_type),
            "rule": cls.rule, "instance": cls.instance, "reta_offset": cls.reta_offset,
            "reta_size_log2": cls.reta_size_log2, "drop": int(cls.drop),
            "queue": self.table[index], "generation": self.generation,
            "bucket": index,
        }


def mismatches(expected: dict, actual: dict) -> dict[str, tuple[int, int]]:
    """Fields where a gateware record differs from the model: name -> (model, gateware)."""
    return {name: (expected[name], actual[name]) for name in COMPARED_FIELDS
            if expected[name] != actual[name]}
