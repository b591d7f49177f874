"""The stack host with each stack instance in a process of its own (``hetnic stack up``'s
default; :class:`~hetnic.host.stack_host.StackHost` is the one-process mode).

>>> with Nic.open("sim", width=64, rx_queues=8, shared=True) as nic:
...     host = StackProcs(nic, tap, addr4="198.18.0.2/24", serve_dir=Path("www"))
...     host.run(until=lambda: done(), timeout=30)
...     host.summary()["instances"]["throughput"]["pid"]
...     host.close()

This process is the NIC process (:class:`~hetnic.host.nic_process.NicProcess`): it owns the
simulated NIC, runs its clock and the TAP bridge, and owns the classifier through the
:class:`~hetnic.host.dispatcher.Dispatcher`. For each instance it exports the instance's RX
queues and TX queue (:meth:`Nic.export_queues <hetnic.host.nic.Nic.export_queues>`) and
spawns a child (:func:`~hetnic.host.instance_process.instance_main`) that runs the stack and
its applications on them; frames go between the NIC and the child through shared memory
only.

* Applications state their QoS class: a child asks ``"listen"`` for each application's port
  before it listens, the dispatcher steers the port to that class's instance (one commit),
  and ``"release"`` gives it back when the application closes (or the child exits).
  An application runs in the instance that serves its class (the first, when several do).
* Frames every instance needs (:func:`~hetnic.host.stack_steering.is_shared_frame`: ARP,
  NDP, ICMP errors) reach the default instance through the NIC; the bridge copies each into
  the :class:`~hetnic.host.spsc.SpscRing` of every other instance (a full ring is a counted
  drop). Each instance answers such a request itself; of identical answers within 100 ms
  the bridge writes one to the TAP (one ARP reply per request, as the one-process host).
* A child that dies is reported in one line with its name and exit status, counted, its
  ports given back; the others keep running.
* :meth:`summary` asks every child for its counters (``"summary"``) and adds its pid.

The instances given may be the three heterogeneous stock profiles or, for instance, one
instance owning every RX queue and one TX queue with the summed resources
(:func:`hetnic.bench_dispatch.homogeneous_instance`): any set that
:func:`~hetnic.host.stack_steering.plan_steering` accepts.
"""

from __future__ import annotations

import select
import time
from pathlib import Path
from typing import Callable

from ..errors import HetnicError
from .dispatcher import Dispatcher, DispatchError
from .faults import FaultInjector
from .instance_process import AppSpec, InstanceSpec, instance_main, standby_main
from .native_lib import SharedWord, fence
from .nic_process import NicProcess, NicProcessTimeout
from .shm import SharedSegment
from .spsc import OFF_SLEEPING, SpscRing
from .stack.instance import PROFILES, InstanceConfig
from .stack_host import DEFAULT_MAC, StackHostTimeout, parse_interface
from .stack_steering import APP_PORTS, app_instance, is_shared_frame
from .tunnel_host import TUNNEL_INSTANCE, plan_tunnel_steering, tunnel_instance
from .tunnel_privs import resolve_user

__all__ = ["StackProcs", "StackProcsError", "wake_once"]

#: Slots and slot size of each instance's ring of shared frames (an Ethernet frame fits).
RING_SLOTS = 64
RING_SLOT_SIZE = 2048
#: The shared segment: the NIC process's wake word (a cache line), then one ring per
#: instance.
_WAKE_WORD = 0
_RINGS_AT = 64
#: Seconds within which a second identical shared-kind frame (ARP, NDP, ICMP error) from
#: the instances is not sent again.
_ONCE_WINDOW = 0.1
#: Seconds the children get to open their queues and listen.
START_TIMEOUT = 120.0
#: Seconds a summary or close call waits for a child.
CALL_TIMEOUT = 10.0
#: Standby processes kept with a spare queue set (a restart takes two: its transition and
#: its new instance).
STANDBYS = 2


class StackProcsError(HetnicError, RuntimeError):
    """The instance processes could not be started (one line: which and why)."""


