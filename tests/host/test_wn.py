"""W/N threads with shadow listeners (hetnic.host.wn): N and W processes over shared-memory
rings, fed by a software RSS wire (hetnic.bench_wn.RssWire) from a client stack in the test
process. Each test starts its own WnHost (segments unlinked on the way out)."""

import os
import time

import pytest

from hetnic.bench_wn import RssWire, echo_w
from hetnic.host.stack.instance import InstanceConfig
from hetnic.host.stack.stack import Stack
from hetnic.host.wn import WnError, WnTimeout, WThread, repoint_reta
from hetnic.host.wn_host import WnHost
from hetnic.host.wn_rings import (Cmd, ConnState, Evt, WnLayout, WnLayoutError, decode,
                                  encode, encode_port)

PORT = 7
CONFIG = InstanceConfig(name="n", nagle=False, delayed_ack=False)
SERVER = dict(mac="02:00:00:00:00:02", ipv4=[("198.18.0.2", 24)])


class Client:
    """A client stack in this process, its frames through the RSS wire to the N's."""

    def __init__(self, host: WnHost):
        self.wire = RssWire(host)
        self.stack = Stack(CONFIG.replace(name="client"), mac="02:00:00:00:00:01",
                           ipv4=[("198.18.0.1", 24)])

    def pump(self) -> None:
        now = time.monotonic()
        for frame in self.wire.receive():
            self.stack.receive(frame, now)
        out = self.stack.poll(now)
        if out:
            self.wire.send(out)

    def run_until(self, done, timeout: float = 60.0, also=None) -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise AssertionError("timed out")
            self.pump()
            if also is not None:
                also()
            time.sleep(0.0005)

    def connect(self, count: int) -> list:
        socks = [self.stack.connect("198.18.0.2", PORT) for _ in range(count)]
        self.run_until(lambda: all(s.connected for s in socks))
        return socks

    def echo(self, socks, payloads) -> list[bytes]:
        got = [b""] * len(socks)
        for s, p in zip(socks, payloads):
            s.send(p)

        def done():
            for i, s in enumerate(socks):
                if s.readable:
                    data = s.recv()
                    if data:
                        got[i] += data
            return all(g == p for g, p in zip(got, payloads))
        self.run_until(done)
        return got


def _host(n_count, w_count):
    return WnHost(n_count, w_count, wire=(1024, 2048), ring_slots=256, table_slots=512)


def _start(host, n_count, targets):
    for n in range(n_count):
        host.start_n(n, CONFIG.replace(name=f"n{n}"), SERVER)
    for w, (target, args) in enumerate(targets):
        host.start_w(w, target, *args)


def _no_segments_left():
    return [f for f in os.listdir("/dev/shm") if f.startswith(f"hetnic-wn-{os.getpid()}-")
            or f.startswith(f"hetnic-wire-{os.getpid()}-")]


def _open_rows(host, count):
    """Wait until ``count`` connections are in the table, taken by a W (OPEN)."""
    rows = []

    def done():
        rows[:] = [r for r in host.dump() if r["w"] >= 0 and r["state"] == "OPEN"]
        return len(rows) >= count
    return rows, done


@pytest.mark.timeout(120)
def test_shadow_listener_per_n_routing_table_and_echo():
    with _host(2, 2) as host:
        _start(host, 2, [(echo_w, (PORT,)), (echo_w, (PORT,))])
        host.wait_ready()
        client = Client(host)
        socks = client.connect(24)
        payloads = [b"request %d " % i * 7 for i in range(24)]
        assert client.echo(socks, payloads) == payloads
        rows = host.dump()
        assert len(rows) == 24
        fds = [r["fd"] for r in rows]
        assert len(set(fds)) == 24
        for r in rows:
            assert r["n"] == (r["fd"] - 1) % 2 and r["state"] == "OPEN" and r["port"] == PORT
        # Every N accepted on its own shadow listener; the FDs spread over N's and W's.
        assert {r["n"] for r in rows} == {0, 1}
        assert {r["w"] for r in rows} == {0, 1}
        peers = {r["peer"] for r in rows}
        assert peers == {"198.18.0.1 %d" % s.getsockname()[1] for s in socks}
        counters = host.counters()
        assert [c["accepts"] for c in counters] == [sum(r["n"] == n for r in rows)
                                                   for n in (0, 1)]
    assert _no_segments_left() == []


