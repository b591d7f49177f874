# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q (VLAN tags), RFC 791 (IPv4), RFC 8200 (IPv6),
#      RFC 9293 (TCP), RFC 768 (UDP), RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe-13 (VXLAN-GPE),
#      RFC 2784 (GRE), RFC 4291 (IPv4-mapped), Microsoft "RSS Hashing Types" (hash types and their inputs).
"""Protocol constants and metadata layouts shared by the gateware and the host.

This is the one place where EtherTypes, IP protocol numbers, hash types, parse errors, drop
reasons and the per-frame metadata layouts are defined. The gateware (``hetnic.gateware``),
the software models and the host driver (``hetnic.host``) import them from here.

Byte order
----------
Wire bytes are big-endian. Every multi-byte field of :class:`PacketMeta` holds the *numeric
value* of the wire field (``int.from_bytes(wire_bytes, "big")``): ``src_port == 80`` for port
80, and an address's first wire byte is in its most significant bits. IPv4 addresses are
stored IPv4-mapped (RFC 4291 section 2.5.5.2, ``::ffff:a.b.c.d``) in the 128-bit address
fields, so one classifier rule layout serves both IP versions.
"""



from amaranth.lib import data, enum

__all__ = [
    "ETH_HEADER_LEN", "ETH_MIN_FRAME", "ETH_DEFAULT_MAX_FRAME", "RX_MAX_FRAME_LIMIT",
    "ETH_PREAMBLE_BYTE", "ETH_SFD_BYTE", "ETH_PAD_TO", "ETH_FCS_LEN", "CRC32_POLY",
    "CRC32_RESIDUE",
    "EtherType", "IpProto", "VXLAN_UDP_PORT", "VXLAN_GPE_UDP_PORT", "VXLAN_HEADER_LEN",
    "VXLAN_FLAG_I", "VNI_MAX", "IPV6_EXT_HEADERS", "MAX_IPV6_EXT_HEADERS",
    "MIN_CAPTURE_BYTES", "MAX_CAPTURE_BYTES",
    "HashType", "ParseError", "DropReason", "MetaFlags",
    "MS_RSS_DEFAULT_KEY", "RSS_KEY_LEN", "RSS_MAX_INPUT_LEN",
    "ipv4_mapped", "PacketMeta", "Rule", "RuleAction", "pack", "unpack",
    "FlowKey", "FlowEntry", "FLOW_HIT_RULE",
    "RxDescriptor", "RxCompletion", "TxOpcode", "TxWorkItem", "TxLengths", "TxGatherEntry",
    "TxStatus", "TxCompletion", "EventType", "QueueDrop", "Event", "TX_MAX_MESSAGES",
    "TX_MAX_FRAME",
]


ETH_HEADER_LEN = 14         # destination MAC, source MAC, EtherType
ETH_MIN_FRAME = 14          # shorter than an Ethernet header: a runt (FCS is not carried)
ETH_DEFAULT_MAX_FRAME = 1522  # 1500-byte MTU + 14-byte header + two 4-byte VLAN tags
#: IEEE 802.3 framing on the wire (the MAC adds and strips these; the NIC core never sees them).
ETH_PREAMBLE_BYTE = 0x55    # seven of these ...
ETH_SFD_BYTE = 0xD5         # ... then the start frame delimiter
ETH_PAD_TO = 60             # shortest frame without FCS: shorter ones are padded on transmit
ETH_FCS_LEN = 4
#: The IEEE 802.3 CRC-32 polynomial, bit-reversed (the FCS is sent least significant bit first).
CRC32_POLY = 0xEDB88320
#: The CRC register (initialised to all ones, not inverted) after a frame and its correct FCS.
CRC32_RESIDUE = 0xDEBB20E3
#: The RX pipeline's data FIFO holds this many bytes; a frame longer than this is OVERSIZE
#: whatever MAX_FRAME says (its data is cut short, so it can never be delivered whole).
RX_MAX_FRAME_LIMIT = 2048


class EtherType(enum.IntEnum, shape=16):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100           # IEEE 802.1Q C-tag
    QINQ = 0x88A8           # IEEE 802.1ad S-tag
    IPV6 = 0x86DD
    # Default EtherType of hetnic's direct (NCP-style, non-IP) channel; the gateware takes the
    # value from a register. 0x88B5 is IEEE 802's "local experimental" EtherType 1.
    DIRECT_DEFAULT = 0x88B5


