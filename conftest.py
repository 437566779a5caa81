"""Collection settings for the whole repository (tests and doctests)."""

import importlib.util

# embedxfer.dask needs the optional ``dask`` extra: its doctests are not
# collected where Dask is absent (tests/test_dask.py skips itself).
collect_ignore = []
if any(importlib.util.find_spec(m) is None for m in ("dask", "distributed", "pandas")):
    collect_ignore.append("embedxfer/dask.py")
