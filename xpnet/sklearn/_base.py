"""What both estimators share: parameters, validation, where training runs, inference, pickling."""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import array_api_compat
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..backends import backend_of, get_backend
from ._inputs import check_sample_weight, dispatch_on, foreign_array, namespace_key, to_host
from ._network import build_layers, dense_layers
from ._stochastic import StochasticMixin

_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_SOLVERS = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")



class BaseMLP(StochasticMixin, BaseEstimator):
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
        if dispatch_on() and foreign_array(X):
            xp = array_api_compat.array_namespace(X)
            X = validate_data(self, X, dtype=(xp.float64, xp.float32), **kwargs)
        else:
            X = validate_data(self, X, dtype=(np.float64, np.float32), **kwargs)
        return X

    def _resolve_backend(self, X):
        """The xpnet Backend training runs on (see the module docstring)."""
        if dispatch_on() and foreign_array(X):
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
        if foreign_array(X) and array_api_compat.array_namespace(X) is be.xp \
                and array_api_compat.device(X) == be.device:
            return be.xp.astype(X, be.dtype)
        return be.asarray(to_host(X))

    def _check_same_place(self, X, method: str) -> None:
        """Under dispatch, predict-time inputs must live where the fit inputs lived."""
        if not dispatch_on():
            return
        here, there = namespace_key(X), self._fit_input_
        if here != there:
            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same "
                f"namespace and the same device as those passed to fit(): fit got "
                f"{there[0]} on {there[1]}, {method} got {here[0]} on {here[1]}. Refit, or "
                "convert X first."
            )

    def _output(self, be, values, X_in):
        """Device result -> the caller's namespace: X's under dispatch, else NumPy."""
        if dispatch_on() and foreign_array(X_in):
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
        sw = check_sample_weight(sample_weight, X.shape[0])
        sw = self._apply_class_weight(y, sw)
        if first_pass:
            be = self._resolve_backend(X)
            self._initialize(be, [X.shape[1], *sizes, self.n_outputs_])
            self._fit_input_ = namespace_key(X) if dispatch_on() else ("numpy", "cpu")
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
        self._layers = build_layers(be, sizes, self.activation, self._random_state)
        self._optimizer: Any = None  # scikit-learn's SGD or Adam update, made by _fit_stochastic

    # -- parameters as scikit-learn names them --------------------------------------------
    def _get_params(self) -> list:
        """Copies: the optimizers update the parameters in place."""
        xp = self._backend.xp
        return [(xp.asarray(d.weights, copy=True), xp.asarray(d.biases, copy=True))
                for d in dense_layers(self._layers)]

    def _set_params(self, params) -> None:
        for d, (w, b) in zip(dense_layers(self._layers), params):
            d.weights, d.biases = w, b

    @property
    def coefs_(self) -> list:
        """Weight matrices, one per layer, as host NumPy copies."""
        check_is_fitted(self, "_layers")
        be = self._backend
        return [be.to_numpy(d.weights) for d in dense_layers(self._layers)]

    @property
    def intercepts_(self) -> list:
        """Bias vectors, one per layer, as host NumPy copies."""
        check_is_fitted(self, "_layers")
        be = self._backend
        return [be.to_numpy(d.biases) for d in dense_layers(self._layers)]

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

