"""Addresses and ports at the stack's API boundary.

Inside the stack an address is raw ``bytes`` (4 for IPv4, 16 for IPv6) and a port an ``int``.
The API takes hosts as strings (``"198.18.0.2"``, ``"2001:db8::2"``), ``ipaddress`` objects or
raw bytes, converts them once here, and gives them back as strings. Bad input raises
:class:`~hetnic.host.stack.errors.BadArgument` in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

from .errors import BadArgument

__all__ = ["to_addr", "to_local", "to_port", "to_endpoint", "addr_text", "parse_mac", "V4_ANY", "Host"]

#: The IPv4 wildcard as a local address: every IPv4 address of the instance.
V4_ANY = bytes(4)

Host = str | IPv4Address | IPv6Address | bytes


def to_addr(host: Host, what: str = "host") -> bytes:
    """``host`` as 4 or 16 raw bytes; :class:`BadArgument` if it is no IP address."""
    if isinstance(host, (bytes, bytearray)) and len(host) in (4, 16):
        return bytes(host)
    if isinstance(host, (IPv4Address, IPv6Address)):
        return host.packed
    if isinstance(host, str):
        try:
            return ip_address(host.split("%", 1)[0]).packed
        except ValueError:
            pass
    raise BadArgument(f"{what} must be an IPv4 or IPv6 address, not {host!r}")


def to_local(host: Host | None, is_local: Callable[[bytes], bool], what: str) -> bytes | None:
    """A local address to bind: None, ``""`` and ``"::"`` mean every address (IPv4 and IPv6),
    ``"0.0.0.0"`` every IPv4 address (:data:`V4_ANY`); any other must be one of the
    instance's (``is_local(addr)``), else :class:`BadArgument` naming ``what``."""
    if host is None or host == "":
        return None
    addr = to_addr(host, "local address")
    if addr == bytes(16):
        return None
    if addr != V4_ANY and not is_local(addr):
        raise BadArgument(f"{what}: {addr_text(addr)} is not an address of this instance")
    return addr


def to_port(port: int, what: str = "port", zero: bool = True) -> int:
    """``port`` checked: an int in 0..65535 (1..65535 if not ``zero``)."""
    if isinstance(port, bool) or not isinstance(port, int) or not (0 if zero else 1) <= port <= 65535:
        lo = 0 if zero else 1
        raise BadArgument(f"{what} must be an integer in {lo}..65535, not {port!r}")
    return port


def to_endpoint(address, what: str = "address") -> tuple[Host, int]:
    """``address`` checked to be a ``(host, port)`` pair (a longer IPv6 tuple is cut)."""
    if not isinstance(address, tuple) or len(address) < 2:
        raise BadArgument(f"{what} must be a (host, port) tuple, not {address!r}")
    return address[0], address[1]


def addr_text(addr: bytes | None) -> str:
    """``addr`` as text (``"::"`` for None, the every-address wildcard)."""
    if addr is None:
        return "::"
    return str(ip_address(addr))


def parse_mac(mac: str | bytes) -> bytes:
    """A MAC address (``"02:00:00:00:00:01"`` or 6 bytes) as 6 bytes."""
    if isinstance(mac, (bytes, bytearray)) and len(mac) == 6:
        return bytes(mac)
    if isinstance(mac, str):
        parts = mac.replace("-", ":").split(":")
        if len(parts) == 6 and all(len(p) in (1, 2) for p in parts):
            try:
                return bytes(int(p, 16) for p in parts)
            except ValueError:
                pass
    raise BadArgument(f"mac must be 6 bytes or 'xx:xx:xx:xx:xx:xx', not {mac!r}")
