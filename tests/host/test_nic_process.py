"""The NIC process's machinery (:mod:`hetnic.host.nic_process`): children spawned with a
client, requests both ways, a child that dies is reported and the loop goes on, children die
with their parent, and the loop runs the NIC's clock only while there is work."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hetnic.errors import HetnicError
from hetnic.host.nic_process import NicProcess, NicProcessTimeout, NicRequestError

pytestmark = pytest.mark.timeout(120)


class _Wire:
    def pending(self) -> int:
        return 0


class _StubNic:
    """A NIC with nothing in flight and no clock (the lifecycle tests need no harness)."""

    def __init__(self):
        self.backend = object()
        self.wire = _Wire()
        self.runs = 0

    def run_until_idle(self, max_cycles, quiet):
        self.runs += 1
        return 0

    def now(self) -> int:
        return 0


# --- child targets (module level: the spawn context pickles them by name) -----------------

def add_and_report(client, a, b):
    total = client.request("add", a=a, b=b)
    client.request("result", value=total, pid=os.getpid())


def ask_refused(client):
    for kind, kw in (("refuse", {}), ("nothing-serves-this", {}), ("add", {"c": 1})):
        try:
            client.request(kind, **kw)
        except NicRequestError as exc:
            client.request("result", value=str(exc), pid=os.getpid())


def serve_calls(client):
    count = {"n": 0}

    def counters(scale=1):
        count["n"] += 1
        return {"n": count["n"] * scale, "pid": os.getpid()}

    def refuse():
        raise HetnicError("not today")

    def buggy(table):
        return table["missing"]
    client.on_call("counters", counters)
    client.on_call("refuse", refuse)
    client.on_call("buggy", buggy)
    while True:
        client.serve(1.0)


def fail_with_hetnic_error(client):
    raise HetnicError("the grant is stale\nsecond line")


# --- helpers -------------------------------------------------------------------------------

def _owner(**kw) -> NicProcess:
    logged: list[str] = []
    owner = NicProcess(_StubNic(), log=logged.append, **kw)
    owner.logged = logged
    return owner


def _results(owner):
    got = []
    owner.on_request("result", lambda child, value, pid: got.append((child.name, value, pid)))
    return got


def test_request_reaches_the_handler_and_the_answer_comes_back():
    with _owner() as owner:
        owner.on_request("add", lambda child, a, b: a + b)
        got = _results(owner)
        child = owner.spawn("adder", add_and_report, 2, 40)
        owner.run(until=lambda: got, timeout=60)
        assert got == [("adder", 42, child.pid)]
        owner.run(until=lambda: not child.alive, timeout=30)
        owner.run(until=lambda: child.reported, timeout=10)
        assert child.exitcode == 0
        assert child.pid != os.getpid()


def test_refused_requests_are_one_line_errors_in_the_child():
    with _owner() as owner:
        owner.on_request("add", lambda child, a, b: a + b)

        def refuse(child):
            raise HetnicError("port 80 is in use\nmore detail")
        owner.on_request("refuse", refuse)
        got = _results(owner)
        owner.spawn("asker", ask_refused)
        owner.run(until=lambda: len(got) == 3, timeout=60)
    messages = [value for _, value, _ in got]
    assert messages[0] == "port 80 is in use"
    assert "serves no request 'nothing-serves-this'" in messages[1]
    assert messages[2].startswith("request 'add':") and "\n" not in messages[2]


def test_call_into_the_child():
    with _owner() as owner:
        child = owner.spawn("server", serve_calls)
        assert child.call("counters", timeout=60) == {"n": 1, "pid": child.pid}
        assert child.call("counters", scale=10) == {"n": 20, "pid": child.pid}
        with pytest.raises(NicRequestError, match="^not today$"):
            child.call("refuse")
        with pytest.raises(NicRequestError, match="answers no call 'dump'"):
            child.call("dump")
        # A bug in one handler (here a KeyError) is answered as a failed call; the child
        # lives on with its state (the counter keeps counting).
        with pytest.raises(NicRequestError, match=r"^server failed 'buggy' \(a bug\): "
                           r"KeyError: 'missing'$"):
            child.call("buggy", table={})
        with pytest.raises(NicRequestError, match=r"failed 'buggy' \(a bug\): TypeError"):
            child.call("buggy", wrong=1)
        assert child.call("counters") == {"n": 3, "pid": child.pid}


def test_a_killed_child_is_reported_and_the_others_keep_answering():
    with _owner() as owner:
        exited = []
        owner.on_child_exit(exited.append)
        victim = owner.spawn("victim", serve_calls)
        other = owner.spawn("other", serve_calls)
        assert victim.call("counters", timeout=60)["pid"] == victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        owner.run(until=lambda: exited, timeout=30)
        assert exited == [victim] and victim.exitcode == -signal.SIGKILL
        assert owner.child_exits == 1
        assert owner.logged == [f"hetnic: victim (pid {victim.pid}) was killed by signal 9"]
        with pytest.raises(NicRequestError, match="victim"):
            victim.call("counters")
        assert other.call("counters", timeout=60)["pid"] == other.pid
        assert owner.alive == [other]


def test_a_hetnic_error_in_the_child_is_one_line_and_status_1(capfd):
    with _owner() as owner:
        child = owner.spawn("failing", fail_with_hetnic_error)
        owner.run(until=lambda: child.reported, timeout=60)
    assert child.exitcode == 1
    err = capfd.readouterr().err
    assert "hetnic: failing: error: the grant is stale\n" in err
    assert "Traceback" not in err and "second line" not in err


def test_close_ends_the_children():
    owner = _owner()
    try:
        children = [owner.spawn(f"c{i}", serve_calls) for i in range(2)]
        for child in children:
            child.call("counters", timeout=60)
    finally:
        owner.close(grace=10)
    assert [c.exitcode for c in children] == [0, 0]      # EOF on the pipe: a clean exit
    assert owner.child_exits == 0 and owner.logged == []


def test_spawn_checks_its_name():
    with _owner() as owner:
        with pytest.raises(ValueError, match="non-empty name"):
            owner.spawn("", serve_calls)
        owner.spawn("x", serve_calls)
        with pytest.raises(ValueError, match="already running"):
            owner.spawn("x", serve_calls)


def test_run_timeout():
    with _owner() as owner:
        assert owner.run(timeout=0.05) is False
        with pytest.raises(NicProcessTimeout, match="within 0.05 s"):
            owner.run(until=lambda: False, timeout=0.05)
        with pytest.raises(ValueError, match="timeout"):
            owner.run(timeout=0)


_PARENT = """
import os, sys, time
sys.path.insert(0, {here!r})
from test_nic_process import _StubNic, serve_calls
from hetnic.host.nic_process import NicProcess
owner = NicProcess(_StubNic())
child = owner.spawn("orphan", serve_calls)
child.call("counters", timeout=60)
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return True


