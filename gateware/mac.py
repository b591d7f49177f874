# Ref: IEEE 802.3-2022 clause 3 (MAC frame, FCS), clause 4.4 (interframe gap), clause 35
#      (GMII); Reduced Gigabit Media Independent Interface (RGMII) version 2.0 (HP, 2002).
"""A gigabit Ethernet MAC: GMII receive and transmit cores and an RGMII adapter.

The cores work on GMII, one byte per 125 MHz cycle (:class:`GmiiSignature`), so they are
simulated directly and sit unchanged behind :class:`RgmiiPhy`, which turns the RGMII pins
(4 data bits on each clock edge) into GMII with ``amaranth.lib.io.DDRBuffer`` on ECP5, or
with :class:`DdrBufferModel` in simulation. Only 1000 Mb/s is supported: RGMII at 10/100
Mb/s (a 2.5/25 MHz clock, one nibble per cycle) and the in-band link status that RGMII
sends between frames are out of scope.
"""

from amaranth.hdl import C, Cat, ClockDomain, ClockSignal, Module, Mux, Signal
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..protocol import (CRC32_POLY, CRC32_RESIDUE, ETH_DEFAULT_MAX_FRAME, ETH_FCS_LEN,
                        ETH_PAD_TO, ETH_PREAMBLE_BYTE, ETH_SFD_BYTE)
from .beat import Beat

__all__ = ["CRC32_POLY", "CRC32_RESIDUE", "crc32_step", "GmiiSignature", "GmiiRxMac",
           "GmiiTxMac", "RgmiiPhy", "DdrBufferModel", "RgmiiMacTop"]

# Wire framing constants live in hetnic.protocol; short local names for the code below.
PREAMBLE_BYTE, SFD_BYTE, MIN_FRAME, FCS_LEN = (ETH_PREAMBLE_BYTE, ETH_SFD_BYTE, ETH_PAD_TO,
                                               ETH_FCS_LEN)


def _crc32_byte_model(crc, byte):
    crc ^= byte
    for _ in range(8):
        crc = (crc >> 1) ^ (CRC32_POLY if crc & 1 else 0)
    return crc


# The byte step is linear over GF(2) in (crc, byte): output bit j is the parity of the bits
# of ``Cat(crc, byte)`` selected by mask j, the bits whose own step sets bit j.
_CRC_MASKS = [
    sum(1 << k for k in range(32) if _crc32_byte_model(1 << k, 0) >> j & 1) |
    sum(1 << (32 + k) for k in range(8) if _crc32_byte_model(0, 1 << k) >> j & 1)
    for j in range(32)
]


def crc32_step(crc, byte):
    """The CRC-32 register after one more byte, as a combinational expression.

    ``crc`` is the 32-bit register of the reflected algorithm (polynomial
    :data:`CRC32_POLY`), ``byte`` the next byte as sent on the wire. Starting from
    ``0xFFFFFFFF``, the register after a frame, inverted, is ``zlib.crc32`` of the frame; its
    FCS is that value with the least significant byte sent first.
    """
    bits = Cat(crc, byte)
    return Cat(*((bits & mask).xor() for mask in _CRC_MASKS))


class GmiiSignature(wiring.Signature):
    """One direction of GMII at 1000 Mb/s, seen from the side that drives it.

    Members
    -------
    data : Out(8)
        The byte of this cycle (``TXD`` / ``RXD``).
    en : Out(1)
        A frame byte (preamble, SFD, data or FCS) is on ``data`` (``TX_EN`` / ``RX_DV``).
    er : Out(1)
        With ``en``: the byte is in error (``TX_ER`` / ``RX_ER``). Without ``en`` (carrier
        extension, false carrier) the receiver ignores it.
    """
    def __init__(self):
        super().__init__({"data": Out(8), "en": Out(1), "er": Out(1)})


def _counter(m, counter, condition):
    with m.If(condition):
        m.d.sync += counter.eq(counter + 1)


