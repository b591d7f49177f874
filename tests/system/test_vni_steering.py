"""Steering by VXLAN network identifier on the simulated NIC (the HIL core): the parser's
VNI, the classifier's vni comparator and the host's ``FlowRule(vni=...)`` together send two
VNIs from one remote to different RX queues; every completion is checked against the
software model of the RX pipeline."""

import dataclasses

from amaranth.lib import data

from frames import vxlan_udp
from hetnic.host.nic import Nic
from hetnic.protocol import MetaFlags
from hetnic.rules import Action, FlowRule
from hetnic.sim.model.rx_pipeline import RxModel

QUEUES = 8
VNI_FLAG = 1 << data.Layout.cast(MetaFlags)["vni"].offset
REMOTE4, REMOTE6, LOCAL4, LOCAL6 = "198.18.0.1", "2001:db8::1", "198.18.0.2", "2001:db8::2"


def tunnel_frame(version, vni, *, sport, src=None, **kwargs) -> bytes:
    remote, local = (REMOTE4, LOCAL4) if version == 4 else (REMOTE6, LOCAL6)
    return vxlan_udp(version, vni=vni, sport=sport, src=src or remote, dst=local, **kwargs)


def test_two_vnis_from_one_remote_go_to_different_queues():
    with Nic.open("sim", width=64, rx_queues=QUEUES) as nic:
        # RETA: entry 0 -> queue 2, entry 1 -> queue 5, entries 8..15 -> queue 7 (the
        # default action's slice); one-entry slices, so the hash does not pick the queue.
        table = [q % QUEUES for q in range(len(nic.rss.table))]
        table[0], table[1], table[8:16] = 2, 5, [7] * 8
        nic.rss.set_table(table)
        rules = [FlowRule(ip_proto="udp", dst_port=4789, src=REMOTE4, vni=10,
                          action=Action(instance=1, reta_offset=0, reta_size=1)),
                 FlowRule(ip_proto="udp", dst_port=4789, src=REMOTE4, vni=11,
                          action=Action(instance=2, reta_offset=1, reta_size=1)),
                 FlowRule(ip_proto="udp", dst_port=4789, src=REMOTE6, vni=11,
                          action=Action(instance=2, reta_offset=1, reta_size=1))]
        for rule in rules:
            nic.rules.add(rule)
        nic.rules.set_default(Action(instance=0, reta_offset=8, reta_size=8))
        generation = nic.commit()

        want = {}           # frame -> (queue, rule, the VNI the parser finds or None)
        for k in range(4):  # several outer source ports: RSS would spread them
            want[tunnel_frame(4, 10, sport=49152 + k)] = (2, 0, 10)
            want[tunnel_frame(4, 11, sport=49152 + k)] = (5, 1, 11)
            want[tunnel_frame(6, 11, sport=50000 + k)] = (5, 2, 11)
        default = nic.params.n_rules
        want.update({
            tunnel_frame(6, 10, sport=1): (7, default, 10),     # no rule for VNI 10 over v6
            tunnel_frame(4, 12, sport=2): (7, default, 12),     # a VNI no rule names
            tunnel_frame(4, 10, sport=3, src="198.18.0.3"): (7, default, 10),  # other remote
            tunnel_frame(4, 10, sport=4, flags=0): (7, default, None),  # I clear: no VNI
            tunnel_frame(4, 10, sport=5, cut=7): (7, default, None),    # header cut
            tunnel_frame(4, 10, sport=6, dport=4790, flags=0x0C,        # VXLAN-GPE, no rule
                         next_protocol=1): (7, default, 10),
        })
        frames = list(want)
        nic.wire.send(frames)
        nic.run_until_idle()
        got = {}
        for q in nic.rx_queues:
            while packets := q.poll(1024):
                got.update((p.data, p) for p in packets)
        assert set(got) == set(frames), "every frame delivered once"
        assert {f: (got[f].queue, got[f].rule) for f in frames} == \
            {f: w[:2] for f, w in want.items()}
        # The completions' flags say which frames carried a VNI (I set, header whole), and
        # the model of the RX pipeline agrees with every completion field.
        model = RxModel(nic.regmap, dataclasses.replace(nic.config, rules=rules), generation)
        for f, (_, _, vni) in want.items():
            p, record = got[f], model.process(f)
            assert bool(p.flags & VNI_FLAG) == (vni is not None), f[:50].hex()
            assert record["vni"] == (vni or 0)
            assert (p.queue, p.rule, p.instance, p.hash, p.flags) == (
                record["queue"], record["rule"], record["instance"], record["hash"],
                record["flags"])
        counters = nic.counters()
        assert counters["rule_hits[0]"] == 4 and counters["rule_hits[1]"] == 4
        assert counters["rule_hits[2]"] == 4 and counters["rule_hits[default]"] == 6