def test_children_die_with_their_parent():
    script = textwrap.dedent(_PARENT.format(here=os.path.dirname(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = None
    try:
        pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(30)
        end = time.monotonic() + 30
        while not _gone(pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert _gone(pid), f"child {pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(30)
        parent.stdout.close()
        if pid is not None and not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_loop_runs_the_clock_only_while_the_nic_has_work():
    """Frames put on the wire reach an RX queue while the loop runs; an idle loop then costs
    no simulated cycles (it sleeps instead)."""
    from frames import udp4
    from hetnic.host.nic import Nic
    with Nic.open("sim", width=64, rx_queues=8) as nic, NicProcess(nic) as owner:
        nic.wire.send([udp4(dport=53, payload=b"x" * 40)])
        owner.run(until=lambda: any(q.ready() for q in nic.rx_queues), timeout=60)
        frames = [p.data for q in nic.rx_queues for p in q.poll()]
        assert len(frames) == 1 and frames[0].endswith(b"x" * 40)
        owner.run(timeout=0.05)
        before = nic.now()
        assert owner.run(timeout=0.2) is False
        assert nic.now() == before


def watch_the_wake_word(client, segment_name):
    from hetnic.host.shm import SharedSegment
    with SharedSegment.attach(segment_name) as segment:
        word = segment.buf[:4].cast("I")
        try:
            end = time.monotonic() + 60
            while not word[0] and time.monotonic() < end:
                time.sleep(0.001)
            seen = word[0]
        finally:
            word.release()
    client.kick()
    client.request("result", value=seen, pid=os.getpid())


def test_the_wake_word_is_set_while_the_loop_sleeps_long():
    """With a wake word the idle loop sleeps long and says so in the word (1), which a
    child reads in shared memory; awake, the word is 0."""
    from hetnic.host.shm import SharedSegment
    with SharedSegment.create(64, prefix="hetnic-test") as segment:
        owner = NicProcess(_StubNic(), log=lambda text: None, wake_word=segment.buf[:4])
        try:
            got = _results(owner)
            owner.spawn("watcher", watch_the_wake_word, segment.name)
            owner.run(until=lambda: got, timeout=60)
            assert got[0][1] == 1
            assert segment.buf[0] == 0
        finally:
            owner.close()
    with pytest.raises(ValueError, match="wake_word must be 4 bytes"):
        NicProcess(_StubNic(), wake_word=memoryview(bytearray(8)))


def test_stack_procs_needs_a_shared_nic():
    from hetnic.host.stack_procs import StackProcs, StackProcsError
    with pytest.raises(StackProcsError, match=r"Nic.open\('sim', shared=True\)"):
        StackProcs(_StubNic(), tap=None)


def answer_after_a_turn(client, segment_name):
    from hetnic.host.shm import SharedSegment
    segment = SharedSegment.attach(segment_name)
    word = segment.buf[:4].cast("I")

    def after_turn():
        seen = word[0]
        end = time.monotonic() + 30
        while word[0] == seen and time.monotonic() < end:
            time.sleep(0.001)
        return word[0] != seen
    client.on_call("after_turn", after_turn)
    while True:
        client.serve(1.0)


def test_the_loop_turns_while_a_call_waits():
    """A child that needs the NIC process's loop to move (as one waiting for a TX slot
    does) before it answers still answers a call: the loop turns while the call waits."""
    from hetnic.host.shm import SharedSegment
    with SharedSegment.create(64, prefix="hetnic-test") as segment:
        word = segment.buf[:4].cast("I")
        owner = _owner()
        try:
            def turn():
                word[0] += 1
                return False
            owner.on_turn(turn)
            child = owner.spawn("waiter", answer_after_a_turn, segment.name)
            assert child.call("after_turn", timeout=60) is True
        finally:
            owner.close()
            word.release()


class _FakeTime:
    """``time`` for the NIC process's loop with a ``perf_counter`` that only the stub's
    clock runs advance (1 us per simulated cycle)."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t

    def __getattr__(self, name):
        return getattr(time, name)


class _BusyNic(_StubNic):
    """A NIC that always has work left: every run uses its whole cycle budget."""

    def __init__(self, clock: _FakeTime):
        super().__init__()
        self.clock, self.cycles, self.budgets = clock, 0, []

    def run_until_idle(self, max_cycles, quiet):
        self.budgets.append(max_cycles)
        self.cycles += max_cycles
        self.clock.t += max_cycles * 1e-6
        return max_cycles

    def now(self) -> int:
        return self.cycles


def test_a_busy_nic_runs_in_short_slices_of_wall_time(monkeypatch):
    """While the NIC stays busy each turn runs one bounded slice of cycles (frames it sent
    are handed on between slices), sized so that a slice takes about RUN_SECONDS."""
    from hetnic.host import nic_process
    clock = _FakeTime()
    monkeypatch.setattr(nic_process, "time", clock)
    nic = _BusyNic(clock)
    owner = NicProcess(nic)
    try:
        nic.wire.pending = lambda: 1            # work on the wire: the first turn runs
        owner.step()
        nic.wire.pending = lambda: 0
        for _ in range(60):
            owner.step()
            assert owner.busy                   # the budget ran out: turn again
        assert len(nic.budgets) == 61           # one run per turn
        assert all(nic_process._MIN_CYCLES <= b <= nic_process._MAX_CYCLES
                   for b in nic.budgets)
        goal = nic_process.RUN_SECONDS / 1e-6   # cycles at 1 us each
        assert abs(nic.budgets[-1] - goal) <= 0.05 * goal
    finally:
        owner.close()
