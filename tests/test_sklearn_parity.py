"""xpnet.sklearn against scikit-learn itself, round two: lbfgs, warm starts, partial_fit,
random_state, early stopping with NaN scores, live coefs_, Poisson loss, weights and penalty."""
# ruff: noqa: E402  (SCIPY_ARRAY_API must be set before scikit-learn and SciPy are imported)

from __future__ import annotations

import inspect
import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.utils.class_weight import compute_class_weight

from xpnet.backends import backend_of
from xpnet.sklearn import MLPClassifier, MLPRegressor


def _digits(n=300):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _host(arrays):
    return [a if isinstance(a, np.ndarray) else backend_of(a).to_numpy(a) for a in arrays]


def _params_of(est):
    return _host(list(est.coefs_) + list(est.intercepts_))


def _assert_same_weights(ours, ref, rtol, atol=1e-12):
    for mine, theirs in zip(_params_of(ours), ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _on(backend):
    return dict(backend=backend.name, device=backend.device_name, dtype="float64")


# -- lbfgs -------------------------------------------------------------------------------

LBFGS_TARGETS = ["multiclass", "binary", "squared_error", "poisson"]


def _lbfgs_pair(target, **params):
    X, y = _digits()
    params = {**dict(hidden_layer_sizes=(12,), solver="lbfgs", random_state=0, alpha=1e-3),
              **params}
    if target == "multiclass":
        return X, y, SkMLPClassifier(**params), MLPClassifier, params
    if target == "binary":
        return X, y > 4, SkMLPClassifier(**params), MLPClassifier, params
    yr = X[:, :3] @ np.array([1.0, 2.0, 3.0])
    params["loss"] = target
    return X, yr, SkMLPRegressor(**params), MLPRegressor, params


@pytest.mark.parametrize("target", LBFGS_TARGETS)
def test_lbfgs_matches_scikit_learn_after_20_iterations(target):
    X, y, ref, cls, params = _lbfgs_pair(target, max_iter=20)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 20 iteration"):
        ref.fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 20 iteration"):
        ours = cls(**params).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ == 20
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-9)
    _assert_same_weights(ours, ref, rtol=1e-9)
    assert not hasattr(ours, "loss_curve_") and not hasattr(ref, "loss_curve_")


@pytest.mark.parametrize("target, tol", [("multiclass", 1e-4), ("binary", 1e-4),
                                         ("squared_error", 1e-3), ("poisson", 1e-2)])
def test_lbfgs_at_convergence_same_n_iter_and_score(target, tol):
    """Runs that converge within some 60 iterations (longer ones amplify rounding:
    docs/sklearn.md, "Differences")."""
    X, y, ref, cls, params = _lbfgs_pair(target, max_iter=500, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # both converge
        ref.fit(X, y)
        ours = cls(**params).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ < 500
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), rel=1e-7)


def test_lbfgs_max_fun_stops_as_scikit_learn():
    X, y, ref, cls, params = _lbfgs_pair("multiclass", max_iter=200, max_fun=7)
    with pytest.warns(ConvergenceWarning) as theirs:
        ref.fit(X, y)
    with pytest.warns(ConvergenceWarning) as mine:
        ours = cls(**params).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    assert str(mine[0].message) == str(theirs[0].message)
    _assert_same_weights(ours, ref, rtol=1e-9)


@pytest.mark.parametrize("target", ["multiclass", "binary", "squared_error"])
def test_lbfgs_on_every_backend(backend64, target):
    """Loss and gradient on the backend, only the flat vector on the host."""
    X, y, ref, cls, params = _lbfgs_pair(target, max_iter=10)
    _quiet(ref.fit, X, y)
    ours = _quiet(cls(**params, **_on(backend64)).fit, X, y)
    assert ours.n_iter_ == ref.n_iter_
    _assert_same_weights(ours, ref, rtol=1e-8, atol=1e-10)


# -- n_iter_, warm_start, partial_fit, random_state --------------------------------------

