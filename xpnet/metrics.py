"""Classification metrics on integer labels, computed on the labels' device.

``y_true`` and ``y_pred`` are 1-D integer arrays of one library on one device
(``model.predict(X)`` returns such an array). The namespace comes from
``array_api_compat.array_namespace``; nothing here imports an array library.

The confusion matrix is ``onehot(y_true).T @ onehot(y_pred)`` -- the array
API has no ``bincount`` or scatter-add, and this needs only ``n x C``
temporaries. Counts are exact (they are accumulated in float64 where the
backend has it, otherwise float32, exact up to 2**24 samples per cell).
Labels of any integer dtype (``uint8``, ``int8``, ...) are first cast to the
index dtype (int64, or int32 where the backend has no int64), so no count or
class number ever wraps around in a narrow dtype.

Examples
--------
>>> import numpy as np
>>> from xpnet import metrics
>>> y_true = np.asarray([0, 1, 2, 2])
>>> y_pred = np.asarray([0, 2, 2, 2])
>>> metrics.accuracy(y_true, y_pred)
0.75
>>> metrics.confusion_matrix(y_true, y_pred, n_classes=3)
array([[1, 0, 0],
       [0, 0, 1],
       [0, 0, 2]])
>>> metrics.per_class_accuracy(y_true, y_pred, n_classes=3)
array([1., 0., 1.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_compat

from ._typing import Array, DType, Namespace
from ._validation import check_int
from .backends import backend_of
from .errors import DeviceMismatchError, DTypeError, ShapeError

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy", "format_confusion_matrix"]


def _check(y_true: Array, y_pred: Array) -> Namespace:
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if not array_api_compat.is_array_api_obj(y):
            raise TypeError(f"{name} must be an array of integer labels, got {type(y).__name__}")
    try:
        xp = array_api_compat.array_namespace(y_true, y_pred)
    except TypeError:
        xp = None
    if xp is None or array_api_compat.device(y_true) != array_api_compat.device(y_pred):
        raise DeviceMismatchError(
            "y_true and y_pred must be arrays of the same library on the same device, got "
            f"{type(y_true).__module__} on {array_api_compat.device(y_true)} and "
            f"{type(y_pred).__module__} on {array_api_compat.device(y_pred)}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.ndim != 1:
            raise ShapeError(
                f"{name} must be a 1-D array of class labels, got shape {tuple(y.shape)} "
                "(logits or one-hot? take xp.argmax(..., axis=1) first)"
            )
        if not xp.isdtype(y.dtype, "integral"):
            raise DTypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ShapeError(
            f"y_true and y_pred must have the same length, got {y_true.shape[0]} and "
            f"{y_pred.shape[0]}"
        )
    return xp


def _validated_labels(y_true: Array, y_pred: Array) -> tuple[Namespace, Array, Array]:
    """``(xp, y_true, y_pred)`` checked and cast to the index dtype.

    Every metric starts here: counts, class numbers and comparisons then never
    happen in a narrow label dtype (300 ``uint8`` labels would count 44).
    """
    xp = _check(y_true, y_pred)
    index = _index_dtype(xp, y_true)
    return xp, xp.astype(y_true, index), xp.astype(y_pred, index)


def _index_dtype(xp: Namespace, like: Array) -> DType:
    """int64 where the namespace and device have it (JAX without x64 does not), else int32."""
    return xp.int64 if _has_int64(xp, like) else xp.int32


def _n_classes(xp: Namespace, y_true: Array, y_pred: Array, n_classes: int | None) -> int:
    n = y_true.shape[0]
    if n_classes is None:
        if n == 0:
            raise ValueError("n_classes is needed when there are no labels")
        return int(max(int(xp.max(y_true)), int(xp.max(y_pred)))) + 1
    check_int(n_classes, "n_classes", low=1)
    if n:
        lo = min(int(xp.min(y_true)), int(xp.min(y_pred)))
        hi = max(int(xp.max(y_true)), int(xp.max(y_pred)))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"labels must be in [0, {n_classes - 1}] for n_classes={n_classes}, got "
                f"values from {lo} to {hi}"
            )
    return n_classes


def _count_dtype(xp: Namespace, device: Any) -> DType:
    """float64 where the backend supports it (exact counts to 2**53), else float32."""
    try:
        z = xp.zeros(1, dtype=xp.float64, device=device)
        if z.dtype == xp.float64:
            return xp.float64
    except Exception:  # e.g. JAX without x64, devices without float64
        pass
    return xp.float32


def accuracy(y_true: Array, y_pred: Array) -> float:
    """Fraction of labels predicted correctly (a Python float; NaN for no labels).

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.metrics import accuracy
    >>> accuracy(np.asarray([1, 2, 3]), np.asarray([1, 2, 0]))
    0.6666666666666666
    """
    xp, y_true, y_pred = _validated_labels(y_true, y_pred)
    n = y_true.shape[0]
    if n == 0:
        return float("nan")
    hits = xp.astype(y_true == y_pred, y_true.dtype)
    return int(xp.sum(hits)) / n


def _has_int64(xp: Namespace, like: Array) -> bool:
    try:
        return xp.zeros(1, dtype=xp.int64, device=array_api_compat.device(like)).dtype == xp.int64
    except Exception:
        return False


def confusion_matrix(y_true: Array, y_pred: Array, n_classes: int | None = None) -> Array:
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as class ``j``.

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
    n_classes : int, optional
        Size of the matrix; default ``1 + max label``.

    Returns
    -------
    array of int, shape (n_classes, n_classes)
        On the labels' device, in the index dtype (int64, or int32 where the
        backend has no int64) whatever the labels' integer dtype. Rows are true
        classes, columns predicted classes.
    """
    xp, y_true, y_pred = _validated_labels(y_true, y_pred)
    c = _n_classes(xp, y_true, y_pred, n_classes)
    device = array_api_compat.device(y_true)
    ft = _count_dtype(xp, device)
    classes = xp.arange(c, dtype=y_true.dtype, device=device)
    t = xp.astype(y_true[:, None] == classes, ft)
    p = xp.astype(y_pred[:, None] == classes, ft)
    counts = t.T @ p
    return xp.astype(xp.round(counts), y_true.dtype)


