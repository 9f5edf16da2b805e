"""Keras-style callbacks through Sequential.fit on every backend: LearningRateScheduler,
EarlyStopping, ReduceLROnPlateau, History (hooks, signatures and verbose: test_callback_hooks.py)."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import Callback, EarlyStopping, LearningRateScheduler, ReduceLROnPlateau
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
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(_params(self.model))


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
    assert any(np.any(a != b) for a, b in zip(rec.snapshots[0], rec.snapshots[1]))
    for epoch in (2, 3):
        for a, b in zip(rec.snapshots[epoch], rec.snapshots[1]):
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
    es = EarlyStopping(monitor="val_acc", patience=2, min_delta=0.01)  # today's name: an alias
    es.set_model(model)
    es.on_train_begin()
    snapshots = []
    values = [0.50, 0.60, 0.605, 0.59]  # 0.605 is within min_delta: no improvement
    for epoch, v in enumerate(values):
        for layer in model.layers:  # "train": change every parameter
            for name, p in layer.params.items():
                layer.set_param(name, p + 1.0)
        snapshots.append(_params(model))
        es.on_epoch_end(epoch, {"val_accuracy": v})
        if model.stop_training:
            break
    assert (es.best, es.best_epoch, es.stopped_epoch, epoch) == (0.60, 1, 3, 3)
    es.on_train_end()
    for a, b in zip(_params(model), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    # the restored parameters are copies: training on does not change the snapshot
    w = model.layers[0].weights
    model.layers[0].set_param("weights", be.sub_(w, w))  # in place where the backend allows
    es.on_train_end()
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
    es.set_model(model)
    es.on_train_begin()
    for epoch, v in enumerate([1.0, 0.5, 0.7]):
        es.on_epoch_end(epoch, {"loss": v})
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
    for a, b in zip(_params(model), rec.snapshots[best]):
        np.testing.assert_array_equal(a, b)


class _NoEpoch(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        raise AssertionError("an epoch started")


@pytest.mark.parametrize("monitor, kwargs, message", [
    ("val_loss", {}, "monitors 'val_loss', which this fit never logs \\(it logs: loss, "
                     "accuracy, seconds\\); the val_ keys need fit\\(validation_data=...\\)"),
    ("val_acc", {}, "monitors 'val_acc'"),
    ("accuracy", {"train_accuracy": False}, "'accuracy' needs a classification loss and "
                                            "train_accuracy=True"),
])
def test_early_stopping_on_a_key_fit_never_logs_is_refused_before_the_first_epoch(
        backend32, monitor, kwargs, message):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    before = _params(model)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, epochs=2, batch_size=8, callbacks=[EarlyStopping(monitor), _NoEpoch()],
                  **kwargs)
    for a, b in zip(_params(model), before):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_on_the_loss_needs_no_validation_data(backend32):
    be = backend32
    model = _model(be, lr=0.0)  # a flat loss: stops after patience epochs
    X, y = _data(be)
    es = EarlyStopping(monitor="loss", patience=2, min_delta=1e-3)
    hist = model.fit(X, y, epochs=10, batch_size=8, callbacks=[es])
    assert (len(hist), es.best_epoch, es.stopped_epoch) == (3, 0, 2)


def test_early_stopping_driven_by_hand_needs_the_key_in_the_logs():
    es = EarlyStopping()
    es.on_train_begin()  # no params (not in a fit): nothing to check yet
    with pytest.raises(KeyError, match="monitors 'val_accuracy', which is not in the epoch "
                                       "logs \\(keys: loss\\)"):
        es.on_epoch_end(0, {"loss": 1.0})


def test_early_stopping_validates_arguments():
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0"):
        EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'min', 'max', got 'up'"):
        EarlyStopping(mode="up")
    with pytest.raises(TypeError, match="monitor must be a log key"):
        EarlyStopping(monitor=3)
    assert "val_accuracy" in repr(EarlyStopping())
    assert EarlyStopping(restore_best_weights=False).restore_best is False  # Keras's name
    assert EarlyStopping("val_loss").maximize is False and EarlyStopping().maximize is True
    assert EarlyStopping("val_loss", mode="max").maximize is True


def test_the_scheduler_logs_the_rate_of_each_epoch(backend32):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    sched = LearningRateScheduler(StepSchedule(1, gamma=0.5))
    hist = model.fit(X, y, epochs=3, batch_size=8, callbacks=[sched])
    assert hist["learning_rate"] == sched.learning_rates == [0.1, 0.05, 0.025]


# --------------------------------------------------------------------------
# ReduceLROnPlateau
# --------------------------------------------------------------------------

# Monitored values and, by hand (Keras's rules: patience 2, factor 0.5, cooldown 1,
# min_lr 0.02, min_delta 0): the rate each epoch trained with, and the reductions.
PLATEAU = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.95, 0.96, 0.97]
# e0 best; e1 better; e2, e3 wait 1, 2 -> 0.05, cooldown 1; e4 cooling (wait 0), then
# wait 1; e5 wait 2 -> 0.025; e6 cooling, wait 1; e7 wait 2 -> max(0.0125, 0.02) = 0.02;
# e8 wait 1; e9 wait 2 but the rate is at min_lr already: no reduction.
PLATEAU_RATES = [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02]
PLATEAU_REDUCTIONS = [(3, 0.05), (5, 0.025), (7, 0.02)]


def _drive(callback, model, values, key="val_loss"):
    callback.set_model(model)
    callback.on_train_begin()
    logged = []
    for epoch, value in enumerate(values):
        logs = {key: value}
        callback.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    return logged


def test_reduce_lr_on_plateau_matches_a_hand_computation_on_the_layers():
    model = _model(xpnet.get_backend("numpy", dtype="float64"), lr=0.1)
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.02, min_delta=0.0)
    assert _drive(plateau, model, PLATEAU) == pytest.approx(PLATEAU_RATES)
    assert plateau.reductions == PLATEAU_REDUCTIONS  # halvings of 0.1 are exact
    assert [layer.learning_rate for layer in model.layers if layer.param_names] == \
        pytest.approx([0.02, 0.02])


def test_reduce_lr_on_plateau_sets_the_optimizers_rate_and_maximises_accuracies():
    model = _model(xpnet.get_backend("numpy", dtype="float64"), lr=0.1)
    opt = Adam(0.1)
    plateau = ReduceLROnPlateau("val_accuracy", factor=0.5, patience=2, cooldown=1,
                                min_lr=0.02, min_delta=0.0, optimizer=opt)
    assert _drive(plateau, model, [-v for v in PLATEAU], "val_accuracy") == \
        pytest.approx(PLATEAU_RATES)
    assert opt.learning_rate == pytest.approx(0.02)
    assert [layer.learning_rate for layer in model.layers if layer.param_names] == [0.1, 0.1]


def test_reduce_lr_on_plateau_min_delta_counts_small_gains_as_none():
    model = _model(xpnet.get_backend("numpy", dtype="float64"), lr=0.1)
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=0.1)
    assert _drive(plateau, model, [1.0, 0.95, 0.8], "loss") == pytest.approx([0.1, 0.1, 0.05])
    assert plateau.best == 0.8 and plateau.wait == 0


def test_reduce_lr_on_plateau_in_fit_trains_as_the_same_schedule(backend32, capsys):
    """Reducing every epoch from the second on (patience 0, an unreachable min_delta) trains
    exactly as a scheduler with the same rates; the reduced rate stays after fit (Keras)."""
    be = backend32
    X, y = _data(be)
    a, b = _model(be, lr=0.5), _model(be, lr=0.5)
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=1e9, verbose=1)
    ha = a.fit(X, y, epochs=4, batch_size=4, callbacks=[plateau])
    hb = b.fit(X, y, epochs=4, batch_size=4,
               callbacks=[LearningRateScheduler(lambda e: [1, 1, 0.5, 0.25][e])])
    assert ha["learning_rate"] == hb["learning_rate"] == [0.5, 0.5, 0.25, 0.125]
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(p, q)
    assert [layer.learning_rate for layer in a.layers if layer.param_names] == [0.0625] * 2
    assert "epoch 2: ReduceLROnPlateau reducing the learning rate to 0.25" in capsys.readouterr().out


def test_reduce_lr_on_plateau_refusals(backend32):
    be = backend32
    model = _model(be)
    X, y = _data(be)
    with pytest.raises(ValueError, match="the layers train with Adam.*pass it as "
                                         r"ReduceLROnPlateau\(..., optimizer=...\)"):
        model.fit(X, y, batch_size=8, optimizer=Adam(0.01), validation_data=(X, y),
                  callbacks=[ReduceLROnPlateau()])
    with pytest.raises(ValueError, match="monitors 'val_loss', which this fit never logs"):
        model.fit(X, y, batch_size=8, callbacks=[ReduceLROnPlateau(), _NoEpoch()])
    with pytest.raises(ValueError, match=r"factor must be in \[0.0, 1.0\), got 1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="cooldown must be an int >= 0"):
        ReduceLROnPlateau(cooldown=-1)
    with pytest.raises(ValueError, match="min_lr must be a finite number >= 0"):
        ReduceLROnPlateau(min_lr=-1.0)
