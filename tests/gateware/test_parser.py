# amaranth: UnusedElaboratable=no
"""HeaderParser in Amaranth's simulator against the parser model, at 8 and 64 bits."""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.back import rtlil

from hetnic.gateware.beat import Beat
from hetnic.gateware.parser import HeaderParser
from hetnic.protocol import ETH_DEFAULT_MAX_FRAME, EtherType, ParseError
from hetnic.sim.model.parser import ParsedFrame, parse_frame
from kit import StreamSink, StreamSource, pack, run_simulation

import frames as f  # noqa: E402

SEED = 0x5EED_0002


def beats_of(frame: bytes, width: int, mac_error_beat: int | None) -> list[int]:
    """The raw :class:`Beat` values of ``frame``; ``mac_error_beat`` sets the error bit of
    that beat (``-1``: the last). A 0-byte frame is one beat with no lanes kept."""
    lanes = width // 8
    chunks = [frame[k:k + lanes] for k in range(0, len(frame), lanes)] or [b""]
    if mac_error_beat is not None:
        mac_error_beat %= len(chunks)
    return [pack(Beat(width), data=int.from_bytes(chunk, "little"), keep=(1 << len(chunk)) - 1,
                 last=index == len(chunks) - 1, error=index == mac_error_beat)
            for index, chunk in enumerate(chunks)]


@dataclass
class Traffic:
    """Frames for one simulation run and how to drive them."""
    frames: list
    mac_error_beats: list = None        # per frame: None or the beat carrying error
    max_frame: int = ETH_DEFAULT_MAX_FRAME
    direct_ethertype: int = EtherType.DIRECT_DEFAULT
    gap: float = 0.0                    # probability of an idle cycle before each beat
    backpressure: float = 0.0           # probability that o.ready is low in a cycle
    seed: int = 0
    stats: dict = field(default_factory=dict)

    def expected(self, capture_bytes: int) -> list[ParsedFrame]:
        errors = self.mac_error_beats or [None] * len(self.frames)
        return [parse_frame(frame, mac_error=err is not None, max_frame=self.max_frame,
                            direct_ethertype=self.direct_ethertype,
                            capture_bytes=capture_bytes)
                for frame, err in zip(self.frames, errors)]


def simulate(traffic: Traffic, width: int, capture_bytes: int = 128) -> list[int]:
    """Run ``traffic`` through a HeaderParser; return the raw records taken from ``o``.

    Bounded: the run fails if the records are not all out within a cycle budget. Also
    checks that nothing is left in flight afterwards. Fills ``traffic.stats`` with
    ``cycles`` and ``stalls`` (cycles with ``i.valid & ~i.ready``).
    """
    dut = HeaderParser(width, capture_bytes)
    errors = traffic.mac_error_beats or [None] * len(traffic.frames)
    beats = [beat for frame, err in zip(traffic.frames, errors)
             for beat in beats_of(frame, width, err)]
    budget = 2 * len(beats) + 12 * len(traffic.frames) + 100
    if traffic.gap or traffic.backpressure:
        budget = int(budget / (1 - max(traffic.gap, traffic.backpressure)) ** 2) + 100
    source = StreamSource(dut.i, seed=traffic.seed, gap=traffic.gap, name="i")
    source.extend(beats)
    sink = StreamSink(dut.o, seed=traffic.seed + 1, stall=traffic.backpressure, name="o")

    async def producer(ctx):
        ctx.set(dut.max_frame, traffic.max_frame)
        ctx.set(dut.direct_ethertype, traffic.direct_ethertype)
        await source.run(ctx)

    async def consumer(ctx):
        await sink.receive(ctx, len(traffic.frames))
        traffic.stats.update(cycles=sink.cycle, stalls=source.stalls)
        # Nothing left in flight: no further record, and both capture buffers free.
        await sink.expect_idle(ctx, 20)
        assert ctx.get(dut.i.ready) == 1

    run_simulation(dut, producer, consumer, cycle_limit=budget + 20)
    return sink.received


