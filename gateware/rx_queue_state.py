"""The RX queues' registers and ring indices, for :class:`~.rx_queues.RxQueueManager`."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import RegisterMap
from .axil import CsrSignature

__all__ = ["RxQueueFile", "rx_ring_size_ok", "rx_ring_addr_ok",
           "STATUS_BAD_SIZE", "STATUS_DOORBELL", "STATUS_BAD_ADDR", "STATUS_DMA"]

#: Bits of ``RXQ_STATUS`` (the register table names no fields for them).
STATUS_BAD_SIZE, STATUS_DOORBELL, STATUS_BAD_ADDR, STATUS_DMA = 0, 1, 2, 3
#: Ring sizes an RX queue accepts (entries).
MIN_RING, MAX_RING = 2, 32768
#: Bytes of one descriptor and of one completion entry.
ENTRY_BYTES = 16
#: Ring registers kept in the configuration memory, one 32-bit lane each. ``PROD`` and the
#: event queue number of ``EQ`` live there too: only the bus writes them.
_CFG_LANES = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI", "PROD", "EQ")
#: Registers whose write (to a disabled queue) sets the queue up: ``CONS`` restarts at 0.
_SETUP_REGS = ("BASE_LO", "BASE_HI", "SIZE", "CQ_BASE_LO", "CQ_BASE_HI")
#: ``RXQ_EQ``: bits 5:0 event queue, bit 8 arm.
EQ_QUEUE_BITS, EQ_ARM_BIT = 6, 8
#: Width of the frame sequence numbers behind the setup barrier; frames in flight must stay
#: below half of their range.
_SEQ_BITS = 8


def rx_ring_size_ok(size):
    """``size`` (a 32-bit register value) is a power of two from 2 to 32768."""
    return (size >= MIN_RING) & (size <= MAX_RING) & ((size & (size - 1)) == 0)


def rx_ring_addr_ok(base, size):
    """A ring of ``size`` 16-byte entries at ``base`` is 16-byte aligned and ends at or below
    ``2**64``."""
    return (base[:4] == 0) & (base + size * ENTRY_BYTES <= (1 << 64))


class RxQueueFile(wiring.Component):
    """Per-queue state of the RX queues: the ``RXQ_*`` registers and the consumer indices.

    Storage: ring addresses, sizes, ``PROD`` and the event queue number are in one memory
    (a row of 32-bit lanes per queue), ``CONS`` in a second and the ``NO_BUFFER``/``TOO_LONG``
    counters in a third; enable, arm and ``STATUS`` bits are flip-flops.

    Register semantics (what the register table leaves open):

    * ``BASE_*``, ``SIZE`` and ``CQ_BASE_*`` may be written while the queue is disabled;
      writes while it is enabled are dropped (they read back unchanged). Such a write *sets
      the queue up*: ``CONS`` restarts at 0. It is held (``ack`` low) until every frame the
      manager took before it has retired, so nothing of an old setup reaches the new one.
    * ``PROD`` written while disabled is stored unchecked. Written while enabled it is a
      doorbell: accepted when ``PROD_old - CONS <= PROD_new - CONS <= SIZE`` (16-bit
      arithmetic, i.e. it moves forward and posts at most ``SIZE`` buffers); any other value
      is ignored and sets ``STATUS`` bit 1.
    * Writing ``CTRL`` bit 0 to a disabled queue enables it if the setup is good: ``SIZE`` a
      power of two from 2 to 32768 (else ``STATUS`` bit 0), both rings 16-byte aligned and
      ending at or below ``2**64`` (else bit 2), ``PROD - CONS <= SIZE`` (else bit 1). With
      any of these bits set the queue stays disabled (``CTRL`` reads 0). ``CONS`` is kept:
      a queue disabled and enabled again (``CTRL`` only) resumes where it stopped.
    * Writing ``CTRL`` bit 0 clear disables the queue at once and clears ``STATUS``.
    * ``EQ``: bits 5:0 and 8 are stored; bit 8 (arm) is cleared by :attr:`disarm_stb`. A bus
      write wins over a disarm in the same cycle.
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
        ``STATUS`` bit 3.
    write_error_stb : In(1)
    write_error_queue : In(8)
        Set ``STATUS`` bit 3 of another queue (a failed data or completion write).
    armed_queue : In(8)
    armed : Out(1)
        ``EQ`` bit 8 of ``armed_queue`` (combinational).
    disarm_stb : In(1)
        Clear ``EQ`` bit 8 of ``armed_queue``.
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
            "lu_prod": Out(16), "lu_cons": Out(16), "lu_event_queue": Out(EQ_QUEUE_BITS),
            "take_stb": In(1), "no_buffer_stb": In(1), "too_long_stb": In(1),
            "desc_error_stb": In(1),
            "write_error_stb": In(1), "write_error_queue": In(8),
            "armed_queue": In(8), "armed": Out(1), "disarm_stb": In(1),
            "frame_start_stb": In(1), "frame_retire_stb": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        rm, n, csr = self.regmap, self.n_queues, self.csr
        window, stride, offset = rm.queue_window("RXQ")

        # --- storage -----------------------------------------------------------------------
        m.submodules.cfg = cfg = Memory(shape=32 * len(_CFG_LANES), depth=n, init=[])
        m.submodules.cons = cons = Memory(shape=16, depth=n, init=[])
        m.submodules.counts = counts = Memory(shape=64, depth=n, init=[])   # NO_BUFFER, TOO_LONG
        cfg_w = cfg.write_port(granularity=32)
        cons_w = cons.write_port()
        counts_w = counts.write_port(granularity=32)
        cfg_lu, cfg_bus = cfg.read_port(transparent_for=(cfg_w,)), cfg.read_port()
        cons_lu = cons.read_port(transparent_for=(cons_w,))
        cons_bus = cons.read_port(transparent_for=(cons_w,))
        counts_lu, counts_bus = counts.read_port(transparent_for=(counts_w,)), counts.read_port()
        enable = Signal(n)
        arm = Signal(n)
        status = Array(Signal(4, name=f"q{q}_status") for q in range(n))

        def lane(port, name):
            return port.data.word_select(_CFG_LANES.index(name), 32)

        # --- lookup side ---------------------------------------------------------------------
        lu_queue = Signal(8)
        m.d.sync += lu_queue.eq(self.lookup_queue)
        m.d.comb += [
            cfg_lu.addr.eq(self.lookup_queue), cons_lu.addr.eq(self.lookup_queue),
            counts_lu.addr.eq(self.lookup_queue),
            self.lu_valid.eq(lu_queue < n),
            self.lu_enabled.eq((lu_queue < n) & enable.bit_select(lu_queue, 1)),
            self.lu_base.eq(Cat(lane(cfg_lu, "BASE_LO"), lane(cfg_lu, "BASE_HI"))),
            self.lu_cq_base.eq(Cat(lane(cfg_lu, "CQ_BASE_LO"), lane(cfg_lu, "CQ_BASE_HI"))),
            self.lu_size.eq(lane(cfg_lu, "SIZE")),
            self.lu_prod.eq(lane(cfg_lu, "PROD")),
            self.lu_event_queue.eq(lane(cfg_lu, "EQ")),
            self.lu_cons.eq(cons_lu.data),
            self.armed.eq(arm.bit_select(self.armed_queue, 1)),
        ]
        # The counters are read-modify-written through the lookup port (one frame at a time).
        no_buffer_count, too_long_count = counts_lu.data[:32], counts_lu.data[32:]
        m.d.comb += [
            counts_w.addr.eq(lu_queue),
            counts_w.data.eq(Cat((no_buffer_count + 1)[:32], (too_long_count + 1)[:32])),
            counts_w.en.eq(Cat(self.no_buffer_stb, self.too_long_stb)),
        ]

        # --- setup barrier: frames taken before a setup write retire before it ---------------
        started, retired, target = (Signal(_SEQ_BITS, name=name)
                                    for name in ("started", "retired", "target"))
        m.d.sync += [started.eq(started + self.frame_start_stb),
                     retired.eq(retired + self.frame_retire_stb)]
        behind = (target - retired)[:_SEQ_BITS]
        drained = (behind == 0) | behind[-1]

        # --- bus -----------------------------------------------------------------------------
        rel = Signal(16)
        m.d.comb += rel.eq(csr.addr - window)
        in_window = Signal()
        m.d.comb += in_window.eq((csr.addr >= window) & (csr.addr < window + n * stride))
        qi = Signal(range(n))
        m.d.comb += qi.eq(rel[stride.bit_length() - 1:])
        word = rel[:stride.bit_length() - 1]
        for port in (cfg_bus, cons_bus, counts_bus):
            m.d.comb += port.addr.eq(qi)
        q_enabled = enable.bit_select(qi, 1)
        q_status = status[qi]
        q_cons = cons_bus.data
        q_prod = lane(cfg_bus, "PROD")[:16]
        q_size = lane(cfg_bus, "SIZE")
        new_prod = csr.w_data[:16]

        # Checks of the addressed queue, from the memory rows read in the request's cycle.
        posted_new = (new_prod - q_cons)[:16]
        doorbell_ok = (posted_new <= q_size) & (posted_new >= (q_prod - q_cons)[:16])
        size_ok = rx_ring_size_ok(q_size)
        addr_ok = (rx_ring_addr_ok(Cat(lane(cfg_bus, "BASE_LO"), lane(cfg_bus, "BASE_HI")),
                                   q_size) &
                   rx_ring_addr_ok(Cat(lane(cfg_bus, "CQ_BASE_LO"),
                                       lane(cfg_bus, "CQ_BASE_HI")), q_size))
        setup_ok = size_ok & addr_ok & ((q_prod - q_cons)[:16] <= q_size)
        setup_status = Cat(~size_ok, (q_prod - q_cons)[:16] > q_size, ~addr_ok, Const(0, 1))

        # What a bus write does this cycle (decoded below, applied to the per-queue bits).
        set_status = Signal(4)
        clear_status = Signal()
        set_enable = Signal()
        write_arm = Signal()

        is_setup = 0
        for name in _SETUP_REGS:
            is_setup |= word == offset[name]
        cfg_lane_en = Signal(len(_CFG_LANES))
        cfg_data = Signal(32)
        m.d.comb += [cfg_w.addr.eq(qi), cfg_w.data.eq(cfg_data.replicate(len(_CFG_LANES))),
                     cfg_w.en.eq(cfg_lane_en)]

        def write_lane(name, value):
            m.d.comb += [cfg_data.eq(value), cfg_lane_en.eq(1 << _CFG_LANES.index(name))]

        read_values = {
            **{name: lane(cfg_bus, name) for name in _SETUP_REGS},
            "PROD": q_prod, "CONS": q_cons, "CTRL": q_enabled, "STATUS": q_status,
            "EQ": Cat(lane(cfg_bus, "EQ")[:EQ_QUEUE_BITS], Const(0, EQ_ARM_BIT - EQ_QUEUE_BITS),
                      arm.bit_select(qi, 1)),
            "NO_BUFFER": counts_bus.data[:32], "TOO_LONG": counts_bus.data[32:],
        }

        # Lookup writes of CONS have priority; a setup write waits for a free cycle.
        with m.If(self.take_stb):
            m.d.comb += [cons_w.addr.eq(lu_queue), cons_w.data.eq(self.lu_cons + 1),
                         cons_w.en.eq(1)]

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
                with m.Elif((word == offset["CTRL"]) | ~is_setup | q_enabled):
                    m.d.comb += csr.ack.eq(1)
                    m.next = "IDLE"
                    with m.Switch(word):
                        with m.Case(offset["PROD"]):
                            with m.If(~q_enabled | doorbell_ok):
                                write_lane("PROD", new_prod)
                            with m.Else():
                                m.d.comb += set_status.eq(1 << STATUS_DOORBELL)
                        with m.Case(offset["EQ"]):
                            write_lane("EQ", csr.w_data[:EQ_QUEUE_BITS])
                            m.d.comb += write_arm.eq(1)
                        with m.Case(offset["CTRL"]):
                            with m.If(~csr.w_data[0]):
                                m.d.comb += clear_status.eq(1)
                            with m.Elif(~q_enabled):
                                m.d.comb += [set_enable.eq(setup_ok),
                                             set_status.eq(setup_status)]
                with m.Else():
                    # Setup of a disabled queue: wait for the frames in flight.
                    m.d.sync += target.eq(started + self.frame_start_stb)
                    m.next = "SETUP"
            with m.State("SETUP"):
                with m.If(drained & ~self.take_stb):
                    m.d.comb += [csr.ack.eq(1), cons_w.addr.eq(qi), cons_w.data.eq(0),
                                 cons_w.en.eq(1)]
                    with m.Switch(word):
                        for name in _SETUP_REGS:
                            with m.Case(offset[name]):
                                write_lane(name, csr.w_data)
                    m.next = "IDLE"

        # --- per-queue bits ---------------------------------------------------------------------
        with m.If(set_enable):
            m.d.sync += enable.bit_select(qi, 1).eq(1)
        with m.If(clear_status):
            m.d.sync += enable.bit_select(qi, 1).eq(0)
        for q in range(n):
            sets = Cat(Const(0, STATUS_DMA),
                       ((self.desc_error_stb & (lu_queue == q)) |
                        (self.write_error_stb & (self.write_error_queue == q))))
            bus = qi == q
            with m.If(clear_status & bus):
                m.d.sync += status[q].eq(0)
            with m.Else():
                m.d.sync += status[q].eq(status[q] | sets | Mux(bus, set_status, 0))
            with m.If(write_arm & bus):
                m.d.sync += arm[q].eq(csr.w_data[EQ_ARM_BIT])
            with m.Elif(self.disarm_stb & (self.armed_queue == q)):
                m.d.sync += arm[q].eq(0)
        return m

