"""A network is a list of layers: the tutorial's free functions and ``Sequential``.

The free functions (:func:`forward`, :func:`predict`, :func:`train`) accept a
plain ``list`` of layers, exactly as in the tutorial, or a :class:`Sequential`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import checkpoint, streaming
from ._distributed_fit import (
    check_fit_agreement,
    check_inputs_agree,
    check_same_weights,
    distributed_epoch_runner,
    on_every_rank,
    sharded_predict,
    sharded_scores,
)
from ._random import as_generator
from ._typing import Array, BackendLike, Device, DType, Initializer, SeedLike
from ._validation import check_int, check_number
from ._weights import (
    check_sample_weight,
    class_weight_factors,
    loss_scores,
    validation_split_index,
)
from .backends import get_backend
from .callbacks import Callback, CallbackList, History
from .errors import CheckpointError, ShapeError
from .layers import Dense, ReLU
from .layers.base import Layer, layers_of
from .losses import (
    BinaryCrossEntropy,
    MeanSquaredError,
    SoftmaxCrossEntropy,
    _sigmoid,
    _xent_sum_and_grad,
    get_loss,
    log_softmax,
    one_hot,
)
from .training import (
    FitSettings,
    L2Penalty,
    first_trainable_index,
    fit_loop,
    loss_layers,
    train_step,
)

if TYPE_CHECKING:  # annotations only
    from .distributed import Communicator
    from .losses import Loss
    from .optimizers import Optimizer

__all__ = ["forward", "predict", "train", "Sequential"]

#: Rows per block in prediction: large enough to keep the BLAS busy, small
#: enough that the (block, hidden) activations stay in cache.
PREDICT_BLOCK = 1024


def _check_labels(be, y, n_samples: int, n_classes: int | None, name: str = "y"):
    """Shape, dtype and (one read-back) range check of integer labels."""
    be.check_array(y, name, ndim=1, kind="integral")
    if y.shape[0] != n_samples:
        raise ShapeError(
            f"{name} must have one label per sample: expected shape ({n_samples},), "
            f"got {tuple(y.shape)}"
        )
    if n_classes is not None and n_samples:
        xp = be.xp
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name} must hold class indices in [0, {n_classes - 1}] (the network has "
                f"{n_classes} outputs), got values from {lo} to {hi}"
            )


def _check_finite_logits(be, logits_blocks, name: str = "X") -> None:
    """One read-back per call: NaN/inf inputs (or weights) must not become silent argmaxes."""
    xp = be.xp
    finite = [xp.all(xp.isfinite(z)) for z in logits_blocks]
    if not bool(xp.all(xp.stack(finite)) if len(finite) > 1 else finite[0]):
        raise ValueError(
            f"the network produced NaN or infinite outputs for {name}: check {name} for "
            "NaN/inf values (xp.isfinite) and the model for diverged weights"
        )


def _all_finite(xp, X) -> bool:
    """Whether X has no NaN/inf: a sum (no boolean temporary) first, exact check if in doubt."""
    total = float(xp.sum(X))
    if total == total and abs(total) != float("inf"):
        return True  # any NaN or inf element would have made the sum NaN or inf
    return bool(xp.all(xp.isfinite(X)))  # the sum may just have overflowed


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


def _logits_in_blocks(layers, X, block: int):
    """Logits block by block (callers check them with :func:`_check_finite_logits`,
    so NumPy's overflow warnings would only repeat that error)."""
    n = X.shape[0]
    outs = []
    with layers[0].backend.floating_point_errors_ignored():
        for lo in range(0, max(n, 1), block):
            # The standard forbids out-of-range slice stops: clamp to n.
            out = X[lo:min(lo + block, n), ...] if n > block else X
            for layer in layers:
                out = layer._forward(out)
            outs.append(out)
            if n <= block:
                break
    return outs


def predict(network: Sequential | Sequence[Layer], X: Array, *,
            batch_size: int = PREDICT_BLOCK) -> Array:
    """Predicted class indices (on the device), computed in blocks of ``batch_size`` rows."""
    layers = layers_of(network)
    layers[0]._check_input(X, "X")
    _check_block(batch_size)
    xp = layers[0].xp
    blocks = _logits_in_blocks(loss_layers(_eval_mode(layers)), X, batch_size)  # argmax(softmax) = argmax
    _check_finite_logits(layers[0].backend, blocks)
    preds = [xp.argmax(z, axis=1) for z in blocks]
    return preds[0] if len(preds) == 1 else xp.concat(preds)


def _check_not_distributed(distributed, what: str) -> None:
    if distributed is not None:
        raise NotImplementedError(
            f"{what}(distributed=...) takes arrays on the model's device; host data and "
            "batch iterables are streamed by one process only (for now)"
        )


def _is_host_pair(backend, pair) -> bool:
    return (isinstance(pair, (tuple, list)) and len(pair) == 2
            and streaming.is_host_array(backend, pair[0]))


def _check_batch_fits(batch_size: int, n_samples: int) -> None:
    if batch_size > n_samples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n_samples} training samples; "
            "every batch would be dropped"
        )


