"""Minibatches, the training step, and the epoch loop behind ``Sequential.fit``.

Everything here is written against the array API standard through a
:class:`~xpnet.backends.Backend`; nothing imports an array library.

The hot loop avoids per-step work nobody needs:

* the dataset is on the device already; one permutation is uploaded per epoch
  and batches are gathered with ``xp.take``;
* labels are turned into a one-hot matrix once per ``fit``, not per step;
* the loss is summed on the device and read back every ``check_every`` steps
  (the divergence guard) and once per epoch, never per step;
* the first trainable layer does not compute the gradient w.r.t. its input.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .errors import DivergenceError, ShapeError
from .initializers import as_generator
from .losses import _xent_sum_and_grad, one_hot

__all__ = ["iterate_minibatches", "History", "Callback", "train_step"]


def iterate_minibatches(inputs, targets, batchsize: int, shuffle: bool = False, *,
                        rng=None, drop_last: bool = True, backend=None):
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
    from .backends import backend_of, get_backend

    if isinstance(batchsize, bool) or not isinstance(batchsize, int) or batchsize < 1:
        raise ValueError(f"batchsize must be a positive int, got {batchsize!r}")
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


def train_step(layers, xp, X, onehot, first_trainable: int = 0):
    """One forward/backward pass; returns the summed loss as a 0-d device array.

    ``layers`` update their parameters inside ``_backward`` (or hand the
    gradients to their optimizer). Unchecked: callers validate once.
    """
    activations = [X]
    for layer in layers:
        activations.append(layer._forward(activations[-1]))
    loss_sum, grad = _xent_sum_and_grad(xp, activations[-1], onehot)
    for i in range(len(layers) - 1, first_trainable - 1, -1):
        grad = layers[i]._backward(activations[i], grad, i > first_trainable)
    return loss_sum


def loss_layers(layers) -> list:
    """The layers whose output the loss sees: a final Softmax is fused with the loss.

    The cross-entropy from logits equals the cross-entropy of the final
    Softmax's probabilities, computed stably, so training skips that layer.
    """
    layers = list(layers)
    if layers and layers[-1].fused_with_loss:
        return layers[:-1]
    return layers


#: Compiled steps kept per model (a learning-rate schedule makes one per epoch on JAX).
MAX_CACHED_STEPS = 4


def _cached_step(steps: dict, be, layers, first: int):
    """The (possibly compiled) step for the layers as they are configured now.

    A compiled step bakes in every Python number the layers use (learning
    rates, LeakyReLU slopes, ...) and the optimizers, so the key holds each
    layer's identity, configuration and optimizer.
    """
    key = (be, first, tuple(
        (id(layer), repr(layer.get_config()), getattr(layer, "learning_rate", None),
         id(layer.optimizer))
        for layer in layers))
    step_fn = steps.pop(key, None)
    if step_fn is None:
        step_fn = make_train_step(be, layers, first)
        while len(steps) >= MAX_CACHED_STEPS:
            steps.pop(next(iter(steps)))  # drop the least recently used
    steps[key] = step_fn  # (re)insert as the most recently used
    return step_fn


def portable_train_step(backend, layers, first_trainable: int):
    """A callable ``step(X, onehot, idx) -> summed loss``: the portable twin.

    It gathers the batch with ``xp.take`` and runs :func:`train_step` (layers
    update themselves). :func:`make_train_step` may return a compiled
    equivalent instead; tests compare the two.
    """
    xp = backend.xp

    def step(X, onehot, idx):
        xb = xp.take(X, idx, axis=0)
        tb = xp.take(onehot, idx, axis=0)
        return train_step(layers, xp, xb, tb, first_trainable)

    return step


def make_train_step(backend, layers, first_trainable: int):
    """The training loop's ``step(X, onehot, idx) -> summed loss`` for ``layers``.

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
    portable = portable_train_step(backend, layers, first_trainable)
    if not backend.compiles or not all(
            layer.compilable and layer.optimizer is None for layer in layers):
        return portable  # optimizer state or host randomness lives outside a traced function
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

    def pure_step(params, X, onehot, idx):
        saved = get_params()
        try:
            set_params(params)
            loss = portable(X, onehot, idx)
            return loss, get_params()
        finally:
            set_params(saved)  # never leave placeholders (tracers) on the layers

    compiled = backend.compile(pure_step)

    def step(X, onehot, idx):
        loss, params = compiled(get_params(), X, onehot, idx)
        set_params(params)
        return loss

    return step


