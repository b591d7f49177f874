"""Insert the steering tag (:mod:`hetnic.steering_tag`) into each classified frame."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..gateware.beat import Beat
from ..protocol import DropReason, PacketMeta
from ..steering_tag import TAG_ETHERTYPE, TAG_LEN, TAG_OFFSET, TAG_VERSION, SteeringTag

__all__ = ["TagInserter"]


class TagInserter(wiring.Component):
    """Frames and their :class:`~hetnic.protocol.PacketMeta` records in, tagged frames out.

    Sits after :class:`~hetnic.gateware.rx_pipeline.RxPipeline` (8-bit datapath). For each
    frame it waits for the frame's record on ``meta`` without taking any of its beats (the
    pipeline's data FIFO holds the frame; the record comes after the frame's last beat was
    stored, so from then on the whole frame can leave at one byte per cycle, as a transmit
    MAC needs), then:

    - if the record's ``drop`` is not ``NONE``, takes and discards the frame's beats;
    - otherwise sends the first 12 bytes (the MAC addresses), the 12 tag bytes built from
      the record, then the rest of the frame. ``keep`` and ``error`` of data beats pass
      unchanged; tag beats have ``keep = 1`` and ``error = 0``. A frame of 12 bytes or fewer
      (only with ``CTRL.pass_errors``: the pipeline drops runts otherwise) leaves untagged.

    The record is taken in the cycle the frame's last beat is. The output is 12 bytes longer
    per tagged frame than the input, so a continuous stream of short frames backs up into
    the pipeline. Combinational from ``data`` and ``meta`` to ``o``; ``valid`` never depends
    on ``ready``.

    Members
    -------
    data : In(stream.Signature(Beat(8)))
    meta : In(stream.Signature(PacketMeta))
    o : Out(stream.Signature(Beat(8)))
    tagged_count, dropped_count : Out(32)
        Frames sent with a tag; frames discarded for their record's ``drop``.
    """
    data: In(stream.Signature(Beat(8)))
    meta: In(stream.Signature(PacketMeta))
    o: Out(stream.Signature(Beat(8)))
    tagged_count: Out(32)
    dropped_count: Out(32)

    def elaborate(self, platform):
        m = Module()
        i, meta, o = self.data, self.meta.payload, self.o

        tag = Signal(SteeringTag)
        m.d.comb += [
            tag.ethertype.eq(TAG_ETHERTYPE), tag.version.eq(TAG_VERSION),
            tag.instance.eq(meta.instance), tag.queue.eq(meta.queue), tag.rule.eq(meta.rule),
            tag.hash_type.eq(meta.hash_type), tag.generation.eq(meta.generation),
            tag.hash.eq(meta.hash),
        ]
        index = Signal(range(max(TAG_OFFSET, TAG_LEN) + 1))     # byte of the header or tag
        tag_bits = tag.as_value()
        tag_byte = Signal(8)
        with m.Switch(index):
            for k in range(TAG_LEN):        # wire byte k: bits 8 * (11 - k) + 7 .. 8 * (11 - k)
                with m.Case(k):
                    m.d.comb += tag_byte.eq(tag_bits.word_select(TAG_LEN - 1 - k, 8))

        def pass_beat():
            m.d.comb += [o.valid.eq(i.valid), o.payload.eq(i.payload), i.ready.eq(o.ready)]

        def end_frame():
            """Called where a beat is passed or discarded: its ``last`` ends the frame."""
            with m.If(i.valid & i.ready & i.payload.last):
                m.d.comb += self.meta.ready.eq(1)
                m.next = "WAIT"

        with m.FSM():
            with m.State("WAIT"):
                m.d.sync += index.eq(0)
                with m.If(self.meta.valid):
                    with m.If(meta.drop != DropReason.NONE):
                        m.d.sync += self.dropped_count.eq(self.dropped_count + 1)
                        m.next = "DISCARD"
                    with m.Else():
                        m.next = "ADDRESSES"
            with m.State("ADDRESSES"):
                pass_beat()
                with m.If(i.valid & o.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == TAG_OFFSET - 1):
                        m.d.sync += index.eq(0)
                        m.next = "TAG"
                end_frame()         # a frame that ends here goes out untagged
                with m.If(i.valid & o.ready & ~i.payload.last & (index == TAG_OFFSET - 1)):
                    m.d.sync += self.tagged_count.eq(self.tagged_count + 1)
            with m.State("TAG"):
                m.d.comb += [o.valid.eq(1), o.payload.data.eq(tag_byte), o.payload.keep.eq(1)]
                with m.If(o.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == TAG_LEN - 1):
                        m.next = "BODY"
            with m.State("BODY"):
                pass_beat()
                end_frame()
            with m.State("DISCARD"):
                m.d.comb += i.ready.eq(1)
                end_frame()
        return m
