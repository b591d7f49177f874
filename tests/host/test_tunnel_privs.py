"""Whom the tunnel adapter's process drops to: ``--tunnel-user`` as root and not root, and
never root itself (one-line errors, no bare EPERM)."""

from __future__ import annotations

import pytest

from hetnic.host import tunnel_privs
from hetnic.host.tunnel_privs import TunnelUserError, drop_privileges, tunnel_user_for

pytestmark = pytest.mark.timeout(30)


def test_as_root_the_default_is_nobody_and_root_is_refused(monkeypatch):
    monkeypatch.setattr(tunnel_privs.os, "geteuid", lambda: 0)
    assert tunnel_user_for(None) == "nobody"
    assert tunnel_user_for("nobody") == "nobody"
    with pytest.raises(TunnelUserError, match="is root"):
        tunnel_user_for("root")
    with pytest.raises(TunnelUserError, match="is root"):
        tunnel_user_for("0")
    with pytest.raises(TunnelUserError, match="no such user"):
        tunnel_user_for("no-such-user-hetnic")


def test_not_root_keeps_the_user_and_refuses_another(monkeypatch):
    nobody = tunnel_privs.resolve_user("nobody")[0]
    me = nobody + 1 if nobody < 60000 else 1000
    monkeypatch.setattr(tunnel_privs.os, "geteuid", lambda: me)
    assert tunnel_user_for(None) is None
    with pytest.raises(TunnelUserError, match="needs root") as info:
        tunnel_user_for("nobody")
    assert "\n" not in str(info.value)


def test_drop_to_root_is_refused():
    """Dropping to uid 0 would drop nothing: refused whoever asks."""
    with pytest.raises(TunnelUserError, match="it is root"):
        drop_privileges("root")