def check(traffic: Traffic, width: int, capture_bytes: int = 128):
    records = simulate(traffic, width, capture_bytes)
    expected = traffic.expected(capture_bytes)
    assert len(records) == len(expected)
    for index, (raw, exp) in enumerate(zip(records, expected)):
        got = ParsedFrame.from_meta_bits(raw)
        assert raw == exp.to_meta_bits(), (
            f"frame {index} ({traffic.frames[index].hex()}):\n  gateware {got}\n"
            f"  model    {exp}")


def directed_traffic() -> list[bytes]:
    frames = [frame for name, frame in f.directed_frames().items()]
    tcp4 = f.tcp4(payload=b"0123456789", pad_to=0)
    frames += [tcp4[:cut] for cut in (0, 1, 13, 14, 15, 20, 33, 34, 53, 54, 63)]
    udp6 = f.vlan(f.udp6(ext=[f.ipv6_ext("frag")], payload=b"xy", pad_to=0), 5)
    frames += [udp6[:cut] for cut in (17, 18, 19, 57, 58, 65, 66, 73, 74, 75)]
    frames += [
        tcp4[:14] + b"\x46" + tcp4[15:],                            # IHL 6: header cut
        tcp4[:14] + b"\x44" + tcp4[15:],                            # bad IHL
        tcp4[:14] + b"\x55" + tcp4[15:],                            # bad version
        tcp4[:16] + b"\x00\x13" + tcp4[18:],                        # total < IHL * 4
        tcp4[:16] + b"\x00\x27" + tcp4[18:],                        # TCP header cut
        f.udp6(ext=[f.ipv6_ext("dst")] * 5),                         # 5 extension headers
        f.udp6(ext=[f.ipv6_ext("dst")] * 4),
        f.udp6(ext=[f.ipv6_ext("hop", length=80)]),                  # past the window
        f.tcp6(ext=[f.ipv6_ext("hop", length=64)]),                  # L4 past the window
        f.udp6(ext=[f.ipv6_ext("hop", length=64)]),
        f.vlan(f.vlan(f.vlan(f.tcp4(), 3), 2), 1),                   # three tags
        f.direct(ethertype=0x9000),
        f.tcp4(options=10),
        first_bytes_past_window(),
    ]
    qinq = f.vlan(f.vlan(f.tcp4(), 2), 1, tpid=EtherType.QINQ)
    frames += [qinq[:cut] for cut in (17, 18, 21, 22)]
    return frames


def first_bytes_past_window() -> bytes:
    """An extension header at byte 122 of 128 whose first 8 bytes fit the IP packet but
    whose full length does not: HEADER_LIMIT (its first bytes are past the window), not
    TRUNCATED."""
    frame = f.vlan(f.udp6(ext=[f.ipv6_ext("hop", length=64), f.ipv6_ext("dst", length=64)]),
                   1)
    return frame[:22] + (140 - 58).to_bytes(2, "big") + frame[24:]


@pytest.mark.parametrize("width", [8, 64])
def test_directed(width):
    frames = directed_traffic()
    rng = random.Random(SEED)
    print(f"seed {SEED:#x}")
    mac_errors = [rng.choice([0, -1]) if k % 9 == 4 else None for k in range(len(frames))]
    check(Traffic(frames, mac_errors), width)


@pytest.mark.parametrize("width", [8, 64])
def test_directed_registers(width):
    # A different MAX_FRAME and DIRECT_ETHERTYPE, and 0 (no direct channel).
    frames = [f.tcp4(payload=bytes(k)) for k in (0, 45, 46, 47)] + [
        f.direct(ethertype=0x9000), f.direct(), f.vlan(f.direct(ethertype=0x9000), 1),
        f.ether(ethertype=0, pad_to=60)]
    check(Traffic(frames, max_frame=100, direct_ethertype=0x9000), width)
    check(Traffic(frames, max_frame=60, direct_ethertype=0), width)


@pytest.mark.parametrize("width,count,max_payload,max_frame", [
    (8, 150, 32, 150), (64, 400, 120, 1522), (64, 200, 40, 90)])
