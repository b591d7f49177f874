"""The host side of the serial register bridge: codec and client over any byte stream.

>>> with SerialBridge.open("/dev/ttyUSB1", baud=115200) as bridge:
...     bridge.read(0x0000)                 # the NIC's ID register
...     bridge.write_many([(0x1000 + 4 * i, i % 4) for i in range(512)])
...     bridge.write(0x0030, 1)             # COMMIT

The protocol (frames, status codes, timing rules) is defined in
:mod:`hetnic.bridge_protocol`; this module encodes and decodes its frames
(:class:`Request`, :class:`Response`, :class:`FrameReader`) and runs it over a *port*: any
object with ``read(n) -> bytes`` (returns after ``n`` bytes or ``timeout`` seconds, whichever
comes first), ``write(data)`` and a settable ``timeout``, which is what a pyserial
``Serial`` is. :class:`FdPort` is such a port over a POSIX file descriptor (a tty or one end
of a pseudo-terminal).

Reliability
-----------
Every request carries a fresh sequence number and answers to other numbers are ignored, so a
late answer can never be taken for the current one. A request whose answer does not come
within ``timeout`` seconds, comes with a bad CRC, or says the board saw a bad CRC
(BAD_CHECKSUM) is sent again, at most ``retries`` more times; then a :class:`BridgeError`
says what went wrong in one line. A refused request (BAD_COMMAND, BAD_ADDRESS) or a register
bus that did not acknowledge (BUS_TIMEOUT) raises :class:`StatusError` at once.

:meth:`SerialBridge.read_many` and :meth:`SerialBridge.write_many` send up to ``window``
requests before reading the answers (the bridge answers in order). If one of them fails,
it and every request after it in the window are sent again, in order, so the final state is
that of the sequence in order; a write later in the window may have taken effect once before
the retried one. Send a strobe that must follow a batch (``COMMIT``) with its own
:meth:`SerialBridge.write` after :meth:`SerialBridge.write_many` has returned.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
import tty
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from ..bridge_protocol import (BRIDGE_IDENT, DEFAULT_BAUD, INFO_IDENT, PROTOCOL_VERSION,
                               REQUEST_LEN, REQUEST_SYNC, RESPONSE_LEN, RESPONSE_SYNC,
                               BridgeCounter, Command, Status, checksum, info_counter_addr)
from ..errors import HetnicError

__all__ = ["Request", "Response", "RawFrame", "FrameReader", "FrameError", "SerialPort",
           "FdPort", "SerialBridge", "LinkStats", "BridgeError", "NoAnswerError",
           "CorruptResponseError", "StatusError", "BusTimeoutError"]

#: Longest single blocking read: the client re-checks its deadline this often.
POLL_INTERVAL = 0.05
MAX_WINDOW = 64                 # well below the 256 sequence numbers


# --- codec ---------------------------------------------------------------------------------

class FrameError(HetnicError, ValueError):
    """Bytes that are not a well-formed frame."""


def _check_field(name, value, bits):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be an integer from 0 to {(1 << bits) - 1:#x}, "
                         f"not {value!r}")


def _check_frame(frame, sync, length, kind):
    frame = bytes(frame)
    if len(frame) != length:
        raise FrameError(f"a {kind} is {length} bytes, not {len(frame)}: {frame.hex()}")
    if frame[0] != sync:
        raise FrameError(f"a {kind} starts with {sync:#04x}, not {frame[0]:#04x}")
    if checksum(frame[:-1]) != frame[-1]:
        raise FrameError(f"{kind} {frame.hex()} fails its checksum (expected "
                         f"{checksum(frame[:-1]):#04x})")
    return frame


def _code(enum_type, value):
    """An enum member, or the plain integer for a value the enum does not know."""
    try:
        return enum_type(value)
    except ValueError:
        return value


class _Frame:
    """What a request and a response frame share: a sync byte, then the fields of
    ``_FIELD_BITS`` (name -> width in bits, in wire order, big-endian), then the checksum.
    The first field is a code (a command or a status): an enum member or a plain integer."""
    _SYNC: int
    _FIELD_BITS: dict[str, int]

    def __post_init__(self):
        code, *others = self._FIELD_BITS
        _check_field(code, int(getattr(self, code)), self._FIELD_BITS[code])
        for name in others:
            _check_field(name, getattr(self, name), self._FIELD_BITS[name])

    def encode(self) -> bytes:
        body = bytes([self._SYNC]) + b"".join(
            int(getattr(self, name)).to_bytes(bits // 8, "big")
            for name, bits in self._FIELD_BITS.items())
        return body + bytes([checksum(body)])


@dataclass(frozen=True)
class Request(_Frame):
    """A request frame. ``command`` may be a plain integer (to test refusal)."""
    command: Command | int
    seq: int
    addr: int
    data: int = 0

    _SYNC = REQUEST_SYNC
    _FIELD_BITS = {"command": 8, "seq": 8, "addr": 16, "data": 32}

    @classmethod
    def decode(cls, frame: bytes) -> "Request":
        frame = _check_frame(frame, REQUEST_SYNC, REQUEST_LEN, "request")
        return cls(_code(Command, frame[1]), frame[2], int.from_bytes(frame[3:5], "big"),
                   int.from_bytes(frame[5:9], "big"))


@dataclass(frozen=True)
class Response(_Frame):
    """A response frame. An unknown ``status`` stays a plain integer."""
    status: Status | int
    seq: int
    data: int = 0

    _SYNC = RESPONSE_SYNC
    _FIELD_BITS = {"status": 8, "seq": 8, "data": 32}

    @classmethod
    def decode(cls, frame: bytes) -> "Response":
        frame = _check_frame(frame, RESPONSE_SYNC, RESPONSE_LEN, "response")
        return cls(_code(Status, frame[1]), frame[2], int.from_bytes(frame[3:7], "big"))


@dataclass(frozen=True)
class RawFrame:
    data: bytes
    ok: bool                    # the CRC matched


class FrameReader:
    """Cuts a byte stream into frames the way the bridge's receiver does: skip bytes until
    ``sync`` (counted in ``junk``), take ``length`` bytes whatever they are, check the CRC,
    hunt again. Used by the client for responses and by device models for requests.
    """
    def __init__(self, sync: int, length: int):
        self.sync, self.length = sync, length
        self.junk = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[RawFrame]:
        buf = self._buf
        buf += data
        frames = []
        while buf:
            if buf[0] != self.sync:
                start = buf.find(self.sync)
                start = len(buf) if start < 0 else start
                self.junk += start
                del buf[:start]
                continue
            if len(buf) < self.length:
                break
            frame = bytes(buf[:self.length])
            del buf[:self.length]
            frames.append(RawFrame(frame, checksum(frame[:-1]) == frame[-1]))
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a started, incomplete frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (what the bridge's gap timeout does)."""
        self._buf.clear()


