"""asyncio-style streams and the asyncio driver.

The first part runs the stream classes on a scripted in-memory stack (:class:`FakeStack`):
bytes move between its sockets only inside ``poll``, so a stream that forgets to kick the
driver stalls and the test times out. The second part runs two real stacks on a PairLink.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from hetnic.host.async_driver import AsyncStackDriver
from hetnic.host.stack.errors import ConnectionClosed, ConnectionRefused, ConnectionReset

TIMEOUT = 20.0


# --- a scripted stack -------------------------------------------------------------------------

class FakeLink:
    """No frames; ``on_arrival`` is there so the driver does not poll it."""

    def __init__(self):
        self.on_arrival = None

    def send(self, frames):
        pass

    def receive(self, max_frames=64):
        return []

    def fileno(self):
        return None

    def service(self):
        pass

    def next_deadline(self):
        return None


class FakeSocket:
    def __init__(self, stack, capacity):
        self.stack = stack
        self.capacity = capacity
        self.sndq = bytearray()
        self.rcvq = bytearray()
        self.peer = None
        self.state = "CLOSED"
        self.error = None
        self.peer_eof = False
        self.shut = False
        self._closed = False
        self.on_ready = None
        self.port = None
        self.queue = []
        self.connect_to = None

    # the TcpSocket API the streams use
    def bind(self, address):
        self.port = address[1]

    def listen(self, backlog=None):
        self.state = "LISTEN"
        self.stack.listeners[self.port] = self

    def accept(self):
        return self.queue.pop(0) if self.queue else None

    def connect(self, address, now=None):
        self.state = "SYN-SENT"
        self.connect_to = address[1]
        self.stack.pending.append(self)

    def send(self, data):
        self._check()
        if self.shut or self._closed:
            raise ConnectionClosed("send after close")
        n = min(len(data), self.capacity - len(self.sndq))
        self.sndq += bytes(data[:n])
        return n

    def recv(self, n=65536):
        self._check()
        if self.rcvq:
            data = bytes(self.rcvq[:n])
            del self.rcvq[:n]
            return data
        return b"" if self.peer_eof else None

    def shutdown(self):
        self.shut = True

    def close(self):
        if self.state == "LISTEN":
            del self.stack.listeners[self.port]
        self._closed = True
        self.shut = True

    def abort(self):
        self._closed = True
        if self.peer is not None:
            self.peer.error = "reset"
            self.peer.ready()

    def _check(self):
        if self.error == "reset":
            raise ConnectionReset("connection reset")
        if self.error == "refused":
            raise ConnectionRefused("connection refused")

    @property
    def connected(self):
        return self.state == "ESTABLISHED" and self.error is None

    @property
    def closed(self):
        return self._closed

    def getsockname(self):
        return ("198.18.0.1", self.port or 40000)

    def getpeername(self):
        return ("198.18.0.2", self.connect_to or 1)

    def ready(self):
        if self.on_ready is not None:
            self.on_ready()


class FakeStack:
    """Every socket of the test lives here; ``poll`` moves bytes, handshakes and FINs."""
    config = None

    def __init__(self, capacity=1000):
        self.capacity = capacity
        self.listeners = {}
        self.pending = []
        self.sockets = []
        self.polls = 0

    def tcp_socket(self):
        s = FakeSocket(self, self.capacity)
        self.sockets.append(s)
        return s

    def receive(self, frame, now):
        pass

    def next_deadline(self):
        return None

    def poll(self, now):
        self.polls += 1
        for s in self.pending:
            listener = self.listeners.get(s.connect_to)
            if listener is None:
                s.error = "refused"
            else:
                server = self.tcp_socket()
                server.port = s.connect_to
                s.peer, server.peer = server, s
                s.state = server.state = "ESTABLISHED"
                listener.queue.append(server)
                listener.ready()
            s.ready()
        self.pending = []
        for s in self.sockets:
            if s.peer is None:
                continue
            if s.sndq:
                s.peer.rcvq += s.sndq
                s.sndq.clear()
                s.peer.ready()
                s.ready()
            if s.shut and not s.peer.peer_eof:
                s.peer.peer_eof = True
                s.peer.ready()
        return []


def run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)
    return asyncio.run(bounded())


async def fake_pair(capacity=1000, limit=1 << 16):
    stack = FakeStack(capacity)
    driver = AsyncStackDriver(stack, FakeLink())
    accepted = asyncio.Queue()

    async def on_client(reader, writer):
        await accepted.put((reader, writer))

    server = await driver.start_server(on_client, 80, limit=limit)
    reader, writer = await driver.open_connection("198.18.0.2", 80, limit=limit)
    sreader, swriter = await accepted.get()
    return driver, server, (reader, writer), (sreader, swriter)


# --- stream semantics on the scripted stack ---------------------------------------------------

def test_write_drain_read_large_through_small_buffers():
    seed = 5
    print(f"seed={seed}")
    data = random.Random(seed).randbytes(200_000)

    async def main():
        driver, server, (r, w), (sr, sw) = await fake_pair(capacity=1000)
        w.write(data)                   # far more than the socket takes at once
        await w.drain()
        w.write_eof()
        got = await sr.read()
        assert await sr.read() == b"" and sr.at_eof()
        server.close()
        await server.wait_closed()
        driver.close()
        return got

    assert run(main()) == data


def test_readline_readuntil_readexactly():
    async def main():
        driver, _, (r, w), (sr, sw) = await fake_pair()
        w.writelines([b"first line\nsecond", b" line\n", b"AB--CD--", b"0123456789tail"])
        assert await sr.readline() == b"first line\n"
        assert await sr.readline() == b"second line\n"
        assert await sr.readuntil(b"--") == b"AB--"
        assert await sr.readuntil(b"--") == b"CD--"
        assert await sr.readexactly(10) == b"0123456789"
        w.close()
        await w.wait_closed()
        assert w.is_closing()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await sr.readexactly(10)
        assert info.value.partial == b"tail" and info.value.expected == 10
        assert await sr.readline() == b""
        assert sr.at_eof()
        driver.close()

    run(main())


def test_readuntil_at_eof_and_limit():
    async def main():
        driver, _, (r, w), (sr, sw) = await fake_pair(limit=16)
        w.write(b"x" * 40 + b"\nnext\n")
        with pytest.raises(ValueError, match="limit"):
            await sr.readline()         # consumed, as asyncio's readline does
        assert await sr.readline() == b"next\n"
        w.write(b"no separator")
        w.write_eof()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await sr.readuntil(b"!")
        assert info.value.partial.endswith(b"no separator")
        driver.close()

    run(main())


def test_async_iteration_and_extra_info():
    async def main():
        driver, _, (r, w), (sr, sw) = await fake_pair()
        w.write(b"a\nb\nc")
        w.write_eof()
        lines = [line async for line in sr]
        assert lines == [b"a\n", b"b\n", b"c"]
        assert w.get_extra_info("peername") == ("198.18.0.2", 80)
        assert w.get_extra_info("sockname")[0] == "198.18.0.1"
        assert w.get_extra_info("nothing", 7) == 7
        assert w.can_write_eof()
        with pytest.raises(ConnectionClosed, match="write after write_eof"):
            w.write(b"more")
        driver.close()

    run(main())


def test_refused_and_reset_raise_stack_errors():
    async def main():
        stack = FakeStack()
        driver = AsyncStackDriver(stack, FakeLink())
        with pytest.raises(ConnectionRefused):
            await driver.open_connection("198.18.0.2", 81)
        driver.close()
        driver, _, (r, w), (sr, sw) = await fake_pair()
        sw.get_extra_info("socket").abort()
        with pytest.raises(ConnectionReset):
            await r.read(10)
        with pytest.raises(ConnectionReset):
            w.write(b"x")
        driver.close()

    run(main())


def test_server_serve_forever_and_close():
    async def main():
        stack = FakeStack()
        driver = AsyncStackDriver(stack, FakeLink())

        async def echo(reader, writer):
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()

        server = await driver.start_server(echo, 7)
        assert server.is_serving() and len(server.sockets) == 1
        serving = asyncio.ensure_future(server.serve_forever())
        replies = []
        for i in range(5):
            r, w = await driver.open_connection("198.18.0.2", 7)
            w.write(b"hello %d\n" % i)
            replies.append(await r.readline())
            w.close()
        server.close()
        await server.wait_closed()
        await serving                   # serve_forever returns once the server closed
        assert not server.is_serving() and server.sockets == []
        driver.close()
        return replies

    assert run(main()) == [b"HELLO %d\n" % i for i in range(5)]


# --- two real stacks on a PairLink ------------------------------------------------------------

def real_stacks(profile: str = "throughput", faults=None):
    from hetnic.host.faults import FaultInjector, FaultSpec
    from hetnic.host.links import PairLink
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack.stack import Stack
    cfg = PROFILES[profile]
    client = Stack(cfg, mac="02:00:00:00:00:01", ipv4=[("198.18.0.1", 24)],
                   ipv6=[("2001:db8::1", 64)], seed=1)
    server = Stack(cfg, mac="02:00:00:00:00:02", ipv4=[("198.18.0.2", 24)],
                   ipv6=[("2001:db8::2", 64)], seed=2)
    if faults is None:
        a, b = PairLink.pair()
    else:
        a, b = PairLink.pair(FaultInjector(FaultSpec(**faults), "ab"),
                             FaultInjector(FaultSpec(**faults), "ba"))
    return client, a, server, b


async def transfer(size: int, host: str, seed: int, faults=None) -> tuple[str, str, dict]:
    """``size`` random bytes each way: the client sends, the server reads them all and
    answers with its own; returns (digest the server sent, digest the client got, details:
    the link's injectors and both stacks' counters)."""
    client, a, server, b = real_stacks(faults=faults)
    rng = random.Random(seed)
    up, down = rng.randbytes(size), rng.randbytes(size)
    result = {}

    async def handle(reader, writer):
        data = await reader.readexactly(size)
        result["server_got"] = hashlib.sha256(data).hexdigest()
        writer.write(down)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with AsyncStackDriver(server, b), AsyncStackDriver(client, a):
        srv = await server.start_server(handle, 5000)        # through the stack's driver
        reader, writer = await client.open_connection(host, 5000)
        assert writer.get_extra_info("peername") == (host, 5000)
        writer.write(up)
        await writer.drain()
        got = await reader.read()
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
    assert result["server_got"] == hashlib.sha256(up).hexdigest()
    result.update(faults=(a.faults, b.faults), counters=(client.counters, server.counters))
    return hashlib.sha256(down).hexdigest(), hashlib.sha256(got).hexdigest(), result


@pytest.mark.parametrize("host", ["198.18.0.2", "2001:db8::2"])
def test_real_stacks_transfer_both_ways(host):
    seed = 21
    print(f"seed={seed}")
    want, got, _ = run(transfer(1 << 20, host, seed))
    assert got == want


def test_real_stacks_transfer_with_faults():
    seed = 8
    print(f"seed={seed}")
    faults = dict(loss=0.02, reorder=0.02, dup=0.01, seed=seed)
    want, got, result = run(transfer(256 << 10, "198.18.0.2", seed, faults))
    assert got == want
    ab, ba = result["faults"]
    assert ab.lost and ba.lost and ab.reordered and ab.duplicated
    client, server = result["counters"]
    assert client.tcp_retransmits + client.tcp_fast_retransmits > 0
    assert server.tcp_retransmits + server.tcp_fast_retransmits > 0


def test_stack_streams_need_a_driver():
    from hetnic.host.stack.errors import NotConnected
    client, _, _, _ = real_stacks()
    with pytest.raises(NotConnected, match="AsyncStackDriver"):
        client.open_connection("198.18.0.2", 7)
    with pytest.raises(NotConnected, match="AsyncStackDriver"):
        client.start_server(lambda r, w: None, 7)


def test_real_stacks_refused_and_many_clients():
    from hetnic.host.stack.errors import ConnectionRefused as Refused

    async def main():
        client, a, server, b = real_stacks("concurrency")

        async def echo(reader, writer):
            line = await reader.readline()
            writer.write(line[::-1])
            await writer.drain()
            writer.close()

        async with AsyncStackDriver(server, b) as sdrv, AsyncStackDriver(client, a) as cdrv:
            with pytest.raises(Refused):
                await cdrv.open_connection("198.18.0.2", 7)
            srv = await sdrv.start_server(echo, 7)

            async def one(i: int) -> bytes:
                r, w = await cdrv.open_connection("198.18.0.2", 7)
                w.write(b"%05d\n" % i)
                reply = await r.read()
                w.close()
                return reply

            replies = await asyncio.gather(*(one(i) for i in range(50)))
            srv.close()
        return replies

    assert run(main()) == [(b"%05d\n" % i)[::-1] for i in range(50)]


# --- the kernel as the peer, the stack straight on a TAP ----------------------------------------

@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_kernel_client_to_stream_server_on_a_tap(family):
    import socket

    from hetnic.host.links import TapLink
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack.stack import Stack
    from kit.netns import in_netns, netns, require_netns, tap_in_netns

    require_netns()
    seed = 13
    print(f"seed={seed}")
    data = random.Random(seed).randbytes(300_000)
    ours = "198.18.0.2" if family == "ipv4" else "2001:db8::2"

    async def main(ns, tap):
        stack = Stack(PROFILES["low-delay"], mac="02:00:00:00:00:02",
                      ipv4=[("198.18.0.2", 24)], ipv6=[("2001:db8::2", 64)])

        async def echo(reader, writer):
            while chunk := await reader.read(10_000):
                writer.write(chunk)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        loop = asyncio.get_running_loop()
        async with AsyncStackDriver(stack, TapLink(tap)) as driver:
            server = await driver.start_server(echo, 7)
            with in_netns(ns):
                k = socket.socket(socket.AF_INET if family == "ipv4" else socket.AF_INET6,
                                  socket.SOCK_STREAM)
            with k:
                k.setblocking(False)
                await loop.sock_connect(k, (ours, 7))
                sender = loop.create_task(loop.sock_sendall(k, data))
                got = bytearray()
                while len(got) < len(data):
                    chunk = await loop.sock_recv(k, 65536)
                    assert chunk, "the echo ended early"
                    got += chunk
                await sender
                k.shutdown(socket.SHUT_WR)
                assert await loop.sock_recv(k, 10) == b""     # our FIN after theirs
            server.close()
        return bytes(got), stack

    with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", "2001:db8::1/64") as tap:
        got, stack = run(main(ns, tap))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert stack.counters.tcp_in > 0
