"""The QoS dispatcher's model, on a recording stand-in for the NIC's control plane: which
instance a class gets, rules merged and split, reference counts, one commit per change, and
refusals that change nothing. (On the simulated NIC: test_dispatcher_nic.py.)"""

import pickle
from types import SimpleNamespace

import pytest

from hetnic.host.control import NicError
from hetnic.host.dispatcher import DispatchError, Dispatcher, Grant
from hetnic.host.rule_merge import port_runs
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack_steering import plan_steering
from hetnic.params import HIL_NIC_CORE

INSTANCES = list(PROFILES.values())
NAMES = [i.name for i in INSTANCES]
LOW, THROUGHPUT, CONCURRENCY = range(3)


class FakeRules:
    """The part of :class:`hetnic.host.control.Rules` the dispatcher uses, recorded."""

    def __init__(self):
        self.slots = {}
        self.default = None
        self.writes = 0

    def __iter__(self):
        return iter(sorted(self.slots.items()))

    def add(self, rule, slot):
        assert 0 <= slot < HIL_NIC_CORE.n_rules
        self.slots[slot] = rule
        self.writes += 1
        return slot

    def remove(self, slot):
        del self.slots[slot]
        self.writes += 1

    def set_default(self, action):
        self.default = action


class FakeNic:
    """Staged rules, and what the last commit applied; ``fail`` makes the next commit
    raise."""

    def __init__(self):
        self.params = HIL_NIC_CORE
        self.rules = FakeRules()
        self.rss = SimpleNamespace(set_table=lambda table: setattr(self, "reta", list(table)))
        self.generation = 1
        self.applied = []
        self.fail = False

    def commit(self):
        if self.fail:
            self.fail = False
            raise NicError("the commit did not apply")
        self.generation += 1
        slots = dict(self.rules)
        self.applied = [slots[s] for s in sorted(slots)]
        assert sorted(slots) == list(range(len(slots))), "a gap in the rule slots"
        return self.generation

    def route(self, proto: str, port: int) -> int:
        """The instance the applied rules give a non-fragment ``proto`` frame to ``port``."""
        for rule in self.applied:
            if rule.flags or (rule.ip_proto not in (None, proto)):
                continue
            lo, hi = (rule.dst_port, rule.dst_port) if isinstance(rule.dst_port, int) \
                else rule.dst_port
            if lo <= port <= hi:
                return rule.action.instance
        return self.rules.default.instance


@pytest.fixture
def setup():
    nic = FakeNic()
    plan = plan_steering(INSTANCES, HIL_NIC_CORE, rx_queues=8, tx_queues=4, app_ports=())
    dispatcher = Dispatcher(nic, INSTANCES, base_plan=plan)
    dispatcher.program()
    return nic, plan, dispatcher


def _state(nic, dispatcher):
    return (dispatcher.dump(), dict(nic.rules), list(nic.applied), nic.generation)


def test_port_runs():
    assert port_runs([]) == []
    assert port_runs([7, 9, 8, 80, 8]) == [(7, 9), (80, 80)]
    assert port_runs([65535, 1, 65534]) == [(1, 1), (65534, 65535)]


def test_program_is_the_base_plan(setup):
    nic, plan, dispatcher = setup
    assert nic.applied == plan.rules and nic.rules.default == plan.default
    assert nic.reta == plan.reta and dispatcher.commits == 1
    assert dispatcher.classes == {"low-delay": ("low-delay",), "throughput": ("throughput",),
                                  "concurrency": ("concurrency",)}


def test_request_installs_a_rule_with_one_commit(setup):
    nic, plan, dispatcher = setup
    assert nic.route("tcp", 5001) == CONCURRENCY                # the default action
    generation = nic.generation
    grant = dispatcher.request("low-delay", "tcp", 5001, owner="app")
    assert grant == Grant(qos="low-delay", instance="low-delay", instance_index=LOW,
                          proto="tcp", port=5001, rule=0, ticket=grant.ticket, owner="app")
    assert nic.generation == generation + 1 == dispatcher.generation
    assert nic.route("tcp", 5001) == LOW and nic.route("udp", 5001) == CONCURRENCY
    rule = nic.applied[0]
    assert (rule.ip_proto, rule.dst_port) == ("tcp", 5001)
    assert (rule.action.reta_offset, rule.action.reta_size) == plan.slices["low-delay"]
    assert nic.applied[1:] == plan.rules                        # the base plan follows, in order
    assert pickle.loads(pickle.dumps(grant)) == grant


