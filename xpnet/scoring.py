"""Prediction and scores: logits, classes, probabilities, loss and accuracy over a feed's blocks.

Every input kind (:mod:`xpnet.feeds`) hands these functions its evaluation
blocks, so prediction and scoring are written once. The sums run on the
device and are read back once per call; a sharded feed adds them up over its
ranks (:meth:`Feed.reduce <xpnet.feeds.Feed.reduce>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ._typing import Array
from .layers.base import inference_layers, loss_layers
from .losses import BinaryCrossEntropy, MeanSquaredError, log_softmax, one_hot, sigmoid, xent_sum_and_grad

__all__ = ["PREDICT_BLOCK", "logits_in_blocks", "logit_blocks", "check_finite_logits",
           "scores", "accuracy", "logits", "predict", "predict_proba", "check_has_proba", "block_sums",
           "scores_from_sums"]

#: Rows per block in prediction: large enough to keep the BLAS busy, small
#: enough that the (block, hidden) activations stay in cache.
PREDICT_BLOCK = 1024


def logits_in_blocks(layers: list, X: Array, block: int) -> list:
    """Outputs of ``layers`` for ``X`` block by block (unchecked: callers use
    :func:`check_finite_logits`, so NumPy's overflow warnings would only repeat that error)."""
    n = X.shape[0]
    outs = []
    with layers[0].backend.floating_point_errors_ignored():
        for lo in range(0, max(n, 1), block):
            # The standard forbids out-of-range slice stops: clamp to n.
            out = X[lo:min(lo + block, n), ...] if n > block else X
            for layer in layers:
                out = layer._forward(out)
            outs.append(out)
            if n <= block:
                break
    return outs


def check_finite_logits(be: Any, logits_blocks: list, name: str = "X") -> None:
    """One read-back per call: NaN/inf inputs (or weights) must not become silent argmaxes."""
    xp = be.xp
    finite = [xp.all(xp.isfinite(z)) for z in logits_blocks]
    if not bool(xp.all(xp.stack(finite)) if len(finite) > 1 else finite[0]):
        raise ValueError(
            f"the network produced NaN or infinite outputs for {name}: check {name} for "
            "NaN/inf values (xp.isfinite) and the model for diverged weights"
        )


def logit_blocks(model: Any, X: Array, block: int) -> list:
    """The model's logits (before a final Softmax) for device array ``X``, block by block, checked."""
    blocks = logits_in_blocks(loss_layers(inference_layers(model.layers)), X, block)
    check_finite_logits(model.backend, blocks)
    return blocks


def _concat(xp: Any, parts: list) -> Array:
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


# -- prediction ------------------------------------------------------------------------------

def logits(model: Any, feed: Any, block: int = PREDICT_BLOCK) -> Array:
    """Logits of every row of ``feed`` on the device."""
    return feed.collect("predicting", lambda part: _concat(
        model.backend.xp, list(part.logit_blocks(model, block))))


def predict(model: Any, feed: Any, block: int = PREDICT_BLOCK) -> Array:
    """Predictions of every row: class indices, or what the model's loss predicts."""
    xp = model.backend.xp
    if not model.uses_default_loss:
        return feed.collect("predicting", lambda part: model.loss.predict(xp, _concat(
            xp, list(part.logit_blocks(model, block)))))
    return feed.collect("predicting", lambda part: _concat(
        xp, [xp.argmax(z, axis=1) for z in part.logit_blocks(model, block)]))


def check_has_proba(loss: Any) -> None:
    """A TypeError for a loss without probabilities (the MSE), before any data is read."""
    if isinstance(loss, MeanSquaredError):
        raise TypeError("predict_proba needs a classification loss; this model minimises "
                        "the mean squared error: use predict")


def predict_proba(model: Any, feed: Any, block: int = PREDICT_BLOCK) -> Array:
    """Class probabilities: softmax of the logits (one sigmoid per output for 0/1 targets)."""
    xp = model.backend.xp
    check_has_proba(model.loss)
    z = logits(model, feed, block)
    if isinstance(model.loss, BinaryCrossEntropy):
        return sigmoid(xp, z)  # one probability per output
    return xp.exp(log_softmax(z, xp=xp))


# -- scores ----------------------------------------------------------------------------------

def label_sums(model: Any, blocks: Iterable) -> tuple[float, float]:
    """Summed softmax cross-entropy and hits of ``(logits, labels, _)`` blocks (two read-backs)."""
    be = model.backend
    xp = be.xp
    total, hits = be.zeros(()), be.zeros(())
    for z, yb, _ in blocks:
        loss_sum, _ = xent_sum_and_grad(xp, z, one_hot(yb, z.shape[1], dtype=be.dtype, xp=xp))
        total = total + loss_sum
        hits = hits + xp.sum(xp.astype(xp.argmax(z, axis=1) == yb, be.dtype))
    return float(total), float(hits)


def block_sums(model: Any, blocks: Iterable) -> tuple[float, float, float]:
    """Weighted loss sum, weighted hits (0.0 without accuracy) and total weight of
    ``(logits, targets, weights or None)`` blocks (three read-backs at most)."""
    be, xp, loss = model.backend, model.backend.xp, model.loss
    classify = not isinstance(loss, MeanSquaredError)
    total, hits, weight = be.zeros(()), be.zeros(()), be.zeros(())
    for z, tb, wb in blocks:
        if wb is None:
            wb = xp.ones((z.shape[0],), dtype=be.dtype, device=be.device)
        total = total + xp.sum(loss.per_sample(xp, z, tb) * wb)
        weight = weight + xp.sum(wb)
        if classify:
            hits = hits + xp.sum(loss.hit_rate(xp, z, tb) * wb)
    return float(total), float(hits) if classify else 0.0, float(weight)


def scores_from_sums(loss: Any, total: float, hits: float, weight: float) -> dict:
    """``{"loss": ..., "accuracy": ...}`` (no accuracy for the MSE) from :func:`block_sums`."""
    denom = weight or 1.0
    result = {"loss": total / denom}
    if not isinstance(loss, MeanSquaredError):
        result["accuracy"] = hits / denom
    return result


def scores(model: Any, feed: Any, block: int = PREDICT_BLOCK, *, weighted: bool = True) -> dict:
    """Mean loss and accuracy (none for the MSE) of the model on every row of ``feed``.

    The seed's softmax cross-entropy without weights sums its own kernel's
    loss; any other loss, or sample weights, the loss's per-sample values.
    """
    if model.uses_default_loss and not (weighted and feed.weighted):
        total, hits = feed.on_every_rank("scoring", lambda: label_sums(
            model, feed.eval_blocks(model, block, dense=False)))
        n = max(feed.n, 1)
        return {"loss": feed.reduce(total) / n, "accuracy": feed.reduce(hits) / n}
    sums = feed.on_every_rank("scoring", lambda: block_sums(
        model, feed.eval_blocks(model, block, dense=True, weighted=weighted)))
    total, hits, weight = (feed.reduce(value) for value in sums)
    return scores_from_sums(model.loss, total, hits, weight)


def accuracy(model: Any, feed: Any, block: int = PREDICT_BLOCK) -> float | None:
    """Unweighted accuracy on every row of ``feed`` (None for the MSE: regression has none)."""
    if not model.uses_default_loss:
        return scores(model, feed, block, weighted=False).get("accuracy")
    be = model.backend
    xp = be.xp
    hits = feed.on_every_rank("scoring", lambda: [
        xp.astype(xp.argmax(z, axis=1) == yb, be.dtype)
        for z, yb, _ in feed.eval_blocks(model, block, dense=False, weighted=False)])
    return feed.mean_hits(xp, hits)


def mean_of(xp: Any, hits: list) -> float:
    """The mean of the concatenated 0/1 hits (one mean over all rows, as in memory)."""
    return float(xp.mean(_concat(xp, hits)))


def epoch_scores(model: Any, feed: Any, validation: Any, train_accuracy: bool) -> Iterator:
    """``(key, value)`` pairs of an epoch's logs: ``train_acc``, ``val_loss`` and ``val_acc``."""
    if train_accuracy and feed.rescorable:
        value = accuracy(model, feed)
        if value is not None:  # regression has none
            yield "train_acc", value
    if validation is not None:
        result = scores(model, validation)
        yield "val_loss", result["loss"]
        if "accuracy" in result:
            yield "val_acc", result["accuracy"]
