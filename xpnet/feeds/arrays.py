"""Arrays on the model's device: the in-memory input kind, one block per epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from .._typing import Array
from .._weights import check_sample_weight
from ..errors import ShapeError
from ..losses import one_hot
from ..scoring import logit_blocks
from .base import Block, Feed

__all__ = ["ArrayFeed", "UncheckedArrays", "check_labels", "check_targets", "check_batch_fits"]


def check_labels(be: Any, y: Array, n_samples: int, n_classes: int | None, name: str = "y") -> None:
    """Shape, dtype and (one read-back) range check of integer labels."""
    be.check_array(y, name, ndim=1, kind="integral")
    if y.shape[0] != n_samples:
        raise ShapeError(
            f"{name} must have one label per sample: expected shape ({n_samples},), "
            f"got {tuple(y.shape)}"
        )
    if n_classes is not None and n_samples:
        xp = be.xp
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name} must hold class indices in [0, {n_classes - 1}] (the network has "
                f"{n_classes} outputs), got values from {lo} to {hi}"
            )


def check_targets(model: Any, y: Array, n_samples: int, name: str = "y") -> Array | None:
    """Validate ``y`` for the model's loss; return its dense targets (None: labels)."""
    if model.uses_default_loss:  # the seed's checks and messages
        check_labels(model.backend, y, n_samples, model.n_outputs, name)
        return None
    targets = model.loss.prepare_targets(model.backend, y, model.n_outputs, name)
    if targets.shape[0] != n_samples:
        raise ShapeError(f"{name} must have one row per sample: expected {n_samples} rows, "
                         f"got shape {tuple(y.shape)}")
    return targets


def check_batch_fits(batch_size: int, n_samples: int) -> None:
    if batch_size > n_samples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n_samples} training samples; "
            "every batch would be dropped"
        )


def all_finite(xp: Any, X: Array) -> bool:
    """Whether X has no NaN/inf: a sum (no boolean temporary) first, exact check if in doubt."""
    total = float(xp.sum(X))
    if total == total and abs(total) != float("inf"):
        return True  # any NaN or inf element would have made the sum NaN or inf
    return bool(xp.all(xp.isfinite(X)))  # the sum may just have overflowed


def trained_weight(host_weight: Any, host_order: Any, n_used: int) -> float:
    """The total weight of the rows an epoch trained on (the mean loss's denominator)."""
    if host_weight is None:
        return float(max(n_used, 1))
    used = host_weight[host_order[:n_used]] if host_order is not None else host_weight[:n_used]
    total = float(used.sum())
    return total if total > 0 else 1.0


class UncheckedArrays:
    """``fit``'s ``X`` and ``y`` before :meth:`check`: nothing is read from them yet."""

    shardable = True

    def __init__(self, model: Any, X: Any, y: Any) -> None:
        self.model, self.X, self.y = model, X, y

    def check(self, batch_size: int) -> ArrayFeed:
        """Training arrays: shapes, dtypes, labels, NaN/inf (once per fit)."""
        model, X = self.model, self.X
        model.layers[0]._check_input(X, "X")
        check_targets(model, self.y, X.shape[0])
        if not all_finite(model.backend.xp, X):  # once per fit, not per step
            raise ValueError(
                "X contains NaN or infinite values; training on them would make every "
                "weight NaN. Clean or impute them first (xp.isfinite(X) finds them)."
            )
        check_batch_fits(batch_size, X.shape[0])
        return ArrayFeed(model, X, self.y, batch_size=batch_size)


#: Rows of X a data fingerprint reads (evenly spaced), with every label.
FINGERPRINT_ROWS = 16


