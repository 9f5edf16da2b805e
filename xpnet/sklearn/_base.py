"""What both estimators share: parameters, where training runs, the fit, inference, pickling."""

from __future__ import annotations

import array_api_compat
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..backends import backend_of, get_backend
from ..feeds.sparse import SparseRows, check_sparse, is_sparse
from ._inputs import check_sample_weight, dispatch_on, foreign_array, namespace_key, to_host
from ._lbfgs import LbfgsMixin
from ._network import build_layers, dense_layers
from ._params import STOCHASTIC_SOLVERS, validate_hyperparameters
from ._state import (
    ParamList,
    assign_all,
    device_layer,
    device_optimizer,
    device_params,
    host_layer,
    host_optimizer,
    host_params,
)
from ._stochastic import StochasticMixin


class BaseMLP(LbfgsMixin, StochasticMixin, BaseEstimator):
    """Parameters, validation, the fit and inference shared by both estimators.

    The subclasses define ``__init__`` with scikit-learn's signature (so that
    positional arguments mean what they mean there) and call this one.
    """

    def __init__(self, *, hidden_layer_sizes=(100,), activation="relu", solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
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
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.dtype = dtype

    def _check_solver(self) -> bool:
        """``partial_fit`` exists for the stochastic solvers only (scikit-learn's rule)."""
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # -- where training runs -----------------------------------------------------------
    def _validate_X(self, X, *, reset: bool):
        """Validated X: in X's namespace under dispatch, a CSR/CSC matrix, else NumPy."""
        kwargs: dict = dict(reset=reset, accept_sparse=False)
        if is_sparse(X):
            check_sparse(X)  # xpnet's messages first, then scikit-learn's own checks
            kwargs["accept_sparse"] = ["csr", "csc"]
        if dispatch_on() and foreign_array(X):
            xp = array_api_compat.array_namespace(X)
            return validate_data(self, X, dtype=(xp.float64, xp.float32), **kwargs)
        return validate_data(self, X, dtype=(np.float64, np.float32), **kwargs)

    def _resolve_backend(self, X):
        """The xpnet Backend training runs on (see the package docstring)."""
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
        """``X`` (validated) as an array of ``be`` in the model's dtype, or sparse rows."""
        if is_sparse(X):
            return SparseRows(X, be)  # never densified whole
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
        sizes = validate_hyperparameters(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        first_pass = not hasattr(self, "_layers") or (not self.warm_start and not incremental)
        X = self._validate_X(X, reset=first_pass)
        y = self._validate_y(y, X.shape[0], incremental=incremental, classes=classes,
                             first_pass=first_pass)
        sw = self._apply_class_weight(y, check_sample_weight(sample_weight, X.shape[0]))
        # As scikit-learn: an int seed restarts the draws on every fit/partial_fit call.
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(self._resolve_backend(X), [X.shape[1], *sizes, self.n_outputs_])
            self._fit_input_ = namespace_key(X) if dispatch_on() else ("numpy", "cpu")
        be = self._backend
        Xd = self._to_backend(be, X)
        encoded = self._encode_targets(y)
        targets = self._loss.prepare_targets(
            be, be.asarray(encoded, dtype=be.index_dtype if encoded.dtype.kind in "iu" else None),
            self.n_outputs_)
        if self.solver == "lbfgs":
            self._fit_lbfgs(be, Xd, targets, sw)
        else:
            self._fit_stochastic(be, Xd, targets, y, sw, incremental)
        self._check_finite_params()
        return self

    def _initialize(self, be, sizes) -> None:
        """scikit-learn's ``_initialize``: counters, stopping state, Glorot-uniform layers."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._out_activation()
        self._backend = be
        self._layers = build_layers(be, sizes, self.activation, self._random_state)
        self._optimizer = None  # scikit-learn's SGD or Adam update, made per fit
        self._compiled = None
        self._best_params = self._get_params()  # early stopping restores these if no epoch beats them
        if self.solver in STOCHASTIC_SOLVERS:
            self._initialize_stopping()

    def _initialize_stopping(self) -> None:
        # None where scikit-learn has None (the other stopping rule is in use).
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self.best_loss_ = None if self.early_stopping else np.inf

    def _check_finite_params(self) -> None:
        xp = self._backend.xp
        if not all(bool(xp.all(xp.isfinite(p))) for pair in self._get_params(copy=False)
                   for p in pair):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )

    # -- parameters as scikit-learn names them --------------------------------------------
    def _get_params(self, copy: bool = True) -> list:
        """(weights, biases) per Dense layer; copies by default (updates are in place)."""
        xp = self._backend.xp
        return [(xp.asarray(d.weights, copy=copy), xp.asarray(d.biases, copy=copy))
                for d in dense_layers(self._layers)]

    def _set_params(self, params) -> None:
        for d, (w, b) in zip(dense_layers(self._layers), params):
            d.set_param("weights", w)
            d.set_param("biases", b)

    @property
    def coefs_(self) -> list:
        """Weight matrices, one per layer: the model's own arrays (of its backend).

        ``est.coefs_ = [...]`` and ``est.coefs_[i] = a`` replace them; where the
        library's arrays are mutable (not JAX) ``est.coefs_[i][:] = 0`` edits the
        model in place.
        """
        check_is_fitted(self, "_layers")
        return ParamList(self, "weights")

    @coefs_.setter
    def coefs_(self, values) -> None:
        check_is_fitted(self, "_layers")
        assign_all(self, "weights", values)

    @property
    def intercepts_(self) -> list:
        """Bias vectors, one per layer: the model's own arrays (see :attr:`coefs_`)."""
        check_is_fitted(self, "_layers")
        return ParamList(self, "biases")

    @intercepts_.setter
    def intercepts_(self, values) -> None:
        check_is_fitted(self, "_layers")
        assign_all(self, "biases", values)

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
        """The network's outputs for all rows of ``Xd`` (sparse rows block by block)."""
        if isinstance(Xd, SparseRows):
            return be.xp.concat([self._forward(be, block) for block in Xd.blocks()], axis=0)
        out = Xd
        for layer in self._layers:
            out = layer._forward(out)
        return out

    def to_onnx(self, path, *, dtype=None) -> None:
        """Write the fitted estimator as an ONNX file (see :func:`xpnet.export.estimator_to_onnx`)."""
        from ..onnx_graph import estimator_to_onnx  # ndonnx is imported when it runs
        estimator_to_onnx(self, path, dtype=dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = True
        return tags

    # -- pickling ---------------------------------------------------------------------------
    def __getstate__(self):
        """Host arrays only (device arrays need not be picklable), optimizer state included."""
        state = dict(super().__getstate__())  # a copy: the live estimator keeps its arrays
        if "_layers" in state:
            be = state.pop("_backend")
            state["_backend_spec"] = (be.name, be.device_name, be.dtype_name)
            state["_optimizer"] = host_optimizer(state.get("_optimizer"),
                                                        state["_layers"], be)
            state["_layers"] = [host_layer(layer, be) for layer in state["_layers"]]
            state["_best_params"] = host_params(state.get("_best_params"), be)
            state["_compiled"] = None  # rebuilt by the next fit
        return state

    def __setstate__(self, state):
        spec = state.pop("_backend_spec", None)
        super().__setstate__(state)
        if spec is not None:
            name, device, dtype = spec
            be = get_backend(name, device=device, dtype=dtype)
            self._backend = be
            self._layers = [device_layer(layer, be) for layer in self._layers]
            self._optimizer = device_optimizer(self._optimizer, self._layers, be)
            self._best_params = device_params(self._best_params, be)
