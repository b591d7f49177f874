"""hetnicd with real peers: the daemon (``hetnic daemon``) on the simulated NIC on a TAP in a
namespace, users and groups made by the test (``hntest-*``), and client processes that run as
those users (``subprocess`` with ``user``/``group``/``extra_groups``).

- every (session, interface, operation) cell is tried and the daemon's answer is the
  policy's; random requests from several sessions at once: 0 accesses outside the matrix
  (1,000 by default, 10,000 under ``slow``);
- a policy edited while sessions run takes effect at their next request; a policy that does
  not parse, or cannot be read, denies everything and the log says why;
- bad messages (garbage, truncated, huge, wrong version) get an error and close only their
  session; a client that goes away mid-request leaves the configuration whole;
- file events through the daemon: a rules file applied by ``git checkout``, a bad one refused
  (the old rules stay), an RSS key file, a capture copied into the drop folder replayed
  through the NIC with its report next to it.
"""

import grp
import json
import os
import pwd
import random
import re
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
from hetnic.host.daemon_protocol import INTERFACES, MAX_MESSAGE, OPERATIONS

pytestmark = pytest.mark.timeout(300)

GROUPS = ("hntest-ops", "hntest-mon")
#: user -> supplementary groups
USERS = {"hntest-alice": (), "hntest-bob": ("hntest-ops",), "hntest-carol": ("hntest-mon",),
         "hntest-dave": ()}

POLICY = """
[[grant]]
name = "alice-rules"
users = ["hntest-alice"]
interfaces = ["rules"]
operations = ["read", "configure"]

[[grant]]
name = "ops"
groups = ["hntest-ops"]
interfaces = ["rss", "counters", "rx_queues", "tx_queues"]
operations = ["*"]

[[grant]]
name = "monitoring"
groups = ["hntest-mon", "hntest-ops"]
interfaces = ["counters", "instances", "tap", "events", "direct"]
operations = ["read"]
"""


def expected(policy: str, user: str) -> set[tuple[str, str]]:
    """The cells ``policy`` (the test's own reading of the TOML) grants ``user``."""
    import tomllib
    cells = set()
    groups = set(USERS[user])
    for grant in tomllib.loads(policy)["grant"]:
        if user in grant.get("users", []) or groups & set(grant.get("groups", [])):
            ifaces = INTERFACES if "*" in grant["interfaces"] else grant["interfaces"]
            ops = OPERATIONS if "*" in grant["operations"] else grant["operations"]
            cells |= {(i, o) for i in ifaces for o in ops}
    return cells


class Peer:
    """A client process running as ``user`` (forked, then setgroups/setgid/setuid to the
    user's groups, gid and uid: the interpreter needs no access to anything else). It holds
    one session with the daemon; :meth:`ask` sends it a batch of ``[op, args]`` requests and
    returns ``[ok, code]`` per request. The peer exits when the test closes it."""

    def __init__(self, sock: Path, user: str, connect: bool = True):
        entry = pwd.getpwnam(user)
        gids = [grp.getgrnam(g).gr_gid for g in USERS[user]]
        cmd_r, self._cmd = os.pipe()
        self._res, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:                            # the child: never returns
            code = 1
            try:
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd > 2 and fd not in (cmd_r, res_w):
                        try:                 # other peers' pipe ends too: their EOF
                            os.close(fd)
                        except OSError:
                            pass
                os.setgroups(gids)
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
                self._serve(str(sock), os.fdopen(cmd_r, "rb"), os.fdopen(res_w, "wb"))
                code = 0
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(res_w)
        self._out = os.fdopen(self._cmd, "wb")
        self._in = os.fdopen(self._res, "rb")

    @staticmethod
    def _serve(path: str, cmds, results) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(path)
        f = s.makefile("rb")
        n = 0
        for line in cmds:
            batch = json.loads(line)
            if batch == "raw":                      # the next line goes as it is, then exit
                s.sendall(cmds.readline())
                s.close()
                return
            out = []
            for op, args in batch:
                n += 1
                s.sendall(json.dumps({"v": 1, "id": n, "op": op, "args": args}).encode()
                          + b"\n")
                reply = json.loads(f.readline())
                out.append([reply["ok"], reply.get("code")])
            results.write(json.dumps(out).encode() + b"\n")
            results.flush()

    def send(self, requests: list) -> None:
        self._out.write(json.dumps(requests).encode() + b"\n")
        self._out.flush()

    def receive(self) -> list:
        line = self._in.readline()
        assert line, "the peer process died"
        return json.loads(line)

    def ask(self, requests: list) -> list:
        self.send(requests)
        return self.receive()

    def raw(self, line: bytes) -> None:
        """Send ``line`` as the peer's last message, then the peer closes and exits."""
        self._out.write(b'"raw"\n' + line)
        self._out.flush()
        self.close()

    def close(self) -> None:
        for f in (self._out, self._in):
            try:
                f.close()
            except OSError:
                pass
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, timeout=30, capture_output=True, **kw)


