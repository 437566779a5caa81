"""Content-addressed embedding cache: (fingerprint, text hash) -> vector.

Every embedder describes itself with a fingerprint: a string that changes
whenever anything that changes its vectors changes (source identity, the
parameters, the state learned in ``fit``). A document is keyed by a 128-bit
BLAKE2b digest of its UTF-8 text. :func:`encode_with_cache` looks every
document up, encodes only the missing ones and stores them, so that
``GridSearchCV`` over a downstream classifier and repeated runs of a script
encode each document once.

Two stores sit behind one class, :class:`EmbeddingCache`:

* in memory (the default): blocks of vectors bounded by ``max_memory_mb``,
  the least recently used evicted first;
* on disk (a folder): one SQLite database in WAL mode. Each batch of vectors
  is written in a single transaction, so a process killed half way leaves
  only whole batches behind, and concurrent writers (``n_jobs``, several
  scripts) are serialised by SQLite's locking with a busy timeout.
"""

import hashlib
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import OrderedDict

import numpy as np

from ._param_validation import Hint
from ._public import set_module
from ._registry import get_or_load

__all__ = ["EmbeddingCache", "resolve_cache", "encode_with_cache", "hash_texts"]

_DEFAULT_MAX_MEMORY_MB = 512
_DEFAULT_CHUNK_SIZE = 1024
_DB_NAME = "embeddings.sqlite"
_SCHEMA_VERSION = 1
# Bound on parameters in one ``IN (...)`` query; SQLite builds before 3.32
# accept at most 999.
_SQL_BATCH = 900

# Live memory caches by token, so that a deep copy or a pickle round trip in
# the same process finds the very same store.
_MEMORY_HANDLES = weakref.WeakValueDictionary()
_HANDLES_LOCK = threading.Lock()


def hash_texts(texts):
    """Return the 16-byte BLAKE2b digest of each text's UTF-8 encoding.

    Parameters
    ----------
    texts : iterable of str
        The documents.

    Returns
    -------
    keys : list of bytes
        One 16-byte digest per text, in order. Texts holding lone surrogates
        are hashed with ``surrogatepass`` so that every ``str`` has a key.
    """
    blake2b = hashlib.blake2b
    keys = []
    append = keys.append
    for text in texts:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogatepass")
        except AttributeError:
            raise TypeError(
                f"cache keys are computed from str documents, got {type(text).__name__} "
                f"({text!r:.40}); convert the documents to text first."
            ) from None
        append(blake2b(data, digest_size=16).digest())
    return keys


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
    resolve_cache : Turn an estimator's ``cache`` parameter into a cache.
    encode_with_cache : Encode only the documents not yet in a cache.

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
            self._store = _MemoryStore(self._max_memory_mb)
        else:
            self._path = _check_folder(path)
            self._max_memory_mb = None
            self._timeout = _check_timeout(timeout)
            self._store = _SQLiteStore(os.path.join(self._path, _DB_NAME), self._timeout)
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
        texts = list(texts)
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
        texts = list(texts)
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


# The ``cache`` entry of an estimator's ``_parameter_constraints``: the types
# ``resolve_cache`` accepts.
CACHE_CONSTRAINT = [
    None,
    bool,
    str,
    os.PathLike,
    EmbeddingCache,
    Hint("Pass None, True, 'memory', a folder path or an embedxfer.EmbeddingCache."),
]


def resolve_cache(cache):
    """Turn an estimator's ``cache`` parameter into an :class:`EmbeddingCache`.

    Parameters
    ----------
    cache : None, bool, "memory", str, os.PathLike or EmbeddingCache
        ``None`` or ``False``: no cache. ``True`` or ``"memory"``: the
        in-memory cache shared by the whole process. Any other str or a path:
        a disk cache in that folder (one object per folder per process; write
        ``"./memory"`` for a folder named ``memory``). An
        :class:`EmbeddingCache`: itself.

    Returns
    -------
    cache : EmbeddingCache or None
    """
    if cache is None or cache is False:
        return None
    if isinstance(cache, EmbeddingCache):
        return cache
    if cache is True or (isinstance(cache, str) and cache == "memory"):
        return get_or_load(("embedxfer.EmbeddingCache", "shared-memory"), EmbeddingCache)
    if isinstance(cache, (str, os.PathLike)):
        folder = _check_folder(cache)
        return get_or_load(
            ("embedxfer.EmbeddingCache", "disk", folder), lambda: EmbeddingCache(folder)
        )
    raise TypeError(
        f"cache must be None, True, 'memory', a folder path or an embedxfer.EmbeddingCache, "
        f"got {type(cache).__name__} ({cache!r:.60})."
    )


