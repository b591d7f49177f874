# Ref: TIA-232-F asynchronous start-stop character framing (8N1: one start bit, eight data
#      bits least significant first, one stop bit); CRC-8/AUTOSAR as catalogued by reveng
#      (AUTOSAR "Specification of CRC Routines", 8-bit 0x2F polynomial).
"""The serial register bridge protocol: register reads and writes over a UART.

This module is the one definition of the protocol. The gateware
(:mod:`hetnic.gateware.uart_bridge`) and the host client (:mod:`hetnic.host.serial_bridge`)
both import it.

Line
----
8N1 characters at ``baud`` (default :data:`DEFAULT_BAUD`, 115200). The gateware divides its
clock by an integer ``round(clk_freq / baud)`` (at least 8, within 2 % of the nominal rate),
so the rate is a build parameter: at 115200 baud one register access takes about 1.6 ms;
use 1 Mbaud or more (most USB-UART bridges do 3 Mbaud) for table-sized work.

Frames
------
Every frame has a fixed length, starts with a SYNC byte and ends with a CRC-8 of all the
bytes before it. Multi-byte fields are big-endian on the wire.

Request, host to board, :data:`REQUEST_LEN` = 10 bytes:

====  =========  ===================================================================
byte  field      value
====  =========  ===================================================================
0     SYNC       ``0xA5`` (:data:`REQUEST_SYNC`)
1     COMMAND    :class:`Command`: ``0x01`` READ, ``0x02`` WRITE, ``0x03`` INFO
2     SEQ        any value; echoed in the response
3-4   ADDR       byte address, a multiple of 4 (the register table's offsets)
5-8   DATA       WRITE: the value; READ and INFO: ignored (send 0)
9     CRC        CRC-8/AUTOSAR of bytes 0-8
====  =========  ===================================================================

Response, board to host, :data:`RESPONSE_LEN` = 8 bytes:

====  =========  ===================================================================
byte  field      value
====  =========  ===================================================================
0     SYNC       ``0x5A`` (:data:`RESPONSE_SYNC`)
1     STATUS     :class:`Status`
2     SEQ        the request's SEQ byte as received
3-6   DATA       READ and INFO: the value read; otherwise 0
7     CRC        CRC-8/AUTOSAR of bytes 0-6
====  =========  ===================================================================

Status codes (:class:`Status`):

====  ============  ======================================================================
code  name          meaning
====  ============  ======================================================================
0x00  OK            done; DATA holds the value for READ and INFO
0x01  BAD_CHECKSUM  the request's CRC was wrong; nothing was done (SEQ may be corrupt too)
0x02  BAD_COMMAND   COMMAND is not one of :class:`Command`; nothing was done
0x03  BAD_ADDRESS   ADDR is not a multiple of 4, or beyond the bridge's address width, or
                    not an INFO address; nothing was done
0x04  BUS_TIMEOUT   the register bus did not acknowledge within the bridge's bus timeout
                    (a build parameter, :data:`DEFAULT_BUS_TIMEOUT` cycles); a write may or
                    may not have taken effect
====  ============  ======================================================================

INFO reads the bridge's own words, not the register bus:

=========  ==========================================================================
ADDR       value
=========  ==========================================================================
0x00       :data:`BRIDGE_IDENT`: ``0x5542`` ("UB") in bits 31:16, protocol major version
           in 15:8, minor in 7:0
0x10+4k    counter ``k`` of :class:`BridgeCounter`, :data:`COUNTER_BITS` (16) bits wide; it
           wraps (software keeps differences, as for the NIC's own counters)
=========  ==========================================================================

Rules
-----
- **Hunting.** The receiver skips every byte until a request SYNC (counted as JUNK_BYTES),
  then takes the next nine bytes as the rest of the request, whatever they are, and goes back
  to hunting after the CRC byte. A SYNC value inside a request is not special.
- **Gaps.** The host sends a request's ten bytes back to back. If more than
  :data:`GAP_TIMEOUT_BITS` bit times (8.7 ms at 115200 baud) pass between two bytes of one
  request, or a byte arrives with a framing error (a stop bit of 0, such as a break), the
  partial request is discarded without an answer (ABANDONED) and the receiver hunts again.
  A host that timed out on a request therefore never finds its retry glued to a fragment.
- **Answers.** Every complete request gets exactly one response, in request order, including
  one with a bad CRC (BAD_CHECKSUM: the register bus is not touched). An abandoned request
  gets none. An answer starts within a few cycles of the request's CRC byte (plus the
  register access).
- **Pipelining.** The host may send requests without waiting for answers. A request (10
  bytes) takes longer on the line than a response (8 bytes), so the bridge needs no queue: it
  keeps up as long as each register access finishes within the time of one request (ten
  character times less a few cycles; at 100 MHz and 115200 baud, 86 000 cycles). A request
  that completes while the previous one is still executing is dropped without an answer
  (OVERRUNS).
- **Retries.** The host may repeat an unanswered request with a new SEQ. Every register of
  hetnic's table may be accessed twice without harm (nothing clears on read; doorbells and
  producer indices are absolute values; a second COMMIT merges with a pending one or applies
  the same configuration again), so repeating a request whose answer was lost is safe.

Why CRC-8
---------
One byte per frame, and in gateware eight flops and an XOR network
(:class:`amaranth.lib.crc.Processor`). The 0x2F polynomial (x^8+x^5+x^3+x^2+x+1) has the
factor (x+1), so it detects every odd number of flipped bits, every burst up to 8 bits (a
mis-sampled character), and every pattern of up to three flipped bits in both frame lengths
(Hamming distance 4; the tests check this exhaustively). A 16-bit Fletcher sum would cost two
bytes per frame and still miss errors a CRC catches: it cannot tell a ``0x00`` byte from
``0xFF`` (both are 0 modulo 255), an eight-bit burst. The initial value and final XOR of
``0xFF`` make an all-zero frame, what a line stuck low produces, fail the check.
"""

