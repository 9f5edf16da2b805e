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
  so a flipped bit is detected on load;
* a backup (:mod:`xpnet.backup`) adds ``state``, ``state_arrays`` and ``state_sha256``.

Nothing is pickled: files are written with :func:`numpy.savez` and read with
``allow_pickle=False``. Writes are atomic (:func:`xpnet._io.atomic_write`): a crash or an
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

import hashlib
import json
import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from . import layers as layers_pkg
from . import safetensors_io
from ._io import atomic_write
from ._version import __version__
from .backends import Backend, get_backend
from .errors import CheckpointError
from .layers.base import Layer, layers_of
from .safetensors_io import torch_name

__all__ = ["save_model", "load_model", "save_layers", "load_layers", "LoadedLayers", "read_metadata",
           "read_state", "describe_layers", "write_checkpoint", "register_model_class",
           "atomic_write", "FORMAT_NAME", "FORMAT_VERSION"]

#: Value of the ``format`` field: what marks a file as an xpnet checkpoint.
FORMAT_NAME = "xpnet-checkpoint"
#: Newest format version this module writes and reads.
FORMAT_VERSION = 1
#: Name of the JSON metadata entry inside the ``.npz``.
METADATA_KEY = "__xpnet__"

_FLOAT_DTYPES = ("float32", "float64")
#: What a training state's arrays may hold (optimizer moments, step counts, ...).
_STATE_DTYPES = ("float32", "float64", "int32", "int64", "uint32", "uint64", "bool")
#: A path with this suffix is saved and loaded as safetensors (tensors torch can load).
SAFETENSORS_SUFFIX = ".safetensors"
#: The ``__metadata__`` entry of a safetensors checkpoint holding the JSON header.
SAFETENSORS_HEADER_KEY = "xpnet"
#: Most bytes deflate can expand one stored byte to (its format's limit is about 1032).
_MAX_DEFLATE_RATIO = 1100
#: Readers of the ``.npy`` header versions ``np.savez`` writes.
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------

def _params_digest(entries: list[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over ``(name, dtype, shape, little-endian bytes)`` of each parameter, in order."""
    h = hashlib.sha256()
    for name, arr in entries:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{name}|{arr.dtype.str}|{tuple(arr.shape)}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _state_digest(state: Any, arrays: list[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over a training state: its JSON (canonical) and its arrays, as :func:`_params_digest`."""
    h = hashlib.sha256(json.dumps(state, sort_keys=True).encode("utf-8"))
    h.update(_params_digest(arrays).encode("ascii"))
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
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


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts), "
            f"but encoding it failed: {exc}"
        ) from None


def _layer_entry(i: int, layer: Layer) -> dict:
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


def _host_params(layers: list[Layer], be: Backend) -> list:
    """``(name, host array)`` of every parameter, in order, as float32/float64 NumPy arrays."""
    entries = []
    for i, layer in enumerate(layers):
        for name in layer.param_names:
            host = np.ascontiguousarray(be.to_numpy(getattr(layer, name)))
            if host.dtype.name not in _FLOAT_DTYPES:
                raise CheckpointError(
                    f"parameter layer{i}.{name} must be float32 or float64, got {host.dtype}"
                )
            entries.append((f"layer{i}.{name}", host))
    return entries


def save_layers(path: str | os.PathLike[str], layers: Any, backend: Backend, *, model_config: dict | None = None,
                metadata: dict | None = None, state: dict | None = None,
                state_arrays: dict | None = None) -> None:
    """Write ``layers`` (with their backend) and a JSON header to one ``.npz`` file, atomically.

    A path ending in ``.safetensors`` is written as safetensors instead: the
    tensors under torch's names and layouts (see :func:`torch_name`), the
    same JSON header in the file's metadata. The building block of :func:`save_model` and :meth:`Sequential.save
    <xpnet.Sequential.save>`; see the module docstring for the format. ``layers``: classes of
    :mod:`xpnet.layers` whose ``get_config()`` rebuilds them; ``model_config`` and ``metadata``:
    JSON-serialisable. ``state`` and ``state_arrays``: see :func:`write_checkpoint`.
    """
    header, entries = describe_layers(layers, backend, model_config=model_config,
                                      metadata=metadata)
    write_checkpoint(path, header, entries, state=state, state_arrays=state_arrays)


