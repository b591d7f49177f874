"""Toeplitz inputs in and results out over the register bus (the iCEBreaker's reduced core).

The host writes a Toeplitz input (the bytes a parsed frame hashes, up to 36) into the nine
``INJ_DATA`` words and sends it with ``INJ_END``; the injector offers it to
:class:`~hetnic.gateware.rss_steering.RssSteering` as one
:class:`~hetnic.gateware.toeplitz.ToeplitzInput`. Each input's result comes back into a
result queue, from which the host reads the oldest result (``RES_*``) and removes it with
``RES_POP``. The registers are the ``INJ_*`` and ``RES_*`` block of :mod:`hetnic.regs`
(present when ``injector=1``).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import RSS_MAX_INPUT_LEN, PacketMeta
from ..regs import INJ_DATA_WORDS, RegisterMap
from .axil import CsrSignature
from .toeplitz import ToeplitzInput

__all__ = ["HashResult", "HashInjector", "injector_window"]

class HashResult(data.Struct):
    """One entry of the result queue."""
    seq: 16                 # the request's number (INJ_END.seq), wrapping
    hash: 32
    queue: 8
    instance: 4
    generation: 16


def injector_window(regmap: RegisterMap) -> tuple[int, int]:
    """The byte address range ``(lo, hi)`` of the ``INJ_*`` and ``RES_*`` registers."""
    regs = [r for r in regmap.present() if r.name.startswith(("INJ_", "RES_"))]
    if not regs:
        raise ValueError("this register map has no hash injector (build it with injector=1)")
    return min(r.offset for r in regs), max(r.offset for r in regs) + 4


class HashInjector(wiring.Component):
    """Register-bus source of Toeplitz inputs, and queue of their results.

    ``INJ_DATA`` word ``k`` holds input bytes ``4k .. 4k+3`` (byte ``4k`` in bits 31:24).
    ``INJ_END`` offers the input on ``o`` with its ``length`` field (more than 36 bytes act
    as 36 and are counted in ``INJ_STATUS.cut``) if its ``seq`` field is the next request
    number, and waits (no ``ack``) until ``o`` takes it; then the words are cleared, so words
    the host does not write for the next request are 0. An ``INJ_END`` with another ``seq``
    (a repeat after a lost answer) is acknowledged, ignored and counted
    (``INJ_STATUS.ignored``). ``o.valid`` is that write strobe, which holds until ``ack``.

    Every record on ``meta`` enters the result queue (``result_depth`` entries, block RAM)
    with the next ``seq`` (the request's, as records come one per request in order); when
    the queue is full the record is dropped and counted (``RES_STATUS.lost``), so a host that
    stops reading never stalls the bus. ``RES_POP`` removes the oldest result only if its
    ``seq`` is the one written: a repeated write removes nothing more. With no result
    waiting, ``RES_INFO.valid`` and every other ``RES_*`` field read 0. Reads change nothing.

    Parameters
    ----------
    regmap : RegisterMap
        A map built with ``injector=1``; the addresses come from it.
    result_depth : int
        Results the queue holds, at least 2.

    Members
    -------
    csr : In(CsrSignature(16))
        Accesses inside :func:`injector_window` only (a decoder in front sends them). Writes
        to read-only registers are acknowledged and ignored; reads of write-only registers
        return 0.
    o : Out(stream.Signature(ToeplitzInput(36)))
        Inputs, in request order.
    meta : In(stream.Signature(PacketMeta))
        One record per input, in order (``hash``, ``queue``, ``instance`` and ``generation``
        are kept); always ready.
    """
    def __init__(self, regmap: RegisterMap, *, result_depth=256):
        if not isinstance(regmap, RegisterMap) or regmap.params["injector"] != 1:
            raise ValueError(f"regmap must be a RegisterMap built with injector=1, not "
                             f"{regmap!r}")
        if not isinstance(result_depth, int) or isinstance(result_depth, bool) or \
                result_depth < 2:
            raise ValueError(f"result_depth must be an integer of at least 2, not "
                             f"{result_depth!r}")
        self.regmap, self.result_depth = regmap, result_depth
        super().__init__({
            "csr": In(CsrSignature(16)),
            "o": Out(stream.Signature(ToeplitzInput(RSS_MAX_INPUT_LEN))),
            "meta": In(stream.Signature(PacketMeta)),
        })

    def _field(self, reg, name, value):
        """``value`` in field ``name`` of register ``reg``, as a 32-bit word."""
        f = self.regmap[reg].field(name)
        return (value[:f.width] << f.lsb)[:32]

    def _field_of(self, reg, name, word):
        """Field ``name`` of register ``reg`` taken from ``word``."""
        f = self.regmap[reg].field(name)
        return word[f.lsb:f.lsb + f.width]

    def elaborate(self, platform):
        m = Module()
        rm, csr = self.regmap, self.csr
        writing = {name: csr.w_stb & (csr.addr == rm.addr(name))
                   for name in ("INJ_END", "RES_POP")}

        # --- the input: word 0 in the top bits (ToeplitzInput is left-aligned) ---------------
        words = [Signal(32, name=f"word{k}") for k in range(INJ_DATA_WORDS)]
        requests = Signal(16)
        ignored = Signal(8)
        cut = Signal(8)
        length = self._field_of("INJ_END", "length", csr.w_data)
        too_long = length > RSS_MAX_INPUT_LEN
        in_step = self._field_of("INJ_END", "seq", csr.w_data) == requests
        end = writing["INJ_END"] & in_step
        m.d.comb += [
            self.o.valid.eq(end),
            self.o.payload.data.eq(Cat(*reversed(words))),
            self.o.payload.length.eq(Mux(too_long, RSS_MAX_INPUT_LEN, length)),
        ]
        for k, word in enumerate(words):
            with m.If(csr.w_stb & (csr.addr == rm.addr("INJ_DATA", k))):
                m.d.sync += word.eq(csr.w_data)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [word.eq(0) for word in words]
            m.d.sync += [requests.eq(requests + 1), cut.eq(cut + too_long)]
        with m.If(writing["INJ_END"] & ~in_step):
            m.d.sync += ignored.eq(ignored + 1)

        # --- results ---------------------------------------------------------------------------
        m.submodules.results = results = SyncFIFOBuffered(width=HashResult.as_shape().size,
                                                          depth=self.result_depth)
        entry = Signal(HashResult)
        seq = Signal(16)                    # the next record's number
        lost = Signal(16)
        meta = self.meta.payload
        m.d.comb += [
            self.meta.ready.eq(1),
            entry.seq.eq(seq), entry.hash.eq(meta.hash), entry.queue.eq(meta.queue),
            entry.instance.eq(meta.instance), entry.generation.eq(meta.generation),
            results.w_data.eq(entry), results.w_en.eq(self.meta.valid),
        ]
        with m.If(self.meta.valid):
            m.d.sync += seq.eq(seq + 1)
            with m.If(~results.w_rdy):
                m.d.sync += lost.eq(lost + 1)

        head = Signal(HashResult)           # the oldest result, or all zeros
        with m.If(results.r_rdy):
            m.d.comb += head.eq(results.r_data)
        pop_seq = self._field_of("RES_POP", "seq", csr.w_data)
        m.d.comb += results.r_en.eq(writing["RES_POP"] & results.r_rdy & (pop_seq == head.seq))

        # --- bus -----------------------------------------------------------------------------
        m.d.comb += csr.ack.eq(csr.r_stb | (csr.w_stb & ~end) | (end & self.o.ready))
        with m.If(csr.r_stb):
            with m.Switch(csr.addr):
                with m.Case(rm.addr("INJ_STATUS")):
                    m.d.comb += csr.r_data.eq(self._field("INJ_STATUS", "requests", requests) |
                                              self._field("INJ_STATUS", "ignored", ignored) |
                                              self._field("INJ_STATUS", "cut", cut))
                with m.Case(rm.addr("RES_STATUS")):
                    m.d.comb += csr.r_data.eq(
                        self._field("RES_STATUS", "waiting", results.level) |
                        self._field("RES_STATUS", "lost", lost))
                with m.Case(rm.addr("RES_INFO")):
                    m.d.comb += csr.r_data.eq(
                        self._field("RES_INFO", "valid", results.r_rdy) |
                        self._field("RES_INFO", "queue", head.queue) |
                        self._field("RES_INFO", "instance", head.instance))
                with m.Case(rm.addr("RES_HASH")):
                    m.d.comb += csr.r_data.eq(head.hash)
                with m.Case(rm.addr("RES_TAG")):
                    m.d.comb += csr.r_data.eq(
                        self._field("RES_TAG", "seq", head.seq) |
                        self._field("RES_TAG", "generation", head.generation))
        return m
