# Ref: RFC 6056 (ephemeral port selection), RFC 6335 section 6 (the dynamic port range).
"""The local ports of one transport protocol of one instance.

A :class:`PortTable` holds bindings ``(local address, port) -> owner``. A local address is
raw bytes, ``None`` (every address, IPv4 and IPv6) or ``0.0.0.0`` (every IPv4 address); two
bindings of one port conflict when their addresses overlap. Ephemeral ports come from the
instance's range, starting at a seeded offset and moving on (RFC 6056's "simple port
randomization" without the per-call random step), never a port any binding holds.
"""

from __future__ import annotations

import random
from ipaddress import ip_address
from typing import Any

from .address import V4_ANY
from .errors import AddressInUse

__all__ = ["PortTable", "overlaps"]


def overlaps(a: bytes | None, b: bytes | None) -> bool:
    """True if local addresses ``a`` and ``b`` (None: any; 0.0.0.0: any IPv4) overlap."""
    if a is None or b is None or a == b:
        return True
    return (a == V4_ANY and len(b) == 4) or (b == V4_ANY and len(a) == 4)


class PortTable:
    """Bindings of one protocol's ports, and its ephemeral range.

    Parameters
    ----------
    protocol : str
        ``"TCP"`` or ``"UDP"`` (for messages).
    ephemeral : tuple[int, int]
        First and last ephemeral port (inclusive).
    instance : str
        The instance's name (for messages).
    seed : int
        Seeds where the ephemeral cursor starts.
    """

    def __init__(self, protocol: str, ephemeral: tuple[int, int], instance: str, seed: int = 0):
        self.protocol = protocol
        self.instance = instance
        lo, hi = ephemeral
        self._lo, self._count = lo, hi - lo + 1
        self._next = random.Random(f"hetnic.ports:{protocol}:{seed}").randrange(self._count)
        self._ports: dict[int, list[tuple[bytes | None, Any]]] = {}

    def bind(self, addr: bytes | None, port: int | None, owner: Any = None) -> int:
        """Bind ``port`` (None: a free ephemeral port) on ``addr`` for ``owner``; returns the
        port. :class:`AddressInUse` (one line) if an overlapping binding holds it or the
        ephemeral range is full."""
        if port is None:
            port = self._free_ephemeral()
        else:
            for other, _ in self._ports.get(port, ()):
                if overlaps(addr, other):
                    where = "*" if addr is None else str(ip_address(addr))
                    raise AddressInUse(f"{self.protocol} port {port} on {where} is in use")
        self._ports.setdefault(port, []).append((addr, owner))
        return port

    def unbind(self, addr: bytes | None, port: int, owner: Any = None) -> None:
        """Remove one binding of ``port`` on ``addr`` by ``owner`` (if there is one)."""
        found = self._ports.get(port)
        if not found:
            return
        for i, (a, o) in enumerate(found):
            if a == addr and o is owner:
                del found[i]
                break
        if not found:
            del self._ports[port]

    def find(self, dst: bytes, port: int) -> Any:
        """The owner bound to ``port`` on ``dst`` exactly, else on a wildcard that covers
        ``dst``; None if neither."""
        found = self._ports.get(port)
        if not found:
            return None
        wildcard = None
        for addr, owner in found:
            if addr == dst:
                return owner
            if addr is None or (addr == V4_ANY and len(dst) == 4):
                wildcard = owner
        return wildcard

    def _free_ephemeral(self) -> int:
        lo, count, ports = self._lo, self._count, self._ports
        for i in range(count):
            port = lo + (self._next + i) % count
            if port not in ports:
                self._next = (self._next + i + 1) % count
                return port
        raise AddressInUse(f"no free ephemeral {self.protocol} port in {lo}-{lo + count - 1} "
                           f"(instance {self.instance!r})")