def describe_layers(layers: Any, backend: Backend, *, model_config: dict | None = None,
                    metadata: dict | None = None) -> tuple[dict, list]:
    """``(header, [(name, host array), ...])`` of a checkpoint of ``layers``, as they are now."""
    architecture = [_layer_entry(i, layer) for i, layer in enumerate(layers)]
    entries = _host_params(layers, backend)
    header = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "xpnet_version": __version__,
        "architecture": architecture,
        "params": [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name}
                   for n, a in entries],
        "backend": backend.name, "device": backend.device_name, "dtype": backend.dtype_name,
        "model_config": json.loads(_to_json(model_config or {}, "model.config")),
        "metadata": json.loads(_to_json(metadata or {}, "metadata")),
        "sha256": _params_digest(entries),
    }
    return header, entries


def write_checkpoint(path: str | os.PathLike[str], header: dict, entries: list, *,
                     state: dict | None = None, state_arrays: dict | None = None) -> None:
    """Write :func:`describe_layers`'s checkpoint (``.npz`` or ``.safetensors``), atomically.

    ``state``, ``state_arrays``: a training state (``.npz``; :mod:`xpnet.backup`): JSON and
    NumPy arrays stored beside the parameters; ``state_sha256`` covers both (:func:`read_state`).
    """
    header = dict(header)
    extra = _state_entries(path, header, state, state_arrays)
    if _is_safetensors(path):
        return _save_safetensors(path, entries, header)
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    arrays = dict(entries + extra)
    arrays[METADATA_KEY] = blob
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _state_entries(path: Any, header: dict, state: dict | None, arrays: dict | None) -> list:
    """Add a training state to ``header``; return its ``(name, host array)`` entries."""
    if state is None and not arrays:
        return []
    if _is_safetensors(path):
        raise ValueError("a training state is saved as .npz, not safetensors")
    entries = [(name, np.ascontiguousarray(a)) for name, a in (arrays or {}).items()]
    for name, a in entries:
        if name == METADATA_KEY or name in {p["name"] for p in header["params"]} \
                or a.dtype.name not in _STATE_DTYPES:
            raise ValueError(f"state array {name!r} ({a.dtype}) clashes with a parameter name "
                             f"or has a dtype outside {_STATE_DTYPES}")
    header["state"] = json.loads(_to_json(state or {}, "the training state"))
    header["state_arrays"] = [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name}
                              for n, a in entries]
    header["state_sha256"] = _state_digest(header["state"], entries)
    return entries


