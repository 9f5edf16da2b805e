"""Softmax cross-entropy computed from logits through a stable log-softmax.

For logits ``z`` (n, C) and integer labels ``y`` (n,)::

    log_softmax(z) = (z - max(z)) - log(sum(exp(z - max(z))))
    loss_i         = -log_softmax(z)_i[y_i]
    d mean(loss) / dz = (softmax(z) - onehot(y)) / n

Subtracting the row maximum keeps ``exp`` from overflowing, so logits of 1000
give a finite loss and gradient.
"""

from __future__ import annotations

import array_api_compat

from .errors import DeviceMismatchError, DTypeError, ShapeError

__all__ = [
    "log_softmax",
    "one_hot",
    "softmax_crossentropy_with_logits",
    "grad_softmax_crossentropy_with_logits",
]


def _namespace(x, xp):
    return array_api_compat.array_namespace(x) if xp is None else xp


def log_softmax(logits, /, *, axis: int = -1, xp=None):
    """Numerically stable ``log(softmax(logits))`` along ``axis``.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> z = np.asarray([[1000.0, 0.0]])
    >>> xpnet.losses.log_softmax(z)
    array([[    0., -1000.]])
    """
    xp = _namespace(logits, xp)
    shifted = logits - xp.max(logits, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def one_hot(labels, n_classes: int, /, *, dtype=None, xp=None):
    """``onehot[i, c] = 1.0 if labels[i] == c`` -- the standard's way round fancy indexing.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> xpnet.losses.one_hot(np.asarray([2, 0]), 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    xp = _namespace(labels, xp)
    device = array_api_compat.device(labels)
    # Compare in the default integer dtype: an arange in the labels' own dtype
    # would wrap (uint8 labels, 300 classes) and mark two columns.
    classes = xp.arange(n_classes, device=device)
    hits = xp.astype(labels, classes.dtype)[:, None] == classes
    return xp.astype(hits, xp.float64 if dtype is None else dtype)


def _check_logits_and_labels(logits, reference_answers, xp):
    if not array_api_compat.is_array_api_obj(logits):
        raise TypeError(f"logits must be an array, got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ShapeError(f"logits must be a 2-D array (n_samples, n_classes), got shape {tuple(logits.shape)}")
    if not xp.isdtype(logits.dtype, "real floating"):
        raise DTypeError(f"logits must be floating point, got dtype {logits.dtype}")
    if not array_api_compat.is_array_api_obj(reference_answers):
        raise TypeError(
            f"reference_answers must be an array of integer labels, got "
            f"{type(reference_answers).__name__}"
        )
    try:
        same_ns = array_api_compat.array_namespace(logits, reference_answers) is not None
    except TypeError:
        same_ns = False
    if not same_ns or array_api_compat.device(logits) != array_api_compat.device(reference_answers):
        raise DeviceMismatchError(
            "logits and reference_answers must be arrays of the same library on the "
            f"same device, got {type(logits).__module__} on {array_api_compat.device(logits)} "
            f"and {type(reference_answers).__module__} on "
            f"{array_api_compat.device(reference_answers)}"
        )
    if reference_answers.ndim != 1 or reference_answers.shape[0] != logits.shape[0]:
        raise ShapeError(
            f"reference_answers must have shape ({logits.shape[0]},) to match logits "
            f"{tuple(logits.shape)}, got {tuple(reference_answers.shape)} "
            "(one-hot labels? pass xp.argmax(onehot, axis=1))"
        )
    if not xp.isdtype(reference_answers.dtype, "integral"):
        raise DTypeError(
            f"reference_answers must hold integer class labels, got dtype "
            f"{reference_answers.dtype}; convert with xp.astype(y, xp.int64)"
        )
    n_classes = logits.shape[1]
    if reference_answers.shape[0] and (
        bool(xp.min(reference_answers) < 0) or bool(xp.max(reference_answers) >= n_classes)
    ):
        raise ValueError(
            f"reference_answers must be class indices in [0, {n_classes - 1}] for logits "
            f"with {n_classes} columns, got values from {int(xp.min(reference_answers))} "
            f"to {int(xp.max(reference_answers))}"
        )


def softmax_crossentropy_with_logits(logits, reference_answers, /, *, xp=None):
    """Per-sample cross-entropy ``-log softmax(logits)[i, y_i]``, shape (n,).

    Parameters
    ----------
    logits : array, shape (n, C), floating
    reference_answers : array, shape (n,), integer labels in ``[0, C)``

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> z = np.asarray([[1000.0, 0.0], [0.0, 0.0]])
    >>> xpnet.softmax_crossentropy_with_logits(z, np.asarray([1, 0])).round(4)
    array([1.000e+03, 6.931e-01])
    """
    xp = _namespace(logits, xp)
    _check_logits_and_labels(logits, reference_answers, xp)
    onehot = one_hot(reference_answers, logits.shape[1], dtype=logits.dtype, xp=xp)
    return -xp.sum(log_softmax(logits, xp=xp) * onehot, axis=1)


def grad_softmax_crossentropy_with_logits(logits, reference_answers, /, *, xp=None):
    """Gradient of the *mean* cross-entropy w.r.t. ``logits``: ``(softmax - onehot) / n``.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> z = np.asarray([[1000.0, 0.0]])
    >>> xpnet.grad_softmax_crossentropy_with_logits(z, np.asarray([1]))
    array([[ 1., -1.]])
    """
    xp = _namespace(logits, xp)
    _check_logits_and_labels(logits, reference_answers, xp)
    onehot = one_hot(reference_answers, logits.shape[1], dtype=logits.dtype, xp=xp)
    return _xent_grad(xp, logits, onehot)


# -- unchecked kernels used by the training loop -----------------------------

def _xent_grad(xp, logits, onehot):
    """``(softmax(logits) - onehot) / n`` in one pass over the (n, C) block."""
    e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    scale = 1.0 / logits.shape[0]
    return e * (scale / xp.sum(e, axis=1, keepdims=True)) - onehot * scale


def _xent_sum_and_grad(xp, logits, onehot):
    """Summed loss (0-d, stays on the device) and gradient of the mean loss.

    Shares the max/exp/sum between loss and gradient::

        loss_i = log(sum_j exp(z_ij - m_i)) + m_i - z_i[y_i]
    """
    m = xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(logits - m)
    s = xp.sum(e, axis=1, keepdims=True)
    scale = 1.0 / logits.shape[0]
    grad = e * (scale / s) - onehot * scale
    loss_sum = xp.sum(xp.log(s) + m) - xp.sum(logits * onehot)
    return loss_sum, grad
