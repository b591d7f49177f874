"""The HTTP/1.1 static file server (hetnic.host.apps.http_static) against a scripted socket
(the server's logic with any send window), and between two real stacks wired directly."""

import hashlib
import os
import random

import h11
import pytest

from hetnic.host.apps.http_static import HttpStaticServer
from hetnic.errors import HetnicError


class FakeSocket:
    """A non-blocking socket whose peer is the test: ``feed`` bytes in, ``take`` what the
    server sent; ``space`` bounds what one ``send`` accepts until the test takes it."""

    def __init__(self, space=1 << 30):
        self.inbound = bytearray()
        self.outbound = bytearray()
        self.space = space
        self.peer_closed = False
        self.closed = False
        self.aborted = False
        self.on_ready = None

    def getpeername(self):
        return ("198.18.0.1", 40000)

    def recv(self, n=65536):
        if self.inbound:
            data = bytes(self.inbound[:n])
            del self.inbound[:n]
            return data
        return b"" if self.peer_closed else None

    def send(self, data):
        if self.closed:
            raise HetnicError("send after close")
        n = min(len(data), self.space - len(self.outbound))
        self.outbound += data[:n]
        return n

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = self.aborted = True

    # the test's side
    def feed(self, data=b"", eof=False):
        self.inbound += data
        self.peer_closed |= eof
        self._ready()

    def take(self):
        data = bytes(self.outbound)
        self.outbound.clear()
        self._ready()
        return data

    def _ready(self):
        if self.on_ready is not None:
            self.on_ready()


class FakeListener:
    def __init__(self):
        self.queue = []
        self.on_ready = None
        self.closed = False

    def accept(self):
        return self.queue.pop(0) if self.queue else None

    def close(self):
        self.closed = True


class FakeStack:
    def __init__(self):
        self.listeners = {}

    def listen(self, port, backlog=None, host=None):
        self.listeners[port] = FakeListener()
        return self.listeners[port]

    def connect_fake(self, port, space=1 << 30):
        sock = FakeSocket(space)
        listener = self.listeners[port]
        listener.queue.append(sock)
        listener.on_ready()
        return sock


def _responses(data: bytes, methods=None):
    """Parse the server's bytes with an h11 client: a list of (Response, body)."""
    client = h11.Connection(h11.CLIENT)
    out = []
    methods = list(methods or [])
    client.receive_data(data)
    while True:
        if client.their_state is h11.DONE:
            client.start_next_cycle() if client.our_state is h11.DONE else None
        if client.our_state is h11.IDLE and methods:
            client.send(h11.Request(method=methods.pop(0), target="/",
                                    headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return out
        if isinstance(event, h11.Response):
            out.append([event, b""])
        elif isinstance(event, h11.Data):
            out[-1][1] += event.data
        elif isinstance(event, h11.ConnectionClosed):
            return out


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>hetnic</h1>\n")
    (root / "sub" / "a b.txt").write_bytes(b"spaced\n")
    (root / "empty.bin").write_bytes(b"")
    (tmp_path / "secret.txt").write_bytes(b"do not serve\n")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    return root


def _get(sock, target, method=b"GET", extra=b""):
    sock.feed(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, target, extra))


def test_get_head_and_errors_on_one_kept_alive_connection(site):
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80)
    _get(sock, b"/")
    _get(sock, b"/sub/a%20b.txt?x=1")
    _get(sock, b"/index.html", b"HEAD")
    _get(sock, b"/missing")
    _get(sock, b"/index.html", b"DELETE")
    _get(sock, b"/empty.bin")
    got = _responses(sock.take(), [b"GET", b"GET", b"HEAD", b"GET", b"DELETE", b"GET"])
    assert [(r.status_code, body) for r, body in got] == [
        (200, b"<h1>hetnic</h1>\n"), (200, b"spaced\n"), (200, b""), (404, b"404 Not Found\n"),
        (405, b"405 Method Not Allowed\n"), (200, b"")]
    headers = dict(got[2][0].headers)
    assert headers[b"content-length"] == b"16" and headers[b"content-type"] == b"text/html"
    assert dict(got[4][0].headers)[b"allow"] == b"GET, HEAD"
    assert not sock.closed
    assert server.statuses == {200: 4, 404: 1, 405: 1} and server.requests == 6
    sock.feed(eof=True)
    assert sock.closed and not server.connections


@pytest.mark.parametrize("target", [b"/../secret.txt", b"/%2e%2e/secret.txt", b"/sub/../../secret.txt",
                                    b"/link.txt", b"//etc/passwd", b"/%00", b"/sub/%ff",
                                    b"http://x/../secret.txt"])
