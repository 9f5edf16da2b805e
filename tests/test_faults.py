"""Faults during training: an interrupted fit leaves a usable model and the last
checkpoint intact; a NaN loss stops training with the documented error."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert np.all(np.isfinite(backend.to_numpy(reloaded.predict_logits(X))))
    # The interrupted model still predicts and can keep training.
    assert np.all(np.isfinite(backend.to_numpy(model.predict_logits(X))))
    hist = model.fit(X, y, epochs=2, batch_size=8, train_accuracy=False)
    assert np.all(np.isfinite(hist["loss"]))


def test_nan_loss_stops_training_and_names_the_fix(backend):
    X, y = _data(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend, learning_rate=1e35)
    with pytest.raises(xpnet.DivergenceError) as info:
        model.fit(X, y, epochs=2, batch_size=8, check_every=2)
    message = str(info.value)
    assert "epoch 1" in message and "Lower the learning rate" in message
    assert isinstance(info.value, FloatingPointError)  # catchable as the builtin too
