"""hetnic.params: one frozen parameter object per build, its register map, and the build read
back from a device's identification registers."""

import dataclasses

import pytest

from hetnic.params import (ECP5_BOARD_CORE, HIL_NIC_CORE, ICE40_SERIAL_CORE, NIC_CORE_W64,
                           PRESETS, RX_PIPELINE_W8, RX_PIPELINE_W64, NicParams, hil_rx_queues)
from hetnic.regs import ID_MAGIC

IDENTITY = ("ID", "VERSION", "PARAMS0", "PARAMS1", "PARAMS2", "CAPS")


def identity_reader(params: NicParams, **overrides):
    """``read(addr)`` of a device built with ``params`` (its identification registers only);
    ``overrides`` replace register values by name."""
    regmap = params.regmap()
    values = {regmap.addr(name): overrides.get(name, regmap.ro_value(name)) for name in IDENTITY}
    return values.__getitem__


def test_defaults_follow_the_datapath_and_the_queues():
    p = NicParams(data_width=128)
    assert p.hash_bytes_per_cycle == 16 and p.queues == 64
    assert NicParams(data_width=512).hash_bytes_per_cycle == 36
    assert NicParams(rx_queues=8, tx_queues=4, event_queues=4).queues == 8
    assert NicParams(queues=5).queues == 5


def test_frozen_hashable_and_compared_by_value():
    p = NicParams(data_width=8, n_rules=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.n_rules = 5
    assert p == NicParams(data_width=8, n_rules=4, hash_bytes_per_cycle=1)
    assert len({p, NicParams(data_width=8, n_rules=4)}) == 1
    assert p.replace(n_rules=5).n_rules == 5 and p.n_rules == 4
    assert "_regmap" not in dataclasses.asdict(p)
    assert NicParams(**dataclasses.asdict(HIL_NIC_CORE)) == HIL_NIC_CORE


def test_replace_keeps_derived_defaults_derived():
    assert HIL_NIC_CORE.replace(data_width=8) == NicParams(data_width=8, rx_queues=8,
                                                           tx_queues=4, event_queues=4)
    assert HIL_NIC_CORE.replace(data_width=8).hash_bytes_per_cycle == 1
    assert HIL_NIC_CORE.replace(rx_queues=16).queues == 16
    set_apart = NicParams(data_width=64, hash_bytes_per_cycle=4, rx_queues=8, queues=3)
    assert set_apart.replace(data_width=128, rx_queues=9).hash_bytes_per_cycle == 4
    assert set_apart.replace(rx_queues=9).queues == 3
    assert HIL_NIC_CORE.replace(data_width=8, hash_bytes_per_cycle=2).hash_bytes_per_cycle == 2


@pytest.mark.parametrize("params, message", [
    ({"data_width": 12}, "data_width must be a multiple of 8 from 8 to 512 bits, not 12"),
    ({"data_width": 1024}, "data_width must be a multiple of 8 from 8 to 512 bits, not 1024"),
    ({"data_width": "64"}, "data_width must be an integer, not '64'"),
    ({"n_rules": True}, "n_rules must be an integer, not True"),
    ({"n_rules": 0}, "n_rules must be an integer from 1 to 64, not 0"),
    ({"reta_size": 100}, "reta_size must be a power of two, not 100"),
    ({"reta_size": 4096}, "reta_size must be an integer from 2 to 2048, not 4096"),
    ({"queues": 300}, "queues must be an integer from 1 to 256, not 300"),
    ({"rx_queues": 300}, "rx_queues must be an integer from 0 to 256, not 300"),
    ({"hash_bytes_per_cycle": 37}, "hash_bytes_per_cycle must be an integer from 1 to 36"),
    ({"tx_queues": 65}, "tx_queues must be an integer from 0 to 64, not 65"),
    ({"mac_ports": 16}, "mac_ports must be an integer from 0 to 15, not 16"),
    ({"injector": 1}, "injector must be True or False, not 1"),
    ({"flow_table": 1}, "flow_table must be True or False, not 1"),
    ({"injector": True, "data_width": 8, "hash_bytes_per_cycle": 1, "n_rules": 1},
     "flow_table must be False with injector"),
])
def test_bad_parameters_are_refused_in_one_line(params, message):
    with pytest.raises(ValueError) as exc:
        NicParams(**params)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_regmap_is_the_table_of_the_build():
    rm = NIC_CORE_W64.regmap()
    assert rm.params == {"data_bytes": 8, "hash_bytes_per_cycle": 8, "n_rules": 16,
                         "reta_size": 512, "queues": 64, "rx_queues": 64, "tx_queues": 4,
                         "event_queues": 4, "injector": 0, "mac_ports": 0, "flow_table": 1}
    assert NIC_CORE_W64.regmap() is rm                      # resolved once
    assert rm.count("RXQ_CTRL") == 64 and rm.count("EQ_CTRL") == 4
    assert RX_PIPELINE_W64.regmap().present() == [
        r for r in rm.present() if not r.name.startswith(("RXQ_", "TXQ_", "EQ_"))]
    board = ECP5_BOARD_CORE.replace(mac_ports=2).regmap()
    assert board.count("MAC_RX_FRAMES_OK") == 2 and board.count("RETA") == 128
    serial = ICE40_SERIAL_CORE.regmap()
    assert serial.count("INJ_END") == 1 and serial.ro_value("CAPS") & 1 << 4


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_from_identity_reads_back_every_preset(name):
    params = PRESETS[name]
    assert NicParams.from_identity(identity_reader(params)) == params


def test_from_identity_reads_a_board_with_its_mac_ports():
    board = ECP5_BOARD_CORE.replace(mac_ports=2)
    assert NicParams.from_identity(identity_reader(board)) == board
    assert NicParams.from_identity(identity_reader(RX_PIPELINE_W8)).data_width == 8


def test_from_identity_refuses_what_is_not_a_hetnic_build():
    with pytest.raises(ValueError, match="reads 0x12345678, not the hetnic magic"):
        NicParams.from_identity(identity_reader(HIL_NIC_CORE, ID=0x12345678))
    params1 = 100 | 8 << 16                                  # reta_size 100: no such build
    with pytest.raises(ValueError, match="reta_size must be a power of two, not 100"):
        NicParams.from_identity(identity_reader(HIL_NIC_CORE, PARAMS1=params1))
    assert identity_reader(HIL_NIC_CORE)(0) == ID_MAGIC


def test_hil_builds_round_the_rx_queues_up():
    assert [hil_rx_queues(n) for n in (1, 2, 4, 8)] == [HIL_NIC_CORE.rx_queues] * 4 == [8] * 4
    assert [hil_rx_queues(n) for n in (9, 10, 16)] == [16] * 3
    assert [hil_rx_queues(n) for n in (17, 64, 256)] == [17, 64, 256]
