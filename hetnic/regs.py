"""The register table: the single source of every CSR offset and field.

The gateware (:mod:`hetnic.gateware.registers`) decodes addresses from this table, the host
driver reads and writes through it, and ``hetnic regmap`` renders it as Markdown, JSON and a
C header. Nothing else in hetnic writes a register offset as a number.

Registers are 32 bits wide at byte addresses on the AXI4-Lite ``csr`` port. Access kinds:

``ro``
    Read-only status or identification.
``rw``
    Live read/write.
``shadow``
    Configuration written to a shadow copy. Reads return the shadow. The value takes effect
    only when ``COMMIT`` is written and the RX pipeline reaches a frame boundary: every frame is
    processed entirely with the old or entirely with the new configuration, and the
    ``GENERATION`` register (carried in each frame's metadata) increments. The commit copies
    the shadows as they are when it applies, so the host writes the next configuration only
    after ``COMMIT_STATUS`` reads 0 (the driver does this). Applying takes ``n_rules * 32``
    cycles (the rule shadows are a block RAM, copied word by word) plus the frames still in
    the pipeline; shadow writes issued meanwhile wait for the end of it.
``wo``
    Write-only strobe; reads return 0.
``counter``
    Read-only 32-bit counter that wraps. Software accumulates differences between reads.

Register arrays (``count > 1``) repeat every ``stride`` bytes; their count may depend on a
build parameter (``"reta_size"``, ``"n_rules"``, ``"queues"``), resolved by :class:`RegisterMap`.
A count of 0 leaves a register out of a build: the NIC core's queue blocks, and the hash
requests of the reduced serial core (``"injector"``, 0 or 1), the MAC counters of a
board (``"mac_ports"``), and the flow table's ``FLOW_*`` registers (``"flow_table"``, 0 or
1: the boards build without the table).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from amaranth.lib import data

from .protocol import (DropReason, FlowEntry, MS_RSS_DEFAULT_KEY, RSS_MAX_INPUT_LEN, Rule,
                       RuleAction, pack)

__all__ = ["Field", "Register", "REGISTERS", "RegisterMap", "ID_MAGIC", "VERSION",
           "RULE_WORDS", "RULE_STRIDE", "INJ_DATA_WORDS", "DEFAULT_PARAMS", "PARAM_LIMITS",
           "QUEUE_CTRL_ENABLE", "EQ_CTRL_IRQ_ENABLE", "queue_eq_armed", "QUEUE_STATUS_BAD_SIZE",
           "QUEUE_STATUS_DOORBELL", "QUEUE_STATUS_BAD_ADDR", "QUEUE_STATUS_DMA",
           "QUEUE_EQ_QUEUE", "QUEUE_EQ_ARM", "QUEUE_INDEX", "FLOW_BUCKETS", "FLOW_WAYS",
           "FLOW_STASH", "FLOW_SLOTS", "FLOW_JOURNAL", "FLOW_ENTRY_WORDS", "FlowOp",
           "FlowStatus"]

ID_MAGIC = 0x484E4943           # "HNIC"
VERSION = (0, 1)                # (major, minor) of the register interface

#: 32-bit words one rule occupies, derived from the ``Rule`` layout.
RULE_WORDS = (data.Layout.cast(Rule).size + 31) // 32
RULE_STRIDE = 0x80              # bytes between rules (room for 32 words)
assert RULE_WORDS * 4 <= RULE_STRIDE
#: 32-bit words of a Toeplitz input in the reduced serial core's INJ_DATA (36 bytes).
INJ_DATA_WORDS = RSS_MAX_INPUT_LEN // 4

# --- the flow table's geometry (hetnic.gateware.flow_table) ------------------------------
#: Buckets of the flow table's hash table (a power of two), ways (entries) per bucket, and
#: entries of the stash that takes an insert whose bucket is full. Slot ``b * FLOW_WAYS + w``
#: is way ``w`` of bucket ``b``; slots ``FLOW_BUCKETS * FLOW_WAYS`` on are the stash.
FLOW_BUCKETS = 256
FLOW_WAYS = 4
FLOW_STASH = 8
FLOW_SLOTS = FLOW_BUCKETS * FLOW_WAYS + FLOW_STASH
#: Changes (inserts and deletes) staged between two COMMITs at most. The commit applies them
#: one per cycle while it copies the rules (``n_rules * 32 + 2`` cycles, at least 34), after
#: an op in progress (up to 4 cycles): 24 fit in the shortest copy.
FLOW_JOURNAL = 24
#: 32-bit words of FLOW_ENTRY (the FlowEntry layout).
FLOW_ENTRY_WORDS = (data.Layout.cast(FlowEntry).size + 31) // 32


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    doc: str = ""

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def encode(self, value: int) -> int:
        """``value`` placed in this field of a register word."""
        if not 0 <= value < 1 << self.width:
            raise ValueError(f"field {self.name} holds {self.width} bits; {value!r} does not fit")
        return value << self.lsb

    def decode(self, word: int) -> int:
        """This field's value in a register word."""
        return (word >> self.lsb) & ((1 << self.width) - 1)

    def bits(self, value):
        """This field's bits of an Amaranth value (a register word in gateware)."""
        return value[self.lsb:self.lsb + self.width]


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str
    doc: str
    fields: tuple[Field, ...] = ()
    reset: int = 0
    count: int | str = 1        # an int, or a build parameter: "name", "name+1", "name*k"
    stride: int = 4
    words: int = 1              # 32-bit words per element

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")