def _check_block(batch_size) -> None:
    check_int(batch_size, "batch_size", low=1)


def _eval_mode(layers):
    return [layer for layer in layers if not getattr(layer, "identity_in_eval", False)]


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
    _check_labels(be, y, X.shape[0], n_out)
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
        self._train_steps: dict = {}

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
        layers = _eval_mode(self.layers)
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
        if streaming.is_host_array(self.backend, X):
            _check_block(batch_size)
            data = streaming.HostData.of(self, X, chunk_bytes=chunk_bytes)
            return streaming.host_logits(self, data, batch_size)
        self.layers[0]._check_input(X, "X")
        _check_block(batch_size)
        outs = _logits_in_blocks(loss_layers(_eval_mode(self.layers)), X, batch_size)
        _check_finite_logits(self.backend, outs)
        return outs[0] if len(outs) == 1 else self.backend.xp.concat(outs, axis=0)

    def predict_proba(self, X: Array, *, batch_size: int = PREDICT_BLOCK,
                      chunk_bytes: int | None = None) -> Array:
        """Class probabilities ``softmax(logits)`` for ``X``, shape (n, n_classes).

        ``X`` may be host data (see :meth:`predict`).
        """
        xp = self.backend.xp
        if isinstance(self.loss, MeanSquaredError):
            raise TypeError("predict_proba needs a classification loss; this model minimises "
                            "the mean squared error: use predict")
        logits = self.predict_logits(X, batch_size=batch_size, chunk_bytes=chunk_bytes)
        if isinstance(self.loss, BinaryCrossEntropy):
            return _sigmoid(xp, logits)  # one probability per output
        return xp.exp(log_softmax(logits, xp=xp))

    def predict(self, X: Array, *, batch_size: int = PREDICT_BLOCK,
                distributed: Communicator | None = None,
                chunk_bytes: int | None = None) -> Array:
        """Predicted class indices for ``X`` (a device array of integers).

        ``X`` is an array on the model's device, or *host data*: a NumPy array
        (on a non-NumPy backend) or a ``np.memmap`` (on any backend), which is
        read and moved to the device in chunks of about ``chunk_bytes``
        (default 256 MB) -- never whole. The result lives on the device. See
        :mod:`xpnet.streaming`.

        ``distributed``: an :mod:`xpnet.distributed` communicator; the ranks
        (which all hold the same ``X``) each predict their blocks of rows and
        every rank gets the whole result, equal to one process's.

        With another ``loss``: 0/1 per output (binary cross-entropy) or the
        outputs themselves (MSE), also with ``distributed``.
        """
        if streaming.is_host_array(self.backend, X):
            _check_not_distributed(distributed, "predict")
        if distributed is not None:
            check_inputs_agree(distributed, X, batch_size=batch_size, what="prediction inputs")
            self.layers[0]._check_input(X, "X")
            _check_block(batch_size)
            return sharded_predict(self, X, batch_size, distributed)
        if not self._default_loss:
            logits = self.predict_logits(X, batch_size=batch_size, chunk_bytes=chunk_bytes)
            return self.loss.predict(self.backend.xp, logits)
        if streaming.is_host_array(self.backend, X):
            _check_block(batch_size)
            data = streaming.HostData.of(self, X, chunk_bytes=chunk_bytes)
            return streaming.host_predict(self, data, batch_size)
        return predict(self, X, batch_size=batch_size)

    def _logit_blocks(self, X, batch_size: int) -> list:
        """Logits of device array ``X`` block by block, checked for NaN/inf."""
        blocks = _logits_in_blocks(loss_layers(_eval_mode(self.layers)), X, batch_size)
        _check_finite_logits(self.backend, blocks)
        return blocks

    @property
    def _default_loss(self) -> bool:
        """Whether the loss is the softmax cross-entropy (the seed's, with its fast paths)."""
        return type(self.loss) is SoftmaxCrossEntropy

    def _accuracy(self, X, y, batch_size: int = PREDICT_BLOCK) -> float | None:
        if not self._default_loss:  # None for the MSE
            return loss_scores(self, X, y, batch_size).get("accuracy")
        xp = self.backend.xp
        hits = predict(self, X, batch_size=batch_size) == y
        return float(xp.mean(xp.astype(hits, self.backend.dtype)))

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
        if not self._default_loss or sample_weight is not None:
            if streaming.is_host_array(self.backend, X):
                _check_not_distributed(distributed, "evaluate")
                return self._evaluate_host_with_loss(X, y, batch_size, sample_weight, chunk_bytes)
            return self._evaluate_with_loss(X, y, batch_size, sample_weight, distributed)
        if streaming.is_host_array(self.backend, X):
            _check_not_distributed(distributed, "evaluate")
            _check_block(batch_size)
            data = streaming.HostData.of(self, X, y, chunk_bytes=chunk_bytes)
            if data.n == 0:
                raise ValueError("X and y are empty: there is nothing to evaluate")
            return self._scores(data, None, batch_size)
        if distributed is not None:
            check_inputs_agree(distributed, X, y, batch_size=batch_size, what="evaluation data")
        self.layers[0]._check_input(X, "X")
        _check_labels(self.backend, y, X.shape[0], self.n_outputs)
        _check_block(batch_size)
        if X.shape[0] == 0:
            raise ValueError("X and y are empty: there is nothing to evaluate")
        if distributed is not None:
            return sharded_scores(self, X, y, batch_size, distributed)
        return self._scores(X, y, batch_size)

    def _evaluate_host_with_loss(self, X, y, batch_size, sample_weight, chunk_bytes) -> dict:
        """``evaluate`` of host data for another loss or with (host) sample weights."""
        _check_block(batch_size)
        data = streaming.HostData.of(self, X, y, chunk_bytes=chunk_bytes)
        if data.n == 0:
            raise ValueError("X and y are empty: there is nothing to evaluate")
        weights = streaming.host_sample_weight(sample_weight, data.n)
        if weights is not None:
            data = dataclasses.replace(data, extras={"sample_weight": weights})
        return streaming.host_loss_scores(self, data, batch_size)

    def _evaluate_with_loss(self, X, y, batch_size, sample_weight, distributed) -> dict:
        """``evaluate`` of device arrays for another loss or with sample weights."""
        if distributed is not None:
            check_inputs_agree(distributed, X, y, batch_size=batch_size, what="evaluation data",
                               sample_weight=sample_weight)
        self.layers[0]._check_input(X, "X")
        self._check_targets(y, X.shape[0])
        _check_block(batch_size)
        if X.shape[0] == 0:
            raise ValueError("X and y are empty: there is nothing to evaluate")
        host = on_every_rank(distributed, "checking the sample weights", lambda:
                             check_sample_weight(self.backend, sample_weight, X.shape[0]))
        weights = None if host is None else self.backend.asarray(host)
        if distributed is None:
            return loss_scores(self, X, y, batch_size, weights)
        if host is not None:
            check_same_weights(distributed, host)
        return sharded_scores(self, X, y, batch_size, distributed, weights)

    def _check_targets(self, y, n_samples: int, name: str = "y"):
        """Validate ``y`` for the model's loss; return its dense targets (None: labels)."""
        if self._default_loss:  # the seed's checks and messages
            _check_labels(self.backend, y, n_samples, self.n_outputs, name)
            return None
        targets = self.loss.prepare_targets(self.backend, y, self.n_outputs, name)
        if targets.shape[0] != n_samples:
            raise ShapeError(f"{name} must have one row per sample: expected {n_samples} rows, "
                             f"got shape {tuple(y.shape)}")
        return targets

    def _scores(self, X, y, batch_size: int = PREDICT_BLOCK) -> dict:
        """Loss and accuracy, unchecked (two read-backs in all)."""
        if isinstance(X, streaming.HostData):  # host data carries its labels
            return streaming.host_scores(self, X, batch_size)
        if not self._default_loss:
            return loss_scores(self, X, y, batch_size)
        be = self.backend
        xp = be.xp
        total = be.zeros(())
        hits = be.zeros(())
        blocks = _logits_in_blocks(loss_layers(_eval_mode(self.layers)), X, batch_size)
        _check_finite_logits(be, blocks)
        for i, z in enumerate(blocks):
            lo = i * batch_size
            yb = y[lo:lo + z.shape[0]]  # in range: z has at most n - lo rows
            onehot = one_hot(yb, z.shape[1], dtype=be.dtype, xp=xp)
            loss_sum, _ = _xent_sum_and_grad(xp, z, onehot)
            total = total + loss_sum
            hits = hits + xp.sum(xp.astype(xp.argmax(z, axis=1) == yb, be.dtype))
        n = max(X.shape[0], 1)
        return {"loss": float(total) / n, "accuracy": float(hits) / n}

    # -- training ----------------------------------------------------------------
    def fit(self, X: Any, y: Array | None = None, *, epochs: int = 1, batch_size: int = 32,
            shuffle: bool | str = True, seed: SeedLike = 0,
            validation_data: tuple[Array, Array] | None = None,
            optimizer: Optimizer | None = None, callbacks: Iterable[Callback] = (),
            progress: bool = False, check_every: int = 100, train_accuracy: bool = True,
            history: History | None = None, distributed: Communicator | None = None,
            chunk_bytes: int | None = None, sample_weight: Array | None = None,
            class_weight: str | dict | None = None, validation_split: float = 0.0,
            alpha: float = 0.0) -> History:
        """Train with minibatch SGD (or ``optimizer``); return a :class:`History`.

        Parameters
        ----------
        X : array (n, n_features) of the model's dtype, host data, or batches
            An array on the model's device (the in-memory path); or *host data*:
            a NumPy array (on a non-NumPy backend) or a ``np.memmap`` /
            ``np.load(path, mmap_mode="r")`` (on any backend), in the model's
            dtype, which is moved to the device in chunks of about
            ``chunk_bytes`` while the next chunk is read on a background thread
            -- the one input mode that moves data, and it never copies it whole.
            Training from host data gives exactly the weights of training from
            the same data in memory, with any loss and every option below. Or an
            iterable of ``(X_batch, y_batch)`` pairs or ``(X_batch, y_batch,
            w_batch)`` triples with sample weights (``y`` is then None), see
            :class:`xpnet.streaming.BatchSource`.
        y : array (n,) of integer labels in ``[0, n_classes)``
            A NumPy array when ``X`` is host data. With another ``loss``: float
            targets (MSE) or 0/1 (binary cross-entropy), (n,) or (n, n_outputs).
        epochs, batch_size : int
            As in the tutorial (25 and 32); the last incomplete batch is dropped.
        shuffle : bool or "chunks"
            Reshuffle each epoch with a permutation drawn from ``seed``.
            ``"chunks"`` (host data only, opt-in): a faster approximate shuffle
            that reads contiguous chunks in random order and shuffles rows
            within each (weights then differ from in-memory training).
        seed : int or numpy.random.Generator
            Host RNG for the batch order: the same seed gives the same order on
            every backend.
        validation_data : (X_val, y_val), optional
            Validation accuracy is recorded after each epoch.
        optimizer : Optimizer, optional
            Replaces the layers' built-in SGD step (see :mod:`xpnet.optimizers`).
        callbacks : list of Callback
        progress : bool
            Show one tqdm bar per epoch.
        check_every : int
            The loss summed on the device is read back at the end of every
            epoch, and training stops with :class:`~xpnet.errors.DivergenceError`
            (naming the epoch) if it is NaN/inf. ``check_every`` adds the same
            check every this many steps within an epoch, to stop a diverged run
            early; 0 leaves only the end-of-epoch check.
        train_accuracy : bool
            Also record accuracy on the whole training set after each epoch (as
            the tutorial does).
        history : History, optional
            Continue this history (epochs are numbered on from its length).
        distributed : communicator, optional
            ``xpnet.distributed.init()`` under ``mpiexec``: synchronous data
            parallelism (see ``docs/distributed.md``). ``batch_size`` is then
            the global batch, divided by the number of ranks; every rank must
            call ``fit`` with the same data and settings. ``None`` (default):
            this process alone, with the fastest step.
        chunk_bytes : int, optional
            Host data only: bytes of rows per chunk (default about 256 MB; at
            least one batch). Two chunks are in memory at once.
        sample_weight, class_weight, validation_split, alpha
            Per-sample weights >= 0 (weighted mean loss), class weights
            (``"balanced"`` or a dict), the *last* fraction held out for validation
            (as Keras) and scikit-learn's L2 penalty; see :mod:`xpnet._weights`.
            With host data, ``sample_weight`` is a NumPy array too, gathered
            chunk by chunk with the rows. Batch iterables carry their weights in
            ``(X_batch, y_batch, w_batch)`` and take ``alpha``, not
            ``sample_weight``, ``class_weight`` or ``validation_split``. With
            ``distributed=`` (device arrays) all of them and any loss, with one
            process's result on the whole data (``docs/distributed.md``).
        """
        stream = self._training_stream(X, y, chunk_bytes, shuffle)
        options = {"sample_weight": sample_weight, "class_weight": class_weight,
                   "validation_split": validation_split, "alpha": alpha}
        if stream is not None or _is_host_pair(self.backend, validation_data):
            _check_not_distributed(distributed, "fit")
        if distributed is not None:  # before validating, so every rank fails together
            check_fit_agreement(distributed, self, X, y, epochs=epochs, batch_size=batch_size,
                                seed=seed, shuffle=shuffle, optimizer=optimizer,
                                validation_data=validation_data, options=options)
        settings = self._fit_settings(
            X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle, seed=seed,
            validation_data=validation_data, progress=progress, check_every=check_every,
            train_accuracy=train_accuracy, start_epoch=len(history) if history is not None else 0,
            stream=stream, chunk_bytes=chunk_bytes)
        # Checked on every rank: one rank's bad weights stop all of them.
        settings, X, y, stream = on_every_rank(distributed, "checking the sample weights", lambda:
                                               self._apply_fit_options(settings, X, y, stream,
                                                                       options))
        if distributed is not None:
            settings = dataclasses.replace(settings, distributed=distributed)
        callbacks = CallbackList(callbacks)
        _check_optimizer(optimizer)
        return self._train(X, y, settings, callbacks, History() if history is None else history,
                           stream=stream, optimizer=optimizer, alpha=alpha)

    def _train(self, X, y, settings: FitSettings, callbacks, history, *, stream, optimizer,
               alpha) -> History:
        """Attach ``optimizer`` (and the L2 penalty) for this fit and run the epoch loop."""
        previous = [layer.optimizer for layer in self.layers]
        if optimizer is not None:
            for layer in self.layers:
                if layer.param_names:
                    layer.optimizer = optimizer
        settings = self._attach_penalty(settings, alpha)
        try:
            # The guard reports a NaN/inf loss once, with its epoch: no warning per operation.
            with self.backend.floating_point_errors_ignored():
                if stream is not None:  # host data or batches: xpnet.streaming
                    return fit_loop(self, X, y, settings, callbacks, history,
                                    epoch_runner=streaming.epoch_runner(stream))
                if settings.distributed is None:
                    return fit_loop(self, X, y, settings, callbacks, history)
                return fit_loop(self, X, y, settings, callbacks, history,
                                epoch_runner=distributed_epoch_runner)
        finally:
            for layer, opt in zip(self.layers, previous):
                layer.optimizer = opt

    def _attach_penalty(self, settings: FitSettings, alpha) -> FitSettings:
        """Put an :class:`L2Penalty` in front of every layer's optimizer for this fit."""
        if not check_number(alpha, "alpha", low=0.0):
            return settings
        trainable = [layer for layer in self.layers if layer.param_names]
        penalty = L2Penalty(alpha, {id(layer): layer.optimizer for layer in trainable})
        for layer in trainable:
            layer.optimizer = penalty
        return dataclasses.replace(settings, penalty=penalty)

    def _with_fit_options(self, settings: FitSettings, X, y, *, sample_weight, class_weight,
                          validation_split, alpha):
        """Targets, weights and the validation split of an in-memory fit (checked once).

        Returns the settings and the training part of ``X``/``y``.
        """
        be = self.backend
        targets = None if self._default_loss else self.loss.prepare_targets(
            be, y, self.n_outputs)
        weights = check_sample_weight(be, sample_weight, X.shape[0])
        factors = class_weight_factors(be, y, self.loss, class_weight, self.n_outputs)
        if factors is not None:
            weights = factors if weights is None else weights * factors
        split_at = validation_split_index(validation_split, X.shape[0],
                                          settings.validation_data is not None)
        validation_data = settings.validation_data
        if split_at is not None:  # Keras: the last fraction, before any shuffling
            validation_data = (X[split_at:, ...], y[split_at:, ...])
            X, y = X[:split_at, ...], y[:split_at, ...]
            targets = None if targets is None else targets[:split_at, ...]
            weights = None if weights is None else weights[:split_at]
            _check_batch_fits(settings.batch_size, X.shape[0])
        return dataclasses.replace(
            settings, validation_data=validation_data, targets=targets,
            # None keeps the seed's fused kernel; weights need the loss object.
            loss=None if self._default_loss and weights is None else self.loss,
            sample_weight=None if weights is None else be.asarray(weights),
            host_weight=weights), X, y

    def _apply_fit_options(self, settings: FitSettings, X, y, stream, options: dict):
        """``fit``'s weights, split and loss for its data: device arrays, host data or batches."""
        if stream is None:
            settings, X, y = self._with_fit_options(settings, X, y, **options)
        elif isinstance(stream, streaming.HostData):
            settings, stream = self._with_host_options(settings, stream, **options)
        else:
            streaming.check_batch_options(**options)
        return settings, X, y, stream

    def _with_host_options(self, settings: FitSettings, data, *, sample_weight, class_weight,
                           validation_split, alpha):
        """:meth:`_with_fit_options` for host data: the same checks and the same split.

        The weights (class weights folded in) are checked on the host once and kept
        there, n float64 numbers like the epoch's permutation; each chunk gathers its
        rows of them. Returns the settings and the training part of ``data``.
        """
        weights = streaming.host_sample_weight(sample_weight, data.n)
        factors = class_weight_factors(streaming._host_backend(), data.y, self.loss,
                                       class_weight, self.n_outputs)
        if factors is not None:
            weights = factors if weights is None else weights * factors
        split_at = validation_split_index(validation_split, data.n,
                                          settings.validation_data is not None)
        validation_data = settings.validation_data
        if split_at is not None:  # Keras: the last fraction, before any shuffling
            validation_data = (dataclasses.replace(data, X=data.X[split_at:, ...],
                                                   y=data.y[split_at:, ...]), None)
            data = dataclasses.replace(data, X=data.X[:split_at, ...], y=data.y[:split_at, ...])
            weights = None if weights is None else weights[:split_at]
            _check_batch_fits(settings.batch_size, data.n)
        if weights is not None:
            data = dataclasses.replace(data, extras={**data.extras, "sample_weight": weights})
        return dataclasses.replace(
            settings, validation_data=validation_data, host_weight=weights,
            loss=None if self._default_loss and weights is None else self.loss), data

    def _training_stream(self, X, y, chunk_bytes, shuffle=True):
        """Host data or batches to stream (:mod:`xpnet.streaming`); None for device arrays."""
        chunkwise = isinstance(shuffle, str) and shuffle == "chunks"
        if streaming.is_host_array(self.backend, X):
            return streaming.HostData.of(self, X, y, chunk_bytes=chunk_bytes,
                                         shuffle_chunks=chunkwise)
        if chunkwise:
            raise ValueError("shuffle='chunks' (the approximate shuffle) is for host data "
                             "(a NumPy array or np.memmap); use shuffle=True here")
        if streaming.BatchSource.accepts(X):
            if y is not None:
                raise TypeError(
                    f"X is a {type(X).__name__}, which fit takes as an iterable of (X_batch, "
                    f"y_batch[, w_batch]) batches, so y must be None (got {type(y).__name__}); for samples "
                    "in a list, convert them first with backend.asarray(X)"
                )
            return streaming.BatchSource(self, X)
        return None

    def _fit_settings(self, X, y, *, epochs, batch_size, shuffle, seed, validation_data,
                      progress, check_every, train_accuracy, start_epoch, stream=None,
                      chunk_bytes=None) -> FitSettings:
        """Check fit's arguments and data once; the epoch loop trusts the result."""
        epochs = check_int(epochs, "epochs", low=1)
        batch_size = check_int(batch_size, "batch_size", low=1)
        check_every = check_int(check_every, "check_every", low=0)
        if stream is None:
            self._check_fit_arrays(X, y, batch_size)
        elif isinstance(stream, streaming.HostData):
            _check_batch_fits(batch_size, stream.n)
        if validation_data is not None:
            validation_data = self._check_validation_data(validation_data, chunk_bytes)
        try:
            rng = as_generator(seed)
        except TypeError:
            raise TypeError(
                f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
            ) from None
        return FitSettings(epochs=epochs, batch_size=batch_size, shuffle=bool(shuffle), rng=rng,
                           check_every=check_every, train_accuracy=bool(train_accuracy),
                           progress=bool(progress), validation_data=validation_data,
                           start_epoch=start_epoch)

    def _check_fit_arrays(self, X, y, batch_size: int) -> None:
        """Training arrays on the device: shapes, dtypes, labels, NaN/inf (once per fit)."""
        be = self.backend
        self.layers[0]._check_input(X, "X")
        self._check_targets(y, X.shape[0])
        if not _all_finite(be.xp, X):  # once per fit, not per step
            raise ValueError(
                "X contains NaN or infinite values; training on them would make every "
                "weight NaN. Clean or impute them first (xp.isfinite(X) finds them)."
            )
        _check_batch_fits(batch_size, X.shape[0])

    def _check_validation_data(self, validation_data, chunk_bytes=None) -> tuple:
        try:
            vx, vy = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        if streaming.is_host_array(self.backend, vx):  # scored chunk by chunk
            names = ("validation_data[0]", "validation_data[1]")
            return streaming.HostData.of(self, vx, vy, chunk_bytes=chunk_bytes, names=names), None
        self.layers[0]._check_input(vx, "validation_data[0]")
        self._check_targets(vy, vx.shape[0], "validation_data[1]")
        return vx, vy

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
        config = self.config if self._default_loss else {**self.config, "loss": self.loss.name}
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
