"""NumPy's bundled BLAS, called directly for ``w -= a @ b`` (``NumpyBackend.sub_matmul_``).

The fast path hands raw pointers to BLAS, so every layout it accepts is checked
against NumPy's own product, and every layout it must refuse (where BLAS would
read or write the wrong memory) is checked to leave the arrays untouched and
fall back to the portable twin.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _helpers import rel_err, run_in_threads

import xpnet
from xpnet.backends import Backend
from xpnet.backends import numpy as numpy_backend
from xpnet.backends.numpy import BLAS_SWITCH, bundled_gemm

RTOL = {np.float32: 1e-5, np.float64: 1e-13}


def _numpy_blas_name() -> str:
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 -- an older or unusual build: unknown
        return "unknown"


@pytest.fixture
def gemm():
    found = bundled_gemm()
    if found is None:
        pytest.skip(f"this NumPy's BLAS ({_numpy_blas_name()}) is not a bundled scipy-openblas")
    return found


def test_pypi_wheels_bundled_blas_is_found():
    if _numpy_blas_name() != "scipy-openblas":
        pytest.skip(f"NumPy was built against {_numpy_blas_name()}, not the wheels' scipy-openblas")
    assert isinstance(bundled_gemm(), numpy_backend.BundledGemm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_order", ["C", "F"])
@pytest.mark.parametrize("b_order", ["C", "F"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (1, 4, 6), (6, 1, 4), (5, 4, 1), (64, 33, 17)])
def test_every_accepted_layout_matches_numpy(gemm, dtype, a_order, b_order, shape):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = np.asarray(rng.standard_normal((m, k)), dtype=dtype, order=a_order)
    b = np.asarray(rng.standard_normal((k, n)), dtype=dtype, order=b_order)
    c = rng.standard_normal((m, n)).astype(dtype)
    want = c.astype(np.float64) - a.astype(np.float64) @ b.astype(np.float64)
    address = c.ctypes.data
    assert gemm.subtract_product_(c, a, b)
    assert c.ctypes.data == address  # in place
    assert rel_err(c, want) < RTOL[dtype]


def _refused_cases():
    rng = np.random.default_rng(1)

    def f64(*shape):
        return rng.standard_normal(shape)

    c_big, c_flat = f64(6, 4), f64(8, 2)
    return {
        "integer dtype": (np.ones((3, 2), dtype=np.int64), np.ones((3, 5), dtype=np.int64),
                          np.ones((5, 2), dtype=np.int64)),
        "mixed dtypes": (f64(3, 2), f64(3, 5).astype(np.float32), f64(5, 2)),
        "float16": (f64(3, 2).astype(np.float16), f64(3, 5).astype(np.float16),
                    f64(5, 2).astype(np.float16)),
        "strided a": (f64(3, 2), f64(3, 10)[:, ::2], f64(5, 2)),
        "strided b": (f64(3, 2), f64(3, 5), f64(10, 2)[::2]),
        "F-ordered c": (np.asfortranarray(f64(3, 2)), f64(3, 5), f64(5, 2)),
        "strided c": (f64(3, 4)[:, ::2], f64(3, 5), f64(5, 2)),
        "read-only c": (_read_only(f64(3, 2)), f64(3, 5), f64(5, 2)),
        "a overlaps c": (c_big[:3], c_big[1:4], f64(4, 4)),
        "a is c": _aliased(f64(4, 4)),
        "big-endian": (f64(3, 2), f64(3, 5).astype(">f8"), f64(5, 2)),
        "big-endian c": (f64(3, 2).astype(">f8"), f64(3, 5), f64(5, 2)),
        "3-d": (f64(2, 3, 2), f64(2, 3, 5), f64(2, 5, 2)),
        "shape mismatch": (f64(3, 2), f64(3, 5), f64(4, 2)),
        "output shape": (f64(3, 3), f64(3, 5), f64(5, 2)),
        "empty k": (f64(3, 2), f64(3, 0), f64(0, 2)),
        "empty m": (f64(0, 2), f64(0, 5), f64(5, 2)),
        "unaligned c": (_unaligned((3, 2)), f64(3, 5), f64(5, 2)),
        "unaligned a": (f64(3, 2), _unaligned((3, 5)), f64(5, 2)),
        "b overlaps c": (c_flat[:4], f64(4, 2), c_flat[3:5]),
        "negative strides a": (f64(3, 2), f64(3, 5)[::-1], f64(5, 2)),
        "memmap-like subclass": (f64(3, 2).view(np.memmap), f64(3, 5), f64(5, 2)),
        "masked a": (f64(3, 2), np.ma.masked_array(f64(3, 5), mask=np.eye(3, 5, dtype=bool)),
                     f64(5, 2)),
        "matrix c": (_matrix(f64(3, 2)), f64(3, 5), f64(5, 2)),
        "list a": (f64(3, 2), f64(3, 5).tolist(), f64(5, 2)),
    }


def _unaligned(shape):
    """A float64 array at an odd byte offset (BLAS may assume element alignment)."""
    n = int(np.prod(shape))
    buf = np.zeros(n * 8 + 1, dtype=np.uint8)
    x = np.frombuffer(buf.data, dtype=np.float64, count=n, offset=1).reshape(shape)
    assert not x.flags.aligned
    return x


def _matrix(x):
    with warnings.catch_warnings():  # np.matrix is pending deprecation: still refused here
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(x)


def _read_only(x):
    x.flags.writeable = False
    return x


def _aliased(c):
    return c, c, np.eye(4)


@pytest.mark.parametrize("case", sorted(_refused_cases()))
def test_refused_layouts_are_left_untouched(gemm, case):
    c, a, b = _refused_cases()[case]
    before = np.array(c, copy=True)
    assert not gemm.subtract_product_(c, a, b)
    np.testing.assert_array_equal(c, before)


@pytest.mark.parametrize("case", ["strided a", "strided b", "strided c", "a is c", "mixed dtypes",
                                  "F-ordered c", "big-endian", "a overlaps c", "b overlaps c"])
def test_backend_falls_back_to_the_twin_where_blas_cannot(case):
    """Whatever the layout, NumpyBackend.sub_matmul_ gives the twin's answer."""
    be = xpnet.get_backend("numpy", dtype="float64")
    c, a, b = _refused_cases()[case]
    twin = Backend.sub_matmul_(be, c.copy(), a.copy() if a is c else a, b)
    got = be.sub_matmul_(c, a, b)
    np.testing.assert_allclose(got, twin, rtol=1e-6)