def _action_fields() -> tuple[Field, ...]:
    layout = data.Layout.cast(RuleAction)
    return tuple(Field(name, f.offset, f.width) for name, f in layout)


def _queue_registers(prefix, base, count, regs):
    """Per-queue registers: element ``i`` of ``PREFIX_NAME`` is at ``base + i*0x40 + 4*k``.

    Each entry of ``regs`` is ``(name, access, doc)`` or ``(name, access, doc, fields)``."""
    return tuple(Register(f"{prefix}_{name}", base + 4 * k, access, doc,
                          fields[0] if fields else (), count=count, stride=0x40)
                 for k, (name, access, doc, *fields) in enumerate(regs))


# --- bits of the queue registers: one definition for gateware, driver and testbenches ----
#: ``*_CTRL`` of an RX, TX or event queue: bit 0 enables the queue.
QUEUE_CTRL_ENABLE = Field("enable", 0, 1, "the queue runs; sizes and addresses are checked "
                                          "when it is enabled")
#: ``EQ_CTRL`` bit 1: the event queue raises its interrupt line.
EQ_CTRL_IRQ_ENABLE = Field("irq_enable", 1, 1, "raise the interrupt line")
#: ``*_STATUS`` error bits of a queue, sticky until the queue is disabled.
QUEUE_STATUS_BAD_SIZE = Field("bad_size", 0, 1, "ring size not a power of two in range")
QUEUE_STATUS_DOORBELL = Field("doorbell", 1, 1, "doorbell past the ring (RX and TX queues)")
QUEUE_STATUS_BAD_ADDR = Field("bad_addr", 2, 1, "ring address overflows or is misaligned")
QUEUE_STATUS_DMA = Field("dma_error", 3, 1, "a DMA access failed")
_QUEUE_STATUS = (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_DOORBELL, QUEUE_STATUS_BAD_ADDR,
                 QUEUE_STATUS_DMA)
#: ``RXQ_EQ`` and ``TXQ_EQ``: where a queue's completion events go, and the one-shot arm.
QUEUE_EQ_QUEUE = Field("event_queue", 0, 6, "event queue for this queue's completion events")
QUEUE_EQ_ARM = Field("arm", 8, 1, "one completion event at the next completion, then "
                                  "disarmed (reads back 0 once it fired)")


def queue_eq_armed(event_queue: int) -> int:
    """The ``RXQ_EQ``/``TXQ_EQ`` value that arms one completion event to ``event_queue``."""
    return QUEUE_EQ_ARM.encode(1) | QUEUE_EQ_QUEUE.encode(event_queue)

#: Doorbells (``RXQ_PROD``, ``TXQ_PROD``, ``EQ_CONS``) and the NIC's indices: 16 bits,
#: free-running.
QUEUE_INDEX = Field("index", 0, 16, "free-running index")


class FlowOp:
    """``FLOW_OP.op`` values."""
    INSERT = 1      # stage FLOW_ENTRY into a free way of its bucket, else the stash
    DELETE = 2      # stage the removal of the entry in ``slot``


class FlowStatus:
    """``FLOW_RESULT.status`` values."""
    OK = 0
    FULL = 1        # insert refused: its bucket and the stash are full (FLOW_REFUSED counts it)
    JOURNAL_FULL = 2  # FLOW_JOURNAL changes are staged already: COMMIT first
    BAD_SLOT = 3    # delete of a slot that holds no entry (or is past the table)
    BAD_OP = 4      # an op value that is neither INSERT nor DELETE


