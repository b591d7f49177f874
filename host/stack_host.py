"""The stack host: the simulated NIC, its TAP bridge, the stack instances on its queues, the
classifier program that shares the NIC among them, and the built-in applications, as one
object (what ``hetnic stack up``, the kernel-peer tests and the bench run).

>>> host = StackHost(nic, tap, addr4="198.18.0.2/24", serve_dir=Path("www"))
>>> host.run(until=lambda: done(), timeout=30)
>>> host.summary()["instances"]["throughput"]["apps"]

The instances share one MAC and one set of addresses, like F-Stack's per-core stacks; the NIC
decides which instance a frame is for: the base plan (:mod:`hetnic.host.stack_steering`: RETA
slices, fragments, ephemeral port ranges, the default instance) and, before it, the rules of
the QoS dispatcher (:class:`~hetnic.host.dispatcher.Dispatcher`), which steers each
application's port to the instance of the application's class while the application
listens: the built-in applications (:data:`~hetnic.host.stack_steering.APP_PORTS`) and any
listener opened with :meth:`StackHost.listen`. ARP, neighbour discovery and ICMP errors are
handed to every instance, so that each keeps its own neighbour cache and hears about its own
connections; when several instances answer the same request in one step (one ARP reply per
instance), identical frames of that kind are sent once.

Each instance runs on a :class:`~hetnic.host.links.NicQueueLink` (its RX queues, its TX
queue) and polls them every ``poll_interval`` seconds, at most ``poll_batch`` frames at a
time (its :class:`~hetnic.host.stack.instance.InstanceConfig`): the instances differ in
latency and batching for real.
"""

from __future__ import annotations

import ipaddress
import select
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import HetnicError
from .apps.builtin import make_app
from .dispatcher import Dispatcher, Grant, PortHolds
from .faults import FaultInjector
from .links import NicQueueLink
from .stack.instance import PROFILES, InstanceConfig
from .stack.errors import BadArgument
from .stack.stack import Stack
from .stack.tunnel import TunnelAdapter, TunnelSpec
from .stack_steering import APP_PORTS, SteeringPlan, is_shared_frame
from .tap_bridge import TapBridge
from .tunnel_host import TUNNEL_INSTANCE, plan_tunnel_steering, tunnel_apps, tunnel_instance

__all__ = ["StackHost", "StackHostTimeout", "HostListener", "DEFAULT_MAC", "parse_interface"]

#: The stack's MAC address (locally administered, unicast).
DEFAULT_MAC = b"\x02\x00\x5e\x00\x00\x02"
#: Longest sleep of :meth:`StackHost.run` when nothing is due (seconds).
_MAX_SLEEP = 0.01
#: An instance whose queues should be empty is still polled this often (seconds).
_IDLE_POLL = 0.01


class StackHostTimeout(HetnicError, TimeoutError):
    """:meth:`StackHost.run` reached its timeout before its condition held."""


