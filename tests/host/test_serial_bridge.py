"""hetnic.host.serial_bridge: the codec, and the client against a Python model of the board.

:class:`DeviceModel` follows the protocol of :mod:`hetnic.bridge_protocol` byte for byte (it
cuts requests with the same :class:`FrameReader` rule the gateware follows, which
``tests/gateware/test_uart_bridge.py`` checks against the gateware) and can be told to lose,
corrupt, reject or delay its next answers. The client talks to it through an in-memory port
with pyserial's read/write/timeout semantics, and through a real pseudo-terminal with the
model running in a thread on the other end.
"""

import itertools
import os
import random
import select
import sys
import threading
import time
from collections import deque

import pytest

from hetnic.bridge_protocol import (BRIDGE_IDENT, CHECKSUM, INFO_IDENT, REQUEST_LEN,
                                    REQUEST_SYNC, RESPONSE_LEN, RESPONSE_SYNC, BridgeCounter,
                                    Command, Status, checksum, info_counter_addr)
from hetnic.host.serial_bridge import (BridgeError, BusTimeoutError, CorruptResponseError,
                                       FdPort, FrameError, FrameReader, NoAnswerError,
                                       RawFrame, Request, Response, SerialBridge,
                                       StatusError)

SEED = 0x5EED_5E71


# --- the board, in Python ------------------------------------------------------------------

class DeviceModel:
    """The bridge and a register bank: ``feed(bytes)`` returns the bytes it answers.

    ``faults`` is consumed one entry per complete request with a good CRC:

    ``"ok"``      execute and answer (also what happens once ``faults`` is empty)
    ``"drop"``    neither execute nor answer (the request was lost on the line)
    ``"lose"``    execute, but the answer is lost
    ``"corrupt"`` execute, flip a bit of the answer's DATA
    ``"reject"``  answer BAD_CHECKSUM without executing (the request was hit by noise)
    ``"late"``    execute, hold the answer back and send it after the next one
    ``"junk"``    execute, send garbage bytes before the answer
    """
    def __init__(self, *, never_ack=(), addr_width=16):
        self.regs = {}
        self.never_ack = set(never_ack)
        self.addr_width = addr_width
        self.faults = deque()
        self.mute = False
        self.log = []               # executed (command, addr, data)
        self.received = []          # every complete request frame, in order
        self.counters = dict.fromkeys(BridgeCounter, 0)
        self._reader = FrameReader(REQUEST_SYNC, REQUEST_LEN)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for frame in self._reader.feed(data):
            self.received.append(frame.data)
            if not self.mute:
                out += self._answer(frame)
        return bytes(out)

    def _answer(self, frame: RawFrame) -> bytes:
        seq = frame.data[2]
        if not frame.ok:
            self.counters[BridgeCounter.BAD_CHECKSUM] += 1
            return Response(Status.BAD_CHECKSUM, seq).encode()
        fault = self.faults.popleft() if self.faults else "ok"
        if fault == "drop":
            return b""
        if fault == "reject":
            self.counters[BridgeCounter.BAD_CHECKSUM] += 1
            return Response(Status.BAD_CHECKSUM, seq).encode()
        answer = bytearray(self._execute(Request.decode(frame.data)).encode())
        self.counters[BridgeCounter.REQUESTS] += 1      # after INFO took it, as the bridge
        if fault == "lose":
            return b""
        if fault == "corrupt":
            answer[4] ^= 0x10
        if fault == "junk":
            answer[:0] = bytes([0x00, RESPONSE_SYNC, 0xFF, 0x13])
        if fault == "late":
            self._held = bytes(answer)
            return b""
        held, self._held = self._held, b""
        return bytes(answer) + held

    def _execute(self, req: Request) -> Response:
        if req.command == Command.INFO:
            if req.addr == INFO_IDENT:
                return Response(Status.OK, req.seq, BRIDGE_IDENT)
            for c in BridgeCounter:
                if req.addr == info_counter_addr(c):
                    return Response(Status.OK, req.seq, self.counters[c])
            return Response(Status.BAD_ADDRESS, req.seq)
        if req.command not in (Command.READ, Command.WRITE):
            return Response(Status.BAD_COMMAND, req.seq)
        if req.addr % 4 or req.addr >> self.addr_width:
            return Response(Status.BAD_ADDRESS, req.seq)
        if req.addr in self.never_ack:
            return Response(Status.BUS_TIMEOUT, req.seq)
        self.log.append((req.command, req.addr, req.data))
        if req.command == Command.WRITE:
            self.regs[req.addr] = req.data
            return Response(Status.OK, req.seq)
        return Response(Status.OK, req.seq, self.regs.get(req.addr, 0))


