"""A W/N system on the shared simulated NIC: each N on its own RX queue and TX queue.

:class:`WnNic` is the NIC process's side (:class:`~hetnic.host.nic_process.NicProcess`): it
owns the :class:`~hetnic.host.nic.Nic` (opened with ``shared=True``) and its TAP bridge,
exports RX queue ``n`` and TX queue ``n`` to N ``n`` (:meth:`Nic.export_queues
<hetnic.host.nic.Nic.export_queues>`) and spawns the N's as its children
(:func:`n_nic_main`: the queues' :class:`~hetnic.host.queue_port.QueueSet`, a
:class:`~hetnic.host.links.NicQueueLink` on it, a :class:`~hetnic.host.wn_stack.WnStack`).
The RETA spreads flows over the N's queues (entry ``i`` -> queue ``i % n_count``, one
commit), so RSS brings each connection to one N with no software hop; frames every N must
see (ARP) reach N 0 by the default action and go on to the others over their peer rings.

An N that dies: its RETA entries are re-pointed to the living N's in one commit (here, in
the process that owns the NIC) so new connections succeed, and the connections it held are
counted lost (:attr:`WnNic.lost`).

>>> with Nic.open("sim", width=64, rx_queues=2, tx_queues=2, shared=True) as nic:
...     wn = WnNic(nic, tap, n_count=2, w_count=2, addr4=("198.18.0.2", 24))
...     wn.start_w(0, echo_w, 7); wn.start_w(1, echo_w, 7); wn.wait_ready()
...     wn.run(until=lambda: done(), timeout=60)
...     wn.close()
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..errors import HetnicError
from .links import NicQueueLink
from .nic_process import NicProcess
from .shm import SharedSegment
from .stack.instance import InstanceConfig
from .stack.stack import Stack
from .wn import repoint_reta
from .wn_host import WnHost
from .wn_rings import WnLayout
from .wn_stack import WnStack

__all__ = ["WnNic", "WnNicError", "n_nic_main"]

DEFAULT_MAC = "02:00:00:00:00:02"


class WnNicError(HetnicError, RuntimeError):
    """The W/N system could not be set up on the NIC (one line: why)."""


class WnNic:
    """N processes on a shared NIC's queues, W processes beside them, this process the NIC
    process.

    Parameters
    ----------
    nic : Nic
        Opened with ``shared=True`` and at least ``n_count`` RX and TX queues.
    tap : TapDevice or None
        The TAP the NIC is bridged to.
    n_count, w_count : int
    addr4 : (str, int)
        The stack's IPv4 address and prefix length (every N has it, and the same MAC).
    config : InstanceConfig or None
        The N's instance (its queues are set per N); None: defaults with Nagle off.
    log : Callable[[str], None] or None
        For the NIC process's one-line messages.

    Members
    -------
    host : WnHost
        The W/N segment and the W processes.
    owner : NicProcess
    lost : int
        Connections held by N's that died.
    dead : set[int]
        N's that died.
    commits : int
        RETA commits made (1 at start, 1 per dead N).
    """

    def __init__(self, nic, tap, *, n_count: int, w_count: int,
                 addr4: tuple[str, int] = ("198.18.0.2", 24), mac: str = DEFAULT_MAC,
                 config: InstanceConfig | None = None,
                 log: Callable[[str], None] | None = None, table_slots: int = 16384):
        if getattr(nic, "shared", None) is None:
            raise WnNicError("W/N on a NIC needs its memory shared: open it with "
                             "Nic.open('sim', shared=True)")
        if len(nic.rx_queues) < n_count or len(nic.tx_queues) < n_count:
            raise WnNicError(f"{n_count} N's need {n_count} RX and TX queues; the NIC has "
                             f"{len(nic.rx_queues)} and {len(nic.tx_queues)}")
        self.nic = nic
        self.n_count = n_count
        self.lost = 0
        self.dead: set[int] = set()
        self.commits = 0
        base = config or InstanceConfig(name="wn", nagle=False, backlog=4096,
                                        max_connections=16384, syn_cookies=False)
        self.host = WnHost(n_count, w_count, table_slots=table_slots)
        self.owner = NicProcess(nic, tap, log=log)
        self._by_child: dict[str, int] = {}
        try:
            self._table(list(range(n_count)))
            stack_kwargs = {"mac": mac, "ipv4": [addr4]}
            for n in range(n_count):
                cfg = base.replace(name=f"n{n}", rx_queues=(n,), tx_queue=n)
                grant = nic.export_queues(rx=[n], tx=[n])
                name = f"wn-n{n}"
                self.owner.spawn(name, n_nic_main, self.host.name, n, cfg, stack_kwargs,
                                 grant)
                self._by_child[name] = n
            self.owner.on_child_exit(self._on_exit)
        except BaseException:
            self.close()
            raise

    def _table(self, queues: list[int]) -> None:
        """Stage the RETA (one entry per queue, repeated) and commit it once."""
        self.nic.rss.set_table(queues)
        self.nic.commit()
        self.commits += 1

    def _on_exit(self, child) -> None:
        n = self._by_child.get(child.name)
        if n is None or n in self.dead:
            return
        self.dead.add(n)
        self.lost += self.host.n_died(n)
        live = [q for q in range(self.n_count) if q not in self.dead]
        if live:
            self._table(repoint_reta(list(self.nic.rss.table), self.dead, live))

    # ------------------------------------------------------------------ W's and the loop

    def start_w(self, w: int, target: Callable[..., Any], *args: Any) -> Any:
        """Start W ``w`` (:meth:`WnHost.start_w`)."""
        return self.host.start_w(w, target, *args)

    def wait_ready(self, ws: list[int] | None = None, timeout: float = 120.0) -> None:
        """Run the NIC process until the W's are ready (:meth:`WnHost.wait_ready`)."""
        ws = list(range(self.host.layout.w_count)) if ws is None else ws
        end = time.monotonic() + timeout
        layout = self.host.layout
        self.run(until=lambda: all(layout.w_ready(w) for w in ws)
                 or any(self.host.w_procs[w].exitcode is not None for w in ws
                        if w in self.host.w_procs)
                 or time.monotonic() > end, timeout=timeout + 5)
        self.host.wait_ready(ws, timeout=0.1)

    def run(self, until: Callable[[], bool] | None = None,
            timeout: float | None = None) -> bool:
        """Run the NIC process (clock, TAP bridge, children) until ``until()``."""
        return self.owner.run(until=until, timeout=timeout)

    def dump(self, closed: bool = False) -> list[dict]:
        """The routing table."""
        return self.host.dump(closed)

    def counters(self) -> list[dict]:
        """Per N: pid, alive, heartbeat, accepts, lost, reassigned."""
        return self.host.counters()

    def close(self) -> None:
        """Stop the N's and W's, close the NIC process and the segment. Idempotent."""
        host = getattr(self, "host", None)
        if host is not None and host.layout is not None:
            host.layout.stop = True
        owner = getattr(self, "owner", None)
        if owner is not None:
            owner.close()
        if host is not None:
            host.close()

    def __enter__(self) -> "WnNic":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def n_nic_main(client, segment_name: str, n: int, config: InstanceConfig,
               stack_kwargs: dict, grant) -> None:
    """An N process on its exported NIC queues (spawned by :class:`NicProcess`)."""
    segment = SharedSegment.attach(segment_name)
    queues = grant.open()
    try:
        layout = WnLayout.attach(segment.buf)
        link = NicQueueLink(queues, config.rx_queues, config.tx_queue)
        stack = Stack(config, **stack_kwargs)
        WnStack(layout, n, stack, link).run(parent_pid=client.parent_pid)
    finally:
        queues.close()
        segment.close()
