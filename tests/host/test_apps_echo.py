"""The built-in applications (TCP and UDP echo, discard, HTTP static) on a real stack, with a
second stack as the client, the two wired directly (PairLink) and run on a simulated clock."""

import hashlib
import random

import h11
import pytest

from hetnic.host.apps.discard import DiscardServer
from hetnic.host.apps.echo import EchoServer, UdpEchoServer
from hetnic.host.apps.http_static import HttpStaticServer
from hetnic.host.links import PairLink
from hetnic.host.stack.instance import PROFILES
from hetnic.host.stack.stack import Stack

SERVER4, CLIENT4 = "198.18.0.2", "198.18.0.1"
SERVER6, CLIENT6 = "2001:db8::2", "2001:db8::1"


class Wire:
    """Two stacks on a PairLink, stepped on a simulated clock (1 ms per idle step, or straight
    to the next timer)."""

    def __init__(self, server_profile="low-delay"):
        self.now = 0.0
        a, b = PairLink.pair(clock=lambda: self.now)
        self.server = Stack(PROFILES[server_profile], mac=b"\x02\x00\x00\x00\x00\x02",
                            ipv4=[(SERVER4, 24)], ipv6=[(SERVER6, 64)], seed=1)
        self.client = Stack(PROFILES["concurrency"].replace(name="client"),
                            mac=b"\x02\x00\x00\x00\x00\x01", ipv4=[(CLIENT4, 24)],
                            ipv6=[(CLIENT6, 64)], seed=2)
        self.pairs = [(self.server, a), (self.client, b)]

    def step(self) -> bool:
        moved = False
        for stack, link in self.pairs:
            for frame in link.receive(1024):
                stack.receive(frame, self.now)
                moved = True
        for stack, link in self.pairs:
            out = stack.poll(self.now)
            if out:
                link.send(out)
                moved = True
        return moved

    def run(self, until, limit=200_000):
        for _ in range(limit):
            if until():
                return
            if not self.step():
                deadline = min((d for d in (s.next_deadline() for s, _ in self.pairs)
                                if d is not None), default=None)
                self.now = deadline if deadline is not None and deadline > self.now \
                    else self.now + 0.001
        raise AssertionError("the stacks did not reach the condition")


def _connect(wire, host, port):
    sock = wire.client.connect(host, port)
    wire.run(lambda: sock.connected or sock.error)
    assert sock.connected, sock.error
    return sock


def _exchange(wire, sock, data, expect):
    """Send ``data`` on ``sock`` while reading; return what came back once ``expect`` bytes
    (or EOF) arrived."""
    got = bytearray()
    sent = 0
    eof = False

    def progress():
        nonlocal sent, eof
        if sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
        while (chunk := sock.recv(65536)) is not None:
            if not chunk:
                eof = True
                break
            got.extend(chunk)
        return len(got) >= expect or eof
    wire.run(progress)
    return bytes(got), eof


@pytest.mark.parametrize("host", [SERVER4, SERVER6])
def test_tcp_echo_returns_every_byte_then_closes(host):
    seed = 7
    print("seed", seed)
    data = random.Random(seed).randbytes(600_000)
    wire = Wire()
    echo = EchoServer(wire.server)
    sock = _connect(wire, host, 7)
    got, _ = _exchange(wire, sock, data, len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    sock.shutdown()
    _, eof = _exchange(wire, sock, b"", 1)
    assert eof
    assert echo.stats()["bytes_in"] == echo.stats()["bytes_out"] == len(data)
    assert echo.accepted == 1 and not echo.connections


@pytest.mark.parametrize("host", [SERVER4, SERVER6])
def test_udp_echo(host):
    wire = Wire()
    echo = UdpEchoServer(wire.server)
    sock = wire.client.udp_socket()
    for size in (0, 1, 1000, 1472):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        sock.sendto(payload, (host, 7))
        answer = []
        wire.run(lambda: answer.append(sock.recvfrom()) or answer[-1] is not None)
        data, (source, port) = answer[-1]
        assert data == payload and port == 7
    assert echo.datagrams == 4


def _send_all(wire, sock, data):
    sent = 0

    def progress():
        nonlocal sent
        sent += sock.send(data[sent:sent + 65536])
        return sent == len(data)
    wire.run(progress)


def test_discard_counts_bytes_per_connection():
    wire = Wire("concurrency")
    reports = []
    discard = DiscardServer(wire.server, on_report=reports.append)
    for count, size in enumerate((12345, 200_000), 1):
        sock = _connect(wire, SERVER4, 9)
        _send_all(wire, sock, bytes(size))
        sock.close()
        wire.run(lambda: len(reports) == count)
    assert [r["bytes"] for r in reports] == [12345, 200_000]
    assert all(r["error"] is None and r["peer"][0] == CLIENT4 for r in reports)
    assert discard.stats()["bytes_in"] == 212_345 and discard.stats()["bytes_out"] == 0
    assert not discard.connections


def test_http_get_of_a_large_file_over_the_stack(tmp_path):
    seed = 11
    print("seed", seed)
    content = random.Random(seed).randbytes(2 * 1024 * 1024 + 3)
    (tmp_path / "big.bin").write_bytes(content)
    wire = Wire("throughput")
    server = HttpStaticServer(wire.server, tmp_path)
    sock = _connect(wire, SERVER6, 80)
    client = h11.Connection(h11.CLIENT)
    request = client.send(h11.Request(method="GET", target="/big.bin", headers=[("Host", "x")]))
    sock.send(request + client.send(h11.EndOfMessage()))
    events = []

    def response_done():
        while (chunk := sock.recv(65536)) is not None:
            client.receive_data(chunk)
            if not chunk:
                break
        while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            events.append(event)
        return client.their_state is not h11.SEND_BODY and events
    wire.run(response_done)
    response = events[0]
    body = b"".join(e.data for e in events if isinstance(e, h11.Data))
    assert response.status_code == 200 and body == content
    assert isinstance(events[-1], h11.EndOfMessage)
    assert server.statuses == {200: 1} and server.body_bytes == len(content)
