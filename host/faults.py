"""A seeded fault injector for a stream of frames: loss, duplication, reordering, corruption.

This kernel has no ``netem``, so the TAP bridge (:mod:`hetnic.host.tap_bridge`) and the links
put one :class:`FaultInjector` on each direction. Every decision comes from the injector's
own ``random.Random``, seeded, so a run is reproducible frame for frame.

>>> plan = parse_faults("loss=2%,reorder=2%,dup=1%,seed=7")
>>> to_nic, to_tap = plan.injector("in"), plan.injector("out")
>>> frames = to_nic.process(frames, now)      # what goes on, in order
>>> frames += to_nic.due(now)                 # held-back frames whose time came

The grammar of a fault spec
---------------------------
::

    spec      := section (";" section)*
    section   := [direction ":"] setting ("," setting)*
    direction := "in" | "out" | "both"
    setting   := key "=" value

``in`` is the direction into hetnic (kernel -> TAP -> NIC), ``out`` the direction out of it
(NIC -> TAP -> kernel); a section with no direction applies to both. Later settings override
earlier ones for the same direction. Keys:

``loss``, ``dup``, ``reorder``, ``corrupt``
    Probabilities per frame: ``2%`` or ``0.02`` (0 to 100 %). A lost frame is dropped; a
    duplicated one is sent twice; a reordered one is held back and sent after the next
    ``depth`` frames or after ``hold``, whichever comes first; a corrupted one has one byte
    at a uniformly random offset XORed with a random non-zero value.
``depth``
    Frames a reordered frame waits behind (an integer >= 1, default 3).
``hold``
    Longest time a reordered frame waits: seconds, or with a unit ``ms``/``us``/``s``
    (default ``5ms``).
``seed``
    An integer (default 0). Each direction draws from its own generator derived from the
    seed and its name, so the two directions are independent but both reproducible.

Faults are drawn in the order loss, corrupt, dup, reorder: a lost frame is not also
corrupted; a duplicate carries the same corruption; the original is the one held back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from ..errors import HetnicError

__all__ = ["FaultSpec", "FaultPlan", "FaultInjector", "FaultSpecError", "parse_faults"]

_PROBABILITIES = ("loss", "dup", "reorder", "corrupt")
_DIRECTIONS = ("in", "out")


class FaultSpecError(HetnicError, ValueError):
    """A fault spec that does not parse (the message quotes the bad part)."""


@dataclass(frozen=True)
class FaultSpec:
    """The faults of one direction (probabilities from 0 to 1; see the module grammar)."""
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    depth: int = 3
    hold: float = 0.005
    seed: int = 0

    def __post_init__(self):
        for key in _PROBABILITIES:
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise FaultSpecError(f"fault {key} must be a probability from 0 to 1, "
                                     f"not {v!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise FaultSpecError(f"fault depth must be an integer >= 1, not {self.depth!r}")
        if not isinstance(self.hold, (int, float)) or not self.hold > 0:
            raise FaultSpecError(f"fault hold must be a positive time, not {self.hold!r}")
        if not isinstance(self.seed, int):
            raise FaultSpecError(f"fault seed must be an integer, not {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether any fault has a non-zero probability."""
        return any(getattr(self, key) for key in _PROBABILITIES)


@dataclass(frozen=True)
class FaultPlan:
    """The faults of both directions, as :func:`parse_faults` returns them."""
    inbound: FaultSpec = field(default_factory=FaultSpec)
    outbound: FaultSpec = field(default_factory=FaultSpec)

    def spec(self, direction: str) -> FaultSpec:
        if direction not in _DIRECTIONS:
            raise FaultSpecError(f"fault direction must be 'in' or 'out', not {direction!r}")
        return self.inbound if direction == "in" else self.outbound

    def injector(self, direction: str) -> "FaultInjector | None":
        """A fresh injector for ``direction`` (``"in"`` or ``"out"``), or None when that
        direction has no faults."""
        spec = self.spec(direction)
        return FaultInjector(spec, direction) if spec.active else None


def _probability(key: str, text: str) -> float:
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise FaultSpecError(f"fault {key}={text!r}: expected a probability such as 2% or "
                             f"0.02") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"fault {key}={text!r}: must be from 0 to 100%")
    return value


def _duration(key: str, text: str) -> float:
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            number, factor = text[:-len(unit)], scale
            break
    else:
        number, factor = text, 1.0
    try:
        value = float(number) * factor
    except ValueError:
        raise FaultSpecError(f"fault {key}={text!r}: expected a time such as 5ms") from None
    if not value > 0:
        raise FaultSpecError(f"fault {key}={text!r}: must be positive")
    return value


