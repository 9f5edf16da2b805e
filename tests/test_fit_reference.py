"""Training parity: fit with Tanh, Dropout, LeakyReLU (seed SGD and Adam) against a
plain NumPy float64 loop written from the textbook rules."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import ref_xent, rel_err, rtol_for

import xpnet
from xpnet.layers import Dense, Dropout, LeakyReLU, Tanh

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