def _key_word(k: int) -> int:
    return int.from_bytes(MS_RSS_DEFAULT_KEY[4 * k:4 * k + 4], "big")


REGISTERS: tuple[Register, ...] = (
    # --- identification: lets the host discover what was built --------------------------
    Register("ID", 0x0000, "ro", 'Magic number 0x484E4943 ("HNIC").', reset=ID_MAGIC),
    Register("VERSION", 0x0004, "ro", "Register interface version.",
             (Field("minor", 0, 16), Field("major", 16, 16)),
             reset=VERSION[0] << 16 | VERSION[1]),
    Register("PARAMS0", 0x0008, "ro", "Build parameters of the datapath.",
             (Field("data_bytes", 0, 8, "datapath width in bytes"),
              Field("hash_bytes_per_cycle", 8, 8, "Toeplitz input bytes hashed per cycle"),
              Field("n_rules", 16, 8, "classifier rules"))),
    Register("PARAMS1", 0x000C, "ro", "Build parameters of queue selection.",
             (Field("reta_size", 0, 16, "RETA entries"),
              Field("queues", 16, 16, "receive queues"))),
    Register("PARAMS2", 0x0014, "ro", "Build parameters of the NIC core's queues (0: absent).",
             (Field("rx_queues", 0, 12, "RX queues with DMA rings"),
              Field("tx_queues", 12, 8, "TX queues"),
              Field("event_queues", 20, 8, "event queues"),
              Field("mac_ports", 28, 4, "Ethernet MACs with MAC_* counters (the boards)"))),
    Register("CAPS", 0x0010, "ro", "Feature bits.",
             (Field("ipv6", 0, 1),
              Field("symmetric", 1, 1, "the hash stage sorts addresses and ports (0 in the "
                                       "reduced serial core: its host does)"),
              Field("classifier", 2, 1, "classifier rules (0 in the reduced serial core: it "
                                        "steers with DEFAULT_ACTION)"),
              Field("counters", 3, 1, "the counter registers (0 in the reduced serial core: "
                                      "they do not answer)"),
              Field("injector", 4, 1, "the reduced serial core: Toeplitz inputs come in and "
                                      "results go out through the INJ_* and RES_* registers; "
                                      "no parser"),
              Field("flow_table", 5, 1, "the exact-match flow table (FLOW_* registers; 0 in the "
                                        "reduced serial core and the board builds: they are "
                                        "absent there)")),
             reset=0b10_1111),
    # --- committed configuration ----------------------------------------------------------
    Register("CTRL", 0x0020, "shadow", "RSS and error handling.",
             (Field("hash_enable", 0, 8, "bit n enables HashType n (bits 1..6)"),
              Field("symmetric", 8, 1, "sort addresses and ports before hashing"),
              Field("pass_errors", 9, 1, "deliver frames with parse errors instead of "
                                         "dropping them (their hash type is none)")),
             reset=0x7E),
    Register("MAX_FRAME", 0x0024, "shadow",
             "Longest accepted frame in bytes (no FCS); above 2048 (RX_MAX_FRAME_LIMIT, the "
             "RX data FIFO) it acts as 2048.",
             (Field("bytes", 0, 16),), reset=1522),
    Register("DIRECT_ETHERTYPE", 0x0028, "shadow",
             "EtherType of direct-channel frames (flags.direct); 0 disables.",
             (Field("ethertype", 0, 16),), reset=0x88B5),
    Register("DEFAULT_ACTION", 0x002C, "shadow",
             "Action for frames no rule matches (RuleAction layout).", _action_fields(),
             reset=9 << 16),    # whole RETA, instance 0: see RegisterMap.reset_value
    Register("COMMIT", 0x0030, "wo",
             "Write 1 to apply all shadow configuration at the next frame boundary.",
             (Field("commit", 0, 1),)),
    Register("COMMIT_STATUS", 0x0034, "ro", "Commit progress.",
             (Field("pending", 0, 1, "a commit waits for a frame boundary"),
              Field("busy", 1, 1, "the RETA shadow is being refreshed; RETA reads and writes wait"))),
    Register("GENERATION", 0x0038, "ro",
             "Configuration generation; +1 per applied commit, wraps at 16 bits.",
             (Field("generation", 0, 16),)),
    Register("RSS_KEY", 0x0040, "shadow",
             "Toeplitz key, 40 bytes. Word k holds key bytes 4k..4k+3, byte 4k in bits 31:24.",
             count=10, reset=tuple(_key_word(k) for k in range(10))),
    # --- global counters ------------------------------------------------------------------
    Register("FRAMES_IN", 0x0080, "counter", "Frames accepted on rx."),
    Register("FRAMES_DELIVERED", 0x0084, "counter", "Frames whose metadata left undropped."),
    Register("FRAMES_DROPPED", 0x0088, "counter", "Frames dropped for any reason."),
    Register("BYTES_IN", 0x008C, "counter", "Bytes accepted on rx."),
    Register("FLOW_HITS", 0x0090, "counter",
             "Frames that hit a flow table entry (their rule is FLOW_HIT_RULE, 127).",
             count="flow_table"),
    Register("FLOW_MISSES", 0x0094, "counter",
             "IPv4 and IPv6 frames that missed the flow table (the rules classified them).",
             count="flow_table"),
    Register("FLOW_REFUSED", 0x0098, "counter",
             "Flow inserts refused because the bucket and the stash were full.",
             count="flow_table"),
    Register("DROP_COUNT", 0x00C0, "counter", "Dropped frames per DropReason value.",
             count=len(DropReason)),
    # --- hash requests and results: the reduced serial core only (iCEBreaker) -------------
    # The host sends Toeplitz inputs instead of frames (it parses them itself); each input's
    # result waits in a queue until the host takes it (hetnic.gateware.hash_injector). Every
    # write here may be repeated without harm, as the serial bridge's retries need.
    Register("INJ_DATA", 0x0800, "wo",
             "Toeplitz input bytes 4k..4k+3 of the next request in word k, byte 4k in bits "
             "31:24. Words not written since the previous request are 0.",
             count=f"injector*{INJ_DATA_WORDS}"),
    Register("INJ_END", 0x0824, "wo",
             "Sends the input: hashes its first `length` bytes with the key in force and looks "
             "its queue up through DEFAULT_ACTION's RETA slice. Taken only if `seq` is "
             "INJ_STATUS.requests (a repeated write is ignored); waits (no ack) while the hash "
             "engine is busy or a commit is pending.",
             (Field("length", 0, 6, "input bytes, 0 to 36; more act as 36 (counted)"),
              Field("seq", 16, 16, "INJ_STATUS.requests")),
             count="injector"),
    Register("INJ_STATUS", 0x0828, "ro", "Hash requests so far.",
             (Field("requests", 0, 16, "requests taken (wraps); the `seq` of the next one"),
              Field("ignored", 16, 8, "INJ_END writes with another `seq` (wraps)"),
              Field("cut", 24, 8, "requests longer than 36 bytes, hashed as 36 (wraps)")),
             count="injector"),
    Register("RES_STATUS", 0x082C, "ro", "The result queue.",
             (Field("waiting", 0, 16, "results waiting to be taken"),
              Field("lost", 16, 16, "results dropped because the queue was full (wraps); "
                                    "their `seq` is skipped")),
             count="injector"),
    Register("RES_INFO", 0x0830, "ro",
             "The oldest waiting result (0 in every field when none waits).",
             (Field("valid", 0, 1, "a result waits; the RES_* registers describe it"),
              Field("queue", 16, 8), Field("instance", 24, 4)),
             count="injector"),
    Register("RES_HASH", 0x0834, "ro", "The oldest result's Toeplitz hash.",
             count="injector"),
    Register("RES_TAG", 0x0838, "ro", "The oldest result's request.",
             (Field("seq", 0, 16, "the request's INJ_END `seq`"),
              Field("generation", 16, 16, "configuration generation it was computed with")),
             count="injector"),
    Register("RES_POP", 0x083C, "wo",
             "Removes the oldest result if its `seq` is the value written (so a repeated "
             "write removes nothing more).",
             (Field("seq", 0, 16),), count="injector"),
    # --- the flow table: changes are staged here and applied by COMMIT ---------------------
    Register("FLOW_ENTRY", 0x0900, "rw",
             f"The entry the next FLOW_OP insert stages: FlowEntry layout in {FLOW_ENTRY_WORDS} "
             "words (bit 0 of word 0 first; `valid` is ignored).",
             stride=0x40, words=FLOW_ENTRY_WORDS, count="flow_table"),
    Register("FLOW_OP", 0x0940, "wo",
             "Stages one change for the next COMMIT; answered once FLOW_RESULT holds its "
             "outcome. Insert places FLOW_ENTRY in the first free way of its bucket (CRC-32 of "
             "its FlowKey), else the first free stash entry, else refuses it. It does not look "
             "for a duplicate key (the driver does).",
             (Field("op", 0, 2, "1 insert FLOW_ENTRY, 2 delete `slot`"),
              Field("slot", 16, 11, "the slot to delete")), count="flow_table"),
    Register("FLOW_RESULT", 0x0944, "ro", "The outcome of the last FLOW_OP.",
             (Field("slot", 0, 11, "the slot an insert took"),
              Field("status", 16, 3, "0 ok, 1 bucket and stash full, 2 journal full (COMMIT "
                                     "first), 3 bad slot, 4 bad op")), count="flow_table"),
    Register("FLOW_STATUS", 0x0948, "ro", "The flow table's occupancy.",
             (Field("entries", 0, 11, "entries in use once the staged changes are committed"),
              Field("staged", 16, 6, "changes staged for the next COMMIT")), count="flow_table"),
    # --- tables ---------------------------------------------------------------------------
    Register("RETA", 0x1000, "shadow", "Indirection table: RX queue per entry.",
             (Field("queue", 0, 8),), count="reta_size"),
    Register("RULE", 0x4000, "shadow",
             f"Classifier rules, {RULE_WORDS} words each (Rule layout, bit 0 of word 0 first); "
             "lower index wins.", count="n_rules", stride=RULE_STRIDE, words=RULE_WORDS),
    Register("RULE_HITS", 0x6000, "counter",
             "Frames matched per rule; the entry after the last rule counts the default action.",
             count="n_rules+1"),
    Register("QUEUE_PACKETS", 0x7000, "counter",
             "Frames the pipeline steered to each RX queue (the queue may still drop them: "
             "RXQ_NO_BUFFER, RXQ_TOO_LONG).", count="queues"),
    Register("QUEUE_BYTES", 0x7400, "counter",
             "Bytes the pipeline steered to each RX queue.", count="queues"),
    # --- Ethernet MACs of a board: counters per port, 0x40 bytes apart ------------------------
    # Each frame a receive MAC ends is counted once, in the first of RX_OVERFLOW, RX_OVERSIZE,
    # RX_PHY_ERROR, RX_RUNT, RX_FCS_ERROR, RX_FRAMES_OK that applies (the MAC's own order).
    *_queue_registers("MAC", 0x7800, "mac_ports", (
        ("RX_FRAMES_OK", "counter", "Good frames received: FCS correct, 64 bytes or more."),
        ("RX_FCS_ERROR", "counter", "Frames received with a bad FCS."),
        ("RX_RUNT", "counter", "Frames received shorter than 64 bytes with their FCS."),
        ("RX_OVERSIZE", "counter", "Frames received longer than the MAC's limit (cut there)."),
        ("RX_PHY_ERROR", "counter", "Frames during which the PHY signalled a receive error."),
        ("RX_OVERFLOW", "counter", "Frames cut because the receive FIFO was full: their end "
                                   "is lost, and nothing downstream counts them."),
        ("TX_FRAMES", "counter", "Frames sent whole."),
        ("TX_ERROR", "counter", "Frames sent with an inverted FCS because they carried an "
                                "error (the far end drops them)."),
        ("TX_UNDERRUN", "counter", "Frames cut short because their data did not come in "
                                   "time."),
    )),
    Register("BUCKET_PACKETS", 0x8000, "counter",
             "Frames per RETA entry (delivered and dropped alike).", count="reta_size"),
    # --- TX queues: work-item ring and completion ring per queue, 0x40 bytes apart ----------
    *_queue_registers("TXQ", 0xA000, "tx_queues", (
        ("BASE_LO", "rw", "Work-item ring address, bits 31:0 (16-byte aligned)."),
        ("BASE_HI", "rw", "Work-item ring address, bits 63:32."),
        ("SIZE", "rw", "Work-item ring size in 16-byte slots: a power of two, 2..32768."),
        ("PROD", "rw", "Doorbell: the host's producer slot index (free-running, 16 bits).",
         (QUEUE_INDEX,)),
        ("CONS", "ro", "The NIC's consumer slot index (free-running, 16 bits).",
         (QUEUE_INDEX,)),
        ("CQ_BASE_LO", "rw", "Completion ring address, bits 31:0 (16-byte aligned)."),
        ("CQ_BASE_HI", "rw", "Completion ring address, bits 63:32."),
        ("CQ_SIZE", "rw", "Completion ring size in entries: a power of two, 2..32768."),
        ("CTRL", "rw", "Bit 0 enable. Sizes and addresses are checked when enabled.",
         (QUEUE_CTRL_ENABLE,)),
        ("STATUS", "ro", "Error bits, sticky until the queue is disabled: 0 bad ring size, "
                         "1 doorbell past the ring, 2 ring address overflows or misaligned, "
                         "3 DMA error.", _QUEUE_STATUS),
        ("CQ_PROD", "ro", "The NIC's completion producer index (free-running, 16 bits).",
         (QUEUE_INDEX,)),
        ("EQ", "rw", "Bits 5:0 event queue for this queue's completion events; bit 8 arm "
                     "(one TX_COMPLETION event at the next completion, then disarmed).",
         (QUEUE_EQ_QUEUE, QUEUE_EQ_ARM)),
    )),
    # --- event queues ----------------------------------------------------------------------
    *_queue_registers("EQ", 0xB000, "event_queues", (
        ("BASE_LO", "rw", "Event ring address, bits 31:0 (16-byte aligned)."),
        ("BASE_HI", "rw", "Event ring address, bits 63:32."),
        ("SIZE", "rw", "Event ring size in entries: a power of two, 2..32768."),
        ("PROD", "ro", "The NIC's producer index (free-running, 16 bits).", (QUEUE_INDEX,)),
        ("CONS", "rw", "The host's consumer index (free-running, 16 bits); the NIC never "
                       "overwrites an entry the host has not consumed: it drops the event and "
                       "counts it in OVERFLOWS.", (QUEUE_INDEX,)),
        ("CTRL", "rw", "Bit 0 enable, bit 1 interrupt enable.",
         (QUEUE_CTRL_ENABLE, EQ_CTRL_IRQ_ENABLE)),
        ("COALESCE_COUNT", "rw", "Raise the interrupt after this many events (0 or 1: every "
                                 "event)."),
        ("COALESCE_TIME", "rw", "...or this many cycles after the first event not yet "
                                "signalled (0: no timer)."),
        ("STATUS", "ro", "Error bits, sticky until disabled: 0 bad ring size, 2 ring address "
                         "overflows or misaligned, 3 DMA error.",
         (QUEUE_STATUS_BAD_SIZE, QUEUE_STATUS_BAD_ADDR, QUEUE_STATUS_DMA)),
        ("OVERFLOWS", "counter", "Events dropped because the ring was full."),
    )),
    # --- RX queues: descriptor ring and completion ring (same size) per queue ---------------
    *_queue_registers("RXQ", 0xC000, "rx_queues", (
        ("BASE_LO", "rw", "Descriptor ring address, bits 31:0 (16-byte aligned)."),
        ("BASE_HI", "rw", "Descriptor ring address, bits 63:32."),
        ("SIZE", "rw", "Ring size in entries (descriptors and completions): a power of two, "
                       "2..32768."),
        ("PROD", "rw", "Doorbell: the host's descriptor producer index (free-running, 16 bits).",
         (QUEUE_INDEX,)),
        ("CONS", "ro", "The NIC's descriptor consumer index (free-running, 16 bits).",
         (QUEUE_INDEX,)),
        ("CQ_BASE_LO", "rw", "Completion ring address, bits 31:0 (16-byte aligned)."),
        ("CQ_BASE_HI", "rw", "Completion ring address, bits 63:32."),
        ("CTRL", "rw", "Bit 0 enable. Disabling stops taking descriptors after the frame in "
                       "progress; frames for a disabled queue are dropped (NO_BUFFER).",
         (QUEUE_CTRL_ENABLE,)),
        ("STATUS", "ro", "Error bits, sticky until disabled: 0 bad ring size, 1 doorbell past "
                         "the ring, 2 ring address overflows or misaligned, 3 DMA error.",
         _QUEUE_STATUS),
        ("EQ", "rw", "Bits 5:0 event queue for this queue's events; bit 8 arm (one "
                     "RX_COMPLETION event at the next completion, then disarmed).",
         (QUEUE_EQ_QUEUE, QUEUE_EQ_ARM)),
        ("NO_BUFFER", "counter", "Frames dropped: no posted buffer, or the queue disabled."),
        ("TOO_LONG", "counter", "Frames dropped: longer than the next posted buffer (the "
                                "buffer stays posted)."),
    )),
)

