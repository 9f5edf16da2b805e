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

Arrays of another library, or on another device, are still refused, never
moved silently. Data produced on the fly is trained from with an iterable of
``(X_batch, y_batch)`` pairs (:class:`BatchSource`).

Capability for later: on CUDA backends the chunk copy could use pinned host
buffers and a separate stream; today it is a plain ``asarray`` on the loader
thread, which overlaps with training on the CPU backends only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

from ._typing import Array, DType, Namespace
from ._validation import check_int
from .errors import DTypeError, ShapeError
from .losses import _xent_sum_and_grad, one_hot
from .training import (
    _cached_step,
    _guard,
    _progress,
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
    columns gathered with the same rows as ``X`` and ``y`` (the hook for
    ``sample_weight``: a chunk then carries ``chunk.extras["sample_weight"]``).
    """

    X: np.ndarray
    y: np.ndarray | None
    chunk_bytes: int
    extras: dict = field(default_factory=dict)
    #: ``fit(shuffle="chunks")``: the approximate, faster shuffle (:func:`chunkwise_permutation`).
    shuffle_chunks: bool = False

    @classmethod
    def of(cls, model: Any, X: np.ndarray, y: np.ndarray | None = None, *,
           chunk_bytes: int | None = None, names: tuple[str, str] = ("X", "y"),
           extras: dict[str, np.ndarray] | None = None,
           shuffle_chunks: bool = False) -> HostData:
        """Check host ``X`` (and labels ``y``) against ``model``; raise a clear error if wrong."""
        chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else check_int(
            chunk_bytes, "chunk_bytes", low=1)
        _check_host_X(model, X, names[0])
        if y is not None:
            y = _check_host_labels(model, y, X.shape[0], names[1])
        for name, column in (extras or {}).items():
            _check_host_column(column, X.shape[0], name)
        return cls(X, y, chunk_bytes, dict(extras or {}), bool(shuffle_chunks))

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
    if data.y is not None:
        y = _to_device(backend, gather_rows(data.y, rows, np.empty(m, dtype=label_dtype)),
                       backend.index_dtype)
    extras = {name: _to_device(backend, gather_rows(col, rows, np.empty(
        (m, *col.shape[1:]), dtype=col.dtype)), None) for name, col in data.extras.items()}
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
    permutation, same rows, same order), so the weights agree bit for bit.
    """
    be = model.backend
    layers = loss_layers(model.layers)
    first = first_trainable_index(layers)
    batch_size = settings.batch_size
    n_steps = data.n // batch_size
    rows_per_chunk = data.rows_per_chunk(batch_size)

    def run_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        step_fn = _cached_step(model._train_steps, be, layers, first)
        order = None
        if settings.shuffle:
            order = (chunkwise_permutation(settings.rng, data.n, rows_per_chunk)
                     if data.shuffle_chunks else settings.rng.permutation(data.n))
        plans = _row_plans(n_steps * batch_size, rows_per_chunk, order)
        total = _train_chunks(model, step_fn, stream_chunks(be, data, plans, check_finite=True),
                              settings, epoch, n_steps)
        loss_sum = float(total)  # the one read-back of the epoch: always checked
        _guard(loss_sum, epoch, n_steps - 1, settings.check_every)
        logs = {"epoch": epoch + 1, "loss": loss_sum / max(n_steps * batch_size, 1),
                "seconds": time.perf_counter() - t0}
        if settings.train_accuracy:
            logs["train_acc"] = host_accuracy(model, data)
        if settings.validation_data is not None:
            scores = model._scores(*settings.validation_data)
            logs["val_loss"], logs["val_acc"] = scores["loss"], scores["accuracy"]
        return logs

    return run_epoch


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
            onehot = one_hot(chunk.y, model.n_outputs, dtype=be.dtype, xp=xp)
            local = xp.arange(chunk.X.shape[0], dtype=be.index_dtype, device=be.device)
            for lo in range(0, chunk.X.shape[0], batch_size):
                total = total + step_fn(chunk.X, onehot, local[lo:lo + batch_size])
                step += 1
                if check_every and step % check_every == 0:
                    _guard(float(total), epoch, step - 1, check_every)
                bar.update(1)
            del chunk, onehot  # so that at most two chunks are alive
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


def host_accuracy(model: Any, data: HostData, block: int = 1024) -> float:
    """Accuracy on host data, reduced like ``Sequential._accuracy`` (one mean of all hits)."""
    be = model.backend
    xp = be.xp
    hits = []
    for chunk in _inference_chunks(model, data, block):
        preds = [xp.argmax(z, axis=1) for z in _chunk_logits(model, chunk.X, block)]
        hits.append(xp.astype(_concat(xp, preds) == chunk.y, be.dtype))
        del chunk
    return float(xp.mean(_concat(xp, hits)))


def host_scores(model: Any, data: HostData, block: int) -> dict:
    """Mean loss and accuracy on host data, summed block by block as ``Sequential._scores``."""
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


def _concat(xp: Namespace, parts: list) -> Array:
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


# -- iterables of batches -----------------------------------------------------------------

class BatchSource:
    """Training batches ``(X_batch, y_batch)`` produced on the fly.

    ``batches`` is a dataset object with ``__len__`` and ``__getitem__(i)``
    returning batch ``i`` (replayed every epoch; with ``shuffle`` the batch
    order is permuted from the seed), or any iterable of pairs (a list is
    replayed; a generator lasts one epoch). Each batch is host NumPy data
    (moved to the device, like host arrays) or arrays on the model's device.
    Every batch must have the shape of the first: a batch of another shape
    mid-epoch is an error (drop the last incomplete batch, as ``fit`` does).
    """

    def __init__(self, model: Any, batches: Any) -> None:
        self.model = model
        self.batches = batches
        self.indexable = hasattr(batches, "__len__") and hasattr(batches, "__getitem__")
        self.n_batches = len(batches) if hasattr(batches, "__len__") else None
        self.shape: tuple[tuple, tuple] | None = None  # the first batch's (X shape, y shape)

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

    def to_device(self, pair: Any, epoch: int, index: int) -> tuple[Array, Array]:
        """Checked device arrays ``(X, y)`` of one batch."""
        where = f"batch {index + 1} of epoch {epoch + 1}"
        try:
            xb, yb = pair
        except (TypeError, ValueError):
            raise TypeError(f"{where} must be a pair (X_batch, y_batch), got "
                            f"{type(pair).__name__}") from None
        shape = (tuple(xb.shape), tuple(yb.shape)) if hasattr(xb, "shape") and hasattr(
            yb, "shape") else None
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            raise ShapeError(
                f"{where} has shapes X {shape[0] if shape else '?'}, y "
                f"{shape[1] if shape else '?'}, but the first batch had X {self.shape[0]}, "
                f"y {self.shape[1]}: every batch must have the same shape (drop or pad the "
                "last incomplete one)"
            )
        return self._device_X(xb, where), self._device_y(yb, xb.shape[0], where)

    def _device_X(self, xb: Any, where: str) -> Array:
        model = self.model
        if is_host_array(model.backend, xb):
            _check_host_X(model, xb, f"X of {where}")
            _check_finite_rows(xb, slice(0, xb.shape[0]))
            return model.backend.asarray(xb)
        model.layers[0]._check_input(xb, f"X of {where}")
        return xb

    def _device_y(self, yb: Any, n: int, where: str) -> Array:
        be = self.model.backend
        if is_host_array(be, yb) or isinstance(yb, np.ndarray):
            _check_host_labels(self.model, yb, n, f"y of {where}")
            return be.asarray(yb, dtype=be.index_dtype) if not be.owns(yb) else yb
        be.check_array(yb, f"y of {where}", ndim=1, kind="integral")
        if yb.shape[0] != n:
            raise ShapeError(f"y of {where} must have one label per sample: expected "
                             f"shape ({n},), got {tuple(yb.shape)}")
        return yb


def batches_epoch_runner(model: Any, source: BatchSource, settings: FitSettings) -> Callable[[int], dict]:
    """``epoch -> logs`` for a :class:`BatchSource` (``train_acc`` is not recorded:
    a generator cannot be replayed; use ``validation_data``)."""
    be = model.backend
    xp = be.xp
    layers = loss_layers(model.layers)
    first = first_trainable_index(layers)

    def run_epoch(epoch: int) -> dict:
        t0 = time.perf_counter()
        step_fn = _cached_step(model._train_steps, be, layers, first)
        total, steps, rows = be.zeros(()), 0, 0
        # None (a generator's unknown length) is what tqdm expects; training._progress's
        # annotation (total: int) should say int | None (training.py is not this change's).
        with _progress(source.n_batches, f"epoch {epoch + 1}",  # type: ignore[arg-type]
                       settings.progress) as bar:
            for i, pair in enumerate(source.epoch(settings.rng, settings.shuffle)):
                xb, yb = source.to_device(pair, epoch, i)
                onehot = one_hot(yb, model.n_outputs, dtype=be.dtype, xp=xp)
                idx = xp.arange(xb.shape[0], dtype=be.index_dtype, device=be.device)
                total = total + step_fn(xb, onehot, idx)
                steps, rows = steps + 1, rows + xb.shape[0]
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
        logs = {"epoch": epoch + 1, "loss": loss_sum / max(rows, 1),
                "seconds": time.perf_counter() - t0}
        if settings.validation_data is not None:
            scores = model._scores(*settings.validation_data)
            logs["val_loss"], logs["val_acc"] = scores["loss"], scores["accuracy"]
        return logs

    return run_epoch
