"""MSE and sigmoid binary cross-entropy (and the weighted softmax cross-entropy):
float64 NumPy references on every backend, finite-difference gradients, stability."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numeric_grad, ref_log_softmax, rel_err, rtol_for

import xpnet
from xpnet.losses import (
    BinaryCrossEntropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    _xent_sum_and_grad,
    get_loss,
)

# -- float64 NumPy references -------------------------------------------------

def ref_mse(z, t, half=False):
    return ((z - t) ** 2).mean(axis=1) * (0.5 if half else 1.0)


def ref_mse_grad(z, t, half=False):
    return 2.0 * (z - t) / z.shape[1] * (0.5 if half else 1.0)


def ref_bce(z, t):
    """The textbook -t log p - (1-t) log(1-p), summed over outputs (fine for moderate z)."""
    p = 1.0 / (1.0 + np.exp(-z))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1)


def ref_bce_grad(z, t):
    return 1.0 / (1.0 + np.exp(-z)) - t


def ref_xent_dense(z, t):
    return -(ref_log_softmax(z) * t).sum(axis=1)


def ref_xent_dense_grad(z, t):
    return np.exp(ref_log_softmax(z)) - t


REFERENCES = {
    "mse": (MeanSquaredError(), ref_mse, ref_mse_grad),
    "half_mse": (MeanSquaredError(half=True), lambda z, t: ref_mse(z, t, True),
                 lambda z, t: ref_mse_grad(z, t, True)),
    "bce": (BinaryCrossEntropy(), ref_bce, ref_bce_grad),
    "xent": (SoftmaxCrossEntropy(), ref_xent_dense, ref_xent_dense_grad),
}


def _problem(kind, rng, n=9, k=3):
    z = rng.standard_normal((n, k)) * 3.0
    if kind in ("mse", "half_mse"):
        t = rng.standard_normal((n, k))
    elif kind == "bce":
        t = (rng.random((n, k)) < 0.5).astype(np.float64)
    else:
        t = np.eye(k)[rng.integers(0, k, n)]
    return z, t


def _reference(kind, z, t, w=None):
    _, loss, grad = REFERENCES[kind]
    per = loss(z, t)
    g = grad(z, t)
    if w is None:
        return per.sum(), g / len(z)
    return (w * per).sum(), g * (w / w.sum())[:, None]


@pytest.mark.parametrize("kind", sorted(REFERENCES))
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_sum_and_grad_match_the_float64_reference(backend, rng, kind, k, weighted):
    if kind == "xent":
        k = k + 1  # a softmax over one class is constant: use 2 and 4 classes
    loss = REFERENCES[kind][0]
    z, t = _problem(kind, rng, k=k)
    w = rng.random(len(z)) * 2.0 if weighted else None
    xp = backend.xp
    wd = backend.asarray(w) if weighted else None
    s, g = loss.sum_and_grad(xp, backend.asarray(z), backend.asarray(t), wd)
    ref_s, ref_g = _reference(kind, z, t, w)
    tol = rtol_for(backend)
    assert tuple(s.shape) == () and abs(float(s) - ref_s) <= tol * abs(ref_s)
    assert rel_err(backend.to_numpy(g), ref_g) < tol
    per = backend.to_numpy(loss.per_sample(xp, backend.asarray(z), backend.asarray(t)))
    assert rel_err(per, REFERENCES[kind][1](z, t)) < tol


@pytest.mark.parametrize("kind", sorted(REFERENCES))
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(backend64, rng, kind, weighted):
    """The gradient is that of the (weighted) mean loss, checked in float64."""
    be = backend64
    loss = REFERENCES[kind][0]
    z, t = _problem(kind, rng, n=6, k=3)
    w = rng.random(len(z)) if weighted else None
    td = be.asarray(t)
    wd = be.asarray(w) if weighted else None

    def mean_loss(v):
        per = be.to_numpy(loss.per_sample(be.xp, be.asarray(v), td))
        return float(np.average(per, weights=w))

    _, grad = loss.sum_and_grad(be.xp, be.asarray(z), td, wd)
    assert rel_err(be.to_numpy(grad), numeric_grad(mean_loss, z.copy())) < 1e-7


def test_softmax_loss_object_is_the_unchanged_fast_kernel(backend, rng):
    """Without weights the loss object returns exactly what the seed's kernel returns."""
    z, t = _problem("xent", rng)
    zd, td = backend.asarray(z), backend.asarray(t)
    s1, g1 = SoftmaxCrossEntropy().sum_and_grad(backend.xp, zd, td)
    s2, g2 = _xent_sum_and_grad(backend.xp, zd, td)
    assert float(s1) == float(s2)
    np.testing.assert_array_equal(backend.to_numpy(g1), backend.to_numpy(g2))