def _integer(key: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FaultSpecError(f"fault {key}={text!r}: expected an integer") from None


_PARSERS = {"loss": _probability, "dup": _probability, "reorder": _probability,
            "corrupt": _probability, "depth": _integer, "hold": _duration, "seed": _integer}


def parse_faults(spec: str) -> FaultPlan:
    """Parse a fault spec (see the module documentation for the grammar).

    Raises
    ------
    FaultSpecError
        A section, direction, key or value that does not parse; the message quotes it.
    """
    if not isinstance(spec, str):
        raise FaultSpecError(f"a fault spec is a string, not {spec!r}")
    settings: dict[str, dict[str, object]] = {"in": {}, "out": {}}
    for section in spec.split(";"):
        section = section.strip()
        if not section:
            continue
        head, sep, rest = section.partition(":")
        if sep:
            direction = head.strip()
            if direction not in ("in", "out", "both"):
                raise FaultSpecError(f"fault direction {direction!r} in {section!r}: use "
                                     f"in, out or both")
            targets = _DIRECTIONS if direction == "both" else (direction,)
        else:
            targets, rest = _DIRECTIONS, section
        for item in rest.split(","):
            item = item.strip()
            if not item:
                continue
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not value:
                raise FaultSpecError(f"fault setting {item!r}: expected key=value")
            if key not in _PARSERS:
                raise FaultSpecError(f"unknown fault {key!r} in {item!r}; keys are "
                                     f"{', '.join(_PARSERS)}")
            parsed = _PARSERS[key](key, value)
            for target in targets:
                settings[target][key] = parsed
    return FaultPlan(inbound=FaultSpec(**settings["in"]),      # type: ignore[arg-type]
                     outbound=FaultSpec(**settings["out"]))    # type: ignore[arg-type]


class FaultInjector:
    """Applies a :class:`FaultSpec` to the frames of one direction.

    Parameters
    ----------
    spec : FaultSpec
        The probabilities and the seed.
    direction : str
        A name mixed into the seed (``"in"``/``"out"``), so two directions with one seed
        draw different faults.

    Members
    -------
    frames_in, frames_out : int
        Frames given to :meth:`process` and frames returned by it and :meth:`due`.
    lost, duplicated, reordered, corrupted : int
        Frames each fault hit.
    """

    def __init__(self, spec: FaultSpec | None = None, direction: str = "", **overrides):
        spec = spec if spec is not None else FaultSpec()
        self.spec = replace(spec, **overrides) if overrides else spec
        self.direction = direction
        self._rng = random.Random(f"{self.spec.seed}:{direction}")
        # Held-back frames: [frames still to pass, release time, frame], in hold order.
        self._held: list[list] = []
        self.frames_in = self.frames_out = 0
        self.lost = self.duplicated = self.reordered = self.corrupted = 0

    def process(self, frames: list[bytes], now: float) -> list[bytes]:
        """The frames to send on for ``frames`` arriving at time ``now``: with losses and
        duplicates applied, and held-back frames released once ``depth`` later frames passed
        them or their ``hold`` time ran out (with no ``frames``: the held-back frames due
        at ``now``, as :meth:`due`)."""
        spec = self.spec
        if not spec.active and not self._held:
            self.frames_in += len(frames)
            self.frames_out += len(frames)
            return frames
        rand = self._rng.random
        out: list[bytes] = []
        for frame in frames:
            self.frames_in += 1
            if spec.loss and rand() < spec.loss:
                self.lost += 1
                continue
            if spec.corrupt and frame and rand() < spec.corrupt:
                frame = self._corrupt(frame)
            copies = 1
            if spec.dup and rand() < spec.dup:
                self.duplicated += 1
                copies = 2
            if spec.reorder and rand() < spec.reorder:
                self.reordered += 1
                self._held.append([spec.depth, now + spec.hold, frame])
                copies -= 1
            for _ in range(copies):
                out.append(frame)
                self._passed(out, now)
        out += self.due(now, count=False)
        self.frames_out += len(out)
        return out

    def _passed(self, out: list[bytes], now: float) -> None:
        """One frame went by: the held frames whose ``depth`` ran out follow it."""
        if not self._held:
            return
        keep = []
        for entry in self._held:
            entry[0] -= 1
            if entry[0] <= 0:
                out.append(entry[2])
            else:
                keep.append(entry)
        self._held = keep

    def due(self, now: float, *, count: bool = True) -> list[bytes]:
        """Held-back frames whose ``hold`` time has run out at ``now``, oldest first."""
        if not self._held:
            return []
        out = [entry[2] for entry in self._held if entry[1] <= now]
        if out:
            self._held = [entry for entry in self._held if entry[1] > now]
            if count:
                self.frames_out += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When the oldest held-back frame must be released, or None when none is held."""
        return min((entry[1] for entry in self._held), default=None)

    def flush(self) -> list[bytes]:
        """Every held-back frame, now (for the end of a run)."""
        out = [entry[2] for entry in self._held]
        self._held = []
        self.frames_out += len(out)
        return out

    @property
    def held(self) -> int:
        """Frames held back for reordering."""
        return len(self._held)

    def _corrupt(self, frame: bytes) -> bytes:
        self.corrupted += 1
        offset = self._rng.randrange(len(frame))
        flip = self._rng.randrange(1, 256)
        b = bytearray(frame)
        b[offset] ^= flip
        return bytes(b)

    def counters(self) -> dict[str, int]:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "lost": self.lost, "duplicated": self.duplicated,
                "reordered": self.reordered, "corrupted": self.corrupted,
                "held": len(self._held)}

    def __repr__(self) -> str:
        s = self.spec
        return (f"FaultInjector({self.direction or '-'}: loss={s.loss:.2%} dup={s.dup:.2%} "
                f"reorder={s.reorder:.2%} corrupt={s.corrupt:.2%} seed={s.seed})")
