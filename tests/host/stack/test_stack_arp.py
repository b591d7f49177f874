"""ARP on the stack's NetInterface: answering, resolving, the cache's states and bounds."""

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from hetnic.host.stack.address import to_addr as ip
from hetnic.host.stack.counters import StackCounters
from hetnic.host.stack.interface import NetInterface
from hetnic.host.stack.neighbours import DELAY, PROBE, REACHABLE, STALE

OUR_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
OTHER_MAC = "02:00:00:00:00:03"
BCAST = "ff:ff:ff:ff:ff:ff"


US, PEER, OTHER = ip("198.18.0.2"), ip("198.18.0.1"), ip("198.18.0.3")


def make_iface(**kw):
    counters = StackCounters()
    iface = NetInterface(bytes.fromhex(OUR_MAC.replace(":", "")), [(US, 24)], [], counters, **kw)
    return iface, counters


def arp(op, hwsrc, psrc, pdst, dst=BCAST, hwdst="00:00:00:00:00:00"):
    return bytes(Ether(src=hwsrc, dst=dst) / ARP(op=op, hwsrc=hwsrc, psrc=psrc, pdst=pdst,
                                                 hwdst=hwdst))


def take(iface):
    frames = [Ether(f) for f in iface.out]
    iface.out.clear()
    return frames


def test_reply_to_request_for_our_address_and_learn_sender():
    iface, counters = make_iface()
    iface.receive(arp(1, PEER_MAC, "198.18.0.1", "198.18.0.2"), 0.0)
    (reply,) = take(iface)
    assert reply.dst == PEER_MAC and reply.src == OUR_MAC
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == OUR_MAC
    assert reply[ARP].psrc == "198.18.0.2" and reply[ARP].pdst == "198.18.0.1"
    assert reply[ARP].hwdst == PEER_MAC
    assert iface.neighbours.state(PEER) == REACHABLE
    assert counters.arp_in == 1 and counters.arp_out == 1 and counters.drops == {}


def test_request_for_other_address_is_counted_not_answered_not_learnt():
    iface, counters = make_iface()
    iface.receive(arp(1, PEER_MAC, "198.18.0.1", "198.18.0.9"), 0.0)
    assert iface.out == []
    assert counters.drops == {"arp_not_ours": 1}
    assert iface.neighbours.state(PEER) is None


def test_resolve_queues_packets_then_sends_them_on_reply():
    iface, counters = make_iface()
    for n in range(3):
        iface.send_ip(US, PEER, 17, bytes(UDP(sport=1, dport=2) / bytes([n])), 0.0)
    (request,) = take(iface)
    assert request.dst == BCAST and request[ARP].op == 1
    assert request[ARP].pdst == "198.18.0.1" and request[ARP].psrc == "198.18.0.2"
    iface.receive(arp(2, PEER_MAC, "198.18.0.1", "198.18.0.2", dst=OUR_MAC, hwdst=OUR_MAC), 0.1)
    frames = take(iface)
    assert [bytes(f[UDP].payload) for f in frames] == [b"\0", b"\1", b"\2"]
    assert all(f.dst == PEER_MAC and f[IP].dst == "198.18.0.1" for f in frames)
    # Further packets go straight out.
    iface.send_ip(US, PEER, 17, b"abcdefgh", 0.2)
    assert len(take(iface)) == 1


def test_unresolved_neighbour_retries_then_drops_queue():
    iface, counters = make_iface(arp_retries=3, arp_retry_interval=1.0)
    iface.send_ip(US, PEER, 17, b"12345678", 0.0)
    iface.send_ip(US, PEER, 17, b"12345678", 0.0)
    requests = len(take(iface))
    now = 0.0
    for _ in range(10):
        deadline = iface.next_deadline()
        if deadline is None:
            break
        now = deadline
        iface.poll(now)
        requests += len(take(iface))
    assert requests == 3
    assert iface.next_deadline() is None
    assert counters.drops == {"arp_unresolved": 2}
    assert iface.neighbours.state(PEER) is None


