"""Dropout: the mask is the host draw on every backend, eval mode, validation and
a gradient check with the mask fixed."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cast_like, numeric_grad, rel_err, rtol_for

import xpnet
from xpnet.initializers import as_generator, dropout_keep_mask
from xpnet.layers import Dense, Dropout, Tanh


def test_dropout_mask_is_the_host_draw_on_every_backend(backend, rng):
    x = cast_like(backend, rng.standard_normal((6, 5)))
    g = cast_like(backend, rng.standard_normal((6, 5)))
    drop = Dropout(0.3, rng=42, backend=backend)
    host_rng = np.random.default_rng(42)
    tol = rtol_for(backend)
    for _ in range(3):  # a new mask per forward, the same sequence everywhere
        keep = host_rng.random((6, 5)) >= 0.3
        out = backend.to_numpy(drop.forward(backend.asarray(x)))
        np.testing.assert_array_equal(out != 0, keep)
        assert rel_err(out, np.where(keep, x / 0.7, 0.0)) < tol
        gi = backend.to_numpy(drop.backward(backend.asarray(x), backend.asarray(g)))
        assert rel_err(gi, np.where(keep, g / 0.7, 0.0)) < tol


def test_dropout_masks_identical_across_backends(backend):
    ref = Dropout(0.5, rng=3, backend="numpy")
    drop = Dropout(0.5, rng=3, backend=backend)
    ones_np = np.ones((8, 16))
    for _ in range(2):
        a = ref.forward(xpnet.get_backend("numpy").asarray(ones_np))
        b = backend.to_numpy(drop.forward(backend.asarray(ones_np)))
        np.testing.assert_array_equal(a != 0, b != 0)


def test_dropout_keeps_about_one_minus_rate():
    keep = dropout_keep_mask(as_generator(0), (200, 500), 0.25)
    assert keep.dtype == bool
    assert abs(keep.mean() - 0.75) < 0.005  # 100k Bernoulli draws: sd 0.0014


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_dropout_eval_mode_and_rate_zero_are_identity(backend, rng):
    x = backend.asarray(rng.standard_normal((3, 4)))
    g = backend.asarray(rng.standard_normal((3, 4)))
    drop = Dropout(0.5, rng=0, backend=backend).eval()
    assert drop.training is False
    assert drop.forward(x) is x and drop.backward(x, g) is g
    drop.train()
    assert drop.training is True
    none = Dropout(0.0, rng=0, backend=backend)
    assert none.forward(x) is x and none.backward(x, g) is g


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_dropout_backward_needs_a_matching_forward(backend):
    drop = Dropout(0.5, rng=0, backend=backend)
    with pytest.raises(xpnet.XpnetError, match="call forward"):
        drop.backward(backend.zeros((2, 3)), backend.zeros((2, 3)))
    drop.forward(backend.zeros((2, 3)))
    with pytest.raises(xpnet.ShapeError, match=r"last forward call had shape \(2, 3\)"):
        drop.backward(backend.zeros((4, 3)), backend.zeros((4, 3)))


def test_dropout_validates_rate():
    for bad in (1.0, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
            Dropout(bad)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_predict_and_evaluate_skip_dropout(backend, rng):
    be = backend
    layers = [Dense(4, 6, rng=0, backend=be), Tanh(backend=be), Dropout(0.5, rng=1, backend=be),
              Dense(6, 3, rng=2, backend=be)]
    model = xpnet.Sequential(layers)
    plain = xpnet.Sequential([layers[0], layers[1], layers[3]])
    X = be.asarray(rng.standard_normal((10, 4)))
    y = be.asarray(rng.integers(0, 3, 10), dtype=be.index_dtype)
    np.testing.assert_array_equal(be.to_numpy(model.predict(X)), be.to_numpy(plain.predict(X)))
    assert model.evaluate(X, y) == plain.evaluate(X, y)


def test_dropout_gradcheck(backend64, rng):
    """With the mask fixed (same seed, one draw), Dropout is linear: check it."""
    be = backend64
    x = rng.standard_normal((3, 5))
    r = rng.standard_normal((3, 5))

    def loss(v):
        return float(np.sum(be.to_numpy(Dropout(0.4, rng=9, backend=be).forward(be.asarray(v))) * r))

    drop = Dropout(0.4, rng=9, backend=be)
    drop.forward(be.asarray(x))
    gi = be.to_numpy(drop.backward(be.asarray(x), be.asarray(r)))
    assert np.any(gi == 0) and np.any(gi != 0)  # the mask does something here
    assert rel_err(gi, numeric_grad(loss, x.copy())) < 1e-7
