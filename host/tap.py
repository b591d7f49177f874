"""A Linux TAP device: Ethernet frames to and from the kernel through ``/dev/net/tun``.

>>> with TapDevice("tap0") as tap:          # made beforehand with `ip tuntap add mode tap`
...     tap.write(frame)
...     frames = tap.read_frames(64)

The device is opened with ``IFF_TAP | IFF_NO_PI``: every read returns one whole Ethernet II
frame (no FCS, no packet-information prefix) and every write sends one. The file descriptor
is non-blocking, so :meth:`TapDevice.read_frames` returns at once with what is queued, and
:meth:`TapDevice.fileno` goes into ``select``/``add_reader`` for readiness.

A TAP is looked up in the network namespace of the *calling thread* when the device is opened
(the kernel binds ``/dev/net/tun`` to the opener's namespace), so open it from inside the
namespace that holds the interface (``ip netns exec NS ...``, or a thread switched there).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from ..errors import HetnicError
from ..protocol import ETH_MIN_FRAME

__all__ = ["TapDevice", "TapError"]

_TUN_PATH = "/dev/net/tun"
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFNAMSIZ = 16
#: Largest frame read in one go: a 64 KiB buffer holds any frame a TAP can carry.
_READ_SIZE = 65536


class TapError(HetnicError, OSError):
    """A TAP device could not be opened, read or written (one line: what and what to do)."""


class TapDevice:
    """One open TAP interface.

    Parameters
    ----------
    name : str
        The interface name (at most 15 characters).
    create : bool
        If false (the default) the interface must already exist in the calling thread's
        network namespace (made with ``ip tuntap add dev NAME mode tap``); if true a
        non-persistent TAP is created when it is missing, and disappears on :meth:`close`.

    Raises
    ------
    TapError
        ``/dev/net/tun`` is missing, the caller lacks ``CAP_NET_ADMIN``, the interface does
        not exist in this namespace, or it is a TUN (not TAP) device.

    Members
    -------
    name : str
        The interface name.
    frames_in, frames_out, bytes_in, bytes_out : int
        Frames and bytes read from and written to the device.
    """

    def __init__(self, name: str, *, create: bool = False):
        if not isinstance(name, str) or not 0 < len(name.encode()) < _IFNAMSIZ:
            raise TapError(f"TAP name must be 1 to {_IFNAMSIZ - 1} bytes, not {name!r}")
        self.name = name
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self._fd = -1
        if not create:
            try:
                socket.if_nametoindex(name)
            except OSError:
                raise TapError(f"no interface {name!r} in this network namespace; create it "
                               f"with `ip tuntap add dev {name} mode tap` (in the namespace "
                               f"you run in)") from None
        try:
            fd = os.open(_TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TapError(f"{_TUN_PATH} is missing: this kernel or container has no TUN/TAP "
                           f"support (load the tun module or pass the device in)") from None
        except PermissionError:
            raise TapError(f"cannot open {_TUN_PATH}: permission denied (run as root or "
                           f"with CAP_NET_ADMIN)") from None
        try:
            ifr = struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI)
            fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except OSError as e:
            os.close(fd)
            if e.errno == errno.EPERM:
                raise TapError(f"cannot attach to TAP {name!r}: operation not permitted "
                               f"(run as root or with CAP_NET_ADMIN, or make the TAP with "
                               f"`user` set to you)") from None
            if e.errno == errno.EINVAL:
                raise TapError(f"{name!r} is not a TAP device (a TUN, or not made by "
                               f"`ip tuntap add mode tap`)") from None
            if e.errno == errno.EBUSY:
                raise TapError(f"TAP {name!r} is already attached to another process") from None
            raise TapError(f"cannot attach to TAP {name!r}: {e.strerror}") from None
        self._fd = fd

    # --- I/O ---------------------------------------------------------------------------------
    def fileno(self) -> int:
        """The non-blocking file descriptor (readable when a frame is waiting)."""
        self._check_open()
        return self._fd

    def read_frames(self, max_frames: int = 64) -> list[bytes]:
        """Up to ``max_frames`` frames the kernel sent out of the interface, oldest first;
        an empty list when none is waiting (never blocks)."""
        self._check_open()
        fd = self._fd
        frames: list[bytes] = []
        read = os.read
        while len(frames) < max_frames:
            try:
                frame = read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EBADFD:      # the interface went away under us
                    raise TapError(f"TAP {self.name!r} is gone (deleted or its namespace "
                                   f"removed)") from None
                raise TapError(f"reading TAP {self.name!r}: {e.strerror}") from None
            if frame:
                frames.append(frame)
                self.bytes_in += len(frame)
        self.frames_in += len(frames)
        return frames

    def write(self, frame: bytes) -> None:
        """Hand one Ethernet II frame (no FCS) to the kernel as if it arrived on the wire.

        Raises
        ------
        TapError
            The frame is shorter than an Ethernet header, or the kernel refused it (for
            example the interface is down).
        """
        self._check_open()
        if len(frame) < ETH_MIN_FRAME:
            raise TapError(f"a frame has at least {ETH_MIN_FRAME} bytes (an Ethernet header), "
                           f"not {len(frame)}")
        try:
            os.write(self._fd, frame)
        except OSError as e:
            if e.errno == errno.EIO:
                raise TapError(f"TAP {self.name!r} refused a frame: the interface is down "
                               f"(`ip link set {self.name} up`)") from None
            raise TapError(f"writing TAP {self.name!r}: {e.strerror}") from None
        self.frames_out += 1
        self.bytes_out += len(frame)

    def write_frames(self, frames: list[bytes]) -> int:
        """:meth:`write` each of ``frames``; returns how many were written."""
        for frame in frames:
            self.write(frame)
        return len(frames)

    # --- life --------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Detach from the interface (a persistent TAP stays, with no carrier)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check_open(self) -> None:
        if self._fd < 0:
            raise TapError(f"TAP {self.name!r} is closed")

    def __enter__(self) -> "TapDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"TapDevice({self.name!r}{', closed' if self.closed else ''})"