def parse_interface(text: str, version: int) -> tuple[str, int]:
    """``"198.18.0.2/24"`` -> ``("198.18.0.2", 24)``; ValueError (one line) when ``text``
    is not an IPv``version`` address with a prefix length."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an address/prefix: {exc}") from None
    if iface.version != version:
        raise ValueError(f"{text!r} is not an IPv{version} address/prefix")
    return str(iface.ip), iface.network.prefixlen


class StackHost:
    """Stack instances on a simulated NIC bridged to a TAP device (see the module).

    Parameters
    ----------
    nic : Nic
        An open NIC with a clock and enough queues for the instances; it is programmed once
        (RETA, base rules, default action, commit), then once per change of the
        dispatcher's rules (an application port opened or closed).
    tap : TapDevice
        The open TAP (not closed by :meth:`close`).
    addr4 : str
        The IPv4 address and prefix of every instance (``"198.18.0.2/24"``).
    addr6 : str, optional
        An IPv6 address and prefix (``"2001:db8::2/64"``).
    instances : list of InstanceConfig, optional
        Default: the three stock profiles.
    mac : bytes
        The shared MAC address.
    faults_to_nic, faults_to_tap : FaultInjector, optional
        Faults on the TAP bridge, each direction.
    serve_dir : Path, optional
        Run the HTTP static server on the files under it.
    apps : bool
        Run the built-in applications (echo, discard, and HTTP with ``serve_dir``).
    seed : int
        Seed of the stacks (each instance gets ``seed + index``).
    tunnels : sequence of TunnelSpec
        Tunnels of the virtual adapter (:mod:`hetnic.host.stack.tunnel`): with any, one more
        instance, ``tunnel`` (:func:`~hetnic.host.tunnel_host.tunnel_instance`), runs a
        :class:`~hetnic.host.stack.tunnel.TunnelAdapter` and the rules of
        :func:`~hetnic.host.tunnel_host.tunnel_rules` steer the tunnels' outer traffic to it;
        the built-in echo (TCP and UDP 7) and HTTP (with ``serve_dir``) answer on every
        tunnel's inner address too.

    Members
    -------
    stacks : dict of str to Stack
    links : dict of str to NicQueueLink
    bridge : TapBridge
    nic : Nic
    plan : SteeringPlan
        The base plan (no application ports).
    dispatcher : Dispatcher
        Owns the NIC's rules: application ports first, then the base plan's.
    apps : dict of str to list
        The applications of each instance.
    """

    def __init__(self, nic, tap, *, addr4: str = "198.18.0.2/24", addr6: str | None = None,
                 instances: list[InstanceConfig] | None = None, mac: bytes = DEFAULT_MAC,
                 faults_to_nic: FaultInjector | None = None,
                 faults_to_tap: FaultInjector | None = None,
                 serve_dir: Path | None = None, apps: bool = True, seed: int = 0,
                 tunnels: list[TunnelSpec] | tuple = ()):
        instances = list(PROFILES.values()) if instances is None else list(instances)
        if tunnels:
            instances, tunnel_cfg = tunnel_instance(instances, rx_queues=len(nic.rx_queues),
                                                    tx_queues=len(nic.tx_queues))
            instances.append(tunnel_cfg)
        ipv4 = [parse_interface(addr4, 4)]
        ipv6 = [parse_interface(addr6, 6)] if addr6 else []
        self.nic = nic
        self.plan: SteeringPlan
        #: Why the tunnels' per-VNI rules were left out (the rule table is full), or None.
        self.tunnel_note: str | None
        self.plan, self.tunnel_note = plan_tunnel_steering(
            instances, nic.params, tunnels, rx_queues=len(nic.rx_queues),
            tx_queues=len(nic.tx_queues), app_ports=(),
            reserve=len(APP_PORTS))        # the dispatcher installs these later
        self.dispatcher = Dispatcher(nic, instances, base_plan=self.plan)
        self.instances = instances
        self.stacks: dict[str, Stack] = {}
        self.links: dict[str, NicQueueLink] = {}
        for index, cfg in enumerate(instances):
            self.links[cfg.name] = NicQueueLink(nic, cfg.rx_queues, cfg.tx_queue)
            self.stacks[cfg.name] = Stack(cfg, mac=mac, ipv4=ipv4, ipv6=ipv6, seed=seed + index)
        #: The tunnel adapter (its instance's stack), or None without tunnels.
        self.adapter: TunnelAdapter | None = None
        if tunnels:
            self.adapter = TunnelAdapter(self.stacks[TUNNEL_INSTANCE], tunnels,
                                         seed=seed + len(instances))
            self.stacks[TUNNEL_INSTANCE] = self.adapter      # type: ignore[assignment]
        self.dispatcher.program()
        self.bridge = TapBridge(nic, tap, faults_to_nic=faults_to_nic,
                                faults_to_tap=faults_to_tap)
        self._order = [(cfg, self.stacks[cfg.name], self.links[cfg.name]) for cfg in instances]
        self._next_poll = {cfg.name: 0.0 for cfg in instances}
        self._rx_maybe = {cfg.name: True for cfg in instances}
        self._stop = threading.Event()
        self.apps: dict[str, list] = {cfg.name: [] for cfg in instances}
        self._app_grants: list[Grant] = []
        self._listeners: list[HostListener] = []
        #: Grants of closed listeners whose accepted connections still use the port.
        self._holds = PortHolds(self.dispatcher.release)
        if apps:
            self._start_apps(serve_dir)

    # --- setup -------------------------------------------------------------------------------
    def _start_apps(self, serve_dir: Path | None) -> None:
        """Each built-in application on the instance the dispatcher grants its class."""
        table = {(app, proto): (port, qos) for app, proto, port, qos in APP_PORTS}

        def add(app, proto):
            port, qos = table[(app, proto)]
            grant = self.dispatcher.request(qos, proto, port, owner=app)
            try:
                self.apps[grant.instance].append(
                    make_app(app, proto, self.stacks[grant.instance], port, serve_dir))
            except BaseException:
                self.dispatcher.release(grant)
                raise
            self._app_grants.append(grant)
        if serve_dir is not None:
            add("http", "tcp")
        add("echo", "tcp")
        add("echo", "udp")
        add("discard", "tcp")
        if self.adapter is not None:
            self.apps[TUNNEL_INSTANCE] += tunnel_apps(self.adapter, serve_dir)

    def listen(self, qos: str, port: int, proto: str = "tcp", *, backlog: int | None = None,
               owner: str = "") -> "HostListener":
        """Listen on ``proto``/``port`` on the instance of QoS class ``qos``.

        The dispatcher picks the instance and steers the port to it (one commit for the first
        socket on the port); the instance opens the listener: a
        :class:`~hetnic.host.stack.sockets.TcpListener` (``backlog`` None: the instance's) or,
        for ``"udp"``, a :class:`~hetnic.host.stack.sockets.UdpSocket` bound to the port on
        every address. Closing the returned :class:`HostListener` closes it and releases the
        port (the rule goes with the last socket).

        Raises
        ------
        DispatchError
            Unknown class, bad protocol or port, a port in use by another class, a full rule
            table (nothing changed).
        StackError
            The instance refuses the socket (the port is taken there, a bad backlog, a
            backlog given for UDP); the port is released again.
        """
        grant = self.dispatcher.request(qos, proto, port, owner=owner)
        stack = self.stacks[grant.instance]
        try:
            if grant.proto == "tcp":
                sock = stack.listen(port, backlog=backlog)
            else:
                if backlog is not None:
                    raise BadArgument(f"listen: a UDP port has no backlog, not {backlog!r}")
                sock = stack.udp_socket()
                try:
                    sock.bind(("::", port))
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            self.dispatcher.release(grant)
            raise
        listener = HostListener(sock, grant, self._closed_listener)
        self._listeners.append(listener)
        return listener

    def _closed_listener(self, listener: "HostListener") -> None:
        """The port stays steered to the instance while connections it accepted live (their
        segments would reach the default instance, which answers with RSTs): released
        once the port is idle (:class:`~hetnic.host.dispatcher.PortHolds`, in :meth:`step`)."""
        self._listeners.remove(listener)
        self._holds.hold(self.stacks[listener.grant.instance], listener.grant)

    # --- running -------------------------------------------------------------------------------
    def step(self, now: float) -> bool:
        """One turn: the bridge pumps (TAP <-> NIC), every instance whose poll time came takes
        up to ``poll_batch`` frames from its queues (frames every instance needs go to all),
        every stack runs its timers, and what they send goes to their TX queues; the ports of
        closed listeners that have become idle are released. Returns whether any frame
        moved."""
        cycles = self.bridge.cycles
        moved = self.bridge.pump(256) > 0
        if self.bridge.cycles != cycles:        # the NIC ran: its RX queues may hold frames
            for name in self._rx_maybe:
                self._rx_maybe[name] = True
        stacks = self.stacks
        for cfg, stack, link in self._order:
            name = cfg.name
            if now < self._next_poll[name] or not (
                    self._rx_maybe[name] or now >= self._next_poll[name] + _IDLE_POLL):
                continue
            frames = link.receive(cfg.poll_batch)
            full = len(frames) >= cfg.poll_batch
            self._rx_maybe[name] = full         # fewer than asked: the queues are empty
            self._next_poll[name] = now if full else now + cfg.poll_interval
            for frame in frames:
                if is_shared_frame(frame):
                    for other in stacks.values():
                        other.receive(frame, now)
                else:
                    stack.receive(frame, now)
            moved |= bool(frames)
        seen: set[bytes] = set()
        for cfg, stack, link in self._order:
            out = stack.poll(now)
            if out:
                link.send(self._once(out, seen))
                moved = True
            link.service()
        self._holds.check(now)
        return moved

    @staticmethod
    def _once(frames: list[bytes], seen: set[bytes]) -> list[bytes]:
        """``frames`` without the shared-kind frames (ARP, NDP, ICMP errors) another
        instance already sent this step: one reply per request, not one per instance."""
        out = []
        for frame in frames:
            if is_shared_frame(frame):
                if frame in seen:
                    continue
                seen.add(frame)
            out.append(frame)
        return out

    def next_deadline(self) -> float | None:
        """The earliest of the stacks' timers, the bridge's held-back frames and the next
        poll of every instance whose queues may hold frames."""
        times = [s.next_deadline() for s in self.stacks.values()]
        times.append(self.bridge.next_deadline())
        times += [t for name, t in self._next_poll.items() if self._rx_maybe[name]]
        return min((t for t in times if t is not None), default=None)

    def run(self, until: Callable[[], bool] | None = None, timeout: float | None = None,
            clock: Callable[[], float] = time.monotonic) -> bool:
        """Step until ``until()`` holds, :meth:`stop` is called or ``timeout`` seconds pass.

        Between steps that moved nothing the host sleeps until the next deadline, or until the
        TAP has a frame (``select``), at most 10 ms.

        Returns
        -------
        bool
            True if ``until()`` held (or, with no ``until``, if the run was stopped); False
            when ``timeout`` passed with no ``until``.

        Raises
        ------
        StackHostTimeout
            ``timeout`` passed before ``until()`` held.
        """
        end = None if timeout is None else clock() + timeout
        tap = self.bridge.fileno()
        while True:
            if until is not None and until():
                return True
            if self._stop.is_set():
                return until is None
            now = clock()
            if end is not None and now >= end:
                if until is None:
                    return False
                raise StackHostTimeout(f"the stack host did not reach its condition within "
                                       f"{timeout:g} s")
            if self.step(now) or self.bridge.busy:
                continue
            deadline = self.next_deadline()
            wait = _MAX_SLEEP if deadline is None else min(_MAX_SLEEP, deadline - clock())
            if end is not None:
                wait = min(wait, end - clock())
            if wait > 0:
                select.select([tap], [], [], wait)

    def stop(self) -> None:
        """Make :meth:`run` return (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # --- reporting -----------------------------------------------------------------------------
    def port_map(self) -> list[dict]:
        """The classifier rules installed, one dict per rule and one for the default:
        ``rule`` (slot, None for the default), ``match`` (text), ``proto``, ``ports``,
        ``instance``, ``rx_queues``, ``reta`` ((offset, size)) and ``app`` (the application
        serving that port here, ``""`` if none)."""
        running = {(app.port, "udp" if app.name == "udp-echo" else "tcp"): app.name
                   for apps in self.apps.values() for app in apps}
        for listener in self._listeners:
            running[(listener.grant.port, listener.grant.proto)] = \
                listener.grant.owner or "listener"
        return self.dispatcher.port_map(running)

    def summary(self) -> dict:
        """``{"instances": {name: {"rx_queues", "tx_queue", "counters", "states", "apps"}},
        "bridge": {...}, "dispatcher": {...}}``: each instance's counters
        (:meth:`StackCounters.as_dict`), connections by state, its applications' statistics;
        the bridge's counters; the dispatcher's grants and rules
        (:meth:`Dispatcher.dump <hetnic.host.dispatcher.Dispatcher.dump>`)."""
        out = {}
        for cfg in self.instances:
            stack = self.stacks[cfg.name]
            out[cfg.name] = {"rx_queues": list(cfg.rx_queues), "tx_queue": cfg.tx_queue,
                             "counters": stack.counters.as_dict(),
                             "states": stack.state_counts(),
                             "apps": [app.stats() for app in self.apps[cfg.name]]}
            if stack is self.adapter:
                out[cfg.name]["tunnels"] = self.adapter.tunnel_stats()
        return {"instances": out, "bridge": self.bridge.counters(),
                "dispatcher": self.dispatcher.dump()}

    def app(self, name: str):
        """The running application called ``name`` (``"http"``, ``"echo"``, ``"udp-echo"``,
        ``"discard"``), or None."""
        for apps in self.apps.values():
            for app in apps:
                if app.name == name:
                    return app
        return None

    def close(self) -> None:
        """Close the applications and the listeners of :meth:`listen`, release their ports
        (the dispatcher's rules go) once the closing exchange is done: the host steps (at
        most a second) until every connection on those ports is gone or in TIME-WAIT and the
        NIC is idle, so the peer's FIN and ACKs still reach the instance; then the ports are
        released. The NIC and the TAP stay open (their owner closes them)."""
        for listener in list(self._listeners):
            listener.close()
        for apps in self.apps.values():
            for app in apps:
                app.close()
            apps.clear()
        while self._app_grants:
            grant = self._app_grants.pop()
            self._holds.hold(self.stacks[grant.instance], grant)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            moved = self.step(time.monotonic())
            if not moved and not self.bridge.busy and self._holds.settled():
                break
            if not moved:
                time.sleep(0.001)
        self._holds.release_all()


class HostListener:
    """A listener opened by :meth:`StackHost.listen`: the instance's socket and the port's
    dispatcher grant. Everything but :meth:`close` is the socket's (``accept``, ``recvfrom``,
    ``sendto``, ``on_ready``, ``getsockname``, ...).

    Members
    -------
    socket : TcpListener or UdpSocket
        The instance's socket.
    grant : Grant
        The dispatcher's grant: ``grant.instance`` is the instance that listens.
    """

    def __init__(self, socket, grant: Grant, on_close: Callable[["HostListener"], None]):
        self.__dict__.update(socket=socket, grant=grant, _on_close=on_close, _closed=False)

    def close(self) -> None:
        """Close the socket and release the port (once; later calls do nothing)."""
        if self._closed:
            return
        self.__dict__["_closed"] = True
        try:
            self.socket.close()
        finally:
            self._on_close(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __getattr__(self, name: str):
        return getattr(self.__dict__["socket"], name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.socket, name, value)       # on_ready and the like are the socket's

    def __repr__(self) -> str:
        g = self.grant
        return f"<HostListener {g.proto}/{g.port} on {g.instance!r} ({g.qos})>"
