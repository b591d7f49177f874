"""Stack instances: the stock profiles differ for real, InstanceConfig validates its fields,
load_instances reads TOML and refuses bad files in one line naming the file and the key."""

from __future__ import annotations

import dataclasses

import pytest

from hetnic.errors import HetnicError
from hetnic.host.stack.errors import InstanceError
from hetnic.host.stack.instance import (NIC_QUEUES, PROFILES, InstanceConfig, check_instances,
                                        load_instances, stock_instances)


def test_three_stock_profiles_differ_where_the_issue_says():
    low, thr, con = PROFILES["low-delay"], PROFILES["throughput"], PROFILES["concurrency"]
    assert [c.name for c in stock_instances()] == ["low-delay", "throughput", "concurrency"]
    assert (low.nagle, low.delayed_ack, low.congestion) == (False, False, "newreno")
    assert low.min_rto == 0.05 and low.poll_batch < thr.poll_batch
    assert low.poll_interval < thr.poll_interval
    assert (thr.nagle, thr.delayed_ack, thr.congestion, thr.initial_window) == (True, True, "cubic", 10)
    assert thr.sndbuf >= 4 << 20 and thr.rcvbuf >= 4 << 20
    assert thr.sndbuf > low.sndbuf > con.sndbuf
    assert con.syn_cookies and not low.syn_cookies and not thr.syn_cookies
    assert con.max_connections > thr.max_connections and con.backlog > thr.backlog
    # buffer_memory bounds the concurrency instance before max_connections does
    assert con.max_connections * (con.sndbuf + con.rcvbuf) > con.buffer_memory
    check_instances(stock_instances())      # disjoint queues, TX queues, port ranges


def test_stock_profiles_share_an_8_queue_nic():
    queues = [q for c in stock_instances() for q in c.rx_queues]
    assert sorted(queues) == list(range(NIC_QUEUES))
    assert sorted(c.tx_queue for c in stock_instances()) == [0, 1, 2]


def test_tcp_config_carries_the_instance_knobs():
    cfg = PROFILES["throughput"].tcp_config(1460)
    assert cfg.mss == 1460
    assert (cfg.congestion, cfg.nagle, cfg.delayed_ack, cfg.sndbuf) == ("cubic", True, True, 4 << 20)
    low = PROFILES["low-delay"].tcp_config(1440)
    assert (low.min_rto, low.nagle, low.delayed_ack) == (0.05, False, False)


@pytest.mark.parametrize("key, value", [
    ("rx_queues", ()), ("rx_queues", (1, 1)), ("tx_queue", -1), ("sndbuf", 0),
    ("congestion", "bbr"), ("nagle", 1), ("min_rto", -0.1), ("max_rto", 0.01),
    ("ephemeral_ports", (2000, 1999)), ("ephemeral_ports", (80, 90)), ("keepalive", (1, 2)),
    ("buffer_memory", 1000), ("name", ""), ("backlog", True), ("qos", "fast"),
])
def test_bad_field_is_one_line_naming_the_key(key, value):
    with pytest.raises(InstanceError) as info:
        InstanceConfig(**{key: value})
    text = str(info.value)
    assert "\n" not in text and f"{key}:" in text
    assert isinstance(info.value, HetnicError) and isinstance(info.value, ValueError)


