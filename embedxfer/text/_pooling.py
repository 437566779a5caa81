"""Pooling kernels: token rows + weights -> one vector per document.

Where the package was built with its compiled kernels (``_kernels.c``),
sums, weighted sums, max and min run there: one pass over each document's
rows, four rows at a time, with the next rows fetched ahead from memory (and,
on x86-64 Linux, the processor's widest vector unit), at about the time it
takes to read the rows once. The sums are scipy's to the bit (each element adds its rows in
order; no fused multiply-add), the max and min numpy's, NaN included.

Without them (an install without a C compiler), weighted sums are one sparse
(documents x vocabulary) by dense (vocabulary x dimensions) product, and max
and min sweep over token positions, so each numpy call handles every
document that is still that long. Both paths release the GIL, so large
batches are split by documents over a few threads (as many as the usable
cores, at most ``OMP_NUM_THREADS``, which joblib's workers set to avoid
oversubscription); each document is computed the same way whatever the
split, so the results do not depend on it.

When torch is already imported and the compiled kernels are not there,
weighted sums of large batches on the CPU run through its ``embedding_bag``
(2.5-3x faster than scipy's product, which is compiled for the processors'
common subset); sums are the same to the bit, weighted sums may differ in
the last bit (a fused multiply-add). torch is never imported for this: its
import costs more than the pooling of a large batch gains. Processes forked
after torch was imported keep scipy's product (OpenMP threads and fork do
not mix).
"""

import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from .._core.threads import run_parallel, usable_threads
from ._native import kernels

# Poolings of word vectors (``WordVectorEmbedder(pooling=...)``; several may be
# joined by "+").
WORD_POOLINGS = ("mean", "sum", "max", "min")
# Poolings of a transformer's token states (``SentenceEmbedder(pooling=...)``):
# "model" is the pooling the sentence-transformers checkpoint was trained with.
SENTENCE_POOLINGS = ("mean", "cls", "max", "model")
# How the windows of a document longer than the model's limit are combined.
CHUNK_POOLINGS = ("mean", "max")

# Below this many values read (tokens x dimensions) a batch runs in the
# calling thread: starting threads would cost more than they save.
_PARALLEL_WORK = 1 << 24
# Bytes of the running result of one block of the max / min sweep, small
# enough to stay in the processor's cache.
_SWEEP_BYTES = 1 << 18
# Whether weighted sums may use torch's kernel when torch is imported (tests
# and benchmarks turn it off to compare the two).
_TORCH_KERNELS = True


def n_threads(work):
    """Threads for a kernel that reads ``work`` values (e.g. tokens x dimensions)."""
    if work < _PARALLEL_WORK:
        return 1
    return usable_threads()


def _split_documents(doc_ptr, parts):
    """Document offsets cutting ``doc_ptr`` into ``parts`` runs of about equal tokens."""
    n_docs = len(doc_ptr) - 1
    targets = np.linspace(0, doc_ptr[-1], parts + 1)[1:-1]
    cuts = np.searchsorted(doc_ptr, targets).clip(0, n_docs)
    return np.unique(np.concatenate(([0], cuts, [n_docs])))


