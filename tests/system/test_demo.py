"""``hetnic demo`` as ``make demo`` runs it, with a small traffic mix: the exit status, the
tables, report.json, records.jsonl and the figure; and a bad ``--pcap`` as a user meets it."""

import json

import pytest

import hetnic.replay
from hetnic.__main__ import main
from hetnic.demo import INSTANCES, RX_QUEUES

pytestmark = pytest.mark.timeout(300)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_small_mix(tmp_path, capsys):
    frames, seed = 1500, 3
    print(f"seed {seed}")
    out = tmp_path / "demo"
    code = main(["demo", "--frames", str(frames), "--seed", str(seed), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    assert "100%" in captured.err                       # the progress reached the end
    assert ("field by field with the software model: 0 mismatches") in captured.out
    assert str(out.resolve()) in captured.out

    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == frames
    assert report["model_mismatches"] == 0
    assert report["counters_agree"] is True
    assert all(report["counter_checks"].values())
    queues = report["per_queue"]
    assert [q["queue"] for q in queues] == list(range(RX_QUEUES))
    assert sum(q["packets"] for q in queues) == report["delivered"] > 0
    assert all(q["nic_packets"] == q["packets"] + q["drops"] for q in queues)
    # Every queue belongs to the instance whose RETA slice covers it, and every instance got
    # traffic and has latencies.
    owners = {q: inst.name for inst in INSTANCES for q in inst.queue_range}
    assert {q["queue"]: q["instance"] for q in queues} == owners
    for inst in report["per_instance"]:
        assert inst["frames"] > 0, inst["name"]
        lat = inst["latency"]["cycles"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(i["frames"] for i in report["per_instance"]) == report["delivered"]
    rules = {r["name"]: r for r in report["per_rule"]}
    assert rules["block-udp-5000"]["frames"] > 0
    assert all(r["frames"] == r["nic_hits"] for r in report["per_rule"])
    drops = {d["reason"]: d for d in report["drops"]}
    assert drops["rule"]["model"] == rules["block-udp-5000"]["frames"]
    assert not any(k.startswith("bucket_packets") for k in report["counters"])

    figure = out / "figure.png"
    assert report["figure"] == str(figure.resolve())
    png = figure.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 20_000

    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == frames
    records = [json.loads(line) for line in lines]
    assert [r["index"] for r in records] == list(range(frames))
    assert sum(r["delivered"] for r in records) == report["delivered"]
    # Low-delay instances poll more often than throughput ones: their worst case is shorter.
    by_name = {i["name"]: i["latency"]["cycles"] for i in report["per_instance"]}
    assert by_name["low-delay"]["max"] < by_name["throughput"]["p50"]


def _spoil_counter(result):
    result.counters["queue_packets[7]"] += 1


def _spoil_model(result):
    result.mismatches.append((5, {"hash": (1, 2)}))


@pytest.mark.parametrize("spoil", [_spoil_counter, _spoil_model])
def test_demo_reports_disagreement(tmp_path, capsys, monkeypatch, spoil):
    """A NIC counter or a completion that disagrees with the model makes the exit status 1."""
    real = hetnic.replay.replay_frames

    def spoilt(*args, **kwargs):
        result = real(*args, **kwargs)
        spoil(result)
        return result
    monkeypatch.setattr(hetnic.replay, "replay_frames", spoilt)
    code = main(["demo", "--frames", "200", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    if spoil is _spoil_counter:
        assert report["counters_agree"] is False
        assert report["per_queue"][7]["agree"] is False
        assert "NIC counters agree with what software received: NO" in captured.out
    else:
        assert report["model_mismatches"] == 1
        assert "mismatch at frame 5" in captured.err


def test_demo_missing_pcap(tmp_path, capsys):
    missing = tmp_path / "nothing.pcap"
    code = main(["demo", "--pcap", str(missing), "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert str(missing) in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""
    assert not (tmp_path / "demo").exists()
