"""Bad inputs to xpnet.sklearn and to the loss objects: each raises the usual Python
error type with a message naming the argument, what was expected and what was given."""
# ruff: noqa: E402  (SCIPY_ARRAY_API must be set before scikit-learn and SciPy are imported)

from __future__ import annotations

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from scipy import sparse

pytest.importorskip("sklearn")

from sklearn.exceptions import NotFittedError

import xpnet
from xpnet.losses import BinaryCrossEntropy, MeanSquaredError
from xpnet.sklearn import MLPClassifier, MLPRegressor

RNG = np.random.default_rng(0)
X = RNG.random((20, 4))
Y = np.arange(20) % 3
YF = RNG.random(20)


def _fitted():
    return MLPClassifier((4,), max_iter=2, random_state=0).fit(X, Y)


def _be():
    return xpnet.get_backend("numpy", dtype="float64")


CASES = {
    # --- targets of the wrong kind for the loss ----------------------------------------
    "MSE on integer labels": (
        lambda: MeanSquaredError().prepare_targets(_be(), _be().asarray(Y, dtype=np.int64), 1),
        TypeError, r"y must hold floating-point targets.*got dtype int64"),
    "BCE on labels 0..2": (
        lambda: BinaryCrossEntropy().prepare_targets(_be(), _be().asarray(Y, dtype=np.int64), 1),
        ValueError, r"y must hold only 0 and 1"),
    "classifier on continuous targets": (
        lambda: MLPClassifier().fit(X, YF),
        ValueError, r"Unknown label type: continuous"),
    "regressor on string targets": (
        lambda: MLPRegressor().fit(X, np.asarray(["a", "b"] * 10)),
        ValueError, r"dtype='numeric' is not compatible with arrays of bytes/strings"),
    # --- partial_fit and labels ------------------------------------------------------------
    "partial_fit without classes first": (
        lambda: MLPClassifier().partial_fit(X, Y),
        ValueError, r"classes must be passed on the first call to partial_fit"),
    "partial_fit with an unseen label": (
        lambda: MLPClassifier(max_iter=2).partial_fit(X, Y, classes=[0, 1, 2]).partial_fit(
            X, np.where(Y == 2, 7, Y)),
        ValueError, r"`y` has classes not in `self.classes_`. `self.classes_` has \[0 1 2\]"),
    "partial_fit with other classes later": (
        lambda: MLPClassifier(max_iter=2).partial_fit(X, Y, classes=[0, 1, 2]).partial_fit(
            X, Y, classes=[0, 1, 2, 3]),
        ValueError, r"`classes=\[0, 1, 2, 3\]` is not the same as on last call to partial_fit"),
    "warm_start refit on a subset of the classes": (
        lambda: MLPClassifier(max_iter=2, warm_start=True).fit(X, Y).fit(X[Y < 2], Y[Y < 2]),
        ValueError, r"warm_start can only be used where `y` has the same classes as in the "
                    r"previous call to fit. Previously got \[0 1 2\], `y` has \[0 1\]"),
    "warm_start refit with an unseen class": (
        lambda: MLPClassifier(max_iter=2, warm_start=True).fit(X, Y).fit(X, np.where(Y, Y, 5)),
        ValueError, r"warm_start can only be used where `y` has the same classes"),
    "refit (no warm start) partial_fit with an unseen class": (
        lambda: MLPClassifier(max_iter=2).fit(X, Y).partial_fit(X, np.where(Y, Y, 5)),
        ValueError, r"`y` has classes not in `self.classes_`"),
    "partial_fit with lbfgs": (
        lambda: MLPClassifier(solver="lbfgs").partial_fit(X, Y, classes=[0, 1, 2]),
        AttributeError, r"This 'MLPClassifier' has no attribute 'partial_fit'"),
    "regressor partial_fit with lbfgs": (
        lambda: MLPRegressor(solver="lbfgs").partial_fit(X, YF),
        AttributeError, r"This 'MLPRegressor' has no attribute 'partial_fit'"),
    "poisson with negative targets": (
        lambda: MLPRegressor(loss="poisson").fit(X, YF - 0.5),
        ValueError, r"loss='poisson' needs y >= 0.*negative targets"),
    "unknown regression loss": (
        lambda: MLPRegressor(loss="huber").fit(X, YF),
        ValueError, r"'loss' parameter of MLPRegressor must be one of \['squared_error', "),
    "hidden sizes as MLPRegressor's first positional argument": (
        lambda: MLPRegressor((8,)).fit(X, YF),
        ValueError, r"MLPRegressor\(hidden_layer_sizes=\(8,\)\)"),
    "max_fun 0": (
        lambda: MLPClassifier(solver="lbfgs", max_fun=0).fit(X, Y),
        ValueError, r"'max_fun' parameter must be an int >= 1, got 0"),
    "n_iter_no_change a float other than inf": (
        lambda: MLPClassifier(n_iter_no_change=2.5).fit(X, Y),
        ValueError, r"'n_iter_no_change' parameter must be an int >= 1 or np.inf, got 2.5"),
    "partial_fit with early_stopping": (
        lambda: MLPClassifier(early_stopping=True).partial_fit(X, Y, classes=[0, 1, 2]),
        ValueError, r"partial_fit does not support early_stopping=True"),
    # --- NaN and lengths -----------------------------------------------------------------------
    "NaN in y (regression)": (
        lambda: MLPRegressor().fit(X, np.where(np.arange(20) == 3, np.nan, YF)),
        ValueError, r"Input y contains NaN"),
    "NaN in X": (
        lambda: MLPClassifier().fit(np.where(X > 0.9, np.nan, X), Y),
        ValueError, r"Input X contains NaN"),
    "NaN in sample_weight": (
        lambda: MLPClassifier().fit(X, Y, sample_weight=np.where(Y == 1, np.nan, 1.0)),
        ValueError, r"Input sample_weight contains NaN"),
    "negative sample_weight": (
        lambda: MLPClassifier().fit(X, Y, sample_weight=np.where(Y == 1, -1.0, 1.0)),
        ValueError, r"sample_weight must be >= 0.*7 negative weights, the smallest -1.0"),
    "all-zero sample_weight": (
        lambda: MLPRegressor().fit(X, YF, sample_weight=np.zeros(20)),
        ValueError, r"at least one non-zero"),
    "sample_weight of the wrong length": (
        lambda: MLPClassifier().fit(X, Y, sample_weight=np.ones(19)),
        ValueError, r"sample_weight.shape == \(19,\), expected \(20,\)"),
    "y of the wrong length": (
        lambda: MLPClassifier().fit(X, Y[:19]),
        ValueError, r"inconsistent numbers of samples: \[20, 19\]"),
    "y is None": (
        lambda: MLPRegressor().fit(X, None),
        ValueError, r"MLPRegressor requires y to be passed"),
    # --- hyperparameters -----------------------------------------------------------------------
    "unknown solver": (
        lambda: MLPClassifier(solver="newton").fit(X, Y),
        ValueError, r"'solver'.*\['lbfgs', 'sgd', 'adam'\], got 'newton'"),
    "hidden layer of size 0": (
        lambda: MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, Y),
        ValueError, r"hidden_layer_sizes must be > 0, got \(4, 0\)"),
    "negative alpha": (
        lambda: MLPRegressor(alpha=-1.0).fit(X, YF),
        ValueError, r"'alpha' parameter must be a finite number >= 0, got -1.0"),
    "batch_size 0": (
        lambda: MLPRegressor(batch_size=0).fit(X, YF),
        ValueError, r"'batch_size' parameter must be 'auto' or an int >= 1, got 0"),
    "class_weight of a label that does not exist": (
        lambda: MLPClassifier(class_weight={5: 2.0}).fit(X, Y),
        ValueError, r"class_weight has labels not among the classes \[0, 1, 2\]: \[5\]"),
    "class_weight of the wrong kind": (
        lambda: MLPClassifier(class_weight="heavy").fit(X, Y),
        ValueError, r"class_weight must be 'balanced', a dict or None, got 'heavy'"),
    # --- fitted-state and input mismatches ------------------------------------------------------
    "predict before fit": (
        lambda: MLPClassifier().predict(X),
        NotFittedError, r"not fitted yet"),
    "predict with another feature count": (
        lambda: _fitted().predict(X[:, :3]),
        ValueError, r"X has 3 features, but MLPClassifier is expecting 4 features"),
    # --- sparse X --------------------------------------------------------------------------------
    "sparse X of a non-numeric dtype": (
        lambda: MLPClassifier().fit(sparse.csr_array(X.astype(np.complex128)), Y),
        TypeError, r"X is a sparse matrix of dtype complex128; expected real numbers"),
    "sparse X with no rows": (
        lambda: MLPClassifier().fit(sparse.csr_array((0, 4)), Y[:0]),
        ValueError, r"X has shape \(0, 4\); expected at least one row"),
    "sparse X with a NaN": (
        lambda: MLPClassifier().fit(sparse.csr_array(np.where(X > 0.9, np.nan, X)), Y),
        ValueError, r"Input X contains NaN or infinity: \d+ of its \d+ stored entries"),
    "sparse X in COO format": (
        lambda: MLPClassifier().fit(sparse.coo_array(X), Y),
        TypeError, r"X is a scipy.sparse matrix in 'coo' format; expected 'csr' or 'csc'"),
    "sparse X with another feature count": (
        lambda: _fitted().predict(sparse.csr_array(X[:, :3])),
        ValueError, r"X has 3 features, but MLPClassifier is expecting 4 features"),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_error(case):
    action, error, pattern = CASES[case]
    with pytest.raises(error, match=pattern):
        action()


def test_dispatch_refuses_a_backend_other_than_X():
    torch = pytest.importorskip("torch")
    import sklearn

    with sklearn.config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match=r"backend='jax' but array_api_dispatch is on and "
                                             r"X is a torch array"):
            MLPClassifier(backend="jax").fit(torch.asarray(X), torch.asarray(Y))
