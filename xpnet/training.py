"""Minibatches, the training step, and the epoch loop behind ``Sequential.fit``.

Everything here is written against the array API standard through a
:class:`~xpnet.backends.Backend`; nothing imports an array library.

The hot loop avoids per-step work nobody needs:

* the dataset is on the device already; one permutation is uploaded per epoch
  and batches are gathered with ``xp.take``;
* labels are turned into a one-hot matrix once per ``fit``, not per step;
* the loss is summed on the device and read back once per epoch (and checked
  for NaN/inf then: the divergence guard), plus every ``check_every`` steps
  when asked; never per step;
* the first trainable layer does not compute the gradient w.r.t. its input;
* on a backend that compiles loops (JAX) the whole epoch is one compiled call
  (:mod:`xpnet._compiled`), which returns the running loss sums for the guard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from . import scoring
from ._compiled import CompiledEpoch, compiles_epochs, epoch_cache_key
from ._random import as_generator
from ._typing import Array, BackendLike, SeedLike
from ._validation import check_int
from .backends import backend_of, get_backend
from .backup import Resume, backup_of
from .callbacks import LEGACY_KEYS, CallbackList, EpochLogger, History
from .errors import DivergenceError, ShapeError
from .layers.base import loss_layers
from .losses import MeanSquaredError
from .optimizers import SGD, Optimizer

__all__ = ["iterate_minibatches", "FitSettings", "fit_loop", "train_step", "L2Penalty"]


def iterate_minibatches(inputs: Array, targets: Array, batchsize: int, shuffle: bool = False, *,
                        rng: SeedLike = None, drop_last: bool = True,
                        backend: BackendLike = None) -> Iterator[tuple[Array, Array]]:
    """Yield ``(inputs[idx], targets[idx])`` batches, as in the tutorial.

    Like the tutorial, the last incomplete batch is dropped (``drop_last``).
    With ``shuffle``, one permutation is drawn on the host from ``rng`` (a seed
    or ``numpy.random.Generator``), uploaded once, and batches are gathered with
    ``xp.take`` -- the same order on every backend for the same ``rng``.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> X, y = be.zeros((10, 3)), be.zeros((10,), dtype=be.index_dtype)
    >>> [xb.shape for xb, yb in xpnet.iterate_minibatches(X, y, 4, shuffle=True, rng=0)]
    [(4, 3), (4, 3)]
    """
    check_int(batchsize, "batchsize", low=1)
    if inputs.shape[0] != targets.shape[0]:
        raise ShapeError(
            f"inputs and targets must have the same number of samples, got "
            f"{inputs.shape[0]} and {targets.shape[0]}"
        )
    be = backend_of(inputs) if backend is None else get_backend(backend)
    xp = be.xp
    n = inputs.shape[0]
    stop = n - batchsize + 1 if drop_last else n
    if shuffle:
        perm = be.asarray(as_generator(rng).permutation(n), dtype=be.index_dtype)
        for start in range(0, stop, batchsize):
            idx = perm[start:min(start + batchsize, n)]
            yield xp.take(inputs, idx, axis=0), xp.take(targets, idx, axis=0)
    else:
        for start in range(0, stop, batchsize):
            end = min(start + batchsize, n)  # the standard forbids out-of-range stops
            yield inputs[start:end, ...], targets[start:end, ...]


def train_step(layers, xp, X, onehot, first_trainable: int = 0, *, loss=None,
               weights=None, penalty=None):
    """One forward/backward pass; returns the summed loss as a 0-d device array.

    ``layers`` update their parameters inside ``_backward`` (or hand the
    gradients to their optimizer). Unchecked: callers validate once.

    ``loss`` (a :class:`~xpnet.losses.Loss`; None: the softmax cross-entropy
    kernel, unchanged) sees ``onehot`` as its dense targets; with per-sample
    ``weights`` the sum is ``sum_i w_i loss_i`` and the gradient that of the
    weighted mean. ``penalty`` (an :class:`L2Penalty` attached to the layers as
    their optimizer) learns the batch's total weight before the updates.

    A layer whose input is a new array of this step's (the output of a layer
    with ``fresh_output``) runs ``_forward_``, which may overwrite it (ReLU after
    Dense, on NumPy); likewise ``_backward_`` for an input gradient of a layer
    with ``fresh_input_grad``. ``X`` and the loss's gradient are never overwritten.
    """
    activations = [X]
    owned = False  # whether activations[-1] is a new array of this step's (never X)
    for layer in layers:
        forward = layer._forward_ if owned else layer._forward
        activations.append(forward(activations[-1]))
        owned = layer.fresh_output
    if loss is None:
        loss_sum, grad = layers[-1].backend.softmax_crossentropy(activations[-1], onehot)
    else:
        loss_sum, grad = loss.sum_and_grad(xp, activations[-1], onehot, weights)
    if penalty is not None:
        penalty.set_batch(xp, X.shape[0] if weights is None else xp.sum(weights))
    owned = False  # whether grad is a new array of this step's (not the loss's gradient)
    for i in range(len(layers) - 1, first_trainable - 1, -1):
        backward = layers[i]._backward_ if owned else layers[i]._backward
        grad = backward(activations[i], grad, i > first_trainable)
        owned = layers[i].fresh_input_grad
    return loss_sum


#: Compiled steps kept per model (a learning-rate schedule makes one per epoch on JAX).
MAX_CACHED_STEPS = 4


def _cached_step(steps: dict, be, layers, first: int, loss=None, penalty=None,
                 weighted: bool = False):
    """The (possibly compiled) step for the layers as they are configured now.

    A compiled step bakes in every Python number the layers use (learning
    rates, LeakyReLU slopes, ...) and the optimizers, so the key holds each
    layer's identity, configuration and optimizer.
    """
    key = (be, first, loss, id(penalty), weighted, tuple(
        (id(layer), repr(layer.get_config()), getattr(layer, "learning_rate", None),
         id(layer.optimizer))
        for layer in layers))
    step_fn = steps.pop(key, None)
    if step_fn is None:
        step_fn = make_train_step(be, layers, first, loss=loss, penalty=penalty,
                                  weighted=weighted)
        while len(steps) >= MAX_CACHED_STEPS:
            steps.pop(next(iter(steps)))  # drop the least recently used
    steps[key] = step_fn  # (re)insert as the most recently used
    return step_fn


def _cached_epoch(steps: dict, be, layers, first: int, loss=None):
    """The compiled epoch for the layers as configured now, or ``None`` (step by step).

    Kept in the same per-model cache as the steps. Learning rates are
    arguments of a compiled epoch, so they are not part of its key.
    """
    if not compiles_epochs(be, layers):
        return None
    key = ("epoch", be, first, loss, epoch_cache_key(layers))
    epoch_fn = steps.pop(key, None)
    if epoch_fn is None:
        epoch_fn = CompiledEpoch(be, layers, portable_train_step(be, layers, first, loss=loss))
        while len(steps) >= MAX_CACHED_STEPS:
            steps.pop(next(iter(steps)))
    steps[key] = epoch_fn
    return epoch_fn


def portable_train_step(backend, layers, first_trainable: int, *, loss=None, penalty=None):
    """A callable ``step(X, onehot, idx, weights=None) -> summed loss``: the portable twin.

    It gathers the batch (:meth:`Backend.take_rows <xpnet.backends.Backend.take_rows>`,
    ``xp.take`` or a backend's faster equivalent) and runs :func:`train_step`
    (layers update themselves); ``weights`` are the whole training set's sample
    weights, gathered like the rows. ``loss`` and ``penalty`` as in
    :func:`train_step`. :func:`make_train_step` may return a compiled
    equivalent instead; tests compare the two.
    """
    xp = backend.xp
    take_rows = backend.take_rows

    def step(X, onehot, idx, weights=None):
        xb = take_rows(X, idx)
        tb = take_rows(onehot, idx)
        wb = None if weights is None else xp.take(weights, idx, axis=0)
        return train_step(layers, xp, xb, tb, first_trainable, loss=loss, weights=wb,
                          penalty=penalty)

    return step


def make_train_step(backend, layers, first_trainable: int, *, loss=None, penalty=None,
                    weighted: bool = False):
    """The training loop's ``step(X, onehot, idx[, weights]) -> summed loss`` for ``layers``.

    ``loss`` and ``penalty`` as in :func:`train_step`; ``weighted``: the step
    will be called with sample weights (then it is not captured as a graph).

    On a backend that compiles (:attr:`~xpnet.backends.Backend.compiles`, e.g.
    ``jax.jit``: eager JAX dispatch costs ~1 ms a step) and layers that are
    all compilable and optimizer-free, the step is compiled; otherwise it is
    :func:`portable_train_step`.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> from xpnet.training import make_train_step
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> model = xpnet.Sequential.mlp([3, 2], seed=0, backend=be)
    >>> step = make_train_step(be, model.layers, 0)
    >>> X, onehot = be.asarray(np.ones((4, 3))), be.asarray(np.eye(2)[[0, 1, 0, 1]])
    >>> float(step(X, onehot, be.asarray([0, 1], dtype=be.index_dtype))) > 0
    True
    """
    portable = portable_train_step(backend, layers, first_trainable, loss=loss, penalty=penalty)
    if not all(layer.compilable and layer.optimizer is None for layer in layers):
        return portable  # optimizer state or host randomness lives outside a traced function
    if backend.captures_graphs and not weighted:  # recorded once, replayed per batch (CUDA graphs)
        return backend.capture_step(portable, lambda: [
            getattr(layer, name) for layer in layers for name in layer.param_names])
    if not backend.compiles:
        return portable
    return _compiled_train_step(backend, layers, portable)


def _compiled_train_step(backend, layers, portable):
    """``backend.compile`` of ``portable``, made pure by passing parameters explicitly.

    The layers' own ``_forward``/``_backward`` are traced once with their
    parameters swapped for the compiler's placeholders, so the compiled step
    runs exactly the portable math; parameters go in and come out as
    explicit arguments. Learning rates are baked in as constants
    (:func:`_cached_step` asks for a new step when they change).
    """
    names = [layer.param_names for layer in layers]

    def get_params():
        return [tuple(getattr(layer, n) for n in ns) for layer, ns in zip(layers, names)]

    def set_params(params):
        for layer, ns, ps in zip(layers, names, params):
            for n, p in zip(ns, ps):
                setattr(layer, n, p)

    def pure_step(params, X, onehot, idx, weights):
        saved = get_params()
        try:
            set_params(params)
            loss = portable(X, onehot, idx, weights)
            return loss, get_params()
        finally:
            set_params(saved)  # never leave placeholders (tracers) on the layers

    compiled = backend.compile(pure_step)

    def step(X, onehot, idx, weights=None):
        loss, params = compiled(get_params(), X, onehot, idx, weights)
        set_params(params)
        return loss

    return step


class L2Penalty:
    """scikit-learn's L2 penalty: ``alpha / (2 * sum(w)) * ||W||^2`` added to each batch's loss.

    For one ``fit`` it stands in as the optimizer of every layer with
    parameters: it adds ``alpha / sum(w) * W`` to each ``weights`` gradient
    (biases are not penalised, as in scikit-learn) and hands the result to the
    layer's own optimizer (None: the plain SGD step with the layer's learning
    rate). ``sum(w)`` is the batch's total sample weight (its size without
    weights), told by :func:`train_step` before the updates.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> from xpnet.training import L2Penalty
    >>> layer = xpnet.Dense(2, 1, learning_rate=1.0, init=lambda rng, shape: np.ones(shape),
    ...                     backend="numpy")
    >>> penalty = L2Penalty(0.5, {id(layer): None})
    >>> penalty.set_batch(np, 1)
    >>> penalty.update(layer, {"weights": np.zeros((2, 1)), "biases": np.zeros(1)})
    >>> layer.weights.ravel().tolist()
    [0.5, 0.5]
    """

    def __init__(self, alpha: float, optimizers: dict):
        self.alpha = float(alpha)
        self.optimizers = optimizers  # id(layer) -> the layer's own optimizer (or None)
        self.coef: Any = 0.0  # a float or a 0-d device array
        self._plain: Any = None  # the plain SGD step, made when a layer has no optimizer

    def set_batch(self, xp, total_weight) -> None:
        """Set ``coef = alpha / total_weight`` (a batch of zero weights: just ``alpha``)."""
        if isinstance(total_weight, (int, float)):
            self.coef = self.alpha / (total_weight or 1)
        else:  # a 0-d device array: no read-back
            self.coef = self.alpha / (total_weight + xp.astype(total_weight == 0,
                                                               total_weight.dtype))

    def state_owner(self, layer) -> Any:
        """The layer's own optimizer (whose state a backup keeps), or None (the plain SGD step)."""
        inner = self.optimizers.get(id(layer))
        return None if inner is None else getattr(inner, "state_owner", lambda _: inner)(layer)

    def update(self, layer, grads: dict) -> None:
        inner = self.optimizers.get(id(layer))
        if inner is None:
            if self._plain is None:
                self._plain = SGD()  # each layer's own learning rate, the seed's step
            inner = self._plain
        if "weights" not in grads:
            inner.update(layer, grads)
        elif type(inner).update is Optimizer.update:  # it adds coef * W (fused where it can)
            inner.update(layer, grads, decay={"weights": self.coef})
        else:  # duck-typed, or an own update(layer, grads): it sees the penalised gradient
            inner.update(layer, {**grads, "weights": grads["weights"] + layer.weights * self.coef})


