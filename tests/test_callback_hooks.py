"""Keras-style callback hooks in Sequential.fit: order and arguments, signature refusals,
the batch hook (cheap when unused, no compiled JAX epoch when used), initial_epoch, verbose."""

from __future__ import annotations

import inspect
import io
import re

import numpy as np
import pytest
from _helpers import make_backend

import xpnet
from xpnet import training
from xpnet.callbacks import Callback, CallbackList, EpochLogger, History, LearningRateScheduler, format_epoch
from xpnet.optimizers import StepSchedule

# The line format of `xpnet train` (tests/test_cli.py reads the same lines).
EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+) loss=(\d+\.\d{4}) train_acc=(\d\.\d{4}) val_acc=(\d\.\d{4})"
    r"(?: lr=\S+)? seconds=(\d+\.\d{2})$")


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


class Recorder(Callback):
    """Every hook's arguments, in order; whether the model was set before training."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(logs)))
        self.model_at_begin, self.params_at_begin = self.model, dict(self.params)

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, dict(logs)))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))

    def batch_losses(self, epoch):
        """The batch losses of the 0-based ``epoch``."""
        start = self.calls.index(("epoch_begin", epoch, {}))
        losses = []
        for call in self.calls[start + 1:]:
            if call[0] != "batch_end":
                return losses
            losses.append(call[2]["loss"])
        return losses


# -- hook order and arguments -------------------------------------------------------

def test_every_hook_in_order_with_keras_arguments(backend):
    be = backend
    X, y = _data(be)
    model = _model(be)
    rec = Recorder()
    hist = model.fit(X, y, epochs=2, batch_size=8, validation_data=(X, y), callbacks=[rec])
    assert rec.model_at_begin is model
    assert rec.params_at_begin == {"epochs": 2, "steps": 2, "verbose": 0, "metrics": [
        "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]}
    names = [(c[0],) + ((c[1],) if c[0] in ("epoch_begin", "epoch_end", "batch_end") else ())
             for c in rec.calls]
    assert names == [("train_begin",), ("epoch_begin", 0), ("batch_end", 0), ("batch_end", 1),
                     ("epoch_end", 0), ("epoch_begin", 1), ("batch_end", 0), ("batch_end", 1),
                     ("epoch_end", 1), ("train_end",)]
    assert rec.calls[0] == ("train_begin", {}) and rec.calls[1] == ("epoch_begin", 0, {})
    ends = [c[2] for c in rec.calls if c[0] == "epoch_end"]
    for epoch, logs in enumerate(ends):
        assert list(logs) == ["loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
        assert logs["loss"] == hist["loss"][epoch] and logs["accuracy"] == hist["train_acc"][epoch]
        assert logs["val_accuracy"] == hist["val_acc"][epoch]
        # The batch losses are the batches' means: their mean is the epoch's loss.
        assert np.mean(rec.batch_losses(epoch)) == pytest.approx(logs["loss"], rel=1e-5)
    assert rec.calls[-1] == ("train_end", ends[-1])


def test_batch_logs_are_weighted_means(backend64):
    """Equal sample weights change no batch's weighted mean loss."""
    be = backend64
    X, y = _data(be)
    runs = []
    for weight in (None, np.full(16, 2.5)):
        rec = Recorder()
        _model(be).fit(X, y, epochs=1, batch_size=4, callbacks=[rec],
                       sample_weight=None if weight is None else be.asarray(weight))
        runs.append(rec.batch_losses(0))
    assert len(runs[0]) == 4
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_train_end_gets_the_last_logs_after_an_error(backend32):
    be = backend32
    X, y = _data(be)

    class Interrupt(Recorder):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch == 1:
                raise KeyboardInterrupt

    rec = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        _model(be).fit(X, y, epochs=5, batch_size=8, callbacks=[rec])
    assert rec.calls[-2][:2] == ("epoch_end", 1) and rec.calls[-1] == ("train_end", rec.calls[-2][2])


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_stop_training_through_self_model(backend32):
    be = backend32
    X, y = _data(be)

    class StopAtOne(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    assert len(_model(be).fit(X, y, epochs=9, batch_size=8, callbacks=[StopAtOne()])) == 2


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_history_keeps_the_earlier_keys_and_can_be_a_callback(backend32):
    be = backend32
    X, y = _data(be)
    extra = History()
    hist = _model(be).fit(X, y, epochs=2, batch_size=8, validation_data=(X, y),
                          callbacks=[extra])
    assert set(hist.history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                 "seconds", "train_acc", "val_acc"}
    assert hist["train_acc"] == hist["accuracy"] and hist["val_acc"] == hist["val_accuracy"]
    assert (hist.epoch, hist.epochs) == ([0, 1], [1, 2])
    assert extra.history == hist.history


# -- signatures ---------------------------------------------------------------------

class _OldEpochEnd(Callback):
    def on_epoch_end(self, model, epoch, logs=None):
        pass


class _OldTrainBegin(Callback):
    def on_train_begin(self, model, logs=None):
        pass


class _NoArguments(Callback):
    def on_epoch_begin(self):
        pass


class _LogsFirst(Callback):
    def on_epoch_end(self, logs=None, epoch=0):
        pass


class _OldBatch(Callback):
    def on_train_batch_end(self, model, batch, logs):
        pass


class _NotAMethod(Callback):
    on_train_end = 3


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
@pytest.mark.parametrize("cls, message", [
    (_OldEpochEnd, r"_OldEpochEnd.on_epoch_end\(model, epoch, logs=None\) cannot take the "
                   r"arguments fit passes \(the \(model, ...\) hooks of earlier xpnet versions "
                   r"are gone\): xpnet callbacks follow Keras, define on_epoch_end\(self, epoch, "
                   r"logs=None\) and read the model as self.model"),
    (_OldTrainBegin, r"define on_train_begin\(self, logs=None\)"),
    (_NoArguments, r"_NoArguments.on_epoch_begin\(\) cannot take the arguments fit passes: "),
    (_LogsFirst, r"define on_epoch_end\(self, epoch, logs=None\)"),
    (_OldBatch, r"define on_train_batch_end\(self, batch, logs=None\)"),
    (_NotAMethod, r"_NotAMethod.on_train_end must be a method on_train_end\(self, logs=None\), "
                  r"got int"),
])
def test_a_wrong_hook_signature_is_refused_before_training(backend32, monkeypatch, cls, message):
    be = backend32
    X, y = _data(be)
    model = _model(be)
    monkeypatch.setattr(xpnet.network, "fit_loop", lambda *a: pytest.fail("the loop ran"))
    with pytest.raises(TypeError, match=message):
        model.fit(X, y, batch_size=8, callbacks=[cls()])


def test_signatures_keras_accepts_are_accepted():
    class Plain(Callback):
        def on_epoch_end(self, epoch, logs):  # no default: fit always passes logs
            self.seen = (epoch, logs)

    class Star(Callback):
        def on_train_batch_end(self, *args, **kwargs):
            self.seen = args

    class Renamed(Callback):
        def on_epoch_begin(self, e, extra=None, *, more=1):
            self.seen = (e, extra)

    plain, star, renamed = Plain(), Star(), Renamed()
    cbs = CallbackList([plain, star, renamed])
    cbs.on_epoch_end(3, {"loss": 1.0})
    cbs.on_train_batch_end(2, {"loss": 0.5})
    cbs.on_epoch_begin(4)
    assert plain.seen == (3, {"loss": 1.0}) and star.seen == (2, {"loss": 0.5})
    assert renamed.seen == (4, {})
    assert cbs.has_batch_hooks and not CallbackList([plain, renamed]).has_batch_hooks


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
# -- the batch hook: cheap when unused, no compiled epoch when used ------------------

def test_no_per_step_callback_work_without_a_batch_hook(backend32, monkeypatch):
    be = backend32
    X, y = _data(be)
    monkeypatch.setattr(CallbackList, "on_train_batch_end",
                        lambda *a: pytest.fail("a batch hook ran without an override"))
    hooks = []
    monkeypatch.setattr(training, "_run_block", _spy_on(training._run_block, hooks))
    hist = _model(be).fit(X, y, epochs=2, batch_size=8, validation_data=(X, y),
                          callbacks=[LearningRateScheduler(StepSchedule(1)), Recorder.__base__()])
    assert len(hist) == 2 and hooks == [None, None]


def _spy_on(run_block, seen):
    def spy(*args, **kwargs):
        seen.append(args[-1])  # the batch_end hook handed to the step loop
        return run_block(*args, **kwargs)
    return spy


@pytest.fixture(params=["float32", "float64"])
def jax_backend(request):
    pytest.importorskip("jax")
    return make_backend("jax", None, request.param)


def test_a_batch_hook_turns_the_compiled_jax_epoch_off(jax_backend, monkeypatch):
    be = jax_backend
    X, y = _data(be, n=64)
    epochs_compiled = []
    real = training._cached_epoch
    monkeypatch.setattr(training, "_cached_epoch",
                        lambda *a: epochs_compiled.append(1) or real(*a))
    results = []
    for callbacks in ([], [Recorder()]):
        model = _model(be)
        before = len(epochs_compiled)
        model.fit(X, y, epochs=2, batch_size=16, callbacks=callbacks, train_accuracy=False)
        results.append((len(epochs_compiled) - before, _params(model)))
    assert results[0][0] == 2  # without a batch hook: one compiled program per epoch
    assert results[1][0] == 0  # with one: step by step
    rec = callbacks[0]
    assert [c[1] for c in rec.calls if c[0] == "batch_end"] == [0, 1, 2, 3] * 2
    tol = 1e-10 if be.dtype_name == "float64" else 2e-4
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_batch_hook_on_every_input_kind(tmp_path):
    """In-memory arrays, memory-mapped host data and an iterable of batches: one call per
    step, numbered from 0, whose mean loss is the epoch's."""
    be = xpnet.get_backend("numpy", dtype="float64")
    gen = np.random.default_rng(0)
    X, y = gen.standard_normal((32, 3)), gen.integers(0, 2, 32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    kinds = {
        "arrays": (be.asarray(X), be.asarray(y, dtype=be.index_dtype)),
        "memmap": (np.load(tmp_path / "X.npy", mmap_mode="r"),
                   np.load(tmp_path / "y.npy", mmap_mode="r")),
        "batches": ([(be.asarray(X[i:i + 8]), be.asarray(y[i:i + 8], dtype=be.index_dtype))
                     for i in range(0, 32, 8)], None),
    }
    for kind, (data, labels) in kinds.items():
        rec = Recorder()
        hist = _model(be).fit(data, labels, epochs=1, batch_size=8, callbacks=[rec])
        assert [c[1] for c in rec.calls if c[0] == "batch_end"] == [0, 1, 2, 3], kind
        assert np.mean(rec.batch_losses(0)) == pytest.approx(hist["loss"][0], rel=1e-12), kind


def test_hook_signatures_are_inspected_once_per_fit_not_per_epoch(monkeypatch):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _data(be)
    calls, counts = [], []
    real = inspect.signature

    def counting(f, *args, **kwargs):
        calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    for epochs in (1, 4):
        before = len(calls)
        _model(be).fit(X, y, epochs=epochs, batch_size=8, callbacks=[Recorder()])
        counts.append(len(calls) - before)
    assert counts[0] == counts[1] >= 5  # the recorder's five hooks (and History's one)


# -- initial_epoch -------------------------------------------------------------------

def test_initial_epoch_numbers_the_epochs_as_keras(backend32, capsys):
    be = backend32
    X, y = _data(be)
    rec = Recorder()
    sched = LearningRateScheduler(StepSchedule(1, gamma=0.5))
    hist = _model(be).fit(X, y, epochs=5, initial_epoch=3, batch_size=8, callbacks=[rec, sched],
                          verbose=2)
    assert (hist.epochs, hist.epoch) == ([4, 5], [3, 4])
    assert [c[1] for c in rec.calls if c[0] == "epoch_end"] == [3, 4]
    assert rec.params_at_begin["epochs"] == 5
    assert sched.learning_rates == [0.1 * 0.5 ** 3, 0.1 * 0.5 ** 4]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" loss=")[0] for line in lines] == ["epoch 4/5", "epoch 5/5"]


