"""Content-addressed embedding cache: (fingerprint, text hash) -> vector.

Every embedder describes itself with a fingerprint: a string that changes
whenever anything that changes its vectors changes (source identity, the
parameters, the state learned in ``fit``). A document is keyed by a 128-bit
BLAKE2b digest of its UTF-8 text. :func:`encode_with_cache` looks every
document up, encodes only the missing ones and stores them, so that
``GridSearchCV`` over a downstream classifier and repeated runs of a script
encode each document once.

Two stores (``_memory``, ``_sqlite``) implement one interface
(``_store.CacheStore``) behind one class, :class:`EmbeddingCache`
(``_embedding_cache``); :func:`encode_with_cache` (``_encode``) is how the
embedders use it:

* in memory (the default): blocks of vectors bounded by ``max_memory_mb``,
  the least recently used evicted first;
* on disk (a folder): one SQLite database in WAL mode. Each batch of vectors
  is written in a single transaction, so a process killed half way leaves
  only whole batches behind, and concurrent writers (``n_jobs``, several
  scripts) are serialised by SQLite's locking with a busy timeout.
"""

from ._embedding_cache import EmbeddingCache, _rebuild_disk_cache, _rebuild_memory_cache
from ._encode import CACHE_CONSTRAINT, encode_with_cache, resolve_cache
from ._store import CacheStore, hash_texts

# A pickled cache is rebuilt by one of these two functions, named by their
# module: this package, where pickles written before it was split into modules
# found them too, whatever module defines them now.
for _rebuild in (_rebuild_disk_cache, _rebuild_memory_cache):
    _rebuild.__module__ = __name__
del _rebuild

__all__ = [
    "CACHE_CONSTRAINT",
    "CacheStore",
    "EmbeddingCache",
    "encode_with_cache",
    "hash_texts",
    "resolve_cache",
]
