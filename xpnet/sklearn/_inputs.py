"""Where the estimators' inputs live and how they reach the backend (host, dispatch, weights)."""

from __future__ import annotations

import numbers
import os

import array_api_compat
import numpy as np
import sklearn
from sklearn.utils.validation import check_array

from ..backends import backend_of
from ..feeds.sparse import SparseRows


def dispatch_on() -> bool:
    """Whether scikit-learn's array API dispatch is on (then SciPy's must be too)."""
    on = bool(sklearn.get_config().get("array_api_dispatch", False))
    if on and os.environ.get("SCIPY_ARRAY_API") != "1":
        # scikit-learn would fail later, deep inside SciPy, with a less helpful message.
        raise RuntimeError(
            "array_api_dispatch=True needs SciPy's array API support: set the environment "
            "variable SCIPY_ARRAY_API=1 before scikit-learn or SciPy is imported (e.g. "
            "`export SCIPY_ARRAY_API=1`, or os.environ[\"SCIPY_ARRAY_API\"] = \"1\" at the "
            "top of the script)"
        )
    return on


def foreign_array(X) -> bool:
    """An array API array of a library other than NumPy (torch, cupy, jax, strict)."""
    return array_api_compat.is_array_api_obj(X) and not isinstance(X, np.ndarray)


def to_host(a):
    """A NumPy copy of ``a`` (any array library, list, pandas object); None stays None."""
    if a is None or isinstance(a, np.ndarray) or not foreign_array(a):
        return a if a is None or isinstance(a, np.ndarray) else np.asarray(a)
    return backend_of(a).to_numpy(a)


def namespace_key(X) -> tuple:
    """(namespace name, device) identifying where an input array lives."""
    if not foreign_array(X):
        return ("numpy", "cpu")
    return (array_api_compat.array_namespace(X).__name__, str(array_api_compat.device(X)))


def check_sample_weight(sample_weight, n_samples: int):
    """Host float64 weights of shape (n_samples,): finite and >= 0, not all zero."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real):
        sample_weight = np.full(n_samples, float(sample_weight))
    sw = check_array(to_host(sample_weight), ensure_2d=False, dtype=np.float64,
                     input_name="sample_weight")
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {sw.shape}, expected ({n_samples},): one weight per "
            "sample"
        )
    if np.any(sw < 0):
        raise ValueError(
            f"sample_weight must be >= 0 (a weighted mean loss), got {int(np.sum(sw < 0))} "
            f"negative weights, the smallest {float(sw.min())!r}"
        )
    if not np.any(sw > 0):
        raise ValueError(
            "Sample weights must contain at least one non-zero number: with all weights "
            "zero there is nothing to fit"
        )
    return sw


def subset_rows(be, X, idx_host):
    """All of ``X``'s rows ``idx_host`` (validation rows): gathered on the device, or a
    smaller sparse matrix that inference densifies block by block."""
    if isinstance(X, SparseRows):
        return X.subset(idx_host)
    return be.take_rows(X, be.asarray(idx_host, dtype=be.index_dtype))


def take_rows(be, X, idx_device, idx_host):
    """The rows of ``X`` for a batch: a device gather, or a block of a sparse matrix."""
    if isinstance(X, SparseRows):
        return X.rows(idx_host)
    return be.take_rows(X, idx_device)
