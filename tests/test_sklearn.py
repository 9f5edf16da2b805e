"""xpnet.sklearn: scikit-learn's own estimator suite, array API dispatch, meta-estimators."""
# ruff: noqa: E402  (SCIPY_ARRAY_API must be set before scikit-learn and SciPy are imported)

from __future__ import annotations

import os

# scikit-learn refuses array API dispatch unless SciPy's own support is on.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import warnings

import array_api_compat
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from xpnet.sklearn import MLPClassifier, MLPRegressor

#: Checks that scikit-learn's own MLP with the same parameters fails as well (tested below).
SKLEARN_FAILS_TOO = {
    "check_classifiers_multilabel_output_format_predict_proba":
        "scikit-learn's MLPClassifier(solver='lbfgs') fails it too: after lbfgs some sigmoid "
        "outputs round to exactly 1.0, which the check does not allow",
}


def _expected_failures(estimator) -> dict:
    lbfgs_classifier = estimator.solver == "lbfgs" and isinstance(estimator, MLPClassifier)
    return SKLEARN_FAILS_TOO if lbfgs_classifier else {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(), MLPRegressor(), MLPClassifier(solver="lbfgs"),
                          MLPRegressor(solver="lbfgs"), MLPClassifier(solver="sgd")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    """Every check of scikit-learn's suite, with scikit-learn's default hyperparameters and
    with each solver (lbfgs once failed a check that the default adam passed)."""
    check(estimator)


def test_the_checks_excused_for_lbfgs_fail_for_scikit_learns_own_mlp_too():
    from sklearn.utils import estimator_checks

    for name in SKLEARN_FAILS_TOO:
        with pytest.raises(AssertionError):
            getattr(estimator_checks, name)(
                "MLPClassifier", SkMLPClassifier(solver="lbfgs", random_state=0))


def test_predict_log_proba_is_log_of_predict_proba_as_in_scikit_learn():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(20, 2)) + c for c in ([0, 0], [40, 0], [0, 40])])
    y = np.repeat([0, 1, 2], 20)
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0)
    ours = _fit_quietly(MLPClassifier(**params), X, y)
    theirs = _fit_quietly(SkMLPClassifier(**params), X, y)
    far = X * 30  # some probabilities underflow to exactly 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no divide-by-zero warning for them
        logs = ours.predict_log_proba(far)
    with np.errstate(divide="ignore"):
        expected = np.log(ours.predict_proba(far))
        sklearn_logs = theirs.predict_log_proba(far)
    assert np.isneginf(logs).sum() > 0
    np.testing.assert_array_equal(logs, expected)
    np.testing.assert_array_equal(np.isneginf(logs), np.isneginf(sklearn_logs))
    finite = np.isfinite(logs)
    np.testing.assert_allclose(logs[finite], sklearn_logs[finite], rtol=1e-6)  # weights: ~1e-8


# -- the same numbers as scikit-learn's own MLP ------------------------------------


PARITY_CASES = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.1),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.3,
                           nesterovs_momentum=False),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=1, tol=0.5,
                         learning_rate_init=0.1),
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "adam-early-stopping": dict(early_stopping=True, max_iter=8, n_iter_no_change=2,
                                learning_rate_init=0.01),
    "tanh-weighted": dict(activation="tanh", weighted=True),
    "logistic-binary": dict(activation="logistic", binary=True, weighted=True),
}


def _digits(n=300):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _host(arrays):
    """The estimator's parameter arrays (of its backend) as NumPy arrays."""
    from xpnet.backends import backend_of

    return [a if isinstance(a, np.ndarray) else backend_of(a).to_numpy(a) for a in arrays]


