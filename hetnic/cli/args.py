"""Argument types and the parser every ``hetnic`` command shares.

A value an option takes is checked once, by its argparse ``type``, with the same limits in
every command that takes it: :func:`int_range` and :func:`float_range` for numbers, and the
named types below for the things several commands take (queues, frames, seeds, widths).
A bad value becomes one line, ``hetnic COMMAND: error: --queues must be from 1 to 256, not
0``, and exit status 2 (see :func:`hetnic.cli.main`).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Callable, NoReturn

from ..errors import HetnicError
from ..regs import PARAM_LIMITS

__all__ = ["CliError", "UsageError", "CommandParser", "int_range", "float_range",
           "queue_count", "frame_count", "seed", "data_width", "DATA_WIDTHS", "MAX_QUEUES",
           "rss_key", "waveform_file"]


class CliError(HetnicError):
    """Bad command-line input that argparse cannot see alone (two options that exclude each
    other, a file that cannot be written). Printed as one line, exit status 2."""


class UsageError(CliError):
    """A value or option argparse refused; ``prog`` is the command that refused it
    (``"hetnic replay"``)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UsageError` exceptions instead of a
    usage text and ``SystemExit``, so that they reach the one place that prints errors.

    The types of this module phrase their messages to read on from the option's name
    (``must be ...``, ``'x' is not ...``): ``argument --queues: must be from ...`` becomes
    ``--queues must be from ...``; argparse's own messages keep their colon (``--format:
    invalid choice: ...``), and a message that names its option already is left alone.
    """

    def error(self, message: str) -> NoReturn:
        match = re.fullmatch(r"argument (\S+?): (.*)", message, re.S)
        if match:
            name, reason = match.groups()
            if reason.startswith(name):
                message = reason
            elif reason.startswith(("must ", "'")):
                message = f"{name} {reason}"
            else:
                message = f"{name}: {reason}"
        raise UsageError(self.prog, message)


def _limits(lo, hi, fmt=str) -> str:
    return f"from {fmt(lo)} to {fmt(hi)}" if hi is not None else f"from {fmt(lo)} or more"


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """The argparse ``type`` of a whole number from ``lo`` to ``hi`` inclusive (no upper
    limit if ``hi`` is ``None``).

    Returns
    -------
    callable
        ``str -> int``; raises ``argparse.ArgumentTypeError`` saying ``'x' is not a whole
        number`` or ``must be from lo to hi, not x``.
    """
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_limits(lo, hi)}, not {text}")
        return value
    parse.__name__ = f"int_range({lo}, {hi})"
    return parse


def float_range(lo: float, hi: float | None = None) -> Callable[[str], float]:
    """The argparse ``type`` of a finite number from ``lo`` to ``hi`` inclusive (no upper
    limit if ``hi`` is ``None``); NaN and infinities are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value >= lo and (hi is None or value <= hi)):
            raise argparse.ArgumentTypeError(f"must be {_limits(lo, hi, '{:g}'.format)}, "
                                             f"not {text}")
        return value
    parse.__name__ = f"float_range({lo}, {hi})"
    return parse


# --- the values several commands take: one limit each ----------------------------------------

#: Receive queues a command may spread traffic over: the register table's limit for the
#: ``queues`` build parameter (:data:`hetnic.regs.PARAM_LIMITS`).
MAX_QUEUES = PARAM_LIMITS["queues"][1]
#: Datapath widths in bits that the simulated NIC is built and tested at (``--width``).
DATA_WIDTHS = (8, 16, 32, 64, 128)

#: ``--queues``: receive queues, 1 to :data:`MAX_QUEUES` in every command.
queue_count = int_range(1, MAX_QUEUES)
#: ``--frames`` (and flows): a count of at least one.
frame_count = int_range(1)
#: ``--seed``: a random seed, 0 or more.
seed = int_range(0)


def data_width(text: str) -> int:
    """The argparse ``type`` of ``--width``: one of :data:`DATA_WIDTHS` bits."""
    width = int_range(min(DATA_WIDTHS), max(DATA_WIDTHS))(text)
    if width not in DATA_WIDTHS:
        raise argparse.ArgumentTypeError(
            f"must be {', '.join(map(str, DATA_WIDTHS[:-1]))} or {DATA_WIDTHS[-1]} bits, "
            f"not {text}")
    return width


def rss_key(text: str) -> bytes:
    """The argparse ``type`` of ``--key``: a Toeplitz key in hex (``0x``, colons and spaces
    allowed), exactly :data:`~hetnic.protocol.RSS_KEY_LEN` bytes."""
    from ..protocol import RSS_KEY_LEN
    clean = text.replace(":", "").replace(" ", "")
    if clean.lower().startswith("0x"):
        clean = clean[2:]
    try:
        key = bytes.fromhex(clean)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hexadecimal") from None
    if len(key) != RSS_KEY_LEN:
        raise argparse.ArgumentTypeError(f"must be {RSS_KEY_LEN} bytes ({2 * RSS_KEY_LEN} hex "
                                         f"digits), got {len(key)} bytes")
    return key


def waveform_file(text: str) -> str:
    """The argparse ``type`` of ``--trace``: a file name ending in ``.vcd`` or ``.fst``."""
    if Path(text).suffix.lower() not in (".vcd", ".fst"):
        raise argparse.ArgumentTypeError(f"must name a .vcd or .fst waveform file, not "
                                         f"{text!r}")
    return text