def test_queue_bounds_per_neighbour_and_total():
    iface, counters = make_iface(arp_queue=2)
    for _ in range(5):
        iface.send_ip(US, PEER, 17, b"12345678", 0.0)
    assert counters.drops["arp_queue_full"] == 3
    for last in range(3, 12):
        iface.send_ip(US, ip(f"198.18.0.{last}"), 17, b"12345678", 0.0)
        iface.send_ip(US, ip(f"198.18.0.{last}"), 17, b"12345678", 0.0)
    # 4 * arp_queue = 8 packets may wait in all.
    assert counters.drops["arp_queue_full"] == 3 + (2 + 9 * 2 - 8)


def test_gratuitous_arp_updates_existing_entry_only():
    iface, counters = make_iface()
    iface.receive(arp(1, OTHER_MAC, "198.18.0.3", "198.18.0.3"), 0.0)
    assert iface.neighbours.state(OTHER) is None
    iface.receive(arp(1, PEER_MAC, "198.18.0.1", "198.18.0.2"), 0.0)
    take(iface)
    iface.receive(arp(1, OTHER_MAC, "198.18.0.1", "198.18.0.1"), 1.0)
    assert iface.neighbours.mac(PEER) == bytes.fromhex(OTHER_MAC.replace(":", ""))
    assert iface.neighbours.state(PEER) == STALE
    assert iface.out == []


def test_expiry_goes_stale_then_delay_then_unicast_probe():
    iface, _ = make_iface(arp_timeout=10.0)
    iface.receive(arp(1, PEER_MAC, "198.18.0.1", "198.18.0.2"), 0.0)
    take(iface)
    iface.poll(10.0)
    assert iface.neighbours.state(PEER) == STALE
    iface.send_ip(US, PEER, 17, b"12345678", 10.5)
    (data,) = take(iface)                       # a stale entry is still used
    assert data.dst == PEER_MAC
    assert iface.neighbours.state(PEER) == DELAY
    iface.poll(iface.next_deadline())
    (probe,) = take(iface)
    assert probe[ARP].op == 1 and probe.dst == PEER_MAC
    assert iface.neighbours.state(PEER) == PROBE
    iface.receive(arp(2, PEER_MAC, "198.18.0.1", "198.18.0.2", dst=OUR_MAC, hwdst=OUR_MAC), 16.0)
    assert iface.neighbours.state(PEER) == REACHABLE


@pytest.mark.parametrize("field, value, reason", [
    ("hwtype", 6, "arp_malformed"),
    ("ptype", 0x86DD, "arp_malformed"),
    ("hwlen", 8, "arp_malformed"),
    ("op", 3, "arp_malformed"),
    ("hwsrc", "ff:ff:ff:ff:ff:ff", "arp_bad_sender"),
    ("psrc", "198.18.0.2", "arp_bad_sender"),
])
def test_malformed_arp_is_counted(field, value, reason):
    iface, counters = make_iface()
    packet = Ether(src=PEER_MAC, dst=BCAST) / ARP(op=1, hwsrc=PEER_MAC, psrc="198.18.0.1",
                                                  pdst="198.18.0.2")
    setattr(packet[ARP], field, value)
    iface.receive(bytes(packet), 0.0)
    assert counters.drops == {reason: 1}
    assert iface.out == []


def test_truncated_arp_is_counted():
    iface, counters = make_iface()
    frame = arp(1, PEER_MAC, "198.18.0.1", "198.18.0.2")
    iface.receive(frame[:14 + 27], 0.0)
    assert counters.drops == {"arp_truncated": 1}


def test_frame_for_another_mac_and_runt():
    iface, counters = make_iface()
    iface.receive(arp(1, PEER_MAC, "198.18.0.1", "198.18.0.2", dst=OTHER_MAC), 0.0)
    iface.receive(b"\x01" * 13, 0.0)
    assert counters.drops == {"eth_not_ours": 1, "eth_runt": 1}


def test_spoofed_senders_cannot_grow_the_cache_without_bound():
    iface, counters = make_iface(neighbour_limit=16)
    for n in range(100):
        iface.receive(arp(1, PEER_MAC, f"198.18.0.{n + 3}", "198.18.0.2"), float(n))
    assert len(iface.neighbours) == 16
    assert counters.drops == {"neighbour_evicted": 84}
    # The newest are kept, and our own resolution still finds room.
    assert iface.neighbours.state(ip("198.18.0.102")) == REACHABLE
    iface.send_ip(US, PEER, 17, b"12345678", 200.0)
    assert iface.neighbours.state(PEER) == "INCOMPLETE"
