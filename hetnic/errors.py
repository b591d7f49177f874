"""The base of every error hetnic raises on purpose.

Every exception class of the package derives from :class:`HetnicError`, beside the built-in
class that says what kind of failure it is (``class RuleError(HetnicError, ValueError)``), so a
caller can catch all of hetnic's own errors in one place (the ``hetnic`` command does: one
line on stderr, exit status 2) and still catch a ``ValueError`` or ``TimeoutError`` as before.

This module is part of the spec layer: it imports nothing, and anything may import it.
"""

from __future__ import annotations

__all__ = ["HetnicError"]


class HetnicError(Exception):
    """An error hetnic raised on purpose, with a one-line message that says what went wrong
    and what to do about it.

    Subclasses add the built-in base that fits (``ValueError`` for bad input,
    ``RuntimeError`` for a device or tool that misbehaved, ...). An exception that is not a
    ``HetnicError`` escaping hetnic is a bug.
    """
