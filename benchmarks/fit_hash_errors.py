"""Errors that :mod:`benchmarks.fit_hashes` pins: their type and message, hashed.

Each case gives bad input to the public API and must raise -- nearly all
before the first step, a few (a NaN found in a chunk, a generator replayed,
a diverging loss, a missing EarlyStopping key) during training, because
their texts are as much a part of the behaviour. A case that does not raise
shows as an ERROR row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import xpnet
from xpnet.distributed import init as init_communicator

from .fit_hash_cases import (
    CHUNK_BYTES,
    Case,
    HostSet,
    Outcome,
    build_model,
    memmap_of,
    to_device,
)


def _model(be: xpnet.Backend, loss: str = "softmax_crossentropy") -> xpnet.Sequential:
    return build_model(be, loss)


def _fit(be: xpnet.Backend, X: Any = None, y: Any = None, *, loss: str = "softmax_crossentropy",
         **kwargs: Any) -> Any:
    """``fit`` a fresh model, on the default data where ``X`` or ``y`` is None."""
    data = HostSet.make(be, loss)
    X = to_device(be, data.X) if X is None else X
    y = to_device(be, data.t) if y is None else y
    return _model(be, loss).fit(X, y, **{"epochs": 1, "batch_size": 32, **kwargs})


def _data(be: xpnet.Backend, loss: str = "softmax_crossentropy") -> tuple:
    data = HostSet.make(be, loss)
    return to_device(be, data.X), to_device(be, data.t)


def _host(be: xpnet.Backend) -> HostSet:
    return HostSet.make(be, "softmax_crossentropy")


def _with_nan(be: xpnet.Backend) -> Any:
    X = _host(be).X.copy()
    X[7, 3] = np.nan
    return X


def _fit_memmap(be: xpnet.Backend, X: np.ndarray | None = None, y: Any = None,
                **kwargs: Any) -> Any:
    """``fit`` on a memmap of ``X`` (default data), labels on the host."""
    data = _host(be)
    with tempfile.TemporaryDirectory(prefix="xpnet-hashes-") as tmp:
        mapped = memmap_of(data.X if X is None else X, Path(tmp), "X")
        return _fit(be, mapped, data.t if y is None else y,
                    **{"chunk_bytes": CHUNK_BYTES, **kwargs})


def _batches(be: xpnet.Backend, n: int = 4) -> list:
    X, y = _data(be)
    return [(X[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]) for i in range(n)]


def _fit_batches(be: xpnet.Backend, batches: Any, **kwargs: Any) -> Any:
    return _model(be).fit(batches, **{"epochs": 1, **kwargs})


def _changing_batches(be: xpnet.Backend) -> list:
    batches = _batches(be)
    X, y = batches[1]
    batches[1] = (X[:16], y[:16])
    return batches


def _diverge(be: xpnet.Backend) -> Any:
    X, t = _data(be, "mse")
    return _model(be, "mse").fit(X * 1e6, t, epochs=2, batch_size=32,
                                 optimizer=xpnet.SGD(1e6), check_every=2)


def _foreign(be: xpnet.Backend) -> Any:
    """An array of another library (array-api-strict) given to this backend's model."""
    other = xpnet.get_backend("array_api_strict", dtype=be.dtype)
    return _fit(be, other.asarray(_host(be).X))


