"""Outer fragments from the kernel's VXLAN: the kernel in a namespace with a VXLAN device
(VNI 10, IPv4 outer, no ``df set``) whose MTU of 1500 plus the 50 bytes of encapsulation
exceeds the underlay's (the TAP's MTU 1400 on the kernel's side), so the kernel fragments
every outer datagram of a full-size inner frame. The simulated NIC steers the fragments
from the remote to the tunnel adapter (the fragment rules); the adapter reassembles them
before it decapsulates. TCP through the tunnel with full-size segments is byte-exact; the
kernel's own counters (``/proc/net/snmp``: FragCreates) and the adapter's (fragments,
reassembled) show the fragmentation; no other instance sees a fragment. A datagram the
kernel fragmented but the adapter did not reassemble must be accounted for by a counted
drop (the TAP's tx_dropped in the namespace, the NIC's RX drop counters), or the test
fails."""

from __future__ import annotations

import json

import pytest
from kit.netns_exec import ECHO_THROUGH, run_in_netns

pytestmark = pytest.mark.timeout(240)

K4, H4, K6, H6 = "198.18.0.1", "198.18.0.2", "2001:db8::1", "2001:db8::2"
#: The underlay's MTU on the kernel's side: less than a full inner frame (1514) plus 50.
UNDERLAY_MTU = 1400

PEER_SCRIPT = ECHO_THROUGH + r"""
import json, random, socket
SIZE = {size}

def snmp():
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Ip:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))

before = snmp()
data = random.Random(7).randbytes(SIZE)
c = socket.create_connection(("198.19.1.2", 7), timeout=60)
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
got = echo_through(c, data)
mss_after = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
c.close()
after = snmp()
print(json.dumps({{"ok": got == data, "got": len(got), "mss": mss,
                  "mss_after": mss_after,
                  "frag_creates": after["FragCreates"] - before["FragCreates"],
                  "frag_oks": after["FragOKs"] - before["FragOKs"]}}))
"""


def _fragmenting_tunnel(ns):
    """VNI 10 over IPv4 with an inner MTU of 1500 on an underlay of 1400. The inner route's
    MTU is locked: the VXLAN driver would otherwise lower the inner path MTU to what fits
    unfragmented (underlay less 50), and TCP would stop sending full-size segments."""
    from kit.netns import ns_run
    from hetnic.host.tunnel_kernel import KernelTunnel, add_kernel_tunnels
    tunnel = KernelTunnel("vx10", "vxlan", 10, K4, H4, "198.19.1")
    add_kernel_tunnels(ns, [tunnel])
    ns_run(ns, "ip", "link", "set", "vx10", "mtu", "1500")
    ns_run(ns, "ip", "route", "replace", "198.19.1.0/24", "dev", "vx10", "src", "198.19.1.1",
           "mtu", "lock", "1500")
    return tunnel


def _tap_tx_dropped(ns) -> int:
    """Frames the kernel dropped at the TAP's transmit queue (the host reads too slowly)."""
    from kit.netns import ns_run
    return int(ns_run(ns, "cat", "/sys/class/net/tap0/statistics/tx_dropped").stdout)


def _nic_drops(nic) -> dict[str, int]:
    """The NIC's RX drop counters: every drop reason, no buffer and too long per queue."""
    return {k: v for k, v in nic.counters().items()
            if k.startswith(("drop[", "rxq_no_buffer", "rxq_too_long"))}


def test_kernel_fragments_reach_the_adapter_only_and_tcp_is_byte_exact():
    from kit.netns import netns, require_netns, tap_in_netns
    from hetnic.host.nic import Nic
    from hetnic.host.stack_host import StackHost, StackHostTimeout
    require_netns()
    with netns("hn-tunfrag") as ns, \
            tap_in_netns(ns, "tap0", f"{K4}/24", f"{K6}/64", mtu=UNDERLAY_MTU) as tap, \
            Nic.open("sim", width=64, rx_queues=8) as nic:
        tunnel = _fragmenting_tunnel(ns)
        host = StackHost(nic, tap, addr4=f"{H4}/24", addr6=f"{H6}/64", seed=5,
                         tunnels=[tunnel.spec()])
        try:
            tap_before, nic_before = _tap_tx_dropped(ns), _nic_drops(nic)
            out = run_in_netns(ns, host, PEER_SCRIPT.format(size=200_000), 120)
            result = json.loads(out.strip().splitlines()[-1])
            # a datagram the kernel sent just before the peer exited (a retransmission) may
            # still be on its way through the TAP and the NIC: let it arrive
            try:
                host.run(until=lambda: host.adapter.reassembly.stats()["reassembled"]
                         >= result["frag_oks"], timeout=5)
            except StackHostTimeout:
                pass
            tap_dropped = _tap_tx_dropped(ns) - tap_before
            nic_dropped = {k: v - nic_before[k] for k, v in _nic_drops(nic).items()
                           if v != nic_before[k]}
            stats = host.adapter.tunnel_stats()
            frag = stats["reassembly"]
            others = {name: (s.iface.ip4.reassembler.fragments,
                             s.iface.ip6.reassembler.fragments)
                      for name, s in host.stacks.items() if name != "tunnel"}
            print(json.dumps({"kernel": result, "adapter": frag, "tap_tx_dropped": tap_dropped,
                              "nic_drops": nic_dropped}))
        finally:
            host.close()
    assert result["ok"], result
    # full-size segments all along: the adapter's MSS (its inner MTU 1450 less 40), less the
    # 12 bytes of the timestamp option (TCP_MAXSEG is the data per segment)
    assert result["mss"] == result["mss_after"] == 1410 - 12, result
    # the kernel fragmented each full-size segment's outer datagram (1550 bytes on a 1400
    # underlay)
    assert result["frag_oks"] >= 200_000 // 1410 and result["frag_creates"] >= \
        result["frag_oks"], result
    # The kernel's count of fragmented datagrams (FragOKs) includes some it "fragmented"
    # into one piece: a whole datagram (MF clear, offset 0) that reaches the adapter as one
    # and is no fragment. An outer datagram here (at most 1550 bytes on a 1400 underlay)
    # makes one or two pieces, so FragCreates - FragOKs is the number split in two.
    split = result["frag_creates"] - result["frag_oks"]
    assert 0 <= split <= result["frag_oks"], result
    # Every datagram split in two was reassembled, or one of its fragments was dropped where
    # a counter says so: at the TAP's queue in the kernel (tx_dropped: the host did not read
    # the TAP fast enough) or in the NIC (a drop reason, no RX buffer). A datagram that lost
    # one fragment leaves the other pending in the reassembly.
    missing = split - frag["reassembled"]
    pending = frag["fragments"] - 2 * frag["reassembled"]
    lost_fragments = 2 * missing - pending
    counted = tap_dropped + sum(nic_dropped.values())
    assert missing >= 0 and 0 <= pending <= missing, (frag, result)
    assert lost_fragments <= counted, ("fragments lost without a counted drop", frag, result,
                                       tap_dropped, nic_dropped)
    assert frag["reassembled"] >= 200_000 // 1398, (frag, result)
    assert (frag["timeouts"], frag["overlaps"], frag["over_limit"], frag["datagrams"]) == \
        (0, 0, 0, pending), frag
    assert stats["drops"] == {}
    row = stats["tunnels"][tunnel.spec().name]
    assert row["drops"] == {} and row["bytes_in"] >= 200_000, row
    # no fragment reached any other instance
    assert others and all(v == (0, 0) for v in others.values()), others
