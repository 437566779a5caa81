"""Per-word weights learned in ``fit``: TF-IDF, SIF and uSIF statistics.

References: Arora, Liang & Ma (2017), "A simple but tough-to-beat baseline
for sentence embeddings" (SIF); Ethayarajh (2018), "Unsupervised random walk
sentence embeddings" (uSIF).
"""

import numpy as np

# ``WordVectorEmbedder(weighting=...)``; None weighs every token alike.
WEIGHTINGS = ("tfidf", "sif", "usif")


def document_frequency(ids, doc_ptr, vocab_size):
    """Number of documents each vocabulary row occurs in (``ids`` without OOV)."""
    doc_of_token = np.repeat(np.arange(len(doc_ptr) - 1, dtype=np.int64), np.diff(doc_ptr))
    pairs = np.unique(doc_of_token * vocab_size + ids)
    return np.bincount(pairs % vocab_size, minlength=vocab_size)


def smooth_idf(df, n_docs):
    """scikit-learn's smoothed IDF: ``log((1 + n) / (1 + df)) + 1``."""
    return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0


def count_probabilities(counts):
    """Unigram probabilities from per-row token counts (all zeros stay zeros)."""
    counts = np.asarray(counts).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def rank_probabilities(vocab_size):
    """Zipf estimate of word probabilities from frequency rank.

    Vector files (word2vec, GloVe, fastText) list words by decreasing corpus
    frequency; Zipf's law gives ``p(rank r) = 1 / (r * H_V)``.
    """
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    return 1.0 / (ranks * (np.log(vocab_size) + 0.5772156649))


def sif_weights(p, a):
    """SIF weight ``a / (a + p(w))``."""
    return a / (a + p)


def usif_parameter(p, avg_length):
    """uSIF's ``a`` from the vocabulary and the average document length.

    Words whose probability exceeds the chance of appearing at least once in
    a document of average length count as frequent; ``a`` follows from their
    share (Ethayarajh 2018, section 4).
    """
    vocab_size = int(np.count_nonzero(p)) or len(p)
    threshold = 1.0 - (1.0 - 1.0 / vocab_size) ** max(avg_length, 1.0)
    alpha = np.count_nonzero(p > threshold) / vocab_size
    alpha = min(max(alpha, 1e-6), 1 - 1e-6)
    z = 0.5 * vocab_size
    return (1.0 - alpha) / (alpha * z)


def usif_weights(p, a):
    """uSIF weight ``a / (a / 2 + p(w))``."""
    return a / (0.5 * a + p)


def principal_components(X, n_components):
    """Top right singular vectors of ``X`` (uncentred, as SIF does) and their weights.

    Returns ``(components, weights)`` with ``weights`` the share of squared
    singular values, used by uSIF to scale each removal. At most the rank of
    ``X`` components: beyond it, singular vectors are directions of rounding
    noise.
    """
    X = np.asarray(X, dtype=np.float64)
    X = X[np.any(X != 0, axis=1)]
    if len(X) == 0:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.float32)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    k = min(n_components, numerical_rank(s, X.shape[1]))
    # Fix the sign so that refitting on the same data gives the same vectors.
    signs = np.sign(vt[:k, np.argmax(np.abs(vt[:k]), axis=1)].diagonal())
    signs[signs == 0] = 1
    components = vt[:k] * signs[:, None]
    weights = s[:k] ** 2 / np.sum(s[:k] ** 2)
    return components.astype(np.float32), weights.astype(np.float32)


def numerical_rank(s, n_features):
    """How many of the descending singular values ``s`` stand above float32 rounding.

    The pooled vectors hold float32 values, each rounded by about ``eps``
    of its size; what that rounding adds to the singular values stays below
    ``s[0] * n_features * eps`` however many documents there are, so the
    tolerance grows with the width of the vectors, not with their number (as
    ``numpy.linalg.matrix_rank``'s, ``max(shape)``, would: at a million
    documents it would take real components for noise).
    """
    if len(s) == 0 or s[0] <= 0:
        return 0
    return int(np.count_nonzero(s > s[0] * n_features * np.finfo(np.float32).eps))


# Rows of X per block of remove_components (a few MB at 300 dimensions).
_BLOCK_ROWS = 2048


# A row whose norm falls below this share of its norm by the removal lay in the
# components: what is left is rounding error, made a zero row (EmptyDocumentWarning,
# and normalising leaves it zero instead of scaling the noise to unit length).
VANISHED = 1e-4


def remove_components(X, components, weights=None):
    """Subtract each row's projection on ``components`` (optionally scaled), in place.

    In blocks of rows, so that the projection subtracted stays in the
    processor's cache instead of being a second array the size of ``X``.
    Rows left with under ``VANISHED`` of their norm become zeros.
    """
    if components.size == 0:
        return X
    for start in range(0, len(X), _BLOCK_ROWS):
        block = X[start : start + _BLOCK_ROWS]
        before = _squared_norms(block)
        proj = block @ components.T
        if weights is not None:
            proj *= weights
        block -= proj @ components
        after = _squared_norms(block)
        block[after <= before * VANISHED**2] = 0
    return X


def _squared_norms(block):
    # float16 sums of squares would overflow.
    return np.einsum("ij,ij->i", block, block, dtype=np.promote_types(block.dtype, np.float32))
