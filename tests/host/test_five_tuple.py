"""FiveTuple: a flow key the NIC can match, or a one-line FlowTableError."""

import pytest

from hetnic.host.flow_table import FiveTuple, FlowTableError
from hetnic.sim.model.flow_table import flow_key


@pytest.mark.parametrize("proto", ["icmp", "gre", 132, "esp"])
def test_ports_of_a_protocol_without_ports_are_refused(proto):
    """The parser reads ports of TCP and UDP only; any other protocol's key has ports 0, so
    an entry with ports could never match."""
    with pytest.raises(FlowTableError, match=r"has no ports .* give ports 0, not 1 and 0$"):
        FiveTuple("198.18.0.1", "198.18.0.2", 1, 0, proto).key()
    with pytest.raises(FlowTableError, match=r"not 0 and 7$"):
        FiveTuple("2001:db8::1", "2001:db8::2", 0, 7, proto).key()


def test_portless_and_tcp_udp_flows_are_keys():
    assert FiveTuple("198.18.0.1", "198.18.0.2", 0, 0, "gre").key() == flow_key(
        ipv6=False, ip_proto=47, src_addr=0xFFFF_C612_0001, dst_addr=0xFFFF_C612_0002,
        src_port=0, dst_port=0)
    for proto in ("tcp", "udp", 6, 17):
        FiveTuple("2001:db8::1", "2001:db8::2", 40000, 443, proto).key()
