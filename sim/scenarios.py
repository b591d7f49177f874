"""Driver scenarios: plain functions of a :class:`~hetnic.host.nic.Nic`, run unchanged on every
backend (the compiled harness in-process, cocotb through :mod:`hetnic.sim.driver_tb`).

Each takes the NIC and JSON-able arguments and returns a JSON-able result, so the tests can
run one scenario on two backends and compare, and ``hetnic bench hil`` can time the same
workload on both.
"""

from __future__ import annotations

import time

from ..host.nic import Nic
from ..params import CORE_CLOCK_HZ
from ..rules import Action, FlowRule

__all__ = ["SCENARIOS", "rx_stream", "rx_under_tx", "api_tour", "stack_echo",
           "packet_record"]


def packet_record(p) -> dict:
    """The parts of an :class:`~hetnic.host.rx_ring.RxPacket` two backends must agree on."""
    return {"data": p.data.hex(), "hash": p.hash, "hash_type": int(p.hash_type),
            "queue": p.queue, "instance": p.instance, "rule": p.rule,
            "generation": p.generation, "flags": p.flags}


def rx_stream(nic: Nic, frames: list[str], chunk: int = 1024, max_cycles: int = 5_000_000,
              keep: bool = True) -> dict:
    """Send ``frames`` (hex) on the wire and poll every RX queue until all arrived (or the
    NIC counted them dropped); wire -> host memory -> ``poll``, timed."""
    data = [bytes.fromhex(f) for f in frames]
    start_cycle, t0 = nic.now(), time.perf_counter()
    nic.wire.send(data)
    received, n = {q.index: [] for q in nic.rx_queues}, 0
    while n < len(data) and nic.now() - start_cycle < max_cycles:
        nic.run(chunk)
        for q in nic.rx_queues:
            got = q.poll(256)
            n += len(got)
            if keep:
                received[q.index] += [packet_record(p) for p in got]
        if n < len(data) and nic.wire.pending() == 0:
            c = nic.counters()
            if n + c["frames_dropped"] + sum(v for k, v in c.items()
                                             if k.startswith(("rxq_no_buffer", "rxq_too_long"))) >= len(data):
                break
    seconds = time.perf_counter() - t0
    return {"packets": n, "seconds": seconds, "cycles": nic.now() - start_cycle,
            "received": {str(q): v for q, v in received.items()}}