@pytest.mark.timeout(120)
def test_w_exit_closes_its_fds_and_the_others_keep_working():
    with _host(2, 2) as host:
        # W 1 echoes one request, then exits with its connections open.
        _start(host, 2, [(echo_w, (PORT,)), (echo_w, (PORT, 1))])
        host.wait_ready()
        client = Client(host)
        socks = client.connect(8)
        rows, done = _open_rows(host, 8)
        client.run_until(done)
        by_port = {int(r["peer"].split()[1]): r["w"] for r in rows}
        owner = [by_port[s.getsockname()[1]] for s in socks]
        assert set(owner) == {0, 1}
        first_w1 = owner.index(1)
        assert client.echo([socks[first_w1]], [b"last words"]) == [b"last words"]
        client.run_until(lambda: not host.w_procs[1].is_alive())
        # Its FDs are closed by their N's: the client reads the echo, then EOF.
        gone = [s for s, w in zip(socks, owner) if w == 1]

        eof = set()

        def all_eof():
            for s in gone:
                while s not in eof and s.readable:
                    if s.recv() == b"":
                        eof.add(s)
                        s.close()
            return len(eof) == len(gone)
        client.run_until(all_eof)
        # After the client's FIN the N releases them (it read and dropped what came).
        client.run_until(lambda: not [r for r in host.dump() if r["w"] == 1])
        # W 0's connections and new ones keep working (all to W 0 now).
        kept = [s for s, w in zip(socks, owner) if w == 0] + client.connect(4)
        payloads = [b"still here %d" % i for i in range(len(kept))]
        assert client.echo(kept, payloads) == payloads
        assert {r["w"] for r in host.dump()} == {0}


def accept_then_leave(w, port):
    """A W that says it accepts on ``port``, waits until connections were handed to it and
    exits without taking them."""
    w.listen(port)
    w.try_accept(port)
    assert not w.fds()
    w.set_ready()
    end = time.monotonic() + 30
    while not any(w._accepts.get(port)) and time.monotonic() < end:
        w.poll()
        time.sleep(0.001)


@pytest.mark.timeout(120)
def test_pending_accepts_of_an_exiting_w_go_to_the_others():
    with _host(2, 2) as host:
        _start(host, 2, [(echo_w, (PORT,)), (accept_then_leave, (PORT,))])
        host.wait_ready()
        client = Client(host)
        socks = client.connect(8)
        client.run_until(lambda: not host.w_procs[1].is_alive())
        payloads = [b"to whoever %d" % i for i in range(8)]
        assert client.echo(socks, payloads) == payloads
        assert {r["w"] for r in host.dump()} == {0}
        client.run_until(lambda: sum(c["reassigned"] for c in host.counters()) > 0)


@pytest.mark.timeout(120)
def test_n_death_repoints_reta_and_new_connections_succeed():
    with _host(2, 2) as host:
        # W 0 echoes; this process is W 1 and keeps what it accepts.
        _start(host, 2, [(echo_w, (PORT,))])
        host.wait_ready([0])
        me = WThread.attach(host.name, 1)
        try:
            # Accept first, then listen: its answer means both N's have our ACCEPT.
            assert me.try_accept(PORT) is None
            me.listen(PORT)
            client = Client(host)
            client.connect(24)
            mine = []
            rows, done = _open_rows(host, 24)

            def settled():
                got = me.try_accept(PORT)
                if got is not None:
                    mine.append(got[0])
                return done() and len(mine) == sum(r["w"] == 1 for r in rows)
            client.run_until(settled)
            on_n1 = sum(r["n"] == 1 for r in rows)
            assert 0 < on_n1 < 24
            host.n_procs[1].kill()
            host.n_procs[1].join(10)
            assert host.n_died(1) == on_n1
            assert sum(r["state"] == "LOST" for r in host.dump()) == on_n1
            # This W's FDs on the dead N: one-line errors, not a wait.
            on_dead = [fd for fd in mine if (fd - 1) % 2 == 1]
            assert on_dead
            for fd in on_dead:
                with pytest.raises(WnError, match="lost"):
                    me.send(fd, b"x")
                with pytest.raises(WnError, match="lost"):
                    me.recv(fd, timeout=5)
            client.wire.repoint({1})
            assert 1 not in client.wire.reta
            me.exit()                               # new connections all to W 0
            fresh = client.connect(8)
            payloads = [b"after the death %d" % i for i in range(8)]
            assert client.echo(fresh, payloads) == payloads
            assert all(r["n"] == 0 for r in host.dump() if r["state"] == "OPEN")
        finally:
            me.close_segment()


