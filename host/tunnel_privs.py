"""The tunnel adapter without administrative privileges: its process drops to an ordinary
user after it has mapped its queues.

The adapter needs no TUN device and no ``CAP_NET_ADMIN``: its tunnels are UDP datagrams on
the NIC queues it was granted (:class:`~hetnic.host.queue_port.QueueGrant`). The shared-memory
segments of the grant (the NIC's host memory and doorbell page) and of the shared-frame rings
stay the NIC process's (root's when root started ``hetnic stack up``), mode 0600: the
adapter's process maps them while it is still that user, then :func:`drop_privileges`
(supplementary groups cleared, the user's group and user IDs, real, effective and saved:
every capability goes with the root user ID; then ``PR_SET_NO_NEW_PRIVS``). The mappings it
holds stay valid; no other process of that user can open the segments.

The mappings it keeps are whole: all of the NIC's host memory (every queue's rings and
buffers, not only its own), the whole doorbell page and every instance's shared-frame ring.
docs/tunnels.md ("What the adapter's process can still reach") says what that allows and
what would narrow it.
"""

from __future__ import annotations

import os
import pwd

from ..errors import HetnicError

__all__ = ["TunnelUserError", "resolve_user", "tunnel_user_for", "drop_privileges",
           "process_identity", "DEFAULT_TUNNEL_USER"]

#: The user the adapter runs as unless ``--tunnel-user`` says otherwise.
DEFAULT_TUNNEL_USER = "nobody"


class TunnelUserError(HetnicError, ValueError):
    """An unknown user, or a drop of privileges that did not happen (one line)."""


def resolve_user(user: str | int) -> tuple[int, int]:
    """``user`` (a name or a numeric ID) -> (uid, gid); :class:`TunnelUserError` if unknown."""
    try:
        entry = pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(str(user))
    except KeyError:
        raise TunnelUserError(f"no such user: {user!r}") from None
    return entry.pw_uid, entry.pw_gid


def tunnel_user_for(requested: str | None) -> str | None:
    """The user the adapter's process should drop to, given ``--tunnel-user`` (None: not
    given); None for no drop. As root: ``requested`` or :data:`DEFAULT_TUNNEL_USER`, never
    root itself. Not root: nothing to drop unless asked, and then only to the current user
    (anything else needs root). :class:`TunnelUserError` (one line) otherwise."""
    euid = os.geteuid()
    if euid != 0:
        if requested is None or resolve_user(requested)[0] == euid:
            return None
        raise TunnelUserError(f"--tunnel-user {requested} needs root (this runs as uid "
                              f"{euid}; without root the adapter keeps the current user)")
    user = DEFAULT_TUNNEL_USER if requested is None else requested
    if resolve_user(user)[0] == 0:
        raise TunnelUserError(f"--tunnel-user {user} is root: the adapter must drop to an "
                              "unprivileged user")
    return user


def drop_privileges(user: str | int) -> tuple[int, int]:
    """Become ``user`` for good (groups, gid, uid: real, effective, saved; then
    ``PR_SET_NO_NEW_PRIVS``); (uid, gid).
    Nothing to do when already that user. :class:`TunnelUserError` for root (uid 0: no
    drop at all), when it cannot be done (not root) or did not take (a capability left)."""
    uid, gid = resolve_user(user)
    if uid == 0:
        raise TunnelUserError(f"cannot drop privileges to {user!r}: it is root")
    if os.geteuid() == uid and os.getegid() == gid:
        return uid, gid
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except PermissionError as exc:
        raise TunnelUserError(f"cannot become user {user!r}: {exc.strerror}") from None
    _no_new_privs()
    identity = process_identity()
    if identity["uid"] != uid or identity["cap_eff"] != 0:
        raise TunnelUserError(f"dropping to user {user!r} left uid {identity['uid']}, "
                              f"capabilities {identity['cap_eff']:#x}")
    return uid, gid


#: ``prctl`` option: execve never grants privileges again (setuid bits, file capabilities).
PR_SET_NO_NEW_PRIVS = 38


def _no_new_privs() -> None:
    """``prctl(PR_SET_NO_NEW_PRIVS, 1)`` through libc; :class:`TunnelUserError` if refused."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise TunnelUserError("cannot set no_new_privs: "
                              f"{os.strerror(ctypes.get_errno())}")


def process_identity(pid: int | str = "self") -> dict:
    """``{"uid": effective uid, "cap_eff": effective capability mask, "no_new_privs": 0 or
    1}`` of process ``pid`` from ``/proc/PID/status``."""
    out = {"uid": -1, "cap_eff": -1, "no_new_privs": -1}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                out["uid"] = int(line.split()[2])
            elif line.startswith("CapEff:"):
                out["cap_eff"] = int(line.split()[1], 16)
            elif line.startswith("NoNewPrivs:"):
                out["no_new_privs"] = int(line.split()[1])
    return out
