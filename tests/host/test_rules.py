"""Tests of hetnic.rules and hetnic.rule_file: rule encoding, decoding and rule files."""

import ipaddress
import json

import pytest
from amaranth.lib import data

from hetnic.rule_file import load_rules
from hetnic.rules import Action, FlowRule, RuleError, RuleFields, RuleSet
from hetnic.protocol import MetaFlags, Rule, ipv4_mapped

V4_TOP = ((1 << 96) - 1) << 32      # mask bits of the ::ffff: part of an IPv4-mapped address
FULL = (1 << 128) - 1


def decode(rule: FlowRule, reta_entries: int = 512) -> RuleFields:
    return RuleFields.decode(rule.encode(reta_entries))


# --- Action -----------------------------------------------------------------------------------

def test_action_encode_whole_reta_and_slice():
    assert Action().encode(512) == {"drop": 0, "instance": 0, "reta_offset": 0,
                                    "reta_size_log2": 9}
    assert Action(instance=15, reta_offset=511, reta_size=4, drop=True).encode(512) == {
        "drop": 1, "instance": 15, "reta_offset": 511, "reta_size_log2": 2}
    assert Action(reta_size=1).encode(2048)["reta_size_log2"] == 0
    assert Action(reta_size=2048).encode(2048)["reta_size_log2"] == 11


@pytest.mark.parametrize("kwargs, text", [
    ({"instance": 16}, "instance must be between 0 and 15, not 16"),
    ({"instance": -1}, "instance must be between 0 and 15, not -1"),
    ({"reta_size": 3}, "reta_size must be 0 or a power of two, not 3"),
    ({"drop": 1}, "drop must be true or false, not 1"),
    ({"instance": "1"}, "instance must be an integer, not '1'"),
])
def test_action_invalid(kwargs, text):
    with pytest.raises(ValueError, match=text):
        Action(**kwargs)


@pytest.mark.parametrize("action, entries, text", [
    (Action(reta_offset=512), 512, "reta_offset 512 is outside the 512-entry RETA"),
    (Action(reta_size=1024), 512, "reta_size 1024 is larger than the 512-entry RETA"),
    (Action(), 500, "reta_entries must be a power of two between 1 and 2048, not 500"),
    (Action(), 4096, "not 4096"),
])
def test_action_encode_checks_reta(action, entries, text):
    with pytest.raises(RuleError, match=text):
        action.encode(entries)


# --- FlowRule encoding ------------------------------------------------------------------------

def test_empty_rule_matches_everything():
    f = decode(FlowRule())
    assert f.enable == 1
    assert (f.flags_mask, f.ethertype_mask, f.vlan_mask, f.ip_proto_mask, f.dscp_mask,
            f.tcp_flags_mask, f.src_mask, f.dst_mask, f.vni_mask) == (0,) * 9
    assert (f.src_port_lo, f.src_port_hi, f.dst_port_lo, f.dst_port_hi) == (0, 65535, 0, 65535)


def test_encode_is_the_rule_layout():
    rule = FlowRule(ethertype=0x0800, ip_proto="tcp", dst_port=(1024, 2047), dscp=46,
                    action=Action(instance=2, reta_offset=8, reta_size=8))
    value = rule.encode(512)
    view = data.Layout.cast(Rule).from_bits(value)
    assert value & 1 == 1                      # enable is bit 0 of word 0
    assert view.ethertype == 0x0800 and view.ethertype_mask == 0xFFFF
    assert view.ip_proto == 6 and view.ip_proto_mask == 0xFF
    assert (view.dst_port_lo, view.dst_port_hi) == (1024, 2047)
    assert view.dscp == 46 and view.dscp_mask == 0x3F
    assert (view.action.instance, view.action.reta_offset, view.action.reta_size_log2,
            view.action.drop) == (2, 8, 3, 0)


