"""The seam between the host driver and whatever runs the NIC: the backend protocols.

The driver (:class:`hetnic.host.nic.Nic`, :class:`hetnic.host.board.BoardNic`,
:class:`hetnic.host.serial_core.ReducedCore`, all on :class:`hetnic.host.control.NicControl`)
reaches hardware only through a backend, so the same driver code runs against the compiled
Verilator harness, inside a cocotb test and on a board. This module is the contract each
backend implements; a backend declares which one by subclassing it:

:class:`RegisterBackend`
    Register reads and writes, and ``close``: all that the control plane (identity,
    configuration, commit, counters) needs. A board behind its serial bridge
    (:class:`hetnic.host.board.SerialBackend`) is one.
:class:`Backend`
    A whole NIC core: the registers, plus host memory the NIC reaches by DMA, the Ethernet
    wire, and the clock. :class:`hetnic.sim.backend.SimBackend` (the compiled harness) and
    :class:`hetnic.sim.cocotb_backend.CocotbBackend` (cocotb over Verilator) are ones.

Every method is synchronous: it returns when the access is done. Backends with a simulated
clock let simulated time pass only inside these calls (a register access takes a few cycles;
:meth:`Backend.run` takes exactly the cycles asked for), so the driver decides when time
moves. Errors are exceptions: a failed access is a :class:`~hetnic.host.control.NicError`
(or another :class:`~hetnic.errors.HetnicError`), and a bad argument a ``ValueError``.

The methods are abstract: a class that declares a protocol and leaves one out cannot be
instantiated. Duck-typed backends (a test's fake) may skip the declaration;
``isinstance(obj, RegisterBackend)`` checks that the methods are there.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Iterable, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .memory import HostMemory

__all__ = ["RegisterBackend", "Backend"]


@runtime_checkable
class RegisterBackend(Protocol):
    """Register access to a hetnic NIC's control/status registers.

    Addresses are byte offsets into the 16-bit CSR window of :mod:`hetnic.regs` (multiples of
    4); values are 32-bit words, LSB-first as the register table numbers bits. Writes take
    effect in the order given; a read returns the register's value after every earlier write.

    Members
    -------
    name : str
        Where the NIC is, for messages: ``"sim"``, ``"cocotb"``, a serial device path.
    """

    name: str

    @abstractmethod
    def reg_read(self, addr: int) -> int:
        """One 32-bit register read at byte address ``addr``."""

    @abstractmethod
    def reg_write(self, addr: int, value: int) -> None:
        """One 32-bit register write of ``value`` (its low 32 bits) at ``addr``."""

    @abstractmethod
    def reg_read_many(self, addrs: Iterable[int]) -> list[int]:
        """The reads of ``addrs`` in order, batched where the transport allows."""

    @abstractmethod
    def reg_write_many(self, writes: Iterable[tuple[int, int]]) -> None:
        """The ``(addr, value)`` writes in order, batched where the transport allows."""

    @abstractmethod
    def close(self) -> None:
        """Release the NIC (stop the simulator, close the port); no call may follow."""


@runtime_checkable
class Backend(RegisterBackend, Protocol):
    """A whole NIC core: registers, host memory, the Ethernet wire and the clock.

    The backend does not say what build it runs: the driver reads that from the device's
    identification registers (:meth:`hetnic.params.NicParams.from_identity`).

    Members
    -------
    memory : HostMemory
        Host memory as the NIC's DMA master sees it: ``read(addr, n) -> bytes`` and
        ``write(addr, data)``, byte addresses from 0 to ``mem_size``. The driver places its
        rings and buffers there; the NIC's DMA reads and writes the same bytes.
    mem_size : int
        Bytes of host memory.
    rx_queues : int, optional
        The RX queues the driver is to use, when fewer than the build has (the ``"sim"``
        backend runs ``rx_queues=N`` on a build rounded up: :func:`hetnic.params.hil_rx_queues`).
        A backend without it (or with ``None``) gets every queue of the build. Not a protocol
        member: ``isinstance`` does not ask for it.
    """

    memory: HostMemory
    mem_size: int

    # --- the wire ----------------------------------------------------------------------
    @abstractmethod
    def wire_send(self, frames: list[bytes], errors: list[bool] | None = None) -> int:
        """Queue ``frames`` for the NIC's receive MAC (``errors[i]``: frame ``i`` carries a MAC
        error, like a bad FCS); returns how many were taken, from the front. The queue is
        bounded: fewer than ``len(frames)`` means run the clock and send the rest later."""

    @abstractmethod
    def wire_pending(self) -> int:
        """Frames queued by :meth:`wire_send` that the NIC has not taken yet."""

    @abstractmethod
    def wire_received(self) -> list[tuple[bytes, bool]]:
        """Frames the NIC's transmit MAC sent since the last call, with their error flag."""

    # --- the clock and interrupts ------------------------------------------------------
    @abstractmethod
    def run(self, cycles: int) -> None:
        """Let the NIC run exactly ``cycles`` clock cycles."""

    @abstractmethod
    def run_until_idle(self, quiet: int, max_cycles: int) -> int:
        """Run until the wire queue is empty and nothing has moved on any bus for ``quiet``
        cycles, or ``max_cycles`` passed; returns the cycles run."""

    @property
    @abstractmethod
    def cycle(self) -> int:
        """Clock cycles since reset."""

    @abstractmethod
    def irq(self) -> int:
        """Interrupt lines that went high since the last call (bit ``q``: event queue ``q``)."""
