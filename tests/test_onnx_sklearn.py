"""Estimators to ONNX: estimator_to_onnx / to_onnx and the skl2onnx registration.

onnxruntime's predict and predict_proba must equal the estimator's (float32
within 1e-5, labels exactly), for a Pipeline(StandardScaler(), MLPClassifier)
converted by skl2onnx.to_onnx as it converts scikit-learn's own MLP.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("ndonnx")
pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from xpnet.export import estimator_to_onnx, register_skl2onnx  # noqa: E402
from xpnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

X, Y = load_iris(return_X_y=True)
NAMES = np.array(["setosa", "versicolor", "virginica"])


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _run(model, X):
    source = model if isinstance(model, str) else model.SerializeToString()
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


def _proba_close(got, want, tol):
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= tol


TARGETS = {"int": Y, "str": NAMES[Y], "binary": (Y == 1).astype(np.int64) + 3}


@pytest.mark.parametrize("kind", list(TARGETS))
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_classifier_to_onnx(tmp_path, kind, activation):
    clf = _fit(MLPClassifier((8, 5), activation=activation, max_iter=60, random_state=0),
               X, TARGETS[kind])
    path = str(tmp_path / "c.onnx")
    clf.to_onnx(path)
    labels, proba = _run(path, X)
    assert np.array_equal(labels, clf.predict(X))
    _proba_close(proba, clf.predict_proba(X), 1e-12)  # a float64 estimator, float64 graph


def test_multilabel_classifier(tmp_path):
    y = np.stack([Y == 0, Y == 1, Y != 2], axis=1).astype(np.int64)
    clf = _fit(MLPClassifier((6,), max_iter=50, random_state=0), X, y)
    estimator_to_onnx(clf, tmp_path / "m.onnx", dtype="float32")
    labels, proba = _run(str(tmp_path / "m.onnx"), X.astype(np.float32))
    assert np.array_equal(labels, clf.predict(X))
    _proba_close(proba, clf.predict_proba(X), 1e-5)


def test_regressor_to_onnx(tmp_path):
    reg = _fit(MLPRegressor(hidden_layer_sizes=(7,), max_iter=80, random_state=0), X[:, :3],
               X[:, 3])
    reg.to_onnx(str(tmp_path / "r.onnx"))
    (pred,) = _run(str(tmp_path / "r.onnx"), X[:, :3])
    assert pred.shape == (150, 1)
    _proba_close(pred[:, 0], reg.predict(X[:, :3]), 1e-12)


def test_scikit_learns_own_mlp_exports_the_same_way(tmp_path):
    clf = _fit(SkMLPClassifier((8,), max_iter=60, random_state=0), X, NAMES[Y])
    estimator_to_onnx(clf, tmp_path / "s.onnx")
    labels, proba = _run(str(tmp_path / "s.onnx"), X)
    assert np.array_equal(labels, clf.predict(X))
    _proba_close(proba, clf.predict_proba(X), 1e-12)


def test_unfitted_estimator_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        MLPClassifier().to_onnx(str(tmp_path / "u.onnx"))
    assert list(tmp_path.iterdir()) == []


# -- skl2onnx ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def skl2onnx():
    module = pytest.importorskip("skl2onnx")
    register_skl2onnx()
    register_skl2onnx()  # twice is harmless
    return module


@pytest.mark.parametrize("kind", list(TARGETS))
def test_pipeline_converts_like_scikit_learns_mlp(skl2onnx, kind):
    pipe = _fit(make_pipeline(StandardScaler(), MLPClassifier((10,), max_iter=100,
                                                              random_state=0)), X, TARGETS[kind])
    X32 = X.astype(np.float32)
    onx = skl2onnx.to_onnx(pipe, X32[:1], options={id(pipe[-1]): {"zipmap": False}})
    labels, proba = _run(onx, X32)
    assert np.array_equal(labels, pipe.predict(X))
    _proba_close(proba, pipe.predict_proba(X), 1e-5)
    reference = _fit(make_pipeline(StandardScaler(), SkMLPClassifier((10,), max_iter=100,
                                                                     random_state=0)),
                     X, TARGETS[kind])
    theirs = skl2onnx.to_onnx(reference, X32[:1], options={id(reference[-1]): {"zipmap": False}})
    assert [(o.name, o.type.tensor_type.elem_type) for o in onx.graph.output] == \
        [(o.name, o.type.tensor_type.elem_type) for o in theirs.graph.output]


def test_pipeline_with_zipmap_and_a_regressor(skl2onnx):
    pipe = _fit(make_pipeline(StandardScaler(), MLPClassifier((10,), max_iter=100,
                                                              random_state=0)), X, Y)
    X32 = X.astype(np.float32)
    labels, proba = _run(skl2onnx.to_onnx(pipe, X32[:1]), X32)  # the default: a ZipMap
    assert np.array_equal(labels, pipe.predict(X))
    got = np.array([[row[c] for c in pipe.classes_] for row in proba])
    _proba_close(got, pipe.predict_proba(X), 1e-5)
    reg = _fit(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(10,),
                                                            max_iter=100, random_state=0)),
               X[:, :3], X[:, 3])
    (pred,) = _run(skl2onnx.to_onnx(reg, X32[:1, :3]), X32[:, :3])
    _proba_close(pred[:, 0], reg.predict(X[:, :3]), 1e-5 * max(1.0, np.abs(X[:, 3]).max()))
