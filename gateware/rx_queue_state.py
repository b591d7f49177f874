"""The RX queues' registers and ring indices, for :class:`~.rx_queues.RxQueueManager`."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import (QUEUE_CTRL_ENABLE, QUEUE_EQ_ARM, QUEUE_EQ_QUEUE, QUEUE_INDEX,
                    QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA,
                    QUEUE_STATUS_DOORBELL, RegisterMap)
from .axil import CsrSignature
from .queue_registers import (ENTRY_BYTES, STATUS_BITS, QueueWindowDecode, doorbell_ok,
                              field_word, ring_addr_ok, ring_size_ok)

__all__ = ["RxQueueFile", "RxQueueFlags", "SetupBarrier", "ENTRY_BYTES"]

#: Ring registers kept in the configuration memory, one 32-bit lane each. ``PROD`` and the
#: event queue number of ``EQ`` live there too: only the bus writes them.
_CFG_LANES = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI", "PROD", "EQ")
#: Registers whose write (to a disabled queue) sets the queue up: ``CONS`` restarts at 0.
_SETUP_REGS = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI")
#: Width of the frame sequence numbers behind the setup barrier; frames in flight must stay
#: below half of their range.
_SEQ_BITS = 8
_INDEX_BITS = QUEUE_INDEX.width


class SetupBarrier(wiring.Component):
    """Tells when every frame taken before a mark has retired.

    Frames are numbered as they are taken (``start_stb``) and retire in that order
    (``retire_stb``). ``mark_stb`` records the count of frames taken up to and including
    this cycle; ``drained`` is high once that many have retired (combinational, from flops:
    it rises in the cycle after the last of them retires). At most ``2**(seq_bits - 1) - 1``
    frames may be in flight.

    Parameters
    ----------
    seq_bits : int
        Width of the frame counters.

    Members
    -------
    start_stb, retire_stb, mark_stb : In(1)
    drained : Out(1)
    """
    def __init__(self, seq_bits: int = _SEQ_BITS):
        self.seq_bits = seq_bits
        super().__init__({"start_stb": In(1), "retire_stb": In(1), "mark_stb": In(1),
                          "drained": Out(1)})

    def elaborate(self, platform):
        m = Module()
        started, retired, target = (Signal(self.seq_bits, name=name)
                                    for name in ("started", "retired", "target"))
        m.d.sync += [started.eq(started + self.start_stb),
                     retired.eq(retired + self.retire_stb)]
        with m.If(self.mark_stb):
            m.d.sync += target.eq(started + self.start_stb)
        behind = (target - retired)[:self.seq_bits]
        m.d.comb += self.drained.eq((behind == 0) | behind[-1])
        return m


class RxQueueFlags(wiring.Component):
    """The flip-flop state of every RX queue: ``CTRL.enable``, ``EQ.arm`` and ``STATUS``.

    All updates take effect at the next clock edge; all outputs are combinational from the
    flops and the queue numbers.

    Parameters
    ----------
    n_queues : int

    Members
    -------
    bus_queue : In(range(n_queues))
        The queue the bus addresses; the ``bus_*`` inputs and outputs are about it.
    bus_enabled, bus_arm : Out(1)
    bus_status : Out(STATUS_BITS)
    enable_stb : In(1)
        Enable the bus queue.
    disable_stb : In(1)
        Disable the bus queue and clear its ``STATUS`` (wins over ``enable_stb`` and every
        status bit set in the same cycle).
    set_status : In(STATUS_BITS)
        ``STATUS`` bits to set on the bus queue.
    arm_write_stb : In(1)
    arm_value : In(1)
        Write the bus queue's ``EQ.arm``; wins over a disarm of it in the same cycle.
    lookup_queue : In(8)
    lookup_enabled : Out(1)
        ``lookup_queue`` exists and is enabled.
    desc_error_stb, write_error_stb : In(1)
    write_error_queue : In(8)
        Set ``STATUS.dma_error`` of ``lookup_queue`` or of ``write_error_queue``.
    armed_queue : In(8)
    armed : Out(1)
        ``EQ.arm`` of ``armed_queue``.
    disarm_stb : In(1)
        Clear ``EQ.arm`` of ``armed_queue``.
    """
    def __init__(self, n_queues: int):
        self.n_queues = n_queues
        super().__init__({
            "bus_queue": In(range(n_queues)),
            "bus_enabled": Out(1), "bus_arm": Out(1), "bus_status": Out(STATUS_BITS),
            "enable_stb": In(1), "disable_stb": In(1), "set_status": In(STATUS_BITS),
            "arm_write_stb": In(1), "arm_value": In(1),
            "lookup_queue": In(8), "lookup_enabled": Out(1),
            "desc_error_stb": In(1), "write_error_stb": In(1), "write_error_queue": In(8),
            "armed_queue": In(8), "armed": Out(1), "disarm_stb": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        n, qi = self.n_queues, self.bus_queue
        enable = Signal(n)
        arm = Signal(n)
        status = Array(Signal(STATUS_BITS, name=f"q{q}_status") for q in range(n))
        m.d.comb += [
            self.bus_enabled.eq(enable.bit_select(qi, 1)),
            self.bus_arm.eq(arm.bit_select(qi, 1)),
            self.bus_status.eq(status[qi]),
            self.lookup_enabled.eq((self.lookup_queue < n) &
                                   enable.bit_select(self.lookup_queue, 1)),
            self.armed.eq(arm.bit_select(self.armed_queue, 1)),
        ]
        with m.If(self.enable_stb):
            m.d.sync += enable.bit_select(qi, 1).eq(1)
        with m.If(self.disable_stb):
            m.d.sync += enable.bit_select(qi, 1).eq(0)
        for q in range(n):
            dma_error = ((self.desc_error_stb & (self.lookup_queue == q)) |
                         (self.write_error_stb & (self.write_error_queue == q)))
            sets = field_word((QUEUE_STATUS_DMA, dma_error))
            bus = qi == q
            with m.If(self.disable_stb & bus):
                m.d.sync += status[q].eq(0)
            with m.Else():
                m.d.sync += status[q].eq(status[q] | sets | Mux(bus, self.set_status, 0))
            with m.If(self.arm_write_stb & bus):
                m.d.sync += arm[q].eq(self.arm_value)
            with m.Elif(self.disarm_stb & (self.armed_queue == q)):
                m.d.sync += arm[q].eq(0)
        return m


class RxQueueFile(wiring.Component):
    """Per-queue state of the RX queues: the ``RXQ_*`` registers and the consumer indices.

    Storage: ring addresses, sizes, ``PROD`` and the event queue number are in one memory
    (a row of 32-bit lanes per queue), ``CONS`` in a second and the ``NO_BUFFER``/``TOO_LONG``
    counters in a third; enable, arm and ``STATUS`` bits are flip-flops
    (:class:`RxQueueFlags`). Named parts: the lookup side (:meth:`_elaborate_lookup`), the bus
    side (:meth:`_elaborate_bus`, its access FSM), the flags and the :class:`SetupBarrier`.

    Register semantics (what the register table leaves open):

    * ``BASE_*``, ``SIZE`` and ``CQ_BASE_*`` may be written while the queue is disabled;
      writes while it is enabled are dropped (they read back unchanged). Such a write *sets
      the queue up*: ``CONS`` restarts at 0. It is held (``ack`` low) until every frame the
      manager took before it has retired, so nothing of an old setup reaches the new one.
    * ``PROD`` written while disabled is stored unchecked. Written while enabled it is a
      doorbell: accepted when ``PROD_old - CONS <= PROD_new - CONS <= SIZE`` (16-bit
      arithmetic, i.e. it moves forward and posts at most ``SIZE`` buffers); any other value
      is ignored and sets ``STATUS.doorbell``.
    * Writing ``CTRL.enable`` (:data:`~hetnic.regs.QUEUE_CTRL_ENABLE`) to a disabled queue
      enables it if the setup is good: ``SIZE`` a power of two from 2 to 32768 (else
      ``STATUS.bad_size``), both rings 16-byte aligned and ending at or below ``2**64`` (else
      ``STATUS.bad_addr``), ``PROD - CONS <= SIZE`` (else ``STATUS.doorbell``). With any of
      these bits set the queue stays disabled (``CTRL.enable`` reads 0). ``CONS`` is kept:
      a queue disabled and enabled again (``CTRL`` only) resumes where it stopped.
    * Writing ``CTRL.enable`` clear disables the queue at once and clears ``STATUS``.
    * ``EQ``: ``EQ.event_queue`` and ``EQ.arm`` (:data:`~hetnic.regs.QUEUE_EQ_QUEUE`,
      :data:`~hetnic.regs.QUEUE_EQ_ARM`) are stored; ``EQ.arm`` is cleared by
      :attr:`disarm_stb`. A bus write wins over a disarm in the same cycle.
    * ``CONS``, ``STATUS``, ``NO_BUFFER`` and ``TOO_LONG`` ignore writes. Accesses to other
      addresses read 0 and are ignored. ``ack`` comes one cycle after the request, later for
      a held setup write.

    Parameters
    ----------
    regmap : RegisterMap
        A map with ``rx_queues`` >= 1; only its ``RXQ_*`` names and offsets are used.

    Members
    -------
    csr : In(CsrSignature(16))
    lookup_queue : In(8)
        Queue looked up; its state appears on the ``lu_*`` members one cycle later and follows
        it while ``lookup_queue`` holds (writes included).
    lu_valid : Out(1)
        The looked-up queue exists (``lookup_queue < n_queues`` one cycle earlier).
    lu_enabled : Out(1)
        It is enabled (the current value, combinational).
    lu_base, lu_cq_base : Out(64)
    lu_size : Out(32)
    lu_prod, lu_cons : Out(16)
    lu_event_queue : Out(6)
    take_stb : In(1)
        The looked-up queue's descriptor ``lu_cons`` was taken: ``CONS += 1``.
    no_buffer_stb, too_long_stb, desc_error_stb : In(1)
        Count a ``NO_BUFFER`` or ``TOO_LONG`` drop of the looked-up queue, or set its
        ``STATUS.dma_error``.
    write_error_stb : In(1)
    write_error_queue : In(8)
        Set ``STATUS.dma_error`` of another queue (a failed data or completion write).
    armed_queue : In(8)
    armed : Out(1)
        ``EQ.arm`` of ``armed_queue`` (combinational).
    disarm_stb : In(1)
        Clear ``EQ.arm`` of ``armed_queue``.
    frame_start_stb, frame_retire_stb : In(1)
        A frame was taken / retired (retired in the order taken), for the setup barrier.
    """
    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        n = regmap.params["rx_queues"]
        if n < 1:
            raise ValueError(f"the register map must have at least one RX queue, not {n!r} "
                             f"(RegisterMap(rx_queues=...))")
        stride = regmap["RXQ_CTRL"].stride
        if stride & (stride - 1):
            raise ValueError(f"RXQ register stride must be a power of two, not {stride:#x}")
        self.regmap, self.n_queues = regmap, n
        super().__init__({
            "csr": In(CsrSignature(16)),
            "lookup_queue": In(8),
            "lu_valid": Out(1), "lu_enabled": Out(1),
            "lu_base": Out(64), "lu_cq_base": Out(64), "lu_size": Out(32),
            "lu_prod": Out(_INDEX_BITS), "lu_cons": Out(_INDEX_BITS),
            "lu_event_queue": Out(QUEUE_EQ_QUEUE.width),
            "take_stb": In(1), "no_buffer_stb": In(1), "too_long_stb": In(1),
            "desc_error_stb": In(1),
            "write_error_stb": In(1), "write_error_queue": In(8),
            "armed_queue": In(8), "armed": Out(1), "disarm_stb": In(1),
            "frame_start_stb": In(1), "frame_retire_stb": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_queues
        m.submodules.cfg = cfg = Memory(shape=32 * len(_CFG_LANES), depth=n, init=[])
        m.submodules.cons = cons = Memory(shape=_INDEX_BITS, depth=n, init=[])
        m.submodules.counts = counts = Memory(shape=64, depth=n, init=[])   # NO_BUFFER, TOO_LONG
        m.submodules.flags = flags = RxQueueFlags(n)
        m.submodules.barrier = barrier = SetupBarrier(_SEQ_BITS)
        m.d.comb += [
            flags.desc_error_stb.eq(self.desc_error_stb),
            flags.write_error_stb.eq(self.write_error_stb),
            flags.write_error_queue.eq(self.write_error_queue),
            flags.armed_queue.eq(self.armed_queue), flags.disarm_stb.eq(self.disarm_stb),
            self.armed.eq(flags.armed),
            barrier.start_stb.eq(self.frame_start_stb),
            barrier.retire_stb.eq(self.frame_retire_stb),
        ]
        cfg_w = cfg.write_port(granularity=32)
        cons_w = cons.write_port()
        counts_w = counts.write_port(granularity=32)
        lu_queue = self._elaborate_lookup(m, cfg, cons, counts, cfg_w, cons_w, counts_w, flags)
        self._elaborate_bus(m, cfg, cons, counts, cfg_w, cons_w, flags, barrier, lu_queue)
        return m

    def _elaborate_lookup(self, m, cfg, cons, counts, cfg_w, cons_w, counts_w, flags):
        """The lookup side: the ``lu_*`` members from the memories' lookup ports (address
        ``lookup_queue``, data a cycle later), ``CONS += 1`` on ``take_stb`` (it has priority
        over the bus) and the drop counters' read-modify-write. Returns the looked-up queue
        (``lookup_queue`` a cycle earlier)."""
        n = self.n_queues
        cfg_lu = cfg.read_port(transparent_for=(cfg_w,))
        cons_lu = cons.read_port(transparent_for=(cons_w,))
        counts_lu = counts.read_port(transparent_for=(counts_w,))
        lu_queue = Signal(8)
        m.d.sync += lu_queue.eq(self.lookup_queue)
        m.d.comb += [
            cfg_lu.addr.eq(self.lookup_queue), cons_lu.addr.eq(self.lookup_queue),
            counts_lu.addr.eq(self.lookup_queue),
            flags.lookup_queue.eq(lu_queue),
            self.lu_valid.eq(lu_queue < n),
            self.lu_enabled.eq(flags.lookup_enabled),
            self.lu_base.eq(Cat(_lane(cfg_lu, "BASE_LO"), _lane(cfg_lu, "BASE_HI"))),
            self.lu_cq_base.eq(Cat(_lane(cfg_lu, "CQ_BASE_LO"), _lane(cfg_lu, "CQ_BASE_HI"))),
            self.lu_size.eq(_lane(cfg_lu, "SIZE")),
            self.lu_prod.eq(_lane(cfg_lu, "PROD")),
            self.lu_event_queue.eq(_lane(cfg_lu, "EQ")),
            self.lu_cons.eq(cons_lu.data),
        ]
        # The counters are read-modify-written through the lookup port (one frame at a time).
        no_buffer_count, too_long_count = counts_lu.data[:32], counts_lu.data[32:]
        m.d.comb += [
            counts_w.addr.eq(lu_queue),
            counts_w.data.eq(Cat((no_buffer_count + 1)[:32], (too_long_count + 1)[:32])),
            counts_w.en.eq(Cat(self.no_buffer_stb, self.too_long_stb)),
        ]
        with m.If(self.take_stb):
            m.d.comb += [cons_w.addr.eq(lu_queue), cons_w.data.eq(self.lu_cons + 1),
                         cons_w.en.eq(1)]
        return lu_queue

    def _elaborate_bus(self, m, cfg, cons, counts, cfg_w, cons_w, flags, barrier, lu_queue):
        """The bus side: an access reads the addressed queue's memory rows in its first
        cycle (``IDLE``) and is performed in the second (``ACCESS``), except a setup write
        to a disabled queue, which waits in ``SETUP`` for the :class:`SetupBarrier` and a
        cycle without ``take_stb`` (the ``CONS`` write port is then free to restart it)."""
        csr = self.csr
        window, stride, offset = self.regmap.queue_window("RXQ")
        decode = QueueWindowDecode(m, csr.addr, window, stride, self.n_queues)
        qi, word, in_window = decode.queue, decode.word, decode.in_window
        cfg_bus = cfg.read_port()
        cons_bus = cons.read_port(transparent_for=(cons_w,))
        counts_bus = counts.read_port()
        for port in (cfg_bus, cons_bus, counts_bus):
            m.d.comb += port.addr.eq(qi)
        m.d.comb += flags.bus_queue.eq(qi)
        cfg_lane_en = Signal(len(_CFG_LANES))
        cfg_data = Signal(32)
        m.d.comb += [cfg_w.addr.eq(qi), cfg_w.data.eq(cfg_data.replicate(len(_CFG_LANES))),
                     cfg_w.en.eq(cfg_lane_en)]

        def write_lane(name, value):
            m.d.comb += [cfg_data.eq(value), cfg_lane_en.eq(1 << _CFG_LANES.index(name))]

        read_values = _read_values(cfg_bus, cons_bus.data, counts_bus, flags)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(csr.r_stb | csr.w_stb):
                    m.next = "ACCESS"                   # the memory rows of qi are read now
            with m.State("ACCESS"):
                with m.If(csr.r_stb | ~in_window):
                    m.d.comb += csr.ack.eq(1)
                    with m.If(csr.r_stb & in_window):
                        with m.Switch(word):
                            for name, value in read_values.items():
                                with m.Case(offset[name]):
                                    m.d.comb += csr.r_data.eq(value)
                    m.next = "IDLE"
                with m.Elif((word == offset["CTRL"]) |
                            ~decode.is_any(offset[name] for name in _SETUP_REGS) |
                            flags.bus_enabled):
                    m.d.comb += csr.ack.eq(1)
                    m.next = "IDLE"
                    self._live_write(m, word, offset, cfg_bus, cons_bus.data, flags, write_lane)
                with m.Else():
                    # Setup of a disabled queue: wait for the frames in flight.
                    m.d.comb += barrier.mark_stb.eq(1)
                    m.next = "SETUP"
            with m.State("SETUP"):
                with m.If(barrier.drained & ~self.take_stb):
                    m.d.comb += [csr.ack.eq(1), cons_w.addr.eq(qi), cons_w.data.eq(0),
                                 cons_w.en.eq(1)]
                    with m.Switch(word):
                        for name in _SETUP_REGS:
                            with m.Case(offset[name]):
                                write_lane(name, csr.w_data)
                    m.next = "IDLE"


    def _live_write(self, m, word, offset, cfg_row, cons, flags, write_lane):
        """A write performed in its access's second cycle, from the addressed queue's
        configuration row and ``CONS``: ``PROD`` (stored while the queue is disabled, a
        checked doorbell while it is enabled), ``EQ``, and ``CTRL`` (disable, or enable after
        the setup checks). Writes to other registers are ignored."""
        w_data, enabled = self.csr.w_data, flags.bus_enabled
        new_prod, prod = QUEUE_INDEX.bits(w_data), QUEUE_INDEX.bits(_lane(cfg_row, "PROD"))
        setup_ok, setup_status = _setup_checks(cfg_row, cons)
        with m.Switch(word):
            with m.Case(offset["PROD"]):
                with m.If(~enabled | doorbell_ok(new_prod, prod, cons, _lane(cfg_row, "SIZE"))):
                    write_lane("PROD", new_prod)
                with m.Else():
                    m.d.comb += flags.set_status.eq(field_word((QUEUE_STATUS_DOORBELL, 1)))
            with m.Case(offset["EQ"]):
                write_lane("EQ", QUEUE_EQ_QUEUE.bits(w_data))
                m.d.comb += [flags.arm_write_stb.eq(1),
                             flags.arm_value.eq(QUEUE_EQ_ARM.bits(w_data))]
            with m.Case(offset["CTRL"]):
                with m.If(~QUEUE_CTRL_ENABLE.bits(w_data)):
                    m.d.comb += flags.disable_stb.eq(1)
                with m.Elif(~enabled):
                    m.d.comb += [flags.enable_stb.eq(setup_ok),
                                 flags.set_status.eq(setup_status)]


def _lane(port, name):
    """Lane ``name`` (a register of :data:`_CFG_LANES`) of a configuration memory row."""
    return port.data.word_select(_CFG_LANES.index(name), 32)


def _read_values(cfg_row, cons, counts_row, flags):
    """What each register of the addressed queue reads, by name, from its memory rows and
    :class:`RxQueueFlags`' ``bus_*`` outputs."""
    return {
        **{name: _lane(cfg_row, name) for name in _SETUP_REGS},
        "PROD": QUEUE_INDEX.bits(_lane(cfg_row, "PROD")), "CONS": cons,
        "STATUS": flags.bus_status,
        "CTRL": field_word((QUEUE_CTRL_ENABLE, flags.bus_enabled)),
        "EQ": field_word((QUEUE_EQ_QUEUE, _lane(cfg_row, "EQ")), (QUEUE_EQ_ARM, flags.bus_arm)),
        "NO_BUFFER": counts_row.data[:32], "TOO_LONG": counts_row.data[32:],
    }


def _setup_checks(cfg_row, cons):
    """The checks ``CTRL.enable`` applies to a queue, from its configuration row and
    ``CONS``: ``(setup_ok, setup_status)``, the ``STATUS`` bits of every failed check."""
    size = _lane(cfg_row, "SIZE")
    posted = (QUEUE_INDEX.bits(_lane(cfg_row, "PROD")) - cons)[:_INDEX_BITS]
    size_ok = ring_size_ok(size)
    addr_ok = (ring_addr_ok(Cat(_lane(cfg_row, "BASE_LO"), _lane(cfg_row, "BASE_HI")), size) &
               ring_addr_ok(Cat(_lane(cfg_row, "CQ_BASE_LO"), _lane(cfg_row, "CQ_BASE_HI")),
                            size))
    setup_ok = size_ok & addr_ok & (posted <= size)
    setup_status = field_word((QUEUE_STATUS_BAD_SIZE, ~size_ok),
                              (QUEUE_STATUS_DOORBELL, posted > size),
                              (QUEUE_STATUS_BAD_ADDR, ~addr_ok))
    return setup_ok, setup_status
