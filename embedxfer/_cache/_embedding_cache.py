"""``EmbeddingCache``: the public handle on a memory or disk store, and its checks."""

import os
import threading
import uuid
import weakref

import numpy as np

from .._core.public import set_module
from .._core.registry import get_or_load
from ._memory import MemoryStore
from ._sqlite import DB_NAME, SQLiteStore
from ._store import hash_texts

_DEFAULT_MAX_MEMORY_MB = 512

# Live memory caches by token, so that a deep copy or a pickle round trip in
# the same process finds the very same store.
_MEMORY_HANDLES = weakref.WeakValueDictionary()
_HANDLES_LOCK = threading.Lock()


@set_module("embedxfer")
class EmbeddingCache:
    """Store of document vectors keyed by embedder fingerprint and text hash.

    Pass one as the ``cache`` parameter of an embedder (or ``cache=True`` for
    the process-wide memory cache, ``cache="folder"`` for a disk cache) and
    each document is encoded once per embedder configuration: inside
    ``GridSearchCV``, across ``cross_val_score`` folds and, on disk, across
    process restarts. A hit returns the exact vector computed when the
    document was first encoded, so results do not depend on the cache
    (beyond float rounding for encoders whose output varies slightly with
    the batch a document is padded in).

    The object is a handle. ``copy.deepcopy`` (hence ``sklearn.clone``)
    returns the same object; pickling stores the folder of a disk cache, or
    an identifier for a memory cache, never the vectors. A memory cache
    unpickled in another process (e.g. a ``loky`` worker of ``n_jobs=2``)
    is a separate store private to that process; share vectors between
    processes with a disk cache.

    Parameters
    ----------
    path : str or os.PathLike, default=None
        Folder of a disk cache, created if needed; the vectors live in
        ``<path>/embeddings.sqlite``. ``None`` keeps them in memory.
    max_memory_mb : float or None, default=512
        Bound on a memory cache, in MiB of vectors plus per-entry overhead;
        beyond it the least recently used blocks (up to 1024 documents each,
        as stored together) are evicted. ``None`` means unbounded. Ignored by
        a disk cache.
    timeout : float, default=60.0
        Seconds a disk cache waits for another process's write to finish
        before raising.

    Attributes
    ----------
    hits : int
        Documents served from this cache since creation or
        :meth:`reset_stats` (counted in this process only).
    misses : int
        Distinct documents that had to be encoded.

    See Also
    --------
    embedxfer.SentenceEmbedder : Its ``cache`` parameter takes one (as do the
        other embedders').

    Notes
    -----
    The disk store is a single SQLite database in WAL mode. Each batch of
    vectors is one blob (an ``n x d`` array) plus one index row per document,
    written in one transaction: readers never see a partial batch, a killed
    writer loses only its unfinished batch, and concurrent writers wait for
    each other (up to ``timeout``). Only text digests are stored, not the
    texts. The disk store is not size-bounded; :meth:`clear` empties it.
    SQLite's locking needs a local file system (not NFS).

    Examples
    --------
    >>> import numpy as np
    >>> from embedxfer import EmbeddingCache
    >>> cache = EmbeddingCache(max_memory_mb=16)
    >>> cache.put("model-a", ["hello", "world"], np.eye(2, dtype=np.float32))
    >>> vectors, missing = cache.get("model-a", ["world", "new", "hello"])
    >>> vectors
    array([[0., 1.],
           [0., 0.],
           [1., 0.]], dtype=float32)
    >>> missing
    array([1])
    >>> len(cache)
    2
    """

    def __init__(self, path=None, *, max_memory_mb=_DEFAULT_MAX_MEMORY_MB, timeout=60.0):
        self._token = None
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        if path is None:
            self._path = None
            self._max_memory_mb = _check_max_memory(max_memory_mb)
            self._timeout = float(timeout)
            self._store = MemoryStore(self._max_memory_mb)
        else:
            self._path = _check_folder(path)
            self._max_memory_mb = None
            self._timeout = _check_timeout(timeout)
            self._store = SQLiteStore(os.path.join(self._path, DB_NAME), self._timeout)
            self._store.connection()  # fail early on an unusable folder

    # -- identity: a handle, not a container ------------------------------

    @property
    def path(self):
        """Folder of a disk cache, or ``None`` for a memory cache."""
        return self._path

    @property
    def max_memory_mb(self):
        """Size bound of a memory cache in MiB (``None``: unbounded or on disk)."""
        return self._max_memory_mb

    @property
    def timeout(self):
        """Seconds a disk cache waits for another writer."""
        return self._timeout

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        if self._path is not None:
            return _rebuild_disk_cache, (self._path, self._timeout)
        with _HANDLES_LOCK:
            if self._token is None:
                self._token = uuid.uuid4().hex
                _MEMORY_HANDLES[self._token] = self
        return _rebuild_memory_cache, (self._token, self._max_memory_mb)

    def __getstate__(self):
        # What skops (and any state-based serialiser) stores: the settings, never
        # the lock, the connection or the vectors. pickle goes through __reduce__.
        if self._path is not None:
            return {"path": self._path, "timeout": self._timeout}
        self.__reduce__()  # gives a memory cache its token
        return {"token": self._token, "max_memory_mb": self._max_memory_mb}

    def __setstate__(self, state):
        """Become a handle on the store ``state`` names, as unpickling does.

        A disk cache reopens its folder; a memory cache finds the live store
        of the same token in this process, or starts an empty one.
        """
        if not isinstance(state, dict):
            raise TypeError(f"EmbeddingCache state must be a dict, got {type(state).__name__}.")
        if state.get("path") is not None:
            live = _rebuild_disk_cache(
                _check_folder(state["path"]), _check_timeout(state["timeout"])
            )
        else:
            token = state.get("token")
            if not (isinstance(token, str) and len(token) == 32 and token.isalnum()):
                raise ValueError(f"EmbeddingCache state holds an invalid token {token!r:.40}.")
            live = _rebuild_memory_cache(token, _check_max_memory(state.get("max_memory_mb")))
        self.__dict__.update(live.__dict__)  # share the live store, its lock and settings
        self.hits = self.misses = 0

    def __repr__(self):
        if self._path is not None:
            return f"EmbeddingCache({self._path!r})"
        return f"EmbeddingCache(max_memory_mb={self._max_memory_mb!r})"

    # -- public lookup API -------------------------------------------------

    def get(self, fingerprint, texts):
        """Look documents up.

        Parameters
        ----------
        fingerprint : str
            The embedder configuration the vectors belong to.
        texts : list of str
            The documents.

        Returns
        -------
        vectors : ndarray of shape (n_texts, n_features) or None
            The stored vectors in input order, zero rows where missing;
            ``None`` when none of the texts is stored.
        missing : ndarray of int
            Positions in ``texts`` that are not stored.
        """
        fingerprint = _check_fingerprint(fingerprint)
        texts = _check_texts(texts, "get")
        vectors, found = self._fetch(fingerprint, hash_texts(texts))
        n_found = int(found.sum())
        with self._lock:
            self.hits += n_found
            self.misses += len(texts) - n_found
        return (vectors if n_found else None), np.flatnonzero(~found)

    def put(self, fingerprint, texts, vectors):
        """Store one vector per document under ``fingerprint``.

        Parameters
        ----------
        fingerprint : str
            The embedder configuration the vectors belong to.
        texts : list of str
            The documents.
        vectors : array-like of shape (n_texts, n_features)
            Their vectors. Documents already stored keep their first vector.
        """
        fingerprint = _check_fingerprint(fingerprint)
        texts = _check_texts(texts, "put")
        vectors = _check_vectors(vectors, len(texts), "put")
        self._store.put(fingerprint, hash_texts(texts), vectors)

    def clear(self, fingerprint=None):
        """Remove every stored vector, or only those of one fingerprint.

        Parameters
        ----------
        fingerprint : str, default=None
            Remove only this configuration's vectors.
        """
        if fingerprint is not None:
            fingerprint = _check_fingerprint(fingerprint)
        self._store.clear(fingerprint)

    def info(self):
        """Describe what is stored, one dict per fingerprint.

        Returns
        -------
        info : list of dict
            Keys ``fingerprint``, ``entries``, ``n_features``, ``dtype`` and
            ``nbytes`` (vector bytes).
        """
        return self._store.info()

    def stats(self):
        """Return counters and sizes.

        Returns
        -------
        stats : dict
            ``hits`` and ``misses`` (this process), ``entries``, ``nbytes``
            (vector bytes), and for a memory cache ``max_bytes`` and
            ``evictions``, for a disk cache ``path`` and ``disk_bytes``.
        """
        with self._lock:
            out = {"hits": self.hits, "misses": self.misses}
        out.update(self._store.stats())
        if self._path is not None:
            out["path"] = self._path
        return out

    def reset_stats(self):
        """Set the hit and miss counters back to zero."""
        with self._lock:
            self.hits = 0
            self.misses = 0

    def close(self):
        """Close a disk cache's database connection (reopened on next use)."""
        if self._path is not None:
            self._store.close()

    def __len__(self):
        return self._store.count()

    # -- internal, used by encode_with_cache --------------------------------

    def _fetch(self, fingerprint, keys):
        """Return ``(vectors or None, found mask)`` for 16-byte ``keys``."""
        return self._store.fetch(fingerprint, keys)

    def _store_keys(self, fingerprint, keys, vectors):
        self._store.put(fingerprint, keys, vectors)

    def _count(self, hits, misses):
        with self._lock:
            self.hits += hits
            self.misses += misses


