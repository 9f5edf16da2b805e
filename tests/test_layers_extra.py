"""Sigmoid, Tanh, LeakyReLU, Softmax, Dropout, Flatten.

Forward/backward against plain NumPy float64 references on every backend
(parity), finite-difference gradient checks in float64 on every backend (each
layer alone, and whole networks through the cross-entropy loss, checking input
and parameter gradients), and the Dropout mask's reproducibility.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import xpnet
from _helpers import numeric_grad, ref_xent, rel_err
from conftest import rtol_for
from xpnet.initializers import as_generator, dropout_keep_mask
from xpnet.layers import Dense, Dropout, Flatten, LeakyReLU, Sigmoid, Softmax, Tanh
from xpnet.optimizers import KeepGrads

# --------------------------------------------------------------------------
# NumPy float64 references
# --------------------------------------------------------------------------


def ref_sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def ref_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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


def _cast(be, x):
    """What the backend holds for host x: float64 data rounded to its dtype."""
    return x.astype(np.float32 if be.dtype_name == "float32" else np.float64).astype(np.float64)


# --------------------------------------------------------------------------
# Parity: every backend x {float32, float64} against NumPy float64
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_backward_reference(backend, rng, name):
    make, fwd, bwd = ACTIVATIONS[name]
    x = _cast(backend, rng.standard_normal((5, 4)) * 3)
    g = _cast(backend, rng.standard_normal((5, 4)))
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
    gi = backend.to_numpy(layer.backward(backend.asarray(x), backend.asarray(np.ones_like(x))))
    assert np.all(np.isfinite(gi))


def test_sigmoid_keeps_relative_precision_of_small_outputs(backend64):
    be = backend64
    x = np.asarray([[-30.0, -700.0]])
    out = be.to_numpy(Sigmoid(backend=be).forward(be.asarray(x)))
    np.testing.assert_allclose(out, np.exp(x) / (1 + np.exp(x)), rtol=1e-14)


def test_flatten_forward_backward(backend, rng):
    x = _cast(backend, rng.standard_normal((3, 2, 4)))
    g = _cast(backend, rng.standard_normal((3, 8)))
    flat = Flatten(backend=backend)
    out = flat.forward(backend.asarray(x))
    np.testing.assert_array_equal(backend.to_numpy(out), x.reshape(3, 8))
    gi = flat.backward(backend.asarray(x), backend.asarray(g))
    assert tuple(gi.shape) == (3, 2, 4)
    np.testing.assert_array_equal(backend.to_numpy(gi), g.reshape(3, 2, 4))
    assert flat.output_shape_for((7, 2, 3, 5)) == (7, 30)


def test_flatten_validates(backend):
    flat = Flatten(backend=backend)
    with pytest.raises(xpnet.ShapeError, match="batch axis"):
        flat.forward(backend.zeros((4,)))
    with pytest.raises(xpnet.ShapeError, match=r"output's shape \(2, 6\)"):
        flat.backward(backend.zeros((2, 2, 3)), backend.zeros((2, 5)))
    with pytest.raises(xpnet.ShapeError, match="2-D"):
        flat.backward(backend.zeros((2, 2, 3)), backend.zeros((2, 2, 3)))


def test_leaky_relu_validates():
    with pytest.raises(ValueError, match="negative_slope must be a finite number"):
        LeakyReLU(float("inf"))
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU("0.1")


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------


def test_dropout_mask_is_the_host_draw_on_every_backend(backend, rng):
    x = _cast(backend, rng.standard_normal((6, 5)))
    g = _cast(backend, rng.standard_normal((6, 5)))
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


# --------------------------------------------------------------------------
# Gradient checks (float64, every backend): central differences
# --------------------------------------------------------------------------


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


def test_flatten_gradcheck(backend64, rng):
    be = backend64
    x = rng.standard_normal((2, 3, 2))
    r = rng.standard_normal((2, 6))
    flat = Flatten(backend=be)

    def loss(v):
        return float(np.sum(be.to_numpy(flat.forward(be.asarray(v))) * r))

    gi = be.to_numpy(flat.backward(be.asarray(x), be.asarray(r)))
    assert rel_err(gi, numeric_grad(loss, x.copy())) < 1e-8


def _network(be, params, *, softmax_out=False):
    """Flatten -> Dense -> Sigmoid -> Dense -> Tanh -> Dropout -> Dense -> LeakyReLU -> Dense.

    ``params`` is a list of host (W, b) pairs; every call builds fresh layers
    (Dropout seeded identically), so repeated forwards see the same mask.
    """
    acts = [Sigmoid(backend=be), Tanh(backend=be), LeakyReLU(0.2, backend=be)]
    layers = [Flatten(backend=be)]
    for i, (w, b) in enumerate(params):
        dense = Dense(w.shape[0], w.shape[1], backend=be)
        dense.weights, dense.biases = be.asarray(w), be.asarray(b)
        layers.append(dense)
        if i == 1:
            layers.append(Dropout(0.3, rng=5, backend=be))
        if i < len(acts):
            layers.append(acts[i])
    if softmax_out:
        layers.append(Softmax(backend=be))
    return layers


def _net_params(rng):
    sizes = [(4, 3), (3, 4), (4, 3), (3, 3)]
    return [(rng.standard_normal(s) * 0.8, rng.standard_normal(s[1]) * 0.3) for s in sizes]


def _forward_all(layers, x):
    acts = [x]
    for layer in layers:
        acts.append(layer.forward(acts[-1]))
    return acts


def _backward_all(layers, acts, grad):
    for layer, a in zip(reversed(layers), reversed(acts[:-1])):
        grad = layer.backward(a, grad)
    return grad


@pytest.mark.parametrize("softmax_out", [False, True], ids=["logits-xent", "softmax-nll"])
def test_network_gradcheck_through_the_loss(backend64, rng, softmax_out):
    """Input and parameter gradients of the mean loss of a network using every new layer.

    ``logits-xent``: the library's softmax cross-entropy on logits.
    ``softmax-nll``: a Softmax output layer and ``-mean(log p[y])`` on its
    probabilities, back-propagated through ``Softmax.backward``.
    """
    be = backend64
    params = _net_params(rng)
    x = rng.standard_normal((5, 2, 2))
    y = np.asarray([0, 2, 1, 2, 0])
    yb = be.asarray(y, dtype=be.index_dtype)

    def loss_of(p, v):
        layers = _network(be, p, softmax_out=softmax_out)
        out = be.to_numpy(_forward_all(layers, be.asarray(v))[-1])
        if softmax_out:
            return float(-np.mean(np.log(out[np.arange(len(y)), y])))
        return float(np.mean(ref_xent(out, y)))

    layers = _network(be, params, softmax_out=softmax_out)
    for layer in layers:
        if layer.param_names:
            layer.optimizer = KeepGrads()
    acts = _forward_all(layers, be.asarray(x))
    out = acts[-1]
    if softmax_out:
        p = be.to_numpy(out)
        onehot = np.eye(3)[y]
        grad = be.asarray(-onehot / (p * len(y)))
        loss = float(-np.mean(np.log(p[np.arange(len(y)), y])))
    else:
        grad = xpnet.grad_softmax_crossentropy_with_logits(out, yb)
        loss = float(be.xp.mean(xpnet.softmax_crossentropy_with_logits(out, yb)))
    assert abs(loss - loss_of(params, x)) < 1e-12
    gx = be.to_numpy(_backward_all(layers, acts, grad))
    assert gx.shape == x.shape
    assert rel_err(gx, numeric_grad(lambda v: loss_of(params, v), x.copy())) < 1e-7
    dense = [layer for layer in layers if isinstance(layer, Dense)]
    for k, layer in enumerate(dense):
        for j, name in enumerate(("weights", "biases")):
            def f(v, k=k, j=j):
                p = [list(pair) for pair in params]
                p[k][j] = v
                return loss_of(p, x)

            num = numeric_grad(f, params[k][j].copy())
            got = be.to_numpy(layer.grads[name])
            # Central differences carry ~1e-10 absolute noise (float64 rounding of a
            # loss of order 1, divided by 2e-6): tiny bias gradients need that floor.
            assert np.max(np.abs(got - num)) <= 1e-7 * np.max(np.abs(num)) + 1e-9, (k, name)


def test_softmax_backward_of_nll_is_the_fused_gradient(backend, rng):
    """Softmax.backward(z, -onehot / (n p)) == (softmax(z) - onehot) / n, the loss's gradient."""
    be = backend
    z = _cast(be, rng.standard_normal((6, 4)) * 2)
    y = rng.integers(0, 4, 6)
    sm = Softmax(backend=be)
    p = be.to_numpy(sm.forward(be.asarray(z)))
    g = sm.backward(be.asarray(z), be.asarray(-np.eye(4)[y] / (p * 6)))
    want = be.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(
        be.asarray(z), be.asarray(y, dtype=be.index_dtype)))
    assert rel_err(be.to_numpy(g), want) < 10 * rtol_for(be)