def test_warm_start_loop_reports_one_iteration_and_warns_every_call():
    X, y = _digits()
    params = dict(hidden_layer_sizes=(12,), max_iter=1, warm_start=True, random_state=0,
                  learning_rate_init=0.01)
    ref, ours = SkMLPClassifier(**params), MLPClassifier(**params)
    for _ in range(3):
        for est in (ref, ours):
            with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(1\) reached"):
                est.fit(X, y)
        assert ours.n_iter_ == ref.n_iter_ == 1
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    _assert_same_weights(ours, ref, rtol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_shuffled_partial_fit_calls_match_scikit_learn(solver):
    """An int random_state re-seeds on every call: the same permutations as scikit-learn."""
    X, y = _digits()
    params = dict(hidden_layer_sizes=(12,), solver=solver, random_state=0, batch_size=32,
                  learning_rate_init=0.01)
    ref, ours = SkMLPClassifier(**params), MLPClassifier(**params)
    for i in range(3):
        kwargs = dict(classes=np.arange(10)) if i == 0 else {}
        ref.partial_fit(X, y, **kwargs)
        ours.partial_fit(X, y, **kwargs)
        assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    _assert_same_weights(ours, ref, rtol=1e-9)


def test_random_state_instance_continues_across_calls():
    X, y = _digits()
    make = dict(hidden_layer_sizes=(8,), batch_size=64, learning_rate_init=0.01)
    ref = SkMLPClassifier(**make, random_state=np.random.RandomState(3))
    ours = MLPClassifier(**make, random_state=np.random.RandomState(3))
    for i in range(2):
        kwargs = dict(classes=np.arange(10)) if i == 0 else {}
        ref.partial_fit(X, y, **kwargs)
        ours.partial_fit(X, y, **kwargs)
    _assert_same_weights(ours, ref, rtol=1e-9)


def _error_of(fn):
    try:
        _quiet(fn)
    except Exception as exc:  # noqa: BLE001 - the point is to compare what each raises
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("case", ["subset", "unseen", "partial_unseen", "partial_classes"])
def test_class_set_errors_are_scikit_learns(case):
    X, y = _digits(200)

    def run(cls):
        if case == "subset":
            return lambda: cls(max_iter=2, warm_start=True).fit(X, y).fit(X[y < 5], y[y < 5])
        if case == "unseen":
            return lambda: cls(max_iter=2, warm_start=True).fit(X[y < 5], y[y < 5]).fit(X, y)
        if case == "partial_unseen":
            return lambda: cls().partial_fit(X[y < 5], y[y < 5], classes=np.arange(5)) \
                .partial_fit(X, y)
        return lambda: cls().partial_fit(X, y, classes=np.arange(10)) \
            .partial_fit(X, y, classes=np.arange(11))

    theirs, mine = _error_of(run(SkMLPClassifier)), _error_of(run(MLPClassifier))
    assert theirs is not None and mine == theirs


# -- early stopping with a diverging regressor ---------------------------------------------

def test_diverging_regressor_records_nan_and_restores_the_best_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5)) * 10
    y = X @ rng.standard_normal(5) * 100
    params = dict(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=10.0,
                  momentum=0.9, early_stopping=True, max_iter=30, random_state=0,
                  n_iter_no_change=30)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkMLPRegressor(**params).fit(X, y)
        ours = MLPRegressor(**params).fit(X, y)
    assert np.isnan(ref.validation_scores_).any()  # the case the test is about
    np.testing.assert_array_equal(np.isnan(ours.validation_scores_),
                                  np.isnan(ref.validation_scores_))
    finite = ~np.isnan(ref.validation_scores_)
    np.testing.assert_allclose(np.asarray(ours.validation_scores_)[finite],
                               np.asarray(ref.validation_scores_)[finite], rtol=1e-7)
    assert ours.n_iter_ == ref.n_iter_
    _assert_same_weights(ours, ref, rtol=1e-9)
    assert np.isfinite(ours.predict(X)).all()


