""":class:`MLPRegressor`: scikit-learn's MLP regressor trained by xpnet."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array

from ._base import BaseMLP
from ._docs import class_doc, regressor_params
from ._inputs import to_host
from ._losses import SklearnPoisson, SklearnSquaredError


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = class_doc(
        """Multi-layer perceptron regressor trained by xpnet on any array library.

    scikit-learn's ``sklearn.neural_network.MLPRegressor`` (>= 1.7): the same
    parameters, in the same order (``loss`` first: write
    ``MLPRegressor(hidden_layer_sizes=(50,))``, not ``MLPRegressor((50,))``), the
    same fitted attributes and, in float64 on NumPy, the same weights; plus
    where training runs.""",
        regressor_params(),
        """Notes
-----
One or many outputs. ``X`` may be a dense array of any array library or a
scipy.sparse CSR/CSC matrix.""",
        """Examples
--------
>>> import numpy as np
>>> from xpnet.sklearn import MLPRegressor
>>> X = np.linspace(-1, 1, 40)[:, None]
>>> reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.02, max_iter=500,
...                    tol=1e-6, random_state=0).fit(X, 2 * X[:, 0] + 1)
>>> bool(reg.score(X, 2 * X[:, 0] + 1) > 0.95)
True""")

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, device=None, dtype=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, device=device, dtype=dtype)
        self.loss = loss

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and float targets ``y``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or scipy.sparse CSR/CSC matrix
        y : array of shape (n_samples,) or (n_samples, n_outputs)
            Real targets (``loss="poisson"``: non-negative).
        sample_weight : array of shape (n_samples,), optional
            Non-negative weights of the samples in the (weighted mean) loss.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)`` (stochastic solvers only; arguments as :meth:`fit`).

        Returns
        -------
        self
        """
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
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(f"loss='poisson' needs y >= 0 (counts, rates), got "
                             f"{int(np.sum(y < 0))} negative targets, the smallest {y.min()!r}")
        if first_pass:
            self.n_outputs_ = n_outputs
            self._loss = SklearnPoisson() if self.loss == "poisson" else SklearnSquaredError()
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs but the model was fitted with "
                             f"{self.n_outputs_}")
        return y

    def _encode_targets(self, y):
        return np.asarray(y, dtype=np.float64)

    def _apply_class_weight(self, y, sw):
        return sw

    def _lbfgs_loss(self):
        return self._loss

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _predictions(self, be, z):
        """The predictions for the network's outputs ``z``: (n,) for one output."""
        if self.out_activation_ == "exp":
            z = be.xp.exp(z)
        if self.n_outputs_ == 1:
            z = be.xp.reshape(z, (z.shape[0],))
        return z

    def _r2(self, be, z, y, sw) -> float:
        """R^2 of the outputs ``z``; NaN when a prediction is not finite (scikit-learn's
        early stopping records it so)."""
        pred = be.to_numpy(self._predictions(be, z))
        if not np.isfinite(pred).all():
            return float("nan")
        return float(r2_score(y, pred, sample_weight=sw))

    def predict(self, X):
        """Predictions, shape (n_samples,) for one output or (n_samples, n_outputs)."""
        be, z, X = self._raw_outputs(X, "predict")
        return self._output(be, self._predictions(be, z), X)

    def _score_device(self, be, Xd, y_host, sw) -> float:
        return self._r2(be, self._forward(be, Xd), y_host, sw)

    def score(self, X, y, sample_weight=None) -> float:
        """Coefficient of determination R^2, weighted by ``sample_weight``."""
        be, z, X = self._raw_outputs(X, "score")
        return self._r2(be, z, to_host(y), to_host(sample_weight))
