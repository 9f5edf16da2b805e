"""Data bigger than memory: host NumPy arrays streamed to the device in chunks.

This is xpnet's one explicit input mode that moves data: ``fit``, ``predict``,
``predict_proba``, ``predict_logits`` and ``evaluate`` accept host NumPy data
(``np.ndarray``, ``np.memmap``, ``np.load(path, mmap_mode="r")``) on every
backend. Which inputs are *host data* is decided by type alone
(:func:`is_host_array`):

* on a non-NumPy backend (torch, JAX, CuPy, array-api-strict), any NumPy array;
* on the NumPy backend, a ``np.memmap`` (an in-memory ``np.ndarray`` is already
  on the model's device and keeps the in-memory path).

Host data is never copied whole. Rows are gathered into chunks of about
``chunk_bytes`` (default :data:`DEFAULT_CHUNK_BYTES`), each moved to the device
once, while a background thread prepares the next chunk. With ``shuffle`` the
epoch's global permutation is the very one in-memory training draws from the
same seed: each chunk holds the next rows of that permutation, read from the
host array in increasing row order (friendly to disks and the page cache),
then put back in permutation order. So a model trained from a memmap ends with
exactly the weights it gets from the same data in memory.

Every loss and every option of ``fit`` work on host data as in memory: the
targets of another loss (a NumPy array, checked block by block by the loss
itself) are gathered in the model's dtype; ``sample_weight`` (a NumPy array)
is checked, has the class weights folded in and is kept on the host as n
float64 numbers (like the epoch's permutation), and each chunk gathers its rows
(``HostData.extras``); ``alpha`` and ``validation_split`` (the last rows, as
views of the host arrays) work unchanged. ``evaluate`` takes host weights too.

Arrays of another library, or on another device, are still refused, never
moved silently. Data produced on the fly is trained from with an iterable of
``(X_batch, y_batch)`` pairs or ``(X_batch, y_batch, w_batch)`` triples
(:class:`BatchSource`).

Capability for later: on CUDA backends the chunk copy could use pinned host
buffers and a separate stream; today it is a plain ``asarray`` on the loader
thread, which overlaps with training on the CPU backends only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from ._typing import Array, DType, Namespace
from ._validation import check_int
from ._weights import check_sample_weight, score_blocks
from .backends import get_backend
from .errors import DTypeError, ShapeError
from .losses import _as_matrix, _check_target_rows, _xent_sum_and_grad, one_hot
from .training import (
    _cached_step,
    _guard,
    _progress,
    _trained_weight,
    first_trainable_index,
    loss_layers,
)

if TYPE_CHECKING:
    from .backends import Backend
    from .training import FitSettings

#: ``fit_loop``'s ``epoch_runner(model, X, y, settings) -> run_epoch(epoch) -> logs``.
EpochRunner = Callable[[Any, Any, Any, "FitSettings"], Callable[[int], dict]]

__all__ = ["DEFAULT_CHUNK_BYTES", "is_host_array", "HostData", "BatchSource"]

#: Bytes of host rows per chunk moved to the device at once (about 256 MB).
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: Sorted reads go through a temporary of at most this many bytes.
_GATHER_BYTES = 8 * 2**20


def is_host_array(backend: Backend, x: Any) -> bool:
    """Whether ``x`` is host NumPy data that ``backend`` streams in chunks.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> is_host_array(be, np.zeros((2, 3))), is_host_array(be, np.zeros(6).view(np.memmap))
    (False, True)
    """
    if not isinstance(x, np.ndarray) or isinstance(x, np.matrix):
        return False
    return isinstance(x, np.memmap) or not backend.owns(x)


def _numpy_dtype(backend: Backend, dtype: DType) -> np.dtype:
    """The NumPy dtype that ``backend`` stores as ``dtype`` (read from a one-element array)."""
    return backend.to_numpy(backend.zeros((1,), dtype=dtype)).dtype


# -- host data: validation --------------------------------------------------------------

@dataclass(frozen=True)
class HostData:
    """Validated host arrays with one row per sample, streamed together.

    Build it with :meth:`HostData.of`. ``extras`` are further per-sample host
    numbers gathered with the same rows as ``X`` and ``y`` and moved to the
    device in the model's dtype: ``fit`` and ``evaluate`` put the checked
    sample weights there (float64, class weights folded in), and each chunk
    then carries ``chunk.extras["sample_weight"]``.
    """

    X: np.ndarray
    y: np.ndarray | None
    chunk_bytes: int
    extras: dict = field(default_factory=dict)
    #: ``fit(shuffle="chunks")``: the approximate, faster shuffle (:func:`chunkwise_permutation`).
    shuffle_chunks: bool = False
    #: ``y`` holds the dense targets of another loss (MSE, binary cross-entropy), gathered in
    #: the model's dtype as (rows, n_outputs); otherwise integer class labels.
    dense: bool = False

    @classmethod
    def of(cls, model: Any, X: np.ndarray, y: np.ndarray | None = None, *,
           chunk_bytes: int | None = None, names: tuple[str, str] = ("X", "y"),
           extras: dict[str, np.ndarray] | None = None,
           shuffle_chunks: bool = False) -> HostData:
        """Check host ``X`` (and labels ``y``) against ``model``; raise a clear error if wrong."""
        chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else check_int(
            chunk_bytes, "chunk_bytes", low=1)
        _check_host_X(model, X, names[0])
        dense = not model._default_loss
        if y is not None:
            check = _check_host_targets if dense else _check_host_labels
            y = check(model, y, X.shape[0], names[1])
        for name, column in (extras or {}).items():
            _check_host_column(column, X.shape[0], name)
        return cls(X, y, chunk_bytes, dict(extras or {}), bool(shuffle_chunks), dense)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def rows_per_chunk(self, multiple: int) -> int:
        """Rows per chunk: a multiple of ``multiple`` (batches never straddle chunks)."""
        columns = [self.X, *([self.y] if self.y is not None else []), *self.extras.values()]
        row_bytes = sum(c.itemsize * (c.size // max(c.shape[0], 1)) for c in columns)
        rows = self.chunk_bytes // max(row_bytes, 1)
        return max(multiple, rows // multiple * multiple)


def _check_host_X(model: Any, X: np.ndarray, name: str) -> None:
    """Dtype and per-sample shape of host features, without reading them."""
    be = model.backend
    want = _numpy_dtype(be, be.dtype)
    if X.dtype != want:
        raise DTypeError(
            f"{name} is host data ({type(X).__name__}) of dtype {X.dtype}, but the model "
            f"computes in {be.dtype_name}; host data is streamed as it is stored: convert "
            f"it once (np.asarray({name}, dtype=np.{want.name}), or write the memmap in "
            f"{want.name}) or build the model with dtype={X.dtype.name!r}"
        )
    if X.ndim == 0:
        raise ShapeError(f"{name} must be an array of samples, got a 0-d array")
    probe = be.asarray(np.zeros((0, *X.shape[1:]), dtype=want))  # no data read
    try:
        model.layers[0]._check_input(probe, name)
    except ShapeError as exc:
        raise ShapeError(f"{name} is host data of shape {tuple(X.shape)} that does not fit "
                         f"the model ({exc})") from None


def _check_host_labels(model: Any, y: Any, n_samples: int, name: str) -> np.ndarray:
    """Host labels: 1-D integers, one per sample, in ``[0, n_classes)`` (one pass over y)."""
    if not isinstance(y, np.ndarray) or isinstance(y, np.matrix):
        raise TypeError(
            f"{name} must be a NumPy array of integer labels when the features are host "
            f"data (they are streamed together), got {type(y).__module__}.{type(y).__name__}"
        )
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ShapeError(
            f"{name} must have one label per sample: expected shape ({n_samples},), "
            f"got {tuple(y.shape)}"
        )
    if y.dtype.kind not in "iu":
        raise DTypeError(
            f"{name} must hold integer class labels, got dtype {y.dtype}; convert with "
            f"{name}.astype(np.int64) after checking the values are whole"
        )
    n_classes = model.n_outputs
    if n_samples:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{name} must hold class indices in [0, {n_classes - 1}] (the network has "
                f"{n_classes} outputs), got values from {lo} to {hi}"
            )
    return y


def _host_backend() -> Backend:
    """The NumPy backend: host targets and weights are checked by the very code that checks
    device arrays, so the errors read the same."""
    return get_backend("numpy", device="cpu", dtype="float64")


def _check_host_targets(model: Any, y: Any, n_samples: int, name: str) -> np.ndarray:
    """Host targets of another loss (MSE, binary cross-entropy), checked by the loss itself.

    The shape is checked on the whole array (a view: nothing is read), the
    dtype and values one block of rows at a time (no copy of ``y``).
    """
    if not isinstance(y, np.ndarray) or isinstance(y, np.matrix):
        raise TypeError(
            f"{name} must be a NumPy array of targets when the features are host data (they "
            f"are streamed together), got {type(y).__module__}.{type(y).__name__}"
        )
    host, loss, n_outputs = _host_backend(), model.loss, model.n_outputs
    _as_matrix(host, y, n_outputs, name)
    _check_target_rows(y, n_samples, name)
    step = max(1, _GATHER_BYTES // max(y.itemsize * (y.size // max(y.shape[0], 1)), 1))
    for lo in range(0, max(n_samples, 1), step):  # once at least: the dtype check
        loss.prepare_targets(host, y[lo:lo + step], n_outputs, name)
    return y


def host_sample_weight(sample_weight: Any, n_samples: int, name: str = "sample_weight", *,
                       allow_zero_total: bool = False) -> np.ndarray | None:
    """Checked host float64 copy of the weights of host data (n numbers), or None.

    The checks and messages are those of in-memory ``fit``
    (:func:`xpnet._weights.check_sample_weight`); the weights must be a NumPy
    array, as the labels are.
    """
    if sample_weight is None:
        return None
    if not isinstance(sample_weight, np.ndarray) or isinstance(sample_weight, np.matrix):
        raise TypeError(
            f"{name} must be a NumPy array when the features are host data (it is streamed "
            f"with them), got {type(sample_weight).__module__}.{type(sample_weight).__name__}"
        )
    return check_sample_weight(_host_backend(), sample_weight, n_samples, name,
                               allow_zero_total=allow_zero_total)


def _check_host_column(column: Any, n_samples: int, name: str) -> None:
    if not isinstance(column, np.ndarray) or column.ndim == 0 or column.shape[0] != n_samples:
        raise ShapeError(f"{name} must be a NumPy array with {n_samples} rows, got "
                         f"{getattr(column, 'shape', type(column).__name__)}")


# -- host data: chunks ------------------------------------------------------------------

@dataclass
class Chunk:
    """One chunk on the device: features, labels (or None) and extra columns."""

    X: Array
    y: Array | None
    extras: dict


def gather_rows(host: np.ndarray, rows: slice | np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[i] = host[rows[i]]``, reading ``host`` in increasing row order.

    ``rows`` is a slice (one contiguous read) or an index array; the sorted
    reads go through temporaries of at most ``_GATHER_BYTES``, so a memmap is
    read sequentially and nothing but ``out`` grows with the chunk.

    Examples
    --------
    >>> import numpy as np
    >>> gather_rows(np.arange(5) * 10, np.array([3, 0, 4]), np.empty(3, dtype=int))
    array([30,  0, 40])
    """
    if isinstance(rows, slice):
        out[...] = host[rows]
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    row_bytes = max(host.itemsize * (host.size // max(host.shape[0], 1)), 1)
    step = max(1, _GATHER_BYTES // row_bytes)
    for lo in range(0, len(sorted_rows), step):
        out[order[lo:lo + step]] = host[sorted_rows[lo:lo + step]]
    return out


def _n_rows(rows: slice | np.ndarray) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def _load_chunk(backend: Backend, data: HostData, rows: slice | np.ndarray, label_dtype: np.dtype,
                check_finite: bool) -> Chunk:
    """Gather ``rows`` of every column on the host, check them, move them to the device.

    Runs on the loader thread. Each chunk gets fresh host buffers, so no
    buffer is rewritten while the device may still read it; where the backend
    reads host memory directly (:attr:`~xpnet.backends.Backend.shares_host_memory`)
    the buffer becomes the device array without another copy.
    """
    m = _n_rows(rows)
    X = gather_rows(data.X, rows, np.empty((m, *data.X.shape[1:]), dtype=data.X.dtype))
    if check_finite:
        _check_finite_rows(X, rows)
    y = None
    if data.y is not None and data.dense:  # the loss's targets, (m, n_outputs) in the model's dtype
        y = _to_device(backend, gather_rows(data.y, rows, np.empty(
            (m, *data.y.shape[1:]), dtype=data.X.dtype)).reshape(m, math.prod(data.y.shape[1:])),
            backend.dtype)
    elif data.y is not None:
        y = _to_device(backend, gather_rows(data.y, rows, np.empty(m, dtype=label_dtype)),
                       backend.index_dtype)
    extras = {name: _to_device(backend, gather_rows(col, rows, np.empty(
        (m, *col.shape[1:]), dtype=data.X.dtype)), backend.dtype)
        for name, col in data.extras.items()}
    return Chunk(_to_device(backend, X, backend.dtype), y, extras)


def _to_device(backend: Backend, host: np.ndarray, dtype: DType) -> Array:
    if backend.shares_host_memory:
        return backend.asarray(host, dtype=dtype, copy=False)
    return backend.asarray(host, dtype=dtype)


def _check_finite_rows(X: np.ndarray, rows: slice | np.ndarray) -> None:
    """NaN/inf in a chunk: name the first bad row of the host array (a sum first: cheap)."""
    total = float(np.sum(X, dtype=np.float64))
    if total == total and abs(total) != float("inf"):
        return
    bad = np.flatnonzero(~np.isfinite(X.reshape(X.shape[0], -1)).all(axis=1))
    if not len(bad):
        return  # the sum merely overflowed
    where = rows.start + int(bad[0]) if isinstance(rows, slice) else int(rows[bad[0]])
    raise ValueError(
        f"X contains NaN or infinite values (first in row {where} of the host array, found "
        "when its chunk was read); training on them would make every weight NaN. Clean or "
        "impute them first (np.isfinite(X) finds them)."
    )


def stream_chunks(backend: Backend, data: HostData, plans: list, *,
                  check_finite: bool = False) -> Iterator[Chunk]:
    """Device :class:`Chunk` for each row plan, the next loaded while the caller uses this one.

    The caller must drop its reference to a chunk before asking for the next
    (``del chunk``), so at most two chunks are alive at once.
    """
    label_dtype = _numpy_dtype(backend, backend.index_dtype)

    def load(rows: slice | np.ndarray) -> Chunk:
        return _load_chunk(backend, data, rows, label_dtype, check_finite)

    if not plans:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xpnet-stream") as pool:
        pending = pool.submit(load, plans[0])
        for i in range(len(plans)):
            chunk = pending.result()
            if i + 1 < len(plans):
                pending = pool.submit(load, plans[i + 1])
            else:  # the future holds the last chunk too: let the caller's `del chunk` free it
                del pending
            yield chunk
            del chunk


def _row_plans(n_used: int, rows_per_chunk: int, order: np.ndarray | None = None) -> list:
    """Row selections of the chunks: slices of ``range(n_used)``, or of ``order``."""
    plans = []
    for lo in range(0, n_used, rows_per_chunk):
        hi = min(lo + rows_per_chunk, n_used)
        plans.append(slice(lo, hi) if order is None else order[lo:hi])
    return plans


# -- host data: training ----------------------------------------------------------------

def epoch_runner(source: HostData | BatchSource) -> EpochRunner:
    """``fit_loop``'s ``epoch_runner(model, X, y, settings)`` for a stream source."""
    if isinstance(source, BatchSource):
        return lambda model, X, y, settings: batches_epoch_runner(model, source, settings)
    return lambda model, X, y, settings: host_epoch_runner(model, source, settings)


def host_epoch_runner(model: Any, data: HostData, settings: FitSettings) -> Callable[[int], dict]:
    """Like :func:`xpnet.training._epoch_runner`, for :class:`HostData`: ``epoch -> logs``.

    Every step sees exactly the batch the in-memory loop would gather (same
    permutation, same rows, same order, the same loss, sample weights and
    penalty), so the weights agree bit for bit.
    """
    be = model.backend
    layers = loss_layers(model.layers)
    first = first_trainable_index(layers)
    batch_size = settings.batch_size
    n_steps = data.n // batch_size
    rows_per_chunk = data.rows_per_chunk(batch_size)

    def run_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        step_fn = _cached_step(model._train_steps, be, layers, first, settings.loss,
                               settings.penalty, settings.host_weight is not None)
        order = None
        if settings.shuffle:
            order = (chunkwise_permutation(settings.rng, data.n, rows_per_chunk)
                     if data.shuffle_chunks else settings.rng.permutation(data.n))
        plans = _row_plans(n_steps * batch_size, rows_per_chunk, order)
        total = _train_chunks(model, step_fn, stream_chunks(be, data, plans, check_finite=True),
                              settings, epoch, n_steps)
        loss_sum = float(total)  # the one read-back of the epoch: always checked
        _guard(loss_sum, epoch, n_steps - 1, settings.check_every)
        trained = _trained_weight(settings.host_weight, order, n_steps * batch_size)
        logs = {"epoch": epoch + 1, "loss": loss_sum / trained,
                "seconds": time.perf_counter() - t0}
        return _scored_logs(model, data, settings, logs)

    return run_epoch


def _scored_logs(model: Any, data: HostData | None, settings: FitSettings, logs: dict) -> dict:
    """Add the training accuracy (unweighted, as in memory) and the validation scores."""
    if settings.train_accuracy and data is not None:
        accuracy = host_accuracy(model, data)
        if accuracy is not None:  # regression has none
            logs["train_acc"] = accuracy
    if settings.validation_data is not None:
        scores = model._scores(*settings.validation_data)
        logs["val_loss"] = scores["loss"]
        if "accuracy" in scores:
            logs["val_acc"] = scores["accuracy"]
    return logs


def chunkwise_permutation(rng: np.random.Generator, n: int, rows_per_chunk: int) -> np.ndarray:
    """The approximate shuffle: runs of ``rows_per_chunk`` contiguous rows in random
    order, the rows shuffled within each run.

    Each chunk is then read as one contiguous range (fast on a cold disk), but
    a batch only mixes rows that are close in the file, and the weights differ
    from in-memory training. Opt-in: ``fit(..., shuffle="chunks")``.

    Examples
    --------
    >>> import numpy as np
    >>> order = chunkwise_permutation(np.random.default_rng(0), 8, 4)
    >>> sorted(order.tolist()) == list(range(8)), len(set(order[:4] // 4)) == 1
    (True, True)
    """
    starts = rng.permutation(np.arange(0, n, rows_per_chunk))
    return np.concatenate([start + rng.permutation(min(rows_per_chunk, n - start))
                           for start in starts]) if n else np.arange(0)


def _chunk_targets(model: Any, chunk: Chunk) -> Array:
    """What the loss compares the outputs with: one-hot labels, or the dense targets."""
    if model._default_loss:
        be = model.backend
        return one_hot(chunk.y, model.n_outputs, dtype=be.dtype, xp=be.xp)
    return chunk.y


def _train_chunks(model: Any, step_fn: Callable, chunks: Iterator[Chunk], settings: FitSettings,
                  epoch: int, n_steps: int) -> Array:
    """Run the steps of one epoch over device chunks; return the summed loss (device)."""
    be = model.backend
    xp = be.xp
    batch_size, check_every = settings.batch_size, settings.check_every
    total = be.zeros(())
    step = 0
    with _progress(n_steps, f"epoch {epoch + 1}", settings.progress) as bar:
        for chunk in chunks:
            targets = _chunk_targets(model, chunk)
            weights = chunk.extras.get("sample_weight")
            local = xp.arange(chunk.X.shape[0], dtype=be.index_dtype, device=be.device)
            for lo in range(0, chunk.X.shape[0], batch_size):
                if weights is None:  # the default path: exactly the step it always was
                    total = total + step_fn(chunk.X, targets, local[lo:lo + batch_size])
                else:
                    total = total + step_fn(chunk.X, targets, local[lo:lo + batch_size], weights)
                step += 1
                if check_every and step % check_every == 0:
                    _guard(float(total), epoch, step - 1, check_every)
                bar.update(1)
            del chunk, targets, weights  # so that at most two chunks are alive
    return total


# -- host data: inference -----------------------------------------------------------------

def _inference_chunks(model: Any, data: HostData, block: int) -> Iterator[Chunk]:
    """Contiguous device chunks whose rows are a multiple of ``block``: prediction
    then computes exactly the blocks of the in-memory path."""
    plans = _row_plans(data.n, data.rows_per_chunk(block)) or [slice(0, 0)]
    return stream_chunks(model.backend, data, plans)


def _chunk_logits(model: Any, X: Array, block: int) -> list:
    return model._logit_blocks(X, block)  # checked for NaN/inf like in-memory prediction


def host_logits(model: Any, data: HostData, block: int) -> Array:
    """Logits of every row of host data (on the device), chunk by chunk."""
    outs = []
    for chunk in _inference_chunks(model, data, block):
        outs.extend(_chunk_logits(model, chunk.X, block))
        del chunk
    return _concat(model.backend.xp, outs)


def host_predict(model: Any, data: HostData, block: int) -> Array:
    """Predicted class indices (on the device) of every row of host data."""
    xp = model.backend.xp
    preds: list[Array] = []
    for chunk in _inference_chunks(model, data, block):
        preds.extend(xp.argmax(z, axis=1) for z in _chunk_logits(model, chunk.X, block))
        del chunk
    return _concat(xp, preds)


def host_accuracy(model: Any, data: HostData, block: int = 1024) -> float | None:
    """Accuracy on host data, reduced like ``Sequential._accuracy`` (one mean of all hits).

    Unweighted, as in memory; None for the MSE (regression has no accuracy).
    """
    if not model._default_loss:
        return host_loss_scores(model, data, block, weighted=False).get("accuracy")
    be = model.backend
    xp = be.xp
    hits = []
    for chunk in _inference_chunks(model, data, block):
        preds = [xp.argmax(z, axis=1) for z in _chunk_logits(model, chunk.X, block)]
        hits.append(xp.astype(_concat(xp, preds) == chunk.y, be.dtype))
        del chunk
    return float(xp.mean(_concat(xp, hits)))


def host_scores(model: Any, data: HostData, block: int) -> dict:
    """Mean loss and accuracy on host data, summed block by block as ``Sequential._scores``.

    Another loss or sample weights: :func:`host_loss_scores`.
    """
    if not model._default_loss or "sample_weight" in data.extras:
        return host_loss_scores(model, data, block)
    be = model.backend
    xp = be.xp
    total, hits = be.zeros(()), be.zeros(())
    for chunk in _inference_chunks(model, data, block):
        labels = chunk.y
        if labels is None:
            raise ValueError("host_scores needs labels: HostData.of(model, X, y)")
        for i, z in enumerate(_chunk_logits(model, chunk.X, block)):
            yb = labels[i * block:i * block + z.shape[0]]
            loss_sum, _ = _xent_sum_and_grad(xp, z, one_hot(yb, z.shape[1], dtype=be.dtype,
                                                            xp=xp))
            total = total + loss_sum
            hits = hits + xp.sum(xp.astype(xp.argmax(z, axis=1) == yb, be.dtype))
        del chunk
    n = max(data.n, 1)
    return {"loss": float(total) / n, "accuracy": float(hits) / n}


def host_loss_scores(model: Any, data: HostData, block: int, *, weighted: bool = True) -> dict:
    """The model's loss (weighted by ``extras["sample_weight"]``) and accuracy on host data.

    The blocks, and the order of the sums, are those of
    :func:`xpnet._weights.loss_scores` on the same data in memory.
    """
    if data.y is None:
        raise ValueError("host_loss_scores needs targets: HostData.of(model, X, y)")
    return score_blocks(model, _scored_chunk_blocks(model, data, block, weighted))


def _scored_chunk_blocks(model: Any, data: HostData, block: int, weighted: bool) -> Iterator:
    """``(logits, targets, weights or None)`` of each block of rows, chunk by chunk."""
    for chunk in _inference_chunks(model, data, block):
        targets = _chunk_targets(model, chunk)
        weights = chunk.extras.get("sample_weight") if weighted else None
        for i, z in enumerate(_chunk_logits(model, chunk.X, block)):
            lo = i * block
            yield (z, targets[lo:lo + z.shape[0], ...],
                   None if weights is None else weights[lo:lo + z.shape[0]])
        del chunk, targets, weights  # so that at most two chunks are alive


def _concat(xp: Namespace, parts: list) -> Array:
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


# -- iterables of batches -----------------------------------------------------------------

class BatchSource:
    """Training batches ``(X_batch, y_batch)`` or ``(X_batch, y_batch, w_batch)`` produced on the fly.

    ``batches`` is a dataset object with ``__len__`` and ``__getitem__(i)``
    returning batch ``i`` (replayed every epoch; with ``shuffle`` the batch
    order is permuted from the seed), or any iterable of batches (a list is
    replayed; a generator lasts one epoch). Each batch is host NumPy data
    (moved to the device, like host arrays) or arrays on the model's device.
    ``y_batch`` holds what the model's loss expects (class labels; float
    targets for the MSE; 0/1 for the binary cross-entropy); ``w_batch``, when
    given, the batch's sample weights (>= 0; a batch may weigh nothing, the
    epoch's loss is the weighted mean). Every batch must have the shapes of
    the first (and weights if it had them): a batch of another shape mid-epoch
    is an error (drop the last incomplete batch, as ``fit`` does).
    """

    def __init__(self, model: Any, batches: Any) -> None:
        self.model = model
        self.batches = batches
        self.indexable = hasattr(batches, "__len__") and hasattr(batches, "__getitem__")
        self.n_batches = len(batches) if hasattr(batches, "__len__") else None
        self.shape: tuple | None = None  # the first batch's (X, y[, w]) shapes

    @staticmethod
    def accepts(x: Any) -> bool:
        """Whether ``x`` is meant as batches (iterable or indexable, but not an array)."""
        if isinstance(x, (np.ndarray, str, bytes, dict)) or array_api_compat.is_array_api_obj(x):
            return False
        return hasattr(x, "__iter__") or (hasattr(x, "__len__") and hasattr(x, "__getitem__"))

    def epoch(self, rng: np.random.Generator, shuffle: bool) -> Iterator[Any]:
        """The batches of one epoch, in order."""
        n_batches = self.n_batches
        if not self.indexable or n_batches is None:  # (indexable ones have a length)
            return iter(self.batches)
        order = rng.permutation(n_batches) if shuffle else range(n_batches)
        return (self.batches[int(i)] for i in order)

    def to_device(self, batch: Any, epoch: int, index: int) -> tuple:
        """Checked device arrays ``(X, targets, weights or None)`` of one batch, and the
        batch's total weight on the host (None without weights)."""
        where = f"batch {index + 1} of epoch {epoch + 1}"
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError(f"{where} must be a pair (X_batch, y_batch) or a triple (X_batch, "
                            f"y_batch, w_batch), got {type(batch).__name__}")
        xb, yb, wb = (*batch, None) if len(batch) == 2 else batch
        self._check_shapes(where, xb, yb, wb)
        X = self._device_X(xb, where)
        n = X.shape[0]
        targets = self._device_y(yb, n, where)
        weights = None if wb is None else self._host_weights(wb, n, where)
        if weights is None:
            return X, targets, None, None
        return X, targets, self.model.backend.asarray(weights), float(weights.sum())

    def _check_shapes(self, where: str, *arrays: Any) -> None:
        shape = tuple(tuple(a.shape) if hasattr(a, "shape") else None for a in arrays)
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            def fmt(shapes: tuple) -> str:
                return ", ".join(f"{k} {v}" for k, v in zip("Xyw", shapes)
                                 if k != "w" or v is not None)
            raise ShapeError(
                f"{where} has shapes {fmt(shape)}, but the first batch had {fmt(self.shape)}: "
                "every batch must have the same shapes (drop or pad the last incomplete one)"
            )

    def _device_X(self, xb: Any, where: str) -> Array:
        model = self.model
        if is_host_array(model.backend, xb):
            _check_host_X(model, xb, f"X of {where}")
            _check_finite_rows(xb, slice(0, xb.shape[0]))
            return model.backend.asarray(xb)
        model.layers[0]._check_input(xb, f"X of {where}")
        return xb

    def _device_y(self, yb: Any, n: int, where: str) -> Array:
        """One-hot labels, or the dense targets of another loss (checked as in memory)."""
        model = self.model
        be = model.backend
        if model._default_loss:
            return one_hot(self._labels(yb, n, where), model.n_outputs, dtype=be.dtype, xp=be.xp)
        if is_host_array(be, yb) or isinstance(yb, np.ndarray):
            _check_host_targets(model, yb, n, f"y of {where}")
            return be.asarray(yb.reshape(n, -1))
        return model._check_targets(yb, n, f"y of {where}")

    def _labels(self, yb: Any, n: int, where: str) -> Array:
        be = self.model.backend
        if is_host_array(be, yb) or isinstance(yb, np.ndarray):
            _check_host_labels(self.model, yb, n, f"y of {where}")
            return be.asarray(yb, dtype=be.index_dtype) if not be.owns(yb) else yb
        be.check_array(yb, f"y of {where}", ndim=1, kind="integral")
        if yb.shape[0] != n:
            raise ShapeError(f"y of {where} must have one label per sample: expected "
                             f"shape ({n},), got {tuple(yb.shape)}")
        return yb

    def _host_weights(self, wb: Any, n: int, where: str) -> np.ndarray | None:
        """Host float64 weights of one batch, checked as ``fit``'s (all zero is allowed)."""
        be = self.model.backend
        name = f"w of {where}"
        if is_host_array(be, wb) or isinstance(wb, np.ndarray):
            return host_sample_weight(wb, n, name, allow_zero_total=True)
        return check_sample_weight(be, wb, n, name, allow_zero_total=True)


def check_batch_options(*, sample_weight: Any, class_weight: Any, validation_split: Any,
                        alpha: Any) -> None:
    """What ``fit`` cannot take with an iterable of batches, and why (``alpha`` works)."""
    if sample_weight is not None:
        raise TypeError("fit(batches) takes no sample_weight: an iterable of batches carries "
                        "its weights, as (X_batch, y_batch, w_batch) triples")
    if class_weight is not None:
        raise NotImplementedError(
            "fit(batches, class_weight=...) is not supported: 'balanced' needs the class "
            "counts of all the data before the first step, which batches made on the fly do "
            "not give; fold class weights into w_batch of (X_batch, y_batch, w_batch) triples"
        )
    if validation_split:
        raise NotImplementedError(
            "fit(batches, validation_split=...) is not supported: the last fraction of an "
            "iterable of batches is not known before it ends; pass validation_data=(X_val, y_val)"
        )


def batches_epoch_runner(model: Any, source: BatchSource, settings: FitSettings) -> Callable[[int], dict]:
    """``epoch -> logs`` for a :class:`BatchSource` (``train_acc`` is not recorded:
    a generator cannot be replayed; use ``validation_data``)."""
    be = model.backend
    xp = be.xp
    layers = loss_layers(model.layers)
    first = first_trainable_index(layers)

    def run_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        total, steps, rows, weight, step_fn = be.zeros(()), 0, 0, 0.0, None
        # A generator's length is unknown (None): tqdm then shows a count without a total.
        with _progress(source.n_batches, f"epoch {epoch + 1}", settings.progress) as bar:
            for i, batch in enumerate(source.epoch(settings.rng, settings.shuffle)):
                xb, tb, wb, wsum = source.to_device(batch, epoch, i)
                if step_fn is None:  # every batch has the first's structure (checked)
                    loss = None if model._default_loss and wb is None else model.loss
                    step_fn = _cached_step(model._train_steps, be, layers, first, loss,
                                           settings.penalty, wb is not None)
                idx = xp.arange(xb.shape[0], dtype=be.index_dtype, device=be.device)
                total = total + (step_fn(xb, tb, idx) if wb is None else step_fn(xb, tb, idx, wb))
                steps, rows = steps + 1, rows + xb.shape[0]
                weight += xb.shape[0] if wsum is None else wsum
                if settings.check_every and steps % settings.check_every == 0:
                    _guard(float(total), epoch, steps - 1, settings.check_every)
                bar.update(1)
        if not steps:
            raise ValueError(
                f"the batches yielded nothing in epoch {epoch + 1}: a generator can be "
                "iterated only once; to train several epochs pass a list or an object with "
                "__len__ and __getitem__ returning batch i"
            )
        loss_sum = float(total)
        _guard(loss_sum, epoch, steps - 1, settings.check_every)
        logs = {"epoch": epoch + 1, "loss": loss_sum / (weight or 1.0),
                "seconds": time.perf_counter() - t0}
        return _scored_logs(model, None, dataclasses.replace(settings, train_accuracy=False),
                            logs)

    return run_epoch