def save_model(model: Any, path: str | os.PathLike[str], **metadata: Any) -> None:
    """Save a model's architecture, parameters and metadata to one ``.npz`` file.

    Parameters
    ----------
    model : Sequential or list of Layer
        Every layer must be a class of :mod:`xpnet.layers` whose
        ``get_config()`` rebuilds it. A model's ``backend`` and ``config``
        attributes are recorded when it has them.
    path : str or os.PathLike
        Destination, written atomically (see :func:`xpnet._io.atomic_write`);
        the name is used as given (no suffix is added). Parent directories are
        created.
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
    layers = layers_of(model, "model")
    backend = getattr(model, "backend", None) or layers[0].backend
    save_layers(path, layers, backend, model_config=getattr(model, "config", None),
                metadata=metadata)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

#: What malformed archives raise from zipfile, zlib and NumPy's .npy parser: unsupported zip
#: features (NotImplementedError), encrypted members (RuntimeError), unbalanced .npy headers
#: (tokenize.TokenError, SyntaxError). Each becomes a CheckpointError naming the file.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
                UnicodeDecodeError, IndexError, TypeError, NotImplementedError, RuntimeError,
                SyntaxError, tokenize.TokenError)


def _corrupt(path: str | os.PathLike[str], detail: str) -> CheckpointError:
    return CheckpointError(
        f"{os.fspath(path)!r} is not a readable xpnet checkpoint: {detail}. The file is "
        "truncated, corrupted or was not written by xpnet's save_model; save the model again."
    )


def _open_npz(path: str | os.PathLike[str]) -> Any:
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


def _member_name(npz: Any, key: str) -> str:
    """The archive member behind ``npz[key]`` (``np.savez`` appends ``.npy``)."""
    return key + ".npy" if key + ".npy" in npz._files else key


def _check_archive_sizes(npz: Any, path: str | os.PathLike[str]) -> None:
    """Refuse archives whose members claim more data than the file can hold.

    Stored members must be as large as their data; deflated ones at most what
    deflate can expand to (about 1032x). Every later allocation is bounded by
    these sizes, so loading allocates O(size of the file).
    """
    file_size = os.path.getsize(path)
    packed = 0
    for info in npz.zip.infolist():
        packed += info.compress_size
        if info.compress_type == zipfile.ZIP_STORED:
            ok = info.file_size == info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            ok = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 64
        else:
            ok = False
        if not ok:
            raise _corrupt(path, f"archive member {info.filename!r} declares {info.file_size} "
                                 f"bytes from {info.compress_size} stored bytes "
                                 f"(compression type {info.compress_type})")
    if packed > file_size:
        raise _corrupt(path, f"its members declare {packed} stored bytes but the file has "
                             f"{file_size}")


def _array_header(npz: Any, key: str, path: str | os.PathLike[str]) -> tuple:
    """``(shape, dtype)`` of the array ``key`` from its ``.npy`` header alone (no data read).

    Also checks that the header's shape and dtype account for exactly the
    member's size, so reading the data allocates what the file holds.
    """
    member = _member_name(npz, key)
    try:
        info = npz.zip.getinfo(member)
        with npz.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            reader = _NPY_HEADER_READERS.get(version)
            if reader is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _fortran, dtype = reader(f)
            offset = f.tell()
    except _READ_ERRORS as exc:
        raise _corrupt(path, f"array {key!r} cannot be read ({type(exc).__name__}: {exc})") \
            from None
    # (Object arrays are pickles: np.load refuses them before reading anything.)
    if not dtype.hasobject and info.file_size != offset + math.prod(shape) * dtype.itemsize:
        raise _corrupt(path, f"array {key!r} declares shape {shape} of {dtype}, which does not "
                             f"match its {info.file_size - offset} bytes of data")
    return tuple(shape), dtype


def _read_header(npz: Any, path: str | os.PathLike[str]) -> dict:
    if METADATA_KEY not in npz.files:
        shown = ", ".join(npz.files[:5]) + (", ..." if len(npz.files) > 5 else "")
        raise CheckpointError(
            f"{os.fspath(path)!r} is an .npz archive but not an xpnet checkpoint: it has no "
            f"{METADATA_KEY!r} metadata entry (its entries: {shown or 'none'})"
        )
    _check_archive_sizes(npz, path)
    _array_header(npz, METADATA_KEY, path)  # its size is what the file holds
    try:
        blob = npz[METADATA_KEY]
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(f"metadata entry has dtype {blob.dtype} and shape {blob.shape}")
        header = json.loads(blob.tobytes().decode("utf-8"))
    except _READ_ERRORS as exc:
        raise _corrupt(path, f"its metadata cannot be read ({type(exc).__name__}: {exc})") from None
    return _check_header(header, path)


def _check_header(header: Any, path: str | os.PathLike[str]) -> dict:
    """The decoded JSON header, its format, version and field types checked."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{os.fspath(path)!r} has a metadata entry but its format is "
            f"{header.get('format') if isinstance(header, dict) else header!r}, expected "
            f"{FORMAT_NAME!r}"
        )
    _check_version(header, path)
    for key, kind in (("architecture", list), ("params", list), ("sha256", str),
                      ("dtype", str)):
        if not isinstance(header.get(key), kind):
            raise _corrupt(path, f"metadata field {key!r} must be a {kind.__name__}, "
                                 f"got {header.get(key)!r}")
    for key in ("model_config", "metadata"):
        if not isinstance(header.get(key, {}), dict):
            raise _corrupt(path, f"metadata field {key!r} must be a dict, got {header[key]!r}")
    return header