class MemoryPort:
    """A pyserial-like port wired to a DeviceModel: ``read(n)`` returns what is there (up to
    ``n`` bytes) at once, or waits ``timeout`` seconds and returns nothing."""
    def __init__(self, device):
        self.device = device
        self.timeout = None
        self.name = "mem0"
        self.writes = []            # sizes of write() calls
        self._inbox = bytearray()

    def write(self, data):
        self.writes.append(len(data))
        self._inbox += self.device.feed(bytes(data))
        return len(data)

    def read(self, n):
        if not self._inbox:
            assert self.timeout is not None, "the client must set a read timeout"
            time.sleep(self.timeout)        # what a blocking port does with no data
            return b""
        out = bytes(self._inbox[:n])
        del self._inbox[:n]
        return out


class PtyDevice:
    """A DeviceModel on the master side of a pseudo-terminal, served by a thread. The client
    uses ``port`` (the slave side, in raw mode)."""
    def __init__(self, device):
        self.device = device
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self.port = FdPort(slave, name=self.path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.02)[0]:
                try:
                    data = os.read(self.master, 4096)
                except OSError:             # the slave side was closed
                    return
                answer = self.device.feed(data)
                if answer:
                    os.write(self.master, answer)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()
        self.port.close()
        os.close(self.master)


@pytest.fixture
def pty_device():
    devices = []

    def make(**params):
        dev = PtyDevice(DeviceModel(**params))
        devices.append(dev)
        return dev

    yield make
    for dev in devices:
        dev.close()


def memory_bridge(device=None, **params):
    device = device or DeviceModel()
    params.setdefault("timeout", 0.05)
    return SerialBridge(MemoryPort(device), **params), device


# --- codec -----------------------------------------------------------------------------------

def test_checksum_vectors():
    """CRC-8/AUTOSAR: the catalogue's check value, and amaranth's bit-serial definition (the
    one the gateware is built from) on random data."""
    assert checksum(b"123456789") == 0xDF
    assert checksum(b"") == 0x00
    assert checksum(bytes(9)) != 0                      # a line stuck low fails the check
    rng = random.Random(SEED)
    print(f"seed={SEED:#x}")
    params = CHECKSUM(8)
    for n in range(1, 40):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert checksum(data) == params.compute(data)


def test_frame_layout():
    """The byte table of hetnic.bridge_protocol: SYNC, fields big-endian, CRC last."""
    frame = Request(Command.WRITE, 0x7E, 0x1234, 0xA1B2C3D4).encode()
    assert frame[:9] == bytes([REQUEST_SYNC, 0x02, 0x7E, 0x12, 0x34, 0xA1, 0xB2, 0xC3, 0xD4])
    assert frame[9] == CHECKSUM(8).compute(frame[:9])
    frame = Response(Status.BUS_TIMEOUT, 0x81, 0x01020304).encode()
    assert frame[:7] == bytes([RESPONSE_SYNC, 0x04, 0x81, 0x01, 0x02, 0x03, 0x04])
    assert frame[7] == CHECKSUM(8).compute(frame[:7])
    assert len(Request(Command.READ, 0, 0).encode()) == REQUEST_LEN
    assert Request(Command.READ, 5, 0x40).encode()[5:9] == bytes(4)


def test_codec_round_trip():
    rng = random.Random(SEED + 1)
    print(f"seed={SEED + 1:#x}")
    for _ in range(200):
        req = Request(rng.choice(list(Command) + [0x00, 0x7F]), rng.getrandbits(8),
                      rng.getrandbits(16), rng.getrandbits(32))
        assert Request.decode(req.encode()) == req
        resp = Response(rng.choice(list(Status) + [0x09]), rng.getrandbits(8),
                        rng.getrandbits(32))
        assert Response.decode(resp.encode()) == resp
    assert type(Request.decode(Request(0x7F, 0, 0).encode()).command) is int
    assert Response.decode(Response(Status.OK, 1).encode()).status is Status.OK


