"""The scikit-learn estimator cases of :mod:`benchmarks.fit_hashes`.

Each trains ``xpnet.sklearn.MLPClassifier`` or ``MLPRegressor`` on small host
data (or, with scikit-learn's array API dispatch, on the backend's arrays) and
hashes ``coefs_`` + ``intercepts_`` and the fitted record: ``loss_curve_``,
``n_iter_``, ``t_``, ``loss_``, ``best_loss_``, ``validation_scores_`` and
``best_validation_score_`` where present.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import xpnet

from .fit_hash_cases import Case, Outcome, backend_tag, host_features, host_sample_weight

#: Fitted attributes hashed as the record (those an estimator has).
RECORD_ATTRIBUTES = ("loss_curve_", "n_iter_", "t_", "loss_", "best_loss_",
                     "validation_scores_", "best_validation_score_")


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator case.

    ``targets``: ``multiclass``, ``binary``, ``multilabel`` (classifier),
    ``single`` or ``multi`` (regressor). ``calls``: ``fit``; ``partial`` (three
    ``partial_fit`` calls); ``warm`` (``fit``, then ``fit`` again with
    ``warm_start=True`` and fewer iterations). ``dispatch`` trains on the
    backend's arrays under ``sklearn.config_context(array_api_dispatch=True)``.
    """

    targets: str = "multiclass"
    params: dict = field(default_factory=dict)
    calls: str = "fit"
    weights: bool = False
    dispatch: bool = False


