"""``Sequential.predict_proba``: probabilities, i.e. softmax(predict_logits), on every backend."""

from __future__ import annotations

import numpy as np
from _helpers import cast_like, ref_softmax, rel_err, rtol_for

import xpnet


def _model(be, softmax_out=False):
    layers = [xpnet.Dense(4, 7, rng=0, backend=be), xpnet.ReLU(backend=be),
              xpnet.Dense(7, 5, rng=1, backend=be)]
    if softmax_out:
        layers.append(xpnet.Softmax(backend=be))
    return xpnet.Sequential(layers)


def test_predict_proba_is_the_softmax_of_the_logits(backend, rng):
    be = backend
    X = be.asarray(cast_like(be, rng.standard_normal((9, 4)) * 4))
    model = _model(be)
    logits = be.to_numpy(model.predict_logits(X)).astype(np.float64)
    proba = model.predict_proba(X)
    assert proba.dtype == be.dtype and tuple(proba.shape) == (9, 5)
    proba = be.to_numpy(proba)
    tol = rtol_for(be)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=tol)
    assert np.all(proba >= 0)
    assert rel_err(proba, ref_softmax(logits)) < tol
    np.testing.assert_array_equal(proba.argmax(axis=1), be.to_numpy(model.predict(X)))


def test_predict_proba_in_blocks_and_with_a_softmax_layer(backend64, rng):
    be = backend64
    X = be.asarray(rng.standard_normal((11, 4)))
    plain, with_softmax = _model(be), _model(be, softmax_out=True)
    want = ref_softmax(be.to_numpy(plain.predict_logits(X)))
    assert rel_err(be.to_numpy(plain.predict_proba(X, batch_size=3)), want) < 1e-14
    # The final Softmax is not applied twice.
    assert rel_err(be.to_numpy(with_softmax.predict_proba(X)), want) < 1e-14
    assert rel_err(be.to_numpy(with_softmax(X)), want) < 1e-14