def first_trainable_index(layers) -> int:
    """Index of the first layer with parameters (earlier layers need no backward)."""
    for i, layer in enumerate(layers):
        if layer.param_names:
            return i
    return len(layers)


@dataclass(frozen=True)
class FitSettings:
    """The loop policy of :meth:`Sequential.fit <xpnet.Sequential.fit>`, validated once.

    ``fit`` checks its arguments and the data, then hands one of these to
    :func:`fit_loop`, which trusts it. The data and what goes with them
    (targets, sample weights, validation rows) live in the feed
    (:mod:`xpnet.feeds`); the update rules in the stepper.

    Attributes
    ----------
    epochs, batch_size : int
        At least 1 each.
    rng : numpy.random.Generator
        Host generator of the batch orders.
    shuffle : bool
        Draw a new batch order from ``rng`` every epoch.
    check_every : int
        Also read the loss back every this many steps (0: only at the end of
        each epoch, where it is read anyway).
    train_accuracy : bool
        Record the accuracy on the whole training set after each epoch.
    verbose : int
        Keras's ``verbose``: 0 silent, 1 a tqdm bar during each epoch and a line
        after it, 2 the line only (:func:`xpnet.callbacks.format_epoch`).
    start_epoch : int
        0-based number of the first epoch (``initial_epoch``, or a continued
        history's length); epochs ``start_epoch .. start_epoch + epochs - 1`` run.
    """

    epochs: int
    batch_size: int
    rng: Any  # a host numpy.random.Generator (the training math never touches NumPy)
    shuffle: bool = True
    check_every: int = 100
    train_accuracy: bool = True
    verbose: int = 0
    start_epoch: int = 0

    @property
    def progress(self) -> bool:
        """Whether a bar is shown during each epoch (``verbose=1``)."""
        return self.verbose == 1


