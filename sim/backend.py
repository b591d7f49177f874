"""The ``"sim"`` backend of :class:`hetnic.host.nic.Nic`: the compiled Verilator harness.

With ``shared=True`` the harness's host memory is a :class:`~hetnic.host.shm.SharedSegment`
and a second segment is the doorbell page the harness services
(:mod:`hetnic.host.doorbells`); :attr:`SimBackend.shared` tells another process how to attach
them (:mod:`hetnic.host.queue_port`). Both segments are unlinked when the backend closes.

The harness is built with the RX queues rounded up (:func:`~hetnic.params.hil_rx_queues`:
up to 8 share the default build, 9 to 16 a 16-queue build), so one cached build serves
several ``rx_queues``; :attr:`SimBackend.rx_queues` tells the driver how many to use.
"""

from __future__ import annotations

from ..host.backend import Backend
from ..host.doorbells import PAGE_BYTES, DoorbellLayout, DoorbellPage
from ..host.queue_port import SharedNicInfo
from ..host.shm import SharedSegment
from ..params import HIL_NIC_CORE, NicParams, hil_rx_queues
from .hil import Harness, check_hil_params

__all__ = ["SimBackend", "SIM_PARAMETERS"]

#: Parameters of ``Nic.open("sim", ...)`` and their defaults: the build
#: (:data:`~hetnic.params.HIL_NIC_CORE`; ``width`` is its ``data_width``; ``rx_queues`` is
#: the queues the driver uses, built rounded up by :func:`~hetnic.params.hil_rx_queues`),
#: then the harness's.
SIM_PARAMETERS = {"width": HIL_NIC_CORE.data_width, "rx_queues": HIL_NIC_CORE.rx_queues,
                  "tx_queues": HIL_NIC_CORE.tx_queues,
                  "event_queues": HIL_NIC_CORE.event_queues, "n_rules": HIL_NIC_CORE.n_rules,
                  "reta_size": HIL_NIC_CORE.reta_size, "mem_size": None, "trace": None,
                  "ifg_bytes": 24, "read_latency": 0, "wire_queue_bytes": 16 << 20,
                  "tx_capture_frames": 65536, "progress": None, "shared": False}


class SimBackend(Backend):
    """Registers, host memory, wire and clock of a :class:`~hetnic.sim.hil.Harness`.

    ``min_memory`` is what the driver will allocate; ``mem_size`` defaults to that rounded
    up to a MiB (at least 16 MiB), and a smaller explicit ``mem_size`` is refused.

    Members
    -------
    rx_queues : int
        The RX queues the driver uses: the ``rx_queues`` asked for. The harness's build
        (what its identification registers say) may have more
        (:func:`~hetnic.params.hil_rx_queues`); the driver never enables those.
    shared : SharedNicInfo or None
        With ``shared=True``: the names of the host memory and doorbell page segments.
    doorbell_page : DoorbellPage or None
        With ``shared=True``: the page the harness services.
    """

    name = "sim"

    def __init__(self, *, min_memory: int = 0, **params):
        unknown = set(params) - set(SIM_PARAMETERS)
        if unknown:
            raise ValueError(f"Nic.open('sim') has no parameter {sorted(unknown)[0]!r}; "
                             f"it takes {', '.join(SIM_PARAMETERS)} and the driver's ring "
                             f"sizes")
        p = {**SIM_PARAMETERS, **params}
        for name in ("width", "rx_queues", "tx_queues", "event_queues", "n_rules", "reta_size"):
            if not isinstance(p[name], int) or isinstance(p[name], bool):
                raise ValueError(f"{name} must be an integer, not {p[name]!r}")
        asked = NicParams(data_width=p["width"], rx_queues=p["rx_queues"],
                          tx_queues=p["tx_queues"], event_queues=p["event_queues"],
                          n_rules=p["n_rules"], reta_size=p["reta_size"])
        check_hil_params(asked)
        params = asked.replace(rx_queues=hil_rx_queues(asked.rx_queues))
        self.rx_queues = asked.rx_queues
        mem_size = p["mem_size"]
        if mem_size is None:
            mem_size = max(16 << 20, (min_memory + (1 << 20) - 1) & -(1 << 20))
        elif isinstance(mem_size, int) and mem_size < min_memory:
            raise ValueError(f"mem_size {mem_size} is too small: these queues and rings need "
                             f"{min_memory} bytes; leave mem_size out or raise it")
        if not isinstance(p["shared"], bool):
            raise ValueError(f"shared must be True or False, not {p['shared']!r}")
        self.shared: SharedNicInfo | None = None
        self.doorbell_page: DoorbellPage | None = None
        self._segment: SharedSegment | None = None
        self.harness = None
        try:
            if p["shared"]:
                self._segment = SharedSegment.create(mem_size, prefix="hetnic-mem")
                layout = DoorbellLayout(params.rx_queues, params.tx_queues,
                                        params.event_queues)
                self.doorbell_page = DoorbellPage.create(layout)
            self.harness = Harness(params, mem_size=mem_size, trace=p["trace"],
                                   ifg_bytes=p["ifg_bytes"], read_latency=p["read_latency"],
                                   rx_queue_limit_bytes=p["wire_queue_bytes"],
                                   tx_capture_limit=p["tx_capture_frames"],
                                   progress=p["progress"],
                                   mem_path=self._segment and self._segment.path)
            if p["shared"]:
                self.harness.attach_doorbells(self.doorbell_page.path, PAGE_BYTES,
                                              layout.register_table(params.regmap()))
                self.shared = SharedNicInfo(memory=self._segment.name, mem_size=mem_size,
                                            doorbells=self.doorbell_page.name, layout=layout,
                                            params=params)
        except BaseException:
            self.close()
            raise
        self.memory = self.harness          # HostMemory: read(addr, n), write(addr, data)
        self.mem_size = mem_size

    def close(self) -> None:
        """Stop the harness; unlink the shared segments (``shared=True``)."""
        if self.harness is not None:
            self.harness.close()
        if self.doorbell_page is not None:
            self.doorbell_page.close()
        if self._segment is not None:
            self._segment.close()

    # registers
    def reg_write(self, addr: int, value: int) -> None:
        self.harness.reg_write(addr, value)

    def reg_write_many(self, writes) -> None:
        self.harness.reg_write_many(writes)

    def reg_read(self, addr: int) -> int:
        return self.harness.reg_read(addr)

    def reg_read_many(self, addrs) -> list[int]:
        return self.harness.reg_read_many(addrs)

    # wire
    def wire_send(self, frames, errors=None) -> int:
        return self.harness.wire_send(frames, errors)

    def wire_pending(self) -> int:
        return self.harness.wire_pending()

    def wire_received(self) -> list[tuple[bytes, bool]]:
        return self.harness.wire_received()

    # clock and interrupts
    def run(self, cycles: int) -> None:
        self.harness.run(cycles)

    def run_until_idle(self, quiet: int, max_cycles: int) -> int:
        return self.harness.run_until_idle(quiet, max_cycles)

    @property
    def cycle(self) -> int:
        return self.harness.cycle

    def irq(self) -> int:
        return self.harness.irq()
