"""The per-epoch loss is always checked: a diverged fit raises, whatever check_every says."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet
from xpnet.callbacks import Callback


def _toy(be, n=96, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 3
    y = rng.integers(0, c, n)
    X = centers[y] + rng.standard_normal((n, d))
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


@pytest.mark.parametrize("train_accuracy", [False, True])
def test_check_every_0_still_stops_a_diverged_fit(backend, train_accuracy):
    X, y = _toy(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend, learning_rate=1e30)
    epochs_ended = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_ended.append(epoch)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one clear error, not a warning per operation
        with pytest.raises(xpnet.DivergenceError,
                           match=r"loss became (nan|inf|-inf) in epoch 1, between steps 1 and "
                                 r"12 \(checked at the end of each epoch\)\. Lower the "
                                 r"learning rate"):
            model.fit(X, y, epochs=3, batch_size=8, check_every=0,
                      train_accuracy=train_accuracy, callbacks=[Record()])
    assert epochs_ended == []  # the diverged epoch is never reported as finished


class _BlowUpAt(Callback):
    """Make the seed's SGD step explode from epoch ``epoch`` (0-based) on."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for layer in self.model.layers:
                if getattr(layer, "learning_rate", None) is not None:
                    layer.learning_rate = 1e30


@pytest.mark.parametrize("check_every", [0, 1000, 5])
def test_the_error_names_the_epoch_that_diverged(backend64, check_every):
    X, y = _toy(backend64)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend64, learning_rate=0.05)
    history = xpnet.History()
    with pytest.raises(xpnet.DivergenceError, match=r"in epoch 3, between steps \d+ and \d+"):
        model.fit(X, y, epochs=5, batch_size=8, check_every=check_every, history=history,
                  callbacks=[_BlowUpAt(2)])
    assert history.epochs == [1, 2]
    assert all(np.isfinite(history["loss"]))


def test_a_continued_history_counts_on(backend64):
    X, y = _toy(backend64)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend64, learning_rate=0.05)
    history = model.fit(X, y, epochs=2, batch_size=8, check_every=0)
    with pytest.raises(xpnet.DivergenceError, match="in epoch 3,"):
        model.fit(X, y, epochs=2, batch_size=8, check_every=0, history=history,
                  callbacks=[_BlowUpAt(2)])


def test_a_healthy_fit_with_check_every_0_is_not_stopped(backend):
    X, y = _toy(backend)
    model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=backend, learning_rate=0.1)
    history = model.fit(X, y, epochs=2, batch_size=8, check_every=0)
    assert history.epochs == [1, 2]
    assert history["loss"][1] < history["loss"][0]
