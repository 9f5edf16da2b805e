"""MNIST loading: the IDX reader, the known facts of the data, the search order, downloads.

Downloads are only ever tested against an HTTP server on 127.0.0.1 started
here; an autouse fixture points the mirror list at a closed local port so a
forgotten override fails fast instead of reaching the internet.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import re
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import datasets as ds
from xpnet.errors import DataError

SHIPPED = ds._checkout_dir()
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

needs_mnist = pytest.mark.skipif(
    ds._files_in(SHIPPED)[0] is None, reason=f"no MNIST copy in {SHIPPED}"
)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Any download not pointed at a test server hits a closed local port."""
    monkeypatch.setenv(ds.ENV_MIRRORS, "http://127.0.0.1:9/")
    monkeypatch.delenv(ds.ENV_DATA_DIR, raising=False)


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = struct.pack(">HBB", 0, type_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype[type_code]).tobytes()


# --------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------

@pytest.mark.parametrize("type_code,dtype", [(0x08, "uint8"), (0x09, "int8"), (0x0B, "int16"),
                                             (0x0C, "int32"), (0x0D, "float32"),
                                             (0x0E, "float64")])
def test_read_idx_round_trips_every_type(type_code, dtype, tmp_path):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "uint8":
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr, type_code)
    got = ds.read_idx(raw)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)
    # The same from a file, raw and gzip-compressed.
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(ds.read_idx(str(tmp_path / "a.gz"), ndim=3), arr)


def test_read_idx_checks_sha256():
    raw = idx_bytes(np.arange(5, dtype=np.uint8))
    import hashlib

    good = hashlib.sha256(raw).hexdigest()
    assert ds.read_idx(raw, sha256=good).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="SHA-256 of the decompressed contents is"):
        ds.read_idx(raw, sha256="0" * 64)


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r[:-1], r"truncated IDX data: shape \(2, 3\) of uint8 needs 6 bytes .* got 5"),
    (lambda r: r + b"\x00", r"oversized IDX data: .* needs 6 bytes .* got 7"),
    (lambda r: r[:6], r"truncated IDX header: 6 bytes, 12 needed for 2 dimensions"),
    (lambda r: r[:3], r"truncated IDX file: 3 bytes"),
    (lambda r: b"\x01\x00" + r[2:], r"bad magic number 0x01000802"),
    (lambda r: r[:2] + b"\x07" + r[3:], r"bad magic number 0x00000702"),
    (lambda r: b"", r"truncated IDX file: 0 bytes"),
])
def test_read_idx_rejects_malformed_files(mutate, message):
    raw = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))
    with pytest.raises(DataError, match=message):
        ds.read_idx(mutate(raw))


def test_read_idx_rejects_wrong_number_of_dimensions():
    raw = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))
    with pytest.raises(DataError, match="expected a 1-dimensional IDX file .* got 2 dimensions"):
        ds.read_idx(raw, ndim=1)


def test_read_idx_rejects_broken_gzip(tmp_path):
    raw = idx_bytes(np.arange(600, dtype=np.uint16).astype(np.uint8).reshape(20, 30))
    packed = gzip.compress(raw)
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"t\.gz: corrupted or truncated gzip data"):
        ds.read_idx(truncated)
    flipped = bytearray(packed)
    flipped[-6] ^= 0xFF  # the stored CRC/size trailer
    with pytest.raises(DataError, match="corrupted or truncated gzip data"):
        ds.read_idx(bytes(flipped))


