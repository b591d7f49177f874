"""The host side of the iCEBreaker's reduced core: RSS steering over the serial bridge.

>>> with ReducedCore.open("/dev/ttyUSB1") as core:
...     core.rss.set_key(key)
...     core.rss.set_table([0, 1, 2, 3])
...     core.commit()
...     result = core.steer(frame)
...     print(result.queue, hex(result.hash), result.hash_type, result.generation)

The board (:mod:`hetnic.boards.ice40_top`) has no room for the parser: it hashes Toeplitz
inputs with the RSS key in force and looks their queue up in its RETA through
``DEFAULT_ACTION``'s slice. :meth:`ReducedCore.steer` does the rest on the host, with the
software model the gateware is tested against: it parses the frame
(:func:`~hetnic.sim.model.parser.parse_frame`), picks the hash type and input
(:func:`~hetnic.sim.model.toeplitz.select_hash_type`,
:func:`~hetnic.sim.model.toeplitz.meta_hash_input`: the hash stage's choice, symmetric mode
included), has the board hash and steer it, and
reports the frame's fields as the full pipeline would for a configuration without rules.

Configuration is that of every hetnic NIC (:class:`~hetnic.host.control.NicControl`):
``rss.set_key``, ``rss.set_table``, ``rss.configure``, ``rules.set_default``, ``apply``,
``commit``, ``generation``. Not on this core, each raising :class:`NicError` that says so:
classifier rules (``rules.add``, a configuration with rules) and ``counters()``.

Each exchange is a few register accesses (at 115200 baud about 1.6 ms each): a request
writes the input words and ``INJ_END``; the result is read with one three-register read
and removed with ``RES_POP``. Every write may be repeated by the serial bridge's retries
without harm (``INJ_END`` and ``RES_POP`` carry the request's number).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Iterator

from ..bridge_protocol import DEFAULT_BAUD
from ..protocol import (RSS_MAX_INPUT_LEN, RX_MAX_FRAME_LIMIT, DropReason, HashType,
                        ParseError)
from ..params import NicParams
from ..sim.model.parser import parse_frame
from .board import SerialBackend
from ..config import RxConfig
from .control import NicControl, NicError, Rules, identify, serial_commit_waiter
from ..sim.model.toeplitz import meta_hash_input, select_hash_type
from ..rules import FlowRule
from .serial_bridge import BridgeError, SerialBridge

__all__ = ["ReducedCore", "BoardHash", "SteeringResult"]

SEQ_MASK = 0xFFFF


@dataclass(frozen=True)
class BoardHash:
    """What the board computed for one request."""
    seq: int            # the request's number (16 bits, wrapping)
    hash: int           # Toeplitz hash of the input under the key in force
    queue: int          # RETA entry (default action's slice) the hash selects
    instance: int       # the default action's stack instance
    generation: int     # configuration generation it was computed with


@dataclass(frozen=True)
class SteeringResult:
    """One frame's steering: the board's hash and queue, the host's parse."""
    length: int
    error: ParseError
    hash_type: HashType
    hash: int
    queue: int
    instance: int
    drop: DropReason    # parse errors (unless pass_errors) or a dropping default action
    generation: int
    seq: int


class _DefaultActionOnly(Rules):
    """The rule slots of a core without classifier rules: only the default action."""

    def add(self, rule: FlowRule, slot: int | None = None) -> int:
        raise NicError("the reduced serial core has no classifier rules (CAPS.classifier is "
                       "0): every frame takes the default action; set it with "
                       "rules.set_default")