def _rebuild_memory_cache(token, max_memory_mb):
    with _HANDLES_LOCK:
        cache = _MEMORY_HANDLES.get(token)
    if cache is not None:
        return cache

    def load():
        new = EmbeddingCache(max_memory_mb=max_memory_mb)
        new._token = token
        with _HANDLES_LOCK:
            _MEMORY_HANDLES[token] = new
        return new

    # Held by the registry so that a worker process keeps one store for this
    # token across the tasks it runs, instead of one per unpickled estimator.
    return get_or_load(("embedxfer.EmbeddingCache", "memory", token), load)


def _rebuild_disk_cache(path, timeout):
    return get_or_load(
        ("embedxfer.EmbeddingCache", "disk", path),
        lambda: EmbeddingCache(path, timeout=timeout),
    )


# -- validation helpers -----------------------------------------------------


def _check_fingerprint(fingerprint):
    if not isinstance(fingerprint, str) or not fingerprint:
        raise TypeError(
            f"fingerprint must be a non-empty str, got {type(fingerprint).__name__} "
            f"({fingerprint!r:.60})."
        )
    return fingerprint


def _check_max_memory(max_memory_mb):
    if max_memory_mb is None:
        return None
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float, np.number)):
        raise TypeError(
            f"max_memory_mb must be a positive number or None, got "
            f"{type(max_memory_mb).__name__} ({max_memory_mb!r:.60})."
        )
    if not 0 < max_memory_mb < float("inf"):
        raise ValueError(
            f"max_memory_mb must be a positive, finite number of MiB or None (no bound), got "
            f"{max_memory_mb!r}; pass cache=None to disable caching."
        )
    return max_memory_mb