DEFAULT_PARAMS = {"data_bytes": 8, "hash_bytes_per_cycle": 8, "n_rules": 16,
                  "reta_size": 512, "queues": 64, "tx_queues": 0,
                  "event_queues": 0, "rx_queues": 0, "injector": 0, "mac_ports": 0,
                  "flow_table": 1}

#: Inclusive ``(lowest, highest)`` of every build parameter, as the register fields that
#: report them allow (the command line takes its limits from here too). Checked in this
#: order: ``rx_queues`` before ``queues``, which a NIC core's build derives from it.
PARAM_LIMITS = {"data_bytes": (1, 64), "hash_bytes_per_cycle": (1, 36), "n_rules": (1, 64),
                "reta_size": (2, 2048), "rx_queues": (0, 256), "queues": (1, 256),
                "tx_queues": (0, 64), "event_queues": (0, 64), "injector": (0, 1),
                "mac_ports": (0, 15), "flow_table": (0, 1)}


class RegisterMap:
    """The register table resolved for one set of build parameters.

    A build's map comes from its :class:`~hetnic.params.NicParams` (``params.regmap()``),
    which checks the build and makes this once; a map made directly (a gateware block tested
    on its own, the ``hetnic regmap`` export) checks each count against :data:`PARAM_LIMITS`.

    Parameters
    ----------
    params : dict
        Build parameters: ``data_bytes``, ``hash_bytes_per_cycle``, ``n_rules``, ``reta_size``,
        ``queues``, the NIC core's ``rx_queues``, ``tx_queues`` and ``event_queues``,
        ``injector`` (1 for the reduced serial core), ``mac_ports`` (a board's Ethernet
        ports) and ``flow_table`` (1 with the exact-match flow table and its ``FLOW_*``
        registers). Missing ones take :data:`DEFAULT_PARAMS`.
    """
    def __init__(self, **params):
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise ValueError(f"unknown register map parameter(s) {sorted(unknown)}")
        self.params = {**DEFAULT_PARAMS, **params}
        self._by_name = {r.name: r for r in REGISTERS}
        p = self.params
        for name, (lo, hi) in PARAM_LIMITS.items():
            if not isinstance(p[name], int) or not lo <= p[name] <= hi:
                raise ValueError(f"{name} must be an integer from {lo} to {hi}, "
                                 f"not {p[name]!r}")
        if p["reta_size"] & (p["reta_size"] - 1):
            raise ValueError(f"reta_size must be a power of two, not {p['reta_size']!r}")
        self._check()

    def _check(self):
        owner = {}
        for reg in REGISTERS:
            for i in range(self.count(reg)):
                for w in range(reg.words):
                    addr = reg.offset + i * reg.stride + 4 * w
                    if addr in owner:
                        raise ValueError(f"register {reg.name} overlaps {owner[addr]} at "
                                         f"{addr:#x} with parameters {self.params}")
                    owner[addr] = reg.name
        if max(owner) >= 1 << 16:
            raise ValueError(f"registers exceed the 16-bit CSR window with {self.params}")

    def present(self) -> list[Register]:
        """The registers this build has (arrays of count 0 are absent)."""
        return [r for r in REGISTERS if self.count(r) > 0]

    def queue_window(self, prefix: str) -> tuple[int, int, dict[str, int]]:
        """A per-queue register block ``PREFIX_*``: its base address, the stride between
        queues, and each register's offset from the base by its name without the prefix."""
        regs = [r for r in self.present() if r.name.startswith(prefix + "_")]
        if not regs:
            raise KeyError(f"this build has no {prefix}_* registers")
        base = min(r.offset for r in regs)
        return base, regs[0].stride, {r.name[len(prefix) + 1:]: r.offset - base for r in regs}

    def __getitem__(self, name: str) -> Register:
        return self._by_name[name]

    def __iter__(self):
        return iter(REGISTERS)

    def count(self, reg: Register | str) -> int:
        reg = self[reg] if isinstance(reg, str) else reg
        if isinstance(reg.count, int):
            return reg.count
        if reg.count.endswith("+1"):
            return self.params[reg.count[:-2]] + 1
        name, _, factor = reg.count.partition("*")
        return self.params[name] * int(factor or 1)

    def addr(self, name: str, index: int = 0, word: int = 0) -> int:
        """Byte address of element ``index`` (and 32-bit ``word`` inside it) of a register."""
        reg = self[name]
        n = self.count(reg)
        if not 0 <= index < n:
            raise IndexError(f"{name}[{index}] out of range: {name} has {n} entries")
        if not 0 <= word * 4 < reg.stride:
            raise IndexError(f"{name} word {word} out of range")
        return reg.offset + index * reg.stride + word * 4

    def reset_value(self, name: str, index: int = 0) -> int:
        if name == "DEFAULT_ACTION":     # the whole RETA of this build, instance 0
            log2 = self.params["reta_size"].bit_length() - 1
            return pack(RuleAction, reta_size_log2=log2)
        reset = self[name].reset
        return reset[index] if isinstance(reset, tuple) else reset

    def ro_value(self, name: str) -> int:
        """The value of an identification register for these parameters."""
        reg, p = self[name], self.params
        if name == "PARAMS0":
            return p["data_bytes"] | p["hash_bytes_per_cycle"] << 8 | p["n_rules"] << 16
        if name == "PARAMS1":
            return p["reta_size"] | p["queues"] << 16
        if name == "PARAMS2":
            return (p["rx_queues"] | p["tx_queues"] << 12 | p["event_queues"] << 20
                    | p["mac_ports"] << 28)
        if name == "CAPS" and p["injector"]:
            # The reduced serial core: a Toeplitz engine and the RETA, nothing else.
            return reg.field("ipv6").mask | reg.field("injector").mask
        if name == "CAPS" and not p["flow_table"]:
            return reg.reset & ~reg.field("flow_table").mask
        return reg.reset

    # --- exports ------------------------------------------------------------------------
    def to_json(self) -> str:
        regs = []
        for reg in self.present():
            d = dataclasses.asdict(reg)
            d["count"] = self.count(reg)
            if not isinstance(reg.reset, tuple):
                d["reset"] = (self.ro_value(reg.name) if reg.access == "ro"
                              else self.reset_value(reg.name))
            regs.append(d)
        return json.dumps({"params": self.params, "registers": regs}, indent=2) + "\n"

    def to_markdown(self) -> str:
        p = self.params
        lines = ["# hetnic register map", "",
                 "Generated by `hetnic regmap` from `hetnic/regs.py`; do not edit.", "",
                 "Build parameters: " + ", ".join(f"`{k}={v}`" for k, v in p.items()) + ".",
                 "", "| offset | name | access | count | reset | description |",
                 "|---|---|---|---|---|---|"]
        for reg in self.present():
            n = self.count(reg)
            count = f"{n} x {reg.stride:#x}" if n > 1 else "1"
            reset = ("see text" if isinstance(reg.reset, tuple)
                     else f"{self.ro_value(reg.name):#x}" if reg.access == "ro"
                     else f"{self.reset_value(reg.name):#x}")
            lines.append(f"| `{reg.offset:#06x}` | {reg.name} | {reg.access} | {count} | "
                         f"{reset} | {reg.doc} |")
        lines += ["", "## Fields", ""]
        for reg in self.present():
            if not reg.fields:
                continue
            lines.append(f"- **{reg.name}**: " + "; ".join(
                f"`{f.name}` [{f.lsb + f.width - 1}:{f.lsb}]" + (f" {f.doc}" if f.doc else "")
                for f in reg.fields))
        lines.append("")
        return "\n".join(lines)

    def to_c_header(self) -> str:
        lines = ["/* hetnic register map. Generated by `hetnic regmap` from hetnic/regs.py. */",
                 "#ifndef HETNIC_REGS_H", "#define HETNIC_REGS_H", ""]
        for reg in self.present():
            lines.append(f"#define HETNIC_{reg.name} 0x{reg.offset:04x}u")
            if self.count(reg) > 1:
                lines.append(f"#define HETNIC_{reg.name}_COUNT {self.count(reg)}u")
                lines.append(f"#define HETNIC_{reg.name}_STRIDE 0x{reg.stride:x}u")
            for f in reg.fields:
                lines.append(f"#define HETNIC_{reg.name}_{f.name.upper()}_SHIFT {f.lsb}u")
                lines.append(f"#define HETNIC_{reg.name}_{f.name.upper()}_MASK "
                             f"0x{f.mask:08x}u")
        lines += ["", "#endif", ""]
        return "\n".join(lines)
