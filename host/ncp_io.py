"""NCP's I/O: the runner that moves an :class:`~hetnic.host.ncp.NcpEndpoint`'s frames over a
:class:`~hetnic.host.links.Link`, and the blocking channel API.

>>> ch = ncp_io.open(link, peer_mac, channel=7, mac=my_mac, pumps=[bridge.pump])
>>> ch.send(b"hello")                  # queues (blocks only while the send buffer is full)
>>> ch.recv(timeout=1.0)               # blocks until bytes arrive; b"" once the peer closed
>>> ch.close()

:func:`open` starts one :class:`NcpStation` per link (a background thread that runs the
endpoint, the link and any ``pumps`` — e.g. the :class:`~hetnic.host.tap_bridge.TapBridge`
that runs a simulated NIC's clock, which must stay on one thread — and sleeps on the link's
descriptor or the next deadline). A caller that wants no thread makes the station with
``thread=False`` and calls :meth:`NcpStation.step` itself; the blocking calls then step it.

Also here: :func:`steer_direct` (a classifier rule that puts the direct-channel EtherType on
one RX queue) and :class:`NicPairWire` (two simulated NICs wired back to back).
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
from typing import Callable, Sequence

from ..errors import HetnicError
from ..rules import Action, FlowRule
from .faults import FaultInjector
from .links import Link
from .ncp import NcpConfig, NcpEndpoint, NcpError, NcpSession, State

__all__ = ["open", "NcpStation", "NcpChannel", "NcpTimeout", "NcpReset", "steer_direct", "NicPairWire"]


class NcpTimeout(HetnicError, TimeoutError):
    """A blocking NCP call ran out of time (one line: what it waited for)."""


class NcpReset(NcpError):
    """The session ended under a blocking call (the peer restarted or went silent); the
    channel sets itself up again, the call's data is partly lost."""


def _ends(session: NcpSession) -> int:
    """How many incarnations of ``session`` have ended so far."""
    c = session.counters
    return c["peer_restarts"] + c["peer_timeouts"]


