"""hetnic.host.board: the board backend of the driver, against a Python model of a board.

:class:`FakeBoard` answers the serial bridge protocol (:mod:`hetnic.bridge_protocol`) on the
master side of a pseudo-terminal with the registers a board has (identification, shadow
configuration, COMMIT/GENERATION, counters), so ``Nic.open("serial:<pty>", data=...)``
runs the real pyserial path. The data link is an in-process :class:`QueuePort`. The whole
board in simulation is ``tests/boards/test_board_top_rtl.py``.
"""

import os
import select
import socket
import threading
import time

import pytest

from hetnic.bridge_protocol import (BRIDGE_IDENT, INFO_IDENT, REQUEST_LEN, REQUEST_SYNC,
                                    Command, Status)
from hetnic.host.board import BoardNic, QueuePort, RawSocketPort, TaggedPacket
from hetnic.host.control import NicError
from hetnic.host.nic import Nic
from hetnic.rules import Action, FlowRule
from hetnic.host.serial_bridge import FrameReader, Request, Response
from hetnic.protocol import MS_RSS_DEFAULT_KEY, HashType
from hetnic.params import ECP5_BOARD_CORE, NicParams
from hetnic.regs import ID_MAGIC
from hetnic.steering_tag import TagFields, insert_tag

pytestmark = pytest.mark.timeout(60)

REGMAP = ECP5_BOARD_CORE.replace(mac_ports=2).regmap()
FRAME = bytes.fromhex("02000000000102000000000208004500") + bytes(60)


class FakeBoard:
    """A board's registers behind the bridge protocol, served on a pseudo-terminal's master
    side by a thread. ``path`` is the slave side for the driver. ``regs`` holds what was
    written; ``commit_sticks`` keeps COMMIT_STATUS pending for ever."""

    def __init__(self, regmap=REGMAP, *, magic=ID_MAGIC, params2=None, caps=None):
        self.regmap = regmap
        self.regs = {regmap.addr(n): regmap.ro_value(n)
                     for n in ("PARAMS0", "PARAMS1", "PARAMS2", "CAPS")}
        if caps is not None:
            self.regs[regmap.addr("CAPS")] = caps
        self.regs[regmap.addr("ID")] = magic
        if params2 is not None:
            self.regs[regmap.addr("PARAMS2")] = params2
        self.generation = 0
        self.commit_sticks = False
        self.counter_values = {}
        self.requests = []
        self._reader = FrameReader(REQUEST_SYNC, REQUEST_LEN)
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)         # the driver opens it by path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, req):
        r = self.regmap
        if req.command == Command.INFO:
            return BRIDGE_IDENT if req.addr == INFO_IDENT else 0
        if req.command == Command.WRITE:
            self.regs[req.addr] = req.data
            if req.addr == r.addr("COMMIT") and not self.commit_sticks:
                self.generation += 1
            return 0
        if req.addr == r.addr("GENERATION"):
            return self.generation
        if req.addr == r.addr("COMMIT_STATUS"):
            return int(self.commit_sticks)
        if req.addr in self.counter_values:
            return self.counter_values[req.addr]
        return self.regs.get(req.addr, 0)

    def _serve(self):
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:             # no slave side open (yet, or any more)
                time.sleep(0.01)
                continue
            out = b""
            for frame in self._reader.feed(data):
                req = Request.decode(frame.data)
                self.requests.append(req)
                out += Response(Status.OK, req.seq, self._answer(req)).encode()
            if out:
                os.write(self.master, out)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def board():
    boards = []

    def make(**params):
        b = FakeBoard(**params)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


@pytest.fixture
def nic(board):
    fake = board()
    port = QueuePort()
    with Nic.open(f"serial:{fake.path}", data=port, timeout=1.0) as nic:
        yield nic, fake, port


def tagged(queue, frame=FRAME, **fields):
    return insert_tag(frame, TagFields(queue=queue, **fields))


# --- opening ---------------------------------------------------------------------------------

