# Ref: TOML v1.0.0; getpwuid(3), getgrouplist(3) (the name service: files, LDAP/AD via sssd).
"""hetnicd's access policy: which users and groups may do which operation on which
interface of the composite device.

A session is the peer of a client connection: ``SO_PEERCRED`` gives its pid, uid and gid,
``SO_PEERGROUPS`` its supplementary groups; :func:`resolve` names them (and finds the user's
groups when the kernel did not give them) through the system's name service
(``pwd``/``grp``/``os.getgrouplist``: ``/etc/passwd`` and ``/etc/group``, or a directory such
as LDAP or Active Directory plugged in through sssd and nsswitch.conf).

The policy file (TOML)::

    [[grant]]
    name = "operators"                  # optional: names the grant in the audit log
    groups = ["netops"]                 # any of these groups ...
    users = ["alice"]                   # ... or any of these users
    interfaces = ["rules", "rss"]       # or ["*"]: every interface
    operations = ["read", "configure"]  # or ["*"]

    [[grant]]
    name = "monitoring"
    groups = ["*"]                      # "*": every session
    interfaces = ["counters"]
    operations = ["read"]

Default deny: a request is allowed when some grant names the session's user or one of its
groups, the interface and the operation; the audit log names that grant
(``grant[INDEX]`` or its name), or ``default-deny``. A policy file that cannot be read or
does not parse denies everything; the reason goes to the log and to every denial
(``invalid-policy``). Root is not special: it gets what the policy grants.
"""

from __future__ import annotations

import grp
import os
import pwd
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .daemon_protocol import INTERFACES, OPERATIONS

__all__ = ["Identity", "Grant", "Policy", "Decision", "resolve", "load_policy",
           "policy_from_bytes", "deny_all"]


@dataclass(frozen=True)
class Identity:
    """A session: the peer's pid, uid and gid, its user name and group names."""
    pid: int
    uid: int
    gid: int
    user: str
    groups: frozenset[str]

    def record(self) -> dict:
        return {"pid": self.pid, "uid": self.uid, "gid": self.gid}


def resolve(pid: int, uid: int, gid: int, gids: list[int] | None = None) -> Identity:
    """The identity of a peer, through the name service. ``gids``: the supplementary
    groups the peer process actually holds (``SO_PEERGROUPS``), used as they are; without
    them, the user's groups in the name service (``getgrouplist``). A uid without a passwd
    entry is user ``#UID``."""
    groups: set[str] = set()
    try:
        entry = pwd.getpwuid(uid)
        user = entry.pw_name
        found = set(os.getgrouplist(user, entry.pw_gid)) if gids is None else set(gids)
    except KeyError:
        user, found = f"#{uid}", set(gids or ())
    gids = found | {gid}
    for g in gids:
        try:
            groups.add(grp.getgrgid(g).gr_name)
        except KeyError:
            pass
    return Identity(pid, uid, gid, user, frozenset(groups))


@dataclass(frozen=True)
class Grant:
    """One ``[[grant]]`` table."""
    name: str
    users: frozenset[str]
    groups: frozenset[str]
    interfaces: frozenset[str]
    operations: frozenset[str]

    def matches(self, who: Identity, interface: str, operation: str) -> bool:
        if interface not in self.interfaces or operation not in self.operations:
            return False
        return ("*" in self.users or who.user in self.users or "*" in self.groups
                or bool(self.groups & who.groups))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str           # the grant that allowed, "default-deny" or "invalid-policy"


@dataclass
class Policy:
    """A parsed policy (or one that denies everything, with :attr:`error` saying why)."""
    grants: list[Grant] = field(default_factory=list)
    error: str | None = None
    source: str = ""

    def decide(self, who: Identity, interface: str, operation: str) -> Decision:
        if self.error is not None:
            return Decision(False, "invalid-policy")
        for grant in self.grants:
            if grant.matches(who, interface, operation):
                return Decision(True, grant.name)
        return Decision(False, "default-deny")


def deny_all(reason: str, source: str = "") -> Policy:
    return Policy([], reason, source)


def _names(table: dict, key: str, where: str, allowed: tuple[str, ...] | None) -> frozenset:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of names")
    if allowed is not None:
        if "*" in value:
            return frozenset(allowed)
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"{where}: unknown {key} {', '.join(map(repr, bad))}; they "
                             f"are {', '.join(allowed)} or '*'")
    return frozenset(value)


def parse_policy(text: str, source: str = "") -> Policy:
    """Parse policy TOML; ValueError (one line) for anything not as documented."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    extra = set(doc) - {"grant"}
    if extra:
        raise ValueError(f"unknown top-level key(s) {', '.join(sorted(extra))}; use "
                         f"[[grant]] tables")
    tables = doc.get("grant", [])
    if not isinstance(tables, list):
        raise ValueError("'grant' must be an array of tables ([[grant]])")
    grants = []
    for index, table in enumerate(tables):
        where = f"grant {index}"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: a grant is a table ([[grant]]), not "
                             f"{type(table).__name__}")
        extra = set(table) - {"name", "users", "groups", "interfaces", "operations"}
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        name = table.get("name", f"grant[{index}]")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: 'name' must be a non-empty string")
        users, groups = _names(table, "users", where, None), _names(table, "groups", where,
                                                                    None)
        if not users and not groups:
            raise ValueError(f"{where}: names no users and no groups")
        interfaces = _names(table, "interfaces", where, INTERFACES)
        operations = _names(table, "operations", where, OPERATIONS)
        if not interfaces or not operations:
            raise ValueError(f"{where}: grants no interface or no operation")
        grants.append(Grant(name, users, groups, interfaces, operations))
    return Policy(grants, None, source)


def load_policy(path: str | Path | None) -> Policy:
    """The policy in ``path``; a policy that denies everything (with the reason in
    :attr:`Policy.error`) when there is no file, or it cannot be read or parsed."""
    if path is None:
        return deny_all("no policy file given (--policy): everything is denied")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return deny_all(f"policy {path} cannot be read: {exc}", str(path))
    return policy_from_bytes(data, path)


def policy_from_bytes(data: bytes, path: str | Path) -> Policy:
    """The policy whose file ``path`` holds ``data`` (read already); deny-all with the
    reason when it is not UTF-8 or does not parse."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return deny_all(f"policy {path} cannot be read: {exc}", str(path))
    try:
        return parse_policy(text, str(path))
    except ValueError as exc:
        return deny_all(f"policy {path} is invalid: {exc}", str(path))
