"""Keras-style callbacks for :meth:`Sequential.fit <xpnet.Sequential.fit>`.

A callback subclasses :class:`Callback` and overrides any of
``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_epoch_end(epoch, logs)``, ``on_train_batch_end(batch, logs)`` and
``on_train_end(logs)``, with Keras's conventions:

* ``self.model`` is the :class:`~xpnet.Sequential` being trained, set (with
  ``self.params``) before ``on_train_begin``; setting
  ``self.model.stop_training = True`` ends training after the current epoch;
* ``epoch`` and ``batch`` are 0-based (printed text counts from 1);
* ``logs`` is a dict with Keras's keys ``loss``, ``accuracy`` (the accuracy on
  the whole training set after the epoch), ``val_loss`` and ``val_accuracy``
  (those this fit computes), plus ``seconds`` (the epoch's training time);
  schedulers add ``learning_rate``.

``fit`` checks every overridden hook's signature once, before training, and
refuses the ``(model, epoch, logs)`` hooks of earlier xpnet versions with a
:class:`TypeError` naming the new signature. It drives the callbacks through
one :class:`CallbackList` and records the epochs in a :class:`History`.

Examples
--------
>>> import xpnet
>>> from xpnet.callbacks import EarlyStopping, LearningRateScheduler
>>> from xpnet.optimizers import Adam, get_schedule
>>> be = xpnet.get_backend("numpy", dtype="float64")
>>> model = xpnet.Sequential.mlp([2, 4, 2], backend=be, seed=0)
>>> X = be.asarray([[0.0, 1.0], [1.0, 0.0]] * 4)
>>> y = be.asarray([1, 0] * 4, dtype=be.index_dtype)
>>> opt = Adam(0.01)
>>> sched = LearningRateScheduler(get_schedule("step", epochs=4, step_size=2), opt)
>>> hist = model.fit(X, y, epochs=4, batch_size=4, optimizer=opt, validation_data=(X, y),
...                  callbacks=[sched, EarlyStopping(patience=10)])
>>> sched.learning_rates
[0.01, 0.01, 0.001, 0.001]
>>> hist.history["learning_rate"] == sched.learning_rates
True
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import array_api_compat

from ._typing import Array
from ._validation import check_int, check_number
from .errors import StateError

__all__ = ["Callback", "CallbackList", "History", "LearningRateScheduler", "EarlyStopping",
           "ReduceLROnPlateau", "EpochLogger", "format_epoch", "LEGACY_KEYS"]

#: Today's History keys and the Keras log keys they are recorded as in ``logs``.
LEGACY_KEYS = MappingProxyType({"train_acc": "accuracy", "val_acc": "val_accuracy"})

#: Each hook and the arguments ``fit`` passes before ``logs``.
_HOOK_ARGS = MappingProxyType({
    "on_train_begin": (), "on_epoch_begin": ("epoch",), "on_epoch_end": ("epoch",),
    "on_train_batch_end": ("batch",), "on_train_end": (),
})


class Callback:
    """Hooks called by :meth:`Sequential.fit <xpnet.Sequential.fit>`, as in Keras. Override what you need.

    Attributes
    ----------
    model : Sequential or None
        The model being trained, set by ``fit`` before ``on_train_begin``
        (annotated ``Any``: ``xpnet.network`` imports this module).
    params : mapping
        Set by ``fit`` with ``model``: ``epochs`` (the number of the last
        epoch, 1-based, as Keras), ``steps`` (per epoch, None where unknown),
        ``verbose`` and ``metrics`` (the log keys this fit computes).

    Notes
    -----
    ``on_train_batch_end`` costs a read-back of the batch's loss per step and
    turns a compiled whole-epoch program (JAX) into step-by-step training for
    that fit; ``fit`` checks once whether any callback overrides it, so the
    hooks that are not overridden cost nothing.
    """

    model: Any = None
    params: Mapping[str, Any] = MappingProxyType({})

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def state_dict(self) -> dict:
        """What a backup keeps of this callback (:mod:`xpnet.backup`): name -> value.

        Values are JSON values (numbers, strings, lists, dicts) or arrays (of
        the model's backend or NumPy). A callback whose decisions depend on
        earlier epochs returns what it needs to continue exactly; the default
        is a stateless callback's ``{}``.
        """
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s ``state`` (arrays come back as NumPy arrays).

        Called when ``fit`` resumes from a backup, after ``on_train_begin``.
        """


def overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` replaces :class:`Callback`'s empty ``hook`` (by method identity)."""
    method = getattr(callback, hook)
    return getattr(method, "__func__", method) is not getattr(Callback, hook)


def _wanted(hook: str) -> str:
    return f"{hook}(self, {', '.join([*_HOOK_ARGS[hook], 'logs=None'])})"


def _positional(signature: inspect.Signature) -> list[inspect.Parameter]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in signature.parameters.values() if p.kind in kinds]


def _fits_the_call(signature: inspect.Signature, n_args: int) -> bool:
    """Whether ``hook(*args, logs)`` binds, with ``logs`` (if so named) in the last place."""
    try:
        signature.bind(*range(n_args), {})
    except TypeError:
        return False
    names = [p.name for p in _positional(signature)]
    return "logs" not in names or names.index("logs") == n_args


def check_hook_signature(callback: Callback, hook: str) -> None:
    """Refuse an overridden ``hook`` that cannot take what ``fit`` passes (e.g. ``(model, epoch, logs)``).

    Raises
    ------
    TypeError
        Naming the class, the hook's signature and the one ``fit`` calls.
    """
    method = getattr(callback, hook)
    name = f"{type(callback).__name__}.{hook}"
    if not callable(method):
        raise TypeError(f"{name} must be a method {_wanted(hook)}, got {type(method).__name__}")
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return
    old = [p.name for p in _positional(signature)][:1] == ["model"]
    if old or not _fits_the_call(signature, len(_HOOK_ARGS[hook])):
        why = (" (the (model, ...) hooks of earlier xpnet versions are gone)" if old else "")
        raise TypeError(
            f"{name}{signature} cannot take the arguments fit passes{why}: xpnet callbacks "
            f"follow Keras, define {_wanted(hook)} and read the model as self.model"
        )


class CallbackList:
    """Several callbacks driven as one, in the order given.

    Every overridden hook's signature is checked here, once (``fit`` builds one
    list per call, before training).

    Parameters
    ----------
    callbacks : iterable of Callback

    Raises
    ------
    TypeError
        If an element is not a :class:`Callback`, or a hook has the wrong
        signature (see :func:`check_hook_signature`).

    Examples
    --------
    >>> from xpnet.callbacks import Callback, CallbackList
    >>> class Count(Callback):
    ...     epochs = 0
    ...     def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
    ...         self.epochs += 1
    >>> count = Count()
    >>> CallbackList([count]).on_epoch_end(0, {})
    >>> count.epochs
    1
    """

    def __init__(self, callbacks: Iterable[Callback] | None = ()) -> None:
        self.callbacks: list[Callback] = []
        for callback in callbacks or ():
            self.append(callback)

    def append(self, callback: Callback) -> None:
        """Add ``callback`` at the end, after checking its type and hook signatures."""
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be xpnet Callback objects, got {type(callback).__name__}")
        for hook in _HOOK_ARGS:
            if overrides(callback, hook):
                check_hook_signature(callback, hook)
        self.callbacks.append(callback)

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    @property
    def has_batch_hooks(self) -> bool:
        """Whether any callback overrides ``on_train_batch_end`` (read once per fit)."""
        return any(overrides(cb, "on_train_batch_end") for cb in self.callbacks)

    def set_model(self, model: Any) -> None:
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.set_params(MappingProxyType(dict(params)))

    def on_train_begin(self, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin({} if logs is None else logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {} if logs is None else logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {} if logs is None else logs  # one dict: a callback's additions reach the next
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_train_batch_end(batch, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_end({} if logs is None else logs)


@dataclass
class History(Callback):
    """Per-epoch records returned by :meth:`Sequential.fit <xpnet.Sequential.fit>`.

    ``history.history`` maps each key to its list of per-epoch values: every
    key of the epoch ``logs`` (Keras's ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, xpnet's ``seconds``, a scheduler's ``learning_rate``),
    plus the keys of earlier xpnet versions, kept so that existing code, saved
    checkpoints and plots keep working: ``epoch`` (1-based), ``train_acc``
    (= ``accuracy``) and ``val_acc`` (= ``val_accuracy``). A history passed to
    a second ``fit`` is continued.

    Attributes
    ----------
    history : dict of str to list
    epoch : list of int
        0-based epoch numbers, as Keras's ``History.epoch``.
    epochs : list of int
        1-based epoch numbers (``history["epoch"]``).
    """

    history: dict = field(default_factory=dict)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        record = {"epoch": epoch + 1, **logs}
        for old, new in LEGACY_KEYS.items():
            if new in logs:
                record[old] = logs[new]
        self.append(record)

    def append(self, logs: dict) -> None:
        """Record one epoch's ``logs`` as they are (no key is added or renamed)."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.history.get("epoch", []))

    @property
    def epochs(self) -> list:
        return self.history.get("epoch", [])

    @property
    def epoch(self) -> list[int]:
        return [e - 1 for e in self.epochs]

    def last(self) -> dict:
        return {k: v[-1] for k, v in self.history.items() if v}

    def state_dict(self) -> dict:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: list(v) for k, v in state["history"].items()}


def format_epoch(epoch: int, epochs: int | None, logs: Mapping[str, Any]) -> str:
    """One script-readable line for an epoch: the line of ``fit(verbose=1|2)`` and ``xpnet train``.

    Parameters
    ----------
    epoch : int
        0-based (printed 1-based, as Keras prints).
    epochs : int or None
        The number of the last epoch (``params["epochs"]``); None prints no total.
    logs : mapping
        The epoch's logs.

    Examples
    --------
    >>> from xpnet.callbacks import format_epoch
    >>> format_epoch(2, 10, {"loss": 0.25, "accuracy": 0.9, "val_loss": 0.3,
    ...                      "val_accuracy": 0.875, "seconds": 1.5})
    'epoch 3/10 loss=0.2500 train_acc=0.9000 val_acc=0.8750 seconds=1.50'
    >>> format_epoch(0, None, {"loss": 0.5, "val_loss": 0.75, "learning_rate": 0.01})
    'epoch 1 loss=0.5000 val_loss=0.7500 lr=0.01'
    """
    parts = [f"epoch {epoch + 1}" + ("" if epochs is None else f"/{epochs}")]
    if "loss" in logs:
        parts.append(f"loss={logs['loss']:.4f}")
    for old, new in LEGACY_KEYS.items():  # the names the command line has always printed
        if new in logs:
            parts.append(f"{old}={logs[new]:.4f}")
    if "val_loss" in logs and "val_accuracy" not in logs:  # regression: its one validation score
        parts.append(f"val_loss={logs['val_loss']:.4f}")
    if "learning_rate" in logs:
        parts.append(f"lr={logs['learning_rate']:.6g}")
    if "seconds" in logs:
        parts.append(f"seconds={logs['seconds']:.2f}")
    return " ".join(parts)


class EpochLogger(Callback):
    """Print :func:`format_epoch`'s line at the end of every epoch (``fit(verbose=1|2)`` adds one).

    Parameters
    ----------
    epochs : int, optional
        The total to print (``epoch 3/10``); default ``params["epochs"]``,
        which ``fit`` sets.
    stream : file, optional
        Where to print; default ``sys.stdout`` at the time of printing.

    Notes
    -----
    Put it after the callbacks that add to the logs (a scheduler's
    ``learning_rate``), as ``fit`` does. With ``distributed=`` every rank would
    print: add it on the root rank only (``fit(verbose=...)`` prints on the
    root rank only).
    """

    def __init__(self, epochs: int | None = None, stream: Any = None) -> None:
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epochs = self.epochs if self.epochs is not None else self.params.get("epochs")
        print(format_epoch(epoch, epochs, logs or {}),
              file=self.stream if self.stream is not None else sys.stdout, flush=True)


# -- learning rates ------------------------------------------------------------------------

def _rate_holders(model: Any, optimizer: Any, who: str) -> list:
    """What a rate callback sets: ``[optimizer]``, or each layer with its own rate.

    ``optimizer=None`` (or one without a fixed rate, such as ``SGD()``) means
    the layers' ``learning_rate`` -- the seed's in-backward SGD step; layers
    that train with an optimizer of their own rate need that optimizer named.
    """
    if optimizer is not None and getattr(optimizer, "learning_rate", None) is not None:
        return [optimizer]
    tuned = [layer for layer in model.layers if getattr(layer, "optimizer", None) is not None
             and getattr(layer.optimizer, "learning_rate", None) is not None]
    if tuned:
        raise ValueError(
            f"the layers train with {tuned[0].optimizer!r}, which has its own learning rate: "
            f"pass it as {who}(..., optimizer=...)"
        )
    return [layer for layer in model.layers if getattr(layer, "learning_rate", None) is not None]


class LearningRateScheduler(Callback):
    """Set the learning rate to ``base * schedule(epoch)`` at the start of each epoch.

    Parameters
    ----------
    schedule : callable
        ``epoch -> multiplier`` with 0-based epochs (see
        :func:`xpnet.optimizers.get_schedule`); ``None`` leaves the rate alone.
        Unlike Keras's ``schedule(epoch, lr) -> lr``, it returns a multiplier
        of the base rate.
    optimizer : Optimizer, optional
        The optimizer whose ``learning_rate`` to set. ``None`` (or an optimizer
        without a fixed rate, such as ``SGD()``) sets the ``learning_rate`` of
        every layer that has one instead -- the seed's in-backward SGD step.

    Attributes
    ----------
    learning_rates : list of float
        The rate used in each epoch (of the first layer, when per layer); also
        written to the epoch's ``logs["learning_rate"]`` (as Keras does).

    Notes
    -----
    The base rate(s) are read when each ``fit`` begins and restored when it
    ends (also after an error or Ctrl-C), so the model and the optimizer are
    left as they were; a second ``fit`` continuing a history (or given
    ``initial_epoch``) continues the schedule from its epoch number.
    """

    def __init__(self, schedule: Callable[[int], float] | None, optimizer: Any = None) -> None:
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable epoch -> multiplier, got {schedule!r}")
        self.schedule = schedule
        self.optimizer = optimizer
        self.learning_rates: list[float] = []
        self._base: list[tuple[Any, float]] | None = None  # (holder, its base rate)

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Read the base rate(s) at every fit: on_train_end restored them, and a
        # callback reused on another model must schedule that model's layers.
        if self.schedule is None:
            self._base = None
            return
        holders = _rate_holders(self.model, self.optimizer, "LearningRateScheduler")
        self._base = [(holder, holder.learning_rate) for holder in holders]

    def _set(self, multiplier: float) -> float:
        if self._base is None:
            raise StateError("LearningRateScheduler: on_train_begin reads the base rate first")
        for holder, base in self._base:
            holder.learning_rate = base * multiplier
        return self._base[0][1] * multiplier if self._base else math.nan

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.schedule is None:
            return
        multiplier = float(self.schedule(epoch))
        if not math.isfinite(multiplier) or multiplier < 0:
            raise ValueError(
                f"schedule({epoch}) returned {multiplier!r}; a learning-rate multiplier must "
                "be a finite number >= 0"
            )
        self.learning_rates.append(self._set(multiplier))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.schedule is not None and logs is not None and self.learning_rates:
            logs["learning_rate"] = self.learning_rates[-1]

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._base is not None:
            self._set(1.0)

    def state_dict(self) -> dict:
        return {"learning_rates": list(self.learning_rates)}

    def load_state_dict(self, state: dict) -> None:
        self.learning_rates = [float(r) for r in state["learning_rates"]]


# -- monitoring a metric -------------------------------------------------------------------

_MODES = ("auto", "min", "max")


class _Monitor(Callback):
    """What EarlyStopping and ReduceLROnPlateau share: a monitored log key and its direction.

    ``monitor`` is a log key; the names of earlier xpnet versions (``val_acc``,
    ``train_acc``) are read as ``val_accuracy`` and ``accuracy``. ``mode="auto"``
    maximises a key containing ``acc`` and minimises anything else (a loss).
    """

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a log key (str), got {type(monitor).__name__}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.key = LEGACY_KEYS.get(monitor, monitor)  # the key in the logs
        self.min_delta = check_number(min_delta, "min_delta", low=0)
        self.maximize = mode == "max" or (mode == "auto" and "acc" in monitor)

    def _check_monitor(self) -> None:
        """Refuse, before the first epoch, a key this fit never logs (``params["metrics"]``)."""
        keys = self.params.get("metrics")
        if keys is None or self.key in keys:
            return
        if self.key.startswith("val_"):
            hint = "; the val_ keys need fit(validation_data=...) or validation_split="
        else:
            hint = "; 'accuracy' needs a classification loss and train_accuracy=True"
        raise ValueError(
            f"{type(self).__name__} monitors {self.monitor!r}, which this fit never logs "
            f"(it logs: {', '.join(keys)}){hint}; monitor='loss' needs nothing"
        )

    def _value(self, logs: dict | None) -> float:
        logs = logs or {}
        if self.key not in logs:
            raise KeyError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not in the epoch "
                f"logs (keys: {', '.join(sorted(logs))}); 'val_accuracy' needs "
                "fit(validation_data=...)"
            )
        return float(logs[self.key])

    def _better(self, value: float, best: float | None) -> bool:
        """``value`` improves on ``best`` by more than ``min_delta`` (the first non-NaN one does)."""
        if best is None:
            return not math.isnan(value)
        if self.maximize:
            return value > best + self.min_delta
        return value < best - self.min_delta


class EarlyStopping(_Monitor):
    """Stop training when a monitored metric stops improving.

    Parameters
    ----------
    monitor : str, default "val_accuracy"
        Key of the epoch logs (``val_accuracy``, ``accuracy``, ``loss``,
        ``val_loss``; the earlier names ``val_acc``, ``train_acc`` are read as
        the Keras ones). A key this fit never logs (``val_loss`` without
        validation data) is refused before the first epoch; ``"loss"`` needs
        no validation data.
    patience : int, default 3
        Epochs without improvement after which training stops.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    restore_best : bool, default True
        At the end of training, put back the parameters of the best epoch
        (when it was not the last one). Keras's name ``restore_best_weights``
        is accepted too (Keras's default is False).
    mode : {"auto", "min", "max"}, default "auto"
        ``auto`` maximises keys containing ``acc`` and minimises the others.

    Attributes
    ----------
    best : float or None
        Best value seen.
    best_epoch : int or None
        0-based epoch of ``best``.
    stopped_epoch : int or None
        0-based epoch after which training was stopped, ``None`` if it ran to
        the end.

    Raises
    ------
    ValueError
        In ``on_train_begin`` when ``fit`` never logs the monitored key.
    KeyError
        When the monitored key is missing from an epoch's logs (driven by hand).
    """

    def __init__(self, monitor: str = "val_accuracy", patience: int = 3, min_delta: float = 0.0,
                 restore_best: bool = True, *, mode: str = "auto",
                 restore_best_weights: bool | None = None):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int(patience, "patience", low=0)
        self.restore_best = bool(restore_best if restore_best_weights is None
                                 else restore_best_weights)
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._last_epoch: int | None = None
        self._best_params: list[dict[str, Array]] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._check_monitor()
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self._value(logs)
        self._last_epoch = epoch
        if self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_params = _snapshot(self.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best and self._best_params is not None \
                and self.best_epoch != self._last_epoch:
            _restore(self.model, self._best_params)

    def state_dict(self) -> dict:
        state: dict = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                       "stopped_epoch": self.stopped_epoch, "last_epoch": self._last_epoch,
                       "has_best_params": self._best_params is not None}
        for i, params in enumerate(self._best_params or ()):
            state.update({f"best_params.{i}.{name}": value for name, value in params.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped_epoch, self._last_epoch = state["stopped_epoch"], state["last_epoch"]
        self._best_params = None
        if state["has_best_params"]:
            self._best_params = [
                {name: layer.backend.asarray(state[f"best_params.{i}.{name}"])
                 for name in layer.param_names} for i, layer in enumerate(self.model.layers)]

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best={self.restore_best}, "
                f"mode={self.mode!r})")


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when a monitored metric stops improving (Keras's).

    After ``patience`` epochs without an improvement of more than ``min_delta``
    over the best value, every rate this callback sets is multiplied by
    ``factor`` (not below ``min_lr``; a rate already at or below ``min_lr`` is
    left alone); then ``cooldown`` epochs pass before the count starts again.

    Parameters
    ----------
    monitor : str, default "val_loss"
        Key of the epoch logs, as in :class:`EarlyStopping` (refused before the
        first epoch if this fit never logs it).
    factor : float, default 0.1
        In ``[0, 1)``.
    patience : int, default 10
    verbose : int, default 0
        1: print a line when the rate is reduced.
    mode : {"auto", "min", "max"}, default "auto"
    min_delta : float, default 1e-4
    cooldown : int, default 0
    min_lr : float, default 0.0
    optimizer : Optimizer, optional
        As in :class:`LearningRateScheduler`: the optimizer whose rate to
        reduce; None (or ``SGD()``) reduces each layer's ``learning_rate``.

    Attributes
    ----------
    best : float or None
    wait, cooldown_counter : int
    reductions : list of (int, float)
        ``(0-based epoch, new rate)`` of each reduction (of the first layer,
        when per layer).

    Notes
    -----
    As in Keras the reduced rate stays when ``fit`` ends (the optimizer or the
    layers keep it), and the epoch's ``logs["learning_rate"]`` is the rate it
    trained with. A :class:`LearningRateScheduler` in the same fit sets the
    rate again at every epoch's start, undoing the reduction.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, *, optimizer: Any = None) -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = check_number(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = check_int(patience, "patience", low=0)
        self.verbose = check_int(verbose, "verbose", low=0, high=2)
        self.cooldown = check_int(cooldown, "cooldown", low=0)
        self.min_lr = check_number(min_lr, "min_lr", low=0.0)
        self.optimizer = optimizer
        self.reductions: list[tuple[int, float]] = []
        self._holders: list = []
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._check_monitor()
        self._holders = _rate_holders(self.model, self.optimizer, "ReduceLROnPlateau")
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self._value(logs)
        if logs is not None and self._holders:
            logs["learning_rate"] = self._holders[0].learning_rate
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value, self.best):
            self.best, self.wait = value, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter,
                "reductions": [list(r) for r in self.reductions]}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_counter = state["cooldown_counter"]
        self.reductions = [(int(e), float(r)) for e, r in state["reductions"]]

    def _reduce(self, epoch: int) -> None:
        reduced = False
        for holder in self._holders:
            if holder.learning_rate > self.min_lr:
                holder.learning_rate = max(holder.learning_rate * self.factor, self.min_lr)
                reduced = True
        if not reduced:
            return
        rate = self._holders[0].learning_rate
        self.reductions.append((epoch, rate))
        self.cooldown_counter, self.wait = self.cooldown, 0
        if self.verbose:
            print(f"epoch {epoch + 1}: ReduceLROnPlateau reducing the learning rate to {rate:.6g}",
                  flush=True)


def _copy(layer: Any, array: Array) -> Array:
    return layer.xp.asarray(array, copy=True, device=array_api_compat.device(array))


def _snapshot(model: Any) -> list[dict[str, Array]]:
    """Device copies of every parameter (arrays may be updated in place later)."""
    return [{name: _copy(layer, p) for name, p in layer.params.items()} for layer in model.layers]


def _restore(model: Any, snapshot: list[dict[str, Array]]) -> None:
    for layer, params in zip(model.layers, snapshot):
        for name, value in params.items():
            layer.set_param(name, _copy(layer, value))
