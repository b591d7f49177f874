"""Tests of the host rings (hetnic.host.memory, ring, rx_ring, tx_ring, event_ring,
queue_setup) against a fake NIC written in Python.

The fake NICs read descriptors and work items from host memory exactly as the layouts of
hetnic.protocol say, and write completions and events with the phase bit the NIC uses (1 on
the first pass over a ring, 0 on the second, ...). They know the rings only through the
addresses and sizes a real NIC would be given, and the doorbell values.
"""

import functools
import random

import pytest
from amaranth.lib import data

from kit import pack_image, unpack_image

from hetnic.host.event_ring import EventRing, NicEvent
from hetnic.host.memory import (BytearrayMemory, HostMemory, MemoryAllocator,
                                OutOfHostMemoryError)
from hetnic.host.queue_setup import queue_register_writes
from hetnic.host.ring import RingCorruptionError, RingFullError
from hetnic.host.rx_ring import RxRing
from hetnic.host.tx_ring import TxDone, TxRing
from hetnic.protocol import (TX_MAX_FRAME, TX_MAX_MESSAGES, Event, EventType, HashType,
                             MetaFlags, ParseError, RxCompletion, RxDescriptor, TxCompletion,
                             TxGatherEntry, TxLengths, TxOpcode, TxStatus, TxWorkItem)
from hetnic.regs import QUEUE_CTRL_ENABLE, RegisterMap

MEM_BASE = 0x1_2345_0000            # above 4 GiB, so the high address words matter
LENGTH_FIELDS = [name for name, _ in data.Layout.cast(TxLengths)]


def nbytes(layout) -> int:
    return data.Layout.cast(layout).size // 8


