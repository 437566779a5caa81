"""One loaded model or vector set per process, shared by every estimator.

Estimators hold small, picklable references (a name, a path); this module
turns them into loaded objects once per process. Clones made by
``GridSearchCV`` and separate estimators naming the same source reuse it.
"""

import threading

_LOADED = {}
_LOCKS = {}
_LOAD_COUNTS = {}
_GUARD = threading.Lock()


def get_or_load(key, loader):
    """Return the object stored under ``key``, calling ``loader()`` the first time.

    Concurrent callers with the same key wait for a single load.
    """
    try:
        return _LOADED[key]
    except KeyError:
        pass
    with _GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _LOADED:
            _LOADED[key] = loader()
            _LOAD_COUNTS[key] = _LOAD_COUNTS.get(key, 0) + 1
        return _LOADED[key]


def loaded_keys():
    """Keys of everything loaded in this process (for inspection and tests)."""
    return list(_LOADED)


def load_counts():
    """How many times each key was loaded in this process since the last clear."""
    return dict(_LOAD_COUNTS)


def clear_registry():
    """Forget every loaded object so that the next use loads afresh."""
    with _GUARD:
        _LOADED.clear()
        _LOCKS.clear()
        _LOAD_COUNTS.clear()