class GmiiRxMac(wiring.Component):
    """Receive MAC: GMII in, frames out without preamble, SFD and FCS.

    The MAC accepts any number of ``0x55`` preamble bytes (none included) before the SFD;
    a burst holding any other byte before its SFD, or ``er`` before it, is ignored up to the
    end of ``en``. After the SFD every byte up to the fall of ``en`` is the frame and its FCS.

    Every frame that began with an SFD comes out on ``o``, with ``error`` set on its last
    beat if it is bad, and is counted in exactly one counter, the first that applies:

    - ``overflow_count``: a byte was due on ``o`` while the previous beat still waited
      there. GMII cannot wait and the MAC holds no more than its output register, so the
      frame is cut: if some of it has gone out, a beat with ``keep = 0``, ``last`` and
      ``error`` ends it as soon as ``o`` is free; if none has, it is dropped without a trace
      on ``o``. While a frame comes in, ``o`` must take a beat in every cycle it offers one:
      put a FIFO after the MAC (the board top's clock-domain crossing does).
    - ``oversize_count``: more than ``max_frame`` bytes before the FCS. The frame ends with
      its first ``max_frame`` bytes (the last beat carries ``error``); the rest up to the
      fall of ``en`` is dropped, so a jabbering PHY cannot hold the MAC.
    - ``phy_error_count``: the PHY signalled an error (``er``) during the frame.
    - ``runt_count``: shorter than 64 bytes with its FCS. A frame of 4 bytes or fewer has no
      data byte; it comes out as one beat with ``keep = 0``, ``last`` and ``error``.
    - ``fcs_error_count``: the FCS does not match.
    - ``frames_ok_count``: the frame is good; ``error`` is 0 on all of its beats.

    Errored frames are passed on, not dropped: the RX pipeline marks them
    ``ParseError.MAC_ERROR`` and drops them under ``DropReason.MAC_ERROR`` (unless
    ``CTRL.pass_errors``), so every frame is accounted for downstream too.

    Latency: a byte comes out on ``o`` 6 cycles after it is on ``gmii`` (the MAC holds 5
    bytes back to recognise the FCS); the last beat of a frame comes out the cycle after
    ``en`` falls.

    Parameters
    ----------
    max_frame : int
        Longest frame without its FCS, as the RX pipeline's ``MAX_FRAME`` register counts:
        1522 by default (a 1500-byte payload with two VLAN tags; 1526 bytes on the wire
        with the FCS).
    counter_width : int
        Width of the wrapping counters.

    Members
    -------
    gmii : In(GmiiSignature())
        The receive side of the PHY, in this component's ``sync`` domain.
    o : Out(stream.Signature(Beat(8)))
        Frame bytes; ``error`` is only ever set on a ``last`` beat.
    frames_ok_count, fcs_error_count, runt_count, oversize_count, phy_error_count, \
overflow_count : Out(counter_width)
        Frames counted as above; each count is updated the cycle after the frame's last beat
        is decided.
    """
    def __init__(self, *, max_frame=ETH_DEFAULT_MAX_FRAME, counter_width=32):
        if not isinstance(max_frame, int) or not MIN_FRAME <= max_frame <= 16383:
            raise ValueError(f"max_frame must be an integer from {MIN_FRAME} to 16383, "
                             f"not {max_frame!r}")
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 64:
            raise ValueError(f"counter_width must be an integer from 1 to 64, "
                             f"not {counter_width!r}")
        self.max_frame = max_frame
        super().__init__({
            "gmii": In(GmiiSignature()),
            "o": Out(stream.Signature(Beat(8))),
            **{name: Out(counter_width) for name in self.COUNTERS},
        })

    COUNTERS = ("frames_ok_count", "fcs_error_count", "runt_count", "oversize_count",
                "phy_error_count", "overflow_count")

    def elaborate(self, platform):
        m = Module()
        rx, o = self.gmii, self.o

        history = Signal(8 * (FCS_LEN + 1))     # the last 5 bytes, the newest in bits 7..0
        oldest = history[-8:]
        count = Signal(range(self.max_frame + FCS_LEN + 2))   # bytes after the SFD
        crc = Signal(32)
        er_seen = Signal()
        started = Signal()          # a beat of this frame has gone out
        cut = Signal()              # the frame lost a byte to backpressure
        end_pending = Signal()      # a cut frame still needs its closing beat

        # One output register: ``valid`` is set when a beat is loaded, cleared when taken.
        free = ~o.valid | o.ready
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        def load(data, keep, last, error):
            m.d.sync += [o.valid.eq(1), o.payload.data.eq(data), o.payload.keep.eq(keep),
                         o.payload.last.eq(last), o.payload.error.eq(error)]

        with m.If(end_pending & free):
            load(0, 0, 1, 1)
            m.d.sync += end_pending.eq(0)

        blocked = ~free | end_pending

        def emit(data, keep, last, error):
            with m.If(cut):
                pass                # the rest of a cut frame is dropped
            with m.Elif(~blocked):
                load(data, keep, last, error)
                m.d.sync += started.eq(1)
            with m.Else():
                m.d.sync += [cut.eq(1), end_pending.eq(started)]

        def start():
            m.d.sync += [count.eq(0), crc.eq(0xFFFFFFFF), er_seen.eq(0), started.eq(0),
                         cut.eq(0)]

        lost = cut | blocked        # this frame is (or is being) cut for backpressure
        runt = count < MIN_FRAME + FCS_LEN
        fcs_bad = crc != CRC32_RESIDUE

        with m.FSM():
            with m.State("IDLE"):
                with m.If(rx.en):
                    with m.If(~rx.er & (rx.data == SFD_BYTE)):
                        start()
                        m.next = "FRAME"
                    with m.Elif(~rx.er & (rx.data == PREAMBLE_BYTE)):
                        m.next = "PREAMBLE"
                    with m.Else():
                        m.next = "DISCARD"
            with m.State("PREAMBLE"):
                with m.If(~rx.en):
                    m.next = "IDLE"
                with m.Elif(~rx.er & (rx.data == SFD_BYTE)):
                    start()
                    m.next = "FRAME"
                with m.Elif(rx.er | (rx.data != PREAMBLE_BYTE)):
                    m.next = "DISCARD"
            with m.State("FRAME"):
                with m.If(rx.en & (count == self.max_frame + FCS_LEN)):
                    # The byte that proves the frame oversize: end it after max_frame bytes.
                    emit(oldest, 1, 1, 1)
                    _counter(m, self.overflow_count, lost)
                    _counter(m, self.oversize_count, ~lost)
                    m.next = "DISCARD"
                with m.Elif(rx.en):
                    m.d.sync += [history.eq(Cat(rx.data, history[:-8])), count.eq(count + 1),
                                 crc.eq(crc32_step(crc, rx.data)), er_seen.eq(er_seen | rx.er)]
                    with m.If(count > FCS_LEN):
                        emit(oldest, 1, 0, 0)
                with m.Else():
                    has_data = count > FCS_LEN
                    emit(Mux(has_data, oldest, 0), has_data, 1, er_seen | runt | fcs_bad)
                    _counter(m, self.overflow_count, lost)
                    _counter(m, self.phy_error_count, ~lost & er_seen)
                    _counter(m, self.runt_count, ~lost & ~er_seen & runt)
                    _counter(m, self.fcs_error_count, ~lost & ~er_seen & ~runt & fcs_bad)
                    _counter(m, self.frames_ok_count, ~lost & ~er_seen & ~runt & ~fcs_bad)
                    m.next = "IDLE"
            with m.State("DISCARD"):
                with m.If(~rx.en):
                    m.next = "IDLE"
        return m