class Stepper:
    """What :func:`run_epoch` asks of the update rules: a function per block, the compiled epoch.

    ``guards``: whether a NaN/inf loss stops training (scikit-learn's loop
    trains through it and keeps its best weights instead).
    """

    guards = True
    backend: Any

    def start(self, feed: Any) -> None:
        """Called once before the first epoch (after the callbacks' ``on_train_begin``)."""
        feed.start()

    def step_fn(self, weighted: bool) -> Any:
        """``step(X, targets, idx[, weights]) -> summed loss``."""
        raise NotImplementedError

    def epoch_fn(self, weighted: bool) -> Any:
        """The whole block as one compiled program, or None (then step by step)."""
        return None

    def begin_epoch(self) -> None:
        """Forget the previous epoch's step functions (learning rates may have changed)."""
        self._epoch_steps: dict = {}

    def epoch_step(self, weighted: bool) -> Any:
        """:meth:`step_fn`, looked up once per epoch (not once per block: a batch is a block)."""
        steps = self.__dict__.setdefault("_epoch_steps", {})
        if weighted not in steps:
            steps[weighted] = self.step_fn(weighted)
        return steps[weighted]

    def block_runner(self, block: Any) -> Any:
        """``run(lo, hi) -> summed loss`` of the step on the block's rows ``order[lo:hi]``."""
        fn = self.epoch_step(block.weights is not None)
        X, targets, order, weights = block.X, block.targets, block.order, block.weights
        if weights is None:  # exactly the call it always was (a captured graph takes no weights)
            return lambda lo, hi: fn(X, targets, order[lo:hi])
        return lambda lo, hi: fn(X, targets, order[lo:hi], weights)

    def end_epoch(self) -> None:
        pass


