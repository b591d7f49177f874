"""The host-memory layouts of hetnic.protocol: sizes as documented, phase bit placement."""

import inspect
import random
import re

import pytest
from amaranth.lib import data

from kit import pack_image, unpack_image

from hetnic import protocol
from hetnic.host.ring import EntryCodec
from hetnic.protocol import (Event, HashType, RxCompletion, RxDescriptor, TxCompletion,
                             TxGatherEntry, TxLengths, TxWorkItem)

#: Every ring entry layout and its documented size in bytes.
RING_LAYOUTS = {RxDescriptor: 16, RxCompletion: 16, TxWorkItem: 16, TxLengths: 16,
                TxGatherEntry: 16, TxCompletion: 16, Event: 16}
#: Entries the NIC writes and the host polls by phase bit.
PHASED = (RxCompletion, TxCompletion, Event)
#: Struct layouts of protocol.py that are not ring entries (the flow table's key and entry
#: go through registers).
NOT_IN_HOST_MEMORY = {"MetaFlags", "PacketMeta", "RuleAction", "Rule", "FlowKey", "FlowEntry"}


def test_every_ring_layout_is_listed():
    structs = {name for name, obj in vars(protocol).items()
               if inspect.isclass(obj) and issubclass(obj, data.Struct) and obj is not data.Struct}
    assert structs - NOT_IN_HOST_MEMORY == {lay.__name__ for lay in RING_LAYOUTS}


@pytest.mark.parametrize("layout", RING_LAYOUTS, ids=lambda lay: lay.__name__)
def test_size_as_documented(layout):
    size = data.Layout.cast(layout).size
    assert size == 8 * RING_LAYOUTS[layout]
    documented = re.search(r"(\d+)[- ]byte", layout.__doc__)
    assert documented, f"{layout.__name__}'s docstring does not state its size"
    assert int(documented.group(1)) == RING_LAYOUTS[layout]
    assert len(pack_image(layout)) == RING_LAYOUTS[layout]


@pytest.mark.parametrize("layout", PHASED, ids=lambda lay: lay.__name__)
def test_phase_is_the_last_bit(layout):
    lay = data.Layout.cast(layout)
    assert lay["phase"].offset == lay.size - 1 and lay["phase"].width == 1
    image = pack_image(layout, phase=1)
    assert image[-1] == 0x80 and not any(image[:-1])
    assert unpack_image(layout, image)["phase"] == 1


@pytest.mark.parametrize("layout", RING_LAYOUTS, ids=lambda lay: lay.__name__)
def test_fields_are_packed_little_endian(layout):
    # Fill every field with its all-ones value one at a time: the field's bits, and only
    # those, appear at bit offset `offset` of the little-endian image.
    for name, field in data.Layout.cast(layout):
        if name.startswith("reserved"):
            continue
        try:
            image = pack_image(layout, **{name: (1 << field.width) - 1})
        except ValueError:          # an enum that has no all-ones member
            continue
        value = int.from_bytes(image, "little")
        assert value == ((1 << field.width) - 1) << field.offset, name
        assert unpack_image(layout, image)[name] == (1 << field.width) - 1


def test_addresses_are_64_bit():
    for layout in (RxDescriptor, TxWorkItem, TxGatherEntry):
        assert data.Layout.cast(layout)["addr"].width == 64


@pytest.mark.parametrize("layout", RING_LAYOUTS, ids=lambda lay: lay.__name__)
def test_ring_codec_agrees_with_pack_and_unpack(layout):
    # The rings encode and decode their entries from precomputed field positions; they must
    # produce exactly the images of protocol.pack() and read them as unpack_image() does.
    codec = EntryCodec(layout)
    rng = random.Random(0xC0DEC)
    for _ in range(50):
        fields = {}
        for name, field in data.Layout.cast(layout):
            members = getattr(field.shape, "__members__", None)
            fields[name] = (int(rng.choice(list(members.values()))) if members
                            else rng.getrandbits(field.width))
        image = pack_image(layout, **fields)
        assert codec.encode(**fields) == image
        assert codec.decode(image) == unpack_image(layout, image) == fields
    for name, field in data.Layout.cast(layout):
        for bad in (-1, 1 << field.width):
            with pytest.raises(ValueError, match=f"{layout.__name__}.{name} is {field.width} "
                                                 f"bits wide and cannot hold {bad}"):
                codec.encode(**{name: bad})


def test_image_values_and_checks():
    """A host-memory image is protocol.pack's value, little-endian; bad values are refused."""
    image = pack_image(RxCompletion, length=60, hash=0x12345678, hash_type=HashType.IPV4_TCP,
                       flags=0b100101, phase=1)
    assert len(image) == 16 and image[:6] == bytes([60, 0, 0x78, 0x56, 0x34, 0x12])
    assert image[-1] == 0x80
    fields = unpack_image(RxCompletion, image)
    assert (fields["length"], fields["hash"], fields["hash_type"], fields["flags"]) == (
        60, 0x12345678, HashType.IPV4_TCP, 0b100101)
    with pytest.raises(ValueError, match="RxCompletion.length is 16 bits wide and cannot "
                                         "hold 65536"):
        pack_image(RxCompletion, length=65536)
    with pytest.raises(ValueError, match="RxCompletion.phase is 1 bits wide and cannot hold -1"):
        pack_image(RxCompletion, phase=-1)
    with pytest.raises(ValueError, match="RxCompletion has no field 'len'"):
        pack_image(RxCompletion, len=1)
    with pytest.raises(AssertionError, match="image is 16 bytes, not 32"):
        unpack_image(RxCompletion, bytes(32))
