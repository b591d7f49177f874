"""The exact-match flow table: 5-tuple entries installed by the host, checked before the rules.

Geometry (:mod:`hetnic.regs`): ``FLOW_BUCKETS`` (256) buckets of ``FLOW_WAYS`` (4) ways, one
block-RAM memory per way (all ways of a bucket are read in one cycle), and a ``FLOW_STASH``
(8) entry stash in flip-flops for inserts whose bucket is full: 1,032 entries.

Hash: CRC-32 of the packed :class:`~hetnic.protocol.FlowKey`, its low 8 bits the bucket
(:func:`hetnic.sim.model.flow_table.flow_bucket`). It is fixed, so the RSS key can change
without moving a flow. A CRC is affine over GF(2): each bucket bit is the parity of a fixed
subset of the 297 key bits (derived here from the model by linearity), a tree of XORs with no
key register. A fixed-key Toeplitz hash would cost the same; the CRC has ``zlib.crc32`` as an
independent oracle.

Commit: the host stages inserts and deletes (``FLOW_ENTRY``, ``FLOW_OP``) into a journal of
up to ``FLOW_JOURNAL`` changes; the lookup never sees them. ``COMMIT`` applies the journal
while the register file copies the rules: the RX pipeline is then empty and holds new frames
(see :class:`~hetnic.gateware.rx_pipeline.RxPipeline`), so every frame sees the table either
before or after a whole batch. Placement is done here, at staging time, from an occupancy map
of the table as it will be after the commit: the first free way of the bucket, else the first
free stash entry, else the insert is refused (``FLOW_RESULT.status`` 1) and counted
(``refused_stb`` -> ``FLOW_REFUSED``). Duplicate keys are not looked for (the driver keeps
its keys and refuses them); with duplicates the lowest slot would win.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import FLOW_HIT_RULE, FlowEntry, FlowKey, PacketMeta, RuleAction
from ..regs import (FLOW_BUCKETS, FLOW_ENTRY_WORDS, FLOW_JOURNAL, FLOW_STASH, FLOW_WAYS,
                    FlowOp, FlowStatus, RegisterMap)
from ..sim.model.flow_table import flow_bucket
from .axil import CsrSignature, registered_reads
from .classifier import drop_reason, or_tree

__all__ = ["FlowTable", "flow_hash", "meta_key"]

_KEY_BITS = data.Layout.cast(FlowKey).size
_BUCKET_BITS = (FLOW_BUCKETS - 1).bit_length()
_SLOT_BITS = (FLOW_BUCKETS * FLOW_WAYS + FLOW_STASH - 1).bit_length()
_CHUNK = 32             # key bits compared per flop in the lookup's compare stage
_OUT_DEPTH = 16         # records the output FIFO holds (the stages hold at most 6)


def _hash_masks():
    zero = flow_bucket(0)
    masks = [0] * _BUCKET_BITS
    for i in range(_KEY_BITS):
        diff = flow_bucket(1 << i) ^ zero
        for j in range(_BUCKET_BITS):
            if diff >> j & 1:
                masks[j] |= 1 << i
    return zero, masks


_HASH_ZERO, _HASH_MASKS = _hash_masks()


def flow_hash(key) -> Value:
    """The bucket of a packed :class:`FlowKey` value, as logic: per bit the parity of a fixed
    subset of the key's bits (equal to :func:`~hetnic.sim.model.flow_table.flow_bucket`)."""
    key = Value.cast(key)
    return Cat(*(((key & mask).xor()) ^ (_HASH_ZERO >> j & 1)
                 for j, mask in enumerate(_HASH_MASKS)))


def flow_hash_partials(key) -> Value:
    """The bucket's parities split by 32-bit chunk of the key: ``_BUCKET_BITS`` bits per
    chunk; the XOR of all chunks' bits is :func:`flow_hash` (the constant in chunk 0)."""
    key = Value.cast(key)
    parts = []
    for lo in range(0, _KEY_BITS, _CHUNK):
        chunk = key[lo:lo + _CHUNK]
        const = _HASH_ZERO if lo == 0 else 0
        parts.append(Cat(*(((chunk & (mask >> lo)).xor()) ^ (const >> j & 1)
                           for j, mask in enumerate(_HASH_MASKS))))
    return Cat(*parts)


