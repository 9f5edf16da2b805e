"""Data-parallel ``fit``, ``predict`` and ``evaluate`` over an :mod:`xpnet.distributed` communicator.

:meth:`Sequential.fit(..., distributed=comm) <xpnet.Sequential.fit>` runs the
shared epoch loop (:func:`xpnet.training.run_epoch`) with the sharded feed
(:mod:`xpnet.feeds.sharded`, which shares the rows and reduces the sums) and
the :class:`DistributedStepper` defined here. With ``distributed=None``
nothing here runs, so one process keeps its fused, compiled step.

Synchronous data parallelism, as in PyTorch's DDP:

* before the first epoch the ranks agree on the data (size, shape, dtype, a
  fingerprint of the values) and settings, rank 0's parameters are broadcast
  and checked bitwise equal everywhere;
* every rank draws the same permutation and takes its contiguous slice of
  each global batch (:meth:`~xpnet.distributed.MPICommunicator.local_order`);
* a step is split: forward and backward only *compute* gradients (a
  :class:`~xpnet.optimizers.KeepGrads` stands in for each layer's optimizer),
  one fused mean-allreduce of all gradients follows the whole backward pass,
  then the optimizer step. The gradient of the local mean loss, averaged over
  ranks, is the gradient of the global-batch mean loss, so the result is the
  single-process one up to rounding. Layers without an optimizer (the seed's
  in-backward SGD) are stepped by ``SGD()``, which reads each layer's
  ``learning_rate``: the same update, rounded differently;
* with sample weights (class weights folded in) each rank sends its weighted
  gradient *sums* and its slice's weight in the same fused buffer, and the
  ratio of the reduced sums is the gradient of the global batch's weighted
  mean; the L2 penalty (``alpha``) then acts once, on the reduced gradients,
  with the global batch's weight -- both as in one process;
* the loss (for the divergence guard and the logs), the training accuracy and
  the validation scores are reduced over ranks, so every rank sees the same
  logs, takes the same callback decisions and stops together;
* only rank 0 shows a progress bar.

Communication cannot run inside a compiled function: on a backend that
compiles (JAX), the forward/backward pass that computes the gradients is
compiled (:func:`make_gradient_fn`), and the allreduce and the optimizer step
run eagerly between two calls of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._typing import Array
from .distributed import Communicator, DistributedError, mark_raised_on_every_rank
from .errors import StateError
from .layers.base import loss_layers
from .optimizers import SGD, KeepGrads
from .training import Stepper, first_trainable_index, train_step

if TYPE_CHECKING:
    from .backends import Backend
    from .layers.base import Layer

_T = TypeVar("_T")

__all__ = ["check_fit_agreement", "DistributedStepper", "check_inputs_agree", "on_every_rank"]


def _shape_of(x: Any) -> tuple | None:
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def check_communicator(comm: Any) -> None:
    """A TypeError unless ``comm`` is an :mod:`xpnet.distributed` communicator."""
    needed = ("allreduce_mean_", "allreduce_scalar", "check_same", "allgather", "local_order")
    if isinstance(comm, bool) or not all(callable(getattr(comm, m, None)) for m in needed):
        raise TypeError(
            f"distributed must be a communicator from xpnet.distributed.init() (or None), "
            f"got {type(comm).__name__}"
        )


def check_fit_agreement(comm: Communicator, model: Any, X: Any, y: Any, *, epochs: Any,
                        batch_size: Any, seed: Any, shuffle: Any, optimizer: Any,
                        validation_data: Any = None, options: dict | None = None) -> None:
    """Fail on every rank, before training, unless all ranks got the same data shapes and settings.

    Only shapes, dtypes and settings are compared here (nothing is read back),
    so it can run before the data are validated; the values are compared by
    the sharded feed once they are. A global batch that the
    number of ranks does not divide is refused too. ``options``: fit's
    ``sample_weight`` (its shape and dtype are compared), ``class_weight``,
    ``validation_split`` and ``alpha``; the model's loss is compared too.
    """
    check_communicator(comm)
    be = model.backend
    options = dict(options or {})
    weights = options.pop("sample_weight", None)
    seed_key = seed if isinstance(seed, int) else type(seed).__name__
    comm.check_same(
        {"X shape": _shape_of(X), "X dtype": str(getattr(X, "dtype", None)),
         "y shape": _shape_of(y), "y dtype": str(getattr(y, "dtype", None)),
         "validation shapes": None if validation_data is None else
         [_shape_of(v) for v in validation_data] if isinstance(validation_data, (tuple, list))
         else type(validation_data).__name__,
         "sample_weight": None if weights is None else
         (_shape_of(weights), str(getattr(weights, "dtype", None)))},
        "data sizes or shapes")
    comm.check_same(
        {"backend": be.name, "dtype": be.dtype_name, "epochs": epochs, "batch_size": batch_size,
         "seed": seed_key, "shuffle": bool(shuffle), "optimizer": repr(optimizer),
         "layers": [(type(layer).__name__, layer.get_config()) for layer in model.layers],
         "loss": repr(model.loss), **{k: repr(v) for k, v in sorted(options.items())}},
        "settings or models")
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1:
        _on_every_rank(comm, "checking the batch size", lambda: comm.check_global_batch(batch_size))


def _parameters(layers: Sequence[Layer]) -> list[Array]:
    return [getattr(layer, n) for layer in layers for n in layer.param_names]


def _sync_parameters(comm: Communicator, layers: Sequence[Layer], be: Backend) -> None:
    """Every rank takes rank 0's parameters, then checks they are bitwise equal."""
    trainable = [layer for layer in layers if layer.param_names]
    if not trainable:
        return
    _set_parameters(trainable, comm.broadcast(_parameters(trainable), be))
    comm.check_equal(_parameters(trainable), be, "initial parameters")