def test_random_traffic(width, count, max_payload, max_frame):
    seed = SEED + width + max_frame
    print(f"seed {seed:#x}")
    rng = random.Random(seed)
    frames = f.random_mix(rng, count, malformed=0.35, max_payload=max_payload)
    mac_errors = [rng.randrange(-3, 3) if rng.random() < 0.05 else None for _ in frames]
    traffic = Traffic(frames, mac_errors, max_frame=max_frame,
                      direct_ethertype=rng.choice([EtherType.DIRECT_DEFAULT, 0x0806]),
                      gap=0.2, backpressure=0.3, seed=seed)
    # The mix reaches most outcomes, so agreement here means something.
    assert len({r.error for r in traffic.expected(128)}) >= 6
    check(traffic, width)


def test_byte_capture_extension_chains():
    # At 8 bits the parser keeps only the header bytes it will read, following extension
    # header offsets as the bytes stream by: chains of every type and length, fragments,
    # windows of 64/100 bytes, with gaps and backpressure (the engine lags the capture).
    seed = SEED + 8
    print(f"seed {seed:#x}")
    rng = random.Random(seed)
    kinds = ["hop", "dst", "routing", "frag"]
    frames = f.random_mix(rng, 150, malformed=0.3, max_payload=48)
    frames += [f.udp6(ext=[f.ipv6_ext(rng.choice(kinds)) for _ in range(rng.randrange(6))])
               for _ in range(50)]
    frames += [f.vlan(f.tcp6(ext=[f.ipv6_ext(kind, length=8 + 16 * rng.randrange(3))
                                  for kind in rng.choices(kinds, k=rng.randrange(1, 5))]),
                      rng.randrange(1, 4095)) for _ in range(30)]
    rng.shuffle(frames)
    for capture_bytes in (64, 128):
        traffic = Traffic(frames, gap=0.2, backpressure=0.5, seed=seed)
        assert {ParseError.NONE, ParseError.HEADER_LIMIT} <= {
            r.error for r in traffic.expected(capture_bytes)}
        check(traffic, 8, capture_bytes=capture_bytes)


def test_random_traffic_small_window():
    seed = SEED + 3
    print(f"seed {seed:#x}")
    rng = random.Random(seed)
    frames = f.random_mix(rng, 120, malformed=0.2, max_payload=40)
    check(Traffic(frames, gap=0.1, backpressure=0.5, seed=seed), 64, capture_bytes=64)


def test_throughput_64_byte_frames():
    # 200 back-to-back 64-byte Eth/IPv4/TCP frames at 64 bits: one beat every cycle.
    frames = [f.tcp4(sport=1000 + k, pad_to=64) for k in range(200)]
    traffic = Traffic(frames)
    check(traffic, 64)
    assert traffic.stats["stalls"] == 0
    assert traffic.stats["cycles"] <= 200 * 8 + 8


def test_throughput_any_well_formed_frame():
    # Every well-formed frame of 60+ bytes (7+ beats) covers the engine time of the frame
    # before it (at most 7 cycles), whatever its headers: no stall either.
    seed = SEED + 4
    print(f"seed {seed:#x}")
    frames = f.random_mix(random.Random(seed), 150, malformed=0.0, max_payload=16)
    frames += [f.udp6(ext=[f.ipv6_ext("dst")] * 4, pad_to=0), f.tcp4(pad_to=56)] * 10
    traffic = Traffic(frames)
    check(traffic, 64)
    assert traffic.stats["stalls"] == 0


@pytest.mark.parametrize("name,frame,cycles", [
    ("arp", f.arp(), 1),
    ("runt", f.tcp4()[:10], 1),
    ("icmp4", f.icmp4(), 2),
    ("ipv4_later_fragment", f.tcp4(frag=8), 2),
    ("tcp4", f.tcp4(), 3),
    ("vlan_udp6", f.vlan(f.udp6(), 1), 3),
    ("udp6_ext2", f.udp6(ext=[f.ipv6_ext("hop"), f.ipv6_ext("frag")]), 5),
    ("udp6_ext4", f.udp6(ext=[f.ipv6_ext("dst")] * 4), 7),
    ("udp6_ext5", f.udp6(ext=[f.ipv6_ext("dst")] * 5), 6),
])
@pytest.mark.parametrize("width", [8, 64])
def test_latency(name, frame, cycles, width):
    # The documented latency: o.valid rises 1 + (engine cycles) after the last beat; at 8
    # bits the input register and the hand-over take a cycle each and every step four.
    dut = HeaderParser(width)
    beats = beats_of(frame, width, None)
    latency = []

    async def testbench(ctx):
        ctx.set(dut.max_frame, ETH_DEFAULT_MAX_FRAME)
        ctx.set(dut.o.ready, 1)
        for beat in beats:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), beat)
            *_, ready = await ctx.tick().sample(dut.i.ready)
            assert ready
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 40):
            if ctx.get(dut.o.valid):
                latency.append(cycle)
                break
            await ctx.tick()

    run_simulation(dut, testbench, cycle_limit=len(beats) + 50)
    assert latency == [1 + cycles if width > 8 else 3 + 4 * cycles]