def _fit_quietly(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_classifier_matches_scikit_learn(backend64, case):
    """Same init (scikit-learn's Glorot draws), batches, updates and stopping: the same
    weights, loss curve and predictions as scikit-learn in float64, on every backend."""
    params = dict(PARITY_CASES[case])
    weighted, binary = params.pop("weighted", False), params.pop("binary", False)
    X, y = _digits()
    if binary:
        y = np.where(y > 4, "big", "small")
    sw = np.random.default_rng(0).random(len(y)) if weighted else None
    params = {**dict(hidden_layer_sizes=(12,), batch_size=64, max_iter=4, random_state=0,
                     alpha=1e-3), **params}
    ref = _fit_quietly(SkMLPClassifier(**params), X, y, sample_weight=sw)
    ours = _fit_quietly(MLPClassifier(**params, backend=backend64.name,
                                      device=backend64.device_name, dtype="float64"),
                        X, y, sample_weight=sw)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    for mine, theirs in zip(_host(ours.coefs_ + ours.intercepts_),
                           ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(mine, theirs, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("multi_output", [False, True])
def test_regressor_matches_scikit_learn(backend64, multi_output):
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], y[:200] / 100.0
    if multi_output:
        y = np.stack([y, y ** 2], axis=1)
    params = dict(hidden_layer_sizes=(10, 6), solver="sgd", batch_size=32, max_iter=3,
                  random_state=1, learning_rate_init=0.01, alpha=1e-2)
    ref = _fit_quietly(SkMLPRegressor(**params), X, y)
    ours = _fit_quietly(MLPRegressor(**params, backend=backend64.name,
                                     device=backend64.device_name, dtype="float64"), X, y)
    # Multi-output: scikit-learn steps along n_outputs times the gradient of the loss it
    # reports; xpnet.sklearn keeps that, so the runs agree there too.
    assert ours.predict(X).shape == ref.predict(X).shape
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-7, atol=1e-9)
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), rel=1e-7)


# -- scikit-learn's machinery ---------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_compiled_epochs_match_the_step_by_step_epoch(backend64, solver, monkeypatch):
    """On a backend that compiles loops (JAX) the full batches of an epoch run as one program
    (the last, partial batch and the first, state-creating step one by one); it trains exactly
    as the step-by-step loop does. Elsewhere that loop is the only path."""
    import xpnet.sklearn._stochastic as xs
    from xpnet._compiled import compiles_epochs

    X, y = _digits(250)  # 250 = 3 batches of 64 + a partial one of 58
    params = dict(hidden_layer_sizes=(12,), batch_size=64, max_iter=3, random_state=0,
                  solver=solver, learning_rate_init=0.05, alpha=1e-3)
    kwargs = dict(backend=backend64.name, device=backend64.device_name, dtype="float64")
    monkeypatch.setattr(xs, "MIN_COMPILED_STEPS", 9)  # 3 epochs of 3 full batches: compile
    compiled = _fit_quietly(MLPClassifier(**params, **kwargs), X, y)
    monkeypatch.setattr(xs, "compiles_epochs", lambda be, layers: False)
    stepwise = _fit_quietly(MLPClassifier(**params, **kwargs), X, y)
    uses_loop = compiles_epochs(compiled._backend, compiled._layers)
    assert uses_loop == bool(backend64.compiles_loops)
    if uses_loop:
        assert compiled._compiled[1]._loops  # the program was built and ran
    np.testing.assert_allclose(compiled.loss_curve_, stepwise.loss_curve_, rtol=1e-12)
    for a, b in zip(_host(compiled.coefs_ + compiled.intercepts_),
                    _host(stepwise.coefs_ + stepwise.intercepts_)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_compiled_epochs_follow_alpha_set_between_partial_fits(monkeypatch):
    """alpha is baked into a compiled epoch: set_params(alpha=) before the next partial_fit
    must give a new program (found in review), and tiny partial_fit calls stay one by one."""
    pytest.importorskip("jax")
    import xpnet.sklearn._stochastic as xs

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X.sum(axis=1)
    fits = []
    for min_steps in (1, 10**9):  # compiled, then step by step
        monkeypatch.setattr(xs, "MIN_COMPILED_STEPS", min_steps)
        reg = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", batch_size=16, alpha=0.0, shuffle=False,
                           random_state=0, backend="jax", dtype="float64")
        reg.partial_fit(X, y)
        reg.set_params(alpha=100.0)
        reg.partial_fit(X, y)
        assert (getattr(reg, "_compiled", None) is not None) == (min_steps == 1)
        fits.append(reg)
    compiled, stepwise = fits
    assert compiled.loss_ == pytest.approx(stepwise.loss_, rel=1e-12)
    for a, b in zip(_host(compiled.coefs_), _host(stepwise.coefs_)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_pipeline_gridsearch_cross_val_score_clone_and_pickle():
    X, y = _digits(240)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=30, random_state=0,
                                                         learning_rate_init=0.01))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3)
    _fit_quietly(grid, X, y)
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1e-1)
    assert grid.best_score_ > 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    fitted = grid.best_estimator_
    twin = clone(fitted)
    assert twin.get_params()["mlpclassifier__alpha"] == fitted.get_params()["mlpclassifier__alpha"]
    assert not hasattr(twin[-1], "coefs_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("name", ["torch", "jax", "array_api_strict"])
def test_pickle_round_trip_on_other_backends(name):
    pytest.importorskip(name)
    X, y = _digits(100)
    clf = _fit_quietly(MLPClassifier((8,), max_iter=3, random_state=0, backend=name), X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert restored._backend == clf._backend
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    _fit_quietly(restored.set_params(warm_start=True), X, y)  # trains on after loading


# -- labels and targets -----------------------------------------------------------------

@pytest.mark.parametrize("labels", [["cat", "dog", "emu"], [10, -3, 7], [2.0, 7.0, 9.0]])
def test_any_labels_come_back_through_classes_(labels):
    X, y = _digits(150)
    y_labels = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[y % 3]
    clf = _fit_quietly(MLPClassifier((16,), max_iter=50, random_state=0,
                                     learning_rate_init=0.01), X, y_labels)
    assert clf.classes_.tolist() == sorted(labels)
    pred = clf.predict(X)
    assert set(pred.tolist()) <= set(labels)
    assert clf.score(X, y_labels) > 0.9
    assert clf.predict_proba(X).shape == (150, 3)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X),
                               rtol=1e-5)