@pytest.fixture(scope="module")
def users():
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd/groupadd to make the test's users")
    for u in USERS:                              # leftovers of a run that was killed
        subprocess.run(["userdel", u], timeout=30, capture_output=True)
    for g in GROUPS:
        subprocess.run(["groupdel", g], timeout=30, capture_output=True)
    made_groups, made_users = [], []
    try:
        for g in GROUPS:
            _run(["groupadd", g])
            made_groups.append(g)
        for u, groups in USERS.items():
            extra = ["-G", ",".join(groups)] if groups else []
            _run(["useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", *extra,
                  u])
            made_users.append(u)
        yield {u: pwd.getpwnam(u) for u in USERS}
    finally:
        for u in made_users:
            subprocess.run(["userdel", u], timeout=30, capture_output=True)
        for g in made_groups:
            subprocess.run(["groupdel", g], timeout=30, capture_output=True)


class Daemon:
    def __init__(self, proc, folder: Path):
        self.proc = proc
        self.folder = folder
        self.sock = folder / "hetnic.sock"
        self.policy = folder / "policy.toml"
        self.audit = folder / "audit.log"
        self.rules = folder / "repo" / "rules.toml"
        self.key = folder / "rss.key"
        self.drop = folder / "drop"

    def records(self, kind=None) -> list[dict]:
        lines = self.audit.read_text().splitlines() if self.audit.exists() else []
        recs = [json.loads(line) for line in lines]
        return [r for r in recs if kind is None or r["kind"] == kind]

    def wait_records(self, kind: str, count: int, timeout: float = 20.0) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            recs = self.records(kind)
            if len(recs) >= count:
                return recs
            assert self.proc.poll() is None, "the daemon exited"
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} {kind} records: {self.records(kind)}")

    def as_user(self, user: str, requests: list) -> list:
        """Run ``requests`` in one session of a process running as ``user``."""
        peer = Peer(self.sock, user)
        try:
            return peer.ask(requests)
        finally:
            peer.close()

    def set_policy(self, text: str) -> None:
        """Write the policy the way an editor does (temporary file, rename) and wait for the
        daemon to load it."""
        before = len(self.records("policy"))
        tmp = self.folder / ".policy.toml.tmp"
        tmp.write_text(text)
        os.rename(tmp, self.policy)
        self.wait_records("policy", before + 1)


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(path))
    return s


def _ask(s: socket.socket, line: bytes) -> dict:
    s.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return json.loads(data)


INSTANCES = "".join(f'[[instance]]\nprofile = "{p}"\n\n'
                    for p in ("low-delay", "throughput", "concurrency"))
RULES_1 = "[[rule]]\nname = \"block\"\nsrc = \"198.19.0.0/16\"\ndrop = true\n"
RULES_2 = ("[[rule]]\nname = \"block\"\nsrc = \"198.19.0.0/16\"\ndrop = true\n\n"
           "[[rule]]\nname = \"dns\"\nip_proto = \"udp\"\ndst_port = 53\ninstance = 1\n"
           "reta_offset = 128\nreta_size = 128\n")


