"""LearningRateScheduler and EarlyStopping, through Sequential.fit on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import Callback, EarlyStopping, LearningRateScheduler
from xpnet.optimizers import SGD, Adam, StepSchedule, get_schedule


def _data(be, n=16, seed=0):
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def _model(be, lr=0.1):
    return xpnet.Sequential.mlp([3, 4, 2], learning_rate=lr, init="he_normal", backend=be,
                                seed=0)


def _params(model):
    be = model.backend
    return [be.to_numpy(p) for layer in model.layers for p in layer.params.values()]


class ParamsPerEpoch(Callback):
    def __init__(self):
        self.params = []

    def on_epoch_end(self, model, epoch, logs=None):
        self.params.append(_params(model))


# --------------------------------------------------------------------------
# LearningRateScheduler
# --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["optimizer", "layers", "sgd-without-rate"])
def test_scheduler_sets_the_rate_each_epoch(backend32, target):
    """A multiplier of 0 from epoch 2 on freezes the parameters; the rate is restored after."""
    be = backend32
    model = _model(be, lr=0.1)
    X, y = _data(be)
    opt = {"optimizer": SGD(0.1), "layers": None, "sgd-without-rate": SGD()}[target]
    sched = LearningRateScheduler(StepSchedule(2, gamma=0.0), opt)
    rec = ParamsPerEpoch()
    model.fit(X, y, epochs=4, batch_size=4, optimizer=opt, callbacks=[sched, rec],
              train_accuracy=False)
    assert sched.learning_rates == [0.1, 0.1, 0.0, 0.0]
    assert any(np.any(a != b) for a, b in zip(rec.params[0], rec.params[1]))
    for epoch in (2, 3):
        for a, b in zip(rec.params[epoch], rec.params[1]):
            np.testing.assert_array_equal(a, b)
    if target == "optimizer":
        assert opt.learning_rate == 0.1
    assert [layer.learning_rate for layer in model.layers if layer.param_names] == [0.1, 0.1]


def test_scheduler_continues_over_two_fits(backend32):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    opt = Adam(0.01)
    sched = LearningRateScheduler(get_schedule("step", epochs=4, step_size=2, gamma=0.5), opt)
    hist = model.fit(X, y, epochs=2, batch_size=8, optimizer=opt, callbacks=[sched])
    model.fit(X, y, epochs=2, batch_size=8, optimizer=opt, callbacks=[sched], history=hist)
    assert sched.learning_rates == [0.01, 0.01, 0.005, 0.005]
    assert hist.epochs == [1, 2, 3, 4] and opt.learning_rate == 0.01


def test_scheduler_none_and_bad_multipliers(backend32):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    sched = LearningRateScheduler(None)
    model.fit(X, y, epochs=1, batch_size=8, callbacks=[sched])
    assert sched.learning_rates == []
    with pytest.raises(ValueError, match=r"schedule\(0\) returned -1.0"):
        model.fit(X, y, epochs=1, batch_size=8, callbacks=[LearningRateScheduler(lambda e: -1)])
    with pytest.raises(TypeError, match="schedule must be callable"):
        LearningRateScheduler(0.5)


# --------------------------------------------------------------------------
# EarlyStopping
# --------------------------------------------------------------------------


def test_early_stopping_logic_and_restore(backend):
    """Drive the callback with chosen metrics; the parameters of the best epoch come back."""
    be = backend
    model = _model(be)
    es = EarlyStopping(monitor="val_acc", patience=2, min_delta=0.01)
    es.on_train_begin(model)
    snapshots = []
    values = [0.50, 0.60, 0.605, 0.59]  # 0.605 is within min_delta: no improvement
    for epoch, v in enumerate(values):
        for layer in model.layers:  # "train": change every parameter
            for name, p in layer.params.items():
                layer.set_param(name, p + 1.0)
        snapshots.append(_params(model))
        es.on_epoch_end(model, epoch, {"val_acc": v})
        if model.stop_training:
            break
    assert (es.best, es.best_epoch, es.stopped_epoch, epoch) == (0.60, 1, 3, 3)
    es.on_train_end(model)
    for a, b in zip(_params(model), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    # the restored parameters are copies: training on does not change the snapshot
    w = model.layers[0].weights
    model.layers[0].set_param("weights", be.sub_(w, w))  # in place where the backend allows
    es.on_train_end(model)
    np.testing.assert_array_equal(_params(model)[0], snapshots[1][0])


def test_early_stopping_stops_fit_after_patience(backend32):
    be = backend32
    model = _model(be, lr=0.0)  # nothing changes: val_acc is flat
    X, y = _data(be)
    es = EarlyStopping(patience=3)
    hist = model.fit(X, y, epochs=20, batch_size=8, validation_data=(X, y), callbacks=[es])
    assert len(hist) == 4 and hist.epochs == [1, 2, 3, 4]
    assert es.best_epoch == 0 and es.stopped_epoch == 3


def test_early_stopping_on_a_loss_minimises(backend32):
    be = backend32
    model = _model(be)
    es = EarlyStopping(monitor="loss", patience=1, restore_best=False)
    es.on_train_begin(model)
    for epoch, v in enumerate([1.0, 0.5, 0.7]):
        es.on_epoch_end(model, epoch, {"loss": v})
    assert (es.best, es.best_epoch, model.stop_training) == (0.5, 1, True)


def test_early_stopping_restores_on_a_real_run(backend32):
    """After fit, the parameters are those of the epoch with the best val_acc (the first
    such epoch: later ties are not improvements)."""
    be = backend32
    X, y = _data(be)
    model = _model(be, lr=0.5)
    es = EarlyStopping(patience=2)
    rec = ParamsPerEpoch()
    hist = model.fit(X, y, epochs=12, batch_size=4, validation_data=(X, y),
                     callbacks=[es, rec], check_every=0)
    best = es.best_epoch
    assert hist["val_acc"][best] == max(hist["val_acc"])
    for a, b in zip(_params(model), rec.params[best]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_needs_the_monitored_key(backend32):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    with pytest.raises(KeyError, match="needs fit\\(validation_data=...\\)"):
        model.fit(X, y, epochs=2, batch_size=8, callbacks=[EarlyStopping()])


def test_early_stopping_validates_arguments():
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0"):
        EarlyStopping(min_delta=-0.1)
    assert "val_acc" in repr(EarlyStopping())
