"""The flows a restart pins: a received frame's TCP 5-tuple and a stack connection's, the
same key for the same connection (IPv4 and IPv6), and None for what is not TCP."""

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hetnic.host.restart_flows import connection_flow, five_tuple, frame_flow

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def test_frame_and_connection_agree_ipv4():
    frame = bytes(Ether(**MACS) / IP(src="198.18.0.1", dst="198.18.0.2")
                  / TCP(sport=40000, dport=7, flags="S"))
    conn = {"local": "198.18.0.2", "lport": 7, "remote": "198.18.0.1", "rport": 40000}
    assert frame_flow(frame) == connection_flow(conn) == ("198.18.0.1", "198.18.0.2", 40000, 7)
    assert five_tuple(frame_flow(frame)).key() == five_tuple(connection_flow(conn)).key()


def test_frame_and_connection_agree_ipv6():
    frame = bytes(Ether(**MACS) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                  / TCP(sport=41000, dport=80, flags="A"))
    conn = {"local": "2001:db8:0::2", "lport": 80, "remote": "2001:db8::1", "rport": 41000}
    assert frame_flow(frame) == connection_flow(conn) == ("2001:db8::1", "2001:db8::2", 41000, 80)


def test_not_tcp_is_none():
    assert frame_flow(bytes(Ether(**MACS) / IP(src="198.18.0.1", dst="198.18.0.2")
                            / UDP(sport=1, dport=7))) is None
    assert frame_flow(bytes(Ether(**MACS) / IP(src="198.18.0.1", dst="198.18.0.2", frag=3,
                                               proto=6) / (b"x" * 20))) is None
    assert frame_flow(b"\x00" * 13) is None
    assert frame_flow(bytes(Ether(type=0x0806, **MACS) / (b"\x00" * 28))) is None


class _Queue:
    """An RX queue that gives the packets put in it (``data``, ``generation``)."""

    def __init__(self, index: int):
        self.index, self.packets = index, []

    def poll(self, n: int):
        out, self.packets = self.packets[:n], self.packets[n:]
        return out


def _released(generation: int):
    """A fake instance (what _Instance._step and release_rx touch), released with one
    foreign flow pinned at ``generation``, two RX queues."""
    from types import SimpleNamespace

    from hetnic.host.instance_process import _Instance
    got = []
    inst = SimpleNamespace(
        queues=SimpleNamespace(rx_queues=[None, _Queue(1), _Queue(2)]),
        link=SimpleNamespace(service=lambda: None, frames_in=0, send=lambda out: None),
        stack=SimpleNamespace(receive=lambda data, now: got.append(data),
                              poll=lambda now: []),
        pinned_drops=0, foreign=frozenset(), held=True)
    flow = ("198.18.0.1", "198.18.0.2", 40000, 7)
    _Instance.release_rx(inst, foreign=[flow], generation=generation)
    return inst, got, lambda now: _Instance._step(inst, now, 64)


def _packet(sport: int, generation: int):
    from types import SimpleNamespace
    data = bytes(Ether(**MACS) / IP(src="198.18.0.1", dst="198.18.0.2")
                 / TCP(sport=sport, dport=7, flags="S"))
    return SimpleNamespace(data=data, generation=generation)


def test_generation_filter_drops_held_frames_of_pinned_flows():
    """A released instance drops the frames of a pinned flow classified before the pin's
    commit (pinned_drops), takes later ones and other flows; an empty poll keeps the
    filter (a held frame may still be in the NIC); it ends once every queue gave a frame
    of the new generation."""
    import time
    inst, got, step = _released(generation=5)
    q1, q2 = inst.queues.rx_queues[1:]
    q1.packets = [_packet(40000, 4), _packet(40001, 4)]
    now = time.monotonic()
    step(now)
    assert inst.pinned_drops == 1 and len(got) == 1         # the other flow is taken
    step(now)                                               # nothing: the filter stays
    assert inst.foreign
    q2.packets = [_packet(40000, 4)]                        # late from inside the NIC
    step(now)
    assert inst.pinned_drops == 2 and len(got) == 1
    q1.packets = [_packet(40000, 5)]                        # new generation: the flow's
    step(now)
    assert len(got) == 2 and inst.foreign                   # q2 has not moved on yet
    q2.packets = [_packet(40002, 6)]
    step(now)
    assert not inst.foreign and inst.pinned_drops == 2


def test_generation_filter_ends_after_the_hold():
    from hetnic.host.instance_process import FOREIGN_HOLD
    inst, got, step = _released(generation=5)
    step(inst.foreign_until - FOREIGN_HOLD / 2)
    assert inst.foreign
    inst.queues.rx_queues[1].packets = [_packet(40000, 4)]
    step(inst.foreign_until)                # still dropped in this pass; then it ends
    assert inst.pinned_drops == 1 and not inst.foreign