def fingerprint_rows(n: int) -> list[int]:
    """The ``FINGERPRINT_ROWS`` evenly spaced row indices (fewer for short data) a fingerprint reads."""
    step = max(FINGERPRINT_ROWS - 1, 1)
    return sorted({(i * (n - 1)) // step for i in range(FINGERPRINT_ROWS)}) if n else []


def data_fingerprint(be: Any, X: Array, y: Array) -> str:
    """A digest of every label and of ``FINGERPRINT_ROWS`` evenly spaced rows of X (exact bytes)."""
    xp = be.xp
    rows = fingerprint_rows(X.shape[0])
    sample = xp.take(X, be.asarray(rows, dtype=be.index_dtype), axis=0) if rows else X
    digest = hashlib.blake2b(digest_size=16)
    digest.update(be.to_numpy(sample).tobytes())
    digest.update(be.to_numpy(y).tobytes())
    return digest.hexdigest()


def weights_fingerprint(host_weight: Any) -> str | None:
    """A digest of checked host sample weights (class weights folded in), or None."""
    if host_weight is None:
        return None
    return hashlib.blake2b(host_weight.tobytes(), digest_size=16).hexdigest()


class ArrayFeed(Feed):
    """``X`` and ``y`` on the model's device: one block per epoch, gathered by one permutation.

    ``host_weight``: checked float64 sample weights on the host (the epoch's
    mean loss divides by the weight it trained on); their device copy in the
    model's dtype is gathered with the rows.
    """

    compiles = True
    shardable = True

    def __init__(self, model: Any, X: Array, y: Any, *, host_weight: Any = None,
                 batch_size: int = 1) -> None:
        self.model, self.X, self.y = model, X, y
        self.n = X.shape[0]
        self.host_weight = host_weight
        self.weighted = host_weight is not None
        self.weights = None if host_weight is None else model.backend.asarray(host_weight)
        self.batch_size = batch_size
        self.n_steps = self.n // batch_size
        self._targets: Array | None = None
        self._order: Any = None

    def _with(self, X: Array, y: Array, host_weight: Any, batch_size: int) -> ArrayFeed:
        return type(self)(self.model, X, y, host_weight=host_weight, batch_size=batch_size)

    # -- training ---------------------------------------------------------------------
    def start(self) -> None:
        self.targets()  # once per fit, before the first epoch's clock starts

    def targets(self) -> Array:
        """The loss's dense targets (one-hot labels for the default loss), made once per fit."""
        if self._targets is None:
            model, be = self.model, self.model.backend
            self._targets = (one_hot(self.y, model.n_outputs, dtype=be.dtype, xp=be.xp)
                             if model.uses_default_loss else
                             model.loss.prepare_targets(be, self.y, model.n_outputs))
        return self._targets

    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        be = self.model.backend
        self._order = settings.rng.permutation(self.n) if settings.shuffle else None
        if self._order is not None:  # one host permutation, one upload per epoch
            order = be.asarray(self._order, dtype=be.index_dtype)
        else:
            order = be.xp.arange(self.n, dtype=be.index_dtype, device=be.device)
        yield Block(self.X, self.targets(), order, self.n_steps, self.batch_size, self.weights)

    def trained_weight(self) -> float:
        return trained_weight(self.host_weight, self._order, self.n_steps * self.batch_size)

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "shape": list(self.X.shape),
                "values": data_fingerprint(self.model.backend, self.X, self.y),
                "weights": weights_fingerprint(self.host_weight)}

    # -- options ----------------------------------------------------------------------
    def host_sample_weight(self, sample_weight: Any) -> Any:
        return check_sample_weight(self.model.backend, sample_weight, self.n)

    def class_weight_source(self) -> tuple[Any, Any]:
        return self.model.backend, self.y

    def split(self, at: int) -> tuple[ArrayFeed, ArrayFeed]:
        X, y = self.X, self.y
        return (self._with(X[:at, ...], y[:at, ...], None, self.batch_size),
                self._with(X[at:, ...], y[at:, ...], None, self.batch_size))

    def with_weights(self, host_weight: Any) -> ArrayFeed:
        return self._with(self.X, self.y, host_weight, self.batch_size)

    # -- evaluation -------------------------------------------------------------------
    def eval_blocks(self, model: Any, block: int, *, dense: bool,
                    weighted: bool = True) -> Iterator[tuple[Array, Array, Array | None]]:
        targets = model.loss.prepare_targets(model.backend, self.y, model.n_outputs) \
            if dense else self.y
        weights = self.weights if weighted else None
        for i, z in enumerate(logit_blocks(model, self.X, block)):
            lo, hi = i * block, i * block + z.shape[0]
            yield z, targets[lo:hi, ...], None if weights is None else weights[lo:hi]

    def logit_blocks(self, model: Any, block: int) -> Iterator[Array]:
        return iter(logit_blocks(model, self.X, block))