@pytest.fixture(scope="module")
def daemon(users):
    require_netns()
    folder = Path(tempfile.mkdtemp(prefix="hntest-daemon-"))
    folder.chmod(0o755)                          # the test users reach the socket
    try:
        (folder / "policy.toml").write_text(POLICY)
        (folder / "instances.toml").write_text(INSTANCES)
        (folder / "drop").mkdir()
        repo = folder / "repo"
        repo.mkdir()
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
        for args in (["init", "-q", "-b", "main"],):
            _run(["git", "-C", str(repo), *args], env=env)
        (repo / "rules.toml").write_text(RULES_1)
        _run(["git", "-C", str(repo), "add", "rules.toml"], env=env)
        _run(["git", "-C", str(repo), "commit", "-q", "-m", "one"], env=env)
        _run(["git", "-C", str(repo), "checkout", "-q", "-b", "two"], env=env)
        (repo / "rules.toml").write_text(RULES_2)
        _run(["git", "-C", str(repo), "commit", "-q", "-am", "two"], env=env)
        _run(["git", "-C", str(repo), "checkout", "-q", "main"], env=env)
        with netns("hn-daemon") as ns, \
                tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False), \
                spawn_daemon(["--tap", "tap0", "--addr", "198.18.0.2/24", "--one-process",
                              "--policy", str(folder / "policy.toml"), "--watch",
                              str(folder / "drop"), "--rules", str(repo / "rules.toml"),
                              "--rss-key", str(folder / "rss.key"), "--instances",
                              str(folder / "instances.toml"), "--audit",
                              str(folder / "audit.log")], folder / "hetnic.sock",
                             folder / "daemon.err", netns=ns, start_timeout=120) as proc:
            yield Daemon(proc, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cells():
    return [(i, o) for i in INTERFACES for o in OPERATIONS]


def test_every_cell_as_the_policy_says(daemon):
    answers = {}
    for user in USERS:
        got = daemon.as_user(user, [[f"{i}.{o}", {}] for i, o in _cells()])
        answers[user] = {cell for cell, (ok, code) in zip(_cells(), got) if code != "denied"}
        # an allowed cell runs (ok), or is refused for want of arguments, or has no
        # operation in this daemon: never denied
        assert all(ok or code in ("denied", "refused", "unsupported") for ok, code in got)
    assert answers == {user: expected(POLICY, user) for user in USERS}
    # every decision is in the audit log, with the rule that decided
    access = daemon.records("access")
    by_user = {u: [r for r in access if r["user"] == u] for u in USERS}
    assert all(len(by_user[u]) >= len(_cells()) for u in USERS)
    dave = by_user["hntest-dave"][-len(_cells()):]
    assert {r["result"] for r in dave} == {"denied"}
    assert {r["rule"] for r in dave} == {"default-deny"}
    alice = [r for r in by_user["hntest-alice"]
             if r["interface"] == "rules" and r["operation"] != "use"]
    assert {r["rule"] for r in alice} == {"alice-rules"}
    assert all(r["session"]["uid"] == users_uid("hntest-alice") for r in alice)


def users_uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _random_requests(daemon, total: int, seed: int) -> tuple[int, int]:
    """``total`` random cell requests spread over the users, run as 4 concurrent
    sessions; returns (requests, accesses outside the matrix)."""
    rng = random.Random(seed)
    plan = {u: [] for u in USERS}
    for _ in range(total):
        user = rng.choice(list(USERS))
        plan[user].append(rng.choice(_cells()))
    peers = {user: Peer(daemon.sock, user) for user in plan}
    outside = done = 0
    try:
        for user, cells in plan.items():
            peers[user].send([[f"{i}.{o}", {}] for i, o in cells])
        for user, peer in peers.items():
            allowed = expected(POLICY, user)
            for cell, (ok, code) in zip(plan[user], peer.receive()):
                done += 1
                outside += (code == "denied") == (cell in allowed)
    finally:
        for peer in peers.values():
            peer.close()
    return done, outside


def test_random_requests_stay_in_the_matrix(daemon):
    assert _random_requests(daemon, 1000, seed=16) == (1000, 0)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_10000_random_requests_stay_in_the_matrix(daemon):
    assert _random_requests(daemon, 10_000, seed=1616) == (10_000, 0)


def test_policy_edit_takes_effect_at_the_next_request(daemon):
    """A session stays open while the policy changes under it: its next request is decided
    by the new policy. A policy that does not parse, or cannot be read, denies all."""
    carol = Peer(daemon.sock, "hntest-carol")

    def next_answer():
        return carol.ask([["counters.read", {}]])[0]
    try:
        assert next_answer() == [True, None]
        daemon.set_policy(POLICY.replace('"hntest-mon", ', ""))     # carol loses counters
        assert next_answer() == [False, "denied"]
        daemon.set_policy(POLICY)
        assert next_answer() == [True, None]
        # does not parse: everything denied, and the log says why
        daemon.set_policy(POLICY + "\n[[grant]\n")
        assert next_answer() == [False, "denied"]
        policy = daemon.records("policy")[-1]
        assert "invalid" in policy["error"] and policy["grants"] == 0
        assert daemon.records("access")[-1]["rule"] == "invalid-policy"
        daemon.set_policy(POLICY)
        # cannot be read (a symlink loop renamed over it; root reads any mode)
        before = len(daemon.records("policy"))
        loop = daemon.folder / ".loop"
        os.symlink(".loop", loop)
        os.rename(loop, daemon.policy)
        daemon.wait_records("policy", before + 1)
        assert next_answer() == [False, "denied"]
        assert "unreadable" in daemon.records("policy")[-1]["error"]
        assert daemon.records("access")[-1]["rule"] == "invalid-policy"
        os.unlink(daemon.policy)
        daemon.set_policy(POLICY)
    finally:
        carol.close()


def test_bad_messages_close_only_their_session(daemon):
    witness = _connect(daemon.sock)                 # a session open throughout
    try:
        _bad_messages(daemon, witness)
    finally:
        witness.close()


def _bad_messages(daemon, witness):
    assert _ask(witness, b'{"v":1,"id":1,"op":"session.whoami"}\n')["result"]["uid"] == 0
    cases = {
        "garbage": b"\x00\xffnot json at all\n",
        "not an object": b"[1, 2, 3]\n",
        "wrong version": b'{"v":2,"id":1,"op":"counters.read"}\n',
        "no version": b'{"id":1,"op":"counters.read"}\n',
        "bad id": b'{"v":1,"id":"x","op":"counters.read"}\n',
        "unknown op": b'{"v":1,"id":1,"op":"nic.reboot"}\n',
        "huge": b"{" + b" " * (MAX_MESSAGE + 10),
    }
    for name, data in cases.items():
        s = _connect(daemon.sock)
        try:
            s.sendall(data)
            reply = s.makefile("rb").readline()
            assert json.loads(reply)["code"] == "bad-request", name
            assert s.recv(10) == b"", f"{name}: the session stays open"
        finally:
            s.close()
    # truncated: half a rules change, then the client goes away: nothing applied
    rules_before = [r for r in daemon.records("access") if r["op"] == "rules.configure"]
    s = _connect(daemon.sock)
    s.sendall(b'{"v":1,"id":1,"op":"rules.configure","args":{"text":"[[rule]]\\ndst_port=5')
    s.close()
    assert _ask(witness, b'{"v":1,"id":2,"op":"session.whoami"}\n')["ok"]
    assert [r for r in daemon.records("access") if r["op"] == "rules.configure"] == \
        rules_before


def test_file_events_through_the_daemon(daemon):
    alice = lambda ops: daemon.as_user("hntest-alice", ops)   # noqa: E731
    # the rules file at start (RULES_1) is applied
    first = daemon.wait_records("file-event", 1)
    assert first[0]["instruction"] == "apply-rules" and first[0]["result"] == "done"
    # git checkout of another version: applied with one commit
    n = len(daemon.records("file-event"))
    _run(["git", "-C", str(daemon.rules.parent), "checkout", "-q", "two"])
    rec = daemon.wait_records("file-event", n + 1)[-1]
    assert (rec["instruction"], rec["result"], rec["rules"]) == ("apply-rules", "done", 2)
    assert any("dns" in line for line in rec["diff"])
    # a bad version: refused, the old rules stay
    tmp = daemon.rules.with_name(".rules.tmp")
    tmp.write_text("[[rule]]\ndst_port = \"banana\"\n")
    os.rename(tmp, daemon.rules)
    rec = daemon.wait_records("file-event", n + 2)[-1]
    assert rec["result"] == "refused" and "banana" in rec["error"] and rec["diff"] == []
    # the RSS key file
    key = bytes(range(40))
    daemon.key.write_text(key.hex() + "\n")
    rec = daemon.wait_records("file-event", n + 3)[-1]
    assert (rec["instruction"], rec["result"]) == ("apply-key", "done")
    # a capture copied into the drop folder: replayed, its report next to it
    from scapy.all import Ether, IP, UDP, wrpcap
    pcap = daemon.folder / "x.pcap"
    wrpcap(str(pcap), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                       IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=1, dport=9) / b"x"]
           * 4)
    _run(["cp", str(pcap), str(daemon.drop)])
    rec = daemon.wait_records("file-event", n + 4)[-1]
    assert (rec["instruction"], rec["result"], rec["frames"]) == ("replay", "done", 4)
    report = json.loads((daemon.drop / "x.pcap.report.json").read_text())
    # the NIC's counters over the replay: its 4 frames, and any the kernel sent on the TAP
    # meanwhile (IPv6 router solicitations and MLD reports after the TAP came up)
    assert report["frames"] == 4 and report["counters"]["frames_in"] >= 4
    assert rec["counters"]["frames_in"][1] - rec["counters"]["frames_in"][0] >= 4
    # an instance configuration: checked (it takes effect at a restart); a bad one refused
    # with the file named
    conf = daemon.folder / "instances.toml"
    conf.write_text(INSTANCES.replace('"concurrency"', '"concurrency"\nbacklog = 64'))
    rec = daemon.wait_records("file-event", n + 5)[-1]
    assert (rec["instruction"], rec["result"]) == ("validate-instances", "done")
    conf.write_text(INSTANCES.replace('"concurrency"', '"no-such-profile"'))
    rec = daemon.wait_records("file-event", n + 6)[-1]
    assert rec["result"] == "refused" and str(conf) in rec["error"]
    # alice reads the rules that are in force
    got = alice([["rules.read", {}]])
    assert got == [[True, None]]
    # a client that goes away right after a complete change: applied whole
    done = lambda: [r for r in daemon.records("access")          # noqa: E731
                    if r["op"] == "rules.configure" and r["user"] == "hntest-alice"]
    before = len(done())
    Peer(daemon.sock, "hntest-alice").raw(json.dumps(
        {"v": 1, "id": 1, "op": "rules.configure",
         "args": {"text": RULES_1, "format": "toml"}}).encode() + b"\n")
    end = time.monotonic() + 20
    while len(done()) == before and time.monotonic() < end:
        time.sleep(0.05)
    assert done()[-1]["result"] == "done"


