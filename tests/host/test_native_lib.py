"""The native helper: it builds into the cache once, counts its system calls, forwards IPv4
like the RFC says."""

import ctypes
import random

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from hetnic.host import native_lib, spsc
from hetnic.host.native_lib import NativeBuildError


@pytest.fixture(scope="module")
def lib():
    return native_lib.load().lib


def test_build_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("HETNIC_CACHE", str(tmp_path))
    first = native_lib.build()
    assert first.parent == tmp_path / "native" and first.exists()
    stamp = first.stat().st_mtime_ns
    assert native_lib.build() == first and first.stat().st_mtime_ns == stamp
    assert not list(first.parent.glob("*.tmp"))


def test_the_layout_reaches_the_compiler():
    flags = native_lib.defines()
    assert f"-DSPSC_OFF_SLEEPING={spsc.OFF_SLEEPING}" in flags
    assert any(f.startswith("-DRPS_DRV_STEERED=") for f in flags)


def test_a_missing_compiler_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NativeBuildError, match="install gcc"):
        native_lib.build()
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(NativeBuildError, match="CC=no-such-cc"):
        native_lib.build()


def test_a_compiler_that_hangs_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HETNIC_CACHE", str(tmp_path))
    real_run = native_lib.subprocess.run

    def run(cmd, *args, **kwargs):
        if "-o" in cmd:                     # the compile itself, not --version
            raise native_lib.subprocess.TimeoutExpired(cmd, kwargs.get("timeout", 0))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(native_lib.subprocess, "run", run)
    with pytest.raises(NativeBuildError, match="did not finish"):
        native_lib.build()
    assert not list((tmp_path / "native").glob("*"))


def test_the_fence_helpers_store_then_load(lib):
    words = (ctypes.c_uint32 * 2)(0, 7)
    base = ctypes.addressof(words)
    assert lib.hn_store_fence_load32(base, 1, base + 4) == 7 and words[0] == 1
    assert lib.hn_exchange32(base, 0) == 1 and words[0] == 0
    assert lib.hn_exchange32(base, 0) == 0
    lib.hn_fence()


def test_every_system_call_is_counted(lib):
    before = lib.hn_syscalls()
    fd = lib.hn_eventfd_new()
    assert fd >= 0
    assert lib.hn_eventfd_write(fd, 5) == 0
    assert lib.hn_eventfd_read(fd) == 5
    word = ctypes.c_uint32(1)
    assert lib.hn_futex_wait(ctypes.addressof(word), 0, 10_000_000) == 0   # value differs
    assert lib.hn_futex_wait(ctypes.addressof(word), 1, 1_000_000) == 1    # times out
    assert lib.hn_futex_wake(ctypes.addressof(word), 1) == 0               # nobody waits
    assert lib.hn_close(fd) == 0
    assert lib.hn_syscalls() - before == 7
    t0 = lib.hn_now_ns()
    assert lib.hn_now_ns() >= t0 and lib.hn_syscalls() - before == 7       # vDSO: no call


def test_wait_mode_follows_cpuid():
    nl = native_lib.load()
    assert nl.wait_mode == ("umwait" if nl.lib.hn_waitpkg() else "futex")


def _forward(lib, frame: bytes, verify: int = 1) -> tuple[int, bytes]:
    buf = ctypes.create_string_buffer(frame, len(frame))
    rc = lib.hn_forward_ipv4(ctypes.addressof(buf), len(frame), verify)
    return rc, buf.raw


def test_forwarding_decrements_ttl_with_an_incremental_checksum(lib):
    seed = random.randrange(1 << 32)
    print("seed", seed)
    rng = random.Random(seed)
    for _ in range(300):
        options = bytes(rng.randrange(256) for _ in range(4 * rng.randrange(0, 3)))
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src="198.18.0.1", dst="198.19.0.2", ttl=rng.randrange(2, 256),
                    tos=rng.randrange(256), id=rng.randrange(65536), options=options)
               / UDP(sport=1, dport=2) / bytes(rng.randrange(0, 40)))
        frame = bytes(pkt)
        rc, out = _forward(lib, frame)
        assert rc == 0
        got = Ether(out)[IP]
        want = Ether(frame)[IP]
        want.ttl -= 1
        del want.chksum
        assert got.ttl == want.ttl and got.chksum == IP(bytes(want)).chksum


def test_what_is_not_forwarded(lib):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    assert _forward(lib, bytes(eth / ARP()))[0] == 1
    assert _forward(lib, bytes(eth / IP(ttl=64))[:30])[0] == 1          # truncated
    assert _forward(lib, bytes(eth / IP(ttl=1) / UDP()))[0] == 2        # TTL expires
    bad = bytearray(bytes(eth / IP(ttl=9) / UDP()))
    bad[24] ^= 0xFF                                                    # checksum byte
    assert _forward(lib, bytes(bad))[0] == 3
    assert _forward(lib, bytes(bad), verify=0)[0] == 0
