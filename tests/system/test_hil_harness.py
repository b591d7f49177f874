"""The hardware-in-the-loop harness (:mod:`hetnic.sim.hil`): its build cache, host memory,
register bus, clock, DMA error handling and waveform option.

Two tests build the harness once more (a damaged cache entry is rebuilt; the tracing build):
they are in the slow tier (``make test-slow``), a minute of compilation each on a fresh
cache. The others load the cached default build.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from hetnic.host.nic import Nic
from hetnic.params import HIL_NIC_CORE
from hetnic.regs import ID_MAGIC, QUEUE_CTRL_ENABLE, QUEUE_STATUS_DMA
from hetnic.sim.hil import (COUNTER_NAMES, Harness, HarnessError, build_harness,
                            last_build_was_cached)
from hetnic.sim.toolchain import ToolError
from hetnic.sim.traffic import tcp4_min_frames, traffic_mix

MEM = 1 << 20


@pytest.fixture(scope="module")
def default_entry() -> Path:
    """The cache folder of the default build (built first if it is not cached)."""
    return build_harness(HIL_NIC_CORE).parent


@pytest.fixture
def harness():
    h = Harness(HIL_NIC_CORE, mem_size=MEM)
    yield h
    h.close()


def copy_cache(default_entry: Path, cache: Path, monkeypatch) -> Path:
    """A new ``$HETNIC_CACHE`` holding the default build's library and stamp (nothing else
    of the entry is needed to load it) and the generated Verilog; returns the entry."""
    real = default_entry.parent.parent
    entry = cache / "hil" / default_entry.name
    entry.mkdir(parents=True)
    for name in ("libhil.so", "sha256"):
        shutil.copy2(default_entry / name, entry / name)
    shutil.copytree(real / "verilog", cache / "verilog")
    monkeypatch.setenv("HETNIC_CACHE", str(cache))
    return entry


# --- the build cache -------------------------------------------------------------------------

def test_second_open_uses_the_cache(default_entry):
    with Nic.open("sim") as nic:
        first = nic.backend.harness.lib_path
    assert last_build_was_cached() is True
    with Nic.open("sim") as nic:
        assert last_build_was_cached() is True
        assert nic.backend.harness.lib_path == first == default_entry / "libhil.so"
    assert (default_entry / "sha256").read_text().strip() == \
        hashlib.sha256(first.read_bytes()).hexdigest()


@pytest.mark.slow          # a whole harness build (about a minute of C++ compilation)
def test_damaged_entry_is_rebuilt(default_entry, tmp_path, monkeypatch, capsys):
    entry = copy_cache(default_entry, tmp_path / "cache", monkeypatch)
    lib = entry / "libhil.so"
    lib.write_bytes(lib.read_bytes()[:4096])          # a half-written library
    progress = []
    h = Harness(HIL_NIC_CORE, mem_size=MEM, progress=progress.append)
    try:
        err = capsys.readouterr().err
        assert "damaged" in err and "rebuilding" in err and str(entry) in err
        assert len(err.strip().splitlines()) == 1
        assert last_build_was_cached() is False
        assert len(progress) == 1 and "building" in progress[0]
        assert h.lib_path == lib
        assert (entry / "sha256").read_text().strip() == \
            hashlib.sha256(lib.read_bytes()).hexdigest()
        assert h.reg_read(0) == ID_MAGIC
        h.wire_send(tcp4_min_frames(3))
        h.run_until_idle(512, 100_000)
        assert h.counters()["rx_frames"] == 3
    finally:
        h.close()
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)   # ~150 MB of build files


def test_consistent_garbage_entry_is_reported(default_entry, tmp_path, monkeypatch):
    entry = copy_cache(default_entry, tmp_path / "cache", monkeypatch)
    garbage = os.urandom(8192)
    (entry / "libhil.so").write_bytes(garbage)
    (entry / "sha256").write_text(hashlib.sha256(garbage).hexdigest())
    with pytest.raises(HarnessError) as exc:
        Harness(HIL_NIC_CORE, mem_size=MEM)
    message = str(exc.value)
    assert "\n" not in message
    assert "delete" in message and str(entry) in message
    assert last_build_was_cached() is True            # it was not rebuilt
    assert (entry / "libhil.so").read_bytes() == garbage


def test_missing_compiler_is_reported_before_building(default_entry, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(default_entry.parent.parent / "verilog", cache / "verilog")
    monkeypatch.setenv("HETNIC_CACHE", str(cache))
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("make", "perl"):
        found = shutil.which(name)
        assert found, f"the test needs {name}"
        (tools / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    for name in ("VERILATOR_ROOT", "MAKEFLAGS"):     # use_verilator() sets them
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with pytest.raises(ToolError) as exc:
        Nic.open("sim")
    message = str(exc.value)
    assert "C++ compiler" in message and "\n" not in message
    assert last_build_was_cached() is False
    assert list((cache / "hil").iterdir()) == []     # no build was started


# --- the loaded harness ------------------------------------------------------------------------

def test_memory_is_a_view_of_the_harness_bytes(harness):
    mem = harness.memory
    assert mem.shape == (MEM,) and mem.dtype.name == "uint8" and not mem.flags.owndata
    assert not mem.any()
    harness.write(0x1234, b"hetnic")
    assert mem[0x1234:0x123A].tobytes() == b"hetnic"
    mem[MEM - 4:] = [1, 2, 3, 4]
    assert harness.read(MEM - 4, 4) == bytes([1, 2, 3, 4])
    with pytest.raises(ValueError):
        harness.read(MEM - 3, 4)
    with pytest.raises(ValueError):
        harness.write(-1, b"x")


def test_registers_and_unmapped_addresses(harness):
    regmap = HIL_NIC_CORE.regmap()
    assert harness.reg_read(regmap.addr("ID")) == ID_MAGIC == 0x484E4943
    for name in ("PARAMS0", "PARAMS1", "PARAMS2"):
        assert harness.reg_read(regmap.addr(name)) == regmap.ro_value(name)
    # Addresses no register decodes are answered OKAY, read 0 and ignore writes.
    for addr in (0x18, 0x1C, 0xFFFC):
        assert harness.reg_read(addr) == 0
        harness.reg_write(addr, 0xDEADBEEF)
        assert harness.reg_read(addr) == 0
    # rw registers read back what was written
    harness.reg_write(regmap.addr("EQ_COALESCE_COUNT", 1), 5)
    assert harness.reg_read(regmap.addr("EQ_COALESCE_COUNT", 1)) == 5
    assert harness.reg_read_many([regmap.addr("ID"), regmap.addr("EQ_COALESCE_COUNT", 1)]) \
        == [ID_MAGIC, 5]


def test_addresses_beyond_the_register_window_are_refused(harness):
    with pytest.raises(ValueError, match="16-bit register bus"):
        harness.reg_read(0x10000)
    with pytest.raises(ValueError, match="16-bit register bus"):
        harness.reg_write_many([(0x20, 1), (0x1_0020, 1)])


def test_run_and_run_raw_advance_the_cycle_counter(harness):
    c = harness.cycle
    harness.run_raw(1000)
    assert harness.cycle == c + 1000
    harness.run(77)
    assert harness.cycle == c + 1077
    assert harness.reg_read(0) == ID_MAGIC          # the core still answers
    assert set(harness.counters()) == set(COUNTER_NAMES)


def test_traffic_leaves_no_axi_errors():
    with Nic.open("sim") as nic:
        items = traffic_mix(300, seed=21)
        nic.wire.send([f for f, _ in items], [e for _, e in items])
        tx = [bytes([i]) * (60 + 7 * i) for i in range(40)]
        nic.tx_queues[0].send_batch(tx[:20])
        nic.tx_queues[1].send_gather(tx[20:30])
        for m in tx[30:]:
            nic.tx_queues[2].send(m)
        nic.run_until_idle()
        received = sum(len(q.poll(1024)) for q in nic.rx_queues)
        c = nic.backend.harness.counters()
        assert c["axi_errors"] == 0 and c["axi_protocol_errors"] == 0
        assert c["rx_frames"] == 300 and c["tx_frames"] == 40
        assert c["axi_reads"] > 0 and c["axi_writes"] > received
        assert sorted(nic.wire.received()) == sorted(tx)


def test_tx_capture_limit_backpressures_without_loss():
    with Nic.open("sim", tx_capture_frames=4) as nic:
        msgs = [bytes([i]) * (60 + i) for i in range(10)]
        nic.tx_queues[0].send_batch(msgs)
        nic.run_until_idle()
        got = nic.wire.received()
        assert len(got) == 4
        assert nic.backend.harness.counters()["tx_backpressure_cycles"] > 0
        for _ in range(5):
            nic.run_until_idle()
            got += nic.wire.received()
        assert got == msgs


def test_dma_outside_host_memory_is_answered_decerr(harness):
    regmap = HIL_NIC_CORE.regmap()
    harness.reg_write_many([(regmap.addr("RETA", i), 0) for i in range(512)])
    harness.reg_write(regmap.addr("COMMIT"), 1)
    harness.run(2000)
    assert harness.reg_read(regmap.addr("GENERATION")) == 1
    outside = MEM + 0x10000
    harness.reg_write_many([
        (regmap.addr("RXQ_CTRL", 0), QUEUE_CTRL_ENABLE.encode(0)),
        (regmap.addr("RXQ_BASE_LO", 0), outside), (regmap.addr("RXQ_BASE_HI", 0), 0),
        (regmap.addr("RXQ_SIZE", 0), 16),
        (regmap.addr("RXQ_CQ_BASE_LO", 0), outside + 0x1000),
        (regmap.addr("RXQ_CQ_BASE_HI", 0), 0),
        (regmap.addr("RXQ_PROD", 0), 16),
        (regmap.addr("RXQ_CTRL", 0), QUEUE_CTRL_ENABLE.encode(1))])
    harness.wire_send(tcp4_min_frames(20))
    harness.run_until_idle(512, 1_000_000)
    c = harness.counters()
    assert c["rx_frames"] == 20
    assert c["axi_errors"] > 0 and c["axi_errors"] == c["axi_reads"]
    assert c["axi_protocol_errors"] == 0 and c["axi_writes"] == 0
    assert QUEUE_STATUS_DMA.decode(harness.reg_read(regmap.addr("RXQ_STATUS", 0)))
    # documented: the frames are dropped, the descriptor stays posted, no drop counter moves
    assert harness.reg_read(regmap.addr("RXQ_CONS", 0)) == 0
    assert harness.reg_read(regmap.addr("RXQ_NO_BUFFER", 0)) == 0
    assert harness.reg_read(regmap.addr("RXQ_TOO_LONG", 0)) == 0
    assert not harness.memory.any()                 # nothing was written anywhere
    assert harness.reg_read(0) == ID_MAGIC          # and the model goes on


# --- waveforms ---------------------------------------------------------------------------------

@pytest.mark.slow          # a second harness build, with tracing compiled in
def test_trace_writes_a_vcd(tmp_path):
    path = tmp_path / "waves" / "w.vcd"
    with Nic.open("sim", trace=path) as nic:
        nic.wire.send(tcp4_min_frames(4))
        nic.run_until_idle()
        assert sum(len(q.poll()) for q in nic.rx_queues) == 4
    text = path.read_text(errors="replace")
    assert text.startswith("$") and "$timescale" in text[:2000]
    header, sep, changes = text.partition("$enddefinitions")
    assert sep
    code = re.search(r"\$var wire 1 (\S+) s_axis_tvalid \$end", header)
    assert code, "no s_axis_tvalid in the VCD header"
    # the frames are in the dump: tvalid goes high after time 0
    assert re.search(rf"^1{re.escape(code[1])}$", changes, re.M)


def test_trace_with_another_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError) as exc:
        Nic.open("sim", trace=tmp_path / "w.txt")
    assert ".vcd" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "w.txt").exists()