@pytest.mark.parametrize("kind", sorted(REFERENCES))
def test_all_zero_weights_give_zero_loss_and_gradient(backend, rng, kind):
    loss = REFERENCES[kind][0]
    z, t = _problem(kind, rng)
    s, g = loss.sum_and_grad(backend.xp, backend.asarray(z), backend.asarray(t),
                             backend.zeros((len(z),)))
    assert float(s) == 0.0
    assert np.all(backend.to_numpy(g) == 0.0)


def test_binary_crossentropy_is_stable_for_huge_logits(backend):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 30.0]])
    t = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    s, g = BinaryCrossEntropy().sum_and_grad(backend.xp, backend.asarray(z), backend.asarray(t))
    assert np.isfinite(float(s))
    # 1000 + 1000 + log 2 for row 0; ~0 for row 1 (log1p(exp(-30)))
    assert abs(float(s) - (2000.0 + np.log(2.0))) < 1e-3 * 2000
    np.testing.assert_allclose(backend.to_numpy(g), [[0.5, -0.5, -0.25], [0.0, 0.0, 0.0]],
                               atol=1e-6)


def _labels(backend, values, dtype=None):
    return backend.asarray(np.asarray(values), dtype=dtype)


def test_prepare_targets_validates_with_clear_errors(backend):
    mse, bce, xent = MeanSquaredError(), BinaryCrossEntropy(), SoftmaxCrossEntropy()
    ints = _labels(backend, [0, 1, 2], backend.index_dtype)
    with pytest.raises(xpnet.DTypeError, match="floating-point targets.*mean squared error"):
        mse.prepare_targets(backend, ints, 1)
    with pytest.raises(ValueError, match="NaN or infinite targets"):
        mse.prepare_targets(backend, _labels(backend, [0.0, np.nan, 1.0]), 1)
    with pytest.raises(xpnet.ShapeError, match=r"shape \(n, 2\).*got \(3,\)"):
        mse.prepare_targets(backend, _labels(backend, [0.0, 1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="only 0 and 1"):
        bce.prepare_targets(backend, _labels(backend, [0, 1, 2], backend.index_dtype), 1)
    with pytest.raises(xpnet.DTypeError, match="integer class labels"):
        xent.prepare_targets(backend, _labels(backend, [0.0, 1.0]), 3)
    with pytest.raises(ValueError, match=r"\[0, 2\].*from 0 to 3"):
        xent.prepare_targets(backend, _labels(backend, [0, 3], backend.index_dtype), 3)
    with pytest.raises(TypeError, match="must be an array"):
        mse.prepare_targets(backend, [0.0, 1.0], 1)


def test_prepare_targets_accepts_what_each_loss_expects(backend):
    t = BinaryCrossEntropy().prepare_targets(
        backend, backend.asarray(np.array([[True, False], [False, True]]), dtype=backend.xp.bool), 2)
    assert t.dtype == backend.dtype and backend.to_numpy(t).tolist() == [[1, 0], [0, 1]]
    t = MeanSquaredError().prepare_targets(backend, _labels(backend, [0.5, 1.5]), 1)
    assert tuple(t.shape) == (2, 1) and t.dtype == backend.dtype
    t = SoftmaxCrossEntropy().prepare_targets(
        backend, _labels(backend, [2, 0], backend.index_dtype), 3)
    assert backend.to_numpy(t).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_get_loss_by_name_and_instance():
    assert isinstance(get_loss("mse"), MeanSquaredError)
    assert isinstance(get_loss("Binary_Crossentropy"), BinaryCrossEntropy)
    assert isinstance(get_loss("softmax_crossentropy"), SoftmaxCrossEntropy)
    half = MeanSquaredError(half=True)
    assert get_loss(half) is half and half != MeanSquaredError()
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