def align_up(n: int, align: int) -> int:
    return -(-n // align) * align


def make_memory(size: int = 1 << 22):
    mem = BytearrayMemory(MEM_BASE, size)
    return mem, MemoryAllocator(mem, MEM_BASE, size)


# The fake NICs decode and encode through a cache: rings repeat the same images (recycled
# buffers, identical headers), and it keeps long runs such as the doorbell wrap test quick.
cached_pack = functools.lru_cache(maxsize=1 << 14)(pack_image)
cached_unpack = functools.lru_cache(maxsize=1 << 14)(unpack_image)


def seeded(seed: int) -> random.Random:
    print(f"random seed {seed}")
    return random.Random(seed)


class PhasedWriter:
    """The NIC side of a completion or event ring."""

    def __init__(self, mem, layout, base: int, size: int):
        self.mem, self.layout, self.base, self.size = mem, layout, base, size
        self.entry_bytes = nbytes(layout)
        self.prod = 0

    def write(self, **fields):
        phase = (self.prod // self.size & 1) ^ 1
        self.mem.write(self.base + (self.prod % self.size) * self.entry_bytes,
                       cached_pack(self.layout, phase=phase, **fields))
        self.prod += 1


class FakeRxNic:
    """Takes posted descriptors in ring order, writes frames into their buffers."""

    def __init__(self, mem, base: int, size: int, cq_base: int, cq_size: int):
        self.mem, self.base, self.size = mem, base, size
        self.cq = PhasedWriter(mem, RxCompletion, cq_base, cq_size)
        self.doorbell = 0
        self.cons = 0

    @classmethod
    def of(cls, mem, ring: RxRing):
        return cls(mem, ring.base, ring.size, ring.cq_base, ring.cq_size)

    def available(self) -> int:
        return (self.doorbell - self.cons) & 0xFFFF

    def deliver(self, frame: bytes, **meta) -> bool:
        """Land ``frame`` in the next posted buffer; False (a drop) when there is none."""
        if not self.available():
            return False
        slot = self.cons % self.size
        desc = cached_unpack(RxDescriptor, self.mem.read(self.base + slot * nbytes(RxDescriptor),
                                                  nbytes(RxDescriptor)))
        assert len(frame) <= desc["length"] and desc["reserved"] == 0
        self.mem.write(desc["addr"], frame)
        self.cq.write(length=len(frame), **meta)      # completion i is descriptor slot i
        self.cons += 1
        return True


class FakeTxNic:
    """Executes work items in ring order and completes each with the status a NIC would."""

    def __init__(self, mem, base: int, size: int, cq_base: int, cq_size: int,
                 data_align: int):
        self.mem, self.base, self.size, self.align = mem, base, size, data_align
        self.cq = PhasedWriter(mem, TxCompletion, cq_base, cq_size)
        self.doorbell = 0
        self.cons = 0
        self.frames: list[bytes] = []

    @classmethod
    def from_registers(cls, mem, regmap: RegisterMap, index: int, writes, data_align: int):
        """Configure from the register writes that set TX queue ``index`` up."""
        regs = {}
        for addr, value in writes:
            for name in ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI", "CQ_SIZE",
                         "PROD", "CTRL"):
                if addr == regmap.addr(f"TXQ_{name}", index):
                    regs[name] = value
        assert regs["CTRL"] & 1
        nic = cls(mem, regs["BASE_HI"] << 32 | regs["BASE_LO"], regs["SIZE"],
                  regs["CQ_BASE_HI"] << 32 | regs["CQ_BASE_LO"], regs["CQ_SIZE"], data_align)
        nic.doorbell = nic.cons = regs["PROD"]
        return nic

    def slot(self, index: int, layout):
        return cached_unpack(layout, self.mem.read(self.base + index % self.size * 16, 16))

    def process(self, max_items: int | None = None) -> int:
        done = 0
        while (self.doorbell - self.cons) & 0xFFFF and (max_items is None or done < max_items):
            head = self.slot(self.cons, TxWorkItem)
            op, count, frames, status, slots = head["opcode"], head["count"], [], TxStatus.OK, 1
            if op == TxOpcode.SINGLE:
                assert head["addr"] % self.align == 0
                frames = [self.mem.read(head["addr"], head["length"])]
            elif op in (TxOpcode.BATCH, TxOpcode.GATHER) and not 1 <= count <= TX_MAX_MESSAGES:
                status = TxStatus.BAD_COUNT
            elif op == TxOpcode.BATCH:
                slots += -(-count // 8)
                addr = head["addr"]
                assert addr % self.align == 0
                for i in range(count):
                    length = self.slot(self.cons + 1 + i // 8, TxLengths)[LENGTH_FIELDS[i % 8]]
                    frames.append(self.mem.read(addr, length))
                    addr += align_up(length, self.align)
            elif op == TxOpcode.GATHER:
                slots += count
                for i in range(count):
                    entry = self.slot(self.cons + 1 + i, TxGatherEntry)
                    assert entry["addr"] % self.align == 0 and entry["reserved"] == 0
                    frames.append(self.mem.read(entry["addr"], entry["length"]))
            elif op != TxOpcode.NOP:
                status = TxStatus.BAD_OPCODE
            # the doorbell covers the whole work item
            assert (self.doorbell - self.cons) & 0xFFFF >= slots
            self.frames += frames
            self.cq.write(cookie=head["cookie"], wqe_index=self.cons % self.size,
                          messages=len(frames), status=status, bytes=sum(map(len, frames)))
            self.cons += slots
            done += 1
        return done


def with_field(layout, image: bytes, name: str, value: int) -> bytes:
    """``image`` with field ``name`` set to ``value``, even one its enum does not define."""
    field = data.Layout.cast(layout)[name]
    raw = int.from_bytes(image, "little") & ~(((1 << field.width) - 1) << field.offset)
    return (raw | value << field.offset).to_bytes(len(image), "little")


def make_tx(size=8, data_align=8, mem_size=1 << 22, **kwargs):
    mem, alloc = make_memory(mem_size)
    ring = TxRing(mem, alloc, size, data_align=data_align, **kwargs)
    nic = FakeTxNic(mem, ring.base, ring.size, ring.cq_base, ring.cq_size, data_align)
    return mem, ring, nic


COMPLETION = data.Layout.cast(RxCompletion)


def random_meta(rng: random.Random) -> dict:
    """Random completion metadata; the widths come from ``RxCompletion``'s layout."""
    meta = {name: rng.getrandbits(COMPLETION[name].width) for name in
            ("hash", "flags", "queue", "instance", "rule", "generation", "timestamp")}
    return meta | {"hash_type": rng.choice(list(HashType)),
                   "error": rng.choice(list(ParseError))}


def meta_of(packet) -> dict:
    return {name: getattr(packet, name) for name in
            ("hash", "hash_type", "error", "flags", "queue", "instance", "rule", "generation",
             "timestamp")}


# --- memory, allocator --------------------------------------------------------------------

def test_bytearray_memory_bounds():
    mem = BytearrayMemory(0x1000, 0x100)
    assert isinstance(mem, HostMemory)
    mem.write(0x10FC, b"abcd")
    assert mem.read(0x10FC, 4) == b"abcd" and mem.read(0x1000, 0) == b""
    with pytest.raises(IndexError, match=r"read of 4 bytes at 0x10fd is outside host memory "
                                         r"0x1000\.\.0x10ff"):
        mem.read(0x10FD, 4)
    with pytest.raises(IndexError, match="write of 1 bytes at 0xfff"):
        mem.write(0xFFF, b"x")
    with pytest.raises(ValueError, match="size must be"):
        BytearrayMemory(0, 0)


def test_allocator_alignment_and_exhaustion():
    mem = BytearrayMemory(0x1000, 0x100)
    alloc = MemoryAllocator(mem, 0x1001, 0xFF)
    assert alloc.alloc(3) == 0x1001
    assert alloc.alloc(16, 64) == 0x1040
    assert alloc.used == 0x4F and alloc.available == 0xB0
    with pytest.raises(ValueError, match="align must be a power of two, not 3"):
        alloc.alloc(1, 3)
    with pytest.raises(ValueError, match="positive integer, not 0"):
        alloc.alloc(0)
    with pytest.raises(OutOfHostMemoryError, match="cannot allocate 256 bytes aligned to 1: "
                                                   "176 of 255 bytes left") as exc:
        alloc.alloc(256)
    assert isinstance(exc.value, MemoryError)
    assert alloc.alloc(0xB0) == 0x1050      # the failed request took nothing


def test_ring_larger_than_memory_raises_out_of_memory():
    mem, alloc = make_memory(1 << 16)
    with pytest.raises(OutOfHostMemoryError, match="larger region"):
        RxRing(mem, alloc, 1024, buffer_size=2048)
    with pytest.raises(OutOfHostMemoryError):
        TxRing(mem, alloc, 64, staging_size=1 << 17)


# --- RX ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 3, 6, -4, 1 << 16, "8"])
def test_rx_ring_size_must_be_a_power_of_two(size):
    mem, alloc = make_memory()
    with pytest.raises(ValueError, match=r"size must be a power of two from 2 to 32768 entries"):
        RxRing(mem, alloc, size, buffer_size=64)


def test_rx_ring_rejects_bad_buffers():
    mem, alloc = make_memory()
    with pytest.raises(ValueError, match="buffer_size must be from 1 to"):
        RxRing(mem, alloc, 4, buffer_size=0)
    with pytest.raises(ValueError, match="data_align must be a power of two, not 24"):
        RxRing(mem, alloc, 4, buffer_size=64, data_align=24)


@pytest.mark.parametrize("data_align", [1, 8, 64])
def test_posted_descriptors(data_align):
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 4, buffer_size=100, data_align=data_align)
    assert ring.post(3) == 3
    assert ring.post() == 4
    assert ring.post() == 4 and ring.outstanding == 4     # no buffer is free
    raw = mem.read(ring.base, 4 * nbytes(RxDescriptor))
    descs = [unpack_image(RxDescriptor, raw[i * 16:(i + 1) * 16]) for i in range(4)]
    addrs = sorted(d["addr"] for d in descs)
    assert all(d["length"] == 100 and d["reserved"] == 0 for d in descs)
    assert all(a % data_align == 0 for a in addrs)
    assert all(b - a >= 100 for a, b in zip(addrs, addrs[1:]))
    assert MEM_BASE <= addrs[0] and addrs[-1] + 100 <= MEM_BASE + (1 << 22)
    # the rings never overlap the buffers
    assert ring.base + 64 <= ring.cq_base and ring.cq_base + 4 * 16 <= addrs[0]


def test_rx_traffic_wraps_both_rings_in_order():
    rng = seeded(0x5EED)
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 8, buffer_size=128)
    nic = FakeRxNic.of(mem, ring)
    nic.doorbell = ring.post()
    sent, got, drops = [], [], 0
    for _ in range(400):
        for _ in range(rng.randrange(6)):
            frame, meta = rng.randbytes(rng.randrange(1, 129)), random_meta(rng)
            if nic.deliver(frame, **meta):
                sent.append((frame, meta))
            else:
                drops += 1
        got += ring.reap(rng.randrange(1, 10))
        nic.doorbell = ring.post(rng.choice([None, 1, 3]))
    got += ring.reap(100)
    print(f"{len(sent)} frames, {drops} drops")
    assert len(sent) > 30 * ring.size and drops > 0
    assert [(p.data, meta_of(p)) for p in got] == sent
    assert all(p.length == len(p.data) for p in got)
    assert all(isinstance(p.hash_type, HashType) and isinstance(p.error, ParseError)
               for p in got)
    assert ring.reap() == [] and nic.available() == ring.outstanding


def test_rx_stale_entries_of_the_last_pass_are_not_taken():
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 2, buffer_size=64)
    nic = FakeRxNic.of(mem, ring)
    assert ring.reap() == []                # a zeroed ring has phase 0: nothing yet
    nic.doorbell = ring.post()
    assert nic.deliver(b"one") and nic.deliver(b"two") and not nic.deliver(b"three")
    assert [p.data for p in ring.reap(1)] == [b"one"]
    assert [p.data for p in ring.reap(5)] == [b"two"]
    nic.doorbell = ring.post()
    assert ring.reap() == []                # the ring still holds phase-1 entries
    assert nic.deliver(b"four")
    assert [(p.data, p.desc_index) for p in ring.reap()] == [(b"four", 0)]
    assert ring.reap() == []