def per_class_accuracy(y_true: Array, y_pred: Array, n_classes: int | None = None) -> Array:
    """Recall of each class: correct predictions of class ``i`` / samples of class ``i``.

    Returns
    -------
    array of float, shape (n_classes,)
        On the labels' device; ``nan`` for classes without samples.
    """
    xp, y_true, y_pred = _validated_labels(y_true, y_pred)
    c = _n_classes(xp, y_true, y_pred, n_classes)
    device = array_api_compat.device(y_true)
    ft = _count_dtype(xp, device)
    classes = xp.arange(c, dtype=y_true.dtype, device=device)
    t = xp.astype(y_true[:, None] == classes, ft)          # (n, C) one-hot of the truth
    hit = xp.astype(y_true == y_pred, ft)                   # (n,)
    correct = xp.sum(t * hit[:, None], axis=0)
    total = xp.sum(t, axis=0)
    safe = xp.where(total > 0, total, 1.0)
    return xp.where(total > 0, correct / safe, float("nan"))


def format_confusion_matrix(matrix: Any, labels: Sequence[object] | None = None) -> str:
    """A fixed-width text table of a confusion matrix (rows: true, columns: predicted).

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.metrics import format_confusion_matrix
    >>> print(format_confusion_matrix(np.asarray([[5, 1], [0, 4]])))
    true\\pred  0  1
    0          5  1
    1          0  4
    """
    rows = [[int(v) for v in row] for row in _to_list(matrix)]
    names = [str(i) for i in range(len(rows))] if labels is None else [str(s) for s in labels]
    head = "true\\pred"
    w0 = max(len(head), *(len(s) for s in names))
    w = max([len(s) for s in names] + [len(str(v)) for row in rows for v in row])
    lines = [head.ljust(w0) + "".join("  " + s.rjust(w) for s in names)]
    for label, row in zip(names, rows):
        lines.append(label.ljust(w0) + "".join("  " + str(v).rjust(w) for v in row))
    return "\n".join(lines)


def _to_list(matrix: Any) -> list:
    if hasattr(matrix, "tolist"):
        try:
            return matrix.tolist()
        except Exception:
            pass
    return backend_of(matrix).to_numpy(matrix).tolist()