# --- ports ---------------------------------------------------------------------------------

class SerialPort(Protocol):
    """What the client needs of a port (a pyserial ``Serial`` qualifies)."""
    timeout: float | None

    def read(self, size: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


class FdPort:
    """A pyserial-like port over a POSIX file descriptor: a tty, or a pseudo-terminal.

    ``read(n)`` returns once ``n`` bytes have arrived or ``timeout`` seconds have passed
    (``None``: wait for ever), like pyserial. The descriptor is put in raw mode if it is a
    terminal (no echo, no line editing, no translation), and is closed by :meth:`close`.
    """
    def __init__(self, fd: int, *, timeout: float | None = None, name: str | None = None):
        self.fd, self.timeout = fd, timeout
        self.name = name if name is not None else f"fd {fd}"
        if os.isatty(fd):
            tty.setraw(fd)

    @classmethod
    def open(cls, path: str, *, timeout: float | None = None) -> "FdPort":
        """Open a terminal device by path (the line rate is left as it is)."""
        return cls(os.open(path, os.O_RDWR | os.O_NOCTTY), timeout=timeout, name=path)

    def read(self, size: int) -> bytes:
        out = bytearray()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while len(out) < size:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.fd], [], [], wait)[0]:
                break
            chunk = os.read(self.fd, size - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return len(data)

    def reset_input_buffer(self) -> None:
        if os.isatty(self.fd):
            termios.tcflush(self.fd, termios.TCIFLUSH)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- errors --------------------------------------------------------------------------------

class BridgeError(HetnicError, RuntimeError):
    """The serial bridge failed; the message says what to check."""


class NoAnswerError(BridgeError, TimeoutError):
    """Nothing came back from the board."""


class CorruptResponseError(BridgeError):
    """Answers came back, but failed their CRC every time."""


class StatusError(BridgeError):
    """The board answered with a status other than OK (after retries, for BAD_CHECKSUM)."""
    def __init__(self, message: str, status: Status | int, addr: int):
        super().__init__(message)
        self.status, self.addr = status, addr


class BusTimeoutError(StatusError):
    """The board's register bus did not acknowledge the access."""


@dataclass
class LinkStats:
    """What the client has seen since it was opened."""
    requests: int = 0           # request frames sent, retries included
    retries: int = 0            # requests sent again
    corrupt: int = 0            # response frames with a bad CRC
    stale: int = 0              # good responses to no outstanding request (late answers)
    rejected: int = 0           # BAD_CHECKSUM answers: the board saw a corrupt request
    junk: int = 0               # bytes outside any response frame


@dataclass(frozen=True)
class _Op:
    command: Command
    addr: int
    data: int = 0

    def __str__(self):
        if self.command == Command.WRITE:
            return f"write {self.addr:#06x} = {self.data:#010x}"
        return f"{self.command.name.lower()} {self.addr:#06x}"


# --- client --------------------------------------------------------------------------------

class SerialBridge:
    """Register reads and writes through a board's UART bridge.

    Parameters
    ----------
    port : SerialPort
        An open port; see the module documentation. Its ``timeout`` is set to a short poll
        interval; the client keeps its own deadlines.
    timeout : float
        Seconds to wait for an answer (counted from the request, or from the previous answer
        while a window of requests is being answered).
    retries : int
        Times a request is sent again after no answer, a corrupt answer or BAD_CHECKSUM.
    window : int
        Requests :meth:`read_many` and :meth:`write_many` send before reading answers (1 to
        64). The bridge keeps up with any window as long as its register bus answers quickly.
    name, baud : optional
        For error messages; taken from the port (``name``/``port``, ``baudrate``) if it has
        them.
    owns_port : bool
        :meth:`close` closes the port (as for one opened by :meth:`open`).

    The client is safe to share between threads (one exchange at a time).
    """
    def __init__(self, port: SerialPort, *, timeout: float = 0.5, retries: int = 2,
                 window: int = 8, name: str | None = None, baud: int | None = None,
                 owns_port: bool = False):
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be an integer of at least 0, not {retries!r}")
        if not isinstance(window, int) or isinstance(window, bool) or \
                not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be an integer from 1 to {MAX_WINDOW}, not {window!r}")
        self.port, self.timeout, self.retries, self.window = port, timeout, retries, window
        self.name = (name or getattr(port, "name", None) or getattr(port, "port", None)
                     or repr(port))
        self.baud = baud or getattr(port, "baudrate", None)
        self.stats = LinkStats()
        self._owns_port = owns_port
        self._reader = FrameReader(RESPONSE_SYNC, RESPONSE_LEN)
        self._seq = 0
        self._lock = threading.Lock()
        port.timeout = min(timeout, POLL_INTERVAL)

    @classmethod
    def open(cls, device: str, *, baud: int = DEFAULT_BAUD, timeout: float = 0.5,
             retries: int = 2, window: int = 8) -> "SerialBridge":
        """Open a serial device with pyserial (``pip install pyserial``)."""
        try:
            import serial
        except ImportError:
            raise BridgeError(f"opening {device} needs pyserial, which is not installed: "
                              f"pip install pyserial") from None
        try:
            port = serial.Serial(device, baudrate=baud, timeout=min(timeout, POLL_INTERVAL),
                                 write_timeout=timeout + 1.0)
        except (OSError, ValueError) as e:      # serial.SerialException is an OSError
            raise BridgeError(f"cannot open {device} at {baud} baud: {e}") from None
        return cls(port, timeout=timeout, retries=retries, window=window, name=device,
                   baud=baud, owns_port=True)

    def close(self) -> None:
        if self._owns_port:
            self.port.close()

    def __enter__(self) -> "SerialBridge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- registers ---------------------------------------------------------------------
    def read(self, addr: int) -> int:
        """The 32-bit register at byte address ``addr``."""
        return self._transact([_Op(Command.READ, _reg_addr(addr))])[0]

    def write(self, addr: int, value: int) -> None:
        self._transact([_Op(Command.WRITE, _reg_addr(addr), _reg_value(value))])

    def read_many(self, addrs: Iterable[int]) -> list[int]:
        """The registers at ``addrs``, read in order, ``window`` requests at a time."""
        return self._transact([_Op(Command.READ, _reg_addr(a)) for a in addrs])

    def write_many(self, writes: Iterable[tuple[int, int]]) -> None:
        """``(addr, value)`` writes, performed in order, ``window`` requests at a time."""
        self._transact([_Op(Command.WRITE, _reg_addr(a), _reg_value(v)) for a, v in writes])

    # --- the bridge itself -------------------------------------------------------------
    def info(self, addr: int) -> int:
        """A word of the bridge's own (INFO): identification or a counter."""
        return self._transact([_Op(Command.INFO, _reg_addr(addr))])[0]

    def ident(self) -> int:
        """The bridge's identification word; refuses a device that is not a hetnic bridge of
        this protocol's major version."""
        ident = self.info(INFO_IDENT)
        if ident >> 16 != BRIDGE_IDENT >> 16:
            raise BridgeError(f"the device on {self.name} answers the bridge protocol but "
                              f"identifies as {ident:#010x}, not a hetnic UART bridge")
        if ident >> 8 & 0xFF != PROTOCOL_VERSION[0]:
            raise BridgeError(f"the bridge on {self.name} speaks protocol version "
                              f"{ident >> 8 & 0xFF}.{ident & 0xFF}; this host speaks "
                              f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}")
        return ident

    def counters(self) -> dict[BridgeCounter, int]:
        """The bridge's event counters (16 bits, wrapping)."""
        ops = [_Op(Command.INFO, info_counter_addr(c)) for c in BridgeCounter]
        return dict(zip(BridgeCounter, self._transact(ops)))

    # --- the exchange ------------------------------------------------------------------
    def _transact(self, ops: Sequence[_Op]) -> list[int]:
        results: list[int | None] = [None] * len(ops)
        with self._lock:
            attempts = [0] * len(ops)
            start, fresh = 0, True
            while start < len(ops):
                window = range(start, min(start + self.window, len(ops)))
                if not fresh:
                    self._flush()
                answers, heard = self._round(ops, window)
                fresh = True
                for i in window:
                    resp = answers.get(i)
                    if resp is not None and resp.status == Status.OK:
                        results[i] = resp.data
                        start = i + 1
                        continue
                    if resp is not None and resp.status != Status.BAD_CHECKSUM:
                        raise self._status_error(ops[i], resp.status)
                    # Lost, corrupt or rejected: go back to this request.
                    attempts[i] += 1
                    if attempts[i] > self.retries:
                        raise self._give_up(ops[i], resp, heard, attempts[i])
                    self.stats.retries += 1
                    fresh = False
                    break
        return results

    def _round(self, ops, window) -> tuple[dict[int, Response], bool]:
        """Sends the requests of ``window`` and collects their answers: until the last one
        has answered, as many frames as requests arrived, or ``timeout`` passed without
        progress. Returns the good answers by request index, and whether any byte came."""
        by_seq = {}
        frames = bytearray()
        for i in window:
            self._seq = (self._seq + 1) & 0xFF
            by_seq[self._seq] = i
            op = ops[i]
            frames += Request(op.command, self._seq, op.addr, op.data).encode()
        self.stats.requests += len(window)
        try:
            self.port.write(bytes(frames))
        except OSError as e:
            raise BridgeError(f"cannot send to {self.name}: {e}") from None

        answers: dict[int, Response] = {}
        consumed, heard, last = 0, False, window[-1]
        deadline = time.monotonic() + self.timeout
        junk_before = self._reader.junk
        while last not in answers and consumed < len(window):
            if time.monotonic() >= deadline:
                break
            try:
                chunk = self.port.read(RESPONSE_LEN)
            except OSError as e:
                raise BridgeError(f"cannot read from {self.name}: {e}") from None
            heard |= bool(chunk)
            for frame in self._reader.feed(chunk):
                resp = Response.decode(frame.data) if frame.ok else None
                i = None if resp is None else by_seq.get(resp.seq)
                if resp is None:
                    self.stats.corrupt += 1
                elif resp.status == Status.BAD_CHECKSUM:
                    self.stats.rejected += 1
                if i is not None and i not in answers:
                    answers[i] = resp
                elif resp is not None and resp.status != Status.BAD_CHECKSUM:
                    self.stats.stale += 1           # a late answer: does not count
                    continue
                # An answer to this window; a corrupt frame or a BAD_CHECKSUM with a SEQ
                # that is not ours (it may be corrupt too) stands for one of them.
                consumed += 1
                deadline = time.monotonic() + self.timeout
        self.stats.junk += self._reader.junk - junk_before
        return answers, heard

    def _flush(self) -> None:
        """Before a retry: drop half-read frames and anything late still in the buffers."""
        self._reader.reset()
        reset = getattr(self.port, "reset_input_buffer", None)
        if reset is not None:
            reset()

    def _baud_hint(self) -> str:
        return f"the baud rate {self.baud}" if self.baud else "the baud rate right"

    def _give_up(self, op, resp, heard, attempts) -> BridgeError:
        tries = f"{attempts} tr{'y' if attempts == 1 else 'ies'}"
        if resp is not None:            # BAD_CHECKSUM every time
            rates = (f"a baud rate other than {self.baud} on the board" if self.baud
                     else "mismatched baud rates")
            return StatusError(
                f"the board on {self.name} received the request to {op} with a bad checksum "
                f"({tries}): line noise, or {rates}?", Status.BAD_CHECKSUM, op.addr)
        if heard:
            return CorruptResponseError(
                f"the answers from {self.name} to {op} were corrupt ({tries}): is "
                f"{self._baud_hint()}, and the cable sound?")
        return NoAnswerError(
            f"the board did not answer on {self.name} within {self.timeout:g} s ({tries}): "
            f"is the bitstream loaded and {self._baud_hint()}?")

    def _status_error(self, op, status) -> StatusError:
        if status == Status.BUS_TIMEOUT:
            return BusTimeoutError(
                f"register {op.addr:#06x} did not answer on the board's register bus ({op}): "
                f"the block behind it is stuck or absent", status, op.addr)
        if status == Status.BAD_ADDRESS:
            return StatusError(f"the board refused address {op.addr:#06x} ({op}): beyond its "
                               f"register space", status, op.addr)
        if status == Status.BAD_COMMAND:
            return StatusError(f"the board on {self.name} does not know the command of {op}: "
                               f"its bridge is an older protocol version", status, op.addr)
        return StatusError(f"the board answered {op} with unknown status {int(status):#04x}",
                           status, op.addr)


def _reg_addr(addr):
    if not isinstance(addr, int) or isinstance(addr, bool) or not 0 <= addr <= 0xFFFC \
            or addr % 4:
        raise ValueError(f"a register address is a multiple of 4 from 0 to 0xfffc, not "
                         f"{addr!r}")
    return addr


def _reg_value(value):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
        raise ValueError(f"a register value is an integer from 0 to 0xffffffff, not {value!r}")
    return value