def test_loss_gradcheck(backend64, rng):
    """The library loss path itself: grad of mean cross-entropy vs central differences."""
    be = backend64
    z = rng.standard_normal((4, 3)) * 3
    y = np.asarray([2, 0, 1, 1])
    yb = be.asarray(y, dtype=be.index_dtype)

    def loss(v):
        return float(be.xp.mean(xpnet.softmax_crossentropy_with_logits(be.asarray(v), yb)))

    g = be.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(be.asarray(z), yb))
    assert rel_err(g, numeric_grad(loss, z.copy())) < 1e-7


# --------------------------------------------------------------------------
# Integration: Sequential, configs
# --------------------------------------------------------------------------


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


def test_flatten_first_layer_in_sequential(backend, rng):
    be = backend
    X = be.asarray(rng.standard_normal((12, 2, 3)))
    y = be.asarray(rng.integers(0, 2, 12), dtype=be.index_dtype)
    model = xpnet.Sequential([Flatten(backend=be), Dense(6, 4, rng=0, backend=be),
                              Tanh(backend=be), Dropout(0.2, rng=1, backend=be),
                              Dense(4, 2, rng=2, backend=be)])
    hist = model.fit(X, y, epochs=2, batch_size=4)
    assert len(hist) == 2 and np.isfinite(hist["loss"][-1])
    assert tuple(model.predict(X).shape) == (12,)


