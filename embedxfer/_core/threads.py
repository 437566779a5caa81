"""Threads for numpy kernels that release the GIL: how many, and running them.

Tokenising and pooling split large batches into independent parts and run
them in a few threads: as many as the usable cores, at most
``OMP_NUM_THREADS`` (which joblib's workers set to avoid oversubscription)
and at most four. Each part is computed the same way whatever the split, so
results never depend on the thread count.
"""

import os
from concurrent.futures import ThreadPoolExecutor

_MAX_THREADS = 4


def usable_threads():
    """Threads a kernel may use: usable cores, capped by ``OMP_NUM_THREADS`` and four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
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
