"""Finite-difference gradient checks (float64, every backend) of whole networks
through the cross-entropy loss, checking input and parameter gradients, and of the
library loss itself."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numeric_grad, ref_xent, rel_err

import xpnet
from xpnet.layers import Dense, Dropout, Flatten, LeakyReLU, Sigmoid, Softmax, Tanh
from xpnet.optimizers import KeepGrads


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
