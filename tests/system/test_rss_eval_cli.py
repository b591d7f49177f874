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
    assert "own vs static" in out and "guarded" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scored_windows"] == 3 and report["queues"] == 8


def bad_cases(tmp_path, capture):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all")
    (tmp_path / "empty").mkdir()
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
        (["--all", str(tmp_path / "nowhere")], "--all " + str(tmp_path / "nowhere") +
         ": no such folder"),
        (["--all", str(tmp_path / "empty")], "no .pcap or .pcapng files in it"),
        (["--all", str(tmp_path), str(capture)], "--all DIR takes no capture"),
        (["--all", str(tmp_path), "--window", "10"], "--all DIR takes no capture"),
        ([str(capture), "--doc", "x.md"], "--doc FILE goes with --all DIR"),
    ]


def test_bad_input_is_one_line(tmp_path, capture, capsys):
    for args, message in bad_cases(tmp_path, capture):
        code, out, err = run(capsys, "rss-eval", *args, "--out", str(tmp_path / "o"))
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.startswith("hetnic rss-eval: error: ") and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert out == ""


def test_all_writes_the_table_into_a_document(capture, tmp_path, capsys):
    """``--all DIR --doc FILE``: every capture of DIR at 4, 8 and 16 queues, the table
    between the marker lines of FILE (the rest of FILE unchanged), and captures.md/json."""
    from hetnic.cli.rss_eval import DOC_BEGIN, DOC_END
    folder = tmp_path / "caps"
    folder.mkdir()
    (folder / "b.pcap").write_bytes(capture.read_bytes())
    (folder / "notes.txt").write_text("not a capture")
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\n{DOC_BEGIN}\nold table\n{DOC_END}\n\nAfter.\n")
    code, out, err = run(capsys, "rss-eval", "--all", str(folder), "--doc", str(doc),
                         "--candidates", "8", "--out", str(tmp_path / "o"))
    assert code == 0, err
    table = (tmp_path / "o" / "captures.md").read_text()
    assert doc.read_text() == f"# Title\n\n{DOC_BEGIN}\n{table}{DOC_END}\n\nAfter.\n"
    rows = [line for line in table.splitlines() if line.startswith("| b.pcap |")]
    assert len(rows) == 3 * len(POLICIES)
    reports = json.loads((tmp_path / "o" / "captures.json").read_text())
    assert [r["queues"] for r in reports] == [4, 8, 16]
    assert all(r["scored_windows"] >= 20 for r in reports)
    assert table.strip() in out

    doc.write_text("# no markers\n")
    code, out, err = run(capsys, "rss-eval", "--all", str(folder), "--doc", str(doc),
                         "--candidates", "8", "--out", str(tmp_path / "o"))
    assert code == 2 and "has no '<!-- hetnic rss-eval --all: begin" in err
    assert len(err.strip().splitlines()) == 1


def test_capture_without_ip_traffic(tmp_path, capsys):
    """Nothing RSS hashes: all of it is one lump on table entry 0's queue, for every policy
    (a defined result, not an error)."""
    path = tmp_path / "arp.pcap"
    wrpcap(str(path), [Ether(src=MAC_SRC, dst="ff:ff:ff:ff:ff:ff") /
                       ARP(hwsrc=MAC_SRC, psrc="10.0.0.1", pdst=f"10.0.0.{i}")
                       for i in range(2, 42)])
    code, out, err = run(capsys, "rss-eval", str(path), "--queues", "4", "--json",
                         "--candidates", "8", "--out", str(tmp_path / "o"))
    assert code == 0, err
    report = json.loads(out)
    assert report["unhashed_packets"] == 40 and report["flows"] == 0
    for name, p in report["policies"].items():
        assert p["next_window_max_mean"] == 4.0 and p["vs_static"] == 0, name


def test_capture_timestamps_going_backwards_are_not_read(capture, tmp_path, capsys):
    """A capture is windowed by packet count in file order: timestamps that go backwards
    give the same report as the same frames in order."""
    from scapy.utils import rdpcap
    packets = rdpcap(str(capture))
    for i, packet in enumerate(packets):
        packet.time = 1000.0 - i * (0.5 if i % 7 else -3.0)
    backwards = tmp_path / "backwards.pcap"
    wrpcap(str(backwards), packets)
    reports = []
    for path in (capture, backwards):
        code, out, err = run(capsys, "rss-eval", str(path), "--queues", "4", "--json",
                             "--candidates", "8", "--out", str(tmp_path / "o"))
        assert code == 0, err
        report = json.loads(out)
        reports.append((report.pop("policies"), report.pop("series")))
    assert reports[0][1] == reports[1][1]
    assert {n: p["next_window_max_mean"] for n, p in reports[0][0].items()} == \
        {n: p["next_window_max_mean"] for n, p in reports[1][0].items()}
