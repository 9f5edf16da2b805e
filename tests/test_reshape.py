"""Flatten: forward/backward, validation, gradient check, as a first layer in a model."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cast_like, numeric_grad, rel_err

import xpnet
from xpnet.layers import Dense, Dropout, Flatten, Tanh


def test_flatten_forward_backward(backend, rng):
    x = cast_like(backend, rng.standard_normal((3, 2, 4)))
    g = cast_like(backend, rng.standard_normal((3, 8)))
    flat = Flatten(backend=backend)
    out = flat.forward(backend.asarray(x))
    np.testing.assert_array_equal(backend.to_numpy(out), x.reshape(3, 8))
    gi = flat.backward(backend.asarray(x), backend.asarray(g))
    assert tuple(gi.shape) == (3, 2, 4)
    np.testing.assert_array_equal(backend.to_numpy(gi), g.reshape(3, 2, 4))
    assert flat.output_shape_for((7, 2, 3, 5)) == (7, 30)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_flatten_validates(backend):
    flat = Flatten(backend=backend)
    with pytest.raises(xpnet.ShapeError, match="batch axis"):
        flat.forward(backend.zeros((4,)))
    with pytest.raises(xpnet.ShapeError, match=r"output's shape \(2, 6\)"):
        flat.backward(backend.zeros((2, 2, 3)), backend.zeros((2, 5)))
    with pytest.raises(xpnet.ShapeError, match="2-D"):
        flat.backward(backend.zeros((2, 2, 3)), backend.zeros((2, 2, 3)))


def test_flatten_gradcheck(backend64, rng):
    be = backend64
    x = rng.standard_normal((2, 3, 2))
    r = rng.standard_normal((2, 6))
    flat = Flatten(backend=be)

    def loss(v):
        return float(np.sum(be.to_numpy(flat.forward(be.asarray(v))) * r))

    gi = be.to_numpy(flat.backward(be.asarray(x), be.asarray(r)))
    assert rel_err(gi, numeric_grad(loss, x.copy())) < 1e-8


def _flatten_model(be):
    return xpnet.Sequential([Flatten(backend=be), Dense(6, 4, rng=0, backend=be),
                             Tanh(backend=be), Dropout(0.2, rng=1, backend=be),
                             Dense(4, 2, rng=2, backend=be)])


def test_flatten_first_layer_in_sequential(backend, rng):
    """Same losses and predictions as the NumPy float64 model (host masks, same seeds)."""
    be = backend
    X_host = cast_like(be, rng.standard_normal((12, 2, 3)))
    y_host = rng.integers(0, 2, 12)
    ref = xpnet.get_backend("numpy", dtype="float64")
    want = _flatten_model(ref).fit(ref.asarray(X_host), ref.asarray(y_host, dtype=ref.index_dtype),
                                   epochs=2,
                                   batch_size=4)
    model = _flatten_model(be)
    X, y = be.asarray(X_host), be.asarray(y_host, dtype=be.index_dtype)
    hist = model.fit(X, y, epochs=2, batch_size=4)
    assert len(hist) == 2
    # float32 rounding of the initial weights and of each step: a loose but real bound.
    tol = 1e-10 if be.dtype_name == "float64" else 1e-3
    assert rel_err(hist["loss"], want["loss"]) < tol
    if be.dtype_name == "float64":  # float32 could flip a near tie; one flip is 1/12
        np.testing.assert_allclose(hist["train_acc"], want["train_acc"], rtol=1e-12)
    assert tuple(model.predict(X).shape) == (12,)