def test_open_sizes_the_driver_from_params_and_commits_defaults(nic):
    nic, fake, _ = nic
    assert isinstance(nic, BoardNic)
    assert nic.params == NicParams(data_width=8, hash_bytes_per_cycle=1, n_rules=4,
                                   reta_size=128, queues=16, mac_ports=2, flow_table=False)
    assert len(nic.rx_queues) == 16 and len(nic.tx_queues) == 1
    assert nic.generation == 1
    # The default configuration was written before COMMIT: Microsoft key, RETA i % 16.
    assert fake.regs[REGMAP.addr("RSS_KEY", 0)] == int.from_bytes(MS_RSS_DEFAULT_KEY[:4], "big")
    assert [fake.regs[REGMAP.addr("RETA", i)] for i in range(128)] == [i % 16 for i in range(128)]
    assert fake.requests[0].command == Command.INFO        # the bridge is identified first


def test_configuration_and_counters_go_over_the_bridge(nic):
    nic, fake, _ = nic
    key = bytes(range(1, 41))
    nic.rss.set_key(key)
    nic.rss.set_table([3, 5])
    slot = nic.rules.add(FlowRule(ip_proto="udp", dst_port=53,
                                  action=Action(instance=2, reta_offset=8, reta_size=4)))
    assert nic.commit() == 2
    assert [fake.regs[REGMAP.addr("RSS_KEY", k)] for k in range(10)] == \
        [int.from_bytes(key[4 * k:4 * k + 4], "big") for k in range(10)]
    assert fake.regs[REGMAP.addr("RETA", 7)] == 5
    assert fake.regs[REGMAP.addr("RULE", slot, 0)] != 0
    with pytest.raises(ValueError, match="this NIC has queues 0 to 15"):
        nic.rss.set_table([16])
    with pytest.raises(ValueError, match="all 4 rule slots are in use"):
        for _ in range(4):
            nic.rules.add(FlowRule(ip_proto="tcp"))
    # Counters accumulate differences of the 32-bit registers, wrapping included.
    fake.counter_values[REGMAP.addr("FRAMES_IN")] = 0xFFFF_FFFF
    assert nic.counters()["frames_in"] == 0xFFFF_FFFF
    fake.counter_values[REGMAP.addr("FRAMES_IN")] = 4
    counters = nic.counters()
    assert counters["frames_in"] == 0xFFFF_FFFF + 5
    assert "queue_packets[15]" in counters and "rxq_no_buffer[0]" not in counters


def test_apply_stages_everything_and_commits(nic):
    nic, fake, _ = nic
    config = nic.config
    config.reta = [1] * 128
    assert nic.apply(config) == 2
    assert fake.regs[REGMAP.addr("RETA", 100)] == 1


def test_refuses_a_device_that_is_not_a_board(board):
    fake = board(magic=0x12345678)
    with pytest.raises(NicError, match="reads 0x12345678, not the hetnic magic"):
        Nic.open(f"serial:{fake.path}", data=QueuePort(), timeout=1.0)
    fake = board(params2=4)
    with pytest.raises(NicError, match="is a NIC core with DMA queues"):
        Nic.open(f"serial:{fake.path}", data=QueuePort(), timeout=1.0)
    fake = board(caps=REGMAP["CAPS"].field("injector").mask)
    with pytest.raises(NicError, match=r"is the reduced serial core .*ReducedCore"):
        Nic.open(f"serial:{fake.path}", data=QueuePort(), timeout=1.0)


def test_commit_that_never_applies_times_out(nic):
    nic, fake, _ = nic
    nic.commit_timeout = 0.3
    fake.commit_sticks = True
    start = time.monotonic()
    with pytest.raises(NicError, match=rf"the commit on the board at {fake.path} did not "
                                       r"apply within 0.3 s: COMMIT_STATUS stays set"):
        nic.commit()
    assert time.monotonic() - start < 3


