"""Host data converted to the model's dtype: lists, pandas objects, NumPy arrays of any real dtype.

scikit-learn, Keras and torch users hand ``fit``/``predict``/``evaluate`` whatever
holds their numbers: NumPy arrays of NumPy's default float64 (or integers, or
bool), nested lists, pandas DataFrames and Series, anything with ``__array__``.
Such *host data* is converted to the model's dtype in the one host-to-device
copy that happens anyway:

* an in-memory NumPy array on the NumPy backend: one ``astype`` (as
  scikit-learn does); the model's own dtype keeps the zero-copy path;
* a NumPy array that is streamed (any NumPy array on another backend, a
  memmap on NumPy): chunk by chunk, as each chunk is gathered
  (:mod:`xpnet.feeds.host`), never the whole array at once;
* lists and ``__array__`` objects: ``np.asarray`` first, then as a NumPy array.

Integer labels of host data become the backend's index dtype. Tensors of an
array library (anything ``array_api_compat`` recognises, or with
``__dlpack__``/``__cuda_array_interface__``: torch, JAX, CuPy, array-api-strict
... even on the CPU, even with ``__array__``) are never converted here: the
model's own are checked as they are, the others refused with the line that
says how to convert them, so no device-side cast or transfer is ever silent.

Refused with a clear error: object, string, complex, datetime arrays; ragged
lists; integers the float dtype cannot hold exactly (int64 above 2**24 into
float32). NaN/inf are refused once per fit by the feeds, after conversion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from ..errors import DTypeError, ShapeError

__all__ = ["is_tensor", "is_host_like", "to_host_array", "check_real_dtype", "check_exact_ints",
           "exact_in", "numpy_dtype", "in_memory_features", "device_targets", "as_host_array"]

#: Why a NumPy dtype kind cannot become the model's floats, and what to do.
_REFUSED_KINDS = {
    "O": ("Python objects (mixed types, None or pandas' missing values?)",
          "convert every column to numbers and fill or drop the missing values first"),
    "U": ("strings", "encode the categories as numbers first (e.g. one-hot columns)"),
    "S": ("bytes", "decode and encode the categories as numbers first"),
    "c": ("complex numbers", "split them into real and imaginary columns first"),
    "M": ("datetimes", "convert them to numbers first (e.g. seconds since a reference)"),
    "m": ("timedeltas", "convert them to numbers first (e.g. seconds)"),
    "V": ("structured records", "select the numeric fields into a plain array first"),
}


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is an array of some array library other than a host NumPy array.

    Such arrays are never converted implicitly, even where they offer ``__array__``
    (torch on the CPU does): a cast or a transfer on the device must be explicit.
    """
    if isinstance(x, np.ndarray):
        return False
    return (array_api_compat.is_array_api_obj(x) or hasattr(x, "__dlpack__")
            or hasattr(x, "__cuda_array_interface__"))


def is_host_like(x: Any) -> bool:
    """Host data that is not yet a NumPy array: a list, tuple, DataFrame, Series, ``__array__``."""
    if isinstance(x, (np.ndarray, str, bytes)) or is_tensor(x):
        return False
    return isinstance(x, (list, tuple)) or hasattr(x, "__array__")


def numpy_dtype(backend: Any, dtype: Any = None) -> np.dtype:
    """The NumPy dtype ``backend`` stores as ``dtype`` (default: the model's floats).

    Read once per backend and dtype from a one-element array (cached: batches ask
    for it every step, and the read back waits for the device).
    """
    try:
        return _read_numpy_dtype(backend, dtype)
    except TypeError:  # an unhashable dtype object: read it each time
        return _read_numpy_dtype.__wrapped__(backend, dtype)


@functools.lru_cache(maxsize=64)
def _read_numpy_dtype(backend: Any, dtype: Any) -> np.dtype:
    return backend.to_numpy(backend.zeros((1,), dtype=dtype)).dtype