def encode_with_cache(cache, fingerprint, docs, encode, *, chunk_size=_DEFAULT_CHUNK_SIZE):
    """Return ``encode(docs)``, encoding only the documents not in ``cache``.

    Identical texts are encoded once. Misses are encoded in chunks of
    ``chunk_size`` distinct documents and each chunk is stored as soon as it
    is done, so an interrupted run keeps all finished chunks.

    Parameters
    ----------
    cache : None, bool, str, os.PathLike or EmbeddingCache
        Anything :func:`resolve_cache` accepts; ``None`` calls
        ``encode(docs)`` directly.
    fingerprint : str or callable
        The embedder's fingerprint, or a function returning it (only called
        when a cache is in use).
    docs : list of str
        The documents, already validated.
    encode : callable
        ``encode(list_of_str) -> ndarray of shape (n, n_features)``.
    chunk_size : int, default=1024
        Distinct missing documents per call to ``encode``.

    Returns
    -------
    vectors : ndarray of shape (len(docs), n_features)
        In the order of ``docs``; bit-identical to what ``encode`` returned
        when each document was first encoded.
    """
    cache = resolve_cache(cache)
    if cache is None or len(docs) == 0:
        return encode(docs)
    if callable(fingerprint):
        fingerprint = fingerprint()
    fingerprint = _check_fingerprint(fingerprint)
    if not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")

    keys = hash_texts(docs)
    position = {}
    inverse = np.fromiter(
        (position.setdefault(key, len(position)) for key in keys), dtype=np.intp, count=len(keys)
    )
    unique_keys = list(position)
    vectors, found = cache._fetch(fingerprint, unique_keys)
    missing = np.flatnonzero(~found)
    if missing.size:
        # First position of each distinct text, to know which text to encode.
        _, first = np.unique(inverse, return_index=True)
        for start in range(0, missing.size, chunk_size):
            rows = missing[start : start + chunk_size]
            texts = [docs[i] for i in first[rows]]
            encoded = _check_vectors(encode(texts), len(texts), "encode")
            if vectors is None:
                vectors = np.zeros((len(unique_keys), encoded.shape[1]), dtype=encoded.dtype)
            elif encoded.shape[1] != vectors.shape[1] or encoded.dtype != vectors.dtype:
                raise ValueError(
                    f"encode returned {encoded.dtype} vectors of {encoded.shape[1]} features "
                    f"but the cache holds {vectors.dtype} vectors of {vectors.shape[1]} for "
                    f"fingerprint {fingerprint!r}; the fingerprint must change whenever the "
                    "vectors change."
                )
            cache._store_keys(fingerprint, [unique_keys[i] for i in rows], encoded)
            vectors[rows] = encoded
    cache._count(hits=len(docs) - missing.size, misses=missing.size)
    if len(unique_keys) == len(docs):
        return vectors
    return vectors[inverse]


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
    if not max_memory_mb > 0:
        raise ValueError(
            f"max_memory_mb must be positive, got {max_memory_mb!r}; pass cache=None "
            "to disable caching."
        )
    return max_memory_mb


def _check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


def _check_folder(path):
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


# The most features a stored vector may claim (widest known encoders: a few thousand).
_MAX_FEATURES = 1 << 20


def _layout_problem(n_features, dtype):
    """None when a stored ``(n_features, dtype)`` is one ``put`` could have written."""
    if not isinstance(n_features, int) or not 1 <= n_features <= _MAX_FEATURES:
        return f"n_features {n_features!r:.40} is not between 1 and {_MAX_FEATURES}"
    try:
        dtype = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "fiu" or dtype.itemsize > 8:
        return "its dtype is not a numeric dtype put() stores"
    return None


