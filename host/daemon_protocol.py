# Ref: RFC 8259 (JSON), unix(7) (SO_PEERCRED).
"""The hetnicd client protocol, version 1: newline-delimited JSON over a Unix stream socket.

One request per line, one reply per request, in order::

    {"v": 1, "id": 7, "op": "rules.configure", "args": {"text": "...", "format": "toml"}}
    {"v": 1, "id": 7, "ok": true, "result": {...}}
    {"v": 1, "id": 7, "ok": false, "code": "denied", "error": "..."}

``op`` is ``INTERFACE.OPERATION`` — an interface of the composite device
(:data:`INTERFACES`) and an operation (:data:`OPERATIONS`) — or ``session.whoami``, which
every session may ask. ``events.read`` with ``{"follow": true}`` turns the session into a
stream: the reply, then one ``{"v": 1, "id": N, "event": {...}}`` line per file event until
the client closes.

A line longer than :data:`MAX_MESSAGE` bytes, a line that is not a JSON object, a wrong
``v`` or a missing/ill-typed field gets a ``bad-request`` reply and the daemon closes that
session (others carry on). Reply codes are :data:`CODES`.

This module only encodes and checks messages; it touches no socket state but the bytes.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import HetnicError

__all__ = ["VERSION", "MAX_MESSAGE", "INTERFACES", "OPERATIONS", "CODES", "ProtocolError",
           "encode", "request", "decode_request", "decode_reply", "reply", "error_reply",
           "split_op"]

#: The protocol version this daemon and its clients speak.
VERSION = 1
#: The longest message, in bytes, without its newline (a rules file fits easily).
MAX_MESSAGE = 1 << 20

#: The interfaces of the composite device, as ``op`` names them.
INTERFACES = ("rx_queues", "tx_queues", "instances", "rules", "rss", "counters", "direct",
              "tap", "events")
#: The operations a policy grants on an interface.
OPERATIONS = ("read", "configure", "use")

#: Reply codes: what a failed request's ``code`` may be.
CODES = {
    "bad-request": "the message broke the protocol; the session is closed",
    "denied": "the policy does not grant this interface and operation to the session",
    "unsupported": "the policy allows it, but this daemon has no such operation",
    "refused": "the operation was tried and refused; the previous configuration stays",
    "failed": "the operation failed on the NIC; nothing half-applied stays",
    "busy": "too many sessions are open (in all, or of this uid); the session is closed",
}


class ProtocolError(HetnicError, ValueError):
    """A message that breaks the protocol (one line)."""


def encode(message: dict) -> bytes:
    """``message`` as one line of compact JSON, newline-terminated."""
    data = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is longer than the protocol's "
                            f"{MAX_MESSAGE}")
    return data + b"\n"


def request(id: int, op: str, args: dict | None = None) -> bytes:
    """A request line."""
    return encode({"v": VERSION, "id": id, "op": op, "args": args or {}})


def reply(id: int, result: Any) -> bytes:
    """A success reply line."""
    return encode({"v": VERSION, "id": id, "ok": True, "result": result})


def error_reply(id: int | None, code: str, error: str) -> bytes:
    """A failure reply line (``code`` one of :data:`CODES`)."""
    assert code in CODES, code
    return encode({"v": VERSION, "id": id, "ok": False, "code": code, "error": error})


def _object(line: bytes) -> dict:
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"message longer than {MAX_MESSAGE} bytes")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message is a JSON object")
    v = message.get("v")
    if v != VERSION or isinstance(v, bool):
        raise ProtocolError(f"protocol version {v!r}; this daemon speaks {VERSION}")
    return message


def decode_request(line: bytes) -> tuple[int, str, dict]:
    """``(id, op, args)`` of a request line (without its newline); ProtocolError else."""
    message = _object(line)
    id, op, args = message.get("id"), message.get("op"), message.get("args", {})
    if not isinstance(id, int) or isinstance(id, bool) or not 0 <= id < 1 << 53:
        raise ProtocolError(f"'id' must be an integer 0..2**53-1, not {id!r}")
    if not isinstance(op, str) or not op:
        raise ProtocolError(f"'op' must be a non-empty string, not {op!r}")
    if not isinstance(args, dict):
        raise ProtocolError(f"'args' must be an object, not {type(args).__name__}")
    extra = set(message) - {"v", "id", "op", "args"}
    if extra:
        raise ProtocolError(f"unknown request field(s) {', '.join(sorted(extra))}")
    return id, op, args


def decode_reply(line: bytes) -> dict:
    """A reply or event line as a dict (checked for the version); ProtocolError else."""
    return _object(line)


def split_op(op: str) -> tuple[str, str] | None:
    """``(interface, operation)`` of an ``INTERFACE.OPERATION`` op, or None when ``op``
    does not name a known interface and operation."""
    interface, _, operation = op.partition(".")
    if interface in INTERFACES and operation in OPERATIONS:
        return interface, operation
    return None
