"""The doorbell page's layout refuses a bool where a queue count or number belongs."""

import pytest

from hetnic.host.doorbells import DoorbellLayout


def test_bools_are_not_queue_counts_or_numbers():
    with pytest.raises(ValueError, match="non-negative integers"):
        DoorbellLayout(True, 1, 1)
    layout = DoorbellLayout(2, 2, 1)
    with pytest.raises(ValueError, match="rx queue must be"):
        layout.slot("rx", True)
    assert layout.slot("rx", 1) == 1 and layout.slot("tx", 1) == 3