class IpProto(enum.IntEnum, shape=8):
    HOPOPT = 0              # IPv6 hop-by-hop options
    ICMP = 1                # ICMP for IPv4 (RFC 792)
    TCP = 6
    UDP = 17
    ROUTING = 43            # IPv6 routing header
    FRAGMENT = 44           # IPv6 fragment header
    GRE = 47
    ICMPV6 = 58
    NONE = 59               # IPv6 no next header
    DSTOPTS = 60            # IPv6 destination options


#: IPv6 extension headers the parser skips. Hop-by-hop, routing and destination options are
#: ``(hdr_ext_len + 1) * 8`` bytes long; the fragment header is always 8 bytes.
IPV6_EXT_HEADERS = (IpProto.HOPOPT, IpProto.ROUTING, IpProto.FRAGMENT, IpProto.DSTOPTS)
#: IPv6 extension headers the parser skips before the walk gives up with ``HEADER_LIMIT``.
MAX_IPV6_EXT_HEADERS = 4
#: The parser's smallest capture window: it must hold two VLAN tags and a fixed IPv6 header
#: (62 bytes).
MIN_CAPTURE_BYTES = 64
#: The parser's largest capture window (header offsets stay within 13 bits).
MAX_CAPTURE_BYTES = 2048

#: IANA UDP destination ports of VXLAN (RFC 7348 section 5) and VXLAN-GPE
#: (draft-ietf-nvo3-vxlan-gpe section 3.3).
VXLAN_UDP_PORT = 4789
VXLAN_GPE_UDP_PORT = 4790
#: Bytes of the VXLAN / VXLAN-GPE header after the UDP header. Both put the flags in byte 0
#: (the I flag, "a valid VNI", is bit 3 in both) and the 24-bit VNI in bytes 4..6::
#:
#:     VXLAN:     | R R R R I R R R | reserved (24)                    | VNI (24) | reserved (8) |
#:     VXLAN-GPE: | R R Ver I P B O | reserved (16) | next protocol (8) | VNI (24) | reserved (8) |
VXLAN_HEADER_LEN = 8
VXLAN_FLAG_I = 0x08
#: Largest 24-bit VNI.
VNI_MAX = (1 << 24) - 1


class HashType(enum.IntEnum, shape=3):
    """Which RSS hash input a frame used (Microsoft RSS hash types)."""
    NONE = 0                # not IP, parse error, or the type is disabled: hash is 0
    IPV4 = 1                # src addr, dst addr (8 bytes)
    IPV4_TCP = 2            # + src port, dst port (12 bytes)
    IPV4_UDP = 3
    IPV6 = 4                # src addr, dst addr (32 bytes)
    IPV6_TCP = 5            # + ports (36 bytes)
    IPV6_UDP = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class ParseError(enum.IntEnum, shape=4):
    """Why the header parser could not trust a frame. ``NONE`` for a good frame."""
    NONE = 0
    MAC_ERROR = 1           # the MAC marked the frame bad (tuser on any beat)
    RUNT = 2                # shorter than an Ethernet header
    OVERSIZE = 3            # longer than the MAX_FRAME register
    TRUNCATED = 4           # a header runs past the end of the frame
    BAD_IHL = 5             # IPv4 version field is not 4, or IHL < 5
    BAD_LENGTH = 6          # IP total/payload length disagrees with the frame
    HEADER_LIMIT = 7        # headers run past the parser's capture window (long IPv6 chain)

    @property
    def label(self) -> str:
        return self.name.lower()


class DropReason(enum.IntEnum, shape=4):
    """Why the RX pipeline dropped a frame. Parse errors map one to one onto drop reasons;
    ``RULE`` is a classifier rule (or the default action) whose action is drop."""
    NONE = 0
    MAC_ERROR = 1
    RUNT = 2
    OVERSIZE = 3
    TRUNCATED = 4
    BAD_IHL = 5
    BAD_LENGTH = 6
    HEADER_LIMIT = 7
    RULE = 8

    @property
    def label(self) -> str:
        return self.name.lower()


