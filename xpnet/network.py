"""A network is a list of layers: the tutorial's free functions and ``Sequential``.

The free functions (:func:`forward`, :func:`predict`, :func:`train`) accept a
plain ``list`` of layers, exactly as in the tutorial, or a :class:`Sequential`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import checkpoint, feeds, scoring
from ._distributed_fit import DistributedStepper, check_fit_agreement, on_every_rank
from ._random import as_generator
from ._threads import blas_threads as blas_threads_for
from ._typing import Array, BackendLike, Device, DType, Initializer, SeedLike
from ._validation import check_bool, check_int, check_number
from .backends import get_backend
from .backup import BackupAndRestore, check_frequency
from .callbacks import Callback, CallbackList, History
from .errors import CheckpointError
from .layers import Dense, ReLU
from .layers.base import Layer, inference_layers, layers_of, loss_layers
from .losses import SoftmaxCrossEntropy, get_loss, one_hot
from .scoring import PREDICT_BLOCK
from .training import FitSettings, L2Penalty, LocalStepper, first_trainable_index, fit_loop, train_step

if TYPE_CHECKING:  # annotations only
    from .distributed import Communicator
    from .losses import Loss
    from .optimizers import Optimizer

__all__ = ["forward", "predict", "train", "Sequential"]

def forward(network: Sequential | Sequence[Layer], X: Array) -> list[Array]:
    """Apply the layers in order; return the list of every layer's activation.

    The last element is the network's output (the logits).
    """
    layers = layers_of(network)
    layers[0]._check_input(X, "X")
    activations = []
    for layer in layers:
        X = layer._forward(X)
        activations.append(X)
    return activations


def predict(network: Sequential | Sequence[Layer], X: Array, *,
            batch_size: int = PREDICT_BLOCK) -> Array:
    """Predicted class indices (on the device), computed in blocks of ``batch_size`` rows."""
    layers = layers_of(network)
    layers[0]._check_input(X, "X")
    check_int(batch_size, "batch_size", low=1)
    xp = layers[0].xp
    blocks = scoring.logits_in_blocks(loss_layers(inference_layers(layers)), X, batch_size)
    scoring.check_finite_logits(layers[0].backend, blocks)  # argmax(softmax) = argmax
    preds = [xp.argmax(z, axis=1) for z in blocks]
    return preds[0] if len(preds) == 1 else xp.concat(preds)


def train(network: Sequential | Sequence[Layer], X: Array, y: Array) -> Array:
    """One SGD step on batch ``(X, y)``; returns the mean loss as a 0-d device array.

    Call ``float(loss)`` to read it (a host synchronisation on GPUs).
    """
    layers = layers_of(network)
    be = layers[0].backend
    layers[0]._check_input(X, "X")
    n_out = _n_outputs(layers)
    if n_out is None:
        raise ValueError("network has no Dense layer, so its number of classes is unknown; "
                         "end it with a Dense(n_in, n_classes) layer")
    feeds.check_labels(be, y, X.shape[0], n_out)
    onehot = one_hot(y, n_out, dtype=be.dtype, xp=be.xp)
    layers = loss_layers(layers)
    loss_sum = train_step(layers, be.xp, X, onehot, first_trainable_index(layers))
    return loss_sum / X.shape[0]


def _check_optimizer(optimizer) -> None:
    if optimizer is not None and not callable(getattr(optimizer, "update", None)):
        raise TypeError(
            f"optimizer must be an xpnet optimizer (e.g. xpnet.Adam(1e-3)), got "
            f"{optimizer!r}; by name: xpnet.get_optimizer({optimizer!r}, learning_rate)"
        )


def _check_chain(layers) -> None:
    """Consecutive Dense layers must agree: Dense(4, 8) cannot feed Dense(5, 3)."""
    width, source = None, None
    for i, layer in enumerate(layers):
        n_in = getattr(layer, "input_units", None)
        if n_in is not None and width is not None and n_in != width:
            raise ValueError(
                f"layer {i} ({layer!r}) takes {n_in} inputs but layer {source} produces "
                f"{width} outputs; make them agree"
            )
        units = getattr(layer, "output_units", None)
        if units is not None:
            width, source = units, i


def _n_outputs(layers) -> int | None:
    for layer in reversed(layers):
        units = getattr(layer, "output_units", None)
        if units is not None:
            return units
    return None


def _loop_settings(epochs, batch_size, shuffle, check_every, train_accuracy, verbose, progress,
                   history, initial_epoch) -> FitSettings:
    """``fit``'s loop policy, checked in the order the arguments come (the RNG comes later)."""
    start, count = _epoch_range(epochs, initial_epoch, history)
    return FitSettings(
        epochs=count, batch_size=check_int(batch_size, "batch_size", low=1), shuffle=_check_shuffle(shuffle),
        check_every=check_int(check_every, "check_every", low=0), rng=None,
        train_accuracy=bool(train_accuracy), verbose=_verbosity(verbose, progress),
        start_epoch=start)


