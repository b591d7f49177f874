# Ref: TIA-232-F asynchronous start-stop character framing (8N1); the frame format and its
#      rules are defined in hetnic.bridge_protocol.
"""UART register bridge: a host reads and writes the NIC's registers over a serial line.

:class:`UartRx` and :class:`UartTx` move 8N1 characters; :class:`UartBridge` runs the framed
request/response protocol of :mod:`hetnic.bridge_protocol` over them and is a master of the
register bus (:class:`~hetnic.gateware.axil.CsrSignature`): its ``csr`` port connects to a
:class:`~hetnic.gateware.registers.RegisterFile` (or a :class:`~hetnic.gateware.axil.CsrDecoder`)
exactly as :class:`~hetnic.gateware.axil.AxiLiteSlave`'s does.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out, connect

from ..bridge_protocol import (BRIDGE_IDENT, CHECKSUM, COUNTER_BITS, DEFAULT_BUS_TIMEOUT,
                               GAP_TIMEOUT_BITS, INFO_IDENT, REQUEST_LEN, REQUEST_SYNC,
                               RESPONSE_LEN, RESPONSE_SYNC, BridgeCounter, Command, Status,
                               info_counter_addr)
from .axil import CsrSignature

__all__ = ["RxChar", "BridgeRequest", "BridgeResponse", "UartRx", "UartTx", "UartBridge",
           "UartBridgedCore", "uart_divisor"]

#: Fewest clock cycles per bit: the receiver takes three samples a quarter bit apart.
MIN_DIVISOR = 8
#: Largest accepted difference between the nominal and the generated baud rate. Both ends'
#: errors add up; the receiver tolerates about 3.9 % in total.
MAX_BAUD_ERROR = 0.02


def uart_divisor(clk_freq, baud) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz, refusing rates the UART cannot
    generate within :data:`MAX_BAUD_ERROR`."""
    if not isinstance(clk_freq, (int, float)) or isinstance(clk_freq, bool) or clk_freq <= 0:
        raise ValueError(f"clk_freq must be a positive number of Hz, not {clk_freq!r}")
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ValueError(f"baud must be a positive integer, not {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_freq / 1e6:g} MHz clock: the "
                         f"UART needs at least {MIN_DIVISOR} clock cycles per bit")
    error = abs(clk_freq / divisor / baud - 1)
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud} is {error:.1%} off at {clk_freq / 1e6:g} MHz (divisor "
                         f"{divisor}); pick a rate within {MAX_BAUD_ERROR:.0%}")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR} clock cycles "
                         f"per bit, not {divisor!r}")


class _BitTimed(wiring.Component):
    """A UART side with ``divisor`` clock cycles per bit (checked: at least
    :data:`MIN_DIVISOR`); its ports are the subclass's annotations."""
    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()


class RxChar(data.Struct):
    """A received character."""
    data: 8                 # the first bit on the wire in bit 0
    framing_error: 1        # the stop bit was 0 (noise, wrong baud rate, or a break)


class BridgeRequest(data.Struct):
    """A complete request frame; fields hold the numeric values of the big-endian wire fields."""
    command: 8              # not a Command: an unknown value is answered BAD_COMMAND
    seq: 8
    addr: 16
    data: 32
    checksum_ok: 1


class BridgeResponse(data.Struct):
    """A response before framing."""
    status: Status
    seq: 8
    data: 32


