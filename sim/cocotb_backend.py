"""The ``"cocotb"`` backend of :class:`hetnic.host.nic.Nic`: the same driver inside a cocotb
test, over cocotbext-axi.

The driver is synchronous and cocotb is not, so the driver runs in a thread started with
``cocotb.task.bridge``; every backend call that needs simulated time (a register access,
running the clock) blocks that thread on a coroutine with ``cocotb.task.resume``. Host memory
is cocotbext-axi's ``AxiRam``, the register bus its ``AxiLiteMaster``, the wire an
``AxiStreamSource``/``AxiStreamSink`` pair::

    @cocotb.test()
    async def test(dut):
        @bridge
        def body():
            with Nic.open("cocotb", dut=dut) as nic:
                ...             # the same code as against Nic.open("sim", ...)
        await body()
"""

from __future__ import annotations

from cocotb.clock import Clock
from cocotb.task import resume
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge
from cocotbext.axi import (AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiStreamBus,
                           AxiStreamFrame, AxiStreamSink, AxiStreamSource)

from ..host.backend import Backend
from ..params import CORE_CLOCK_PERIOD_NS

__all__ = ["CocotbBackend", "RamMemory"]

CLOCK_NS = CORE_CLOCK_PERIOD_NS
_WIRE_QUEUE_LIMIT = 4096        # frames queued in the AxiStreamSource at most


class RamMemory:
    """:class:`hetnic.host.memory.HostMemory` over cocotbext-axi's AxiRam backing store."""

    def __init__(self, ram):
        self.ram = ram

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.ram.read(addr, n))

    def write(self, addr: int, data: bytes) -> None:
        self.ram.write(addr, bytes(data))


class CocotbBackend(Backend):
    """``Nic.open("cocotb", dut=dut)``, from a bridged thread. ``dut`` is a
    :class:`~hetnic.gateware.top.NicCoreTop`'s Verilog; the driver reads its build from its
    identification registers.
    """

    name = "cocotb"

    def __init__(self, *, dut, min_memory: int = 0, mem_size: int | None = None):
        self.dut = dut
        self.mem_size = mem_size or max(8 << 20, (min_memory + 0xFFFFF) & ~0xFFFFF)
        resume(self._setup)()

    async def _setup(self) -> None:
        dut = self.dut
        self._clock = Clock(dut.clk, CLOCK_NS, unit="ns")
        self._clock.start()
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                          size=self.mem_size)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk,
                                      dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for obj in (self.ram.write_if, self.ram.read_if, self.source, self.sink, self.axil.write_if,
                    self.axil.read_if):
            obj.log.setLevel("WARNING")
        self.memory = RamMemory(self.ram)
        await FallingEdge(dut.clk)
        self._t0 = get_sim_time("ns")

    def close(self) -> None:
        self._clock.stop()

    # registers
    def reg_write(self, addr: int, value: int) -> None:
        resume(self.axil.write_dword)(addr, value & 0xFFFF_FFFF)

    def reg_write_many(self, writes) -> None:
        resume(self._write_many)(list(writes))

    async def _write_many(self, writes) -> None:
        for addr, value in writes:
            await self.axil.write_dword(addr, value & 0xFFFF_FFFF)

    def reg_read(self, addr: int) -> int:
        return resume(self.axil.read_dword)(addr)

    def reg_read_many(self, addrs) -> list[int]:
        return resume(self._read_many)(list(addrs))

    async def _read_many(self, addrs) -> list[int]:
        return [await self.axil.read_dword(a) for a in addrs]

    # wire
    def wire_send(self, frames, errors=None) -> int:
        room = max(0, _WIRE_QUEUE_LIMIT - self.source.count())
        take = frames[:room]
        for i, frame in enumerate(take):
            err = bool(errors[i]) if errors is not None else False
            self.source.send_nowait(AxiStreamFrame(frame, tuser=int(err)))
        return len(take)

    def wire_pending(self) -> int:
        return self.source.count()

    def wire_received(self) -> list[tuple[bytes, bool]]:
        out = []
        while not self.sink.empty():
            f = self.sink.recv_nowait()
            user = f.tuser if isinstance(f.tuser, int) else any(f.tuser or [])
            out.append((bytes(f.tdata), bool(user)))
        return out

    # clock
    def run(self, cycles: int) -> None:
        if cycles:
            resume(self._cycles)(cycles)

    async def _cycles(self, n: int) -> None:
        await ClockCycles(self.dut.clk, n)

    def run_until_idle(self, quiet: int, max_cycles: int) -> int:
        return resume(self._until_idle)(quiet, max_cycles)

    async def _until_idle(self, quiet: int, max_cycles: int) -> int:
        dut = self.dut
        ran = idle = 0
        while ran < max_cycles and (idle < quiet or not self.source.empty()):
            await FallingEdge(dut.clk)
            ran += 1
            moved = any(int(getattr(dut, f"{p}valid").value) and int(getattr(dut, f"{p}ready").value)
                        for p in ("s_axis_t", "m_axis_t", "m_axi_aw", "m_axi_w", "m_axi_ar",
                                  "m_axi_r", "m_axi_b"))
            idle = 0 if moved else idle + 1
        return ran

    @property
    def cycle(self) -> int:
        return int(get_sim_time("ns") - self._t0) // CLOCK_NS

    def irq(self) -> int:
        return int(self.dut.irq.value)

