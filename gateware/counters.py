"""Statistics counters of the RX pipeline, readable over the register bus."""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import DropReason, PacketMeta
from ..regs import RegisterMap
from .axil import CsrSignature

__all__ = ["CounterMemory", "RxCounters"]


class CounterMemory(wiring.Component):
    """An array of wrapping counters kept in a block RAM.

    Each update is a read-modify-write over two cycles; a read port transparent to the write
    port forwards the value written in the previous cycle, so updates may come every cycle,
    to the same entry or not, and none is lost.

    Parameters
    ----------
    depth : int
        Number of counters.
    width : int
        Counter width in bits.
    amount_width : int
        Width of the increment.

    Members
    -------
    inc_stb : In(1)
        Add ``inc_amount`` to counter ``inc_addr`` (visible to ``rd_*`` two cycles later).
    rd_en, rd_addr : In
        Read counter ``rd_addr``; ``rd_data`` holds it two cycles later, until the next
        read.
    """
    def __init__(self, depth, width=32, amount_width=16):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self.depth, self.width = depth, width
        super().__init__({
            "inc_stb": In(1), "inc_addr": In(range(depth)), "inc_amount": In(amount_width),
            "rd_en": In(1), "rd_addr": In(range(depth)), "rd_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr = mem.write_port()
        rmw = mem.read_port(transparent_for=(wr,))
        bus = mem.read_port()

        s1_valid = Signal()
        s1_addr = Signal.like(self.inc_addr)
        s1_amount = Signal.like(self.inc_amount)
        m.d.comb += [rmw.addr.eq(self.inc_addr), rmw.en.eq(1)]
        m.d.sync += [s1_valid.eq(self.inc_stb), s1_addr.eq(self.inc_addr),
                     s1_amount.eq(self.inc_amount)]
        m.d.comb += [wr.addr.eq(s1_addr), wr.data.eq(rmw.data + s1_amount),
                     wr.en.eq(s1_valid)]

        # A register after the block RAM's output (its own output register on ECP5), so the
        # read data enters the register bus's multiplexers from a flop.
        m.d.comb += [bus.addr.eq(self.rd_addr), bus.en.eq(self.rd_en)]
        m.d.sync += self.rd_data.eq(bus.data)
        return m


class RxCounters(wiring.Component):
    """Every counter of the RX pipeline, fed by the metadata records it emits.

    Parameters
    ----------
    regmap : RegisterMap
        Gives the counter registers' offsets and the array sizes.

    Members
    -------
    frame_in_stb : In(1)
        A frame's last beat was accepted; ``frame_in_len`` is its length.
    meta_stb : In(1)
        ``meta`` (a finished record) left the pipeline; ``bucket`` is its RETA index.
    csr : In(CsrSignature)
        Reads of the counter registers (``addr`` is the full byte address). Writes are
        acknowledged and ignored. Memory-held counters answer two cycles after the request.
    """
    def __init__(self, regmap: RegisterMap):
        self.regmap = regmap
        p = regmap.params
        super().__init__({
            "frame_in_stb": In(1), "frame_in_len": In(32),
            "meta_stb": In(1), "meta": In(PacketMeta), "bucket": In(range(p["reta_size"])),
            "csr": In(CsrSignature(16)),
        })

    def elaborate(self, platform):
        m = Module()
        rm, p = self.regmap, self.regmap.params
        meta = self.meta

        def counter(name):
            return Signal(32, name=name.lower())

        frames_in, bytes_in = counter("FRAMES_IN"), counter("BYTES_IN")
        delivered, dropped = counter("FRAMES_DELIVERED"), counter("FRAMES_DROPPED")
        drop_count = Array(Signal(32, name=f"drop_{r.label}") for r in DropReason)
        rule_hits = Array(Signal(32, name=f"rule_hits_{i}") for i in range(p["n_rules"] + 1))

        with m.If(self.frame_in_stb):
            m.d.sync += [frames_in.eq(frames_in + 1), bytes_in.eq(bytes_in + self.frame_in_len)]
        with m.If(self.meta_stb):
            with m.If(meta.drop == DropReason.NONE):
                m.d.sync += delivered.eq(delivered + 1)
            with m.Else():
                m.d.sync += dropped.eq(dropped + 1)
                with m.If(meta.drop < len(DropReason)):
                    m.d.sync += drop_count[meta.drop].eq(drop_count[meta.drop] + 1)
            with m.If(meta.rule <= p["n_rules"]):
                m.d.sync += rule_hits[meta.rule].eq(rule_hits[meta.rule] + 1)

        m.submodules.queue_packets = q_pkts = CounterMemory(p["queues"], amount_width=1)
        m.submodules.queue_bytes = q_bytes = CounterMemory(p["queues"], amount_width=16)
        m.submodules.bucket_packets = buckets = CounterMemory(p["reta_size"], amount_width=1)
        delivered_stb = self.meta_stb & (meta.drop == DropReason.NONE) & (meta.queue < p["queues"])
        m.d.comb += [
            q_pkts.inc_stb.eq(delivered_stb), q_pkts.inc_addr.eq(meta.queue),
            q_pkts.inc_amount.eq(1),
            q_bytes.inc_stb.eq(delivered_stb), q_bytes.inc_addr.eq(meta.queue),
            q_bytes.inc_amount.eq(meta.length),
            buckets.inc_stb.eq(self.meta_stb), buckets.inc_addr.eq(self.bucket),
            buckets.inc_amount.eq(1),
        ]

        # Bus reads: flop counters answer at once, memory counters one cycle later.
        csr = self.csr
        req = csr.r_stb | csr.w_stb
        mem_wait = Signal()
        mem_sel = Signal(2)

        def in_array(name):
            reg = rm[name]
            lo = reg.offset
            return (csr.addr >= lo) & (csr.addr < lo + rm.count(reg) * reg.stride), \
                (csr.addr - lo)[2:16]

        with m.If(req & ~mem_wait):
            m.d.comb += csr.ack.eq(1)
            for name, sig in (("FRAMES_IN", frames_in), ("BYTES_IN", bytes_in),
                              ("FRAMES_DELIVERED", delivered), ("FRAMES_DROPPED", dropped)):
                with m.If(csr.addr == rm.addr(name)):
                    m.d.comb += csr.r_data.eq(sig)
            for name, arr in (("DROP_COUNT", drop_count), ("RULE_HITS", rule_hits)):
                hit, index = in_array(name)
                with m.If(hit):
                    m.d.comb += csr.r_data.eq(arr[index])
            for sel, (name, mem) in enumerate((("QUEUE_PACKETS", q_pkts),
                                               ("QUEUE_BYTES", q_bytes),
                                               ("BUCKET_PACKETS", buckets)), start=1):
                hit, index = in_array(name)
                m.d.comb += mem.rd_addr.eq(index)
                with m.If(hit & csr.r_stb):
                    m.d.comb += [mem.rd_en.eq(1), csr.ack.eq(0)]
                    m.d.sync += [mem_wait.eq(1), mem_sel.eq(sel)]
        mem_ready = Signal()                # rd_data holds the counter (a cycle later)
        m.d.sync += mem_ready.eq(mem_wait & ~mem_ready)
        with m.If(mem_ready):
            m.d.comb += csr.ack.eq(1)
            m.d.sync += mem_wait.eq(0)
            with m.Switch(mem_sel):
                for sel, mem in ((1, q_pkts), (2, q_bytes), (3, buckets)):
                    with m.Case(sel):
                        m.d.comb += csr.r_data.eq(mem.rd_data)
        return m
