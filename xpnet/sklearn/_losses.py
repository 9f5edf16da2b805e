"""scikit-learn's MLP losses over xpnet's loss interface (values and gradients as it computes them)."""

from __future__ import annotations

from ..losses import (
    BinaryCrossEntropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    _weighted,
    sigmoid,
)

__all__ = ["ClippedBinaryLogLoss", "ClippedLogLoss", "SklearnPoisson", "SklearnSquaredError",
           "sigmoid"]


class SklearnSquaredError(MeanSquaredError):
    """scikit-learn's squared error: the loss it reports is half the mean over the outputs,
    but its step follows half the *sum* over the outputs (deltas ``z - t``), a gradient
    ``n_outputs`` times the reported loss's. Kept, so that multi-output regression
    trains as scikit-learn's does; with one output the two agree.
    """

    def __init__(self):
        super().__init__(half=True)

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        d = outputs - targets
        per_sample = xp.sum(d * d, axis=1) * self._factor(outputs.shape[1])
        return _weighted(xp, per_sample, d, weights)


class SklearnPoisson(MeanSquaredError):
    """scikit-learn's half Poisson deviance with an exp output: the outputs are
    ``log(prediction)``; the loss is ``sum over outputs of y log(y / p) - y + p``
    averaged over the samples, its gradient ``p - y`` (the canonical link)."""

    name = "poisson"

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        pred = xp.exp(outputs)
        positive = targets > 0
        safe = xp.where(positive, targets, xp.ones_like(targets))
        # xlogy(y, y / p): 0 where y == 0, as scipy's xlogy.
        ylogy = xp.where(positive, targets * xp.log(safe / pred), xp.zeros_like(targets))
        per_sample = xp.sum(ylogy - targets + pred, axis=1)
        return _weighted(xp, per_sample, pred - targets, weights)


class ClippedLogLoss(SoftmaxCrossEntropy):
    """scikit-learn's reported log loss: the softmax probabilities clipped to
    ``[eps, 1 - eps]`` before the log (its lbfgs line search sees these values, which
    differ from the exact loss once a probability is below ``eps``); the gradient is
    the usual ``p - y``."""

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        # scikit-learn's inplace_softmax: exp(z - max) / sum, one exp (not exp of log_softmax)
        e = xp.exp(outputs - xp.max(outputs, axis=1, keepdims=True))
        p = e / xp.sum(e, axis=1, keepdims=True)
        per_sample = -xp.sum(targets * xp.log(_clip_eps(xp, p)), axis=1)
        return _weighted(xp, per_sample, p - targets, weights)


class ClippedBinaryLogLoss(BinaryCrossEntropy):
    """The binary (and multilabel) twin of :class:`ClippedLogLoss`."""

    def sum_and_grad(self, xp, outputs, targets, weights=None):
        p = sigmoid(xp, outputs)
        pc = _clip_eps(xp, p)
        per_sample = -xp.sum(targets * xp.log(pc) + (1.0 - targets) * xp.log(1.0 - pc), axis=1)
        return _weighted(xp, per_sample, p - targets, weights)


def _clip_eps(xp, p):
    eps = float(xp.finfo(p.dtype).eps)
    return xp.clip(p, eps, 1.0 - eps)
