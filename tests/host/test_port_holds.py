"""PortHolds keeps a closed socket's grant while a connection of its instance uses the port
(TIME-WAIT too) and releases it once the port is idle; settled() is what a host waits for
at shutdown."""

from hetnic.host.dispatcher import Grant, PortHolds, port_idle


class FakeStack:
    def __init__(self):
        self.conns = []

    def connections(self):
        return list(self.conns)


def _grant(port, proto="tcp", ticket=1):
    return Grant(qos="low-delay", instance="low-delay", instance_index=0, proto=proto,
                 port=port, rule=0, ticket=ticket)


def test_a_port_with_a_connection_is_held_until_idle():
    stack, released = FakeStack(), []
    holds = PortHolds(released.append, every=0.05)
    holds.hold(stack, _grant(80))                         # idle already: released at once
    assert released == [_grant(80)] and len(holds) == 0
    stack.conns = [{"lport": 5555, "state": "ESTABLISHED"}, {"lport": 7, "state": "LISTEN"}]
    holds.hold(stack, _grant(5555, ticket=2))
    assert len(holds) == 1 and not holds.settled()
    assert holds.check(1.0) == 0
    stack.conns[0]["state"] = "TIME-WAIT"
    assert holds.settled() and holds.check(1.01) == 0     # within `every`: not looked at
    assert holds.check(2.0) == 0                          # TIME-WAIT still holds the port
    stack.conns = stack.conns[1:]
    assert holds.check(3.0) == 1 and released[-1] == _grant(5555, ticket=2)
    assert len(holds) == 0


def test_udp_is_idle_once_closed_and_release_all_empties():
    stack, released = FakeStack(), []
    stack.conns = [{"lport": 53, "state": "ESTABLISHED"}]
    assert port_idle(stack, "udp", 53)
    holds = PortHolds(released.append)
    holds.hold(stack, _grant(53, "tcp"))
    assert holds.grants == [_grant(53, "tcp")]
    assert holds.release_all() == 1 and released == [_grant(53, "tcp")] and not holds.grants
