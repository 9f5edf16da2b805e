"""Sigmoid, Tanh, LeakyReLU and Softmax against plain NumPy float64 references.

Forward/backward parity on every backend x {float32, float64}, stability for huge
inputs, finite-difference gradient checks in float64, and small MLPs that learn
with each activation.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cast_like, numeric_grad, ref_softmax, rel_err, rtol_for

import xpnet
from xpnet.layers import LeakyReLU, Sigmoid, Softmax, Tanh


def ref_sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def ref_softmax_backward(z, g):
    s = ref_softmax(z)
    # Full Jacobian per row: J = diag(s) - s s^T; grad_in = J^T g = J g.
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        jac = np.diag(s[i]) - np.outer(s[i], s[i])
        out[i] = jac @ g[i]
    return out


# name -> (factory, forward reference, backward reference(x, g))
ACTIVATIONS = {
    "sigmoid": (lambda be: Sigmoid(backend=be), ref_sigmoid,
                lambda x, g: g * ref_sigmoid(x) * (1 - ref_sigmoid(x))),
    "tanh": (lambda be: Tanh(backend=be), np.tanh, lambda x, g: g * (1 - np.tanh(x) ** 2)),
    "leaky_relu": (lambda be: LeakyReLU(0.1, backend=be), lambda x: np.where(x > 0, x, 0.1 * x),
                   lambda x, g: np.where(x > 0, g, 0.1 * g)),
    "softmax": (lambda be: Softmax(backend=be), ref_softmax, ref_softmax_backward),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_backward_reference(backend, rng, name):
    make, fwd, bwd = ACTIVATIONS[name]
    x = cast_like(backend, rng.standard_normal((5, 4)) * 3)
    g = cast_like(backend, rng.standard_normal((5, 4)))
    layer = make(backend)
    tol = rtol_for(backend)
    out = layer.forward(backend.asarray(x))
    assert out.dtype == backend.dtype and tuple(out.shape) == (5, 4)
    assert rel_err(backend.to_numpy(out), fwd(x)) < tol
    gi = layer.backward(backend.asarray(x), backend.asarray(g))
    assert gi.dtype == backend.dtype
    assert rel_err(backend.to_numpy(gi), bwd(x, g)) < tol


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax"])
def test_activations_are_stable_for_huge_inputs(backend, name):
    """No overflow (a RuntimeWarning in xpnet is an error), no NaN, exact limits."""
    make, fwd, bwd = ACTIVATIONS[name]
    x = np.asarray([[-1e4, -80.0, 0.0, 80.0, 1e4]])
    layer = make(backend)
    out = backend.to_numpy(layer.forward(backend.asarray(x)))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, fwd(x), rtol=rtol_for(backend), atol=1e-300)
    g = np.ones_like(x)
    gi = backend.to_numpy(layer.backward(backend.asarray(x), backend.asarray(g)))
    assert np.all(np.isfinite(gi))
    # The derivatives vanish at the saturated ends; near 0 they are order 1, so an
    # absolute floor of a few ulps of the dtype is the right scale.
    eps = float(np.finfo(np.float32 if backend.dtype_name == "float32" else np.float64).eps)
    np.testing.assert_allclose(gi, bwd(x, g), rtol=rtol_for(backend), atol=4 * eps)


def test_sigmoid_keeps_relative_precision_of_small_outputs(backend64):
    be = backend64
    x = np.asarray([[-30.0, -700.0]])
    out = be.to_numpy(Sigmoid(backend=be).forward(be.asarray(x)))
    np.testing.assert_allclose(out, np.exp(x) / (1 + np.exp(x)), rtol=1e-14)


def test_leaky_relu_validates():
    with pytest.raises(ValueError, match="negative_slope must be a finite number"):
        LeakyReLU(float("inf"))
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU("0.1")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradcheck(backend64, rng, name):
    be = backend64
    make = ACTIVATIONS[name][0]
    x = rng.standard_normal((3, 4)) * 2
    x[np.abs(x) < 0.05] = 0.5  # LeakyReLU: keep away from the kink at 0
    r = rng.standard_normal((3, 4))
    layer = make(be)

    def loss(v):
        return float(np.sum(be.to_numpy(layer.forward(be.asarray(v))) * r))

    gi = be.to_numpy(layer.backward(be.asarray(x), be.asarray(r)))
    assert rel_err(gi, numeric_grad(loss, x.copy())) < 1e-7


def test_softmax_backward_of_nll_is_the_fused_gradient(backend, rng):
    """Softmax.backward(z, -onehot / (n p)) == (softmax(z) - onehot) / n, the loss's gradient."""
    be = backend
    z = cast_like(be, rng.standard_normal((6, 4)) * 2)
    y = rng.integers(0, 4, 6)
    sm = Softmax(backend=be)
    p = be.to_numpy(sm.forward(be.asarray(z)))
    g = sm.backward(be.asarray(z), be.asarray(-np.eye(4)[y] / (p * 6)))
    want = be.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(
        be.asarray(z), be.asarray(y, dtype=be.index_dtype)))
    assert rel_err(be.to_numpy(g), want) < 10 * rtol_for(be)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
@pytest.mark.parametrize("make", [lambda be: Tanh(backend=be), lambda be: Sigmoid(backend=be),
                                  lambda be: LeakyReLU(backend=be)],
                         ids=["tanh", "sigmoid", "leaky_relu"])
