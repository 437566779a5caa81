"""Documents to pooled word vectors in one compiled pass per piece of text.

With the compiled kernels, the default token pattern and no subword lookups,
``WordVectorEmbedder`` tokenises, looks up and pools each document in one
call: the document's rows are fetched from memory while its tokens are
still being looked up, and no array of ids is written for the whole batch
and read back. The result is that of ``documents_to_ids`` followed by the
pooling kernels, to the bit (the tests compare them).
"""

import numpy as np

from .._core.threads import run_parallel, usable_threads
from ._tokenize import compiled_tables, on_kernel_text, piece_bounds

# What the kernel computes per document: sums of the (weighted) rows; means
# by the number of known tokens or by the sum of their weights; extremes.
MODES = {"sum": 0, "mean": 1, "weighted mean": 2, "max": 3, "min": 4}


def pool_documents(native, docs, table, lowercase, vectors, mode, row_weights, out):
    """Pool each document's known rows into ``out``; return their number per document.

    Parameters
    ----------
    native : module
        The compiled kernels.
    docs : list of str
    table : _WordTable
        The vocabulary's hash table (UTF-8).
    lowercase : bool
    vectors : ndarray of float32, shape (vocab_size, dim), C-ordered
    mode : str
        A key of ``MODES``.
    row_weights : ndarray of float32, shape (vocab_size,) or None
        The weight of each row (sums and means).
    out : ndarray of float32, shape (len(docs), dim), C-ordered
        Filled in place.

    Returns
    -------
    counts : ndarray of int64, shape (len(docs),)
    """
    counts = np.empty(len(docs), dtype=np.int64)
    tables = compiled_tables(table)

    def piece(start, stop):
        def call(data):
            return native.pool_text(
                data,
                *tables,
                vectors,
                row_weights,
                MODES[mode],
                out[start:stop],
                counts[start:stop],
                lowercase,
            )

        on_kernel_text(docs[start:stop], lowercase, call)

    cuts = piece_bounds(docs)
    run_parallel(piece, list(zip(cuts[:-1], cuts[1:])), usable_threads())
    return counts
