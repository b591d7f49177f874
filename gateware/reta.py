"""The RSS indirection table (RETA) and queue selection."""

from amaranth.hdl import Const, Module, Signal, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import PacketMeta

__all__ = ["reta_index", "RetaPortSignature", "IndirectionTable"]


def reta_index(meta, size):
    """RETA entry chosen for a record: ``(reta_offset + (hash & slice_mask)) % size``.

    ``slice_mask`` is ``(1 << reta_size_log2) - 1``, limited to ``size - 1`` so that a slice
    larger than the table is the whole table. Pure function of the record, so the counters
    and the table compute the same index.
    """
    log2 = size.bit_length() - 1
    # (1 << n) - 1 for n < log2, all ones for larger n.
    slice_mask = Mux(meta.reta_size_log2 >= log2, (1 << log2) - 1,
                     (Const(1, log2 + 1) << meta.reta_size_log2) - 1)
    return (meta.reta_offset + (meta.hash[:log2] & slice_mask))[:log2]


class RetaPortSignature(wiring.Signature):
    """Access to an :class:`IndirectionTable`'s shadow bank by entry index, seen from the
    register file (the table's ``bus`` is its flip). ``wiring.connect`` joins the two.

    Parameters
    ----------
    size : int
        Entries of the table.
    queue_width : int
        Bits per entry.

    Members
    -------
    addr : Out(range(size))
    r_stb, w_stb : Out(1)
        A read or a write of entry ``addr``, held (with ``addr`` and ``w_data``) until
        ``ack``.
    w_data : Out(queue_width)
    ack : In(1)
        A read is answered two cycles after the request (the read data is registered), a
        write when it is performed; neither while ``busy``.
    r_data : In(queue_width)
        Valid with ``ack``.
    busy : In(1)
        The shadow bank is being refreshed after a flip.
    """
    def __init__(self, size: int, queue_width: int = 8):
        self.size, self.queue_width = size, queue_width
        super().__init__({
            "addr": Out(range(size)), "r_stb": Out(1), "w_stb": Out(1),
            "w_data": Out(queue_width), "ack": In(1), "r_data": In(queue_width),
            "busy": In(1),
        })


class IndirectionTable(wiring.Component):
    """Looks up each record's receive queue in a double-banked indirection table.

    The table is two banks in one memory: the pipeline reads the *active* bank, the register
    bus reads and writes the *shadow* bank. ``flip_stb`` (given by the commit logic at a
    frame boundary) swaps the banks in one cycle; the table then copies the new active bank
    into the new shadow bank, one entry per cycle (``busy``, ``size + 1`` cycles), so the
    shadow again equals what is active. Bus reads and writes wait (no ``ack``) while
    ``bus.busy``: the refresh uses the shadow bank's port.

    Parameters
    ----------
    size : int
        Entries, a power of two from 2 to 2048.
    queue_width : int
        Bits per entry.

    Members
    -------
    i : In(stream.Signature(PacketMeta))
        ``i.ready`` depends combinationally on ``o.ready``.
    o : Out(stream.Signature(PacketMeta))
        ``queue`` filled in. One record per cycle, latency 2 cycles.
    bus : In(RetaPortSignature(size, queue_width))
        Shadow-bank access by entry index, and ``busy``: the shadow bank is being
        refreshed.
    flip_stb : In(1)
        Make the shadow bank active. Must only be given while ``bus.busy`` is low and no
        record is inside the table (``i.valid``/``o.valid`` low).
    """
    def __init__(self, size, queue_width=8):
        if not isinstance(size, int) or size < 2 or size > 2048 or size & (size - 1):
            raise ValueError(f"RETA size must be a power of two from 2 to 2048, not {size!r}")
        self.size, self.queue_width = size, queue_width
        super().__init__({
            "i": In(stream.Signature(PacketMeta)),
            "o": Out(stream.Signature(PacketMeta)),
            "bus": In(RetaPortSignature(size, queue_width)),
            "flip_stb": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        size, log2 = self.size, self.size.bit_length() - 1
        # Entry i of both banks starts as queue i: the caller sets the real table up before use.
        m.submodules.mem = mem = Memory(shape=self.queue_width, depth=2 * size,
                                        init=[i % size % (1 << self.queue_width)
                                              for i in range(2 * size)])
        lookup = mem.read_port()
        side = mem.read_port()              # bus reads, and the copy engine's reads
        wr = mem.write_port()

        active = Signal()                   # bank the pipeline reads

        # --- lookup: two pipeline stages. s1 holds the record and its entry index (the
        # index's mask and add end in a flop, not in the memory's address); in s2 the read
        # data is the queue. Each stage loads when it is empty or moves on.
        s1_valid, s2_valid = Signal(), Signal()
        s1_meta, s2_meta = Signal(PacketMeta), Signal(PacketMeta)
        s1_index = Signal(log2)
        s2_advance = ~s2_valid | self.o.ready
        s1_advance = ~s1_valid | s2_advance
        m.d.comb += [
            self.i.ready.eq(s1_advance),
            lookup.addr.eq(active << log2 | s1_index),
            lookup.en.eq(s2_advance),
            self.o.valid.eq(s2_valid),
            self.o.payload.eq(s2_meta),
            self.o.payload.queue.eq(lookup.data),
        ]
        with m.If(s1_advance):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_meta.eq(self.i.payload),
                         s1_index.eq(reta_index(self.i.payload, size))]
        with m.If(s2_advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_meta.eq(s1_meta)]

        # --- shadow refresh after a flip ---------------------------------------------------
        copy_index = Signal(log2 + 1, init=size)    # entry being read; == size when done
        copy_write = Signal()               # side.data holds entry copy_index - 1
        busy = self.bus.busy
        m.d.comb += busy.eq((copy_index != size) | copy_write)
        m.d.comb += side.en.eq(1)
        read_wait = Signal(2)               # cycles a bus read has been under way
        with m.If(self.flip_stb):
            m.d.sync += [active.eq(~active), copy_index.eq(0), copy_write.eq(0),
                         read_wait.eq(0)]
        with m.Elif(busy):
            m.d.sync += read_wait.eq(0)
            m.d.comb += side.addr.eq(active << log2 | copy_index[:log2])
            m.d.sync += [copy_write.eq(copy_index != size),
                         copy_index.eq(Mux(copy_index == size, size, copy_index + 1))]
            with m.If(copy_write):
                m.d.comb += [wr.en.eq(1), wr.data.eq(side.data),
                             wr.addr.eq(~active << log2 | (copy_index - 1)[:log2])]
        with m.Else():
            # --- bus access to the shadow bank ---------------------------------------------
            bus = self.bus
            m.d.comb += side.addr.eq(~active << log2 | bus.addr)
            with m.If(bus.w_stb):
                m.d.comb += [wr.en.eq(1), wr.data.eq(bus.w_data),
                             wr.addr.eq(~active << log2 | bus.addr), bus.ack.eq(1)]
            with m.Elif(bus.r_stb):
                # Address in one cycle, data registered in the next, answer in the third:
                # the block RAM's output goes to a flop, not into the bus's multiplexers.
                m.d.sync += read_wait.eq(Mux(read_wait == 2, 0, read_wait + 1))
                m.d.comb += bus.ack.eq(read_wait == 2)
        m.d.sync += self.bus.r_data.eq(side.data)
        return m