def test_path_traversal_is_refused(site, target):
    stack = FakeStack()
    HttpStaticServer(stack, site)
    sock = stack.connect_fake(80)
    _get(sock, target)
    [(response, body)] = _responses(sock.take(), [b"GET"])
    assert response.status_code == 404 and b"do not serve" not in body


def test_malformed_request_gets_400_and_close(site):
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80)
    sock.feed(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")      # a header line without a colon
    data = sock.take()
    assert data.startswith(b"HTTP/1.1 400 ") and b"connection: close" in data.lower()
    assert sock.closed and not sock.aborted and server.bad_requests == 1


def test_connection_close_request_closes_after_response(site):
    stack = FakeStack()
    HttpStaticServer(stack, site)
    sock = stack.connect_fake(80)
    _get(sock, b"/", extra=b"Connection: close\r\n")
    [(response, body)] = _responses(sock.take(), [b"GET"])
    assert response.status_code == 200 and body == b"<h1>hetnic</h1>\n"
    assert sock.closed


def test_large_file_streams_through_a_small_window(site):
    seed = 1234
    print("seed", seed)
    rng = random.Random(seed)
    content = rng.randbytes(3 * 1024 * 1024 + 17)
    (site / "big.bin").write_bytes(content)
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80, space=10_000)
    _get(sock, b"/big.bin")
    received = bytearray()
    for _ in range(10_000):
        chunk = sock.take()
        if not chunk:
            break
        assert len(chunk) <= 10_000
        received += chunk
    [(response, body)] = _responses(bytes(received), [b"GET"])
    assert response.status_code == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()
    assert server.body_bytes == len(content)
    # the next request on the same connection is answered after the big one
    _get(sock, b"/")
    assert sock.take().endswith(b"<h1>hetnic</h1>\n")


def test_peer_reset_mid_transfer_frees_the_connection(site):
    (site / "big.bin").write_bytes(bytes(1 << 20))
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80, space=1000)
    _get(sock, b"/big.bin")

    def reset(data):
        raise HetnicError("connection reset by peer")
    sock.send = reset
    sock.take()
    assert sock.aborted and not server.connections and server.errors == 1


def test_serving_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        HttpStaticServer(FakeStack(), tmp_path / "nope")


def test_a_file_that_fails_mid_body_aborts_the_connection(site):
    (site / "big.bin").write_bytes(bytes(1 << 20))
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80, space=1000)
    _get(sock, b"/big.bin")
    [handler] = server.connections

    class Broken:
        def read(self, n):
            raise OSError(5, "Input/output error")

        def close(self):
            pass
    handler.body.close()
    handler.body = Broken()
    while sock.take():
        pass
    assert sock.aborted and not server.connections and server.errors == 1


def test_random_bytes_and_fragmented_requests_never_raise(site):
    """Garbage, truncated and byte-by-byte requests: every connection ends with a response
    or a close, never an exception."""
    seed = 99
    print("seed", seed)
    rng = random.Random(seed)
    good = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    for _ in range(300):
        kind = rng.randrange(4)
        if kind == 0:
            data = rng.randbytes(rng.randrange(1, 400))
        elif kind == 1:
            data = good[:rng.randrange(len(good))]
        elif kind == 2:
            data = bytearray(good * rng.randrange(1, 4))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = good * rng.randrange(1, 4)
        sock = stack.connect_fake(80, space=rng.choice([1, 7, 100, 1 << 20]))
        for i in range(0, len(data), step := rng.randrange(1, 50)):
            sock.feed(data[i:i + step])
            sock.take()
        sock.feed(eof=True)
        for _ in range(10_000):
            if not sock.take():
                break
        assert sock.closed
    assert not server.connections
    assert server.requests > 0 and server.bad_requests > 0


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_a_file_that_changes_while_sent(site, change):
    """Shrinking cuts the connection (counted); growing sends what was announced."""
    path = site / "big.bin"
    path.write_bytes(bytes(300_000))
    stack = FakeStack()
    server = HttpStaticServer(stack, site)
    sock = stack.connect_fake(80, space=1000)
    _get(sock, b"/big.bin")
    data = bytearray(sock.take())
    with path.open("r+b") as f:
        f.truncate(100_000 if change == "shrink" else 400_000)
    while chunk := sock.take():
        data += chunk
    if change == "shrink":
        assert sock.aborted and server.errors == 1
    else:
        [(response, body)] = _responses(bytes(data), [b"GET"])
        assert response.status_code == 200 and len(body) == 300_000
        assert not sock.closed and server.errors == 0