def test_rx_phase_after_many_wraps():
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 2, buffer_size=16)
    nic = FakeRxNic.of(mem, ring)
    received = []
    for i in range(501):
        nic.doorbell = ring.post()
        assert nic.deliver(i.to_bytes(2, "little"))
        if i % 2:
            received += ring.reap()
    received += ring.reap()
    assert [int.from_bytes(p.data, "little") for p in received] == list(range(501))


def test_rx_reap_limit_and_flags():
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 8, buffer_size=64)
    nic = FakeRxNic.of(mem, ring)
    nic.doorbell = ring.post()
    tcp_ipv6 = int.from_bytes(pack_image(MetaFlags, tcp=1, ipv6=1), "little")
    for i in range(5):
        nic.deliver(bytes([i]), flags=tcp_ipv6)
    assert ring.reap(0) == []
    assert [p.data for p in ring.reap(2)] == [b"\x00", b"\x01"]
    packets = ring.reap()
    assert len(packets) == 3 and packets[0].flag("tcp") and packets[0].flag("ipv6")
    assert not packets[0].flag("udp")
    with pytest.raises(KeyError, match="no flag 'syn'"):
        packets[0].flag("syn")


def test_rx_completion_without_a_posted_descriptor_raises():
    """Completions come in descriptor order; one more than was posted is corruption."""
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 4, buffer_size=64)
    nic = FakeRxNic.of(mem, ring)
    nic.doorbell = ring.post(1)
    assert nic.deliver(b"a")
    nic.cq.write(length=1)                  # a second completion: slot 1 was never posted
    assert [p.data for p in ring.reap(1)] == [b"a"]
    with pytest.raises(RingCorruptionError, match=r"RX completion 1 \(slot 1\) names "
                                                  r"descriptor 1, which is not outstanding"):
        ring.reap()
    with pytest.raises(RingCorruptionError):        # not consumed: still there
        ring.reap()


