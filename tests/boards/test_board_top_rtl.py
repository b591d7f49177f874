# amaranth: UnusedElaboratable=no
"""The whole two-port board core on Verilator under cocotb, driven by the real board driver.

:class:`~hetnic.boards.sim_top.BoardSimTop` (MACs, RGMII adapters with behavioural DDR
buffers, clock-domain crossings, RX pipeline, tag inserter, store-and-forward FIFO, UART
bridge) is converted with :func:`hetnic.rtl.to_verilog`, built once (cached) and run by
:mod:`hetnic.sim.board_tb`. The host is the unmodified board backend,
``Nic.open("serial:<pty>", data=<in-process port>)`` with pyserial on a pseudo-terminal whose
other side the testbench turns into UART bits; cocotbext-eth's ``RgmiiSource`` and
``RgmiiSink`` are the network on port 0 and the host's link on port 1.

One simulation (about 12 ms of simulated time), then the checks:

- the serial line: garbage and half a request before the first valid one, and a request with
  a bad CRC, leave the bridge answering, each counted once in the bridge's counters;
- the driver opens the board (identity, sizes from PARAMS), programs a non-default key, a
  RETA and two rules, commits; every frame the network sends comes to the host tagged, in
  the queue, with the hash, instance, rule and generation the software model
  (:class:`~hetnic.sim.model.rx_pipeline.RxModel`) gives, and the frame itself unchanged;
  dropped frames (a rule, a bad FCS) are not forwarded;
- the counters the driver reads over the bridge are the model's, and the MACs' counters
  (``MAC_*``: a bad FCS, a runt and an oversize frame from the network) are what was sent;
- frames the host sends leave port 0 untouched.

The UART runs at 16 clock cycles a bit (the host side of a pseudo-terminal ignores the baud
rate). The testbench gives up after a budget of simulated time; pytest-timeout bounds the
wall time.
"""

import random

import pytest

from frames import tcp4, udp4, udp6

from hetnic.boards.sim_top import BoardSimTop
from hetnic.bridge_protocol import GAP_TIMEOUT_BITS, REQUEST_SYNC, Status
from hetnic.config import RxConfig
from hetnic.protocol import DropReason
from hetnic.params import CORE_CLOCK_PERIOD_NS, ECP5_BOARD_CORE, NicParams
from hetnic.regs import ID_MAGIC
from hetnic.rtl import to_verilog
from hetnic.sim.board_tb import rule_from_spec
from hetnic.sim.model.rx_pipeline import RxModel
from hetnic.sim.rx_sim import build_cocotb, run_cocotb
from hetnic.sim.traffic import traffic_mix

pytestmark = pytest.mark.timeout(900)       # a cold Verilator build included

TOPLEVEL = "hetnic_board_core"
SEED = 0x5EED_B0A2
BIT_CYCLES = 16
CLOCK_NS = CORE_CLOCK_PERIOD_NS
MAX_FRAME = 1522
PREAMBLE = bytes([0x55] * 7 + [0xD5])

KEY = bytes(range(0x31, 0x31 + 40))
TABLE = [5, 9, 2, 14, 0, 7, 11, 3]
RULES = [
    {"name": "dns", "ip_proto": "udp", "dst_port": 53,
     "action": {"instance": 3, "reta_offset": 32, "reta_size": 4}},
    {"name": "drop-discard", "ip_proto": "udp", "dst_port": 9, "action": {"drop": True}},
]


RUNT = udp4(dport=7, pad_to=0)                     # 42 bytes: 46 with its FCS
OVERSIZE = tcp4(dport=80, payload=bytes(1600))     # cut by the MAC after MAX_FRAME bytes


def network_traffic(rng):
    """``(frame, bad_fcs)``: frames every rule sees, a bad FCS, a runt, an oversize frame,
    and a seeded mix (at most ``MAX_FRAME``, shorter than 60 bytes padded, as a sender's MAC
    does)."""
    frames = [(udp4(dport=53, sport=1000 + k), False) for k in range(4)]
    frames += [(udp6(dport=53), False), (udp4(dport=9), False), (tcp4(dport=80), True),
               (RUNT, False), (OVERSIZE, False)]
    for frame, error in traffic_mix(40, seed=rng.randrange(1 << 30)):
        if len(frame) <= MAX_FRAME:
            frames.append((frame + bytes(max(0, 60 - len(frame))), error))
    rng.shuffle(frames)
    return frames


