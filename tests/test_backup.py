"""Backups and exact resume (xpnet.backup), inside one process.

A run is "killed" here by an exception raised from ``xpnet.backup.after_step_hook``
at a chosen step (``fit`` then unwinds as after a crash); a new model and the
same ``fit`` continue from the backup. The subprocess kills (SIGKILL, MPI)
are in test_backup_kill.py.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import backup as backup_mod
from xpnet.backup import BackupAndRestore, ModelCheckpoint
from xpnet.callbacks import EarlyStopping, LearningRateScheduler, ReduceLROnPlateau
from xpnet.errors import CheckpointError


class Killed(Exception):
    """Stands in for the process dying at a step."""


@pytest.fixture(autouse=True)
def _no_hook():
    yield
    backup_mod.after_step_hook = None


def _kill_at(global_step: int, steps_per_epoch: int) -> None:
    def hook(epoch: int, steps: int) -> None:
        if epoch * steps_per_epoch + steps >= global_step:
            raise Killed
    backup_mod.after_step_hook = hook


def _data(be, n=96, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, classes, size=n)
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def _model(be, hidden=8, dropout=False):
    layers = [xpnet.Dense(5, hidden, rng=1, backend=be)]
    if dropout:
        layers.append(xpnet.Dropout(0.25, rng=7, backend=be))
    layers += [xpnet.ReLU(backend=be), xpnet.Dense(hidden, 3, rng=2, backend=be)]
    return xpnet.Sequential(layers)


def _params(model):
    return [model.backend.to_numpy(p) for layer in model.layers for p in layer.params.values()]


def _same_history(a, b) -> bool:
    drop = {"seconds"}
    return ({k: v for k, v in a.history.items() if k not in drop}
            == {k: v for k, v in b.history.items() if k not in drop})


def _train(be, directory=None, *, kill=None, every="epoch", epochs=4, batch_size=16,
           optimizer=None, callbacks=(), dropout=False, hidden=8, data=None, **fit):
    X, y = data if data is not None else _data(be)
    steps = X.shape[0] // batch_size
    if kill is not None:
        _kill_at(kill, steps)
    model = _model(be, hidden, dropout)
    try:
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                            callbacks=list(callbacks), backup_dir=directory,
                            backup_every=every if directory is not None else "epoch", **fit)
    except Killed:
        return None, None
    finally:
        backup_mod.after_step_hook = None
    return model, history


def _backups(directory):
    if not os.path.isdir(directory):
        return []
    return sorted(p for p in os.listdir(directory) if p.startswith("backup-"))


# -- exact resume on every backend ----------------------------------------------------------

@pytest.mark.parametrize("every", ["epoch", 2])
def test_resume_after_a_crash_ends_bit_for_bit_where_the_run_would(backend, tmp_path, every):
    be = backend
    ref, ref_history = _train(be)
    directory = tmp_path / "run"
    for kill in (3, 9, 10, 17):  # mid-epoch, at and after epoch ends (6 steps per epoch)
        assert _train(be, directory, kill=kill, every=every) == (None, None)
        assert bool(_backups(directory)) == (kill > 6 or every != "epoch")
    model, history = _train(be, directory, every=every)
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))
    assert _same_history(ref_history, history)
    assert _backups(directory) == []  # a completed run removes its backups


def _adam_run(be, directory, kill=None, every="epoch"):
    opt = xpnet.Adam(0.01)
    schedule = LearningRateScheduler(xpnet.get_schedule("cosine", epochs=5), opt)
    stop = EarlyStopping(monitor="val_loss", patience=2)
    plateau = ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5, optimizer=opt)
    X, y = _data(be)
    return _train(be, directory, kill=kill, every=every, epochs=5, optimizer=opt,
                  callbacks=[schedule, stop, plateau], dropout=True,
                  validation_data=(X[:32, ...], y[:32])), (schedule, stop, plateau)


def test_adam_schedule_dropout_and_callbacks_resume_exactly(backend64, tmp_path):
    be = backend64
    (ref, ref_history), ref_cbs = _adam_run(be, None)
    directory = tmp_path / "run"
    for kill in (4, 7, 13, 20):
        assert _adam_run(be, directory, kill, every=3)[0] == (None, None)
    (model, history), cbs = _adam_run(be, directory, every=3)
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))
    assert _same_history(ref_history, history)
    assert cbs[0].learning_rates == ref_cbs[0].learning_rates
    assert (cbs[1].best, cbs[1].best_epoch, cbs[1].wait) == \
        (ref_cbs[1].best, ref_cbs[1].best_epoch, ref_cbs[1].wait)
    assert cbs[2].reductions == ref_cbs[2].reductions


def test_momentum_state_is_kept(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")

    def run(directory, kill=None):
        return _train(be, directory, kill=kill, every=4,
                      optimizer=xpnet.SGD(0.05, momentum=0.9, nesterov=True))
    ref, _ = run(None)
    assert run(tmp_path, kill=11) == (None, None)
    model, _ = run(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))


def test_batch_iterables_resume_at_the_epoch_boundary(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _data(be)
    batches = [(X[i:i + 16, ...], y[i:i + 16]) for i in range(0, 96, 16)]

    def run(directory, kill=None):
        if kill is not None:
            _kill_at(kill, 6)
        model = _model(be)
        try:
            history = model.fit(batches, epochs=4, backup_dir=directory,
                                backup_every=2 if directory is not None else "epoch")
        except Killed:
            return None, None
        finally:
            backup_mod.after_step_hook = None
        return model, history
    ref, ref_history = run(None)
    assert run(tmp_path, kill=14) == (None, None)  # mid epoch 3: the backup is epoch 3's start
    backup = BackupAndRestore(tmp_path)
    model = _model(be)
    history = model.fit(batches, epochs=4, callbacks=[backup])
    assert backup.restored_from is not None
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))
    assert _same_history(ref_history, history)


# -- what a backup holds and refuses --------------------------------------------------------

def _stop_late():
    return [EarlyStopping(monitor="loss", patience=5)]


def _two_backups(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    directory = tmp_path / "run"
    assert _train(be, directory, kill=8, every=3, callbacks=_stop_late()) == (None, None)
    files = _backups(directory)
    assert len(files) == backup_mod.KEEP
    return be, directory, [directory / f for f in files]


def test_two_backups_are_kept_and_the_newest_is_a_loadable_model(tmp_path):
    _, directory, (older, newest) = _two_backups(tmp_path)
    assert int(newest.name[7:15]) == int(older.name[7:15]) + 1
    model = xpnet.Sequential.load(newest)  # a backup is a checkpoint
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "ReLU", "Dense"]


@pytest.mark.parametrize("change", ["model", "data", "batch_size", "optimizer", "epochs",
                                    "sample_weight", "class_weight", "validation", "seed",
                                    "train_accuracy", "callback_settings"])
def test_a_backup_of_another_run_is_refused_before_training(tmp_path, change):
    be, directory, files = _two_backups(tmp_path)
    before = {f: f.read_bytes() for f in files}
    kwargs: dict = {"every": 3, "callbacks": _stop_late()}
    if change == "model":
        kwargs["hidden"] = 9
    elif change == "data":
        X, y = _data(be, seed=1)
        kwargs["data"] = (X, y)
    elif change == "batch_size":
        kwargs["batch_size"] = 8
    elif change == "optimizer":
        kwargs["optimizer"] = xpnet.Adam(0.01)
    elif change == "epochs":
        kwargs["epochs"] = 5
    elif change == "sample_weight":
        kwargs["sample_weight"] = be.asarray(np.linspace(0.5, 1.5, 96))
    elif change == "class_weight":
        kwargs["class_weight"] = "balanced"
    elif change == "validation":
        X, y = _data(be)
        kwargs["validation_data"] = (X[:16, ...], y[:16])
    elif change == "seed":
        kwargs["seed"] = 1
    elif change == "train_accuracy":
        kwargs["train_accuracy"] = False
    else:
        kwargs["callbacks"] = [EarlyStopping(monitor="loss", patience=7)]
    hooked = []
    backup_mod.after_step_hook = lambda epoch, step: hooked.append(step)
    with pytest.raises(ValueError, match="written by another run") as info:
        _train(be, directory, **kwargs)
    assert "delete the backup directory" in str(info.value)
    assert hooked == []  # not one step was taken
    assert {f: f.read_bytes() for f in files} == before


def test_a_damaged_newest_backup_falls_back_to_the_previous_one_with_a_warning(tmp_path):
    be, directory, (older, newest) = _two_backups(tmp_path)
    newest.write_bytes(newest.read_bytes()[:-20])
    ref, ref_history = _train(be, callbacks=_stop_late())
    with pytest.warns(RuntimeWarning, match=newest.name):
        model, history = _train(be, directory, every=3, callbacks=_stop_late())
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))
    assert _same_history(ref_history, history)


def test_every_backup_damaged_is_an_error_not_a_fresh_start(tmp_path):
    be, directory, files = _two_backups(tmp_path)
    for f in files:
        f.write_bytes(b"not a backup")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="delete the directory"):
        _train(be, directory, every=3, callbacks=_stop_late())


def _read(path):
    header, params, arrays = xpnet.checkpoint.read_state(path)
    return header, params, arrays


def _equal_reads(a, b) -> bool:
    (ha, pa, aa), (hb, pb, ab) = a, b
    return (ha == hb and pa.keys() == pb.keys() and aa.keys() == ab.keys()
            and all(np.array_equal(pa[k], pb[k]) for k in pa)
            and all(np.array_equal(aa[k], ab[k]) for k in aa))


def _damage_outcomes(directory, newest, good, variants):
    """For each damaged variant of ``newest``: "same" (read back exactly) or "fallback"."""
    original = newest.read_bytes()
    expected = _read(newest)
    previous = _read(good)
    seen = set()
    for damaged in variants(original):
        newest.write_bytes(damaged)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path, *read = backup_mod._newest_good(directory)
        if path == newest:
            assert not caught and _equal_reads(tuple(read), expected)
            seen.add("same")
        else:
            assert path == good and _equal_reads(tuple(read), previous)
            assert any(newest.name in str(w.message) for w in caught)
            seen.add("fallback")
    newest.write_bytes(original)
    return seen


def test_a_backup_cut_at_any_byte_restores_exactly_or_falls_back(tmp_path):
    _, directory, (older, newest) = _two_backups(tmp_path)
    seen = _damage_outcomes(directory, newest, older,
                            lambda data: (data[:n] for n in range(len(data))))
    assert seen == {"fallback"}  # a cut file never reads as a backup


def test_a_backup_with_any_byte_flipped_restores_exactly_or_falls_back(tmp_path):
    _, directory, (older, newest) = _two_backups(tmp_path)

    def flips(data):
        for i in range(len(data)):
            yield data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
    seen = _damage_outcomes(directory, newest, older, flips)
    assert "fallback" in seen  # (bytes the zip format never reads may flip harmlessly)


# -- arguments ------------------------------------------------------------------------------

def test_bad_backup_arguments_are_clear_errors(tmp_path):
    be = xpnet.get_backend("numpy")
    X, y = _data(be)
    model = _model(be)
    with pytest.raises(ValueError, match="backup_every=5 needs backup_dir"):
        model.fit(X, y, backup_every=5)
    with pytest.raises(ValueError, match="backup_every must be a positive int, got 0"):
        model.fit(X, y, backup_dir=tmp_path, backup_every=0)
    with pytest.raises(ValueError, match="'epoch' or a number of steps"):
        model.fit(X, y, backup_dir=tmp_path, backup_every="steps")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        model.fit(X, y, backup_dir=file)
    with pytest.raises(TypeError, match="backup_dir must be a directory path"):
        model.fit(X, y, backup_dir=3)
    with pytest.raises(ValueError, match="more than one BackupAndRestore"):
        model.fit(X, y, backup_dir=tmp_path, callbacks=[BackupAndRestore(tmp_path / "b")])


def test_delete_checkpoint_false_keeps_the_last_backups(tmp_path):
    be = xpnet.get_backend("numpy")
    X, y = _data(be)
    _model(be).fit(X, y, epochs=3, callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    assert len(_backups(tmp_path)) == 2


# -- ModelCheckpoint ------------------------------------------------------------------------

def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _data(be)
    every = ModelCheckpoint(tmp_path / "e{epoch}.npz", period=2)
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="loss", save_best_only=True)
    model = _model(be)
    history = model.fit(X, y, epochs=4, batch_size=16, callbacks=[every, best])
    assert every.saved == [str(tmp_path / "e2.npz"), str(tmp_path / "e4.npz")]
    losses = history.history["loss"]
    improved = sum(1 for i, v in enumerate(losses) if v < min(losses[:i], default=np.inf))
    assert len(best.saved) == improved and best.best == min(losses)
    saved = xpnet.Sequential.load(tmp_path / "best.npz", dtype="float64")
    assert saved.metadata["epoch"] == int(np.argmin(losses)) + 1
    if np.argmin(losses) == 3:
        assert all(np.array_equal(a, b) for a, b in zip(_params(saved), _params(model)))


def test_model_checkpoint_bad_arguments(tmp_path):
    be = xpnet.get_backend("numpy")
    X, y = _data(be)
    with pytest.raises(ValueError, match="never logs"):
        _model(be).fit(X, y, callbacks=[ModelCheckpoint(tmp_path / "m.npz",
                                                        save_best_only=True)])
    with pytest.raises(ValueError, match="not an epoch log key"):
        _model(be).fit(X, y, callbacks=[ModelCheckpoint(tmp_path / "{nope}.npz")])
    with pytest.raises(TypeError, match="filepath"):
        ModelCheckpoint(3)


def test_model_checkpoint_state_survives_a_resume(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")

    def run(directory, kill=None):
        best = ModelCheckpoint(tmp_path / "best-{epoch}.npz", monitor="loss", save_best_only=True)
        return _train(be, directory, kill=kill, callbacks=[best]), best
    (_, _), ref = run(None)
    for f in ref.saved:
        os.remove(f)
    assert run(tmp_path / "run", kill=14)[0] == (None, None)
    (_, _), best = run(tmp_path / "run")
    assert best.best == ref.best and best.saved == ref.saved


def test_a_backup_directory_can_be_copied_and_resumed_elsewhere(tmp_path):
    be, directory, _ = _two_backups(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    ref, _ = _train(be, every=3, callbacks=_stop_late())
    model, _ = _train(be, copy, every=3, callbacks=_stop_late())
    assert all(np.array_equal(a, b) for a, b in zip(_params(ref), _params(model)))


def test_a_backup_resumes_on_another_backend(tmp_path):
    pytest.importorskip("array_api_strict")
    numpy64 = xpnet.get_backend("numpy", dtype="float64")
    strict64 = xpnet.get_backend("array_api_strict", dtype="float64")
    assert _train(numpy64, tmp_path, kill=14, every=4) == (None, None)
    X, y = _data(numpy64)
    data = (strict64.asarray(numpy64.to_numpy(X)),
            strict64.asarray(numpy64.to_numpy(y), dtype=strict64.index_dtype))
    model, history = _train(strict64, tmp_path, every=4, data=data)
    ref, ref_history = _train(numpy64)
    # The state travels through the host; the rest of the run has the other library's rounding.
    assert all(np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(_params(ref), _params(model)))
    assert len(history) == len(ref_history) == 4


def test_temporary_files_of_cut_writes_are_removed(tmp_path):
    be, directory, _ = _two_backups(tmp_path)
    leftover = directory / ".backup-00000009.npz.abcd1234.tmp"  # what a killed write leaves
    leftover.write_bytes(b"partial")
    _train(be, directory, every=3, callbacks=_stop_late())
    assert list(directory.iterdir()) == []


def test_an_interrupt_in_the_first_epoch_of_batches_says_nothing_was_backed_up(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _data(be)
    batches = [(X[i:i + 16, ...], y[i:i + 16]) for i in range(0, 96, 16)]
    backup = BackupAndRestore(tmp_path)
    backup_mod.after_step_hook = lambda epoch, step: backup.interrupt("asked") if step == 2 else None
    with pytest.raises(xpnet.TrainingInterrupted, match="nothing was backed up yet"):
        _model(be).fit(batches, epochs=3, callbacks=[backup])
    assert _backups(tmp_path) == []


def test_backup_every_of_the_wrong_type_is_a_type_error(tmp_path):
    be = xpnet.get_backend("numpy")
    X, y = _data(be)
    for wrong in (None, True, 2.0):
        with pytest.raises(TypeError, match="backup_every must be 'epoch' or an int"):
            _model(be).fit(X, y, backup_dir=tmp_path, backup_every=wrong)


def test_a_failed_background_write_is_raised_but_never_hides_fits_own_error(tmp_path,
                                                                             monkeypatch):
    be = xpnet.get_backend("numpy")
    X, y = _data(be)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(xpnet.checkpoint, "write_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _model(be).fit(X, y, epochs=3, batch_size=16, backup_dir=tmp_path)

    class Fails(xpnet.Callback):  # fit's own error, while epoch 2's backup fails in the background
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Killed
    with pytest.warns(RuntimeWarning, match="writing a backup .* failed too"), \
            pytest.raises(Killed):
        _model(be).fit(X, y, epochs=3, batch_size=16, backup_dir=tmp_path, callbacks=[Fails()])