def weighted_sum(ids, doc_ptr, vectors, weights=None, extra=None, out=None):
    """``sum_t w_t * vectors[ids_t]`` for each document.

    Parameters
    ----------
    ids : ndarray of int, shape (n_tokens,)
        Rows of ``vectors``; rows ``>= len(vectors)`` index ``extra``.
    doc_ptr : ndarray of int, shape (n_docs + 1,)
        Offsets of each document's tokens in ``ids``.
    vectors : ndarray of float32 or float16, shape (vocab_size, dim)
        float16 rows are widened to float32 (exactly) as they are read; the
        sums are float32.
    weights : ndarray of float32, shape (n_tokens,), default=None
        Per-token weights; ones when None.
    extra : ndarray of float32 or float16, shape (n_extra, dim), default=None
        Vectors computed for this batch only (fastText subwords).
    out : ndarray of float32, shape (n_docs, dim), default=None
        Where the compiled kernel writes the result (C-ordered), instead of
        a new array; the other paths ignore it.
    """
    n_docs = len(doc_ptr) - 1
    vocab_size = len(vectors)
    work = len(ids) * vectors.shape[1]
    native = kernels()
    if native is not None and _compiled_fits(vectors, extra):
        return _compiled_pooling(
            native.pool_sum, ids, doc_ptr, vectors, extra, weights, out, per_token=True
        )
    if not _numpy_fits(vectors, extra):
        return _on_gathered_rows(weighted_sum, ids, doc_ptr, vectors, extra, weights)
    torch = _imported_torch() if work >= _PARALLEL_WORK else None
    if torch is not None and (extra is None or not len(extra)) and n_docs:
        table = _cpu_tensor(torch, vectors)
        if table is not None:
            return torch_pool(ids, doc_ptr, table, "sum", weights=weights)
    if weights is None:
        weights = np.ones(len(ids), dtype=np.float32)
    index_dtype = (
        np.int32 if vocab_size + (0 if extra is None else len(extra)) < 2**31 else np.int64
    )
    indices = ids.astype(index_dtype, copy=False)
    if extra is not None and len(extra):
        matrix = sp.csr_matrix((weights, indices, doc_ptr), shape=(n_docs, vocab_size + len(extra)))
        out = np.asarray(matrix[:, :vocab_size] @ vectors, dtype=np.float32)
        out += matrix[:, vocab_size:] @ extra
        return out
    n = n_threads(work)
    if n == 1:
        matrix = sp.csr_matrix((weights, indices, doc_ptr), shape=(n_docs, vocab_size))
        return np.asarray(matrix @ vectors, dtype=np.float32)
    indptr = doc_ptr.astype(index_dtype, copy=False)
    out = np.empty((n_docs, vectors.shape[1]), dtype=np.float32)

    def rows(start, stop):
        first, last = indptr[start], indptr[stop]
        matrix = sp.csr_matrix(
            (weights[first:last], indices[first:last], indptr[start : stop + 1] - first),
            shape=(stop - start, vocab_size),
        )
        out[start:stop] = matrix @ vectors

    bounds = _split_documents(doc_ptr, n).tolist()
    run_parallel(rows, list(zip(bounds[:-1], bounds[1:])))
    return out


def _compiled_fits(vectors, extra):
    """Whether the compiled kernels read these tables as they are (no copy of the table)."""
    return vectors.dtype in (np.float32, np.float16) and all(
        table is None
        or (table.dtype == vectors.dtype and table.ndim == 2 and table.flags.c_contiguous)
        for table in (vectors, extra)
    )


def _numpy_fits(vectors, extra):
    """Whether the numpy code reads these tables as they are: all but float16 ones,
    which scipy's product would widen whole."""
    return all(table is None or table.dtype != np.float16 for table in (vectors, extra))


# float32 values gathered at a time from a float16 table by the numpy code: 16 MB.
_GATHERED_VALUES = 1 << 22