def test_short_frames_stall_but_stay_in_order():
    # 14-byte frames (2 beats at 64 bits) after IPv6 chains outrun the engine: i.ready
    # drops, but every record comes out, in order.
    frames = [f.udp6(ext=[f.ipv6_ext("dst")] * 4), f.ether(ethertype=0x1234, pad_to=14)] * 15
    traffic = Traffic(frames)
    check(traffic, 64)
    assert traffic.stats["stalls"] > 0


@pytest.mark.parametrize("width", [16, 24, 128, 512])
def test_elaborates(width):
    rtlil.convert(HeaderParser(width, capture_bytes=100 if width == 24 else 128))


def window_edge_frames() -> list[bytes]:
    """Frames whose extension or L4 header ends just inside (126) or just past (130) a
    128-byte capture window. Header ends are always 2 mod 4, so 128 itself never occurs."""
    frames = []
    for tags in range(3):
        for hop_length in (48, 56, 64, 72):
            for factory in (f.udp6, f.tcp6):
                frame = factory(ext=[f.ipv6_ext("hop", length=hop_length)], payload=bytes(8))
                for _ in range(tags):
                    frame = f.vlan(frame, tags)
                frames.append(frame)
    return frames


@pytest.mark.parametrize("width", [8, 64])
def test_capture_window_edges(width):
    frames = window_edge_frames()
    expected = Traffic(frames).expected(128)
    assert {r.error for r in expected} == {ParseError.NONE, ParseError.HEADER_LIMIT}
    check(Traffic(frames), width)


def test_capture_window_not_a_beat_multiple():
    # 100 bytes at 64 bits: the buffer holds 104 bytes, but bytes 100..103 are outside.
    frames = [frame for frame in window_edge_frames() if len(frame) < 160]
    frames += [f.udp6(ext=[f.ipv6_ext("hop", length=k)]) for k in (32, 40, 48)]
    assert ParseError.HEADER_LIMIT in {r.error for r in Traffic(frames).expected(100)}
    check(Traffic(frames), 64, capture_bytes=100)


def test_length_saturates():
    # 70000 bytes: the length saturates at 65535 (cheap to simulate at 512 bits).
    huge = f.ether(ethertype=0x1234) + bytes(70000)
    frames = [huge, f.tcp4(), huge]
    check(Traffic(frames), 512)
    check(Traffic(frames, max_frame=65535), 512)


def test_other_widths_run():
    frames = list(f.directed_frames().values())[:12] + directed_traffic()[-14:]
    check(Traffic(frames, backpressure=0.2, seed=SEED), 24)
    check(Traffic(frames, gap=0.2, seed=SEED), 512)


def test_parameter_errors():
    with pytest.raises(ValueError, match="not 12"):
        HeaderParser(12)
    with pytest.raises(ValueError, match="not 1024"):
        HeaderParser(1024)
    with pytest.raises(ValueError, match="not 32"):
        HeaderParser(64, capture_bytes=32)
    with pytest.raises(ValueError, match="not '64'"):
        HeaderParser("64")