def test_rx_completion_longer_than_its_buffer_raises():
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 4, buffer_size=64)
    nic = FakeRxNic.of(mem, ring)
    nic.doorbell = ring.post()
    nic.cq.write(length=65)
    with pytest.raises(RingCorruptionError, match="65 bytes landed in a 64-byte buffer"):
        ring.reap()


def test_rx_completion_with_undefined_code_raises():
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 4, buffer_size=64)
    ring.post()
    mem.write(ring.cq_base, with_field(RxCompletion, pack_image(RxCompletion, phase=1),
                                       "hash_type", 7))
    with pytest.raises(RingCorruptionError, match="not a valid HashType"):
        ring.reap()


# --- TX ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_align", [1, 8, 64])
def test_batch_work_item_layout(data_align):
    mem, ring, nic = make_tx(data_align=data_align)
    messages = [bytes([i + 1]) * n for i, n in enumerate([1, 8, 9, 15, 16, 17, 3, 64, 5, 7, 2])]
    assert ring.send_batch(messages, cookie=0xDEADBEEF) == 3
    head = nic.slot(0, TxWorkItem)
    assert head == {"opcode": TxOpcode.BATCH, "count": 11, "length": 0, "cookie": 0xDEADBEEF,
                    "addr": head["addr"]}
    assert head["addr"] % data_align == 0
    lengths = nic.slot(1, TxLengths), nic.slot(2, TxLengths)
    assert [lengths[0][f] for f in LENGTH_FIELDS] == [1, 8, 9, 15, 16, 17, 3, 64]
    assert [lengths[1][f] for f in LENGTH_FIELDS] == [5, 7, 2, 0, 0, 0, 0, 0]
    expected = b"".join(m + bytes(align_up(len(m), data_align) - len(m)) for m in messages)
    assert mem.read(head["addr"], len(expected)) == expected
    nic.doorbell = 3
    assert nic.process() == 1 and nic.frames == messages
    assert ring.reap() == [TxDone(0xDEADBEEF, TxStatus.OK, 11, sum(map(len, messages)), 0)]
    assert ring.free_slots == 8 and ring.outstanding == 0