def _targets(kind: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind == "binary":
        return (y == 1).astype(np.int64)
    if kind == "multilabel":
        return (X[:, :3] > 0.3).astype(np.int64)
    if kind == "single":
        return X[:, 0] - 0.5 * X[:, 1]
    if kind == "multi":
        return np.stack([X[:, 0] - 0.5 * X[:, 1], np.tanh(X[:, 2])], axis=1)
    return y


def _estimator(be: xpnet.Backend, spec: EstimatorSpec) -> Any:
    from xpnet.sklearn import MLPClassifier, MLPRegressor

    cls = MLPRegressor if spec.targets in ("single", "multi") else MLPClassifier
    params = {"hidden_layer_sizes": (16,), "random_state": 0, "max_iter": 8, "batch_size": 32,
              "learning_rate_init": 0.01, "solver": "sgd", **spec.params}
    if not spec.dispatch:
        params.update(backend=be.name, dtype=be.dtype_name)
    return cls(**params)


def _train(est: Any, spec: EstimatorSpec, X: Any, t: Any, w: Any) -> None:
    fit_kwargs = {} if w is None else {"sample_weight": w}
    if spec.calls == "partial":
        extra = {"classes": np.unique(t)} if spec.targets in ("multiclass", "binary") else {}
        for _ in range(3):
            est.partial_fit(X, t, **fit_kwargs, **extra)
        return
    est.fit(X, t, **fit_kwargs)
    if spec.calls == "warm":
        est.set_params(warm_start=True, max_iter=4)
        est.fit(X, t, **fit_kwargs)


def _host_array(be: xpnet.Backend, a: Any) -> np.ndarray:
    return np.asarray(a) if isinstance(a, np.ndarray) else be.to_numpy(a)


def _record(est: Any) -> dict:
    return {name: getattr(est, name) for name in RECORD_ATTRIBUTES if hasattr(est, name)}


def run_estimator(be: xpnet.Backend, spec: EstimatorSpec) -> Outcome:
    """Train the spec's estimator; return its coefficients and fitted record."""
    import sklearn

    X, y = host_features()
    X = X.astype(be.dtype_name)
    t = _targets(spec.targets, X, y)
    w = host_sample_weight() if spec.weights else None
    est = _estimator(be, spec)
    with warnings.catch_warnings(), sklearn.config_context(array_api_dispatch=spec.dispatch):
        warnings.simplefilter("ignore")  # ConvergenceWarning: these fits are short on purpose
        if spec.dispatch:
            X = be.asarray(X)
            w = None if w is None else be.asarray(w)
        _train(est, spec, X, t, w)
    arrays = [_host_array(be, a) for a in (*est.coefs_, *est.intercepts_)]
    return arrays, _record(est)


ESTIMATORS: dict[str, EstimatorSpec] = {
    "sk-clf-sgd": EstimatorSpec(),
    "sk-clf-sgd-es": EstimatorSpec(params={"early_stopping": True, "max_iter": 12}),
    "sk-clf-adam": EstimatorSpec(params={"solver": "adam"}),
    "sk-clf-adam-es": EstimatorSpec(params={"solver": "adam", "early_stopping": True,
                                            "max_iter": 12}),
    "sk-clf-invscaling": EstimatorSpec(params={"learning_rate": "invscaling",
                                               "learning_rate_init": 0.1}),
    "sk-clf-adaptive": EstimatorSpec(params={"learning_rate": "adaptive", "max_iter": 14,
                                             "n_iter_no_change": 2, "tol": 1e-1}),
    "sk-clf-no-nesterov": EstimatorSpec(params={"nesterovs_momentum": False}),
    "sk-clf-batch-auto": EstimatorSpec(params={"batch_size": "auto", "solver": "adam"}),
    "sk-clf-batch-48": EstimatorSpec(params={"batch_size": 48}),
    "sk-clf-no-shuffle": EstimatorSpec(params={"shuffle": False}),
    "sk-clf-weights": EstimatorSpec(weights=True),
    "sk-clf-class-weight": EstimatorSpec(params={"class_weight": "balanced", "solver": "adam"}),
    "sk-clf-partial": EstimatorSpec(calls="partial"),
    "sk-clf-partial-adam-weights": EstimatorSpec(calls="partial", weights=True,
                                                 params={"solver": "adam"}),
    "sk-clf-warm-start": EstimatorSpec(calls="warm"),
    "sk-clf-warm-start-adam-es": EstimatorSpec(calls="warm", params={
        "solver": "adam", "early_stopping": True}),
    "sk-clf-binary": EstimatorSpec(targets="binary", params={"early_stopping": True}),
    "sk-clf-multilabel": EstimatorSpec(targets="multilabel", params={"solver": "adam"}),
    "sk-clf-tanh": EstimatorSpec(params={"activation": "tanh", "alpha": 1e-2}),
    "sk-reg-sgd": EstimatorSpec(targets="single"),
    "sk-reg-sgd-es": EstimatorSpec(targets="single", params={"early_stopping": True}),
    "sk-reg-adam": EstimatorSpec(targets="multi", params={"solver": "adam"}),
    "sk-reg-adam-es-weights": EstimatorSpec(targets="multi", weights=True, params={
        "solver": "adam", "early_stopping": True}),
    "sk-reg-invscaling": EstimatorSpec(targets="single", params={"learning_rate": "invscaling"}),
    "sk-reg-partial": EstimatorSpec(targets="single", calls="partial"),
    "sk-reg-warm-start": EstimatorSpec(targets="multi", calls="warm",
                                       params={"solver": "adam"}),
}

#: Run on every backend but NumPy, where the input would be converted anyway.
DISPATCH_ESTIMATORS: dict[str, EstimatorSpec] = {
    "sk-dispatch-clf-sgd": EstimatorSpec(dispatch=True),
    "sk-dispatch-reg-adam-weights": EstimatorSpec(targets="single", dispatch=True, weights=True,
                                                  params={"solver": "adam"}),
}

#: JAX: few cases (every new estimator compiles its epochs), some long enough to compile.
JAX_ESTIMATORS = ("sk-clf-sgd", "sk-clf-adam-es", "sk-clf-partial", "sk-clf-warm-start",
                  "sk-reg-adam-es-weights", "sk-clf-compiled", "sk-dispatch-clf-sgd")

#: Long enough for compiled epochs where the backend has them (256 steps and more).
COMPILED_ESTIMATORS: dict[str, EstimatorSpec] = {
    "sk-clf-compiled": EstimatorSpec(params={"max_iter": 40, "solver": "adam"}),
}


def estimator_cases(name: str, dtype: str) -> list[Case]:
    """The estimator cases of one backend and dtype."""
    specs = {**ESTIMATORS, **COMPILED_ESTIMATORS,
             **(DISPATCH_ESTIMATORS if name != "numpy" else {})}
    if name == "jax":
        specs = {k: v for k, v in specs.items() if k in JAX_ESTIMATORS}
    tag = backend_tag(name, dtype)
    return [Case(f"{tag}/{variant}", _runner(name, dtype, spec)) for variant, spec in specs.items()]


def _runner(name: str, dtype: str, spec: EstimatorSpec) -> Callable[[], Outcome]:
    def run() -> Outcome:
        return run_estimator(xpnet.get_backend(name, dtype=dtype), spec)
    return run
