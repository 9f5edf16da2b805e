"""Metrics against plain NumPy references, on every backend and device."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xpnet
from xpnet import metrics


def ref_confusion(t, p, c):
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


@pytest.fixture
def labels(rng):
    t = rng.integers(0, 4, 50)
    p = np.where(rng.random(50) < 0.6, t, rng.integers(0, 4, 50))
    t[t == 3] = 2  # class 3 has no samples (but may be predicted)
    return t, p


def test_metrics_match_numpy(backend, labels):
    be = backend
    t, p = labels
    tb = be.asarray(t, dtype=be.index_dtype)
    pb = be.asarray(p, dtype=be.index_dtype)
    assert metrics.accuracy(tb, pb) == np.mean(t == p)
    cm = metrics.confusion_matrix(tb, pb, n_classes=5)
    assert array_api_compat.device(cm) == array_api_compat.device(tb)  # stays on the device
    assert cm.dtype == tb.dtype and tuple(cm.shape) == (5, 5)
    np.testing.assert_array_equal(be.to_numpy(cm), ref_confusion(t, p, 5))
    np.testing.assert_array_equal(be.to_numpy(metrics.confusion_matrix(tb, pb)),
                                  ref_confusion(t, p, int(max(t.max(), p.max())) + 1))
    pca = be.to_numpy(metrics.per_class_accuracy(tb, pb, n_classes=5))
    for c in range(5):
        if np.any(t == c):
            assert pca[c] == pytest.approx(np.mean(p[t == c] == c), rel=1e-12)
        else:
            assert np.isnan(pca[c])


def test_metrics_on_model_predictions(backend32):
    be = backend32
    model = xpnet.Sequential.mlp([3, 5, 4], backend=be, seed=0)
    X = be.asarray(np.random.default_rng(0).standard_normal((20, 3)))
    y = be.asarray(np.arange(20) % 4, dtype=be.index_dtype)
    pred = model.predict(X)
    assert metrics.accuracy(y, pred) == pytest.approx(model.evaluate(X, y)["accuracy"])
    assert int(be.xp.sum(metrics.confusion_matrix(y, pred, n_classes=4))) == 20


def test_metrics_validate(backend):
    be = backend
    y = be.asarray([0, 1, 2], dtype=be.index_dtype)
    with pytest.raises(xpnet.ShapeError, match="same length"):
        metrics.accuracy(y, y[:2])
    with pytest.raises(xpnet.ShapeError, match="1-D array of class labels"):
        metrics.confusion_matrix(be.zeros((3, 2), dtype=be.index_dtype), y)
    with pytest.raises(xpnet.DTypeError, match="integer class labels"):
        metrics.accuracy(be.zeros((3,)), y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        metrics.confusion_matrix(y, y, n_classes=2)
    with pytest.raises(TypeError, match="must be an array"):
        metrics.accuracy([0, 1, 2], y)
    if be.name != "numpy":
        with pytest.raises(xpnet.DeviceMismatchError):
            metrics.accuracy(np.asarray([0, 1, 2]), y)
    assert np.isnan(metrics.accuracy(y[:0], y[:0]))


def test_format_confusion_matrix(backend):
    be = backend
    t = be.asarray([0, 0, 1, 1, 1], dtype=be.index_dtype)
    p = be.asarray([0, 1, 1, 1, 1], dtype=be.index_dtype)
    text = metrics.format_confusion_matrix(metrics.confusion_matrix(t, p), labels=["cat", "dog"])
    assert text.splitlines() == ["true\\pred  cat  dog", "cat          1    1",
                                 "dog          0    3"]
