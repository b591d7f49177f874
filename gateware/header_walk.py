# Ref: IEEE 802.3 (Ethernet II), IEEE 802.1Q / 802.1ad (VLAN tags), RFC 791 (IPv4),
#      RFC 8200 (IPv6 and its extension headers), RFC 9293 (TCP), RFC 768 (UDP),
#      RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe-13 (VXLAN-GPE), RFC 2784 (GRE),
#      RFC 4291 (IPv4-mapped addresses).
"""The header parser's walk: the steps from a captured frame to its
:class:`~hetnic.protocol.PacketMeta` record."""

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hetnic.protocol import (
    ETH_HEADER_LEN, EtherType, IpProto, MAX_IPV6_EXT_HEADERS, PacketMeta, ParseError,
    VXLAN_FLAG_I, VXLAN_GPE_UDP_PORT, VXLAN_HEADER_LEN, VXLAN_UDP_PORT, ipv4_mapped,
)
from .header_capture import (
    CapturedFrameSignature, header_byte, header_field, is_ext_header,
)

__all__ = ["HeaderWalk"]


def _is_tcp_udp(ip_proto):
    return (ip_proto == IpProto.TCP) | (ip_proto == IpProto.UDP)


@dataclass
class _WalkState:
    """Signals of the walk: the captured frame (``active`` to ``ip_proto``, the members of
    :class:`~hetnic.gateware.header_capture.CapturedFrameSignature`) and the step's.

    ``rec`` is the record so far (registers, error always NONE: an error ends the walk);
    ``rec_next`` is the record after this cycle's step, ``error`` the first error the step
    found and ``done`` whether the step finishes the frame (all comb); ``advance``: the step
    takes effect this cycle. ``ip_end`` is the end of the IP packet, in bytes.
    """
    active: Signal
    n: Signal
    mac_error: Signal
    l2: Signal
    hdr: Signal
    window: Signal
    ext_len: Signal
    release: Signal
    tags: Signal
    offset: Signal
    ext_count: Signal
    ip_proto: Signal
    ip_end: Signal
    rec: Signal
    rec_next: Signal
    error: Signal
    done: Signal
    advance: Signal