def _check_version(header: dict, path: str | os.PathLike[str]) -> None:
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _corrupt(path, f"format_version must be a positive int, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{os.fspath(path)!r} uses checkpoint format version {version}, written by xpnet "
            f"{header.get('xpnet_version', '?')}; this xpnet reads versions up to "
            f"{FORMAT_VERSION}. Upgrade xpnet to load it."
        )


def read_metadata(path: str | os.PathLike[str]) -> dict:
    """The JSON metadata of a checkpoint (architecture, trained-on backend, metadata).

    Parameters are not read or verified; use :func:`load_model` for that.

    Raises
    ------
    CheckpointError
        If the file is missing, not an ``.npz`` or not an xpnet checkpoint.
    """
    if _is_safetensors(path):
        with safetensors_io.open_file(path) as f:
            return _safetensors_header(safetensors_io.read_index(f, path)[0], path)
    with _open_npz(path) as npz:
        return _read_header(npz, path)


def _declared_params(header: dict, path: str | os.PathLike[str], field: str = "params") -> dict:
    """``name -> (shape, dtype name)`` of the arrays the header lists in ``field``, in order."""
    entries = header.get(field, [])
    if not isinstance(entries, list):
        raise _corrupt(path, f"metadata field {field!r} must be a list, got {entries!r}")
    expected = {}
    for entry in entries:
        try:
            name, shape, dtype = entry["name"], tuple(entry["shape"]), entry["dtype"]
            if not isinstance(name, str) or not isinstance(dtype, str) \
                    or not all(type(n) is int and n >= 0 for n in shape):
                raise TypeError("wrong types")
        except (KeyError, TypeError):
            raise _corrupt(path, f"malformed params entry {entry!r}") from None
        expected[name] = (shape, dtype)
    return expected


def _check_stored_arrays(npz: Any, expected: dict, path: str | os.PathLike[str],
                         state: dict | None = None) -> None:
    """Each array named in the header is there with the header's shape and dtype.

    ``state``: the training state's arrays (:func:`read_state`), which may also
    hold integers and booleans.
    """
    state = state or {}
    present = set(npz.files) - {METADATA_KEY}
    missing = sorted((set(expected) | set(state)) - present)
    extra = sorted(present - set(expected) - set(state))
    if missing or extra:
        raise CheckpointError(
            f"{os.fspath(path)!r}: the arrays do not match the metadata "
            f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})"
        )
    for name, (shape, dtype) in expected.items():
        stored_shape, stored_dtype = _array_header(npz, name, path)
        if stored_shape != shape or stored_dtype.name != dtype:
            raise CheckpointError(
                f"{os.fspath(path)!r}: array {name!r} has shape {stored_shape} and dtype "
                f"{stored_dtype}, but the metadata says shape {shape} and dtype {dtype}"
            )
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"{os.fspath(path)!r}: array {name!r} must be float32 or float64, got {dtype}"
            )
    for name, (shape, dtype) in state.items():
        stored_shape, stored_dtype = _array_header(npz, name, path)
        if stored_shape != shape or stored_dtype.name != dtype or dtype not in _STATE_DTYPES:
            raise _corrupt(path, f"state array {name!r} has shape {stored_shape} and dtype "
                                 f"{stored_dtype}, but the metadata says {shape} of {dtype}")