def _shape_conflict(fingerprint, held, got):
    return ValueError(
        f"fingerprint {fingerprint!r} already holds {held[1]} vectors of {held[0]} features, "
        f"got {got[1]} vectors of {got[0]}; the fingerprint must change whenever the vectors "
        "change."
    )


# -- memory store -------------------------------------------------------------

# A memory block holds at most this many rows, so that eviction, which drops
# whole blocks, never throws away much more than it must.
_BLOCK_ROWS = 1024
# Python overhead per indexed key (dict slot, 16-byte bytes object, int).
_KEY_OVERHEAD = 120
_ROW_BITS = 32


class _MemoryStore:
    """Blocks of vectors with a per-fingerprint ``key -> (block, row)`` index.

    Eviction is least-recently-used by block: a lookup touches the blocks it
    reads, and the oldest blocks are dropped while the total exceeds the bound.
    Lookups gather rows with numpy, one pass per block.
    """

    def __init__(self, max_memory_mb):
        self.max_bytes = None if max_memory_mb is None else int(max_memory_mb * 2**20)
        self.index = {}  # fingerprint -> {key: block_id << _ROW_BITS | row}
        self.layout = {}  # fingerprint -> (n_features, dtype)
        self.blocks = OrderedDict()  # block_id -> (fingerprint, array, keys), oldest first
        self.next_block = 0
        self.nbytes = 0
        self.evictions = 0
        self.lock = threading.RLock()

    def fetch(self, fingerprint, keys):
        found = np.zeros(len(keys), dtype=bool)
        with self.lock:
            index = self.index.get(fingerprint)
            if index is None:
                return None, found
            n_features, dtype = self.layout[fingerprint]
            get = index.get
            codes = np.fromiter((get(key, -1) for key in keys), np.int64, len(keys))
            found[:] = codes >= 0
            vectors = (np.empty if found.all() else np.zeros)((len(keys), n_features), dtype)
            if not found.any():
                return vectors, found
            targets = np.flatnonzero(found)
            codes = codes[targets]
            order = np.argsort(codes >> _ROW_BITS, kind="stable")
            targets, codes = targets[order], codes[order]
            block_ids, starts = np.unique(codes >> _ROW_BITS, return_index=True)
            stops = [*starts[1:], codes.size]
            rows = codes & ((1 << _ROW_BITS) - 1)
            for block_id, start, stop in zip(block_ids.tolist(), starts, stops):
                self.blocks.move_to_end(block_id)
                vectors[targets[start:stop]] = self.blocks[block_id][1][rows[start:stop]]
        return vectors, found

    def put(self, fingerprint, keys, vectors):
        n_features, dtype = vectors.shape[1], vectors.dtype
        with self.lock:
            layout = self.layout.get(fingerprint)
            if layout is None:
                self.layout[fingerprint] = (n_features, dtype)
                self.index[fingerprint] = {}
            elif layout != (n_features, dtype):
                raise _shape_conflict(fingerprint, layout, (n_features, dtype))
            index = self.index[fingerprint]
            # Keep the first vector of a key, and of a key repeated in ``keys``.
            fresh = {}
            for i, key in enumerate(keys):
                if key not in index and key not in fresh:
                    fresh[key] = i
            if fresh:
                new_keys = list(fresh)
                new_rows = np.fromiter(fresh.values(), np.intp, len(fresh))
                for start in range(0, len(new_keys), _BLOCK_ROWS):
                    self._add_block(
                        fingerprint,
                        new_keys[start : start + _BLOCK_ROWS],
                        vectors[new_rows[start : start + _BLOCK_ROWS]],
                    )
            self._evict()

    def _add_block(self, fingerprint, keys, block):
        block_id = self.next_block
        self.next_block += 1
        self.blocks[block_id] = (fingerprint, block, keys)
        base = block_id << _ROW_BITS
        self.index[fingerprint].update(zip(keys, range(base, base + len(keys))))
        self.nbytes += _block_bytes(block, keys)

    def _drop_block(self, block_id):
        fingerprint, block, keys = self.blocks.pop(block_id)
        index = self.index[fingerprint]
        for key in keys:
            del index[key]
        if not index:
            del self.index[fingerprint]
            del self.layout[fingerprint]
        self.nbytes -= _block_bytes(block, keys)

    def _evict(self):
        if self.max_bytes is None:
            return
        while self.nbytes > self.max_bytes and self.blocks:
            oldest = next(iter(self.blocks))
            self.evictions += len(self.blocks[oldest][2])
            self._drop_block(oldest)

    def clear(self, fingerprint):
        with self.lock:
            if fingerprint is None:
                self.index.clear()
                self.layout.clear()
                self.blocks.clear()
                self.nbytes = 0
                return
            doomed = [bid for bid, (fp, _, _) in self.blocks.items() if fp == fingerprint]
            for block_id in doomed:
                self._drop_block(block_id)

    def count(self):
        with self.lock:
            return sum(len(index) for index in self.index.values())

    def info(self):
        with self.lock:
            return [
                {
                    "fingerprint": fingerprint,
                    "entries": len(index),
                    "n_features": self.layout[fingerprint][0],
                    "dtype": str(self.layout[fingerprint][1]),
                    "nbytes": len(index)
                    * self.layout[fingerprint][0]
                    * self.layout[fingerprint][1].itemsize,
                }
                for fingerprint, index in self.index.items()
            ]

    def stats(self):
        with self.lock:
            info = self.info()
            return {
                "entries": sum(item["entries"] for item in info),
                "nbytes": sum(item["nbytes"] for item in info),
                "memory_bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "evictions": self.evictions,
            }


