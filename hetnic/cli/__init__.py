"""The ``hetnic`` command line (also ``python -m hetnic``): one module per command.

Each command module (listed in :data:`COMMANDS`, in ``hetnic --help`` order) has

``NAME``
    the command word (``"rss-eval"``);
``HELP`` and, optionally, ``DESCRIPTION``
    its line in ``hetnic --help`` and the text of ``hetnic NAME --help``;
``add_arguments(parser)``
    declares its options, each value checked by an argparse ``type`` from
    :mod:`hetnic.cli.args` (the same limits wherever the same thing is taken);
``run(args) -> int``
    does the work and returns the exit status (0 success, 1 a negative result such as a
    model mismatch or missed timing).

Errors are handled in one place, :func:`main`: a rejected argument, a
:class:`~hetnic.errors.HetnicError` or an ``OSError`` from any command is printed as one line,
``hetnic COMMAND: error: MESSAGE``, with exit status 2. Command modules import the heavy parts
of hetnic (gateware, simulators) inside ``run``, so ``hetnic --help`` stays quick.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from ..errors import HetnicError
from . import (bench, boards, build, counters, daemon, demo, events, program, regmap, replay,
               restart, rss, rss_eval, rules, stack, verilog)
from .args import CommandParser

__all__ = ["main", "command_parser", "COMMANDS"]

#: The command modules, in the order ``hetnic --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (verilog, regmap, replay, bench, demo, rss_eval, boards,
                                    build, program, stack, daemon, rules, rss, counters,
                                    events, restart)


def command_parser() -> CommandParser:
    """The ``hetnic`` parser: one sub-parser per module of :data:`COMMANDS`, whose ``run``
    is stored as the ``run`` attribute of the parsed arguments."""
    parser = CommandParser(
        prog="hetnic", description="hetnic: an open SmartNIC reference design "
        "(Amaranth gateware, Verilator simulation, Python host).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP,
                                  description=getattr(command, "DESCRIPTION", None))
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status: the
    command's, 2 for any error (one line on stderr), 130 on Ctrl-C."""
    parser = command_parser()
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        prog = f"{parser.prog} {args.command}"
        return args.run(args)
    except BrokenPipeError:
        # The reader of our output went away (`hetnic ... | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (HetnicError, OSError) as exc:
        print(f"{getattr(exc, 'prog', prog)}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