def _read_arrays(npz: Any, expected: dict, header: dict, path: str | os.PathLike[str],
                 verify: bool = True) -> dict:
    """The parameter arrays (shapes already checked), verified against the checksum."""
    arrays = {}
    for name in expected:
        try:
            arrays[name] = npz[name]
            if not isinstance(arrays[name], np.ndarray):  # a member without the .npy magic
                raise ValueError("it is not a .npy array")
        except _READ_ERRORS as exc:
            raise _corrupt(path, f"array {name!r} cannot be read ({type(exc).__name__}: {exc})") \
                from None
    if verify:
        _verify_digest(arrays, header, path)
    return arrays


def _verify_digest(arrays: dict, header: dict, path: str | os.PathLike[str]) -> None:
    digest = _params_digest(list(arrays.items()))
    if digest != header["sha256"]:
        raise CheckpointError(
            f"{os.fspath(path)!r}: parameter checksum mismatch (SHA-256 {digest[:16]}..., "
            f"expected {header['sha256'][:16]}...): the parameters are corrupted"
        )


def _layer_class(i: int, entry: Any, path: str | os.PathLike[str]) -> tuple[type[Layer], dict]:
    """The class and constructor arguments of architecture entry ``i``."""
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
    return cls, config


def _cannot_rebuild(i: int, cls: type, config: dict, exc: Exception,
                    path: str | os.PathLike[str]) -> CheckpointError:
    return CheckpointError(
        f"{os.fspath(path)!r}: cannot rebuild layer {i} as {cls.__name__}(**{config!r}): {exc}"
    )


#: A layer to build: its class, its config and its parameter shapes (``None``: unknown).
_Plan = tuple[type[Layer], dict, dict | None]


def _plan_layers(header: dict, expected: dict, path: str | os.PathLike[str]) -> list[_Plan]:
    """``(class, config, declared param shapes or None)`` per layer, checked against the file.

    Nothing is built: a header that declares more than the file holds is
    refused here, before any allocation.
    """
    if not header["architecture"]:
        raise _corrupt(path, "its architecture lists no layers")
    plan: list[_Plan] = [(*_layer_class(i, e, path), None)
                         for i, e in enumerate(header["architecture"])]
    wanted = [f"layer{i}.{n}" for i, (cls, _, _) in enumerate(plan) for n in cls.param_names]
    if wanted != list(expected):
        raise CheckpointError(
            f"{os.fspath(path)!r}: the architecture needs parameters {wanted} but the file "
            f"holds {list(expected)}"
        )
    for i, (cls, config, _) in enumerate(plan):
        try:
            shapes = cls.param_shapes(config)
        except (TypeError, ValueError) as exc:
            raise _cannot_rebuild(i, cls, config, exc, path) from None
        for name, want in (shapes or {}).items():
            _check_param_shape(path, i, cls.__name__, name, expected[f"layer{i}.{name}"][0], want)
        plan[i] = (cls, config, shapes)
    return plan


def _check_param_shape(path: str | os.PathLike[str], i: int, cls_name: str, name: str, stored: tuple,
                       want: tuple) -> None:
    if tuple(stored) != tuple(want):
        raise CheckpointError(
            f"{os.fspath(path)!r}: layer{i}.{name} has shape {tuple(stored)} but "
            f"{cls_name} layer {i} needs {tuple(want)}"
        )


def _build_layer(i: int, plan_entry: _Plan, arrays: dict, be: Backend, path: str | os.PathLike[str]) -> Layer:
    """Layer ``i`` from its class, config and stored parameters (nothing drawn at random)."""
    cls, config, shapes = plan_entry
    params = {n: arrays[f"layer{i}.{n}"] for n in cls.param_names}
    try:
        # A layer that cannot tell its shapes unbuilt is built, then checked.
        layer = cls.from_config(config, params if shapes is not None else None, backend=be)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as exc:
        raise _cannot_rebuild(i, cls, config, exc, path) from None
    if shapes is None:
        for name in cls.param_names:
            _check_param_shape(path, i, cls.__name__, name, params[name].shape,
                               getattr(layer, name).shape)
        layer._set_host_params(params)
    return layer


