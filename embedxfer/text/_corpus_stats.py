"""``WordVectorEmbedder``'s corpus statistics as sums that merge across batches.

``fit`` learns IDF weights from document frequencies, SIF / uSIF weights
from word counts, and common components from the pooled training vectors.
All three are sums over documents, so they can be gathered batch by batch
(``partial_fit``) or partition by partition on a cluster
(:func:`embedxfer.dask.fit`) and merged by addition:

- document frequencies and word counts are integer sums: exact;
- the components are the top eigenvectors of the Gram matrix
  ``sum_d x_d x_d^T`` of the pooled vectors (``d x d``, whatever the corpus
  size), which are the right singular vectors ``fit`` takes from an SVD of
  the stacked vectors: equal up to floating-point rounding.

The pooled vectors depend on the final weights when these come from the
corpus (SIF / uSIF with ``word_frequency="corpus"``): a two-pass fit (counts,
then Gram) is exact; a single pass (``partial_fit``) pools each batch with the
weights known when it arrives, an approximation that improves as the counts
settle.
"""

import numpy as np

from .._core.validation import check_documents
from . import _weighting
from ._tokenize import drop_oov


class CorpusStatistics:
    """Document count, token counts, document frequencies and word counts of a corpus.

    Per-word arrays are stored compactly (the rows seen and their values),
    so a batch's statistics are small to ship and to pickle.
    """

    def __init__(self, n_docs=0, n_tokens=0, n_in_tokens=0, df=None, counts=None):
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.n_docs = int(n_docs)
        self.n_tokens = int(n_tokens)
        self.n_in_tokens = int(n_in_tokens)
        self.df = df if df is not None else empty
        self.counts = counts if counts is not None else empty

    def __add__(self, other):
        return CorpusStatistics(
            self.n_docs + other.n_docs,
            self.n_tokens + other.n_tokens,
            self.n_in_tokens + other.n_in_tokens,
            _add_sparse(self.df, other.df),
            _add_sparse(self.counts, other.counts),
        )

    def dense(self, which, size):
        ids, values = getattr(self, which)
        out = np.zeros(size, dtype=np.int64)
        out[ids] = values
        return out


class GramStatistics:
    """``sum_d x_d x_d^T`` over pooled vectors ``x_d``, and how many were non-zero."""

    def __init__(self, gram, n_nonzero=0):
        self.gram = gram
        self.n_nonzero = int(n_nonzero)

    def __add__(self, other):
        return GramStatistics(self.gram + other.gram, self.n_nonzero + other.n_nonzero)


def _add_sparse(a, b):
    ids = np.union1d(a[0], b[0])
    values = np.zeros(len(ids), dtype=np.int64)
    values[np.searchsorted(ids, a[0])] += a[1]
    values[np.searchsorted(ids, b[0])] += b[1]
    return ids, values


def _compact(dense):
    ids = np.flatnonzero(dense)
    return ids.astype(np.int64), dense[ids].astype(np.int64)


# -- the steps of a fit -----------------------------------------------------------------


def working_copy(embedder):
    """A copy of ``embedder`` sharing its values, to fit in place of it.

    A fit changes the copy's attributes and :func:`adopt` hands them over at
    the end: an error or Ctrl-C midway leaves the embedder as it was (its
    previous fit whole, or unfitted). Every step here replaces an attribute,
    never changes a shared value in place.
    """
    work = object.__new__(type(embedder))
    work.__dict__.update(vars(embedder))
    return work


def adopt(embedder, work):
    """Give ``embedder`` the state of its :func:`working_copy` ``work`` in one assignment."""
    embedder.__dict__ = vars(work)
    return embedder


def start_fit(embedder):
    """Check the tokenizer and vectors and set the fitted state that needs no corpus.

    The parameters themselves are validated by the caller (``validate_params``).
    """
    embedder._check_tokenizer_and_vectors()
    embedder._start_fit()
    apply_counts(embedder, CorpusStatistics())
    # The parameters this fitted state belongs to (see WordVectorEmbedder.transform).
    embedder._fitted_params = embedder._params_fit_depends_on()
    return embedder


