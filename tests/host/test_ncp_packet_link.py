"""PacketLink (the kernel side of NCP) without a kernel interface: the socket is made with
protocol 0 and bound to (interface, EtherType); a missing CAP_NET_RAW and a failing receive
are one-line LinkErrors, and the station surfaces a link error to its callers."""

from __future__ import annotations

import errno

import pytest

from hetnic.host import links, ncp_io
from hetnic.host.links import LinkError, PacketLink
from hetnic.host.ncp import NcpError

pytestmark = pytest.mark.timeout(30)

MAC = b"\x02\x00\x00\x00\x03\x01"


class _Sock:
    made: list = []

    def __init__(self, family, kind, proto, *, recv_error=None):
        self.args = (family, kind, proto)
        self.bound = None
        self.recv_error = recv_error
        _Sock.made.append(self)

    def bind(self, addr):
        self.bound = addr

    def setblocking(self, flag):
        pass

    def setsockopt(self, *args):
        pass

    def getsockname(self):
        return (self.bound[0], self.bound[1], 0, 1, MAC)

    def recvfrom(self, size):
        raise self.recv_error or BlockingIOError()

    def fileno(self):
        return None

    def close(self):
        pass


@pytest.fixture
def fake_socket(monkeypatch):
    _Sock.made = []
    monkeypatch.setattr(links.socket, "socket", _Sock)
    return _Sock


def test_protocol_zero_then_bind(fake_socket):
    link = PacketLink("veth0", 0x88B5)
    sock = fake_socket.made[0]
    assert sock.args[2] == 0 and sock.bound == ("veth0", 0x88B5)
    assert link.mac == MAC and link.receive() == []


def test_no_cap_net_raw_is_one_line(monkeypatch):
    def refuse(*args):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(links.socket, "socket", refuse)
    with pytest.raises(LinkError, match="needs CAP_NET_RAW"):
        PacketLink("veth0", 0x88B5)


def test_receive_errors_are_counted_and_surface(fake_socket):
    link = PacketLink("veth0", 0x88B5)
    sock = fake_socket.made[0]
    sock.recv_error = OSError(errno.ENETDOWN, "Network is down")
    assert link.receive() == [] and link.rx_errors == 1         # transient: counted
    sock.recv_error = OSError(errno.EBADF, "Bad file descriptor")
    with pytest.raises(LinkError, match="receive on 'veth0' failed: Bad file descriptor"):
        link.receive()
    assert link.rx_errors == 2
    station = ncp_io.NcpStation(link, thread=False)
    try:
        channel = station.open(b"\x02\x00\x00\x00\x03\x02", 1)
        with pytest.raises(LinkError):
            station.step()
        station.error = LinkError("receive on 'veth0' failed: Bad file descriptor")
        with pytest.raises(NcpError, match="the NCP station stopped: receive on 'veth0'"):
            channel.recv_nowait()
    finally:
        station.close()
