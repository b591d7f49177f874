"""RSS steering without the parser: Toeplitz hash with the programmable key, then the RETA."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..protocol import RSS_MAX_INPUT_LEN, PacketMeta
from ..params import NicParams
from .axil import CsrSignature
from .registers import RegisterFile
from .reta import IndirectionTable
from .toeplitz import ToeplitzHash, ToeplitzInput

__all__ = ["RssSteering"]


class RssSteering(wiring.Component):
    """The part of :class:`~hetnic.gateware.rx_pipeline.RxPipeline` that picks a frame's
    queue, for a host that parses frames itself.

    A :class:`ToeplitzHash` at a byte per cycle hashes each input with the register file's
    active RSS key; an :class:`IndirectionTable` maps the hash to a queue through
    ``DEFAULT_ACTION``'s RETA slice (``(reta_offset + (hash & (2**reta_size_log2 - 1))) %
    reta_size``), as the full pipeline does for a frame no rule matches. The
    :class:`RegisterFile` is the full pipeline's, with its commit protocol: a commit applies
    when no input is inside, and ``i`` takes nothing while one waits; every record carries
    the generation its input was hashed under. What a host would otherwise get from the
    parser, the hash stage's choice of hash type and input, and the classifier, it computes
    itself (:func:`hetnic.sim.model.toeplitz.select_hash_type`,
    :func:`~hetnic.sim.model.toeplitz.meta_hash_input`).

    Left out, for room on an iCE40 UP5K: the parser, the hash stage's type selection and
    symmetric mode (``CTRL`` is kept but only the host reads it), the classifier's rules
    (``RULE`` shadow writes are kept and never apply) and the counters (their registers do
    not answer: ``BUS_TIMEOUT`` over the UART bridge). ``CAPS`` has ``injector`` set and
    ``symmetric``, ``classifier`` and ``counters`` clear.

    Timing: an input of ``n`` bytes is accepted when the engine is free and leaves as a record
    ``max(1, n) + 2`` cycles later (the engine's ``n + 1``, the table's 1); the next input
    is accepted ``max(1, n)`` cycles after the previous one.

    Parameters
    ----------
    params : NicParams
        A reduced serial core's build (``injector`` set: one byte per cycle and one rule,
        what ``PARAMS0`` reports), such as :data:`~hetnic.params.ICE40_SERIAL_CORE`. Its
        register map holds this block's register file and the
        :class:`~hetnic.gateware.hash_injector.HashInjector` block.

    Members
    -------
    i : In(stream.Signature(ToeplitzInput(36)))
    o : Out(stream.Signature(PacketMeta))
        ``hash``, ``queue``, ``instance``, ``reta_offset``, ``reta_size_log2`` and
        ``generation`` set; every other field 0.
    csr : In(CsrSignature(16))
        The register file's accesses.
    """
    def __init__(self, params: NicParams):
        if not isinstance(params, NicParams) or not params.injector or (
                params.data_width, params.hash_bytes_per_cycle, params.n_rules) != (8, 1, 1):
            raise ValueError(f"params must be a reduced serial core's NicParams (injector=True, "
                             f"a byte per cycle: data_width=8, hash_bytes_per_cycle=1, "
                             f"n_rules=1), not {params!r}")
        self.params = params
        self.regmap = params.regmap()
        super().__init__({
            "i": In(stream.Signature(ToeplitzInput(RSS_MAX_INPUT_LEN))),
            "o": Out(stream.Signature(PacketMeta)),
            "csr": In(CsrSignature(16)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = RegisterFile(self.regmap)
        m.submodules.engine = engine = ToeplitzHash(1, RSS_MAX_INPUT_LEN)
        m.submodules.reta = reta = IndirectionTable(self.regmap.params["reta_size"])

        connect(m, wiring.flipped(self.csr), regs.csr)
        connect(m, regs.reta, reta.bus)

        # --- inputs: none while a commit waits -------------------------------------------------
        m.d.comb += [
            engine.key.eq(regs.key),
            engine.i.payload.eq(self.i.payload),
            engine.i.valid.eq(self.i.valid & ~regs.commit_pending),
            self.i.ready.eq(engine.i.ready & ~regs.commit_pending),
        ]

        # --- hash -> RETA slice of the default action -> queue --------------------------------
        action = regs.default_action
        record = Signal(PacketMeta)
        m.d.comb += [
            record.hash.eq(engine.o.payload),
            record.instance.eq(action.instance),
            record.reta_offset.eq(action.reta_offset),
            record.reta_size_log2.eq(action.reta_size_log2),
            reta.i.payload.eq(record), reta.i.valid.eq(engine.o.valid),
            engine.o.ready.eq(reta.i.ready),
            self.o.valid.eq(reta.o.valid),
            self.o.payload.eq(reta.o.payload),
            self.o.payload.generation.eq(regs.generation),
            reta.o.ready.eq(self.o.ready),
        ]

        # --- commit: when no input is inside --------------------------------------------------
        in_flight = Signal(4)           # inputs accepted whose record has not left (at most 3)
        taken = self.i.valid & self.i.ready
        left = self.o.valid & self.o.ready
        m.d.sync += in_flight.eq(in_flight + taken - left)
        m.d.comb += [
            regs.commit_apply.eq(regs.commit_pending & (in_flight == 0) & ~reta.bus.busy),
            reta.flip_stb.eq(regs.commit_done),
        ]
        return m
