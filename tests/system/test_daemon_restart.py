"""``hetnic restart`` against hetnicd with the kernel as the peer: the daemon (instances as
processes, on the simulated NIC on a TAP in a namespace), load from the kernel
(:mod:`hetnic.host.restart_load`: echo streams of bounded random lifetimes, each replaced at once,
and new connections at a steady rate, every byte checked), restarts with a changed
configuration through the CLI, and the bad inputs: each a one-line error, the daemon still
consistent and serving.

Default run: one restart under light load (10 streams, 20 new connections a second, IPv4
and IPv6) and the refusals and rollbacks. ``slow``: the issue's load (50 streams, 200 new
connections a second) and 20 restarts in a row.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kit.netns import netns, require_netns, tap_in_netns

from hetnic.host.daemon_client import spawn_daemon

pytestmark = pytest.mark.timeout(600)

POLICY = '[[grant]]\nusers = ["*"]\ninterfaces = ["*"]\noperations = ["*"]\n'
STEPS = ["transition-start", "redirect", "pin", "drain", "new-start", "redirect", "pin",
         "drain", "done"]


def low_delay(**fields) -> str:
    """An instances file with the low-delay instance changed by ``fields``."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    return f'[[instance]]\nprofile = "low-delay"\n{extra}'


class Daemon:
    def __init__(self, proc, folder: Path, ns: str, env: dict):
        self.proc, self.folder, self.ns, self.env = proc, folder, ns, env
        self.stopped = False                # a test stopped it on purpose
        self.sock = folder / "hetnic.sock"
        self.audit = folder / "audit.log"

    def cli(self, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hetnic", *args, "--socket",
                               str(self.sock)], capture_output=True, text=True,
                              timeout=timeout)

    def call(self, op: str, args: dict | None = None) -> dict:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(str(self.sock))
        with s, s.makefile("rb") as f:
            s.sendall(json.dumps({"v": 1, "id": 1, "op": op, "args": args or {}}).encode()
                      + b"\n")
            reply = json.loads(f.readline())
        assert reply["ok"], reply
        return reply["result"]

    def counters(self) -> dict:
        return self.call("counters.read")["daemon"]["restart"]

    def records(self, kind: str) -> list[dict]:
        return [r for r in map(json.loads, self.audit.read_text().splitlines())
                if r["kind"] == kind]

    def load(self, addr: str, **kw) -> subprocess.Popen:
        argv = []
        for k, v in kw.items():
            argv += [f"--{k}", *map(str, v if isinstance(v, tuple) else (v,))]
        return subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-m",
                                 "hetnic.host.restart_load", addr, *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)

    def hold_connection(self) -> subprocess.Popen:
        """A TCP echo connection from the namespace, open (one byte echoed) until the
        process's standard input closes."""
        hold = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c",
             "import socket,sys;s=socket.create_connection(('198.18.0.2',7),timeout=10);"
             "s.sendall(b'x');s.recv(1);print('open',flush=True);sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert hold.stdout.readline().strip() == "open"
        return hold

    def echo_once(self, addr: str = "198.18.0.2") -> bytes:
        """One connection to TCP echo from the namespace: what came back."""
        code = ("import socket,sys;s=socket.create_connection((sys.argv[1],7),timeout=10);"
                "s.sendall(b'ping-'*100);d=b''\nwhile len(d)<500:\n c=s.recv(4096)\n"
                " if not c: break\n d+=c\nsys.stdout.write(d.decode());s.close()")
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code,
                              addr], capture_output=True, timeout=60)
        return out.stdout


def stop_load(proc: subprocess.Popen) -> dict:
    """Close the load's standard input (it stops) and read its report."""
    if not proc.stdin.closed:
        proc.stdin.close()
    with proc.stdout:
        out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    return json.loads(out)


