"""Network namespaces for the tests that have the Linux kernel as the peer: the namespaces of
:mod:`hetnic.host.netns` (with a TAP device in one, :func:`tap_in_netns`) and the skip rule.

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

import os

import pytest

from hetnic.host.netns import in_netns, netns, netns_unavailable, ns_run, tap_in_netns

__all__ = ["netns", "in_netns", "ns_run", "tap_in_netns", "require_netns"]


def require_netns() -> None:
    """Skip the calling test with the reason when namespaces cannot be used here; under
    ``HETNIC_REQUIRE_NETNS=1`` (CI) fail it instead, since there a skip would hide a gap."""
    reason = netns_unavailable()
    if reason is None:
        return
    if os.environ.get("HETNIC_REQUIRE_NETNS") == "1":
        pytest.fail(f"HETNIC_REQUIRE_NETNS=1 but the kernel-peer tests cannot run: {reason}")
    pytest.skip(reason)