def vxlan_frames(rng: random.Random, count: int) -> list[bytes]:
    """VXLAN / VXLAN-GPE outer frames of every shape the VNI depends on: IPv4 and IPv6
    outer, ports 4788..4791, random flags (I set or clear), the header cut to 0..8 bytes,
    0..2 VLAN tags, IPv6 extension headers that push it towards the capture window's end,
    TCP to the port; plus the directed ones."""
    frames = []
    for _ in range(count):
        version = rng.choice([4, 6])
        dport = rng.choice([4789, 4789, 4790, 4790, 4788, 4791])
        flags = rng.choice([0x08, 0x0C, 0x00, rng.randrange(256)])
        cut = rng.choice([None, None, rng.randrange(9)])
        vni = rng.choice([0, 1, 0xFFFFFF]) if rng.random() < 0.3 else rng.randrange(1 << 24)
        if version == 6 and rng.random() < 0.3:
            frame = f.udp6(dport=dport, ext=[f.ipv6_ext("hop", length=8 * rng.randint(1, 8))],
                           payload=f.vxlan_header(vni, flags=flags)[:cut])
        elif rng.random() < 0.1:
            frame = f.tcp4(dport=dport, payload=f.vxlan_header(vni, flags=flags))
        else:
            frame = f.vxlan_udp(version, dport=dport, vni=vni, flags=flags, cut=cut,
                                inner=bytes(rng.randrange(40)))
        for _ in range(rng.choice([0, 0, 1, 2])):
            frame = f.vlan(frame, rng.randrange(4096))
        frames.append(frame)
    return frames


@pytest.mark.parametrize("width,capture_bytes", [
    (8, 100), (64, 128), *(pytest.param(*case, marks=pytest.mark.slow)
                           for case in ((8, 128), (64, 100), (24, 128)))])
def test_vni(width, capture_bytes):
    # The VNI and its flag against the model: VXLAN and VXLAN-GPE, IPv4 and IPv6 outer, the
    # I flag clear, the header cut short, VLAN tags, other ports, headers near the window's
    # end, with gaps and backpressure.
    seed = SEED + 0x71 + width + capture_bytes
    print(f"seed {seed:#x}")
    rng = random.Random(seed)
    frames = vxlan_frames(rng, 50 if width == 8 else 80)
    traffic = Traffic(frames, gap=0.2, backpressure=0.3, seed=seed)
    expected = traffic.expected(capture_bytes)
    found = [r for r in expected if r.flag("vni")]
    # The mix reaches many VNIs, and tunnel ports without one (I clear, cut, past the window).
    assert len(found) >= len(frames) // 5 and len({r.vni for r in found}) > 5
    assert any(r.flag("tunnel") and not r.flag("vni") for r in expected)
    assert any(r.error == ParseError.NONE and r.flag("tunnel") and not r.flag("vni") and
               r.dst_port in (4789, 4790) for r in expected)
    check(traffic, width, capture_bytes=capture_bytes)


@pytest.mark.parametrize("width", [8, 64])
def test_vni_header_cut_and_window_edges(width):
    # Every cut of the VXLAN header (0..8 bytes, IPv4 and IPv6, both ports): a VNI only for
    # 8; and IPv6 headers whose VXLAN header ends 1 byte past, or exactly at, a 100-byte
    # window.
    frames = [f.vxlan_udp(version, dport=dport, vni=0xA5A5A5, cut=cut)
              for version in (4, 6) for dport in (4789, 4790) for cut in range(9)]
    expected = Traffic(frames).expected(128)
    assert [r.flag("vni") for r in expected] == ([False] * 8 + [True]) * 4
    check(Traffic(frames), width)
    edges = [f.udp6(dport=4789, ext=[f.ipv6_ext("hop", length=hop)],
                    payload=f.vxlan_header(3)) for hop in (32, 24)]  # ends at 102, 94
    edges += [f.vlan(f.vlan(frame, 1), 2) for frame in edges]          # ... 110, 102
    for window, found in ((102, [True, True, False, True]), (101, [False, True, False, False])):
        assert [r.flag("vni") for r in Traffic(edges).expected(window)] == found
        check(Traffic(edges), width, capture_bytes=window)


@pytest.mark.parametrize("width", [8, 64])
def test_vni_bounded_by_the_udp_length(width):
    # The UDP length cuts the VXLAN header (8..15) or runs past the IP packet: no VNI, as
    # the model (whose scapy oracle bounds by the UDP length) says.
    frames = f.udp_length_frames()
    expected = Traffic(frames).expected(128)
    assert [r.flag("vni") for r in expected] == [16 <= n <= 32 for n in f.VXLAN_UDP_LENS] * 2
    check(Traffic(frames), width)