def test_round_trip_every_field():
    rule = FlowRule(ethertype="ipv6", vlan=4095, ip_proto=58, src="2001:db8::/32",
                    dst="fe80::1", src_port=7, dst_port=(0, 10), dscp=63,
                    tcp_flags=(0x02, 0x12), flags={"ip_options": True, "tunnel": False},
                    action=Action(instance=9, drop=True))
    f = decode(rule)
    assert f.ethertype == 0x86DD and f.vlan_id == 4095 and f.vlan_mask == 0xFFF
    assert f.ip_proto == 58 and f.tcp_flags == 0x02 and f.tcp_flags_mask == 0x12
    assert (f.src_port_lo, f.src_port_hi) == (7, 7)
    assert f.action == {"drop": 1, "instance": 9, "reta_offset": 0, "reta_size_log2": 9}
    assert f.dst_addr == int(ipaddress.IPv6Address("fe80::1")) and f.dst_mask == FULL
    assert RuleFields.decode(f.encode()) == f
    assert f.encode() == rule.encode(512)


def test_ipv4_prefix_is_ipv4_mapped():
    f = decode(FlowRule(src="10.0.0.0/8", dst="192.168.1.7"))
    assert f.src_addr == ipv4_mapped(0x0A000000) == 0xFFFF_0A00_0000
    assert f.src_mask == V4_TOP | 0xFF000000
    assert f.dst_addr == ipv4_mapped(0xC0A80107) and f.dst_mask == FULL
    any_v4 = decode(FlowRule(src="0.0.0.0/0"))
    assert any_v4.src_addr == 0xFFFF_0000_0000 and any_v4.src_mask == V4_TOP


def test_ipv6_prefix():
    f = decode(FlowRule(dst="2001:db8::/32"))
    assert f.dst_addr == 0x20010DB8 << 96 and f.dst_mask == ((1 << 32) - 1) << 96
    assert decode(FlowRule(dst="::/0")).dst_mask == 0


def test_flags_and_vlan():
    f = decode(FlowRule(flags={"fragment": True, "vlan": False}))
    assert f.flags == 1 << 4 and f.flags_mask == (1 << 4) | 1
    f = decode(FlowRule(vlan=100, flags={"ipv6": True}))
    assert f.vlan_id == 100 and f.flags == 0b1001 and f.flags_mask == 0b1001


@pytest.mark.parametrize("kwargs, text", [
    ({"src": "10.0.0.1/8"}, "bad src prefix '10.0.0.1/8'"),
    ({"dst": "10.0.0.0/33"}, "bad dst prefix '10.0.0.0/33'"),
    ({"src": "2001:db8::/129"}, "bad src prefix"),
    ({"src": 167772160}, "src must be a prefix string"),
    ({"dst_port": 65536}, "dst_port must be between 0 and 65535, not 65536"),
    ({"src_port": (10, 5)}, r"src_port range \[10, 5\] is empty"),
    ({"src_port": (-1, 5)}, "src_port low end must be between 0 and 65535, not -1"),
    ({"src_port": (1, 2, 3)}, "src_port range must be"),
    ({"dst_port": "http"}, "dst_port must be a port or 'lo-hi'"),
    ({"ip_proto": "tpc"}, "unknown ip_proto name 'tpc'"),
    ({"ip_proto": 256}, "ip_proto must be between 0 and 255, not 256"),
    ({"ethertype": "ipx"}, "unknown ethertype 'ipx'"),
    ({"vlan": 4096}, "vlan must be between 0 and 4095, not 4096"),
    ({"vlan": 5, "flags": {"vlan": False}}, "vlan is given but flags.vlan is false"),
    ({"dscp": 64}, "dscp must be between 0 and 63, not 64"),
    ({"tcp_flags": (0x12, 0x02)}, "tcp_flags value 0x12 sets bits outside mask 0x02"),
    ({"tcp_flags": 2}, "tcp_flags must be"),
    ({"flags": {"ipv5": True}}, "unknown flags name 'ipv5'"),
    ({"flags": {"ipv4": 1}}, "flags.ipv4 must be true or false, not 1"),
    ({"action": {"instance": 1}}, "action must be an Action"),
    ({"vni": 1 << 24}, "vni must be between 0 and 16777215, not 16777216"),
    ({"vni": -1}, "vni must be between 0 and 16777215, not -1"),
    ({"vni": "10"}, "vni must be an integer, not '10'"),
    ({"vni": 10, "ip_proto": "tcp"}, r"vni matches UDP to port 4789 \(VXLAN\) or 4790 "
                                     r"\(VXLAN-GPE\), but ip_proto is 'tcp', not udp"),
    ({"vni": 10, "ip_proto": 47}, "but ip_proto is 47, not udp"),
    ({"vni": 10, "dst_port": 53}, "but dst_port is 53"),
    ({"vni": 10, "dst_port": (4791, 5000)}, r"but dst_port is \(4791, 5000\)"),
    ({"vni": 10, "flags": {"udp": False}}, "with a VXLAN header, but flags.udp is false"),
    ({"vni": 10, "flags": {"tcp": True}}, "but flags.tcp is true"),
    ({"vni": 10, "flags": {"fragment": True}}, "but flags.fragment is true"),
    ({"vni": 10, "flags": {"vni": False}}, "but flags.vni is false"),
    ({"vni": 10, "flags": {"tunnel": False}}, "but flags.tunnel is false"),
    ({"vni": 10, "flags": {"direct": True}}, "but flags.direct is true"),
    ({"vni": 10, "ethertype": "arp"}, "but ethertype is 'arp', not IPv4 or IPv6"),
    ({"vni": 10, "ethertype": 0x88B5}, "but ethertype is 34997, not IPv4 or IPv6"),
    ({"vni": 10, "tcp_flags": (0x02, 0x02)}, r"\(TCP flags 0\), but tcp_flags wants 2"),
])
def test_flow_rule_invalid(kwargs, text):
    with pytest.raises(RuleError, match=text):
        FlowRule(**kwargs)


