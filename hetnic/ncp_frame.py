"""The NCP frame: hetnic's direct data-link channel, its header layout defined once.

NCP (the Network Convergence Protocol of issue #17) runs straight on Ethernet II with the
direct-channel EtherType (:attr:`hetnic.protocol.EtherType.DIRECT_DEFAULT`, 0x88B5; the
gateware's parser sets ``flags.direct`` for the ``DIRECT_ETHERTYPE`` register's value, so a
classifier rule can steer these frames to a queue). No IP: two devices on one link talk by
MAC address and channel number.

An NCP frame is the 14-byte Ethernet header, the :data:`HEADER` below (big-endian, 28 bytes)
and ``length`` payload bytes; anything after them is Ethernet padding and is ignored. The
host code (:mod:`hetnic.host.ncp`), the tests and ``docs/ncp.md`` all take the layout from
here: :data:`FIELDS` is the one list of fields, :data:`HEADER` the ``struct`` built from it,
and :func:`table` renders it as the Markdown table of the doc page.
"""

from __future__ import annotations

import collections
import enum
import struct
import zlib

from .protocol import ETH_HEADER_LEN, EtherType

__all__ = ["VERSION", "ETHERTYPE", "FIELDS", "HEADER", "HEADER_LEN", "MAX_PAYLOAD", "MTU",
           "FrameType", "Header", "encode", "decode", "check_value", "table"]

#: The protocol version this code speaks (a frame of another version is a counted drop).
VERSION = 1
#: The EtherType NCP frames carry.
ETHERTYPE = int(EtherType.DIRECT_DEFAULT)
#: The Ethernet payload size NCP fills at most (a 1500-byte MTU).
MTU = 1500

#: The header's fields in wire order: (name, ``struct`` code, meaning). The one definition.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("version", "B", "protocol version, 1"),
    ("type", "B", "frame type (FrameType: SYN, SYN_ACK, ACK, DATA, FIN, FIN_ACK, "
                  "KEEPALIVE, RST)"),
    ("channel", "H", "channel ID: the session is (peer MAC, channel)"),
    ("length", "H", "payload bytes after the header (DATA only; 0 otherwise)"),
    ("window", "H", "receive window: frames the sender will accept beyond `ack`"),
    ("epoch", "I", "sender's session nonce, random per boot and per session (never 0)"),
    ("peer_epoch", "I", "the receiver's epoch as the sender knows it (0 in a SYN)"),
    ("seq", "I", "sequence number of this DATA/FIN frame (frames, not bytes); for "
                 "other types the next one the sender will use"),
    ("ack", "I", "cumulative acknowledgement: the next sequence number expected"),
    ("sack", "I", "selective acknowledgement: bit i set = frame ack+1+i was received"),
    ("check", "I", "CRC-32 (zlib) of the header with this field 0, then the payload"),
)

#: The header as a ``struct`` (network byte order).
HEADER = struct.Struct("!" + "".join(code for _, code, _ in FIELDS))
HEADER_LEN = HEADER.size
#: Payload bytes of one DATA frame at most.
MAX_PAYLOAD = MTU - HEADER_LEN
_CHECK_AT = HEADER_LEN - 4
_ETH_NCP = ETH_HEADER_LEN + HEADER_LEN


class FrameType(enum.IntEnum):
    """The ``type`` field."""
    SYN = 1             # open a session: carries the opener's epoch
    SYN_ACK = 2         # accept it: carries both epochs
    ACK = 3             # acknowledgement only (also completes the handshake)
    DATA = 4            # payload, sequence numbered
    FIN = 5             # close: sequence numbered after the last DATA
    FIN_ACK = 6         # the FIN was received; the session is gone on both sides
    KEEPALIVE = 7       # liveness probe; answered with an ACK
    RST = 8             # "I have no such session / your epoch is stale": start over


#: A decoded header: the :data:`FIELDS` by name.
Header = collections.namedtuple("Header", [name for name, _, _ in FIELDS])


def check_value(header_zeroed: bytes, payload: bytes) -> int:
    """The ``check`` field of a header (given with ``check`` = 0) and its payload."""
    return zlib.crc32(payload, zlib.crc32(header_zeroed))


def encode(dst: bytes, src: bytes, *, type: int, channel: int, epoch: int, peer_epoch: int,
           seq: int, ack: int, window: int, sack: int = 0, payload: bytes = b"") -> bytes:
    """One whole Ethernet frame (no FCS, no padding: the MAC pads)."""
    head = HEADER.pack(VERSION, type, channel, len(payload), window, epoch, peer_epoch,
                       seq, ack, sack, 0)
    check = check_value(head, payload)
    return b"".join((dst, src, ETHERTYPE.to_bytes(2, "big"), head[:_CHECK_AT],
                     check.to_bytes(4, "big"), payload))


def decode(frame: bytes) -> tuple[Header, bytes] | str:
    """The header and payload of an NCP frame, or the drop reason as a string:
    ``"short"``, ``"ethertype"``, ``"version"``, ``"length"``, ``"check"``, ``"type"``.
    Never raises for any bytes."""
    if len(frame) < _ETH_NCP:
        return "short"
    if frame[12] != ETHERTYPE >> 8 or frame[13] != ETHERTYPE & 0xFF:
        return "ethertype"
    values = HEADER.unpack_from(frame, ETH_HEADER_LEN)
    if values[0] != VERSION:
        return "version"
    length = values[3]
    if length > MAX_PAYLOAD or _ETH_NCP + length > len(frame):
        return "length"
    head = bytearray(frame[ETH_HEADER_LEN:_ETH_NCP])
    head[_CHECK_AT:] = b"\0\0\0\0"
    payload = frame[_ETH_NCP:_ETH_NCP + length]
    if check_value(head, payload) != values[-1]:
        return "check"
    if not FrameType.SYN <= values[1] <= FrameType.RST:
        return "type"
    if values[1] != FrameType.DATA and length:
        return "length"
    return Header._make(values), payload


def table() -> str:
    """The header as a Markdown table (offset, size, field, meaning), for ``docs/ncp.md``."""
    rows = ["| Offset | Bytes | Field | Meaning |", "|---:|---:|---|---|"]
    offset = 0
    for name, code, meaning in FIELDS:
        size = struct.calcsize("!" + code)
        rows.append(f"| {offset} | {size} | `{name}` | {meaning} |")
        offset += size
    return "\n".join(rows)