def test_batch_work_item_wraps_around_the_ring_end():
    mem, ring, nic = make_tx(size=8)
    for i in range(6):
        nic.doorbell = ring.send(bytes([i]) * 20)
    nic.process()
    assert len(ring.reap()) == 6 and ring.producer == 6
    messages = [bytes([0x40 + i]) * (i + 1) for i in range(9)]     # header + 2 length slots
    nic.doorbell = ring.send_batch(messages, cookie=99)
    assert nic.doorbell == 9
    assert nic.slot(6, TxWorkItem)["opcode"] == TxOpcode.BATCH
    assert nic.slot(7, TxLengths)["length0"] == 1
    assert nic.slot(8, TxLengths) == {f: (9 if f == "length0" else 0) for f in LENGTH_FIELDS}
    assert mem.read(ring.base, 16) == pack_image(TxLengths, length0=9)   # slot 0 of the ring
    nic.doorbell = ring.send_gather([b"g" * 3, b"h" * 70])             # slots 1..3
    nic.process()
    assert nic.frames[6:] == messages + [b"g" * 3, b"h" * 70]
    done = ring.reap()
    assert [(d.cookie, d.wqe_index, d.messages) for d in done] == [(99, 6, 9), (7, 1, 2)]


def test_gather_work_item_layout():
    mem, ring, nic = make_tx(data_align=16)
    messages = [b"a" * 17, b"b", b"c" * 32]
    assert ring.send_gather(messages) == 4
    head = nic.slot(0, TxWorkItem)
    assert (head["opcode"], head["count"], head["cookie"]) == (TxOpcode.GATHER, 3, 0)
    entries = [nic.slot(1 + i, TxGatherEntry) for i in range(3)]
    assert [e["length"] for e in entries] == [17, 1, 32]
    for entry, message in zip(entries, messages):
        assert entry["addr"] % 16 == 0 and entry["reserved"] == 0
        assert mem.read(entry["addr"], len(message)) == message
    spans = sorted((e["addr"], e["addr"] + e["length"]) for e in entries)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


def test_single_work_item_layout():
    mem, ring, nic = make_tx()
    assert ring.next_cookie == 0
    assert ring.send(b"hello") == 1
    head = nic.slot(0, TxWorkItem)
    assert (head["opcode"], head["count"], head["length"], head["cookie"]) == (
        TxOpcode.SINGLE, 1, 5, 0)
    assert head["addr"] % 8 == 0 and mem.read(head["addr"], 5) == b"hello"
    assert ring.next_cookie == 1
    nic.doorbell = 1
    nic.process()
    assert ring.reap() == [TxDone(0, TxStatus.OK, 1, 5, 0)]


def test_largest_batch():
    mem, ring, nic = make_tx(size=16, staging_size=TX_MAX_MESSAGES * TX_MAX_FRAME,
                             mem_size=1 << 21)
    messages = [bytes([i]) * TX_MAX_FRAME for i in range(TX_MAX_MESSAGES)]
    nic.doorbell = ring.send_batch(messages)
    assert nic.doorbell == 1 + TX_MAX_MESSAGES // 8
    nic.process()
    assert nic.frames == messages
    (done,) = ring.reap()
    assert (done.messages, done.bytes) == (TX_MAX_MESSAGES, TX_MAX_MESSAGES * TX_MAX_FRAME)


@pytest.mark.parametrize("call, exc, text", [
    (lambda r: r.send_batch([]), ValueError, "1 to 64 messages, not 0"),
    (lambda r: r.send_batch([b"x"] * 65), ValueError, "1 to 64 messages, not 65"),
    (lambda r: r.send_gather([b"x", b""]), ValueError, "message 1 is 0 bytes"),
    (lambda r: r.send(b""), ValueError, "message 0 is 0 bytes; a frame is 1 to 9216 bytes"),
    (lambda r: r.send(bytes(TX_MAX_FRAME + 1)), ValueError, "is 9217 bytes"),
    (lambda r: r.send_batch(b"abc"), TypeError, "use send"),
    (lambda r: r.send(5), TypeError, "message 0 must be bytes, not int"),
    (lambda r: r.send(b"x", cookie=1 << 32), ValueError, "cookie must be a 32-bit"),
    (lambda r: r.send_gather([b"x"] * 8), ValueError, "9 slots .* never fits a ring of 8"),
    (lambda r: r.send_batch([bytes(TX_MAX_FRAME)] * 8), ValueError, "never fits"),
    (lambda r: r.raw_work_item([bytes(15)]), ValueError, "16-byte slots, not \\[15\\]"),
    (lambda r: r.raw_work_item([]), ValueError, "one or more 16-byte slots"),
])
def test_tx_refuses_invalid_requests_and_writes_nothing(call, exc, text):
    mem, ring, _ = make_tx()
    before = bytes(mem.buffer)
    with pytest.raises(exc, match=text):
        call(ring)
    assert bytes(mem.buffer) == before and ring.producer == 0 and ring.outstanding == 0


