"""Pooling kernels: token rows + weights -> one vector per document.

Weighted sums are one sparse (documents x vocabulary) by dense (vocabulary x
dimensions) product; max and min sweep over token positions, so each numpy
call handles every document that is still that long.
"""

import numpy as np
import scipy.sparse as sp

POOLINGS = ("mean", "sum", "max", "min")


def weighted_sum(ids, doc_ptr, vectors, weights=None, extra=None):
    """``sum_t w_t * vectors[ids_t]`` for each document.

    Parameters
    ----------
    ids : ndarray of int, shape (n_tokens,)
        Rows of ``vectors``; rows ``>= len(vectors)`` index ``extra``.
    doc_ptr : ndarray of int, shape (n_docs + 1,)
        Offsets of each document's tokens in ``ids``.
    vectors : ndarray of float32, shape (vocab_size, dim)
    weights : ndarray of float32, shape (n_tokens,), default=None
        Per-token weights; ones when None.
    extra : ndarray of float32, shape (n_extra, dim), default=None
        Vectors computed for this batch only (fastText subwords).
    """
    n_docs = len(doc_ptr) - 1
    vocab_size = len(vectors)
    if weights is None:
        weights = np.ones(len(ids), dtype=np.float32)
    index_dtype = np.int32 if vocab_size + (0 if extra is None else len(extra)) < 2**31 else np.int64
    if extra is None or len(extra) == 0:
        matrix = sp.csr_matrix(
            (weights, ids.astype(index_dtype, copy=False), doc_ptr), shape=(n_docs, vocab_size)
        )
        return np.asarray(matrix @ vectors, dtype=np.float32)
    matrix = sp.csr_matrix(
        (weights, ids.astype(index_dtype, copy=False), doc_ptr),
        shape=(n_docs, vocab_size + len(extra)),
    )
    out = np.asarray(matrix[:, :vocab_size] @ vectors, dtype=np.float32)
    out += matrix[:, vocab_size:] @ extra
    return out


def segment_extreme(ids, doc_ptr, vectors, op="max", extra=None):
    """Element-wise max (or min) over each document's token vectors; zeros if empty."""
    ufunc = np.maximum if op == "max" else np.minimum
    n_docs = len(doc_ptr) - 1
    dim = vectors.shape[1]
    lengths = np.diff(doc_ptr)
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    starts = doc_ptr[:-1][order]
    result = np.zeros((n_docs, dim), dtype=np.float32)
    buffer = np.empty((n_docs, dim), dtype=np.float32)
    table = _RowSource(vectors, extra)
    longest = int(sorted_lengths[0]) if n_docs else 0
    negated = -sorted_lengths
    for position in range(longest):
        # Documents are sorted longest first: those longer than `position` are a prefix.
        k = int(np.searchsorted(negated, -position, side="left"))
        rows = ids[starts[:k] + position]
        if position == 0:
            table.take(rows, out=result[:k])
        else:
            table.take(rows, out=buffer[:k])
            ufunc(result[:k], buffer[:k], out=result[:k])
    out = np.empty_like(result)
    out[order] = result
    return out


class _RowSource:
    """Gather rows from the vectors, or from per-batch extra rows past their end."""

    def __init__(self, vectors, extra):
        self.vectors = vectors
        self.extra = extra
        self.size = len(vectors)

    def take(self, rows, out):
        if self.extra is None or len(self.extra) == 0:
            np.take(self.vectors, rows, axis=0, out=out, mode="clip")
            return
        main = rows < self.size
        out[main] = self.vectors[rows[main]]
        out[~main] = self.extra[rows[~main] - self.size]


def torch_pool(ids, doc_ptr, table, mode, weights=None):
    """The same pooling on a torch device with ``embedding_bag``.

    ``table`` is a torch tensor of vectors already on the device. Returns a
    float32 numpy array on the CPU.
    """
    import torch
    import torch.nn.functional as F

    device = table.device
    inputs = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device)
    offsets = torch.from_numpy(np.ascontiguousarray(doc_ptr[:-1], dtype=np.int64)).to(device)
    if mode in ("max", "min"):
        source = table if mode == "max" else -table
        pooled = F.embedding_bag(inputs, source, offsets, mode="max")
        if mode == "min":
            pooled = -pooled
        # embedding_bag gives zeros for empty bags, as the CPU path does.
    else:
        w = None
        if weights is not None:
            w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).to(device)
            w = w.to(table.dtype)
        pooled = F.embedding_bag(inputs, table, offsets, mode="sum", per_sample_weights=w)
    return pooled.float().cpu().numpy()
