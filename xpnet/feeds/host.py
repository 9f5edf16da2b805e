"""Data bigger than memory: host NumPy arrays streamed to the device in chunks.

This is xpnet's one explicit input mode that moves data: ``fit``, ``predict``,
``predict_proba``, ``predict_logits`` and ``evaluate`` accept host NumPy data
(``np.ndarray``, ``np.memmap``, ``np.load(path, mmap_mode="r")``) on every
backend. Which inputs are *host data* is decided by type alone
(:func:`is_host_array`):

* on a non-NumPy backend (torch, JAX, CuPy, array-api-strict), any NumPy array;
* on the NumPy backend, a ``np.memmap`` (an in-memory ``np.ndarray`` is already
  on the model's device and keeps the in-memory path).

Host data of any real dtype (ints, bool, float16, float64 into a float32
model...) is converted to the model's dtype as each chunk is gathered
(:mod:`xpnet.feeds.convert`), never the whole array at once. Host data is
never copied whole. Rows are gathered into chunks of about
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
import hashlib
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._typing import Array, DType
from .._validation import check_int
from .._weights import check_sample_weight
from ..backends import get_backend
from ..errors import DTypeError, ShapeError
from ..losses import as_matrix, check_target_rows, one_hot
from ..scoring import logit_blocks
from .arrays import check_batch_fits, fingerprint_rows, trained_weight, weights_fingerprint
from .base import Block, Feed
from .convert import check_exact_ints, check_real_dtype, exact_in, numpy_dtype

if TYPE_CHECKING:
    from ..backends import Backend

__all__ = ["DEFAULT_CHUNK_BYTES", "is_host_array", "HostData", "HostFeed", "host_sample_weight"]

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
    return numpy_dtype(backend, dtype)


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
        check_host_X(model, X, names[0])
        dense = not model.uses_default_loss
        if y is not None:
            check = check_host_targets if dense else check_host_labels
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


def check_host_X(model: Any, X: np.ndarray, name: str) -> None:
    """Dtype kind and per-sample shape of host features, without reading them.

    Any real dtype is accepted: each chunk is converted to the model's dtype as
    it is gathered (:func:`_gather_features`).
    """
    be = model.backend
    want = _numpy_dtype(be, be.dtype)
    check_real_dtype(X, name, f"host {type(X).__name__}")
    if X.ndim == 0:
        raise ShapeError(f"{name} must be an array of samples, got a 0-d array")
    probe = be.asarray(np.zeros((0, *X.shape[1:]), dtype=want))  # no data read
    try:
        model.layers[0]._check_input(probe, name)
    except ShapeError as exc:
        raise ShapeError(f"{name} is host data of shape {tuple(X.shape)} that does not fit "
                         f"the model ({exc})") from None


def check_host_labels(model: Any, y: Any, n_samples: int, name: str) -> np.ndarray:
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


def check_host_targets(model: Any, y: Any, n_samples: int, name: str) -> np.ndarray:
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
    as_matrix(host, y, n_outputs, name)
    check_target_rows(y, n_samples, name)
    step = max(1, _GATHER_BYTES // max(y.itemsize * (y.size // max(y.shape[0], 1)), 1))
    check_real_dtype(y, name, f"host {type(y).__name__}")
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


def _load_chunk(backend: Backend, data: HostData, rows: slice | np.ndarray, dtypes: tuple,
                check_finite: bool) -> Chunk:
    """Gather ``rows`` of every column on the host, check them, move them to the device.

    Runs on the loader thread. ``dtypes``: the NumPy dtypes of the model's floats
    and of its labels; features of another dtype are converted here, chunk by
    chunk. Each chunk gets fresh host buffers, so no buffer is rewritten while
    the device may still read it; where the backend reads host memory directly
    (:attr:`~xpnet.backends.Backend.shares_host_memory`) the buffer becomes the
    device array without another copy.
    """
    want, label_dtype = dtypes
    m = _n_rows(rows)
    X = _gather_features(data.X, rows, m, want)
    if check_finite:
        check_finite_rows(X, rows)
    y = None
    if data.y is not None and data.dense:  # the loss's targets, (m, n_outputs) in the model's dtype
        y = _to_device(backend, gather_rows(data.y, rows, np.empty(
            (m, *data.y.shape[1:]), dtype=want)).reshape(m, math.prod(data.y.shape[1:])),
            backend.dtype)
    elif data.y is not None:
        y = _to_device(backend, gather_rows(data.y, rows, np.empty(m, dtype=label_dtype)),
                       backend.index_dtype)
    extras = {name: _to_device(backend, gather_rows(col, rows, np.empty(
        (m, *col.shape[1:]), dtype=want)), backend.dtype)
        for name, col in data.extras.items()}
    return Chunk(_to_device(backend, X, backend.dtype), y, extras)


def _gather_features(host: np.ndarray, rows: slice | np.ndarray, m: int, want: np.dtype) -> np.ndarray:
    """``host[rows]`` in the model's dtype ``want``: the one conversion of streamed features.

    Where every value converts exactly (or rounds, float to float) the gather
    writes straight into a buffer of ``want``; wide integers are gathered as
    they are, checked to convert exactly, then converted.
    """
    shape = (m, *host.shape[1:])
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: refused as inf, later
        if exact_in(host.dtype, want):
            return gather_rows(host, rows, np.empty(shape, dtype=want))  # assignment converts
        raw = gather_rows(host, rows, np.empty(shape, dtype=host.dtype))
        check_exact_ints(raw, want, "X", lambda i: _host_row(rows, i))
        return raw.astype(want)


def _host_row(rows: slice | np.ndarray, i: int) -> int:
    """The row of the host array that row ``i`` of a chunk gathered from ``rows`` is."""
    return rows.start + i if isinstance(rows, slice) else int(rows[i])


def _to_device(backend: Backend, host: np.ndarray, dtype: DType) -> Array:
    if backend.shares_host_memory:
        return backend.asarray(host, dtype=dtype, copy=False)
    return backend.asarray(host, dtype=dtype)


def check_finite_rows(X: np.ndarray, rows: slice | np.ndarray) -> None:
    """NaN/inf in a chunk: name the first bad row of the host array (a sum first: cheap)."""
    total = float(np.sum(X, dtype=np.float64))
    if total == total and abs(total) != float("inf"):
        return
    bad = np.flatnonzero(~np.isfinite(X.reshape(X.shape[0], -1)).all(axis=1))
    if not len(bad):
        return  # the sum merely overflowed
    where = _host_row(rows, int(bad[0]))
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
    dtypes = (_numpy_dtype(backend, backend.dtype), _numpy_dtype(backend, backend.index_dtype))

    def load(rows: slice | np.ndarray) -> Chunk:
        return _load_chunk(backend, data, rows, dtypes, check_finite)

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
    if model.uses_default_loss:
        be = model.backend
        return one_hot(chunk.y, model.n_outputs, dtype=be.dtype, xp=be.xp)
    return chunk.y


def host_fingerprint(X: np.ndarray, y: np.ndarray | None) -> str:
    """:func:`~xpnet.feeds.arrays.data_fingerprint` of host data: reads only those rows of ``X``."""
    picked = fingerprint_rows(X.shape[0])
    digest = hashlib.blake2b(np.ascontiguousarray(X[picked]).tobytes(), digest_size=16)
    step = 1 << 20  # labels in slices: a memory-mapped y is never copied whole
    labels = np.empty(0) if y is None else y
    for lo in range(0, labels.shape[0], step):
        digest.update(np.ascontiguousarray(labels[lo:lo + step]).tobytes())
    return digest.hexdigest()


class HostFeed(Feed):
    """Host data streamed in chunks: one block per chunk, loaded by a background thread.

    Every step sees exactly the batch the in-memory feed would gather (same
    permutation, same rows, same order, the same loss, sample weights and
    penalty), so the weights agree bit for bit. At most two chunks are alive.
    """

    def __init__(self, model: Any, data: HostData, *, batch_size: int = 1) -> None:
        self.model, self.data = model, data
        self.n = data.n
        self.host_weight = data.extras.get("sample_weight")
        self.weighted = self.host_weight is not None
        self.batch_size = batch_size
        self.n_steps = data.n // batch_size
        self._order: Any = None

    def check(self, batch_size: int) -> HostFeed:
        check_batch_fits(batch_size, self.n)
        return type(self)(self.model, self.data, batch_size=batch_size)

    def _with(self, data: HostData) -> HostFeed:
        return type(self)(self.model, data, batch_size=self.batch_size)

    # -- training ---------------------------------------------------------------------
    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        be, data, batch_size = self.model.backend, self.data, self.batch_size
        rows_per_chunk = data.rows_per_chunk(batch_size)
        order = None
        if settings.shuffle:
            order = (chunkwise_permutation(settings.rng, data.n, rows_per_chunk)
                     if data.shuffle_chunks else settings.rng.permutation(data.n))
        self._order = order
        plans = _row_plans(self.n_steps * batch_size, rows_per_chunk, order)
        for chunk in stream_chunks(be, data, plans, check_finite=True):
            m = chunk.X.shape[0]
            local = be.xp.arange(m, dtype=be.index_dtype, device=be.device)
            yield Block(chunk.X, _chunk_targets(self.model, chunk), local, m // batch_size,
                        batch_size, chunk.extras.get("sample_weight"))
            del chunk, local  # so that at most two chunks are alive

    def trained_weight(self) -> float:
        return trained_weight(self.host_weight, self._order, self.n_steps * self.batch_size)

    def fingerprint(self) -> dict:
        data = self.data
        return {**super().fingerprint(), "shape": list(data.X.shape),
                "values": host_fingerprint(data.X, data.y),
                "weights": weights_fingerprint(self.host_weight),
                # shuffle="chunks" draws its order chunk by chunk: then the chunks count too.
                "shuffled chunks": (data.rows_per_chunk(self.batch_size)
                                    if data.shuffle_chunks else None)}

    # -- options ----------------------------------------------------------------------
    def host_sample_weight(self, sample_weight: Any) -> Any:
        return host_sample_weight(sample_weight, self.n)

    def class_weight_source(self) -> tuple[Any, Any]:
        return _host_backend(), self.data.y

    def split(self, at: int) -> tuple[HostFeed, HostFeed]:
        data: Any = self.data
        return (self._with(dataclasses.replace(data, X=data.X[:at, ...], y=data.y[:at, ...])),
                self._with(dataclasses.replace(data, X=data.X[at:, ...], y=data.y[at:, ...])))

    def with_weights(self, host_weight: Any) -> HostFeed:
        return self._with(dataclasses.replace(
            self.data, extras={**self.data.extras, "sample_weight": host_weight}))

    # -- evaluation -------------------------------------------------------------------
    def _chunks(self, block: int) -> Iterator[Chunk]:
        """Contiguous device chunks whose rows are a multiple of ``block``: prediction
        then computes exactly the blocks of the in-memory feed."""
        data = self.data
        plans = _row_plans(data.n, data.rows_per_chunk(block)) or [slice(0, 0)]
        return stream_chunks(self.model.backend, data, plans)

    def eval_blocks(self, model: Any, block: int, *, dense: bool,
                    weighted: bool = True) -> Iterator[tuple[Array, Array, Array | None]]:
        if self.data.y is None:
            raise ValueError("scoring host data needs labels or targets: pass y")
        for chunk in self._chunks(block):
            targets: Any = _chunk_targets(model, chunk) if dense else chunk.y
            weights = chunk.extras.get("sample_weight") if weighted else None
            for i, z in enumerate(logit_blocks(model, chunk.X, block)):
                lo, hi = i * block, i * block + z.shape[0]
                yield z, targets[lo:hi, ...], None if weights is None else weights[lo:hi]
            del chunk, targets, weights  # so that at most two chunks are alive

    def logit_blocks(self, model: Any, block: int) -> Iterator[Array]:
        for chunk in self._chunks(block):
            yield from logit_blocks(model, chunk.X, block)
            del chunk