class LoadedLayers(NamedTuple):
    """What :func:`load_layers` returns."""

    layers: list[Layer]
    backend: Backend
    header: dict


def load_layers(path: str | os.PathLike[str], *, backend: Backend | str | None = None, device: Any = None, dtype: Any = None) -> LoadedLayers:
    """Read and verify a checkpoint; rebuild its layers on any backend, device and dtype.

    The header's shapes are checked against the stored arrays, and the
    architecture against both, before any layer is built; layers are built
    from the stored parameters (no random draw), so loading allocates O(size
    of the file) whatever the header says.

    Parameters
    ----------
    path : str or os.PathLike
    backend, device, dtype : optional
        As for :func:`load_model`.

    Returns
    -------
    LoadedLayers
        ``(layers, backend, header)``.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted, of another format or
        version, or its arrays do not fit its architecture.
    """
    if _is_safetensors(path):
        header, plan, arrays = _load_safetensors(path)
    else:
        with _open_npz(path) as npz:
            header = _read_header(npz, path)
            expected = _declared_params(header, path)
            # A training state's arrays may sit beside the parameters (a backup loads as a model).
            _check_stored_arrays(npz, expected, path, _declared_params(header, path, "state_arrays"))
            _check_dtype(header, expected, path)
            plan = _plan_layers(header, expected, path)
            arrays = _read_arrays(npz, expected, header, path)
    be = get_backend(backend, device=device, dtype=header["dtype"] if dtype is None else dtype)
    layers = [_build_layer(i, entry, arrays, be, path) for i, entry in enumerate(plan)]
    return LoadedLayers(layers, be, header)


def read_state(path: str | os.PathLike[str]) -> tuple[dict, dict, dict]:
    """``(header, params, state arrays)`` of a backup (:mod:`xpnet.backup`), all verified.

    Every size is checked before anything is read, then both digests (the
    parameters', and the state's over its JSON ``header["state"]`` and arrays).
    Raises :class:`~xpnet.errors.CheckpointError` for anything else.
    """
    with _open_npz(path) as npz:
        header = _read_header(npz, path)
        if not isinstance(header.get("state"), dict) or "state_sha256" not in header:
            raise CheckpointError(f"{os.fspath(path)!r} is a model checkpoint without a "
                                  "training state (it was not written by a backup)")
        expected = _declared_params(header, path)
        declared = _declared_params(header, path, "state_arrays")
        _check_stored_arrays(npz, expected, path, declared)
        _check_dtype(header, expected, path)
        params = _read_arrays(npz, expected, header, path)
        state_arrays = _read_arrays(npz, declared, header, path, verify=False)
    digest = _state_digest(header["state"], list(state_arrays.items()))
    if digest != header["state_sha256"]:
        raise _corrupt(path, "training state checksum mismatch")
    return header, params, state_arrays


#: Model classes by name, registered by the modules that define them (Sequential).
_MODEL_CLASSES: dict[str, Any] = {}  # classes with a `load` classmethod
_ModelClass = TypeVar("_ModelClass", bound=type)


def register_model_class(cls: _ModelClass) -> _ModelClass:
    """Make ``cls`` (with a ``load`` classmethod) what :func:`load_model` builds.

    :class:`xpnet.Sequential` registers itself; this keeps this module free of
    any model class.
    """
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def load_model(path: str | os.PathLike[str], *, backend: Backend | str | None = None, device: Any = None, dtype: Any = None) -> Any:
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
    return _MODEL_CLASSES["Sequential"].load(path, backend=backend, device=device, dtype=dtype)


# --------------------------------------------------------------------------
# safetensors: the same header, tensors under torch's names
# --------------------------------------------------------------------------

