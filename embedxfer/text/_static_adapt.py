"""Corpus adaptation of a static table: token vectors trained towards the teacher.

The table's rows are ``w_t * u_t``: ``u_t`` the token's reduced vector and
``w_t`` its Zipf weight. Adaptation trains the ``u_t`` of the tokens the
training documents use so that each document's pooled static vector (the
weighted mean ``sum_t P[d, t] w_t u_t``, exactly what ``transform``
computes) points where the encoder's own document vector points, brought
into the table's space by the table's PCA projection: the cosine loss
``1 - cos(P (w * u), Y)``, minimised by Adam over minibatches of documents
(as tokenlearn trains, here on the user's corpus), starting from the distilled
vectors. The weights stay fixed, so rows the corpus never uses keep their
distilled vectors and stay on the same scale as the adapted ones.

Why not a closed form: the ridge problem ``||P (T0 + D) - Y||^2 +
lam ||D||^2``, solved exactly by conjugate gradients, left SST-2 accuracy
where it was (0.750-0.758 against 0.756; this training reaches 0.790), and
learning one weight per token by least squares lowered it (0.71-0.72). The
likely reason: least squares spends its fit on vector lengths and on the
frequent tokens, while Adam's per-coordinate steps move rare tokens as far
as frequent ones and the cosine loss matches only directions.
"""

import numpy as np
import scipy.sparse as sp

from .._core.device import import_torch
from .._torch.loop import fused_optimizer

BATCH_SIZE = 64
SEED = 0


def adapt_rows(table, ids, doc_ptr, teacher, *, weights, epochs, learning_rate):
    """Adapted vectors of the table rows the documents use.

    Parameters
    ----------
    table : embedxfer.text._static_tables.StaticTable
    ids, doc_ptr : ndarray of int64
        The documents' token rows (``doc_ptr`` offsets, one more than documents).
    teacher : ndarray of shape (n_documents, hidden_size)
        The encoder's vectors of the same documents.
    weights : ndarray of float32, shape (vocabulary_size,)
        The Zipf weight of every row (ones without weighting).
    epochs : int
        Passes over the documents.
    learning_rate : float
        Adam's step size.

    Returns
    -------
    rows : ndarray of int64
        The rows changed.
    vectors : ndarray of float32, shape (len(rows), n_components)
        Their adapted (weighted) vectors.
    """
    torch = import_torch()
    n_docs = len(doc_ptr) - 1
    rows, local = np.unique(ids, return_inverse=True)
    width = table.vectors.shape[1]
    if not len(rows):
        return rows.astype(np.int64), np.zeros((0, width), np.float32)
    counts = np.diff(doc_ptr)
    pool = sp.csr_matrix(
        (1.0 / np.repeat(np.maximum(counts, 1), counts), local, doc_ptr),
        shape=(n_docs, len(rows)),
        dtype=np.float32,
    )
    pool.sum_duplicates()
    row_weights = np.asarray(weights, np.float32)[rows]
    # The unweighted vectors are what is trained; every used row has a positive weight.
    start = np.asarray(table.vectors[rows], np.float32) / row_weights[:, None]
    target = (np.asarray(teacher, np.float32) - table.mean) @ np.asarray(
        table.components, np.float32
    ).T
    documents = np.flatnonzero(counts > 0)
    generator = torch.Generator().manual_seed(SEED)
    vectors = torch.nn.Parameter(torch.from_numpy(start))
    scale = torch.from_numpy(row_weights)[:, None]
    target = torch.from_numpy(np.ascontiguousarray(target, np.float32))
    optimizer = fused_optimizer(torch.optim.Adam, [vectors], lr=float(learning_rate))
    for _ in range(int(epochs)):
        order = documents[torch.randperm(len(documents), generator=generator).numpy()]
        for begin in range(0, len(order), BATCH_SIZE):
            batch = order[begin : begin + BATCH_SIZE]
            pooled = torch.sparse.mm(_sparse_tensor(torch, pool[batch]), vectors * scale)
            cosine = torch.nn.functional.cosine_similarity(pooled, target[batch], dim=1)
            loss = (1.0 - cosine).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    adapted = vectors.detach().numpy() * row_weights[:, None]
    return rows.astype(np.int64), np.ascontiguousarray(adapted, np.float32)


def _sparse_tensor(torch, matrix):
    matrix = matrix.tocoo()
    index = torch.from_numpy(np.vstack((matrix.row, matrix.col)).astype(np.int64))
    return torch.sparse_coo_tensor(
        index, torch.from_numpy(matrix.data), matrix.shape, check_invariants=False
    )
