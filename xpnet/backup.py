"""Backups during training, and resuming from them exactly (``fit(backup_dir=...)``).

A *backup* holds the training state: everything that decides the rest of a
run. With ``fit(..., backup_dir=DIR)`` (or the :class:`BackupAndRestore`
callback) it is written to ``DIR`` at the end of every epoch, or every
``backup_every`` steps. When the process dies (a preempted node, an
out-of-memory kill, Ctrl-C), running the same ``fit`` again continues from
the last backup, and because batch orders and Dropout masks are drawn on the
host from saved generator states, it ends **bit for bit** where the
uninterrupted run ends. When ``fit`` completes, the backups are removed.

The state is:

* the parameters and every optimizer's state (momentum buffers, Adam moments
  and step counts), and the learning rates of the layers and optimizers;
* the epoch and the step within it, and the partial epoch's loss sums;
* the batch-order generator's state at the epoch's start, and the state of
  each layer's own host generator (:class:`~xpnet.layers.Dropout`);
* the :class:`~xpnet.callbacks.History` and each callback's
  :meth:`~xpnet.callbacks.Callback.state_dict` (EarlyStopping's best value,
  patience count and best weights, ReduceLROnPlateau's, a scheduler's rates).

Each backup is one checkpoint (:mod:`xpnet.checkpoint`: every size checked
on load, no pickle), written atomically, with a digest over the whole state.
The last two are kept: a backup that fails its checks falls back to the one
before, with a warning naming the file. A backup made by another run (other
data, model, optimizer, batch size, epochs or callbacks) is refused before
training starts.

Where a run resumes:

* arrays, host data and memory-mapped files (also ``distributed=``): at the
  step of the backup; a whole epoch compiled as one program (JAX) is backed
  up at its end;
* iterables of batches: at the start of the epoch after the backup (an
  iterable cannot be replayed up to a step).

Examples
--------
>>> import tempfile, numpy as np, xpnet
>>> be = xpnet.get_backend("numpy", dtype="float64")
>>> X = be.asarray(np.random.default_rng(0).normal(size=(64, 4)))
>>> y = be.asarray(np.arange(64) % 3, dtype=be.index_dtype)
>>> def train(backup_dir):
...     model = xpnet.Sequential.mlp([4, 8, 3], backend=be, seed=0)
...     return model, model.fit(X, y, epochs=3, backup_dir=backup_dir)
>>> model, history = train(tempfile.mkdtemp())
>>> len(history)
3
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint
from ._validation import check_bool, check_int
from .callbacks import Callback, EpochLogger, _Monitor
from .errors import CheckpointError

__all__ = ["BackupAndRestore", "ModelCheckpoint", "Resume", "TrainingInterrupted",
           "interrupt_on_signals", "backup_of", "check_frequency", "after_step_hook"]

#: Backup files are ``backup-00000012.npz``: the number grows with every backup.
_FILE = re.compile(r"^backup-(\d{8})\.npz$")
#: How many backups are kept (the newest, and the one before in case it is damaged).
KEEP = 2

#: With several processes, they agree every this many steps on whether one was asked to stop.
STOP_CHECK_EVERY = 8

#: Tests set it to ``hook(epoch, steps_done)``: called after every step's backup check,
#: so that a test can kill the process at a chosen step (no timing involved).
after_step_hook: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Resume:
    """Where a restored run continues: ``step`` steps of epoch ``epoch`` are done.

    ``host_sum`` and ``device_sum`` are the epoch's loss sums so far (compiled
    blocks' and single steps', see :func:`xpnet.training.run_epoch`).
    """

    epoch: int
    step: int
    host_sum: float
    device_sum: Any


def backup_of(callbacks: Any) -> BackupAndRestore | None:
    """The one :class:`BackupAndRestore` among ``callbacks``, or None (two are refused)."""
    found = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(found) > 1:
        raise ValueError("fit got more than one BackupAndRestore (or backup_dir= as well as "
                         "one); a run has one backup directory")
    return found[0] if found else None


def check_frequency(save_freq: Any, name: str) -> Any:
    """``"epoch"`` or a number of steps >= 1 (Keras's ``save_freq``); a clear error naming ``name``."""
    if isinstance(save_freq, str):
        if save_freq == "epoch":
            return "epoch"
        raise ValueError(f"{name} must be 'epoch' or a number of steps >= 1, got {save_freq!r}")
    if isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer)):
        raise TypeError(f"{name} must be 'epoch' or an int number of steps >= 1, got "
                        f"{type(save_freq).__name__} {save_freq!r}")
    return check_int(save_freq, name, low=1)


