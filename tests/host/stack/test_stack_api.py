"""The stack's socket API on two stacks wired directly (simulated clock): connect and accept
over IPv4 and IPv6, data both ways, readiness and on_ready, graceful close down to an empty
connection table, and every API misuse as a one-line StackError."""

from __future__ import annotations

import random

import pytest

from hetnic.host.stack.errors import (AddressInUse, BadArgument, ConnectionClosed,
                                      ConnectionRefused, ConnectionReset, ConnectionTimeout,
                                      NotConnected, StackError, Unreachable)
from stack_pair import IP4_A, IP4_B, IP6_A, IP6_B, QUICK, Pair, pump


def _one_line(err: Exception) -> str:
    text = str(err)
    assert text and "\n" not in text
    assert isinstance(err, StackError) and isinstance(err, OSError)
    return text


@pytest.mark.parametrize("family", [4, 6])
def test_connect_accept_transfer_close(family):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    pair = Pair(seed=seed)
    listener, client, server = pair.connect(family, port=8080)
    local = (IP4_A, IP4_B) if family == 4 else (IP6_A, IP6_B)
    assert client.getpeername() == (local[1], 8080)
    assert server.getsockname() == (local[1], 8080)
    assert server.getpeername() == client.getsockname()
    assert client.getsockname()[0] == local[0]
    lo, hi = QUICK.ephemeral_ports
    assert lo <= client.getsockname()[1] <= hi
    assert client.state == server.state == "ESTABLISHED"
    up = rng.randbytes(200_000)
    down = rng.randbytes(150_000)
    assert pump(pair, client, server, up) == up
    assert pump(pair, server, client, down) == down
    assert pair.a.state_counts() == {"ESTABLISHED": 1}
    (dump,) = pair.b.connections()
    assert (dump["local"], dump["lport"], dump["remote"]) == (local[1], 8080, local[0])
    assert dump["state"] == "ESTABLISHED"
    for key in ("cwnd", "ssthresh", "srtt", "rto", "send_queue", "recv_queue", "retransmits"):
        assert key in dump
    client.close()
    assert pair.run(lambda: server.recv() == b"")
    server.close()
    pair.run()                                  # through TIME-WAIT
    assert client.closed and server.closed and client.error is None
    for stack in (pair.a, pair.b):
        assert len(stack.tcp) == 0 and stack.state_counts() == {}
        assert stack.tcp.next_deadline() is None and stack.tcp.timers == 0
    listener.close()
    assert pair.b.listen(8080).port == 8080     # the port is free again


def test_readiness_and_on_ready():
    pair = Pair()
    listener = pair.b.listen(7)
    events = {"listener": 0, "client": 0}
    listener.on_ready = lambda: events.__setitem__("listener", events["listener"] + 1)
    assert not listener.readable and listener.accept() is None
    client = pair.a.tcp_socket()
    client.on_ready = lambda: events.__setitem__("client", events["client"] + 1)
    client.connect((IP4_B, 7))
    assert client.state == "SYN-SENT"
    assert not client.connected and not client.writable and not client.readable
    assert client.recv() is None                # nothing yet, not an error
    assert pair.run(lambda: listener.readable)
    assert events["listener"] == 1 and client.connected and client.writable
    assert events["client"] >= 1
    server = listener.accept()
    assert listener.accept() is None and not listener.readable
    server_events = []
    server.on_ready = lambda: server_events.append(server.readable)
    client.send(b"ping")
    assert pair.run(lambda: server.readable)
    assert server_events and server_events[-1] is True
    assert server.recv(2) == b"pi" and server.readable and server.recv() == b"ng"
    assert not server.readable and server.recv() is None
    client.shutdown()                           # write side only
    assert pair.run(lambda: server.readable)
    assert server.recv() == b""                 # end of stream
    assert not client.writable
    server.send(b"still talking")
    assert pair.run(lambda: client.readable)
    assert client.recv() == b"still talking"
    server.close()
    assert pair.run(lambda: client.readable and client.recv() == b"")