def rx_under_tx(nic: Nic, frames_per_item: int, rx_frames: int = 200, chunk: int = 64,
                max_cycles: int = 2_000_000) -> dict:
    """Receive under a saturating transmit load: TX queue 0 is kept full of BATCH work items
    of ``frames_per_item`` 64-byte messages (0: TX idle) while ``rx_frames`` 64-byte TCP
    frames go onto the wire at once; the clock runs in chunks of ``chunk`` cycles, software
    polls every RX queue and tops the TX ring up after each. Returns the cycles from the
    frames' sending to the last one polled per received frame (``rx_cycles_per_frame``;
    Ethernet line rate is 11 at 64 bits with the harness's 24 bytes of wire overhead) and
    the frames that left ``tx_mac`` per cycle over the same span."""
    from .traffic import tcp4_min_frames

    tx = nic.tx_queues[0]
    messages = [bytes([i % 251]) * 64 for i in range(frames_per_item)]
    item_slots = 1 + -(-frames_per_item // 8)       # the header and the TxLengths slots

    def top_up() -> None:
        tx.reap()
        while frames_per_item and tx.ring.free_slots >= item_slots:
            tx.send_batch(messages)

    top_up()
    nic.run(4 * chunk)                  # the TX path reaches its steady state
    nic.wire.received()
    frames = tcp4_min_frames(rx_frames, size=64)
    start, received, sent = nic.now(), 0, 0
    nic.wire.send(frames)
    while received < rx_frames and nic.now() - start < max_cycles:
        top_up()
        nic.run(chunk)
        sent += len(nic.wire.received())
        for q in nic.rx_queues:
            received += len(q.poll(256))
    cycles = nic.now() - start
    return {"frames_per_item": frames_per_item, "rx_frames": received,
            "rx_cycles_per_frame": round(cycles / max(received, 1), 2),
            "tx_frames_per_cycle": round(sent / cycles, 4), "cycles": cycles}


def api_tour(nic: Nic, frames: list[str], tx_messages: list[str]) -> dict:
    """Every public driver method once: key, table, rules, commit, wire, poll, TX single and
    batch, wire.received, counters, events."""
    out: dict = {}
    key = bytes(range(1, 41))
    nic.rss.set_key(key)
    nic.rss.set_table([1, 2])
    rule = nic.rules.add(FlowRule(name="udp53", ip_proto="udp", dst_port=53,
                                  action=Action(instance=3, reta_offset=0, reta_size=1)))
    drop = nic.rules.add(FlowRule(name="drop-udp-9", ip_proto="udp", dst_port=9,
                                  action=Action(drop=True)))
    out["rule_ids"] = [rule, drop]
    out["generation"] = nic.commit()
    nic.rx_queues[1].arm(0)            # queue 1 is in the table set above
    sent = nic.wire.send(bytes.fromhex(f) for f in frames)
    nic.run_until_idle()
    out["sent"] = sent
    out["rx"] = {str(q.index): [packet_record(p) for p in q.poll(1024)] for q in nic.rx_queues}
    nic.rules.remove(drop)
    out["generation_after_remove"] = nic.commit()
    msgs = [bytes.fromhex(m) for m in tx_messages]
    cookies = [nic.tx_queues[0].send(msgs[0]), nic.tx_queues[1].send_batch(msgs)]
    nic.run_until_idle()
    out["tx_cookies"] = cookies
    out["tx_done"] = {str(q.index): [[d.cookie, int(d.status), d.messages, d.bytes]
                                     for d in q.completions()] for q in nic.tx_queues[:2]}
    out["wire_received"] = [f.hex() for f in nic.wire.received()]
    out["counters"] = {k: v for k, v in nic.counters().items() if v}
    out["events"] = [[int(e.type), e.source, e.info] for e in nic.events()]
    return out


#: Seconds per cycle of the NIC core's clock, the stacks' clock in :func:`stack_echo`.
_SECONDS_PER_CYCLE = 1 / CORE_CLOCK_HZ


def stack_echo(nic: Nic, payload: str, max_cycles: int = 20_000_000) -> dict:
    """A user-mode stack on the NIC's queues serves TCP echo to a peer stack on its wire.

    The server (``low-delay`` profile, 198.18.0.2) runs on every RX queue and TX queue 0
    through a :class:`~hetnic.host.links.NicQueueLink`; the peer (198.18.0.1) takes the
    frames leaving ``tx_mac`` and puts its own on the wire. Both run on the NIC's simulated
    clock. The peer connects, sends ``payload`` (hex), reads the echo back and closes; the
    result is what came back, the final states and the counters that must agree."""
    from ..host.links import NicQueueLink
    from ..host.stack.instance import PROFILES
    from ..host.stack.stack import Stack

    data = bytes.fromhex(payload)
    cfg = PROFILES["low-delay"]
    server = Stack(cfg, mac="02:00:5e:00:00:02", ipv4=["198.18.0.2/24"], seed=1)
    peer = Stack(cfg, mac="02:00:5e:00:00:01", ipv4=["198.18.0.1/24"], seed=2)
    link = NicQueueLink(nic, range(len(nic.rx_queues)), 0)
    listener = server.listen(7)
    start = nic.now()
    client = peer.connect("198.18.0.2", 7,
                          now=(nic.now() - start) * _SECONDS_PER_CYCLE)
    conn, echoed, sent, closing = None, bytearray(), 0, False   # closing: the client's

    def finished() -> bool:       # our FIN and theirs both acknowledged
        return (client.state == "TIME-WAIT" and conn is not None
                and conn.state == "CLOSED") or client.error is not None

    while not (finished() or nic.now() - start > max_cycles):
        now = (nic.now() - start) * _SECONDS_PER_CYCLE
        for frame in link.receive(64):
            server.receive(frame, now)
        conn = conn or listener.accept()
        if conn is not None and not conn.closed:
            while (piece := conn.recv()):
                conn.send(piece)
            if piece == b"":                    # the peer's FIN: echo done, close ours
                conn.close()
        link.send(server.poll(now))
        link.service()
        for frame in nic.wire.received():
            peer.receive(frame, now)
        if client.connected and sent < len(data):
            sent += client.send(data[sent:])
        while not closing and (piece := client.recv()):
            echoed += piece
        if len(echoed) == len(data) and not closing:
            client.close()
            closing = True
        frames = peer.poll(now)
        if frames:
            nic.wire.send(frames)
        nic.run(256)
    return {"echoed": bytes(echoed).hex(), "client": client.state, "error": client.error,
            "server": None if conn is None else conn.state,
            "server_segments_in": server.counters.tcp_in,
            "drops": {**server.counters.drops, **peer.counters.drops}}


SCENARIOS = {"rx_stream": rx_stream, "api_tour": api_tour, "stack_echo": stack_echo}
