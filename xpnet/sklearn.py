"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor` on every array library.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` (stochastic solvers ``"sgd"`` and ``"adam"``) that train with
xpnet on NumPy, CuPy, PyTorch, JAX or array-api-strict::

    from xpnet.sklearn import MLPClassifier   # instead of sklearn.neural_network
    clf = make_pipeline(StandardScaler(), MLPClassifier(solver="sgd", batch_size=32))

Where training runs follows scikit-learn's array API rules:

* with ``sklearn.set_config(array_api_dispatch=True)`` and an array of another
  library as ``X``, training runs on that library and device (the backend is
  chosen from ``X``); ``y`` and ``sample_weight`` are moved to it by the
  estimator, and predictions come back in ``X``'s namespace;
* otherwise ``X`` is converted with ``check_array`` to NumPy and the
  ``backend=`` (``device=``, ``dtype=``) parameters decide where training runs;
  predictions are NumPy arrays.

Needs the optional extra: ``pip install "xpnet[sklearn]"``.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from typing import Any

import array_api_compat
import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_array, check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "xpnet.sklearn needs scikit-learn: pip install \"xpnet[sklearn]\""
    ) from exc

from ._compiled import CompiledEpoch, compiles_epochs
from .backends import backend_of, get_backend
from .losses import (
    BinaryCrossEntropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    _sigmoid,
    _weighted,
    log_softmax,
)
from .optimizers import SGD, Adam, _one_minus_pow, _sqrt
from .training import train_step

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_SOLVERS = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")


# -- inputs: where the data lives and how it gets to the backend ----------------

def _dispatch() -> bool:
    return bool(sklearn.get_config().get("array_api_dispatch", False))


def _foreign_array(X) -> bool:
    """An array API array of a library other than NumPy (torch, cupy, jax, strict)."""
    return array_api_compat.is_array_api_obj(X) and not isinstance(X, np.ndarray)


def _to_host(a):
    """A NumPy copy of ``a`` (any array library, list, pandas object); None stays None."""
    if a is None or isinstance(a, np.ndarray) or not _foreign_array(a):
        return a if a is None or isinstance(a, np.ndarray) else np.asarray(a)
    return backend_of(a).to_numpy(a)


def _namespace_key(X) -> tuple:
    """(namespace name, device) identifying where an input array lives."""
    if not _foreign_array(X):
        return ("numpy", "cpu")
    return (array_api_compat.array_namespace(X).__name__, str(array_api_compat.device(X)))


def _check_sample_weight(sample_weight, n_samples: int):
    """Host float64 weights of shape (n_samples,): finite and >= 0, not all zero."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real):
        sample_weight = np.full(n_samples, float(sample_weight))
    sw = check_array(_to_host(sample_weight), ensure_2d=False, dtype=np.float64,
                     input_name="sample_weight")
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {sw.shape}, expected ({n_samples},): one weight per "
            "sample"
        )
    if np.any(sw < 0):
        raise ValueError(
            f"sample_weight must be >= 0 (a weighted mean loss), got {int(np.sum(sw < 0))} "
            f"negative weights, the smallest {float(sw.min())!r}"
        )
    if not np.any(sw > 0):
        raise ValueError(
            "Sample weights must contain at least one non-zero number: with all weights "
            "zero there is nothing to fit"
        )
    return sw


# -- the network ------------------------------------------------------------------

def _glorot_uniform(random_state, fan_in: int, fan_out: int, activation: str):
    """scikit-learn's MLP initialisation: U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (2 for logistic)."""
    factor = 2.0 if activation == "logistic" else 6.0
    bound = math.sqrt(factor / (fan_in + fan_out))
    coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
    intercept = random_state.uniform(-bound, bound, fan_out)
    return coef, intercept


def _fixed(values):
    """An initializer ``init(rng, shape)`` returning ``values`` (drawn beforehand)."""
    def init(rng, shape):
        return values

    return init


