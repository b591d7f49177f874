"""Shared memory segments (:mod:`hetnic.host.shm`) and the doorbell page's layout
(:mod:`hetnic.host.doorbells`): create, attach (in this process and a spawned one), read,
write, close, unlink, bad input; nothing is left in /dev/shm."""

import multiprocessing
import os
import pickle

import pytest

from hetnic.errors import HetnicError
from hetnic.host.doorbells import PAGE_BYTES, DoorbellLayout, DoorbellPage
from hetnic.host.memory import HostMemory
from hetnic.host.shm import SHM_DIR, SharedSegment, SharedSegmentError
from hetnic.params import NicParams

PREFIX = "hetnic-test-shm"


def leftovers() -> list[str]:
    return [n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)]


@pytest.fixture(autouse=True)
def nothing_left():
    before = set(leftovers())
    yield
    assert set(leftovers()) <= before, "a test left a segment in /dev/shm"


def test_create_attach_read_write_close():
    with SharedSegment.create(10_000, prefix=PREFIX) as seg:
        assert isinstance(seg, HostMemory)
        assert seg.owner and seg.size == 10_000 and len(seg.buf) == 10_000
        assert os.stat(seg.path).st_mode & 0o777 == 0o600
        assert seg.read(0, 10_000) == bytes(10_000)         # zeroed
        seg.write(9_990, b"0123456789")
        other = SharedSegment.attach(seg.name)
        assert not other.owner and other.size == 10_000
        assert other.read(9_990, 10) == b"0123456789"
        other.buf[0:3] = b"abc"                             # the views share the pages
        assert seg.read(0, 3) == b"abc"
        other.close()
        other.close()                                       # twice: nothing
        assert os.path.exists(seg.path)                     # an attacher does not unlink
    assert seg.closed and not os.path.exists(seg.path)


def test_views_outlive_close_without_error():
    seg = SharedSegment.create(4096, prefix=PREFIX)
    view = seg.buf[16:32]
    seg.close()
    view[0] = 7                                             # still mapped until released
    view.release()
    assert not os.path.exists(seg.path)


def test_unlink_keeps_the_mapping():
    seg = SharedSegment.create(4096, prefix=PREFIX)
    try:
        seg.unlink()
        assert not os.path.exists(seg.path)
        seg.write(0, b"x")
        assert seg.read(0, 1) == b"x"
        seg.unlink()                                        # twice: nothing
    finally:
        seg.close()


def _child_writes(name: str, parent: int) -> None:
    seg = SharedSegment.attach(name)
    try:
        seg.write(100, b"from the child " + str(parent).encode())
    finally:
        seg.close()


@pytest.mark.timeout(60)
def test_a_spawned_process_attaches_by_name():
    ctx = multiprocessing.get_context("spawn")
    with SharedSegment.create(4096, prefix=PREFIX) as seg:
        proc = ctx.Process(target=_child_writes, args=(seg.name, os.getpid()))
        try:
            proc.start()
            proc.join(50)
            assert proc.exitcode == 0
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join()
        expected = b"from the child " + str(os.getpid()).encode()
        assert seg.read(100, len(expected)) == expected
        # the attaching process exited: the segment is still there (no resource tracker)
        assert os.path.exists(seg.path)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, 1 << 41])
def test_create_refuses_bad_sizes(size):
    with pytest.raises(SharedSegmentError, match="shared segment is 1 to"):
        SharedSegment.create(size, prefix=PREFIX)


@pytest.mark.parametrize("name", ["", "a/b", "..", "x" * 201, 5, "sp ace"])
def test_attach_refuses_bad_names(name):
    with pytest.raises(SharedSegmentError, match="shared segment name"):
        SharedSegment.attach(name)


def test_attach_missing_segment_is_one_line():
    with pytest.raises(SharedSegmentError) as info:
        SharedSegment.attach(f"{PREFIX}-missing")
    assert isinstance(info.value, HetnicError) and "\n" not in str(info.value)
    assert "no shared segment" in str(info.value)


def test_out_of_range_and_closed_access():
    seg = SharedSegment.create(64, prefix=PREFIX)
    with pytest.raises(IndexError, match="outside shared segment"):
        seg.read(60, 8)
    with pytest.raises(IndexError, match="outside shared segment"):
        seg.write(-1, b"a")
    seg.close()
    with pytest.raises(SharedSegmentError, match="closed"):
        seg.read(0, 1)


def test_segments_are_not_pickled():
    with SharedSegment.create(64, prefix=PREFIX) as seg:
        with pytest.raises(TypeError, match="attach it"):
            pickle.dumps(seg)


def test_doorbell_layout_slots_and_register_table():
    params = NicParams(rx_queues=4, tx_queues=2, event_queues=3)
    layout = DoorbellLayout(params.rx_queues, params.tx_queues, params.event_queues)
    assert [layout.slot("rx", q) for q in range(4)] == [0, 1, 2, 3]
    assert [layout.slot("tx", q) for q in range(2)] == [4, 5]
    assert [layout.slot("event", q) for q in range(3)] == [6, 7, 8]
    regmap = params.regmap()
    table = layout.register_table(regmap)
    assert table[layout.slot("rx", 3)] == regmap.addr("RXQ_PROD", 3)
    assert table[layout.slot("tx", 1)] == regmap.addr("TXQ_PROD", 1)
    assert table[layout.slot("event", 2)] == regmap.addr("EQ_CONS", 2)
    assert len(table) == layout.slots == 9
    with pytest.raises(ValueError, match="tx queue must be from 0 to 1"):
        layout.slot("tx", 2)
    with pytest.raises(ValueError, match="kind"):
        layout.slot("bogus", 0)
    with pytest.raises(ValueError, match="do not fit"):
        DoorbellLayout(1000, 64, 32)


def test_doorbell_page_ring_is_one_word_in_host_order():
    layout = DoorbellLayout(2, 1, 1)
    with DoorbellPage.create(layout, prefix=PREFIX) as page:
        other = DoorbellPage.attach(page.name, layout)
        other.ring(layout.slot("tx", 0), 0x1234)
        assert page.read(2) == 0x1234
        assert page.segment.read(8, 4) == (0x1234).to_bytes(4, "little")
        assert len(page.buf) == PAGE_BYTES
        other.close()
