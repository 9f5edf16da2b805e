"""Losses computed from the network's raw outputs (logits), stably.

Softmax cross-entropy (classification) is the original loss; mean squared
error (regression) and sigmoid binary cross-entropy (binary and multilabel
classification) share one small interface, :class:`Loss`, used by the
training loop (see :func:`get_loss`).

Softmax cross-entropy computed from logits through a stable log-softmax.

For logits ``z`` (n, C) and integer labels ``y`` (n,)::

    log_softmax(z) = (z - max(z)) - log(sum(exp(z - max(z))))
    loss_i         = -log_softmax(z)_i[y_i]
    d mean(loss) / dz = (softmax(z) - onehot(y)) / n

Subtracting the row maximum keeps ``exp`` from overflowing, so logits of 1000
give a finite loss and gradient.
"""

from __future__ import annotations

import array_api_compat

from ._typing import Array, DType, Namespace
from .backends._base import softmax_crossentropy_sum_and_grad
from .errors import DeviceMismatchError, DTypeError, ShapeError

__all__ = [
    "log_softmax",
    "one_hot",
    "softmax_crossentropy_with_logits",
    "grad_softmax_crossentropy_with_logits",
    "Loss",
    "SoftmaxCrossEntropy",
    "MeanSquaredError",
    "BinaryCrossEntropy",
    "LOSSES",
    "get_loss",
    "sigmoid",
    "xent_sum_and_grad",
    "as_matrix",
    "check_target_rows",
]


def _namespace(x, xp):
    return array_api_compat.array_namespace(x) if xp is None else xp


def log_softmax(logits: Array, /, *, axis: int = -1, xp: Namespace | None = None) -> Array:
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


def one_hot(labels: Array, n_classes: int, /, *, dtype: DType = None,
            xp: Namespace | None = None) -> Array:
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


def softmax_crossentropy_with_logits(logits: Array, reference_answers: Array, /, *,
                                     xp: Namespace | None = None) -> Array:
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


def grad_softmax_crossentropy_with_logits(logits: Array, reference_answers: Array, /, *,
                                          xp: Namespace | None = None) -> Array:
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


#: Summed loss (0-d, on the device) and gradient of the mean loss: the portable
#: kernel, kept beside its fast paths as ``Backend.softmax_crossentropy``'s twin.
xent_sum_and_grad = softmax_crossentropy_sum_and_grad
_xent_sum_and_grad = xent_sum_and_grad  # the older private name


# -- loss objects: one interface for the training loop ------------------------

def _weighted(xp, per_sample, grad, weights):
    """``(sum_i w_i l_i, w_i dl_i / sum_i w_i)``: the gradient of the weighted mean.

    ``weights=None`` is the plain mean: ``(sum_i l_i, dl_i / n)``. A batch whose
    weights are all zero contributes nothing (not 0/0 = NaN).
    """
    if weights is None:
        return xp.sum(per_sample), grad * (1.0 / grad.shape[0])
    w = xp.astype(weights, grad.dtype)
    total = xp.sum(w)
    # sum(w) == 0 only when every w_i == 0, so the numerator is 0 too.
    denom = total + xp.astype(total == 0, grad.dtype)
    return xp.sum(per_sample * w), grad * (w / denom)[:, None]


