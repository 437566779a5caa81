"""Collection settings for the whole repository (tests and doctests)."""

import doctest
import importlib.util
import inspect
import os

# pytest-xdist's workers share the cores: each takes its share of threads for
# torch's and the BLAS's pools, set before either is imported. Two workers each
# running two threads on two cores spend their time spinning in each other's way.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_share))

# embedxfer.dask needs the optional ``dask`` extra: its doctests are not
# collected where Dask is absent (tests/test_dask.py skips itself).
collect_ignore = []
if any(importlib.util.find_spec(m) is None for m in ("dask", "distributed", "pandas")):
    collect_ignore.append("embedxfer/dask.py")

_from_module = doctest.DocTestFinder._from_module


def _from_defining_module(self, module, obj):
    """Collect a class's examples from the file that defines it.

    Public classes report their public path as ``__module__``
    (``embedxfer.WordVectorEmbedder``, see ``embedxfer/_core/public.py``), which
    doctest would take for the module they belong to; their methods still
    name the module that defines them.
    """
    if module is not None and inspect.isclass(obj):
        methods = [f for f in vars(obj).values() if inspect.isfunction(f)]
        if methods:
            return methods[0].__module__ == module.__name__
    return _from_module(self, module, obj)


doctest.DocTestFinder._from_module = _from_defining_module
