"""Saving and loading models as one portable ``.npz`` file.

A checkpoint holds every parameter as a host NumPy array named
``layer{i}.{param_name}`` (``layer0.weights``, ``layer0.biases``, ...) and one
JSON metadata entry (``__xpnet__``, stored as UTF-8 bytes) with:

* ``format`` / ``format_version``: what this file is and how to read it;
* ``xpnet_version``: the version that wrote it;
* ``architecture``: one ``{"type": ClassName, **layer.get_config()}`` per layer.
  Classes are looked up by name in :mod:`xpnet.layers` on load, so any layer
  added there later round-trips without touching this module;
* ``params``: name, shape and dtype of every parameter, in order;
* ``backend`` / ``device`` / ``dtype``: where the model was trained;
* ``model_config``: :attr:`Sequential.config` (sizes, init, seed, ...);
* ``metadata``: whatever keyword arguments were passed to :func:`save_model`
  (training settings, metrics, history), JSON-encoded;
* ``sha256``: a digest over the parameter names, dtypes, shapes and bytes,
  so a flipped bit is detected on load.

Nothing is pickled: files are written with :func:`numpy.savez` and read with
``allow_pickle=False``. Writes are atomic (:func:`atomic_write`): a crash or an
exception midway leaves the previous file untouched and no temporary behind.

Examples
--------
>>> import os, tempfile, xpnet
>>> model = xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> model.save(path, metrics={"val_acc": 0.5})
>>> again = xpnet.Sequential.load(path, dtype="float64")
>>> again.backend
Backend(name='numpy', device='cpu', dtype='float64')
>>> [type(layer).__name__ for layer in again.layers]
['Dense', 'ReLU', 'Dense']
>>> again.metadata["metrics"]
{'val_acc': 0.5}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError

__all__ = [
    "save_model",
    "load_model",
    "read_metadata",
    "atomic_write",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

#: Value of the ``format`` field: what marks a file as an xpnet checkpoint.
FORMAT_NAME = "xpnet-checkpoint"
#: Newest format version this module writes and reads.
FORMAT_VERSION = 1
#: Name of the JSON metadata entry inside the ``.npz``.
METADATA_KEY = "__xpnet__"

_FLOAT_DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------
# Atomic file writes (shared with xpnet.plotting and xpnet.datasets)
# --------------------------------------------------------------------------

def _fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort: not every OS/fs allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path: Path) -> int:
    """Permissions for the replacement: the old file's, else ``0o666`` minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (no thread race)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)  # elsewhere: set and restore at once
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Write ``path`` all at once or not at all.

    Yields a file object on a temporary file in the same directory (so the
    final rename never crosses file systems). When the ``with`` block ends
    normally the data is flushed and fsynced, the temporary file replaces
    ``path`` with :func:`os.replace`, and the directory is fsynced. If the
    block raises anything -- including ``KeyboardInterrupt`` -- the temporary
    file is removed and ``path`` keeps its previous contents.

    Missing parent directories are created.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    mode : {"wb", "w"}
        Binary or text mode.

    Examples
    --------
    >>> import os, tempfile
    >>> from xpnet.checkpoint import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_write(path, "w") as f:
    ...     _ = f.write("hello")
    >>> open(path).read()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a directory; give a file name")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    file_mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    f = None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode)
        f = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        if f is None:
            with contextlib.suppress(OSError):
                os.close(fd)
        else:
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------