def test_binary_multilabel_and_multi_output_regression():
    X, y = _digits(200)
    binary = _fit_quietly(MLPClassifier((8,), max_iter=40, random_state=0), X, y > 4)
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "logistic"
    assert binary.predict_proba(X).shape == (200, 2)
    np.testing.assert_allclose(binary.predict_proba(X).sum(axis=1), 1.0, rtol=1e-6)
    Xm, Ym = make_multilabel_classification(n_samples=120, n_classes=4, random_state=0)
    multi = _fit_quietly(MLPClassifier((16,), max_iter=100, random_state=0,
                                       learning_rate_init=0.01), Xm, Ym)
    assert multi.n_outputs_ == 4 and multi.out_activation_ == "logistic"
    assert multi.predict(Xm).shape == Ym.shape and multi.predict(Xm).dtype == Ym.dtype
    assert multi.score(Xm, Ym) > 0.5  # subset accuracy
    reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0),
                       X, np.stack([y, 2.0 * y], axis=1).astype(float))
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (200, 2)
    assert reg.out_activation_ == "identity"


def test_partial_fit_learns_in_steps_with_classes_given_first():
    X, y = _digits(300)
    clf = MLPClassifier((16,), random_state=0, learning_rate_init=0.01)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    for _ in range(20):
        clf.partial_fit(X, y)
    # n_iter_ counts the call's epochs (scikit-learn >= 1.6); loss_curve_ keeps growing.
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 21
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X, y) > 0.8


# -- sample and class weights -------------------------------------------------------------

