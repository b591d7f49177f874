"""hetnicd in this process, on the simulated NIC with a quiet TAP stand-in: the operations and
the file-event instructions with inputs that must not stop it (random arguments to every op,
bad key files, empty capture records), the RSS and rules configuration (done and refused,
and the rollback of a failed commit), and the follow stream."""

import contextlib
import json
import os
import random
import socket
import time
from pathlib import Path

import pytest

from hetnic.host.daemon_protocol import INTERFACES, OPERATIONS

pytestmark = pytest.mark.timeout(120)

POLICY = '[[grant]]\nusers = ["*"]\ninterfaces = ["*"]\noperations = ["*"]\n'


class QuietTap:
    """A TAP stand-in that never has a frame and swallows what the NIC sends out."""

    def __init__(self):
        self._r, self._w = os.pipe()
        self.written = 0

    def read_frames(self, max_frames):
        return []

    def write(self, frame):
        self.written += 1

    def fileno(self):
        return self._r

    def close(self):
        for fd in (self._r, self._w):
            os.close(fd)


@pytest.fixture(scope="module")
def nic():
    from hetnic.host.nic import Nic
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        yield nic


class Harness:
    def __init__(self, nic, folder: Path, **files):
        from hetnic.host.daemon import Daemon, InstanceSupervisor
        from hetnic.host.daemon_audit import AuditLog
        from hetnic.host.stack_host import StackHost
        from hetnic.replay import read_capture
        self.folder = folder
        self.tap = QuietTap()
        self.supervisor = InstanceSupervisor(lambda: StackHost(nic, self.tap, seed=1))
        (folder / "policy.toml").write_text(POLICY)
        self.logs: list[str] = []
        audit = AuditLog(folder / "audit.log")
        try:
            self.daemon = Daemon(self.supervisor, socket_path=folder / "d.sock",
                                 policy=folder / "policy.toml", audit=audit,
                                 read_capture=read_capture, log=self.logs.append, **files)
        except BaseException:
            audit.close()
            self.supervisor.stop()
            self.tap.close()
            raise
        self.ids = 0

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.folder / "d.sock"))
        s.setblocking(False)
        self.daemon.poll(0.05)
        return s

    def lines(self, s: socket.socket, n: int = 1, timeout: float = 20.0) -> list[dict]:
        """The next ``n`` lines from the daemon on ``s`` (the daemon polled meanwhile)."""
        data = b""
        end = time.monotonic() + timeout
        while data.count(b"\n") < n:
            assert time.monotonic() < end, f"no reply: {data[:200]!r}"
            self.daemon.poll(0.01)
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                break
            data += chunk
        return [json.loads(line) for line in data.splitlines()]

    def send(self, s: socket.socket, data: bytes) -> None:
        """Send all of ``data`` on the non-blocking ``s`` (the daemon polled meanwhile)."""
        view = memoryview(data)
        while view:
            try:
                view = view[s.send(view):]
            except BlockingIOError:
                self.daemon.poll(0.01)

    def ask(self, s: socket.socket, op: str, args=None, id=None) -> dict:
        self.ids += 1
        self.send(s, json.dumps({"v": 1, "id": self.ids if id is None else id, "op": op,
                                 "args": args or {}}).encode() + b"\n")
        return self.lines(s)[0]

    def run_until(self, cond, timeout: float = 30.0) -> None:
        """Run the daemon's loop (NIC turns, replays, sockets) until ``cond()`` holds."""
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, "the daemon did not get there"
            self.daemon.run(timeout=0.02)

    def alive(self) -> bool:
        s = self.connect()
        try:
            return self.ask(s, "session.whoami")["ok"]
        finally:
            s.close()

    def close(self):
        try:
            self.daemon.close()
        finally:
            self.supervisor.stop()
            self.tap.close()


@pytest.fixture
def harness(nic, tmp_path):
    h = Harness(nic, tmp_path)
    yield h
    h.close()


