"""Sparse X (scipy.sparse CSR/CSC) in xpnet.sklearn: the same results as the dense input, and
never densified whole."""
# ruff: noqa: E402  (SCIPY_ARRAY_API must be set before scikit-learn and SciPy are imported)

from __future__ import annotations

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
sparse = pytest.importorskip("scipy.sparse")

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

import xpnet.feeds.sparse as feeds_sparse
from xpnet.backends import backend_of
from xpnet.sklearn import MLPClassifier, MLPRegressor


def _tfidf_like(n=240, d=60, density=0.05, seed=0):
    """A sparse matrix with some rows holding no entry at all (as TF-IDF output has)."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n, d)) * (rng.random((n, d)) < density)
    dense[::7] = 0.0  # empty rows
    y = (dense[:, :10].sum(axis=1) > dense[:, 10:20].sum(axis=1)).astype(int) + \
        (dense[:, 20:30].sum(axis=1) > 0.3)
    return dense, y


def _host(arrays):
    return [a if isinstance(a, np.ndarray) else backend_of(a).to_numpy(a) for a in arrays]


def _fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def _assert_same_model(a, b, rtol=1e-12):
    for p, q in zip(_host(a.coefs_ + a.intercepts_), _host(b.coefs_ + b.intercepts_)):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-14)


SOLVERS = {"sgd": dict(solver="sgd", learning_rate_init=0.1),
           "adam": dict(solver="adam", learning_rate_init=0.01),
           "lbfgs": dict(solver="lbfgs", max_iter=5),
           "early-stopping": dict(early_stopping=True, n_iter_no_change=2,
                                  learning_rate_init=0.01)}


@pytest.mark.parametrize("densify", [False, True], ids=["sparse-products", "densified"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("case", sorted(SOLVERS))
def test_sparse_fit_equals_dense(backend64, case, fmt, densify, monkeypatch):
    if densify:  # every backend then takes densified blocks
        monkeypatch.setattr(feeds_sparse, "SPARSE_PRODUCT_MAX_DENSITY", -1.0)
    dense, y = _tfidf_like()
    X = sparse.csr_array(dense) if fmt == "csr" else sparse.csc_matrix(dense)
    params = {**dict(hidden_layer_sizes=(10,), max_iter=4, batch_size=32, random_state=0,
                     alpha=1e-3, backend=backend64.name, device=backend64.device_name,
                     dtype="float64"), **SOLVERS[case]}
    on_dense = _fit(MLPClassifier(**params), dense, y)
    on_sparse = _fit(MLPClassifier(**params), X, y)
    assert on_sparse.n_iter_ == on_dense.n_iter_
    if case != "lbfgs":
        np.testing.assert_allclose(on_sparse.loss_curve_, on_dense.loss_curve_, rtol=1e-12)
    _assert_same_model(on_sparse, on_dense)
    np.testing.assert_allclose(on_sparse.predict_proba(X), on_dense.predict_proba(dense),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(on_sparse.predict(X), on_dense.predict(dense))
    assert on_sparse.score(X, y) == on_dense.score(dense, y)


def test_sparse_partial_fit_and_regression_equal_dense(backend64):
    dense, y = _tfidf_like(seed=1)
    X = sparse.csr_matrix(dense)
    kwargs = dict(hidden_layer_sizes=(6,), batch_size=50, random_state=0,
                  backend=backend64.name, device=backend64.device_name, dtype="float64")
    a, b = MLPClassifier(**kwargs), MLPClassifier(**kwargs)
    for _ in range(2):
        a.partial_fit(dense, y, classes=[0, 1, 2])
        b.partial_fit(X, y, classes=[0, 1, 2])
    _assert_same_model(b, a)
    target = dense @ np.linspace(0.0, 1.0, dense.shape[1])
    ra = _fit(MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, **{
        k: v for k, v in kwargs.items() if k != "hidden_layer_sizes"}), dense, target)
    rb = _fit(MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, **{
        k: v for k, v in kwargs.items() if k != "hidden_layer_sizes"}), X, target)
    _assert_same_model(rb, ra)
    assert rb.score(X, target) == pytest.approx(ra.score(dense, target), rel=1e-12)


def test_sparse_matches_scikit_learn_sparse_fit():
    dense, y = _tfidf_like()
    X = sparse.csr_matrix(dense)
    params = dict(hidden_layer_sizes=(10,), max_iter=5, batch_size=32, random_state=0,
                  solver="sgd", learning_rate_init=0.1)
    ref, ours = _fit(SkMLPClassifier(**params), X, y), _fit(MLPClassifier(**params), X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    for p, q in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("densify", [False, True])
@pytest.mark.parametrize("params", [dict(solver="adam"), dict(solver="lbfgs"),
                                    dict(solver="adam", early_stopping=True,
                                         validation_fraction=0.5)],
                         ids=["adam", "lbfgs", "early_stopping"])
def test_sparse_input_is_never_densified_whole(monkeypatch, densify, params):
    """Blocks of at most a batch (training) or BLOCK_ROWS rows (inference, lbfgs, and
    early stopping's validation rows)."""
    if densify:
        monkeypatch.setattr(feeds_sparse, "SPARSE_PRODUCT_MAX_DENSITY", -1.0)
    monkeypatch.setattr(feeds_sparse, "BLOCK_ROWS", 64)
    import xpnet.sklearn._lbfgs as lbfgs

    monkeypatch.setattr(lbfgs, "_BLOCK_ROWS", 64)
    sizes = []
    rows = feeds_sparse.SparseRows.rows

    def spy(self, index):
        block = rows(self, index)
        sizes.append(block.shape[0])
        assert sparse.issparse(block) != densify
        return block

    monkeypatch.setattr(feeds_sparse.SparseRows, "rows", spy)
    monkeypatch.setattr(feeds_sparse.SparseRows.blocks, "__defaults__", (64,))
    dense, y = _tfidf_like(n=300)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, batch_size=40,
                             random_state=0, **params), sparse.csr_matrix(dense), y)
    clf.predict_proba(sparse.csr_matrix(dense))
    assert sizes and max(sizes) <= 64 < dense.shape[0]


def test_empty_rows_are_ordinary_input():
    dense, y = _tfidf_like()
    X = sparse.csr_matrix(dense)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0), X, y)
    empty = sparse.csr_matrix((3, dense.shape[1]))
    np.testing.assert_allclose(clf.predict_proba(empty), clf.predict_proba(np.zeros((3, 60))),
                               rtol=1e-12)