def test_socket_bind_listen_accept_and_explicit_local_port():
    pair = Pair()
    srv = pair.b.tcp_socket()
    srv.bind((IP6_B, 9000))
    srv.listen(4)
    assert srv.state == "LISTEN" and srv.getsockname() == (IP6_B, 9000)
    cli = pair.a.tcp_socket()
    cli.bind(("", 12345))
    cli.connect((IP6_B, 9000))
    assert pair.run(lambda: srv.readable)
    conn = srv.accept()
    assert conn.getpeername() == (IP6_A, 12345)
    # a listener bound to the IPv6 address does not take IPv4 connections: RST, refused
    other = pair.a.connect(IP4_B, 9000)
    assert pair.run(lambda: other.error is not None)
    assert other.error == "refused"


def test_refused_reset_and_timeout_raise_on_next_call():
    pair = Pair()
    refused = pair.a.connect(IP4_B, 1)
    assert pair.run(lambda: refused.error is not None)
    assert refused.error == "refused" and refused.readable and refused.writable
    for call in (lambda: refused.send(b"x"), lambda: refused.recv()):
        with pytest.raises(ConnectionRefused) as info:
            call()
        assert "refused" in _one_line(info.value)

    _, client, server = pair.connect(4, port=7)
    server.abort()                              # RST to the client
    assert pair.run(lambda: client.error is not None)
    assert client.error == "reset" and not client.connected
    with pytest.raises(ConnectionReset) as info:
        client.recv()
    _one_line(info.value)
    with pytest.raises(ConnectionReset):
        client.send(b"x")

    _, client, server = pair.connect(4, port=7)
    pair.drop = lambda direction, frame: True   # the peer vanishes
    client.send(b"into the void")
    assert pair.run(lambda: client.error is not None, timeout=120.0)
    assert client.error == "timeout"
    with pytest.raises(ConnectionTimeout) as info:
        client.send(b"x")
    _one_line(info.value)
    assert pair.a.counters.tcp_rto >= QUICK.max_retries
    assert len(pair.a.tcp) == 0 and pair.a.tcp.next_deadline() is None


def test_syn_to_a_silent_peer_times_out():
    pair = Pair()
    pair.drop = lambda direction, frame: direction == "ab" and len(frame) > 60
    client = pair.a.connect(IP4_B, 7)
    assert pair.run(lambda: client.error is not None, timeout=120.0)
    assert client.error == "timeout" and len(pair.a.tcp) == 0


def test_misuse_raises_one_line_errors():
    pair = Pair()
    listener, client, server = pair.connect(4, port=7)
    fresh = pair.a.tcp_socket()
    cases = [
        (BadArgument, lambda: client.send("text"), "bytes-like"),
        (BadArgument, lambda: client.send(12), "bytes-like"),
        (BadArgument, lambda: client.recv(0), "positive"),
        (BadArgument, lambda: fresh.connect((IP4_B, 70000)), "port must be"),
        (BadArgument, lambda: fresh.connect((IP4_B, 0)), "port must be"),
        (BadArgument, lambda: fresh.connect(("not-an-ip", 7)), "IPv4 or IPv6"),
        (BadArgument, lambda: fresh.connect(IP4_B), "(host, port)"),
        (BadArgument, lambda: fresh.bind(("", 65536)), "port must be"),
        (BadArgument, lambda: fresh.bind(("198.18.0.77", 80)), "not an address"),
        (BadArgument, lambda: fresh.accept(), "not listening"),
        (BadArgument, lambda: fresh.listen(0), "backlog"),
        (BadArgument, lambda: pair.b.listen(-5), "port must be"),
        (BadArgument, lambda: client.connect((IP4_B, 7)), "already in use"),
        (BadArgument, lambda: client.listen(), "connected"),
        (NotConnected, lambda: fresh.send(b"x"), "not connected"),
        (NotConnected, lambda: fresh.recv(), "not connected"),
        (NotConnected, lambda: fresh.getpeername(), "not connected"),
        (AddressInUse, lambda: pair.b.listen(7), "port 7"),
        (Unreachable, lambda: fresh.connect(("198.19.0.1", 7)), "no route"),
        (Unreachable, lambda: fresh.connect(("2001:db8:ffff::1", 7)), "no route"),
    ]
    for cls, call, fragment in cases:
        with pytest.raises(cls) as info:
            call()
        assert fragment in _one_line(info.value), (cls, str(info.value))

    a1 = pair.b.tcp_socket()
    a1.bind(("", 7000))
    with pytest.raises(AddressInUse):
        pair.b.tcp_socket().bind((IP4_B, 7000))     # overlaps the wildcard
    with pytest.raises(BadArgument, match="already bound"):
        a1.bind(("", 7001))
    a1.close()
    pair.b.tcp_socket().bind((IP4_B, 7000))         # close gave the port back

    client.shutdown()
    with pytest.raises(ConnectionClosed, match="after shutdown"):
        client.send(b"x")
    client.close()
    for call in (lambda: client.send(b"x"), lambda: client.recv(), client.shutdown,
                 lambda: client.listen(), lambda: client.bind(("", 1))):
        with pytest.raises(ConnectionClosed) as info:
            call()
        _one_line(info.value)
    client.close()                                  # idempotent
    listener.close()
    with pytest.raises(ConnectionClosed):
        listener.accept()