# -- coefs_ and intercepts_ are the model's ------------------------------------------------

def test_coefs_assignment_and_in_place_edits_change_the_model():
    X, y = _digits(100)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit, X, y)
    before = clf.predict_proba(X)
    clf.coefs_[1][:] = 0.0  # in place (NumPy arrays are mutable)
    clf.intercepts_[1][:] = 0.0
    np.testing.assert_allclose(clf.predict_proba(X), 0.1)  # ten equal logits
    clf.coefs_[1] = np.ones((8, 10))  # item assignment
    assert np.all(clf.coefs_[1] == 1.0)
    new = [np.full((64, 8), 0.01), np.full((8, 10), -0.5)]
    clf.coefs_ = new  # the whole list
    assert clf.coefs_[0] is new[0]  # the model holds the array itself, as scikit-learn
    assert not np.allclose(clf.predict_proba(X), before)
    with pytest.raises(ValueError, match=r"coefs_\[0\] must have shape \(64, 8\).*got \(3, 3\)"):
        clf.coefs_[0] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"intercepts_ must be a list of 2 arrays"):
        clf.intercepts_ = [np.zeros(8)]
    with pytest.raises(TypeError, match="one array per layer"):
        clf.coefs_.append(np.zeros(3))
    copied = pickle.loads(pickle.dumps(clf.coefs_))  # a plain list, without the estimator
    assert type(copied) is list and np.array_equal(copied[1], clf.coefs_[1])


def test_custom_initial_weights_then_warm_start_match_scikit_learn():
    X, y = _digits()
    params = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=1, random_state=0,
                  learning_rate_init=0.05, warm_start=True)
    ref, ours = SkMLPClassifier(**params), MLPClassifier(**params)
    _quiet(ref.fit, X, y)
    _quiet(ours.fit, X, y)
    rng = np.random.default_rng(1)
    init = [rng.uniform(-0.1, 0.1, c.shape) for c in ref.coefs_]
    ref.coefs_ = [c.copy() for c in init]
    ours.coefs_ = [c.copy() for c in init]
    for est in (ref, ours):
        est.set_params(max_iter=4)
        _quiet(est.fit, X, y)
    _assert_same_weights(ours, ref, rtol=1e-9)


def test_coefs_item_assignment_on_other_backends(backend64):
    X, y = _digits(60)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                               **_on(backend64)).fit, X, y)
    clf.coefs_[1] = np.zeros((4, 10))  # host input is copied onto the backend
    clf.intercepts_ = [np.zeros(4), np.zeros(10)]
    assert backend_of(clf.coefs_[1]) == clf._backend
    np.testing.assert_allclose(clf.predict_proba(X), 0.1)


def test_coefs_in_place_edits_on_other_backends(backend64):
    if backend64.name == "jax":
        pytest.skip("JAX arrays are immutable: assign coefs_ or coefs_[i] instead (tested above)")
    X, y = _digits(60)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                               **_on(backend64)).fit, X, y)
    assert not np.allclose(clf.predict_proba(X), 0.1)
    clf.coefs_[1][...] = 0.0  # the model's own arrays, edited where they live
    clf.intercepts_[1][...] = 0.0
    np.testing.assert_allclose(clf.predict_proba(X), 0.1)
    np.testing.assert_array_equal(_host([clf.coefs_[1]])[0], 0.0)


# -- MLPRegressor(loss=...), n_iter_no_change=inf, the signature -----------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_loss_matches_scikit_learn(backend64, solver):
    X, _ = _digits()
    y = np.random.default_rng(0).poisson(np.exp(X[:, :4].sum(axis=1) / 4)).astype(float)
    params = dict(loss="poisson", hidden_layer_sizes=(10,), solver=solver, max_iter=4,
                  batch_size=32, random_state=0, learning_rate_init=0.01, alpha=1e-3)
    ref = _quiet(SkMLPRegressor(**params).fit, X, y)
    ours = _quiet(MLPRegressor(**params, **_on(backend64)).fit, X, y)
    assert ours.out_activation_ == ref.out_activation_ == "exp"
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    _assert_same_weights(ours, ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-8)


