# Ref: Microsoft, "RSS Hashing Types" and "Verifying the RSS Hash Calculation".
"""The RSS hash stage: picks a frame's hash type, builds the Toeplitz input, hashes it."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import HashType, ParseError, PacketMeta, RSS_KEY_LEN, RSS_MAX_INPUT_LEN
from .skid import SkidBuffer
from .toeplitz import ToeplitzHash

__all__ = ["choose_hash_type", "greater_than", "RssHashStage"]


def choose_hash_type(m, meta, hash_enable):
    """The hash type of a record (combinational), following Microsoft RSS: an L4 type when
    the frame has that L4 header and the type is enabled, else the address-only type of its
    IP version when enabled, else ``NONE``. Errored frames hash as ``NONE``."""
    hash_type = Signal(HashType, name="hash_type")
    flags = meta.flags

    def pick(l4_tcp, l4_udp, l3):
        with m.If(flags.tcp & hash_enable[l4_tcp]):
            m.d.comb += hash_type.eq(l4_tcp)
        with m.Elif(flags.udp & hash_enable[l4_udp]):
            m.d.comb += hash_type.eq(l4_udp)
        with m.Elif(hash_enable[l3]):
            m.d.comb += hash_type.eq(l3)

    with m.If(meta.error == ParseError.NONE):
        with m.If(flags.ipv4):
            pick(HashType.IPV4_TCP, HashType.IPV4_UDP, HashType.IPV4)
        with m.Elif(flags.ipv6):
            pick(HashType.IPV6_TCP, HashType.IPV6_UDP, HashType.IPV6)
    return hash_type


def greater_than(a, b, chunk=32):
    """``a > b`` for unsigned values of equal width, as per-``chunk`` compares combined from
    the top: short carry chains side by side instead of one as long as the operands (a
    128-bit compare is one 64-cell carry chain on ECP5)."""
    assert len(a) == len(b)
    result = 0
    for lsb in range(0, len(a), chunk):           # lowest chunk first, so the top one wins
        hi, lo = a[lsb:lsb + chunk], b[lsb:lsb + chunk]
        result = (hi > lo) | ((hi == lo) & result)
    return result


class RssHashStage(wiring.Component):
    """Fills ``hash`` and ``hash_type`` of each record.

    The Toeplitz input is src addr, dst addr, src port, dst port in network order: 8, 12, 32
    or 36 bytes. With ``symmetric`` set the addresses are put in ascending order and, on
    their own, the ports too, so both directions of a flow hash alike with any key.

    Parameters
    ----------
    bytes_per_cycle : int
        Toeplitz input bytes hashed per clock (1 .. 36); see :class:`ToeplitzHash`.

    Members
    -------
    i, o : stream of PacketMeta
        Records in and out, in order. Throughput is that of the hash engine: one record per
        ``ceil(input_len / bytes_per_cycle)`` cycles (one per cycle when fully parallel).
    key : In(320)
        RSS key as a big-endian integer. Stable while records are inside.
    hash_enable : In(8)
        Bit n enables ``HashType`` n.
    symmetric : In(1)
    """
    def __init__(self, bytes_per_cycle):
        if (not isinstance(bytes_per_cycle, int) or isinstance(bytes_per_cycle, bool)
                or not 1 <= bytes_per_cycle <= RSS_MAX_INPUT_LEN):
            raise ValueError(f"bytes_per_cycle must be an integer from 1 to "
                             f"{RSS_MAX_INPUT_LEN}, not {bytes_per_cycle!r}")
        self.bytes_per_cycle = bytes_per_cycle
        super().__init__({
            "i": In(stream.Signature(PacketMeta)),
            "o": Out(stream.Signature(PacketMeta)),
            "key": In(8 * RSS_KEY_LEN), "hash_enable": In(8), "symmetric": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = ToeplitzHash(self.bytes_per_cycle, RSS_MAX_INPUT_LEN)
        # Records wait here while their hash is computed; deep enough for the engine's
        # pipeline so a fully parallel engine still takes one record per cycle.
        m.submodules.pending = pending = SyncFIFOBuffered(width=len(self.i.payload.as_value()),
                                                          depth=4)
        # Two register slices before the engine, each `i.ready` from a flop: the first
        # holds the hash type and the symmetric-mode address and port compares, the second
        # the Toeplitz input chosen by them (the compares and the input select in one cycle
        # were too long a path at 125 MHz on ECP5). Two cycles of latency, full throughput.
        meta = self.i.payload
        hash_type = choose_hash_type(m, meta, self.hash_enable)
        m.submodules.a_slice = a_slice = SkidBuffer(data.StructLayout({
            "meta": PacketMeta, "swap_addr": 1, "swap_port": 1}))
        m.d.comb += [
            a_slice.i.valid.eq(self.i.valid), self.i.ready.eq(a_slice.i.ready),
            a_slice.i.payload.meta.eq(meta), a_slice.i.payload.meta.hash_type.eq(hash_type),
            a_slice.i.payload.meta.hash.eq(0),
            # Symmetric mode: ascending addresses, ascending ports.
            a_slice.i.payload.swap_addr.eq(self.symmetric &
                                           greater_than(meta.src_addr, meta.dst_addr)),
            a_slice.i.payload.swap_port.eq(self.symmetric & (meta.src_port > meta.dst_port)),
        ]
        a = a_slice.o.payload
        meta, swap_addr, swap_port = a.meta, a.swap_addr, a.swap_port
        src = Mux(swap_addr, meta.dst_addr, meta.src_addr)
        dst = Mux(swap_addr, meta.src_addr, meta.dst_addr)
        sport = Mux(swap_port, meta.dst_port, meta.src_port)
        dport = Mux(swap_port, meta.src_port, meta.dst_port)

        # Input bytes left-aligned (byte 0 in the top bits) in a 36-byte field.
        width = 8 * RSS_MAX_INPUT_LEN
        tuple_data = Signal(width)
        tuple_len = Signal(range(RSS_MAX_INPUT_LEN + 1))
        with m.Switch(meta.hash_type):
            with m.Case(HashType.IPV4):
                m.d.comb += [tuple_data.eq(Cat(Const(0, width - 64), dst[:32], src[:32])),
                             tuple_len.eq(8)]
            with m.Case(HashType.IPV4_TCP, HashType.IPV4_UDP):
                m.d.comb += [tuple_data.eq(Cat(Const(0, width - 96), dport, sport,
                                               dst[:32], src[:32])),
                             tuple_len.eq(12)]
            with m.Case(HashType.IPV6):
                m.d.comb += [tuple_data.eq(Cat(Const(0, width - 256), dst, src)),
                             tuple_len.eq(32)]
            with m.Case(HashType.IPV6_TCP, HashType.IPV6_UDP):
                m.d.comb += [tuple_data.eq(Cat(dport, sport, dst, src)), tuple_len.eq(36)]

        m.submodules.t_slice = t_slice = SkidBuffer(data.StructLayout({
            "meta": PacketMeta, "data": len(tuple_data), "len": len(tuple_len)}))
        m.d.comb += [
            t_slice.i.valid.eq(a_slice.o.valid), a_slice.o.ready.eq(t_slice.i.ready),
            t_slice.i.payload.meta.eq(meta), t_slice.i.payload.data.eq(tuple_data),
            t_slice.i.payload.len.eq(tuple_len),
        ]
        t_valid, t = t_slice.o.valid, t_slice.o.payload
        m.d.comb += t_slice.o.ready.eq(engine.i.ready & pending.w_rdy)

        # Fork: a record enters the engine and the FIFO in the same cycle.
        m.d.comb += [
            engine.key.eq(self.key),
            engine.i.payload.data.eq(t.data),
            engine.i.payload.length.eq(t.len),
            engine.i.valid.eq(t_valid & pending.w_rdy),
            pending.w_data.eq(t.meta),
            pending.w_en.eq(t_valid & engine.i.ready),
        ]

        # Join: the oldest record leaves with the oldest hash.
        out = Signal(PacketMeta)
        m.d.comb += [
            out.eq(pending.r_data),
            out.hash.eq(engine.o.payload),
            self.o.payload.eq(out),
            self.o.valid.eq(pending.r_rdy & engine.o.valid),
            pending.r_en.eq(self.o.ready & engine.o.valid),
            engine.o.ready.eq(self.o.ready & pending.r_rdy),
        ]
        return m