class UartRx(_BitTimed):
    """8N1 receiver.

    The line passes two synchronising flops. A falling edge starts a character; every bit is
    the majority of three samples taken ``divisor // 8`` cycles apart around its middle, so a
    one-cycle glitch cannot flip a bit, and a start bit that is high again at its middle is
    ignored as a glitch. A character whose stop bit is 0 is delivered with ``framing_error``;
    the receiver then waits for the line to go high (so a break is one error, not a stream of
    zero characters).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 8 (see :func:`uart_divisor`); the three samples of a
        bit are ``divisor // 8`` cycles apart.

    Members
    -------
    rx : In(1)
        The serial line, asynchronous to the clock; idle high.
    o : Out(stream.Signature(RxChar, always_ready=True))
        One character per cycle of ``valid``, 9.6 bit times (plus three cycles of
        synchronisation) after its falling edge, in its stop bit. Nothing can stall a UART:
        the consumer takes every character in the cycle it is valid.
    """
    rx: In(1, init=1)
    o: Out(stream.Signature(RxChar, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        mid, step = d // 2, d // 8

        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(d))        # cycles since the start edge, modulo one bit time
        bit = Signal(range(10))         # 0 start, 1..8 data (LSB first), 9 stop
        ones = Signal(2)                # high samples among this bit's first two
        shift = Signal(8)
        vote = Signal()                 # valid at the third sample
        m.d.comb += vote.eq((ones + line) >= 2)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # The cycle that saw the low line is cycle 0 of the start bit.
                    m.d.sync += [timer.eq(1), bit.eq(0), ones.eq(0)]
                    m.next = "BIT"
            with m.State("BIT"):
                m.d.sync += timer.eq(Mux(timer == d - 1, 0, timer + 1))
                with m.If(timer == d - 1):
                    m.d.sync += bit.eq(bit + 1)
                with m.If((timer == mid - step) | (timer == mid)):
                    m.d.sync += ones.eq(ones + line)
                with m.If(timer == mid + step):
                    m.d.sync += ones.eq(0)
                    with m.If(bit == 0):
                        with m.If(vote):
                            m.next = "IDLE"             # a glitch, not a start bit
                    with m.Elif(bit == 9):
                        m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(shift),
                                     self.o.payload.framing_error.eq(~vote)]
                        with m.If(vote):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "BREAK"
                    with m.Else():
                        m.d.sync += shift.eq(Cat(shift[1:], vote))
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(_BitTimed):
    """8N1 transmitter: a start bit, the 8 data bits (LSB first) and a stop bit, ``divisor``
    cycles each.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 8 (see :func:`uart_divisor`): each bit holds the
        line this long.

    Members
    -------
    i : In(stream.Signature(8))
        Characters. Taken in the last cycle of the previous stop bit (or at once when idle),
        so back-to-back characters leave with exactly one stop bit between them.
    tx : Out(1)
        The serial line, driven from a flop; idle high.
    """
    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        bits = Signal(10, init=(1 << 10) - 1)   # the line from now on, bit 0 first; idle 1s
        left = Signal(range(11))                # bits of the character not yet finished
        timer = Signal(range(d))
        m.d.comb += self.tx.eq(bits[0])

        # Ready in the last cycle of a stop bit too: characters leave back to back.
        m.d.comb += self.i.ready.eq((left == 0) | ((left == 1) & (timer == d - 1)))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [bits.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         left.eq(10), timer.eq(0)]
        with m.Elif(left != 0):
            m.d.sync += timer.eq(timer + 1)
            with m.If(timer == d - 1):
                m.d.sync += [timer.eq(0), bits.eq(Cat(bits[1:], Const(1, 1))),
                             left.eq(left - 1)]
        return m


class _RequestDeframer(wiring.Component):
    """Finds request frames in the received characters (hunting, gap timeout, CRC).

    ``o`` carries each complete frame for one cycle, one cycle after its CRC byte, with
    ``checksum_ok``. ``junk_stb`` pulses for a byte skipped while hunting, ``abandoned_stb``
    when a partial request is discarded.
    """
    i: In(stream.Signature(RxChar, always_ready=True))
    o: Out(stream.Signature(BridgeRequest, always_ready=True))
    junk_stb: Out(1)
    abandoned_stb: Out(1)

    def __init__(self, gap_cycles):
        self.gap_cycles = gap_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CHECKSUM(8).create()
        char = self.i.payload
        body = Signal(8 * (REQUEST_LEN - 1))    # bytes 1..9, the earliest on top
        count = Signal(range(REQUEST_LEN))      # bytes of the request taken, SYNC included
        gap = Signal(range(self.gap_cycles + 1))
        m.d.comb += crc.data.eq(char.data)

        with m.FSM():
            with m.State("HUNT"):
                with m.If(self.i.valid & ~char.framing_error):
                    with m.If(char.data == REQUEST_SYNC):
                        m.d.comb += [crc.start.eq(1), crc.valid.eq(1)]
                        m.d.sync += [count.eq(1), gap.eq(0)]
                        m.next = "BODY"
                    with m.Else():
                        m.d.comb += self.junk_stb.eq(1)
            with m.State("BODY"):
                m.d.sync += gap.eq(gap + 1)
                with m.If(self.i.valid):
                    m.d.sync += gap.eq(0)
                    with m.If(char.framing_error):
                        m.d.comb += self.abandoned_stb.eq(1)
                        m.next = "HUNT"
                    with m.Else():
                        m.d.comb += crc.valid.eq(1)
                        m.d.sync += [body.eq(Cat(char.data, body[:-8])), count.eq(count + 1)]
                        with m.If(count == REQUEST_LEN - 1):
                            m.next = "CHECK"
                with m.Elif(gap == self.gap_cycles):
                    m.d.comb += self.abandoned_stb.eq(1)
                    m.next = "HUNT"
            with m.State("CHECK"):
                # The CRC register took the CRC byte in the previous cycle. The next
                # character is at least nine bit times away.
                payload = self.o.payload
                m.d.comb += [
                    self.o.valid.eq(1),
                    payload.command.eq(body[64:72]),
                    payload.seq.eq(body[56:64]),
                    payload.addr.eq(body[40:56]),       # wire bytes 3, 4: big-endian
                    payload.data.eq(body[8:40]),        # wire bytes 5..8: big-endian
                    payload.checksum_ok.eq(crc.match_detected),
                ]
                m.next = "HUNT"
        return m