class StackProcs:
    """Stack instances as processes on a shared NIC bridged to a TAP (see the module).

    Parameters
    ----------
    nic : Nic
        Opened with ``shared=True`` and enough queues for the instances; its classifier is
        programmed by the dispatcher.
    tap : TapDevice
        The open TAP (not closed by :meth:`close`).
    addr4, addr6, instances, mac, faults_to_nic, faults_to_tap, serve_dir, apps, seed
        As for :class:`~hetnic.host.stack_host.StackHost`.
    log : Callable[[str], None], optional
        Where one-line messages go (an instance that exited); default standard error.
    tunnels : sequence of TunnelSpec
        As for :class:`~hetnic.host.stack_host.StackHost`: the ``tunnel`` instance runs the
        adapter, in a process of its own.
    tunnel_user : str or None
        The user the adapter's process drops to once it has mapped its queues
        (:mod:`hetnic.host.tunnel_privs`; the segments it maps stay this process's, mode
        0600); None: it keeps this process's user.

    Members
    -------
    owner : NicProcess
    dispatcher : Dispatcher
    instances : list of InstanceConfig
    children : dict of str to Child
    pids : dict of str to int
    exits : dict of str to int
        Instances that exited, and their exit status (negative: the signal).
    shared_drops : int
        Shared frames not copied to an instance because its ring was full.
    shared_duplicates : int
        Shared-kind frames the instances sent that were not written to the TAP: the same
        frame another instance had just sent (one ARP reply per request).
    wakes_skipped : int
        Wake-ups of a sleeping instance not sent because its pipe was full (it then sleeps
        out its timeout).
    """

    def __init__(self, nic, tap, *, addr4: str = "198.18.0.2/24", addr6: str | None = None,
                 instances: list[InstanceConfig] | None = None, mac: bytes = DEFAULT_MAC,
                 faults_to_nic: FaultInjector | None = None,
                 faults_to_tap: FaultInjector | None = None,
                 serve_dir: Path | None = None, apps: bool = True, seed: int = 0,
                 log: Callable[[str], None] | None = None, tunnels=(),
                 tunnel_user: str | None = None, spare: tuple | None = None):
        if getattr(nic, "shared", None) is None:
            raise StackProcsError("instances as processes need the NIC's memory shared: open "
                                  "it with Nic.open('sim', shared=True)")
        self.instances = list(PROFILES.values()) if instances is None else list(instances)
        tunnels = tuple(tunnels)
        #: The tunnel adapter's tunnels (its instance is TUNNEL_INSTANCE), or ().
        self.tunnels = tunnels
        if tunnels:
            self.instances, tunnel_cfg = tunnel_instance(
                self.instances, rx_queues=len(nic.rx_queues), tx_queues=len(nic.tx_queues))
            self.instances.append(tunnel_cfg)
            if tunnel_user is not None:
                resolve_user(tunnel_user)               # an unknown user fails here
        ipv4 = [parse_interface(addr4, 4)]
        ipv6 = [parse_interface(addr6, 6)] if addr6 else []
        self.nic = nic
        #: Why the tunnels' per-VNI rules were left out (the rule table is full), or None.
        self.tunnel_note: str | None
        self.base_plan, self.tunnel_note = plan_tunnel_steering(
            self.instances, nic.params, tunnels, rx_queues=len(nic.rx_queues),
            tx_queues=len(nic.tx_queues), app_ports=(),
            reserve=len(APP_PORTS))        # the dispatcher installs these later
        #: Why there is no spare queue set (no restarts), or None.
        self.spare_note: str | None = None
        self.spare = self._reserve(spare, nic)
        self.dispatcher = FrontDispatcher(nic, self.instances, base_plan=self.base_plan)
        self.dispatcher.program()
        ring_bytes = SpscRing.bytes_needed(RING_SLOTS, RING_SLOT_SIZE)
        self._ring_bytes = ring_bytes
        rings = len(self.instances) + (self.spare is not None)
        self._segment = SharedSegment.create(_RINGS_AT + ring_bytes * rings,
                                             prefix="hetnic-shared")
        #: The instance whose ring each ring slot is (None: unused), and the aliases: an
        #: instance that serves another's ports (a restart's transition instance).
        self.ring_names: list[str | None] = [cfg.name for cfg in self.instances] + \
            [None] * (self.spare is not None)
        self.aliases: dict[str, str] = {}
        self.extra: dict[str, InstanceConfig] = {}
        #: Started processes waiting to become an instance (standby_main).
        self.standbys: list = []
        self._standby_count = 0
        self._rings: list[SpscRing] = []
        self._sleeping: list[SharedWord] = []
        self.wakes_skipped = 0
        try:
            self.owner = NicProcess(nic, tap, faults_to_nic=faults_to_nic,
                                    faults_to_tap=faults_to_tap, log=log,
                                    wake_word=self._segment.buf[_WAKE_WORD:_WAKE_WORD + 4])
        except BaseException:
            self._segment.close()
            raise
        self.bridge = self.owner.bridge
        self.children: dict = {}
        self.pids: dict[str, int] = {}
        self.exits: dict[str, int] = {}
        self.shared_drops = 0
        self.shared_duplicates = 0
        self._shared_sent: dict[bytes, float] = {}
        self._ready: set[str] = set()
        self._grants: dict[str, list] = {cfg.name: [] for cfg in self.instances}
        self._last: dict[str, dict] = {}
        self._reports: list[Callable[[dict], None]] = []
        self._seen_activity = self.owner.activity
        self._closed = False
        self.apps = self._assign_apps(serve_dir is not None) if apps else \
            {cfg.name: [] for cfg in self.instances}
        self._mac, self._ipv4, self._ipv6, self._seed = mac, ipv4, ipv6, seed
        self._serve_dir = serve_dir
        try:
            if self.spare is not None:
                self.spare_grant = nic.export_queues(rx=self.spare[0], tx=[self.spare[1]])
            for i in range(rings):
                at = _RINGS_AT + i * ring_bytes
                self._rings.append(SpscRing.create(self._segment.buf[at:at + ring_bytes],
                                                   RING_SLOTS, RING_SLOT_SIZE))
                self._sleeping.append(SharedWord(self._segment.buf, at + OFF_SLEEPING))
            self._serve()
            for index, cfg in enumerate(self.instances):
                grant = nic.export_queues(rx=cfg.rx_queues, tx=[cfg.tx_queue])
                adapter = tunnels and cfg.name == TUNNEL_INSTANCE
                user = tunnel_user if adapter else None
                spec = InstanceSpec(config=cfg, grant=grant, mac=mac, ipv4=ipv4, ipv6=ipv6,
                                    seed=seed + index,
                                    serve_dir=None if serve_dir is None else str(serve_dir),
                                    ring=(self._segment.name, _RINGS_AT + index * ring_bytes,
                                          ring_bytes), wake_word=_WAKE_WORD,
                                    tunnels=tunnels if adapter else (), user=user)
                child = self.owner.spawn(cfg.name, instance_main, spec)
                self.children[cfg.name] = child
                self.pids[cfg.name] = child.pid
            self._start()
            self.start_standbys()
        except BaseException:
            self.close()
            raise

    # --- setup -------------------------------------------------------------------------------
    def _assign_apps(self, http: bool) -> dict[str, list[AppSpec]]:
        """Each built-in application on the instance of its QoS class."""
        out: dict[str, list[AppSpec]] = {cfg.name: [] for cfg in self.instances}
        for app, proto, port, qos in APP_PORTS:
            if app == "http" and not http:
                continue
            name = self.instances[app_instance(self.instances, qos)].name
            out[name].append(AppSpec(app, proto, port, qos))
        return out

    def _serve(self) -> None:
        owner = self.owner
        owner.on_request("ready", self._on_ready)
        owner.on_request("listen", self._on_listen)
        owner.on_request("release", self._on_release)
        owner.on_request("report", self._on_report)
        owner.on_child_exit(self._on_exit)
        owner.on_wire_frames(self._copy_shared)
        owner.on_wire_out(self._once)
        owner.on_turn(self._wake_sleepers)

    def _start(self) -> None:
        names = {cfg.name for cfg in self.instances}
        try:
            self.owner.run(until=lambda: self._ready == names or bool(self.exits),
                           timeout=START_TIMEOUT)
        except NicProcessTimeout:
            late = ", ".join(sorted(names - self._ready))
            raise StackProcsError(f"instance processes {late} did not start within "
                                  f"{START_TIMEOUT:g} s") from None
        self._check_started()
        # The applications, in APP_PORTS order whichever process runs them: the rule table
        # comes out the same every run (http at slot 0, as in the one-process host).
        order = {(app, proto): i for i, (app, proto, _, _) in enumerate(APP_PORTS)}
        starts = sorted(((order[(a.app, a.proto)], name, a)
                         for name, specs in self.apps.items() for a in specs),
                        key=lambda item: item[0])
        for _, name, app in starts:
            try:
                self.children[name].call("start_app", app=app, timeout=START_TIMEOUT)
            except HetnicError as exc:
                self._check_started()
                raise StackProcsError(f"instance {name} could not start {app.app} on "
                                      f"{app.proto}/{app.port}: {exc}") from None

    def _check_started(self) -> None:
        if self.exits:
            name, code = next(iter(self.exits.items()))
            raise StackProcsError(f"instance process {name} exited with status {code} while "
                                  f"starting (see its message above)")

    # --- one instance at a time (a restart, hetnic.host.daemon_restart) ----------------------
    def _reserve(self, spare, nic) -> tuple | None:
        """Check the spare queue set ``(rx_queues, tx_queue)`` a restart's transition
        instance runs on, and point the RETA slice after the instances' (free when the
        instances are not a power of two) at its RX queues; None without one
        (:attr:`spare_note` says why)."""
        if spare is None:
            self.spare_note = "this daemon has no spare queue set for a transition instance"
            return None
        rx, tx = tuple(spare[0]), spare[1]
        used_rx = {q for cfg in self.instances for q in cfg.rx_queues}
        used_tx = {cfg.tx_queue for cfg in self.instances}
        if not rx or any(q in used_rx or not 0 <= q < len(nic.rx_queues) for q in rx) \
                or tx in used_tx or not 0 <= tx < len(nic.tx_queues):
            raise StackProcsError(f"the spare queues (RX {list(rx)}, TX {tx}) must be queues "
                                  f"of the NIC that no instance uses")
        offset, size = self.spare_slice()
        if offset + size > len(self.base_plan.reta):
            # the instances fill the RETA (a power of two of them: 1, 2, 4): the daemon runs,
            # only a restart is refused (check_restart says why)
            self.spare_note = (f"{len(self.instances)} instances leave no RETA slice for a "
                               f"transition instance (a power of two of them fills it)")
            return None
        for e in range(size):
            self.base_plan.reta[offset + e] = rx[e % len(rx)]
        return rx, tx

    def spare_slice(self) -> tuple[int, int]:
        """``(offset, size)`` of the RETA slice after the instances' (a transition
        instance's)."""
        n = len(self.instances)
        size = len(self.base_plan.reta) // (1 << (n - 1).bit_length())
        return n * size, size

    def spawn_instance(self, cfg: InstanceConfig, grant, *, ring: int, held: bool,
                       alias: str | None = None, apps: list | None = None):
        """Start one instance process on ``grant`` (its queues) with the shared-frame ring
        slot ``ring``, held or not (:attr:`InstanceSpec.held`); ``alias``: the instance
        whose ports it serves (its listens are granted on that instance's claims). Its
        applications (``apps``, default the ones of ``alias`` or of ``cfg.name``) are
        started by :meth:`start_apps` once it is ready (:meth:`ready`)."""
        at = _RINGS_AT + ring * self._ring_bytes
        # the seed of the instance whose ports it serves (as at the start): its SYN-cookie
        # secret and ISN key, so that a cookie one answered is accepted by the next
        names = [c.name for c in self.instances]
        serves = alias or cfg.name
        seed = self._seed + names.index(serves) if serves in names else \
            self._seed + 17 * (ring + 1) + len(self.pids)
        spec = InstanceSpec(config=cfg, grant=grant, mac=self._mac, ipv4=self._ipv4,
                            ipv6=self._ipv6, seed=seed,
                            serve_dir=None if self._serve_dir is None else str(self._serve_dir),
                            ring=(self._segment.name, at, self._ring_bytes),
                            wake_word=_WAKE_WORD, held=held)
        self.exits.pop(cfg.name, None)
        self._ready.discard(cfg.name)
        if alias is not None:
            self.aliases[cfg.name] = alias
        self.apps[cfg.name] = list(apps if apps is not None
                                   else self.apps.get(alias or cfg.name, []))
        self._grants.setdefault(cfg.name, [])
        self.ring_names[ring] = cfg.name
        if cfg.name not in {c.name for c in self.instances}:
            self.extra[cfg.name] = cfg
        standby = next((c for c in self.standbys if c.name in self._ready and c.alive), None)
        if standby is None:
            child = self.owner.spawn(cfg.name, instance_main, spec)
        else:                               # a process up already: it becomes the instance
            self.standbys.remove(standby)
            self._ready.discard(standby.name)
            standby.name = cfg.name
            child = standby
        self.children[cfg.name] = child
        self.pids[cfg.name] = child.pid
        if child is standby:
            try:
                child.call("attach", spec=spec, timeout=CALL_TIMEOUT)
            except BaseException:
                child.process.kill()        # not left running unattached: reaped as
                raise                       # instance cfg.name's exit
        return child

    def start_standbys(self) -> None:
        """Start standby processes until :data:`STANDBYS` are there (with a spare queue set
        only); they get ready in the background."""
        if self.spare is None:
            return
        while len(self.standbys) < STANDBYS:
            self._standby_count += 1
            self.standbys.append(self.owner.spawn(f"standby-{self._standby_count}",
                                                  standby_main))

    def ready(self, name: str) -> bool:
        """Whether instance process ``name`` said it is ready."""
        return name in self._ready

    def start_apps(self, name: str) -> None:
        """Start instance ``name``'s applications (each asks for its port); StackProcsError
        when one cannot."""
        for app in self.apps.get(name, []):
            try:
                self.children[name].call("start_app", app=app, timeout=START_TIMEOUT)
            except HetnicError as exc:
                raise StackProcsError(f"instance {name} could not start {app.app} on "
                                      f"{app.proto}/{app.port}: {exc}") from None

    def forget(self, name: str) -> None:
        """Instance ``name`` (an extra one, exited) is gone: its ring slot is free."""
        self.aliases.pop(name, None)
        self.extra.pop(name, None)
        self.apps.pop(name, None)
        self._last.pop(name, None)
        self.ring_names = [None if n == name else n for n in self.ring_names]

    # --- requests from the children ------------------------------------------------------------
    def _on_ready(self, child, pid: int) -> bool:
        self._ready.add(child.name)
        return True

    def _on_listen(self, child, qos: str, proto: str, port: int, owner: str = ""):
        grant = self.dispatcher.request(qos, proto, port, owner=owner)
        if grant.instance != self.aliases.get(child.name, child.name):
            self.dispatcher.release(grant)
            raise DispatchError(f"class {qos!r} is served by instance {grant.instance!r}, "
                                f"not {child.name!r}: {proto}/{port} cannot listen there")
        self._grants[child.name].append(grant)
        return grant

    def _on_release(self, child, grant) -> bool:
        self.dispatcher.release(grant)
        held = self._grants[child.name]
        if grant in held:
            held.remove(grant)
        return True

    def _on_report(self, child, report: dict) -> bool:
        for callback in self._reports:
            callback(report)
        return True

    def _on_exit(self, child) -> None:
        self._ready.discard(child.name)
        if child in self.standbys:
            self.standbys.remove(child)
            return
        self.exits[child.name] = child.exitcode
        for grant in self._grants.get(child.name, []):
            try:
                self.dispatcher.release(grant)
            except DispatchError:
                pass                        # released meanwhile
        self._grants[child.name] = []

    def on_report(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(report)`` for every discard connection's report (see
        :class:`~hetnic.host.apps.discard.DiscardServer`), from whichever instance."""
        self._reports.append(callback)

    # --- the bridge's side ---------------------------------------------------------------------
    def _copy_shared(self, frames: list[bytes]) -> None:
        """Copy the frames every instance needs to the instances the NIC does not give them
        to (all but the default instance)."""
        default = self.base_plan.default_instance
        for frame in frames:
            if not is_shared_frame(frame):
                continue
            for index, ring in enumerate(self._rings):
                name = self.ring_names[index]
                if index != default and name is not None and name not in self.exits:
                    if not ring.push(frame):
                        self.shared_drops += 1

    def _once(self, frames: list[bytes]) -> list[bytes]:
        """``frames`` without a shared-kind frame (ARP, NDP, ICMP errors) identical to one
        sent within ``_ONCE_WINDOW`` seconds: every instance answers the kernel's ARP request
        (it got a copy), the kernel gets one reply, as from the one-process host."""
        now = time.monotonic()
        sent = self._shared_sent
        out = []
        for frame in frames:
            if is_shared_frame(frame):
                last = sent.get(frame)
                if last is not None and now - last < _ONCE_WINDOW:
                    self.shared_duplicates += 1
                    continue
                sent[frame] = now
            out.append(frame)
        if len(sent) > 256:
            for frame in [f for f, t in sent.items() if now - t >= _ONCE_WINDOW]:
                del sent[frame]
        return out

    def _wake_sleepers(self) -> bool:
        """After the NIC moved frames, wake the children that sleep (their ring's
        ``sleeping`` word set) with one message on their pipe per sleep (:func:`wake_once`;
        a wake-up not sent because the child's pipe is full is counted in
        ``wakes_skipped``)."""
        activity = self.owner.activity
        if activity == self._seen_activity and not any(len(r) for r in self._rings):
            return False
        self._seen_activity = activity
        fence()         # the frames published (harness, ring pushes) before the words read
        for name, word in zip(self.ring_names, self._sleeping):
            child = self.children.get(name) if name is not None else None
            if child is not None and child.conn is not None:
                if wake_once(word, child.conn) is False:
                    self.wakes_skipped += 1
        return False

    # --- running -------------------------------------------------------------------------------
    def run(self, until: Callable[[], bool] | None = None, timeout: float | None = None) -> bool:
        """Run the NIC process's loop (see :meth:`NicProcess.run
        <hetnic.host.nic_process.NicProcess.run>`).

        Raises
        ------
        StackHostTimeout
            ``timeout`` passed before ``until()`` held.
        """
        try:
            return self.owner.run(until=until, timeout=timeout)
        except NicProcessTimeout:
            raise StackHostTimeout(f"the stack processes did not reach their condition "
                                   f"within {timeout:g} s") from None

    def stop(self) -> None:
        """Make :meth:`run` return, now and from then on (safe from a signal handler)."""
        self.owner.stop()

    @property
    def stopped(self) -> bool:
        return self.owner.stopped

    # --- reporting -------------------------------------------------------------------------------
    def summary(self) -> dict:
        """As :meth:`StackHost.summary <hetnic.host.stack_host.StackHost.summary>`, each
        instance with its ``pid``, ``mode`` (``"process"``) and ``exit`` (None while it
        runs, else its exit status; its counters are then the last ones gathered), plus
        ``"dispatcher"`` (its dump), ``"shared_drops"`` and ``"shared_duplicates"``."""
        out = {}
        for cfg in self.instances + list(self.extra.values()):
            child = self.children.get(cfg.name)
            info = None
            if child is not None and child.conn is not None and cfg.name not in self.exits:
                try:
                    info = child.call("summary", timeout=CALL_TIMEOUT)
                except HetnicError:
                    info = None
            if info is None:
                info = dict(self._last.get(cfg.name) or _empty(cfg))
            self._last[cfg.name] = info
            info = dict(info, pid=self.pids.get(cfg.name), exit=self.exits.get(cfg.name))
            out[cfg.name] = info
        return {"instances": out, "bridge": self.bridge.counters(),
                "dispatcher": self.dispatcher.dump(), "shared_drops": self.shared_drops,
                "shared_duplicates": self.shared_duplicates}

    def connections(self, name: str) -> list[dict]:
        """Instance ``name``'s per-connection dump (asked of its process)."""
        return self.children[name].call("connections", timeout=CALL_TIMEOUT)

    def port_map(self) -> list[dict]:
        """As :meth:`StackHost.port_map <hetnic.host.stack_host.StackHost.port_map>`: the
        rules installed now (the dispatcher's, then the base plan's) and the default."""
        running = {(a.port, a.proto): "udp-echo" if a.proto == "udp" else a.app
                   for name, specs in self.apps.items() if name not in self.exits
                   for a in specs}
        return self.dispatcher.port_map(running)

    def close(self) -> None:
        """Ask every instance to close its applications (FINs), run the loop until each
        says its closing exchanges are done (every connection on the applications' ports
        gone or in TIME-WAIT: the peer's FIN and ACKs reached it through the port's rule)
        and the NIC is idle, at most a second; then give back the ports still held, stop
        the processes, free the rings. The NIC and the TAP stay open."""
        if self._closed:
            return
        self._closed = True
        closing = []
        for name, child in self.children.items():
            if child.conn is not None and name not in self.exits:
                try:
                    child.call("close", timeout=CALL_TIMEOUT)
                    closing.append(child)
                except HetnicError:
                    pass
        end = time.monotonic() + 1.0
        while time.monotonic() < end:       # the FIN exchanges (also after stop())
            if self.owner.step() or self.owner.busy:
                continue
            left = []
            for child in closing:
                try:
                    if not child.call("settled", timeout=max(0.05, end - time.monotonic())):
                        left.append(child)
                except HetnicError:
                    pass                    # exited or busy: its ports are released below
            closing = left
            if not closing:
                break
            time.sleep(0.005)
        while time.monotonic() < end:       # the last ACKs, rung before "settled" answered
            if not self.owner.step() and not self.owner.busy:
                break
        for name, held in self._grants.items():
            while held:
                try:
                    self.dispatcher.release(held.pop())
                except DispatchError:
                    pass                    # released meanwhile
        self.owner.close()
        rings, self._rings = getattr(self, "_rings", []), []
        for ring in rings:
            ring.release()
        words, self._sleeping = getattr(self, "_sleeping", []), []
        for word in words:
            word.release()
        self._segment.close()


class FrontDispatcher(Dispatcher):
    """A :class:`~hetnic.host.dispatcher.Dispatcher` whose rule table starts with
    :attr:`front`: rules a restart puts before every application's (its redirects, see
    :mod:`~hetnic.host.daemon_restart`). Empty but during a restart; set it and call
    :meth:`program_rules` (one commit). The front's slots count against the table's size
    when an application's listen asks for a rule."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.front: list = []

    def _stage(self, table: list) -> None:
        super()._stage(list(self.front) + table)

    def _reserved(self) -> int:
        return len(self.front)

    def program_rules(self) -> int:
        """Stage the rule table (:attr:`front`, the dispatcher's rules, the base plan's)
        and commit once, leaving the RETA and the default action as they are (a restart's
        commits: quicker than :meth:`program`, which writes the whole RETA again)."""
        self._stage(self._table + self.base_plan.rules)
        return self._commit()

    def rules(self) -> list:
        return list(self.front) + super().rules()

    @property
    def used(self) -> int:
        return len(self.front) + len(super().rules())

    def port_map(self, running):
        front, self.front = self.front, []
        try:
            rows = super().port_map(running)
        finally:
            self.front = front
        for row in rows:
            if row["rule"] is not None:
                row["rule"] += len(front)
        return [{"rule": slot, "match": rule.name, "proto": rule.ip_proto or "any",
                 "ports": rule.dst_port, "instance": rule.name.rpartition("-> ")[2],
                 "rx_queues": None, "reta": (rule.action.reta_offset, rule.action.reta_size),
                 "app": ""} for slot, rule in enumerate(front)] + rows


def wake_once(word: SharedWord, conn) -> bool | None:
    """Wake a sleeping child once: if its ``sleeping`` ``word`` is set, clear it atomically
    and send ``("wake",)`` on ``conn`` (its pipe) without blocking.

    The caller fences after publishing the frames and before calling. Only the call that
    clears the word sends, so a child gets one wake-up per sleep however many turns see it
    set, and a child that stopped reading cannot fill its pipe and block the NIC process.

    Returns
    -------
    bool or None
        True when a wake-up was sent, None when the word was not set (nothing to do), False
        when the pipe had no room or is closed (the child sleeps out its timeout: at most
        50 ms, see :mod:`~hetnic.host.instance_process`).
    """
    if not word.value or word.exchange(0) == 0:
        return None
    try:
        if not select.select([], [conn], [], 0)[1]:
            return False
        conn.send(("wake",))
    except (OSError, ValueError):
        return False                        # it exited: the loop reaps it
    return True


def _empty(cfg: InstanceConfig) -> dict:
    return {"pid": None, "mode": "process", "rx_queues": list(cfg.rx_queues),
            "tx_queue": cfg.tx_queue, "counters": None, "states": {}, "apps": []}
