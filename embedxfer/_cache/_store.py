"""What every embedding cache store is: the interface, the keys and the shared checks.

A store maps ``(fingerprint, key)`` to one vector, where a key is the 16-byte
digest of a document's text (:func:`hash_texts`). Two stores implement
:class:`CacheStore`: :class:`~._memory.MemoryStore` (bounded, in memory) and
:class:`~._sqlite.SQLiteStore` (a file on disk); :class:`EmbeddingCache`
(``_embedding_cache``) holds one and adds the counters and the checks of its
public API.
"""

import abc
import hashlib

import numpy as np

# A stored row's place is one integer: ``(block or batch) << _ROW_BITS | row``.
_ROW_BITS = 32
# A document's key: the BLAKE2b digest of its text (hash_texts).
_KEY_BYTES = 16


class CacheStore(abc.ABC):
    """Vectors by ``(fingerprint, key)``; what :class:`EmbeddingCache` needs of a store.

    All vectors of one fingerprint share one layout ``(n_features, dtype)``;
    a store refuses another (:func:`shape_conflict`) and never returns a
    stored layout that ``put`` could not have written (:func:`layout_problem`).
    Methods are safe to call from several threads.
    """

    @abc.abstractmethod
    def fetch(self, fingerprint, keys):
        """``(vectors or None, found)``: the stored rows in ``keys`` order (zeros where missing)."""

    @abc.abstractmethod
    def put(self, fingerprint, keys, vectors):
        """Store one row of ``vectors`` per key; keys already stored keep their first vector."""

    @abc.abstractmethod
    def clear(self, fingerprint):
        """Remove the vectors of ``fingerprint``, or every vector when it is None."""

    @abc.abstractmethod
    def count(self):
        """How many vectors are stored, all fingerprints together."""

    @abc.abstractmethod
    def info(self):
        """One dict per fingerprint, keys ``fingerprint``, ``entries``, ``n_features``,
        ``dtype`` and ``nbytes``."""

    @abc.abstractmethod
    def stats(self):
        """Sizes and counters of the store (``entries``, ``nbytes``, and its own)."""

    def close(self):
        """Release what the store holds open (reopened on next use)."""
        return None


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
        append(blake2b(data, digest_size=_KEY_BYTES).digest())
    return keys


# The most features a stored vector may claim (widest known encoders: a few thousand).
_MAX_FEATURES = 1 << 20


def layout_problem(n_features, dtype):
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


def shape_conflict(fingerprint, held, got):
    return ValueError(
        f"fingerprint {fingerprint!r} already holds {held[1]} vectors of {held[0]} features, "
        f"got {got[1]} vectors of {got[0]}; the fingerprint must change whenever the vectors "
        "change."
    )
