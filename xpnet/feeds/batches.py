"""Iterables of batches: ``(X_batch, y_batch)`` pairs or ``(X_batch, y_batch, w_batch)`` triples.

Each batch is one block of one step. Batches are host NumPy data (moved to the
device) or arrays on the model's device; an indexable dataset is replayed (and
shuffled) every epoch, a generator lasts one epoch. Resuming or checkpointing
works at epoch boundaries only for this kind: a generator cannot be rewound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array
from .._weights import check_sample_weight
from ..errors import ShapeError
from ..losses import one_hot
from .arrays import check_targets
from .base import Block, Feed
from .convert import as_host_array, check_exact_ints, in_memory_features, numpy_dtype
from .host import (
    check_finite_rows,
    check_host_labels,
    check_host_targets,
    check_host_X,
    host_sample_weight,
    is_host_array,
)

__all__ = ["BatchSource", "BatchFeed"]


class BatchSource:
    """Training batches ``(X_batch, y_batch)`` or ``(X_batch, y_batch, w_batch)`` produced on the fly.

    ``batches`` is a dataset object with ``__len__`` and ``__getitem__(i)``
    returning batch ``i`` (replayed every epoch; with ``shuffle`` the batch
    order is permuted from the seed), or any iterable of batches (a list is
    replayed; a generator lasts one epoch). Each batch is host NumPy data
    (moved to the device, like host arrays) or arrays on the model's device.
    ``y_batch`` holds what the model's loss expects (class labels; float
    targets for the MSE; 0/1 for the binary cross-entropy); ``w_batch``, when
    given, the batch's sample weights (>= 0; a batch may weigh nothing, the
    epoch's loss is the weighted mean). Every batch must have the shapes of
    the first (and weights if it had them): a batch of another shape mid-epoch
    is an error (drop the last incomplete batch, as ``fit`` does).
    """

    def __init__(self, model: Any, batches: Any) -> None:
        self.model = model
        self.batches = batches
        self.indexable = hasattr(batches, "__len__") and hasattr(batches, "__getitem__")
        self.n_batches = len(batches) if hasattr(batches, "__len__") else None
        self.shape: tuple | None = None  # the first batch's (X, y[, w]) shapes

    @staticmethod
    def accepts(x: Any) -> bool:
        """Whether ``x`` is meant as batches (iterable or indexable, but not an array)."""
        if isinstance(x, (np.ndarray, str, bytes, dict)) or array_api_compat.is_array_api_obj(x):
            return False
        return hasattr(x, "__iter__") or (hasattr(x, "__len__") and hasattr(x, "__getitem__"))

    def epoch(self, rng: np.random.Generator, shuffle: bool) -> Iterator[Any]:
        """The batches of one epoch, in order."""
        n_batches = self.n_batches
        if not self.indexable or n_batches is None:  # (indexable ones have a length)
            return iter(self.batches)
        order = rng.permutation(n_batches) if shuffle else range(n_batches)
        return (self.batches[int(i)] for i in order)

    def to_device(self, batch: Any, epoch: int, index: int) -> tuple:
        """Checked device arrays ``(X, targets, weights or None)`` of one batch, and the
        batch's total weight on the host (None without weights)."""
        where = f"batch {index + 1} of epoch {epoch + 1}"
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError(f"{where} must be a pair (X_batch, y_batch) or a triple (X_batch, "
                            f"y_batch, w_batch), got {type(batch).__name__}")
        xb, yb, wb = (as_host_array(a, f"{k} of {where}")
                      for k, a in zip("Xyw", (*batch, None) if len(batch) == 2 else batch))
        self._check_shapes(where, xb, yb, wb)
        X = self._device_X(xb, where)
        n = X.shape[0]
        targets = self._device_y(yb, n, where)
        weights = None if wb is None else self._host_weights(wb, n, where)
        if weights is None:
            return X, targets, None, None
        return X, targets, self.model.backend.asarray(weights), float(weights.sum())

    def _check_shapes(self, where: str, *arrays: Any) -> None:
        shape = tuple(tuple(a.shape) if hasattr(a, "shape") else None for a in arrays)
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            def fmt(shapes: tuple) -> str:
                return ", ".join(f"{k} {v}" for k, v in zip("Xyw", shapes)
                                 if k != "w" or v is not None)
            raise ShapeError(
                f"{where} has shapes {fmt(shape)}, but the first batch had {fmt(self.shape)}: "
                "every batch must have the same shapes (drop or pad the last incomplete one)"
            )

    def _device_X(self, xb: Any, where: str) -> Array:
        model, be = self.model, self.model.backend
        name = f"X of {where}"
        xb = in_memory_features(be, xb, name, lambda x: is_host_array(be, x))
        if is_host_array(be, xb):  # converted in its one copy to the device
            check_host_X(model, xb, name)
            check_exact_ints(xb, numpy_dtype(be), name)
            check_finite_rows(xb, slice(0, xb.shape[0]))
            return be.asarray(xb)
        model.layers[0]._check_input(xb, f"X of {where}")
        return xb

    def _device_y(self, yb: Any, n: int, where: str) -> Array:
        """One-hot labels, or the dense targets of another loss (checked as in memory)."""
        model = self.model
        be = model.backend
        if model.uses_default_loss:
            return one_hot(self._labels(yb, n, where), model.n_outputs, dtype=be.dtype, xp=be.xp)
        if is_host_array(be, yb) or isinstance(yb, np.ndarray):
            check_host_targets(model, yb, n, f"y of {where}")
            return be.asarray(yb.reshape(n, -1))
        return check_targets(model, yb, n, f"y of {where}")

    def _labels(self, yb: Any, n: int, where: str) -> Array:
        be = self.model.backend
        if is_host_array(be, yb) or isinstance(yb, np.ndarray):
            check_host_labels(self.model, yb, n, f"y of {where}")
            return be.asarray(yb, dtype=be.index_dtype) if not be.owns(yb) else yb
        be.check_array(yb, f"y of {where}", ndim=1, kind="integral")
        if yb.shape[0] != n:
            raise ShapeError(f"y of {where} must have one label per sample: expected "
                             f"shape ({n},), got {tuple(yb.shape)}")
        return yb

    def _host_weights(self, wb: Any, n: int, where: str) -> np.ndarray | None:
        """Host float64 weights of one batch, checked as ``fit``'s (all zero is allowed)."""
        be = self.model.backend
        name = f"w of {where}"
        if is_host_array(be, wb) or isinstance(wb, np.ndarray):
            return host_sample_weight(wb, n, name, allow_zero_total=True)
        return check_sample_weight(be, wb, n, name, allow_zero_total=True)


