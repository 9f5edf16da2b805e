"""Softmax cross-entropy from logits: reference values, stability, gradient checks."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numeric_grad, ref_log_softmax, ref_xent, ref_xent_grad, rel_err, rtol_for

import xpnet
from xpnet.losses import _xent_sum_and_grad, log_softmax, one_hot


def _data(be, rng, n=7, c=5, scale=3.0):
    z = rng.standard_normal((n, c)) * scale
    y = rng.integers(0, c, n)
    return z, y, be.asarray(z), be.asarray(y, dtype=be.index_dtype)


def test_loss_and_grad_match_reference(backend, rng):
    z, y, zd, yd = _data(backend, rng)
    tol = rtol_for(backend)
    loss = backend.to_numpy(xpnet.softmax_crossentropy_with_logits(zd, yd))
    assert loss.shape == (7,)
    assert rel_err(loss, ref_xent(z, y)) < tol
    grad = backend.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(zd, yd))
    assert rel_err(grad, ref_xent_grad(z, y)) < tol


def test_fused_training_kernel_matches_the_public_functions(backend, rng):
    """The loop's shared max/exp/sum kernel is a twin of the two public functions."""
    z, y, zd, yd = _data(backend, rng)
    oh = one_hot(yd, 5, dtype=backend.dtype)
    loss_sum, grad = _xent_sum_and_grad(backend.xp, zd, oh)
    assert abs(float(loss_sum) - ref_xent(z, y).sum()) / ref_xent(z, y).sum() < rtol_for(backend)
    assert rel_err(backend.to_numpy(grad), ref_xent_grad(z, y)) < rtol_for(backend)


def test_large_logits_stay_finite(backend):
    """Logits of 1000 would overflow exp() without subtracting the row max."""
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 1000.0]])
    y = np.array([1, 2])
    zd, yd = backend.asarray(z), backend.asarray(y, dtype=backend.index_dtype)
    loss = backend.to_numpy(xpnet.softmax_crossentropy_with_logits(zd, yd))
    grad = backend.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(zd, yd))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [1000.0, np.log(3.0)], rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-7)
    oh = one_hot(yd, 3, dtype=backend.dtype)
    s, g = _xent_sum_and_grad(backend.xp, zd, oh)
    # The fused kernel: the summed loss and the gradient of the mean (as the public pair).
    np.testing.assert_allclose(float(s), 1000.0 + np.log(3.0), rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(g), [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]],
                               atol=1e-7)


def test_loss_gradcheck(backend64, rng):
    be = backend64
    z, y, _, yd = _data(be, rng)

    def mean_loss(v):
        return float(np.mean(be.to_numpy(
            xpnet.softmax_crossentropy_with_logits(be.asarray(v), yd))))

    grad = be.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(be.asarray(z), yd))
    assert rel_err(grad, numeric_grad(mean_loss, z.copy())) < 1e-7


def test_log_softmax_and_one_hot(backend, rng):
    z = rng.standard_normal((3, 4))
    out = backend.to_numpy(log_softmax(backend.asarray(z)))
    assert rel_err(out, ref_log_softmax(z)) < rtol_for(backend)
    oh = backend.to_numpy(one_hot(backend.asarray(np.array([3, 0]), dtype=backend.index_dtype), 4,
                                  dtype=backend.dtype))
    np.testing.assert_array_equal(oh, [[0, 0, 0, 1], [1, 0, 0, 0]])


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_loss_rejects_bad_labels(backend):
    z = backend.zeros((2, 10))
    y = backend.asarray(np.array([3, 10]), dtype=backend.index_dtype)
    with pytest.raises(ValueError, match=r"\[0, 9\].*from 3 to 10"):
        xpnet.softmax_crossentropy_with_logits(z, y)
    with pytest.raises(xpnet.DTypeError, match="integer class labels"):
        xpnet.grad_softmax_crossentropy_with_logits(z, backend.asarray(np.array([1.0, 2.0])))
    with pytest.raises(xpnet.ShapeError, match=r"shape \(2,\).*one-hot"):
        xpnet.softmax_crossentropy_with_logits(z, backend.zeros((2, 10), dtype=backend.index_dtype))
    with pytest.raises(xpnet.ShapeError, match="logits must be a 2-D"):
        xpnet.softmax_crossentropy_with_logits(backend.zeros((10,)), y)


def test_one_hot_of_small_integer_labels_does_not_wrap(backend):
    """uint8 labels with 300 classes: an arange in uint8 would wrap and mark two columns."""
    labels = backend.asarray(np.array([2, 255], dtype=np.uint8), dtype=backend.xp.uint8)
    oh = backend.to_numpy(one_hot(labels, 300, dtype=backend.dtype))
    assert oh.sum() == 2 and oh[0, 2] == 1 and oh[1, 255] == 1
