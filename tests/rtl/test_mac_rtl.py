"""The MAC's generated Verilog on Verilator under cocotb, driven on its RGMII pins.

:class:`~hetnic.gateware.rgmii.RgmiiMacTop` (both MAC cores behind the RGMII adapter, with
behavioural DDR buffers) is converted with :func:`hetnic.rtl.to_verilog` and run by
:mod:`hetnic.sim.mac_tb`: cocotbext-eth's ``RgmiiSource`` sends good frames, bad FCS, runts,
an oversize frame, ``RX_ER`` in the middle of a frame, a burst without SFD and short
preambles, back to back with the minimum gap; cocotbext-axi takes the frames out of
``m_axis``. At the same time frames (one marked bad) go into ``s_axis`` and
``RgmiiSink`` checks what comes out of the pins: preamble, padding, FCS and the gap. One
simulation, bounded in cycles by the testbench; the Verilator build is cached.
"""

import random
import struct
import zlib

import pytest

from hetnic.gateware.rgmii import RgmiiMacTop
from hetnic.rtl import to_verilog
from hetnic.sim.rx_sim import build_cocotb, run_cocotb

pytestmark = pytest.mark.timeout(600)

TOPLEVEL = "hetnic_rgmii_mac"
SEED = 0x5EED_0AC1
PREAMBLE = bytes([0x55] * 7 + [0xD5])
MAX_FRAME = 1522
IFG = 12


def fcs(frame: bytes) -> bytes:
    return struct.pack("<L", zlib.crc32(frame))


def data(n: int, rng: random.Random, tag: int) -> bytes:
    return bytes([tag]) + rng.randbytes(n - 1) if n else b""


def rx_cases(rng):
    """Receive bursts ``(wire, er, expected (data, error) or None, counter)``."""
    cases = []

    def add(wire, expected, counter, er=None):
        cases.append((wire, er, expected, counter))

    for tag, n in enumerate((60, 61, 100, MAX_FRAME, 64)):
        frame = data(n, rng, tag)
        add(PREAMBLE + frame + fcs(frame), (frame, False), "rx_frames_ok_count")
    frame = data(80, rng, 0x10)
    bad = bytearray(frame + fcs(frame))
    bad[-2] ^= 0x04
    add(PREAMBLE + bytes(bad), (frame, True), "rx_fcs_error_count")
    frame = data(40, rng, 0x11)
    add(PREAMBLE + frame + fcs(frame), (frame, True), "rx_runt_count")
    add(PREAMBLE, (b"", True), "rx_runt_count")                      # SFD and nothing else
    frame = data(MAX_FRAME + 1, rng, 0x12)
    add(PREAMBLE + frame + fcs(frame), (frame[:MAX_FRAME], True), "rx_oversize_count")
    frame = data(100, rng, 0x13)
    wire = PREAMBLE + frame + fcs(frame)
    er = [int(k == len(PREAMBLE) + 50) for k in range(len(wire))]
    add(wire, (frame, True), "rx_phy_error_count", er)
    add(bytes([0x55] * 3) + bytes([0x12]) + rng.randbytes(70), None, None)   # no SFD
    frame = data(70, rng, 0x14)
    add(b"\x55\xd5" + frame + fcs(frame), (frame, False), "rx_frames_ok_count")
    for tag in range(0x20, 0x28):                                      # back to back
        frame = data(rng.randrange(60, 200), rng, tag)
        add(PREAMBLE + frame + fcs(frame), (frame, False), "rx_frames_ok_count")
    return cases


def tx_cases(rng):
    """Frames to send ``(data, error)``: short ones are padded; one is marked bad."""
    lengths = (1, 59, 60, 61, 64, 300, 1514, 70, 100)
    return [(data(n, rng, 0x40 + k), n == 70) for k, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def run():
    rng = random.Random(SEED)
    print(f"seed={SEED:#x}")
    rx, tx = rx_cases(rng), tx_cases(rng)
    build_dir = build_cocotb(to_verilog(RgmiiMacTop(max_frame=MAX_FRAME, ifg=IFG), TOPLEVEL),
                             TOPLEVEL)
    job = {
        "rx": [{"wire": wire.hex(), "er": er} for wire, er, _, _ in rx],
        "tx": [(frame.hex(), error) for frame, error in tx],
        "rx_ifg": IFG,
        "expect_rx": sum(expected is not None for _, _, expected, _ in rx),
    }
    return rx, tx, run_cocotb(build_dir, TOPLEVEL, "hetnic.sim.mac_tb", job)


def test_rx_frames_errors_and_counters(run):
    rx, _, result = run
    got = [(bytes.fromhex(f["data"]), f["error"]) for f in result["rx"]]
    expected = [exp for _, _, exp, _ in rx if exp is not None]
    assert len(got) == len(expected)
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"frame {index}: got {len(g[0])} bytes error={g[1]}, " \
                       f"expected {len(e[0])} bytes error={e[1]}"
    counters = result["counters"]
    for name in ("rx_frames_ok_count", "rx_fcs_error_count", "rx_runt_count",
                 "rx_oversize_count", "rx_phy_error_count", "rx_overflow_count"):
        assert counters[name] == sum(c == name for _, _, _, c in rx), name


def test_tx_frames_fcs_and_gap(run):
    _, tx, result = run
    sent = result["tx"]
    assert len(sent) == len(tx)
    for index, ((frame, error), burst) in enumerate(zip(tx, sent)):
        padded = frame + bytes(max(0, 60 - len(frame)))
        check = bytes(b ^ 0xFF for b in fcs(padded)) if error else fcs(padded)
        assert bytes.fromhex(burst["wire"]) == PREAMBLE + padded + check, f"frame {index}"
        er = burst["er"] or [0] * (len(PREAMBLE) + len(padded) + 4)
        assert er == [0] * (len(PREAMBLE) + len(padded)) + [int(error)] * 4, f"frame {index}"
    # Queued back to back: exactly the minimum gap (in 8 ns cycles) between frames.
    gaps = [(b["start_ns"] - a["end_ns"]) / 8 for a, b in zip(sent, sent[1:])]
    assert gaps == [IFG] * (len(sent) - 1)
    counters = result["counters"]
    assert counters["tx_frames_count"] == len(tx)
    assert counters["tx_error_count"] == sum(error for _, error in tx)
    assert counters["tx_underrun_count"] == 0