def test_references_and_the_last_release(setup):
    nic, _, dispatcher = setup
    first = dispatcher.request("throughput", 17, 6000, owner="a")
    generation = nic.generation
    second = dispatcher.request("throughput", "UDP", 6000, owner="b")
    assert nic.generation == generation and second.ticket != first.ticket
    assert dispatcher.dump()["grants"] == [{"proto": "udp", "port": 6000, "qos": "throughput",
                                            "instance": "throughput", "refs": 2,
                                            "owners": ["a", "b"], "rule": 0}]
    dispatcher.release(first)
    assert nic.generation == generation and nic.route("udp", 6000) == THROUGHPUT
    with pytest.raises(DispatchError, match="not held"):
        dispatcher.release(first)                               # twice
    dispatcher.release(second)
    assert nic.generation == generation + 1
    assert nic.route("udp", 6000) == CONCURRENCY and dispatcher.dump()["grants"] == []
    assert len(nic.applied) == len(dispatcher.rules()) == 4     # the base plan alone


def test_adjacent_ports_merge_and_split(setup):
    nic, _, dispatcher = setup
    grants = {port: dispatcher.request("throughput", "tcp", port) for port in (8000, 8002)}
    assert [r.dst_port for r in dispatcher.rules()[:2]] == [8000, 8002]
    generation = nic.generation
    grants[8001] = dispatcher.request("throughput", "tcp", 8001)
    assert nic.generation == generation + 1
    assert dispatcher.rules()[0].dst_port == (8000, 8002) and dispatcher.used == 5
    # another protocol or another instance next door: rules of their own
    udp = dispatcher.request("throughput", "udp", 8003)
    low = dispatcher.request("low-delay", "tcp", 8003)
    assert [(r.ip_proto, r.dst_port, r.action.instance) for r in dispatcher.rules()[:3]] == [
        ("tcp", (8000, 8002), THROUGHPUT), ("udp", 8003, THROUGHPUT), ("tcp", 8003, LOW)]
    dispatcher.release(grants[8001])                            # oldest first: 8000, 8002, ...
    assert [(r.ip_proto, r.dst_port) for r in dispatcher.rules()[:4]] == [
        ("tcp", 8000), ("tcp", 8002), ("udp", 8003), ("tcp", 8003)]
    assert nic.route("tcp", 8001) == CONCURRENCY and nic.route("tcp", 8002) == THROUGHPUT
    for grant in (grants[8000], grants[8002], udp, low):
        dispatcher.release(grant)
    assert dispatcher.rules() == dispatcher.base_plan.rules and nic.applied == dispatcher.rules()


def test_own_ephemeral_range_needs_no_rule(setup):
    nic, _, dispatcher = setup
    generation = nic.generation
    grant = dispatcher.request("throughput", "tcp", 30010)      # throughput's 30000-39999
    assert grant.rule is None and grant.instance == "throughput"
    assert nic.generation == generation and nic.route("tcp", 30010) == THROUGHPUT
    dispatcher.release(grant)
    assert nic.generation == generation


@pytest.mark.parametrize("args, message", [
    (("bulk", "tcp", 80), "unknown QoS class 'bulk'; the classes are low-delay, throughput, "
                          "concurrency"),
    ((None, "tcp", 80), "unknown QoS class None"),
    (("low-delay", "icmp", 80), "protocol must be one of tcp, udp"),
    (("low-delay", 1, 80), "protocol must be one of tcp, udp"),
    (("low-delay", "tcp", 0), "port must be an integer from 1 to 65535, not 0"),
    (("low-delay", "tcp", 65536), "not 65536"),
    (("low-delay", "tcp", True), "not True"),
    (("low-delay", "tcp", "80"), "not '80'"),
    (("throughput", "tcp", 7), "port in use: tcp/7 is granted to class 'low-delay' "
                               "\\(instance 'low-delay'\\), not 'throughput'"),
    (("low-delay", "tcp", 45000), "port in use: tcp/45000 is in instance 'concurrency''s "
                                  "ephemeral range 40000-59999"),
])
def test_refusals_change_nothing(setup, args, message):
    nic, _, dispatcher = setup
    dispatcher.request("low-delay", "tcp", 7)
    before = _state(nic, dispatcher)
    with pytest.raises(DispatchError, match=message) as info:
        dispatcher.request(*args)
    assert "\n" not in str(info.value)
    assert _state(nic, dispatcher) == before