class LocalStepper(Stepper):
    """The steps of one process: the model's cached (possibly compiled) step and epoch.

    ``penalty``: an :class:`L2Penalty` attached to the layers for this fit.
    Compiled steps and epochs are kept on the model (``model.train_steps``),
    so a second ``fit`` does not re-trace.
    """

    def __init__(self, model: Any, penalty: L2Penalty | None = None) -> None:
        self.model, self.penalty = model, penalty
        self.backend = model.backend
        self.layers = loss_layers(model.layers)
        self.first = first_trainable_index(self.layers)

    def _loss(self, weighted: bool) -> Any:
        """None keeps the seed's fused kernel; weights (or another loss) need the loss object."""
        model = self.model
        return None if model.uses_default_loss and not weighted else model.loss

    def step_fn(self, weighted: bool) -> Any:
        """``step(X, targets, idx[, weights]) -> summed loss`` for the layers as they are now."""
        model = self.model
        return _cached_step(model.train_steps, model.backend, self.layers, self.first,
                            self._loss(weighted), self.penalty, weighted)

    def epoch_fn(self, weighted: bool) -> Any:
        """The whole epoch as one compiled program, or None (then step by step)."""
        if weighted or self.penalty is not None:
            return None
        model = self.model
        return _cached_epoch(model.train_steps, model.backend, self.layers, self.first,
                             self._loss(False))


