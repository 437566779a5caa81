"""Reading a user's input file safely: regular files only, of a bounded size.

A path chosen by name (``*.png`` in a folder, a documents file) may be a
FIFO that blocks forever, a link to ``/dev/zero`` that never ends, or a
file far larger than anything the caller can use. These helpers read only
regular files, never block on opening one, and stop at a size bound.
"""

import os
import stat

__all__ = ["is_regular_file", "read_regular_file"]


def is_regular_file(path, max_bytes=None):
    """Whether ``path`` (after links) is a regular file of at most ``max_bytes`` bytes."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and (max_bytes is None or info.st_size <= max_bytes)


def read_regular_file(path, max_bytes=None):
    """The bytes of the regular file ``path``; ``ValueError`` for anything else.

    Opened without blocking (a FIFO under the name does not hang), checked
    to be a regular file, and read up to ``max_bytes`` (``None``: no bound).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(
                f"{os.fspath(path)!r} is not a regular file (a device, FIFO or socket)"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise ValueError(
                f"{os.fspath(path)!r} is {info.st_size} bytes, more than the {max_bytes} "
                "read from one input file"
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{os.fspath(path)!r} grew past {max_bytes} bytes while being read")
    return data