def test_codec_refuses_bad_frames_and_fields():
    good = Response(Status.OK, 3, 99).encode()
    with pytest.raises(FrameError, match="a response is 8 bytes, not 7"):
        Response.decode(good[:-1])
    with pytest.raises(FrameError, match="a response starts with 0x5a, not 0xa5"):
        Response.decode(bytes([REQUEST_SYNC]) + good[1:])
    with pytest.raises(FrameError, match="fails its checksum"):
        Response.decode(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="seq must be an integer from 0 to 0xff, not 256"):
        Request(Command.READ, 256, 0)
    with pytest.raises(ValueError, match="addr must be an integer from 0 to 0xffff"):
        Request(Command.READ, 0, 0x10000)
    with pytest.raises(ValueError, match="data must be an integer"):
        Response(Status.OK, 0, -1)


@pytest.mark.parametrize("frame", [
    Request(Command.WRITE, 0x5A, 0xBEEC, 0x0123_4567).encode(),
    Response(Status.OK, 0xA5, 0xFFFF_FFFF).encode(),
], ids=["request", "response"])
def test_checksum_catches_three_bit_errors(frame):
    """Every pattern of one, two or three flipped bits anywhere in a frame fails the check
    (the CRC is linear, so a pattern escapes iff its error syndrome is 0)."""
    bits = 8 * len(frame)
    value = int.from_bytes(frame, "big")

    def syndrome(error):
        bad = (value ^ error).to_bytes(len(frame), "big")
        return checksum(bad[:-1]) ^ bad[-1]

    single = [syndrome(1 << i) for i in range(bits)]
    assert 0 not in single
    assert len(set(single)) == bits                     # no two-bit error escapes
    singles = set(single)
    for i, j in itertools.combinations(range(bits), 2):
        assert single[i] ^ single[j] not in singles     # no three-bit error escapes
    # ...and every burst of up to 8 bits.
    for start in range(bits - 7):
        for pattern in range(1, 256):
            assert syndrome(pattern << start) != 0


def test_frame_reader_hunts():
    """Junk before a frame is skipped and counted; a frame split over many feeds is whole; a
    false SYNC takes the next bytes as a frame (bad CRC) and hunting goes on after it, as in
    the gateware."""
    reader = FrameReader(RESPONSE_SYNC, RESPONSE_LEN)
    a, b = Response(Status.OK, 1, 7).encode(), Response(Status.OK, 2, 8).encode()
    got = []
    for byte in b"\x00\xff" + a + b"\x11" + b:
        got += reader.feed(bytes([byte]))
    assert got == [RawFrame(a, True), RawFrame(b, True)]
    assert reader.junk == 3 and reader.pending == 0
    got = reader.feed(bytes([RESPONSE_SYNC, 1, 2]) + a + b)
    assert [f.ok for f in got] == [False, True]         # a is cut; b is found again
    assert got[1].data == b
    reader.feed(a[:5])
    assert reader.pending == 5
    reader.reset()
    assert reader.feed(b) == [RawFrame(b, True)]


# --- client over an in-memory port ------------------------------------------------------------

def test_read_write_and_batches():
    """Single accesses, then batches: ``window`` requests per write() call, answers matched
    in order, the device saw the writes in order."""
    bridge, device = memory_bridge(window=8)
    bridge.write(0x0020, 0x1234_5678)
    assert bridge.read(0x0020) == 0x1234_5678
    assert bridge.read(0x0024) == 0
    writes = [(4 * i, i * 0x0101_0101 & 0xFFFF_FFFF) for i in range(20)]
    bridge.port.writes.clear()
    bridge.write_many(writes)
    assert bridge.port.writes == [8 * REQUEST_LEN, 8 * REQUEST_LEN, 4 * REQUEST_LEN]
    assert bridge.read_many([a for a, _ in writes][::-1]) == [v for _, v in writes][::-1]
    assert [(a, d) for c, a, d in device.log if c == Command.WRITE][1:] == writes
    assert bridge.read_many([]) == []
    assert bridge.stats.retries == bridge.stats.corrupt == bridge.stats.stale == 0


