"""State that only the gateway's own user may read: state_dir 0700, files in it 0600.

The state database holds every user's contacts and the phones' pending edits; the control
socket makes the server sync. Neither is anyone else's business on a shared host.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from gateway.logs import event

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) owner-only; tighten an existing one that others
    may read, and say so (an administrator may have meant it, and should know)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Create `path` empty and owner-only unless it exists; tighten it if it does."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        _tighten(path, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    current = stat.S_IMODE(info.st_mode)
    if not current & ~mode:
        return
    if info.st_uid != os.geteuid():
        # Someone else's (a volume owned by root with group access, as Kubernetes'
        # fsGroup makes it): not ours to change; its owner decides who reads it.
        event(
            "permissions_left_open",
            logging.WARNING,
            path=path,
            mode=oct(current),
            owner=info.st_uid,
            hint="make the gateway's user the owner, or restrict the folder yourself",
        )
        return
    try:
        path.chmod(current & mode)
    except OSError as exc:
        event(
            "permissions_left_open",
            logging.WARNING,
            path=path,
            mode=oct(current),
            detail=exc.strerror,
        )
        return
    event(
        "permissions_tightened",
        logging.WARNING,
        path=path,
        was=oct(current),
        now=oct(current & mode),
    )
