"""Private files by default: what smokehouse writes into its data dir (the SQLite database, the
embedded broker's database, the access key, the secret key, Celery beat's schedule, worker
logs) is readable by its own user only.

Every ``smokehouse`` process sets the umask :data:`PRIVATE_UMASK` as it starts (children and
Celery's pool inherit it), so a file is ``0600`` and a directory ``0700`` from the moment it
exists — no window in which another user could open it. Files meant for another program set
their mode explicitly (Mosquitto's password and ACL files: ``SMOKEHOUSE_IOT_MOSQUITTO_FILE_MODE``;
the TLS certificates of ``smokehouse tls init``: ``0644``, keys ``0600``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def use_private_umask() -> int:
    """Set the process umask to ``0o077``; returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) as ``0700``; an existing directory we own loses its
    group and other bits (a data dir made by an older version or another umask)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    return path