def test_read_idx_missing_file_and_bad_source(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ds.read_idx(tmp_path / "nope.gz")
    with pytest.raises(TypeError, match="source must be a path or bytes, got int"):
        ds.read_idx(3)


# --------------------------------------------------------------------------
# The real files
# --------------------------------------------------------------------------

@needs_mnist
def test_known_facts_of_the_training_set():
    X, y, X_val, y_val, X_test, y_test = ds.load_mnist(dtype="uint8", n_val=0, flatten=False)
    assert X.shape == (60000, 28, 28) and X.dtype == np.uint8
    assert X_val.shape == (0, 28, 28) and X_test.shape == (10000, 28, 28)
    assert np.bincount(y, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    # Mean and standard deviation from the histogram of pixel values (no big temporaries).
    counts = np.bincount(X.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    mean = float(counts @ values / counts.sum())
    std = float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    assert mean == pytest.approx(33.3184, abs=5e-5)
    assert std == pytest.approx(78.5675, abs=5e-5)
    assert y.dtype == np.int64 and y_test.dtype == np.int64
    assert np.bincount(y_test, minlength=10).sum() == 10000


@needs_mnist
def test_the_tutorials_split_scaling_and_flattening():
    raw_X, raw_y, *_ = ds.load_mnist(dtype="uint8", n_val=0, flatten=False)
    X_train, y_train, X_val, y_val, X_test, y_test = ds.load_mnist()
    assert X_train.shape == (50000, 784) and X_val.shape == (10000, 784)
    assert X_test.shape == (10000, 784)
    assert X_train.dtype == X_val.dtype == X_test.dtype == np.float32
    # The tutorial: X_train.astype(float) / 255, then X_train[:-10000], X_train[-10000:].
    rows = np.r_[0:20, 49980:50020, np.random.default_rng(0).integers(0, 60000, 300)]
    expected = (raw_X[rows].reshape(-1, 784).astype(float) / 255.0).astype(np.float32)
    full = np.concatenate([X_train, X_val])
    np.testing.assert_array_equal(full[rows], expected)
    np.testing.assert_array_equal(X_val[:5], expected[40:45])  # image 50000 onwards
    np.testing.assert_array_equal(y_train, raw_y[:-10000])
    np.testing.assert_array_equal(y_val, raw_y[-10000:])
    assert float(X_train.min()) == 0.0 and float(X_train.max()) == 1.0
    X64 = ds.load_mnist(dtype="float64", flatten=False)[0]
    assert X64.dtype == np.float64 and X64.shape == (50000, 28, 28)
    np.testing.assert_array_equal(X64[rows[:60] % 50000], raw_X[rows[:60] % 50000] / 255.0)


@needs_mnist
def test_load_onto_a_backend_device():
    be = xpnet.get_backend("array_api_strict", device="device1", dtype="float64")
    X_train, y_train, X_val, y_val, X_test, y_test = ds.load_mnist(backend=be)
    for X in (X_train, X_val, X_test):
        be.check_array(X, "X", ndim=2)  # right namespace, device and dtype
    for y in (y_train, y_val, y_test):
        be.check_array(y, "y", ndim=1, kind="integral")
        assert y.dtype == be.index_dtype
    host = ds.load_mnist(dtype="float64")
    np.testing.assert_array_equal(be.to_numpy(X_val), host[2])
    np.testing.assert_array_equal(be.to_numpy(y_test), host[5])


def test_argument_errors():
    with pytest.raises(ValueError, match="n_val must be an int >= 0, got -1"):
        ds.load_mnist(n_val=-1)
    with pytest.raises(ValueError,
                       match="dtype must be 'float32', 'float64' or 'uint8', got 'int16'"):
        ds.load_mnist(dtype="int16")
    with pytest.raises(ValueError, match="dtype='uint8' gives raw NumPy pixels"):
        ds.load_mnist(dtype="uint8", backend="numpy")
    with pytest.raises(TypeError, match="data_dir must be a str or os.PathLike, got int"):
        ds.load_mnist(3)


@needs_mnist
def test_n_val_larger_than_the_training_set(tmp_path):
    with pytest.raises(ValueError, match="n_val must be smaller than the 60000 training images"):
        ds.load_mnist(n_val=60000)


# --------------------------------------------------------------------------
# Where the files are found
# --------------------------------------------------------------------------

def copy_mnist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ds.MNIST_FILES.values():
        shutil.copy(SHIPPED / (name + ".gz"), dest / (name + ".gz"))
    return dest


@needs_mnist
def test_the_shipped_copy_is_found_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert ds.locate_mnist(download=False) == SHIPPED


@needs_mnist
def test_explicit_data_dir_and_env_var_come_first(monkeypatch, tmp_path):
    mine = copy_mnist(tmp_path / "mine")
    assert ds.locate_mnist(mine) == mine
    monkeypatch.setenv(ds.ENV_DATA_DIR, str(mine))
    assert ds.locate_mnist() == mine
    other = copy_mnist(tmp_path / "other")
    assert ds.locate_mnist(other) == other  # the argument beats the variable


def test_a_wrong_explicit_data_dir_is_reported_not_replaced(monkeypatch, tmp_path):
    with pytest.raises(DataError, match=r"MNIST not found in data_dir=.*nope.*no such directory"):
        ds.locate_mnist(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(ds.ENV_DATA_DIR, str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"\$XPNET_DATA_DIR=.*empty.*missing train-images-idx3"):
        ds.load_mnist()


@needs_mnist
def test_raw_files_and_other_mnist_format_datasets(tmp_path):
    """Uncompressed files work; a different dataset needs verify=False."""
    d = tmp_path / "fashion"
    d.mkdir()
    for name in ds.MNIST_FILES.values():
        (d / name).write_bytes(gzip.decompress((SHIPPED / (name + ".gz")).read_bytes()))
    assert ds.load_mnist(d, dtype="uint8")[1].shape == (50000,)  # raw canonical files
    labels = ds.read_idx(d / "train-labels-idx1-ubyte").copy()
    labels[0] = (labels[0] + 1) % 10  # now it is "another dataset"
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: SHA-256 .* verify=False"):
        ds.load_mnist(d)
    y = ds.load_mnist(d, verify=False, n_val=0)[1]
    assert y[0] == labels[0] and y.shape == (60000,)


@needs_mnist
def test_a_truncated_file_in_a_data_dir_is_a_clear_error(tmp_path):
    d = copy_mnist(tmp_path / "d")
    path = d / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: SHA-256"):
        ds.load_mnist(d)
    with pytest.raises(DataError, match=r"truncated IDX data: shape \(10000,\) of uint8 needs "
                                        r"10000 bytes after the header, got 9900"):
        ds.load_mnist(d, verify=False)


def test_nothing_found_lists_every_place_tried(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "_checkout_dir", lambda: tmp_path / "checkout")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        ds.load_mnist(download=False)
    msg = str(info.value)
    for needle in ("data_dir: not given", "$XPNET_DATA_DIR: not set",
                   f"source checkout {tmp_path / 'checkout'}: no such directory",
                   f"cache {tmp_path / 'cache' / 'xpnet' / 'mnist'}: no such directory",
                   "download: disabled", "What to do", "XPNET_MNIST_MIRRORS"):
        assert needle in msg


def test_cache_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ds.mnist_cache_dir() == tmp_path / "xpnet" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.mnist_cache_dir() == tmp_path / "home" / ".cache" / "xpnet" / "mnist"


# --------------------------------------------------------------------------
# Downloads, from a server on 127.0.0.1 only
# --------------------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; under /short/ it promises the whole file but sends half."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):
            path = Path(self.directory) / "good" / self.path[len("/short/"):]
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Base URL of a local server with good/, corrupt/ (one bad file) and short/ mirrors."""
    if ds._files_in(SHIPPED)[0] is None:
        pytest.skip(f"no MNIST copy in {SHIPPED} to serve")
    root = tmp_path_factory.mktemp("mirror")
    good = root / "good"
    corrupt = root / "corrupt"
    good.mkdir()
    corrupt.mkdir()
    for name in ds.MNIST_FILES.values():
        os.symlink(SHIPPED / (name + ".gz"), good / (name + ".gz"))
        os.symlink(SHIPPED / (name + ".gz"), corrupt / (name + ".gz"))
    # A well-formed gzip of an IDX file with one label changed: only the checksum catches it.
    os.unlink(corrupt / "train-labels-idx1-ubyte.gz")
    labels = ds.read_idx(SHIPPED / "train-labels-idx1-ubyte.gz").copy()
    labels[7] = (labels[7] + 1) % 10
    (corrupt / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def empty_places(monkeypatch, tmp_path):
    """No shipped copy, an empty cache under tmp_path; returns the cache dir."""
    monkeypatch.setattr(ds, "_checkout_dir", lambda: tmp_path / "no-checkout")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "xpnet" / "mnist"


def test_download_skips_a_corrupted_mirror_and_verifies(mirror, empty_places):
    ds._read_cached.cache_clear()
    cache = empty_places
    mirrors = [f"{mirror}/corrupt/", f"{mirror}/good"]
    out = ds.load_mnist(mirrors=mirrors, progress=False, dtype="uint8", n_val=0)
    assert np.bincount(out[1]).tolist() == TRAIN_LABEL_COUNTS
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        n + ".gz" for n in ds.MNIST_FILES.values())  # no temporary file left
    for name in ds.MNIST_FILES.values():
        assert (cache / (name + ".gz")).read_bytes() == (SHIPPED / (name + ".gz")).read_bytes()
    # Now the cache is found without any download (the mirrors are unreachable).
    assert ds.locate_mnist(mirrors="http://127.0.0.1:9/", progress=False) == cache


def test_env_var_sets_the_mirrors_and_a_bad_cached_file_is_replaced(mirror, empty_places,
                                                                     monkeypatch):
    cache = empty_places
    cache.mkdir(parents=True)
    for name in ds.MNIST_FILES.values():
        shutil.copy(SHIPPED / (name + ".gz"), cache / (name + ".gz"))
    bad = cache / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))  # 1 label
    monkeypatch.setenv(ds.ENV_MIRRORS, f"{mirror}/good/")
    assert ds.locate_mnist(progress=False) == cache
    assert bad.read_bytes() == (SHIPPED / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_failed_downloads_leave_nothing_and_list_every_attempt(mirror, empty_places):
    cache = empty_places
    mirrors = [f"{mirror}/missing/", f"{mirror}/short/", f"{mirror}/corrupt/"]
    with pytest.raises(DataError) as info:
        ds.download_mnist(mirrors=mirrors, progress=False)
    msg = str(info.value)
    assert "could not download train-labels-idx1-ubyte.gz" in msg
    assert f"{mirror}/missing/train-labels-idx1-ubyte.gz: HTTPError: HTTP Error 404" in msg
    assert re.search(re.escape(f"{mirror}/short/train-labels-idx1-ubyte.gz: ")
                     + r"(IncompleteRead|DataError: .*truncated download: got \d+ of \d+ bytes)",
                     msg)
    assert f"{mirror}/corrupt/train-labels-idx1-ubyte.gz: DataError" in msg and "SHA-256" in msg
    # train-images came first and succeeded from corrupt/ (only the labels are bad there);
    # nothing else, and no partial file, is in the cache.
    assert sorted(p.name for p in cache.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_load_mnist_error_names_the_download_too(mirror, empty_places):
    with pytest.raises(DataError) as info:
        ds.load_mnist(mirrors=[f"{mirror}/missing/"], progress=False)
    msg = str(info.value)
    assert "Tried, in order" in msg and "no-checkout: no such directory" in msg
    assert f"download into {empty_places}: could not download" in msg and "404" in msg


def test_an_interrupted_download_leaves_no_partial_file(mirror, empty_places, monkeypatch):
    cache = empty_places
    real_urlopen = ds._urlopen

    class Interrupting:
        def __init__(self, response):
            self.response, self.headers, self.calls = response, response.headers, 0

        def read(self, n):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.response.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.response.close()

    monkeypatch.setattr(ds, "_urlopen",
                        lambda url, timeout: Interrupting(real_urlopen(url, timeout)))
    with pytest.raises(KeyboardInterrupt):
        ds.download_mnist(mirrors=[f"{mirror}/good/"], progress=False)
    assert list(cache.iterdir()) == []


def test_a_failure_after_the_write_leaves_no_partial_file(mirror, empty_places, monkeypatch):
    cache = empty_places

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(DataError, match="No space left on device"):
        ds.download_mnist(mirrors=[f"{mirror}/good/"], progress=False)
    assert list(cache.iterdir()) == []


def test_mirror_urls_must_be_http(empty_places):
    with pytest.raises(DataError, match="mirror URL must be http"):
        ds.download_mnist(mirrors=["ftp://example.invalid/"], progress=False)
    with pytest.raises(ValueError, match="mirrors must name at least one base URL"):
        ds.download_mnist(mirrors=[" "], progress=False)