def test_tx_full_ring_refuses_and_writes_nothing():
    mem, ring, nic = make_tx(size=4)
    nic.doorbell = ring.send_batch([b"a"] * 9)                  # 3 slots
    before = bytes(mem.buffer)
    with pytest.raises(RingFullError, match="1 free slots .* needs 3 .* reap completions"):
        ring.send_gather([b"b", b"c"])
    assert bytes(mem.buffer) == before and ring.producer == 3
    nic.doorbell = ring.send(b"d")                               # the last slot
    with pytest.raises(RingFullError):
        ring.send(b"e")
    nic.process(1)
    ring.reap()
    nic.doorbell = ring.send_gather([b"b", b"c"])
    nic.process()
    assert [d.wqe_index for d in ring.reap()] == [3, 0]
    assert nic.frames == [b"a"] * 9 + [b"d", b"b", b"c"]


def test_tx_completion_ring_limits_outstanding_work_items():
    mem, ring, nic = make_tx(size=8, completion_size=2)
    ring.send(b"a")
    nic.doorbell = ring.send(b"b")
    with pytest.raises(RingFullError, match="0 free completion entries"):
        ring.send(b"c")
    nic.process()
    assert len(ring.reap()) == 2
    nic.doorbell = ring.send(b"c")


def test_tx_staging_area_full_refuses_and_recovers():
    mem, ring, nic = make_tx(size=8, staging_size=256)
    nic.doorbell = ring.send(bytes(200))
    before = bytes(mem.buffer)
    with pytest.raises(RingFullError, match="staging area cannot take 200 more bytes"):
        ring.send(bytes(200))
    with pytest.raises(RingFullError):
        ring.send_gather([bytes(40), bytes(40)])
    assert bytes(mem.buffer) == before and ring.free_slots == 7
    nic.doorbell = ring.send(bytes(48))                 # what is left still serves
    nic.process()
    ring.reap()
    nic.doorbell = ring.send(b"x" * 256)                # the whole area once it is empty
    nic.process()
    assert nic.frames[-1] == b"x" * 256


def test_tx_staging_skips_the_end_rather_than_split_a_buffer():
    mem, ring, nic = make_tx(size=8, staging_size=256)
    first = ring.send(bytes(100)), nic.slot(0, TxWorkItem)["addr"]
    nic.doorbell = ring.send(bytes(100))
    nic.process(1)
    assert len(ring.reap()) == 1
    nic.doorbell = ring.send(b"z" * 100)                # 208 + 104 > 256: back to the start
    assert nic.slot(2, TxWorkItem)["addr"] == first[1]
    with pytest.raises(RingFullError):                  # the skipped end stays unused
        ring.send(bytes(40))
    nic.process()
    assert nic.frames[-1] == b"z" * 100 and len(ring.reap()) == 2


def test_tx_traffic_wraps_both_rings():
    rng = seeded(0x7A11)
    mem, ring, nic = make_tx(size=16, completion_size=8, staging_size=3000)
    expected, cookies, done = [], [], []
    for _ in range(600):
        kind = rng.choice(["single", "batch", "gather"])
        n = 1 if kind == "single" else rng.randrange(1, 14)
        messages = [rng.randbytes(rng.randrange(1, 200)) for _ in range(n)]
        cookie = rng.getrandbits(32)
        try:
            if kind == "single":
                nic.doorbell = ring.send(messages[0], cookie=cookie)
            elif kind == "batch":
                nic.doorbell = ring.send_batch(messages, cookie=cookie)
            else:
                nic.doorbell = ring.send_gather(messages, cookie=cookie)
        except RingFullError:
            pass
        else:
            expected += messages
            cookies.append(cookie)
        nic.process(rng.randrange(4))
        done += ring.reap(rng.choice([None, 1, 2]))
    nic.process()
    done += ring.reap()
    print(f"{len(cookies)} work items, {len(expected)} frames")
    assert nic.cons > 20 * ring.size and nic.cq.prod > 20 * ring.cq_size
    assert nic.frames == expected
    assert [d.cookie for d in done] == cookies
    assert all(d.status == TxStatus.OK for d in done)
    assert sum(d.messages for d in done) == len(expected)
    assert ring.free_slots == ring.size and ring.outstanding == 0


def test_doorbell_wraps_at_16_bits():
    mem, ring, nic = make_tx(size=64)
    nop = pack_image(TxWorkItem, opcode=TxOpcode.NOP, cookie=1)
    slots = 0
    while slots < 70_000:
        for _ in range(40):
            nic.doorbell = ring.raw_work_item([nop])
        slots += 40
        assert nic.doorbell == slots & 0xFFFF
        assert nic.process() == 40
        assert [d.wqe_index for d in ring.reap()] == [(slots - 40 + i) % 64 for i in range(40)]
    assert ring.producer == 70_000 & 0xFFFF and ring.free_slots == 64
    nic.doorbell = ring.send_batch([b"after", b"the wrap"])
    nic.process()
    assert nic.frames == [b"after", b"the wrap"] and ring.reap()[0].wqe_index == 70_000 % 64