from amaranth.lib import enum
from amaranth.lib.crc import catalog

__all__ = [
    "DEFAULT_BAUD", "REQUEST_SYNC", "RESPONSE_SYNC", "REQUEST_LEN", "RESPONSE_LEN",
    "GAP_TIMEOUT_BITS", "DEFAULT_BUS_TIMEOUT", "PROTOCOL_VERSION", "BRIDGE_IDENT",
    "INFO_IDENT", "INFO_COUNTERS", "COUNTER_BITS", "CHECKSUM", "Command", "Status",
    "BridgeCounter", "checksum", "info_counter_addr",
]

DEFAULT_BAUD = 115200
REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A            # differs from REQUEST_SYNC: a request echoed by a loopback
                                # cable or a half-duplex adapter is never taken for an answer
REQUEST_LEN = 10
RESPONSE_LEN = 8
#: A partial request is discarded after this many bit times without a byte.
GAP_TIMEOUT_BITS = 1000
#: Clock cycles the bridge waits for the register bus to acknowledge. The NIC's slowest
#: access (a RETA access during the table refresh after a commit) takes up to 2049 cycles.
DEFAULT_BUS_TIMEOUT = 4096

PROTOCOL_VERSION = (1, 0)       # (major, minor)
BRIDGE_IDENT = 0x5542 << 16 | PROTOCOL_VERSION[0] << 8 | PROTOCOL_VERSION[1]

INFO_IDENT = 0x00               # INFO address of BRIDGE_IDENT
INFO_COUNTERS = 0x10            # INFO address of counter 0; counter k at INFO_COUNTERS + 4k

#: Width of the bridge's counters; they wrap.
COUNTER_BITS = 16

#: The frame check: CRC-8/AUTOSAR (poly 0x2F, init 0xFF, no reflection, final XOR 0xFF;
#: check value 0xDF for b"123456789").
CHECKSUM = catalog.CRC8_AUTOSAR


class Command(enum.IntEnum, shape=8):
    READ = 0x01
    WRITE = 0x02
    INFO = 0x03             # read a bridge word (ident, counters); never touches the bus


class Status(enum.IntEnum, shape=8):
    OK = 0x00
    BAD_CHECKSUM = 0x01
    BAD_COMMAND = 0x02
    BAD_ADDRESS = 0x03
    BUS_TIMEOUT = 0x04


class BridgeCounter(enum.IntEnum, shape=3):
    """The bridge's event counters, read with INFO at :func:`info_counter_addr`."""
    REQUESTS = 0            # complete requests with a good CRC taken for execution
    BAD_CHECKSUM = 1        # complete requests with a bad CRC (answered BAD_CHECKSUM)
    REFUSED = 2             # answered BAD_COMMAND or BAD_ADDRESS
    BUS_TIMEOUTS = 3        # answered BUS_TIMEOUT
    FRAMING_ERRORS = 4      # characters whose stop bit was 0 (a break counts once)
    ABANDONED = 5           # partial requests discarded: gap timeout or a framing error
    JUNK_BYTES = 6          # bytes skipped while hunting for SYNC
    OVERRUNS = 7            # complete requests dropped: the previous one was still executing

    @property
    def label(self) -> str:
        return self.name.lower()


def info_counter_addr(counter: BridgeCounter) -> int:
    """The INFO address of one of the bridge's counters."""
    return INFO_COUNTERS + 4 * BridgeCounter(counter)


def _table():
    # MSB-first, one byte at a time; valid because CHECKSUM reflects neither input nor output
    # (the tests check :func:`checksum` against amaranth's bit-serial definition).
    assert not CHECKSUM.reflect_input and not CHECKSUM.reflect_output
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CHECKSUM.polynomial if crc & 0x80 else crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def checksum(data: bytes) -> int:
    """CRC-8 of ``data`` as sent in a frame's last byte (:data:`CHECKSUM`, table driven)."""
    crc = CHECKSUM.initial_crc
    for byte in data:
        crc = _TABLE[crc ^ byte]
    return crc ^ CHECKSUM.xor_output