class ReducedCore(NicControl):
    """The reduced core of a board over its serial bridge (see the module documentation).

    Parameters
    ----------
    backend : SerialBackend
        Register access; :meth:`open` makes one from a device path.
    commit_timeout : float
        Seconds :meth:`commit` waits for ``COMMIT_STATUS`` to clear.
    result_timeout : float
        Seconds :meth:`result` waits for a request's result.

    Opening checks the bridge, ``ID``, ``CAPS.injector`` (it must be 1) and ``PARAMS0..2``,
    then programs and commits the default configuration (Microsoft key, RETA entry ``i`` ->
    queue ``i % queues``, the whole table as the default action's slice).
    """

    def __init__(self, backend: SerialBackend, *, commit_timeout: float = 2.0,
                 result_timeout: float = 2.0):
        for name, value in (("commit_timeout", commit_timeout),
                            ("result_timeout", result_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.commit_timeout, self.result_timeout = commit_timeout, result_timeout
        backend.ident()
        params = _core_params(backend)
        super().__init__(backend, params, queues=params.queues)
        self.rules = _DefaultActionOnly(self)
        #: Results :meth:`result` removed because they were older than the one it waited for.
        self.discarded = 0
        self._write(self._config.register_writes(self.regmap, commit=False))
        self.commit()

    @classmethod
    def open(cls, device: str, *, baud: int = DEFAULT_BAUD, timeout: float = 0.5,
             retries: int = 2, window: int = 8, commit_timeout: float = 2.0,
             result_timeout: float = 2.0) -> "ReducedCore":
        """Open the board on serial ``device`` (``baud``, ``timeout``, ``retries`` and
        ``window`` are the :class:`~hetnic.host.serial_bridge.SerialBridge`'s)."""
        try:
            bridge = SerialBridge.open(device, baud=baud, timeout=timeout, retries=retries,
                                       window=window)
        except BridgeError as e:
            raise NicError(str(e)) from e
        backend = SerialBackend(bridge)
        try:
            return cls(backend, commit_timeout=commit_timeout, result_timeout=result_timeout)
        except BaseException:
            backend.close()
            raise

    # --- configuration -----------------------------------------------------------------
    def apply(self, config: RxConfig) -> int:
        """Stage and commit a whole configuration; one with rules is refused (``ValueError``,
        nothing written)."""
        if any(rule is not None for rule in config.rules):
            raise ValueError("the reduced serial core has no classifier rules: give a "
                             "configuration without rules (only the default action applies)")
        return super().apply(config)

    def commit(self) -> int:
        generation = super().commit()
        self._active = copy.deepcopy(self._config)      # what the board now steers with
        return generation

    def _commit_waiter(self) -> Iterator[None]:
        return serial_commit_waiter(self.backend.name, self.commit_timeout)

    def counters(self) -> dict[str, int]:
        raise NicError("the reduced serial core has no counters (CAPS.counters is 0); "
                       "injector_status() has its request and result counts")

    def _counter_addresses(self) -> list[tuple[str, int]]:
        return []

    # --- frames ------------------------------------------------------------------------
    def steer(self, frame: bytes) -> SteeringResult:
        """Parse ``frame`` on the host, hash and steer it on the board (with the configuration
        of the last commit). A frame longer than ``MAX_FRAME`` (at most 2048 bytes) is refused
        with ``ValueError``: the full pipeline would only report it ``OVERSIZE``."""
        if not isinstance(frame, (bytes, bytearray)):
            raise TypeError(f"steer takes the frame as bytes, not {type(frame).__name__}")
        c = self._active
        max_frame = min(c.max_frame, RX_MAX_FRAME_LIMIT)
        if len(frame) > max_frame:
            raise ValueError(f"a frame of {len(frame)} bytes is longer than MAX_FRAME "
                             f"({max_frame} bytes), which the pipeline drops as oversize; "
                             f"send a shorter frame or commit a larger max_frame (at most "
                             f"{RX_MAX_FRAME_LIMIT})")
        parsed = parse_frame(bytes(frame), max_frame=max_frame,
                             direct_ethertype=c.direct_ethertype)
        hash_type = select_hash_type(parsed.error, parsed.flags, c.hash_enable)
        board = self.hash(meta_hash_input(parsed, hash_type, c.symmetric))
        if parsed.error and not c.pass_errors:
            drop = DropReason(int(parsed.error))
        else:
            drop = DropReason.RULE if c.default.drop else DropReason.NONE
        return SteeringResult(length=parsed.length, error=ParseError(parsed.error),
                              hash_type=hash_type, hash=board.hash, queue=board.queue,
                              instance=board.instance, drop=drop,
                              generation=board.generation, seq=board.seq)

    def hash(self, data: bytes) -> BoardHash:
        """Have the board hash ``data`` (a Toeplitz input, at most 36 bytes) and steer it."""
        return self.result(self.submit(data))

    # --- requests and results ------------------------------------------------------------
    def submit(self, data: bytes) -> int:
        """Send a Toeplitz input without waiting for its result; returns its number (give it
        to :meth:`result`). More than 36 bytes is refused with ``ValueError``."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"a Toeplitz input is bytes, not {type(data).__name__}")
        if len(data) > RSS_MAX_INPUT_LEN:
            raise ValueError(f"a Toeplitz input is at most {RSS_MAX_INPUT_LEN} bytes (IPv6 "
                             f"addresses and ports), not {len(data)}")
        r = self.regmap
        padded = bytes(data) + bytes(-len(data) % 4)
        self._write([(r.addr("INJ_DATA", k), int.from_bytes(padded[4 * k:4 * k + 4], "big"))
                     for k in range(len(padded) // 4)])
        # INJ_END goes alone, after every word is acknowledged (a window retried in part may
        # perform a later write before an earlier one).
        seq = self._field("INJ_STATUS", "requests", self.backend.reg_read(r.addr("INJ_STATUS")))
        end = r["INJ_END"]
        self.backend.reg_write(r.addr("INJ_END"), len(data) << end.field("length").lsb |
                               seq << end.field("seq").lsb)
        return seq

    def take(self) -> BoardHash | None:
        """Remove and return the oldest waiting result; ``None`` if none waits (the board
        says so; this never waits)."""
        result = self._head()
        if result is not None:
            self._pop(result.seq)
        return result

    def result(self, seq: int) -> BoardHash:
        """Wait up to ``result_timeout`` seconds for request ``seq``'s result and remove it
        (older results still waiting are removed and counted in :attr:`discarded`; a later
        request's result, which says this one was dropped, stays)."""
        deadline = time.monotonic() + self.result_timeout
        while True:
            head = self._head()
            if head is not None:
                age = (seq - head.seq) & SEQ_MASK
                if age >= 0x8000:           # a later request's: ours was dropped
                    raise NicError(f"the result of request {seq} was lost: the board's "
                                   f"result queue was full (RES_STATUS.lost); take results "
                                   f"as they come")
                self._pop(head.seq)
                if age == 0:
                    return head
                self.discarded += 1
                continue
            if time.monotonic() >= deadline:
                raise NicError(f"no result for request {seq} from the board at "
                               f"{self.backend.name} within {self.result_timeout:g} s")

    def injector_status(self) -> dict[str, int]:
        """``requests``, ``ignored`` and ``cut`` (INJ_STATUS), ``waiting`` and ``lost``
        (RES_STATUS), as the board counts them (wrapping)."""
        r = self.regmap
        inj, res = self.backend.reg_read_many([r.addr("INJ_STATUS"), r.addr("RES_STATUS")])
        out = {f.name: self._field("INJ_STATUS", f.name, inj) for f in r["INJ_STATUS"].fields}
        out.update({f.name: self._field("RES_STATUS", f.name, res)
                    for f in r["RES_STATUS"].fields})
        return out

    def _head(self) -> BoardHash | None:
        r = self.regmap
        info, hash_value, tag = self.backend.reg_read_many(
            [r.addr("RES_INFO"), r.addr("RES_HASH"), r.addr("RES_TAG")])
        if not self._field("RES_INFO", "valid", info):
            return None
        return BoardHash(seq=self._field("RES_TAG", "seq", tag), hash=hash_value,
                         queue=self._field("RES_INFO", "queue", info),
                         instance=self._field("RES_INFO", "instance", info),
                         generation=self._field("RES_TAG", "generation", tag))

    def _pop(self, seq: int) -> None:
        self.backend.reg_write(self.regmap.addr("RES_POP"), seq)

    def _field(self, reg: str, name: str, value: int) -> int:
        f = self.regmap[reg].field(name)
        return (value & f.mask) >> f.lsb


def _core_params(backend) -> NicParams:
    """The build of the board behind ``backend`` from ``ID``, ``PARAMS0..2`` and ``CAPS``;
    refuses anything but the reduced serial core."""
    params = identify(backend)
    if not params.injector:
        raise NicError(f"the board on {backend.name} is not the reduced serial core "
                       f"(CAPS.injector is 0): open it with Nic.open('serial:DEVICE', "
                       f"data=...)")
    return params