def _refuse_host_randomness(layers: Sequence[Layer]) -> None:
    for layer in layers:
        if not layer.compilable:
            raise NotImplementedError(
                f"distributed fit does not support {layer!r} yet: it draws host randomness "
                "(or reads values back) in every step, so every rank would draw the same "
                "masks for different rows and the result would not match one process. "
                "Train it without distributed=, or remove the layer."
            )


def _gradients(trainable: Sequence[Layer]) -> list[Array]:
    """The gradients the backward pass left in ``layer.grads``, in parameter order."""
    grads: list[Array] = []
    for layer in trainable:
        missing = [n for n in layer.param_names if n not in layer.grads]
        if missing:
            raise StateError(
                f"{layer!r} computed no gradient for {missing} in backward: distributed fit "
                "needs layers that hand their gradients to layer.optimizer "
                "(Layer._apply_update), as xpnet's own layers do"
            )
        grads.extend(layer.grads[n] for n in layer.param_names)
    return grads


def portable_gradient_fn(be: Backend, layers: list[Layer], first: int, *,
                         loss: Any = None) -> Callable[..., tuple[Array, list[Array]]]:
    """``grads_of(X, targets, idx, weights=None) -> (local summed loss, gradients)``; parameters unchanged.

    Forward and backward run with a :class:`~xpnet.optimizers.KeepGrads` in
    place of every trainable layer's optimizer, so ``backward`` only leaves
    its gradients in ``layer.grads``; they are returned in parameter order.
    ``loss`` as in :func:`~xpnet.training.train_step` (None: the softmax
    cross-entropy kernel). With ``weights`` (the whole training set's) the
    gradients are *weighted sums* ``sum_i w_i dl_i`` over the local rows,
    followed by the local weight ``sum_i w_i`` as one more array of shape
    (1,): ranks can add both, and the global weighted mean is their ratio.
    """
    xp = be.xp
    trainable = [layer for layer in layers[first:] if layer.param_names]
    keep = KeepGrads()

    def grads_of(X: Array, targets: Array, idx: Array,
                 weights: Array | None = None) -> tuple[Array, list[Array]]:
        xb = xp.take(X, idx, axis=0)
        tb = xp.take(targets, idx, axis=0)
        wb = None if weights is None else xp.take(weights, idx, axis=0)
        optimizers = [layer.optimizer for layer in trainable]
        for layer in trainable:
            layer.grads = {}
            layer.optimizer = keep
        try:
            loss_sum = train_step(layers, xp, xb, tb, first, loss=loss, weights=wb)
            grads = _gradients(trainable)
        finally:
            for layer, opt in zip(trainable, optimizers):
                layer.optimizer = opt
                layer.grads = {}
        if wb is None:
            return loss_sum, grads
        # The loss gave the gradient of the *local* weighted mean; times the local
        # weight it is the local weighted sum (zero weights: zero gradients).
        local_weight = xp.sum(xp.astype(wb, grads[0].dtype))
        return loss_sum, [g * local_weight for g in grads] + [xp.reshape(local_weight, (1,))]

    return grads_of