class GmiiTxMac(wiring.Component):
    """Transmit MAC: frames in, GMII out with preamble, SFD, padding and FCS.

    Each frame goes out as 7 preamble bytes ``0x55``, the SFD ``0xD5``, the frame bytes,
    zeros up to 60 bytes, and the FCS; then ``en`` stays low for at least ``ifg`` cycles
    before the next preamble. A frame starts once its first beat is on ``i`` and the gap is
    over; ``gmii`` shows the first preamble byte the cycle after.

    From the cycle after the SFD the MAC takes one beat per cycle: a frame must be
    available at line rate once it has started (put a store-and-forward FIFO in front).
    ``keep`` is only looked at on the last beat, whose byte is not sent if ``keep`` is 0.

    Errors, so that the far end always sees a bad frame and the MAC never waits:

    - A frame with ``error`` set on any beat is sent whole, with its FCS inverted and
      ``er`` set during the 4 FCS bytes (counted in ``error_count`` and ``frames_count``).
    - Underrun: ``i`` has no beat while a frame is being sent. The MAC sends one byte with
      ``er`` set, ends the frame there, and discards the rest of the input frame up to its
      last beat (counted in ``underrun_count``). The gap starts at the cut.

    Parameters
    ----------
    ifg : int
        Smallest interframe gap in cycles (byte times): 12 or more.
    counter_width : int
        Width of the wrapping counters.

    Members
    -------
    i : In(stream.Signature(Beat(8)))
        Frames to send, without FCS.
    gmii : Out(GmiiSignature())
        To the PHY; registered.
    frames_count, error_count, underrun_count : Out(counter_width)
        Frames sent whole, frames sent with an inverted FCS, frames cut by an underrun.
    """
    def __init__(self, *, ifg=12, counter_width=32):
        if not isinstance(ifg, int) or not 12 <= ifg <= 255:
            raise ValueError(f"ifg must be an integer from 12 to 255, not {ifg!r}")
        if not isinstance(counter_width, int) or not 1 <= counter_width <= 64:
            raise ValueError(f"counter_width must be an integer from 1 to 64, "
                             f"not {counter_width!r}")
        self.ifg = ifg
        super().__init__({
            "i": In(stream.Signature(Beat(8))),
            "gmii": Out(GmiiSignature()),
            **{name: Out(counter_width) for name in self.COUNTERS},
        })

    COUNTERS = ("frames_count", "error_count", "underrun_count")

    def elaborate(self, platform):
        m = Module()
        i, tx = self.i, self.gmii

        crc = Signal(32)
        sent = Signal(range(MIN_FRAME + 1))     # frame bytes and padding, saturating at 60
        index = Signal(range(8))                # preamble byte, then FCS byte
        stomp = Signal()                        # the frame carries ``error``
        gap = Signal(range(self.ifg + 1))       # idle cycles still owed

        m.d.sync += [tx.en.eq(0), tx.er.eq(0), tx.data.eq(0)]
        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)

        def send(data, er=0):
            m.d.sync += [tx.data.eq(data), tx.en.eq(1), tx.er.eq(er)]

        # One CRC step, shared by the frame bytes and the padding.
        crc_byte, crc_en = Signal(8), Signal()
        with m.If(crc_en):
            m.d.sync += [crc.eq(crc32_step(crc, crc_byte)),
                         sent.eq(Mux(sent == MIN_FRAME, MIN_FRAME, sent + 1))]

        def send_byte(data):
            send(data)
            m.d.comb += [crc_byte.eq(data), crc_en.eq(1)]

        def tail(stomp_now):
            """Send the next padding or FCS byte (the frame's bytes are all sent)."""
            with m.If(sent < MIN_FRAME):
                send_byte(C(0, 8))
                m.next = "TAIL"
            with m.Else():
                fcs = Mux(stomp_now, crc, ~crc)
                send(fcs.word_select(index[:2], 8), er=stomp_now)
                m.d.sync += index.eq(index + 1)
                with m.If(index == FCS_LEN - 1):
                    m.d.sync += gap.eq(self.ifg)
                    _counter(m, self.frames_count, 1)
                    _counter(m, self.error_count, stomp_now)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "TAIL"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(i.valid & (gap == 0)):
                    send(PREAMBLE_BYTE)
                    m.d.sync += [index.eq(1), crc.eq(0xFFFFFFFF), sent.eq(0), stomp.eq(0)]
                    m.next = "PREAMBLE"
            with m.State("PREAMBLE"):
                with m.If(index == 7):
                    send(SFD_BYTE)
                    m.d.sync += index.eq(0)
                    m.next = "DATA"
                with m.Else():
                    send(PREAMBLE_BYTE)
                    m.d.sync += index.eq(index + 1)
            with m.State("DATA"):
                m.d.comb += i.ready.eq(1)
                stomp_now = stomp | i.payload.error
                m.d.sync += stomp.eq(stomp_now)
                with m.If(~i.valid):
                    send(0, er=1)
                    m.d.sync += gap.eq(self.ifg)
                    _counter(m, self.underrun_count, 1)
                    m.next = "DRAIN"
                with m.Elif(~i.payload.last):
                    send_byte(i.payload.data)
                with m.Elif(i.payload.keep[0]):
                    send_byte(i.payload.data)
                    m.next = "TAIL"
                with m.Else():
                    tail(stomp_now)     # an empty last beat: the tail starts at once
            with m.State("TAIL"):
                tail(stomp)
            with m.State("DRAIN"):
                m.d.comb += i.ready.eq(1)
                with m.If(i.valid & i.payload.last):
                    m.next = "IDLE"
        return m


