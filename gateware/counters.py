"""Statistics counters of the RX pipeline, readable over the register bus."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import FLOW_HIT_RULE, DropReason, PacketMeta
from ..regs import RegisterMap
from .axil import CsrSignature, one_hot_select, registered_reads

__all__ = ["count_when", "CounterMemory", "RxCounters"]


def count_when(m, counter, condition):
    """Step the wrapping ``counter`` (a register in ``sync``) by one in every cycle in which
    ``condition`` holds."""
    with m.If(condition):
        m.d.sync += counter.eq(counter + 1)


class CounterMemory(wiring.Component):
    """An array of wrapping counters kept in a block RAM.

    Each update is a read-modify-write over three cycles: the entry is read, the block RAM's
    output goes into a register (its 4 ns clock-to-out leaves no room for an adder behind
    it at 125 MHz on ECP5), then the sum is written. The read port is transparent to the
    write port, and the one update it cannot see (the one written while this one's read
    data is being registered) is forwarded, so updates may come every cycle, to the same
    entry or not, and none is lost.

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
        Add ``inc_amount`` to counter ``inc_addr`` (written two cycles later; a ``rd_*``
        read issued three cycles later or more sees it).
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

        # Stage 1: the read is under way. Stage 2: its data is in `s2_old`; the sum is
        # written. An update in stage 2 writes while the next one is in stage 1, after that
        # one's read: `s2_forward` (compared in stage 1, from flops) says to take the value
        # just written (`written`) instead of `s2_old`.
        s1_valid, s2_valid = Signal(), Signal()
        s1_addr, s2_addr = Signal.like(self.inc_addr), Signal.like(self.inc_addr)
        s1_amount, s2_amount = Signal.like(self.inc_amount), Signal.like(self.inc_amount)
        s2_old, written = Signal(self.width), Signal(self.width)
        s2_forward = Signal()
        m.d.comb += [rmw.addr.eq(self.inc_addr), rmw.en.eq(1)]
        m.d.sync += [
            s1_valid.eq(self.inc_stb), s1_addr.eq(self.inc_addr), s1_amount.eq(self.inc_amount),
            s2_valid.eq(s1_valid), s2_addr.eq(s1_addr), s2_amount.eq(s1_amount),
            s2_old.eq(rmw.data), s2_forward.eq(s2_valid & (s2_addr == s1_addr)),
        ]
        total = Mux(s2_forward, written, s2_old) + s2_amount
        m.d.comb += [wr.addr.eq(s2_addr), wr.data.eq(total), wr.en.eq(s2_valid)]
        m.d.sync += written.eq(total)

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
    flow_refused_stb : In(1)
        The flow table refused an insert (absent in a build without it).
    csr : In(CsrSignature)
        Reads of the counter registers (``addr`` is the full byte address). Every access is
        acknowledged three cycles after its request (the decode and the read multiplexers
        are registered); writes are ignored. A flop counter's answer counts the events
        given before the request's cycle, a memory counter's those given at least four
        cycles before it.
    """
    def __init__(self, regmap: RegisterMap):
        self.regmap = regmap
        p = regmap.params
        super().__init__({
            "frame_in_stb": In(1), "frame_in_len": In(32),
            "meta_stb": In(1), "meta": In(PacketMeta), "bucket": In(range(p["reta_size"])),
            **({"flow_refused_stb": In(1)} if p["flow_table"] else {}),
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
        drop_count = [Signal(32, name=f"drop_{r.label}") for r in DropReason]
        rule_hits = [Signal(32, name=f"rule_hits_{i}") for i in range(p["n_rules"] + 1)]
        has_flows = bool(p["flow_table"])
        if has_flows:
            flow_hits, flow_misses = counter("FLOW_HITS"), counter("FLOW_MISSES")
            flow_refused = counter("FLOW_REFUSED")

        # The flop counters count events registered first, one-hot: which counter to step is
        # then a flop, not a decode of the record in front of a 32-bit adder's enable.
        e_frame, e_frame_len = Signal(), Signal(32)
        e_delivered, e_dropped = Signal(), Signal()
        e_drop = Signal(len(drop_count))            # bit r: count drop reason r
        e_rule = Signal(len(rule_hits))             # bit k: count a hit of rule k
        dropping = self.meta_stb & (meta.drop != DropReason.NONE)
        m.d.sync += [
            e_frame.eq(self.frame_in_stb), e_frame_len.eq(self.frame_in_len),
            e_delivered.eq(self.meta_stb & (meta.drop == DropReason.NONE)),
            e_dropped.eq(dropping),
            e_drop.eq(Cat(dropping & (meta.drop == r) for r in range(len(drop_count)))),
            e_rule.eq(Cat(self.meta_stb & (meta.rule == k) for k in range(len(rule_hits)))),
        ]
        if has_flows:
            e_flow_hit, e_flow_miss, e_flow_refused = Signal(), Signal(), Signal()
            flow_hit = meta.rule == FLOW_HIT_RULE
            looked_up = meta.flags.ipv4 | meta.flags.ipv6
            m.d.sync += [
                e_flow_hit.eq(self.meta_stb & flow_hit),
                e_flow_miss.eq(self.meta_stb & looked_up & ~flow_hit),
                e_flow_refused.eq(self.flow_refused_stb),
            ]
        with m.If(e_frame):
            m.d.sync += [frames_in.eq(frames_in + 1), bytes_in.eq(bytes_in + e_frame_len)]
        count_when(m, delivered, e_delivered)
        count_when(m, dropped, e_dropped)
        for r, counter in enumerate(drop_count):
            count_when(m, counter, e_drop[r])
        for k, counter in enumerate(rule_hits):
            count_when(m, counter, e_rule[k])
        if has_flows:
            count_when(m, flow_hits, e_flow_hit)
            count_when(m, flow_misses, e_flow_miss)
            count_when(m, flow_refused, e_flow_refused)

        m.submodules.queue_packets = q_pkts = CounterMemory(p["queues"], amount_width=1)
        m.submodules.queue_bytes = q_bytes = CounterMemory(p["queues"], amount_width=16)
        m.submodules.bucket_packets = buckets = CounterMemory(p["reta_size"], amount_width=1)
        # The memories' updates are registered too: the bucket index (an add on the record)
        # and the queue compare end in flops, not in a block RAM's address.
        delivered_stb = self.meta_stb & (meta.drop == DropReason.NONE) & (meta.queue < p["queues"])
        for mem, stb, addr, amount in (
                (q_pkts, delivered_stb, meta.queue, 1),
                (q_bytes, delivered_stb, meta.queue, meta.length),
                (buckets, self.meta_stb, self.bucket, 1)):
            m.d.sync += [mem.inc_stb.eq(stb), mem.inc_addr.eq(addr), mem.inc_amount.eq(amount)]

        flops = [(rm.addr(name), sig) for name, sig in (
            ("FRAMES_IN", frames_in), ("BYTES_IN", bytes_in),
            ("FRAMES_DELIVERED", delivered), ("FRAMES_DROPPED", dropped))]
        if has_flows:
            flops += [(rm.addr("FLOW_HITS"), flow_hits), (rm.addr("FLOW_MISSES"), flow_misses),
                      (rm.addr("FLOW_REFUSED"), flow_refused)]
        flops += [(rm.addr("DROP_COUNT", i), sig) for i, sig in enumerate(drop_count)]
        flops += [(rm.addr("RULE_HITS", i), sig) for i, sig in enumerate(rule_hits)]
        mems = (("QUEUE_PACKETS", q_pkts), ("QUEUE_BYTES", q_bytes), ("BUCKET_PACKETS", buckets))
        self._bus_reads(m, flops, mems)
        return m

    def _bus_reads(self, m, flops, mems):
        """Bus reads of the flop counters (``flops``: (address, signal) pairs) and of the
        counter memories (``mems``: (register name, :class:`CounterMemory`) pairs).

        Registered at every step so no address decode or read multiplexer lies on a path
        into the bus: ``step`` counts the cycles of an access (the address holds until
        ``ack``). Step 0: the memories read the address and each "which counter" compare
        goes into a flop. Step 1: the flop counters' multiplexer (one-hot, from those
        flops) into ``flop_data``. Step 2: the chosen value into ``r_data``. Step 3: ``ack``.
        Writes are acknowledged the same way and ignored.
        """
        rm, csr = self.regmap, self.csr
        step, flop_data = registered_reads(m, csr, flops)
        mem_sel = Signal(len(mems))
        hits = []
        for name, mem in mems:
            reg = rm[name]
            m.d.comb += [mem.rd_addr.eq((csr.addr - reg.offset)[2:16]), mem.rd_en.eq(step == 0)]
            hits.append((csr.addr >= reg.offset) &
                        (csr.addr < reg.offset + rm.count(reg) * reg.stride))
        m.d.sync += mem_sel.eq(Cat(*hits))
        with m.If(step == 2):
            # mem_sel and flop_sel are one-hot or zero (an unknown address reads 0).
            m.d.sync += csr.r_data.eq(
                flop_data | one_hot_select(mem_sel, [mem.rd_data for _, mem in mems]))
        m.d.comb += csr.ack.eq(step == 3)