def test_resuming_with_initial_epoch_trains_as_one_run(backend64):
    """Two fits (epochs 0-1, then initial_epoch=2 up to 4) sharing the batch-order generator
    and a schedule end with the weights of one four-epoch fit."""
    be = backend64
    X, y = _data(be)
    whole, resumed = _model(be), _model(be)
    sched = LearningRateScheduler(StepSchedule(1, gamma=0.5))
    whole.fit(X, y, epochs=4, batch_size=4, seed=np.random.default_rng(3), callbacks=[sched])
    gen = np.random.default_rng(3)
    hist = resumed.fit(X, y, epochs=2, batch_size=4, seed=gen, callbacks=[sched])
    resumed.fit(X, y, epochs=4, initial_epoch=2, batch_size=4, seed=gen, callbacks=[sched],
                history=hist)
    assert hist.epochs == [1, 2, 3, 4]
    for a, b in zip(_params(whole), _params(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 3, "initial_epoch": 3}, "initial_epoch=3 leaves nothing to train with epochs=3: "
                                        "with initial_epoch, epochs is the number of the last "
                                        "epoch"),
    ({"initial_epoch": -1}, "initial_epoch must be an int >= 0, got -1"),
    ({"initial_epoch": 1.0}, "initial_epoch must be an int >= 0, got 1.0"),
    ({"verbose": 3}, r"verbose must be an int in \[0, 2\], got 3"),
    ({"verbose": True}, r"verbose must be an int in \[0, 2\], got True"),
    ({"verbose": 2, "progress": True}, "progress=True means verbose=1, but verbose=2 was given"),
])
def test_bad_initial_epoch_and_verbose_are_refused(backend32, monkeypatch, kwargs, message):
    be = backend32
    X, y = _data(be)
    monkeypatch.setattr(xpnet.network, "fit_loop", lambda *a: pytest.fail("the loop ran"))
    with pytest.raises(ValueError, match=message):
        _model(be).fit(X, y, batch_size=8, **kwargs)


