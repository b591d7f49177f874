"""The Ethernet MACs' counters on the register bus (the ``MAC_*`` registers).

Each receive MAC counts in its own ``rx<n>`` clock domain, and a 32-bit value cannot be
sampled safely from another clock. But each MAC counter's lowest bit toggles once per count:
that one bit is synchronised into ``sync`` (two flip-flops), and every change of it counts
one in a ``sync`` copy of the counter, which the bus reads. The copy is exact as long as
each level of a counter's bit lasts longer than one ``sync`` period (plus setup and hold),
so that the synchroniser samples every level at least once. One counter counts at most
once per frame, and even a frame of one byte with no preamble and no gap keeps the bit for
two ``rx`` cycles, two ``sync`` periods at the same nominal clock. Real traffic (preamble,
64 bytes, 12-byte gap) keeps it for 80 cycles or more. The transmit MACs run in ``sync``
and their bits need no synchroniser.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In

from ..regs import RegisterMap
from .axil import CsrSignature, registered_reads
from .gmii_rx_mac import GmiiRxMac
from .gmii_tx_mac import GmiiTxMac

__all__ = ["MacCounters", "MAC_COUNTER_REGS"]

#: Register (without ``MAC_``) -> (direction, the MAC's counter member).
MAC_COUNTER_REGS = {
    "RX_FRAMES_OK": ("rx", "frames_ok_count"), "RX_FCS_ERROR": ("rx", "fcs_error_count"),
    "RX_RUNT": ("rx", "runt_count"), "RX_OVERSIZE": ("rx", "oversize_count"),
    "RX_PHY_ERROR": ("rx", "phy_error_count"), "RX_OVERFLOW": ("rx", "overflow_count"),
    "TX_FRAMES": ("tx", "frames_count"), "TX_ERROR": ("tx", "error_count"),
    "TX_UNDERRUN": ("tx", "underrun_count"),
}
assert {c for d, c in MAC_COUNTER_REGS.values() if d == "rx"} == set(GmiiRxMac.COUNTERS)
assert {c for d, c in MAC_COUNTER_REGS.values() if d == "tx"} == set(GmiiTxMac.COUNTERS)


class MacCounters(wiring.Component):
    """The ``MAC_*`` registers of ``regmap`` (``regmap.params["mac_ports"]`` ports), in
    ``sync``.

    Connect with :meth:`attach`, which takes each MAC counter's lowest bit. A bus access is
    acknowledged in its fourth cycle, as the pipeline's counter block does: the address
    compares go into flops, then the one-hot read multiplexer, then ``ack``. Writes are
    acknowledged and ignored; an address in the window that names no register reads 0.

    Members
    -------
    csr : In(CsrSignature(16))
    rx_bits : In(6) for each port (``rx_bits[n]``)
        Port ``n``'s receive MAC counters' lowest bits, in :data:`MAC_COUNTER_REGS` order,
        from the ``rx<n>`` domain (asynchronous here).
    tx_bits : In(3) for each port
        Its transmit MAC counters' lowest bits, from ``sync``.
    """
    def __init__(self, regmap: RegisterMap):
        self.regmap = regmap
        self.ports = regmap.params["mac_ports"]
        if self.ports < 1:
            raise ValueError("MacCounters needs a register map built with mac_ports >= 1")
        self.rx_regs = [r for r, (d, _) in MAC_COUNTER_REGS.items() if d == "rx"]
        self.tx_regs = [r for r, (d, _) in MAC_COUNTER_REGS.items() if d == "tx"]
        super().__init__({
            "csr": In(CsrSignature(16)),
            "rx_bits": In(len(self.rx_regs)).array(self.ports),
            "tx_bits": In(len(self.tx_regs)).array(self.ports),
        })

    def window(self) -> tuple[int, int]:
        """The byte addresses ``[lo, hi)`` of the ``MAC_*`` registers."""
        base, stride, _ = self.regmap.queue_window("MAC")
        return base, base + self.ports * stride

    def attach(self, m, port, rx_mac, tx_mac):
        """Drive port ``port``'s inputs from its MACs' counters (in ``m``)."""
        m.d.comb += [
            self.rx_bits[port].eq(Cat(getattr(rx_mac, MAC_COUNTER_REGS[r][1])[0]
                                      for r in self.rx_regs)),
            self.tx_bits[port].eq(Cat(getattr(tx_mac, MAC_COUNTER_REGS[r][1])[0]
                                      for r in self.tx_regs)),
        ]

    def elaborate(self, platform):
        m = Module()
        rm = self.regmap
        counters = []                        # (address, counter)
        for port in range(self.ports):
            synced = Signal(len(self.rx_regs), name=f"rx{port}_synced")
            m.submodules[f"rx{port}_sync"] = FFSynchronizer(self.rx_bits[port], synced)
            for bits, regs in ((synced, self.rx_regs), (self.tx_bits[port], self.tx_regs)):
                last = Signal.like(bits, name=f"last{port}_{regs[0][:2].lower()}")
                m.d.sync += last.eq(bits)
                for k, reg in enumerate(regs):
                    count = Signal(32, name=f"{reg.lower()}{port}")
                    with m.If(bits[k] != last[k]):
                        m.d.sync += count.eq(count + 1)
                    counters.append((rm.addr(f"MAC_{reg}", port), count))

        csr = self.csr
        step, value = registered_reads(m, csr, counters)
        with m.If(step == 2):
            m.d.sync += csr.r_data.eq(value)
        m.d.comb += csr.ack.eq(step == 3)
        return m
