"""Linux network namespaces: made, entered and left, for the kernel-peer tests and benchmarks.

>>> with netns("hetnic-bench") as ns:
...     with in_netns(ns):
...         s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # a socket inside ns
...     ns_run(ns, "nstat", "-az")
>>> with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", "2001:db8::1/64") as tap:
...     ...                                  # the kernel's side of a TAP the caller uses

Every namespace is new (``PREFIX-<pid>-<n>``), has its loopback up, and is deleted on the way
out together with the interfaces in it, also when the block fails. Nothing in the calling
process's own namespace is changed.

:func:`in_netns` switches the *calling thread* (``setns(2)``) and back: sockets and TAP
devices opened inside stay bound to the namespace after the switch back, so a caller opens
them inside and uses them outside.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import os
import shutil
import subprocess
from typing import Iterator

from ..errors import HetnicError
from .tap import TapDevice

__all__ = ["NetnsError", "netns_unavailable", "ip", "netns", "in_netns", "ns_run", "tap_in_netns"]

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = "/var/run/netns"
_counter = itertools.count()
_libc = None


class NetnsError(HetnicError, RuntimeError):
    """An ``ip`` command or a namespace switch failed; the message quotes the command."""


def netns_unavailable() -> str | None:
    """None when namespaces and TAP devices can be used here, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (no TUN/TAP in this kernel or container)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "needs /proc/thread-self/ns/net (setns)"
    return None


def ip(*args: str, timeout: float = 20.0) -> None:
    """Run ``ip ARGS``; a non-zero status raises :class:`NetnsError` with its stderr."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` exited {result.returncode}: "
                         f"{result.stderr.strip()}")


def ns_run(ns: str, *cmd: str, timeout: float = 30.0, check: bool = True,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside namespace ``ns`` (``ip netns exec``) and return its result (text
    stdout/stderr). With ``check``, a non-zero status raises :class:`NetnsError` with the
    command and its stderr."""
    argv = ["ip", "netns", "exec", ns, *cmd]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` exited {result.returncode}: "
                         f"{result.stderr.strip() or result.stdout.strip()}")
    return result


@contextlib.contextmanager
def netns(prefix: str = "hetnic") -> Iterator[str]:
    """A new network namespace with its loopback up; yields its name, deletes it after."""
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Switch this thread into namespace ``ns`` for the ``with`` block, then back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(os.path.join(_NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


@contextlib.contextmanager
def tap_in_netns(ns: str, ifname: str = "tap0", addr4: str | None = "198.18.0.1/24",
                 addr6: str | None = "2001:db8::1/64", *, mtu: int = 1500,
                 open_device: bool = True) -> Iterator[TapDevice | None]:
    """A persistent TAP ``ifname`` in ``ns`` with the kernel's addresses ``addr4``/``addr6``
    (either may be None), DAD off so the IPv6 address is usable at once, the link up; yields
    the :class:`TapDevice` opened from inside ``ns`` (or None when ``open_device`` is false,
    for a process that opens it itself). The device is closed and the TAP deleted after."""
    ip("-n", ns, "tuntap", "add", "dev", ifname, "mode", "tap")
    tap = None
    try:
        if addr6 is not None:
            ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_dad=0")
        ip("-n", ns, "link", "set", ifname, "mtu", str(mtu))
        if addr4 is not None:
            ip("-n", ns, "addr", "add", addr4, "dev", ifname)
        if addr6 is not None:
            ip("-n", ns, "addr", "add", addr6, "dev", ifname, "nodad")
        ip("-n", ns, "link", "set", ifname, "up")
        if open_device:
            with in_netns(ns):
                tap = TapDevice(ifname)
        yield tap
    finally:
        if tap is not None:
            tap.close()
        subprocess.run(["ip", "-n", ns, "link", "del", ifname], capture_output=True, timeout=10)