def _epoch_range(epochs, initial_epoch, history) -> tuple[int, int]:
    """``(first epoch, number of epochs)``, 0-based.

    Without ``initial_epoch``, ``epochs`` more epochs numbered on from a
    continued ``history``; with it, Keras's convention: epochs
    ``initial_epoch .. epochs - 1`` (``epochs`` is the number of the last one).
    """
    epochs = check_int(epochs, "epochs", low=1)
    if initial_epoch is None:
        return (len(history) if history is not None else 0), epochs
    initial = check_int(initial_epoch, "initial_epoch", low=0)
    if initial >= epochs:
        raise ValueError(
            f"initial_epoch={initial} leaves nothing to train with epochs={epochs}: with "
            "initial_epoch, epochs is the number of the last epoch (Keras's convention), so "
            "it must be larger than initial_epoch"
        )
    return initial, epochs - initial


def _verbosity(verbose, progress) -> int:
    """Keras's ``verbose`` (0, 1, 2); ``progress=True`` is the older spelling of ``verbose=1``."""
    verbose = check_int(verbose, "verbose", low=0, high=2)
    if not progress:
        return verbose
    if verbose == 2:
        raise ValueError("progress=True means verbose=1, but verbose=2 was given: pass only "
                         "verbose=")
    return 1


def _check_trains(backend: Any) -> None:
    if not backend.trains:
        raise TypeError(f"{backend!r} is for export only (model.export_onnx): it cannot "
                        "train; fit on a training backend such as 'numpy' or 'torch' first")


def _check_shuffle(shuffle: Any) -> bool:
    """``shuffle`` is True, False or "chunks" (host data); anything else is a TypeError."""
    if isinstance(shuffle, str) and shuffle == "chunks":
        return True
    try:
        return check_bool(shuffle, "shuffle")
    except TypeError:
        raise TypeError(f"shuffle must be True, False or 'chunks' (host data), got {shuffle!r}") \
            from None


def _with_backup(callbacks: Iterable[Callback], backup_dir: Any, backup_every: Any) -> list:
    """``callbacks`` plus the :class:`~xpnet.backup.BackupAndRestore` that ``backup_dir`` asks for."""
    callbacks = list(callbacks)
    if backup_dir is not None:
        every = check_frequency(backup_every, "backup_every")
        callbacks.append(BackupAndRestore(backup_dir, save_freq=every))
    elif backup_every != "epoch":
        raise ValueError(f"backup_every={backup_every!r} needs backup_dir= (where to back up)")
    return callbacks


def _host_rng(seed: Any) -> Any:
    try:
        return as_generator(seed)
    except TypeError:
        raise TypeError(
            f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
        ) from None