def _build_layers(be, sizes, activation: str, random_state) -> list:
    """Dense layers of ``sizes`` with ``activation`` between them; the output is linear."""
    from .layers import Dense, ReLU, Sigmoid, Tanh

    make_act = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}[activation]
    layers: list = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i and make_act is not None:
            layers.append(make_act(backend=be))
        coef, intercept = _glorot_uniform(random_state, fan_in, fan_out, activation)
        dense = Dense(fan_in, fan_out, init=_fixed(coef), backend=be)
        dense.biases = be.asarray(intercept)
        layers.append(dense)
    return layers


class _SklearnL2:
    """scikit-learn's L2 term: ``alpha / batch_weight * W`` added to each weight gradient.

    ``batch_weight`` (the batch's size, or its total sample weight) is set by
    the estimator before every step; a zero-weight batch counts as 1, as in
    :class:`xpnet.training.L2Penalty`. Biases are not penalised. Mixed in
    front of the update rule, so the rule may fuse the term
    (:meth:`~xpnet.optimizers.Optimizer.update`'s ``decay``).
    """

    alpha = 0.0
    batch_weight = 1.0

    def update(self, layer, grads, decay=None):
        if self.alpha and "weights" in grads:
            decay = {"weights": self.alpha / (self.batch_weight or 1.0)}
        super().update(layer, grads, decay)  # type: ignore[misc]


class _SklearnSGD(_SklearnL2, SGD):
    """SGD with scikit-learn's velocity form of (Nesterov) momentum.

    ``v = momentum * v - lr * g``; the step is ``momentum * v - lr * g`` (Nesterov)
    or ``v``. It equals :class:`~xpnet.optimizers.SGD` at a constant learning rate
    and keeps scikit-learn's behaviour when 'invscaling'/'adaptive' change it.
    The backend's :meth:`~xpnet.backends.Backend.momentum_step_` does the math
    (in place on NumPy), with the L2 term fused.
    """

    def _update_param(self, be, param, grad, st, lr):
        return self._velocity_step(be, param, grad, st, lr, None)

    def _update_param_decayed(self, be, param, grad, st, lr, coef):
        return self._velocity_step(be, param, grad, st, lr, coef)

    def _velocity_step(self, be, param, grad, st, lr, coef):
        v = st.get("velocity")
        if v is None:  # scikit-learn starts from zero velocities
            v = be.xp.zeros_like(param)
        param, st["velocity"] = be.momentum_step_(param, v, grad, lr=lr, momentum=self.momentum,
                                                  nesterov=self.nesterov, decay=coef)
        return param


class _SklearnAdam(_SklearnL2, Adam):
    """Adam with scikit-learn's placement of epsilon (outside the bias correction).

    ``param -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``.
    The step count may be a traced integer (a compiled epoch): the bias
    corrections then stay on the device.
    """

    def _update_param(self, be, param, grad, st, lr):
        return self._adam_step(be, param, grad, st, lr, None)

    def _update_param_decayed(self, be, param, grad, st, lr, coef):
        return self._adam_step(be, param, grad, st, lr, coef)

    def _adam_step(self, be, param, grad, st, lr, coef):
        t = st.get("step", 0) + 1
        st["step"] = t
        if st.get("exp_avg") is None:  # scikit-learn starts from zero moments
            st["exp_avg"], st["exp_avg_sq"] = be.xp.zeros_like(param), be.xp.zeros_like(param)
        xp = be.xp
        step_size = lr * _sqrt(xp, _one_minus_pow(xp, self.beta2, t, param.dtype)) \
            / _one_minus_pow(xp, self.beta1, t, param.dtype)
        param, st["exp_avg"], st["exp_avg_sq"] = be.adam_step_(
            param, st["exp_avg"], st["exp_avg_sq"], grad, step_size=step_size,
            beta1=self.beta1, beta2=self.beta2, eps=self.eps, decay=coef)
        return param


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


def _squared_norm(xp, w):
    """``sum(w * w)`` as one dot product (no temporary of w's size).

    ``flat @ flat`` (the standard's 1-D inner product) rather than ``vecdot``,
    whose generic array-api-compat version costs 107 us on torch against 6.5 us.
    """
    flat = xp.reshape(w, (-1,))
    return flat @ flat


