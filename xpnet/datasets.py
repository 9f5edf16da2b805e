"""MNIST, loaded and split exactly as the tutorial does, from files checked byte for byte.

:func:`load_mnist` returns ``X_train, y_train, X_val, y_val, X_test, y_test``:
pixels scaled to ``[0, 1]``, the last 10,000 training images held out for
validation, images flattened to 784 features (optional), as NumPy arrays or
straight on a backend's device.

The four files are read with :func:`read_idx` (the IDX format of the MNIST
distribution, gzip-compressed or raw), which checks the magic number, the
dimensions and the length of every file. The SHA-256 of each decompressed
file is compared with the canonical MNIST one (``verify=False`` accepts any
dataset in the same format, e.g. Fashion-MNIST).

Where the files are looked for (:func:`locate_mnist`), first match wins:

1. ``data_dir`` (an argument; when given, only there);
2. the environment variable ``XPNET_DATA_DIR`` (when set, only there);
3. ``data/mnist`` of a source checkout (next to the ``xpnet`` package);
4. the user cache, ``$XDG_CACHE_HOME/xpnet/mnist`` (default ``~/.cache/xpnet/mnist``);
5. a download into that cache from the public mirrors in :data:`MNIST_MIRRORS`
   (override with ``mirrors=`` or ``XPNET_MNIST_MIRRORS``, comma separated),
   verified before an atomic rename: no partial file is ever left behind.

Examples
--------
>>> import xpnet.datasets as ds
>>> X_train, y_train, X_val, y_val, X_test, y_test = ds.load_mnist()  # doctest: +SKIP
>>> X_train.shape, X_val.shape, X_test.shape, X_train.dtype  # doctest: +SKIP
((50000, 784), (10000, 784), (10000, 784), dtype('float32'))
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import math
import os
import struct
import sys
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write
from ._typing import Array
from ._validation import check_bool, check_int
from .backends import Backend, get_backend
from .errors import DataError

__all__ = [
    "load_mnist",
    "locate_mnist",
    "download_mnist",
    "read_idx",
    "mnist_cache_dir",
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
]

#: The four MNIST files (decompressed names) by role.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: SHA-256 of the *decompressed* canonical files (the ``.gz`` wrappers vary by mirror).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Public mirrors serving ``<name>.gz``; tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

ENV_DATA_DIR = "XPNET_DATA_DIR"
ENV_MIRRORS = "XPNET_MNIST_MIRRORS"

#: IDX type codes -> big-endian NumPy dtypes.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1 << 16


# --------------------------------------------------------------------------
# The IDX format
# --------------------------------------------------------------------------

def _decompressed_bytes(source: Any, name: str) -> bytes:
    """The contents of ``source`` (a path or bytes), gunzipped when it is gzip.

    Decompression never holds more than the IDX header declares (see
    :func:`_gunzip_idx`), so a small crafted ``.gz`` cannot make this allocate
    without bound.
    """
    raw = _source_bytes(source, name)
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return _gunzip_idx(raw, name)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{name}: corrupted or truncated gzip data ({type(exc).__name__}: {exc}); "
            "delete the file and fetch it again"
        ) from None


def _source_bytes(source: Any, name: str) -> bytes:
    """The bytes of ``source``: bytes-like as given, a path read whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}")
    try:
        with open(source, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, expected an IDX file") from None


def _gunzip_idx(raw: bytes, name: str) -> bytes:
    """Gunzip ``raw``, keeping at most the length its IDX header declares.

    The header is decompressed first; then exactly the declared data length
    is kept, and anything beyond it is only counted (in fixed-size chunks, to
    reach the gzip CRC check and report the true size), never stored.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        head = _read_at_most(f, 4)
        if len(head) == 4 and head[:2] == b"\x00\x00":
            head += _read_at_most(f, 4 * head[3])
        declared = _declared_data_length(head)
        if declared is None:  # malformed header: _parse_idx reports it; drain for the CRC
            _count_rest(f)
            return head
        data = _read_at_most(f, declared)
        extra = _count_rest(f)
    if extra:
        shape = struct.unpack(f">{head[3]}I", head[4:])
        raise DataError(
            f"{name}: oversized IDX data: shape {shape} of {_IDX_TYPES[head[2]].name} needs "
            f"{declared} bytes after the header, got {declared + extra}"
        )
    return head + data


def _read_at_most(f: io.BufferedIOBase, n: int) -> bytes:
    """Up to ``n`` bytes of ``f``, read in bounded chunks (``read(n)`` preallocates ``n``)."""
    parts, left = [], n
    while left > 0:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _count_rest(f: io.BufferedIOBase) -> int:
    """How many bytes are left in ``f``, read and dropped chunk by chunk."""
    total = 0
    while chunk := f.read(_CHUNK):
        total += len(chunk)
    return total


def _declared_data_length(head: bytes) -> int | None:
    """Bytes of data an IDX header declares (``None`` when the header is malformed)."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES:
        return None
    n_dims = head[3]
    if n_dims == 0 or len(head) != 4 + 4 * n_dims:
        return None
    shape = struct.unpack(f">{n_dims}I", head[4:])
    return math.prod(shape) * _IDX_TYPES[head[2]].itemsize


def _parse_idx(raw: bytes, name: str, *, ndim: int | None = None) -> np.ndarray:
    if len(raw) < 4:
        raise DataError(f"{name}: truncated IDX file: {len(raw)} bytes, the header alone is 4+")
    zero, type_code, n_dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES:
        raise DataError(
            f"{name}: not an IDX file: bad magic number 0x{raw[:4].hex()} (expected "
            "0x0000 followed by a type code in 08/09/0B/0C/0D/0E and the number of "
            "dimensions, e.g. 0x00000803 for MNIST images)"
        )
    if ndim is not None and n_dims != ndim:
        raise DataError(
            f"{name}: expected a {ndim}-dimensional IDX file (magic 0x00000{type_code:02x}"
            f"{ndim:02x}), got {n_dims} dimensions (magic 0x{raw[:4].hex()})"
        )
    if n_dims == 0:
        raise DataError(f"{name}: IDX file with 0 dimensions")
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise DataError(
            f"{name}: truncated IDX header: {len(raw)} bytes, {header} needed for "
            f"{n_dims} dimensions"
        )
    shape = struct.unpack(f">{n_dims}I", raw[4:header])
    dtype = _IDX_TYPES[type_code]
    # Python ints: 255 dimensions of 2**32 - 1 overflow int64 (np.prod would wrap).
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        raise DataError(
            f"{name}: {'truncated' if got < expected else 'oversized'} IDX data: shape "
            f"{shape} of {dtype.name} needs {expected} bytes after the header, got {got}"
        )
    if math.prod(d for d in shape if d) * dtype.itemsize > sys.maxsize:
        # NumPy refuses such a shape even when a zero dimension makes it empty.
        raise DataError(
            f"{name}: IDX shape {shape} of {dtype.name} is too large for an array on this "
            "platform"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


def read_idx(source: str | os.PathLike[str] | bytes, *, ndim: int | None = None,
             sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array.

    The header is validated: two zero bytes, a known type code, the number of
    dimensions (``ndim`` when given) and a data length that matches the
    dimensions exactly.

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A file path, or the file's contents.
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).
    sha256 : str, optional
        Expected SHA-256 (hex) of the decompressed contents.

    Returns
    -------
    numpy.ndarray
        Read-only when ``source`` is bytes (a view on them); native byte order.

    Raises
    ------
    DataError
        On a missing, truncated, corrupted or malformed file, or a checksum mismatch.

    Examples
    --------
    >>> import struct, numpy as np
    >>> from xpnet.datasets import read_idx
    >>> raw = struct.pack(">HBB2I", 0, 0x08, 2, 2, 3) + bytes(range(6))
    >>> read_idx(raw)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> read_idx(raw[:-1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xpnet.errors.DataError: <bytes>: truncated IDX data: shape (2, 3) of uint8 needs 6 bytes ...
    """
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    raw = _decompressed_bytes(source, name)
    if sha256 is not None:
        _check_sha256(raw, sha256, name)
    return _parse_idx(raw, name, ndim=ndim)


def _check_sha256(raw: bytes, expected: str, name: str) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected:
        raise DataError(
            f"{name}: SHA-256 of the decompressed contents is {digest}, expected {expected} "
            "(the canonical MNIST file). The file is corrupted, or it is a different "
            "dataset in MNIST format -- pass verify=False (CLI: --no-verify) to load that"
        )


# --------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------

def _file_variants(base: str) -> list[str]:
    # train-images-idx3-ubyte(.gz) and the dotted spelling of some re-distributions.
    dotted = base.replace("-idx", ".idx")
    return [base + ".gz", base, dotted + ".gz", dotted]


def _find_file(directory: Path, base: str) -> Path | None:
    for candidate in _file_variants(base):
        p = directory / candidate
        if p.is_file():
            return p
    return None


def _files_in(directory: Path) -> tuple[dict | None, list[str]]:
    """``({base: path}, [])`` when all four files are there, else ``(None, missing)``."""
    found, missing = {}, []
    for base in MNIST_FILES.values():
        p = _find_file(directory, base)
        if p is None:
            missing.append(base + "[.gz]")
        else:
            found[base] = p
    return (found, []) if not missing else (None, missing)


def _complete_files(directory: Path) -> dict:
    """``{base: path}`` of a directory :func:`_files_in` found complete (a ``DataError`` if not)."""
    files, missing = _files_in(directory)
    if files is None:  # the files went away since they were found
        raise DataError(f"{directory}: missing {', '.join(missing)}")
    return files


def _checkout_dir() -> Path:
    """``data/mnist`` next to the ``xpnet`` package: present in a source checkout."""
    return Path(__file__).resolve().parent.parent / "data" / "mnist"


def mnist_cache_dir() -> Path:
    """The user cache for MNIST: ``$XDG_CACHE_HOME/xpnet/mnist`` or ``~/.cache/xpnet/mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xpnet" / "mnist"


def _mirror_list(mirrors: str | Sequence[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get(ENV_MIRRORS, "").strip()
        mirrors = env.replace(";", ",").split(",") if env else MNIST_MIRRORS
    elif isinstance(mirrors, str):
        mirrors = mirrors.split(",")
    out = [m.strip() for m in mirrors if m and m.strip()]
    if not out:
        raise ValueError(f"mirrors must name at least one base URL, got {mirrors!r}")
    return [m if m.endswith("/") else m + "/" for m in out]


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int, ndim: int, sha256: str | None) -> np.ndarray:
    """Parsed, verified contents of one file; cached per (path, size, mtime) in this process."""
    arr = read_idx(path, ndim=ndim, sha256=sha256)
    arr.setflags(write=False)
    return arr


def _read_file(path: Path, base: str, verify: bool) -> np.ndarray:
    st = os.stat(path)
    ndim = 3 if "images" in base else 1
    return _read_cached(os.fspath(path), st.st_size, st.st_mtime_ns, ndim,
                        MNIST_SHA256[base] if verify else None)


def _read_all(files: dict, verify: bool) -> dict:
    return {base: _read_file(path, base, verify) for base, path in files.items()}


def _urlopen(url: str, timeout: float) -> Any:
    """``urllib.request.urlopen`` (a seam for tests)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) mirrors only


def _download_one(url: str, dest: Path, base: str, *, verify: bool, progress: bool) -> None:
    """Fetch ``url`` into ``dest`` atomically; verify it before the rename."""


    if not url.startswith(("http://", "https://", "file://")):
        raise ValueError(f"mirror URL must be http(s):// or file://, got {url!r}")
    with atomic_write(dest) as f:
        with _urlopen(url, _DOWNLOAD_TIMEOUT) as response:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") \
                else None
            total = int(length) if length and length.isdigit() else None
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, desc=dest.name, unit="B", unit_scale=True,
                           unit_divisor=1024, leave=False, file=sys.stderr)
            received = 0
            chunks = []
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    chunks.append(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        if total is not None and received != total:
            raise DataError(f"{url}: truncated download: got {received} of {total} bytes")
        raw = _decompressed_bytes(b"".join(chunks), url)
        if verify:
            _check_sha256(raw, MNIST_SHA256[base], url)
        _parse_idx(raw, url, ndim=3 if "images" in base else 1)


def download_mnist(cache_dir: str | os.PathLike[str] | None = None, *,
                   mirrors: str | Sequence[str] | None = None, verify: bool = True,
                   progress: bool = True, force: bool = False) -> Path:
    """Download the four MNIST files into ``cache_dir`` (default :func:`mnist_cache_dir`).

    Each file is tried on every mirror in turn, streamed into a temporary file
    in ``cache_dir`` (with a tqdm progress bar), checked (length, gzip, IDX
    header, SHA-256 of the decompressed contents) and only then renamed into
    place; a failed or interrupted download (``KeyboardInterrupt`` included)
    leaves no partial file.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
    mirrors : str or list of str, optional
        Base URLs serving ``<name>.gz``; default ``XPNET_MNIST_MIRRORS`` (comma
        separated) or :data:`MNIST_MIRRORS`.
    verify : bool, default True
        Check the SHA-256 of the decompressed files.
    progress : bool, default True
    force : bool, default False
        Download even files that are already there and valid.

    Returns
    -------
    pathlib.Path
        ``cache_dir``.

    Raises
    ------
    DataError
        When a file could not be fetched from any mirror (every attempt is listed).
    """
    cache = Path(cache_dir) if cache_dir is not None else mnist_cache_dir()
    urls = _mirror_list(mirrors)
    for base in MNIST_FILES.values():
        existing = _find_file(cache, base)
        if existing is not None and not force:
            try:
                _read_file(existing, base, verify)
                continue
            except DataError:
                pass  # a bad cached copy is replaced below
        dest = cache / (base + ".gz")
        errors = []
        for mirror in urls:
            url = mirror + base + ".gz"
            try:
                _download_one(url, dest, base, verify=verify, progress=progress)
            except (OSError, DataError, ValueError, http.client.HTTPException) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if existing is not None and existing != dest:
                existing.unlink(missing_ok=True)  # the bad copy under another spelling
            break
        else:
            raise DataError(
                f"could not download {base}.gz into {cache}; tried:\n  "
                + "\n  ".join(errors)
            )
    return cache


def locate_mnist(data_dir: str | os.PathLike[str] | None = None, *, verify: bool = True,
                 download: bool = True, mirrors: str | Sequence[str] | None = None,
                 progress: bool = True) -> Path:
    """The directory MNIST is loaded from, after checking its files.

    Search order: ``data_dir``; ``$XPNET_DATA_DIR``; ``data/mnist`` of a source
    checkout; the user cache (:func:`mnist_cache_dir`); a download into the
    cache (``download=True``). An explicit ``data_dir`` or ``XPNET_DATA_DIR``
    is the only place looked at when given: a wrong path is reported, never
    silently replaced by another copy.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DataError
        Listing every place tried, what was wrong there and what to do.
    """
    tried: list[str] = []

    def problem(directory: Path) -> str | None:
        """Why ``directory`` holds no MNIST (``None``: all four files are there)."""
        if not directory.is_dir():
            return "no such directory"
        missing = _files_in(directory)[1]
        return f"missing {', '.join(missing)}" if missing else None

    explicit = None
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a str or os.PathLike, got {type(data_dir).__name__}")
        explicit = ("data_dir", Path(data_dir).expanduser())
    elif os.environ.get(ENV_DATA_DIR):
        explicit = (f"${ENV_DATA_DIR}", Path(os.environ[ENV_DATA_DIR]).expanduser())
    if explicit is not None:
        label, directory = explicit
        why = problem(directory)
        if why is not None:
            raise DataError(
                f"MNIST not found in {label}={str(directory)!r}: {why}. Put the four files "
                f"there ({', '.join(b + '.gz' for b in MNIST_FILES.values())}, or "
                f"uncompressed), or leave {label} unset to use the shipped copy, the cache "
                "or a download"
            )
        _read_all(_complete_files(directory), verify)  # raises DataError naming a bad file
        return directory
    tried.append("data_dir: not given")
    tried.append(f"${ENV_DATA_DIR}: not set")

    checkout = _checkout_dir()
    why = problem(checkout)
    if why is None:
        _read_all(_complete_files(checkout), verify)  # a broken shipped copy is an error
        return checkout
    tried.append(f"source checkout {checkout}: {why}")

    cache = mnist_cache_dir()
    why = problem(cache)
    if why is None:
        try:
            _read_all(_complete_files(cache), verify)
            return cache
        except DataError as exc:
            why = str(exc)
            if not download:
                raise DataError(f"{exc}; delete {cache} and retry") from None
    tried.append(f"cache {cache}: {why}")

    if download:
        try:
            # Replaces a bad cached file too.
            return download_mnist(cache, mirrors=mirrors, verify=verify, progress=progress)
        except DataError as exc:
            tried.append(f"download into {cache}: {exc}")
    else:
        tried.append("download: disabled (download=False)")
    files = ", ".join(b + ".gz" for b in MNIST_FILES.values())
    raise DataError(
        "could not find or download MNIST. Tried, in order:\n  - " + "\n  - ".join(tried)
        + f"\nWhat to do: copy the four MNIST files ({files}) into {cache}, or into any "
        f"directory and pass data_dir= (CLI: --data-dir) or set {ENV_DATA_DIR}; or check "
        f"the network, or point {ENV_MIRRORS} at a reachable mirror."
    )


# --------------------------------------------------------------------------
# The tutorial's load_dataset
# --------------------------------------------------------------------------

def _scale(images: np.ndarray, dtype: str, flatten: bool) -> np.ndarray:
    n = images.shape[0]
    if flatten:
        images = images.reshape(n, -1)
    if dtype == "uint8":
        return np.array(images, dtype=np.uint8)  # a writeable copy of the raw pixels
    # The tutorial computes x.astype(float) / 255 in float64; a 256-entry table of
    # those quotients, cast once to ``dtype``, gives identical values in one pass.
    table = (np.arange(256, dtype=np.float64) / 255.0).astype(dtype)
    return table[images]


def _default_dtype() -> str:
    """The default backend's floating dtype (``XPNET_DTYPE``, float32 when unset), by name."""
    name = os.environ.get("XPNET_DTYPE", "float32")
    if name not in ("float32", "float64"):
        raise ValueError(f"XPNET_DTYPE must be 'float32' or 'float64', got {name!r}")
    return name


def load_mnist(data_dir: str | os.PathLike[str] | None = None, *, flatten: bool = True, dtype: Any = None,
               n_val: int = 10000, backend: Backend | str | None = None, device: Any = None,
               verify: bool = True, download: bool = True,
               mirrors: str | Sequence[str] | None = None,
               progress: bool = True) -> tuple[Array, ...]:
    """MNIST split as the tutorial splits it: train, validation, test.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory with the four MNIST-format files (``.gz`` or raw). Default:
        see :func:`locate_mnist`.
    flatten : bool, default True
        Images as ``(n, 784)`` rows (``True``) or ``(n, 28, 28)``.
    dtype : {"float32", "float64", "uint8"}, optional
        Floating dtypes hold pixels scaled to ``[0, 1]`` (``x / 255``);
        ``"uint8"`` gives the raw 0..255 pixels (NumPy only). Default: the
        backend's dtype (``backend``'s when one is given, else the default
        backend's: ``XPNET_DTYPE``, float32 when unset), so the data matches
        a model built with the same defaults.
    n_val : int, default 10000
        The last ``n_val`` training images become the validation split.
    backend : str or Backend, optional
        Put the arrays on this backend's device (labels in
        ``backend.index_dtype``); default: NumPy arrays (labels int64).
    device : optional
        Device for ``backend``.
    verify : bool, default True
        Check the SHA-256 of each file against the canonical MNIST.
    download : bool, default True
        Download into the user cache when no copy is found.
    mirrors : str or list of str, optional
        Base URLs to download from (see :func:`download_mnist`).
    progress : bool, default True
        Show a progress bar while downloading.

    Returns
    -------
    X_train, y_train, X_val, y_val, X_test, y_test
        50,000 / 10,000 / 10,000 samples for MNIST with ``n_val=10000``.

    Raises
    ------
    DataError
        If no valid copy is found (see :func:`locate_mnist`).
    """
    n_val = check_int(n_val, "n_val", low=0)
    check_bool(flatten, "flatten")
    be = None
    if backend is not None or device is not None:
        if dtype == "uint8":
            raise ValueError("dtype='uint8' gives raw NumPy pixels; it cannot be combined "
                             "with backend=/device= (use 'float32' or 'float64')")
        be = get_backend(backend, device=device, dtype=dtype)
        dtype = be.dtype_name
    else:
        dtype = _default_dtype() if dtype is None else np.dtype(dtype).name
        if dtype not in ("float32", "float64", "uint8"):
            raise ValueError(f"dtype must be 'float32', 'float64' or 'uint8', got {dtype!r}")
    directory = locate_mnist(data_dir, verify=verify, download=download, mirrors=mirrors,
                             progress=progress)
    raw = _read_all(_complete_files(directory), verify)
    train_x, train_y = raw[MNIST_FILES["train_images"]], raw[MNIST_FILES["train_labels"]]
    test_x, test_y = raw[MNIST_FILES["test_images"]], raw[MNIST_FILES["test_labels"]]
    for what, images, labels in (("training", train_x, train_y), ("test", test_x, test_y)):
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{directory}: the {what} split has {images.shape[0]} images but "
                f"{labels.shape[0]} labels"
            )
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{directory}: training images are {train_x.shape[1:]} but test images are "
            f"{test_x.shape[1:]}"
        )
    if n_val >= train_x.shape[0]:
        raise ValueError(
            f"n_val must be smaller than the {train_x.shape[0]} training images, got {n_val}"
        )
    X_train = _scale(train_x, dtype, flatten)
    X_test = _scale(test_x, dtype, flatten)
    y_train = train_y.astype(np.int64)
    y_test = test_y.astype(np.int64)
    cut = X_train.shape[0] - n_val
    # The tutorial: X_train[:-10000], X_train[-10000:].
    X_train, X_val = X_train[:cut], X_train[cut:]
    y_train, y_val = y_train[:cut], y_train[cut:]
    out = (X_train, y_train, X_val, y_val, X_test, y_test)
    if be is None:
        return out
    return tuple(be.asarray(a) if i % 2 == 0 else be.asarray(a, dtype=be.index_dtype)
                 for i, a in enumerate(out))