# -- verbose -------------------------------------------------------------------------

def _fit_printing(be, **kwargs):
    X, y = _data(be)
    return _model(be).fit(X, y, epochs=3, batch_size=8, validation_data=(X, y), **kwargs)


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_verbose_0_prints_nothing(backend32, capsys):
    _fit_printing(backend32)
    assert capsys.readouterr() == ("", "")


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_verbose_2_prints_one_line_per_epoch(backend32, capsys):
    hist = _fit_printing(backend32, verbose=2)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 3
    for epoch, line in enumerate(lines):
        match = EPOCH_LINE.match(line)
        assert match, line
        assert match.groups()[:5] == (str(epoch + 1), "3", f"{hist['loss'][epoch]:.4f}",
                                      f"{hist['train_acc'][epoch]:.4f}",
                                      f"{hist['val_acc'][epoch]:.4f}")


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
@pytest.mark.parametrize("kwargs", [{"verbose": 1}, {"progress": True},
                                    {"progress": True, "verbose": 1}])
def test_verbose_1_shows_a_bar_and_the_lines(backend32, capsys, kwargs):
    _fit_printing(backend32, **kwargs)
    out, err = capsys.readouterr()
    assert [EPOCH_LINE.match(line) is not None for line in out.splitlines()] == [True] * 3
    assert "epoch 1/3" in err and "epoch 3/3" in err and "batch" in err  # the tqdm bars


