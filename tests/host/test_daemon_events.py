"""hetnicd's file events (inotify through asyncinotify) with real programs making them: cp,
mv, an editor's temporary file and rename, git checkout, a 1,000-file storm, a writer that
holds a file open half-written, a queue overflow, and files that vanish or cannot be read."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hetnic.host.daemon_events import REPORT_SUFFIX, Item, Reconciler, Watcher

pytestmark = pytest.mark.timeout(120)


class Recorder:
    """A watcher and a reconciler whose instruction only counts (kind, name, content)."""

    def __init__(self, items):
        self.calls: list[tuple[str, str, bytes]] = []
        self.records: list[dict] = []
        self.watcher = Watcher(items)
        self.reconciler = Reconciler(self._do, self.records.append)

    def _do(self, kind, path, data):
        self.calls.append((kind, path.name, data))
        return {"instruction": kind, "result": "done"}

    def settle(self, want: int | None = None, quiet: float = 0.3, timeout: float = 20.0):
        """Poll until ``want`` calls were made (or nothing new came for ``quiet`` s)."""
        end = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < end:
            due = self.watcher.poll()
            if due:
                self.reconciler.handle(due)
                last = time.monotonic()
            elif want is not None and len(self.calls) >= want and \
                    time.monotonic() - last >= quiet:
                break
            elif want is None and time.monotonic() - last >= quiet:
                break
            time.sleep(0.01)
        return self.calls

    def close(self):
        self.watcher.close()


@pytest.fixture
def drop(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    rec = Recorder([Item("drop", folder), Item("rules", tmp_path / "rules.toml")])
    yield folder, rec
    rec.close()


def test_cp_mv_editor_and_half_written(drop, tmp_path):
    folder, rec = drop
    src = tmp_path / "a.pcap"
    src.write_bytes(b"A" * 100)
    subprocess.run(["cp", str(src), str(folder / "cp.pcap")], check=True, timeout=10)
    other = tmp_path / "b.pcap"
    other.write_bytes(b"B" * 100)
    subprocess.run(["mv", str(other), str(folder / "mv.pcap")], check=True, timeout=10)
    # an editor: write a temporary file in the same folder, then rename it over the target
    tmp = tmp_path / ".rules.toml.swp"
    tmp.write_text("[[rule]]\ndst_port = 53\n")
    os.rename(tmp, tmp_path / "rules.toml")
    # files that are not items: a report, a hidden temporary, another suffix
    (folder / ("x.pcap" + REPORT_SUFFIX)).write_text("{}")
    (folder / ".part.pcap").write_bytes(b"x")
    (folder / "notes.txt").write_text("x")
    rec.settle(want=3)
    assert sorted(rec.calls) == [("drop", "cp.pcap", b"A" * 100),
                                 ("drop", "mv.pcap", b"B" * 100),
                                 ("rules", "rules.toml", b"[[rule]]\ndst_port = 53\n")]
    # half-written: a writer holds the file open; nothing happens until it closes
    rec.calls.clear()
    writer = subprocess.Popen(["sh", "-c", f"printf half > {folder / 'slow.pcap'}; "
                               f"exec 3>>{folder / 'slow.pcap'}; read x; printf done >&3"],
                              stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (folder / "slow.pcap").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        rec.settle(quiet=0.5)
        # printf's redirection closed the file once (a complete "half"); the held
        # descriptor of the second open has not closed yet
        assert [c[1:] for c in rec.calls] == [("slow.pcap", b"half")]
        rec.calls.clear()
        rec.settle(quiet=0.5)
        assert rec.calls == []
        writer.stdin.write(b"\n")
        writer.stdin.close()
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
    rec.settle(want=1)
    assert [c[1:] for c in rec.calls] == [("slow.pcap", b"halfdone")]


def test_held_open_writer_never_triggers(drop):
    folder, rec = drop
    with open(folder / "held.pcap", "wb") as fh:
        fh.write(b"x" * 1000)
        fh.flush()
        rec.settle(quiet=0.5)
        assert rec.calls == []                    # open for writing, half-written
        fh.write(b"y" * 1000)
    rec.settle(want=1)
    assert rec.calls == [("drop", "held.pcap", b"x" * 1000 + b"y" * 1000)]


def test_git_checkout_of_a_rules_file(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, timeout=30, env=env,
                       capture_output=True)
    git("init", "-q", "-b", "main")
    rules = repo / "rules.toml"
    rules.write_text("[[rule]]\ndst_port = 1\n")
    git("add", "rules.toml")
    git("commit", "-q", "-m", "one")
    git("checkout", "-q", "-b", "two")
    rules.write_text("[[rule]]\ndst_port = 2\n")
    git("commit", "-q", "-am", "two")
    rec = Recorder([Item("rules", rules)])
    try:
        git("checkout", "-q", "main")
        rec.settle(want=1)
        git("checkout", "-q", "two")
        rec.settle(want=2)
        git("checkout", "-q", "two")              # nothing changes: no instruction
        rec.settle(quiet=0.3)
    finally:
        rec.close()
    assert [c[2] for c in rec.calls] == [b"[[rule]]\ndst_port = 1\n",
                                         b"[[rule]]\ndst_port = 2\n"]


def test_storm_of_1000_files(drop, tmp_path):
    """1,000 files copied into the folder by one cp: each acted on exactly once."""
    folder, rec = drop
    src = tmp_path / "src"
    src.mkdir()
    for i in range(1000):
        (src / f"f{i:04d}.pcap").write_bytes(i.to_bytes(2, "big") * 8)
    names = sorted(p.name for p in src.iterdir())
    subprocess.run(["sh", "-c", f"cp {src}/*.pcap {folder}/"], check=True, timeout=60)
    rec.settle(want=1000, quiet=0.5, timeout=60)
    got = [c[1] for c in rec.calls]
    missed = set(names) - set(got)
    duplicated = len(got) - len(set(got))
    assert (len(missed), duplicated) == (0, 0)
    assert all(data == int(name[1:5]).to_bytes(2, "big") * 8 for _, name, data in rec.calls)
    # a second storm with the same content: nothing to do
    subprocess.run(["sh", "-c", f"cp {src}/*.pcap {folder}/"], check=True, timeout=60)
    rec.settle(quiet=0.5)
    assert len(rec.calls) == 1000 and rec.reconciler.unchanged >= 1000


@pytest.mark.slow
def test_queue_overflow_rescans_and_reconciles(drop, tmp_path):
    """More events than the kernel queues (fs.inotify.max_queued_events) while nobody
    reads: IN_Q_OVERFLOW, a rescan, and every file acted on exactly once."""
    folder, rec = drop
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    n = limit + 2000
    for i in range(n):
        (folder / f"o{i:06d}.pcap").write_bytes(str(i).encode())
    rec.settle(want=n, quiet=1.0, timeout=120)
    assert rec.watcher.overflows >= 1
    got = [c[1] for c in rec.calls]
    assert len(got) == n and len(set(got)) == n


def test_vanished_symlink_loop_and_unreadable(drop, tmp_path):
    folder, rec = drop
    loop = folder / "loop.pcap"
    os.symlink(loop.name, loop)                   # a symlink to itself
    (folder / "gone.pcap").write_bytes(b"x")
    # the reconciler sees each path; the first fails to read, the second vanished
    os.unlink(folder / "gone.pcap")
    rec.reconciler.handle([("drop", loop), ("drop", folder / "gone.pcap"),
                           ("drop", folder)])
    assert [r["result"] for r in rec.records] == ["error"] * 3
    assert rec.calls == []
    shutil.rmtree(folder)                         # the watched folder itself goes
    rec.settle(quiet=0.2)


READER = "hntest-reader16"


def test_permission_denied_is_an_error_record():
    """A file the daemon may not read (mode 0, the reconciler running as a user made by the
    test: root reads any file): an ``error`` record, no call, and the reconciler goes on."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to make the test's user")
    import pwd
    subprocess.run(["userdel", READER], timeout=30, capture_output=True)
    subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin",
                    READER], check=True, timeout=30, capture_output=True)
    folder = Path(tempfile.mkdtemp(prefix="hntest-events-"))     # the user reaches it
    try:
        entry = pwd.getpwnam(READER)
        folder.chmod(0o755)
        locked, fine = folder / "locked.pcap", folder / "fine.pcap"
        locked.write_bytes(b"x")
        locked.chmod(0)
        fine.write_bytes(b"y")
        fine.chmod(0o644)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                              # the child: the reconciler as the user
            code = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
                calls, records = [], []
                reconciler = Reconciler(
                    lambda k, p, d: calls.append(p.name) or {"result": "done"},
                    records.append)
                reconciler.handle([("drop", locked), ("drop", fine)])
                os.write(w, repr(([r["result"] for r in records], calls,
                                  records[0].get("error", ""))).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            out = fh.read()
        _, status = os.waitpid(pid, 0)
        assert status == 0 and out
        results, calls, error = eval(out)         # noqa: S307 (our own child's repr)
        assert results == ["error", "done"] and calls == ["fine.pcap"]
        assert "Permission denied" in error
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["userdel", READER], timeout=30, capture_output=True)


