"""Network namespaces for the tests that have the Linux kernel as the peer: the namespaces of
:mod:`hetnic.host.netns`, a TAP device in one, and the skip rule.

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
import os
import subprocess
from typing import Iterator

import pytest

from hetnic.host.netns import in_netns, ip, netns, netns_unavailable, ns_run
from hetnic.host.tap import TapDevice

__all__ = ["netns", "in_netns", "ns_run", "tap_in_netns", "require_netns", "netns_available"]

#: The reason namespaces cannot be used here, or None (:func:`hetnic.host.netns.netns_unavailable`).
netns_available = netns_unavailable


def require_netns() -> None:
    """Skip the calling test with the reason when namespaces cannot be used here; under
    ``HETNIC_REQUIRE_NETNS=1`` (CI) fail it instead, since there a skip would hide a gap."""
    reason = netns_unavailable()
    if reason is None:
        return
    if os.environ.get("HETNIC_REQUIRE_NETNS") == "1":
        pytest.fail(f"HETNIC_REQUIRE_NETNS=1 but the kernel-peer tests cannot run: {reason}")
    pytest.skip(reason)


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