def test_mlp_with_other_activations_learns(backend32, make):
    be = backend32
    gen = np.random.default_rng(0)
    X = gen.standard_normal((64, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = xpnet.Sequential.mlp([2, 8, 2], init="glorot_uniform", learning_rate=0.5, seed=0,
                                 backend=be, activation=lambda: make(be))
    Xb, yb = be.asarray(X), be.asarray(y, dtype=be.index_dtype)
    model.fit(Xb, yb, epochs=15, batch_size=16, train_accuracy=False)
    assert model.evaluate(Xb, yb)["accuracy"] >= 0.9


# --------------------------------------------------------------------------
# The kink at 0: exact zeros, signed zeros and the tiniest values either side
# --------------------------------------------------------------------------


def _edge_inputs(be):
    """Exact zeros (both signs), tiny values either side of 0, and ordinary ones.

    The tiny values are normal numbers (8x the smallest normal, so that times 0.25
    is still normal): XLA on CPU flushes subnormals to zero, which is the
    platform's arithmetic, not the layer's.
    """
    tiny = 8 * float(np.finfo(np.float32 if be.dtype_name == "float32" else np.float64).tiny)
    row = [0.0, -0.0, tiny, -tiny, 1e-30, -1e-30, 1e-7, -1e-7, 1.5, -1.5]
    return cast_like(be, np.asarray([row, row[::-1]]))


# name -> (factory, forward, backward) as implemented: the gradient passes where x > 0
# only, so at exactly 0 ReLU's derivative is 0 and LeakyReLU's is its slope.
KINKED = {
    "relu": (lambda be: xpnet.ReLU(backend=be), lambda x: np.where(x > 0, x, 0.0),
             lambda x, g: np.where(x > 0, g, 0.0)),
    "leaky_relu": (lambda be: LeakyReLU(0.25, backend=be),
                   lambda x: np.where(x > 0, x, x.dtype.type(0.25) * x),
                   lambda x, g: np.where(x > 0, g, g.dtype.type(0.25) * g)),
}


@pytest.mark.parametrize("name", sorted(KINKED))
def test_kinked_activations_at_and_around_zero(backend, name):
    make, fwd, bwd = KINKED[name]
    x = _edge_inputs(backend)
    g = cast_like(backend, np.arange(1.0, 21.0).reshape(2, 10))
    layer = make(backend)
    # References in the backend's dtype: 0.25 * a float32 subnormal underflows to -0.
    host = np.float32 if backend.dtype_name == "float32" else np.float64
    out = backend.to_numpy(layer.forward(backend.asarray(x)))
    np.testing.assert_array_equal(out, fwd(x.astype(host)))  # exact: a comparison, a product
    gi = backend.to_numpy(layer.backward(backend.asarray(x), backend.asarray(g)))
    np.testing.assert_array_equal(gi, bwd(x.astype(host), g.astype(host)))
    # The gradient at exactly +0 and -0 is the "x <= 0" branch's.
    at_zero = 0.0 if name == "relu" else 0.25
    np.testing.assert_array_equal(gi[0, :2], at_zero * g[0, :2])
    assert gi[0, 2] == g[0, 2] and gi[0, 3] == at_zero * g[0, 3]


@pytest.mark.parametrize("name", sorted(KINKED))
def test_kinked_activations_in_a_trained_step_at_zero(backend64, name):
    """One fit step whose hidden pre-activations are exactly 0 for half the units."""
    be = backend64
    make = KINKED[name][0]
    dense1 = _dense_with(be, np.asarray([[1.0, -1.0, 0.0, 0.0]]), np.zeros(4))
    dense2 = _dense_with(be, np.arange(8.0).reshape(4, 2) / 8, np.zeros(2))
    model = xpnet.Sequential([dense1, make(be), dense2])
    X = np.asarray([[1.0], [2.0]])
    y = np.asarray([0, 1])
    model.fit(be.asarray(X), be.asarray(y, dtype=be.index_dtype), epochs=1, batch_size=2,
              shuffle=False, train_accuracy=False)
    slope = 0.0 if name == "relu" else 0.25
    z = X @ np.asarray([[1.0, -1.0, 0.0, 0.0]])
    h = np.where(z > 0, z, slope * z)
    w2 = np.arange(8.0).reshape(4, 2) / 8
    logits = h @ w2
    p = ref_softmax(logits)
    p[np.arange(2), y] -= 1.0
    gz2 = p / 2
    gh = gz2 @ w2.T
    gz = np.where(z > 0, gh, slope * gh)
    want_w1 = np.asarray([[1.0, -1.0, 0.0, 0.0]]) - 0.1 * (X.T @ gz)
    assert rel_err(be.to_numpy(dense1.weights), want_w1) < 1e-14
    # Per element, the bound of the float64 parity suite (torch's fused log_softmax and
    # its rate-as-alpha update round differently from this reference: 1.1e-14 seen).
    np.testing.assert_allclose(be.to_numpy(dense1.biases), -0.1 * gz.sum(0), rtol=1e-13, atol=1e-300)


def _dense_with(be, w, b):
    """A Dense layer (learning rate 0.1) holding the given host parameters."""
    layer = xpnet.Dense(w.shape[0], w.shape[1], 0.1, backend=be)
    layer.weights, layer.biases = be.asarray(w), be.asarray(b)
    return layer