def _check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


def _check_texts(texts, method):
    """``texts`` as a list; a bare string (which would be read as one-letter documents)
    or a non-iterable is refused."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{method}() takes a list of documents, got a single {type(texts).__name__}; "
            "wrap it in a list."
        )
    try:
        return list(texts)
    except TypeError:
        raise TypeError(
            f"{method}() takes a list of documents, got {type(texts).__name__} ({texts!r:.60})."
        ) from None


def _check_folder(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a folder (str or os.PathLike) or None for a memory cache, got "
            f"{type(path).__name__} ({path!r:.60})."
        )
    if not os.fspath(path):
        raise ValueError(
            "cache='' names no folder; pass a folder path, True for the memory cache, "
            "or None for no cache."
        )
    folder = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(
            f"cache={os.fspath(path)!r} is a file; a disk cache needs a folder "
            "(it is created if missing)."
        )
    return folder


def _check_vectors(vectors, n_rows, source):
    if not hasattr(vectors, "shape"):
        vectors = np.asarray(vectors)
    vectors = np.ascontiguousarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != n_rows:
        raise ValueError(
            f"{source} must give a 2-D array with one row per document ({n_rows}), got shape "
            f"{vectors.shape}."
        )
    if vectors.dtype.kind not in "fiu" or vectors.dtype.hasobject:
        raise TypeError(f"{source} must give numeric vectors, got dtype {vectors.dtype}.")
    if vectors.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if bad.size:
            raise ValueError(
                f"{source} gave NaN or infinite values in row {bad[0]} ({bad.size} rows); "
                "such vectors are never cached."
            )
    return vectors