def test_lists_become_tuples_and_configs_stay_frozen():
    c = InstanceConfig(rx_queues=[3, 4], ephemeral_ports=[30000, 30010], keepalive=[5, 1, 3])
    assert c.rx_queues == (3, 4) and c.ephemeral_ports == (30000, 30010)
    assert c.keepalive == (5, 1, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"
    assert hash(c) == hash(InstanceConfig(rx_queues=(3, 4), ephemeral_ports=(30000, 30010),
                                          keepalive=(5, 1, 3)))


GOOD = """
[[instance]]
name = "web"
profile = "throughput"
rcvbuf = 1048576
rx_queues = [0, 1, 2]
ephemeral_ports = [30000, 30999]

[[instance]]
name = "rpc"
profile = "low-delay"
rx_queues = [3]
tx_queue = 3
keepalive = [30, 5, 4]

[[instance]]
name = "plain"
rx_queues = [4, 5]
tx_queue = 5
ephemeral_ports = [50000, 50099]
"""


def test_load_instances_reads_profiles_and_overrides(tmp_path):
    path = tmp_path / "instances.toml"
    path.write_text(GOOD)
    web, rpc, plain = load_instances(path)
    assert web == PROFILES["throughput"].replace(name="web", rcvbuf=1 << 20,
                                                 rx_queues=(0, 1, 2),
                                                 ephemeral_ports=(30000, 30999))
    assert rpc.congestion == "newreno" and rpc.nagle is False and rpc.keepalive == (30, 5, 4)
    assert rpc.ephemeral_ports == PROFILES["low-delay"].ephemeral_ports
    assert plain == InstanceConfig(name="plain", rx_queues=(4, 5), tx_queue=5,
                                   ephemeral_ports=(50000, 50099))


BAD = [
    ("not toml [", "not TOML"),
    ("[[instance]]\nname = 'x'\nbogus = 1\n", "bogus: unknown key"),
    ("[[instance]]\nprofile = 'fast'\n", "profile:"),
    ("[[instance]]\nname = 'x'\nsndbuf = 'big'\n", "sndbuf:"),
    ("[[instance]]\nname = 'x'\ncongestion = 'vegas'\n", "congestion:"),
    ("[server]\nport = 1\n", "server: unknown key"),
    ("title = 'none'\n", "title: unknown key"),
    ("", "instance: need at least one"),
    ("[[instance]]\nname = 'a'\nrx_queues = [0, 1]\n[[instance]]\nname = 'b'\nrx_queues = [1]\n"
     "tx_queue = 1\nephemeral_ports = [2000, 2100]\n", "rx_queues: queue 1"),
    ("[[instance]]\nname = 'a'\n[[instance]]\nname = 'b'\nrx_queues = [1]\n", "tx_queue: queue 0"),
    ("[[instance]]\nname = 'a'\n[[instance]]\nname = 'b'\nrx_queues = [1]\ntx_queue = 1\n",
     "ephemeral_ports: 49152-65535 overlaps"),
    ("[[instance]]\nname = 'a'\n[[instance]]\nname = 'a'\nrx_queues = [1]\n", "name: used twice"),
]


@pytest.mark.parametrize("text, fragment", BAD, ids=[b[1] for b in BAD])
def test_bad_instance_file_is_one_line_naming_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InstanceError) as info:
        load_instances(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and fragment in message, message


def test_missing_instance_file(tmp_path):
    with pytest.raises(InstanceError, match=r"nothere\.toml: cannot read"):
        load_instances(tmp_path / "nothere.toml")


def test_fin_wait2_timeout_is_an_instance_knob(tmp_path):
    assert InstanceConfig().fin_wait2_timeout == 60.0
    cfg = InstanceConfig(fin_wait2_timeout=7.5)
    assert cfg.tcp_config(1460).fin_wait2_timeout == 7.5
    for bad in (-1, "10", True, 4000):
        with pytest.raises(InstanceError, match="fin_wait2_timeout:"):
            InstanceConfig(fin_wait2_timeout=bad)
    path = tmp_path / "fw2.toml"
    path.write_text("[[instance]]\nname = 'x'\nfin_wait2_timeout = 3\n")
    (x,) = load_instances(path)
    assert x.fin_wait2_timeout == 3 and x.tcp_config(1460).fin_wait2_timeout == 3
    path.write_text("[[instance]]\nname = 'x'\nfin_wait2_timeout = 'soon'\n")
    with pytest.raises(InstanceError, match=r"fw2.toml: instance 'x': fin_wait2_timeout:"):
        load_instances(path)


def test_an_instance_declares_its_qos_class_in_toml(tmp_path):
    """A TOML instance named otherwise serves the class it declares (the dispatcher's
    qos_class); without a declaration the stock profiles serve the class of their name."""
    from hetnic.host.stack_steering import qos_class
    path = tmp_path / "qos.toml"
    path.write_text("[[instance]]\nname = 'fast-lane'\nqos = 'low-delay'\n")
    (x,) = load_instances(path)
    assert x.qos == "low-delay" and qos_class(x) == "low-delay"
    assert qos_class(InstanceConfig(name="other")) is None
    assert [qos_class(p) for p in PROFILES.values()] == list(PROFILES)


def test_instance_and_connection_defaults_are_one_set():
    """InstanceConfig's TCP knobs default to TcpConfig's (one place for each default)."""
    from hetnic.host.stack.instance import InstanceConfig
    from hetnic.host.stack.tcp import TcpConfig
    assert InstanceConfig().tcp_config(1460) == TcpConfig(mss=1460)