def test_board_that_does_not_answer(tmp_path):
    """Nobody on the other end of the pseudo-terminal: one line naming the device, after
    1 + retries timeouts, and the data port is closed."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    port = QueuePort()
    try:
        start = time.monotonic()
        with pytest.raises(NicError, match=rf"^the board did not answer on {path} within 0.2 s "
                                           r"\(2 tries\): is the bitstream loaded and the baud "
                                           r"rate 115200\?$"):
            Nic.open(f"serial:{path}", data=port, timeout=0.2, retries=1)
        assert time.monotonic() - start < 5
        assert port.closed
    finally:
        os.close(slave)
        os.close(master)


def test_missing_device_and_bad_arguments():
    with pytest.raises(NicError, match="cannot open /nonexistent/tty at 115200 baud"):
        Nic.open("serial:/nonexistent/tty", data=QueuePort())
    with pytest.raises(ValueError, match="'serial:DEVICE' with a serial device path"):
        Nic.open("serial:", data=QueuePort())
    with pytest.raises(ValueError, match="data must name the network interface"):
        Nic.open("serial:/dev/null", data=None)
    with pytest.raises(TypeError):
        Nic.open("serial:/dev/null")            # data= is required


# --- the data link ---------------------------------------------------------------------------

def test_tagged_frames_are_demultiplexed_by_their_tag(nic):
    nic, _, port = nic
    frames = [(q, FRAME + bytes([q, i])) for i, q in enumerate([3, 0, 3, 15, 7, 3])]
    for i, (q, frame) in enumerate(frames):
        port.deliver(tagged(q, frame, instance=i % 16, rule=4, hash=0x9E37_79B9 + i,
                            hash_type=HashType.IPV4_TCP, generation=2))
    got = nic.rx_queues[3].poll()
    assert [p.data for p in got] == [f for q, f in frames if q == 3]
    p = got[1]
    assert p == TaggedPacket(frames[2][1], len(frames[2][1]), 0x9E37_79B9 + 2,
                             HashType.IPV4_TCP, 3, 2, 4, 2)
    assert [p.data for p in nic.rx_queues[15].poll()] == [frames[3][1]]
    assert nic.rx_queues[7].ready() and not nic.rx_queues[1].ready()
    assert nic.data_stats.received == nic.data_stats.delivered == 6
    # max_packets bounds a poll; the rest waits.
    for _ in range(5):
        port.deliver(tagged(1))
    assert len(nic.rx_queues[1].poll(2)) == 2 and len(nic.rx_queues[1].poll()) == 3


def test_frames_with_a_missing_or_bad_tag_are_counted_not_delivered(nic):
    nic, _, port = nic
    good = tagged(2)
    bad_version = bytearray(good)
    bad_version[14] = 0x20 | bad_version[14] & 0x0F          # version 2
    bad_hash_type = bytearray(good)
    bad_hash_type[17] = 0x07                                  # HashType 7 does not exist
    for frame in (FRAME,                                      # no tag at all
                  FRAME[:20],                                 # too short to hold one
                  b"",
                  bytes(bad_version), bytes(bad_hash_type),
                  tagged(200),                                # a queue the board lacks
                  good):
        port.deliver(frame)
    assert [p.data for p in nic.rx_queues[2].poll()] == [FRAME]
    assert nic.data_stats.bad_tag == 6 and nic.data_stats.delivered == 1
    assert all(not q.poll() for q in nic.rx_queues)


def test_a_full_queue_drops_new_frames(board):
    fake = board()
    with Nic.open(f"serial:{fake.path}", data=QueuePort(), timeout=1.0,
                  rx_queue_limit=2) as nic:
        for k in range(3):
            nic._data.deliver(tagged(0, FRAME + bytes([k])))
        assert [p.data[-1] for p in nic.rx_queues[0].poll()] == [0, 1]
        assert nic.data_stats.overflow == 1


def test_tx_sends_raw_frames_on_the_data_link(nic):
    nic, _, port = nic
    assert nic.tx_queues[0].send(FRAME) == 1
    assert nic.tx_queues[0].send_batch([FRAME[:14], FRAME + b"x"]) == 3
    assert [port.sent.get_nowait() for _ in range(3)] == [FRAME, FRAME[:14], FRAME + b"x"]
    with pytest.raises(ValueError, match="at least the 14-byte Ethernet header"):
        nic.tx_queues[0].send(FRAME[:13])


def test_what_a_board_cannot_do_raises_clearly(nic):
    nic, _, _ = nic
    calls = {
        "events": lambda: nic.events(), "on_event": lambda: nic.on_event(print),
        "irq": nic.irq, "run": lambda: nic.run(10), "run_until_idle": nic.run_until_idle,
        "now": nic.now, "age": lambda: nic.age(None),
        "arm": lambda: nic.rx_queues[0].arm(0),
        "send_gather": lambda: nic.tx_queues[0].send_gather([FRAME]),
        "completions": nic.tx_queues[0].completions,
        "wire.send": lambda: nic.wire.send([FRAME]), "wire.received": nic.wire.received,
    }
    for name, call in calls.items():
        with pytest.raises(NicError, match="^the board backend has no "):
            call()


def test_close_closes_both_channels(board):
    fake = board()
    port = QueuePort()
    nic = Nic.open(f"serial:{fake.path}", data=port, timeout=1.0)
    nic.close()
    assert port.closed
    with pytest.raises(NicError, match="the NIC is closed"):
        nic.commit()
    nic.close()                 # twice is harmless


# --- the raw socket --------------------------------------------------------------------------

def test_raw_socket_without_cap_net_raw(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(socket, "socket", refuse)
    with pytest.raises(NicError, match=r"^opening a raw socket on eth1 needs CAP_NET_RAW: run "
                                       r"as root, or grant it with 'sudo setcap "
                                       r"cap_net_raw\+ep .*python.*'$"):
        Nic.open("serial:/dev/ttyUSB1", data="eth1")


def _raw_socket_allowed():
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
        return True
    except (PermissionError, AttributeError, OSError):
        return False


@pytest.mark.skipif(not _raw_socket_allowed(), reason="needs CAP_NET_RAW on Linux")
def test_raw_socket_on_loopback():
    """A real AF_PACKET socket on ``lo``: a tagged frame sent comes back once (the host's
    own outgoing copy is not returned); an interface that does not exist is one line."""
    port = RawSocketPort("lo")
    try:
        frame = tagged(5, FRAME + os.urandom(8), hash=0x1234, generation=9)
        port.send(frame)
        got = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            received = port.recv(0.2)
            if received is None:
                break
            got.append(received)
        assert got.count(frame) == 1        # other loopback traffic may be there too
    finally:
        port.close()
    with pytest.raises(NicError, match="cannot use network interface 'nosuch0' for the data "
                                       "link"):
        RawSocketPort("nosuch0")


def test_a_stack_runs_on_the_board_queues(nic):
    """The user-mode stack on a board: frames from the network arrive tagged on the queues
    the board's classifier picked, the stack's frames leave on the data link."""
    from hetnic.host.links import NicQueueLink
    from hetnic.host.stack.instance import PROFILES
    from hetnic.host.stack.stack import Stack

    nic, _, port = nic
    ours = Stack(PROFILES["low-delay"], mac="02:00:5e:00:00:02", ipv4=["198.18.0.2/24"])
    peer = Stack(PROFILES["low-delay"], mac="02:00:5e:00:00:01", ipv4=["198.18.0.1/24"])
    link = NicQueueLink(nic, range(len(nic.rx_queues)), 0)
    listener = ours.listen(7)
    client = peer.connect("198.18.0.2", 7, now=0.0)
    payload, echoed, conn, sent, now = bytes(range(256)) * 40, bytearray(), None, 0, 0.0
    queues_seen = set()
    while len(echoed) < len(payload) and now < 30.0:
        for frame in peer.poll(now):          # the network side: the board tags each frame
            queue = 3 if frame[12:14] == b"\x08\x00" else 0      # IPv4 to queue 3, ARP to 0
            queues_seen.add(queue)
            port.deliver(tagged(queue, frame))
        for frame in link.receive(64):
            ours.receive(frame, now)
        conn = conn or listener.accept()
        if conn is not None:
            while (piece := conn.recv()):
                conn.send(piece)
        link.send(ours.poll(now))
        link.service()
        while not port.sent.empty():
            peer.receive(port.sent.get_nowait(), now)
        if client.connected and sent < len(payload):
            sent += client.send(payload[sent:])
        while (piece := client.recv()):
            echoed += piece
        now += 0.001
    assert bytes(echoed) == payload
    assert queues_seen == {0, 3} and link.tx_errors == 0
    assert nic.data_stats.bad_tag == 0
