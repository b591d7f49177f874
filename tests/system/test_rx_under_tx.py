"""Receiving under a saturating transmit load on the compiled harness: the NIC core's DMA
engine serves the RX descriptor reads between the bursts of a TX work item's frame reads,
so RX keeps within a small factor of its TX-idle rate whatever the TX work-item size
(:func:`hetnic.sim.scenarios.rx_under_tx`; ``hetnic bench hil`` reports the same figures)."""

import pytest

from hetnic.host.nic import Nic
from hetnic.sim.scenarios import rx_under_tx


def _run(frames_per_item):
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        r = rx_under_tx(nic, frames_per_item)
    assert r["rx_frames"] == 200
    return r


def _check(frames_per_item, idle):
    r = _run(frames_per_item)
    assert r["rx_cycles_per_frame"] <= 3 * idle["rx_cycles_per_frame"], r
    assert r["tx_frames_per_cycle"] >= 0.05, r      # TX kept sending meanwhile


@pytest.mark.timeout(300)
def test_rx_under_64_frame_tx_items():
    idle = _run(0)
    assert idle["rx_cycles_per_frame"] < 12         # Ethernet line rate: 11
    _check(64, idle)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("frames_per_item", [1, 4, 16])
def test_rx_under_tx_items(frames_per_item):
    _check(frames_per_item, _run(0))
