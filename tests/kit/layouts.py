"""Layout values for tests: :func:`hetnic.protocol.pack`/:func:`~hetnic.protocol.unpack`
(one implementation for host, tests and docs) and the host-memory images of ring entries."""

from amaranth.lib import data

from hetnic.protocol import pack, unpack

__all__ = ["pack", "unpack", "pack_image", "unpack_image"]


def pack_image(layout, **fields: int) -> bytes:
    """The little-endian host-memory image of ``layout`` with ``fields`` set (others 0): bit 0
    of the layout is bit 0 of the first byte. Values are checked as :func:`pack` does."""
    return pack(layout, **fields).to_bytes(data.Layout.cast(layout).size // 8, "little")


def unpack_image(layout, image: bytes) -> dict[str, int]:
    """The top-level fields of a little-endian host-memory image of ``layout``."""
    nbytes = data.Layout.cast(layout).size // 8
    assert len(image) == nbytes, f"a {layout!r} image is {nbytes} bytes, not {len(image)}"
    return unpack(layout, int.from_bytes(image, "little"))