class _ResponseFramer(wiring.Component):
    """Sends a response as SYNC, STATUS, SEQ, DATA (big-endian) and the CRC of those bytes.

    Takes a response only when the previous one has been handed to the transmitter.
    """
    i: In(stream.Signature(BridgeResponse))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CHECKSUM(8).create()
        head = Signal(8 * (RESPONSE_LEN - 1))   # the bytes before the CRC, the next on top
        index = Signal(range(RESPONSE_LEN))     # the byte being offered
        settle = Signal()   # a byte went out in the previous cycle: the CRC is updating
        m.d.sync += settle.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    p = self.i.payload
                    m.d.sync += [head.eq(Cat(p.data, p.seq, p.status, Const(RESPONSE_SYNC, 8))),
                                 index.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                last = index == RESPONSE_LEN - 1
                m.d.comb += [
                    self.o.valid.eq(~settle),
                    self.o.payload.eq(Mux(last, crc.crc, head[-8:])),
                    crc.data.eq(head[-8:]),
                ]
                with m.If(self.o.valid & self.o.ready):
                    m.d.comb += [crc.start.eq(index == 0), crc.valid.eq(~last)]
                    m.d.sync += [head.eq(head << 8), index.eq(index + 1), settle.eq(1)]
                    with m.If(last):
                        m.next = "IDLE"
        return m


class UartBridge(wiring.Component):
    """Register reads and writes from a host over a UART (:mod:`hetnic.bridge_protocol`).

    One request executes at a time: a complete request with a good CRC is decoded in the cycle
    after its CRC byte; a READ or WRITE then holds ``r_stb`` or ``w_stb`` until ``ack`` (the
    bus contract of :class:`~hetnic.gateware.axil.CsrSignature`) or, after ``bus_timeout``
    cycles without one, drops it and answers BUS_TIMEOUT (a late ``ack`` is ignored). The
    response leaves about three cycles after the access ends. Bad input never wedges the
    bridge: every path returns to hunting for the next request, and each kind of trouble is
    counted in ``counters``.

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int
        Line rate; the clock is divided by the nearest integer (see :func:`uart_divisor`).
    addr_width : int
        Width of the register bus address, 4 to 16. A READ or WRITE whose address has bits
        set above it, or is not a multiple of 4, is answered BAD_ADDRESS.
    gap_bits : int
        Inter-byte timeout inside a request, in bit times (at least 20).
    bus_timeout : int
        Cycles to wait for ``ack``.

    Members
    -------
    rx : In(1)
        Serial line from the host, asynchronous; idle high.
    tx : Out(1)
        Serial line to the host; idle high.
    csr : Out(CsrSignature(addr_width))
        The register bus, master side.
    counters : Out(data.ArrayLayout(COUNTER_BITS, len(BridgeCounter)))
        The event counters, indexed by :class:`~hetnic.bridge_protocol.BridgeCounter` (also
        readable by the host with INFO). They wrap.
    error_stb : Out(1)
        Pulses whenever a counter other than REQUESTS counts (for an LED).
    """
    def __init__(self, clk_freq, baud, addr_width=16, *, gap_bits=GAP_TIMEOUT_BITS,
                 bus_timeout=DEFAULT_BUS_TIMEOUT):
        self.divisor = uart_divisor(clk_freq, baud)
        if not isinstance(addr_width, int) or not 4 <= addr_width <= 16:
            raise ValueError(f"addr_width must be an integer from 4 to 16 (the protocol's "
                             f"address field), not {addr_width!r}")
        if not isinstance(gap_bits, int) or gap_bits < 20:
            raise ValueError(f"gap_bits must be an integer of at least 20 bit times (two "
                             f"characters), not {gap_bits!r}")
        if not isinstance(bus_timeout, int) or bus_timeout < 2:
            raise ValueError(f"bus_timeout must be an integer of at least 2 cycles, not "
                             f"{bus_timeout!r}")
        self.clk_freq, self.baud = clk_freq, baud
        self.addr_width, self.gap_bits, self.bus_timeout = addr_width, gap_bits, bus_timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "csr": Out(CsrSignature(addr_width)),
            "counters": Out(data.ArrayLayout(COUNTER_BITS, len(BridgeCounter))),
            "error_stb": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)
        m.submodules.deframer = deframer = _RequestDeframer(self.gap_bits * self.divisor)
        m.submodules.framer = framer = _ResponseFramer()
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        connect(m, uart_rx.o, deframer.i)
        connect(m, framer.o, uart_tx.i)

        event = {c: Signal(name=f"{c.label}_stb") for c in BridgeCounter}
        m.d.comb += [
            event[BridgeCounter.FRAMING_ERRORS].eq(uart_rx.o.valid &
                                                   uart_rx.o.payload.framing_error),
            event[BridgeCounter.JUNK_BYTES].eq(deframer.junk_stb),
            event[BridgeCounter.ABANDONED].eq(deframer.abandoned_stb),
        ]
        self._execute(m, deframer.o, framer.i, event)

        for c in BridgeCounter:
            count = Signal(COUNTER_BITS, name=f"{c.label}_count")
            with m.If(event[c]):
                m.d.sync += count.eq(count + 1)
            m.d.comb += self.counters[c].eq(count)
        m.d.comb += self.error_stb.eq(Cat(event[c] for c in BridgeCounter
                                          if c != BridgeCounter.REQUESTS).any())
        return m

    def _execute(self, m, requests, responses, event):
        """One request at a time: decode, access the bus, hand the response to the framer."""
        csr = self.csr
        req = Signal(BridgeRequest)
        resp = Signal(BridgeResponse)
        timer = Signal(range(self.bus_timeout))
        # The request register holds still during the access: it drives the bus directly.
        m.d.comb += [responses.payload.eq(resp), csr.addr.eq(req.addr), csr.w_data.eq(req.data)]

        def answer(status, counter=None):
            m.d.sync += resp.status.eq(status)
            if counter is not None:
                m.d.comb += event[counter].eq(1)
            m.next = "RESPOND"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(requests.valid):
                    m.d.sync += req.eq(requests.payload)
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [resp.seq.eq(req.seq), resp.data.eq(0)]
                bus_addr_ok = (req.addr[:2] == 0) & (req.addr[self.addr_width:] == 0)
                with m.If(~req.checksum_ok):
                    answer(Status.BAD_CHECKSUM, BridgeCounter.BAD_CHECKSUM)
                with m.Else():
                    m.d.comb += event[BridgeCounter.REQUESTS].eq(1)
                    with m.Switch(req.command):
                        with m.Case(Command.READ, Command.WRITE):
                            with m.If(bus_addr_ok):
                                m.d.sync += timer.eq(0)
                                m.next = "BUS"
                            with m.Else():
                                answer(Status.BAD_ADDRESS, BridgeCounter.REFUSED)
                        with m.Case(Command.INFO):
                            self._info(m, req.addr, resp, answer)
                        with m.Default():
                            answer(Status.BAD_COMMAND, BridgeCounter.REFUSED)
            with m.State("BUS"):
                reading = req.command == Command.READ
                m.d.comb += [csr.r_stb.eq(reading), csr.w_stb.eq(~reading)]
                m.d.sync += timer.eq(timer + 1)
                with m.If(csr.ack):
                    m.d.sync += resp.data.eq(Mux(reading, csr.r_data, 0))
                    answer(Status.OK)
                with m.Elif(timer == self.bus_timeout - 1):
                    answer(Status.BUS_TIMEOUT, BridgeCounter.BUS_TIMEOUTS)
            with m.State("RESPOND"):
                m.d.comb += responses.valid.eq(1)
                with m.If(responses.ready):
                    m.next = "IDLE"
        m.d.comb += event[BridgeCounter.OVERRUNS].eq(requests.valid & ~fsm.ongoing("IDLE"))

    def _info(self, m, addr, resp, answer):
        with m.Switch(addr):
            with m.Case(INFO_IDENT):
                m.d.sync += resp.data.eq(BRIDGE_IDENT)
                answer(Status.OK)
            for c in BridgeCounter:
                with m.Case(info_counter_addr(c)):
                    m.d.sync += resp.data.eq(self.counters[c])
                    answer(Status.OK)
            with m.Default():
                answer(Status.BAD_ADDRESS, BridgeCounter.REFUSED)


class UartBridgedCore(wiring.Component):
    """Base of a board core whose registers the host reaches over a :class:`UartBridge`: the
    two serial lines are its ports. A subclass builds the bridge (on these pins) and the rest
    of the core in its ``elaborate``, and may add ports as annotations of its own.

    Members
    -------
    uart_rx : In(1)
        Serial line from the host, asynchronous, idle high.
    uart_tx : Out(1)
        Serial line to the host, idle high.
    """
    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