def test_argument_checks():
    bridge, device = memory_bridge()
    with pytest.raises(ValueError, match="multiple of 4 from 0 to 0xfffc, not 2"):
        bridge.read(2)
    with pytest.raises(ValueError, match="not 65536"):
        bridge.write(0x10000, 0)
    with pytest.raises(ValueError, match="from 0 to 0xffffffff, not 4294967296"):
        bridge.write(0, 1 << 32)
    with pytest.raises(ValueError, match="not True"):
        bridge.read_many([0, True])
    with pytest.raises(ValueError, match="window must be an integer from 1 to 64, not 0"):
        SerialBridge(MemoryPort(device), window=0)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        SerialBridge(MemoryPort(device), timeout=0)
    assert device.received == []


@pytest.mark.parametrize("fault", ["drop", "lose", "corrupt", "reject"])
def test_single_request_retried(fault):
    """A lost request, a lost answer, a corrupt answer, or a request the board saw corrupted:
    sent again, and the value comes back."""
    bridge, device = memory_bridge()
    device.regs[0x40] = 0xFEED
    device.faults.extend([fault])
    assert bridge.read(0x40) == 0xFEED
    assert len(device.received) == 2
    assert bridge.stats.retries == 1
    assert bridge.stats.corrupt == (fault == "corrupt")
    assert bridge.stats.rejected == (fault == "reject")


def test_junk_and_late_answers():
    """Garbage before an answer, with a false SYNC that swallows the start of that answer:
    the answer is lost, the next one still found, and the window sent again from the lost
    one. An answer that comes late, after the answer to a retry, is ignored by its sequence
    number."""
    bridge, device = memory_bridge(retries=3)
    device.regs.update({0: 10, 4: 11, 8: 12})
    device.faults.extend(["junk", "ok"])
    assert bridge.read_many([0, 4]) == [10, 11]
    assert bridge.stats.junk > 0 and bridge.stats.corrupt == 1 and bridge.stats.retries == 1
    device.faults.extend(["late", "ok", "ok"])
    assert bridge.read(0) == 10         # its answer is held back: timeout, retry
    assert bridge.read(8) == 12         # the held answer arrives first: stale, ignored
    assert bridge.stats.stale == 1


def test_window_goes_back_in_order():
    """A write lost in the middle of a window is sent again with every write after it, so
    two writes to one register end with the later value."""
    bridge, device = memory_bridge(window=4)
    device.faults.extend(["ok", "drop", "ok", "ok"])
    bridge.write_many([(0x10, 1), (0x14, 2), (0x14, 3), (0x18, 4)])
    assert device.regs == {0x10: 1, 0x14: 3, 0x18: 4}
    executed = [(a, d) for _, a, d in device.log]
    assert executed == [(0x10, 1), (0x14, 3), (0x18, 4), (0x14, 2), (0x14, 3), (0x18, 4)]
    assert bridge.stats.retries == 1


def test_status_errors_raise_at_once():
    bridge, device = memory_bridge(retries=5)
    device.never_ack.add(0x100)
    with pytest.raises(BusTimeoutError, match=r"register 0x0100 did not answer on the "
                                              r"board's register bus \(read 0x0100\)") as e:
        bridge.read(0x100)
    assert e.value.status == Status.BUS_TIMEOUT and e.value.addr == 0x100
    device.addr_width = 12
    with pytest.raises(StatusError, match=r"refused address 0x1000 \(write 0x1000 = "
                                          r"0x00000001\): beyond its register space"):
        bridge.write_many([(0x0, 0), (0x1000, 1)])
    assert len(device.received) == 3                    # no retries
    assert bridge.stats.retries == 0


def test_retries_exhausted():
    """Each failure kind, persistent, gives its own one-line error after 1 + retries tries."""
    bridge, device = memory_bridge(retries=2)
    device.faults.extend(["corrupt"] * 3)
    with pytest.raises(CorruptResponseError,
                       match=r"^the answers from mem0 to read 0x0008 were corrupt "
                             r"\(3 tries\): is the baud rate right, and the cable sound\?$"):
        bridge.read(8)
    device.faults.extend(["reject"] * 3)
    with pytest.raises(StatusError, match=r"received the request to write 0x0008 = "
                                          r"0x00000005 with a bad checksum \(3 tries\)"):
        bridge.write(8, 5)
    bridge.baud = 115200
    device.mute = True
    with pytest.raises(NoAnswerError,
                       match=r"^the board did not answer on mem0 within 0.05 s \(3 tries\): "
                             r"is the bitstream loaded and the baud rate 115200\?$"):
        bridge.read(8)
    assert len(device.received) == 9
    device.mute = False
    assert bridge.read(8) == 0                          # and then it works again


