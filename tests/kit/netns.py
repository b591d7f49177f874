"""Network namespaces for the tests that have the Linux kernel as the peer.

>>> require_netns()                           # skip (or fail under HETNIC_REQUIRE_NETNS=1)
>>> with netns() as ns, tap_in_netns(ns, "tap0", "198.18.0.1/24", "2001:db8::1/64") as tap:
...     with in_netns(ns):
...         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a socket inside ns
...     ns_run(ns, "nstat", "-az")

Every namespace is new (``hetnic-<pid>-<n>``) and deleted on the way out, also when the test
fails, together with the interfaces in it. Addresses come from 198.18.0.0/15 and
2001:db8::/32 only, and nothing in the root namespace is touched.

:func:`in_netns` switches the *calling thread* (``setns(2)``) and back: sockets and TAP
devices opened inside stay bound to the namespace after the switch back, so a test opens
them inside and uses them outside. Threads the test starts inside keep the namespace they
were started in only if they switch themselves.
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

import pytest

from hetnic.host.tap import TapDevice

__all__ = ["netns", "in_netns", "ns_run", "tap_in_netns", "require_netns", "netns_available"]

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = "/var/run/netns"
_counter = itertools.count()
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_available() -> str | None:
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


def require_netns() -> None:
    """Skip the calling test with the reason when :func:`netns_available` says no; under
    ``HETNIC_REQUIRE_NETNS=1`` (CI) fail it instead, since there a skip would hide a gap."""
    reason = netns_available()
    if reason is None:
        return
    if os.environ.get("HETNIC_REQUIRE_NETNS") == "1":
        pytest.fail(f"HETNIC_REQUIRE_NETNS=1 but the kernel-peer tests cannot run: {reason}")
    pytest.skip(reason)


def ns_run(ns: str, *cmd: str, timeout: float = 30.0, check: bool = True,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside namespace ``ns`` (``ip netns exec``) and return its result (text
    stdout/stderr). With ``check``, a non-zero status fails with the command and its stderr."""
    argv = ["ip", "netns", "exec", ns, *cmd]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {result.returncode}: "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def _ip(*args: str, timeout: float = 10.0) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` exited {result.returncode}: "
                           f"{result.stderr.strip()}")


@contextlib.contextmanager
def netns(prefix: str = "hetnic") -> Iterator[str]:
    """A new network namespace with its loopback up; yields its name, deletes it after."""
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


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
    _ip("-n", ns, "tuntap", "add", "dev", ifname, "mode", "tap")
    tap = None
    try:
        if addr6 is not None:
            ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_dad=0")
        _ip("-n", ns, "link", "set", ifname, "mtu", str(mtu))
        if addr4 is not None:
            _ip("-n", ns, "addr", "add", addr4, "dev", ifname)
        if addr6 is not None:
            _ip("-n", ns, "addr", "add", addr6, "dev", ifname, "nodad")
        _ip("-n", ns, "link", "set", ifname, "up")
        if open_device:
            with in_netns(ns):
                tap = TapDevice(ifname)
        yield tap
    finally:
        if tap is not None:
            tap.close()
        subprocess.run(["ip", "-n", ns, "link", "del", ifname], capture_output=True, timeout=10)
