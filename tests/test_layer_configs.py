"""Layer configurations: get_config rebuilds each layer, every layer survives a
checkpoint across backends, a Softmax output layer trains like logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import rel_err

import xpnet
from xpnet.layers import Dense, Dropout, Flatten, LeakyReLU, Sigmoid, Softmax, Tanh


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