def _block_bytes(block, keys):
    return block.nbytes + _KEY_OVERHEAD * len(keys)


# -- disk store -----------------------------------------------------------------

# Vectors are stored one blob per written batch (a C-ordered n x d array),
# with a compact (fingerprint, key) -> (batch, row) index: reading 100k
# vectors is then a scan of small index rows plus a few large blob reads,
# several times faster and denser on disk than one blob row per document.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    n_features INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fp INTEGER NOT NULL,
    n_rows INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_fp ON batches (fp);
CREATE TABLE IF NOT EXISTS entries (
    fp INTEGER NOT NULL,
    key BLOB NOT NULL,
    batch INTEGER NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (fp, key)
) WITHOUT ROWID;
"""
# Above this many keys a lookup scans the fingerprint's whole index instead
# of issuing many ``IN (...)`` queries, when that index is not much larger.
_PAGE_SIZE = 65536
_SCAN_MIN_KEYS = 4 * _SQL_BATCH
_SELECT_CODES = f"SELECT key, (batch << {_ROW_BITS}) | row FROM entries "


def _named_error(filename, err):
    """An SQLite failure as an error that names the file and the way out."""
    text = str(err)
    if "readonly" in text or "unable to open" in text or "access permission" in text:
        return PermissionError(
            f"the embedding cache {filename!r} cannot be written ({text}); choose a "
            "writable folder, or cache=None."
        )
    if "disk is full" in text or "disk I/O" in text:
        return OSError(
            f"the embedding cache {filename!r} could not be written: {text}; free disk space, "
            "or clear() the cache, or use another folder."
        )
    if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
        return sqlite3.DatabaseError(
            f"{filename!r} is not a readable embedding cache ({text}); delete the folder or "
            "choose another one."
        )
    return type(err)(f"embedding cache {filename!r}: {text}")


def _naming_the_file(method):
    """Wrap SQLite errors of a store method (other than lock waits) with the file's name."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            if "locked" in str(err) or "busy" in str(err) or self.filename in str(err):
                raise
            raise _named_error(self.filename, err) from err

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class _SQLiteStore:
    """One SQLite file in WAL mode; one transaction per stored batch."""

    def __init__(self, filename, timeout):
        self.filename = filename
        self.timeout = timeout
        self.lock = threading.RLock()
        self._conn = None
        self._pid = None

    def connection(self):
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def close(self):
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _open(self):
        folder = os.path.dirname(self.filename)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create the cache folder {folder!r}: {err}") from err
        try:
            conn = sqlite3.connect(
                self.filename,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise _named_error(self.filename, err) from err
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._setup(conn)
                return conn
            except sqlite3.OperationalError as err:
                # Switching to WAL and creating tables race when several
                # processes open a new folder at once.
                if "locked" not in str(err) and "busy" not in str(err):
                    conn.close()
                    raise _named_error(self.filename, err) from err
                if time.monotonic() > deadline:
                    conn.close()
                    raise TimeoutError(
                        f"the embedding cache {self.filename!r} stayed locked for "
                        f"{self.timeout:.0f} s; another process holds it, or raise timeout."
                    ) from err
                time.sleep(0.05)
            except sqlite3.DatabaseError as err:
                conn.close()
                raise sqlite3.DatabaseError(
                    f"{self.filename!r} is not a readable embedding cache ({err}); delete "
                    "the folder or choose another one."
                ) from err

    def _setup(self, conn):
        # Large pages make reading big vector blobs faster (fewer overflow
        # pages to walk); only takes effect while the file is still empty.
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"database is locked (journal mode {mode})")
        # In WAL mode NORMAL survives a killed process (only a power cut can
        # lose the last commits) and never leaves the file inconsistent.
        conn.execute("PRAGMA synchronous=NORMAL")
        with _transaction(conn, "BEGIN IMMEDIATE"):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(_SCHEMA_VERSION),)
                )
            elif row[0] != str(_SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"schema version {row[0]}, this embedxfer reads {_SCHEMA_VERSION}"
                )

    def _layout(self, conn, fingerprint):
        row = conn.execute(
            "SELECT id, n_features, dtype FROM fingerprints WHERE fingerprint=?", (fingerprint,)
        ).fetchone()
        if row is None:
            return None
        problem = _layout_problem(row[1], row[2])
        if problem is not None:
            # Checked before anything is allocated from these numbers.
            raise sqlite3.DatabaseError(
                f"{self.filename!r} is not a readable embedding cache (fingerprint "
                f"{fingerprint!r}: {problem}); delete the folder or choose another one."
            )
        return (row[0], row[1], np.dtype(row[2]))

    @_naming_the_file
    def fetch(self, fingerprint, keys):
        found = np.zeros(len(keys), dtype=bool)
        with self.lock:
            conn = self.connection()
            # One read transaction: a consistent snapshot even while another
            # process writes or clears.
            with _transaction(conn, "BEGIN"):
                layout = self._layout(conn, fingerprint)
                if layout is None:
                    return None, found
                fp_id, n_features, dtype = layout
                where = self._locate(conn, fp_id, keys)
                get = where.get
                codes = np.fromiter((get(key, -1) for key in keys), np.int64, len(keys))
                vectors = np.zeros((len(keys), n_features), dtype=dtype)
                self._gather(conn, codes, vectors, found)
        return vectors, found

    def _locate(self, conn, fp_id, keys):
        """Map each stored key among ``keys`` to ``batch << 32 | row``."""
        if len(keys) >= _SCAN_MIN_KEYS:
            n_stored = conn.execute("SELECT count(*) FROM entries WHERE fp=?", (fp_id,)).fetchone()[
                0
            ]
            if n_stored <= 4 * len(keys):
                return dict(conn.execute(_SELECT_CODES + "WHERE fp=?", (fp_id,)))
        where = {}
        for start in range(0, len(keys), _SQL_BATCH):
            chunk = keys[start : start + _SQL_BATCH]
            where.update(
                conn.execute(
                    _SELECT_CODES + f"WHERE fp=? AND key IN ({','.join('?' * len(chunk))})",
                    (fp_id, *chunk),
                )
            )
        return where

    @staticmethod
    def _gather(conn, codes, vectors, found):
        n_features = vectors.shape[1]
        row_bytes = n_features * vectors.dtype.itemsize
        targets = np.flatnonzero(codes >= 0)
        if not targets.size:
            return
        codes = codes[targets]
        order = np.argsort(codes >> _ROW_BITS, kind="stable")
        targets, codes = targets[order], codes[order]
        ids, starts = np.unique(codes >> _ROW_BITS, return_index=True)
        bounds = dict(zip(ids.tolist(), zip(starts, [*starts[1:], codes.size])))
        rows = codes & ((1 << _ROW_BITS) - 1)
        for first in range(0, ids.size, _SQL_BATCH):
            chunk = ids[first : first + _SQL_BATCH].tolist()
            # Iterated lazily: one batch blob in memory at a time.
            cursor = conn.execute(
                f"SELECT id, n_rows, data FROM batches WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for batch_id, n_rows, data in cursor:
                start, stop = bounds[batch_id]
                # SQLite commits whole transactions, so a blob of the wrong
                # size cannot come from an interrupted write; the checks still
                # guard against a file edited by hand.
                if len(data) != n_rows * row_bytes or rows[start:stop].max() >= n_rows:
                    continue
                block = np.frombuffer(data, dtype=vectors.dtype).reshape(n_rows, n_features)
                vectors[targets[start:stop]] = block[rows[start:stop]]
                found[targets[start:stop]] = True

    @_naming_the_file
    def put(self, fingerprint, keys, vectors):
        n_features, dtype = vectors.shape[1], vectors.dtype
        if dtype.byteorder == ">":
            vectors = vectors.astype(dtype.newbyteorder("<"))
            dtype = vectors.dtype
        with self.lock:
            conn = self.connection()
            with _transaction(conn, "BEGIN IMMEDIATE"):
                layout = self._layout(conn, fingerprint)
                if layout is None:
                    conn.execute(
                        "INSERT INTO fingerprints (fingerprint, n_features, dtype, created) "
                        "VALUES (?, ?, ?, ?)",
                        (fingerprint, n_features, dtype.str, time.time()),
                    )
                    layout = self._layout(conn, fingerprint)
                fp_id = layout[0]
                if (layout[1], layout[2]) != (n_features, dtype):
                    raise _shape_conflict(fingerprint, layout[1:], (n_features, dtype))
                batch_id = conn.execute(
                    "INSERT INTO batches (fp, n_rows, data) VALUES (?, ?, ?)",
                    (fp_id, len(keys), vectors.tobytes()),
                ).lastrowid
                before = conn.total_changes
                # Keys another process stored meanwhile keep their first vector.
                conn.executemany(
                    f"INSERT OR IGNORE INTO entries (fp, key, batch, row) "
                    f"VALUES ({fp_id}, ?, {batch_id}, ?)",
                    zip(keys, range(len(keys))),
                )
                if conn.total_changes == before:
                    conn.execute("DELETE FROM batches WHERE id=?", (batch_id,))

    @_naming_the_file
    def clear(self, fingerprint):
        with self.lock:
            conn = self.connection()
            with _transaction(conn, "BEGIN IMMEDIATE"):
                if fingerprint is None:
                    for table in ("entries", "batches", "fingerprints"):
                        conn.execute(f"DELETE FROM {table}")
                else:
                    layout = self._layout(conn, fingerprint)
                    if layout is not None:
                        conn.execute("DELETE FROM entries WHERE fp=?", (layout[0],))
                        conn.execute("DELETE FROM batches WHERE fp=?", (layout[0],))
                        conn.execute("DELETE FROM fingerprints WHERE id=?", (layout[0],))
            if fingerprint is None:
                try:  # give the space back; skipped while another process reads
                    conn.execute("VACUUM")
                except sqlite3.OperationalError:
                    pass

    @_naming_the_file
    def count(self):
        with self.lock:
            return self.connection().execute("SELECT count(*) FROM entries").fetchone()[0]

    @_naming_the_file
    def info(self):
        with self.lock:
            rows = (
                self.connection()
                .execute(
                    "SELECT f.fingerprint, f.n_features, f.dtype, "
                    "(SELECT count(*) FROM entries e WHERE e.fp = f.id) "
                    "FROM fingerprints f ORDER BY f.id"
                )
                .fetchall()
            )
        return [
            {
                "fingerprint": fingerprint,
                "entries": count,
                "n_features": n_features,
                "dtype": str(np.dtype(dtype)),
                "nbytes": count * n_features * np.dtype(dtype).itemsize,
            }
            for fingerprint, n_features, dtype, count in rows
        ]

    def stats(self):
        info = self.info()
        disk_bytes = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                disk_bytes += os.path.getsize(self.filename + suffix)
            except OSError:
                pass
        return {
            "entries": sum(item["entries"] for item in info),
            "nbytes": sum(item["nbytes"] for item in info),
            "disk_bytes": disk_bytes,
        }


class _transaction:
    """``BEGIN ... COMMIT``, rolled back on any error (a connection in autocommit mode)."""

    def __init__(self, conn, begin):
        self.conn = conn
        self.begin = begin

    def __enter__(self):
        self.conn.execute(self.begin)
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        return False