def test_vni():
    # vni: the 24-bit field under a full mask, and the vni flag; the rest of the rule as
    # given. Ports holding 4789 or 4790, ip_proto udp and flags.udp are allowed.
    vni_bit = 1 << data.Layout.cast(MetaFlags)["vni"].offset
    f = decode(FlowRule(vni=0xABCDEF))
    assert (f.vni, f.vni_mask, f.flags, f.flags_mask) == (0xABCDEF, 0xFFFFFF, vni_bit, vni_bit)
    assert (f.ip_proto_mask, f.dst_port_lo, f.dst_port_hi) == (0, 0, 65535)
    f = decode(FlowRule(vni=0, ip_proto="udp", dst_port=4790, src="198.18.0.1",
                        flags={"udp": True, "tunnel": True}))
    assert (f.vni, f.vni_mask, f.ip_proto, f.dst_port_lo) == (0, 0xFFFFFF, 17, 4790)
    assert f.flags & vni_bit and f.flags_mask & vni_bit
    assert decode(FlowRule(vni=1, dst_port=(4000, 4789))).vni == 1
    assert decode(FlowRule(dst_port=4789)).vni_mask == 0
    # what a VXLAN frame can have: an IP EtherType, TCP flags 0 under any mask
    assert decode(FlowRule(vni=2, ethertype="ipv6", tcp_flags=(0, 0xFF))).vni == 2
    assert decode(FlowRule(vni=3, ethertype=0x0800, flags={"direct": False})).vni == 3


def test_port_forms():
    assert (decode(FlowRule(dst_port="1024-2047")).dst_port_lo,
            decode(FlowRule(dst_port="1024-2047")).dst_port_hi) == (1024, 2047)
    f = decode(FlowRule(src_port=[0, 65535], dst_port=0))
    assert (f.src_port_lo, f.src_port_hi, f.dst_port_lo, f.dst_port_hi) == (0, 65535, 0, 0)


def test_decode_rejects_wrong_width():
    bits = data.Layout.cast(Rule).size
    with pytest.raises(ValueError, match=f"a packed rule must be an integer of {bits} bits"):
        RuleFields.decode(1 << bits)


