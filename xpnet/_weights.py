"""Sample weights, class weights, the validation split and the L2 penalty of ``Sequential.fit``.

* ``sample_weight``: an array (n,) of the model's backend, >= 0 (zeros allowed):
  each batch minimises the weighted mean loss ``sum w_i loss_i / sum w_i``; the
  logged loss is the epoch's weighted mean.
* ``class_weight``: ``"balanced"`` (``n / (n_classes * count)``) or a dict
  ``{class: weight}`` multiplying each sample's weight; classification losses only.
* ``validation_split``: the *last* fraction of ``X``/``y`` (before shuffling, as
  Keras does) becomes ``validation_data``; it works with ``EarlyStopping``.
* ``alpha``: scikit-learn's L2 penalty, ``alpha / (2 sum w) * ||W||^2`` added to
  each batch's loss (weights, not biases), so the weight gradients get
  ``alpha / sum w * W`` (:class:`xpnet.training.L2Penalty`); not part of the
  logged loss.

Weights are read back to the host once per ``fit`` (n numbers): they are checked
there (finite, >= 0, not all zero), class weights are folded in, and the
result is uploaded in the model's dtype. The epoch loop then only gathers
them per batch.

Host data streamed in chunks (:mod:`xpnet.feeds.host`) takes all of them too:
its weights are a NumPy array (like its labels), checked and folded here,
kept on the host and gathered chunk by chunk with the rows of ``X``; an
iterable of batches carries its weights as ``(X_batch, y_batch, w_batch)``.

Data-parallel ``fit(..., distributed=comm)`` (:mod:`xpnet.feeds.sharded`)
takes all of them for device arrays: the weights are checked on every rank,
and the ranks add their weighted sums (:func:`xpnet.scoring.block_sums`) before dividing.
:func:`xpnet.feeds.apply_options` applies them once, for every input kind.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_number
from .errors import DTypeError, ShapeError
from .losses import MeanSquaredError, SoftmaxCrossEntropy

__all__ = ["check_sample_weight", "class_weight_factors", "validation_split_index"]


def check_sample_weight(be, sample_weight, n_samples: int, name: str = "sample_weight", *,
                        allow_zero_total: bool = False):
    """Host float64 copy of ``sample_weight`` (an array of ``be``, shape (n,)), or None.

    ``allow_zero_total``: weights that are all zero are fine (one batch of many).
    """
    if sample_weight is None:
        return None
    be.check_array(sample_weight, name, ndim=1, kind="any", shape=(n_samples,))
    if not (be.xp.isdtype(sample_weight.dtype, "real floating")
            or be.xp.isdtype(sample_weight.dtype, "integral")):
        raise DTypeError(f"{name} must hold real numbers, got dtype {sample_weight.dtype}")
    host = be.to_numpy(sample_weight).astype(np.float64)
    if not np.all(np.isfinite(host)):
        raise ValueError(f"{name} contains NaN or infinite values "
                         f"({int(np.sum(~np.isfinite(host)))} of {n_samples})")
    if np.any(host < 0):
        raise ValueError(f"{name} must be >= 0 (a weighted mean loss), got "
                         f"{int(np.sum(host < 0))} negative weights, the smallest "
                         f"{float(host.min())!r}")
    if n_samples and not allow_zero_total and not np.any(host > 0):
        raise ValueError(f"{name} is zero everywhere: there would be nothing to learn from")
    return host


def class_weight_factors(be, y, loss, class_weight, n_outputs: int):
    """Per-sample host factors ``class_weight[y_i]`` ("balanced" or {class: weight}), or None.

    For the softmax cross-entropy the classes are the labels ``0..n_outputs-1``;
    for the binary cross-entropy with one output they are 0 and 1.
    """
    if class_weight is None:
        return None
    if isinstance(loss, MeanSquaredError):
        raise ValueError("class_weight needs a classification loss; the model's loss is "
                         f"{loss!r}")
    labels = be.to_numpy(y)
    if not isinstance(loss, SoftmaxCrossEntropy):
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError("class_weight works with one binary output (labels 0/1), got "
                             f"targets of shape {labels.shape}")
    labels = labels.astype(np.int64)
    n_classes = n_outputs if isinstance(loss, SoftmaxCrossEntropy) else 2
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        present = counts > 0
        table = np.ones(n_classes)
        table[present] = labels.shape[0] / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        table = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) \
                    or not 0 <= key < n_classes:
                raise ValueError(f"class_weight keys must be classes in [0, {n_classes - 1}], "
                                 f"got {key!r}")
            table[key] = check_number(value, f"class_weight[{key}]", low=0.0)
    else:
        raise ValueError(f"class_weight must be 'balanced', a dict {{class: weight}} or None, "
                         f"got {class_weight!r}")
    return table[labels]


def validation_split_index(validation_split, n_samples: int, has_validation_data: bool):
    """Where the training rows end (Keras: the *last* fraction validates), or None."""
    fraction = check_number(validation_split, "validation_split", low=0.0, high=1.0,
                            high_open=True)
    if fraction == 0.0:
        return None
    if has_validation_data:
        raise ValueError("pass either validation_data or validation_split, not both")
    split_at = int(n_samples * (1.0 - fraction))
    if split_at < 1 or split_at >= n_samples:
        raise ShapeError(
            f"validation_split={validation_split} of {n_samples} samples leaves "
            f"{split_at} for training and {n_samples - split_at} for validation; both need "
            "at least one"
        )
    return split_at