def test_full_table_is_refused(setup):
    nic, _, dispatcher = setup
    grants = [dispatcher.request("low-delay", "tcp", 1000 + 2 * k) for k in range(12)]
    assert dispatcher.used == HIL_NIC_CORE.n_rules
    before = _state(nic, dispatcher)
    with pytest.raises(DispatchError, match="rule table is full: it has 16 rules and 16 are "
                       "in use \\(4 by the base plan, 12 by the dispatcher\\)"):
        dispatcher.request("low-delay", "udp", 1000)
    assert _state(nic, dispatcher) == before
    # an adjacent port merges into an existing rule: it still fits
    dispatcher.request("low-delay", "tcp", 1001)
    assert dispatcher.used == 15
    # a release that would split a range with no slot free keeps the range (no commit)
    dispatcher.request("low-delay", "tcp", 1030)
    assert dispatcher.used == 16
    generation = nic.generation
    dispatcher.release(grants[0])                               # 1000 of 1000-1002
    assert nic.generation == generation + 1 and dispatcher.used == 16   # 1001-1002: no split
    middle = dispatcher.request("low-delay", "tcp", 1003)       # 1001-1004 merged
    dispatcher.request("low-delay", "udp", 2000)                # the freed slot taken again
    assert nic.generation == generation + 3 and dispatcher.used == 16
    dispatcher.release(middle)                                  # a split would need a slot
    assert nic.generation == generation + 3
    lingering = [r for r in dispatcher.dump()["rules"] if r["lingering"]]
    assert lingering == [{"slot": 0, "proto": "tcp", "ports": (1001, 1004),
                          "instance": "low-delay", "granted": [1001, 1002, 1004],
                          "lingering": 1}]
    assert nic.route("tcp", 1003) == LOW
    dispatcher.release(grants[5])                               # frees a slot: the split fits
    assert nic.generation == generation + 4 and nic.route("tcp", 1003) == CONCURRENCY
    assert not any(r["lingering"] for r in dispatcher.dump()["rules"])


def test_a_failed_commit_changes_nothing(setup):
    nic, _, dispatcher = setup
    grant = dispatcher.request("low-delay", "tcp", 7)
    before = _state(nic, dispatcher)
    nic.fail = True
    with pytest.raises(NicError):
        dispatcher.request("throughput", "tcp", 80)
    assert _state(nic, dispatcher) == before
    nic.fail = True
    with pytest.raises(NicError):
        dispatcher.release(grant)
    assert _state(nic, dispatcher) == before
    dispatcher.release(grant)                                   # the grant is still held


def test_release_refuses_what_it_does_not_hold(setup):
    _, _, dispatcher = setup
    with pytest.raises(DispatchError, match="release takes a Grant, not tuple"):
        dispatcher.release(("tcp", 7))
    grant = Grant("low-delay", "low-delay", 0, "tcp", 7, 0, ticket=99)
    with pytest.raises(DispatchError, match="tcp/7 ticket 99 is not held"):
        dispatcher.release(grant)


def _inst(name, queues, tx, ports, qos=None):
    return SimpleNamespace(name=name, rx_queues=queues, tx_queue=tx, ephemeral_ports=ports,
                           qos=qos)


def test_declared_classes_and_load():
    instances = [_inst("a", (0, 1), 0, (20000, 20999), "throughput"),
                 _inst("b", (2, 3), 1, (21000, 21999), "throughput"),
                 _inst("c", (4,), 2, (22000, 22999))]
    nic = FakeNic()
    plan = plan_steering(instances, HIL_NIC_CORE, rx_queues=8, app_ports=())
    dispatcher = Dispatcher(nic, instances, base_plan=plan)
    dispatcher.program()
    # no instance serves low-delay or concurrency: the first instance does
    assert dispatcher.classes == {"low-delay": ("a",), "throughput": ("a", "b"),
                                  "concurrency": ("a",)}
    picks = [dispatcher.request("throughput", "tcp", port).instance for port in (80, 81, 82)]
    assert picks == ["a", "b", "a"]                             # the least loaded
    assert dispatcher.request("throughput", "tcp", 21500).instance == "b"   # b's ephemeral
    with pytest.raises(DispatchError, match="instance 'a' declares QoS class 'bulk'; the "
                       "classes are low-delay, throughput, concurrency"):
        Dispatcher(nic, [_inst("a", (0,), 0, (20000, 20999), "bulk")], base_plan=plan)


def test_rules_keep_their_slots_oldest_first(setup):
    nic, _, dispatcher = setup
    old = dispatcher.request("throughput", "tcp", 9000)
    writes = nic.rules.writes
    new = dispatcher.request("low-delay", "udp", 100)
    assert (old.rule, new.rule) == (0, 1)
    # slot 0 kept its rule; slot 1 took the new one, the 4 base rules moved down one
    assert nic.rules.writes - writes == 1 + 4
    dispatcher.release(old)
    assert dispatcher.dump()["grants"][0]["rule"] == 0