def test_rescan_leaves_out_a_file_held_open_for_writing(drop):
    """After an overflow the rescan probes each file with a read lease: one still open for
    writing is left for its close (which triggers it); a closed one is due."""
    folder, rec = drop
    (folder / "done.pcap").write_bytes(b"d")
    with open(folder / "held.pcap", "wb") as fh:
        fh.write(b"half")
        fh.flush()
        assert [p.name for _, p in rec.watcher.rescan() if p.parent == folder] == ["done.pcap"]
    assert sorted(p.name for _, p in rec.watcher.rescan() if p.parent == folder) == \
        ["done.pcap", "held.pcap"]


def test_done_forgets_removed_files_and_stays_bounded(drop):
    folder, rec = drop
    rec.reconciler.max_drops = 3
    for i in range(5):
        (folder / f"b{i}.pcap").write_bytes(bytes([i]))
    rec.settle(want=5)
    assert sorted(p.name for p in rec.reconciler.done) == ["b2.pcap", "b3.pcap", "b4.pcap"]
    os.unlink(folder / "b4.pcap")
    os.rename(folder / "b3.pcap", folder / "gone.txt")
    rec.settle(quiet=0.3)
    rec.reconciler.forget(rec.watcher.gone)
    assert [p.name for p in rec.reconciler.done] == ["b2.pcap"]
    (folder / "b4.pcap").write_bytes(bytes([4]))         # the same content is back: acted on
    rec.settle(want=6)
    assert [c[1] for c in rec.calls[5:]] == ["b4.pcap"]