def partition_counts(texts, embedder):
    """The :class:`CorpusStatistics` of one batch (the weighting decides which)."""
    docs = check_documents(texts, allow_empty=True)
    kv = embedder._keyed_vectors()
    index = embedder._vocabulary_index(kv)
    ids, doc_ptr, _ = embedder._ids(docs, index)
    in_ids, in_ptr = drop_oov(ids, doc_ptr)
    V = index.size
    df = counts = None
    if embedder.weighting == "tfidf":
        df = _compact(_weighting.document_frequency(in_ids, in_ptr, V))
    elif embedder.weighting in ("sif", "usif") and embedder.word_frequency == "corpus":
        counts = _compact(np.bincount(in_ids, minlength=V))
    return CorpusStatistics(len(docs), len(ids), len(in_ids), df, counts)


def apply_counts(embedder, stats):
    """Set the weights (and ``oov_rate_``) from merged statistics, as ``fit`` does."""
    embedder.__dict__.pop("_weight_table_cache", None)
    V = embedder.vocabulary_size_
    embedder.oov_rate_ = float(1.0 - stats.n_in_tokens / stats.n_tokens) if stats.n_tokens else 0.0
    embedder._set_corpus_weights(
        V,
        n_docs=stats.n_docs,
        n_in_tokens=stats.n_in_tokens,
        document_frequency=lambda: stats.dense("df", V),
        token_counts=lambda: stats.dense("counts", V),
    )


def needs_gram(embedder):
    """Whether the weighting removes common components (SIF, uSIF)."""
    return embedder._n_components() > 0


def partition_gram(texts, embedder):
    """The :class:`GramStatistics` of one batch's weighted mean vectors."""
    docs = check_documents(texts, allow_empty=True)
    d = embedder.vector_size_
    if not docs:
        return GramStatistics(np.zeros((d, d)), 0)
    kv = embedder._keyed_vectors()
    index = embedder._vocabulary_index(kv)
    ids, doc_ptr, _ = embedder._ids(docs, index)
    in_ids, in_ptr = drop_oov(ids, doc_ptr)
    pooled = embedder._pool(kv, index, in_ids, in_ptr, ("mean",), remove=False)
    pooled = np.asarray(pooled, dtype=np.float64)
    n_nonzero = int(np.count_nonzero(np.any(pooled != 0, axis=1)))
    return GramStatistics(pooled.T @ pooled, n_nonzero)


def apply_gram(embedder, stats):
    """Set ``components_`` from the Gram matrix's top eigenvectors (SVD of the vectors)."""
    k = min(embedder._n_components(), stats.n_nonzero, embedder.vector_size_)
    if stats.n_nonzero == 0:
        components = np.zeros((0, 0), dtype=np.float32)
        weights = np.zeros(0, dtype=np.float32)
    else:
        eigenvalues, eigenvectors = np.linalg.eigh(stats.gram)
        singular = np.sqrt(np.maximum(np.sort(eigenvalues)[::-1], 0.0))
        k = min(k, max(_weighting.numerical_rank(singular, embedder.vector_size_), 1))
        order = np.argsort(eigenvalues)[::-1][:k]
        vt = eigenvectors[:, order].T
        s2 = np.maximum(eigenvalues[order], 0.0)
        # The sign convention of _weighting.principal_components.
        signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1
        components = (vt * signs[:, None]).astype(np.float32)
        weights = (s2 / np.sum(s2)).astype(np.float32)
    embedder.__dict__.pop("_weight_table_cache", None)
    embedder.components_ = components
    embedder.component_weights_ = (
        weights if embedder.weighting == "usif" else np.ones(len(weights), np.float32)
    )


def partial_fit(embedder, X):
    """One incremental step of ``WordVectorEmbedder.partial_fit``, all of it or nothing.

    A step interrupted midway (say in the Gram pass) leaves the embedder and
    its running sums as before the batch, so retrying the batch counts it once.
    """
    docs = check_documents(X)
    state = embedder.__dict__.get("_partial_fit_state")
    if state is not None:
        embedder._check_params_unchanged()
    work = working_copy(embedder)
    if state is None:
        start_fit(work)
        d = work.vector_size_
        state = {"counts": CorpusStatistics(), "gram": GramStatistics(np.zeros((d, d)), 0)}
    counts = state["counts"] + partition_counts(docs, work)
    apply_counts(work, counts)
    gram = state["gram"]
    if needs_gram(work):
        # Pools with the weights known now (exact when they do not depend on
        # the corpus; see the module docstring).
        gram = gram + partition_gram(docs, work)
        apply_gram(work, gram)
    work._partial_fit_state = {"counts": counts, "gram": gram}
    return adopt(embedder, work)
