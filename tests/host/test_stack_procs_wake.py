"""The NIC process's wake-up of a sleeping instance: one per sleep, never blocking on a
child that stopped reading its pipe; the announce/exchange words work across processes'
shared memory."""

import multiprocessing

import pytest

from hetnic.host.native_lib import SharedWord
from hetnic.host.shm import SharedSegment
from hetnic.host.stack_procs import wake_once


@pytest.fixture
def word():
    seg = SharedSegment.create(4096, prefix="hetnic-test-wake")
    w = SharedWord(seg.buf, 64)
    try:
        yield w
    finally:
        w.release()
        seg.close()


@pytest.mark.timeout(60)
def test_one_wake_per_sleep(word):
    ours, theirs = multiprocessing.Pipe(duplex=True)
    try:
        assert wake_once(word, ours) is None            # awake: nothing sent
        word.announce(1)
        assert wake_once(word, ours) is True and word.value == 0
        for _ in range(100):                            # later turns: the word is clear
            assert wake_once(word, ours) is None
        assert theirs.recv() == ("wake",) and not theirs.poll(0.05)
    finally:
        ours.close()
        theirs.close()


@pytest.mark.timeout(60)
def test_a_child_that_stops_reading_does_not_block_the_nic_process(word):
    ours, theirs = multiprocessing.Pipe(duplex=True)
    try:
        results = []
        for _ in range(200_000):        # the child sleeps again and again, never reads
            word.store(1)
            results.append(wake_once(word, ours))
            if results[-1] is False:
                break
        assert results[-1] is False, "the pipe never filled"
        assert word.value == 0
    finally:
        ours.close()
        theirs.close()


def test_a_closed_pipe_is_not_an_error(word):
    ours, theirs = multiprocessing.Pipe(duplex=True)
    theirs.close()
    ours.close()
    word.store(1)
    assert wake_once(word, ours) is False
