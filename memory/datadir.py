"""The data dir is private: directories 0700, files 0600, whatever the caller's umask.

memproxy creates its own entries with explicit modes, but DuckDB (its WAL, spill files) and LanceDB
(fragments, manifests, index files, one set per write) create files from native threads at any moment,
which no chmod of ours can follow. For those the process umask is set to 0o077 while a data dir is
open: the kernel then applies it to every file and directory they create. An existing dir with looser
modes (an older memproxy, a copy, a restored backup) is tightened once at open.
"""

from __future__ import annotations

import logging
import os
import stat
import threading

log = logging.getLogger("memproxy")

DIR_MODE = 0o700
FILE_MODE = 0o600
PRIVATE_UMASK = 0o077

_umask_lock = threading.Lock()
_umask_holders = 0
_umask_before = 0


def open_private_dir(path: str) -> int:
    """Create `path` (0700) if missing, hold the private umask, and tighten what is already in it.

    Returns how many entries had looser modes; call `release_private_dir` when done with the dir.
    """
    _hold_umask()
    try:
        os.makedirs(path, mode=DIR_MODE, exist_ok=True)
        loosened = tighten(path)
    except BaseException:
        release_private_dir()
        raise
    if loosened:
        log.warning("data dir %s: %d entries were readable by others; now directories 0700 and files 0600",
                    os.path.abspath(path), loosened)
    return loosened


def release_private_dir() -> None:
    """Give back the umask held by `open_private_dir` (the caller's is restored when the last dir closes)."""
    global _umask_holders
    with _umask_lock:
        if _umask_holders == 0:
            return
        _umask_holders -= 1
        if _umask_holders == 0:
            os.umask(_umask_before)


def tighten(root: str) -> int:
    """chmod `root` and everything under it to 0700 (dirs) / 0600 (files); returns how many were open to others.

    Symlinks are not followed: a link inside the data dir must not let us change modes elsewhere.
    """
    changed = _set_mode(root, DIR_MODE)
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            changed += _set_mode(os.path.join(parent, name), DIR_MODE)
        for name in files:
            changed += _set_mode(os.path.join(parent, name), FILE_MODE)
    return changed


def _set_mode(path: str, mode: int) -> int:
    try:
        info = os.lstat(path)
    except FileNotFoundError:  # removed by a concurrent writer (a compaction) while we walked
        return 0
    current = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or current == mode:
        return 0
    os.chmod(path, mode)
    return 1 if current & 0o077 else 0  # counts only what others could reach


def _hold_umask() -> None:
    global _umask_holders, _umask_before
    with _umask_lock:
        if _umask_holders == 0:
            _umask_before = os.umask(PRIVATE_UMASK)
        _umask_holders += 1
