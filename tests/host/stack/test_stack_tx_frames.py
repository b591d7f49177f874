"""The TCP send path's whole-frame build (Ethernet + IPv4 + TCP in one pack, from the IP
layer's prebuilt path) gives the same frames the IP layer would: checked field by field and
checksum by checksum with scapy, and rebuilt after the neighbour cache changes."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from stack_pair import IP4_A, IP4_B, MAC_A, MAC_B, Pair


def _tcp_frames(frames: list[bytes]) -> list:
    out = []
    for frame in frames:
        pkt = Ether(frame)
        if pkt.haslayer(TCP):
            out.append(pkt)
    return out


def _check(pkt, payload_len: int | None = None) -> None:
    ip, tcp = pkt[IP], pkt[TCP]
    assert pkt.src == MAC_A and pkt.dst == MAC_B
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.flags.DF, ip.ihl) == (IP4_A, IP4_B, 64, 6,
                                                                        True, 5)
    raw_ip, raw_tcp = ip.chksum, tcp.chksum
    del ip.chksum, tcp.chksum                       # scapy recomputes them
    again = Ether(bytes(pkt))
    assert again[IP].chksum == raw_ip and again[TCP].chksum == raw_tcp
    assert ip.len == len(bytes(ip))
    if payload_len is not None:
        assert len(bytes(tcp.payload)) == payload_len


def test_whole_frames_match_what_the_ip_layer_builds():
    pair = Pair()
    pair.now = 10.0
    listener, client, server = pair.connect(4, port=80)
    data = bytes(range(256)) * 40
    client.send(data)
    frames = pair.a.poll(pair.now)
    pkts = [p for p in _tcp_frames(frames) if len(bytes(p[TCP].payload))]
    assert len(pkts) >= 2
    idents = []
    for pkt in pkts:
        _check(pkt)
        idents.append(pkt[IP].id)
        assert "Timestamp" in dict(pkt[TCP].options) and pkt[TCP].dataofs == 8
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(idents, idents[1:]))
    for frame in frames:
        pair.b.receive(frame, pair.now)
    # The IP layer forgets its paths (as when a neighbour changes): the next frames are
    # built from the new path and stay right.
    gen = pair.a.iface.ip4.gen
    pair.a.iface.ip4.forget()
    assert pair.a.iface.ip4.gen == gen + 1
    pair.run(lambda: client._conn.snd_una == client._conn.snd_max)
    client.send(b"after the change")
    later = pair.a.poll(pair.now)
    pkts = [p for p in _tcp_frames(later) if len(bytes(p[TCP].payload))]
    assert len(pkts) == 1
    _check(pkts[0], len(b"after the change"))
    for frame in later:
        pair.b.receive(frame, pair.now)
    got = bytearray()

    def all_read() -> bool:
        piece = server.recv(1 << 20)
        if piece:
            got.extend(piece)
        return len(got) >= len(data) + 16

    assert pair.run(all_read)
    assert bytes(got) == data + b"after the change"
