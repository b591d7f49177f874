"""The register file: identification, shadowed configuration with an atomic commit."""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import MS_RSS_DEFAULT_KEY, Rule, RuleAction
from ..regs import RULE_STRIDE, RULE_WORDS, RegisterMap
from .axil import CsrSignature, one_hot_select
from .reta import RetaPortSignature

__all__ = ["RegisterFile", "RuleShadows"]

#: Words of the rule shadow memory per rule: the register stride. The words past
#: :data:`~hetnic.regs.RULE_WORDS` are not registers and are never written.
_RULE_SLOTS = RULE_STRIDE // 4
#: Identification registers, read-only values from the register table.
_ID_REGS = ("ID", "VERSION", "PARAMS0", "PARAMS1", "PARAMS2", "CAPS")


class RuleShadows(wiring.Component):
    """The rule shadows in one block RAM and their copy into the active rules.

    Word ``w`` of rule ``r`` is at ``r * 32 + w``. The bus reads and writes it through
    ``bus_*``; ``copy_stb`` (while not ``busy``) starts the copy: every word is read, its
    data registered, then written into ``rules``, one word per cycle (``n_rules * 32 + 2``
    cycles of ``busy``). ``copy_done`` is high in the cycle the last word is written (the
    clock edge that ends it).

    Parameters
    ----------
    n_rules : int

    Members
    -------
    bus_addr : In(range(n_rules * 32))
        The word the bus accesses (the read port's address while not ``busy``).
    bus_w_en : In(1)
    bus_w_data : In(32)
        Write ``bus_w_data`` to ``bus_addr`` (the caller keeps this low while ``busy``).
    r_data : Out(32)
        The word addressed two cycles earlier (the read data goes into a flop first);
        while ``busy`` it follows the copy instead.
    copy_stb : In(1)
    busy, copy_done : Out(1)
    rules : Out(data.ArrayLayout(Rule, n_rules))
        The active rules.
    """
    def __init__(self, n_rules: int):
        self.n_rules = n_rules
        super().__init__({
            "bus_addr": In(range(n_rules * _RULE_SLOTS)), "bus_w_en": In(1),
            "bus_w_data": In(32), "r_data": Out(32),
            "copy_stb": In(1), "busy": Out(1), "copy_done": Out(1),
            "rules": Out(data.ArrayLayout(Rule, n_rules)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_rules
        m.submodules.rule_mem = rule_mem = Memory(shape=32, depth=n * _RULE_SLOTS, init=[])
        rule_w = rule_mem.write_port()
        rule_r = rule_mem.read_port(transparent_for=(rule_w,))
        copying = Signal()
        copy_addr = Signal(len(rule_r.addr))    # the rule word being read
        copy_last = copy_addr == n * _RULE_SLOTS - 1
        # The read data is registered (the block RAM's output register) before it goes
        # anywhere: `landing` marks the cycle `r_data` holds word `copy_at`.
        m.d.sync += self.r_data.eq(rule_r.data)
        reading, landing = Signal(), Signal()
        read_at, copy_at = Signal.like(copy_addr), Signal.like(copy_addr)
        read_last, landing_last = Signal(), Signal()
        m.d.sync += [reading.eq(copying), read_at.eq(copy_addr),
                     read_last.eq(copying & copy_last),
                     landing.eq(reading), copy_at.eq(read_at), landing_last.eq(read_last)]
        m.d.comb += [self.busy.eq(copying | reading | landing),
                     self.copy_done.eq(landing_last),
                     rule_r.addr.eq(Mux(self.busy, copy_addr, self.bus_addr)),
                     rule_w.addr.eq(self.bus_addr), rule_w.data.eq(self.bus_w_data),
                     rule_w.en.eq(self.bus_w_en)]
        with m.If(self.copy_stb & ~copying & ~reading & ~landing):
            m.d.sync += [copying.eq(1), copy_addr.eq(0)]
        with m.If(copying):
            m.d.sync += copy_addr.eq(copy_addr + 1)
            with m.If(copy_last):
                m.d.sync += copying.eq(0)
        with m.If(landing):
            for r in range(n):
                rule = self.rules[r].as_value()
                for w in range(RULE_WORDS):
                    with m.If(copy_at == r * _RULE_SLOTS + w):
                        bits = rule[32 * w:32 * (w + 1)]
                        m.d.sync += bits.eq(self.r_data[:len(bits)])
        return m


class RegisterFile(wiring.Component):
    """Decodes the register table of :mod:`hetnic.regs` and holds the configuration.

    Every ``shadow`` register has two copies: the bus reads and writes the shadow; the
    pipeline sees the active copy. ``COMMIT`` raises ``commit_pending``; the pipeline answers
    with ``commit_apply`` at a frame boundary and keeps the pipeline empty while
    ``commit_pending`` stays high. The rule shadows live in a memory (:class:`RuleShadows`:
    one block RAM; a rule
    is :data:`~hetnic.regs.RULE_WORDS` words, and flip-flops plus a read-back multiplexer
    for every rule word cost more than the rest of the core): the apply copies them into the active rules word by word,
    ``n_rules * 32`` cycles, then in one cycle (``commit_done``) copies every other shadow
    (key, control words), increments ``generation`` and lowers ``commit_pending``. The bus
    waits (no ``ack``) for a rule access or a write during the copy. The RETA lives in the
    indirection table and the counters in the counter block: their accesses are forwarded
    (``reta``, ``counters``) from the access's second cycle.

    The address decode and the read multiplexer are registered (:meth:`_elaborate_bus`), so
    accesses are not answered in their first cycle: a register write in the second, a
    register read in the third, a rule read in the fourth; forwarded accesses when their
    block answers.

    Parameters
    ----------
    regmap : RegisterMap

    Members
    -------
    csr : In(CsrSignature(16))
    commit_pending : Out(1)
        COMMIT was written and not yet applied. A further COMMIT while pending is merged.
    commit_apply : In(1)
        The pipeline is empty at a frame boundary: start applying (only while
        ``commit_pending``; the pipeline must stay empty until ``commit_done``).
    commit_done : Out(1)
        The apply ends in this cycle: the active copies and ``generation`` change at its
        clock edge.
    key, hash_enable, symmetric, pass_errors, max_frame, direct_ethertype, default_action,
    rules, generation : Out
        The active configuration. ``key`` is the 40-byte RSS key as one big-endian integer.
    reta : Out(RetaPortSignature(reta_size))
        ``RETA`` accesses, to the indirection table's ``bus`` (``wiring.connect``); its
        ``busy`` reads as ``COMMIT_STATUS.busy``.
    counters : Out(CsrSignature(16))
        Accesses to the counter registers, to the counter block.
    flows : Out(CsrSignature(16))
        Accesses to the flow table's registers (``FLOW_ENTRY`` to ``FLOW_STATUS``), to the
        flow table (:class:`~hetnic.gateware.flow_table.FlowTable`); idle in a build without
        it (``flow_table`` 0).
    """
    def __init__(self, regmap: RegisterMap):
        self.regmap = regmap
        p = regmap.params
        ctrl = regmap["CTRL"]
        super().__init__({
            "csr": In(CsrSignature(16)),
            "commit_pending": Out(1), "commit_apply": In(1), "commit_done": Out(1),
            # The active copies start out equal to the shadows' reset values.
            "key": Out(320, init=int.from_bytes(MS_RSS_DEFAULT_KEY, "big")),
            "hash_enable": Out(8, init=regmap.reset_value("CTRL") & ctrl.field("hash_enable").mask),
            "symmetric": Out(1), "pass_errors": Out(1),
            "max_frame": Out(16, init=regmap.reset_value("MAX_FRAME")),
            "direct_ethertype": Out(16, init=regmap.reset_value("DIRECT_ETHERTYPE")),
            "default_action": Out(RuleAction, init={
                "reta_size_log2": p["reta_size"].bit_length() - 1}),
            "rules": Out(data.ArrayLayout(Rule, p["n_rules"])),
            "generation": Out(16),
            "reta": Out(RetaPortSignature(p["reta_size"])),
            "counters": Out(CsrSignature(16)),
            **({"flows": Out(CsrSignature(16))} if p["flow_table"] else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rules = rules = RuleShadows(self.regmap.params["n_rules"])
        shadows = self._shadow_registers()
        pending = Signal()
        m.d.comb += [self.commit_pending.eq(pending),
                     rules.copy_stb.eq(self.commit_apply & pending),
                     self.commit_done.eq(rules.copy_done), self.rules.eq(rules.rules)]
        # The rules are copied word by word; every other shadow when the copy ends.
        with m.If(self.commit_done):
            m.d.sync += [sig.eq(value) for sig, value in self._active_copies(shadows)]
            m.d.sync += [self.generation.eq(self.generation + 1), pending.eq(0)]
        self._elaborate_bus(m, shadows, rules, pending)
        return m

    def _shadow_registers(self):
        """The shadow registers the bus writes, other than the rules: ``{address: signal}``
        with each at its register's reset value, in the register table's order."""
        rm = self.regmap

        def shadow(name, index=0, word=0):
            return Signal(32, init=rm.reset_value(name, index),
                          name=f"shadow_{name.lower()}_{index}_{word}")

        writable = {rm.addr(name): shadow(name)
                    for name in ("CTRL", "MAX_FRAME", "DIRECT_ETHERTYPE", "DEFAULT_ACTION")}
        writable.update({rm.addr("RSS_KEY", k): shadow("RSS_KEY", k) for k in range(10)})
        return writable

    def _active_copies(self, shadows):
        """``(active, shadow value)`` pairs: what ``commit_done`` copies, other than the
        rules."""
        rm = self.regmap
        ctrl, ctrl_reg = shadows[rm.addr("CTRL")], rm["CTRL"]
        action = self.default_action.as_value()

        def word(name):
            return shadows[rm.addr(name)]

        return [
            (self.hash_enable, ctrl[ctrl_reg.field("hash_enable").lsb:][:8]),
            (self.symmetric, ctrl[ctrl_reg.field("symmetric").lsb]),
            (self.pass_errors, ctrl[ctrl_reg.field("pass_errors").lsb]),
            (self.max_frame, word("MAX_FRAME")[:16]),
            (self.direct_ethertype, word("DIRECT_ETHERTYPE")[:16]),
            (action, word("DEFAULT_ACTION")[:len(action)]),
            # Key word 0 holds key bytes 0..3, byte 0 in its top bits: word 0 goes on top.
            (self.key, Cat(*reversed([shadows[rm.addr("RSS_KEY", k)] for k in range(10)]))),
        ]

    def _elaborate_bus(self, m, shadows, rules, pending):
        """The bus. The decode is registered: in an access's first cycle every "which
        target, which register" compare goes from ``csr.addr`` into a flop (the address
        holds until ``ack``), and from the second cycle (``decoded``) only those flops steer
        the access. A register read goes through a registered one-hot multiplexer and is
        answered in the third cycle. Into ``csr.r_data`` there is then only a choice between
        four flop outputs."""
        rm, p, csr = self.regmap, self.regmap.params, self.csr
        writable = list(shadows.items())
        reta_base, rule_base = rm.addr("RETA"), rm.addr("RULE")
        in_reta = (csr.addr >= reta_base) & (csr.addr < reta_base + 4 * p["reta_size"])
        in_counters = 0
        for reg in (r for r in rm.present() if r.access == "counter"):
            in_counters |= ((csr.addr >= reg.offset) &
                            (csr.addr < reg.offset + rm.count(reg) * reg.stride))
        in_rules = ((csr.addr >= rule_base) & (csr.addr < rule_base + RULE_STRIDE * p["n_rules"])
                    & ((csr.addr - rule_base)[2:2 + (_RULE_SLOTS - 1).bit_length()] < RULE_WORDS))
        # The blocks that answer for themselves: (name, address in range, their read data).
        blocks = [("reta", in_reta, self.reta.r_data),
                  ("counters", in_counters, self.counters.r_data),
                  ("rules", in_rules, rules.r_data)]
        if p["flow_table"]:
            flow_lo, flow_hi = rm.addr("FLOW_ENTRY"), rm.addr("FLOW_STATUS") + 4
            blocks.append(("flows", (csr.addr >= flow_lo) & (csr.addr < flow_hi),
                           self.flows.r_data))
        readable = [(rm.addr(name), rm.ro_value(name)) for name in _ID_REGS]
        readable += [(rm.addr("COMMIT_STATUS"), Cat(pending, self.reta.busy)),
                     (rm.addr("GENERATION"), self.generation)]
        readable += writable
        hit = {name: Signal(name=f"hit_{name}") for name, _, _ in blocks}
        hit_local = Signal(name="hit_local")
        read_sel, write_sel = Signal(len(readable)), Signal(len(writable))
        hit_commit = Signal()
        m.d.sync += [hit[name].eq(in_block) for name, in_block, _ in blocks]
        m.d.sync += [
            hit_local.eq(functools.reduce(operator.and_, (~in_block for _, in_block, _ in blocks))),
            read_sel.eq(Cat(csr.addr == addr for addr, _ in readable)),
            write_sel.eq(Cat(csr.addr == addr for addr, _ in writable)),
            hit_commit.eq(csr.addr == rm.addr("COMMIT")),
        ]
        decoded, local_ready = Signal(), Signal()
        stb = csr.r_stb | csr.w_stb
        m.d.sync += [decoded.eq(stb & ~csr.ack), local_ready.eq(decoded & stb & ~csr.ack)]
        local_data = Signal(32)
        m.d.sync += local_data.eq(one_hot_select(read_sel, [value for _, value in readable]))

        m.d.comb += [
            self.reta.addr.eq((csr.addr - reta_base)[2:2 + len(self.reta.addr)]),
            self.reta.w_data.eq(csr.w_data),
            self.counters.addr.eq(csr.addr),
            self.counters.w_data.eq(csr.w_data),
            rules.bus_addr.eq((csr.addr - rule_base)[2:2 + len(rules.bus_addr)]),
            rules.bus_w_data.eq(csr.w_data),
            # The answer: the selects are flops, so this is a four- or five-way AND-OR per bit.
            csr.r_data.eq(one_hot_select(
                Cat(*hit.values(), hit_local), [r_data for _, _, r_data in blocks] + [local_data])),
        ]
        ports = [("reta", self.reta), ("counters", self.counters)]
        if p["flow_table"]:
            m.d.comb += [self.flows.addr.eq(csr.addr), self.flows.w_data.eq(csr.w_data)]
            ports.append(("flows", self.flows))
        for name, port in ports:
            with m.If(decoded & hit[name]):
                m.d.comb += [port.r_stb.eq(csr.r_stb), port.w_stb.eq(csr.w_stb),
                             csr.ack.eq(port.ack)]
        self._rule_access(m, decoded & hit["rules"], rules)
        # Writes wait while the rules are copied: the commit takes the shadows as they are
        # when it ends, and a write in the middle would land in half of it.
        write = decoded & hit_local & csr.w_stb & ~rules.busy
        with m.If(write | (local_ready & hit_local & csr.r_stb)):
            m.d.comb += csr.ack.eq(1)
        with m.If(write & hit_commit & rm["COMMIT"].field("commit").bits(csr.w_data)):
            m.d.sync += pending.eq(1)
        for k, (_, sig) in enumerate(writable):
            with m.If(write & write_sel[k]):
                m.d.sync += sig.eq(csr.w_data)

    def _rule_access(self, m, selected, rules):
        """A bus access to a rule word, from its decoded cycle (``selected``): a write is
        performed and answered at once; a read is answered when the word has been read and
        registered, two cycles after the decode. Both wait while the rules are copied (the
        read port is then the copy's: a read starts again after it)."""
        csr = self.csr
        rule_read_wait = Signal(2)              # cycles the rule word has been read for
        with m.If(rules.busy):
            m.d.sync += rule_read_wait.eq(0)
        with m.If(selected):
            with m.If(csr.r_stb & ~rules.busy):
                m.d.sync += rule_read_wait.eq(Mux(rule_read_wait == 2, 0, rule_read_wait + 1))
                m.d.comb += csr.ack.eq(rule_read_wait == 2)
            with m.If(csr.w_stb & ~rules.busy):
                m.d.comb += [rules.bus_w_en.eq(1), csr.ack.eq(1)]