@pytest.mark.timeout(120)
def test_bad_fds_are_one_line_errors():
    with _host(1, 2) as host:
        # This process is W 0; W 1 is an echo process.
        host.start_n(0, CONFIG, SERVER)
        host.start_w(1, echo_w, PORT)
        host.wait_ready([1])
        me = WThread.attach(host.name, 0)
        try:
            client = Client(host)
            socks = [client.stack.connect("198.18.0.2", PORT) for _ in range(4)]
            mine = []

            def handed():
                got = me.try_accept(PORT)
                if got is not None:
                    mine.append(got)
                rows = host.dump()
                return (bool(mine) and all(s.connected for s in socks)
                        and len([r for r in rows if r["w"] >= 0]) == 4)
            client.run_until(handed)
            fd = mine[0][0]
            theirs = next(r["fd"] for r in host.dump() if r["w"] == 1)
            cases = [(lambda: me.send(999_999, b"x"), "unknown fd"),
                     (lambda: me.recv(0, timeout=None), "unknown fd"),
                     (lambda: me.send(theirs, b"x"), "belongs to W 1"),
                     (lambda: me.close(theirs), "belongs to W 1"),
                     (lambda: me.send(fd, "text"), "bytes-like")]
            for call, text in cases:
                with pytest.raises(WnError, match=text) as info:
                    call()
                assert "\n" not in str(info.value)
            me.close(fd)
            with pytest.raises(WnError, match="closed already"):
                me.send(fd, b"after close")
            with pytest.raises(WnTimeout, match="nothing ready"):
                me.accept(PORT + 1, timeout=None)
            with pytest.raises(WnError, match="port must be"):
                me.listen(70000)
            me.exit()
            with pytest.raises(WnError, match="exited"):
                me.accept(PORT)
        finally:
            me.close_segment()


@pytest.mark.timeout(60)
def test_recv_many_and_send_many_keep_the_order_of_each_fd():
    # No N process: this test plays N 0 on the rings of W 0.
    with WnHost(1, 1, ring_slots=64, table_slots=16) as host:
        evt, cmd = host.layout.event_ring(0, 0), host.layout.command_ring(0, 0)
        w = WThread.attach(host.name, 0)
        try:
            for fd in (1, 2):
                evt.push(encode(fd, encode_port(PORT, "198.18.0.1 %d" % (1000 + fd))),
                         Evt.ACCEPTED)
            assert w.recv_many() == []
            assert [w.try_accept(PORT, poll=False)[0] for _ in range(2)] == [1, 2]
            evt.push(encode(1, b"a"), Evt.DATA)
            assert w.poll() == 1                    # buffered: recv_many returns it first
            for fd, body, kind in ((2, b"b", Evt.DATA), (1, b"c", Evt.DATA), (1, b"", Evt.EOF),
                                   (2, b"reset", Evt.ERROR), (99, b"x", Evt.DATA)):
                evt.push(encode(fd, body), kind)
            assert w.recv_many() == [(1, b"a"), (2, b"b"), (1, b"c"), (1, b""), (2, None)]
            assert w.recv_many() == []
            assert w.recv(1, timeout=None) == b""
            with pytest.raises(WnError, match="reset"):
                w.recv(2, timeout=None)
            # EOF then an error on one FD in one batch (the peer's RST after its FIN): one
            # ending, the error.
            evt.push(encode(3, encode_port(PORT, "198.18.0.1 1003")), Evt.ACCEPTED)
            assert w.recv_many() == [] and w.try_accept(PORT, poll=False)[0] == 3
            evt.push(encode(3, b""), Evt.EOF)
            evt.push(encode(3, b"reset"), Evt.ERROR)
            assert w.recv_many() == [(3, None)]
            cmd.pop_many(100)                       # HELLO, ACCEPT, TAKEN
            long = b"z" * (w.max_data + 5)
            w.send_many([(1, b"x" * 10), (2, b"y"), (1, long), (1, b"w")])
            sent = [decode(d) for d, kind in cmd.pop_many(100) if kind == Cmd.SEND]
            assert sent == [(1, b"x" * 10), (2, b"y"), (1, long[:w.max_data]), (1, b"zzzzz"),
                            (1, b"w")]
            with pytest.raises(WnError, match="unknown fd"):
                w.send_many([(1, b"ok"), (7, b"no"), (1, b"never")])
            assert [decode(d) for d, _ in cmd.pop_many(10)] == [(1, b"ok")]
            # N 0 dies: the host marks its open entries LOST; send_many checks them now.
            entry = host.layout.table(0)[0]
            entry["fd"], entry["w"], entry["state"] = 1, 0, ConnState.OPEN
            assert host.layout.dead == 0 and host.n_died(0) == 1
            assert host.layout.dead == 1
            with pytest.raises(WnError, match="its N died"):
                w.send_many([(1, b"late")])
            assert cmd.pop_many(10) == []
        finally:
            w.close_segment()
    assert _no_segments_left() == []