def _check_directory(path: Any, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a directory path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{name}={os.fspath(path)!r} is a file; give a directory for the "
                         "backups (it is created if missing)")
    return directory


class BackupAndRestore(Callback):
    """Back a run up while it trains and continue it from the last backup (Keras's callback).

    ``fit(..., backup_dir=DIR, backup_every=...)`` adds one. See
    :mod:`xpnet.backup` for what a backup holds and where a run resumes.

    Parameters
    ----------
    backup_dir : str or os.PathLike
        Directory for the backups (created if missing). Use one per run.
    save_freq : "epoch" or int, default "epoch"
        Back up at the end of every epoch, or every ``save_freq`` steps
        (Keras's convention; batch iterables are backed up at epoch ends).
    delete_checkpoint : bool, default True
        Remove the backups when ``fit`` completes (as Keras does).

    Notes
    -----
    ``fit`` drives it directly (:func:`xpnet.training.fit_loop`): it needs
    the step loop's position, which no callback hook sees.
    """

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        self.directory = _check_directory(backup_dir, "backup_dir")
        self.save_freq = check_frequency(save_freq, "save_freq")
        self.delete_checkpoint = check_bool(delete_checkpoint, "delete_checkpoint")
        self.restored_from: Path | None = None  # the backup the last fit resumed from
        self.last_backup: Path | None = None  # the newest file this callback wrote
        self._run: _Run | None = None
        self._interrupted: str | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._signum: int | None = None

    # -- what fit_loop calls ---------------------------------------------------------------
    def begin(self, model: Any, feed: Any, validation: Any, settings: Any, callbacks: Any,
              history: Any, last_epoch: int) -> Resume | None:
        """Before the first epoch: check and restore the newest good backup (None: none yet)."""
        self._run = run = _Run(model, feed, validation, settings, callbacks, history, last_epoch)
        run.identity  # noqa: B018 - taken now, before the order generator moves
        self._since = self._checks = 0
        found = feed.on_every_rank("reading the backup", lambda: _newest_good(self.directory))
        # Every rank must see the same backup (or none) before any of them branches on it.
        feed.agree(None if found is None else found[1]["state_sha256"],
                   f"backups in {os.fspath(self.directory)!r} (backup_dir must be on a "
                   "file system every rank sees)")
        if found is None:
            self.restored_from = None
            self._number = 0
            return None
        path, header, params, arrays = found
        self._number = int(_FILE.match(path.name).group(1))  # type: ignore[union-attr]
        feed.on_every_rank("checking the backup", lambda: run.check_identity(header, path))
        resume = run.restore(header["state"], params, arrays)
        self.restored_from = path
        return resume

    def epoch_start(self, epoch: int) -> None:
        """Before ``on_epoch_begin``: remember what the epoch starts from; back up if due."""
        run = self._run
        assert run is not None
        run.mark_epoch_start(epoch)
        if self.save_freq == "epoch" or not run.feed.resumes_mid_epoch:
            if epoch > run.settings.start_epoch and not run.just_restored(epoch):
                self._write(epoch, 0, None)

    def after_steps(self, epoch: int, sums: Any, advanced: int = 1) -> None:
        """After a step (or a compiled block of ``advanced`` steps): back up every ``save_freq`` steps."""
        run = self._run
        assert run is not None
        if self.save_freq != "epoch" and run.feed.resumes_mid_epoch:
            self._since += advanced
            if self._since >= self.save_freq:
                self._since = 0
                self._write(epoch, sums.steps, sums)
        if after_step_hook is not None:
            self.wait()  # a test kills the process here: what was written is on disk
            after_step_hook(epoch, sums.steps)
        if self._stop_requested(run.feed):
            self._stop(epoch, sums)

    def _stop_requested(self, feed: Any) -> bool:
        """Whether any process was asked to stop. The ranks of a sharded feed agree every
        :data:`STOP_CHECK_EVERY` steps (one scalar allreduce), so that they stop at one step."""
        if feed.processes == 1:
            return self._interrupted is not None
        self._checks += 1
        if self._checks % STOP_CHECK_EVERY:
            return False
        return feed.reduce(float(self._interrupted is not None)) > 0

    def interrupt(self, why: str = "interrupted", signum: int | None = None) -> None:
        """Back up after the current step, then stop ``fit`` with :class:`TrainingInterrupted`.

        Safe to call from a signal handler (:func:`interrupt_on_signals`): it only sets a flag.
        ``signum``, the signal that asked, is passed on as ``TrainingInterrupted.signum``.
        """
        self._interrupted, self._signum = why, signum

    def _stop(self, epoch: int, sums: Any) -> None:
        run, why = self._run, self._interrupted or "stopped on another rank"
        assert run is not None
        self.wait()
        self._interrupted = None
        if run.feed.resumes_mid_epoch:
            self._write(epoch, sums.steps, sums)
            self.wait()
            where = f"step {sums.steps} of epoch {epoch + 1}"
        elif self.last_backup is None and self.restored_from is None:
            raise TrainingInterrupted(
                f"training {why} in its first epoch: batch iterables are backed up at epoch "
                "ends, so nothing was backed up yet and running it again starts over",
                signum=self._signum)
        else:
            where = f"the start of epoch {epoch + 1} (batches resume at epoch boundaries)"
        raise TrainingInterrupted(
            f"training {why}; backed up to {os.fspath(self.directory)!r}: run the same fit "
            f"(or command) again to resume from {where}", signum=self._signum)

    def finish(self) -> None:
        """``fit`` completed: remove the backups (unless ``delete_checkpoint=False``)."""
        self.wait()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if self.delete_checkpoint and self._run is not None and self._run.feed.is_root:
            for path in _backups(self.directory) + _unfinished(self.directory):
                path.unlink(missing_ok=True)
        self._run = None

    # -- files -------------------------------------------------------------------------------
    def _write(self, epoch: int, step: int, sums: Any) -> None:
        """Take the state now; write it in the background (training goes on meanwhile)."""
        run = self._run
        assert run is not None
        state, arrays = run.capture(epoch, step, sums)  # collective: every rank takes part
        if not run.feed.is_root:
            return
        model = run.model
        header, entries = checkpoint.describe_layers(model.layers, model.backend,
                                                     model_config=model.config)
        entries = [(name, np.array(a, copy=True)) for name, a in entries]
        self.wait()  # one backup in flight at most, and the files stay in order
        self._number += 1
        path = self.directory / f"backup-{self._number:08d}.npz"
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xpnet-backup")
        self._pending = self._writer.submit(self._save, path, header, entries, state, arrays)

    def _save(self, path: Path, header: dict, entries: list, state: dict, arrays: dict) -> None:
        checkpoint.write_checkpoint(path, header, entries, state=state, state_arrays=arrays)
        self.last_backup = path
        for old in _backups(self.directory)[KEEP:] + _unfinished(self.directory):
            old.unlink(missing_ok=True)

    def wait(self, quiet: bool = False) -> None:
        """Return when the backup being written is on disk (raises its error, if any).

        ``quiet``: warn instead (``fit`` is failing already; its own error is the one to see).
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception as exc:
            if not quiet:
                raise
            warnings.warn(f"writing a backup to {os.fspath(self.directory)!r} failed too: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)

    def __repr__(self) -> str:
        return (f"BackupAndRestore(backup_dir={os.fspath(self.directory)!r}, "
                f"save_freq={self.save_freq!r}, delete_checkpoint={self.delete_checkpoint})")


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` stopped on request (Ctrl-C, SIGTERM) after writing a last backup; the message says
    how to resume. ``signum`` is the signal that asked (None: :meth:`BackupAndRestore.interrupt`
    was called directly)."""

    def __init__(self, message: str = "", signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def interrupt_on_signals(backup: BackupAndRestore,
                         signals: tuple = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, Ctrl-C or SIGTERM makes ``backup`` write a last backup after the current step
    and stop ``fit`` (:meth:`BackupAndRestore.interrupt`); a second signal stops at once.

    Main thread only (Python delivers signals there); the previous handlers come back on exit.
    """
    def handler(signum: int, frame: Any) -> None:
        if backup._interrupted is not None:  # a second signal: do not wait for the step
            raise KeyboardInterrupt
        backup.interrupt(f"stopped by {signal.Signals(signum).name}", signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _backups(directory: Path) -> list[Path]:
    """The backup files in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _FILE.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def _unfinished(directory: Path) -> list[Path]:
    """Temporary files of backups whose writing was cut short (a killed process leaves them)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.startswith(".backup-")
            and p.name.endswith(".tmp")]


def _newest_good(directory: Path) -> tuple | None:
    """``(path, header, params, state arrays)`` of the newest backup that passes every check.

    A damaged one is skipped with a warning naming it; None when there is no
    backup; a CheckpointError when every backup is damaged.
    """
    files = _backups(directory)
    problems = []
    for path in files:
        try:
            header, params, arrays = checkpoint.read_state(path)
        except CheckpointError as exc:
            problems.append(f"{path}: {exc}")
            warnings.warn(f"backup {os.fspath(path)!r} is damaged and is skipped ({exc}); "
                          "trying the one before it", RuntimeWarning, stacklevel=4)
            continue
        return path, header, params, arrays
    if problems:
        raise CheckpointError(
            f"every backup in {os.fspath(directory)!r} is damaged ({'; '.join(problems)}); "
            "delete the directory to start the run over")
    return None


# -- the training state ------------------------------------------------------------------------

def _without_rate(config: dict) -> dict:
    """A configuration minus its learning rate (schedules change rates; the run is the same)."""
    return {k: v for k, v in config.items() if k != "learning_rate"}


def _owner(layer: Any) -> Any:
    """The optimizer holding ``layer``'s state (None: the seed's stateless SGD step)."""
    opt = layer.optimizer
    return None if opt is None else getattr(opt, "state_owner", lambda _: opt)(layer)


def _to_host(backend: Any, value: Any) -> np.ndarray:
    """A host copy (written in the background while training changes the arrays)."""
    return np.array(value if isinstance(value, np.ndarray) else backend.to_numpy(value), copy=True)


class _Run:
    """What one ``fit`` with backups saves and restores (see the module docstring)."""

    def __init__(self, model: Any, feed: Any, validation: Any, settings: Any, callbacks: Any,
                 history: Any, last_epoch: int) -> None:
        self.model, self.feed, self.validation, self.settings = model, feed, validation, settings
        self.history, self.last_epoch = history, last_epoch
        # The user's callbacks with a state (fit appends the History and the printed line).
        self.callbacks = [cb for cb in callbacks if cb is not history
                          and not isinstance(cb, (BackupAndRestore, EpochLogger))
                          and cb.state_dict()]
        self.trainable = [(i, layer) for i, layer in enumerate(model.layers) if layer.param_names]
        self._start: dict = {}
        self._restored_epoch: int | None = None

    # -- identity --------------------------------------------------------------------------
    @functools.cached_property
    def identity(self) -> dict:
        """What must be equal for a backup to continue this run (JSON values, as read back)."""
        model, settings = self.model, self.settings
        return json.loads(json.dumps({
            "layers": [[type(layer).__name__, _without_rate(layer.get_config())]
                       for layer in model.layers],
            "parameters": [[name, list(p.shape)] for _, layer in self.trainable
                           for name, p in layer.params.items()],
            "dtype": model.backend.dtype_name, "loss": repr(model.loss),
            "optimizers": [_optimizer_identity(layer) for _, layer in self.trainable],
            "batch_size": settings.batch_size, "shuffle": settings.shuffle,
            "train_accuracy": settings.train_accuracy, "epochs": self.last_epoch,
            "order generator": settings.rng.bit_generator.state,  # the seed, as it starts
            "data": self.feed.fingerprint(),
            "validation": None if self.validation is None else self.validation.fingerprint(),
            "callbacks": [_callback_identity(cb) for cb in self.callbacks],
        }))

    def check_identity(self, header: dict, path: Path) -> None:
        saved = header["state"].get("identity")
        mine = self.identity
        if saved == mine:
            return
        if not isinstance(saved, dict):
            saved = {}
        differ = [k for k in mine if saved.get(k) != mine[k]]
        shown = "; ".join(f"{k}: backup {saved.get(k)!r}, this fit {mine[k]!r}"
                          for k in differ[:3])
        raise ValueError(
            f"the backup {os.fspath(path)!r} was written by another run ({shown}). Resume with "
            "the same model, data and fit arguments, or delete the backup directory (or pass "
            "another backup_dir) to start over"
        )

    # -- capture -------------------------------------------------------------------------
    def mark_epoch_start(self, epoch: int) -> None:
        """What the epoch starts from and no step changes: callbacks, History, rates, the order RNG."""
        self._start = {
            "epoch": epoch,
            "rng": self.settings.rng.bit_generator.state,
            "rates": self._rates(),
            "history": self.history.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def just_restored(self, epoch: int) -> bool:
        """Whether ``epoch`` is where this fit resumed (its state is on disk already)."""
        restored, self._restored_epoch = self._restored_epoch, None
        return restored == epoch

    def _rates(self) -> list:
        rates = []
        for _, layer in self.trainable:
            owner = _owner(layer)
            rates.append([getattr(layer, "learning_rate", None),
                          getattr(owner, "learning_rate", None)])
        return rates

    def capture(self, epoch: int, step: int, sums: Any) -> tuple[dict, dict]:
        """The state after ``step`` steps of ``epoch`` (``sums``: the epoch's loss sums so far)."""
        be, start = self.model.backend, self._start
        arrays: dict = {}
        callbacks = []
        for i, state in enumerate(start["callbacks"]):
            callbacks.append(_split_arrays(be, state, f"callback{i}.", arrays))
        state = {
            "identity": self.identity, "epoch": epoch, "step": step,
            "rng": start["rng"], "rates": start["rates"], "history": start["history"],
            "callbacks": callbacks, "optimizers": self._optimizer_state(arrays),
            "layer_rngs": {str(i): s for i, layer in enumerate(self.model.layers)
                           if (s := layer.host_rng_state()) is not None},
            "host_sum": 0.0 if sums is None else float(sums.host),
        }
        device = be.zeros(()) if sums is None else sums.device
        # Every rank's own partial sum, gathered (a sharded feed reduces them at the epoch's end).
        xp = be.xp
        arrays["sums.device"] = be.to_numpy(
            self.feed.collect("saving the loss sums", lambda _: xp.reshape(device, (1,))))
        return state, arrays

    def _optimizer_state(self, arrays: dict) -> list:
        """Per trainable layer: ``{param: {key: number or "array"}}`` (arrays go to ``arrays``)."""
        be, saved = self.model.backend, []
        for i, layer in self.trainable:
            owner = _owner(layer)
            table = getattr(owner, "state", None)
            per_param: dict = {}
            for name in layer.param_names:
                st = table.get((id(layer), name)) if isinstance(table, dict) else None
                if not st or st["layer"]() is not layer:
                    continue
                per_param[name] = {}
                for key, value in st.items():
                    if key in ("backend", "layer"):
                        continue
                    if isinstance(value, (int, float)):
                        per_param[name][key] = value
                    else:
                        arrays[f"opt{i}.{name}.{key}"] = _to_host(be, value)
                        per_param[name][key] = "array"
            saved.append(per_param)
        return saved

    # -- restore -------------------------------------------------------------------------
    def restore(self, state: dict, params: dict, arrays: dict) -> Resume:
        """Put the backup's state in place (after ``on_train_begin``); where to continue."""
        model, be = self.model, self.model.backend
        for i, layer in self.trainable:
            for name in layer.param_names:
                layer.set_param(name, be.asarray(params[f"layer{i}.{name}"]))
        self._restore_optimizers(state["optimizers"], arrays)
        for (_, layer), (layer_rate, opt_rate) in zip(self.trainable, state["rates"]):
            if layer_rate is not None:
                layer.learning_rate = layer_rate
            if opt_rate is not None and _owner(layer) is not None:
                _owner(layer).learning_rate = opt_rate
        for i, rng_state in state["layer_rngs"].items():
            model.layers[int(i)].set_host_rng_state(rng_state)
        self.settings.rng.bit_generator.state = state["rng"]
        self.history.load_state_dict(state["history"])
        for i, (cb, saved) in enumerate(zip(self.callbacks, state["callbacks"])):
            cb.load_state_dict(_join_arrays(saved, f"callback{i}.", arrays))
        self._restored_epoch = state["epoch"]
        device = arrays["sums.device"][self.feed.rank]
        return Resume(state["epoch"], state["step"], state["host_sum"],
                      be.asarray(np.asarray(device)))

    def _restore_optimizers(self, saved: list, arrays: dict) -> None:
        be = self.model.backend
        for (i, layer), per_param in zip(self.trainable, saved):
            owner = _owner(layer)
            for name, entries in per_param.items():
                st = {"backend": be, "layer": weakref.ref(layer)}
                for key, value in entries.items():
                    if value == "array":
                        host = arrays[f"opt{i}.{name}.{key}"]
                        value = be.asarray(host, dtype=getattr(be.xp, host.dtype.name))
                    st[key] = value
                owner.state[(id(layer), name)] = st


def _callback_identity(callback: Any) -> str:
    """Its settings where its class shows them (``repr``), else its class name."""
    shows = type(callback).__repr__ is not object.__repr__
    return repr(callback) if shows else type(callback).__name__


def _optimizer_identity(layer: Any) -> list:
    owner = _owner(layer)
    config = {} if owner is None else _without_rate(owner.get_config())
    return [type(layer.optimizer).__name__, type(owner).__name__, config,
            getattr(layer.optimizer, "alpha", None)]


def _split_arrays(be: Any, state: dict, prefix: str, arrays: dict) -> dict:
    """``state`` with its arrays moved to ``arrays`` (under ``prefix + key``), marked "array"."""
    json_part = {}
    for key, value in state.items():
        if hasattr(value, "shape") and not isinstance(value, (int, float)):
            arrays[prefix + key] = _to_host(be, value)
            json_part[key] = "array"
        else:
            json_part[key] = value
    return json_part


def _join_arrays(saved: dict, prefix: str, arrays: dict) -> dict:
    return {k: arrays[prefix + k] if v == "array" else v for k, v in saved.items()}


# -- keeping models ---------------------------------------------------------------------------

class ModelCheckpoint(_Monitor):
    """Save the model (:meth:`Sequential.save <xpnet.Sequential.save>`) during training (Keras's).

    Parameters
    ----------
    filepath : str or os.PathLike
        Where to save; ``{epoch}`` (1-based) and any log key (``{val_loss:.4f}``)
        are filled in, so every save can get its own file.
    monitor : str, default "val_loss"
        The log key ``save_best_only`` compares (as :class:`~xpnet.callbacks.EarlyStopping`).
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best value so far.
    mode : {"auto", "min", "max"}, default "auto"
    save_freq : "epoch" or int, default "epoch"
        Save at the end of every ``period`` epochs ("epoch"; an int is a number of epochs here).
    period : int, default 1
        With ``save_freq="epoch"``: save every this many epochs.

    Attributes
    ----------
    best : float or None
    saved : list of str
        The files written, in order.
    """

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto", save_freq: str | int = "epoch",
                 period: int = 1) -> None:
        super().__init__(monitor, mode, 0.0)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or os.PathLike, got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        freq = check_frequency(save_freq, "save_freq")
        self.period = check_int(period, "period", low=1) if freq == "epoch" else freq
        self.best: float | None = None
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.save_best_only:
            self._check_monitor()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if (epoch + 1) % self.period:
            return
        if self.save_best_only:
            value = self._value(logs)
            if not self._better(value, self.best):
                return
            self.best = value
        path = self._path(epoch, logs)
        self.model.save(path, epoch=epoch + 1, logs={k: v for k, v in logs.items()
                                                     if isinstance(v, (int, float))})
        self.saved.append(path)

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint filepath {self.filepath!r} names {exc} which is "
                             f"not an epoch log key (keys: {', '.join(sorted(logs))})") from None

    def state_dict(self) -> dict:
        return {"best": self.best, "saved": list(self.saved)}

    def load_state_dict(self, state: dict) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.saved = list(state["saved"])

    def __repr__(self) -> str:
        return (f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only}, period={self.period})")