def make_gradient_fn(be: Backend, layers: list[Layer], first: int, *,
                     loss: Any = None) -> Callable[..., tuple[Array, list[Array]]]:
    """:func:`portable_gradient_fn`, compiled by ``be.compile`` where the backend compiles.

    Only the gradient computation is compiled (parameters go in as explicit
    arguments, as in ``training._compiled_train_step``): the allreduce needs
    the host between backward and the optimizer step, and optimizer state
    lives in Python. Learning rates do not enter the gradients, so one
    compiled function serves a whole ``fit``.
    """
    portable = portable_gradient_fn(be, layers, first, loss=loss)
    if not be.compiles or not all(layer.compilable for layer in layers):
        return portable
    trainable = [layer for layer in layers[first:] if layer.param_names]

    def pure(params: list[Array], X: Array, targets: Array, idx: Array,
             weights: Array | None) -> tuple[Array, list[Array]]:
        saved = _parameters(trainable)
        try:
            _set_parameters(trainable, params)
            return portable(X, targets, idx, weights)
        finally:
            _set_parameters(trainable, saved)  # never leave tracers on the layers

    compiled = be.compile(pure)
    return lambda X, targets, idx, weights=None: compiled(_parameters(trainable), X, targets,
                                                          idx, weights)


def _set_parameters(layers: Sequence[Layer], values: Sequence[Array]) -> None:
    remaining = iter(values)
    for layer in layers:
        for name in layer.param_names:
            setattr(layer, name, next(remaining))


def split_train_step(be: Backend, layers: list[Layer], first: int, comm: Communicator, *,
                     compiled: bool = True, loss: Any = None,
                     penalty: Any = None) -> Callable[..., Array]:
    """``step(X, targets, idx, weights=None) -> local summed loss``: backward, one fused allreduce, optimizer step.

    The allreduce comes after the whole backward pass and before any
    parameter changes (every layer's input gradient uses the old weights,
    as in one process). Layers without an optimizer (the seed's SGD inside
    backward) are stepped by ``SGD()``, which reads their ``learning_rate``
    at every step (schedules keep working).

    With ``weights`` the ranks add their weighted gradient sums and local
    weights in the same fused buffer and divide: the gradient of the global
    batch's weighted mean, whatever each rank's share of the weight.
    ``penalty`` (an :class:`~xpnet.training.L2Penalty` attached to the layers
    as their optimizer) learns the global batch's weight (or size) and
    acts once, on the reduced gradients, as in one process.
    """
    trainable = [layer for layer in layers[first:] if layer.param_names]
    grads_of = (make_gradient_fn if compiled else portable_gradient_fn)(be, layers, first,
                                                                        loss=loss)
    seed_sgd = SGD()

    def step(X: Array, targets: Array, idx: Array, weights: Array | None = None) -> Array:
        loss_sum, grads = grads_of(X, targets, idx, weights)
        reduced = comm.allreduce_mean_(grads, be)
        batch_weight: Any = idx.shape[0] * comm.size
        if weights is not None:
            reduced, batch_weight = _divided_by_weight(be.xp, reduced, comm.size)
        if penalty is not None:
            penalty.set_batch(be.xp, batch_weight)
        mean = iter(reduced)
        for layer in trainable:
            opt = layer.optimizer
            layer_grads = {n: next(mean) for n in layer.param_names}
            (seed_sgd if opt is None else opt).update(layer, layer_grads)
            layer.grads = {} if opt is None else layer_grads  # as one process leaves them
        return loss_sum

    return step


