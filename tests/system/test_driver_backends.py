"""The same driver code on two backends: the compiled harness and cocotb (cocotbext-axi).

:func:`hetnic.sim.scenarios.api_tour` calls every public driver method once; run unchanged in
this process over ``Nic.open("sim")`` and inside a cocotb test over ``Nic.open("cocotb")``,
it must see exactly the same packets, completions, frames, counters and events, and those
must be what the software model predicts. :func:`hetnic.sim.scenarios.stack_echo` does the
same for the user-mode stack on the NIC's queues.
"""

from hetnic.config import RxConfig
from hetnic.host.nic import Nic
from hetnic.params import HIL_NIC_CORE
from hetnic.rules import Action, FlowRule
from hetnic.protocol import EventType, TxStatus
from hetnic.sim.model.rx_pipeline import RxModel
from hetnic.sim.nic_sim import run_driver_job
from hetnic.sim.scenarios import api_tour, rx_stream, stack_echo
from hetnic.sim.traffic import tcp4_min_frames, traffic_mix

#: What Nic.open("sim", width=64, rx_queues=8) simulates.
BUILD = HIL_NIC_CORE.replace(data_width=64, rx_queues=8)


def _tour_args():
    frames = [f if isinstance(f, bytes) else f[0] for f in traffic_mix(120, seed=3)]
    messages = [bytes([i]) * (60 + 13 * i) for i in range(5)]
    return {"frames": [f.hex() for f in frames], "tx_messages": [m.hex() for m in messages]}


def test_api_tour_same_on_harness_and_cocotb():
    args = _tour_args()
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        on_sim = api_tour(nic, **args)
        config = RxConfig(queues=8)
    on_cocotb = run_driver_job(BUILD, "api_tour", args)
    assert on_sim == on_cocotb

    # ... and it is what the model says: every received frame, per queue, in order.
    config = RxConfig(key=bytes(range(1, 41)), queues=8, reta=[1, 2] * 256, rules=[
        FlowRule(name="udp53", ip_proto="udp", dst_port=53, action=Action(instance=3, reta_offset=0,
                                                          reta_size=1)),
        FlowRule(name="drop-udp-9", ip_proto="udp", dst_port=9, action=Action(drop=True))])
    model = RxModel(BUILD.regmap(), config, generation=on_sim["generation"])
    want = {str(q): [] for q in range(8)}
    for hex_frame in args["frames"]:
        frame = bytes.fromhex(hex_frame)
        rec = model.process(frame)
        if rec["drop"] == 0:
            want[str(rec["queue"])].append(
                {"data": hex_frame, "hash": rec["hash"], "hash_type": rec["hash_type"],
                 "queue": rec["queue"], "instance": rec["instance"], "rule": rec["rule"],
                 "generation": rec["generation"], "flags": rec["flags"]})
    assert on_sim["rx"] == want
    assert sum(len(v) for v in want.values()) > 50
    # TX: one SINGLE and one BATCH work item, completed OK, frames on the wire in order.
    msgs = args["tx_messages"]
    assert on_sim["wire_received"] == [msgs[0]] + msgs
    assert [d[1] for q in on_sim["tx_done"].values() for d in q] == [TxStatus.OK] * 2
    kinds = [EventType(e[0]) for e in on_sim["events"]]
    assert EventType.COMMIT_DONE in kinds and EventType.RX_COMPLETION in kinds


def test_rx_stream_cocotb_delivers_every_frame():
    frames = [f.hex() for f in tcp4_min_frames(64)]
    result = run_driver_job(BUILD, "rx_stream", {"frames": frames})
    assert result["packets"] == 64
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        on_sim = rx_stream(nic, frames)
    assert on_sim["received"] == result["received"]


def test_stack_echo_on_harness_and_cocotb():
    """The user-mode stack on the NIC's queues, the same code on both backends: a peer stack
    on the wire connects, sends 4 KiB, reads the echo back and closes, on the NIC's clock."""
    payload = bytes(range(256)) * 16
    args = {"payload": payload.hex()}
    with Nic.open("sim", width=64, rx_queues=8) as nic:
        on_sim = stack_echo(nic, **args)
    on_cocotb = run_driver_job(BUILD, "stack_echo", args)
    for result in (on_sim, on_cocotb):
        assert bytes.fromhex(result["echoed"]) == payload
        assert (result["client"], result["server"], result["error"]) == \
            ("TIME-WAIT", "CLOSED", None)
        assert result["drops"] == {}
    assert on_sim == on_cocotb