def test_zero_weights_equal_leaving_the_samples_out():
    """Full batches (batch_size='auto'): a zero weight removes the sample exactly."""
    X, y = _digits(120)
    keep = np.arange(120) % 3 != 0
    sw = keep.astype(float)
    params = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0, shuffle=False)
    weighted = _fit_quietly(MLPClassifier(**params, dtype="float64"), X, y, sample_weight=sw)
    subset = _fit_quietly(MLPClassifier(**params, dtype="float64"), X[keep], y[keep])
    np.testing.assert_allclose(weighted.loss_curve_, subset.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(weighted.predict_proba(X), subset.predict_proba(X), atol=1e-10)


def test_balanced_class_weight_is_the_matching_sample_weight():
    X, y = _digits(150)
    y = (y == 3).astype(int)  # about 10% positives
    params = dict(hidden_layer_sizes=(8,), max_iter=15, random_state=0, dtype="float64")
    balanced = _fit_quietly(MLPClassifier(**params, class_weight="balanced"), X, y)
    counts = np.bincount(y)
    sw = (len(y) / (2 * counts))[y]
    by_hand = _fit_quietly(MLPClassifier(**params), X, y, sample_weight=sw)
    np.testing.assert_allclose(balanced.coefs_[0], by_hand.coefs_[0], rtol=1e-10)
    as_dict = _fit_quietly(MLPClassifier(**params, class_weight={0: sw[y == 0][0],
                                                                 1: sw[y == 1][0]}), X, y)
    np.testing.assert_allclose(as_dict.coefs_[0], by_hand.coefs_[0], rtol=1e-10)


# -- array API dispatch ----------------------------------------------------------------------

def _dispatch_inputs(name, device=None, dtype="float64"):
    X, y = _digits(120)
    if name == "torch":
        torch = pytest.importorskip("torch")
        return (torch.asarray(X, dtype=getattr(torch, dtype)), torch.asarray(y)), torch
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device(device) if device else None
    return (xps.asarray(X, dtype=getattr(xps, dtype), device=dev),
            xps.asarray(y, device=dev)), xps


@pytest.mark.parametrize("name,device,dtype", [("torch", None, "float32"),
                                               ("array_api_strict", "device1", "float64")])
def test_dispatch_trains_where_X_lives_and_answers_there(name, device, dtype):
    (X, y), xp = _dispatch_inputs(name, device, dtype)
    with sklearn.config_context(array_api_dispatch=True):
        clf = _fit_quietly(MLPClassifier((8,), max_iter=20, random_state=0), X, y,
                           sample_weight=np.ones(X.shape[0]))  # moved to X by the estimator
        reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X,
                           np.asarray(_digits(120)[1], dtype=float))
        proba, pred, reg_pred = clf.predict_proba(X), clf.predict(X), reg.predict(X)
        with pytest.raises(ValueError, match=r"MLPClassifier.predict\(\) must use the same"):
            clf.predict(np.ones((2, 64)))
    assert clf._backend.name == name and reg._backend.name == name
    assert clf._backend.dtype_name == dtype
    for out in (proba, pred, reg_pred):
        assert type(out) is type(X)
        assert array_api_compat.device(out) == array_api_compat.device(X)
    assert proba.dtype == X.dtype and tuple(proba.shape) == (120, 10)
    assert type(clf.coefs_[0]) is type(X)  # the model's own arrays, where it trains
    # Without dispatch the same estimator takes NumPy and returns NumPy.
    assert isinstance(clf.predict(_digits(120)[0]), np.ndarray)


def test_backend_parameter_without_dispatch_returns_numpy():
    pytest.importorskip("torch")
    X, y = _digits(100)
    clf = _fit_quietly(MLPClassifier((8,), max_iter=5, random_state=0, backend="torch",
                                     dtype="float32"), X, y)
    assert clf._backend.name == "torch" and clf._backend.dtype_name == "float32"
    assert isinstance(clf.predict_proba(X), np.ndarray)
    assert clf.predict_proba(X).dtype == np.float32


def test_sklearn_compare_benchmark_smoke_run(tmp_path):
    """The benchmark harness runs end to end (--quick: tiny data; no timing asserted)."""
    import json
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks import sklearn_compare

    out = tmp_path / "result.json"
    assert sklearn_compare.main(["--quick", "--datasets", "wine", "diabetes",
                                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["dataset"] for r in result["scores"]] == ["wine", "diabetes"]
    # Same hyperparameters, same float64 arithmetic: the same cross-validated scores.
    for row in result["scores"]:
        assert row["xpnet"]["mean"] == pytest.approx(row["sklearn"]["mean"], abs=1e-6)
    assert set(result["speed"]["seconds_per_epoch"]) == {"sklearn", "xpnet-numpy", "xpnet-jax",
                                                         "numpy floor"}
    small = result["small"]["rows"]
    assert set(small) == {"adam", "lbfgs"}
    for row in small.values():  # the same fits: the same accuracy
        assert row["xpnet_score"] == pytest.approx(row["sklearn_score"], abs=1e-6)
    evals = result["evals"]  # the same objective at the same points
    assert evals["points"] == 5 and evals["max_loss_rel_diff"] < 1e-9
