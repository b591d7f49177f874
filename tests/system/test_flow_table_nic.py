"""``nic.flows`` (hetnic.host.flow_table) on the compiled Verilator harness (``"sim"``).

Flows installed through the driver steer their frames ahead of the rules, only after the
commit; every delivered frame is checked against the RX model given the same flow table; a
full bucket and stash is refused, raised and counted.
"""

import dataclasses
import types

import pytest

from frames import tcp4, tcp6, udp4
from hetnic.config import RxConfig
from hetnic.host.flow_table import FiveTuple, FlowTable, FlowTableError, FlowTableFull
from hetnic.host.nic import Nic
from hetnic.params import ECP5_BOARD_CORE
from hetnic.protocol import FLOW_HIT_RULE
from hetnic.regs import FLOW_STASH, FLOW_WAYS
from hetnic.rules import Action, FlowRule
from hetnic.sim.model.flow_table import FlowTableModel, flow_bucket
from hetnic.sim.model.rx_pipeline import RxModel

QUEUES = 8
SRC4, DST4 = "198.18.0.1", "198.18.0.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def receive(nic, frames) -> list:
    nic.wire.send(frames)
    nic.run_until_idle()
    out = []
    for q in nic.rx_queues:
        while got := q.poll(1024):
            out += got
    return out


def mirror(nic, model: FlowTableModel, flow: FiveTuple, action: Action) -> None:
    """Stage the same insert in the model (it must agree on the slot)."""
    status, slot = model.insert(flow.key(), action.encode(nic.regmap.params["reta_size"]))
    assert status == 0 and slot == nic.flows.handle(flow)


@pytest.mark.timeout(300)
def test_flows_before_rules_commit_full_and_counters():
    with Nic.open("sim", width=64, rx_queues=QUEUES) as nic:
        nic.apply(RxConfig(queues=QUEUES))
        # A rule that every test frame matches: the flows must win over it.
        nic.rules.add(FlowRule(action=Action(instance=3)))
        nic.commit()
        model = FlowTableModel()
        f4 = FiveTuple(SRC4, DST4, 40000, 80, "tcp")
        f6 = FiveTuple(SRC6, DST6, 40001, 443, "tcp")
        for flow, action in ((f4, Action(instance=5)), (f6, Action(instance=6, reta_offset=4,
                                                                      reta_size=2))):
            nic.flows.insert(flow, action)
            mirror(nic, model, flow, action)
        dropped = FiveTuple(SRC4, DST4, 40002, 80, "udp")
        nic.flows.insert(dropped, Action(drop=True))
        mirror(nic, model, dropped, Action(drop=True))
        with pytest.raises(FlowTableError, match="already in the table"):
            nic.flows.insert(f4, Action(instance=1))
        frames = [tcp4(src=SRC4, dst=DST4, sport=40000, dport=80),
                  tcp6(src=SRC6, dst=DST6, sport=40001, dport=443),
                  udp4(src=SRC4, dst=DST4, sport=40002, dport=80),
                  tcp4(src=SRC4, dst=DST4, sport=40003, dport=80)]     # no flow
        # Staged only: the rule still takes every frame.
        before = nic.flows.counters()
        assert (before["entries"], before["staged"]) == (3, 3)
        got = receive(nic, frames)
        assert [(p.rule, p.instance) for p in got] == [(0, 3)] * 4
        generation = nic.flows.commit()
        model.commit()
        got = receive(nic, frames)
        assert sorted(p.data for p in got) == sorted(frames[:2] + frames[3:])
        rx = RxModel(nic.regmap, nic.config, generation, flows=model)
        for p in got:
            want = rx.process(p.data)
            assert (p.rule, p.instance, p.queue) == (want["rule"], want["instance"],
                                                      want["queue"])
        assert {p.data: p.rule for p in got}[frames[0]] == FLOW_HIT_RULE
        after = nic.flows.counters()
        assert after["hits"] - before["hits"] == 3          # the dropped flow's frame too
        assert after["misses"] - before["misses"] == 4 + 1
        assert after["staged"] == 0

        # One bucket's ways and the stash full: the next flow of that bucket is refused.
        bucket = flow_bucket(f4.key())
        same = [f for f in (FiveTuple(SRC4, DST4, 1024 + i, 80, "tcp") for i in range(20000))
                if flow_bucket(f.key()) == bucket][:FLOW_WAYS + FLOW_STASH]
        for flow in same[:-1]:          # f4 holds one way already
            nic.flows.insert(flow, Action(instance=2))
        with pytest.raises(FlowTableFull, match="bucket and the stash are full"):
            nic.flows.insert(same[-1], Action(instance=2))
        assert nic.flows.counters()["refused"] - after["refused"] == 1
        # Deleting by handle frees a way for it.
        nic.flows.delete(nic.flows.handle(same[0]))
        nic.flows.insert(same[-1], Action(instance=2))
        nic.flows.delete(f4)
        nic.flows.commit()
        got = receive(nic, [frames[0], tcp4(src=SRC4, dst=DST4, sport=same[-1].src_port,
                                            dport=80)])
        assert [(p.rule, p.instance) for p in got] == [(0, 3), (FLOW_HIT_RULE, 2)]


def test_bad_flows_are_one_line_errors():
    with pytest.raises(FlowTableError, match="not the same IP version"):
        FiveTuple(SRC4, SRC6, 1, 2).key()
    with pytest.raises(FlowTableError, match="dst_port must be"):
        FiveTuple(SRC4, DST4, 1, 70000).key()
    with pytest.raises(FlowTableError, match="unknown flow protocol"):
        FiveTuple(SRC4, DST4, 1, 2, "tcpx").key()
    with pytest.raises(FlowTableError, match="bad flow address"):
        FiveTuple("198.18.0.300", DST4, 1, 2).key()
    assert dataclasses.is_dataclass(FiveTuple)


def test_a_board_build_has_no_flow_table():
    """The boards build without the table (ECP5_BOARD_CORE): CAPS.flow_table reads 0 and
    ``nic.flows`` refuses in one line before touching a FLOW_* register."""
    regmap = ECP5_BOARD_CORE.regmap()
    reads = []

    def reg_read(addr):
        reads.append(addr)
        return next(regmap.ro_value(r.name) for r in regmap.present() if r.offset == addr)

    board = types.SimpleNamespace(regmap=regmap, backend=types.SimpleNamespace(
        reg_read=reg_read))
    with pytest.raises(FlowTableError, match=r"^this NIC build has no flow table"):
        FlowTable(board).insert(FiveTuple(SRC4, DST4, 1, 2), Action(instance=1))
    assert reads == [regmap.addr("CAPS")]
    assert not any(r.name.startswith("FLOW_") for r in regmap.present())
