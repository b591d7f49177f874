"""The steering tag's host helpers: round trip, wire layout, bad input."""

import random

import pytest
from amaranth.lib import data

from hetnic.protocol import HashType
from hetnic.steering_tag import (TAG_ETHERTYPE, TAG_LEN, SteeringTag, TagError, TagFields,
                                 decode_tag, encode_tag, insert_tag, strip_tag)

SEED = 0x7A6_0001


def test_layout_is_twelve_bytes_ethertype_first():
    layout = data.Layout.cast(SteeringTag)
    assert layout.size == 8 * TAG_LEN
    assert layout["ethertype"].offset == 8 * TAG_LEN - 16    # the first two wire bytes


def test_wire_bytes_of_a_known_tag():
    fields = TagFields(queue=5, instance=3, rule=2, hash=0xDEADBEEF,
                       hash_type=HashType.IPV4_TCP, generation=0x0107)
    assert encode_tag(fields) == bytes.fromhex("88b5 13 05 02 02 0107 deadbeef")


def test_random_round_trip():
    rng = random.Random(SEED)
    print(f"seed {SEED:#x}")
    for _ in range(500):
        fields = TagFields(queue=rng.randrange(256), instance=rng.randrange(16),
                           rule=rng.randrange(256), hash=rng.getrandbits(32),
                           hash_type=rng.choice(list(HashType)),
                           generation=rng.randrange(1 << 16))
        assert decode_tag(encode_tag(fields)) == fields
        frame = rng.randbytes(rng.randrange(14, 200))
        tagged = insert_tag(frame, fields)
        assert len(tagged) == len(frame) + TAG_LEN
        assert tagged[12:14] == TAG_ETHERTYPE.to_bytes(2, "big")
        assert strip_tag(tagged) == (fields, frame)


@pytest.mark.parametrize("tag, message", [
    (bytes(11), "12 bytes"),
    (bytes.fromhex("0800 13 05 02 02 0107 deadbeef"), "EtherType 0x0800"),
    (bytes.fromhex("88b5 23 05 02 02 0107 deadbeef"), "version 2"),
    (bytes.fromhex("88b5 13 05 02 07 0107 deadbeef"), "hash type 7"),
])
def test_bad_tags_are_refused(tag, message):
    with pytest.raises(TagError, match=message):
        decode_tag(tag)


def test_bad_fields_and_frames_are_refused():
    with pytest.raises(ValueError, match="queue must be an integer from 0 to 255, not 256"):
        TagFields(queue=256)
    with pytest.raises(ValueError, match="instance"):
        TagFields(queue=0, instance=16)
    with pytest.raises(TagError, match="no Ethernet header"):
        insert_tag(bytes(13), TagFields(queue=0))
    with pytest.raises(TagError, match="too short"):
        strip_tag(bytes(23))