class Loss:
    """A loss of the network's outputs against dense targets, with its gradient.

    Subclasses implement :meth:`sum_and_grad` (the unchecked kernel used in
    the training step) and :meth:`prepare_targets` (validates what the user
    passed as ``y`` and turns it, once per ``fit``, into the dense float
    matrix ``sum_and_grad`` expects).

    Attributes
    ----------
    name : str
        The name :func:`get_loss` knows it by.
    fuses_softmax : bool
        Whether a final :class:`~xpnet.layers.Softmax` layer is absorbed by the
        loss (only the softmax cross-entropy, which works on logits).
    """

    name = ""
    fuses_softmax = False

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        """Summed loss (0-d array on the device) and the gradient of the mean loss.

        Parameters
        ----------
        xp : namespace
        outputs : array (n, k)
            The last layer's output (logits for the classification losses).
        targets : array (n, k)
            Dense targets of the outputs' dtype (from :meth:`prepare_targets`).
        weights : array (n,), optional
            Per-sample weights >= 0. Then the sum is ``sum_i w_i loss_i`` and
            the gradient is that of the weighted mean ``sum_i w_i loss_i / sum_i w_i``.
        """
        raise NotImplementedError

    def per_sample(self, xp, outputs, targets):
        """The loss of each sample, shape (n,) (unchecked)."""
        raise NotImplementedError

    def predict(self, xp, outputs):
        """What the outputs predict: class indices, 0/1 per output, or the values."""
        raise NotImplementedError

    def hit_rate(self, xp, outputs, targets):
        """Per-sample accuracy in [0, 1], shape (n,) (classification losses only)."""
        raise NotImplementedError(f"{type(self).__name__} has no accuracy")

    def prepare_targets(self, backend, y, n_outputs: int, name: str = "y"):
        """Validate ``y`` for this loss and return dense targets (n, n_outputs)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


def _check_target_array(backend, y, name: str):
    if not array_api_compat.is_array_api_obj(y):
        raise TypeError(
            f"{name} must be an array of {backend!r}, got {type(y).__name__}; "
            "move host data once with backend.asarray(data)"
        )
    backend.check_array(y, name, kind="any")  # same library and device as the model


def check_target_rows(y, n_samples: int | None, name: str) -> None:
    if n_samples is not None and y.shape[0] != n_samples:
        raise ShapeError(
            f"{name} must have one row per sample: expected {n_samples} rows, "
            f"got shape {tuple(y.shape)}"
        )


def as_matrix(backend, y, n_outputs: int, name: str):
    """``y`` of shape (n,) (one output) or (n, n_outputs), as (n, n_outputs)."""
    if y.ndim == 1 and n_outputs == 1:
        return backend.xp.reshape(y, (y.shape[0], 1))
    if y.ndim != 2 or y.shape[1] != n_outputs:
        want = "(n,) or (n, 1)" if n_outputs == 1 else f"(n, {n_outputs})"
        raise ShapeError(
            f"{name} must have shape {want} for a network with {n_outputs} outputs, "
            f"got {tuple(y.shape)}"
        )
    return y


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits against integer class labels (the default).

    ``y`` holds labels in ``[0, n_classes)``; training uses a one-hot matrix
    made once per ``fit``. The kernel is :func:`_xent_sum_and_grad`, unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.losses import SoftmaxCrossEntropy
    >>> s, g = SoftmaxCrossEntropy().sum_and_grad(np, np.zeros((2, 2)), np.eye(2))
    >>> round(float(s), 4), g.tolist()
    (1.3863, [[-0.25, 0.25], [0.25, -0.25]])
    """

    name = "softmax_crossentropy"
    fuses_softmax = True

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        if weights is None:
            return _xent_sum_and_grad(xp, outputs, targets)
        return _weighted(xp, self.per_sample(xp, outputs, targets),
                         _xent_grad(xp, outputs, targets) * outputs.shape[0], weights)

    def per_sample(self, xp, outputs, targets):
        return -xp.sum(log_softmax(outputs, xp=xp) * targets, axis=1)

    def predict(self, xp, outputs):
        return xp.argmax(outputs, axis=1)

    def hit_rate(self, xp, outputs, targets):
        hit = xp.argmax(outputs, axis=1) == xp.argmax(targets, axis=1)
        return xp.astype(hit, outputs.dtype)

    def prepare_targets(self, backend, y, n_outputs: int, name: str = "y"):
        _check_target_array(backend, y, name)
        if y.ndim != 1:
            raise ShapeError(
                f"{name} must be a 1-D array of integer class labels for the softmax "
                f"cross-entropy, got shape {tuple(y.shape)} (one-hot labels? pass "
                "xp.argmax(onehot, axis=1); several 0/1 outputs? use "
                "loss='binary_crossentropy')"
            )
        xp = backend.xp
        if not xp.isdtype(y.dtype, "integral"):
            raise DTypeError(
                f"{name} must hold integer class labels for the softmax cross-entropy, got "
                f"dtype {y.dtype}; convert with xp.astype(y, xp.int64) (continuous targets? "
                "use loss='mse')"
            )
        if y.shape[0] and (bool(xp.min(y) < 0) or bool(xp.max(y) >= n_outputs)):
            raise ValueError(
                f"{name} must hold class indices in [0, {n_outputs - 1}] (the network has "
                f"{n_outputs} outputs), got values from {int(xp.min(y))} to {int(xp.max(y))}"
            )
        return one_hot(y, n_outputs, dtype=backend.dtype, xp=xp)


