"""Metrics count in the index dtype whatever integer dtype the labels have.

300 equal ``uint8`` labels once gave a confusion-matrix count of 44 (300 mod
256): counts and the ``arange`` of classes were computed in the labels' dtype.
Every test here uses more samples than the narrow dtype can count.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import metrics
from xpnet.errors import BackendUnavailableError

# (id, backend name, device): every library and device the core suite runs on.
_SPECS = [
    ("numpy", "numpy", None),
    ("array_api_strict", "array_api_strict", None),
    ("array_api_strict-device1", "array_api_strict", "device1"),
    ("torch", "torch", "cpu"),
    ("jax", "jax", None),
    ("cupy", "cupy", None),
]

# Label dtypes narrower than any count here; torch has no uint16/uint32 arithmetic, so
# the unsigned case is uint8 only.
_NARROW = ["uint8", "int8", "int16"]


@pytest.fixture(params=_SPECS, ids=[s[0] for s in _SPECS])
def be(request):
    _, name, device = request.param
    try:
        return xpnet.get_backend(name, device=device)
    except BackendUnavailableError as exc:
        pytest.skip(f"{name} unavailable: {exc}")


def _on(be, labels: np.ndarray, dtype: str):
    """``labels`` on ``be``'s device in the narrow dtype ``dtype``."""
    return be.asarray(labels, dtype=getattr(be.xp, dtype))


def _overflowing_count(dtype: str) -> int:
    """A sample count the dtype cannot hold even halved (int16: 98,601 > 2 * 32,767)."""
    return int(np.iinfo(dtype).max) * 3 + 300


def _reference_confusion(t: np.ndarray, p: np.ndarray, c: int) -> np.ndarray:
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (t.astype(np.int64), p.astype(np.int64)), 1)
    return m


@pytest.mark.parametrize("dtype", _NARROW)
def test_equal_labels_beyond_the_dtype_range_count_exactly(be, dtype):
    n = 300 if dtype != "int16" else _overflowing_count(dtype)
    y = _on(be, np.full(n, 1), dtype)
    cm = metrics.confusion_matrix(y, y)
    assert cm.dtype == be.index_dtype
    np.testing.assert_array_equal(be.to_numpy(cm), [[0, 0], [0, n]])
    assert metrics.accuracy(y, y) == 1.0
    np.testing.assert_array_equal(be.to_numpy(metrics.per_class_accuracy(y, y, n_classes=3)),
                                  [np.nan, 1.0, np.nan])


@pytest.mark.parametrize("dtype", _NARROW)
def test_random_narrow_labels_match_the_int64_reference(be, dtype):
    rng = np.random.default_rng(11)
    # Two classes, mostly right: the diagonal cells alone overflow the dtype.
    n, c = _overflowing_count(dtype), 2
    t = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.9, t, 1 - t)
    assert _reference_confusion(t, p, c).max() > np.iinfo(dtype).max
    tb, pb = _on(be, t, dtype), _on(be, p, dtype)
    cm = be.to_numpy(metrics.confusion_matrix(tb, pb, n_classes=c))
    np.testing.assert_array_equal(cm, _reference_confusion(t, p, c))
    assert cm.sum() == n
    assert metrics.accuracy(tb, pb) == pytest.approx(np.mean(t == p), rel=1e-12)
    pca = be.to_numpy(metrics.per_class_accuracy(tb, pb, n_classes=c))
    want = [np.mean(p[t == k] == k) for k in range(c)]
    np.testing.assert_allclose(pca, want, rtol=1e-6)


def test_many_classes_in_int8_labels_are_not_wrapped(be):
    # 127 is int8's largest class number: the arange of classes must not wrap either.
    t = np.arange(128) % 128
    tb = _on(be, t, "int8")
    cm = be.to_numpy(metrics.confusion_matrix(tb, tb))
    assert cm.shape == (128, 128)
    np.testing.assert_array_equal(cm, np.eye(128, dtype=np.int64))


def test_mixed_label_dtypes_count_in_the_index_dtype(be):
    n = 700
    t = np.arange(n) % 3
    p = np.where(np.arange(n) % 5 == 0, (t + 1) % 3, t)
    cm = metrics.confusion_matrix(_on(be, t, "uint8"), be.asarray(p, dtype=be.index_dtype))
    np.testing.assert_array_equal(be.to_numpy(cm), _reference_confusion(t, p, 3))


def test_negative_int8_labels_are_still_refused(be):
    y = _on(be, np.asarray([0, -1, 2]), "int8")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\].*from -1 to 2"):
        metrics.confusion_matrix(y, y, n_classes=3)
