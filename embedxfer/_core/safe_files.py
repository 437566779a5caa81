"""Reading a user's input file safely: regular files only, of a bounded size.

A path chosen by name (``*.png`` in a folder, a documents file) may be a
FIFO that blocks forever, a link to ``/dev/zero`` that never ends, or a
file far larger than anything the caller can use. These helpers read only
regular files, never block on opening one, and stop at a size bound.
"""

import os
import stat

__all__ = ["is_regular_file", "open_regular_file", "read_regular_file"]


def is_regular_file(path, max_bytes=None, *, follow_links=True):
    """Whether ``path`` is a regular file of at most ``max_bytes`` bytes.

    With ``follow_links=False`` a symbolic link is not one, whatever it points to.
    """
    try:
        info = os.stat(path) if follow_links else os.lstat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and (max_bytes is None or info.st_size <= max_bytes)


def open_regular_file(path, *, follow_links=True):
    """``path`` opened for reading in binary, once it is known to be a regular file.

    Opened without blocking (a FIFO under the name does not hang) and checked
    on the open descriptor; ``ValueError`` for a device, FIFO or socket, and,
    with ``follow_links=False``, for a symbolic link.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow_links:
        # Checked by name for a clear message; O_NOFOLLOW covers a link made since.
        if os.path.islink(path):
            raise ValueError(f"{os.fspath(path)!r} is a symbolic link, not a file of its own")
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(
                f"{os.fspath(path)!r} is not a regular file (a device, FIFO or socket)"
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path, max_bytes=None, *, follow_links=True):
    """The bytes of the regular file ``path``; ``ValueError`` for anything else.

    Opened as :func:`open_regular_file` does, and read up to ``max_bytes``
    (``None``: no bound).
    """
    with open_regular_file(path, follow_links=follow_links) as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(
                f"{os.fspath(path)!r} is {size} bytes, more than the {max_bytes} "
                "read from one input file"
            )
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{os.fspath(path)!r} grew past {max_bytes} bytes while being read")
    return data