class MeanSquaredError(Loss):
    """Mean squared error of the outputs (regression, one or many outputs).

    ``loss_i = mean_j (z_ij - t_ij)**2``; with ``half=True`` half of it, as
    scikit-learn's MLP reports (``0.5 * mean``), which halves the gradient too.

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.losses import MeanSquaredError
    >>> s, g = MeanSquaredError().sum_and_grad(np, np.asarray([[1.0], [3.0]]), np.zeros((2, 1)))
    >>> float(s), g.tolist()
    (10.0, [[1.0], [3.0]])
    """

    name = "mse"

    def __init__(self, *, half: bool = False):
        self.half = bool(half)

    def _factor(self, n_outputs: int) -> float:
        return (0.5 if self.half else 1.0) / n_outputs

    def per_sample(self, xp, outputs, targets):
        d = outputs - targets
        return xp.sum(d * d, axis=1) * self._factor(outputs.shape[1])

    def predict(self, xp, outputs):
        return outputs

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        d = outputs - targets
        c = self._factor(outputs.shape[1])
        per_sample = xp.sum(d * d, axis=1) * c
        grad = d * (2.0 * c)
        return _weighted(xp, per_sample, grad, weights)

    def prepare_targets(self, backend, y, n_outputs: int, name: str = "y"):
        _check_target_array(backend, y, name)
        xp = backend.xp
        if not xp.isdtype(y.dtype, "real floating"):
            raise DTypeError(
                f"{name} must hold floating-point targets for the mean squared error, got "
                f"dtype {y.dtype}; convert with xp.astype(y, xp.float32) (class labels? use "
                "loss='softmax_crossentropy')"
            )
        y = as_matrix(backend, y, n_outputs, name)
        if y.shape[0] and not bool(xp.all(xp.isfinite(y))):
            raise ValueError(f"{name} contains NaN or infinite targets; clean or drop them first")
        return xp.astype(y, backend.dtype)

    def __repr__(self) -> str:
        return "MeanSquaredError(half=True)" if self.half else "MeanSquaredError()"


def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` without overflow: exp of ``-|z|`` only."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class BinaryCrossEntropy(Loss):
    """Sigmoid binary cross-entropy from logits (binary and multilabel).

    For logits ``z`` and 0/1 targets ``t`` (n, k), summed over the k outputs
    as scikit-learn's MLP does::

        loss_i = sum_j max(z_ij, 0) - z_ij t_ij + log1p(exp(-|z_ij|))
        d loss_i / dz_ij = sigmoid(z_ij) - t_ij

    which stays finite for logits of any size.

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.losses import BinaryCrossEntropy
    >>> s, g = BinaryCrossEntropy().sum_and_grad(np, np.asarray([[1000.0], [0.0]]),
    ...                                          np.asarray([[0.0], [1.0]]))
    >>> round(float(s), 4), g.round(4).tolist()
    (1000.6931, [[0.5], [-0.25]])
    """

    name = "binary_crossentropy"

    def per_sample(self, xp, outputs, targets):
        z = outputs
        a = xp.abs(z)
        # max(z, 0) == (z + |z|) / 2, without a scalar array on some device.
        return xp.sum((z + a) * 0.5 - z * targets + xp.log1p(xp.exp(-a)), axis=1)

    def predict(self, xp, outputs):
        return xp.astype(outputs > 0, outputs.dtype)  # sigmoid(z) > 1/2

    def hit_rate(self, xp, outputs, targets):
        """The fraction of outputs on the right side of 1/2 (Keras' binary accuracy)."""
        return xp.mean(xp.astype((outputs > 0) == (targets > 0.5), outputs.dtype), axis=1)

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        per_sample = self.per_sample(xp, outputs, targets)
        grad = sigmoid(xp, outputs) - targets
        return _weighted(xp, per_sample, grad, weights)

    def prepare_targets(self, backend, y, n_outputs: int, name: str = "y"):
        _check_target_array(backend, y, name)
        xp = backend.xp
        y = as_matrix(backend, y, n_outputs, name)
        if xp.isdtype(y.dtype, "complex floating"):
            raise DTypeError(f"{name} must hold 0/1 targets, got dtype {y.dtype}")
        if xp.isdtype(y.dtype, "bool"):  # the standard has no bool == int comparison
            return xp.astype(y, backend.dtype)
        if y.shape[0] and not bool(xp.all((y == 0) | (y == 1))):
            raise ValueError(
                f"{name} must hold only 0 and 1 for the binary cross-entropy (one column "
                "per label); got other values (class labels 0..C-1? use "
                "loss='softmax_crossentropy')"
            )
        return xp.astype(y, backend.dtype)


#: Losses by name, with their aliases.
LOSSES = {
    "softmax_crossentropy": SoftmaxCrossEntropy,
    "sparse_categorical_crossentropy": SoftmaxCrossEntropy,
    "crossentropy": SoftmaxCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
}


def get_loss(loss: str | Loss | None) -> Loss:
    """A :class:`Loss` from a name in :data:`LOSSES` or a Loss instance.

    Examples
    --------
    >>> from xpnet.losses import get_loss
    >>> get_loss("mse"), get_loss("bce")
    (MeanSquaredError(), BinaryCrossEntropy())
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.strip().lower() in LOSSES:
        return LOSSES[loss.strip().lower()]()
    raise ValueError(
        f"unknown loss {loss!r}; choose one of {', '.join(sorted(LOSSES))} or pass an "
        "xpnet.losses.Loss instance"
    )
