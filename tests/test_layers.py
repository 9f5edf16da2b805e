"""Dense and ReLU: forward/backward against plain NumPy float64, and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import RecordingOptimizer, numeric_grad, rel_err, rtol_for

import xpnet


def _dense_and_data(be, rng, n=5, d_in=4, d_out=3, lr=0.1):
    layer = xpnet.Dense(d_in, d_out, learning_rate=lr, rng=7, backend=be)
    w0 = be.to_numpy(layer.weights).astype(np.float64)
    x = rng.standard_normal((n, d_in))
    g = rng.standard_normal((n, d_out))
    return layer, w0, x, g


def test_dense_init_is_the_seed_and_identical_everywhere(backend):
    layer = xpnet.Dense(784, 100, rng=0, backend=backend)
    host = np.random.default_rng(0).standard_normal((784, 100)) * 0.01
    w = backend.to_numpy(layer.weights)
    np.testing.assert_array_equal(w, host.astype(w.dtype))  # bit for bit
    assert not np.any(backend.to_numpy(layer.biases))
    assert layer.weights.dtype == backend.dtype


def test_dense_forward_backward_against_numpy_reference(backend, rng):
    layer, w0, x, g = _dense_and_data(backend, rng)
    tol = rtol_for(backend)
    out = layer.forward(backend.asarray(x))
    assert rel_err(backend.to_numpy(out), x @ w0) < tol
    grad_in = layer.backward(backend.asarray(x), backend.asarray(g))
    assert rel_err(backend.to_numpy(grad_in), g @ w0.T) < tol  # uses the old weights
    # The seed's SGD step: W -= lr * X^T g, b -= lr * sum(g).
    assert rel_err(backend.to_numpy(layer.weights), w0 - 0.1 * x.T @ g) < tol
    assert rel_err(backend.to_numpy(layer.biases), -0.1 * g.sum(axis=0)) < tol


def test_dense_hands_gradients_to_an_optimizer(backend, rng):
    layer, w0, x, g = _dense_and_data(backend, rng)
    layer.optimizer = rec = RecordingOptimizer()
    layer.backward(backend.asarray(x), backend.asarray(g))
    tol = rtol_for(backend)
    assert rel_err(backend.to_numpy(rec.grads["weights"]), x.T @ g) < tol
    assert rel_err(backend.to_numpy(rec.grads["biases"]), g.sum(axis=0)) < tol
    # No plain step was taken: the optimizer owns the update.
    np.testing.assert_array_equal(backend.to_numpy(layer.weights), w0.astype(np.float32 if backend.dtype_name == "float32" else np.float64))


def test_dense_gradcheck(backend64, rng):
    """d/d(input, W, b) of L = sum(forward(x) * R) by central differences."""
    be = backend64
    layer, w0, x, r = _dense_and_data(be, rng)
    b0 = rng.standard_normal(3)
    layer.biases = be.asarray(b0)
    layer.optimizer = rec = RecordingOptimizer()

    def loss(x_, w_, b_):
        return float(np.sum((x_ @ w_ + b_) * r))

    # Forward through xpnet must agree with the formula used for differences.
    out = be.to_numpy(layer.forward(be.asarray(x)))
    assert abs(np.sum(out * r) - loss(x, w0, b0)) < 1e-12
    grad_in = be.to_numpy(layer.backward(be.asarray(x), be.asarray(r)))

    def loss_xp(x_, w_, b_):  # evaluate L through xpnet itself on the backend
        lay = xpnet.Dense(4, 3, backend=be)
        lay.weights, lay.biases = be.asarray(w_), be.asarray(b_)
        return float(np.sum(be.to_numpy(lay.forward(be.asarray(x_))) * r))

    assert rel_err(grad_in, numeric_grad(lambda v: loss_xp(v, w0, b0), x.copy())) < 1e-7
    assert rel_err(be.to_numpy(rec.grads["weights"]),
                   numeric_grad(lambda v: loss_xp(x, v, b0), w0.copy())) < 1e-7
    assert rel_err(be.to_numpy(rec.grads["biases"]),
                   numeric_grad(lambda v: loss_xp(x, w0, v), b0.copy())) < 1e-7


def test_relu_forward_backward_reference(backend, rng):
    x = rng.standard_normal((6, 5))
    g = rng.standard_normal((6, 5))
    relu = xpnet.ReLU(backend=backend)
    out = backend.to_numpy(relu.forward(backend.asarray(x)))
    np.testing.assert_allclose(out, np.maximum(x, 0), rtol=rtol_for(backend))
    gi = backend.to_numpy(relu.backward(backend.asarray(x), backend.asarray(g)))
    np.testing.assert_allclose(gi, g * (x > 0), rtol=rtol_for(backend))


def test_relu_gradcheck(backend64, rng):
    be = backend64
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 0.05] = 0.5  # keep away from the kink at 0
    r = rng.standard_normal((4, 6))
    relu = xpnet.ReLU(backend=be)

    def loss(v):
        return float(np.sum(be.to_numpy(relu.forward(be.asarray(v))) * r))

    gi = be.to_numpy(relu.backward(be.asarray(x), be.asarray(r)))
    assert rel_err(gi, numeric_grad(loss, x.copy())) < 1e-7


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_layer_rejects_bad_input(backend):
    layer = xpnet.Dense(4, 3, backend=backend)
    with pytest.raises(xpnet.ShapeError, match=r"shape \(n, 4\).*got \(2, 5\)"):
        layer.forward(backend.zeros((2, 5)))
    with pytest.raises(xpnet.ShapeError, match="2-D"):
        layer.forward(backend.zeros((4,)))
    with pytest.raises(xpnet.ShapeError, match=r"grad_output must have the layer output's shape \(2, 3\)"):
        layer.backward(backend.zeros((2, 4)), backend.zeros((2, 4)))


def test_dense_constructor_validation():
    with pytest.raises(ValueError, match="input_units must be a positive int, got 0"):
        xpnet.Dense(0, 3)
    with pytest.raises(ValueError, match="output_units must be a positive int, got 2.5"):
        xpnet.Dense(3, 2.5)
    with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0, got nan"):
        xpnet.Dense(3, 2, learning_rate=float("nan"))
    with pytest.raises(ValueError, match="unknown init 'kaiming'"):
        xpnet.Dense(3, 2, init="kaiming")
    with pytest.raises(TypeError, match="rng must be an int seed"):
        xpnet.Dense(3, 2, rng="zero")


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_layer_to_moves_parameters(backend):
    layer = xpnet.Dense(4, 3, rng=1, backend="numpy")
    w = layer.weights.copy()
    layer.to(backend)
    assert layer.backend == backend
    np.testing.assert_allclose(backend.to_numpy(layer.weights), w, rtol=1e-7)