class DdrBufferModel(io.DDRBuffer):
    """A behavioural :class:`~amaranth.lib.io.DDRBuffer`, for simulation only.

    Same interface and timing as ``DDRBuffer`` (input and output latency 1): ``i[0]`` is the
    value at a rising edge and ``i[1]`` the value at the falling edge after it, both
    presented at the next rising edge; ``o[0]`` is driven from the rising edge after it is
    given, ``o[1]`` from the falling edge after that. Built from rising- and falling-edge
    flip-flops around a plain :class:`~amaranth.lib.io.Buffer`, so it runs in Amaranth's
    simulator (with a ``SimulationPort``) and in Verilator (an ``IOPort`` becomes a
    top-level port). Not for synthesis: the output multiplexes on the clock.
    """
    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = io.Buffer(self.direction, self.port)
        width = len(self.port)
        if self.direction is not io.Direction.Output:
            m.domains.i_fall = ClockDomain(clk_edge="neg", local=True, reset_less=True)
            m.d.comb += ClockSignal("i_fall").eq(ClockSignal(self.i_domain))
            rise, fall = Signal(width, reset_less=True), Signal(width, reset_less=True)
            m.d[self.i_domain] += [rise.eq(buf.i), self.i[0].eq(rise), self.i[1].eq(fall)]
            m.d.i_fall += fall.eq(buf.i)
        if self.direction is not io.Direction.Input:
            m.domains.o_fall = ClockDomain(clk_edge="neg", local=True, reset_less=True)
            m.d.comb += ClockSignal("o_fall").eq(ClockSignal(self.o_domain))
            o0, o1 = Signal(width, reset_less=True), Signal(width, reset_less=True)
            o1_fall, oe = Signal(width, reset_less=True), Signal(reset_less=True)
            m.d[self.o_domain] += [o0.eq(self.o[0]), o1.eq(self.o[1]), oe.eq(self.oe)]
            m.d.o_fall += o1_fall.eq(o1)
            m.d.comb += [buf.o.eq(Mux(ClockSignal(self.o_domain), o0, o1_fall)),
                         buf.oe.eq(oe)]
        return m


