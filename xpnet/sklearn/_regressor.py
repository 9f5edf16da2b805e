""":class:`MLPRegressor`: scikit-learn's MLP regressor trained by xpnet."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils.validation import check_array

from ..losses import MeanSquaredError, _weighted
from ._base import BaseMLP
from ._inputs import to_host


class _SklearnSquaredError(MeanSquaredError):
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


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor trained by xpnet on any array library.

    Same parameters and fitted attributes as ``sklearn.neural_network.MLPRegressor``
    with ``solver`` in ``{"sgd", "adam"}``, plus ``backend``, ``device`` and
    ``dtype`` (see :class:`MLPClassifier`). The loss is half the mean squared
    error, as scikit-learn reports it; one or many outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 40)[:, None]
    >>> reg = MLPRegressor((16,), learning_rate_init=0.02, max_iter=500, tol=1e-6,
    ...                    random_state=0).fit(X, 2 * X[:, 0] + 1)
    >>> bool(reg.score(X, 2 * X[:, 0] + 1) > 0.95)
    True
    """

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and float targets ``y`` of shape (n,) or (n, n_outputs)."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_y(self, y, n_samples, *, incremental, classes, first_pass):
        y = check_array(to_host(y), ensure_2d=False, dtype="numeric", ensure_all_finite=True,
                        input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n_samples}, {y.shape[0]}]")
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first_pass:
            self.n_outputs_ = n_outputs
            self._loss = _SklearnSquaredError()
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs but the model was fitted with "
                             f"{self.n_outputs_}")
        return y

    def _encode_targets(self, y):
        return np.asarray(y, dtype=np.float64)

    def _apply_class_weight(self, y, sw):
        return sw

    def _out_activation(self) -> str:
        return "identity"

    def predict(self, X):
        """Predictions, shape (n,) for one output or (n, n_outputs)."""
        be, z, X = self._raw_outputs(X, "predict")
        if self.n_outputs_ == 1:
            z = be.xp.reshape(z, (z.shape[0],))
        return self._output(be, z, X)

    def _score_device(self, be, Xd, y_host, sw) -> float:
        pred = be.to_numpy(self._forward(be, Xd))
        if self.n_outputs_ == 1:
            pred = pred[:, 0]
        return float(r2_score(y_host, pred, sample_weight=sw))

    def score(self, X, y, sample_weight=None) -> float:
        """Coefficient of determination R^2, weighted by ``sample_weight``."""
        be, z, X = self._raw_outputs(X, "score")
        pred = be.to_numpy(z)
        if self.n_outputs_ == 1:
            pred = pred[:, 0]
        return float(r2_score(to_host(y), pred, sample_weight=to_host(sample_weight)))