def test_n_iter_no_change_inf_runs_every_epoch():
    X, y = _digits(200)
    params = dict(hidden_layer_sizes=(8,), max_iter=15, n_iter_no_change=np.inf, tol=10.0,
                  random_state=0)
    ref = _quiet(SkMLPClassifier(**params).fit, X, y)
    ours = _quiet(MLPClassifier(**params).fit, X, y)
    assert ours.n_iter_ == ref.n_iter_ == 15


@pytest.mark.parametrize("ours,theirs", [(MLPClassifier, SkMLPClassifier),
                                         (MLPRegressor, SkMLPRegressor)])
def test_constructor_signature_is_scikit_learns(ours, theirs):
    """Positional arguments mean the same; xpnet's own parameters come after, by keyword."""
    mine = list(inspect.signature(ours).parameters.values())
    ref = list(inspect.signature(theirs).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine[:len(ref)]] == \
        [(p.name, p.kind, p.default) for p in ref]
    assert all(p.kind is p.KEYWORD_ONLY for p in mine[len(ref):])


def test_partial_fit_exists_only_for_stochastic_solvers():
    for cls in (MLPClassifier, MLPRegressor):
        assert not hasattr(cls(solver="lbfgs"), "partial_fit")
        assert hasattr(cls(solver="sgd"), "partial_fit") and hasattr(cls(), "partial_fit")
    assert not hasattr(SkMLPClassifier(solver="lbfgs"), "partial_fit")


# -- the two tests the suite lacked ------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_balanced_class_weight_with_a_class_absent_from_y(alpha):
    """scikit-learn's compute_class_weight over the labels y holds; with alpha > 0 a wrong
    common factor would no longer cancel in the weighted mean."""
    X, y = _digits(200)
    y = np.where(y < 3, 0, 1)  # classes 0, 1 present; 2 absent from this call
    params = dict(hidden_layer_sizes=(8,), random_state=0, alpha=alpha, batch_size=50,
                  learning_rate_init=0.01)
    balanced = MLPClassifier(**params, class_weight="balanced")
    balanced.partial_fit(X, y, classes=[0, 1, 2])
    present = np.unique(y)
    factors = compute_class_weight("balanced", classes=present, y=y)[np.searchsorted(present, y)]
    by_hand = MLPClassifier(**params)
    by_hand.partial_fit(X, y, classes=[0, 1, 2], sample_weight=factors)
    for a, b in zip(_params_of(balanced), _params_of(by_hand)):
        np.testing.assert_array_equal(a, b)
    wrong = MLPClassifier(**params)  # the factors over all three classes: 2/3 of these
    wrong.partial_fit(X, y, classes=[0, 1, 2], sample_weight=factors * 2 / 3)
    same = all(np.allclose(a, b, rtol=1e-12, atol=0)
               for a, b in zip(_params_of(balanced), _params_of(wrong)))
    assert same == (alpha == 0.0)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_l2_penalty_leaves_biases_unpenalised(solver):
    """Several steps with a large alpha from non-zero biases: scikit-learn's weights."""
    X, y = _digits(200)
    params = dict(hidden_layer_sizes=(8,), solver=solver, alpha=5.0, momentum=0.0,
                  batch_size=20, learning_rate_init=0.05, random_state=0, max_iter=1,
                  warm_start=True, shuffle=False)
    ref, ours = SkMLPClassifier(**params), MLPClassifier(**params)
    biases = [np.full(8, 0.7), np.linspace(-1.0, 1.0, 10)]
    _quiet(ref.fit, X, y)
    coefs = [c.copy() for c in ref.coefs_]
    for est in (ref, ours):
        if est is ours:
            _quiet(est.fit, X, y)
        est.coefs_ = [c.copy() for c in coefs]
        est.intercepts_ = [b.copy() for b in biases]
        est.set_params(max_iter=3)
        _quiet(est.fit, X, y)  # 3 epochs x 10 steps
    _assert_same_weights(ours, ref, rtol=1e-9)
    # A penalised bias would shrink towards 0 by alpha * b / batch = 0.25 b per step: the
    # run would differ from scikit-learn's by far more than rounding.
    assert not np.allclose(ours.intercepts_[1], biases[1])


