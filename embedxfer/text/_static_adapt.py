"""Corpus adaptation of a static table: pooled token vectors pulled towards the teacher.

With ``P`` the (documents x tokens used) matrix of mean pooling, ``T0`` the
distilled vectors of those tokens and ``Y`` the teacher's document vectors
brought into the table's space (the table's PCA projection, and one global
scale that matches their size to the pooled static vectors), the adapted
vectors ``T0 + D`` minimise

    ||P (T0 + D) - Y||^2 + lam ||D||^2,

a ridge problem in ``D`` solved for every dimension at once by conjugate
gradients on ``(P'P + lam I) D = P'(Y - P T0)`` (sparse products only).
``lam`` is ``alpha`` times the mean diagonal of ``P'P``, so ``alpha`` does
not depend on the corpus size or the document lengths.
"""

import numpy as np
import scipy.sparse as sp

_MAX_ITER = 200
_TOLERANCE = 1e-4


def adapt_rows(table, ids, doc_ptr, teacher, *, alpha):
    """Adapted vectors of the table rows the documents use.

    Parameters
    ----------
    table : embedxfer.text._static_tables.StaticTable
    ids, doc_ptr : ndarray of int64
        The documents' token rows (``doc_ptr`` offsets, one more than documents).
    teacher : ndarray of shape (n_documents, hidden_size)
        The encoder's vectors of the same documents.
    alpha : float
        Strength of the pull towards the distilled vectors.

    Returns
    -------
    rows : ndarray of int64
        The rows changed.
    vectors : ndarray of float32, shape (len(rows), n_components)
    """
    n_docs = len(doc_ptr) - 1
    rows, local = np.unique(ids, return_inverse=True)
    if not len(rows):
        return rows.astype(np.int64), np.zeros((0, table.vectors.shape[1]), np.float32)
    counts = np.diff(doc_ptr)
    weights = 1.0 / np.repeat(np.maximum(counts, 1), counts).astype(np.float64)
    pool = sp.csr_matrix((weights, local, doc_ptr), shape=(n_docs, len(rows)))
    pool.sum_duplicates()
    base = np.asarray(table.vectors[rows], dtype=np.float64)
    static = pool @ base
    target = (np.asarray(teacher, np.float64) - table.mean) @ np.asarray(
        table.components, np.float64
    ).T
    has_tokens = counts > 0
    scale = _matching_scale(target[has_tokens], static[has_tokens])
    residual = np.where(has_tokens[:, None], scale * target - static, 0.0)
    gram_diagonal = np.asarray(pool.multiply(pool).sum(axis=0)).ravel()
    lam = float(alpha) * float(gram_diagonal.mean())
    delta = _ridge_cg(pool, pool.T @ residual, lam)
    return rows.astype(np.int64), (base + delta).astype(np.float32)


def _matching_scale(target, static):
    """The factor ``s`` minimising ``||s * target - static||``."""
    denominator = float(np.sum(target * target))
    return float(np.sum(target * static)) / denominator if denominator > 0 else 0.0


def _ridge_cg(pool, rhs, lam):
    """Solve ``(P'P + lam I) D = rhs`` column by column, all columns together."""
    solution = np.zeros_like(rhs)
    residual = rhs.copy()
    direction = residual.copy()
    norms = np.einsum("ij,ij->j", residual, residual)
    start = np.sqrt(norms.sum())
    if start == 0:
        return solution
    for _ in range(_MAX_ITER):
        product = pool.T @ (pool @ direction) + lam * direction
        curvature = np.einsum("ij,ij->j", direction, product)
        step = np.divide(norms, curvature, out=np.zeros_like(norms), where=curvature > 0)
        solution += direction * step
        residual -= product * step
        new_norms = np.einsum("ij,ij->j", residual, residual)
        if np.sqrt(new_norms.sum()) <= _TOLERANCE * start:
            break
        ratio = np.divide(new_norms, norms, out=np.zeros_like(norms), where=norms > 0)
        direction = residual + direction * ratio
        norms = new_norms
    return solution