class MetaFlags(data.Struct):
    """Per-frame flags found by the parser. Also the ``flags`` match field of a rule."""
    vlan: 1                 # at least one VLAN tag (0x8100 or 0x88a8)
    vlan2: 1                # two VLAN tags
    ipv4: 1
    ipv6: 1
    fragment: 1             # IPv4 MF set or offset != 0, or an IPv6 fragment header
    tcp: 1                  # L4 is TCP and its header is present (not a fragment)
    udp: 1                  # L4 is UDP and its header is present (not a fragment)
    tunnel: 1               # GRE, or UDP to the VXLAN or VXLAN-GPE port: outer headers only
    direct: 1               # EtherType equals the DIRECT_ETHERTYPE register
    ip_options: 1           # IPv4 with IHL > 5, or IPv6 with extension headers skipped
    vni: 1                  # UDP to the VXLAN or VXLAN-GPE port, the 8-byte VXLAN header
                            # whole inside the UDP datagram (UDP length >= 16), the datagram
                            # inside the IP packet, the header inside the capture window, I
                            # flag set: PacketMeta.vni holds its VNI


RSS_KEY_LEN = 40            # bytes; enough for the 36-byte IPv6+ports input plus 4
RSS_MAX_INPUT_LEN = 36

#: The Microsoft RSS default key (used by the Microsoft verification suite and by DPDK's
#: ``rss_intel_key``/``default_rss_key``).
MS_RSS_DEFAULT_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")


def ipv4_mapped(addr: int) -> int:
    """The 128-bit IPv4-mapped form (``::ffff:a.b.c.d``) of a 32-bit IPv4 address value."""
    return 0xFFFF_0000_0000 | (addr & 0xFFFF_FFFF)


class PacketMeta(data.Struct):
    """Metadata of one received frame, as it leaves the RX pipeline.

    The parser fills the frame fields; the hash stage ``hash``/``hash_type``; the classifier
    ``rule``/``instance``/``reta_offset``/``reta_size_log2``/``drop``; queue select ``queue`` and ``generation``.
    All multi-byte fields hold numeric values of big-endian wire fields (see module doc).
    """
    length: 16              # frame length in bytes (saturates at 65535)
    error: ParseError
    flags: MetaFlags
    ethertype: 16           # after the VLAN tags
    vlan_id: 12             # VID of the outer tag; 0 without a tag
    dscp: 6
    ip_proto: 8             # L4 protocol after IPv6 extension headers; 0 if not IP
    tcp_flags: 8            # CWR ECE URG ACK PSH RST SYN FIN (bit 7 .. bit 0)
    src_addr: 128           # IPv4-mapped for IPv4; 0 if not IP
    dst_addr: 128
    src_port: 16            # 0 unless flags.tcp or flags.udp
    dst_port: 16
    vni: 24                 # VXLAN / VXLAN-GPE network identifier; 0 unless flags.vni
    hash: 32
    hash_type: HashType
    rule: 8                 # index of the matching rule; the rule count for the default action
    instance: 4             # stack instance named by the action
    reta_offset: 11         # RETA slice named by the action (see RuleAction)
    reta_size_log2: 4
    drop: DropReason
    queue: 8
    generation: 16          # configuration generation the frame was processed with


class RuleAction(data.Struct):
    """What a classifier rule (or the default action) does with a matching frame.

    Queue select uses ``RETA[(reta_offset + (hash & ((1 << reta_size_log2) - 1))) % size]``.
    """
    drop: 1
    instance: 4
    reta_offset: 11
    reta_size_log2: 4       # slice of 1 << n entries, n <= log2(RETA size)


#: ``PacketMeta.rule`` (and ``RxCompletion.rule``) of a frame that hit an entry of the flow
#: table (its action replaced the rules'): above every rule index (at most 64 rules) and the
#: default action's, and within the completion's 7-bit field.
FLOW_HIT_RULE = 0x7F


class FlowKey(data.Struct):
    """The exact-match key of a flow table entry: a frame's 5-tuple and IP version.

    A frame's key comes from its :class:`PacketMeta` (``ipv6`` is ``flags.ipv6``; addresses
    IPv4-mapped for IPv4, ports 0 without TCP/UDP); only IPv4 and IPv6 frames are looked up.
    """
    ipv6: 1                 # 0: IPv4 (IPv4-mapped addresses), 1: IPv6
    ip_proto: 8
    src_port: 16
    dst_port: 16
    src_addr: 128
    dst_addr: 128