def test_rule_set_encode_pads_and_limits():
    rs = RuleSet([FlowRule(ip_proto="udp"), FlowRule(name="web", dst_port=80)])
    assert rs.names == ["rule0", "web"]
    packed = rs.encode(512, n_rules=4)
    assert packed[2:] == [0, 0] and packed[0] == FlowRule(ip_proto=17).encode(512)
    with pytest.raises(RuleError, match="2 rules do not fit a table of 1"):
        rs.encode(512, n_rules=1)
    bad = RuleSet([FlowRule(), FlowRule(name="x", action=Action(reta_offset=100))])
    with pytest.raises(RuleError, match="rule 1 \\('x'\\): reta_offset 100 is outside"):
        bad.encode(64)


# --- Rule files -------------------------------------------------------------------------------

TOML_TEXT = """
[default]
instance = 0
reta_size = 0

[[rule]]
name = "dns"
ip_proto = "udp"
dst_port = 53
instance = 1
reta_offset = 0
reta_size = 4

[[rule]]
src = "10.0.0.0/8"
drop = true

[[rule]]
name = "syn"
ethertype = 0x86DD
tcp_flags = {syn = true, ack = false}
src_port = [1024, 65535]
flags = {fragment = false}
instance = 3
"""

JSON_DOC = {
    "default": {"instance": 0, "reta_size": 0},
    "rules": [
        {"name": "dns", "ip_proto": "udp", "dst_port": 53, "instance": 1, "reta_offset": 0,
         "reta_size": 4},
        {"src": "10.0.0.0/8", "drop": True},
        {"name": "syn", "ethertype": "0x86dd", "tcp_flags": {"syn": True, "ack": False},
         "src_port": "1024-65535", "flags": {"fragment": False}, "instance": 3},
    ],
}


