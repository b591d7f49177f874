"""One stack instance in a process of its own: the child's main of
:class:`~hetnic.host.stack_procs.StackProcs`.

The NIC process hands the child an :class:`InstanceSpec` (picklable): the instance's
configuration, the :class:`~hetnic.host.queue_port.QueueGrant` of its RX queues and TX
queue, the addresses, the applications it runs and where its ring of shared frames is. The
child (:func:`instance_main`)

* opens the grant and runs a :class:`~hetnic.host.stack.stack.Stack` on a
  :class:`~hetnic.host.links.NicQueueLink` over the granted queues: it polls its completion
  rings in shared memory and rings its doorbells in the doorbell page, never calling into
  the NIC process for a frame;
* takes the frames every instance needs (ARP, NDP, ICMP errors; the NIC delivers them to
  the default instance) from its :class:`~hetnic.host.spsc.SpscRing`, where the NIC
  process's bridge copies them;
* starts an application when the NIC process calls ``"start_app"``: asks the NIC process's
  dispatcher for its port before it listens (``client.request("listen", qos=..., proto=...,
  port=...)``) and gives the port back (``"release"``) once the application is closed and
  no connection uses the port any more (:class:`~hetnic.host.dispatcher.PortHolds`);
* answers the NIC process's calls: ``"summary"`` (counters, connections by state, the
  applications' statistics, its pid), ``"connections"`` (the per-connection dump),
  ``"close"`` (close the applications and send what that makes the stack send) and
  ``"settled"`` (whether the connections on the closed applications' ports have finished
  their closing exchange).

The poll loop is :class:`~hetnic.host.stack_host.StackHost`'s for one instance: every
``poll_interval`` seconds at most ``poll_batch`` frames (at once again when the batch came
back full). When nothing arrived for ``_ACTIVE`` seconds the child sets its ring's
``sleeping`` word (a store and a full fence, :class:`~hetnic.host.native_lib.SharedWord`),
looks at its rings once more and sleeps on its pipe until the next timer of its stack; the
NIC process, when the NIC moved frames, clears a set word atomically and sends one wake-up
for it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from ..errors import HetnicError
from .apps.builtin import APP_MAKERS, app_key, make_app
from .apps.discard import DiscardServer
from .dispatcher import PortHolds
from .links import NicQueueLink
from .native_lib import SharedWord, fence
from .nic_client import NicClient, NicRequestError
from .shm import SharedSegment
from .spsc import OFF_SLEEPING, SpscRing
from .stack.instance import InstanceConfig
from .stack.stack import Stack
from .stack.tunnel import TunnelAdapter
from .stack_runner import step_stack
from .tunnel_host import tunnel_apps
from .tunnel_privs import drop_privileges, process_identity

__all__ = ["AppSpec", "InstanceSpec", "InstanceProcessError", "instance_main", "standby_main",
           "APP_MAKERS"]

#: Seconds without a frame after which the child sleeps until woken or its next timer.
_ACTIVE = 0.02
#: Longest sleep (seconds): a lost wake-up costs at most this.
_LONGEST_SLEEP = 0.05
#: Seconds a released instance keeps dropping the held frames of pinned flows at most (a
#: queue that gives no frame of the new generation keeps the filter on until then: a frame
#: classified before the commit may still be inside the NIC).
FOREIGN_HOLD = 1.0
#: Frames taken from the shared-frame ring per turn.
_SHARED_BATCH = 64
#: Frames the link keeps in software while the TX ring is full (then a counted drop): the
#: instance never waits for the NIC to free a TX slot, it goes on polling its RX queues.
TX_BACKLOG = 4096
#: Frames per TX work item at most, the same for every instance. The NIC's RX path used to
#: wait for the whole TX work item in progress, so items were kept short. The DMA engine now
#: serves its clients a burst at a time (docs/host.md: about 26 cycles per RX frame under
#: TX load whatever the item's size), so this is no longer about RX latency; 16 is the value
#: the dispatch figures were measured with.
TX_BATCH = 16


class InstanceProcessError(HetnicError, RuntimeError):
    """An instance process could not start (its grant, its ring, an application's port)."""


@dataclass(frozen=True)
class AppSpec:
    """An application an instance runs: its name (``"http"``, ``"echo"``, ``"discard"``),
    protocol, port and the QoS class it asks the dispatcher for."""
    app: str
    proto: str
    port: int
    qos: str

    @property
    def key(self) -> str:
        """Its :data:`~hetnic.host.apps.builtin.APP_MAKERS` key."""
        return app_key(self.app, self.proto)


@dataclass(frozen=True)
class InstanceSpec:
    """Everything an instance process needs (picklable).

    Members
    -------
    config : InstanceConfig
    grant : QueueGrant
        Its RX queues and its TX queue.
    mac : bytes
    ipv4, ipv6 : list of (str, int)
        Addresses and prefix lengths.
    seed : int
    serve_dir : str or None
        The HTTP server's folder.
    ring : (str, int, int)
        Shared-frame ring: segment name, offset and size in it.
    wake_word : int or None
        Offset in that segment of the NIC process's wake word (1 while its loop sleeps
        long: the child kicks it after sending, see
        :class:`~hetnic.host.nic_process.NicProcess`).
    tunnels : tuple of TunnelSpec
        With any, the instance runs the tunnel adapter
        (:class:`~hetnic.host.stack.tunnel.TunnelAdapter`) on its stack, and echo / HTTP on
        the tunnels' inner addresses.
    user : str or None
        Drop to this user once the grant and the ring are mapped
        (:func:`~hetnic.host.tunnel_privs.drop_privileges`).
    held : bool
        Start *held*: the stack runs and its applications listen, but it takes no frame
        from its RX queues until the NIC process calls ``"release"`` (frames wait in the
        rings). A restart's transition and new instances start so
        (:mod:`~hetnic.host.daemon_restart`).
    """
    config: InstanceConfig
    grant: Any
    mac: bytes
    ipv4: list
    ipv6: list
    seed: int
    serve_dir: str | None = None
    ring: tuple[str, int, int] | None = None
    wake_word: int | None = None
    tunnels: tuple = ()
    user: str | None = None
    held: bool = False


@dataclass
class _Running:
    spec: AppSpec
    app: Any
    grant: Any


class _Instance:
    """The child's state: stack, link, shared-frame ring, applications."""

    def __init__(self, client: NicClient, spec: InstanceSpec):
        self.client = client
        self.spec = spec
        cfg = spec.config
        self.queues = spec.grant.open()
        self.segment = self.ring = self.nic_sleeping = self.sleeping = None
        try:
            self.link = NicQueueLink(self.queues, cfg.rx_queues, cfg.tx_queue,
                                     tx_backlog=TX_BACKLOG, tx_batch=TX_BATCH)
            if spec.ring is not None:
                name, offset, size = spec.ring
                self.segment = SharedSegment.attach(name)
                self.ring = SpscRing.attach(self.segment.buf[offset:offset + size])
                self.sleeping = SharedWord(self.segment.buf, offset + OFF_SLEEPING)
                if spec.wake_word is not None:
                    self.nic_sleeping = SharedWord(self.segment.buf, spec.wake_word)
            self.stack = Stack(cfg, mac=spec.mac, ipv4=spec.ipv4, ipv6=spec.ipv6,
                               seed=spec.seed)
            self._tcp = self.stack.tcp                  # the TCP layer (under an adapter too)
            self.adapter = None
            self.tunnel_apps: list = []
            if spec.tunnels:
                self.adapter = TunnelAdapter(self.stack, spec.tunnels, seed=spec.seed + 100)
                self.stack = self.adapter               # type: ignore[assignment]
                self.tunnel_apps = tunnel_apps(self.adapter, spec.serve_dir)
            if spec.user is not None:
                drop_privileges(spec.user)
        except BaseException:
            self.close()
            raise
        self.apps: list[_Running] = []
        #: Grants of closed applications whose port still has connections (TIME-WAIT too).
        self.holds = PortHolds(self._release)
        #: Frames taken from the shared-frame ring.
        self.shared_in = 0
        #: Held: the RX queues are not polled (see InstanceSpec.held).
        self.held = spec.held
        #: Flows (as frame_flow gives them) that belong to another instance: their frames
        #: that reached this one while it was held are dropped, counted in pinned_drops.
        self.foreign: frozenset = frozenset()
        self.foreign_generation = 0
        self.foreign_until = 0.0
        self._behind: set[int] = set()
        self.pinned_drops = 0
        #: Set by "handover": the loop returns, the rings belong to the NIC process again.
        self.leaving = False
        client.on_call("summary", self.summary)
        client.on_call("release_rx", self.release_rx)
        client.on_call("snapshot", self.snapshot)
        client.on_call("handover", self.handover)
        client.on_call("reopen", self.reopen)
        client.on_call("settled", self.holds.settled)
        client.on_call("connections", self.stack.connections)
        client.on_call("close", self.close_apps)
        client.on_call("start_app", self.start_app)

    # --- applications ------------------------------------------------------------------
    def start_app(self, app: AppSpec):
        """Ask the dispatcher for ``app``'s port, then start it; its grant."""
        grant = self.client.request("listen", qos=app.qos, proto=app.proto, port=app.port,
                                    owner=app.app)
        try:
            running = make_app(app.app, app.proto, self.stack, app.port, self.spec.serve_dir)
        except BaseException:
            self.client.request("release", grant=grant)
            raise
        if isinstance(running, DiscardServer):
            running.on_report = self._report
        self.apps.append(_Running(app, running, grant))
        return grant

    def _report(self, report: dict) -> None:
        try:
            self.client.request("report", report=report, timeout=5.0)
        except NicRequestError:
            pass                            # the NIC process is busy or stopping

    def _release(self, grant) -> None:
        self.client.request("release", grant=grant)

    def close_apps(self) -> bool:
        """Close every application and send what that makes the stack send; each port is
        given back once no connection uses it any more (the loop looks), so that the
        peer's answers to the FINs still reach this instance (``"settled"`` tells when
        they have: every connection on those ports gone or in TIME-WAIT)."""
        for running in self.apps:
            running.app.close()
            self.holds.hold(self.stack, running.grant)
        self.apps.clear()
        for app in self.tunnel_apps:
            app.close()
        self.tunnel_apps.clear()
        out = self.stack.poll(time.monotonic())
        if out:
            self.link.send(out)
        return True

    # --- a restart's calls (hetnic.host.daemon_restart) ----------------------------------
    def release_rx(self, foreign=(), generation: int = 0) -> bool:
        """Start taking frames from the RX queues (a held instance). A frame of a flow in
        ``foreign`` (:func:`~hetnic.host.restart_flows.frame_flow` tuples: connections
        pinned to another instance) that the NIC classified before configuration
        ``generation`` (the commit after which the flow table sends those flows elsewhere)
        reached this instance while it was held: it is dropped and counted in
        ``pinned_drops``. Frames of later generations are taken (a flow whose entry is gone
        is this instance's from then on); once each queue has given a frame of
        ``generation`` or later, or :data:`FOREIGN_HOLD` seconds passed, the filter is
        dropped (an empty poll does not end it: a frame classified before the commit may
        still be inside the NIC)."""
        self.foreign = frozenset(tuple(f) for f in foreign)
        self.foreign_generation = generation
        self.foreign_until = time.monotonic() + FOREIGN_HOLD
        self._behind = {q.index for q in self.queues.rx_queues if q is not None}
        self.held = False
        return True

    def snapshot(self) -> list[dict]:
        """Take every frame waiting in the RX queues into the stack (until a pass finds
        none), then the connection dump: every connection the frames that arrived so far
        made, half-open ones included. The NIC process calls it after a commit that sends
        new connections elsewhere; from here on a segment that would open a connection (a
        SYN, or an ACK that may answer a SYN cookie: the NIC classified it before that
        commit) is dropped, not answered (``tcp_closed_to_new``): the peer retransmits it
        to the next instance, and no connection is opened here that the dump missed.
        ``"reopen"`` undoes that (a rollback)."""
        now = time.monotonic()
        if not self.held:
            for _ in range(1024):               # bounded: established traffic keeps coming
                received, _ = self._step(now, 1 << 12)
                if not received and not any(q.ready() for q in self.queues.rx_queues
                                            if q is not None):
                    break
                now = time.monotonic()
        conns = self.stack.connections()
        self._tcp.accept_new = False
        return conns

    def reopen(self) -> bool:
        """Open new connections again after a :meth:`snapshot` (a rolled-back restart)."""
        self._tcp.accept_new = True
        return True

    def handover(self) -> dict:
        """Stop: send what the stack and the link hold (a second at most), flush the RX
        rings (the frames still in them belong to no connection of this instance: held,
        it never took them, or drained, it has none; the next instance on these rings
        must not see them), then hand the RX and TX rings back and leave the loop; the
        rings are not touched here again. Returns ``{"grant": QueueGrant, "rx_flushed":
        frames dropped from the RX rings, "tx_dropped": frames still in the link's
        backlog after the second}`` (the :class:`~hetnic.host.queue_port.QueueGrant` is
        what the next instance on these queues opens)."""
        from .queue_port import QueueGrant, detach_ring
        end = time.monotonic() + 1.0
        out = self.stack.poll(time.monotonic())
        if out:
            self.link.send(out)
        while self.link.backlog and time.monotonic() < end:
            self.link.service()
            time.sleep(0.001)
        self.link.service()
        tx_dropped = self.link.backlog
        qs, grant = self.queues, self.spec.grant
        flushed = 0
        for q in grant.rx_queues:
            for _ in range(64):                 # bounded: the rule sends nothing here now
                packets = qs.rx_queues[q].poll(256)
                if not packets:
                    break
                flushed += len(packets)
        rx = tuple((q, detach_ring(qs.rx_queues[q].ring)) for q in grant.rx_queues)
        tx = tuple((q, detach_ring(qs.tx_queues[q].ring)) for q in grant.tx_queues)
        self.leaving = True
        return {"grant": QueueGrant(grant.shared, rx, tx, grant.tx_timeout),
                "rx_flushed": flushed, "tx_dropped": tx_dropped}

    def _step(self, now: float, batch: int) -> tuple[int, bool]:
        """One step of the stack on the link (:func:`step_stack`), dropping the frames of
        :attr:`foreign` flows."""
        if not self.foreign:
            return step_stack(self.stack, self.link, batch, now)
        from .ordering import GenerationOrder
        from .restart_flows import frame_flow
        link, stack, foreign, since = self.link, self.stack, self.foreign, \
            self.foreign_generation
        link.service()
        taken = 0
        for q in self.queues.rx_queues:
            if q is None or taken >= batch:
                continue
            packets = q.poll(batch - taken)
            taken += len(packets)
            for packet in packets:
                if not GenerationOrder.is_older(packet.generation, since):
                    self._behind.discard(q.index)
                elif frame_flow(packet.data) in foreign:
                    self.pinned_drops += 1
                    continue
                stack.receive(packet.data, now)
        link.frames_in += taken
        if not self._behind or now >= self.foreign_until:
            self.foreign = frozenset()      # every queue is past the held frames
        out = stack.poll(now)
        if out:
            link.send(out)
        return taken, bool(out)

    # --- reporting -----------------------------------------------------------------------
    def summary(self) -> dict:
        cfg = self.spec.config
        return {"pid": os.getpid(), "mode": "process", "rx_queues": list(cfg.rx_queues),
                "tx_queue": cfg.tx_queue, "counters": self.stack.counters.as_dict(),
                "states": self.stack.state_counts(),
                "apps": [r.app.stats() for r in self.apps]
                + [app.stats() for app in self.tunnel_apps],
                "link": {"frames_in": self.link.frames_in, "frames_out": self.link.frames_out,
                         "tx_errors": self.link.tx_errors,
                         "tx_posts": self.link.tx_posts,
                         "tx_backlog_drops": self.link.tx_backlog_drops,
                         "tx_bad_frames": self.link.tx_bad_frames},
                "shared_frames_in": self.shared_in, "held": self.held,
                "pinned_drops": self.pinned_drops, **self._tunnel_summary()}

    def _tunnel_summary(self) -> dict:
        if self.adapter is None:
            return {}
        return {"tunnels": self.adapter.tunnel_stats(), "identity": process_identity()}

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Poll until the NIC process closes the pipe (:class:`ParentGone`)."""
        cfg = self.spec.config
        stack, link, ring, client = self.stack, self.link, self.ring, self.client
        nic_sleeping, sleeping = self.nic_sleeping, self.sleeping
        batch, interval = cfg.poll_batch, cfg.poll_interval
        all_rx = [q for q in self.queues.rx_queues if q is not None]
        next_poll = 0.0
        last_active = time.monotonic()
        while not self.leaving:
            now = time.monotonic()
            rx = [] if self.held else all_rx
            moved = False
            posts = link.tx_posts           # work items posted (doorbells) this turn
            if ring is not None and len(ring):
                for data, _ in ring.pop_many(_SHARED_BATCH):
                    stack.receive(data, now)
                    self.shared_in += 1
                moved = True
            if now >= next_poll and not self.held:
                received, sent = self._step(now, batch)
                moved = moved or received > 0 or sent
                next_poll = now if received >= batch else now + interval
            else:
                out = stack.poll(now)
                if out:
                    link.send(out)
                    moved = True
                elif link.backlog:
                    link.service()          # frames wait for TX room: post what fits
            if link.tx_posts != posts and nic_sleeping is not None:
                # our doorbell store, a fence, then the NIC process's word (it stores the
                # word, fences, reads the doorbell page): one of us sees the other
                fence()
                if nic_sleeping.value:
                    client.kick()           # the NIC process sleeps: our doorbell waits
            if client.serve(0):
                moved = True
            if self.holds.check(now):
                moved = True
            if moved:
                last_active = now
                continue
            deadline = stack.next_deadline()
            if link.backlog:
                retry = link.next_deadline()
                deadline = retry if deadline is None else min(deadline, retry)
                last_active = now           # not idle while frames wait to be posted
            if now - last_active < _ACTIVE:
                wake = next_poll if deadline is None else min(next_poll, deadline)
                client.serve(max(0.0, wake - time.monotonic()))
                continue
            # Idle: sleep until the stack's next timer, a wake-up or a call. Announce the
            # sleep (store, fence), then look again: the NIC process publishes frames,
            # fences, then reads the word (and clears it when it wakes us).
            if sleeping is not None:
                sleeping.announce(1)
            if (ring is not None and len(ring)) or any(q.ready() for q in rx):
                if sleeping is not None:
                    sleeping.store(0)
                last_active = time.monotonic()
                next_poll = 0.0
                continue
            wait = _LONGEST_SLEEP if deadline is None else min(_LONGEST_SLEEP,
                                                               deadline - time.monotonic())
            if client.serve(max(0.0, wait)):
                last_active = time.monotonic()
                next_poll = 0.0
            if sleeping is not None:
                sleeping.store(0)

    def close(self) -> None:
        for word in (self.nic_sleeping, self.sleeping):
            if word is not None:
                word.release()
        self.nic_sleeping = self.sleeping = None
        if self.ring is not None:
            self.ring.release()
            self.ring = None
        if self.segment is not None:
            self.segment.close()
            self.segment = None
        self.queues.close()


def standby_main(client: NicClient, pid_note: str = "") -> None:
    """A standby instance process: imported and connected, it says ``"ready"`` and waits
    for the NIC process's ``"attach"`` call with an :class:`InstanceSpec`; then it is that
    instance (:func:`instance_main`). A restart takes one for its transition and its new
    instance, so that neither waits for a process to start (an interpreter and its imports
    take a second or more)."""
    given: list[InstanceSpec] = []

    def attach(spec: InstanceSpec) -> bool:
        if given:
            raise InstanceProcessError("this standby process is attached already")
        given.append(spec)
        return True
    client.on_call("attach", attach)
    client.request("ready", pid=os.getpid())
    while not given:
        client.serve(0.5)
    instance_main(client, given[0])


def instance_main(client: NicClient, spec: InstanceSpec) -> None:
    """The instance process: open the grant, build the stack, tell the NIC process it is
    ready, poll until the NIC process goes. The NIC process starts the applications with
    ``"start_app"`` calls (in one order for all instances, so the rule table is the same
    every run); each asks the dispatcher for its port."""
    instance = _Instance(client, spec)
    try:
        client.request("ready", pid=os.getpid())
        instance.run()
    finally:
        instance.close()