class FlowEntry(data.Struct):
    """One flow table entry (and the host's staging words, ``valid`` ignored there)."""
    valid: 1
    action: RuleAction
    key: FlowKey


class Rule(data.Struct):
    """One classifier rule. A frame matches when every masked field equals its value and both
    ports lie in their inclusive ranges. A zero mask and a full range match anything.

    The host writes a rule as ``Rule.size // 32`` consecutive 32-bit words (bit 0 of word 0
    is bit 0 of the layout); the register table derives the rule window from this layout.
    """
    enable: 1
    action: RuleAction
    flags: MetaFlags
    flags_mask: MetaFlags
    ethertype: 16
    ethertype_mask: 16
    vlan_id: 12
    vlan_mask: 12
    ip_proto: 8
    ip_proto_mask: 8
    dscp: 6
    dscp_mask: 6
    tcp_flags: 8
    tcp_flags_mask: 8
    src_port_lo: 16
    src_port_hi: 16
    dst_port_lo: 16
    dst_port_hi: 16
    src_addr: 128
    src_mask: 128
    dst_addr: 128
    dst_mask: 128
    vni: 24                 # against PacketMeta.vni (a rule for a VNI also requires flags.vni)
    vni_mask: 24


def pack(layout, **fields: int | dict) -> int:
    """The packed value of ``layout`` with the top-level ``fields`` set and every other field
    0; the inverse of :func:`unpack`.

    Values are integers (an enum member counts as its value); a nested struct such as
    ``flags`` or a rule's ``action`` is given as its packed value or as a dict of its own
    fields. A host-memory image of a ring layout is
    ``pack(...).to_bytes(layout.size // 8, "little")``.

    Raises
    ------
    ValueError
        If ``layout`` has no field of a given name, or a value is negative or too wide for
        its field.
    """
    by_name = dict(data.Layout.cast(layout))
    value = 0
    for name, field_value in fields.items():
        if name not in by_name:
            raise ValueError(f"{_layout_name(layout)} has no field {name!r}; its fields are "
                             f"{', '.join(by_name)}")
        field = by_name[name]
        if isinstance(field_value, dict):
            field_value = pack(field.shape, **field_value)
        field_value = int(field_value)
        if not 0 <= field_value < 1 << field.width:
            raise ValueError(f"{_layout_name(layout)}.{name} is {field.width} bits wide and "
                             f"cannot hold {field_value!r}")
        value |= field_value << field.offset
    return value


def unpack(layout, value: int) -> dict[str, int]:
    """The top-level fields of a packed ``layout`` value as integers (nested structs and
    enums stay integers), e.g. a :class:`PacketMeta` read from a port's ``tdata``; the
    inverse of :func:`pack`."""
    fields = {}
    for name, field in data.Layout.cast(layout):
        fields[name] = (value >> field.offset) & ((1 << field.width) - 1)
    return fields


def _layout_name(layout) -> str:
    return getattr(layout, "__name__", repr(layout))


# --- Host-memory layouts of the NIC core's rings ------------------------------------------
#
# Descriptors, work items, completions and events live in host memory in LITTLE-ENDIAN order:
# bit 0 of a layout is bit 0 of its first byte, so ``value.to_bytes(size // 8, "little")`` is
# the memory image of a packed layout value. Every ring entry is a power of two in size.
# A completion or event carries an ownership ``phase`` bit in the last bit of the entry: the
# NIC writes 1 on its first pass over a ring, 0 on the second and so on; the host polls the
# entry at its consumer index until the phase equals the one it expects (no register read).

class RxDescriptor(data.Struct):
    """An RX buffer the host posts (16 bytes). ``addr`` is aligned to the datapath width."""
    addr: 64
    length: 32              # buffer size in bytes
    reserved: 32


