"""fit validates once into FitSettings; callbacks run through one CallbackList; shared helpers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import xpnet
from xpnet import training
from xpnet._io import atomic_write
from xpnet._validation import check_bool, check_int, check_number
from xpnet.callbacks import Callback, CallbackList, History
from xpnet.layers.base import layers_of


def _toy(be, n=40, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, n)
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def test_fit_hands_one_frozen_settings_object_to_the_loop(backend, monkeypatch):
    X, y = _toy(backend)
    model = xpnet.Sequential.mlp([4, 5, 3], seed=0, backend=backend)
    seen = {}
    real_loop = training.fit_loop

    def spy(model_, feed, validation, stepper, settings, callbacks, history):
        seen.update(settings=settings, callbacks=callbacks, history=history, feed=feed,
                    validation=validation, stepper=stepper)
        return real_loop(model_, feed, validation, stepper, settings, callbacks, history)

    monkeypatch.setattr(xpnet.network, "fit_loop", spy)
    gen = np.random.default_rng(7)
    history = model.fit(X, y, epochs=2, batch_size=8, shuffle=False, seed=gen,
                        validation_data=(X, y), check_every=3, train_accuracy=False)
    s = seen["settings"]
    assert isinstance(s, training.FitSettings)
    assert (s.epochs, s.batch_size, s.shuffle, s.check_every, s.train_accuracy, s.verbose,
            s.progress, s.start_epoch) == (2, 8, False, 3, False, 0, False, 0)
    assert s.rng is gen and seen["validation"].X is X and seen["feed"].X is X
    assert isinstance(seen["stepper"], training.LocalStepper)
    assert isinstance(seen["callbacks"], CallbackList) and seen["history"] is history
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 5
    assert history.epochs == [1, 2] and "train_acc" not in history


def test_bad_arguments_are_refused_before_any_epoch(backend, monkeypatch):
    X, y = _toy(backend)
    model = xpnet.Sequential.mlp([4, 5, 3], seed=0, backend=backend)
    monkeypatch.setattr(xpnet.network, "fit_loop", lambda *a: pytest.fail("the loop ran"))
    for kwargs, exc, message in [
        ({"epochs": 1.5}, ValueError, "epochs must be a positive int, got 1.5"),
        ({"batch_size": True}, ValueError, "batch_size must be a positive int, got True"),
        ({"check_every": -1}, ValueError, "check_every must be an int >= 0, got -1"),
        ({"seed": "x"}, TypeError, "seed must be an int or a numpy.random.Generator, got str"),
        ({"callbacks": [object()]}, TypeError, "callbacks must be xpnet Callback objects"),
        ({"optimizer": "adam"}, TypeError, "optimizer must be an xpnet optimizer"),
    ]:
        with pytest.raises(exc, match=message):
            model.fit(X, y, **{"batch_size": 8, **kwargs})


def test_unshuffled_fit_takes_the_batches_in_order(backend64):
    """shuffle=False: the result equals plain SGD steps over consecutive slices."""
    X, y = _toy(backend64, n=24)
    model = xpnet.Sequential.mlp([4, 5, 3], seed=1, backend=backend64, learning_rate=0.3)
    manual = xpnet.Sequential.mlp([4, 5, 3], seed=1, backend=backend64, learning_rate=0.3)
    model.fit(X, y, epochs=1, batch_size=8, shuffle=False, train_accuracy=False)
    for lo in (0, 8, 16):
        xpnet.train(manual, X[lo:lo + 8, ...], y[lo:lo + 8])
    be = backend64
    for a, b in zip(model.layers, manual.layers):
        for name in a.param_names:
            np.testing.assert_allclose(be.to_numpy(getattr(a, name)),
                                       be.to_numpy(getattr(b, name)), rtol=1e-12, atol=1e-14)


def test_model_state_is_declared_in_init():
    model = xpnet.Sequential.mlp([4, 5, 3], backend="numpy")
    assert model.train_steps == {} and model.stop_training is False
    assert (model.config["sizes"], model.metadata, model.checkpoint) == ([4, 5, 3], {}, {})


def test_callback_list_calls_each_hook_in_order():
    calls = []

    class Rec(Callback):
        def __init__(self, tag):
            self.tag = tag

        def on_train_begin(self, logs=None):
            calls.append((self.tag, "begin"))

        def on_epoch_begin(self, epoch, logs=None):
            calls.append((self.tag, "epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            calls.append((self.tag, "epoch_end", epoch, dict(logs)))

        def on_train_end(self, logs=None):
            calls.append((self.tag, "end", logs))

    cbs = CallbackList([Rec("a"), Rec("b")])
    assert len(cbs) == 2 and [c.tag for c in cbs] == ["a", "b"]
    cbs.on_train_begin()
    cbs.on_epoch_begin(4)
    cbs.on_epoch_end(4, {"loss": 1.0})
    cbs.on_train_end({"loss": 1.0})
    assert calls == [("a", "begin"), ("b", "begin"), ("a", "epoch_begin", 4),
                     ("b", "epoch_begin", 4), ("a", "epoch_end", 4, {"loss": 1.0}),
                     ("b", "epoch_end", 4, {"loss": 1.0}), ("a", "end", {"loss": 1.0}),
                     ("b", "end", {"loss": 1.0})]
    with pytest.raises(TypeError, match="callbacks must be xpnet Callback objects, got int"):
        CallbackList([Rec("a"), 3])


def test_public_names_moved_with_their_classes():
    assert xpnet.Callback is Callback and xpnet.History is History
    assert xpnet.initializers.as_generator is xpnet._random.as_generator
    assert xpnet.checkpoint.atomic_write is atomic_write
    assert History().last() == {}


@pytest.mark.parametrize("value, kwargs, message", [
    (0, {"low": 1}, "n must be a positive int, got 0"),
    (True, {}, "n must be an int, got True"),
    (np.bool_(True), {"low": 0}, "n must be an int >= 0, got "),
    (3.0, {"low": 0}, r"n must be an int >= 0, got 3.0"),
    (11, {"low": 1, "high": 10}, r"n must be an int in \[1, 10\], got 11"),
])
def test_check_int_refuses_with_the_argument_name(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", **kwargs)


def test_check_int_and_check_number_accept_and_normalise():
    assert check_int(np.int64(4), "n", low=1) == 4 and type(check_int(np.int64(4), "n")) is int
    assert check_number(np.float32(0.5), "x", low=0, high=1) == 0.5
    assert type(check_number(2, "x")) is float
    assert check_number(0.0, "x", low=0.0) == 0.0
    assert check_bool(np.bool_(False), "flag") is False


@pytest.mark.parametrize("value, kwargs, message", [
    (math.nan, {}, "x must be a finite number, got nan"),
    (math.inf, {"low": 0}, "x must be a finite number >= 0, got inf"),
    (False, {}, "x must be a finite number, got False"),
    ("1", {"low": 0, "high": 1}, "x must be a finite number, got '1'"),
    (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, r"x must be in \[0.0, 1.0\), got 1.0"),
    (0.0, {"low": 0.0, "low_open": True}, "x must be a finite number > 0.0, got 0.0"),
    (2.0, {"low": 0, "high": 1, "expected": "a fraction"}, "x must be a fraction, got 2.0"),
])
def test_check_number_refuses_with_the_argument_name(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_number(value, "x", **kwargs)


def test_check_bool_refuses_non_bools():
    with pytest.raises(TypeError, match="flatten must be a bool, got 1"):
        check_bool(1, "flatten")


def test_layers_of_accepts_models_and_lists_and_names_the_argument():
    model = xpnet.Sequential.mlp([2, 3, 2], backend="numpy")
    assert layers_of(model) == model.layers and layers_of(tuple(model.layers)) == model.layers
    assert layers_of([], allow_empty=True) == []
    with pytest.raises(ValueError, match="model must contain at least one layer"):
        layers_of([], "model")
    with pytest.raises(TypeError, match="model must be a Sequential or a list of Layers, got int"):
        layers_of(3, "model")
    with pytest.raises(TypeError, match=r"layers\[0\] must be an xpnet Layer, got str"):
        xpnet.SGD(0.1).step(["dense"])


@pytest.mark.parametrize("shuffle", ["yes", 1, None, "chunk"])
def test_shuffle_must_be_a_bool_or_chunks(shuffle):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _toy(be)
    model = xpnet.Sequential.mlp([4, 5, 3], seed=0, backend=be)
    before = [np.array(layer.weights) for layer in model.layers[::2]]
    with pytest.raises(TypeError, match="shuffle must be True, False or 'chunks'"):
        model.fit(X, y, epochs=1, batch_size=8, shuffle=shuffle)
    assert all(np.array_equal(b, layer.weights) for b, layer in zip(before, model.layers[::2]))


def test_the_step_is_looked_up_once_per_epoch_not_per_batch(monkeypatch):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _toy(be)
    batches = [(X[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]  # 5 blocks an epoch
    calls = []
    real = training.LocalStepper.step_fn
    monkeypatch.setattr(training.LocalStepper, "step_fn",
                        lambda self, weighted: calls.append(weighted) or real(self, weighted))
    model = xpnet.Sequential.mlp([4, 5, 3], seed=0, backend=be)
    model.fit(batches, epochs=2, train_accuracy=False)
    assert calls == [False, False]
