"""Threads for numpy kernels that release the GIL: how many, and running them.

Tokenising and pooling split large batches into independent parts and run
them in a few threads: as many as the usable cores, at most
``OMP_NUM_THREADS`` (which joblib's workers set to avoid oversubscription)
and at most four. Each part is computed the same way whatever the split, so
results never depend on the thread count.

``capped_threads`` applies the same bound of usable cores to the thread counts
that estimators take as ``n_threads``.
"""

import contextlib
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

from ..exceptions import EmbedxferWarning

_MAX_THREADS = 4

# The n_threads values already warned about: one warning per value and process.
_CAPPED = set()


def usable_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def capped_threads(n_threads):
    """``n_threads`` as an int, at most :func:`usable_cores`; None stays None.

    A larger count only oversubscribes the cores, and an absurd one makes
    the thread pools of torch and the tokenizers fail to start (a panic that
    ``except Exception`` does not catch): it is capped, with an
    :class:`~embedxfer.exceptions.EmbedxferWarning` the first time.
    """
    if n_threads is None:
        return None
    n, cores = int(n_threads), usable_cores()
    if n <= cores:
        return n
    if n not in _CAPPED:
        _CAPPED.add(n)
        warnings.warn(
            f"n_threads={n} is more than the {cores} CPUs usable here; using {cores} threads.",
            EmbedxferWarning,
            stacklevel=_outside_stacklevel(),
        )
    return cores


def _outside_stacklevel():
    """``stacklevel`` of the caller's first frame outside embedxfer, scikit-learn and contextlib."""
    import sklearn

    inside = (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.dirname(os.path.abspath(sklearn.__file__)) + os.sep,
        contextlib.__file__,
    )
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def usable_threads():
    """Threads a kernel may use: usable cores, capped by ``OMP_NUM_THREADS`` and four."""
    cores = usable_cores()
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return max(1, min(cores, _MAX_THREADS))


def run_parallel(function, arguments, n_threads=None):
    """``[function(*args) for args in arguments]``, in up to ``n_threads`` threads."""
    n = len(arguments) if n_threads is None else min(n_threads, len(arguments))
    if n <= 1:
        return [function(*args) for args in arguments]
    with ThreadPoolExecutor(n) as pool:
        return [future.result() for future in [pool.submit(function, *a) for a in arguments]]
