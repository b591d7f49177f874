"""``hetnic rss-eval`` as a user runs it: a capture or a synthetic workload in, a report of
next-window imbalance per RSS policy out."""

import json
import random

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from frames import MAC_DST, MAC_SRC
from hetnic.__main__ import main
from hetnic.rss_eval import POLICIES

pytestmark = pytest.mark.timeout(300)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """400 frames over 6 TCP/UDP flows of uneven size, plus a few ARP frames."""
    rng = random.Random(21)
    flows = [(f"10.0.{i}.1", f"10.1.{i}.2", 1000 + i, 80 + i) for i in range(6)]
    weights = [40, 20, 10, 5, 3, 1]
    packets = []
    for _ in range(400):
        src, dst, sport, dport = rng.choices(flows, weights)[0]
        l4 = TCP(sport=sport, dport=dport) if sport % 2 else UDP(sport=sport, dport=dport)
        packets.append(Ether(src=MAC_SRC, dst=MAC_DST) / IP(src=src, dst=dst) / l4 /
                       Raw(bytes(rng.randrange(200))))
        if rng.random() < 0.02:
            packets.append(Ether(src=MAC_SRC, dst="ff:ff:ff:ff:ff:ff") /
                           ARP(hwsrc=MAC_SRC, psrc="10.0.0.1", pdst="10.0.0.2"))
    path = tmp_path_factory.mktemp("cap") / "flows.pcap"
    wrpcap(str(path), packets)
    return path


def test_pcap_json(capture, tmp_path, capsys):
    code, out, err = run(capsys, "rss-eval", str(capture), "--queues", "4", "--json",
                         "--candidates", "16", "--out", str(tmp_path))
    assert code == 0, err
    report = json.loads(out)                   # stdout is exactly one JSON object
    assert set(report["policies"]) == set(POLICIES)
    assert report["flows"] == 6 and report["window"] == {"packets": report["packets"] // 10 +
                                                         (report["packets"] % 10 > 0)}
    for name, p in report["policies"].items():
        assert p["next_window_max_mean"] >= report["lower_bound"] - 1e-9, name
        assert isinstance(p["vs_static"], float)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_synthetic_table(tmp_path, capsys):
    code, out, err = run(capsys, "rss-eval", "--synthetic", "hadoop", "--flows", "400",
                         "--queues", "8", "--window", "250ms", "--candidates", "16",
                         "--out", str(tmp_path))
    assert code == 0, err
    for name in POLICIES:
        assert f"\n  {name} " in out
    assert "lower bound" in out and str(tmp_path / "figure.png") in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scored_windows"] == 3 and report["queues"] == 8


def bad_cases(tmp_path, capture):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all")
    single = tmp_path / "single.pcap"
    wrpcap(str(single), [Ether(src=MAC_SRC, dst=MAC_DST) / IP() / TCP()])
    return [
        (["--synthetic", "websearch", "--queues", "0"], "--queues must be from 1 to 256"),
        (["--synthetic", "websearch", "--queues", "257"], "--queues must be from 1 to 256"),
        (["--synthetic", "websearch", "--queues", "many"], "is not a whole number"),
        (["--synthetic", "websearch", "--window", "0"], "at least 1 packet"),
        (["--synthetic", "websearch", "--window", "0s"], "longer than 0"),
        (["--synthetic", "websearch", "--window", "fast"], "give seconds"),
        (["--synthetic", "web"], "choose one of websearch, datamining, hadoop"),
        (["--synthetic", "hadoop", "--flows", "0"], "--flows must be from 1"),
        (["--synthetic", "hadoop", "--margin", "nan"], "--margin must be from 0"),
        (["--synthetic", "hadoop", "--flows", "50", "--margin", "1"], "margin must be a number from 0 up to"),
        (["--synthetic", "hadoop", "--flows", "50", "--window", "5s"], "at least 2 are needed"),
        ([], "give a capture file or --synthetic"),
        ([str(capture), "--synthetic", "hadoop"], "give a capture file or --synthetic"),
        ([str(tmp_path / "missing.pcap")], "no such file"),
        ([str(garbage)], "not a pcap or pcapng file"),
        ([str(single)], "at least 2 are needed"),
        ([str(capture), "--window", "0.1s"], "give a number of packets"),
    ]


def test_bad_input_is_one_line(tmp_path, capture, capsys):
    for args, message in bad_cases(tmp_path, capture):
        code, out, err = run(capsys, "rss-eval", *args, "--out", str(tmp_path / "o"))
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.startswith("hetnic rss-eval: error: ") and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert out == ""
