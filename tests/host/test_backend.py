"""The backends declare the protocol the driver relies on, and the protocol is enforced."""

import pytest

from hetnic.host.backend import Backend, RegisterBackend
from hetnic.host.board import SerialBackend
from hetnic.sim.backend import SimBackend
from hetnic.sim.cocotb_backend import CocotbBackend


@pytest.mark.parametrize("backend, protocol", [
    (SimBackend, Backend), (CocotbBackend, Backend), (SerialBackend, RegisterBackend)])
def test_each_backend_declares_its_protocol(backend, protocol):
    assert protocol in backend.__mro__       # issubclass() refuses protocols with data members
    assert not backend.__abstractmethods__   # and it implements every method


def test_a_backend_must_implement_every_method():
    class Partial(RegisterBackend):
        name = "partial"

        def reg_read(self, addr: int) -> int:
            return 0

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_a_duck_typed_backend_is_recognised():
    """A test's fake backend need not declare the protocol; isinstance checks the members."""
    class Registers:
        name = "fake"

        def __init__(self):
            self.regs = {}

        def reg_read(self, addr):
            return self.regs.get(addr, 0)

        def reg_write(self, addr, value):
            self.regs[addr] = value

        def reg_read_many(self, addrs):
            return [self.reg_read(a) for a in addrs]

        def reg_write_many(self, writes):
            for a, v in writes:
                self.reg_write(a, v)

        def close(self):
            pass

    fake = Registers()
    assert isinstance(fake, RegisterBackend) and not isinstance(fake, Backend)


def test_the_driver_uses_only_the_protocol():
    """Every ``backend.<member>`` the NIC driver calls is a member of :class:`Backend`."""
    import re
    from pathlib import Path

    import hetnic.host.control
    import hetnic.host.nic
    members = {name for cls in (Backend, RegisterBackend) for name in vars(cls)
               if not name.startswith("_")} | set(Backend.__annotations__) \
        | set(RegisterBackend.__annotations__)
    used = set()
    for module in (hetnic.host.nic, hetnic.host.control):
        used |= set(re.findall(r"\b(?:self|_nic)\.backend\.(\w+)",
                               Path(module.__file__).read_text()))
    assert {"reg_read", "reg_write", "run", "wire_pending"} <= used   # the scan finds them
    assert used <= members, f"the driver uses backend members outside the protocol: " \
        f"{sorted(used - members)}"
