"""Callbacks for :meth:`Sequential.fit <xpnet.Sequential.fit>`: schedules and early stopping.

A callback subclasses :class:`Callback` and overrides any of
``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` and ``on_train_end``;
setting ``model.stop_training = True`` ends training after the current epoch.
``fit`` drives its callbacks through one :class:`CallbackList` and records the
epochs in a :class:`History`.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_compat

from ._typing import Array
from ._validation import check_int, check_number
from .errors import StateError

__all__ = ["Callback", "CallbackList", "History", "LearningRateScheduler", "EarlyStopping"]


class Callback:
    """Hooks called by :meth:`Sequential.fit <xpnet.Sequential.fit>`. Override what you need.

    A callback may set ``model.stop_training = True`` to end training after
    the current epoch (early stopping does this). ``model`` is the
    :class:`~xpnet.Sequential` being trained (annotated ``Any``: ``xpnet.network``
    imports this module).
    """

    def on_train_begin(self, model: Any, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, model: Any, logs: dict | None = None) -> None:
        pass


class CallbackList:
    """Several callbacks driven as one, in the order given.

    Parameters
    ----------
    callbacks : iterable of Callback

    Raises
    ------
    TypeError
        If an element is not a :class:`Callback`.

    Examples
    --------
    >>> from xpnet.callbacks import Callback, CallbackList
    >>> class Count(Callback):
    ...     epochs = 0
    ...     def on_epoch_end(self, model: Any, epoch: int, logs: dict | None = None) -> None:
    ...         self.epochs += 1
    >>> count = Count()
    >>> CallbackList([count]).on_epoch_end(None, 0, {})
    >>> count.epochs
    1
    """

    def __init__(self, callbacks: Iterable[Callback] | None = ()) -> None:
        self.callbacks = list(callbacks or ())
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be xpnet Callback objects, got {type(cb).__name__}")

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def on_train_begin(self, model: Any, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(model)

    def on_epoch_begin(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(model, epoch)

    def on_epoch_end(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(model, epoch, logs)

    def on_train_end(self, model: Any, logs: dict | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_end(model, logs)


@dataclass
class History:
    """Per-epoch records returned by :meth:`Sequential.fit <xpnet.Sequential.fit>`.

    ``history["val_acc"]`` is the list of validation accuracies, one per epoch;
    keys are ``epoch``, ``loss``, ``train_acc``, ``val_acc``, ``val_loss`` and
    ``seconds`` (those that were computed).
    """

    history: dict = field(default_factory=dict)

    def append(self, logs: dict) -> None:
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

    def last(self) -> dict:
        return {k: v[-1] for k, v in self.history.items() if v}


class LearningRateScheduler(Callback):
    """Set the learning rate to ``base * schedule(epoch)`` at the start of each epoch.

    Parameters
    ----------
    schedule : callable
        ``epoch -> multiplier`` with 0-based epochs (see
        :func:`xpnet.optimizers.get_schedule`); ``None`` leaves the rate alone.
    optimizer : Optimizer, optional
        The optimizer whose ``learning_rate`` to set. ``None`` (or an optimizer
        without a fixed rate, such as ``SGD()``) sets the ``learning_rate`` of
        every layer that has one instead -- the seed's in-backward SGD step.

    Attributes
    ----------
    learning_rates : list of float
        The rate used in each epoch (of the first layer, when per layer).

    Notes
    -----
    The base rate(s) are read when each ``fit`` begins and restored when it
    ends (also after an error or Ctrl-C), so the model and the optimizer are
    left as they were; a second ``fit`` continuing a history continues the
    schedule from its epoch number.
    """

    def __init__(self, schedule: Callable[[int], float] | None, optimizer: Any = None) -> None:
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable epoch -> multiplier, got {schedule!r}")
        self.schedule = schedule
        self.optimizer = optimizer
        self.learning_rates: list[float] = []
        self._base: float | list[tuple[Any, float]] | None = None  # optimizer's, or per layer

    def _targets_layers(self) -> bool:
        return self.optimizer is None or getattr(self.optimizer, "learning_rate", None) is None

    def on_train_begin(self, model: Any, logs: dict | None = None) -> None:
        # Read the base rate(s) at every fit: on_train_end restored them, and a
        # callback reused on another model must schedule that model's layers.
        if self._targets_layers():
            tuned = [layer for layer in model.layers if getattr(layer, "optimizer", None)
                     is not None and getattr(layer.optimizer, "learning_rate", None) is not None]
            if tuned and self.schedule is not None:
                raise ValueError(
                    f"the layers train with {tuned[0].optimizer!r}, which has its own "
                    "learning rate: pass it as LearningRateScheduler(schedule, optimizer=...)"
                )
            self._base = [(layer, layer.learning_rate) for layer in model.layers
                          if getattr(layer, "learning_rate", None) is not None]
        else:
            self._base = self.optimizer.learning_rate

    def _set(self, multiplier: float) -> float:
        if isinstance(self._base, list):
            for layer, base in self._base:
                layer.learning_rate = base * multiplier
            return self._base[0][1] * multiplier if self._base else math.nan
        if self._base is None:
            raise StateError("LearningRateScheduler: on_train_begin reads the base rate first")
        self.optimizer.learning_rate = self._base * multiplier
        return self.optimizer.learning_rate

    def on_epoch_begin(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        if self.schedule is None:
            return
        multiplier = float(self.schedule(epoch))
        if not math.isfinite(multiplier) or multiplier < 0:
            raise ValueError(
                f"schedule({epoch}) returned {multiplier!r}; a learning-rate multiplier must "
                "be a finite number >= 0"
            )
        self.learning_rates.append(self._set(multiplier))

    def on_train_end(self, model: Any, logs: dict | None = None) -> None:
        if self._base is not None and self.schedule is not None:
            self._set(1.0)


class EarlyStopping(Callback):
    """Stop training when a monitored metric stops improving.

    Parameters
    ----------
    monitor : str, default "val_acc"
        Key of the epoch logs (``val_acc``, ``train_acc``, ``loss``,
        ``val_loss``...). Accuracies are maximised, anything else (a loss) is
        minimised.
    patience : int, default 3
        Epochs without improvement after which training stops.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    restore_best : bool, default True
        At the end of training, put back the parameters of the best epoch
        (when it was not the last one).

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
    KeyError
        When the monitored key is missing from the epoch logs (``val_acc``
        needs ``validation_data``).
    """

    def __init__(self, monitor: str = "val_acc", patience: int = 3, min_delta: float = 0.0,
                 restore_best: bool = True):
        self.monitor = monitor
        self.patience = check_int(patience, "patience", low=0)
        self.min_delta = check_number(min_delta, "min_delta", low=0)
        self.restore_best = bool(restore_best)
        self.maximize = "acc" in monitor
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._last_epoch: int | None = None
        self._best_params: list[dict[str, Array]] | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.maximize:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, model: Any, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, model: Any, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which is not in the epoch logs "
                f"(keys: {', '.join(sorted(logs))}); 'val_acc' needs fit(validation_data=...)"
            )
        value = float(logs[self.monitor])
        self._last_epoch = epoch
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_params = _snapshot(model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            model.stop_training = True

    def on_train_end(self, model: Any, logs: dict | None = None) -> None:
        if self.restore_best and self._best_params is not None \
                and self.best_epoch != self._last_epoch:
            _restore(model, self._best_params)

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best={self.restore_best})")


def _copy(layer: Any, array: Array) -> Array:
    return layer.xp.asarray(array, copy=True, device=array_api_compat.device(array))


def _snapshot(model: Any) -> list[dict[str, Array]]:
    """Device copies of every parameter (arrays may be updated in place later)."""
    return [{name: _copy(layer, p) for name, p in layer.params.items()} for layer in model.layers]


def _restore(model: Any, snapshot: list[dict[str, Array]]) -> None:
    for layer, params in zip(model.layers, snapshot):
        for name, value in params.items():
            layer.set_param(name, _copy(layer, value))