def _dense_layers(layers) -> list:
    return [layer for layer in layers if layer.param_names]


#: Fewest full batches a call must train for its epochs to run as one compiled
#: program (compiling costs about 0.3 s on JAX, a few hundred one-by-one steps).
MIN_COMPILED_STEPS = 256


# -- the estimators -------------------------------------------------------------------

class _BaseMLP(BaseEstimator):
    """Parameters, validation and the stochastic training loop shared by both estimators."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 backend=None, device=None, dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.device = device
        self.dtype = dtype

    # -- parameter validation ---------------------------------------------------------
    def _validate_params(self) -> list:
        """Check the hyperparameters once per fit; return the hidden layer sizes."""
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        for name, allowed in (("activation", _ACTIVATIONS), ("solver", _SOLVERS),
                              ("learning_rate", _SCHEDULES)):
            value = getattr(self, name)
            if value not in allowed:
                hint = (" (xpnet trains with the stochastic solvers only)"
                        if name == "solver" and value == "lbfgs" else "")
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be one of "
                    f"{list(allowed)}, got {value!r}{hint}."
                )
        _positive = [("learning_rate_init", True), ("epsilon", True), ("alpha", False),
                     ("tol", False), ("power_t", False)]
        for name, strict in _positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value) or value < 0 or (strict and value == 0):
                bound = "> 0" if strict else ">= 0"
                raise ValueError(f"The '{name}' parameter must be a finite number {bound}, "
                                 f"got {value!r}.")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"The '{name}' parameter must be an int >= 1, got {value!r}.")
        for name, hi_open in (("momentum", False), ("beta_1", True), ("beta_2", True),
                              ("validation_fraction", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not 0 <= float(value) <= 1 or (hi_open and value == 1):
                raise ValueError(f"The '{name}' parameter must be in [0, 1{')' if hi_open else ']'}"
                                 f", got {value!r}.")
        bs = self.batch_size
        if bs != "auto" and (isinstance(bs, bool) or not isinstance(bs, numbers.Integral)
                             or bs < 1):
            raise ValueError(f"The 'batch_size' parameter must be 'auto' or an int >= 1, "
                             f"got {bs!r}.")
        return [int(s) for s in sizes]

    # -- where training runs -----------------------------------------------------------
    def _validate_X(self, X, *, reset: bool):
        """Validated X (and y on the host): in X's namespace under dispatch, else NumPy."""
        kwargs = dict(reset=reset, accept_sparse=False)
        if _dispatch() and _foreign_array(X):
            xp = array_api_compat.array_namespace(X)
            X = validate_data(self, X, dtype=(xp.float64, xp.float32), **kwargs)
        else:
            X = validate_data(self, X, dtype=(np.float64, np.float32), **kwargs)
        return X

    def _resolve_backend(self, X):
        """The xpnet Backend training runs on (see the module docstring)."""
        if _dispatch() and _foreign_array(X):
            be = backend_of(X)
            if self.backend is not None and get_backend(self.backend).xp is not be.xp:
                raise ValueError(
                    f"backend={self.backend!r} but array_api_dispatch is on and X is a "
                    f"{be.name} array: training runs where X lives. Pass backend=None, or "
                    "turn dispatch off to convert X"
                )
            dtype = self.dtype if self.dtype is not None else X.dtype
            return get_backend(be, dtype=dtype)
        dtype = self.dtype if self.dtype is not None else str(X.dtype)
        return get_backend(self.backend if self.backend is not None else "numpy",
                           device=self.device, dtype=dtype)

    def _to_backend(self, be, X):
        """``X`` (validated) as an array of ``be`` in the model's dtype."""
        if be.owns(X):
            return X
        if _foreign_array(X) and array_api_compat.array_namespace(X) is be.xp \
                and array_api_compat.device(X) == be.device:
            return be.xp.astype(X, be.dtype)
        return be.asarray(_to_host(X))

    def _check_same_place(self, X, method: str) -> None:
        """Under dispatch, predict-time inputs must live where the fit inputs lived."""
        if not _dispatch():
            return
        here, there = _namespace_key(X), self._fit_input_
        if here != there:
            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same "
                f"namespace and the same device as those passed to fit(): fit got "
                f"{there[0]} on {there[1]}, {method} got {here[0]} on {here[1]}. Refit, or "
                "convert X first."
            )

    def _output(self, be, values, X_in):
        """Device result -> the caller's namespace: X's under dispatch, else NumPy."""
        if _dispatch() and _foreign_array(X_in):
            return values
        return be.to_numpy(values)

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, *, incremental: bool, classes=None):
        sizes = self._validate_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        first_pass = not hasattr(self, "_layers") or (not self.warm_start and not incremental)
        X = self._validate_X(X, reset=first_pass)
        y = self._validate_y(y, X.shape[0], incremental=incremental and not first_pass,
                             classes=classes, first_pass=first_pass)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        sw = self._apply_class_weight(y, sw)
        if first_pass:
            be = self._resolve_backend(X)
            self._initialize(be, [X.shape[1], *sizes, self.n_outputs_])
            self._fit_input_ = _namespace_key(X) if _dispatch() else ("numpy", "cpu")
        be = self._backend
        Xd = self._to_backend(be, X)
        encoded = self._encode_targets(y)
        targets = self._loss.prepare_targets(
            be, be.asarray(encoded, dtype=be.index_dtype if encoded.dtype.kind in "iu" else None),
            self.n_outputs_)
        self._fit_stochastic(be, Xd, targets, y, sw, incremental)
        return self

    def _initialize(self, be, sizes) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._out_activation()
        self.loss_curve_: list = []
        self._no_improvement_count = 0
        # None where scikit-learn has None (the other stopping rule is in use).
        self.validation_scores_: Any
        self.best_validation_score_: Any
        self.best_loss_: Any
        self._best_params: list | None = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self._random_state = check_random_state(self.random_state)
        self._backend = be
        self._layers = _build_layers(be, sizes, self.activation, self._random_state)
        self._optimizer: Any = None  # scikit-learn's SGD or Adam update, made by _fit_stochastic

    def _make_optimizer(self):
        """scikit-learn's update rule for ``solver`` (the L2 penalty goes in front of it)."""
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return _SklearnSGD(float(self.learning_rate_init), momentum=momentum,
                               nesterov=bool(self.nesterovs_momentum) and momentum > 0)
        return _SklearnAdam(float(self.learning_rate_init), beta1=float(self.beta_1),
                            beta2=float(self.beta_2), eps=float(self.epsilon))

    def _fit_stochastic(self, be, X, targets, y_host, sw, incremental: bool) -> None:
        if self._optimizer is None or not incremental:
            self._optimizer = self._make_optimizer()
        self._optimizer.alpha = float(self.alpha)
        for layer in _dense_layers(self._layers):
            layer.optimizer = self._optimizer
        n = X.shape[0]
        train_idx, val_idx = np.arange(n), None
        if self.early_stopping:
            train_idx, val_idx = self._validation_split(y_host, n)
        batch_size = self._batch_size(train_idx.shape[0])
        weights = None if sw is None else be.asarray(sw)
        order = train_idx
        with be.floating_point_errors_ignored():
            for _ in range(self.max_iter):
                if self.shuffle:  # reshuffles the previous order, as scikit-learn does
                    order = self._random_state.permutation(order)
                self.loss_ = self._epoch(be, X, targets, weights, sw, order, batch_size,
                                         epochs=1 if incremental else self.max_iter)
                self.n_iter_ += 1
                self.t_ += train_idx.shape[0]
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(be, X, y_host, sw, val_idx)
                self._update_learning_rate()
                if self._no_improvement_count > self.n_iter_no_change:
                    if self._stop_or_decay():
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning,
                        stacklevel=3)
        if self.early_stopping and self._best_params is not None:
            self._set_params(self._best_params)
        if not all(np.isfinite(c).all() for c in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=3)
        return int(np.clip(self.batch_size, 1, n))

    def _validation_split(self, y_host, n: int):
        # As scikit-learn: stratified only for a classifier with one output unit
        # (binary), on the binarized labels: the same split for the same random_state.
        stratify = None
        if isinstance(self, MLPClassifier) and self.n_outputs_ == 1 and not self._multilabel:
            stratify = LabelBinarizer().fit(self.classes_).transform(y_host).astype(bool)
        train_idx, val_idx = train_test_split(np.arange(n), random_state=self._random_state,
                                              test_size=self.validation_fraction,
                                              stratify=stratify)
        if val_idx.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        self._best_params = None
        return train_idx, val_idx  # in train_test_split's order, as scikit-learn trains

    def _epoch(self, be, X, targets, weights, sw, order, batch_size: int, epochs: int) -> float:
        """One pass over the rows ``order`` (the last batch may be smaller, as in scikit-learn).

        Returns scikit-learn's epoch loss: the batch losses (penalty included)
        weighted by batch size, over the rows. Without sample weights, a
        backend that compiles loops runs the full batches as one program when
        this call's ``epochs`` will run enough of them to pay for compiling it.
        """
        order_d = be.asarray(order, dtype=be.index_dtype)
        n = order.shape[0]
        n_full = n // batch_size if weights is None else 0
        total = 0.0
        if n_full * epochs >= MIN_COMPILED_STEPS and compiles_epochs(be, self._layers):
            step = self._compiled_epochs(be, batch_size)
            total = step(X, targets, order_d, n_full, batch_size)[-1]
        else:
            n_full = 0
        device_total = be.zeros(())
        for lo in range(n_full * batch_size, n, batch_size):
            hi = min(lo + batch_size, n)
            weight = float(hi - lo) if sw is None else float(max(sw[order[lo:hi]].sum(), 0.0))
            device_total = device_total + self._batch_step(
                be, X, targets, weights, order_d[lo:hi], weight)
        return (total + float(device_total)) / max(n, 1)

    def _batch_step(self, be, X, targets, weights, idx, weight: float):
        """Train on the rows ``idx``; returns the batch loss (penalty included) times its size.

        ``weight`` is the batch's size or total sample weight (the mean's
        denominator and the penalty's); a batch of weight 0 leaves its loss
        unscaled and unpenalised, as in scikit-learn.
        """
        xp = be.xp
        xb, tb = be.take_rows(X, idx), be.take_rows(targets, idx)
        wb = None if weights is None else xp.take(weights, idx, axis=0)
        alpha = self._optimizer.alpha
        self._optimizer.batch_weight = weight
        if alpha and weight > 0:  # the penalty term of the loss, before the update
            sq = sum(_squared_norm(xp, d.weights) for d in _dense_layers(self._layers))
        loss_sum = train_step(self._layers, xp, xb, tb, 0, loss=self._loss, weights=wb)
        batch_loss = loss_sum / (weight if weight > 0 else 1.0)
        if alpha and weight > 0:
            batch_loss = batch_loss + sq * (0.5 * alpha / weight)
        return batch_loss * float(xb.shape[0])

    def _compiled_epochs(self, be, batch_size: int) -> CompiledEpoch:
        """The full-batch steps of an epoch as one compiled loop, kept while the layers are.

        The program bakes in what :meth:`_batch_step` reads as Python values
        (the batch size and ``alpha``, which ``set_params`` may change between
        ``partial_fit`` calls); learning rates are its arguments.
        """
        key = (self._layers, self._optimizer, batch_size, self._optimizer.alpha)
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0][0] is not key[0] or cached[0][1] is not key[1] \
                or cached[0][2:] != key[2:]:
            def step(X, targets, idx):
                return self._batch_step(be, X, targets, None, idx, float(batch_size))

            cached = self._compiled = (key, CompiledEpoch(be, self._layers, step))
        return cached[1]

    def _update_no_improvement_count(self, be, X, y_host, sw, val_idx) -> None:
        if val_idx is not None:
            idx = be.asarray(val_idx, dtype=be.index_dtype)
            Xv = be.xp.take(X, idx, axis=0)
            score = self._score_device(be, Xv, y_host[val_idx],
                                       None if sw is None else sw[val_idx])
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._get_params()
            return
        last = self.loss_curve_[-1]
        if last > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if last < self.best_loss_:
            self.best_loss_ = last

    def _update_learning_rate(self) -> None:
        """scikit-learn's 'invscaling' schedule: lr = lr_init / (t + 1) ** power_t (sgd only)."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (
                float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t))

    def _stop_or_decay(self) -> bool:
        """After n_iter_no_change epochs without improvement: stop, or divide lr by 5 ('adaptive')."""
        opt = self._optimizer
        if self.solver == "sgd" and self.learning_rate == "adaptive" and \
                opt.learning_rate > 1e-6:
            opt.learning_rate /= 5.0
            if self.verbose:
                print(f"Setting learning rate to {opt.learning_rate:f}")
            return False
        if self.verbose:
            what = "Validation score" if self.early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={self.tol:f} for "
                  f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True

    # -- parameters as scikit-learn names them --------------------------------------------
    def _get_params(self) -> list:
        """Copies: the optimizers update the parameters in place."""
        xp = self._backend.xp
        return [(xp.asarray(d.weights, copy=True), xp.asarray(d.biases, copy=True))
                for d in _dense_layers(self._layers)]

    def _set_params(self, params) -> None:
        for d, (w, b) in zip(_dense_layers(self._layers), params):
            d.weights, d.biases = w, b

    @property
    def coefs_(self) -> list:
        """Weight matrices, one per layer, as host NumPy copies."""
        check_is_fitted(self, "_layers")
        be = self._backend
        return [be.to_numpy(d.weights) for d in _dense_layers(self._layers)]

    @property
    def intercepts_(self) -> list:
        """Bias vectors, one per layer, as host NumPy copies."""
        check_is_fitted(self, "_layers")
        be = self._backend
        return [be.to_numpy(d.biases) for d in _dense_layers(self._layers)]

    # -- inference --------------------------------------------------------------------------
    def _raw_outputs(self, X, method: str):
        """(backend, network outputs on the device, validated X) for ``X``."""
        check_is_fitted(self, "_layers")
        self._check_same_place(X, method)
        X = self._validate_X(X, reset=False)
        be = self._backend
        out = self._forward(be, self._to_backend(be, X))
        return be, out, X

    def _forward(self, be, Xd):
        out = Xd
        for layer in self._layers:
            out = layer._forward(out)
        return out

    def to_onnx(self, path, *, dtype=None) -> None:
        """Write the fitted estimator as an ONNX file (see :func:`xpnet.export.estimator_to_onnx`)."""
        from .onnx_graph import estimator_to_onnx  # ndonnx is imported when it runs
        estimator_to_onnx(self, path, dtype=dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        return tags

    def __getstate__(self):
        """Pickle the layers as host arrays (device arrays need not be picklable)."""
        state = dict(super().__getstate__())  # a copy: the live estimator keeps its arrays
        if "_layers" in state:
            be = state.pop("_backend")
            state["_backend_spec"] = (be.name, be.device_name, be.dtype_name)
            state["_layers"] = [_host_layer(layer, be) for layer in state["_layers"]]
            state["_optimizer"] = state["_compiled"] = None  # rebuilt by the next fit
        return state

    def __setstate__(self, state):
        spec = state.pop("_backend_spec", None)
        super().__setstate__(state)
        if spec is not None:
            name, device, dtype = spec
            be = get_backend(name, device=device, dtype=dtype)
            self._backend = be
            self._layers = [_device_layer(layer, be) for layer in self._layers]


def _host_layer(layer, be):
    twin = copy.copy(layer)
    twin.__dict__ = {k: v for k, v in layer.__dict__.items()
                     if k not in ("backend", "xp", "optimizer", "grads")}
    for name in layer.param_names:
        twin.__dict__[name] = be.to_numpy(getattr(layer, name))
    return twin


def _device_layer(layer, be):
    layer.backend, layer.xp, layer.optimizer, layer.grads = be, be.xp, None, {}
    for name in layer.param_names:
        setattr(layer, name, be.asarray(getattr(layer, name)))
    return layer


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by xpnet on any array library.

    Same parameters and fitted attributes as
    ``sklearn.neural_network.MLPClassifier`` with ``solver`` in ``{"sgd",
    "adam"}``, plus:

    Parameters
    ----------
    class_weight : "balanced", dict or None
        Multiplies each sample's weight by its class's weight (``"balanced"``:
        ``n_samples / (n_classes * count)``).
    backend, device, dtype : optional
        Where training runs when ``X`` is converted (no array API dispatch);
        ``dtype=None`` follows ``X`` (float32 stays float32).

    Output layers follow scikit-learn: a softmax over classes (multiclass), a
    sigmoid unit (binary) or one sigmoid per label (multilabel).

    Examples
    --------
    >>> import numpy as np
    >>> from xpnet.sklearn import MLPClassifier
    >>> X = np.asarray([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 10)
    >>> y = np.asarray(["no", "yes", "yes", "yes"] * 10)
    >>> clf = MLPClassifier((8,), solver="adam", learning_rate_init=0.05,
    ...                     max_iter=300, random_state=0).fit(X, y)
    >>> clf.classes_.tolist(), clf.predict(X[:4]).tolist()
    (['no', 'yes'], ['no', 'yes', 'yes', 'yes'])
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 class_weight=None, backend=None, device=None, dtype=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            backend=backend, device=device, dtype=dtype)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and labels ``y`` (any labels; 2-D 0/1 for multilabel)."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; the first call needs ``classes`` (all labels)."""
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    # -- labels ------------------------------------------------------------------------------
    def _validate_y(self, y, n_samples, *, incremental, classes, first_pass):
        y = check_array(_to_host(y), ensure_2d=False, dtype=None, ensure_all_finite=True,
                        input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n_samples}, {y.shape[0]}]")
        check_classification_targets(y)
        kind = type_of_target(y)
        if first_pass:
            self._multilabel = kind == "multilabel-indicator"
            if self._multilabel:
                self.classes_ = np.arange(y.shape[1])
                self._label_dtype = y.dtype
            else:
                self.classes_ = np.unique(np.asarray(classes) if classes is not None else y)
            n_classes = len(self.classes_)
            self.n_outputs_ = y.shape[1] if self._multilabel else (
                1 if n_classes <= 2 else n_classes)
            self._loss = SoftmaxCrossEntropy() if self.n_outputs_ > 1 and not self._multilabel \
                else BinaryCrossEntropy()
        if not self._multilabel:
            if kind == "multilabel-indicator":
                raise ValueError("the model was fitted on single-label targets, got a "
                                 "multilabel indicator matrix")
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if unseen.size:
                what = "partial_fit" if incremental else "fit"
                raise ValueError(
                    f"`y` has classes not in `self.classes_` ({what}): unseen labels "
                    f"{unseen.tolist()}; known {self.classes_.tolist()}. Pass every label "
                    "with classes= on the first partial_fit call."
                )
            if classes is not None and incremental and not np.array_equal(
                    np.unique(classes), self.classes_):
                raise ValueError(f"`classes={np.unique(classes).tolist()}` is not the same as "
                                 f"on the first call to partial_fit, which was "
                                 f"{self.classes_.tolist()}")
        elif y.ndim != 2 or y.shape[1] != self.n_outputs_:
            raise ValueError(f"y must have {self.n_outputs_} label columns as when fitted, "
                             f"got shape {y.shape}")
        return y

    def _encode_targets(self, y):
        """Host targets for the loss: 0/1 columns (sigmoid outputs) or class indices."""
        if self._multilabel:
            return np.asarray(y, dtype=np.float64)
        idx = np.searchsorted(self.classes_, y)
        if self.n_outputs_ == 1:
            return (idx == len(self.classes_) - 1).astype(np.float64) if len(self.classes_) == 2 \
                else np.zeros(len(y))
        return idx

    def _apply_class_weight(self, y, sw):
        if self.class_weight is None:
            return sw
        if self._multilabel:
            raise ValueError("class_weight is not supported for multilabel targets")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            labels, counts = np.unique(y, return_counts=True)
            per_class = dict(zip(labels.tolist(), (len(y) / (len(self.classes_) * counts)).tolist()))
        elif isinstance(self.class_weight, dict):
            per_class = dict(self.class_weight)
            unknown = [k for k in per_class if k not in set(self.classes_.tolist())]
            if unknown:
                raise ValueError(f"class_weight has labels not among the classes "
                                 f"{self.classes_.tolist()}: {unknown}")
        else:
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got "
                             f"{self.class_weight!r}")
        factor = np.asarray([float(per_class.get(label, 1.0)) for label in y.tolist()])
        if np.any(factor < 0) or not np.all(np.isfinite(factor)):
            raise ValueError("class_weight values must be finite and >= 0")
        return factor if sw is None else sw * factor

    # -- prediction ----------------------------------------------------------------------------
    def _out_activation(self) -> str:
        return "logistic" if isinstance(self._loss, BinaryCrossEntropy) else "softmax"

    def _proba_device(self, be, z):
        if isinstance(self._loss, BinaryCrossEntropy):
            p = _sigmoid(be.xp, z)
            if self._multilabel:
                return p
            return be.xp.concat([1.0 - p, p], axis=1) if len(self.classes_) == 2 else \
                be.xp.ones((z.shape[0], 1), dtype=z.dtype, device=be.device)
        return be.xp.exp(log_softmax(z, xp=be.xp))

    def _labels_from_logits(self, be, z):
        """Host labels (or the multilabel 0/1 matrix) for logits ``z``."""
        xp = be.xp
        if self._multilabel:
            return be.to_numpy(xp.astype(z > 0, be.index_dtype)).astype(self._label_dtype)
        if self.n_outputs_ == 1:
            idx = be.to_numpy(xp.astype(z[:, 0] > 0, be.index_dtype))
            idx = np.minimum(idx, len(self.classes_) - 1)
        else:
            idx = be.to_numpy(xp.argmax(z, axis=1))
        return self.classes_[idx]

    def predict(self, X):
        """Predicted labels (in ``X``'s namespace under array API dispatch)."""
        be, z, X = self._raw_outputs(X, "predict")
        labels = self._labels_from_logits(be, z)
        if _dispatch() and _foreign_array(X) and labels.dtype.kind in "iub":
            return be.asarray(labels, dtype=getattr(be.xp, labels.dtype.name))
        return labels

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes) (or (n, n_labels) multilabel)."""
        be, z, X = self._raw_outputs(X, "predict_proba")
        return self._output(be, self._proba_device(be, z), X)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, computed stably for the softmax."""
        be, z, X = self._raw_outputs(X, "predict_log_proba")
        xp = be.xp
        if isinstance(self._loss, SoftmaxCrossEntropy):
            return self._output(be, log_softmax(z, xp=xp), X)
        return self._output(be, xp.log(self._proba_device(be, z)), X)

    def _score_device(self, be, Xd, y_host, sw) -> float:
        labels = self._labels_from_logits(be, self._forward(be, Xd))
        return float(accuracy_score(y_host, labels, sample_weight=sw))

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy (subset accuracy for multilabel), weighted by ``sample_weight``."""
        be, z, X = self._raw_outputs(X, "score")
        y = _to_host(y)
        return float(accuracy_score(y, self._labels_from_logits(be, z),
                                    sample_weight=_to_host(sample_weight)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
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
        y = check_array(_to_host(y), ensure_2d=False, dtype="numeric", ensure_all_finite=True,
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
        return float(r2_score(_to_host(y), pred, sample_weight=_to_host(sample_weight)))