def _junk(rng: random.Random, depth: int = 0):
    kinds = ["int", "str", "bool", "none", "float", "surrogate"]
    if depth == 0:
        kinds.append("big")
    if depth < 2:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 255, 256, 2 ** 31, -(2 ** 63)])
    if kind == "str":
        return rng.choice(["", "x", "00" * 40, "zz", "[[rule]]\ndrop = true\n", "{}", "\x00"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "float":
        return rng.choice([0.5, 1e308, -0.0])
    if kind == "big":
        return "A" * rng.choice([1000, 100_000])
    if kind == "surrogate":
        return "\ud800"
    if kind == "list":
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(0, 130))]
    return {rng.choice(["key", "reta", "text", "format", "follow", "id", "x"]):
            _junk(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def test_random_arguments_to_every_op_never_stop_the_daemon(harness):
    """Random argument objects to every INTERFACE.OPERATION (surrogates, huge strings, wrong
    types, an ``id`` inside args): each gets a reply, and the daemon serves on."""
    rng = random.Random(16)
    ops = [f"{i}.{o}" for i in INTERFACES for o in OPERATIONS] + ["session.whoami"]
    s = harness.connect()
    try:
        for n in range(300):
            op = rng.choice(ops)
            args = {k: _junk(rng) for k in rng.sample(
                ["key", "reta", "text", "format", "follow", "id"], rng.randrange(0, 4))}
            line = json.dumps({"v": 1, "id": n, "op": op, "args": args}).encode() + b"\n"
            harness.send(s, line)
            answer = harness.lines(s)[0]
            assert answer["id"] == n, (op, args)
            assert answer["ok"] or answer["code"] in ("refused", "unsupported", "failed")
    finally:
        s.close()
    assert harness.alive()
    # the cases the review found, one by one
    s = harness.connect()
    try:
        got = harness.ask(s, "rules.configure", {"text": "\ud800"})
        assert got["code"] == "refused" and "Unicode" in got["error"]
        got = harness.ask(s, "events.read", {"follow": True, "id": "A" * 1_048_000}, id=99)
        assert got["ok"] and got["id"] == 99
    finally:
        s.close()
    assert harness.alive()


def _settle(daemon, events: int, timeout: float = 20.0) -> None:
    """Poll ``daemon`` until it has recorded ``events`` file events in all."""
    end = time.monotonic() + timeout
    while daemon.event_seq < events:
        assert time.monotonic() < end, f"{daemon.event_seq} file events, not {events}"
        daemon.poll(0.02)


def _pcap(frames: list[bytes]) -> bytes:
    """A classic little-endian pcap of ``frames`` (an empty one is a record of 0 bytes)."""
    import struct
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for frame in frames:
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    return out


def test_bad_key_files_and_empty_capture_records_are_refused(nic, tmp_path):
    """A binary key file of the wrong length (at start and on change) and a capture with an
    empty record are refused with the reason; the daemon serves on."""
    key, drop = tmp_path / "rss.key", tmp_path / "drop"
    key.write_bytes(b"\xff" * 10)
    drop.mkdir()
    h = Harness(nic, tmp_path, rss_key=key, watch=drop)
    try:
        events = list(h.daemon.events)
        assert [(e["item"], e["result"]) for e in events] == [("rss-key", "refused")]
        assert "raw bytes" in events[0]["error"]
        key.write_bytes(b"\xfe" * 11)
        _settle(h.daemon, 2)
        assert h.daemon.events[-1]["result"] == "refused"
        (drop / "empty.pcap").write_bytes(_pcap([b"\x02" * 60, b""]))
        _settle(h.daemon, 3)
        rec = h.daemon.events[-1]
        assert (rec["item"], rec["result"]) == ("drop", "refused")
        assert "record 1 is empty" in rec["error"]
        assert h.alive()
    finally:
        h.close()


def test_too_many_sessions_are_busy_and_no_descriptors_only_pauses(harness):
    """One uid's 33rd session is answered ``busy`` and closed; accept() failing for want of
    descriptors (EMFILE) pauses accepting and the daemon serves on."""
    import resource
    daemon = harness.daemon
    held = [harness.connect() for _ in range(daemon.max_sessions_per_uid)]
    try:
        extra = harness.connect()
        got = harness.lines(extra)
        assert got[0]["code"] == "busy" and extra.recv(10) == b""
        extra.close()
        assert daemon.stats["busy"] == 1
    finally:
        for s in held:
            s.close()
    daemon.poll(0.05)
    daemon.max_sessions_per_uid = daemon.max_sessions = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        for _ in range(64):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            except OSError:
                break
            clients.append(s)
            s.connect(str(harness.folder / "d.sock"))
            daemon.poll(0)
        assert daemon.stats["accept_errors"] >= 1
    finally:
        for s in clients:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    time.sleep(0.25)
    assert harness.alive()
    assert any("cannot accept" in line for line in harness.logs)


def test_drop_folder_symlinks_are_neither_read_nor_written_through(nic, tmp_path):
    """The daemon runs as root and others may write the drop folder: a capture that is a
    symlink is not read, and the report replaces a planted symlink (or temporary name)
    instead of writing through it."""
    drop = tmp_path / "drop"
    drop.mkdir()
    secret, victim = tmp_path / "secret.pcap", tmp_path / "victim"
    secret.write_bytes(_pcap([b"\x02" * 60]))
    victim.write_text("keep")
    os.symlink(secret, drop / "evil.pcap")
    os.symlink(victim, drop / "x.pcap.report.json")
    os.symlink(victim, drop / ".x.pcap.report.json.tmp")
    h = Harness(nic, tmp_path, watch=drop)
    try:
        rec = h.daemon.events[-1]                 # at start: the symlinked capture
        assert rec["path"].endswith("evil.pcap") and rec["result"] == "error"
        assert "symbolic links" in rec["error"]
        (drop / "x.pcap").write_bytes(_pcap([b"\x02" * 60] * 3))
        h.run_until(lambda: h.daemon.event_seq >= 2)
        rec = h.daemon.events[-1]
        assert (rec["path"], rec["result"], rec["frames"]) == (str(drop / "x.pcap"), "done", 3)
        report = drop / "x.pcap.report.json"
        assert not report.is_symlink() and json.loads(report.read_text())["frames"] == 3
        assert victim.read_text() == "keep"
    finally:
        h.close()


def test_socket_path_that_is_not_a_socket_is_left_alone(nic, tmp_path):
    from hetnic.host.daemon import DaemonError
    (tmp_path / "d.sock").write_text("precious")
    with pytest.raises(DaemonError, match="not a socket"):
        Harness(nic, tmp_path)
    assert (tmp_path / "d.sock").read_text() == "precious"


def test_a_policy_removed_or_renamed_away_denies_everything(harness):
    folder, daemon = harness.folder, harness.daemon
    policy = folder / "policy.toml"
    s = harness.connect()
    try:
        assert harness.ask(s, "counters.read")["ok"]
        for take_away in (policy.unlink, lambda: policy.rename(folder / "old.toml")):
            n = daemon.event_seq
            take_away()
            _settle(daemon, n + 1)
            got = harness.ask(s, "counters.read")
            assert got["code"] == "denied" and "unreadable" in got["error"]
            n = daemon.event_seq
            policy.write_text(POLICY)
            _settle(daemon, n + 1)
            assert harness.ask(s, "counters.read")["ok"]
    finally:
        s.close()


def test_captures_present_at_start(nic, tmp_path):
    """At start a capture with its report is done; one without is replayed."""
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "old.pcap").write_bytes(_pcap([b"\x02" * 60]))
    (drop / "old.pcap.report.json").write_text("{}")
    (drop / "new.pcap").write_bytes(_pcap([b"\x02" * 60] * 2))
    h = Harness(nic, tmp_path, watch=drop)
    try:
        h.run_until(lambda: h.daemon.event_seq >= 1)
        assert [(Path(e["path"]).name, e["result"]) for e in h.daemon.events] == \
            [("new.pcap", "done")]
        assert json.loads((drop / "new.pcap.report.json").read_text())["frames"] == 2
        assert (drop / "old.pcap.report.json").read_text() == "{}"
    finally:
        h.close()


def test_replays_are_queued_and_fed_a_little_per_turn(nic, tmp_path, monkeypatch):
    """A dropped capture is queued, fed to the wire a chunk per turn while sessions are
    served, and recorded once it has run; one that outlives its time is reported
    ``timeout`` with what was sent, not ``done``."""
    from hetnic.host import daemon_ops
    drop = tmp_path / "drop"
    drop.mkdir()
    h = Harness(nic, tmp_path, watch=drop)
    try:
        n = 3 * daemon_ops.REPLAY_CHUNK + 5
        (drop / "big.pcap").write_bytes(_pcap([b"\x02" * 60] * n))
        end = time.monotonic() + 20
        while not h.daemon.replays:
            assert time.monotonic() < end
            h.daemon.poll(0.02)
        assert h.daemon.event_seq == 0               # queued, not yet recorded
        assert h.alive()                             # sessions answered meanwhile
        h.run_until(lambda: h.daemon.event_seq >= 1)
        rec = h.daemon.events[-1]
        assert (rec["result"], rec["frames"], rec["sent"]) == ("done", n, n)
        assert rec["counters"]["frames_in"][1] - rec["counters"]["frames_in"][0] == n
        monkeypatch.setattr(daemon_ops, "REPLAY_TIMEOUT", 0.0)
        (drop / "late.pcap").write_bytes(_pcap([b"\x03" * 60] * n))
        h.run_until(lambda: h.daemon.event_seq >= 2)
        rec = h.daemon.events[-1]
        assert rec["result"] == "timeout" and rec["sent"] < n and "not finished" in rec["error"]
        report = json.loads((drop / "late.pcap.report.json").read_text())
        assert report["result"] == "timeout" and report["sent"] == rec["sent"]
    finally:
        h.close()


def _other_queue_reta(daemon) -> list[int]:
    """The base RETA with each entry moved to the next queue of the same instance."""
    owner_queues = {q: list(cfg.rx_queues) for cfg in daemon.host.instances
                    for q in cfg.rx_queues}
    return [owner_queues[q][(owner_queues[q].index(q) + 1) % len(owner_queues[q])]
            for q in daemon._base.reta]


def test_rss_configure_done_and_refused(harness):
    daemon = harness.daemon
    s = harness.connect()
    try:
        key = bytes(range(1, 41))
        reta = _other_queue_reta(daemon)
        assert reta != list(daemon._base.reta)
        commits = daemon.commits
        got = harness.ask(s, "rss.configure", {"key": key.hex(), "reta": reta})
        assert got["ok"], got
        assert daemon.commits == commits + 1              # key and RETA: one commit
        assert daemon.host.nic.rss.key == key and list(daemon.host.nic.rss.table) == reta
        assert any(line.startswith("+rss.key") for line in got["result"]["diff"])
        read = harness.ask(s, "rss.read")["result"]
        assert (read["key"], read["reta"]) == (key.hex(), reta)
        n = len(reta)
        foreign = list(reta)
        queues = {cfg.name: list(cfg.rx_queues) for cfg in daemon.host.instances}
        first, second = list(queues.values())[:2]
        foreign[reta.index(next(q for q in reta if q in first))] = second[0]
        refusals = [({"reta": reta[:-1]}, f"list of {n}"), ({"reta": [True] * n}, f"list of {n}"),
                    ({"reta": reta[:-1] + ["1"]}, f"list of {n}"), ({"reta": 5}, f"list of {n}"),
                    ({"reta": foreign}, "slice"), ({"key": "00" * 39}, "40 bytes"),
                    ({"key": 7}, "40 bytes"), ({}, "takes")]
        for args, why in refusals:
            got = harness.ask(s, "rss.configure", args)
            assert got["code"] == "refused" and why in got["error"], (args, got)
        assert daemon.host.nic.rss.key == key and list(daemon.host.nic.rss.table) == reta
        assert daemon.commits == commits + 1
    finally:
        s.close()


def test_rules_configure_too_many_and_a_failed_commit_rolls_back(harness, monkeypatch):
    from hetnic.host.control import NicError
    daemon = harness.daemon
    s = harness.connect()
    try:
        good = "[[rule]]\nname = \"block\"\nsrc = \"198.19.0.0/16\"\ndrop = true\n"
        assert harness.ask(s, "rules.configure", {"text": good})["ok"]
        before, rules, commits = daemon.config_text(), list(daemon.operator_rules), \
            daemon.commits
        many = "".join(f"[[rule]]\ndst_port = {1000 + i}\ndrop = true\n\n"
                       for i in range(daemon.host.nic.params.n_rules))
        got = harness.ask(s, "rules.configure", {"text": many})
        assert got["code"] == "refused" and "do not fit" in got["error"]
        assert daemon.config_text() == before and daemon.commits == commits
        # the commit fails on the NIC: the previous configuration is put back
        program, calls = daemon.host.dispatcher.program, []

        def failing():
            calls.append(1)
            if len(calls) == 1:
                raise NicError("commit timed out (injected)")
            return program()
        monkeypatch.setattr(daemon.host.dispatcher, "program", failing)
        other = "[[rule]]\nname = \"dns\"\nip_proto = \"udp\"\ndst_port = 53\ndrop = true\n"
        got = harness.ask(s, "rules.configure", {"text": other})
        assert got["code"] == "failed" and "injected" in got["error"]
        assert len(calls) == 2                     # the failed commit, then the old one back
        assert daemon.config_text() == before and daemon.operator_rules == rules
        assert daemon.host.dispatcher.base_plan.rules[:1] == rules
    finally:
        s.close()


def test_events_read_follow_streams_each_new_event(nic, tmp_path):
    """A follower gets the recent events in the reply, then one line per new event with
    its own request id, while a second session is served as usual."""
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\ndst_port = 1000\ndrop = true\n")
    h = Harness(nic, tmp_path, rules=rules)
    follower = h.connect()
    other = h.connect()
    try:
        got = h.ask(follower, "events.read", {"follow": True}, id=41)
        assert got["ok"] and got["result"]["follow"] is True
        assert [e["item"] for e in got["result"]["recent"]] == ["rules"]
        rules.write_text("[[rule]]\ndst_port = 1001\ndrop = true\n")
        lines = h.lines(follower)
        rules.write_text("[[rule]]\ndst_port = 99999\n")
        lines += h.lines(follower)
        assert [(m["id"], m["event"]["result"]) for m in lines] == [(41, "done"),
                                                                    (41, "refused")]
        assert any("1001" in line for line in lines[0]["event"]["diff"])
        assert h.ask(other, "counters.read")["ok"]
    finally:
        follower.close()
        other.close()
        h.close()


def test_the_policy_reload_parses_the_content_that_was_hashed(harness):
    """The reload takes the bytes the reconciler read and hashed, not a second read of the
    file (which may hold something else by then)."""
    daemon = harness.daemon
    only_counters = POLICY.replace('interfaces = ["*"]', 'interfaces = ["counters"]')
    out = daemon._on_policy(harness.folder / "policy.toml", only_counters.encode())
    assert out == {"grants": 1}
    assert daemon.policy.grants[0].interfaces == frozenset({"counters"})
    out = daemon._on_policy(harness.folder / "policy.toml", b"\xff")
    assert out["result"] == "refused" and "cannot be read" in out["error"]


def test_key_file_is_decided_by_its_content():
    from hetnic.host.daemon_ops import OpRefused, key_from_file
    key = bytes(range(0x80, 0x80 + 40))
    assert key_from_file(key, Path("k")) == key                         # 40 raw bytes
    assert key_from_file(key.hex().encode() + b"\n", Path("k")) == key  # 80 hex digits
    assert key_from_file(":".join(f"{b:02x}" for b in key).encode(), Path("k")) == key
    raw_looking_hex = b"0123456789" * 4        # 40 bytes, but all hex digits: a hex key
    with pytest.raises(OpRefused, match="80 hex digits, this file 40"):
        key_from_file(raw_looking_hex, Path("k"))
    for bad in (b"\xff" * 10, b"\xff" * 41, b""):
        with pytest.raises(OpRefused):
            key_from_file(bad, Path("k"))


def test_audit_log_mode_and_a_failed_write_stops(tmp_path):
    from hetnic.host.daemon_audit import AuditError, AuditLog
    old = os.umask(0)
    try:
        log = AuditLog(tmp_path / "audit.log")
    finally:
        os.umask(old)
    log.write("access", result="denied")
    log.close()
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o640
    full = AuditLog("/dev/full")
    try:
        with pytest.raises(AuditError, match="no decision may go unaudited"):
            full.write("access", result="denied")
    finally:
        with contextlib.suppress(OSError):
            full.close()


def test_groups_are_the_peers_own(harness):
    """A session's groups are those the peer process holds (SO_PEERGROUPS), not only the
    name service's list for its user: root with the supplementary group ``adm`` has it."""
    import grp
    if os.geteuid() != 0:
        pytest.skip("needs root to set the peer's groups")
    adm = grp.getgrnam("adm").gr_gid
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the peer: root with groups [adm]
        code = 1
        try:
            os.close(r)
            os.setgroups([adm])
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            s.connect(str(harness.folder / "d.sock"))
            s.sendall(b'{"v":1,"id":1,"op":"session.whoami"}\n')
            os.write(w, s.makefile("rb").readline())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.set_blocking(r, False)
    out = b""
    end = time.monotonic() + 20
    while not out.endswith(b"\n") and time.monotonic() < end:
        harness.daemon.poll(0.01)
        try:
            out += os.read(r, 4096)
        except BlockingIOError:
            pass
    os.close(r)
    os.waitpid(pid, 0)
    assert set(json.loads(out)["result"]["groups"]) == {"root", "adm"}


def test_a_policy_change_seen_in_a_turn_decides_that_turns_requests(harness):
    s = harness.connect()
    try:
        assert harness.ask(s, "counters.read")["ok"]
        tmp = harness.folder / ".policy.tmp"
        tmp.write_text(POLICY.replace('interfaces = ["*"]', 'interfaces = ["rules"]'))
        os.rename(tmp, harness.folder / "policy.toml")   # the event is queued ...
        s.sendall(b'{"v":1,"id":7,"op":"counters.read"}\n')   # ... and so is the request
        time.sleep(0.1)
        harness.daemon.poll(0)                      # one turn sees both
        got = harness.lines(s)[0]
        assert (got["id"], got["code"]) == (7, "denied")
    finally:
        s.close()


def test_a_replay_waiting_in_the_queue_has_its_whole_time(nic, tmp_path, monkeypatch):
    """A replay's time starts when its turn comes, not when it was queued behind another."""
    from hetnic.host import daemon_ops
    monkeypatch.setattr(daemon_ops, "REPLAY_TIMEOUT", 1.0)
    drop = tmp_path / "drop"
    drop.mkdir()
    h = Harness(nic, tmp_path, watch=drop)
    try:
        (drop / "a.pcap").write_bytes(_pcap([b"\x02" * 60] * 8))
        (drop / "b.pcap").write_bytes(_pcap([b"\x03" * 60] * 8))
        end = time.monotonic() + 20
        while len(h.daemon.replays) < 2:
            assert time.monotonic() < end
            h.daemon.poll(0.02)
        h.daemon.replay_step()                    # a's turn: its time starts
        time.sleep(1.1)                           # longer than a replay may take
        h.run_until(lambda: h.daemon.event_seq >= 2)
        assert [(Path(e["path"]).name, e["result"]) for e in h.daemon.events] == \
            [("a.pcap", "timeout"), ("b.pcap", "done")]
        # a full queue refuses one more capture (the first one alone may be any size)
        monkeypatch.setattr(daemon_ops, "MAX_QUEUED_BYTES", 100)
        (drop / "c.pcap").write_bytes(_pcap([b"\x04" * 60] * 8))
        (drop / "d.pcap").write_bytes(_pcap([b"\x05" * 60] * 8))
        h.run_until(lambda: h.daemon.event_seq >= 4)
        assert sorted((Path(e["path"]).name, e["result"]) for e in list(h.daemon.events)[2:]) \
            == [("c.pcap", "done"), ("d.pcap", "refused")]
        assert "queue is full" in h.daemon.events[2]["error"]
    finally:
        h.close()