def _divided_by_weight(xp: Any, reduced: list[Array], size: int) -> tuple[list[Array], Array]:
    """Mean weighted gradient sums over the mean weight (last entry): the global weighted mean.

    Returns the gradients and the global batch's weight (0-d). A global batch
    of zero weights gives zero gradients, as in one process.
    """
    mean_weight = xp.reshape(reduced[-1], ())
    denom = mean_weight + xp.astype(mean_weight == 0, mean_weight.dtype)
    return [g / denom for g in reduced[:-1]], mean_weight * size


class DistributedStepper(Stepper):
    """The data-parallel steps: backward, one fused allreduce, the optimizer step (equal on every rank).

    The loss, targets, sample weights (class weights folded in) and L2
    penalty are the ones ``fit`` gave the feed and the stepper, as in one
    process.
    """

    def __init__(self, model: Any, comm: Communicator, penalty: Any = None) -> None:
        self.model, self.comm, self.penalty = model, comm, penalty
        self.backend = model.backend
        self.layers = loss_layers(model.layers)
        self.steps: dict = {}

    def start(self, feed: Any) -> None:
        """Check the layers and the data, then give every rank rank 0's parameters."""
        _refuse_host_randomness(self.layers)
        feed.start()
        _sync_parameters(self.comm, self.model.layers, self.model.backend)

    def step_fn(self, weighted: bool) -> Callable[..., Array]:
        """One split step per fit (learning rates are read at every step)."""
        if weighted not in self.steps:
            model = self.model
            loss = None if model.uses_default_loss and not weighted else model.loss
            self.steps[weighted] = split_train_step(
                model.backend, self.layers, first_trainable_index(self.layers), self.comm,
                loss=loss, penalty=self.penalty)
        return self.steps[weighted]

    def epoch_fn(self, weighted: bool) -> None:
        return None  # communication cannot run inside a compiled epoch

    def end_epoch(self) -> None:
        self.comm.check_equal(_parameters(self.layers), self.model.backend,
                              "parameters after an epoch")


def check_inputs_agree(comm: Communicator, X: Any, y: Any = None, *, batch_size: Any = None,
                       what: str = "inputs", sample_weight: Any = None) -> None:
    """Fail on every rank unless all ranks got inputs of the same shapes and dtypes."""
    check_communicator(comm)
    comm.check_same({"X shape": _shape_of(X), "X dtype": str(getattr(X, "dtype", None)),
                     "y shape": _shape_of(y), "batch_size": batch_size,
                     "sample_weight shape": _shape_of(sample_weight)}, what)


def on_every_rank(comm: Communicator | None, what: str, fn: Callable[[], _T]) -> _T:
    """``fn()``; with a communicator, an error on every rank when it fails on any."""
    return fn() if comm is None else _on_every_rank(comm, what, fn)


def _on_every_rank(comm: Communicator, what: str, fn: Callable[[], _T]) -> _T:
    """``fn()``, or an error on every rank when it fails on any (no rank waits alone)."""
    error: Exception | None = None
    try:
        result = fn()  # read below only when no rank failed
    except Exception as exc:  # re-raised below, after the other ranks heard of it
        error = exc
    failed = comm.allreduce_scalar(float(error is not None), "max")
    if failed and error is None:
        error = DistributedError(f"another rank failed while {what} (see its error message)")
    if error is not None:
        mark_raised_on_every_rank(error)
        raise error
    return result