def to_host_array(x: Any, name: str) -> np.ndarray:
    """``np.asarray(x)`` for host data, or a clear error (ragged rows, no numbers)."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ShapeError(
                f"{name} is a {type(x).__name__} whose rows have different lengths (a ragged "
                f"list), which cannot be an array of samples: every row needs the same number "
                f"of values (a list of (X_batch, y_batch) batches? then pass y=None) ({exc})"
            ) from None
        raise TypeError(f"{name} ({type(x).__name__}) cannot be converted to an array of "
                        f"numbers: {exc}") from None
    check_real_dtype(arr, name, type(x).__name__, _bad_columns(x))
    return arr


def _bad_columns(x: Any) -> list:
    """The columns of a DataFrame-like ``x`` that hold no real numbers (duck typed: no pandas)."""
    dtypes = getattr(x, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return []
    bad = []
    for column, dtype in dtypes.items():
        try:
            kind = np.dtype(dtype).kind
        except TypeError:  # an extension dtype (pandas' nullable Int64, category, ...)
            kind = "O"
        if kind not in "biuf":
            bad.append(column)
    return bad


def check_real_dtype(arr: np.ndarray, name: str, what: str, columns: list | None = None) -> None:
    """Raise :class:`DTypeError` unless ``arr`` holds bool, integers or real floats."""
    kind = arr.dtype.kind
    if kind in "biuf":
        return
    holds, hint = _REFUSED_KINDS.get(kind, (f"dtype kind {kind!r}", "convert it to numbers first"))
    where = f" (columns {columns!r})" if columns else ""
    article = "an" if what[:1] in "aeiou" else "a"
    raise DTypeError(
        f"{name} must hold real numbers (bool, integers or floats) to be converted to the "
        f"model's floats, got dtype {arr.dtype} ({holds}) in {article} {what}{where}; {hint}"
    )


def exact_in(source: np.dtype, want: np.dtype) -> bool:
    """Whether every value of ``source`` converts to the float dtype ``want`` exactly (or is a float)."""
    if source.kind not in "iu":
        return True
    limit = 2 ** (np.finfo(want).nmant + 1)
    info = np.iinfo(source)
    return -limit <= info.min and info.max <= limit


def check_exact_ints(src: np.ndarray, want: np.dtype, name: str,
                     host_row: Callable[[int], int] = int) -> None:
    """Raise ``ValueError`` if an integer of ``src`` changes when converted to ``want``.

    Only values beyond ``2**(mantissa + 1)`` can change, so only those are
    converted back and compared. ``host_row`` maps a row of ``src`` to the row
    the message names (a chunk's row to the host array's).
    """
    if exact_in(src.dtype, want) or src.size == 0:
        return
    limit = 2 ** (np.finfo(want).nmant + 1)
    flat = np.ravel(src)
    candidates = np.flatnonzero((flat > limit) | (flat < -limit))
    if not len(candidates):
        return
    values = flat[candidates]
    with np.errstate(invalid="ignore", over="ignore"):  # 2**63 does not go back into int64
        changed = candidates[values.astype(want).astype(src.dtype) != values]
    if not len(changed):
        return
    value = int(flat[changed[0]])
    row = host_row(int(changed[0]) // max(src.size // max(src.shape[0], 1), 1)) if src.ndim else 0
    raise ValueError(
        f"{name} holds integers that {want.name} cannot represent exactly: {value} (row {row}) "
        f"would become {int(np.asarray(value).astype(want))}; {want.name} holds every integer "
        f"up to 2**{np.finfo(want).nmant + 1} = {limit} exactly. Scale the values (or drop "
        "id-like columns), or build the model with dtype='float64'"
    )


def in_memory_features(backend: Any, X: Any, name: str, streamed: Callable[[Any], bool]) -> Any:
    """``X`` ready for ``backend``: host data as a NumPy array, converted now if it is not streamed.

    ``streamed(x)`` says whether a NumPy array is streamed in chunks (then it is
    converted chunk by chunk, see :mod:`xpnet.feeds.host`). Anything else (arrays
    of the model, foreign tensors, objects of no known kind) is returned as it
    is, for the feed's checks to accept or refuse.
    """
    if is_host_like(X):
        X = to_host_array(X, name)
    if not isinstance(X, np.ndarray) or not backend.owns(X) or streamed(X):
        return X
    want = numpy_dtype(backend)
    if X.dtype == want:
        return X  # the zero-copy path
    check_real_dtype(X, name, type(X).__name__)
    check_exact_ints(X, want, name)
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: refused as inf, later
        return X.astype(want)


def as_host_array(x: Any, name: str) -> Any:
    """``x`` as a NumPy array if it is host data not yet one (a list, a Series...), else ``x``."""
    return to_host_array(x, name) if is_host_like(x) else x


def device_targets(model: Any, y: Any, name: str) -> Any:
    """Labels or targets that go with device features: host data copied to the device.

    Integer labels become the backend's index dtype; the targets of another loss
    keep their kind (floats in the model's dtype, integers in the index dtype,
    bool), so the loss checks them as it checks arrays in memory. Arrays of the model's backend are left as they are (and
    checked as before); anything else too, for the checks to refuse.
    """
    be = model.backend
    converted = is_host_like(y)
    if converted:
        y = to_host_array(y, name)
    if not isinstance(y, np.ndarray) or isinstance(y, np.matrix):
        return y
    if be.owns(y) and not converted and (not model.uses_default_loss
                                         or y.dtype == numpy_dtype(be, be.index_dtype)):
        return y  # the model's own array: checked as it is
    if not model.uses_default_loss:
        kinds = {"f": be.dtype, "b": be.xp.bool}
        return be.asarray(y, dtype=kinds.get(y.dtype.kind, be.index_dtype))
    if y.dtype.kind not in "iu":
        raise DTypeError(
            f"{name} must hold integer class labels, got dtype {y.dtype}; convert with "
            f"{name}.astype(np.int64) after checking the values are whole"
        )
    return be.asarray(y, dtype=be.index_dtype)
