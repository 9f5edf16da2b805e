"""The safetensors file format, read and written with NumPy alone (no third-party package).

A safetensors file is, from its public specification:

1. 8 bytes: ``N``, the header's length, an unsigned little-endian 64-bit integer;
2. ``N`` bytes: a UTF-8 JSON object mapping each tensor's name to
   ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (byte
   offsets into the data that follows), plus an optional ``"__metadata__"``
   object of string to string;
3. the tensors' bytes, little-endian, C order, back to back.

The reader trusts nothing in the header: the header length is checked
against the file before it is read, every entry's type, shape and offsets
before any tensor is allocated (each tensor's bytes must be exactly its
shape times its item size, inside the file, and the tensors must tile the
data with no gap or overlap, as the reference implementation requires). So
reading allocates at most the size of the file. Every failure is a
:class:`~xpnet.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from ._io import atomic_write
from .errors import CheckpointError

__all__ = ["TensorInfo", "read_index", "read_tensor", "read_file", "write_file", "METADATA_KEY",
           "torch_name"]

#: The header entry holding the file's string-to-string metadata.
METADATA_KEY = "__metadata__"
#: The reference implementation's largest header (100 MB): a bigger one is refused unread.
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype codes and their little-endian NumPy dtypes (BF16 and FP8 have none).
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("<").str: k for k, v in DTYPES.items()}


class TensorInfo(NamedTuple):
    """One header entry, checked: dtype, shape and where its bytes lie in the file."""

    dtype: np.dtype
    shape: tuple[int, ...]
    start: int  # absolute file offset of the first byte
    nbytes: int


def _bad(path: Any, detail: str) -> CheckpointError:
    return CheckpointError(f"{os.fspath(path)!r} is not a readable safetensors file: {detail}")


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _read_header_json(f: IO[bytes], file_size: int, path: Any) -> tuple[dict, int]:
    """The header object and the offset where the data starts (sizes checked first)."""
    if file_size < 8:
        raise _bad(path, f"it has {file_size} bytes, fewer than the 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > min(file_size - 8, MAX_HEADER_BYTES):
        raise _bad(path, f"its header claims {n} bytes but the file has {file_size - 8} after "
                         f"the length (at most {MAX_HEADER_BYTES} are allowed)")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"its header is not UTF-8 JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"its header must be a JSON object, got {type(header).__name__}")
    return header, 8 + n


def _check_metadata(meta: Any, path: Any) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        raise _bad(path, f"{METADATA_KEY!r} must map strings to strings")
    return meta


def _entry(name: str, entry: Any, data_size: int, path: Any) -> tuple[np.dtype, tuple, int, int]:
    """``(dtype, shape, begin, end)`` of one header entry, every field checked."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r} must be an object with exactly dtype, shape and "
                         f"data_offsets, got {str(entry)[:200]}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise _bad(path, f"tensor {name!r} has dtype {code!r}; readable: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        raise _bad(path, f"tensor {name!r} has shape {str(shape)[:100]}, not a list of sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 \
            or not all(type(o) is int for o in offsets) \
            or not 0 <= offsets[0] <= offsets[1] <= data_size:
        raise _bad(path, f"tensor {name!r} has data_offsets {str(offsets)[:100]}, outside the "
                         f"{data_size} bytes of data")
    dtype = np.dtype(DTYPES[code])
    if math.prod(shape) * dtype.itemsize != offsets[1] - offsets[0]:
        raise _bad(path, f"tensor {name!r} of shape {tuple(shape)} and dtype {code} needs "
                         f"{math.prod(shape) * dtype.itemsize} bytes but its offsets span "
                         f"{offsets[1] - offsets[0]}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _check_tiling(spans: list[tuple[int, int, str]], data_size: int, path: Any) -> None:
    """The tensors cover the data exactly: no gap, no overlap, nothing after the last."""
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise _bad(path, f"tensor {name!r} starts at data byte {begin}, expected {at} "
                             "(tensors must follow each other with no gap or overlap)")
        at = end
    if at != data_size:
        raise _bad(path, f"its tensors end at data byte {at} but the file holds {data_size}")


def read_index(f: IO[bytes], path: Any) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    """The metadata and the checked tensor index of an open file; no tensor is read."""
    file_size = os.fstat(f.fileno()).st_size
    header, data_start = _read_header_json(f, file_size, path)
    meta = _check_metadata(header.pop(METADATA_KEY, None), path)
    data_size = file_size - data_start
    index, spans = {}, []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(name, entry, data_size, path)
        index[name] = TensorInfo(dtype, shape, data_start + begin, end - begin)
        spans.append((begin, end, name))
    _check_tiling(spans, data_size, path)
    return meta, index


def read_tensor(f: IO[bytes], info: TensorInfo, path: Any) -> np.ndarray:
    """One tensor's data (checked by :func:`read_index`), in native byte order."""
    f.seek(info.start)
    raw = f.read(info.nbytes)
    if len(raw) != info.nbytes:  # the file shrank since it was indexed
        raise _bad(path, f"a tensor's {info.nbytes} bytes end past the end of the file")
    arr = np.frombuffer(raw, dtype=info.dtype).reshape(info.shape)
    return arr.astype(info.dtype.newbyteorder("="), copy=True)


def open_file(path: Any) -> IO[bytes]:
    """``path`` opened for reading, or a :class:`CheckpointError` saying why not."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no file at {os.fspath(path)!r}: it does not exist")
    if p.is_dir():
        raise CheckpointError(f"{os.fspath(path)!r} is a directory, not a file")
    try:
        return open(p, "rb")
    except OSError as exc:
        raise CheckpointError(f"{os.fspath(path)!r} cannot be opened: {exc}") from None


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """``(metadata, {name: array})`` of a whole safetensors file, everything checked.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from xpnet import safetensors_io
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> safetensors_io.write_file(path, [("w", np.eye(2, dtype=np.float32))], {"k": "v"})
    >>> meta, tensors = safetensors_io.read_file(path)
    >>> meta, tensors["w"].tolist()
    ({'k': 'v'}, [[1.0, 0.0], [0.0, 1.0]])
    """
    with open_file(path) as f:
        meta, index = read_index(f, path)
        return meta, {name: read_tensor(f, info, path) for name, info in index.items()}


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def _code(name: str, arr: np.ndarray) -> str:
    code = _CODES.get(arr.dtype.newbyteorder("<").str)
    if code is None:
        raise TypeError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors (as written "
                        f"here) cannot hold; use one of {', '.join(DTYPES)}")
    return code


def _header_bytes(tensors: list[tuple[str, np.ndarray]], metadata: dict[str, str]) -> bytes:
    """The JSON header, padded with spaces to a multiple of 8 bytes (as the reference
    writer does, so the data that follows is aligned)."""
    header: dict[str, Any] = {METADATA_KEY: dict(metadata)} if metadata else {}
    at = 0
    for name, arr in tensors:
        header[name] = {"dtype": _code(name, arr), "shape": list(arr.shape),
                        "data_offsets": [at, at + arr.nbytes]}
        at += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_file(path: str | os.PathLike[str], tensors: Iterable[tuple[str, np.ndarray]],
               metadata: dict[str, str] | None = None) -> None:
    """Write ``(name, array)`` pairs and string ``metadata`` as one safetensors file, atomically."""
    tensors = [(name, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")))
               for name, arr in tensors]
    names = [name for name, _ in tensors]
    if len(set(names)) != len(names) or METADATA_KEY in names:
        raise ValueError(f"tensor names must be unique and not {METADATA_KEY!r}, got {names}")
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map strings to strings")
    head = _header_bytes(tensors, metadata)
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, arr in tensors:
            f.write(arr.tobytes())


#: xpnet parameter -> (torch.nn.Linear's name, stored transposed): Linear keeps its
#: weight as (out_features, in_features), Dense as (input_units, output_units).
_TORCH_PARAMS = {"weights": ("weight", True), "biases": ("bias", False)}


def torch_name(name: str) -> tuple[str, bool]:
    """The safetensors (torch) name of parameter ``name`` and whether it is stored transposed.

    Layer ``i`` of a model is module ``i`` of the equivalent ``torch.nn.Sequential``,
    so ``layer0.weights`` (Dense, ``(in, out)``) is ``0.weight`` (Linear, ``(out, in)``)
    and ``layer0.biases`` is ``0.bias``.

    Examples
    --------
    >>> from xpnet.safetensors_io import torch_name
    >>> torch_name("layer2.weights"), torch_name("layer2.biases")
    (('2.weight', True), ('2.bias', False))
    """
    layer, _, param = name.partition(".")
    stored, transposed = _TORCH_PARAMS.get(param, (param, False))
    return f"{layer.removeprefix('layer')}.{stored}", transposed