def test_raw_work_items_complete_with_their_status():
    mem, ring, nic = make_tx(size=8)
    ring.raw_work_item([with_field(TxWorkItem, pack_image(TxWorkItem, cookie=5), "opcode", 0x7F)])
    ring.raw_work_item([pack_image(TxWorkItem, opcode=TxOpcode.BATCH, count=0, cookie=6)])
    ring.raw_work_item([pack_image(TxWorkItem, opcode=TxOpcode.NOP, cookie=7)])
    nic.doorbell = ring.raw_work_item([pack_image(TxWorkItem, opcode=TxOpcode.GATHER, count=1,
                                            cookie=8),
                                       pack_image(TxGatherEntry, addr=MEM_BASE, length=4)])
    assert nic.doorbell == 5
    nic.process()
    assert ring.reap() == [TxDone(5, TxStatus.BAD_OPCODE, 0, 0, 0),
                           TxDone(6, TxStatus.BAD_COUNT, 0, 0, 1),
                           TxDone(7, TxStatus.OK, 0, 0, 2),
                           TxDone(8, TxStatus.OK, 1, 4, 3)]
    assert ring.free_slots == 8


def test_tx_completion_for_another_work_item_raises():
    mem, ring, nic = make_tx(size=8)
    nic.doorbell = ring.send(b"a", cookie=1)
    nic.cq.write(cookie=1, wqe_index=3)
    with pytest.raises(RingCorruptionError, match="is for slot 3 cookie 0x1, but the oldest "
                                                  "work item is at slot 0 with cookie 0x1"):
        ring.reap()


def test_tx_completion_with_wrong_cookie():
    mem, ring, nic = make_tx(size=8)
    ring.send(b"a", cookie=1)
    ring.send(b"b", cookie=2)
    nic.cq.write(cookie=9, wqe_index=0, status=TxStatus.DMA_ERROR)  # header unreadable
    nic.cq.write(cookie=9, wqe_index=1)
    assert ring.reap(1) == [TxDone(9, TxStatus.DMA_ERROR, 0, 0, 0)]
    with pytest.raises(RingCorruptionError, match="cookie 0x9, but .* cookie 0x2"):
        ring.reap()


def test_tx_completion_with_nothing_outstanding_raises():
    mem, ring, nic = make_tx(size=8)
    nic.cq.write(cookie=0, wqe_index=0)
    with pytest.raises(RingCorruptionError, match="no work item outstanding"):
        ring.reap()


# --- events --------------------------------------------------------------------------------