@pytest.mark.parametrize("layer", [Sigmoid(), Tanh(), LeakyReLU(0.3), Softmax(), Flatten(),
                                   Dropout(0.25, rng=4)], ids=lambda layer: type(layer).__name__)
def test_get_config_rebuilds_the_layer(layer):
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    be = xpnet.get_backend("numpy", dtype="float64")
    clone = getattr(xpnet.layers, type(layer).__name__)(**config, backend=be)
    assert clone.get_config() == config
    x = be.asarray(np.linspace(-2, 2, 12).reshape(3, 4))
    np.testing.assert_array_equal(layer.to(be).forward(x), clone.forward(x))


def test_new_layers_survive_a_checkpoint(tmp_path, rng):
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential([Flatten(backend=be), Dense(6, 5, rng=0, backend=be),
                              Sigmoid(backend=be), Dense(5, 4, rng=1, backend=be),
                              Tanh(backend=be), Dropout(0.3, rng=2, backend=be),
                              Dense(4, 4, rng=3, backend=be), LeakyReLU(0.2, backend=be),
                              Dense(4, 3, rng=4, backend=be), Softmax(backend=be)])
    path = tmp_path / "model.npz"
    model.save(path)
    other = xpnet.get_backend("array_api_strict", device="device1", dtype="float64")
    loaded = xpnet.Sequential.load(path, backend=other)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [a.get_config() for a in loaded.layers] == [b.get_config() for b in model.layers]
    X = rng.standard_normal((7, 2, 3))
    np.testing.assert_allclose(other.to_numpy(loaded.predict_logits(other.asarray(X))),
                               model.predict_logits(be.asarray(X)), rtol=1e-12)


def test_softmax_output_layer_trains_like_logits(backend64, rng):
    be = backend64
    X = be.asarray(rng.standard_normal((8, 4)))
    y = be.asarray(rng.integers(0, 3, 8), dtype=be.index_dtype)
    with_sm = xpnet.Sequential([Dense(4, 3, rng=0, backend=be), Softmax(backend=be)])
    plain = xpnet.Sequential([Dense(4, 3, rng=0, backend=be)])
    h1 = with_sm.fit(X, y, epochs=2, batch_size=4, train_accuracy=False)
    h2 = plain.fit(X, y, epochs=2, batch_size=4, train_accuracy=False)
    assert rel_err(h1["loss"], h2["loss"]) < 1e-12
    assert rel_err(be.to_numpy(with_sm[0].weights), be.to_numpy(plain[0].weights)) < 1e-12
    assert abs(with_sm.evaluate(X, y)["loss"] - plain.evaluate(X, y)["loss"]) < 1e-12


# --------------------------------------------------------------------------
# Training parity: fit with the new layers (and Adam) vs a plain NumPy loop
# --------------------------------------------------------------------------

FIT_N, FIT_BATCH, FIT_EPOCHS, FIT_SEED, DROP_SEED, DROP_RATE = 48, 8, 3, 11, 5, 0.25