def test_layout_and_reta_arguments():
    with pytest.raises(WnLayoutError, match="n_count"):
        WnLayout.bytes_needed(0, 1)
    with pytest.raises(WnLayoutError, match="w_count"):
        WnLayout.bytes_needed(1, True)
    assert repoint_reta([0, 1, 2, 1, 0, 1], {1}, [0, 2]) == [0, 0, 2, 2, 0, 0]
    with pytest.raises(WnError, match="no living N"):
        repoint_reta([0, 1], {0, 1}, [])


@pytest.mark.timeout(120)
def test_killed_w_is_noticed_by_its_pid_and_its_fds_closed():
    with _host(1, 2) as host:
        _start(host, 1, [(echo_w, (PORT,)), (echo_w, (PORT,))])
        host.wait_ready()
        client = Client(host)
        socks = client.connect(6)
        rows, done = _open_rows(host, 6)
        client.run_until(done)
        owner = {int(r["peer"].split()[1]): r["w"] for r in rows}
        victims = [s for s in socks if owner[s.getsockname()[1]] == 1]
        assert victims and len(victims) < len(socks)
        host.w_procs[1].kill()                  # no BYE: the N sees the pid gone (a zombie)
        eof = set()

        def all_eof():
            for s in victims:
                if s not in eof and s.readable and s.recv() == b"":
                    eof.add(s)
                    s.close()
            return len(eof) == len(victims)
        client.run_until(all_eof)
        kept = [s for s in socks if s not in victims]
        payloads = [b"survivor %d" % i for i in range(len(kept))]
        assert client.echo(kept, payloads) == payloads


@pytest.mark.timeout(180)
def test_bench_request_frames_generated_ahead_are_all_answered_byte_exact():
    from hetnic.bench_wn import requests_per_s
    out = requests_per_s(2, conns_per_n=2, rounds=10)
    assert out["requests"] == 40 and out["responses_exact"] == 40
    assert out["bytes_missing"] == 0 and out["accepts_per_n"] == [2, 2]
    assert out["w_count"] == 2 and set(out["cpu_seconds"]) == {"n0", "n1", "w0", "w1"}
    assert len(out["seconds_per_n"]) == 2 and max(out["seconds_per_n"]) == out["seconds"]
    assert _no_segments_left() == []


@pytest.mark.timeout(300)
def test_bench_wn_medians_over_alternating_trials(monkeypatch):
    import hetnic.bench_wn as bench
    order = []
    rates = {1: iter([100, 300, 200]), 2: iter([250, 450, 500])}

    def fake(n, **kw):
        order.append(n)
        return {"requests_per_s": next(rates[n]), "responses_exact": 1, "seconds": 1.0,
                "seconds_per_n": [1.0] * n, "cpu_seconds": {}, "watcher_cpu_seconds": 0.0,
                "frames_out": 1, "n_cpu_us_per_request": 10.0, "w_cpu_us_per_request": 1.0,
                "bound_n2_over_n1": 1.8, "load_1min": 0.0, "w_count": n}
    monkeypatch.setattr(bench, "requests_per_s", fake)
    monkeypatch.setattr(bench, "busy_processes", lambda window=0.5: [])
    monkeypatch.setattr(bench, "w_exit_run", lambda: {"lost": 0})
    out = bench.bench_wn(trials=3, spread_connections=0)
    assert order == [1, 2, 2, 1, 1, 2]
    assert (out["requests_per_s_n1"], out["requests_per_s_n2"]) == (200, 450)
    assert out["n2_over_n1"] == 2.25 and out["n2_over_n1_per_trial"] == [2.5, 1.5, 2.5]
    assert [r["requests_per_s"] for r in out["requests"]["all_runs"]["n2"]] == [250, 450, 500]
    assert out["w_count"] == {"n1": 1, "n2": 2} and out["connections_lost_on_w_exit"] == 0


@pytest.mark.timeout(180)
def test_bench_w_exit_mid_run_loses_no_connection():
    from hetnic.bench_wn import w_exit_run
    out = w_exit_run(connections=12, rounds=6, seed=7)
    print(out)
    assert out["exiting_w_exit_status"] == 0 and out["other_ws_alive"]
    assert out["lost"] == 0
    assert out["answered"] + out["closed_cleanly_by_exiting_w"] == 12
    assert out["closed_cleanly_by_exiting_w"] > 0


def test_busy_processes_lists_others_not_this_one():
    from hetnic.bench_wn import busy_processes
    rows = busy_processes(0.05, min_percent=0.0)
    assert rows and all(r["pid"] != os.getpid() for r in rows)
    assert set(rows[0]) == {"pid", "nice", "cpu_percent", "comm", "cmdline"}
