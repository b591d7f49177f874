"""RxPipeline in Amaranth's simulator: the data/metadata fork under a store-and-forward
consumer (one that waits for a frame's record before it takes the frame's data)."""

from frames import tcp4, udp6, vlan
from kit import StreamSource, pack, run_simulation, seeded_rng

from hetnic.gateware.rx_pipeline import RxPipeline
from hetnic.params import NicParams
from hetnic.config import RxConfig
from hetnic.sim.model.rx_pipeline import RxModel

WIDTH = 64


def beats(frame: bytes, width: int):
    n = width // 8
    for i in range(0, len(frame), n):
        chunk = frame[i:i + n]
        yield (int.from_bytes(chunk.ljust(n, b"\0"), "little"), (1 << len(chunk)) - 1,
               int(i + n >= len(frame)))


def test_store_and_forward_consumer_does_not_deadlock():
    rng = seeded_rng(5)
    frames = [tcp4(payload=bytes(1518 - 54)), udp6(), vlan(tcp4(payload=bytes(900)), 7),
              tcp4(payload=bytes(1518 - 54))]
    frames += [tcp4(payload=bytes(rng.randrange(0, 1400))) for _ in range(6)]
    dut = RxPipeline(NicParams(data_width=WIDTH, n_rules=2, reta_size=16, queues=16))
    model = RxModel(dut.regmap, RxConfig(queues=16, reta=list(range(16))), generation=0)
    got_frames, got_meta = [], []

    source = StreamSource(dut.rx, rng=rng, name="rx")      # back to back: no gaps
    source.extend(pack(dut.rx.payload.shape(), data=data, keep=keep, last=last)
                  for frame in frames for data, keep, last in beats(frame, WIDTH))

    async def consumer(ctx):
        # Take a record first, then the whole frame it describes.
        for _ in frames:
            ctx.set(dut.meta.ready, 1)
            meta, = await ctx.tick().sample(dut.meta.payload).until(dut.meta.valid)
            ctx.set(dut.meta.ready, 0)
            got_meta.append(meta)
            ctx.set(dut.data.ready, 1)
            frame = b""
            while True:
                beat, = await ctx.tick().sample(dut.data.payload).until(dut.data.valid)
                n = bin(int(beat.keep)).count("1")
                frame += int(beat.data).to_bytes(WIDTH // 8, "little")[:n]
                if beat.last:
                    break
            ctx.set(dut.data.ready, 0)
            got_frames.append(frame)

    run_simulation(dut, consumer, background=(source.run,),
                   cycle_limit=sum(len(f) for f in frames))     # a bound: far above line rate
    assert got_frames == frames
    for frame, meta in zip(frames, got_meta):
        want = model.process(frame)
        assert int(meta.hash) == want["hash"] and int(meta.queue) == want["queue"]
        assert int(meta.length) == len(frame)
