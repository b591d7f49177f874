# Ref: TOML v1.0.0, RFC 8259 (JSON).
"""Rule files: classifier rules and the default action, read from TOML or JSON
(:func:`load_rules`) into a :class:`~hetnic.rules.RuleSet`.

Format
------
:func:`load_rules` reads TOML (``.toml``) or JSON (``.json``); any other name is sniffed (JSON
if the text starts with ``{``). TOML::

    [default]                 # optional: the action for frames no rule matches
    instance = 0              # stack instance 0..15
    reta_offset = 0           # first RETA entry of the instance's slice
    reta_size = 0             # slice size, a power of two; 0 = the whole RETA
    drop = false

    [[rule]]                  # one table per rule, in priority order
    name = "dns"              # optional label (must be unique)
    ip_proto = "udp"          # number or name: tcp udp icmp igmp gre esp ah icmpv6 sctp ...
    dst_port = 53             # port, [lo, hi] or "lo-hi" (inclusive)
    instance = 1              # action keys as in [default]
    reta_size = 4

    [[rule]]
    src = "10.0.0.0/8"        # IPv4 or IPv6 prefix (or a bare address: a full-length prefix)
    drop = true

Further match keys: ``ethertype`` (number, ``"0x88b5"`` or a name: ipv4 ipv6 arp vlan qinq),
``vlan`` (VID 0..4095; implies a VLAN tag), ``dst``, ``src_port``, ``dscp`` (0..63),
``tcp_flags`` (``[value, mask]`` or a table of flag names such as ``{syn = true, ack =
false}``; names: fin syn rst psh ack urg ece cwr), ``vni`` (the VXLAN / VXLAN-GPE network
identifier 0..16777215 of UDP to port 4789 or 4790; implies ``flags.vni``) and ``flags`` (a
table of :class:`~hetnic.protocol.MetaFlags` names: vlan vlan2 ipv4 ipv6 fragment tcp udp
tunnel direct ip_options vni). JSON uses the same keys: ``{"default": {...}, "rules": [{...}, ...]}``; either
format accepts ``rule`` or ``rules`` as the list's name.

Every problem in a file raises :class:`~hetnic.rules.RuleError` with one line naming the file,
the rule index (and name) and the key.
"""

import json
import tomllib
from pathlib import Path
from typing import Any, Mapping

from .rules import Action, FlowRule, RuleError, RuleSet, tcp_flags_from_names

__all__ = ["load_rules"]

_MATCH_KEYS = ("ethertype", "vlan", "ip_proto", "src", "dst", "src_port", "dst_port", "dscp",
               "tcp_flags", "vni", "flags")
_ACTION_KEYS = ("instance", "reta_offset", "reta_size", "drop")


def _file_value(key: str, value: Any) -> Any:
    """Turn a value as written in a file into the :class:`FlowRule` attribute form."""
    if key == "tcp_flags":
        if isinstance(value, Mapping):
            return tcp_flags_from_names(value)
        if isinstance(value, list):
            return tuple(value)
    if key in ("src_port", "dst_port") and isinstance(value, list):
        return tuple(value)
    return value


def _parse_action(table: Any, where: str, extra_ok: tuple = ()) -> Action:
    if not isinstance(table, Mapping):
        raise RuleError(f"{where}: must be a table, not {table!r}")
    kwargs = {}
    for key, value in table.items():
        if key in extra_ok:
            continue
        if key not in _ACTION_KEYS:
            raise RuleError(f"{where}: unknown key {key!r}; action keys are "
                            f"{', '.join(_ACTION_KEYS)}")
        try:
            Action(**{key: value})
        except ValueError as e:
            raise RuleError(f"{where}, key {key!r}: {e}") from None
        kwargs[key] = value
    return Action(**kwargs)


def _parse_rule(table: Any, where: str) -> FlowRule:
    if not isinstance(table, Mapping):
        raise RuleError(f"{where}: must be a table, not {table!r}")
    name = table.get("name", "")
    if not isinstance(name, str):
        raise RuleError(f"{where}, key 'name': must be a string, not {name!r}")
    if name:
        where = f"{where} ({name!r})"
    match = {}
    for key, value in table.items():
        if key == "name" or key in _ACTION_KEYS:
            continue
        if key not in _MATCH_KEYS:
            raise RuleError(f"{where}: unknown key {key!r}; rule keys are name, "
                            f"{', '.join(_MATCH_KEYS)}, {', '.join(_ACTION_KEYS)}")
        try:
            match[key] = _file_value(key, value)
            FlowRule(**{key: match[key]})   # check each key alone to name the culprit
        except ValueError as e:
            raise RuleError(f"{where}, key {key!r}: {e}") from None
    action = _parse_action(table, where, extra_ok=("name", *_MATCH_KEYS))
    try:
        return FlowRule(**match, action=action, name=name)
    except ValueError as e:
        raise RuleError(f"{where}: {e}") from None


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(f"{path}: no such rule file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}: cannot read rule file: {e}") from None
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{"))
    try:
        doc = json.loads(text) if is_json else tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise RuleError(f"{path}: invalid JSON: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(doc, dict):
        raise RuleError(f"{path}: the top level must be an object with 'default' and 'rules'")
    return doc


def load_rules(path: str | Path, *, max_rules: int | None = None,
               reta_entries: int | None = None) -> RuleSet:
    """Read a rule file (the format is in the module documentation).

    Parameters
    ----------
    path : str or Path
        A ``.toml`` or ``.json`` file; other names are sniffed (JSON if it starts with ``{``).
    max_rules : int, optional
        The size of the classifier's rule table; more rules than this is an error.
    reta_entries : int, optional
        The RETA size; if given, every action is also checked against it (as
        :meth:`~hetnic.rules.Action.encode` would).

    Raises
    ------
    RuleError
        With one line naming the file, the rule index (and name) and the key at fault.
    """
    path = Path(path)
    doc = _read(path)
    for key in doc:
        if key not in ("default", "rule", "rules"):
            raise RuleError(f"{path}: unknown top-level key {key!r}; use 'default' and "
                            f"'rule' (TOML [[rule]]) or 'rules' (a JSON list)")
    if "rule" in doc and "rules" in doc:
        raise RuleError(f"{path}: give the rules as 'rule' or as 'rules', not both")
    tables = doc.get("rules", doc.get("rule", []))
    if not isinstance(tables, list):
        raise RuleError(f"{path}: the rules must be a list of tables, not {tables!r}")
    if max_rules is not None and len(tables) > max_rules:
        raise RuleError(f"{path}: {len(tables)} rules, but the classifier holds at most "
                        f"{max_rules}")
    default = _parse_action(doc.get("default", {}), f"{path}: default")
    rules = [_parse_rule(table, f"{path}: rule {index}") for index, table in enumerate(tables)]
    seen = {}
    for index, rule in enumerate(rules):
        if rule.name and rule.name in seen:
            raise RuleError(f"{path}: rule {index}: name {rule.name!r} is already used by "
                            f"rule {seen[rule.name]}")
        seen[rule.name] = index
    if reta_entries is not None:
        checks = [(f"{path}: default", default)]
        checks += [(f"{path}: rule {i}" + (f" ({r.name!r})" if r.name else ""), r.action)
                   for i, r in enumerate(rules)]
        for where, action in checks:
            try:
                action.encode(reta_entries)
            except ValueError as e:
                raise RuleError(f"{where}: {e}") from None
    return RuleSet(rules=rules, default=default)
