"""Atomic writes: a file or folder appears whole under its name, or not at all.

Everything is first written under a temporary name beside its target and
then renamed with ``os.replace``, so an interrupted run never leaves half a
file under the real name.
"""

import glob
import os
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "process_alive",
    "remove_orphaned_temporaries",
    "replace_folder",
    "signals_held",
    "temporary_path",
    "write_text_atomic",
]


def temporary_path(path, *, unique=False):
    """The temporary name beside ``path``: ``.NAME.<pid>.tmp``.

    Parameters
    ----------
    path : path-like
        The target.
    unique : bool, default=False
        Use a random part instead of the process id, for writers that may
        run in several threads of one process.
    """
    path = Path(path)
    tag = uuid.uuid4().hex if unique else os.getpid()
    return path.with_name(f".{path.name}.{tag}.tmp")


@contextmanager
def atomic_path(path, *, unique=False):
    """Yield a temporary path to write; rename it onto ``path`` when the block succeeds.

    The temporary file is removed when the block raises.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    tmp = temporary_path(path, unique=unique)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text, *, unique=False, encoding="utf-8"):
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path, unique=unique) as tmp:
        tmp.write_text(text, encoding=encoding)


@contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then act on the first one.

    For the few renames that must all happen or none (a file and its
    record, two files that belong together). The handlers are
    swapped rather than the signals blocked: a signal may be taken by any
    thread (torch's among them), but its Python handler runs in the main one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def hold(signum, frame):
        received.append(signum)

    previous = {number: signal.signal(number, hold) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler in (signal.SIG_DFL, None):
                signal.raise_signal(received[0])


def replace_folder(tmp, folder, *, done=None):
    """Rename the finished folder ``tmp`` onto ``folder``.

    When the rename fails because another process finished the same work
    first (``done``, default ``folder``, exists), theirs is kept and this
    returns quietly; any other failure is raised.
    """
    done = Path(folder) if done is None else Path(done)
    try:
        os.replace(tmp, folder)
    except OSError:
        if not done.exists():
            raise


def remove_orphaned_temporaries(path):
    """Delete ``.NAME.<pid>.tmp`` files of runs that were killed (their process is gone)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid):
    """Whether process ``pid`` runs on this machine (True when that cannot be known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # alive (another user's) or unknowable
    return True
