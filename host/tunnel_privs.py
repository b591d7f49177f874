"""The tunnel adapter without administrative privileges: its process drops to an ordinary
user after it has mapped its queues, and the shared-memory segments it maps belong to that
user (mode 0600, not world-writable).

The adapter needs no TUN device and no ``CAP_NET_ADMIN``: its tunnels are UDP datagrams on
the NIC queues it was granted (:class:`~hetnic.host.queue_port.QueueGrant`). The NIC
process, which runs as whoever started ``hetnic stack up``, gives the segments of the grant
(the NIC's host memory and doorbell page) and of the shared-frame rings to the adapter's
user with :func:`give_segments` before it starts the adapter's process; the process opens
them, then :func:`drop_privileges` (supplementary groups cleared, the user's group and user
IDs, real, effective and saved: every capability goes with the root user ID).
"""

from __future__ import annotations

import os
import pwd

from ..errors import HetnicError
from .shm import SHM_DIR

__all__ = ["TunnelUserError", "resolve_user", "give_segments", "drop_privileges",
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


def give_segments(names, user: str | int) -> None:
    """Make the shared-memory segments ``names`` (in ``/dev/shm``) the user's (mode 0600
    stays): only the owner of the NIC process (root) and that user can map them. A no-op
    for the current user."""
    uid, gid = resolve_user(user)
    if uid == os.geteuid():
        return
    for name in names:
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def drop_privileges(user: str | int) -> tuple[int, int]:
    """Become ``user`` for good (groups, gid, uid: real, effective, saved); (uid, gid).
    Nothing to do when already that user. :class:`TunnelUserError` when it cannot be done
    (not root) or did not take (a capability left)."""
    uid, gid = resolve_user(user)
    if os.geteuid() == uid and os.getegid() == gid:
        return uid, gid
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except PermissionError as exc:
        raise TunnelUserError(f"cannot become user {user!r}: {exc.strerror}") from None
    identity = process_identity()
    if identity["uid"] != uid or identity["cap_eff"] != 0:
        raise TunnelUserError(f"dropping to user {user!r} left uid {identity['uid']}, "
                              f"capabilities {identity['cap_eff']:#x}")
    return uid, gid


def process_identity(pid: int | str = "self") -> dict:
    """``{"uid": effective uid, "cap_eff": effective capability mask}`` of process ``pid``
    from ``/proc/PID/status``."""
    out = {"uid": -1, "cap_eff": -1}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                out["uid"] = int(line.split()[2])
            elif line.startswith("CapEff:"):
                out["cap_eff"] = int(line.split()[1], 16)
    return out