def test_client_commands_exit_status(daemon, tmp_path):
    """The client commands: exit 0 only when the daemon did it; a denial, a refusal or no
    daemon is one line ``hetnic CMD: error: ...`` and exit 2."""
    def hetnic(*args, env=None):
        return subprocess.run([sys.executable, "-m", "hetnic", *args], capture_output=True,
                              text=True, timeout=60, env=env)
    sock = ["--socket", str(daemon.sock)]
    denied = hetnic("counters", *sock)              # root: not in the policy
    assert denied.returncode == 2
    assert re.fullmatch(r"hetnic counters: error: permission denied: .*\n", denied.stderr)
    gone = hetnic("rules", "show", "--socket", str(tmp_path / "none.sock"))
    assert gone.returncode == 2 and gone.stderr.startswith("hetnic rules: error: cannot reach")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    unset = hetnic("rss", "show", env=env)
    assert unset.returncode == 2 and "XDG_RUNTIME_DIR is not set" in unset.stderr
    # root granted rules for a moment: apply is done (0), a bad file refused (2)
    daemon.set_policy(POLICY + '\n[[grant]]\nusers = ["root"]\ninterfaces = ["rules", '
                      '"events"]\noperations = ["read", "configure"]\n')
    try:
        good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
        good.write_text(RULES_2)
        bad.write_text("[[rule]]\nvlan = 5000\n")
        done = hetnic("rules", "apply", str(good), *sock)
        assert done.returncode == 0 and done.stdout.startswith("applied 2 rules")
        refused = hetnic("rules", "apply", str(bad), *sock)
        assert refused.returncode == 2 and "vlan" in refused.stderr
        assert refused.stderr.count("\n") == 1
        events = hetnic("events", "--json", *sock)
        assert events.returncode == 0
        assert any(json.loads(line)["instruction"] == "reload"
                   for line in events.stdout.splitlines())
    finally:
        daemon.set_policy(POLICY)