def _fit_reference(X, y, params, *, dropout, adam):
    """Dense-Tanh-[Dropout]-Dense-LeakyReLU(0.1)-Dense trained by the textbook rules."""
    Ws = [w.copy() for w, _ in params]
    bs = [b.copy() for _, b in params]
    order = np.random.default_rng(FIT_SEED)
    drop = np.random.default_rng(DROP_SEED)
    m = [np.zeros_like(a) for a in Ws + bs]
    v = [np.zeros_like(a) for a in Ws + bs]
    t = 0
    losses = []
    for _ in range(FIT_EPOCHS):
        perm = order.permutation(FIT_N)
        total = 0.0
        for start in range(0, FIT_N - FIT_BATCH + 1, FIT_BATCH):
            idx = perm[start:start + FIT_BATCH]
            xb, yb = X[idx], y[idx]
            z1 = xb @ Ws[0] + bs[0]
            h1 = np.tanh(z1)
            keep = drop.random(h1.shape) >= DROP_RATE if dropout else np.ones(h1.shape, bool)
            d1 = np.where(keep, h1 / (1 - DROP_RATE), 0.0) if dropout else h1
            z2 = d1 @ Ws[1] + bs[1]
            h2 = np.where(z2 > 0, z2, 0.1 * z2)
            z3 = h2 @ Ws[2] + bs[2]
            total += ref_xent(z3, yb).sum()
            e = np.exp(z3 - z3.max(axis=1, keepdims=True))
            g3 = e / e.sum(axis=1, keepdims=True)
            g3[np.arange(len(yb)), yb] -= 1.0
            g3 /= len(yb)
            g2 = np.where(z2 > 0, g3 @ Ws[2].T, 0.1 * (g3 @ Ws[2].T))
            gd = g2 @ Ws[1].T
            g1 = (np.where(keep, gd / (1 - DROP_RATE), 0.0) if dropout else gd) * (1 - h1 ** 2)
            grads = [xb.T @ g1, d1.T @ g2, h2.T @ g3, g1.sum(0), g2.sum(0), g3.sum(0)]
            ps = Ws + bs
            t += 1
            for i, g in enumerate(grads):
                if adam:
                    m[i] = 0.9 * m[i] + 0.1 * g
                    v[i] = 0.999 * v[i] + 0.001 * g * g
                    step = 0.01 * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
                else:
                    step = 0.1 * g
                ps[i] = ps[i] - step
            Ws, bs = ps[:3], ps[3:]
        losses.append(total / (FIT_N // FIT_BATCH * FIT_BATCH))
    return losses, Ws, bs


@pytest.mark.parametrize("adam", [False, True], ids=["seed-sgd", "adam"])
@pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
def test_fit_with_new_layers_matches_numpy(backend, dropout, adam):
    """Also covers compiled steps (jax.jit without Dropout/optimizer) and host masks in fit."""
    be = backend
    gen = np.random.default_rng(77)
    X = gen.standard_normal((FIT_N, 6))
    y = gen.integers(0, 3, FIT_N)
    params = [(gen.standard_normal(s) * 0.5, gen.standard_normal(s[1]) * 0.1)
              for s in [(6, 8), (8, 5), (5, 3)]]
    dense = []
    for w, b in params:
        d = Dense(w.shape[0], w.shape[1], 0.1, backend=be)
        d.weights, d.biases = be.asarray(w), be.asarray(b)
        dense.append(d)
    layers = [dense[0], Tanh(backend=be)]
    if dropout:
        layers.append(Dropout(DROP_RATE, rng=DROP_SEED, backend=be))
    layers += [dense[1], LeakyReLU(0.1, backend=be), dense[2]]
    model = xpnet.Sequential(layers)
    opt = xpnet.optimizers.Adam(0.01) if adam else None
    hist = model.fit(be.asarray(X), be.asarray(y, dtype=be.index_dtype), epochs=FIT_EPOCHS,
                     batch_size=FIT_BATCH, seed=FIT_SEED, optimizer=opt, train_accuracy=False)
    losses, Ws, bs = _fit_reference(X, y, params, dropout=dropout, adam=adam)
    tol = rtol_for(be)
    assert rel_err(hist["loss"], losses) < tol
    for d, W, b in zip(dense, Ws, bs):
        assert rel_err(be.to_numpy(d.weights), W) < tol
        assert rel_err(be.to_numpy(d.biases), b) < tol
    assert losses[-1] < losses[0]