def test_ident_and_counters():
    bridge, device = memory_bridge()
    assert bridge.ident() == BRIDGE_IDENT
    device.faults.extend(["reject"])
    bridge.read(0)
    counters = bridge.counters()
    assert set(counters) == set(BridgeCounter)
    assert counters[BridgeCounter.REQUESTS] == 2        # ident, the read's retry
    assert counters[BridgeCounter.BAD_CHECKSUM] == 1
    device._execute = lambda req: Response(Status.OK, req.seq, 0x1234_0100)
    with pytest.raises(BridgeError, match="identifies as 0x12340100, not a hetnic UART bridge"):
        bridge.ident()
    device._execute = lambda req: Response(Status.OK, req.seq, 0x5542_0200)
    with pytest.raises(BridgeError, match="speaks protocol version 2.0; this host speaks 1.0"):
        bridge.ident()


def test_open_without_pyserial(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)        # import serial -> ImportError
    with pytest.raises(BridgeError, match=r"^opening /dev/ttyUSB1 needs pyserial, which is "
                                          r"not installed: pip install pyserial$"):
        SerialBridge.open("/dev/ttyUSB1", baud=115200)


# --- client over a pseudo-terminal -----------------------------------------------------------

def test_pty_read_write(pty_device):
    dev = pty_device()
    rng = random.Random(SEED + 2)
    print(f"seed={SEED + 2:#x}")
    writes = [(4 * i, rng.getrandbits(32)) for i in range(100)]
    with SerialBridge(dev.port, timeout=1.0, window=16) as bridge:
        bridge.write(0x0030, 1)
        assert bridge.read(0x0030) == 1
        bridge.write_many(writes)
        addrs = [a for a, _ in writes]
        rng.shuffle(addrs)
        assert bridge.read_many(addrs) == [dict(writes)[a] for a in addrs]
        assert bridge.stats.retries == 0
        assert bridge.ident() == BRIDGE_IDENT


def test_pty_no_answer(pty_device):
    """A board that does not answer: a clear error after 1 + retries timeouts, not a hang."""
    dev = pty_device()
    dev.device.mute = True
    bridge = SerialBridge(dev.port, timeout=0.2, retries=1, baud=115200)
    start = time.monotonic()
    with pytest.raises(NoAnswerError, match=rf"^the board did not answer on {dev.path} within "
                                            r"0.2 s \(2 tries\): is the bitstream loaded and "
                                            r"the baud rate 115200\?$"):
        bridge.read(0)
    elapsed = time.monotonic() - start
    assert 2 * 0.2 <= elapsed < 2 * 0.2 + 2.0
    assert len(dev.device.received) == 2


def test_pty_corrupt_answer_retried(pty_device):
    dev = pty_device()
    dev.device.regs[0x80] = 0x55AA
    dev.device.faults.extend(["corrupt", "ok", "drop"])
    bridge = SerialBridge(dev.port, timeout=0.3)
    assert bridge.read(0x80) == 0x55AA
    assert bridge.stats.corrupt == 1 and bridge.stats.retries == 1
    bridge.write_many([(0x84, 1), (0x88, 2)])
    assert dev.device.regs[0x88] == 2


def test_pty_with_pyserial(pty_device):
    """``SerialBridge.open`` with pyserial on the pseudo-terminal's path."""
    pytest.importorskip("serial")
    dev = pty_device()
    with SerialBridge.open(dev.path, baud=115200, timeout=0.5) as bridge:
        bridge.write(0x44, 0xABCD)
        assert bridge.read_many([0x44, 0x48]) == [0xABCD, 0]
        assert bridge.baud == 115200
    with pytest.raises(BridgeError, match="cannot open /nonexistent/tty at 115200 baud"):
        SerialBridge.open("/nonexistent/tty", baud=115200)
