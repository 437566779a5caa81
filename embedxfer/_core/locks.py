"""Advisory file locks: one run at a time writes a folder.

The lock is the operating system's (``flock``) on a small file, so it is
released whenever its holder ends, killed or not, and never goes stale.
"""

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LockHeldError", "held_lock"]


class LockHeldError(Exception):
    """Another run holds the lock; the message names it (pid, host, since when)."""


@contextmanager
def held_lock(path):
    """Hold the advisory lock on the file ``path`` (created if missing) for the block.

    Raises
    ------
    LockHeldError
        When another process, or another block of this one, holds it.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd):
            raise LockHeldError(_holder(path))
        # Left in place on release: removing it would let a later run lock a
        # file that a waiting one no longer sees.
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _lock(fd):
    """Whether the lock on ``fd`` was taken (True where the file system has no locks)."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: run unprotected, as before locks
        return True
    return True


def _holder(path):
    try:
        holder = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        holder = ""
    return holder or "a process that is starting"