@contextlib.contextmanager
def running_daemon(name: str, instances: str | None = None, rules: bool = False,
                   **env_extra):
    """The daemon in a new namespace with its TAP (``instances``: an instances file's text;
    ``rules``: with ``--rules rules.toml``, empty at start; ``env_extra``: its
    environment)."""
    require_netns()
    folder = Path(tempfile.mkdtemp(prefix="hntest-restart-"))
    try:
        (folder / "policy.toml").write_text(POLICY)
        extra = []
        if instances is not None:
            (folder / "instances.toml").write_text(instances)
            extra = ["--instances", str(folder / "instances.toml")]
        if rules:
            (folder / "rules.toml").write_text("")
            extra += ["--rules", str(folder / "rules.toml")]
        (folder / "www").mkdir()
        (folder / "www" / "index.html").write_text("hello\n")
        env = {**os.environ, **env_extra}
        with netns(name) as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", "2001:db8::1/64",
                                             open_device=False), \
                spawn_daemon(["--tap", "tap0", "--addr", "198.18.0.2/24", "--addr6",
                              "2001:db8::2/64", "--serve", str(folder / "www"), "--policy",
                              str(folder / "policy.toml"), "--audit", str(folder / "audit.log"),
                              *extra], folder / "hetnic.sock", folder / "daemon.err",
                             netns=ns, env=env) as proc:
            d = Daemon(proc, folder, ns, env)
            yield d
            if not d.stopped:
                assert proc.poll() is None, (folder / "daemon.err").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon():
    with running_daemon("hn-restart", rules=True) as d:
        yield d


def _check_clean(result: dict) -> None:
    assert result["failed_connects"] == 0, result
    assert result["resets"] == 0, result
    assert result["lost_bytes"] == 0, result
    assert result["corrupted"] == 0, result


def test_restart_under_light_load(daemon):
    before = daemon.counters()
    load4 = daemon.load("198.18.0.2", streams=10, rate=20, life=(0.5, 1.5))
    load6 = daemon.load("2001:db8::2", streams=2, rate=5, life=(0.5, 1.5), seed=2)
    time.sleep(1.5)
    config = daemon.folder / "low-delay.toml"
    config.write_text(low_delay(initial_window=4, min_rto=0.1))
    out = daemon.cli("restart", "low-delay", "--config", str(config), "--drain-timeout",
                     "15", "--json")
    time.sleep(1.0)
    load4.stdin.close()
    load6.stdin.close()
    r4, r6 = stop_load(load4), stop_load(load6)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    print(json.dumps({"result": lines[-1]["result"], "load4": r4, "load6": r6}))
    steps = [e["instruction"] for e in lines[:-1]]
    assert steps == STEPS, steps
    assert all(e["result"] == "done" for e in lines[:-1]), lines
    result = lines[-1]["result"]
    assert result["config_changed"] is True
    _check_clean(r4)
    _check_clean(r6)
    assert r4["connects"] > 0 and r6["connects"] > 0 and r4["streams_done"] > 0
    # the connections open at the switch were pinned, the drains ended them all
    pins = [e for e in lines[:-1] if e["instruction"] == "pin"]
    assert pins[0]["flows_pinned"] > 0
    drains = [e for e in lines[:-1] if e["instruction"] == "drain"]
    assert all(d["drain_timeout_aborted"] == 0 for d in drains), drains
    assert result["frames"]["transition"] > 0 and result["frames"]["new"] > 0
    after = daemon.counters()
    assert after["restarts_done"] == before["restarts_done"] + 1
    assert after["flows_pinned"] - before["flows_pinned"] == sum(
        p["flows_pinned"] for p in pins)
    assert after["flows_released"] - before["flows_released"] == after["flows_pinned"] - \
        before["flows_pinned"]
    assert after["running"] is None
    assert after["flow_entries"] == 0       # the flow table is empty again
    # the new configuration runs, the events were recorded
    info = daemon.call("instances.read")
    assert info["configs"]["low-delay"]["initial_window"] == 4
    assert info["configs"]["low-delay"]["min_rto"] == 0.1
    assert "low-delay~transition" not in info["instances"]
    nic = daemon.call("counters.read")["nic"]
    assert nic["flow_hits"] > 0
    events = [e for e in daemon.call("events.read")["recent"] if e["item"] == "restart"]
    assert [e["instruction"] for e in events[-len(STEPS):]] == STEPS
    assert [r["instruction"] for r in daemon.records("restart")][-len(STEPS):] == STEPS
    assert daemon.echo_once().startswith(b"ping-")
    assert daemon.echo_once("2001:db8::2").startswith(b"ping-")


