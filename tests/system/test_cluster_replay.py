"""``hetnic replay --cluster``: sharded replay on a local Dask cluster of 2 workers equals the
one-machine replay on the real captures in tests/data/pcap (copies of two of
../shared/data/pcap, see SOURCES.md there); a worker killed mid-run; the bad inputs."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="needs the cluster extra: "
                                  "pip install hetnic[cluster]")
import cloudpickle  # noqa: E402  (a dependency of distributed)

from hetnic.__main__ import main  # noqa: E402
from hetnic.bench_cluster import STABLE_FIELDS, same_records  # noqa: E402
from hetnic.cli.replay import _simulated_build  # noqa: E402
from hetnic.cluster import (ClusterError, ClusterSpec, Task, check_versions,  # noqa: E402
                            open_cluster, prune_cache, replay_on_cluster, run_tasks)
from hetnic.config import RxConfig  # noqa: E402
from hetnic.replay import read_capture, replay_frames  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "pcap"
N_RULES = _simulated_build(64).n_rules


@pytest.fixture(autouse=True)
def result_cache(tmp_path, monkeypatch):
    """The cluster's result cache (read and written by the client only) in the test's own
    folder: not the user's, and never a result of an earlier run."""
    monkeypatch.setenv("HETNIC_CLUSTER_CACHE", str(tmp_path / "cluster-cache"))
    return tmp_path / "cluster-cache"

# The helper functions below run on the workers: ship them by value, not by module name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with open_cluster(ClusterSpec(workers=2)) as c:
        yield c


def single(path, config):
    return replay_frames(read_capture(path), config, check=True)


# The ethereum capture takes minutes on 2 cores: slow; the smaller one runs by default.
@pytest.mark.parametrize("name, config", [
    pytest.param("ethereum.pcap", RxConfig(queues=16), marks=pytest.mark.slow),
    ("WebattackRCE.pcap", RxConfig(queues=4, symmetric=True)),
])
def test_sharded_replay_equals_single(client, name, config):
    path = CAPTURES / name
    sharded = replay_on_cluster(client, str(path), config, cache=False, progress=False)
    one = single(path, config)
    assert sharded.stats["shards"] == 2
    assert sharded.mismatches == [] and one.mismatches == []
    assert same_records(one, sharded, N_RULES)
    assert sharded.stats["frames"] == one.stats["frames"]
    assert sharded.stats["delivered"] + sharded.stats["queue_drops"] == \
        one.stats["delivered"] + one.stats["queue_drops"]


def test_frames_shipped_equal_path(client):
    """A cluster at an address gets the frames, not the path: the same records."""
    path, config = CAPTURES / "WebattackRCE.pcap", RxConfig(queues=8)
    shipped = replay_on_cluster(client, str(path), config, ship_frames=True, shards=3,
                                cache=False, progress=False)
    assert same_records(single(path, config), shipped, N_RULES)


def test_worker_killed_mid_run(client):
    """SIGKILL a worker while it replays a shard: Dask reruns its shards elsewhere and the
    records are the same. The smaller capture in 4 shards: the ethereum one took over 120 s
    of a loaded CI run."""
    path, config = CAPTURES / "WebattackRCE.pcap", RxConfig(queues=8)
    pids = client.run(os.getpid)
    result, killed = {}, []

    def go():
        try:
            result["r"] = replay_on_cluster(client, str(path), config, shards=4, cache=False,
                                            progress=False)
        except BaseException as exc:        # re-raised below, in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.monotonic() + 60
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith("hetnic-replay") for k in keys):
                os.kill(pids[worker], signal.SIGKILL)
                killed.append(worker)
                break
        time.sleep(0.005)
    thread.join(120)
    assert not thread.is_alive(), "the replay did not finish within 120 s"
    if "error" in result:
        raise result["error"]
    assert killed, "no replay task was seen running"
    assert same_records(single(path, config), result["r"], N_RULES)
    client.wait_for_workers(2, timeout=60)


def _ok(x):
    return x * 2


def _fails_on(x, bad):
    if x == bad:
        raise RuntimeError(f"broken input {x}")
    return x * 2


def test_failing_shard_named_others_kept(client):
    tag = uuid.uuid4().hex
    tasks = [Task(f"shard {i} of 3", _fails_on, (i, 1), key=f"{tag}-{i}") for i in range(3)]
    with pytest.raises(ClusterError, match=r"shard 1 of 3 failed 3 times \(RuntimeError: "
                       r"broken input 1\); the 2 other results are cached"):
        run_tasks(client, tasks, progress=False)
    # The rerun computes only shard 1 (the others would fail if they ran again).
    again = [Task(t.name, _fails_on, (i, 0 if i != 1 else -1), key=t.key)
             for i, t in enumerate(tasks)]
    assert run_tasks(client, again, progress=False) == [0, 2, 4]