#: variant -> function(backend) that must raise: Sequential and its parts.
SEQUENTIAL_ERRORS: dict[str, Callable[[xpnet.Backend], Any]] = {
    "fit-X-1d": lambda be: _fit(be, _data(be)[0][0]),
    "fit-X-features": lambda be: _fit(be, _data(be)[0][:, :10]),
    "fit-X-int": lambda be: _fit(be, be.asarray(np.ones((256, 20)), dtype=be.index_dtype)),
    "fit-X-nan": lambda be: _fit(be, be.asarray(_with_nan(be))),
    "fit-X-foreign": _foreign,
    "fit-y-float": lambda be: _fit(be, y=be.asarray(_host(be).t.astype(np.float64))),
    "fit-y-range": lambda be: _fit(be, y=to_device(be, _host(be).t + 1)),
    "fit-y-length": lambda be: _fit(be, y=_data(be)[1][:-1]),
    "fit-batch-0": lambda be: _fit(be, batch_size=0),
    "fit-batch-too-big": lambda be: _fit(be, batch_size=1000),
    "fit-epochs-negative": lambda be: _fit(be, epochs=-1),
    "fit-shuffle-chunks-arrays": lambda be: _fit(be, shuffle="chunks"),
    "fit-seed-bad": lambda be: _fit(be, seed="seven"),
    "fit-check-every-negative": lambda be: _fit(be, check_every=-1),
    "fit-split-1": lambda be: _fit(be, validation_split=1.0),
    "fit-alpha-negative": lambda be: _fit(be, alpha=-1.0),
    "fit-weights-length": lambda be: _fit(be, sample_weight=be.asarray(np.ones(10))),
    "fit-weights-negative": lambda be: _fit(be, sample_weight=be.asarray(-np.ones(256))),
    "fit-weights-zero": lambda be: _fit(be, sample_weight=be.asarray(np.zeros(256))),
    "fit-class-weight-bad": lambda be: _fit(be, class_weight="heavy"),
    "fit-class-weight-label": lambda be: _fit(be, class_weight={7: 2.0}),
    "fit-class-weight-mse": lambda be: _fit(be, loss="mse", class_weight="balanced"),
    "fit-validation-features": lambda be: _fit(
        be, validation_data=(_data(be)[0][:, :5], _data(be)[1])),
    "fit-validation-not-pair": lambda be: _fit(be, validation_data=_data(be)[0]),
    "fit-optimizer-string": lambda be: _fit(be, optimizer="adam"),
    "fit-mse-targets": lambda be: _fit(be, y=be.asarray(np.ones((256, 5))), loss="mse"),
    "fit-bce-targets": lambda be: _fit(be, y=be.asarray(np.full((256, 3), 2.0)),
                                       loss="binary_crossentropy"),
    "fit-memmap-dtype": lambda be: _fit_memmap(be, _host(be).X.astype(np.float16)),
    "fit-memmap-distributed": lambda be: _fit_memmap(
        be, distributed=init_communicator(require_mpi=False)),
    "fit-memmap-chunk-bytes-0": lambda be: _fit_memmap(be, chunk_bytes=0),
    "fit-memmap-labels-length": lambda be: _fit_memmap(be, y=_host(be).t[:-3]),
    "fit-memmap-nan": lambda be: _fit_memmap(be, _with_nan(be)),
    "fit-memmap-weights-device": lambda be: _fit_memmap(
        be, sample_weight=xpnet.get_backend("array_api_strict").asarray(np.ones(256))),
    "fit-batches-weights": lambda be: _fit_batches(be, _batches(be),
                                                   sample_weight=np.ones(128)),
    "fit-batches-class-weight": lambda be: _fit_batches(be, _batches(be),
                                                        class_weight="balanced"),
    "fit-batches-split": lambda be: _fit_batches(be, _batches(be), validation_split=0.2),
    "fit-batches-item": lambda be: _fit_batches(be, [_data(be)[0][:32]]),
    "fit-batches-shapes": lambda be: _fit_batches(be, _changing_batches(be)),
    "fit-generator-replayed": lambda be: _fit_batches(be, iter(_batches(be)), epochs=2),
    "fit-distributed-batches": lambda be: _fit_batches(
        be, _batches(be), distributed=init_communicator(require_mpi=False)),
    "fit-early-stopping-key": lambda be: _fit(be, callbacks=[xpnet.EarlyStopping()]),
    "fit-diverges": _diverge,
    "evaluate-empty": lambda be: _model(be).evaluate(_data(be)[0][:0], _data(be)[1][:0]),
    "evaluate-features": lambda be: _model(be).evaluate(_data(be)[0][:, :4], _data(be)[1]),
    "evaluate-weights-length": lambda be: _model(be).evaluate(
        *_data(be), sample_weight=be.asarray(np.ones(3))),
    "predict-features": lambda be: _model(be).predict(_data(be)[0][:, :5]),
    "predict-batch-0": lambda be: _model(be).predict(_data(be)[0], batch_size=0),
    "mlp-sizes": lambda be: xpnet.Sequential.mlp([3], backend=be),
    "mlp-loss": lambda be: xpnet.Sequential.mlp([4, 2], backend=be, loss="hinge"),
    "sgd-nesterov": lambda be: xpnet.SGD(0.1, nesterov=True),
    "adam-rate": lambda be: xpnet.Adam(-1.0),
    "early-stopping-patience": lambda be: xpnet.EarlyStopping(patience=-1),
}