def fit_loop(model, feed, validation, stepper, settings: FitSettings, callbacks: CallbackList,
             history: History) -> History:
    """The epoch loop of :meth:`Sequential.fit` (everything already validated).

    Fills and returns ``history``. ``callbacks`` get ``model`` and ``params``,
    then every hook with Keras's arguments (0-based epochs, the epoch's
    ``logs``); ``history`` records each epoch after them and, with
    ``settings.verbose``, an :class:`~xpnet.callbacks.EpochLogger` prints it on
    the root process. ``on_train_end`` runs also after an error or Ctrl-C, so
    callbacks can restore what they changed (the learning-rate scheduler puts
    the base rates back). ``feed`` gives the epoch's blocks
    (:mod:`xpnet.feeds`), ``validation`` (a feed or None) is scored after each
    epoch, ``stepper`` runs the steps.
    """
    model.stop_training = False
    last_epoch = settings.start_epoch + settings.epochs
    backup = backup_of(callbacks)
    batch_end = _batch_end_hook(callbacks, model.backend)  # before the built-in loggers join
    _add_loggers(callbacks, history, bool(settings.verbose) and feed.is_root)
    callbacks.set_model(model)
    callbacks.set_params({"epochs": last_epoch, "steps": feed.n_steps, "verbose": settings.verbose,
                          "metrics": log_keys(model, feed, validation, settings.train_accuracy)})
    callbacks.on_train_begin()
    logs: dict = {}
    completed = False
    try:
        stepper.start(feed)
        resume = None if backup is None else backup.begin(model, feed, validation, settings,
                                                          callbacks, history, last_epoch)
        for epoch in range(settings.start_epoch if resume is None else resume.epoch, last_epoch):
            if backup is not None:  # before the callbacks change anything in this epoch
                backup.epoch_start(epoch)
            callbacks.on_epoch_begin(epoch)
            trained = run_epoch(feed, stepper, settings, epoch, batch_end, last_epoch,
                                resume=resume, after_steps=backup and backup.after_steps)
            resume = None
            logs = epoch_logs(trained, scoring.epoch_scores(model, feed, validation,
                                                            settings.train_accuracy))
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        completed = True
    finally:
        callbacks.on_train_end(logs)
        if backup is not None:  # the backup being written, also when fit fails
            backup.wait(quiet=not completed)
    if backup is not None and completed:
        backup.finish()
    return history