class NcpStation:
    """:class:`~hetnic.host.ncp.NcpEndpoint` s on their links, run by :meth:`step`: one
    endpoint on ``link`` from the start, more by :meth:`add` (e.g. both ends of two
    simulated NICs wired back to back, whose clocks must run on one thread).

    Parameters
    ----------
    link : Link
        The L2 medium (NicQueueLink, PacketLink, PairLink, ...).
    mac : bytes
        This station's MAC (default: ``link.mac`` when the link has one).
    config : NcpConfig, optional
    pumps : sequence of callables
        Called at every step before the link is read (e.g. ``bridge.pump``); each returns
        how much it moved (a true value keeps the loop from sleeping).
    thread : bool
        Start a background thread that steps the station (default true).
    clock : Callable[[], float]
    """

    #: Longest sleep of a step when there are pumps (their media have no descriptor).
    PUMP_INTERVAL = 0.0005

    def __init__(self, link: Link, mac: bytes | None = None, config: NcpConfig | None = None,
                 *, pumps: Sequence[Callable[[], object]] = (), thread: bool = True,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        mac = mac if mac is not None else getattr(link, "mac", None)
        if mac is None:
            raise NcpError("this link has no MAC address of its own; give mac=")
        self.link = link
        self.endpoint = NcpEndpoint(mac, config, rng)
        self.ports: list[tuple[Link, NcpEndpoint]] = [(link, self.endpoint)]
        self.pumps = list(pumps)
        self.clock = clock
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        # The application's calls wake a sleeping step through this pipe (new data to send,
        # room freed in the receive window, a close).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="ncp-station", daemon=True)
            self._thread.start()

    @property
    def mac(self) -> bytes:
        return self.endpoint.mac

    def add(self, link: Link, mac: bytes | None = None, config: NcpConfig | None = None,
            rng: random.Random | None = None) -> NcpEndpoint:
        """Run one more endpoint, on ``link`` with ``mac``, in this station."""
        mac = mac if mac is not None else getattr(link, "mac", None)
        if mac is None:
            raise NcpError("this link has no MAC address of its own; give mac=")
        ep = NcpEndpoint(mac, config, rng)
        with self.lock:
            self.ports.append((link, ep))
        return ep

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step(0.05)
        except BaseException as e:          # surfaced to the API's callers, not lost
            self.error = e
            with self.changed:
                self.changed.notify_all()

    def wake(self) -> None:
        """Cut the station's current sleep short (the application has work for it)."""
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass                            # already awake (full pipe) or closed

    def step(self, wait: float = 0.0) -> bool:
        """One turn: pumps, link housekeeping, frames in, frames out; then sleep until a
        frame may be readable or the next deadline, at most ``wait`` seconds. Returns
        whether anything moved."""
        with self.lock:
            moved = False
            for pump in self.pumps:
                moved = bool(pump()) or moved
            times = []
            for link, ep in self.ports:
                link.service()
                now = self.clock()
                frames = link.receive(256)
                for f in frames:
                    ep.receive(f, now)
                out = ep.poll(now)
                if out:
                    link.send(out)
                if frames or out:
                    moved = True
                times += [ep.next_deadline(), link.next_deadline()]
            if moved:
                for pump in self.pumps:         # what was just posted leaves now
                    pump()
                self.changed.notify_all()
        if moved or wait <= 0:
            return moved
        now = self.clock()
        until = min([t for t in times if t is not None], default=now + wait)
        sleep = min(max(0.0, until - now), wait)
        if self.pumps:
            sleep = min(sleep, self.PUMP_INTERVAL)
        fds = [fd for fd in (link.fileno() for link, _ in self.ports) if fd is not None]
        if len(fds) < len(self.ports):          # a link without a descriptor: poll it
            sleep = min(sleep, self.PUMP_INTERVAL)
        if sleep > 0:
            ready, _, _ = select.select([self._wake_r, *fds], [], [], sleep)
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
        return False

    def open(self, peer_mac: bytes, channel: int, *, mac: bytes | None = None
             ) -> "NcpChannel":
        """A channel to ``peer_mac`` on ``channel`` from the endpoint with ``mac`` (default
        the first); its handshake starts at once."""
        eps = [ep for _, ep in self.ports if mac is None or ep.mac == mac]
        if not eps:
            raise NcpError(f"this station has no endpoint with MAC {mac.hex(':')}")
        with self.lock:
            session = eps[0].open(peer_mac, channel, self.clock())
        return NcpChannel(self, session)

    def check(self) -> None:
        """:class:`NcpError` (one line) if the station's thread stopped on an error (e.g. a
        :class:`~hetnic.host.links.LinkError` from its link)."""
        if self.error is not None:
            raise NcpError(f"the NCP station stopped: {self.error}") from self.error

    def wait(self, predicate: Callable[[], bool], timeout: float | None, what: str) -> None:
        """Wait (stepping the station when it has no thread) until ``predicate()`` holds,
        checked under the station's lock; :class:`NcpTimeout` after ``timeout`` seconds."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.check()
            with self.lock:
                if predicate():
                    return
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise NcpTimeout(f"timed out after {timeout} s waiting for {what}")
                if self._thread is not None:
                    self.changed.wait(0.05 if left is None else min(left, 0.05))
                    continue
            self.step(0.001 if left is None else min(left, 0.001))

    def close(self) -> None:
        """Stop the thread (channels are not closed; close them first). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self.wake()
            self._thread.join(5)
            self._thread = None
        if self._wake_r >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def __enter__(self) -> "NcpStation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NcpChannel:
    """The application's end of one NCP session (made by :func:`open` or
    :meth:`NcpStation.open`). Thread-safe against the station's thread.

    ``send`` queues and returns (blocking only while the send buffer is full; if the
    session ends meanwhile, :class:`NcpReset` says how much was not queued); ``recv``
    blocks until bytes arrive (``timeout`` seconds at most, then :class:`NcpTimeout`) and
    returns b"" once the peer closed; ``recv_nowait`` never blocks (b"" when nothing came).
    """

    def __init__(self, station: NcpStation, session: NcpSession):
        self.station = station
        self.session = session
        #: (incarnations ended, bytes discarded) when data was queued since the last
        #: flush / close; None when nothing was.
        self._mark: tuple[int, int] | None = None

    def _check(self, what: str) -> None:
        """:class:`NcpReset` if the session ended or discarded data since data was queued
        (under the station's lock); forgets the mark either way."""
        mark, self._mark = self._mark, None
        s = self.session
        if mark is not None and (_ends(s) != mark[0] or s.counters["bytes_discarded"] != mark[1]):
            raise NcpReset(f"{what} on channel {s.channel}: the session ended after data was "
                           f"queued (the peer restarted, went silent or closed); "
                           f"{s.counters['bytes_discarded'] - mark[1]} bytes were discarded")

    @property
    def state(self) -> str:
        return self.session.state

    @property
    def generation(self) -> int:
        return self.session.generation

    def counters(self) -> dict:
        with self.station.lock:
            return dict(self.session.counters, state=self.session.state,
                        generation=self.session.generation)

    def wait_established(self, timeout: float | None = 5.0) -> None:
        """Wait until the handshake completed."""
        s = self.session
        self.station.wait(lambda: s.state == State.ESTABLISHED, timeout,
                          f"channel {s.channel} to be established")

    def send(self, data: bytes, timeout: float | None = 30.0) -> None:
        """Queue ``data``, in pieces as the send buffer frees."""
        mv = memoryview(bytes(data))
        s, session = self.station, self.session
        ends = _ends(session)
        while mv:
            s.wait(lambda: session.send_space > 0 or session.state == State.CLOSED
                   or _ends(session) != ends, timeout, "room in the send buffer")
            with s.lock:
                if session.state == State.CLOSED:
                    raise NcpError(f"send on channel {session.channel}: the channel "
                                   f"is closed")
                if _ends(session) != ends:
                    raise NcpReset(f"send on channel {session.channel}: the peer restarted "
                                   f"or went silent; {len(mv)} bytes were not queued")
                n = min(len(mv), self.session.send_space)
                if self._mark is None:
                    self._mark = (ends, session.counters["bytes_discarded"])
                self.session.send(mv[:n])
            s.wake()
            mv = mv[n:]

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until everything sent was acknowledged; :class:`NcpReset` when the session
        ended (peer restart or silence) or discarded data (the peer closed first) since
        data was queued: then it may not all have arrived."""
        s, mark = self.session, self._mark
        self.station.wait(lambda: s.idle and s.state == State.ESTABLISHED
                          or s.state == State.CLOSED
                          or (mark is not None and _ends(s) != mark[0]), timeout,
                          "the peer's acknowledgements")
        with self.station.lock:
            self._check("flush")

    def recv_nowait(self, max_bytes: int | None = None) -> bytes:
        self.station.check()
        with self.station.lock:
            data = self.session.read(max_bytes)
        self.station.wake()                     # the receive window may have opened
        return data

    def recv(self, max_bytes: int | None = None, timeout: float | None = 5.0) -> bytes:
        """Bytes received in order (at least one), or b"" once the peer has closed."""
        s = self.session
        self.station.wait(lambda: s.readable > 0 or s.eof or s.state == State.CLOSED,
                          timeout, f"data on channel {s.channel}")
        return self.recv_nowait(max_bytes)

    def close(self, timeout: float | None = 5.0) -> None:
        """Send what is queued, then FIN, and wait for the peer's FIN_ACK (or RST);
        :class:`NcpReset` as for :meth:`flush` when queued data was lost meanwhile."""
        s, st = self.session, self.station
        with st.lock:
            s.close(st.clock())
        st.wake()
        st.wait(lambda: s.state == State.CLOSED, timeout, f"channel {s.channel} to close")
        with st.lock:
            self._check("close")


def open(link: Link, peer_mac: bytes, channel: int, *, mac: bytes | None = None,
         config: NcpConfig | None = None, pumps: Sequence[Callable[[], object]] = (),
         station: NcpStation | None = None) -> NcpChannel:
    """``ncp.open(link, peer_mac, channel)``: a channel on ``link`` (a new background
    :class:`NcpStation` unless ``station`` is given; close the channel, then
    ``channel.station.close()``)."""
    if station is None:
        station = NcpStation(link, mac, config, pumps=pumps)
    return station.open(peer_mac, channel)


def steer_direct(nic, rx_queue: int) -> int:
    """Steer the direct-channel EtherType (frames with ``flags.direct``: the
    ``DIRECT_ETHERTYPE`` register's value, 0x88B5 by default) to ``rx_queue`` with one
    classifier rule over a one-entry RETA slice: the first RETA entry that names the queue.
    The RETA is never changed (an entry taken from RSS would send part of other traffic to
    the NCP queue): :class:`NcpError` when no entry names ``rx_queue`` (stage a table that
    does, or steer to a queue the steering plan gives an entry). Commits; returns the rule's
    slot (for ``nic.rules.remove``)."""
    table = list(nic.rss.table)
    if rx_queue not in table:
        raise NcpError(f"no RETA entry names RX queue {rx_queue} (the table names "
                       f"{sorted(set(table))}); the NCP rule needs one, and taking an entry "
                       f"from RSS would steal other traffic")
    entry = table.index(rx_queue)
    slot = nic.rules.add(FlowRule(flags={"direct": True}, name="ncp",
                                  action=Action(reta_offset=entry, reta_size=1)))
    nic.commit()
    return slot


class NicPairWire:
    """Two simulated NICs wired back to back: what leaves one's ``tx_mac`` enters the
    other's ``rx_mac`` (through a :class:`~hetnic.host.faults.FaultInjector` per direction
    if given). :meth:`pump` moves the frames and runs both clocks while either is busy."""

    def __init__(self, a, b, *, faults_ab: FaultInjector | None = None,
                 faults_ba: FaultInjector | None = None, max_cycles: int = 20_000,
                 clock: Callable[[], float] = time.monotonic):
        self.a, self.b = a, b
        self.faults_ab, self.faults_ba = faults_ab, faults_ba
        self.max_cycles = max_cycles
        self._clock = clock
        self.frames_ab = self.frames_ba = 0

    def pump(self) -> int:
        now = self._clock()
        moved = 0
        for src, dst, faults, name in ((self.a, self.b, self.faults_ab, "frames_ab"),
                                       (self.b, self.a, self.faults_ba, "frames_ba")):
            frames = src.wire.received()
            if faults is not None:
                frames = faults.process(frames, now)
            if frames:
                dst.wire.send(frames)
                setattr(self, name, getattr(self, name) + len(frames))
                moved += len(frames)
        for nic in (self.a, self.b):
            if (moved or nic.wire.pending()
                    or any(q.ring.outstanding for q in nic.tx_queues)):
                nic.run_until_idle(max_cycles=self.max_cycles, quiet=64)
        return moved
