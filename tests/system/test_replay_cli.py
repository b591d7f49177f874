"""``hetnic replay`` as a user runs it: pcap in, one JSON line per frame out."""

import ipaddress
import json
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcapng

from hetnic.__main__ import main
from hetnic.sim.model.toeplitz import hash_input_ipv4, hash_input_ipv6, toeplitz
from hetnic.protocol import MS_RSS_DEFAULT_KEY
from hetnic.sim.traffic import traffic_mix

pytestmark = pytest.mark.timeout(900)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_capture(path, frames, ng=False):
    """A classic pcap (written byte by byte, so odd frames stay exactly as given) or, with
    ``ng``, a pcapng through scapy."""
    if ng:
        wrpcapng(str(path), [Ether(f) for f in frames])
        return
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]   # LINKTYPE_ETHERNET
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", i, 0, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def expected_hash(frame: bytes, key: bytes, queues: int):
    """Independent of hetnic's parser: scapy dissects the frame, hetnic's Toeplitz hashes
    it (itself checked against the published vectors)."""
    pkt = Ether(frame)
    ip = pkt.getlayer(IP) or pkt.getlayer("IPv6")
    l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    if ip is None or l4 is None or pkt.getlayer("IP in ICMP") or pkt.getlayer("IPv6ExtHdrFragment"):
        return None
    if isinstance(ip, IP):
        if ip.flags.MF or ip.frag or ip.ihl != 5 or ip.len + 14 > len(frame):
            return None
        data = hash_input_ipv4(ip.src, ip.dst, l4.sport, l4.dport)
    else:
        if ip.nh not in (6, 17) or ip.plen + 54 > len(frame):
            return None
        data = hash_input_ipv6(ip.src, ip.dst, l4.sport, l4.dport)
    return toeplitz(key, data)


def test_replay_bad_and_good_frames(tmp_path, capsys):
    frames = [f for f, _ in traffic_mix(300, seed=11)]
    frames += [b"", b"\xff" * 5, b"\x00" * 9000]          # empty, runt, jumbo garbage
    pcap, out = tmp_path / "mix.pcap", tmp_path / "out.jsonl"
    write_capture(pcap, frames)
    rules = tmp_path / "rules.toml"
    rules.write_text('[default]\ninstance = 0\n\n[[rule]]\nname = "dns"\nip_proto = "udp"\n'
                     'dst_port = 53\ninstance = 2\nreta_offset = 4\nreta_size = 2\n')
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(out), "--queues", "4",
                       "--rules", str(rules))
    assert code == 0, err
    assert "model check: 0 mismatches" in err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [l["index"] for l in lines] == list(range(len(frames)))
    assert [l["len"] for l in lines] == [len(f) for f in frames]
    keys = {"index", "len", "hash", "hash_type", "queue", "instance", "rule", "drop"}
    assert all(keys <= set(l) for l in lines)
    drops = {l["drop"] for l in lines}
    assert {"runt", "oversize", "truncated", "bad_ihl", "bad_length"} <= drops
    assert lines[-3]["drop"] == "runt" and lines[-3]["sent"] is False
    assert lines[-1]["drop"] == "oversize"
    checked = 0
    for frame, line in zip(frames, lines):
        want = expected_hash(frame, MS_RSS_DEFAULT_KEY, 4) if line["drop"] is None else None
        if want is not None:
            assert line["hash"] == want, line
            assert line["queue"] == (line["hash"] & 511) % 4 if line["rule"] is None else True
            checked += 1
        if line["rule"] == 0:
            assert line["instance"] == 2 and line["queue"] in (0, 1)   # RETA entries 4, 5
    assert checked > 100


# The 8-bit build is a second Verilator harness (~80 s to build): the default run keeps the
# options on the 64-bit build every other system test shares, the slow tier adds width 8.
@pytest.mark.parametrize("width", ["64", pytest.param("8", marks=pytest.mark.slow)])
def test_replay_pcapng_width_and_options(tmp_path, capsys, width):
    frames = [f for f, _ in traffic_mix(40, seed=12)]
    pcap, out = tmp_path / "mix.pcapng", tmp_path / "out.jsonl"
    write_capture(pcap, frames, ng=True)
    key = bytes(range(1, 41))
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(out), "--width", width,
                       "--key", key.hex(), "--queues", "3", "--symmetric")
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(frames)
    assert all(l["queue"] < 3 for l in lines)


@pytest.mark.parametrize("args, message", [
    (["--key", "abcd"], "--key must be 40 bytes"),
    (["--key", "zz" * 40], "is not hexadecimal"),
])
def test_replay_bad_options(tmp_path, capsys, args, message):
    pcap = tmp_path / "one.pcap"
    write_capture(pcap, [bytes(60)])
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(tmp_path / "o"), *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_replay_bad_rules_file(tmp_path, capsys):
    pcap = tmp_path / "one.pcap"
    write_capture(pcap, [bytes(60)])
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ndst_prot = 5\n')
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(tmp_path / "o"),
                       "--rules", str(rules))
    assert code == 2 and "dst_prot" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"this is not a capture\n", b"", b"\xd4\xc3\xb2\xa1\x02"])
def test_replay_not_a_pcap(tmp_path, capsys, content):
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(content)
    code, _, err = run(capsys, "replay", str(bogus), "--out", str(tmp_path / "o"))
    assert code == 2
    assert err.startswith("hetnic replay: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_replay_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "replay", str(tmp_path / "nope.pcap"), "--out", "o")
    assert code == 2 and "no such file" in err


def test_ipv4_and_ipv6_hash_input_order():
    """The independent check above builds inputs in the spec order: src, dst, sport, dport."""
    data = hash_input_ipv4("1.2.3.4", "5.6.7.8", 1, 2)
    assert data == bytes([1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2])
    assert hash_input_ipv6("::1", "::2")[:16] == ipaddress.IPv6Address("::1").packed


def test_replay_unwritable_output_fails_before_simulating(tmp_path, capsys):
    pcap = tmp_path / "one.pcap"
    write_capture(pcap, [bytes(60)])
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(tmp_path / "no" / "o.jsonl"))
    assert code == 2 and "--out" in err and "Traceback" not in err
    assert "replaying" not in err


def test_replay_truncated_record(tmp_path, capsys):
    pcap = tmp_path / "cut.pcap"
    write_capture(pcap, [bytes(60), bytes(100)])
    pcap.write_bytes(pcap.read_bytes()[:-40])         # the last record loses 40 bytes
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(tmp_path / "o"))
    assert code == 2 and "truncated" in err and len(err.strip().splitlines()) == 1


def test_replay_refuses_non_ethernet_pcapng(tmp_path, capsys):
    from scapy.layers.l2 import CookedLinux
    from scapy.layers.inet import IP
    pcap = tmp_path / "sll.pcapng"
    wrpcapng(str(pcap), [CookedLinux() / IP(dst="10.0.0.1")])
    code, _, err = run(capsys, "replay", str(pcap), "--out", str(tmp_path / "o"))
    assert code == 2 and "not Ethernet" in err