def test_load_toml(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(TOML_TEXT)
    rs = load_rules(path, max_rules=3, reta_entries=512)
    assert rs.names == ["dns", "rule1", "syn"]
    assert rs.default == Action()
    dns, net, syn = rs.rules
    assert dns.action == Action(instance=1, reta_size=4)
    assert net.action.drop and net.src == "10.0.0.0/8"
    f = decode(syn)
    assert f.tcp_flags == 0x02 and f.tcp_flags_mask == 0x12
    assert (f.src_port_lo, f.src_port_hi) == (1024, 65535)
    assert f.flags == 0 and f.flags_mask == 1 << 4 and f.action["instance"] == 3


def test_load_vni(tmp_path):
    path = tmp_path / "tunnels.toml"
    path.write_text('[[rule]]\nname = "vni 10"\nip_proto = "udp"\ndst_port = 4789\n'
                    'src = "198.18.0.1"\nvni = 10\ninstance = 2\n')
    rule, = load_rules(path).rules
    assert rule.vni == 10 and rule.name == "vni 10"
    assert decode(rule).vni == 10 and decode(rule).vni_mask == 0xFFFFFF


def test_json_and_toml_encode_the_same(tmp_path):
    (tmp_path / "a.toml").write_text(TOML_TEXT)
    (tmp_path / "b.json").write_text(json.dumps(JSON_DOC))
    a, b = load_rules(tmp_path / "a.toml"), load_rules(tmp_path / "b.json")
    assert a.encode(512) == b.encode(512)
    assert a.names == b.names


def test_sniffs_format_without_extension(tmp_path):
    (tmp_path / "rules.conf").write_text(TOML_TEXT)
    (tmp_path / "rules.txt").write_text("  \n" + json.dumps(JSON_DOC))
    assert (load_rules(tmp_path / "rules.conf").encode(512)
            == load_rules(tmp_path / "rules.txt").encode(512))


def test_empty_file_is_default_only(tmp_path):
    (tmp_path / "empty.toml").write_text("")
    rs = load_rules(tmp_path / "empty.toml")
    assert rs.rules == [] and rs.default == Action()


@pytest.mark.parametrize("name, content, expected", [
    ("r.toml", '[[rule]]\nip_proto = 6\n[[rule]]\nname = "x"\ndst_prot = 80\n',
     "r.toml: rule 1 ('x'): unknown key 'dst_prot'"),
    ("r.toml", '[[rule]]\n[[rule]]\nsrc = "10.0.0.0/40"\n',
     "r.toml: rule 1, key 'src': bad src prefix '10.0.0.0/40'"),
    ("r.toml", '[[rule]]\ndst_port = [2000, 1000]\n',
     "r.toml: rule 0, key 'dst_port': dst_port range [2000, 1000] is empty"),
    ("r.toml", '[[rule]]\nsrc_port = 70000\n',
     "r.toml: rule 0, key 'src_port': src_port must be between 0 and 65535, not 70000"),
    ("r.toml", '[[rule]]\n[[rule]]\n[[rule]]\n',
     "r.toml: 3 rules, but the classifier holds at most 2"),
    ("r.toml", '[[rule]\nsrc = 1\n', "r.toml: invalid TOML"),
    ("r.json", '{"rules": [}', "r.json: invalid JSON"),
    ("r.json", [1, 2], "r.json: the top level must be an object"),
    ("r.json", {"rules": [{"instance": 16}]},
     "r.json: rule 0, key 'instance': instance must be between 0 and 15, not 16"),
    ("r.json", {"default": {"instance": 1, "queue": 3}},
     "r.json: default: unknown key 'queue'"),
    ("r.json", {"default": {}, "rulez": []}, "r.json: unknown top-level key 'rulez'"),
    ("r.json", {"rule": [], "rules": []}, "not both"),
    ("r.json", {"rules": {"a": 1}}, "r.json: the rules must be a list"),
    ("r.json", {"rules": [3]}, "r.json: rule 0: must be a table"),
    ("r.json", {"rules": [{"name": "a"}, {"name": "a"}]},
     "r.json: rule 1: name 'a' is already used by rule 0"),
    ("r.json", {"rules": [{"name": 5}]}, "r.json: rule 0, key 'name': must be a string"),
    ("r.json", {"rules": [{"tcp_flags": {"sin": True}}]},
     "r.json: rule 0, key 'tcp_flags': unknown tcp_flags name 'sin'"),
    ("r.json", {"rules": [{"vlan": 3, "flags": {"vlan": False}}]},
     "r.json: rule 0: vlan is given but flags.vlan is false"),
    ("r.json", {"rules": [{"vni": 16777216}]},
     "r.json: rule 0, key 'vni': vni must be between 0 and 16777215, not 16777216"),
    ("r.toml", '[[rule]]\nip_proto = "tcp"\nvni = 7\n',
     "r.toml: rule 0: vni matches UDP to port 4789 (VXLAN) or 4790 (VXLAN-GPE), but "
     "ip_proto is 'tcp', not udp"),
    ("r.json", {"rules": [{"name": "w", "reta_offset": 600}]},
     "r.json: rule 0 ('w'): reta_offset 600 is outside the 512-entry RETA"),
])
def test_file_errors(tmp_path, name, content, expected):
    """``content``: the file's text, or (for JSON that parses) the object it holds."""
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RuleError) as info:
        load_rules(path, max_rules=2, reta_entries=512)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected.replace(f"{name}:", f"{path}:", 1) in message


def test_missing_file(tmp_path):
    with pytest.raises(RuleError, match="no such rule file"):
        load_rules(tmp_path / "nope.toml")
    assert issubclass(RuleError, ValueError)


def test_ipv4_prefix_does_not_match_ipv6_frame_with_mapped_address():
    """An IPv6 packet whose source is ::ffff:10.0.0.1 is not an IPv4 frame."""
    from types import SimpleNamespace
    from hetnic.sim.model.classifier import classify
    rule = FlowRule(src="10.0.0.0/8", action=Action(drop=True)).encode(512)
    flags_v4, flags_v6 = 1 << 2, 1 << 3
    frame = dict(error=0, ethertype=0, vlan_id=0, dscp=0, ip_proto=6, tcp_flags=0,
                 src_addr=ipv4_mapped(0x0A000001), dst_addr=0, src_port=1, dst_port=2, vni=0)
    v4 = classify(SimpleNamespace(flags=flags_v4, **frame), [rule], Action(), reta_entries=512)
    v6 = classify(SimpleNamespace(flags=flags_v6, **frame), [rule], Action(), reta_entries=512)
    assert v4.rule == 0 and v6.rule == 1