class HeaderWalk(wiring.Component):
    """Walk the headers of a captured frame, one step per cycle, and emit its record.

    Steps, one cycle each (four at 8 bits, see ``registered_steps``): L2 (tags, EtherType;
    non-IP frames and frames with MAC/runt/oversize/L2 errors end here), L3 (IPv4 or the
    fixed IPv6 header), one step per IPv6 extension header (at most
    :data:`~hetnic.protocol.MAX_IPV6_EXT_HEADERS`), L4 (ports, TCP flags; the VNI of a
    VXLAN / VXLAN-GPE header behind a UDP header, from the same window). The rules are
    those of :func:`hetnic.sim.model.parser.parse_frame`. The record of a frame with an error
    holds only ``length`` and ``error``. A step stalls only to emit into a full output
    register; ``frame.release`` pulses with the last step of a frame, as its record goes to
    ``o``.

    Parameters
    ----------
    capture_bytes : int
        The capture window: headers that end past it are ``HEADER_LIMIT`` errors.
    registered_steps : bool
        Every step takes four cycles, its checks' conditions and results registered (the
        8-bit core, for clock rate; the capture's ``window`` is then a register that follows
        ``ext_count`` a cycle later).

    Members
    -------
    frame : In(CapturedFrameSignature())
        The captured frame.
    max_frame : In(16)
        Longest frame accepted, in bytes; longer frames are ``OVERSIZE``.
    direct_ethertype : In(16)
        EtherType of direct-channel frames (0 disables the ``direct`` flag).
    o : Out(stream.Signature(PacketMeta))
        One record per frame; ``o.payload`` is a register.
    """
    def __init__(self, capture_bytes: int, registered_steps: bool):
        self._capture_bytes = capture_bytes
        self._registered_steps = registered_steps
        super().__init__({
            "frame": In(CapturedFrameSignature()),
            "max_frame": In(16),
            "direct_ethertype": In(16),
            "o": Out(stream.Signature(PacketMeta)),
        })

    def elaborate(self, platform):
        m = Module()
        frame = {name: getattr(self.frame, name) for name in (
            "active", "n", "mac_error", "l2", "hdr", "window", "ext_len", "release", "tags",
            "offset", "ext_count", "ip_proto")}
        shapes = {
            "ip_end": 17,                           # end of the IP packet, in bytes
            "rec": PacketMeta, "rec_next": PacketMeta,
            "error": ParseError,
            "done": 1,                              # this step finishes the frame
            "advance": 1,                           # the step takes effect this cycle
        }
        st = _WalkState(**frame, **{name: Signal(shape, name=name)
                                     for name, shape in shapes.items()})
        m.d.comb += st.ip_proto.eq(st.rec.ip_proto)
        self._elaborate_engine(m, st)
        return m

    def _elaborate_engine(self, m, st):
        """Walk the headers of the captured frame, one step per cycle, and emit a record.

        ``rec`` is the record so far (registers, error always NONE: an error ends the walk);
        ``rec_next`` is the record after this cycle's step and ``error`` the first error the
        step found (both comb).

        With ``registered_steps`` (8 bits) every step takes four cycles: in the first the
        capture's header window register loads, in the second the conditions of the step's
        checks (and whether the walk stops after it) are registered, in the third their
        result (``error``, ``done``), in the fourth the step acts on it. The step's inputs do
        not change in between, so it computes the same values again; the long path from the
        header bytes through the bound checks is cut in three, and the enables of every
        record register hang off registers. A frame takes at least 60 cycles to arrive at 8
        bits, so the walk's at most 28 cycles stay hidden.
        """
        done, error = st.done, st.error
        if self._registered_steps:
            # 0: the window register loads; 1: the checks' conditions are registered;
            # 2: the checks' result (error, done) is registered; 3: act.
            phase = Signal(range(4))
            done, error = Signal(), Signal(ParseError)
            with m.If(st.active & (phase != 3)):
                m.d.sync += phase.eq(phase + 1)
            with m.If(phase == 2):
                m.d.sync += [done.eq(st.done), error.eq(st.error)]
            with m.If(st.advance):
                m.d.sync += phase.eq(0)
            m.d.comb += st.advance.eq(st.active & (phase == 3) &
                                      (~done | ~self.o.valid | self.o.ready))
        else:
            m.d.comb += st.advance.eq(st.active & (~st.done | ~self.o.valid | self.o.ready))
        m.d.comb += [
            st.rec_next.eq(st.rec),
            st.release.eq(st.advance & done),
        ]

        steps = {
            "L2": lambda: self._step_l2(m, st),
            "L3": lambda: self._step_l3(m, st),
            "EXT": lambda: self._step_ext(m, st),
            "L4": lambda: self._step_l4(m, st),
        }
        with m.FSM(name="step"):
            for name, step in steps.items():
                with m.State(name):
                    step()
                    # A step stalls only to emit into a full output register.
                    with m.If(st.advance):
                        m.d.sync += st.rec.eq(st.rec_next)
                        with m.If(done):
                            m.next = "L2"

        # Emit: the record goes to the output register and the frame is released.
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(st.release):
            m.d.sync += self.o.valid.eq(1)
            with m.If(error == ParseError.NONE):
                m.d.sync += self.o.payload.eq(st.rec_next)
            with m.Else():
                m.d.sync += [
                    self.o.payload.eq(0),
                    self.o.payload.length.eq(st.rec_next.length),
                    self.o.payload.error.eq(error),
                ]

    def _settled(self, m, value, name):
        """With ``registered_steps`` (8 bits), ``value`` registered: the step's inputs hold
        still over its four cycles (see ``_elaborate_engine``), so the flop holds the same
        value from the second cycle on and the logic behind it starts from a flop. Otherwise
        (a step per cycle), ``value`` itself."""
        if not self._registered_steps:
            return value
        flag = Signal(len(value), name=name)
        m.d.sync += flag.eq(value)
        return flag

    def _checks(self, m, st, checks):
        """Set ``st.error`` to the error of the first true condition of ``checks``. With
        ``registered_steps`` each condition is registered first, so the compares and the
        priority chain are separate paths."""
        checks = [(self._settled(m, condition, f"check_{error.name.lower()}_{index}"), error)
                  for index, (condition, error) in enumerate(checks)]
        for index, (condition, error) in enumerate(checks):
            with (m.If if index == 0 else m.Elif)(condition):
                m.d.comb += st.error.eq(error)

    def _done(self, m, st, stop):
        """``st.done``: the step found an error, or ``stop`` (the walk ends after this step).
        With ``registered_steps`` ``stop`` is registered first, like the checks' conditions."""
        m.d.comb += st.done.eq((st.error != ParseError.NONE) | self._settled(m, stop, "stop"))

    def _bounds(self, end, bound):
        """Checks that header bytes up to ``end`` lie inside ``bound`` and the capture window."""
        return [(end > bound, ParseError.TRUNCATED),
                (end > self._capture_bytes, ParseError.HEADER_LIMIT)]

    def _step_l2(self, m, st):
        """Frame-level errors, up to two VLAN tags, the EtherType, the direct flag."""
        n, rec_next = st.n, st.rec_next
        # st.l2 holds frame bytes 12..23.
        type0, type1, type2 = (header_field(st.l2, offset - 12, 2) for offset in (12, 16, 20))
        tci0 = header_field(st.l2, 14 - 12, 2)
        tag0 = (type0 == EtherType.VLAN) | (type0 == EtherType.QINQ)
        tag1 = tag0 & ((type1 == EtherType.VLAN) | (type1 == EtherType.QINQ))
        ethertype = Mux(tag1, type2, Mux(tag0, type1, type0))
        direct = (self.direct_ethertype != 0) & (ethertype == self.direct_ethertype)
        is_ip = ~direct & ((ethertype == EtherType.IPV4) | (ethertype == EtherType.IPV6))

        # A new record: every field not set here starts at 0.
        m.d.comb += [
            rec_next.eq(0),
            rec_next.length.eq(n),
            rec_next.ethertype.eq(ethertype),
            rec_next.vlan_id.eq(Mux(tag0, tci0[:12], 0)),
            rec_next.flags.vlan.eq(tag0),
            rec_next.flags.vlan2.eq(tag1),
            rec_next.flags.direct.eq(direct),
        ]
        self._checks(m, st, [
            (st.mac_error, ParseError.MAC_ERROR),
            (n < ETH_HEADER_LEN, ParseError.RUNT),
            (n > self.max_frame, ParseError.OVERSIZE),
            (tag0 & (n < ETH_HEADER_LEN + 4), ParseError.TRUNCATED),
            (tag1 & (n < ETH_HEADER_LEN + 8), ParseError.TRUNCATED),
        ])
        self._done(m, st, ~is_ip)
        with m.If(st.advance):
            m.d.sync += st.tags.eq(tag0 + tag1)
            m.next = "L3"

    def _step_l3(self, m, st):
        """The IPv4 header or the fixed IPv6 header, at byte 14, 18 or 22."""
        n, rec, rec_next = st.n, st.rec, st.rec_next
        l3 = Signal(range(ETH_HEADER_LEN + 9))
        hdr = st.hdr                            # 40 bytes at L3, little-endian lanes
        m.d.comb += l3.eq(ETH_HEADER_LEN + 4 * st.tags)
        version, ihl = header_byte(hdr, 0)[4:], header_byte(hdr, 0)[:4]

        # Which checks apply (IPv4 or IPv6) is settled too: it picks the error.
        with m.If(self._settled(m, rec.ethertype == EtherType.IPV4, "l3_ipv4")):
            header_len = ihl * 4
            total_length = header_field(hdr, 2, 2)
            frag = header_field(hdr, 6, 2)
            fragment = frag[13] | (frag[:13] != 0)      # MF, or a non-zero offset
            ip_proto = header_byte(hdr, 9)
            m.d.comb += [
                rec_next.flags.ipv4.eq(1),
                rec_next.flags.ip_options.eq(ihl > 5),
                rec_next.flags.fragment.eq(fragment),
                rec_next.dscp.eq(header_byte(hdr, 1)[2:]),
                rec_next.ip_proto.eq(ip_proto),
                rec_next.flags.tunnel.eq(ip_proto == IpProto.GRE),
                rec_next.src_addr.eq(ipv4_mapped(0) | header_field(hdr, 12, 4)),
                rec_next.dst_addr.eq(ipv4_mapped(0) | header_field(hdr, 16, 4)),
            ]
            self._checks(m, st, [
                (n <= l3, ParseError.TRUNCATED),
                ((version != 4) | (ihl < 5), ParseError.BAD_IHL),
                *self._bounds(l3 + header_len, n),
                ((total_length < header_len) | (l3 + total_length > n), ParseError.BAD_LENGTH),
            ])
            self._done(m, st, fragment | ~_is_tcp_udp(ip_proto))
            with m.If(st.advance):
                m.d.sync += [
                    st.offset.eq(l3 + header_len),
                    st.ip_end.eq(l3 + total_length),
                    st.ext_count.eq(0),
                ]
                m.next = "L4"

        with m.Else():                          # IPv6: L2 only lets the two IP versions by
            payload_length = header_field(hdr, 4, 2)
            next_header = header_byte(hdr, 6)
            extension = is_ext_header(next_header)
            m.d.comb += [
                rec_next.flags.ipv6.eq(1),
                # Traffic class: low nibble of byte 0, then high nibble of byte 1.
                rec_next.dscp.eq(Cat(header_byte(hdr, 1)[6:], header_byte(hdr, 0)[:4])),
                rec_next.ip_proto.eq(next_header),
                rec_next.flags.tunnel.eq(next_header == IpProto.GRE),
                rec_next.src_addr.eq(header_field(hdr, 8, 16)),
                rec_next.dst_addr.eq(header_field(hdr, 24, 16)),
            ]
            self._checks(m, st, [
                (n <= l3, ParseError.TRUNCATED),
                (version != 6, ParseError.BAD_IHL),
                # The 40-byte header always fits a capture window of 64 bytes or more.
                (l3 + 40 > n, ParseError.TRUNCATED),
                (l3 + 40 + payload_length > n, ParseError.BAD_LENGTH),
            ])
            self._done(m, st, ~(extension | _is_tcp_udp(next_header)))
            with m.If(st.advance):
                m.d.sync += [
                    st.offset.eq(l3 + 40),
                    st.ip_end.eq(l3 + 40 + payload_length),
                    st.ext_count.eq(0),
                ]
                with m.If(extension):
                    m.next = "EXT"
                with m.Else():
                    m.next = "L4"

    def _step_ext(self, m, st):
        """Skip the IPv6 extension header at ``offset``; ``rec.ip_proto`` is its type."""
        rec, rec_next, window, offset = st.rec, st.rec_next, st.window, st.offset
        is_fragment = rec.ip_proto == IpProto.FRAGMENT
        header_len = st.ext_len
        # A fragment offset (13 bits) or the M flag: only part of the packet, no L4 header.
        later_fragment = is_fragment & ((header_field(window, 2, 2) & 0xFFF9) != 0)
        next_header = header_byte(window, 0)
        extension = is_ext_header(next_header)
        m.d.comb += [
            rec_next.flags.ip_options.eq(1),
            rec_next.flags.fragment.eq(rec.flags.fragment | is_fragment),
            rec_next.ip_proto.eq(next_header),
            rec_next.flags.tunnel.eq(next_header == IpProto.GRE),
        ]
        self._checks(m, st, [
            # First the 8 bytes every extension header has (they hold its length), then all.
            *self._bounds(offset + 8, st.ip_end),
            *self._bounds(offset + header_len, st.ip_end),
            (~later_fragment & extension & (st.ext_count == MAX_IPV6_EXT_HEADERS - 1),
             ParseError.HEADER_LIMIT),
        ])
        self._done(m, st, later_fragment | ~(extension | _is_tcp_udp(next_header)))
        with m.If(st.advance):
            m.d.sync += [
                st.offset.eq(offset + header_len),
                st.ext_count.eq(st.ext_count + 1),
            ]
            with m.If(~extension):
                m.next = "L4"

    def _step_l4(self, m, st):
        """Ports and TCP flags of the TCP or UDP header at ``offset``; for UDP to a VXLAN
        port, the VNI of the VXLAN header behind it (window bytes 8..15)."""
        rec, rec_next, window = st.rec, st.rec_next, st.window
        is_tcp = rec.ip_proto == IpProto.TCP
        dst_port = header_field(window, 2, 2)
        vxlan_port = ~is_tcp & ((dst_port == VXLAN_UDP_PORT) | (dst_port == VXLAN_GPE_UDP_PORT))
        # A VNI only from a whole VXLAN header inside the UDP datagram (UDP length 16 or
        # more), a UDP datagram inside the IP packet, the header inside the capture window,
        # with the I flag; anything else is no VNI, not an error. Settled like a check (the
        # bound compares are as long a path).
        udp_len = header_field(window, 4, 2)
        vxlan_end = st.offset + 8 + VXLAN_HEADER_LEN
        vni_found = self._settled(m, vxlan_port & (udp_len >= 8 + VXLAN_HEADER_LEN) &
                                  (st.offset + udp_len <= st.ip_end) &
                                  (vxlan_end <= self._capture_bytes) &
                                  (header_byte(window, 8) & VXLAN_FLAG_I).any(), "vni_found")
        m.d.comb += [
            rec_next.flags.tcp.eq(is_tcp),
            rec_next.flags.udp.eq(~is_tcp),
            rec_next.src_port.eq(header_field(window, 0, 2)),
            rec_next.dst_port.eq(dst_port),
            rec_next.tcp_flags.eq(Mux(is_tcp, header_byte(window, 13), 0)),
            rec_next.flags.tunnel.eq(rec.flags.tunnel | vxlan_port),
            rec_next.flags.vni.eq(vni_found),
            rec_next.vni.eq(Mux(vni_found, header_field(window, 8 + 4, 3), 0)),
            st.done.eq(1),
        ]
        self._checks(m, st, self._bounds(st.offset + Mux(is_tcp, 20, 8), st.ip_end))
