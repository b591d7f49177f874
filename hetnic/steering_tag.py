# Ref: IEEE 802 (Ethernet II framing); IEEE Std 802-2014 clause 9.2.4 (EtherType 0x88B5,
#      "Local Experimental EtherType 1", for prototype and vendor-private protocols).
"""The steering tag a board adds to every frame it forwards towards the host.

A bump-in-the-wire board (``hetnic.boards``) classifies each frame with the RX pipeline and
tells the host what it decided by inserting a 12-byte tag right after the source MAC
address, the way an 802.1Q tag is inserted::

    dst MAC (6) | src MAC (6) | tag (12) | original EtherType ... payload

Tag, in wire order (all multi-byte fields big-endian):

====  =====  =================================================================
byte  bits   field
====  =====  =================================================================
0-1          ``ethertype``: :data:`TAG_ETHERTYPE` (0x88B5)
2     7..4   ``version``: :data:`TAG_VERSION` (1)
2     3..0   ``instance``: stack instance named by the classifier action
3            ``queue``: receive queue chosen by the indirection table
4            ``rule``: index of the matching rule (the rule count: the default action)
5     2..0   ``hash_type``: :class:`~hetnic.protocol.HashType` of ``hash``
5     7..3   ``reserved``: 0
6-7          ``generation``: configuration generation the frame was classified with
8-11         ``hash``: the RSS (Toeplitz) hash
====  =====  =================================================================

:class:`SteeringTag` is the one definition of this layout. Its fields are declared from
the last wire byte to the first, so the packed 96-bit value, written big-endian, is the tag
on the wire: ``value.to_bytes(12, "big")``. The gateware (``hetnic.boards.tag_inserter``)
sends byte ``k`` as bits ``8 * (11 - k) + 7 .. 8 * (11 - k)`` of the value; the host uses
:func:`encode_tag`, :func:`decode_tag`, :func:`insert_tag` and :func:`strip_tag`.
"""


from dataclasses import dataclass

from amaranth.lib import data

from .errors import HetnicError
from .protocol import ETH_HEADER_LEN, HashType, unpack

__all__ = ["TAG_ETHERTYPE", "TAG_VERSION", "TAG_LEN", "TAG_OFFSET", "SteeringTag", "TagFields",
           "TagError", "encode_tag", "decode_tag", "insert_tag", "strip_tag",
           "tag_fields_from_meta"]

TAG_ETHERTYPE = 0x88B5      # IEEE 802 Local Experimental EtherType 1
TAG_VERSION = 1
TAG_OFFSET = 12             # the tag follows the destination and source MAC addresses
TAG_LEN = 12


class SteeringTag(data.Struct):
    """The steering tag, LSB first: the last wire byte is in bits 7..0 (see module doc)."""
    hash: 32
    generation: 16
    hash_type: HashType
    reserved: 5
    rule: 8
    queue: 8
    instance: 4
    version: 4
    ethertype: 16


assert data.Layout.cast(SteeringTag).size == 8 * TAG_LEN


class TagError(HetnicError, ValueError):
    """A frame or tag that cannot be decoded."""


@dataclass(frozen=True)
class TagFields:
    """The decisions a tag carries (the constant fields are checked, not stored)."""
    queue: int
    instance: int = 0
    rule: int = 0
    hash: int = 0
    hash_type: HashType = HashType.NONE
    generation: int = 0

    def __post_init__(self):
        for name in ("queue", "instance", "rule", "hash", "generation"):
            width = data.Layout.cast(SteeringTag)[name].width
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not 0 <= value < 1 << width:
                raise ValueError(f"{name} must be an integer from 0 to {(1 << width) - 1}, "
                                 f"not {value!r}")
        object.__setattr__(self, "hash_type", HashType(self.hash_type))


def encode_tag(fields: TagFields) -> bytes:
    """The 12 wire bytes of a tag."""
    layout = data.Layout.cast(SteeringTag)
    values = {"ethertype": TAG_ETHERTYPE, "version": TAG_VERSION, "reserved": 0,
              "queue": fields.queue, "instance": fields.instance, "rule": fields.rule,
              "hash": fields.hash, "hash_type": int(fields.hash_type),
              "generation": fields.generation}
    value = 0
    for name, field in layout:
        value |= values[name] << field.offset
    return value.to_bytes(TAG_LEN, "big")


def decode_tag(tag: bytes) -> TagFields:
    """The fields of 12 wire bytes; :class:`TagError` if they are not a version-1 tag."""
    if len(tag) != TAG_LEN:
        raise TagError(f"a steering tag is {TAG_LEN} bytes, not {len(tag)}")
    f = unpack(SteeringTag, int.from_bytes(tag, "big"))
    if f["ethertype"] != TAG_ETHERTYPE:
        raise TagError(f"EtherType 0x{f['ethertype']:04x} is not the steering tag's "
                       f"0x{TAG_ETHERTYPE:04x}")
    if f["version"] != TAG_VERSION:
        raise TagError(f"steering tag version {f['version']} is not {TAG_VERSION}")
    try:
        hash_type = HashType(f["hash_type"])
    except ValueError:
        raise TagError(f"hash type {f['hash_type']} is not a HashType") from None
    return TagFields(queue=f["queue"], instance=f["instance"], rule=f["rule"], hash=f["hash"],
                     hash_type=hash_type, generation=f["generation"])


def insert_tag(frame: bytes, fields: TagFields) -> bytes:
    """``frame`` (without FCS) with the tag after its source MAC address."""
    if len(frame) < ETH_HEADER_LEN:
        raise TagError(f"a {len(frame)}-byte frame has no Ethernet header to tag")
    return frame[:TAG_OFFSET] + encode_tag(fields) + frame[TAG_OFFSET:]


def strip_tag(frame: bytes) -> tuple[TagFields, bytes]:
    """The tag of a tagged frame and the frame as it was before tagging."""
    if len(frame) < TAG_OFFSET + TAG_LEN:
        raise TagError(f"a {len(frame)}-byte frame is too short to hold a steering tag")
    fields = decode_tag(frame[TAG_OFFSET:TAG_OFFSET + TAG_LEN])
    return fields, frame[:TAG_OFFSET] + frame[TAG_OFFSET + TAG_LEN:]


def tag_fields_from_meta(meta: dict[str, int]) -> TagFields:
    """The tag the board sends for a :class:`~hetnic.protocol.PacketMeta` record (fields as
    integers, e.g. from :func:`~hetnic.protocol.unpack`)."""
    return TagFields(queue=meta["queue"], instance=meta["instance"], rule=meta["rule"],
                     hash=meta["hash"], hash_type=HashType(meta["hash_type"]),
                     generation=meta["generation"])
