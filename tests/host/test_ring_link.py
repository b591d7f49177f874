"""RingLink: a stack's frames over two SPSC rings in a shared segment."""

import pytest

from hetnic.host.links import LinkError
from hetnic.host.ring_link import RingLink
from hetnic.host.shm import SharedSegment
from hetnic.host.spsc import SpscRing
from hetnic.host.stack.instance import InstanceConfig
from hetnic.host.stack.stack import Stack
from hetnic.host.stack_runner import run_stacks


def _rings(seg, slots=64, size=2048):
    need = SpscRing.bytes_needed(slots, size)
    return [SpscRing.create(seg.buf[i * need:(i + 1) * need], slots, size) for i in range(2)]


def test_frames_in_order_and_full_ring_counted():
    with SharedSegment.create(2 * SpscRing.bytes_needed(4, 64)) as seg:
        a, b = _rings(seg, 4, 64)
        link = RingLink(a, b)
        assert link.receive() == []
        for i in range(3):
            assert a.push(bytes([i]) * 20)
        assert link.receive(2) == [b"\0" * 20, b"\1" * 20]
        assert link.receive() == [b"\2" * 20]
        link.send([b"x" * 10] * 5 + [b"y" * 100])   # 4 fit; the 5th and the long one drop
        assert link.stats() == {"frames_in": 3, "frames_out": 4, "tx_dropped": 2}
        assert [d for d, _ in b.pop_many(10)] == [b"x" * 10] * 4
        for ring in (a, b):
            ring.release()


def test_bad_arguments():
    with SharedSegment.create(2 * SpscRing.bytes_needed(4, 64)) as seg:
        a, _ = _rings(seg, 4, 64)
        with pytest.raises(LinkError, match="two SpscRing"):
            RingLink(a, "ring")
        with pytest.raises(LinkError, match="two different rings"):
            RingLink(a, a)
        a.release()
        _.release()


@pytest.mark.timeout(60)
def test_two_stacks_over_ring_links_exchange_data():
    cfg = InstanceConfig(nagle=False, delayed_ack=False)
    with SharedSegment.create(2 * SpscRing.bytes_needed(64, 2048)) as seg:
        ab, ba = _rings(seg)
        left, right = RingLink(ba, ab), RingLink(ab, ba)
        a = Stack(cfg, mac="02:00:00:00:00:01", ipv4=[("198.18.0.1", 24)])
        b = Stack(cfg, mac="02:00:00:00:00:02", ipv4=[("198.18.0.2", 24)])
        listener = b.listen(9)
        sock = a.connect("198.18.0.2", 9)
        got = bytearray()
        server = []
        sent = []

        def done():
            if not server and listener.readable:
                server.append(listener.accept())
            if server and server[0].readable:
                got.extend(server[0].recv() or b"")
            if sock.connected and not sent:
                sent.append(sock.send(b"over the rings" * 100))
            return bytes(got) == b"over the rings" * 100
        run_stacks([(a, left), (b, right)], until=done, timeout=30)
        assert left.frames_out > 0 and right.frames_in == left.frames_out
        for ring in (ab, ba):
            ring.release()