def seen_by_pipeline(frame, bad_fcs):
    """What the receive MAC passes on: ``(bytes, error)`` (an oversize frame is cut)."""
    return frame[:MAX_FRAME], bad_fcs or not 60 <= len(frame) <= MAX_FRAME


@pytest.fixture(scope="module")
def run():
    rng = random.Random(SEED)
    print(f"seed={SEED:#x}")
    network = network_traffic(rng)
    host_tx = [bytes.fromhex("02aabbccddee02112233445588b6") + rng.randbytes(n)
               for n in (10, 46, 300)]                     # the first is padded to 60
    garbage = bytes(b for b in rng.randbytes(16) if b != REQUEST_SYNC)[:9]
    config = RxConfig(key=KEY, queues=ECP5_BOARD_CORE.queues,
                      reta=TABLE * (ECP5_BOARD_CORE.reta_size // len(TABLE)),
                      rules=[rule_from_spec(spec) for spec in RULES])
    regmap = ECP5_BOARD_CORE.replace(mac_ports=2).regmap()
    model = RxModel(regmap, config, generation=2)          # open commits 1, the test 2
    expected = [model.process(*seen_by_pipeline(frame, bad)) for frame, bad in network]
    job = {
        "bit_ns": BIT_CYCLES * CLOCK_NS, "gap_ns": GAP_TIMEOUT_BITS * BIT_CYCLES * CLOCK_NS,
        "key": KEY.hex(), "table": TABLE, "rules": RULES,
        "network": [(frame.hex(), bad) for frame, bad in network],
        "host_tx": [f.hex() for f in host_tx], "garbage": garbage.hex(),
        "budget_ns": 60_000_000, "host_timeout": 5.0,
    }
    top = BoardSimTop(2, bit_cycles=BIT_CYCLES)
    build_dir = build_cocotb(to_verilog(top, TOPLEVEL), TOPLEVEL)
    result = run_cocotb(build_dir, TOPLEVEL, "hetnic.sim.board_tb", job)
    host = result["host"]
    print(f"simulated {result['sim_us']:.0f} us in {result['wall_s']:.1f} s; host stages "
          f"(us): {host.get('stages')}")
    assert "error" not in host, host["error"]
    assert not result["budget_hit"], "the testbench ran out of simulated time"
    return network, expected, host_tx, garbage, regmap, result


def test_bridge_recovers_from_bad_input(run):
    _, _, _, garbage, _, result = run
    bad = result["host"]["bad_input"]
    assert bad["magic"] == ID_MAGIC and bad["retries"] == 0
    assert bad["bad_crc_answer"] == [Status.BAD_CHECKSUM, 0x42]
    assert bad["bridge_counters"] == {
        "requests": 1, "bad_checksum": 1, "refused": 0, "bus_timeouts": 0,
        "framing_errors": 0, "abandoned": 1, "junk_bytes": len(garbage), "overruns": 0}
    assert result["uart"]["framing_errors"] == 0


def test_driver_opens_the_board_from_its_params(run):
    host = run[-1]["host"]
    assert NicParams(**host["params"]) == NicParams(
        data_width=8, hash_bytes_per_cycle=1, n_rules=4, reta_size=128, queues=16, mac_ports=2,
        flow_table=False)                   # the boards build without the flow table
    assert host["open_generation"] == 1 and host["generation"] == 2
    assert host["slots"] == [0, 1]
    # Every request of the session was answered the first time.
    link = host["link"]
    assert link["retries"] == link["corrupt"] == link["rejected"] == link["junk"] == 0
    assert link["requests"] > 700


def test_tagged_frames_match_the_model(run):
    network, expected, _, _, _, result = run
    want = {}
    for (frame, _), e in zip(network, expected):
        if e["drop"] == DropReason.NONE:
            want.setdefault(str(e["queue"]), []).append(
                {"data": frame.hex(), "hash": e["hash"], "hash_type": e["hash_type"],
                 "instance": e["instance"], "rule": e["rule"], "generation": 2})
    got = result["host"]["rx"]
    assert got == want
    assert {e["rule"] for e in expected} == {0, 1, 4}            # both rules and default
    assert any(e["drop"] == DropReason.MAC_ERROR for e in expected)
    assert len(want) >= 5                                         # spread over queues
    # On the wire: good FCS, full preamble, no error; nothing without a tag was sent.
    stats = result["host"]["data_stats"]
    assert stats["bad_tag"] == 0 and stats["delivered"] == sum(map(len, want.values()))
    assert all(f["fcs_ok"] and not f["error"] and bytes.fromhex(f["preamble"]) == PREAMBLE
               for f in result["to_host"])
    assert len(result["to_host"]) == stats["delivered"]


def model_counters(network, expected, regmap, host_tx):
    """Every counter the driver reads, by its label, as the model's records say it reads,
    and the MACs' counters as the frames sent say."""
    delivered = [e for e in expected if e["drop"] == DropReason.NONE]
    want = {"frames_in": len(network),
            "bytes_in": sum(len(seen_by_pipeline(f, bad)[0]) for f, bad in network),
            "frames_delivered": len(delivered),
            "frames_dropped": len(network) - len(delivered)}
    # DROP_COUNT has an entry for NONE too; a delivered frame does not count in it.
    want.update({f"drop[{d.name.lower()}]": sum(e["drop"] == d for e in expected)
                 if d != DropReason.NONE else 0 for d in DropReason})
    n_rules = regmap.params["n_rules"]
    want.update({"rule_hits[default]" if r == n_rules else f"rule_hits[{r}]":
                 sum(e["rule"] == r for e in expected) for r in range(n_rules + 1)})
    for q in range(regmap.params["queues"]):
        mine = [e for e in delivered if e["queue"] == q]
        want[f"queue_packets[{q}]"] = len(mine)
        want[f"queue_bytes[{q}]"] = sum(e["length"] for e in mine)
    want.update({f"bucket_packets[{b}]": sum(e["bucket"] == b for e in expected)
                 for b in range(regmap.params["reta_size"])})
    # Port 0 receives the network and sends what the host sent; port 1 receives the host's
    # frames and sends the tagged ones. Nothing overflows, underruns or carries an error out.
    mac = {"rx_frames_ok": [sum(not bad and 60 <= len(f) <= MAX_FRAME for f, bad in network),
                            len(host_tx)],
           "rx_fcs_error": [sum(bad for _, bad in network), 0],
           "rx_runt": [sum(len(f) < 60 for f, _ in network), 0],
           "rx_oversize": [sum(len(f) > MAX_FRAME for f, _ in network), 0],
           "tx_frames": [len(host_tx), len(delivered)]}
    for name in ("rx_frames_ok", "rx_fcs_error", "rx_runt", "rx_oversize", "rx_phy_error",
                 "rx_overflow", "tx_frames", "tx_error", "tx_underrun"):
        for port in range(2):
            want[f"mac_{name}[{port}]"] = mac.get(name, [0, 0])[port]
    return want


def test_counters_over_the_bridge_match_the_model(run):
    network, expected, host_tx, _, regmap, result = run
    got = result["host"]["counters"]
    want = model_counters(network, expected, regmap, host_tx)
    assert set(got) == set(want)                    # every counter the board has
    assert got == want
    assert got["mac_rx_runt[0]"] == got["mac_rx_oversize[0]"] == 1
    assert got["drop[mac_error]"] == sum(got[f"mac_rx_{n}[0]"] for n in
                                         ("fcs_error", "runt", "oversize"))


def test_host_frames_leave_port_0_untouched(run):
    _, _, host_tx, _, _, result = run
    out = result["to_network"]
    assert [bytes.fromhex(f["payload"]) for f in out] == \
        [f + bytes(max(0, 60 - len(f))) for f in host_tx]
    assert all(f["fcs_ok"] and not f["error"] for f in out)


def test_board_core_checks_its_parameters():
    with pytest.raises(ValueError, match="ports must be 1 or 2, not 3"):
        BoardSimTop(3)
    with pytest.raises(ValueError, match="core_params needs data_width=8, not 64"):
        BoardSimTop(2, core_params=ECP5_BOARD_CORE.replace(data_width=64))
    with pytest.raises(ValueError, match="bit_cycles must be an integer of at least 8"):
        BoardSimTop(2, bit_cycles=4)
    with pytest.raises(ValueError, match="reta_size must be a power of two"):
        ECP5_BOARD_CORE.replace(reta_size=100)


def test_one_port_core_has_one_port():
    """The one-port core converts: port 0's pins, the UART, no port 1 (simulated only
    through the two-port test; the one-port data path is port 0 -> pipeline -> port 0)."""
    verilog = to_verilog(BoardSimTop(1), "hetnic_board_core_1p")
    header = verilog[verilog.index("module hetnic_board_core_1p("):].split(";", 1)[0]
    assert "rgmii0_rxd" in header and "rgmii0_txd" in header and "uart_tx" in header
    assert "rgmii1" not in header
