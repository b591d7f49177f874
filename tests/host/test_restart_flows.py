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