def _add_loggers(callbacks: CallbackList, history: History, prints: bool) -> None:
    """``history`` and the printed line go last, as in Keras: they see what callbacks added."""
    callbacks.append(history)
    if prints:
        callbacks.append(EpochLogger())


def log_keys(model, feed, validation, train_accuracy: bool) -> list[str]:
    """The keys of every epoch's logs in this fit (``params["metrics"]``), known before it starts.

    They follow :func:`xpnet.scoring.epoch_scores`: accuracies for every loss but
    the MSE, the training accuracy only where the feed can be scored again.
    """
    classifies = not isinstance(model.loss, MeanSquaredError)
    keys = ["loss"]
    if train_accuracy and feed.rescorable and classifies:
        keys.append("accuracy")
    if validation is not None:
        keys += ["val_loss", "val_accuracy"] if classifies else ["val_loss"]
    return keys + ["seconds"]


def epoch_logs(trained: dict, scores) -> dict:
    """The epoch's Keras-style logs from :func:`run_epoch`'s and the scores' ``(key, value)`` pairs."""
    logs = {"loss": trained["loss"]}
    for key, value in scores:
        logs[LEGACY_KEYS.get(key, key)] = value
    logs["seconds"] = trained["seconds"]
    return logs


def _batch_end_hook(callbacks: CallbackList, backend):
    """``batch_end(batch, loss_sum, block, lo, hi)`` for the step loop, or None when no callback
    overrides ``on_train_batch_end`` (decided once per fit: the steps then do no work for it).

    The batch's logs hold its mean loss over this process's rows (weighted
    where the fit is): one read-back per step.
    """
    if not callbacks.has_batch_hooks:
        return None
    xp = backend.xp

    def batch_end(batch: int, loss_sum, block, lo: int, hi: int) -> None:
        weights = block.weights
        weight = (float(hi - lo) if weights is None
                  else float(xp.sum(xp.take(weights, block.order[lo:hi], axis=0))))
        callbacks.on_train_batch_end(batch, {"loss": float(loss_sum) / (weight or 1.0)})

    return batch_end


def run_epoch(feed, stepper, settings: FitSettings, epoch: int, batch_end=None,
              last_epoch: int | None = None, *, resume: Resume | None = None,
              after_steps=None) -> dict:
    """Train one epoch over ``feed``'s blocks; return its ``loss`` and ``seconds``.

    A block runs as one compiled program where the feed and the stepper allow
    it and no ``batch_end`` hook (see :func:`_batch_end_hook`) wants every
    step, step by step otherwise. The loss is summed on the device and read
    back once at the end (and every ``check_every`` steps), reduced over ranks
    by the feed, and checked for NaN/inf (:class:`~xpnet.errors.DivergenceError`).
    ``last_epoch`` is the total the progress bar shows (``verbose=1``).

    ``resume`` (:class:`xpnet.backup.Resume`): continue after its steps, from
    its sums (the batch order is drawn again, from the restored generator).
    ``after_steps(epoch, sums, advanced)`` runs after every step (compiled
    block): :meth:`xpnet.backup.BackupAndRestore.after_steps`.
    """
    t0 = time.perf_counter()
    # Compiled blocks return their sums to the host; steps sum on the device (read back once).
    stepper.begin_epoch()
    sums = (_Sums(host=0.0, device=stepper.backend.zeros(()), steps=0) if resume is None
            else _Sums(host=resume.host_sum, device=resume.device_sum, steps=resume.step))
    skip = sums.steps
    desc = f"epoch {epoch + 1}" + ("" if last_epoch is None else f"/{last_epoch}")
    with _progress(feed.n_steps, desc, settings.progress and feed.is_root) as bar:
        bar.update(skip)
        for block in feed.epoch_blocks(epoch, settings):
            if skip >= block.n_steps:  # trained before the backup this run resumes from
                skip -= block.n_steps
                continue
            _run_block(feed, stepper, block, settings, epoch, sums, bar, batch_end,
                       first_step=skip, after_steps=after_steps)
            skip = 0
            del block  # so that at most two chunks of host data are alive
    # The one read-back of the epoch: always checked.
    loss_sum = feed.reduce(sums.host + float(sums.device))
    if stepper.guards:
        _guard(loss_sum, epoch, sums.steps - 1, settings.check_every)
    stepper.end_epoch()
    return {"loss": loss_sum / feed.trained_weight(), "seconds": time.perf_counter() - t0}