def _sklearn_fit(be: xpnet.Backend, kind: str = "clf", X: Any = None, y: Any = None,
                 method: str = "fit", fit_kwargs: dict | None = None, **params: Any) -> Any:
    """Fit an estimator on host data (the default data where ``X``/``y`` is None)."""
    from xpnet.sklearn import MLPClassifier, MLPRegressor

    data = _host(be)
    cls = MLPClassifier if kind == "clf" else MLPRegressor
    est = cls(**{"hidden_layer_sizes": (8,), "max_iter": 2, "random_state": 0,
                 "backend": be.name, "dtype": str(data.X.dtype), **params})
    X = data.X if X is None else X
    y = (data.t if kind == "clf" else data.X[:, 0]) if y is None else y
    return getattr(est, method)(X, y, **(fit_kwargs or {}))


def _sklearn_predict_unfitted(be: xpnet.Backend) -> Any:
    from xpnet.sklearn import MLPClassifier

    return MLPClassifier(backend=be.name).predict(_host(be).X)


#: variant -> function(backend) that must raise: the scikit-learn estimators.
SKLEARN_ERRORS: dict[str, Callable[[xpnet.Backend], Any]] = {
    "sk-solver-lbfgs": lambda be: _sklearn_fit(be, solver="lbfgs"),
    "sk-solver-bad": lambda be: _sklearn_fit(be, solver="newton"),
    "sk-hidden-zero": lambda be: _sklearn_fit(be, hidden_layer_sizes=(0,)),
    "sk-learning-rate-bad": lambda be: _sklearn_fit(be, learning_rate="fast"),
    "sk-max-iter-0": lambda be: _sklearn_fit(be, max_iter=0),
    "sk-X-nan": lambda be: _sklearn_fit(be, X=_with_nan(be)),
    "sk-y-length": lambda be: _sklearn_fit(be, y=_host(be).t[:-1]),
    "sk-weights-negative": lambda be: _sklearn_fit(
        be, fit_kwargs={"sample_weight": -np.ones(256)}),
    "sk-partial-no-classes": lambda be: _sklearn_fit(be, method="partial_fit"),
    "sk-partial-unknown-class": lambda be: _sklearn_fit(
        be, method="partial_fit", fit_kwargs={"classes": np.array([0, 1])}),
    "sk-validation-too-small": lambda be: _sklearn_fit(
        be, early_stopping=True, validation_fraction=0.001),
    "sk-regressor-y-2d-bad": lambda be: _sklearn_fit(be, "reg", y=np.ones((256, 2, 2))),
    "sk-predict-unfitted": _sklearn_predict_unfitted,
}


def _expect_raise(fn: Callable[[xpnet.Backend], Any], name: str, dtype: str) -> Callable:
    def run() -> Outcome:
        fn(xpnet.get_backend(name, dtype=dtype))
        return [], {}  # (the runner turns a case that does not raise into an ERROR row)
    return run


def error_cases(name: str, dtype: str, table: dict | None = None) -> list[Case]:
    """The error cases of ``table`` (default: all) on one backend and dtype."""
    table = {**SEQUENTIAL_ERRORS, **SKLEARN_ERRORS} if table is None else table
    tag = f"{name}-f{dtype[-2:]}"
    return [Case(f"{tag}/error/{variant}", _expect_raise(fn, name, dtype), raises=True)
            for variant, fn in table.items()]