def test_event_ring_phase_over_many_wraps():
    rng = seeded(0xE7E7)
    mem, alloc = make_memory()
    ring = EventRing(mem, alloc, 4)
    nic = PhasedWriter(mem, Event, ring.base, ring.size)
    sent, got = [], []
    for _ in range(300):
        for _ in range(rng.randrange(ring.size - (len(sent) - len(got)) + 1)):
            event = NicEvent(rng.choice(list(EventType)), rng.getrandbits(16),
                             rng.getrandbits(32), rng.getrandbits(48))
            nic.write(type=event.type, source=event.source, info=event.info,
                      timestamp=event.timestamp)
            sent.append(event)
        got += ring.reap(rng.randrange(1, 6))
    got += ring.reap(ring.size)
    assert nic.prod > 50 * ring.size and got == sent
    mem.write(ring.base + nic.prod % ring.size * nbytes(Event),
              with_field(Event, pack_image(Event, phase=(nic.prod // ring.size & 1) ^ 1), "type", 0))
    with pytest.raises(RingCorruptionError, match="not a valid EventType"):
        ring.reap()


# --- queue registers -----------------------------------------------------------------------

#: ``*_CTRL`` values: the queue disabled, enabled.
OFF, ON = QUEUE_CTRL_ENABLE.encode(0), QUEUE_CTRL_ENABLE.encode(1)

def test_tx_queue_register_writes_set_up_a_working_queue():
    regmap = RegisterMap(tx_queues=4)
    mem, alloc = make_memory()
    ring = TxRing(mem, alloc, 16, completion_size=8)
    writes = queue_register_writes(regmap, "tx", 2, ring)
    names = {regmap.addr(reg.name, 2): reg.name for reg in regmap.present()
             if reg.name.startswith("TXQ_")}
    assert [(names[a], v) for a, v in writes] == [
        ("TXQ_CTRL", OFF),
        ("TXQ_BASE_LO", ring.base & 0xFFFF_FFFF), ("TXQ_BASE_HI", ring.base >> 32),
        ("TXQ_SIZE", 16),
        ("TXQ_CQ_BASE_LO", ring.cq_base & 0xFFFF_FFFF), ("TXQ_CQ_BASE_HI", ring.cq_base >> 32),
        ("TXQ_CQ_SIZE", 8), ("TXQ_PROD", 0), ("TXQ_CTRL", ON)]
    assert ring.base >> 32 == 1 and ring.base % 16 == 0 and ring.cq_base % 16 == 0
    nic = FakeTxNic.from_registers(mem, regmap, 2, writes, data_align=8)
    nic.doorbell = ring.send_batch([b"abc", b"de"])
    nic.process()
    assert nic.frames == [b"abc", b"de"] and ring.reap()[0].status == TxStatus.OK


def register_names(regmap: RegisterMap, prefix: str, index: int) -> dict[int, str]:
    return {regmap.addr(reg.name, index): reg.name for reg in regmap.present()
            if reg.name.startswith(prefix)}


def has_registers(prefix: str) -> bool:
    return any(reg.name.startswith(prefix) for reg in RegisterMap())


@pytest.mark.skipif(not has_registers("RXQ_"), reason="the register table has no RXQ_* yet")
def test_rx_queue_register_writes():
    regmap = RegisterMap(rx_queues=8)
    mem, alloc = make_memory()
    ring = RxRing(mem, alloc, 32, buffer_size=2048)
    ring.post(5)                            # buffers posted before the queue is enabled
    names = register_names(regmap, "RXQ_", 7)
    assert [(names[a], v) for a, v in queue_register_writes(regmap, "rx", 7, ring)] == [
        ("RXQ_CTRL", OFF),
        ("RXQ_BASE_LO", ring.base & 0xFFFF_FFFF), ("RXQ_BASE_HI", ring.base >> 32),
        ("RXQ_SIZE", 32),
        ("RXQ_CQ_BASE_LO", ring.cq_base & 0xFFFF_FFFF), ("RXQ_CQ_BASE_HI", ring.cq_base >> 32),
        ("RXQ_PROD", 5), ("RXQ_CTRL", ON)]
    assert ring.cq_size == ring.size and ring.cq_base % 32 == 0 and ring.base % 16 == 0


@pytest.mark.skipif(not has_registers("EQ_"), reason="the register table has no EQ_* yet")
def test_event_queue_register_writes():
    regmap = RegisterMap(event_queues=2)
    mem, alloc = make_memory()
    ring = EventRing(mem, alloc, 8)
    nic = PhasedWriter(mem, Event, ring.base, ring.size)
    for _ in range(11):
        nic.write(type=EventType.COMMIT_DONE)
        ring.reap()
    assert ring.consumer == 11
    names = register_names(regmap, "EQ_", 1)
    assert [(names[a], v) for a, v in queue_register_writes(regmap, "event", 1, ring)] == [
        ("EQ_CTRL", OFF), ("EQ_BASE_LO", ring.base & 0xFFFF_FFFF),
        ("EQ_BASE_HI", ring.base >> 32), ("EQ_SIZE", 8), ("EQ_CONS", 11), ("EQ_CTRL", ON)]


def test_queue_register_writes_refusals():
    mem, alloc = make_memory()
    tx, rx = TxRing(mem, alloc, 4), RxRing(mem, alloc, 4, buffer_size=64)
    with pytest.raises(ValueError, match=r"kind must be one of \['event', 'rx', 'tx'\], "
                                         r"not 'eq'"):
        queue_register_writes(RegisterMap(tx_queues=4), "eq", 0, tx)
    with pytest.raises(TypeError, match="set up with a TxRing, not RxRing"):
        queue_register_writes(RegisterMap(tx_queues=4), "tx", 0, rx)
    with pytest.raises(ValueError, match="tx queue 4 does not exist: this build has 4"):
        queue_register_writes(RegisterMap(tx_queues=4), "tx", 4, tx)
    with pytest.raises(ValueError, match="this build has 0 .*tx_queues"):
        queue_register_writes(RegisterMap(), "tx", 0, tx)


def test_queue_register_writes_without_the_registers():
    class TableWithoutQueues:               # a register table from before RXQ_* existed
        def __getitem__(self, name):
            raise KeyError(name)

    mem, alloc = make_memory()
    rx = RxRing(mem, alloc, 4, buffer_size=64)
    with pytest.raises(NotImplementedError, match=r"no RXQ_\* registers; rx queues cannot"):
        queue_register_writes(TableWithoutQueues(), "rx", 0, rx)