@pytest.mark.api_only  # API behaviour, no reference to compare with: not on JAX
def test_the_line_shows_a_schedulers_rate(backend32, capsys):
    _fit_printing(backend32, verbose=2, callbacks=[LearningRateScheduler(StepSchedule(1))])
    lines = capsys.readouterr().out.splitlines()
    assert [re.search(r" lr=(\S+) ", line).group(1) for line in lines] == ["0.1", "0.01",
                                                                          "0.001"]


def test_format_epoch_and_the_epoch_logger():
    logs = {"loss": 0.123456, "accuracy": 0.5, "val_loss": 0.75, "val_accuracy": 0.25,
            "learning_rate": 0.001, "seconds": 2.0}
    assert format_epoch(0, 2, logs) == ("epoch 1/2 loss=0.1235 train_acc=0.5000 "
                                        "val_acc=0.2500 lr=0.001 seconds=2.00")
    assert format_epoch(4, None, {"loss": 1.0, "val_loss": 2.0, "seconds": 0.5}) == \
        "epoch 5 loss=1.0000 val_loss=2.0000 seconds=0.50"
    stream = io.StringIO()
    logger = EpochLogger(stream=stream)
    logger.set_params({"epochs": 7})
    logger.on_epoch_end(2, {"loss": 0.5})
    EpochLogger(epochs=9, stream=stream).on_epoch_end(0, {"loss": 0.25})
    assert stream.getvalue() == "epoch 3/7 loss=0.5000\nepoch 1/9 loss=0.2500\n"