@pytest.mark.slow
def test_daemon_in_multi_process_mode():
    """The daemon's default mode (the instances in their own processes, StackProcs): it
    serves a client, applies a rules change with one commit and stops cleanly on SIGTERM."""
    require_netns()
    folder = Path(tempfile.mkdtemp(prefix="hntest-daemon-mp-"))
    try:
        (folder / "policy.toml").write_text('[[grant]]\nusers = ["root"]\ninterfaces = ["*"]\n'
                                            'operations = ["*"]\n')
        (folder / "rules.toml").write_text(RULES_1)
        sock = folder / "hetnic.sock"
        with netns("hn-daemonmp") as ns, \
                tap_in_netns(ns, "tap0", "198.18.0.1/24", None, open_device=False), \
                spawn_daemon(["--tap", "tap0", "--addr", "198.18.0.2/24", "--policy",
                              str(folder / "policy.toml"), "--audit", str(folder / "audit.log")],
                             sock, folder / "daemon.err", netns=ns, start_timeout=180) as proc:
            run = lambda *a: subprocess.run(                   # noqa: E731
                [sys.executable, "-m", "hetnic", *a, "--socket", str(sock)],
                capture_output=True, text=True, timeout=60)
            counters = run("counters")
            assert counters.returncode == 0, counters.stderr
            assert json.loads(counters.stdout)["daemon"]["sessions"] >= 1
            applied = run("rules", "apply", str(folder / "rules.toml"))
            assert applied.returncode == 0 and applied.stdout.startswith("applied 1 rules")
            shown = json.loads(run("rules", "show").stdout)
            assert any("block" in rule for rule in shown["operator"])
        assert proc.returncode == 0, (folder / "daemon.err").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