# -- pickling keeps the optimizer state -----------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_pickled_estimator_continues_partial_fit_exactly(backend64, solver):
    X, y = _digits(150)
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, batch_size=32, random_state=0,
                        learning_rate_init=0.01, **_on(backend64))
    clf.partial_fit(X, y, classes=np.arange(10))
    clf.partial_fit(X, y)
    twin = pickle.loads(pickle.dumps(clf))
    for est in (clf, twin):
        est.partial_fit(X, y)
        est.partial_fit(X, y)
    for a, b in zip(_params_of(clf), _params_of(twin)):
        np.testing.assert_array_equal(a, b)
    assert twin.loss_curve_ == clf.loss_curve_


def test_pickled_estimator_warm_starts_as_the_original():
    X, y = _digits(150)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", max_iter=2,
                               random_state=0, warm_start=True).fit, X, y)
    twin = pickle.loads(pickle.dumps(clf))
    for est in (clf, twin):
        _quiet(est.fit, X, y)
    for a, b in zip(_params_of(clf), _params_of(twin)):
        np.testing.assert_array_equal(a, b)


# -- documentation and configuration ------------------------------------------------------------

@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_docstring_describes_every_parameter(cls):
    doc = cls.__doc__
    params = doc[doc.index("Parameters\n"):doc.index("Attributes\n")]
    described = {name.strip() for line in params.splitlines()
                 if line.startswith("    ") and not line.startswith("     ") and " : " in line
                 for name in line.split(" : ")[0].split(",")}
    assert set(inspect.signature(cls).parameters) <= described
    assert "see scikit-learn" not in doc.lower()


def test_dispatch_without_scipy_array_api_says_what_to_set(monkeypatch):
    import sklearn

    from xpnet.sklearn import _inputs

    monkeypatch.delenv("SCIPY_ARRAY_API", raising=False)
    monkeypatch.setattr(sklearn, "get_config", lambda: {"array_api_dispatch": True})
    with pytest.raises(RuntimeError, match=r"set the environment variable SCIPY_ARRAY_API=1"):
        _inputs.dispatch_on()
    X, y = _digits(40)
    with pytest.raises(RuntimeError, match="SCIPY_ARRAY_API=1"):
        MLPClassifier(max_iter=1).fit(X, y)


def test_keyboard_interrupt_keeps_the_epochs_done(monkeypatch):
    """As scikit-learn: Ctrl-C during fit warns and keeps what was learnt."""
    from xpnet.sklearn._stochastic import StochasticMixin

    X, y = _digits(100)
    epoch = StochasticMixin._epoch
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return epoch(self, *args, **kwargs)

    monkeypatch.setattr(StochasticMixin, "_epoch", interrupted)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=10, random_state=0).fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert clf.predict(X).shape == (100,)


@pytest.mark.parametrize("name", ["torch", "array_api_strict"])
def test_lbfgs_under_array_api_dispatch(name):
    """lbfgs trains where X lives under dispatch, with the NumPy fit's weights."""
    import sklearn

    xp = pytest.importorskip(name)
    X, y = _digits(150)
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=10, random_state=0)
    ref = _quiet(MLPClassifier(**params).fit, X, y)
    with sklearn.config_context(array_api_dispatch=True):
        ours = _quiet(MLPClassifier(**params).fit, xp.asarray(X), xp.asarray(y))
        proba = ours.predict_proba(xp.asarray(X))
    assert ours._backend.name == name and type(proba) is type(xp.asarray(X))
    assert ours.n_iter_ == ref.n_iter_
    for a, b in zip(_params_of(ours), _params_of(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