def _fold_partials(partials: Value) -> Value:
    """:func:`flow_hash` from :func:`flow_hash_partials`."""
    n = len(partials) // _BUCKET_BITS
    return Cat(*(Cat(*(partials[k * _BUCKET_BITS + j] for k in range(n))).xor()
                 for j in range(_BUCKET_BITS)))


def meta_key(meta) -> Value:
    """The :class:`FlowKey` of a :class:`PacketMeta` view, packed."""
    return Cat(meta.flags.ipv6, meta.ip_proto, meta.src_port, meta.dst_port, meta.src_addr,
               meta.dst_addr)


def _chunks_equal(a: Value, b: Value) -> Value:
    """One bit per ``_CHUNK`` bits of ``a`` and ``b``: that chunk is equal."""
    return Cat(*(a[k:k + _CHUNK] == b[k:k + _CHUNK] for k in range(0, len(a), _CHUNK)))


class FlowTable(wiring.Component):
    """Look every frame's 5-tuple up in the flow table; a hit replaces the rules' action.

    A stream stage after the classifier. A record whose frame is IPv4 or IPv6 and whose
    :class:`FlowKey` equals a committed entry leaves with ``rule = FLOW_HIT_RULE`` and the
    entry's action (``instance``, ``reta_offset``, ``reta_size_log2``; ``drop`` the parse
    error unless ``pass_errors``, else ``RULE`` if the action drops, else ``NONE``, as the
    classifier decides it); any other record passes unchanged. Of several matching slots the
    lowest wins (the bucket's ways, then the stash).

    Timing: six stages (``s1``: the bucket hash, as parities per 32-bit key chunk;
    ``s2``: the ways' block RAMs read; ``s3``: their data in flops; ``s4``: every
    candidate's key compared 32 bits per flop; ``s5``: the first hit, one-hot; ``s6``: its
    action) that move every cycle, then a 16-record FIFO to ``o``: a latency of 8 cycles
    when ``o`` does not stall, one record per cycle while ``o.ready`` is high. ``i.ready``
    is a flop: it falls while the records in the stages and the FIFO would fill it.

    Parameters
    ----------
    regmap : RegisterMap
        The register table (FLOW_* offsets); ``n_rules`` bounds the commit's apply time.

    Members
    -------
    i, o : stream of PacketMeta
    pass_errors : In(1)
    csr : In(CsrSignature(16))
        Accesses to FLOW_ENTRY, FLOW_OP, FLOW_RESULT and FLOW_STATUS (``addr`` the full byte
        address). Reads and FLOW_ENTRY writes are answered in their fourth cycle; a FLOW_OP
        write when its change is staged (about six cycles; it waits while a commit applies).
    commit_apply : In(1)
        The RX pipeline is empty and a commit is applying (held until ``commit_done``).
    commit_done : In(1)
        The commit ends in this cycle; the journal was applied before it.
    refused_stb : Out(1)
        An insert was refused (bucket and stash full).
    """
    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        # The journal is applied while the rules are copied (n_rules * 32 + 2 cycles), which
        # an op in progress can delay by up to 4 cycles.
        if FLOW_JOURNAL + 2 + 4 > 32 * regmap.params["n_rules"] + 2:
            raise ValueError(f"a journal of FLOW_JOURNAL = {FLOW_JOURNAL} changes is not "
                             f"applied within a commit's rule copy with n_rules = "
                             f"{regmap.params['n_rules']}")
        self.regmap = regmap
        super().__init__({
            "i": In(stream.Signature(PacketMeta)),
            "o": Out(stream.Signature(PacketMeta)),
            "pass_errors": In(1),
            "csr": In(CsrSignature(16)),
            "commit_apply": In(1), "commit_done": In(1),
            "refused_stb": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ways = []
        for w in range(FLOW_WAYS):
            m.submodules[f"way{w}"] = mem = Memory(shape=FlowEntry, depth=FLOW_BUCKETS, init=[])
            ways.append(mem)
        stash = [Signal(FlowEntry, name=f"stash{s}") for s in range(FLOW_STASH)]
        reads = [mem.read_port() for mem in ways]
        writes = [mem.write_port() for mem in ways]
        self._elaborate_lookup(m, reads, stash)
        self._elaborate_updates(m, writes, stash)
        return m

    def _elaborate_lookup(self, m, reads, stash):
        s1_valid, s2_valid, s3_valid, s4_valid, s5_valid = (Signal(name=f"s{k}_valid")
                                                            for k in range(1, 6))
        s1_meta, s2_meta, s3_meta, s4_meta = (Signal(PacketMeta, name=f"s{k}_meta")
                                              for k in range(1, 5))
        s1_lookup, s2_lookup, s3_lookup = (Signal(name=f"s{k}_lookup") for k in range(1, 4))
        # The stages move every cycle: no clock enable (one `ready` enabling the flops of six
        # stages was a long, wide net). Records queue in `out_fifo`; `i.ready` is a flop
        # that promises every accepted record a place there.
        s1_advance = s2_advance = s3_advance = s4_advance = s5_advance = o_advance = Const(1)
        self._elaborate_output(m)

        # s1: the key's bucket as parities per 32-bit chunk (XOR trees from the input
        # slice's flops), folded into the RAMs' address (a 10-input XOR per bit). `lookup`:
        # the frame is IPv4 or IPv6.
        s1_partials = Signal(-(-_KEY_BITS // _CHUNK) * _BUCKET_BITS)
        s1_bucket = Signal(_BUCKET_BITS)
        m.d.comb += s1_bucket.eq(_fold_partials(s1_partials))
        with m.If(s1_advance):
            m.d.sync += [s1_valid.eq(self.i.valid & self.i.ready), s1_meta.eq(self.i.payload),
                         s1_partials.eq(flow_hash_partials(meta_key(self.i.payload))),
                         s1_lookup.eq(self.i.payload.flags.ipv4 | self.i.payload.flags.ipv6)]
        # s2: the bucket's ways come out of the block RAMs.
        for port in reads:
            m.d.comb += [port.addr.eq(s1_bucket), port.en.eq(s2_advance)]
        with m.If(s2_advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_meta.eq(s1_meta), s2_lookup.eq(s1_lookup)]
        # s3: the ways in flops (the RAMs' clock-to-out leaves no room for a compare).
        s3_ways = [Signal(FlowEntry, name=f"s3_way{w}") for w in range(len(reads))]
        with m.If(s3_advance):
            m.d.sync += [s3_valid.eq(s2_valid), s3_meta.eq(s2_meta), s3_lookup.eq(s2_lookup)]
            m.d.sync += [way.eq(port.data) for way, port in zip(s3_ways, reads)]
        # s4: every candidate's key compared in 32-bit chunks, each into a flop.
        candidates = s3_ways + stash
        key = meta_key(s3_meta)
        n = len(candidates)
        chunks = -(-_KEY_BITS // _CHUNK)
        s4_terms = [Signal(chunks + 2, name=f"s4_terms{k}") for k in range(n)]
        s4_actions = [Signal(RuleAction, name=f"s4_action{k}") for k in range(n)]
        with m.If(s4_advance):
            m.d.sync += [s4_valid.eq(s3_valid), s4_meta.eq(s3_meta)]
            for term, action, c in zip(s4_terms, s4_actions, candidates):
                m.d.sync += [term.eq(Cat(_chunks_equal(key, c.key.as_value()), c.valid,
                                         s3_lookup)),
                             action.eq(c.action)]
        # s5: the first hit, one-hot (as the classifier's second stage).
        s5_meta, s5_first, s5_any = Signal(PacketMeta), Signal(n), Signal()
        s5_actions = [Signal(RuleAction, name=f"s5_action{k}") for k in range(n)]
        hits = Signal(n)
        m.d.comb += hits.eq(Cat(*(t.all() for t in s4_terms)))
        with m.If(s5_advance):
            m.d.sync += [s5_valid.eq(s4_valid), s5_meta.eq(s4_meta),
                         s5_first.eq(hits & (~hits + 1)[:n]), s5_any.eq(hits.any())]
            m.d.sync += [a5.eq(a4) for a5, a4 in zip(s5_actions, s4_actions)]
        # o: the one-hot selects the action.
        width = len(s5_actions[0].as_value())
        action = Signal(RuleAction)
        m.d.comb += action.eq(or_tree([a.as_value() & s5_first[k].replicate(width)
                                       for k, a in enumerate(s5_actions)]))
        s6_valid, s6_meta = self._s6_valid, self._s6_meta
        with m.If(o_advance):
            m.d.sync += [s6_valid.eq(s5_valid), s6_meta.eq(s5_meta)]
            with m.If(s5_any):
                m.d.sync += [
                    s6_meta.rule.eq(FLOW_HIT_RULE),
                    s6_meta.instance.eq(action.instance),
                    s6_meta.reta_offset.eq(action.reta_offset),
                    s6_meta.reta_size_log2.eq(action.reta_size_log2),
                    s6_meta.drop.eq(drop_reason(s5_meta.error, self.pass_errors, action.drop)),
                ]

    def _elaborate_output(self, m):
        """``out_fifo`` after the last stage (``s6``), and the credit behind ``i.ready``:
        records in the stages plus records in the FIFO never exceed its depth."""
        self._s6_valid, self._s6_meta = Signal(name="s6_valid"), Signal(PacketMeta,
                                                                      name="s6_meta")
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(
            width=data.Layout.cast(PacketMeta).size, depth=_OUT_DEPTH)
        m.d.comb += [fifo.w_en.eq(self._s6_valid), fifo.w_data.eq(self._s6_meta),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        held = Signal(range(_OUT_DEPTH + 1))      # records accepted and not yet taken
        ready = Signal(init=1)
        next_held = Signal.like(held)
        m.d.comb += [
            next_held.eq(held + (self.i.valid & self.i.ready) - (self.o.valid & self.o.ready)),
            self.i.ready.eq(ready),
        ]
        # Room for two more after this cycle: the flop is a cycle late, so it may admit one
        # more record before it falls.
        m.d.sync += [held.eq(next_held), ready.eq(next_held <= _OUT_DEPTH - 2)]

    def _elaborate_updates(self, m, writes, stash):
        """The staging registers, the op state machine and the journal's apply."""
        rm, csr = self.regmap, self.csr
        staging = [Signal(32, name=f"flow_entry{k}") for k in range(FLOW_ENTRY_WORDS)]
        staged_entry = Signal(FlowEntry)
        m.d.comb += staged_entry.eq(Cat(*staging))
        result_slot, result_status = Signal(_SLOT_BITS), Signal(3)
        entries = Signal(_SLOT_BITS + 1)
        journal_len = Signal(range(FLOW_JOURNAL + 1))

        result_reg, status_reg = rm["FLOW_RESULT"], rm["FLOW_STATUS"]
        readable = [(rm.addr("FLOW_ENTRY", 0, k), staging[k]) for k in range(FLOW_ENTRY_WORDS)]
        readable += [
            (rm.addr("FLOW_RESULT"), Cat(result_slot, Const(0, 16 - _SLOT_BITS), result_status)),
            (rm.addr("FLOW_STATUS"), Cat(entries[:11], Const(0, 5), journal_len[:6])),
        ]
        assert status_reg.field("staged").lsb == 16 and result_reg.field("status").lsb == 16
        step, data_ = registered_reads(m, csr, readable)
        entry_sel = Signal(FLOW_ENTRY_WORDS)
        hit_op = Signal()
        m.d.sync += [entry_sel.eq(Cat(csr.addr == rm.addr("FLOW_ENTRY", 0, k)
                                      for k in range(FLOW_ENTRY_WORDS))),
                     hit_op.eq(csr.addr == rm.addr("FLOW_OP"))]
        with m.If(step == 2):
            m.d.sync += csr.r_data.eq(data_)
        op_done = Signal()
        m.d.comb += csr.ack.eq((step == 3) & (~hit_op | csr.r_stb | op_done))
        with m.If((step == 3) & csr.w_stb):
            for k, word in enumerate(staging):
                with m.If(entry_sel[k]):
                    m.d.sync += word.eq(csr.w_data)

        # The journal: (slot, entry) changes, applied in order at the commit.
        m.submodules.journal = journal = Memory(
            shape=data.StructLayout({"slot": _SLOT_BITS, "entry": FlowEntry}),
            depth=FLOW_JOURNAL, init=[])
        j_w, j_r = journal.write_port(), journal.read_port()
        # The occupancy of the table after the staged changes: a bit per way of a bucket.
        m.submodules.occupancy = occupancy = Memory(shape=FLOW_WAYS, depth=FLOW_BUCKETS,
                                                    init=[])
        occ_w, occ_r = occupancy.write_port(), occupancy.read_port()
        stash_occ = Signal(FLOW_STASH)

        applying, applied = Signal(), Signal()
        self._elaborate_op(m, step, hit_op, op_done, staged_entry, result_slot,
                           result_status, entries, journal_len, j_w, occ_w, occ_r,
                           stash_occ, applying | self.commit_apply)

        # Apply: read journal entry k, write it the next cycle.
        apply_at = Signal(range(FLOW_JOURNAL + 1))
        landing, land_last = Signal(), Signal()
        issuing = applying & (apply_at != journal_len)
        m.d.comb += [j_r.addr.eq(apply_at), j_r.en.eq(1)]
        m.d.sync += landing.eq(issuing)
        with m.If(issuing):
            m.d.sync += apply_at.eq(apply_at + 1)
        with m.If(self.commit_apply & ~applying & ~applied & ~self._op_busy):
            m.d.sync += [applying.eq(1), apply_at.eq(0)]
        with m.If(applying & ~issuing & ~landing):
            m.d.sync += [applying.eq(0), applied.eq(1), journal_len.eq(0)]
        with m.If(self.commit_done):
            m.d.sync += applied.eq(0)
        slot, entry = j_r.data.slot, j_r.data.entry
        bucket, way = slot[2:], slot[:2]
        assert FLOW_WAYS == 4
        for w, port in enumerate(writes):
            m.d.comb += [port.addr.eq(bucket), port.data.eq(entry),
                         port.en.eq(landing & (slot < FLOW_BUCKETS * FLOW_WAYS) & (way == w))]
        for s, reg in enumerate(stash):
            with m.If(landing & (slot == FLOW_BUCKETS * FLOW_WAYS + s)):
                m.d.sync += reg.eq(entry)

    def _elaborate_op(self, m, step, hit_op, op_done, staged_entry, result_slot,
                      result_status, entries, journal_len, j_w, occ_w, occ_r, stash_occ,
                      hold):
        """One FLOW_OP: START (hash or slot into a flop), READ (the bucket's occupancy),
        DECIDE (place or refuse, journal it, answer)."""
        csr, op_reg = self.csr, self.regmap["FLOW_OP"]
        op = Signal(2)
        del_slot = Signal(_SLOT_BITS)
        bucket = Signal(_BUCKET_BITS)
        stash_base = FLOW_BUCKETS * FLOW_WAYS
        self._op_busy = busy = Signal()
        m.d.comb += [occ_r.addr.eq(bucket), occ_r.en.eq(1)]
        with m.FSM(name="flow_op"):
            with m.State("IDLE"):
                with m.If((step == 3) & hit_op & csr.w_stb & ~hold):
                    m.d.sync += [op.eq(op_reg.field("op").bits(csr.w_data)),
                                 del_slot.eq(op_reg.field("slot").bits(csr.w_data))]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += busy.eq(1)
                with m.If(op == FlowOp.INSERT):
                    m.d.sync += bucket.eq(flow_hash(staged_entry.key.as_value()))
                with m.Else():
                    m.d.sync += bucket.eq(del_slot[2:])
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += busy.eq(1)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += busy.eq(1)
                self._decide(m, op, del_slot, bucket, staged_entry, result_slot,
                             result_status, entries, journal_len, j_w, occ_w, occ_r,
                             stash_occ, stash_base)
                m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += [busy.eq(1), op_done.eq(1)]
                m.next = "IDLE"

    def _decide(self, m, op, del_slot, bucket, staged_entry, result_slot, result_status,
                entries, journal_len, j_w, occ_w, occ_r, stash_occ, stash_base):
        occ = occ_r.data
        free_way = Signal(FLOW_WAYS)            # one-hot: the first free way, or 0
        free_stash = Signal(FLOW_STASH)         # one-hot: the first free stash entry, or 0
        m.d.comb += [free_way.eq(~occ & (occ + 1)[:FLOW_WAYS]),
                     free_stash.eq(~stash_occ & (stash_occ + 1)[:FLOW_STASH])]
        m.d.comb += [occ_w.addr.eq(bucket), j_w.addr.eq(journal_len)]
        journal_full = journal_len == FLOW_JOURNAL

        def stage(slot, entry, occ_bits=None):
            m.d.comb += [j_w.en.eq(1), j_w.data.slot.eq(slot), j_w.data.entry.eq(entry)]
            m.d.sync += [journal_len.eq(journal_len + 1), result_slot.eq(slot),
                         result_status.eq(FlowStatus.OK)]
            if occ_bits is not None:
                m.d.comb += [occ_w.en.eq(1), occ_w.data.eq(occ_bits)]

        way_index = Cat(free_way[1] | free_way[3], free_way[2] | free_way[3])
        entry = Signal(FlowEntry)
        m.d.comb += [entry.eq(staged_entry), entry.valid.eq(1)]
        stash_index = or_tree([Const(s, _SLOT_BITS) & free_stash[s].replicate(_SLOT_BITS)
                               for s in range(FLOW_STASH)])
        del_is_stash = del_slot >= stash_base
        del_stash = (del_slot - stash_base)[:(FLOW_STASH - 1).bit_length()]
        del_way = del_slot[:2]
        with m.If(journal_full):
            m.d.sync += result_status.eq(FlowStatus.JOURNAL_FULL)
        with m.Elif(op == FlowOp.INSERT):
            with m.If(free_way.any()):
                stage(Cat(way_index, bucket), entry, occ | free_way)
                m.d.sync += entries.eq(entries + 1)
            with m.Elif(free_stash.any()):
                stage(stash_base + stash_index, entry)
                m.d.sync += [stash_occ.eq(stash_occ | free_stash), entries.eq(entries + 1)]
            with m.Else():
                m.d.sync += result_status.eq(FlowStatus.FULL)
                m.d.comb += self.refused_stb.eq(1)
        with m.Elif(op == FlowOp.DELETE):
            with m.If(del_slot >= stash_base + FLOW_STASH):
                m.d.sync += result_status.eq(FlowStatus.BAD_SLOT)
            with m.Elif(del_is_stash):
                with m.If(stash_occ.bit_select(del_stash, 1)):
                    stage(del_slot, 0)
                    m.d.sync += [stash_occ.bit_select(del_stash, 1).eq(0),
                                 entries.eq(entries - 1)]
                with m.Else():
                    m.d.sync += result_status.eq(FlowStatus.BAD_SLOT)
            with m.Elif(occ.bit_select(del_way, 1)):
                stage(del_slot, 0, occ & ~(Const(1, FLOW_WAYS) << del_way)[:FLOW_WAYS])
                m.d.sync += entries.eq(entries - 1)
            with m.Else():
                m.d.sync += result_status.eq(FlowStatus.BAD_SLOT)
        with m.Else():
            m.d.sync += result_status.eq(FlowStatus.BAD_OP)