def test_memmapped_weights_take_the_twin_and_are_updated_in_place(gemm, tmp_path):
    """np.load(..., mmap_mode="r+") weights: two mappings of one file overlap where their
    addresses do not, so BLAS is not trusted with them; the twin updates the file."""
    rng = np.random.default_rng(4)
    path = tmp_path / "w.npy"
    np.save(path, rng.standard_normal((6, 3)))
    w = np.load(path, mmap_mode="r+")
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((4, 3))
    want = np.array(w) - a @ b
    assert not gemm.subtract_product_(w, a, b)
    be = xpnet.get_backend("numpy", dtype="float64")
    assert be.sub_matmul_(w, a, b) is w
    w.flush()
    assert rel_err(np.load(path), want) < 1e-13


def test_file_mapped_twice_gets_the_twins_answer(tmp_path):
    """The reviewer's case: the output and an input are two memmaps of one file."""
    rng = np.random.default_rng(5)
    path = tmp_path / "x.bin"
    rng.standard_normal((40, 40)).tofile(path)
    c = np.memmap(path, np.float64, "r+", shape=(40, 40))
    a = np.memmap(path, np.float64, "r", shape=(40, 40))
    b = rng.standard_normal((40, 40))
    want = np.array(c) - np.array(a) @ b
    got = xpnet.get_backend("numpy", dtype="float64").sub_matmul_(c, a, b)
    assert rel_err(np.array(got), want) < 1e-13