def _on_gathered_rows(pool, ids, doc_ptr, vectors, extra, last_arg):
    """``pool(ids, doc_ptr, rows, last)`` over runs of documents, each run's rows
    first gathered as float32 (``last_arg``: per-token weights, sliced with the
    run, or an extreme's operation).

    float16 rows widen exactly, and each document adds its rows in the same
    order, so the results are those of the compiled kernels over the float16
    table; memory holds one run's rows (at least one document's) at a time.
    """
    n_docs = len(doc_ptr) - 1
    dim = vectors.shape[1]
    out = np.empty((n_docs, dim), dtype=np.float32)
    rows = _RowSource(vectors, extra)
    per_run = max(1, _GATHERED_VALUES // max(dim, 1))
    cuts = np.searchsorted(doc_ptr, np.arange(per_run, doc_ptr[-1], per_run), side="right") - 1
    bounds = np.unique(np.concatenate(([0], cuts.clip(1, n_docs), [n_docs]))).tolist()
    for start, stop in zip(bounds[:-1], bounds[1:]):
        first, last = int(doc_ptr[start]), int(doc_ptr[stop])
        gathered = rows.gather(ids[first:last])
        local = np.arange(last - first, dtype=np.int64)
        own = last_arg[first:last] if isinstance(last_arg, np.ndarray) else last_arg
        out[start:stop] = pool(local, doc_ptr[start : stop + 1] - first, gathered, own)
    return out


def _compiled_pooling(kernel, ids, doc_ptr, vectors, extra, last, out, per_token=False):
    """A compiled pooling kernel over runs of documents, one per thread.

    ``last`` is the kernel's argument before ``out``: the weights of a sum
    (``per_token``, or None), or whether an extreme is the maximum.
    """
    n_docs = len(doc_ptr) - 1
    shape = (n_docs, vectors.shape[1])
    if out is None or out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        out = np.empty(shape, dtype=np.float32)
    if not n_docs:
        return out
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    doc_ptr = np.ascontiguousarray(doc_ptr, dtype=np.int64)
    if extra is not None and not len(extra):
        extra = None
    per_token = per_token and last is not None
    if per_token:
        last = np.ascontiguousarray(last, dtype=np.float32)

    def rows(start, stop):
        first, end = doc_ptr[start], doc_ptr[stop]
        own = last[first:end] if per_token else last
        kernel(
            vectors, extra, ids[first:end], doc_ptr[start : stop + 1] - first, own, out[start:stop]
        )

    bounds = _split_documents(doc_ptr, n_threads(len(ids) * vectors.shape[1])).tolist()
    run_parallel(rows, list(zip(bounds[:-1], bounds[1:])))
    return out


def _imported_torch():
    """torch when the process has imported it already (and it is allowed), else None."""
    torch = sys.modules.get("torch")
    if torch is None or not _TORCH_KERNELS or _FORKED or not hasattr(torch, "from_numpy"):
        return None
    return torch


def _after_fork_in_child():
    global _FORKED
    _FORKED = True


# A process forked from one that ran torch's (OpenMP) threads may hang in
# them: forked children keep scipy's product.
_FORKED = False
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cpu_tensor(torch, vectors):
    """A CPU tensor sharing ``vectors``' memory; None unless they are C-ordered float32."""
    if vectors.dtype != np.float32 or not vectors.flags.c_contiguous:
        return None  # a copy of the whole table per batch would cost more than it saves
    array = np.asarray(vectors)
    if array.flags.writeable:
        return torch.from_numpy(array)
    # A memory-mapped file opened read-only: torch warns that writing to the
    # tensor would be undefined; the kernel only reads it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable", category=UserWarning)
        return torch.from_numpy(array)


def segment_extreme(ids, doc_ptr, vectors, op="max", extra=None, out=None):
    """Element-wise max (or min) over each document's token vectors; zeros if empty.

    ``out`` is as for ``weighted_sum``.
    """
    native = kernels()
    if native is not None and _compiled_fits(vectors, extra):
        return _compiled_pooling(
            native.pool_extreme, ids, doc_ptr, vectors, extra, op == "max", out
        )
    if not _numpy_fits(vectors, extra):
        return _on_gathered_rows(segment_extreme, ids, doc_ptr, vectors, extra, op)
    ufunc = np.maximum if op == "max" else np.minimum
    n_docs = len(doc_ptr) - 1
    dim = vectors.shape[1]
    out = np.zeros((n_docs, dim), dtype=np.float32)
    if n_docs == 0:
        return out
    lengths = np.diff(doc_ptr)
    # Longest first, so that the documents longer than a position are a
    # prefix of each block.
    order = np.argsort(-lengths, kind="stable")
    table = _RowSource(vectors, extra)
    size = int(np.clip(_SWEEP_BYTES // (4 * dim), 64, 8192))

    def sweep(blocks):
        result = np.empty((size, dim), dtype=np.float32)
        buffer = np.empty((size, dim), dtype=np.float32)
        for block in blocks:
            docs = order[block * size : (block + 1) * size]
            block_lengths = lengths[docs]
            longest = int(block_lengths[0])
            if longest == 0:
                continue
            # How many documents are still running at each position.
            alive = np.searchsorted(-block_lengths, -np.arange(longest), side="left")
            starts = doc_ptr[docs]
            k = int(alive[0])
            table.take(ids[starts[:k]], out=result[:k])
            for position in range(1, longest):
                k = int(alive[position])
                table.take(ids[starts[:k] + position], out=buffer[:k])
                ufunc(result[:k], buffer[:k], out=result[:k])
            n_alive = int(alive[0])
            out[docs[:n_alive]] = result[:n_alive]

    # Blocks of long and of short documents alternate between the threads.
    n_blocks = -(-n_docs // size)
    n = min(n_threads(len(ids) * dim), n_blocks)
    run_parallel(sweep, [(range(t, n_blocks, n),) for t in range(max(n, 1))])
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

    def gather(self, rows):
        """The rows as a new float32 array."""
        out = np.empty((len(rows), self.vectors.shape[1]), dtype=np.float32)
        if self.extra is None or len(self.extra) == 0:
            out[...] = self.vectors[rows]
        else:
            self.take(rows, out)
        return out


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