def _params_digest(entries) -> str:
    """SHA-256 over ``(name, dtype, shape, little-endian bytes)`` of each parameter, in order."""
    h = hashlib.sha256()
    for name, arr in entries:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{name}|{arr.dtype.str}|{tuple(arr.shape)}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _json_default(obj):
    """Turn NumPy scalars/arrays, paths and 0-d device arrays into JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if getattr(obj, "shape", None) == () and hasattr(obj, "__float__"):
        return float(obj)  # a 0-d array of any backend (an explicit read-back)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _to_json(value, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts), "
            f"but encoding it failed: {exc}"
        ) from None


def _layers_and_backend(model):
    from .layers.base import Layer

    layers = getattr(model, "layers", model)
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(
            f"model must be a Sequential or a list of Layers, got {type(model).__name__}"
        ) from None
    if not layers:
        raise ValueError("model must contain at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"model layer {i} must be an xpnet Layer, got {type(layer).__name__}")
    backend = getattr(model, "backend", None) or layers[0].backend
    return layers, backend


def _layer_entry(i: int, layer) -> dict:
    from . import layers as layers_pkg

    cls_name = type(layer).__name__
    if getattr(layers_pkg, cls_name, None) is not type(layer):
        raise CheckpointError(
            f"cannot save layer {i} ({cls_name}): checkpoints rebuild layers by class name "
            f"from the xpnet.layers package, and xpnet.layers.{cls_name} is "
            f"{'missing' if not hasattr(layers_pkg, cls_name) else 'a different class'}. "
            "Add the class to xpnet.layers (with get_config()) or save its parameters yourself."
        )
    config = layer.get_config()
    if not isinstance(config, dict) or "type" in config:
        raise CheckpointError(
            f"layer {i} ({cls_name}).get_config() must return a dict without a 'type' key, "
            f"got {config!r}"
        )
    _to_json(config, f"layer {i} ({cls_name}).get_config()")
    return {"type": cls_name, **config}


def save_model(model, path, **metadata) -> None:
    """Save a model's architecture, parameters and metadata to one ``.npz`` file.

    Parameters
    ----------
    model : Sequential or list of Layer
        Every layer must be a class of :mod:`xpnet.layers` whose
        ``get_config()`` rebuilds it.
    path : str or os.PathLike
        Destination, written atomically (see :func:`atomic_write`); the name is
        used as given (no suffix is added). Parent directories are created.
    **metadata
        JSON-serialisable values stored with the model, for instance
        ``training={"epochs": 25, ...}`` and ``metrics={"test_acc": 0.98}``.
        Read them back from ``load_model(path).metadata`` or :func:`read_metadata`.

    Raises
    ------
    CheckpointError
        If a layer cannot be described for reloading.
    TypeError
        If ``metadata`` is not JSON-serialisable.
    OSError
        If the file cannot be written (the previous file, if any, is kept).
    """
    from ._version import __version__

    layers, be = _layers_and_backend(model)
    architecture = [_layer_entry(i, layer) for i, layer in enumerate(layers)]
    entries = []
    for i, layer in enumerate(layers):
        for name in layer.param_names:
            host = np.ascontiguousarray(be.to_numpy(getattr(layer, name)))
            if host.dtype.name not in _FLOAT_DTYPES:
                raise CheckpointError(
                    f"parameter layer{i}.{name} must be float32 or float64, got {host.dtype}"
                )
            entries.append((f"layer{i}.{name}", host))
    model_config = getattr(model, "config", {}) or {}
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "xpnet_version": __version__,
        "architecture": architecture,
        "params": [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name}
                   for n, a in entries],
        "backend": be.name,
        "device": be.device_name,
        "dtype": be.dtype_name,
        "model_config": json.loads(_to_json(model_config, "model.config")),
        "metadata": json.loads(_to_json(metadata, "metadata")),
        "sha256": _params_digest(entries),
    }
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    arrays = dict(entries)
    arrays[METADATA_KEY] = blob
    with atomic_write(path) as f:
        np.savez(f, **arrays)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
                UnicodeDecodeError, IndexError, TypeError)


def _corrupt(path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{os.fspath(path)!r} is not a readable xpnet checkpoint: {detail}. The file is "
        "truncated, corrupted or was not written by xpnet's save_model; save the model again."
    )


def _open_npz(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {os.fspath(path)!r}: the file does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path {os.fspath(path)!r} is a directory, not a file")
    try:
        npz = np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _corrupt(path, "it holds a single NumPy array (.npy), not an .npz archive")
    return npz


def _read_header(npz, path) -> dict:
    if METADATA_KEY not in npz.files:
        shown = ", ".join(npz.files[:5]) + (", ..." if len(npz.files) > 5 else "")
        raise CheckpointError(
            f"{os.fspath(path)!r} is an .npz archive but not an xpnet checkpoint: it has no "
            f"{METADATA_KEY!r} metadata entry (its entries: {shown or 'none'})"
        )
    try:
        blob = npz[METADATA_KEY]
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(f"metadata entry has dtype {blob.dtype} and shape {blob.shape}")
        header = json.loads(blob.tobytes().decode("utf-8"))
    except _READ_ERRORS as exc:
        raise _corrupt(path, f"its metadata cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{os.fspath(path)!r} has a metadata entry but its format is "
            f"{header.get('format') if isinstance(header, dict) else header!r}, expected "
            f"{FORMAT_NAME!r}"
        )
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _corrupt(path, f"format_version must be a positive int, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{os.fspath(path)!r} uses checkpoint format version {version}, written by xpnet "
            f"{header.get('xpnet_version', '?')}; this xpnet reads versions up to "
            f"{FORMAT_VERSION}. Upgrade xpnet to load it."
        )
    for key, kind in (("architecture", list), ("params", list), ("sha256", str),
                      ("dtype", str)):
        if not isinstance(header.get(key), kind):
            raise _corrupt(path, f"metadata field {key!r} must be a {kind.__name__}, "
                                 f"got {header.get(key)!r}")
    return header


def read_metadata(path) -> dict:
    """The JSON metadata of a checkpoint (architecture, trained-on backend, metadata).

    Parameters are not read or verified; use :func:`load_model` for that.

    Raises
    ------
    CheckpointError
        If the file is missing, not an ``.npz`` or not an xpnet checkpoint.
    """
    with _open_npz(path) as npz:
        return _read_header(npz, path)


def _read_params(npz, header, path) -> dict:
    expected = {}
    for entry in header["params"]:
        try:
            name, shape, dtype = entry["name"], tuple(entry["shape"]), entry["dtype"]
        except (KeyError, TypeError):
            raise _corrupt(path, f"malformed params entry {entry!r}") from None
        expected[name] = (shape, dtype)
    present = set(npz.files) - {METADATA_KEY}
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{os.fspath(path)!r}: the arrays do not match the metadata "
            f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})"
        )
    arrays = {}
    for name, (shape, dtype) in expected.items():
        try:
            arr = npz[name]
        except _READ_ERRORS as exc:
            raise _corrupt(path, f"array {name!r} cannot be read ({type(exc).__name__}: {exc})") \
                from None
        if tuple(arr.shape) != shape or arr.dtype.name != dtype:
            raise CheckpointError(
                f"{os.fspath(path)!r}: array {name!r} has shape {tuple(arr.shape)} and dtype "
                f"{arr.dtype}, but the metadata says shape {shape} and dtype {dtype}"
            )
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"{os.fspath(path)!r}: array {name!r} must be float32 or float64, got {dtype}"
            )
        arrays[name] = arr
    digest = _params_digest(list(arrays.items()))
    if digest != header["sha256"]:
        raise CheckpointError(
            f"{os.fspath(path)!r}: parameter checksum mismatch (SHA-256 {digest[:16]}..., "
            f"expected {header['sha256'][:16]}...): the parameters are corrupted"
        )
    return arrays


def _build_layer(i: int, entry, be, path):
    from . import layers as layers_pkg
    from .layers.base import Layer

    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise _corrupt(path, f"architecture entry {i} must be a dict with a 'type', got {entry!r}")
    config = dict(entry)
    cls_name = config.pop("type")
    cls = getattr(layers_pkg, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        known = sorted(n for n in dir(layers_pkg)
                       if isinstance(getattr(layers_pkg, n), type)
                       and issubclass(getattr(layers_pkg, n), Layer))
        raise CheckpointError(
            f"{os.fspath(path)!r}: layer {i} has type {cls_name!r}, which this xpnet does not "
            f"know (xpnet.layers has: {', '.join(known)}); a newer xpnet may be needed"
        )
    try:
        return cls(**config, backend=be)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{os.fspath(path)!r}: cannot rebuild layer {i} as {cls_name}(**{config!r}): {exc}"
        ) from None


def load_model(path, *, backend=None, device=None, dtype=None):
    """Load a model written by :func:`save_model` onto any backend, device and dtype.

    Parameters
    ----------
    path : str or os.PathLike
    backend : str or Backend, optional
        Where to put the model; default: :func:`xpnet.get_backend`'s default
        (``XPNET_BACKEND`` or NumPy) -- *not* the backend it was trained on, so
        a model trained on a GPU loads on any machine.
    device : optional
        Device on ``backend``.
    dtype : {"float32", "float64"}, optional
        Default: the dtype the model was saved with.

    Returns
    -------
    Sequential
        With ``model.config`` restored and ``model.metadata`` (the keyword
        arguments given to :func:`save_model`) and ``model.checkpoint`` (the
        whole metadata entry) attached.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted, of another format or
        version, or its arrays do not fit its architecture.
    """
    from .backends import get_backend
    from .network import Sequential

    with _open_npz(path) as npz:
        header = _read_header(npz, path)
        arrays = _read_params(npz, header, path)
    if header["dtype"] not in _FLOAT_DTYPES:
        raise _corrupt(path, f"dtype must be float32 or float64, got {header['dtype']!r}")
    be = get_backend(backend, device=device, dtype=header["dtype"] if dtype is None else dtype)
    if not header["architecture"]:
        raise _corrupt(path, "its architecture lists no layers")
    layers = [_build_layer(i, e, be, path) for i, e in enumerate(header["architecture"])]
    wanted = [f"layer{i}.{n}" for i, layer in enumerate(layers) for n in layer.param_names]
    if wanted != list(arrays):
        raise CheckpointError(
            f"{os.fspath(path)!r}: the architecture needs parameters {wanted} but the file "
            f"holds {list(arrays)}"
        )
    for i, layer in enumerate(layers):
        for name in layer.param_names:
            host = arrays[f"layer{i}.{name}"]
            want = tuple(getattr(layer, name).shape)
            if tuple(host.shape) != want:
                raise CheckpointError(
                    f"{os.fspath(path)!r}: layer{i}.{name} has shape {tuple(host.shape)} but "
                    f"{type(layer).__name__} layer {i} needs {want}"
                )
            layer.set_param(name, be.asarray(host))
    model = Sequential(layers, backend=be)
    model.config = dict(header.get("model_config") or {})
    model.metadata = dict(header.get("metadata") or {})
    model.checkpoint = header
    return model