def test_no_cache_and_pruning(client, result_cache):
    tasks = [Task(f"task {i}", _ok, (i,), key=f"k{i}") for i in range(3)]
    assert run_tasks(client, tasks, progress=False, cache=False) == [0, 2, 4]
    assert not list(result_cache.glob("*.pickle"))
    hits: set = set()
    assert run_tasks(client, tasks, progress=False, hits=hits) == [0, 2, 4]
    assert hits == set()
    assert run_tasks(client, tasks, progress=False, hits=hits) == [0, 2, 4]
    assert hits == {0, 1, 2}
    files = sorted(result_cache.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 3
    os.utime(files[0], (1, 1))
    assert prune_cache(limit=sum(p.stat().st_size for p in files) - 1) == 1
    assert not files[0].exists() and files[1].exists()


def _fake_version():
    from hetnic import cluster
    cluster.code_version = lambda: "0.0.1+fake"


def _fake_sources():
    from hetnic import cluster
    cluster.source_digest = lambda: "0123456789abcdef"


def _real_version():
    import importlib
    from hetnic import cluster
    importlib.reload(cluster)


@pytest.mark.parametrize("fake, theirs", [(_fake_version, r"0\.0\.1\+fake sources \w+"),
                                          (_fake_sources, r".* sources 0123456789abcdef")])
def test_other_hetnic_on_workers_refused(client, fake, theirs):
    """The release or only the sources (an editable install) differ: refused at the start,
    and by every task (a worker that joins later)."""
    client.run(fake)
    try:
        with pytest.raises(ClusterError, match=rf"2 of 2 workers run another hetnic "
                           rf"\(.*: {theirs}, here: .*\); install the same hetnic"):
            check_versions(client)
        with pytest.raises(ClusterError, match=rf"task 0 failed 1 times \(ClusterError: "
                           rf"this worker runs another hetnic \({theirs}, the client"):
            run_tasks(client, [Task("task 0", _ok, (1,))], retries=0, progress=False)
    finally:
        client.run(_real_version)
    check_versions(client)


@pytest.mark.timeout(30)
def test_unreachable_address_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"cannot reach the cluster at tcp://127\.0\.0\.1:9 "):
        with open_cluster(ClusterSpec(address="tcp://127.0.0.1:9")):
            pass
    assert time.monotonic() - t0 < 10


def test_cli_cluster_local(tmp_path, capsys):
    """``hetnic replay --cluster local:2`` with classifier rules writes the records of the
    one-machine run."""
    path = CAPTURES / "WebattackRCE.pcap"
    rules = tmp_path / "rules.toml"
    rules.write_text('[default]\ninstance = 0\n\n[[rule]]\nname = "web"\nip_proto = "tcp"\n'
                     'dst_port = 8080\ninstance = 2\nreta_offset = 4\nreta_size = 2\n')
    a, b = tmp_path / "one.jsonl", tmp_path / "cluster.jsonl"
    options = ["--queues", "8", "--rules", str(rules)]
    assert main(["replay", str(path), "--out", str(a), *options]) == 0
    assert main(["replay", str(path), "--out", str(b), *options, "--cluster", "local:2"]) == 0
    one = [json.loads(line) for line in a.read_text().splitlines()]
    two = [json.loads(line) for line in b.read_text().splitlines()]
    assert len(one) == len(two) == 797
    assert sum(r["rule"] == 0 for r in one) > 100
    assert [{f: r[f] for f in STABLE_FIELDS} for r in one] == \
        [{f: r[f] for f in STABLE_FIELDS} for r in two]
    capsys.readouterr()


@pytest.mark.parametrize("spec, message", [
    ("local:0", "local:N needs N from 1 to 256"),
    ("nowhere", "give local, local:N or a scheduler address"),
])
def test_cli_bad_cluster_spec(tmp_path, capsys, spec, message):
    assert main(["replay", str(CAPTURES / "ethereum.pcap"), "--out",
                 str(tmp_path / "o.jsonl"), "--cluster", spec]) == 2
    assert message in capsys.readouterr().err


PROBE = """
import sys
{block}
from hetnic.__main__ import main
code = main(sys.argv[1:])
print("DASK_LOADED" if any(m.split(".")[0] in ("dask", "distributed") for m in sys.modules)
      else "DASK_NOT_LOADED")
sys.exit(code)
"""


@pytest.mark.timeout(660)
@pytest.mark.parametrize("cluster", [False, True])
def test_without_the_extra(tmp_path, cluster):
    """Without Dask installed the one-machine path works and imports none of it;
    ``--cluster`` is a one-line error naming the extra. (The replay builds the 64-bit HIL
    simulator when no test before it in this cache did: minutes on a loaded machine.)"""
    block = "sys.modules['distributed'] = None; sys.modules['dask'] = None"
    argv = ["replay", str(CAPTURES / "WebattackRCE.pcap"), "--out", str(tmp_path / "o.jsonl"),
            "--no-check"] + (["--cluster", "local:2"] if cluster else [])
    proc = subprocess.run([sys.executable, "-c", PROBE.format(block=block if cluster else ""),
                           *argv], capture_output=True, text=True, timeout=600)
    if cluster:
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == (
            "hetnic replay: error: --cluster needs Dask distributed: pip install "
            "hetnic[cluster]")
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "DASK_NOT_LOADED"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_more_workers_than_cores():
    """``local:8`` on a 2-core machine: the same records."""
    config = RxConfig(queues=16)
    with open_cluster(ClusterSpec(workers=8)) as c:
        for name in ("ethereum.pcap", "WebattackRCE.pcap"):
            path = CAPTURES / name
            sharded = replay_on_cluster(c, str(path), config, cache=False, progress=False)
            assert sharded.stats["shards"] == 8
            assert same_records(single(path, config), sharded, N_RULES)
