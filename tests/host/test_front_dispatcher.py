"""The restart's front rules (stack_procs.FrontDispatcher): they come before every other
rule in the NIC's table, count as used, show in the port map, and go with one commit."""

import pytest

from hetnic.rules import Action, FlowRule, tcp_flags_from_names

pytestmark = pytest.mark.timeout(300)


def test_front_rules_first_and_gone_again():
    from hetnic.host.nic import Nic
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack_procs import FrontDispatcher
    from hetnic.host.stack_steering import plan_steering
    instances = list(PROFILES.values())
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        plan = plan_steering(instances, nic.params, app_ports=())
        d = FrontDispatcher(nic, instances, base_plan=plan)
        d.program()
        d.request("low-delay", "tcp", 7, owner="echo")
        normal = d.rules()
        used = d.used
        syn = FlowRule(ip_proto="tcp", dst_port=7, tcp_flags=tcp_flags_from_names(
            {"syn": True, "ack": False}), action=Action(instance=3, reta_offset=384,
                                                       reta_size=128), name="syn -> t")
        before = nic.generation
        d.front = [syn]
        generation = d.program_rules()
        assert generation == nic.generation and generation != before
        assert d.rules() == [syn] + normal and d.used == used + 1
        staged = dict(nic.rules)
        assert staged[0] == syn and staged[1] == normal[0]
        rows = d.port_map({})
        assert rows[0]["rule"] == 0 and rows[0]["match"] == "syn -> t"
        assert rows[1]["rule"] == 1 and rows[1]["instance"] == "low-delay"
        d.front = []
        d.program_rules()
        assert d.rules() == normal and dict(nic.rules)[0] == normal[0]
        assert len(dict(nic.rules)) == len(normal)


def test_front_rules_count_when_a_listen_asks_for_a_rule():
    """A listen during a restart is refused when the front's rules leave no slot: it
    would otherwise be staged past the table's end."""
    from hetnic.host.dispatcher import DispatchError
    from hetnic.host.nic import Nic
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack_procs import FrontDispatcher
    from hetnic.host.stack_steering import plan_steering
    instances = list(PROFILES.values())
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        plan = plan_steering(instances, nic.params, app_ports=())
        d = FrontDispatcher(nic, instances, base_plan=plan)
        d.program()
        free = nic.params.n_rules - d.used
        d.front = [FlowRule(ip_proto="tcp", dst_port=7000 + 2 * k, action=Action(
            instance=3, reta_offset=384, reta_size=128), name=f"front {k}")
            for k in range(free - 1)]
        d.program_rules()
        d.request("low-delay", "tcp", 7)            # the last free slot
        assert d.used == nic.params.n_rules
        rules = dict(nic.rules)
        with pytest.raises(DispatchError, match=f"it has {nic.params.n_rules} rules and "
                           f"{nic.params.n_rules} are in use .*, {free - 1} by a restart\\)"):
            d.request("low-delay", "tcp", 9000)
        assert dict(nic.rules) == rules
