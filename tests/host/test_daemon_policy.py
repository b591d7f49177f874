"""hetnicd's protocol messages and policy, without a daemon: what a line decodes to, which
lines are refused, and how a policy decides (default deny, groups, '*', invalid files)."""

import json
import os

import pytest

from hetnic.host.daemon_policy import Identity, load_policy, parse_policy, resolve
from hetnic.host.daemon_protocol import (INTERFACES, MAX_MESSAGE, OPERATIONS, ProtocolError,
                                         decode_request, error_reply, request, split_op)


def test_request_round_trip_and_refusals():
    line = request(7, "rules.configure", {"text": "x"})
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert decode_request(line[:-1]) == (7, "rules.configure", {"text": "x"})
    bad = [b"\xff\xfe", b"[]", b'{"v":2,"id":1,"op":"x"}', b'{"v":true,"id":1,"op":"x"}',
           b'{"v":1,"id":-1,"op":"x"}', b'{"v":1,"id":1,"op":""}',
           b'{"v":1,"id":1,"op":"x","args":[]}', b'{"v":1,"id":1,"op":"x","more":1}',
           b'{"v":1,"id":1,"op":"x"', b" " * (MAX_MESSAGE + 1)]
    for data in bad:
        with pytest.raises(ProtocolError):
            decode_request(data)
    assert json.loads(error_reply(None, "bad-request", "e"))["ok"] is False
    assert split_op("rss.configure") == ("rss", "configure")
    assert split_op("rss.reboot") is None and split_op("session.whoami") is None


POLICY = """
[[grant]]
name = "ops"
groups = ["netops"]
interfaces = ["rules", "rss"]
operations = ["*"]

[[grant]]
users = ["*"]
interfaces = ["counters"]
operations = ["read"]
"""


def _who(user, *groups):
    return Identity(1, 1000, 1000, user, frozenset(groups))


def test_policy_decides_with_default_deny():
    policy = parse_policy(POLICY)
    eve, op = _who("eve"), _who("olga", "netops")
    for interface in INTERFACES:
        for operation in OPERATIONS:
            d_eve = policy.decide(eve, interface, operation)
            d_op = policy.decide(op, interface, operation)
            assert d_eve.allowed == ((interface, operation) == ("counters", "read"))
            assert d_op.allowed == (interface in ("rules", "rss")
                                    or (interface, operation) == ("counters", "read"))
            if not d_eve.allowed:
                assert d_eve.rule == "default-deny"
    assert policy.decide(op, "rss", "use").rule == "ops"
    assert policy.decide(eve, "counters", "read").rule == "grant[1]"


@pytest.mark.parametrize("text, why", [
    ("[[grant]\n", "not TOML"),
    ("[[grant]]\nusers = ['a']\ninterfaces = ['nic']\noperations = ['read']\n", "nic"),
    ("[[grant]]\nusers = ['a']\ninterfaces = ['rss']\noperations = ['write']\n", "write"),
    ("[[grant]]\ninterfaces = ['rss']\noperations = ['read']\n", "no users"),
    ("[[grant]]\nusers = 'a'\ninterfaces = ['rss']\noperations = ['read']\n", "list"),
    ("[[grant]]\nusers = ['a']\ninterfaces = ['rss']\noperations = ['read']\nx = 1\n", "x"),
    ("[other]\n", "other"),
    ("grant = [1]\n", "a grant is a table"),
    ("grant = [[1]]\n", "a grant is a table"),
    ("grant = 1\n", "array of tables"),
])
def test_an_invalid_policy_denies_everything(tmp_path, text, why):
    path = tmp_path / "p.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert why in policy.error and policy.grants == []
    assert policy.decide(_who("root", "root"), "counters", "read").rule == "invalid-policy"


def test_missing_policy_and_resolve():
    assert "no policy" in load_policy(None).error
    assert "cannot be read" in load_policy("/nonexistent/p.toml").error
    me = resolve(os.getpid(), os.getuid(), os.getgid())
    assert me.uid == os.getuid() and me.user and me.groups
    ghost = resolve(1, 4_000_000, 4_000_000)
    assert ghost.user == "#4000000" and ghost.groups == frozenset()
