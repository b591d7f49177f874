"""Host memory of the HIL harness with slow, stalled DMA write responses (B channel): the
driver's traffic still arrives whole, with no AXI error, only later."""

import pytest

from hetnic.host.nic import Nic
from hetnic.sim.traffic import traffic_mix


def traffic(nic, b_latency, b_stall):
    """RX and TX traffic with write responses ``b_latency`` cycles late and stalled with the
    chance ``b_stall`` per cycle; returns the cycles it took and what was received."""
    nic.backend.harness.set_write_responses(b_latency, b_stall, seed=7)
    start = nic.backend.harness.counters()["cycles"]
    items = traffic_mix(120, seed=5)
    nic.wire.send([f for f, _ in items], [e for _, e in items])
    tx = [bytes([i]) * (60 + 7 * i) for i in range(24)]
    nic.tx_queues[0].send_batch(tx[:12])
    for m in tx[12:]:
        nic.tx_queues[1].send(m)
    nic.run_until_idle()
    c = nic.backend.harness.counters()
    assert c["axi_errors"] == 0 and c["axi_protocol_errors"] == 0
    received = sorted(p.data for q in nic.rx_queues for p in q.poll(1024))
    assert sorted(nic.wire.received()) == sorted(tx)
    return c["cycles"] - start, received


def test_slow_and_stalled_write_responses():
    with Nic.open("sim") as nic:
        quick, want = traffic(nic, 0, 0.0)
    with Nic.open("sim") as nic:
        slow, got = traffic(nic, 24, 0.6)
    print(f"cycles: B at once {quick}, B 24 cycles late and stalled 60% {slow}")
    assert got == want and len(want) > 0
    assert slow > quick
    with Nic.open("sim") as nic, pytest.raises(ValueError, match="not 1.5"):
        nic.backend.harness.set_write_responses(0, 1.5)
