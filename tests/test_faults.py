"""Faults during training: an interrupted fit leaves a usable model and the last
checkpoint intact; a NaN loss stops training with the documented error."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import rtol_for

import xpnet


def _data(be, n=64, d=6, c=3):
    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    X = rng.standard_normal((c, d))[y] * 2 + rng.standard_normal((n, d))
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def test_ctrl_c_mid_step_leaves_model_usable_and_checkpoint_intact(backend, tmp_path):
    if backend.name == "jax":
        pytest.skip("the compiled JAX step traces _backward once: Ctrl-C lands between steps")
    X, y = _data(backend)
    model = xpnet.Sequential.mlp([6, 8, 8, 3], seed=0, backend=backend)
    model.fit(X, y, epochs=1, batch_size=8, train_accuracy=False)
    path = tmp_path / "model.npz"
    model.save(path)
    saved_bytes = path.read_bytes()
    saved_logits = backend.to_numpy(model.predict_logits(X))

    # Simulate Ctrl-C inside the backward pass of the 5th step, after the last
    # layer already updated itself and before the first layer did.
    middle = model[2]
    original = middle._backward
    calls = {"n": 0}

    def interrupted(inp, grad, need_input_grad=True):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(inp, grad, need_input_grad)

    middle._backward = interrupted
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=3, batch_size=8, progress=True)
    del middle._backward

    assert path.read_bytes() == saved_bytes  # fit never touches the checkpoint
    reloaded = xpnet.Sequential.load(path, backend=backend)
    np.testing.assert_array_equal(backend.to_numpy(reloaded.predict_logits(X)), saved_logits)
    # The interrupted model still predicts (what its current parameters say) and can keep
    # training exactly like a fresh model holding the same parameters.
    state = _host_params(backend, model)
    np.testing.assert_allclose(backend.to_numpy(model.predict_logits(X)),
                               _host_logits(state, backend.to_numpy(X)),
                               rtol=10 * rtol_for(backend), atol=10 * rtol_for(backend))
    twin = xpnet.Sequential.mlp([6, 8, 8, 3], seed=1, backend=backend)
    for layer, params in zip(twin, state):
        for name, value in params.items():
            setattr(layer, name, backend.asarray(value))
    hist = model.fit(X, y, epochs=2, batch_size=8, train_accuracy=False)
    want = twin.fit(X, y, epochs=2, batch_size=8, train_accuracy=False)
    assert np.all(np.isfinite(hist["loss"]))
    np.testing.assert_array_equal(hist["loss"], want["loss"])


def _host_params(be, model):
    return [{name: be.to_numpy(getattr(layer, name)).astype(np.float64)
             for name in layer.param_names} for layer in model]


def _host_logits(state, X):
    """Dense/ReLU forward in NumPy float64 from the host parameters."""
    h = X.astype(np.float64)
    dense = [p for p in state if p]
    for i, p in enumerate(dense):
        h = h @ p["weights"] + p["biases"]
        if i < len(dense) - 1:
            h = np.maximum(h, 0.0)
    return h


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_nan_loss_stops_training_and_names_the_fix(backend):
    X, y = _data(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend, learning_rate=1e35)
    with pytest.raises(xpnet.DivergenceError) as info:
        model.fit(X, y, epochs=2, batch_size=8, check_every=2)
    message = str(info.value)
    assert "epoch 1" in message and "Lower the learning rate" in message
    assert isinstance(info.value, FloatingPointError)  # catchable as the builtin too