class RxCompletion(data.Struct):
    """What the NIC writes when a frame has landed in a posted buffer (16 bytes).

    Completions are written in descriptor order, one per descriptor, so the entry at
    completion index ``i`` belongs to descriptor ``i``. The entry is 16 bytes so that at
    Ethernet line rate a 64-bit bus carries both: a minimum frame (60 bytes without FCS, 8
    beats) comes every 84 byte times (10.5 cycles), leaving room for a 2-beat completion but
    not a 4-beat one.
    """
    length: 16              # frame bytes written into the buffer
    hash: 32
    hash_type: HashType
    error: ParseError       # nonzero only when CTRL.pass_errors delivers errored frames
    flags: MetaFlags
    queue: 8
    instance: 4
    rule: 7                 # the rule count for the default action (at most 64 rules)
    generation: 16
    timestamp: 26           # low bits of the free-running core cycle counter at the last beat
    phase: 1


class TxOpcode(enum.IntEnum, shape=8):
    NOP = 0                 # consumes its slot, sends nothing, still completes
    SINGLE = 1              # one frame: addr, length (the baseline path)
    BATCH = 2               # count messages packed in one buffer; lengths inline (TxLengths)
    GATHER = 3              # count messages, one TxGatherEntry slot each


class TxWorkItem(data.Struct):
    """First 16-byte slot of a TX work item.

    ``BATCH``: message ``i`` starts at ``addr + sum(align_up(len_j, DATA_ALIGN))`` for
    ``j < i`` (each message padded to the datapath width); ``ceil(count / 8)`` TxLengths slots
    follow the header. ``GATHER``: ``count`` TxGatherEntry slots follow. A work item may wrap
    around the end of its ring.
    """
    opcode: TxOpcode
    count: 8                # messages (BATCH, GATHER); 1..TX_MAX_MESSAGES
    length: 16              # SINGLE: frame length
    cookie: 32              # echoed in the completion
    addr: 64                # SINGLE, BATCH: buffer address, aligned to the datapath width


class TxLengths(data.Struct):
    """Eight 16-bit message lengths (a 16-byte slot of a BATCH work item); unused ones 0."""
    length0: 16
    length1: 16
    length2: 16
    length3: 16
    length4: 16
    length5: 16
    length6: 16
    length7: 16


class TxGatherEntry(data.Struct):
    """One message of a GATHER work item (a 16-byte slot)."""
    addr: 64                # aligned to the datapath width
    length: 16
    reserved: 48


class TxStatus(enum.IntEnum, shape=8):
    OK = 0
    BAD_OPCODE = 1
    BAD_COUNT = 2           # zero messages, or more than TX_MAX_MESSAGES
    BAD_LENGTH = 3          # a message of 0 bytes, longer than TX_MAX_FRAME, or a misaligned addr
    DMA_ERROR = 4           # a read of the work item or its data failed or overflowed 2**64


class TxCompletion(data.Struct):
    """One per work item (16 bytes), in work-item order."""
    cookie: 32
    wqe_index: 16           # ring slot of the work item's header
    messages: 8             # frames sent
    status: TxStatus
    bytes: 32               # bytes sent
    reserved: 31
    phase: 1


class EventType(enum.IntEnum, shape=8):
    RX_COMPLETION = 1       # an armed RX completion ring has new entries (disarms it)
    TX_COMPLETION = 2       # an armed TX completion ring has new entries (disarms it)
    DROP = 3                # an armed RX queue dropped a frame (info = QueueDrop; disarms it)
    COMMIT_DONE = 4         # a COMMIT was applied (info = new generation)


class QueueDrop(enum.IntEnum, shape=2):
    """Why an RX queue dropped a frame (the ``info`` of a ``DROP`` event)."""
    NO_BUFFER = 1           # no posted descriptor, or the queue is disabled
    TOO_LONG = 2            # longer than the next posted buffer
    BAD_DESCRIPTOR = 3      # the descriptor could not be read, or its buffer is invalid


class Event(data.Struct):
    """An event queue entry (16 bytes)."""
    type: EventType
    reserved0: 8
    source: 16              # queue number, where the event concerns a queue
    info: 32
    timestamp: 48
    reserved1: 15
    phase: 1


#: Messages one BATCH or GATHER work item may carry.
TX_MAX_MESSAGES = 64
#: Longest frame the TX path sends.
TX_MAX_FRAME = 9216
