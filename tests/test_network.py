"""Sequential and the free functions: API behaviour, validation and the divergence guard."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import rel_err, rtol_for

import xpnet
from xpnet.callbacks import Callback


def _toy(be, n=96, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 3
    y = rng.integers(0, c, n)
    X = centers[y] + rng.standard_normal((n, d))
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype), X, y


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_sequential_learns_a_separable_problem(backend):
    X, y, _, _ = _toy(backend)
    model = xpnet.Sequential.mlp([6, 16, 3], seed=0, backend=backend, learning_rate=0.5)
    hist = model.fit(X, y, epochs=15, batch_size=16, validation_data=(X, y))
    assert len(hist) == 15 and hist.epochs == list(range(1, 16))
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["val_acc"][-1] > 0.9
    scores = model.evaluate(X, y)
    assert scores["accuracy"] == pytest.approx(hist["val_acc"][-1])
    assert 0 < scores["loss"] < hist["loss"][0]


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_forward_returns_every_activation(backend):
    X, _, _, _ = _toy(backend, n=5)
    model = xpnet.Sequential.mlp([6, 4, 3], seed=0, backend=backend)
    acts = xpnet.forward(model, X)
    assert [tuple(a.shape) for a in acts] == [(5, 4), (5, 4), (5, 3)]
    assert rel_err(backend.to_numpy(model(X)), backend.to_numpy(acts[-1])) == 0


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_predict_in_blocks_equals_one_block(backend):
    X, _, _, _ = _toy(backend, n=50)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=1, backend=backend)
    whole = backend.to_numpy(model.predict_logits(X, batch_size=1000))
    blocks = backend.to_numpy(model.predict_logits(X, batch_size=7))  # 7 does not divide 50
    assert rel_err(blocks, whole) < rtol_for(backend)
    np.testing.assert_array_equal(backend.to_numpy(model.predict(X, batch_size=7)),
                                  np.argmax(whole, axis=1))


def test_first_layer_skips_the_input_gradient(backend):
    """Nobody uses d loss / d X: the first Dense must not compute it."""
    X, y, _, _ = _toy(backend, n=32)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend)
    calls = []
    first = model[0]
    original = first._backward

    def spy(inp, grad, need_input_grad=True):
        calls.append(need_input_grad)
        return original(inp, grad, need_input_grad)

    first._backward = spy
    model.fit(X, y, epochs=1, batch_size=16, train_accuracy=False)
    assert calls and set(calls) == {False}  # (compiled backends trace the step once)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_same_seed_same_weights_bit_for_bit(backend):
    X, y, _, _ = _toy(backend)
    runs = []
    for _ in range(2):
        model = xpnet.Sequential.mlp([6, 8, 3], seed=5, backend=backend)
        model.fit(X, y, epochs=2, batch_size=8, seed=9, train_accuracy=False)
        runs.append([backend.to_numpy(p) for layer in model for p in layer.params.values()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_history_and_callbacks_and_early_stop(backend):
    X, y, _, _ = _toy(backend)
    seen = []

    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))
            if epoch == 1:
                self.model.stop_training = True

    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend)
    hist = model.fit(X, y, epochs=10, callbacks=[StopAfterTwo()], validation_data=(X, y))
    assert len(hist) == 2
    assert seen[0] == (0, ["accuracy", "loss", "seconds", "val_accuracy", "val_loss"])
    # A second fit continues the history's epoch numbering.
    model.fit(X, y, epochs=1, history=hist, train_accuracy=False)
    assert hist.epochs == [1, 2, 3]


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_divergence_is_caught_with_epoch_and_step(backend):
    X, y, _, _ = _toy(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend, learning_rate=1e30)
    with pytest.raises(xpnet.DivergenceError, match=r"loss became (nan|inf|-inf) in epoch 1, between steps \d+ and \d+ \(checked every 4 steps\).*Lower the learning rate"):
        model.fit(X, y, epochs=3, batch_size=8, check_every=4)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_fit_validates_arguments(backend):
    X, y, Xh, yh = _toy(backend, n=20)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend)
    bad_labels = backend.asarray(np.full(20, 3), dtype=backend.index_dtype)
    with pytest.raises(ValueError, match=r"\[0, 2\].*3 outputs.*from 3 to 3"):
        model.fit(X, bad_labels, batch_size=4)
    with pytest.raises(xpnet.ShapeError, match=r"one label per sample: expected shape \(20,\), got \(19,\)"):
        model.fit(X, y[:19], batch_size=4)
    with pytest.raises(ValueError, match="batch_size=32 is larger than the 20"):
        model.fit(X, y, batch_size=32)
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        model.fit(X, y, epochs=0, batch_size=4)
    with pytest.raises(TypeError, match="validation_data must be a pair"):
        model.fit(X, y, batch_size=4, validation_data=X)
    with pytest.raises(xpnet.DTypeError, match="integer class labels"):
        model.fit(X, backend.asarray(yh.astype(float)), batch_size=4)
    with pytest.raises(TypeError, match="Callback"):
        model.fit(X, y, batch_size=4, callbacks=[print])


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_free_functions_accept_a_list(backend):
    X, y, _, _ = _toy(backend, n=16)
    net = [xpnet.Dense(6, 5, rng=0, backend=backend), xpnet.ReLU(backend=backend),
           xpnet.Dense(5, 3, rng=1, backend=backend)]
    loss0 = float(xpnet.train(net, X, y))
    for _ in range(20):
        loss = float(xpnet.train(net, X, y))
    assert loss < loss0
    pred = xpnet.predict(net, X)
    assert tuple(pred.shape) == (16,)
    with pytest.raises(TypeError, match=r"network\[1\] must be an xpnet Layer"):
        xpnet.forward([net[0], "relu"], X)
    with pytest.raises(ValueError, match="at least one layer"):
        xpnet.predict([], X)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_sequential_moves_layers_to_its_backend(backend):
    model = xpnet.Sequential([xpnet.Dense(4, 3, rng=0, backend="numpy"), xpnet.ReLU(backend="numpy")],
                             backend=backend.name, device=backend.device, dtype=backend.dtype_name)
    assert all(layer.backend == backend for layer in model)
    assert model.backend == backend


def test_summary_lists_layers_and_counts():
    model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy")
    text = model.summary()
    assert "Dense(784, 100" in text and "(n, 200)" in text
    assert "total params: 100,710" in text
    assert model.n_params() == 784 * 100 + 100 + 100 * 200 + 200 + 200 * 10 + 10


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_interrupted_fit_leaves_model_usable(backend):
    X, y, _, _ = _toy(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend)

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=5, callbacks=[Interrupt()])
    out = backend.to_numpy(model.predict_logits(X)).astype(np.float64)
    assert np.all(np.isfinite(out))
    # evaluate agrees with the logits: accuracy and mean cross-entropy computed on the host.
    labels = backend.to_numpy(y)
    scores = model.evaluate(X, y)
    assert abs(scores["accuracy"] - np.mean(out.argmax(axis=1) == labels)) < 1e-6
    shifted = out - out.max(axis=1, keepdims=True)
    xent = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]
    assert abs(scores["loss"] - xent.mean()) <= rtol_for(backend) * max(1.0, xent.mean())


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_calling_the_model_is_inference_mode(backend):
    """model(X) skips Dropout, like predict; the free forward() is the training pass."""
    X, _, _, _ = _toy(backend, n=6)
    model = xpnet.Sequential([xpnet.Dense(6, 5, rng=0, backend=backend),
                              xpnet.Dropout(0.5, backend=backend),
                              xpnet.Dense(5, 3, rng=1, backend=backend)])
    a = backend.to_numpy(model(X))
    b = backend.to_numpy(model(X))
    np.testing.assert_array_equal(a, b)
    assert rel_err(a, backend.to_numpy(model.predict_logits(X))) < rtol_for(backend)


def test_summary_follows_shape_changes():
    model = xpnet.Sequential([xpnet.Flatten(), xpnet.Dense(784, 10)])
    text = model.summary(input_shape=(28, 28))
    assert "Flatten()" in text and "(n, 784)" in text and "(n, 10)" in text
    assert "total params: 7,850" in text