@pytest.mark.parametrize("case", ["row slice c", "transposed slice a", "odd-strided size-1 b"])
def test_views_that_blas_takes_give_numpys_answer(gemm, case):
    rng = np.random.default_rng(6)
    big = rng.standard_normal((9, 7))
    c, a, b = big[2:5].copy(), rng.standard_normal((3, 4)), rng.standard_normal((4, 7))
    if case == "row slice c":
        c = big[2:5]  # C-contiguous, starts mid-buffer
    elif case == "transposed slice a":
        a = rng.standard_normal((9, 3))[2:6].T  # F-contiguous, offset
    else:  # a (4, 1) column whose unused stride is odd: still contiguous
        col = rng.standard_normal(4)
        b = np.lib.stride_tricks.as_strided(col, shape=(4, 1), strides=(8, 12345 * 8))
        c = c[:, :1].copy()
    want = np.array(c) - a @ b
    before = big.copy()
    assert gemm.subtract_product_(c, a, b)
    assert rel_err(c, want) < 1e-13
    if case != "row slice c":
        np.testing.assert_array_equal(big, before)
    else:  # only rows 2-4 of the buffer were written
        np.testing.assert_array_equal(big[:2], before[:2])
        np.testing.assert_array_equal(big[5:], before[5:])


def test_dimensions_beyond_the_librarys_integers_are_refused(gemm, monkeypatch):
    """An LP64 library takes 32-bit dimensions; ctypes would wrap larger ones silently."""
    c, a, b = np.ones((3, 2)), np.ones((3, 5)), np.ones((5, 2))
    monkeypatch.setattr(gemm, "_max_dim", 4)
    assert not gemm.subtract_product_(c, a, b)
    np.testing.assert_array_equal(c, 1.0)
    monkeypatch.setattr(gemm, "_max_dim", 5)
    assert gemm.subtract_product_(c, a, b)
    np.testing.assert_array_equal(c, -4.0)


def test_switch_turns_the_blas_path_off(monkeypatch):
    monkeypatch.setenv(BLAS_SWITCH, "0")
    bundled_gemm.cache_clear()
    try:
        assert bundled_gemm() is None
        be = xpnet.get_backend("numpy", dtype="float64")
        w, x, g = np.ones((4, 3)), np.ones((2, 4)), np.ones((2, 3))
        np.testing.assert_array_equal(be.sub_matmul_(w, x.T, g), np.full((4, 3), -1.0))
    finally:
        monkeypatch.delenv(BLAS_SWITCH)
        bundled_gemm.cache_clear()


def test_threads_calling_at_once_get_their_own_answers(gemm):
    rng = np.random.default_rng(2)
    jobs = [(rng.standard_normal((50, 40)), rng.standard_normal((40, 30))) for _ in range(4)]
    wants = [1.0 - a @ b for a, b in jobs]
    errors = []

    def work(i):
        a, b = jobs[i]
        for _ in range(200):
            c = np.ones((50, 30))
            gemm.subtract_product_(c, a, b)
            if rel_err(c, wants[i]) > 1e-13:
                errors.append(i)

    run_in_threads(work, 4)
    assert not errors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_with_blas_equals_training_with_the_twin(gemm, dtype, monkeypatch):
    """Two epochs of the seed MLP: the BLAS update and the twin's agree to rounding."""
    rng = np.random.default_rng(3)
    X = rng.random((256, 20)).astype(dtype)
    y = rng.integers(0, 5, 256)
    results = []
    for use_blas in (True, False):
        if not use_blas:
            monkeypatch.setattr(numpy_backend.NumpyBackend, "sub_matmul_", Backend.sub_matmul_)
        be = xpnet.get_backend("numpy", dtype=dtype)
        model = xpnet.Sequential.mlp([20, 16, 8, 5], seed=0, backend=be)
        model.fit(X, y, epochs=2, batch_size=32, seed=1, train_accuracy=False)
        results.append([p.copy() for layer in model for p in layer.params.values()])
    for fast, twin in zip(*results):
        assert rel_err(fast, twin) < (1e-12 if dtype == "float64" else 1e-5)
