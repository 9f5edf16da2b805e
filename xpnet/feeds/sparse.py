"""Sparse host matrices (``scipy.sparse`` CSR/CSC) as an input kind, handed over in row blocks.

TfidfVectorizer, CountVectorizer and OneHotEncoder produce matrices far too
large to densify whole. :class:`SparseRows` gives a backend the rows it asks
for, one block at a time:

* on a backend whose Dense products accept a scipy CSR block
  (:attr:`~xpnet.backends.Backend.takes_scipy_sparse`: NumPy), a sparse
  enough matrix stays sparse: each block is a CSR slice and the products are
  scipy's sparse-dense products;
* otherwise each block is densified on the host (only that block) and moved
  to the backend.

The interface is small on purpose: :func:`is_sparse`, :func:`check_sparse`,
:meth:`SparseRows.rows` (an index array or slice -> a block the backend's
layers take) and :meth:`SparseRows.blocks` (consecutive blocks of all rows).
scipy itself is never imported here: a matrix can only be sparse if its
caller already imported ``scipy.sparse``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator

import numpy as np

from ..errors import DTypeError, ShapeError

__all__ = ["SPARSE_PRODUCT_MAX_DENSITY", "SparseRows", "check_sparse", "is_sparse"]

#: Densest matrix that stays sparse on a backend taking scipy blocks. Above it a
#: densified block's BLAS product beats scipy's sparse one (it walks every stored
#: entry one by one), so denser matrices are densified block by block instead.
SPARSE_PRODUCT_MAX_DENSITY = 0.1

#: Rows per densified block when a caller walks all rows (inference, full-batch
#: losses): bounds the dense copy to this many rows whatever the matrix's size.
BLOCK_ROWS = 1024


def is_sparse(X) -> bool:
    """Whether ``X`` is a ``scipy.sparse`` matrix or array (without importing scipy)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(X))


def check_sparse(X, name: str = "X") -> None:
    """Refuse what no block of ``X`` could train on, before anything is converted.

    Raises
    ------
    TypeError
        A format other than CSR/CSC, or a dtype that is not a real number
        (bool, integers and floats are accepted and become floats).
    ValueError
        No rows or no columns, or a stored NaN or infinity.
    """
    fmt = getattr(X, "format", None)
    if fmt not in ("csr", "csc"):
        raise TypeError(f"{name} is a scipy.sparse matrix in {fmt!r} format; expected 'csr' "
                        f"or 'csc': convert it with {name}.tocsr()")
    if X.dtype.kind not in "biuf":
        raise DTypeError(f"{name} is a sparse matrix of dtype {X.dtype}; expected real "
                         f"numbers (float64, float32, integers or bool)")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ShapeError(f"{name} has shape {X.shape}; expected at least one row and one "
                         "column (Found array with 0 sample(s) or 0 feature(s))")
    if X.dtype.kind == "f" and not np.isfinite(X.data).all():
        bad = int(np.count_nonzero(~np.isfinite(X.data)))
        raise ValueError(f"Input {name} contains NaN or infinity: {bad} of its "
                         f"{X.data.size} stored entries are not finite")


class SparseRows:
    """The rows of a validated sparse matrix, as blocks for one backend.

    Parameters
    ----------
    matrix : scipy.sparse CSR or CSC matrix, float32 or float64
        Already checked (:func:`check_sparse`). CSC is converted to CSR once
        (a sparse copy; row slices need CSR), never densified whole.
    backend : Backend
        Where the blocks go; its dtype is the blocks' dtype.

    Attributes
    ----------
    shape : tuple
    sparse_products : bool
        True when blocks stay CSR (the backend takes them and the matrix is
        at most :data:`SPARSE_PRODUCT_MAX_DENSITY` dense).
    """

    def __init__(self, matrix, backend) -> None:
        dtype = np.dtype(backend.dtype_name)
        self.matrix = matrix.tocsr().astype(dtype, copy=False)
        self.backend = backend
        self.shape = tuple(matrix.shape)
        density = matrix.nnz / max(self.shape[0] * self.shape[1], 1)
        self.sparse_products = bool(backend.takes_scipy_sparse) and \
            density <= SPARSE_PRODUCT_MAX_DENSITY

    def rows(self, index):
        """The rows ``index`` (host integer array or slice) as one block for the backend."""
        block = self.matrix[index]
        if self.sparse_products:
            return block
        return self.backend.asarray(block.toarray())

    def subset(self, index) -> SparseRows:
        """The rows ``index`` (host integer array) as another :class:`SparseRows`, still
        sparse (early stopping's validation rows, scored block by block)."""
        part = copy.copy(self)
        part.matrix = self.matrix[index]
        part.shape = tuple(part.matrix.shape)
        return part

    def blocks(self, block_rows: int = BLOCK_ROWS) -> Iterator:
        """Every row in order, ``block_rows`` at a time (the last block may be smaller)."""
        for lo in range(0, self.shape[0], block_rows):
            yield self.rows(slice(lo, lo + block_rows))