@dataclass
class _Sums:
    """An epoch's running loss: compiled blocks' sums on the host, single steps' on the device."""

    host: float
    device: Any
    steps: int


def _run_block(feed, stepper, block, settings: FitSettings, epoch: int, sums: _Sums, bar,
               batch_end=None, *, first_step: int = 0, after_steps=None) -> None:
    """The steps ``first_step ..`` of one block, added to ``sums``."""
    weighted = block.weights is not None
    # A batch hook needs every step's loss: no whole-block program then (a flag, not a kind);
    # a resumed block continues step by step.
    compiled = feed.compiles and block.compilable and batch_end is None and not first_step
    epoch_fn = stepper.epoch_fn(weighted) if compiled else None
    if epoch_fn is not None:  # the whole block in one call; the guard reads its sums
        running = epoch_fn(block.X, block.targets, block.order, block.n_steps, block.rows)
        bar.update(block.n_steps)
        sums.host += _guarded_sums(running, epoch, settings.check_every)
        sums.steps += block.n_steps
        if after_steps is not None:
            after_steps(epoch, sums, block.n_steps)
        return
    run = stepper.block_runner(block)
    rows, n_rows = block.rows, block.order.shape[0]
    check_every, total, steps = settings.check_every, sums.device, sums.steps
    for s in range(first_step, block.n_steps):
        lo = s * rows
        hi = min(lo + rows, n_rows)  # the last batch may be partial
        loss = run(lo, hi)
        total = total + loss
        steps += 1
        if check_every and steps % check_every == 0:
            _guard(feed.reduce(float(total)), epoch, steps - 1, check_every)
        bar.update(1)
        if batch_end is not None:
            batch_end(steps - 1, loss, block, lo, hi)
        if after_steps is not None:
            sums.device, sums.steps = total, steps
            after_steps(epoch, sums)
    sums.device, sums.steps = total, steps


def _guarded_sums(running: list, epoch: int, check_every: int) -> float:
    """The epoch's loss sum from the running sums of a compiled epoch, checked as the loop would."""
    if check_every:
        for step in range(check_every - 1, len(running), check_every):
            _guard(running[step], epoch, step, check_every)
    return running[-1] if running else 0.0


def _guard(value: float, epoch: int, step: int, check_every: int) -> None:
    """Stop with :class:`DivergenceError` if the loss summed up to ``step`` is NaN/inf.

    ``check_every=0`` means the loss is read at the end of each epoch only.
    """
    if math.isfinite(value):
        return
    if check_every:
        first, how = max(step + 1 - check_every, 0) + 1, f"checked every {check_every} steps"
    else:
        first, how = 1, "checked at the end of each epoch"
    raise DivergenceError(
        f"training diverged: the loss became {value} in epoch {epoch + 1}, between "
        f"steps {first} and {step + 1} ({how}). Lower the learning rate (e.g. by 10x) "
        "or check the inputs for NaN/inf."
    )


class _NoBar:
    """Stands in for a progress bar when none is shown."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass


def _progress(total: int | None, desc: str, enabled: bool):
    """A tqdm bar used as a context manager (closed also when interrupted), or none."""
    if not enabled:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                mininterval=0.25)
