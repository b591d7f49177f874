# Ref: AMBA AXI4 (ARM IHI 0022E), part A: AXI4 bursts, the 4 KiB rule, ordering by ID.
"""The NIC core's DMA engine: an AXI4 master shared by several internal read and write clients.

Clients hand the engine byte-addressed requests of up to 65535 bytes; the engine splits each
into INCR bursts and moves the data between the AXI4 bus and the clients' beat streams. Host
memory byte ``a`` travels in byte lane ``a % (W/8)`` of a beat (little-endian lanes, as on
AXI), so a request's first byte is in lane 0 of its first beat.

Layouts of the client ports:

``DmaReadRequest``, ``DmaWriteRequest``
    ``addr: 64`` byte address, aligned to ``W/8``; ``length: 16`` bytes, 1 to 65535;
    ``tag: 8`` echoed in the data beats (reads) or the done record (writes).
``DmaWriteDone``
    ``tag: 8``; ``error: 1`` the request was refused or a B response was not OKAY.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .parameter_checks import check_int_range
from .round_robin import RoundRobin

__all__ = [
    "Axi4Signature", "DmaReadRequest", "DmaReadBeat", "DmaWriteRequest", "DmaWriteBeat",
    "DmaWriteDone", "DmaEngine", "AXI_BURST_INCR", "AXI_RESP_OKAY", "AXI_RESP_SLVERR",
    "dma_read_client", "dma_write_client",
]

#: AxBURST of an incrementing burst.
AXI_BURST_INCR = 0b01
#: xRESP codes.
AXI_RESP_OKAY = 0b00
AXI_RESP_SLVERR = 0b10
#: Bursts never cross this boundary (AXI4 A3.4.1).
AXI_BOUNDARY = 4096
#: AxCACHE of every transaction: normal non-cacheable bufferable.
AXI_CACHE = 0b0011
#: AxPROT of every transaction: unprivileged, non-secure, data.
AXI_PROT = 0b010

_DATA_WIDTHS = (8, 16, 32, 64, 128, 256, 512)

#: A read request: ``addr`` (aligned to W/8), ``length`` in bytes (1..65535), ``tag``.
DmaReadRequest = data.StructLayout({"addr": 64, "length": 16, "tag": 8})
#: A write request: as :data:`DmaReadRequest`; its data comes on the client's ``wr_data``.
DmaWriteRequest = data.StructLayout({"addr": 64, "length": 16, "tag": 8})
#: The end of a write request: its ``tag``; ``error`` if refused or a BRESP was not OKAY.
DmaWriteDone = data.StructLayout({"tag": 8, "error": 1})


def _check_width(width):
    if not isinstance(width, int) or width not in _DATA_WIDTHS:
        raise ValueError(f"Data width must be one of {', '.join(map(str, _DATA_WIDTHS))}, "
                         f"not {width!r}")


class DmaReadBeat(data.StructLayout):
    """One beat of read data returned to a client.

    Members
    -------
    data : unsigned(width)
        Byte lane ``k`` carries memory byte ``addr + (W/8) * beat_index + k``. Lanes outside
        ``keep`` hold whatever the bus returned (zero in a refused request's beat).
    keep : unsigned(width // 8)
        Valid lanes: all ones except on the last beat, which keeps a contiguous run from
        lane 0. Zero in the single beat of a refused request.
    last : unsigned(1)
        Last beat of the request.
    error : unsigned(1)
        On the last beat only: the request was refused or some RRESP of it was not OKAY.
    tag : unsigned(8)
        The request's tag, on every beat.
    """
    def __init__(self, width):
        _check_width(width)
        self.width = width
        super().__init__({"data": width, "keep": width // 8, "last": 1, "error": 1, "tag": 8})


class DmaWriteBeat(data.StructLayout):
    """One beat of write data from a client: ``data`` (lanes as in :class:`DmaReadBeat`) and
    ``last``. A request takes exactly ``ceil(length / (W/8))`` beats; the engine counts them
    from the length and does not look at ``last``, which is for the client's own framing."""
    def __init__(self, width):
        _check_width(width)
        self.width = width
        super().__init__({"data": width, "last": 1})


def _axi_write_members(data_width, id_width):
    return {
        "awid": Out(id_width), "awaddr": Out(64), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    }


def _axi_read_members(data_width, id_width):
    return {
        "arid": Out(id_width), "araddr": Out(64), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    }


def dma_read_client(data_width):
    """The members of a :class:`DmaEngine` read client, seen from the client."""
    return {"rd_req": Out(stream.Signature(DmaReadRequest)),
            "rd_data": In(stream.Signature(DmaReadBeat(data_width)))}


def dma_write_client(data_width):
    """The members of a :class:`DmaEngine` write client, seen from the client."""
    return {"wr_req": Out(stream.Signature(DmaWriteRequest)),
            "wr_data": Out(stream.Signature(DmaWriteBeat(data_width))),
            "wr_done": In(stream.Signature(DmaWriteDone))}


class Axi4Signature(wiring.Signature):
    """AXI4 with 64-bit addresses, seen from the master (a slave uses ``.flip()``).

    Parameters
    ----------
    data_width : int
        8, 16, 32, 64, 128, 256 or 512 bits.
    id_width : int
        Width of the ID signals, 1 to 16.
    """
    def __init__(self, data_width, *, id_width=4):
        _check_width(data_width)
        if not isinstance(id_width, int) or not 1 <= id_width <= 16:
            raise ValueError(f"ID width must be an integer from 1 to 16, not {id_width!r}")
        self.data_width, self.id_width = data_width, id_width
        super().__init__({**_axi_write_members(data_width, id_width),
                          **_axi_read_members(data_width, id_width)})


def _burst_info(n_clients, data_width):
    """What the data side of a channel needs to know about one burst, in AXI order."""
    return data.StructLayout({
        "client": range(max(n_clients, 2)),
        "tag": 8,
        "beats": 16,        # 1..256; a refused request: ceil(length / (W/8)), may be 0
        "last": 1,          # last burst of its request
        "tail_bytes": range(1, data_width // 8 + 1),   # valid bytes of the request's last beat
        "refused": 1,       # no AXI transaction; the whole request in one entry
    })


def _burst(n_clients, data_width):
    return data.StructLayout({"addr": 64, "info": _burst_info(n_clients, data_width)})


def _tail_mask(tail_bytes, lanes):
    """``tail_bytes`` ones from lane 0: the keep/strobe of a request's last beat."""
    return ((Const(1, lanes + 1) << tail_bytes) - 1)[:lanes]


def _refused(req, size_log2):
    """The engine refuses request ``req``: its length is 0, its address is not a multiple
    of ``2**size_log2`` bytes, or ``addr + length > 2**64``."""
    end = req.addr + req.length
    misaligned = req.addr[:size_log2] != 0 if size_log2 else Const(0)
    return (req.length == 0) | (end[64] & (end[:64] != 0)) | misaligned


def _connect_subset(m, outer, inner, members):
    """Drive the ``members`` of ``outer`` (a port of this component) from ``inner`` (the same
    members of a submodule's port) and back, by direction."""
    for name, member in members.items():
        if member.flow == Out:
            m.d.comb += getattr(outer, name).eq(getattr(inner, name))
        else:
            m.d.comb += getattr(inner, name).eq(getattr(outer, name))


class _BurstSplitter(wiring.Component):
    """Request check and burst splitter with a round-robin choice per burst
    (:class:`~.round_robin.RoundRobin`) among the clients.

    Each client has one request register: its ``ready`` is high while that register is free
    (also in the cycle its request's last burst leaves), and at most one request is taken
    per cycle, round robin among the clients asking. From the next cycle on the bursts of
    the requests held leave one per cycle while ``burst.ready``, the client of each burst
    chosen round robin among those holding a request: a client's bursts leave in its request
    order, and a client with a short request waits for at most one burst of every other
    client, never for another client's whole request. Each burst has at most
    ``max_burst_beats`` beats and ends at or before the next 4 KiB boundary. A refused
    request (length 0, misaligned, or ``addr + length > 2**64``) leaves as one entry with
    ``refused`` set and ``beats = ceil(length / (W/8))``; ``refused_stb`` pulses when it is
    taken. A client whose bit of ``allow`` is low is not served (its ``ready`` stays low);
    bit ``i`` of ``taken_stb`` pulses in the cycle a request of client ``i`` is taken.
    """
    def __init__(self, n_clients, data_width, max_burst_beats):
        self.n_clients, self.data_width, self.max_burst_beats = (
            n_clients, data_width, max_burst_beats)
        super().__init__({
            "req": In(stream.Signature(DmaReadRequest)).array(n_clients),
            "burst": Out(stream.Signature(_burst(n_clients, data_width))),
            "refused_stb": Out(1),
            "allow": In(n_clients),
            "taken_stb": Out(n_clients),
        })

    def elaborate(self, platform):
        m = Module()
        n, lanes = self.n_clients, self.data_width // 8
        size_log2 = lanes.bit_length() - 1

        # --- per client: the request held and its part not yet handed out in a burst
        active = Signal(n)
        held = [Signal(DmaReadRequest, name=f"held_{i}") for i in range(n)]
        held_refused = Signal(n)

        # --- the burst: of the client chosen round robin among those holding a request
        m.submodules.burst_rr = burst_rr = RoundRobin(n)
        client = burst_rr.grant
        cur = Signal(DmaReadRequest)
        cur_refused = Signal()
        with m.Switch(client):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += [cur.eq(held[i]), cur_refused.eq(held_refused[i])]

        beats_left = Signal(16)
        to_boundary = Signal(range(AXI_BOUNDARY // lanes + 1))
        limit = Signal(range(max(self.max_burst_beats, AXI_BOUNDARY // lanes) + 1))
        is_last = Signal()
        beats = Signal(16)
        m.d.comb += [
            beats_left.eq((cur.length + (lanes - 1)) >> size_log2),
            to_boundary.eq((AXI_BOUNDARY - cur.addr[:12]) >> size_log2),
            limit.eq(Mux(to_boundary < self.max_burst_beats, to_boundary,
                         self.max_burst_beats)),
            is_last.eq(cur_refused | (beats_left <= limit)),
            beats.eq(Mux(is_last, beats_left, limit)),
        ]
        out = self.burst.payload
        tail = cur.length[:size_log2] if size_log2 else Const(0, 1)
        m.d.comb += [
            burst_rr.requests.eq(active),
            self.burst.valid.eq(burst_rr.valid),
            out.addr.eq(cur.addr),
            out.info.client.eq(client),
            out.info.tag.eq(cur.tag),
            out.info.beats.eq(beats),
            out.info.last.eq(is_last),
            out.info.tail_bytes.eq(Mux(tail == 0, lanes, tail)),
            out.info.refused.eq(cur_refused),
        ]
        taken = self.burst.valid & self.burst.ready
        done = Signal(n)                # the request of client i leaves with this burst
        m.d.comb += burst_rr.served_stb.eq(taken)
        with m.If(taken):
            m.d.comb += done.eq(Mux(is_last, 1 << client, 0))
            with m.Switch(client):
                for i in range(n):
                    with m.Case(i):
                        m.d.sync += [held[i].addr.eq(cur.addr + (beats << size_log2)),
                                     held[i].length.eq(cur.length - (beats << size_log2))]

        # --- one new request per cycle, round robin among the clients with a free register
        m.submodules.round_robin = rr = RoundRobin(n)
        free = (~active | done) & self.allow
        m.d.comb += [rr.requests.eq(Cat(req.valid for req in self.req) & free),
                     rr.served_stb.eq(1)]
        sel = Signal(DmaReadRequest)
        with m.Switch(rr.grant):
            for i, req in enumerate(self.req):
                with m.Case(i):
                    m.d.comb += [sel.eq(req.payload), req.ready.eq(free[i])]
        refused = Signal()
        m.d.comb += refused.eq(_refused(sel, size_log2))
        took = Mux(rr.valid, 1 << rr.grant, 0)[:n]
        m.d.comb += self.taken_stb.eq(took)
        m.d.sync += active.eq((active & ~done) | took)
        with m.If(rr.valid):
            m.d.comb += self.refused_stb.eq(refused)
            with m.Switch(rr.grant):
                for i in range(n):
                    with m.Case(i):
                        m.d.sync += [held[i].eq(sel), held_refused[i].eq(refused)]
        return m


def _address_channel(m, axi, prefix, lanes, burst, fifo):
    """The AR (``prefix="ar"``) or AW (``"aw"``) channel of ``axi``: INCR bursts of
    ``lanes``-byte beats through a register stage. A burst from ``burst`` enters ``fifo``
    (its bookkeeping) and, unless refused, loads the channel's ``valid``/``addr``/``len``
    registers, which hold until the slave's ``ready``. A refused burst needs no address
    phase and enters ``fifo`` alone."""
    def channel(name):
        return getattr(axi, prefix + name)
    valid, ready = channel("valid"), channel("ready")
    m.d.comb += [channel("size").eq(lanes.bit_length() - 1),
                 channel("burst").eq(AXI_BURST_INCR),
                 channel("cache").eq(AXI_CACHE), channel("prot").eq(AXI_PROT)]
    needs = ~burst.payload.info.refused
    m.d.comb += [
        burst.ready.eq(fifo.w_rdy & (~needs | ~valid | ready)),
        fifo.w_en.eq(burst.valid & burst.ready),
        fifo.w_data.eq(burst.payload.info),
    ]
    with m.If(burst.valid & burst.ready & needs):
        m.d.sync += [valid.eq(1), channel("addr").eq(burst.payload.addr),
                     channel("len").eq(burst.payload.info.beats - 1)]
    with m.Elif(ready):
        m.d.sync += valid.eq(0)


def _client_output(m, ports, layout, prefix):
    """An output register in front of the clients' ``ports``: what is loaded into it is
    offered to the port of its ``client`` only. Returns ``(valid, client, payload, free)``;
    load by setting ``valid`` (and the others) in a cycle where ``free`` is high."""
    valid = Signal(name=f"{prefix}_valid")
    client = Signal(range(max(len(ports), 2)), name=f"{prefix}_client")
    payload = Signal(layout, name=f"{prefix}_payload")
    ready = Signal(name=f"{prefix}_ready")
    for i, port in enumerate(ports):
        m.d.comb += [port.valid.eq(valid & (client == i)), port.payload.eq(payload)]
        with m.If(client == i):
            m.d.comb += ready.eq(port.ready)
    free = ~valid | ready
    with m.If(free):
        m.d.sync += valid.eq(0)
    return valid, client, payload, free


class _BurstPath(wiring.Component):
    """What the read and write paths share: bursts in (in the order of the splitter), one
    direction of the AXI bus out, per-client ports, an ``error_stb`` per non-OKAY response,
    and up to ``outstanding`` bursts in flight."""
    def __init__(self, n_clients, data_width, outstanding, axi_members, client_members):
        self.n_clients, self.data_width, self.outstanding = n_clients, data_width, outstanding
        self.axi_members = axi_members
        self.info_layout = _burst_info(n_clients, data_width)
        super().__init__({
            "burst": In(stream.Signature(_burst(n_clients, data_width))),
            "axi": Out(wiring.Signature(axi_members)),
            **client_members,
            "error_stb": Out(1),
        })


class _ReadPath(_BurstPath):
    """AR issue and R return of the read bursts (see :class:`DmaEngine`)."""
    def __init__(self, n_clients, data_width, outstanding):
        beats = Out(stream.Signature(DmaReadBeat(data_width))).array(n_clients)
        super().__init__(n_clients, data_width, outstanding, _axi_read_members(data_width, 4),
                         {"data": beats})

    def elaborate(self, platform):
        m = Module()
        axi, lanes = self.axi, self.data_width // 8
        # Bursts wait here, in AR order, from before their AR is issued until their last R
        # beat: the depth bounds the bursts in flight.
        m.submodules.pending = pending = SyncFIFO(width=self.info_layout.size,
                                                  depth=self.outstanding)
        _address_channel(m, axi, "ar", lanes, self.burst, pending)

        # --- R: beats go through an output register to the client of the head burst
        head = data.View(self.info_layout, pending.r_data)
        o_valid, o_client, o_beat, o_free = _client_output(
            m, self.data, DmaReadBeat(self.data_width), "o")
        count = Signal(8)               # beat of the head burst
        # Per client: a non-OKAY RRESP so far in its request (bursts of clients interleave).
        failed_of = Signal(self.n_clients)
        failed = failed_of.bit_select(head.client, 1)
        final = count == head.beats - 1
        m.d.comb += axi.rready.eq(pending.r_rdy & ~head.refused & o_free)
        with m.If(pending.r_rdy & head.refused & o_free):
            m.d.comb += pending.r_en.eq(1)
            m.d.sync += [
                o_valid.eq(1), o_client.eq(head.client),
                o_beat.data.eq(0), o_beat.keep.eq(0), o_beat.last.eq(1), o_beat.error.eq(1),
                o_beat.tag.eq(head.tag),
            ]
        with m.If(axi.rvalid & axi.rready):
            # A beat with RLAST where the burst does not end, or the burst's last beat
            # without it: the slave's burst and the engine's count disagree.
            bad = (axi.rresp != AXI_RESP_OKAY) | (axi.rlast != final)
            request_end = final & head.last
            m.d.comb += [pending.r_en.eq(final), self.error_stb.eq(bad)]
            m.d.sync += [
                o_valid.eq(1), o_client.eq(head.client),
                o_beat.data.eq(axi.rdata),
                o_beat.keep.eq(Mux(request_end, _tail_mask(head.tail_bytes, lanes),
                                   (1 << lanes) - 1)),
                o_beat.last.eq(request_end),
                o_beat.error.eq(request_end & (failed | bad)),
                o_beat.tag.eq(head.tag),
                count.eq(Mux(final, 0, count + 1)),
                failed_of.bit_select(head.client, 1).eq(~request_end & (failed | bad)),
            ]
        return m


class _WritePath(_BurstPath):
    """AW issue, W data and B responses of the write bursts (see :class:`DmaEngine`).

    Each client's done records wait in a FIFO of its own, ``2 * outstanding`` deep, so that
    B responses never wait for a client: ``allow`` (to the splitter) has bit ``i`` low while
    client ``i`` has that many requests taken (``taken_stb``) whose done it has not taken
    yet, so every request in the path has a free entry for its done, and BREADY is high
    whenever a B response is due."""
    def __init__(self, n_clients, data_width, outstanding):
        beats = In(stream.Signature(DmaWriteBeat(data_width))).array(n_clients)
        dones = Out(stream.Signature(DmaWriteDone)).array(n_clients)
        super().__init__(n_clients, data_width, outstanding, _axi_write_members(data_width, 4),
                         {"data": beats, "done": dones,
                          "allow": Out(n_clients), "taken_stb": In(n_clients)})
        self.response_layout = data.StructLayout({
            "client": range(max(n_clients, 2)), "tag": 8, "last": 1, "refused": 1})

    def elaborate(self, platform):
        m = Module()
        # Bursts whose W beats have not all been sent, in AW order.
        m.submodules.to_send = to_send = SyncFIFO(width=self.info_layout.size,
                                                  depth=self.outstanding)
        # Bursts whose W beats were sent (or discarded) and whose B has not come yet.
        m.submodules.to_answer = to_answer = SyncFIFO(width=self.response_layout.size,
                                                      depth=self.outstanding)
        _address_channel(m, self.axi, "aw", self.data_width // 8, self.burst, to_send)
        self._data(m, to_send, to_answer)
        self._responses(m, to_answer)
        return m

    def _data(self, m, to_send, to_answer):
        """W: the head burst's client's beats, through an output register; a refused
        request's beats are taken and dropped."""
        axi, lanes = self.axi, self.data_width // 8
        head = data.View(self.info_layout, to_send.r_data)
        src_valid = Signal()
        src_data = Signal(self.data_width)
        src_ready = Signal()
        for i, port in enumerate(self.data):
            with m.If(head.client == i):
                m.d.comb += [src_valid.eq(port.valid), src_data.eq(port.payload.data),
                             port.ready.eq(src_ready)]

        count = Signal(16)              # beat of the head burst
        final = count == head.beats - 1
        w_free = ~axi.wvalid | axi.wready
        with m.If(w_free):
            m.d.sync += axi.wvalid.eq(0)
        answering = data.View(self.response_layout, to_answer.w_data)
        m.d.comb += [answering.client.eq(head.client), answering.tag.eq(head.tag),
                     answering.last.eq(head.last), answering.refused.eq(head.refused)]
        with m.If(to_send.r_rdy):
            with m.If(head.refused & (head.beats == 0)):
                m.d.comb += [to_send.r_en.eq(to_answer.w_rdy), to_answer.w_en.eq(1)]
            with m.Else():
                take = src_valid & (head.refused | w_free) & (~final | to_answer.w_rdy)
                m.d.comb += [src_ready.eq(take),
                             to_send.r_en.eq(take & final), to_answer.w_en.eq(take & final)]
                with m.If(take):
                    m.d.sync += count.eq(Mux(final, 0, count + 1))
                    with m.If(~head.refused):
                        m.d.sync += [
                            axi.wvalid.eq(1),
                            axi.wdata.eq(src_data),
                            axi.wstrb.eq(Mux(final & head.last,
                                             _tail_mask(head.tail_bytes, lanes),
                                             (1 << lanes) - 1)),
                            axi.wlast.eq(final),
                        ]

    def _responses(self, m, to_answer):
        """B: one done per request, after its last B response, into its client's done FIFO;
        a client may have at most ``2 * outstanding`` requests between ``taken_stb`` and the
        handshake of its done."""
        axi, depth = self.axi, 2 * self.outstanding
        answer = data.View(self.response_layout, to_answer.r_data)
        done_stb = Signal()             # a done for the client of the head entry, this cycle
        done = Signal(DmaWriteDone)
        for i, port in enumerate(self.done):
            m.submodules[f"done_{i}"] = fifo = SyncFIFO(width=DmaWriteDone.size, depth=depth)
            m.d.comb += [fifo.w_en.eq(done_stb & (answer.client == i)), fifo.w_data.eq(done),
                         port.valid.eq(fifo.r_rdy), port.payload.eq(fifo.r_data),
                         fifo.r_en.eq(port.ready)]
            # Requests taken whose done the client has not taken: at most ``depth``, so
            # ``fifo`` always has room for the done of a request in the path.
            owed = Signal(range(depth + 1), name=f"owed_{i}")
            given = port.valid & port.ready
            with m.If(self.taken_stb[i] & ~given):
                m.d.sync += owed.eq(owed + 1)
            with m.Elif(~self.taken_stb[i] & given):
                m.d.sync += owed.eq(owed - 1)
            m.d.comb += self.allow[i].eq(owed != depth)
        # Per client: a non-OKAY BRESP so far in its request (bursts of clients interleave).
        failed_of = Signal(self.n_clients)
        failed = failed_of.bit_select(answer.client, 1)
        m.d.comb += [axi.bready.eq(to_answer.r_rdy & ~answer.refused), done.tag.eq(answer.tag)]
        with m.If(to_answer.r_rdy & answer.refused):
            m.d.comb += [to_answer.r_en.eq(1), done_stb.eq(1), done.error.eq(1)]
        with m.If(axi.bvalid & axi.bready):
            bad = axi.bresp != AXI_RESP_OKAY
            m.d.comb += [to_answer.r_en.eq(1), self.error_stb.eq(bad),
                         done_stb.eq(answer.last), done.error.eq(failed | bad)]
            m.d.sync += failed_of.bit_select(answer.client, 1).eq(~answer.last & (failed | bad))


class DmaEngine(wiring.Component):
    """AXI4 master that moves data between host memory and several internal clients.

    Each client request is checked, then split into INCR bursts of at most
    ``max_burst_beats`` beats (reads: ``max_read_burst_beats``) that never cross a 4 KiB
    boundary, with ``AxSIZE = log2(W/8)``. Each client has one request in the engine at a
    time (per direction), and the bursts of the requests held are issued round robin among
    the clients, one burst per turn: a client's bursts (and W beats) keep its request order,
    while a short request of one client waits for at most one burst of each other client,
    never for another client's whole request. Read data come back in AR order, so a read
    waits for the data of the read bursts in flight before it: at most
    ``read_outstanding * max_read_burst_beats`` beats. Short read bursts and few of them in
    flight keep a latency-critical client's small reads (RX descriptors) from waiting behind
    a bulk client's long ones (TX frame data), at the price of more AR transactions and of
    the read bandwidth a slow slave allows (``read_outstanding`` bursts per read latency).

    Every transaction uses ID 0 (AWID = ARID = 0; BID and RID are ignored), so the slave
    returns R data and B responses in issue order. The engine counts R beats from the burst
    length; an R beat whose RLAST disagrees with that count (RLAST before the burst's last
    beat, or missing on it) is a protocol error, counted and reported like a non-OKAY RRESP
    (the client's request ends with ``error``). AxCACHE = 0b0011, AxPROT = 0b010,
    AxLOCK = 0. The engine has no soft reset: the slave must share its reset, since a
    transaction the slave still answers after the engine was reset would be taken as the
    answer to a later one.

    A request is *refused* (no AXI transaction, ``errors`` counts it) when its length is 0,
    its address is not a multiple of ``W/8``, or ``addr + length > 2**64``. A refused read
    returns one beat with ``last = 1, error = 1, keep = 0``; a refused write still takes
    and drops its ``ceil(length / (W/8))`` data beats, then reports done with ``error = 1``.

    Reads. Up to ``read_outstanding`` bursts are in flight (counted from the burst's split, so
    one of them may still wait for ARREADY); R data returns through one output register to
    the client of the oldest burst, so every client gets its beats in request order, and a
    client that stalls its ``rd_data`` stalls the R channel for all clients. Timing, with
    the request taken in cycle 0: ARVALID from cycle 2; a beat reaches its client 1 cycle
    after its R handshake. With a slave that accepts AR at once, raises RVALID L >= 1 cycles
    later and never stalls, beat k of a request is offered in cycle 3 + L + k, so a 4 KiB
    read at W=64 (two 256-beat bursts) ends in cycle 514 + L: bursts follow each other
    without a bubble as long as ``read_outstanding`` bursts cover the slave's latency.

    Writes. Timing, with the request taken in cycle 0 and the client's data waiting:
    AWVALID from cycle 2, W beat k offered in cycle 3 + k (one beat per cycle while WREADY),
    and the done record 1 cycle after the request's last B handshake (a 4 KiB write at
    W=64 with a B response 1 cycle after WLAST: done in cycle 516). AW may run ahead of W by
    up to ``outstanding`` bursts, and W beats may be offered before their AW is accepted.
    WSTRB is all ones except on the request's last beat, where it covers the bytes below
    ``length``. Each client's dones come in its request order.

    Write dones do not share a register: each client has a done FIFO of its own,
    ``2 * outstanding`` entries deep, and BREADY never waits for a client. A client that
    holds its ``wr_done.ready`` low delays only itself: once it has ``2 * outstanding``
    requests taken whose dones it has not taken (in the engine or waiting in its FIFO),
    its ``wr_req.ready`` stays low, while the B responses, dones and further requests of the
    other clients go on (unlike reads, where one client stalling ``rd_data`` stalls R for
    all). The depth covers the bursts the write path holds (``outstanding`` before W,
    ``outstanding`` awaiting B), so a client that takes its dones at once is never held by
    it.

    Parameters
    ----------
    data_width : int
        Datapath width W in bits: 8, 16, 32, 64, 128, 256 or 512.
    n_read_clients, n_write_clients : int
        0 to 16 each, not both 0.
    max_burst_beats : int
        Longest burst, 1 to 256 beats.
    outstanding : int
        Bursts in flight per direction, 2 to 64.
    max_read_burst_beats : int or None
        Longest read burst, 1 to 256 beats; ``None``: ``max_burst_beats``.
    read_outstanding : int or None
        Read bursts in flight, 2 to 64; ``None``: ``outstanding``.

    Members
    -------
    axi : Out(Axi4Signature(data_width))
        The bus (AXI4 names; in Verilog ``axi__awaddr`` and so on).
    rd_req : list of In(stream.Signature(DmaReadRequest))
        One per read client (Verilog ``rd_req__0__payload`` ...).
    rd_data : list of Out(stream.Signature(DmaReadBeat(data_width)))
        Read data, in request order per client.
    wr_req : list of In(stream.Signature(DmaWriteRequest))
    wr_data : list of In(stream.Signature(DmaWriteBeat(data_width)))
        Write data: exactly ``ceil(length / (W/8))`` beats per request, in request order;
        the engine takes them only once the request is taken, and may take them before AW.
    wr_done : list of Out(stream.Signature(DmaWriteDone))
        One record per write request, in request order, after every B response of it;
        a stalled ``wr_done`` holds back only its own client's further requests.
    read_transactions, write_transactions : Out(32)
        Free-running counts of AR and AW handshakes.
    errors : Out(32)
        Free-running count of refused requests plus R beats and B responses that were not
        OKAY.
    """
    def __init__(self, data_width, n_read_clients, n_write_clients, max_burst_beats=256, *,
                 outstanding=4, max_read_burst_beats=None, read_outstanding=None):
        _check_width(data_width)
        for name, value in (("n_read_clients", n_read_clients),
                            ("n_write_clients", n_write_clients)):
            check_int_range(name, value, 0, 16)
        if n_read_clients + n_write_clients == 0:
            raise ValueError("A DMA engine needs at least one read or write client, not 0")
        check_int_range("max_burst_beats", max_burst_beats, 1, 256)
        check_int_range("outstanding", outstanding, 2, 64)
        if max_read_burst_beats is None:
            max_read_burst_beats = max_burst_beats
        check_int_range("max_read_burst_beats", max_read_burst_beats, 1, 256)
        if read_outstanding is None:
            read_outstanding = outstanding
        check_int_range("read_outstanding", read_outstanding, 2, 64)
        self.max_read_burst_beats, self.read_outstanding = max_read_burst_beats, read_outstanding
        self.data_width = data_width
        self.n_read_clients, self.n_write_clients = n_read_clients, n_write_clients
        self.max_burst_beats, self.outstanding = max_burst_beats, outstanding
        super().__init__({
            "axi": Out(Axi4Signature(data_width)),
            "rd_req": In(stream.Signature(DmaReadRequest)).array(n_read_clients),
            "rd_data": Out(stream.Signature(DmaReadBeat(data_width))).array(n_read_clients),
            "wr_req": In(stream.Signature(DmaWriteRequest)).array(n_write_clients),
            "wr_data": In(stream.Signature(DmaWriteBeat(data_width))).array(n_write_clients),
            "wr_done": Out(stream.Signature(DmaWriteDone)).array(n_write_clients),
            "read_transactions": Out(32),
            "write_transactions": Out(32),
            "errors": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        error_stbs = []
        if self.n_read_clients:
            error_stbs += self._direction(m, "read", _ReadPath, self.rd_req,
                                          {"data": self.rd_data}, self.max_read_burst_beats,
                                          self.read_outstanding)
        if self.n_write_clients:
            error_stbs += self._direction(m, "write", _WritePath, self.wr_req,
                                          {"data": self.wr_data, "done": self.wr_done},
                                          self.max_burst_beats, self.outstanding)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += self.read_transactions.eq(self.read_transactions + 1)
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += self.write_transactions.eq(self.write_transactions + 1)
        m.d.sync += self.errors.eq(self.errors + sum(error_stbs))
        return m

    def _direction(self, m, name, path_type, requests, client_ports, max_burst_beats,
                   outstanding):
        """One direction: a :class:`_BurstSplitter` over the clients' ``requests`` and a
        ``path_type`` behind it, whose client port arrays are wired to ``client_ports`` (by
        the path's member name) and whose AXI members drive this engine's. Returns the
        direction's error strobes."""
        n = len(requests)
        m.submodules[f"{name}_split"] = split = _BurstSplitter(
            n, self.data_width, max_burst_beats)
        m.submodules[f"{name}_path"] = path = path_type(n, self.data_width, outstanding)
        for port, inner in zip(requests, split.req):
            wiring.connect(m, wiring.flipped(port), inner)
        for member, ports in client_ports.items():
            for port, inner in zip(ports, getattr(path, member)):
                wiring.connect(m, wiring.flipped(port), inner)
        wiring.connect(m, split.burst, path.burst)
        if hasattr(path, "allow"):
            m.d.comb += [split.allow.eq(path.allow), path.taken_stb.eq(split.taken_stb)]
        else:
            m.d.comb += split.allow.eq(-1)
        _connect_subset(m, self.axi, path.axi, path.axi_members)
        return [split.refused_stb, path.error_stb]