def first_trainable_index(layers) -> int:
    """Index of the first layer with parameters (earlier layers need no backward)."""
    for i, layer in enumerate(layers):
        if layer.param_names:
            return i
    return len(layers)


class Callback:
    """Hooks called by :meth:`Sequential.fit`. Override what you need.

    A callback may set ``model.stop_training = True`` to end training after
    the current epoch (early stopping does this).
    """

    def on_train_begin(self, model, logs=None):
        pass

    def on_epoch_begin(self, model, epoch, logs=None):
        pass

    def on_epoch_end(self, model, epoch, logs=None):
        pass

    def on_train_end(self, model, logs=None):
        pass


@dataclass
class History:
    """Per-epoch records returned by :meth:`Sequential.fit`.

    ``history["val_acc"]`` is the list of validation accuracies, one per epoch;
    keys are ``epoch``, ``loss``, ``train_acc``, ``val_acc``, ``val_loss`` and
    ``seconds`` (those that were computed).
    """

    history: dict = field(default_factory=dict)

    def append(self, logs: dict) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.history.get("epoch", []))

    @property
    def epochs(self) -> list:
        return self.history.get("epoch", [])

    def last(self) -> dict:
        return {k: v[-1] for k, v in self.history.items() if v}


def fit_loop(model, X, y, *, epochs, batch_size, shuffle, rng, validation_data,
             callbacks, progress, check_every, train_accuracy, history=None,
             start_epoch: int = 0, desc_prefix: str = "") -> History:
    """The epoch loop of :meth:`Sequential.fit` (arguments already validated)."""
    be = model.backend
    xp = be.xp
    layers = loss_layers(model.layers)
    n_classes = model.n_outputs
    onehot = one_hot(y, n_classes, dtype=be.dtype, xp=xp)  # once per fit
    first = first_trainable_index(layers)
    n = X.shape[0]
    n_steps = max(n // batch_size, 0)
    rng = as_generator(rng)
    history = History() if history is None else history
    model.stop_training = False
    bar = None
    # Compiled steps are kept on the model, so a second fit() does not re-trace.
    steps = model.__dict__.setdefault("_train_steps", {})
    for cb in callbacks:
        cb.on_train_begin(model)
    try:
        for epoch in range(start_epoch, start_epoch + epochs):
            for cb in callbacks:
                cb.on_epoch_begin(model, epoch)
            t0 = time.perf_counter()
            step_fn = _cached_step(steps, be, layers, first)
            if shuffle:  # one host permutation, one upload per epoch
                order = be.asarray(rng.permutation(n), dtype=be.index_dtype)
            else:
                order = xp.arange(n, dtype=be.index_dtype, device=be.device)
            total = be.zeros(())
            bar = _progress(n_steps, f"{desc_prefix}epoch {epoch + 1}", progress)
            for step in range(n_steps):
                lo = step * batch_size
                total = total + step_fn(X, onehot, order[lo:lo + batch_size])
                if check_every and (step + 1) % check_every == 0:
                    _guard(float(total), epoch, step, check_every)
                if bar is not None:
                    bar.update(1)
            loss_sum = float(total)  # the one read-back of the epoch
            if bar is not None:
                bar.close()
                bar = None
            if check_every:
                _guard(loss_sum, epoch, n_steps - 1, check_every)
            seconds = time.perf_counter() - t0
            logs = {"epoch": epoch + 1,
                    "loss": loss_sum / max(n_steps * batch_size, 1),
                    "seconds": seconds}
            if train_accuracy:
                logs["train_acc"] = model._accuracy(X, y)
            if validation_data is not None:
                scores = model._scores(*validation_data)  # checked once, in fit
                logs["val_loss"], logs["val_acc"] = scores["loss"], scores["accuracy"]
            history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(model, epoch, logs)
            if model.stop_training:
                break
    finally:
        if bar is not None:  # interrupted mid-epoch: leave the terminal clean
            bar.close()
        # Also after an error or Ctrl-C, so callbacks can restore what they changed
        # (the learning-rate scheduler puts the base rates back).
        for cb in callbacks:
            cb.on_train_end(model, history.last() if len(history) else {})
    return history


def _guard(value: float, epoch: int, step: int, check_every: int) -> None:
    if not math.isfinite(value):
        lo = max(step + 1 - check_every, 0)
        raise DivergenceError(
            f"training diverged: the loss became {value} in epoch {epoch + 1}, between "
            f"steps {lo + 1} and {step + 1} (checked every {check_every} steps). "
            "Lower the learning rate (e.g. by 10x), check the inputs for NaN/inf, "
            "or pass check_every=0 to disable this guard."
        )


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                mininterval=0.25)