def _is_safetensors(path: Any) -> bool:
    return isinstance(path, (str, os.PathLike)) and \
        Path(path).suffix.lower() == SAFETENSORS_SUFFIX


def _check_dtype(header: dict, expected: dict, path: str | os.PathLike[str]) -> None:
    """The model's dtype is float32 or float64, and every parameter has it (as saved)."""
    if header["dtype"] not in _FLOAT_DTYPES:
        raise _corrupt(path, f"dtype must be float32 or float64, got {header['dtype']!r}")
    other = {name: dtype for name, (_, dtype) in expected.items() if dtype != header["dtype"]}
    if other:
        raise _corrupt(path, f"the model's dtype is {header['dtype']} but parameters "
                             f"{sorted(other)[:4]} are declared {sorted(set(other.values()))}")


def _save_safetensors(path: str | os.PathLike[str], entries: list, header: dict) -> None:
    tensors = []
    for name, arr in entries:
        stored, transposed = torch_name(name)
        tensors.append((stored, arr.T if transposed else arr))
    meta = {"format": "pt", SAFETENSORS_HEADER_KEY: json.dumps(header)}
    safetensors_io.write_file(path, tensors, meta)


def _safetensors_header(meta: dict, path: str | os.PathLike[str]) -> dict:
    """The xpnet header kept in a safetensors file's metadata (a foreign file has none)."""
    text = meta.get(SAFETENSORS_HEADER_KEY)
    if text is None:
        raise CheckpointError(
            f"{os.fspath(path)!r} is a safetensors file but not an xpnet checkpoint: its "
            f"metadata has no {SAFETENSORS_HEADER_KEY!r} entry (keys: {sorted(meta)[:5]}). "
            "For a torch model's weights, build the torch.nn.Sequential, load_state_dict "
            "and convert it with xpnet.interop.from_torch"
        )
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _corrupt(path, f"its metadata cannot be read ({type(exc).__name__}: {exc})") \
            from None
    return _check_header(header, path)


def _check_safetensors_index(index: dict, expected: dict, path: str | os.PathLike[str]) -> None:
    """Each declared parameter is stored under its torch name, shape (transposed) and dtype."""
    wanted = {torch_name(n)[0]: n for n in expected}
    missing, extra = sorted(set(wanted) - set(index)), sorted(set(index) - set(wanted))
    if missing or extra:
        raise CheckpointError(f"{os.fspath(path)!r}: the tensors do not match the metadata "
                              f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})")
    for stored, name in wanted.items():
        shape, dtype = expected[name]
        if torch_name(name)[1]:
            shape = tuple(reversed(shape))
        info = index[stored]
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{os.fspath(path)!r}: tensor {stored!r} must be float32 or "
                                  f"float64, got {dtype}")
        if info.shape != tuple(shape) or info.dtype.name != dtype:
            raise CheckpointError(
                f"{os.fspath(path)!r}: tensor {stored!r} has shape {info.shape} and dtype "
                f"{info.dtype.name}, but the metadata says shape {tuple(shape)} and dtype {dtype}"
            )


def _load_safetensors(path: str | os.PathLike[str]) -> tuple[dict, list, dict]:
    """``(header, plan, arrays)`` of a safetensors checkpoint: every size and the architecture
    checked before a tensor is read, the digest after."""
    with safetensors_io.open_file(path) as f:
        meta, index = safetensors_io.read_index(f, path)
        header = _safetensors_header(meta, path)
        expected = _declared_params(header, path)
        _check_dtype(header, expected, path)
        plan = _plan_layers(header, expected, path)
        _check_safetensors_index(index, expected, path)
        arrays = {}
        for name in expected:
            stored, transposed = torch_name(name)
            arr = safetensors_io.read_tensor(f, index[stored], path)
            arrays[name] = np.ascontiguousarray(arr.T) if transposed else arr
    _verify_digest(arrays, header, path)
    return header, plan, arrays
