"""The kernel's side of the tunnels, in a network namespace: VXLAN devices (RFC 7348) and a
VXLAN-GPE device with lightweight-tunnel routes, the peers of the tunnel adapter in the
tests and ``hetnic bench tunnel``.

>>> add_kernel_tunnels(ns, [KernelTunnel("vx10", "vxlan", 10, "198.18.0.1", "198.18.0.2",
...                                      "198.19.1")])

A VXLAN device gets ``BASE.1/24`` and sends to the remote (IPv4 or IPv6 outer, with the
kernel's UDP checksum defaults: none over IPv4, one over IPv6). The VXLAN-GPE device is
``external`` (any VNI): it gets ``BASE.1/32`` and a route ``BASE.0/24 encap ip id VNI dst
REMOTE``, so its packets carry VNI and next protocol IPv4 to the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .netns import ns_run

__all__ = ["KernelTunnel", "add_kernel_tunnels"]


@dataclass(frozen=True)
class KernelTunnel:
    """One kernel tunnel device: its name, kind (``vxlan`` / ``vxlan-gpe``), VNI, the
    kernel's outer address, the adapter's outer address and the inner /24 (``"198.19.1"``:
    the kernel is ``.1``, the adapter ``.2``)."""
    dev: str
    kind: str
    vni: int
    local: str
    remote: str
    base: str

    def spec(self):
        """The adapter's :class:`~hetnic.host.stack.tunnel.TunnelSpec` for this tunnel."""
        from .stack.tunnel import TunnelSpec
        return TunnelSpec(self.kind, self.vni, self.local, f"{self.base}.2/24")


def add_kernel_tunnels(ns: str, tunnels) -> None:
    """Create ``tunnels`` (:class:`KernelTunnel`) in namespace ``ns`` (the outer addresses
    must be there already)."""
    for t in tunnels:
        if t.kind == "vxlan":
            ns_run(ns, "ip", "link", "add", t.dev, "type", "vxlan", "id", str(t.vni), "local",
                   t.local, "remote", t.remote, "dstport", "4789")
            ns_run(ns, "ip", "addr", "add", f"{t.base}.1/24", "dev", t.dev)
            ns_run(ns, "ip", "link", "set", t.dev, "up")
        else:
            ns_run(ns, "ip", "link", "add", t.dev, "type", "vxlan", "gpe", "dstport", "4790",
                   "external")
            ns_run(ns, "ip", "addr", "add", f"{t.base}.1/32", "dev", t.dev)
            ns_run(ns, "ip", "link", "set", t.dev, "up")
            ns_run(ns, "ip", "route", "add", f"{t.base}.0/24", "encap", "ip", "id", str(t.vni),
                   "dst", t.remote, "dev", t.dev, "src", f"{t.base}.1")