@checkpoint.register_model_class
class Sequential:
    """Layers applied in order, with ``fit``/``predict``/``evaluate``.

    Parameters
    ----------
    layers : list of Layer
    backend : str or Backend, optional
        Where the model lives; layers built elsewhere are moved here once.
        Default: the first layer's backend.
    device, dtype : optional
        Passed to :func:`xpnet.get_backend` together with ``backend``.
    loss : str or Loss, default "softmax_crossentropy"
        What ``fit`` minimises and ``evaluate`` reports (:func:`xpnet.losses.get_loss`):
        ``"softmax_crossentropy"`` (integer labels), ``"mse"`` (float targets, one or
        many outputs) or ``"binary_crossentropy"`` (0/1 targets, one column per label).

    Examples
    --------
    >>> import xpnet
    >>> model = xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0)
    >>> model
    Sequential([Dense(4, 8, learning_rate=0.1), ReLU(), Dense(8, 3, learning_rate=0.1)], backend=Backend(name='numpy', device='cpu', dtype='float32'))
    """

    def __init__(self, layers: Sequential | Sequence[Layer], *, backend: BackendLike = None,
                 device: Device = None, dtype: DType = None, loss: str | Loss | None = None):
        layers = layers_of(layers)
        if backend is None and device is None and dtype is None:
            be = layers[0].backend
        else:
            be = get_backend(backend if backend is not None else layers[0].backend,
                             device=device, dtype=dtype)
        _check_chain(layers)
        self.layers = [layer.to(be) for layer in layers]
        self.backend = be
        self.loss = get_loss("softmax_crossentropy" if loss is None else loss)
        self.stop_training = False  # a callback sets it to end fit after this epoch
        self.config: dict = {}  # how the model was built (Sequential.mlp fills it)
        self.metadata: dict = {}  # what a checkpoint said about it (load fills it)
        self.checkpoint: dict = {}  # the whole header of the checkpoint it was loaded from
        # Compiled training steps, kept so that a second fit() does not re-trace.
        self.train_steps: dict = {}

    # -- construction helpers ------------------------------------------------
    @classmethod
    def mlp(cls, sizes: Sequence[int], *, learning_rate: float = 0.1,
            init: str | Initializer = "seed", seed: SeedLike = 0, backend: BackendLike = None,
            device: Device = None, dtype: DType = None,
            activation: Callable[[], Layer] | None = None,
            loss: str | Loss | None = None) -> Sequential:
        """The tutorial's MLP: Dense layers of ``sizes`` with ReLU between them.

        ``Sequential.mlp([784, 100, 200, 10])`` is the seed network. Weights are
        drawn in order from one host Generator seeded with ``seed``.
        """
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least input and output sizes, got {sizes!r}")
        be = get_backend(backend, device=device, dtype=dtype)
        rng = as_generator(seed)
        make_act = activation or (lambda: ReLU(backend=be))
        layers: list = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                layers.append(make_act())
            layers.append(Dense(a, b, learning_rate, init=init, rng=rng, backend=be))
        model = cls(layers, backend=be, loss=loss)
        model.config = {"sizes": sizes, "learning_rate": learning_rate, "init": init
                        if isinstance(init, str) else getattr(init, "__name__", "custom"),
                        "seed": seed}
        return model

    # -- container protocol (so free functions accept a Sequential) ------------
    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        return f"Sequential([{', '.join(map(repr, self.layers))}], backend={self.backend!r})"

    @property
    def n_outputs(self) -> int:
        n = _n_outputs(self.layers)
        if n is None:
            raise ValueError("the network has no Dense layer, so its number of classes is unknown")
        return n

    @property
    def n_inputs(self) -> int | None:
        for layer in self.layers:
            units = getattr(layer, "input_units", None)
            if units is not None:
                return units
        return None

    def to(self, backend=None, *, device=None, dtype=None) -> Sequential:
        """Move every layer to another backend/device/dtype, copying each parameter once.

        Between libraries on the same device (NumPy and torch on the CPU; CuPy,
        torch and JAX on one GPU) the copy is made there through DLPack, with no
        host round trip; otherwise it goes through the host.
        """
        be = get_backend(backend if backend is not None else self.backend, device=device,
                         dtype=dtype)
        self.layers = [layer.to(be) for layer in self.layers]
        self.backend = be
        return self

    # -- inference -------------------------------------------------------------
    def forward(self, X: Array) -> Array:
        """The network's output for a batch ``X`` (n, n_features), at inference.

        Layers that only act in training (Dropout) are skipped, as in
        ``predict``; the free function ``xpnet.forward(network, X)`` keeps the
        tutorial's training-mode pass with every activation.
        """
        layers = inference_layers(self.layers)
        layers[0]._check_input(X, "X")
        for layer in layers:
            X = layer._forward(X)
        return X

    __call__ = forward

    def predict_logits(self, X: Array, *, batch_size: int = PREDICT_BLOCK,
                       chunk_bytes: int | None = None) -> Array:
        """Logits for ``X`` (before a final Softmax), in blocks of ``batch_size`` rows.

        ``X`` may be host data (see :meth:`predict`).
        """
        feed = feeds.as_eval_feed(self, X, block=batch_size, method="predict_logits",
                                  chunk_bytes=chunk_bytes)
        return scoring.logits(self, feed, batch_size)

    def predict_proba(self, X: Array, *, batch_size: int = PREDICT_BLOCK,
                      chunk_bytes: int | None = None) -> Array:
        """Class probabilities ``softmax(logits)`` for ``X``, shape (n, n_classes).

        ``X`` may be host data (see :meth:`predict`).
        """
        scoring.check_has_proba(self.loss)
        feed = feeds.as_eval_feed(self, X, block=batch_size, method="predict_proba",
                                  chunk_bytes=chunk_bytes)
        return scoring.predict_proba(self, feed, batch_size)

    def predict(self, X: Array, *, batch_size: int = PREDICT_BLOCK,
                distributed: Communicator | None = None,
                chunk_bytes: int | None = None) -> Array:
        """Predicted class indices for ``X`` (a device array of integers).

        ``X`` is an array on the model's device, or *host data* (NumPy arrays of
        any real dtype, lists, DataFrames, converted to the model's dtype; a
        memory-mapped file is read and moved to the device in chunks of about
        ``chunk_bytes`` (default 256 MB) -- never whole). The result lives on
        the device. See :mod:`xpnet.feeds`.

        ``distributed``: an :mod:`xpnet.distributed` communicator; the ranks
        (which all hold the same ``X``) each predict their blocks of rows and
        every rank gets the whole result, equal to one process's.

        With another ``loss``: 0/1 per output (binary cross-entropy) or the
        outputs themselves (MSE), also with ``distributed``.
        """
        feed = feeds.as_eval_feed(self, X, block=batch_size, method="predict",
                                  chunk_bytes=chunk_bytes, distributed=distributed)
        return scoring.predict(self, feed, batch_size)

    @property
    def uses_default_loss(self) -> bool:
        """Whether the loss is the softmax cross-entropy (the seed's, with its fast paths)."""
        return type(self.loss) is SoftmaxCrossEntropy


    def evaluate(self, X: Array, y: Array, *, batch_size: int = PREDICT_BLOCK,
                 distributed: Communicator | None = None, chunk_bytes: int | None = None,
                 sample_weight: Array | None = None) -> dict[str, float]:
        """Mean loss and accuracy on ``(X, y)``: ``{"loss": float, "accuracy": float}``.

        ``sample_weight`` (an array (n,) of this backend, >= 0) weights the mean
        loss and the accuracy. For the MSE there is no accuracy.

        Host data (see :meth:`predict`) is streamed in chunks; ``y`` and
        ``sample_weight`` are then NumPy arrays too.

        ``distributed``: an :mod:`xpnet.distributed` communicator; the ranks
        (which all hold the same data) score their blocks of rows and every
        rank gets the reduced scores (accuracy exact, loss to rounding; with
        another loss or ``sample_weight`` the weighted sums and the total
        weight are added over ranks, so both are one process's to rounding).
        """
        feed = feeds.as_eval_feed(self, X, y, block=batch_size, method="evaluate",
                                  chunk_bytes=chunk_bytes, distributed=distributed,
                                  sample_weight=sample_weight)
        return scoring.scores(self, feed, batch_size)

    # -- training ----------------------------------------------------------------
    def fit(self, X: Any, y: Array | None = None, *, epochs: int = 1, batch_size: int = 32,
            shuffle: bool | str = True, seed: SeedLike = 0, verbose: int = 0,
            validation_data: tuple[Array, Array] | None = None, optimizer: Optimizer | None = None,
            callbacks: Iterable[Callback] = (), progress: bool = False, check_every: int = 100,
            train_accuracy: bool = True, history: History | None = None,
            initial_epoch: int | None = None, distributed: Communicator | None = None,
            chunk_bytes: int | None = None, sample_weight: Array | None = None,
            class_weight: str | dict | None = None, validation_split: float = 0.0,
            alpha: float = 0.0, blas_threads: int | str | None = None,
            backup_dir: Any = None, backup_every: str | int = "epoch") -> History:
        """Train with minibatch SGD (or ``optimizer``); return a :class:`History`.

        Parameters
        ----------
        X : array (n, n_features), host data, or batches
            An array on the model's device; *host data* (NumPy arrays of any real dtype,
            lists, DataFrames: converted to the model's dtype; memory-mapped files), moved in
            chunks of ``chunk_bytes`` by a background thread, never whole, to exactly the
            in-memory weights; or an iterable of ``(X_batch, y_batch[, w_batch])``
            batches (``y`` is then None). See :mod:`xpnet.feeds`.
        y : array (n,) of integer labels in ``[0, n_classes)``
            Host data (NumPy, a list, a Series) is converted too. With another ``loss``: float
            targets (MSE) or 0/1 (binary cross-entropy), (n,) or (n, n_outputs).
        epochs, batch_size : int
            As in the tutorial (25 and 32); the last incomplete batch is dropped.
        shuffle : bool or "chunks"
            Reshuffle each epoch with a permutation drawn from ``seed``.
            ``"chunks"`` (host data only, opt-in): a faster approximate shuffle
            that reads contiguous chunks in random order and shuffles rows
            within each (weights then differ from in-memory training).
        seed : int or numpy.random.Generator
            Host RNG for the batch order: the same seed, the same order on every backend.
        validation_data : (X_val, y_val), optional
            Validation accuracy is recorded after each epoch.
        optimizer : Optimizer, optional
            Replaces the layers' built-in SGD step (see :mod:`xpnet.optimizers`).
        callbacks : list of Callback
            Keras-style (:mod:`xpnet.callbacks`); ``on_train_batch_end`` turns compiled epochs off.
        check_every : int
            The loss summed on the device is read back at the end of every epoch,
            and training stops with :class:`~xpnet.errors.DivergenceError` (naming
            the epoch) if it is NaN/inf. ``check_every`` adds the same check every
            this many steps, to stop a diverged run early (0: only per epoch).
        train_accuracy : bool
            Also record the accuracy on the whole training set after each epoch.
        history : History, optional
            Continue this history (epochs are numbered on from its length).
        distributed : communicator, optional
            ``xpnet.distributed.init()`` under ``mpiexec``: synchronous data
            parallelism (see ``docs/distributed.md``). ``batch_size`` is then
            the global batch, divided by the number of ranks; every rank must
            call ``fit`` with the same data and settings. ``None`` (default):
            this process alone, with the fastest step.
        chunk_bytes : int, optional
            Host data only: bytes of rows per chunk (default about 256 MB; at least one batch).
        blas_threads : int or "auto", optional
            BLAS threads for this fit (default: ``XPNET_BLAS_THREADS``, else "auto": one
            thread for small steps, the library's own for large ones; :mod:`xpnet._threads`).
        verbose, progress : {0, 1, 2}, bool
            As Keras: 0 silent, 1 a bar (stderr) and a line per epoch (stdout), 2 the line
            only (:func:`xpnet.callbacks.format_epoch`, root rank); ``progress=True`` = ``verbose=1``.
        initial_epoch : int, optional
            As Keras: train epochs ``initial_epoch .. epochs - 1`` (0-based, ``epochs``
            then the last one's number). Default: 0, or the length of ``history``.
        backup_dir, backup_every : path, "epoch" or int
            Back the run up to ``backup_dir`` every epoch (or ``backup_every`` steps); the same
            ``fit`` continues from the last backup, exactly (:mod:`xpnet.backup`).
        sample_weight, class_weight, validation_split, alpha
            Per-sample weights >= 0 (weighted mean loss), class weights
            (``"balanced"`` or a dict), the *last* fraction held out for validation
            (as Keras) and scikit-learn's L2 penalty; see :mod:`xpnet._weights`.
            With host data, ``sample_weight`` is a NumPy array too, gathered
            chunk by chunk with the rows. Batch iterables carry their weights in
            ``(X_batch, y_batch, w_batch)`` and take ``alpha``, not
            ``sample_weight``, ``class_weight`` or ``validation_split``; ``distributed=``
            all of them, with one process's result (``docs/distributed.md``).
        """
        _check_trains(self.backend)
        weighting = {"sample_weight": sample_weight, "class_weight": class_weight,
                     "validation_split": validation_split}
        feed = feeds.as_feed(self, X, y, shuffle=shuffle, chunk_bytes=chunk_bytes,
                             distributed=distributed, validation_data=validation_data)
        if distributed is not None:  # before validating, so every rank fails together
            check_fit_agreement(distributed, self, X, y, epochs=epochs, batch_size=batch_size,
                                seed=seed, shuffle=shuffle, optimizer=optimizer,
                                validation_data=validation_data, options={**weighting, "alpha": alpha})
        settings = _loop_settings(epochs, batch_size, shuffle, check_every, train_accuracy,
                                  verbose, progress, history, initial_epoch)
        feed = feed.check(settings.batch_size)
        validation = feeds.as_validation_feed(self, validation_data, chunk_bytes)
        settings = dataclasses.replace(settings, rng=_host_rng(seed))
        # Checked on every rank: one rank's bad weights stop all of them.
        feed, validation = on_every_rank(distributed, "checking the sample weights", lambda: (
            feeds.apply_options(self, feed, validation, batch_size=settings.batch_size, **weighting)))
        callbacks = CallbackList(_with_backup(callbacks, backup_dir, backup_every))
        _check_optimizer(optimizer)
        return self._train(feeds.shard(feed, distributed), feeds.shard(validation, distributed),
                           settings, callbacks, History() if history is None else history,
                           optimizer=optimizer, alpha=alpha, distributed=distributed,
                           threads=blas_threads)

    def _train(self, feed, validation, settings: FitSettings, callbacks, history, *,
               optimizer, alpha, distributed, threads=None) -> History:
        """Attach ``optimizer`` (and the L2 penalty) for this fit and run the epoch loop."""
        previous = [layer.optimizer for layer in self.layers]
        if optimizer is not None:
            for layer in self.layers:
                if layer.param_names:
                    layer.optimizer = optimizer
        penalty = self._attach_penalty(alpha)
        stepper = (LocalStepper(self, penalty) if distributed is None
                   else DistributedStepper(self, distributed, penalty))
        try:
            # The guard reports a NaN/inf loss once, with its epoch: no warning per operation.
            with self.backend.floating_point_errors_ignored(), \
                    blas_threads_for(self.layers, settings.batch_size, threads):
                return fit_loop(self, feed, validation, stepper, settings, callbacks, history)
        finally:
            for layer, opt in zip(self.layers, previous):
                layer.optimizer = opt

    def _attach_penalty(self, alpha) -> L2Penalty | None:
        """Put an :class:`L2Penalty` in front of every layer's optimizer for this fit."""
        if not check_number(alpha, "alpha", low=0.0):
            return None
        trainable = [layer for layer in self.layers if layer.param_names]
        penalty = L2Penalty(alpha, {id(layer): layer.optimizer for layer in trainable})
        for layer in trainable:
            layer.optimizer = penalty
        return penalty

    # -- introspection -------------------------------------------------------------
    def n_params(self) -> int:
        return sum(layer.n_params() for layer in self.layers)

    def summary(self, input_shape: int | tuple | None = None) -> str:
        """A table of layers, output shapes and parameter counts (returned as text).

        ``input_shape`` is one sample's shape, e.g. ``(28, 28)`` before a
        Flatten; by default the first Dense layer's input size.
        """
        if input_shape is None:
            input_shape = (self.n_inputs if self.n_inputs is not None else "?",)
        elif isinstance(input_shape, int):
            input_shape = (input_shape,)
        shape: tuple = ("n", *input_shape)
        rows = [("#", "layer", "output shape", "params")]
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape_for(shape))
            except (TypeError, ValueError):  # a size that is not known here
                shape = ("n", "?")
            rows.append((str(i), repr(layer), "(" + ", ".join(map(str, shape)) + ")",
                         f"{layer.n_params():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) if c < 3 else cell.rjust(w)
                           for c, (cell, w) in enumerate(zip(r, widths))) for r in rows]
        rule = "-" * len(lines[0])
        text = "\n".join([lines[0], rule, *lines[1:], rule,
                          f"total params: {self.n_params():,}   backend: {self.backend!r}"])
        return text

    # -- persistence (see xpnet.checkpoint) ------------------------------------------
    def save(self, path, **metadata) -> None:
        """Save architecture, weights and metadata to one ``.npz`` file (atomically).

        ``metadata``: JSON-serialisable keyword arguments, read back as
        ``Sequential.load(path).metadata``.
        """
        config = self.config if self.uses_default_loss else {**self.config, "loss": self.loss.name}
        checkpoint.save_layers(path, self.layers, self.backend, model_config=config,
                               metadata=metadata)

    @classmethod
    def load(cls, path, *, backend=None, device=None, dtype=None) -> Sequential:
        """Load a model saved by :meth:`save` onto any backend (see :func:`xpnet.checkpoint.load_model`)."""
        layers, be, header = checkpoint.load_layers(path, backend=backend, device=device,
                                                    dtype=dtype)
        try:
            model = cls(layers, backend=be)
        except ValueError as exc:  # e.g. Dense(4, 8) followed by Dense(5, 3)
            raise CheckpointError(f"{path!s}: the stored layers do not form a network: {exc}") \
                from None
        model.config = dict(header.get("model_config") or {})
        if "loss" in model.config:  # saved only when it is not the default
            model.loss = get_loss(model.config["loss"])
        model.metadata = dict(header.get("metadata") or {})
        model.checkpoint = header
        return model

    def export_onnx(self, path, *, output="logits", batch_size=None, input_shape=None) -> None:
        """Write the model as an ONNX file (see :func:`xpnet.export.export_onnx`)."""
        from .onnx_graph import export_onnx  # ndonnx is imported when it runs
        export_onnx(self, path, output=output, batch_size=batch_size, input_shape=input_shape)
