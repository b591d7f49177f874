"""NCP between two simulated NICs wired back to back (no kernel, no root): the direct
EtherType steered to an RX queue by a classifier rule on each NIC, both endpoints and the
wire run by one NcpStation thread (the NICs' clocks stay on one thread)."""

from __future__ import annotations

import os

import pytest

from hetnic.host import ncp_io
from hetnic.host.faults import parse_faults
from hetnic.host.links import NicQueueLink
from hetnic.host.ncp import State
from hetnic.host.nic import Nic

pytestmark = pytest.mark.timeout(120)

#: Drops a retransmission timed out too early can cause without any fault on the wire.
SPURIOUS = ("duplicate", "out_of_window")

A = b"\x02\x00\x00\x00\x01\x0a"
B = b"\x02\x00\x00\x00\x01\x0b"


def _run(size: int, faults: str | None) -> None:
    plan = parse_faults(faults) if faults else None
    with Nic.open("sim", width=64, rx_queues=4) as na, \
            Nic.open("sim", width=64, rx_queues=4) as nb:
        ncp_io.steer_direct(na, 3)
        ncp_io.steer_direct(nb, 2)
        wire = ncp_io.NicPairWire(na, nb, faults_ab=plan and plan.injector("out"),
                                  faults_ba=plan and plan.injector("in"))
        # tx_backlog: a full TX ring never stalls the station that runs both clocks.
        station = ncp_io.NcpStation(NicQueueLink(na, [3], 0, tx_backlog=1024), A,
                                    pumps=[wire.pump])
        try:
            station.add(NicQueueLink(nb, [2], 1, tx_backlog=1024), B)
            ca = station.open(B, 5, mac=A)
            cb = station.open(A, 5, mac=B)
            ca.wait_established(10)
            cb.wait_established(10)
            data = os.urandom(size)
            ca.send(data)
            got = bytearray()
            while len(got) < len(data):
                got += cb.recv(timeout=20)
            assert got == data
            reply = os.urandom(3000)                # and the other way
            cb.send(reply)
            back = bytearray()
            while len(back) < len(reply):
                back += ca.recv(timeout=20)
            assert back == reply
            ca.close(10)
            assert cb.recv(timeout=10) == b"" and cb.state == State.CLOSED
            # No frame was malformed or lost its session (a duplicate can come of a
            # retransmission the machine's load made early).
            for _, ep in station.ports:
                bad = {k: v for k, v in ep.drops.items() if v and k not in SPURIOUS}
                assert not bad, bad
            # The frames came through the rule's queue only.
            assert na.rx_queues[0].poll(64) == [] and nb.rx_queues[0].poll(64) == []
        finally:
            station.close()


def test_ncp_back_to_back_sim_nics():
    _run(300_000, None)


@pytest.mark.slow
def test_ncp_back_to_back_sim_nics_under_faults():
    _run(1_000_000, "loss=5%,reorder=5%,dup=5%,seed=11")
