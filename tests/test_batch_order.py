"""Unshuffled training: exact batch contents and order, and ``fit(shuffle=False)``
against a NumPy float64 SGD over the batches in order.

``shuffle=False`` is ``iterate_minibatches``'s default; an off-by-one slice or a
reversed order must fail here.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import cast_like, ref_softmax, rel_err, rtol_for

import xpnet


def _numbered(be, n, d=2):
    """Rows that say where they came from: X[i] = [i*d, ..., i*d + d-1], y[i] = i."""
    X = be.asarray(np.arange(n * d, dtype=np.float64).reshape(n, d))
    y = be.asarray(np.arange(n), dtype=be.index_dtype)
    return X, y


@pytest.mark.parametrize("drop_last", [True, False])
def test_unshuffled_minibatches_are_the_rows_in_order(backend, drop_last):
    X, y = _numbered(backend, 11)
    batches = list(xpnet.iterate_minibatches(X, y, 4, drop_last=drop_last))  # shuffle's default
    want = [list(range(0, 4)), list(range(4, 8))] + ([] if drop_last else [[8, 9, 10]])
    assert [backend.to_numpy(yb).tolist() for _, yb in batches] == want
    for (xb, _), rows in zip(batches, want):
        np.testing.assert_array_equal(
            backend.to_numpy(xb), np.arange(11 * 2, dtype=np.float64).reshape(11, 2)[rows])


@pytest.mark.parametrize("n, batch, drop_last, sizes", [
    (8, 4, True, [4, 4]), (8, 4, False, [4, 4]), (3, 4, True, []), (3, 4, False, [3]),
    (5, 1, True, [1] * 5), (9, 9, False, [9])])
def test_unshuffled_minibatch_sizes(n, batch, drop_last, sizes):
    be = xpnet.get_backend("numpy")
    X, y = _numbered(be, n)
    got = [be.to_numpy(yb).tolist() for _, yb in
           xpnet.iterate_minibatches(X, y, batch, shuffle=False, drop_last=drop_last)]
    assert [len(b) for b in got] == sizes
    assert sum(got, []) == list(range(sum(sizes)))


def test_shuffled_minibatches_follow_the_host_permutation(backend):
    X, y = _numbered(backend, 10)
    perm = np.random.default_rng(7).permutation(10)
    got = [backend.to_numpy(yb).tolist()
           for _, yb in xpnet.iterate_minibatches(X, y, 3, shuffle=True, rng=7)]
    assert got == [perm[0:3].tolist(), perm[3:6].tolist(), perm[6:9].tolist()]


# --------------------------------------------------------------------------
# fit(shuffle=False): SGD over the batches in order
# --------------------------------------------------------------------------

N, BATCH, EPOCHS, LR = 22, 4, 2, 0.3  # 5 steps an epoch; the last 2 rows are dropped


def _reference_sgd(X, y, W1, b1, W2, b2):
    """Dense -> Tanh -> Dense with the softmax cross-entropy, in float64, batches in order."""
    losses = []
    n_steps = N // BATCH
    for _ in range(EPOCHS):
        total = 0.0
        for step in range(n_steps):
            xb, yb = X[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
            h = np.tanh(xb @ W1 + b1)
            z = h @ W2 + b2
            p = ref_softmax(z)
            total += -np.log(p[np.arange(BATCH), yb]).sum()
            p[np.arange(BATCH), yb] -= 1.0
            g2 = p / BATCH
            g1 = (g2 @ W2.T) * (1 - h ** 2)
            W2, b2 = W2 - LR * h.T @ g2, b2 - LR * g2.sum(0)
            W1, b1 = W1 - LR * xb.T @ g1, b1 - LR * g1.sum(0)
        losses.append(total / (n_steps * BATCH))
    return losses, (W1, b1, W2, b2)


def test_unshuffled_fit_is_sgd_over_the_batches_in_order(backend):
    be = backend
    gen = np.random.default_rng(3)
    X = cast_like(be, gen.standard_normal((N, 5)))
    y = gen.integers(0, 3, N)
    params = [cast_like(be, a) for a in (gen.standard_normal((5, 6)) * 0.7,
                                         gen.standard_normal(6) * 0.1,
                                         gen.standard_normal((6, 3)) * 0.7,
                                         gen.standard_normal(3) * 0.1)]
    d1, d2 = xpnet.Dense(5, 6, LR, backend=be), xpnet.Dense(6, 3, LR, backend=be)
    d1.weights, d1.biases, d2.weights, d2.biases = (be.asarray(a) for a in params)
    model = xpnet.Sequential([d1, xpnet.Tanh(backend=be), d2])
    hist = model.fit(be.asarray(X), be.asarray(y, dtype=be.index_dtype), epochs=EPOCHS,
                     batch_size=BATCH, shuffle=False, train_accuracy=False)
    losses, want = _reference_sgd(X, y, *params)
    tol = rtol_for(be)
    assert rel_err(hist["loss"], losses) < tol
    for got, ref in zip((d1.weights, d1.biases, d2.weights, d2.biases), want):
        assert rel_err(be.to_numpy(got), ref) < tol
    # The order matters: the same SGD over the batches reversed ends elsewhere.
    order = np.concatenate([np.arange(s * BATCH, (s + 1) * BATCH) for s in range(N // BATCH)][::-1])
    other_losses, other = _reference_sgd(np.concatenate([X[order], X[-2:]]),
                                         np.concatenate([y[order], y[-2:]]), *params)
    assert rel_err(want[0], other[0]) > 100 * tol