class RgmiiPhy(wiring.Component):
    """RGMII pins to GMII at 1000 Mb/s, through double data rate I/O buffers.

    Receive: the PHY sends ``RXD[3:0]`` (data bits 3..0) and ``RX_CTL`` = ``RX_DV`` at the
    rising edge of its ``RX_CLK``, ``RXD[3:0]`` (data bits 7..4) and ``RX_CTL`` = ``RX_DV
    XOR RX_ER`` at the falling edge. ``rx`` is registered in ``rx_domain``, which the board
    top clocks from ``RX_CLK`` (with the PHY's internal RX delay, or a delay line, centring
    the clock on the data). ``rx`` follows the pins by the buffers' input latency (1 cycle
    for :class:`DdrBufferModel`; see ``DDRBuffer`` for a platform's).

    Transmit: the same encoding from ``tx`` (in ``tx_domain``) onto ``TXD``/``TX_CTL``, and
    ``TX_CLK`` forwarded as a DDR output of (1, 0) in ``tx_clk_domain``. By default that is
    ``tx_domain``, so the clock is edge-aligned with the data and the PHY must add the 2 ns
    TX delay (RGMII-ID); a board without one passes a 90-degree-shifted PLL output instead.

    Parameters
    ----------
    rxd, rx_ctl, txd, tx_ctl, tx_clk : PortLike
        The RGMII pins: 4, 1, 4, 1 and 1 wide.
    rx_domain, tx_domain, tx_clk_domain : str
        Clock domains of ``rx``, of ``tx`` and of the forwarded clock.
    ddr_buffer : type
        ``amaranth.lib.io.DDRBuffer`` (the platform picks the primitives, ``IDDRX1F`` and
        ``ODDRX1F`` on ECP5) or :class:`DdrBufferModel` for simulation.

    Members
    -------
    rx : Out(GmiiSignature())
        Received bytes, in ``rx_domain``.
    tx : In(GmiiSignature())
        Bytes to send, in ``tx_domain``.
    """
    def __init__(self, rxd, rx_ctl, txd, tx_ctl, tx_clk, *, rx_domain="rx", tx_domain="tx",
                 tx_clk_domain=None, ddr_buffer=io.DDRBuffer):
        for name, port, width in (("rxd", rxd, 4), ("rx_ctl", rx_ctl, 1), ("txd", txd, 4),
                                  ("tx_ctl", tx_ctl, 1), ("tx_clk", tx_clk, 1)):
            if not isinstance(port, io.PortLike) or len(port) != width:
                raise TypeError(f"{name} must be a {width}-bit PortLike, not {port!r}")
        self._ports = {"rxd": rxd, "rx_ctl": rx_ctl, "txd": txd, "tx_ctl": tx_ctl,
                       "tx_clk": tx_clk}
        self._rx_domain, self._tx_domain = rx_domain, tx_domain
        self._tx_clk_domain = tx_clk_domain or tx_domain
        self._ddr_buffer = ddr_buffer
        super().__init__({"rx": Out(GmiiSignature()), "tx": In(GmiiSignature())})

    def elaborate(self, platform):
        m = Module()
        ddr, ports = self._ddr_buffer, self._ports
        m.submodules.rxd = rxd = ddr("i", ports["rxd"], i_domain=self._rx_domain)
        m.submodules.rx_ctl = rx_ctl = ddr("i", ports["rx_ctl"], i_domain=self._rx_domain)
        m.d.comb += [self.rx.data.eq(Cat(rxd.i[0], rxd.i[1])), self.rx.en.eq(rx_ctl.i[0]),
                     self.rx.er.eq(rx_ctl.i[0] ^ rx_ctl.i[1])]

        m.submodules.txd = txd = ddr("o", ports["txd"], o_domain=self._tx_domain)
        m.submodules.tx_ctl = tx_ctl = ddr("o", ports["tx_ctl"], o_domain=self._tx_domain)
        m.submodules.tx_clk = tx_clk = ddr("o", ports["tx_clk"], o_domain=self._tx_clk_domain)
        m.d.comb += [txd.o[0].eq(self.tx.data[:4]), txd.o[1].eq(self.tx.data[4:]),
                     tx_ctl.o[0].eq(self.tx.en), tx_ctl.o[1].eq(self.tx.en ^ self.tx.er),
                     tx_clk.o[0].eq(1), tx_clk.o[1].eq(0)]
        return m