def check_batch_options(*, sample_weight: Any, class_weight: Any, validation_split: Any) -> None:
    """What ``fit`` cannot take with an iterable of batches, and why (``alpha`` works)."""
    if sample_weight is not None:
        raise TypeError("fit(batches) takes no sample_weight: an iterable of batches carries "
                        "its weights, as (X_batch, y_batch, w_batch) triples")
    if class_weight is not None:
        raise NotImplementedError(
            "fit(batches, class_weight=...) is not supported: 'balanced' needs the class "
            "counts of all the data before the first step, which batches made on the fly do "
            "not give; fold class weights into w_batch of (X_batch, y_batch, w_batch) triples"
        )
    if validation_split:
        raise NotImplementedError(
            "fit(batches, validation_split=...) is not supported: the last fraction of an "
            "iterable of batches is not known before it ends; pass validation_data=(X_val, y_val)"
        )


class BatchFeed(Feed):
    """A :class:`BatchSource` as a feed: one block (one step) per batch.

    ``train_acc`` is not recorded for batches (a generator cannot be replayed);
    use ``validation_data``.
    """

    rescorable = False
    resumes_mid_epoch = False  # a generator cannot be replayed up to a step

    def __init__(self, model: Any, source: BatchSource) -> None:
        self.model, self.source = model, source
        self.n_steps = source.n_batches  # None for a generator: tqdm then counts without a total
        self._steps, self._weight = 0, 0.0

    def check(self, batch_size: int) -> BatchFeed:
        return self

    def refuse_options(self, *, sample_weight: Any, class_weight: Any,
                       validation_split: Any) -> None:
        check_batch_options(sample_weight=sample_weight, class_weight=class_weight,
                            validation_split=validation_split)

    def host_sample_weight(self, sample_weight: Any) -> None:
        return None  # refused above: the batches carry their own weights

    def class_weight_source(self) -> tuple[Any, Any]:
        return None, None  # class_weight is refused above, so nothing reads them

    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        be = self.model.backend
        self._steps, self._weight = 0, 0.0
        for i, batch in enumerate(self.source.epoch(settings.rng, settings.shuffle)):
            xb, tb, wb, wsum = self.source.to_device(batch, epoch, i)
            idx = be.xp.arange(xb.shape[0], dtype=be.index_dtype, device=be.device)
            self._steps += 1
            self._weight += xb.shape[0] if wsum is None else wsum
            yield Block(xb, tb, idx, 1, xb.shape[0], wb)
        if not self._steps:
            raise ValueError(
                f"the batches yielded nothing in epoch {epoch + 1}: a generator can be "
                "iterated only once; to train several epochs pass a list or an object with "
                "__len__ and __getitem__ returning batch i"
            )

    def trained_weight(self) -> float:
        return self._weight or 1.0
