"""Row norms and unit rows of dense or sparse matrices, safe for zero rows and zero width."""

import numpy as np
import scipy.sparse as sp


def row_norms(matrix):
    """L2 norm of every row of a dense or sparse matrix, float64."""
    if sp.issparse(matrix):
        squares = matrix.multiply(matrix).sum(axis=1)
        return np.sqrt(np.asarray(squares, dtype=np.float64).ravel())
    return np.linalg.norm(np.asarray(matrix, dtype=np.float64), axis=1)


def scale_rows(matrix, factors):
    """``matrix`` with row ``i`` multiplied by ``factors[i]`` (sparse stays sparse)."""
    if sp.issparse(matrix):
        return sp.csr_matrix(sp.diags(factors) @ matrix)
    return matrix * factors.astype(matrix.dtype, copy=False)[:, None]


def unit_rows(matrix, *, floor=0.0, scale=1.0):
    """Rows scaled to norm ``scale``; rows whose norm is ``<= floor`` become zeros (never NaN)."""
    norms = row_norms(matrix)
    factors = np.zeros_like(norms)
    np.divide(scale, norms, out=factors, where=norms > floor)
    return scale_rows(matrix, factors)


def count_zero_rows(matrix, block=4096):
    """How many rows of a dense array are all zeros, in blocks (no mask the size of it)."""
    return sum(
        int(np.count_nonzero(~matrix[i : i + block].any(axis=1)))
        for i in range(0, len(matrix), block)
    )