class RgmiiMacTop(wiring.Component):
    """Both MAC cores behind :class:`RgmiiPhy` with :class:`DdrBufferModel` buffers, with
    flat ports for cocotb (simulation only).

    Ports: ``clk``/``rst`` clock everything (the PHY's ``RX_CLK`` is taken to be ``clk``);
    ``clk90`` is ``clk`` delayed by a quarter period and becomes ``rgmii_tx_clk``, as a PHY
    in RGMII-ID mode would see it. ``rgmii_rxd``/``rgmii_rx_ctl`` in and ``rgmii_txd``/
    ``rgmii_tx_ctl``/``rgmii_tx_clk`` out are the RGMII pins; ``m_axis_*`` the received
    frames (``tuser`` = error), ``s_axis_*`` the frames to send; ``rx_*_count`` and
    ``tx_*_count`` the counters of :class:`GmiiRxMac` and :class:`GmiiTxMac`.
    """
    def __init__(self, *, max_frame=ETH_DEFAULT_MAX_FRAME, ifg=12):
        # Imported here: top.py wraps the whole NIC, and a board top there will import this.
        from .top import _axis_members
        self.rx_mac = GmiiRxMac(max_frame=max_frame)
        self.tx_mac = GmiiTxMac(ifg=ifg)
        super().__init__({
            "clk90": In(1), **_axis_members(8),
            **{f"rx_{name}": Out(32) for name in GmiiRxMac.COUNTERS},
            **{f"tx_{name}": Out(32) for name in GmiiTxMac.COUNTERS},
        })

    def elaborate(self, platform):
        from .top import _wire_axis
        m = Module()
        m.domains.tx90 = ClockDomain(reset_less=True)
        m.d.comb += ClockSignal("tx90").eq(self.clk90)

        def pin(name, width, direction):
            return io.SingleEndedPort(io.IOPort(width, name=name), direction=direction)

        m.submodules.phy = phy = RgmiiPhy(
            pin("rgmii_rxd", 4, "i"), pin("rgmii_rx_ctl", 1, "i"), pin("rgmii_txd", 4, "o"),
            pin("rgmii_tx_ctl", 1, "o"), pin("rgmii_tx_clk", 1, "o"), rx_domain="sync",
            tx_domain="sync", tx_clk_domain="tx90", ddr_buffer=DdrBufferModel)
        m.submodules.rx_mac = rx_mac = self.rx_mac
        m.submodules.tx_mac = tx_mac = self.tx_mac
        connect(m, phy.rx, rx_mac.gmii)
        connect(m, tx_mac.gmii, phy.tx)
        m.d.comb += _wire_axis(self, tx_mac.i, rx_mac.o)
        for prefix, mac in (("rx", rx_mac), ("tx", tx_mac)):
            for name in mac.COUNTERS:
                m.d.comb += getattr(self, f"{prefix}_{name}").eq(getattr(mac, name))
        return m