UDP_ECHO_CLIENT = """
import json, socket, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
got, sent, start = set(), 0, time.monotonic()
while time.monotonic() - start < n / rate + 15 and len(got) < n:
    if sent < n and time.monotonic() - start >= sent / rate:
        s.sendto(sent.to_bytes(4, "big") + bytes(60), ("198.18.0.2", 7))
        sent += 1
    try:
        while True:
            data = s.recv(2048)
            got.add(int.from_bytes(data[:4], "big"))
    except BlockingIOError:
        time.sleep(0.0005)
print(json.dumps({"sent": sent, "echoed": len(got)}))
"""


def test_udp_echo_across_a_restart(daemon):
    """UDP echo (port 7, a port of the restarted instance's) at 400 datagrams a second
    while the instance restarts: every datagram is answered (the handover passes the
    frames in O's and T's rings on; none is dropped)."""
    before = daemon.counters()
    client = subprocess.Popen(["ip", "netns", "exec", daemon.ns, sys.executable, "-c",
                               UDP_ECHO_CLIENT, "2000", "400"], stdout=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(1.0)
        out = daemon.cli("restart", "low-delay")
        assert out.returncode == 0, out.stderr
        report, _ = client.communicate(timeout=120)
    finally:
        client.kill()
    assert json.loads(report) == {"sent": 2000, "echoed": 2000}
    after = daemon.counters()
    assert after["restarts_done"] == before["restarts_done"] + 1
    assert after["handover_tx_dropped"] == before["handover_tx_dropped"]


def test_time_wait_not_pinned(daemon):
    """HTTP connections the server closed first (``Connection: close``) sit in TIME-WAIT
    at the original: ended, so not pinned (counted in the pin step's ``time_wait``); the
    flow table is empty after the restart and HTTP still answers."""
    before = daemon.counters()
    for _ in range(3):
        out = subprocess.run(["ip", "netns", "exec", daemon.ns, "curl", "-sS", "-m", "20",
                              "-H", "Connection: close", "http://198.18.0.2/"],
                             capture_output=True, timeout=60)
        assert out.stdout == b"hello\n", out
    out = daemon.cli("restart", "throughput", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    pins = [e for e in lines[:-1] if e["instruction"] == "pin"]
    assert pins[0]["time_wait"] >= 3, pins
    assert pins[0]["flows_pinned"] == 0, pins
    after = daemon.counters()
    assert after["flows_pinned"] == before["flows_pinned"]
    assert after["flow_entries"] == 0
    out = subprocess.run(["ip", "netns", "exec", daemon.ns, "curl", "-sS", "-m", "20",
                          "http://198.18.0.2/"], capture_output=True, timeout=60)
    assert out.stdout == b"hello\n", out


def test_bad_inputs_are_one_line_and_change_nothing(daemon):
    before = daemon.counters()
    cases = [
        (["restart", "nosuch"], "no instance 'nosuch'"),
        (["restart", "low-delay", "--config", "/nonexistent.toml"], "nonexistent"),
    ]
    bad = daemon.folder / "bad.toml"
    bad.write_text("[[instance]\nprofile = ")
    cases.append((["restart", "low-delay", "--config", str(bad)], "not TOML"))
    moved = daemon.folder / "moved.toml"
    moved.write_text(low_delay(rx_queues=[6, 7]))
    cases.append((["restart", "low-delay", "--config", str(moved)], "rx_queues"))
    other = daemon.folder / "other.toml"
    other.write_text('[[instance]]\nprofile = "throughput"\n')
    cases.append((["restart", "low-delay", "--config", str(other)], "no [[instance]] named"))
    for args, text in cases:
        out = daemon.cli(*args)
        assert out.returncode == 2, (args, out)
        assert out.stdout == ""
        assert len(out.stderr.splitlines()) == 1 and text in out.stderr, out.stderr
        assert out.stderr.startswith("hetnic restart: error: ")
    assert daemon.counters()["restarts"] == before["restarts"]
    assert daemon.echo_once().startswith(b"ping-")


def test_no_free_rule_slots_refused(daemon):
    rules = daemon.folder / "many.toml"
    rules.write_text("".join(f'[[rule]]\nname = "r{i}"\nip_proto = "udp"\n'
                             f'dst_port = {5000 + i}\ndrop = true\n\n' for i in range(7)))
    applied = daemon.cli("rules", "apply", str(rules))
    assert applied.returncode == 0, applied.stderr
    try:
        out = daemon.cli("restart", "low-delay")
        assert out.returncode == 2
        assert "free rule slots" in out.stderr and len(out.stderr.splitlines()) == 1
    finally:
        empty = daemon.folder / "none.toml"
        empty.write_text("")
        assert daemon.cli("rules", "apply", str(empty)).returncode == 0
    assert daemon.echo_once().startswith(b"ping-")


def test_second_restart_refused_and_client_gone(daemon):
    """A restart whose drain waits on a connection that does not end: a second restart is
    refused meanwhile; the first one's client goes away and the restart still completes
    (the connection cut at the drain timeout, counted)."""
    before = daemon.counters()
    hold = daemon.hold_connection()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(str(daemon.sock))
        s.sendall(json.dumps({"v": 1, "id": 9, "op": "instances.configure", "args": {
            "instance": "low-delay", "drain_timeout": 2}}).encode() + b"\n")
        with s.makefile("rb") as f:
            first = json.loads(f.readline())
        assert first["id"] == 9 and first["event"]["instruction"] == "transition-start"
        out = daemon.cli("restart", "throughput")
        assert out.returncode == 2 and "a restart is running" in out.stderr
        # the rules file changes meanwhile: refused now, applied when the restart is over
        (daemon.folder / "rules.toml").write_text(
            '[[rule]]\nname = "during"\nip_proto = "udp"\ndst_port = 5999\ndrop = true\n')
        end = time.monotonic() + 30
        while not any(r.get("queued") for r in daemon.records("file-event")):
            assert time.monotonic() < end, daemon.records("file-event")
            time.sleep(0.1)
        assert "during" not in json.dumps(daemon.call("rules.read"))
        s.close()                           # the client vanishes mid-restart
        end = time.monotonic() + 120
        while daemon.counters()["restarts_done"] == before["restarts_done"]:
            assert time.monotonic() < end, daemon.counters()
            time.sleep(0.2)
        after = daemon.counters()
        assert after["drain_timeout_aborted"] == before["drain_timeout_aborted"] + 1
        assert after["running"] is None
        assert "during" in json.dumps(daemon.call("rules.read"))
        applied = [r for r in daemon.records("file-event") if r["item"] == "rules"]
        assert applied[-1]["result"] == "done" and not applied[-1].get("queued"), applied
    finally:
        (daemon.folder / "rules.toml").write_text("")
        hold.stdin.close()
        hold.stdout.close()
        hold.wait(timeout=30)
    assert daemon.echo_once().startswith(b"ping-")
    access = [r for r in daemon.records("access") if r["op"] == "instances.configure"]
    assert access[-1]["result"] == "done"


def test_daemon_stopped_mid_restart():
    """SIGTERM while a restart's drain waits on a connection: the daemon stops at once
    (no rollback against a NIC it is closing), the client that asked gets a one-line
    failure, and the audit log records it."""
    with running_daemon("hn-restart-stop") as daemon:
        hold = daemon.hold_connection()
        try:
            cli = subprocess.Popen([sys.executable, "-m", "hetnic", "restart", "low-delay",
                                    "--drain-timeout", "300", "--socket", str(daemon.sock)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            end = time.monotonic() + 60
            while not any(r["instruction"] == "pin" for r in daemon.records("restart")):
                assert time.monotonic() < end and cli.poll() is None, daemon.records("restart")
                time.sleep(0.1)
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.proc.wait(timeout=30) == 0, (daemon.folder / "daemon.err").read_text()
            out, err = cli.communicate(timeout=30)
        finally:
            hold.stdin.close()
            hold.stdout.close()
            hold.wait(timeout=30)
        assert cli.returncode == 2
        assert err.strip() == "hetnic restart: error: the daemon stopped during the restart"
        steps = [r["instruction"] for r in daemon.records("restart")]
        assert steps[-1] == "failed" and "rolled-back" not in steps, steps
        access = [r for r in daemon.records("access") if r["op"] == "instances.configure"]
        assert access[-1]["result"] == "failed"
        assert "Traceback" not in (daemon.folder / "daemon.err").read_text()
        daemon.stopped = True               # running_daemon: not expected to run on


def test_failed_starts_roll_back():
    """The transition instance fails to start: rolled back, the original serves on, the
    flow table and the rules as before. Then the new instance fails to start: the old
    configuration runs again (reported failed), and traffic went on throughout."""
    with running_daemon("hn-restart-f", HETNIC_RESTART_FAULT="transition,pin1,new") \
            as daemon:
        rules = daemon.call("rules.read")["table"]
        config = daemon.folder / "new.toml"
        config.write_text(low_delay(initial_window=4))
        load = daemon.load("198.18.0.2", streams=4, rate=10, life=(0.5, 1.0))
        time.sleep(1.0)
        out = daemon.cli("restart", "low-delay", "--config", str(config))
        assert out.returncode == 2
        assert len(out.stderr.splitlines()) == 1 and "exited with status 1" in out.stderr
        assert "rolled-back failed" in out.stdout
        assert daemon.call("rules.read")["table"] == rules
        assert daemon.call("counters.read")["nic"].get("flow_hits", 0) == 0
        assert daemon.counters()["flow_entries"] == 0
        info = daemon.call("instances.read")
        assert info["configs"]["low-delay"]["initial_window"] != 4
        assert "low-delay~transition" not in info["instances"]
        counters = daemon.counters()
        assert counters["restarts_rolled_back"] == 1 and counters["running"] is None
        # the pin of O's connections fails after O's snapshot, a batch staged: rolled
        # back, O opens new connections again (the load's go on), the table empty
        out = daemon.cli("restart", "low-delay", "--config", str(config))
        assert out.returncode == 2 and "pin1" in out.stderr, out
        assert daemon.call("rules.read")["table"] == rules
        counters = daemon.counters()
        assert counters["restarts_rolled_back"] == 2 and counters["flow_entries"] == 0
        assert counters["flows_pinned"] == counters["flows_released"] > 0
        time.sleep(1.0)
        out = daemon.cli("restart", "low-delay", "--config", str(config))
        assert out.returncode == 2 and "the old one runs" in out.stderr
        assert "low-delay: done failed" in out.stdout     # the done step says so too
        assert daemon.call("rules.read")["table"] == rules
        assert daemon.call("instances.read")["configs"]["low-delay"]["initial_window"] != 4
        assert daemon.counters()["restarts_failed"] == 1
        time.sleep(0.5)
        _check_clean(stop_load(load))
        # the spare queues and the instance's rings still work: a clean restart after
        out = daemon.cli("restart", "low-delay", "--config", str(config))
        assert out.returncode == 0, out.stderr
        assert daemon.call("instances.read")["configs"]["low-delay"]["initial_window"] == 4
        assert daemon.echo_once().startswith(b"ping-")


def test_second_pin_failure_recovers():
    """The pin of T's connections fails (``pin2``) after N started held and the SYNs were
    sent to it: the recovery sends every port to T again, deletes T's entries and N hands
    O's rings back; no SYN lands at the held N (every connection of the load completes),
    the restart is reported failed and the next one refused while T serves."""
    with running_daemon("hn-restart-p", HETNIC_RESTART_FAULT="pin2") as daemon:
        load = daemon.load("198.18.0.2", streams=4, rate=10, life=(0.5, 1.0))
        time.sleep(1.0)
        out = daemon.cli("restart", "low-delay", "--drain-timeout", "10")
        assert out.returncode == 2, out
        assert len(out.stderr.splitlines()) == 1 and "pin2" in out.stderr, out.stderr
        time.sleep(2.0)                     # new connections after the failure: at T
        result = stop_load(load)
        _check_clean(result)
        assert result["connects"] > 0
        counters = daemon.counters()
        assert counters["restarts_failed"] == 1 and counters["running"] is None
        assert counters["last"]["step"] == "failed", counters["last"]
        assert counters["last"]["phase"] == "second-pin"
        assert counters["last"]["serving"] == "low-delay~transition"
        assert "recovery_errors" not in counters["last"], counters["last"]
        assert counters["flow_entries"] == 0
        assert counters["flows_pinned"] == counters["flows_released"] > 0
        assert daemon.echo_once().startswith(b"ping-")
        again = daemon.cli("restart", "low-delay")
        assert again.returncode == 2 and "still runs" in again.stderr, again


def test_two_instances_start_restart_refused():
    """Two instances fill the RETA (no slice for a transition instance): the daemon starts
    and serves; only a restart is refused, with one line."""
    two = '[[instance]]\nprofile = "low-delay"\n\n[[instance]]\nprofile = "throughput"\n'
    with running_daemon("hn-restart-2", instances=two) as daemon:
        assert sorted(daemon.call("instances.read")["configs"]) == ["low-delay", "throughput"]
        assert daemon.echo_once().startswith(b"ping-")
        out = daemon.cli("restart", "low-delay")
        assert out.returncode == 2, out
        assert len(out.stderr.splitlines()) == 1 and "no RETA slice" in out.stderr, out.stderr
        assert daemon.counters()["restarts"] == 0
        assert daemon.echo_once().startswith(b"ping-")


def test_no_flow_table_refused():
    """A NIC build whose CAPS says no flow table: refused before anything changes."""
    from hetnic.host.daemon_restart import RestartError, check_restart
    from hetnic.host.stack.instance import PROFILES
    from hetnic.params import HIL_NIC_CORE

    class Backend:
        def reg_read(self, addr):
            return 0                        # CAPS.flow_table 0

    class Nic:
        backend, regmap, params = Backend(), HIL_NIC_CORE.regmap(), HIL_NIC_CORE

    class Host:
        instances = list(PROFILES.values())
        spare = ((8, 9), 3)
        nic = Nic()

        def spawn_instance(self):
            raise AssertionError("nothing may start")

    with pytest.raises(RestartError, match="no flow table"):
        check_restart(Host(), "low-delay", False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("streams, rate", [(50, 200.0), (20, 40.0)],
                         ids=["issue-load", "lighter-load"])
def test_twenty_restarts_under_load(daemon, streams, rate):
    """20 restarts in a row, each with a changed configuration, under ``streams`` echo
    streams and ``rate`` new connections a second: the issue's load, and a lighter one for
    a machine busy with other work (the issue's load needs the 2 cores to itself; the
    report's ``baseline_without_restarts`` shows what the machine carried)."""
    from hetnic.bench_restart import restarts_under_load
    report = restarts_under_load(daemon.cli, daemon.load, daemon.folder, restarts=20,
                                 streams=streams, rate=rate)
    print(json.dumps(report, indent=1))
    assert report["restarts_done"] == 20, report
    assert report["failed_connects"] == 0 and report["resets"] == 0
    assert report["lost_bytes"] == 0 and report["corrupted"] == 0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_flow_table_full_rolls_back(daemon):
    """More connections than the flow table holds (1,032 entries; a full bucket and stash
    refuse sooner): the pin fails with the table full, the restart rolls back, and every
    connection keeps working at the original instance (discard, tcp/9, on concurrency)."""
    code = """
import socket, sys, time
conns = []
for i in range(1100):
    conns.append(socket.create_connection(("198.18.0.2", 9), timeout=30))
print("open", flush=True)
sys.stdin.readline()
bad = 0
for s in conns:
    try:
        s.sendall(b"x" * 100)
    except OSError:
        bad += 1
time.sleep(2)
for s in conns:
    try:
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        if s.recv(1) != b"":
            bad += 1
    except OSError:
        bad += 1
    s.close()
print(bad, flush=True)
"""
    peer = subprocess.Popen(["ip", "netns", "exec", daemon.ns, sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "open"
        rules = daemon.call("rules.read")["table"]
        out = daemon.cli("restart", "concurrency")
        assert out.returncode == 2, out.stdout
        assert "flow table full" in out.stderr and len(out.stderr.splitlines()) == 1
        assert daemon.call("rules.read")["table"] == rules
        assert daemon.counters()["running"] is None
        peer.stdin.write("go\n")
        peer.stdin.flush()
        assert peer.stdout.readline().strip() == "0"
    finally:
        peer.stdin.close()
        peer.stdout.close()
        peer.wait(timeout=120)
    assert daemon.echo_once().startswith(b"ping-")
