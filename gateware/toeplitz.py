# Ref: Microsoft "RSS Hashing Functions" (NdisHashFunctionToeplitz) and "Verifying the RSS Hash
#      Calculation"; the software oracle is hetnic.sim.model.toeplitz.toeplitz.
"""Toeplitz hash engine: a programmable-key RSS hash, from one byte per clock to one whole
tuple per clock."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["ToeplitzInput", "ToeplitzHash"]


class ToeplitzInput(data.StructLayout):
    """One hash input for :class:`ToeplitzHash`.

    Parameters
    ----------
    max_input : int
        Longest input in bytes (36 for IPv6 with ports).

    Members
    -------
    data : unsigned(8 * max_input)
        Input bytes, big-endian and left-aligned: input byte 0 is in bits
        ``[8*max_input - 1 : 8*max_input - 8]``, byte ``k`` ``8k`` bits lower. Bytes at and
        after ``length`` are ignored.
    length : unsigned(bits_for(max_input))
        Input length in bytes, 0 to ``max_input``; 0 hashes to 0. Larger values act as
        ``max_input``.
    """
    def __init__(self, max_input):
        if not isinstance(max_input, int) or isinstance(max_input, bool) or max_input < 1:
            raise ValueError(f"max_input must be a positive integer, not {max_input!r}")
        self.max_input = max_input
        super().__init__({
            "data": unsigned(8 * max_input),
            "length": unsigned(bits_for(max_input)),
        })


def _window_xor(bits, key_top):
    """Toeplitz sum of ``bits`` against the top of a key register.

    ``bits`` holds ``n`` input bits, MSB first (its top bit is input bit 0). ``key_top`` is a
    value of at least ``n + 31`` bits whose top bit is the key bit aligned with input bit 0.
    Returns the 32-bit XOR, over the set input bits ``b``, of key bits ``[b, b + 32)``.
    """
    n, width = len(bits), len(key_top)
    assert width >= n + 31
    # Taken per output bit rather than per input bit: bit 31 - j of the sum is the parity of
    # the input ANDed with the key bits [j, j + n). Same logic (an AND plane and 32 XOR trees
    # of n inputs), but 32 wide reductions instead of n 32-bit terms keeps the netlist and the
    # simulator's generated code small.
    return Cat(*((bits & key_top[width - n - j:width - j]).xor()
                 for j in reversed(range(32))))


def _byte_mask(data_value, length, max_input):
    """``data_value`` (``max_input`` bytes, big-endian, left-aligned) with the bytes at and after
    ``length`` cleared."""
    # Byte k of the input lives in bits [8*(max_input-1-k), 8*(max_input-k)).
    return Cat(*(data_value.word_select(max_input - 1 - k, 8)
                 & Mux(length > k, 0xFF, 0x00)
                 for k in reversed(range(max_input))))


class ToeplitzHash(wiring.Component):
    """Toeplitz (Microsoft RSS) hash of a byte string under a programmable key.

    Parameters
    ----------
    bytes_per_cycle : int
        Input bytes folded into the hash per clock, 1 to ``max_input``. ``max_input`` gives
        the fully parallel engine; smaller values shift the input and key through registers
        and trade throughput for area.
    max_input : int
        Longest input in bytes; the key is ``max_input + 4`` bytes. 36 (the default) covers
        every RSS hash type with the 40-byte key.

    Members
    -------
    key : In(unsigned(8 * (max_input + 4)))
        The key as one big-endian integer (``int.from_bytes(key, "big")``): key byte 0 in the
        top 8 bits. The parallel engine reads it in the cycle before the hash appears on ``o``;
        the serial engine copies it in the cycle an input is accepted. Keep it stable while
        hashes are being computed.
    i : In(stream.Signature(ToeplitzInput(max_input)))
        Inputs to hash.
    o : Out(stream.Signature(unsigned(32)))
        One hash per input, in input order, as the number ``toeplitz()`` returns (the bit
        hashed from key bits ``[0, 32)`` is bit 31).

    Notes
    -----
    Timing, counting an input as accepted at the clock edge where ``i.valid & i.ready``:

    * Parallel (``bytes_per_cycle == max_input``): a two-stage pipeline. The hash is on ``o``
      right after the second edge following acceptance (latency 2: input in cycle ``k``, hash
      in cycle ``k + 2``). One hash per clock while ``o`` is not stalled; ``i.ready`` is low
      only while both stages are full and ``o.ready`` is low.
    * Serial: an input of ``length`` bytes occupies the engine for
      ``n = max(1, ceil(min(length, max_input) / bytes_per_cycle))`` clocks
      (:meth:`cycles`). Accepted at edge ``t``, its chunks are folded in at edges
      ``t+1 .. t+n`` and the hash is on ``o`` right after edge ``t+n`` (latency ``n + 1``,
      :meth:`latency`). ``i.ready`` is high in the cycle the last chunk is folded in (when
      ``o`` can take the result), so back-to-back inputs start every ``n`` clocks. While ``o``
      is stalled with a hash, the last chunk of the next input waits.
    """
    def __init__(self, bytes_per_cycle, max_input=36):
        if not isinstance(max_input, int) or isinstance(max_input, bool) or max_input < 1:
            raise ValueError(f"max_input must be a positive integer, not {max_input!r}")
        if (not isinstance(bytes_per_cycle, int) or isinstance(bytes_per_cycle, bool)
                or not 1 <= bytes_per_cycle <= max_input):
            raise ValueError(f"bytes_per_cycle must be an integer from 1 to max_input "
                             f"({max_input}), not {bytes_per_cycle!r}")
        self.bytes_per_cycle = bytes_per_cycle
        self.max_input = max_input
        super().__init__({
            "key": In(unsigned(8 * (max_input + 4))),
            "i": In(stream.Signature(ToeplitzInput(max_input))),
            "o": Out(stream.Signature(unsigned(32))),
        })

    def cycles(self, length: int) -> int:
        """Clocks one input of ``length`` bytes occupies the engine (its issue interval)."""
        length = min(max(length, 0), self.max_input)
        if self.bytes_per_cycle == self.max_input:
            return 1
        return max(1, -(-length // self.bytes_per_cycle))

    def latency(self, length: int) -> int:
        """Cycles from the cycle an input of ``length`` bytes is accepted to the first cycle
        its hash is on ``o``: 2 when parallel, ``cycles(length) + 1`` when serial."""
        if self.bytes_per_cycle == self.max_input:
            return 2
        return self.cycles(length) + 1

    def elaborate(self, platform):
        m = Module()
        if self.bytes_per_cycle == self.max_input:
            self._elaborate_parallel(m)
        else:
            self._elaborate_serial(m)
        return m

    def _elaborate_parallel(self, m):
        # Two register stages: s1 holds the length-masked input, o the hash. Masking in its own
        # stage lets synthesis pack two AND terms per LUT4 into the 32 XOR trees; folding the
        # mask into the trees doubled their size (ECP5: ~13.4k LUT4 vs ~6.7k).
        s1_valid = Signal()
        s1_data = Signal(8 * self.max_input)
        o_free = ~self.o.valid | self.o.ready

        m.d.comb += self.i.ready.eq(~s1_valid | o_free)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(o_free):
            m.d.sync += s1_valid.eq(0)
        with m.If(s1_valid & o_free):
            m.d.sync += [
                self.o.payload.eq(_window_xor(s1_data, self.key)),
                self.o.valid.eq(1),
            ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                s1_data.eq(_byte_mask(self.i.payload.data, self.i.payload.length,
                                      self.max_input)),
                s1_valid.eq(1),
            ]

    def _elaborate_serial(self, m):
        step_bytes = self.bytes_per_cycle
        step = 8 * step_bytes
        chunks = -(-self.max_input // step_bytes)
        pad = step * chunks - 8 * self.max_input     # zeros below the data for a short last chunk

        # Data and a copy of the key shift left by one chunk per clock, so the current chunk
        # and its key window are always the top bits: no wide multiplexers. The data is masked
        # to its length on load, so the bytes after the end contribute nothing.
        shift_data = Signal(step * chunks)
        shift_key = Signal(len(self.key) + pad)
        remaining = Signal(range(self.max_input + 1))   # bytes not yet folded in
        acc = Signal(32)
        busy = Signal()
        # `remaining <= step_bytes`, kept in a flop: it is on the `ready` path.
        last = Signal()

        chunk = shift_data[-step:]
        partial = _window_xor(chunk, shift_key[-(step + 31):])
        o_free = ~self.o.valid | self.o.ready
        fold = busy & (~last | o_free)

        m.d.comb += self.i.ready.eq(~busy | (last & o_free))

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(fold):
            m.d.sync += [
                shift_data.eq(shift_data << step),
                shift_key.eq(shift_key << step),
                remaining.eq(Mux(last, 0, remaining - step_bytes)),
                last.eq(last | (remaining <= 2 * step_bytes)),
                acc.eq(acc ^ partial),
            ]
            with m.If(last):
                m.d.sync += [
                    self.o.payload.eq(acc ^ partial),
                    self.o.valid.eq(1),
                    busy.eq(0),
                ]

        length = self.i.payload.length
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shift_data.eq(Cat(Const(0, pad),
                              _byte_mask(self.i.payload.data, length, self.max_input))),
                shift_key.eq(Cat(Const(0, pad), self.key)),
                remaining.eq(Mux(length > self.max_input, self.max_input, length)),
                last.eq((length <= step_bytes) | (self.max_input <= step_bytes)),
                acc.eq(0),
                busy.eq(1),
            ]
