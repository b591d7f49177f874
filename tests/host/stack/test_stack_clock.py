"""The stack's clock at connect (defect: a connect before the first poll used the placeholder
time 0.0, so on a real monotonic clock the SYN's timer fired at once and the SYN went out
twice). A connect now either takes ``now`` or sends its SYN with the first poll."""

from __future__ import annotations

import pytest

from hetnic.host.stack.errors import BadArgument
from stack_pair import IP4_B, QUICK, Pair

T0 = 5000.0     # a monotonic clock far from 0, as time.monotonic() is


def _run_from(pair: Pair, now: float, until) -> bool:
    pair.now = now
    return pair.run(until)


def test_connect_before_any_poll_sends_one_syn_at_the_first_poll():
    pair = Pair()
    pair.b.listen(80)
    client = pair.a.connect(IP4_B, 80)               # the stack has seen no time yet
    assert client.state == "SYN-SENT" and not client.closed and client.error is None
    assert pair.a.counters.tcp_out == 0              # the SYN waits for a real time
    frames = pair.a.poll(T0)                         # (an ARP request goes out first)
    assert pair.a.counters.tcp_out == 1
    assert pair.a.counters.tcp_retransmits == 0 and pair.a.counters.tcp_rto == 0
    deadline = pair.a.tcp.next_deadline()
    assert deadline is not None and deadline >= T0 + QUICK.min_rto
    frames += pair.a.poll(T0)                        # nothing more at the same time
    assert pair.a.counters.tcp_out == 1
    for frame in frames:
        pair.b.receive(frame, T0)
    assert _run_from(pair, T0, lambda: client.connected)
    assert pair.a.counters.tcp_retransmits == 0 and pair.a.counters.tcp_rto == 0
    assert client._conn.rto.srtt < 1.0               # the RTT was measured from T0


def test_connect_with_now_sends_the_syn_at_once():
    pair = Pair()
    pair.b.listen(80)
    client = pair.a.connect(IP4_B, 80, now=T0)
    assert pair.a.counters.tcp_out == 1
    assert pair.a.tcp.next_deadline() >= T0 + QUICK.min_rto
    assert _run_from(pair, T0, lambda: client.connected)
    assert pair.a.counters.tcp_retransmits == 0


def test_connect_after_a_poll_uses_the_stacks_last_time():
    pair = Pair()
    pair.a.poll(T0)
    pair.b.listen(80)
    client = pair.a.connect(IP4_B, 80)
    assert pair.a.counters.tcp_out == 1
    assert pair.a.tcp.next_deadline() >= T0 + QUICK.min_rto
    assert _run_from(pair, T0, lambda: client.connected)
    assert pair.a.counters.tcp_retransmits == 0


def test_close_before_the_deferred_syn_sends_nothing():
    pair = Pair()
    client = pair.a.connect(IP4_B, 80)
    client.close()
    pair.a.poll(T0)
    assert pair.a.counters.tcp_out == 0 and len(pair.a.tcp) == 0


def test_connect_now_must_be_a_number():
    pair = Pair()
    with pytest.raises(BadArgument, match="now"):
        pair.a.connect(IP4_B, 80, now="soon")


@pytest.mark.parametrize("frame", ["abc", None, 42, [1, 2, 3]])
def test_receive_of_a_non_bytes_frame_is_a_one_line_bad_argument(frame):
    pair = Pair()
    with pytest.raises(BadArgument, match="frame") as info:
        pair.a.receive(frame, T0)
    assert "\n" not in str(info.value)
    assert pair.a.counters.frames_in == 0


def test_bytes_like_frames_are_taken():
    pair = Pair()
    for frame in (bytearray(b"\x00" * 20), memoryview(b"\x00" * 20)):
        pair.a.receive(frame, T0)                   # a runt/foreign frame: counted drops
    assert pair.a.counters.frames_in == 2


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf"), "1.0", None, True])
def test_poll_and_receive_take_only_a_finite_time(now):
    pair = Pair()
    with pytest.raises(BadArgument, match="now") as info:
        pair.a.poll(now)
    assert "\n" not in str(info.value)
    with pytest.raises(BadArgument, match="now"):
        pair.a.receive(b"\x00" * 60, now)


def test_time_going_backwards_is_clamped():
    pair = Pair()
    pair.b.listen(80)
    client = pair.a.connect(IP4_B, 80, now=T0)
    pair.a.poll(T0 + 1.0)
    assert pair.a.now == T0 + 1.0
    pair.a.poll(T0 - 100.0)                         # a clock step back: ignored
    assert pair.a.now == T0 + 1.0
    pair.a.receive(b"\x00" * 60, 3.0)
    assert pair.a.now == T0 + 1.0
    assert not client.closed
