"""Event queues: the NIC writes :class:`~hetnic.protocol.Event` records into host rings and
raises one interrupt line per queue, with coalescing by count and time."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import Event
from ..regs import (EQ_CTRL_IRQ_ENABLE, QUEUE_CTRL_ENABLE, QUEUE_INDEX, QUEUE_STATUS_BAD_ADDR,
                    QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DMA, RegisterMap)
from .axil import CsrSignature
from .dma import dma_write_client
from .parameter_checks import check_int_range
from .queue_registers import ENTRY_BYTES, ring_addr_ok, ring_size_ok
from .round_robin import RoundRobin

__all__ = ["EventPost", "EventQueues", "EventArbiter"]

#: What a block hands the event queues: ``event_queue`` the event queue number (not ``eq``:
#: that would shadow ``View.eq``), ``type`` an
#: :class:`~hetnic.protocol.EventType` value, ``source`` and ``info`` copied into the record.
EventPost = data.StructLayout({"event_queue": 6, "type": 8, "source": 16, "info": 32})

#: Bytes of one ring entry (the ring checks of :mod:`.queue_registers` assume it).
EVENT_BYTES = data.Layout.cast(Event).size // 8
assert EVENT_BYTES == ENTRY_BYTES
_MAX_QUEUES = 1 << EventPost["event_queue"].width
#: Width of a queue's ``EQ_STATUS`` flops: up to its highest error bit.
_STATUS_BITS = max(f.lsb + f.width
                   for f in (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_DMA))
_DATA_WIDTHS = (8, 16, 32, 64, 128)     # wider beats could not start at every 16-byte entry


class EventQueues(wiring.Component):
    """Per-queue event rings in host memory, written through one DMA write client.

    Register semantics (``EQ_*`` in :mod:`hetnic.regs`; what the table leaves open):

    * ``BASE_LO``, ``BASE_HI`` and ``SIZE`` may be written while the queue is disabled;
      writes while it is enabled are dropped (they read back unchanged).
    * Writing ``CTRL.enable`` (:data:`~hetnic.regs.QUEUE_CTRL_ENABLE`) to a disabled queue
      enables it: ``PROD`` starts at ``CONS`` (the ring starts empty, so the host's consumer
      index and phase carry over a re-setup), the interrupt state is cleared and the setup is
      checked. A size that is not a power of two from 2 to 32768 sets ``STATUS.bad_size``, a
      base that is not 16-byte aligned or a ring that ends past ``2**64`` sets
      ``STATUS.bad_addr``; then the queue stays disabled (``CTRL.enable`` reads 0). Writing
      ``CTRL.enable`` clear disables the queue and clears ``STATUS``. A ``CTRL`` write to the
      queue whose event is being written waits (``ack`` low) until that write is done, so an
      event never straddles two setups. ``CTRL.irq_enable``
      (:data:`~hetnic.regs.EQ_CTRL_IRQ_ENABLE`) is written with every ``CTRL`` write.
    * ``CONS`` and ``COALESCE_*`` may be written at any time. The ring is full when
      ``(PROD - CONS) mod 2**16 >= SIZE``.
    * A failed DMA write (``wr_done.error``) sets ``STATUS.dma_error`` and stops the queue:
      its later events are dropped until it is disabled and enabled again.

    Events are handled one at a time, in the order ``post`` takes them: the post is taken
    (``timestamp`` is sampled in that cycle), its queue is looked up in the next cycle, then
    either the event is dropped or its 16-byte record (little-endian image of
    :class:`~hetnic.protocol.Event`, ``reserved*`` zero, ``phase = 1`` on the ring's first
    pass, ``0`` on the second and so on) is written to ``base + 16 * (PROD mod SIZE)`` with
    one DMA request. ``PROD`` advances in the cycle its ``wr_done`` is taken; only then is
    the next post taken. Per queue, events reach the ring in the order they were posted. A
    dropped event costs 2 cycles, a written one 2 cycles plus its DMA write (from the
    request to the done).

    Interrupts: per queue, the events written since the last interrupt are *pending* (a
    count saturating at 65535, so a larger ``COALESCE_COUNT`` never triggers) and a timer
    counts the cycles since the first of them was written. With ``CTRL.irq_enable`` set,
    ``irq[q]`` is high for exactly one cycle when the pending count reaches
    ``max(COALESCE_COUNT, 1)`` -- two cycles after the ``wr_done`` handshake of that event --
    or when ``COALESCE_TIME`` (``T`` > 0) cycles have passed since the first pending event
    -- ``T + 1`` cycles after its ``wr_done`` handshake -- whichever comes first; the pending
    count and the timer then restart. While the interrupt is disabled, events stay pending
    and the timer runs: enabling it raises ``irq[q]`` at once if a condition is already met.
    Disabling or enabling the queue clears both.

    Parameters
    ----------
    n_queues : int
        Event queues, 1 to 64.
    data_width : int
        Width of the DMA write data in bits: 8, 16, 32, 64 or 128.

    Members
    -------
    csr : In(CsrSignature(16))
        Accesses to the ``EQ_*`` registers (``addr`` is the full byte address; other
        addresses read 0 and ignore writes). ``ack`` comes in the cycle of the request, except
        for the held ``CTRL`` write described above.
    post : In(stream.Signature(EventPost))
        Events to write. ``ready`` is low from the cycle after a post is taken until the
        event has been dropped or written (at least one cycle per event).
    wr_req : Out(stream.Signature(DmaWriteRequest))
        One request per written event: ``addr`` the entry, ``length`` 16, ``tag`` the queue.
    wr_data : Out(stream.Signature(DmaWriteBeat(data_width)))
        ``16 / (data_width/8)`` beats per request, offered with the request; byte lane ``k``
        of beat ``b`` is byte ``b * data_width/8 + k`` of the record.
    wr_done : In(stream.Signature(DmaWriteDone))
        One per request, in order. Taken only while a request is outstanding.
    timestamp : In(48)
        Free-running cycle counter, copied into each event when it is posted.
    irq : Out(n_queues)
        Interrupt pulses, one line per queue (see above).
    dropped : Out(32)
        Wrapping count of events dropped because their queue does not exist, is disabled or
        stopped by a DMA error, plus events whose DMA write failed. Ring-full drops are in
        ``EQ_OVERFLOWS`` instead.
    """
    def __init__(self, n_queues, data_width):
        check_int_range("n_queues", n_queues, 1, _MAX_QUEUES)
        if not isinstance(data_width, int) or data_width not in _DATA_WIDTHS:
            raise ValueError(f"data_width must be one of {', '.join(map(str, _DATA_WIDTHS))}, "
                             f"not {data_width!r}")
        self.n_queues, self.data_width = n_queues, data_width
        self.regmap = RegisterMap(event_queues=n_queues, data_bytes=data_width // 8)
        stride = self.regmap["EQ_CTRL"].stride
        if stride & (stride - 1):
            raise ValueError(f"EQ register stride must be a power of two, not {stride:#x}")
        super().__init__({
            "csr": In(CsrSignature(16)),
            "post": In(stream.Signature(EventPost)),
            **dma_write_client(data_width),
            "timestamp": In(48),
            "irq": Out(n_queues),
            "dropped": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_queues

        def regs(name, width, init=0):
            return Array(Signal(width, init=init, name=f"q{q}_{name}") for q in range(n))

        q = {
            "base": regs("base", 64), "size": regs("size", 32),
            "prod": regs("prod", QUEUE_INDEX.width), "cons": regs("cons", QUEUE_INDEX.width),
            "enable": regs("enable", 1), "irq_en": regs("irq_en", 1),
            "count_th": regs("coalesce_count", 32), "time_th": regs("coalesce_time", 32),
            "status": regs("status", _STATUS_BITS), "overflows": regs("overflows", 32),
            "pending": regs("pending_count", 16), "elapsed": regs("elapsed", 32),
        }
        busy = Signal()             # an event is between post and done ...
        cur = Signal(EventPost)     # ... this one
        done_stb = Signal()         # its record is in host memory
        self._writer(m, q, busy, cur, done_stb)
        self._interrupts(m, q, cur, done_stb)
        self._bus(m, q, busy, cur)      # last: its enable/disable resets win
        return m

    def _writer(self, m, q, busy, cur, done_stb):
        n, width = self.n_queues, self.data_width
        n_beats = max(EVENT_BYTES * 8 // width, 1)
        stamp = Signal(48)
        record = Signal(Event)
        addr = Signal(64)
        req_sent = Signal()
        beat = Signal(range(n_beats + 1))

        exists = cur.event_queue < n
        qi = Signal(range(n))
        m.d.comb += qi.eq(cur.event_queue)
        size, prod = q["size"][qi], q["prod"][qi]
        active = exists & q["enable"][qi] & ~QUEUE_STATUS_DMA.bits(q["status"][qi])
        full = QUEUE_INDEX.bits(prod - q["cons"][qi]) >= size

        m.d.comb += [
            self.wr_req.payload.addr.eq(addr),
            self.wr_req.payload.length.eq(EVENT_BYTES),
            self.wr_req.payload.tag.eq(cur.event_queue),
            self.wr_data.payload.data.eq(record.as_value().word_select(beat, width)),
            self.wr_data.payload.last.eq(beat == n_beats - 1),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.post.ready.eq(1)
                with m.If(self.post.valid):
                    m.d.sync += [cur.eq(self.post.payload), stamp.eq(self.timestamp), busy.eq(1)]
                    m.next = "LOOKUP"
            with m.State("LOOKUP"):
                with m.If(~active):
                    m.d.sync += [self.dropped.eq(self.dropped + 1), busy.eq(0)]
                    m.next = "IDLE"
                with m.Elif(full):
                    m.d.sync += [q["overflows"][qi].eq(q["overflows"][qi] + 1), busy.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    slot = prod & QUEUE_INDEX.bits(size - 1)
                    m.d.sync += [
                        record.type.eq(cur.type),
                        record.source.eq(cur.source),
                        record.info.eq(cur.info),
                        record.timestamp.eq(stamp),
                        # Bit log2(SIZE) of the free-running index counts the passes.
                        record.phase.eq((prod & QUEUE_INDEX.bits(size)) == 0),
                        addr.eq(q["base"][qi] + slot * EVENT_BYTES),
                        req_sent.eq(0), beat.eq(0),
                    ]
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.wr_req.valid.eq(~req_sent),
                             self.wr_data.valid.eq(beat != n_beats),
                             self.wr_done.ready.eq(req_sent & (beat == n_beats))]
                with m.If(self.wr_req.valid & self.wr_req.ready):
                    m.d.sync += req_sent.eq(1)
                with m.If(self.wr_data.valid & self.wr_data.ready):
                    m.d.sync += beat.eq(beat + 1)
                with m.If(self.wr_done.valid & self.wr_done.ready):
                    m.d.sync += busy.eq(0)
                    with m.If(self.wr_done.payload.error):
                        m.d.sync += [QUEUE_STATUS_DMA.bits(q["status"][qi]).eq(1),
                                     self.dropped.eq(self.dropped + 1)]
                    with m.Else():
                        m.d.comb += done_stb.eq(1)
                        m.d.sync += q["prod"][qi].eq(prod + 1)
                    m.next = "IDLE"

    def _interrupts(self, m, q, cur, done_stb):
        for i in range(self.n_queues):
            pending, elapsed = q["pending"][i], q["elapsed"][i]
            count_hit = (pending != 0) & (pending >= q["count_th"][i])
            time_hit = (q["time_th"][i] != 0) & (pending != 0) & (elapsed >= q["time_th"][i])
            fire = q["enable"][i] & q["irq_en"][i] & (count_hit | time_hit)
            kept = Mux(fire, 0, pending)
            added = done_stb & (cur.event_queue == i)
            m.d.sync += [
                self.irq[i].eq(fire),
                pending.eq(Mux(kept == 0xFFFF, kept, kept + added)),
                # Cycles since the first pending event was written: 1 in the cycle after.
                elapsed.eq(Mux(kept == 0, added, Mux(elapsed == 0xFFFF_FFFF, elapsed,
                                                     elapsed + 1))),
            ]

    def _bus(self, m, q, busy, cur):
        rm, n, csr = self.regmap, self.n_queues, self.csr
        window, stride, offset = rm.queue_window("EQ")
        word_bits = stride.bit_length() - 1

        rel = Signal(16)
        qi = Signal(range(n))
        m.d.comb += [rel.eq(csr.addr - window), qi.eq(rel[word_bits:])]
        word = rel[:word_bits]
        in_window = (csr.addr >= window) & (csr.addr < window + n * stride)
        hold = in_window & (word == offset["CTRL"]) & busy & (cur.event_queue == qi)
        m.d.comb += csr.ack.eq(csr.r_stb | (csr.w_stb & ~hold))
        write = csr.w_stb & ~hold & in_window

        base = q["base"]
        values = {
            "BASE_LO": [b[:32] for b in base], "BASE_HI": [b[32:] for b in base],
            "SIZE": q["size"], "PROD": q["prod"], "CONS": q["cons"],
            "CTRL": [(e << QUEUE_CTRL_ENABLE.lsb) | (i << EQ_CTRL_IRQ_ENABLE.lsb)
                     for e, i in zip(q["enable"], q["irq_en"])],
            "COALESCE_COUNT": q["count_th"], "COALESCE_TIME": q["time_th"],
            "STATUS": q["status"], "OVERFLOWS": q["overflows"],
        }
        with m.If(csr.r_stb & in_window):
            with m.Switch(word):
                for name, value in values.items():
                    with m.Case(offset[name]):
                        m.d.comb += csr.r_data.eq(Array(value)[qi])

        # Setup checks of the addressed queue, used when it is enabled.
        size_ok = ring_size_ok(q["size"][qi])
        addr_ok = ring_addr_ok(base[qi], q["size"][qi])
        w_data = csr.w_data
        for i in range(n):
            enable = q["enable"][i]
            with m.If(write & (qi == i)):
                with m.Switch(word):
                    with m.Case(offset["BASE_LO"]):
                        with m.If(~enable):
                            m.d.sync += base[i][:32].eq(w_data)
                    with m.Case(offset["BASE_HI"]):
                        with m.If(~enable):
                            m.d.sync += base[i][32:].eq(w_data)
                    with m.Case(offset["SIZE"]):
                        with m.If(~enable):
                            m.d.sync += q["size"][i].eq(w_data)
                    with m.Case(offset["CONS"]):
                        m.d.sync += q["cons"][i].eq(QUEUE_INDEX.bits(w_data))
                    with m.Case(offset["COALESCE_COUNT"]):
                        m.d.sync += q["count_th"][i].eq(w_data)
                    with m.Case(offset["COALESCE_TIME"]):
                        m.d.sync += q["time_th"][i].eq(w_data)
                    with m.Case(offset["CTRL"]):
                        m.d.sync += q["irq_en"][i].eq(EQ_CTRL_IRQ_ENABLE.bits(w_data))
                        restart = [q["pending"][i].eq(0), q["elapsed"][i].eq(0)]
                        with m.If(~QUEUE_CTRL_ENABLE.bits(w_data)):
                            m.d.sync += [enable.eq(0), q["status"][i].eq(0), *restart]
                        with m.Elif(~enable):
                            status = Signal(_STATUS_BITS, name=f"q{i}_setup_status")
                            m.d.comb += [QUEUE_STATUS_BAD_SIZE.bits(status).eq(~size_ok),
                                         QUEUE_STATUS_BAD_ADDR.bits(status).eq(~addr_ok)]
                            m.d.sync += [enable.eq(size_ok & addr_ok), q["status"][i].eq(status),
                                         q["prod"][i].eq(q["cons"][i]), *restart]


class EventArbiter(wiring.Component):
    """Merges several posters' event streams into one, round robin.

    A registered stage: a post taken from ``posts[i]`` is offered on ``post`` from the next
    cycle on. One post per cycle passes when ``post.ready`` stays high; of the inputs that
    are valid, the first after the one granted last is taken (:class:`~.round_robin.RoundRobin`).
    Posts of one input keep their order.

    Parameters
    ----------
    n_inputs : int
        Number of posters, at least 1.

    Members
    -------
    posts : In(stream.Signature(EventPost)).array(n_inputs)
    post : Out(stream.Signature(EventPost))
    """
    def __init__(self, n_inputs):
        if not isinstance(n_inputs, int) or n_inputs < 1:
            raise ValueError(f"n_inputs must be a positive integer, not {n_inputs!r}")
        self.n_inputs = n_inputs
        super().__init__({
            "posts": In(stream.Signature(EventPost)).array(n_inputs),
            "post": Out(stream.Signature(EventPost)),
        })

    def elaborate(self, platform):
        m = Module()
        out = self.post
        m.submodules.round_robin = rr = RoundRobin(self.n_inputs)
        m.d.comb += [rr.requests.eq(Cat(p.valid for p in self.posts)),
                     rr.served_stb.eq(~out.valid | out.ready)]
        with m.If(~out.valid | out.ready):
            m.d.sync += out.valid.eq(rr.valid)
            with m.Switch(rr.grant):
                for i, p in enumerate(self.posts):
                    with m.Case(i):
                        m.d.comb += p.ready.eq(1)
                        with m.If(p.valid):
                            m.d.sync += out.payload.eq(p.payload)
        return m
