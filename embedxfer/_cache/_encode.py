"""Encoding through a cache: ``encode_with_cache``, and the ``cache`` parameter's values."""

import os

import numpy as np

from .._core.param_validation import Hint
from .._core.registry import get_or_load
from ._embedding_cache import EmbeddingCache, _check_fingerprint, _check_folder, _check_vectors
from ._store import hash_texts

_DEFAULT_CHUNK_SIZE = 1024


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