def test_hosts_as_ipaddress_objects_and_bytes():
    import ipaddress
    pair = Pair()
    pair.b.listen(7, host=ipaddress.ip_address(IP4_B))
    c1 = pair.a.connect(ipaddress.ip_address(IP4_B), 7)
    c2 = pair.a.connect(ipaddress.ip_address(IP4_B).packed, 7)
    assert pair.run(lambda: c1.connected and c2.connected)
    assert c1.getsockname()[1] != c2.getsockname()[1]


def test_simultaneous_open_through_bound_sockets():
    pair = Pair()
    a = pair.a.tcp_socket()
    a.bind(("", 5000))
    b = pair.b.tcp_socket()
    b.bind((IP4_B, 6000))
    a.connect((IP4_B, 6000))
    b.connect((IP4_A, 5000))
    assert pair.run(lambda: a.connected and b.connected)
    assert a.getpeername() == (IP4_B, 6000) and b.getpeername() == (IP4_A, 5000)
    a.send(b"hello")
    assert pair.run(lambda: b.readable)
    assert b.recv() == b"hello"
    assert pair.a.counters.drops.get("tcp_no_socket", 0) == 0


@pytest.mark.parametrize("kwargs, fragment", [
    ({"mac": "02:00:00:00:00"}, "mac"),
    ({"mac": b"\x02" * 5}, "mac"),
    ({"mac": "02:00:00:00:00:01", "ipv4": [("198.18.0.1", 33)]}, "prefix length"),
    ({"mac": "02:00:00:00:00:01", "ipv4": [("2001:db8::1", 64)]}, "IPv4 address"),
    ({"mac": "02:00:00:00:00:01", "ipv4": ["198.18.0.1/x"]}, "bad prefix"),
    ({"mac": "02:00:00:00:00:01", "ipv6": ["fe80::zz/64"]}, "IPv4 or IPv6"),
    ({"mac": "02:00:00:00:00:01", "gateway4": "2001:db8::1"}, "gateway4"),
    ({"mac": "02:00:00:00:00:01", "mtu": 100}, "mtu"),
])
def test_stack_arguments_are_checked(kwargs, fragment):
    from hetnic.host.stack.stack import Stack
    with pytest.raises(BadArgument) as info:
        Stack(QUICK, **kwargs)
    assert fragment in _one_line(info.value)


def test_stack_views():
    pair = Pair()
    _, client, server = pair.connect(6, port=7)
    stats = pair.a.stats()
    assert stats["instance"] == "quick" and stats["connections"] == 1
    assert stats["states"] == {"ESTABLISHED": 1} and stats["tcp_out"] >= 2
    assert isinstance(stats["drops"], dict)
    assert pair.a.name == "quick" and pair.a.config is QUICK
    assert "quick" in repr(pair.a) and "ESTABLISHED" in repr(client)
