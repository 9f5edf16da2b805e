"""Host data converted to the model's dtype and device (issue 22, item 3).

Host data -- NumPy arrays of any real dtype, (nested) lists, pandas DataFrames
and Series, objects with ``__array__`` -- is converted in the one copy to the
device; tensors of an array library (another library, or the model's with
another dtype or device) are refused as before. Each conversion is compared
with the same values handed over already converted, bit for bit.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import xpnet
from xpnet import feeds
from xpnet.datasets import load_mnist
from xpnet.errors import DeviceMismatchError, DTypeError, ShapeError
from xpnet.feeds import host as streaming

N, D, C = 48, 6, 3

#: Every real NumPy dtype a user may hand over.
REAL_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
               "uint64", "float16", "float32", "float64", "longdouble"]


def _values(dtype_name, n=N, seed=0):
    """``(n, D)`` values of ``dtype_name`` that every float dtype holds (floats: any)."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, D)) * 4
    if dtype_name == "bool":
        return raw > 0
    if np.dtype(dtype_name).kind == "u":
        return np.abs(raw).astype(dtype_name)
    return raw.astype(dtype_name)


def _labels(n=N, seed=0):
    return np.random.default_rng(seed).integers(0, C, n)


def _model(be, **kw):
    return xpnet.Sequential.mlp([D, 5, C], backend=be, seed=0, **kw)


def _np_dtype(be):
    return np.dtype(be.dtype_name)


def _device(be, X):
    """``X`` converted by hand, the reference every conversion is compared with."""
    return be.asarray(np.asarray(X).astype(_np_dtype(be)))


def _logits(model, X, **kw):
    return model.backend.to_numpy(model.predict_logits(X, **kw))


def _weights(model):
    return [model.backend.to_numpy(getattr(layer, name)) for layer in model.layers
            for name in getattr(layer, "param_names", ())]


def _assert_same_weights(a, b, *, compiled_reference=False):
    """Bit for bit; ``compiled_reference``: ``b`` trained in memory, which JAX compiles into one
    program per epoch (equal to rounding only there)."""
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb) == 4
    rtol = 0.0
    if compiled_reference and a.backend.name == "jax":
        rtol = 1e-12 if a.backend.dtype_name == "float64" else 1e-5
    for p, q in zip(wa, wb):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=rtol)


# -- the dtype table ------------------------------------------------------------------

@pytest.mark.parametrize("dtype_name", REAL_DTYPES)
def test_every_real_dtype_predicts_as_the_converted_array(backend, dtype_name):
    model = _model(backend)
    X = _values(dtype_name)
    np.testing.assert_array_equal(_logits(model, X), _logits(model, _device(backend, X)))


@pytest.mark.parametrize("dtype_name", ["bool", "int64", "uint8", "float16", "float32", "float64"])
def test_every_real_dtype_trains_as_the_converted_host_array(backend, dtype_name):
    """Same feed kind on both sides (in memory on NumPy, streamed elsewhere): same weights."""
    X, y = _values(dtype_name), _labels()
    a, b = _model(backend), _model(backend)
    a.fit(X, y, batch_size=8, epochs=2, train_accuracy=False)
    b.fit(X.astype(_np_dtype(backend)), y, batch_size=8, epochs=2, train_accuracy=False)
    _assert_same_weights(a, b)


def test_model_dtype_keeps_the_zero_copy_path_and_others_are_converted_once():
    be = xpnet.get_backend("numpy", dtype="float32")
    model = _model(be)
    X32 = _values("float32")
    assert feeds.as_eval_feed(model, X32, block=16, method="predict").X is X32
    X64 = _values("float64")
    converted = feeds.as_eval_feed(model, X64, block=16, method="predict").X
    assert converted.dtype == np.float32 and not np.shares_memory(converted, X64)
    np.testing.assert_array_equal(converted, X64.astype(np.float32))  # one astype, as sklearn


def test_float64_numpy_data_trains_a_float32_numpy_model_like_float32_data():
    be = xpnet.get_backend("numpy", dtype="float32")
    X, y = _values("float64"), _labels()
    a, b = _model(be), _model(be)
    ha = a.fit(X, y, batch_size=8, epochs=2, validation_data=(X, y))
    hb = b.fit(X.astype(np.float32), y, batch_size=8, epochs=2,
               validation_data=(X.astype(np.float32), y))
    _assert_same_weights(a, b)
    for key in ("loss", "train_acc", "val_loss", "val_acc"):
        assert ha.history[key] == hb.history[key], key
    assert a.evaluate(X, y) == b.evaluate(X.astype(np.float32), y)


# -- memmaps: streamed, converted chunk by chunk -----------------------------------------

def _memmap(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("dtype_name", ["float64", "float32", "int16"])
def test_memmap_of_another_dtype_trains_as_in_memory_bit_for_bit(backend, tmp_path, dtype_name):
    X, y = _values(dtype_name, n=200), _labels(n=200)
    Xm = _memmap(tmp_path, "X", X)
    feed = feeds.as_feed(_model(backend), Xm, y)
    assert isinstance(feed, feeds.HostFeed) and feed.data.X is Xm  # streamed, not converted whole
    a, b = _model(backend), _model(backend)
    a.fit(Xm, y, batch_size=8, epochs=2, chunk_bytes=8 * D * 24, train_accuracy=False)
    b.fit(_device(backend, X), backend.asarray(y, dtype=backend.index_dtype), batch_size=8,
          epochs=2, train_accuracy=False)
    _assert_same_weights(a, b, compiled_reference=True)


def test_memmap_conversion_holds_one_chunk_at_a_time(tmp_path):
    """A 9.6 MB float64 memmap predicted by a float32 model in 64 KB chunks: the host memory
    traced stays far below one converted copy of the whole array (4.8 MB)."""
    be = xpnet.get_backend("numpy", dtype="float32")
    model = xpnet.Sequential.mlp([100, 4, C], backend=be, seed=0)
    Xm = _memmap(tmp_path, "big", np.random.default_rng(0).normal(size=(12000, 100)))
    tracemalloc.start()
    try:
        out = model.predict(Xm, chunk_bytes=64 * 1024, batch_size=128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (12000,)
    assert peak < 1_500_000, peak


def test_memmap_of_wide_integers_names_the_row_that_float32_cannot_hold(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float32")
    X = _values("int64", n=64)
    X[41, 2] = 2**24 + 1
    with pytest.raises(ValueError, match=r"X holds integers that float32 cannot represent "
                                         r"exactly: 16777217 \(row 41\)"):
        _model(be).fit(_memmap(tmp_path, "X", X), _labels(n=64), chunk_bytes=8 * D * 16)
    X[41, 2] = 2**25  # a power of two is exact: accepted
    _model(be).fit(_memmap(tmp_path, "X2", X), _labels(n=64), batch_size=8)


# -- lists, pandas, __array__ ----------------------------------------------------------

class _ArrayLike:
    """Host data that only offers ``__array__`` (as xarray, polars or a user class do)."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)


def _host_forms(X):
    """The same rows as a nested list, a tuple of tuples and an ``__array__`` object."""
    return {"list": X.tolist(), "tuple": tuple(map(tuple, X.tolist())),
            "__array__": _ArrayLike(X)}


@pytest.mark.parametrize("form", ["list", "tuple", "__array__"])
def test_lists_and_array_likes_are_data(backend, form):
    X, y = _values("float64"), _labels()
    host = _host_forms(X)[form]
    model = _model(backend)
    np.testing.assert_array_equal(_logits(model, host), _logits(model, _device(backend, X)))
    assert model.evaluate(host, y.tolist()) == model.evaluate(X, y)
    a, b = _model(backend), _model(backend)
    a.fit(host, y.tolist(), batch_size=8, validation_data=(host, y.tolist()), train_accuracy=False)
    b.fit(X, y, batch_size=8, validation_data=(X, y), train_accuracy=False)
    _assert_same_weights(a, b)


def test_a_flat_list_is_one_row_per_value():
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential.mlp([1, 3, 2], backend=be, seed=0)
    np.testing.assert_array_equal(model.predict([[0.5], [1.5]]),
                                  model.predict(np.array([[0.5], [1.5]])))
    with pytest.raises(ShapeError, match=r"X must be a 2-D array, got shape \(2,\)"):
        model.predict([0.5, 1.5])


@pytest.mark.api_only
def test_list_labels_become_the_index_dtype(backend):
    model = _model(backend)
    X = _device(backend, _values("float32"))
    for labels in (_labels().tolist(), _labels().astype(np.uint8), _labels().astype(np.int16)):
        feed = feeds.as_eval_feed(model, X, labels, block=16, method="evaluate")
        assert feed.y.dtype == backend.index_dtype
        assert backend.owns(feed.y)


def test_pandas_dataframe_and_series(backend):
    pd = pytest.importorskip("pandas")
    X, y = _values("float64"), _labels()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(D)])
    frame["f0"] = frame["f0"].round().astype("int32")  # mixed column dtypes
    series = pd.Series(y, name="label")
    model = _model(backend)
    reference = _device(backend, frame.to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(_logits(model, frame), _logits(model, reference))
    a, b = _model(backend), _model(backend)
    a.fit(frame, series, batch_size=8, validation_data=(frame, series), train_accuracy=False)
    b.fit(frame.to_numpy(), y, batch_size=8, validation_data=(frame.to_numpy(), y),
          train_accuracy=False)
    _assert_same_weights(a, b)
    one_column = xpnet.Sequential.mlp([1, 3, C], backend=backend, seed=0)
    np.testing.assert_array_equal(_logits(one_column, frame[["f1"]]),
                                  _logits(one_column, _device(backend, frame[["f1"]].to_numpy())))


def test_dataframe_of_strings_or_missing_values_names_the_columns():
    pd = pytest.importorskip("pandas")
    be = xpnet.get_backend("numpy", dtype="float32")
    frame = pd.DataFrame(_values("float64"), columns=[f"f{i}" for i in range(D)])
    frame["f3"] = "red"
    with pytest.raises(DTypeError, match=r"X must hold real numbers .* in a DataFrame "
                                         r"\(columns \['f3'\]\)"):
        _model(be).predict(frame)
    frame["f3"] = pd.array([1, None] * (N // 2), dtype="Int64")  # nullable ints with NA
    with pytest.raises(DTypeError, match=r"columns \['f3'\]"):
        _model(be).predict(frame)


def test_a_list_without_y_is_an_iterable_of_batches(backend):
    X, y = _values(backend.dtype_name), _labels()
    batches = [(X[i:i + 8], y[i:i + 8]) for i in range(0, N, 8)]
    a, b = _model(backend), _model(backend)
    a.fit(batches, shuffle=False)
    b.fit(X, y, batch_size=8, shuffle=False, train_accuracy=False)
    _assert_same_weights(a, b, compiled_reference=True)


def test_batches_of_host_data_are_converted_too(backend):
    X, y = _values("float64"), _labels()
    batches = [(X[i:i + 8].tolist(), y[i:i + 8].tolist()) for i in range(0, N, 8)]
    a, b = _model(backend), _model(backend)
    a.fit(batches, shuffle=False)
    b.fit(X.astype(_np_dtype(backend)), y, batch_size=8, shuffle=False, train_accuracy=False)
    _assert_same_weights(a, b, compiled_reference=True)


# -- refusals ----------------------------------------------------------------------------

def _numpy_model():
    return _model(xpnet.get_backend("numpy", dtype="float32"))


#: name: (X, error, pattern, whether only a float32 model refuses it).
BAD_HOST_DATA = {
    "ragged list": ([[0.0] * D, [0.0] * (D - 1)], ShapeError,
                    r"is a list whose rows have different lengths \(a ragged list\)", False),
    "strings": ([["a"] * D] * 2, DTypeError, r"got dtype <U1 \(strings\) in a list", False),
    "mixed str and numbers": ([[1.0] * (D - 1) + ["x"]] * 2, DTypeError, r"\(strings\)", False),
    "objects": (np.array([[None] * D] * 2), DTypeError, r"got dtype object \(Python objects",
                False),
    "complex": (np.zeros((2, D), dtype=np.complex128), DTypeError, r"\(complex numbers\)", False),
    "complex list": ([[1j] * D] * 2, DTypeError, r"complex128 \(complex numbers\)", False),
    "datetimes": (np.zeros((2, D), dtype="datetime64[s]"), DTypeError, r"\(datetimes\)", False),
    "bytes": (np.array([[b"a"] * D] * 2), DTypeError, r"\(bytes\)", False),
    "int64 above 2**24": (np.full((2, D), 2**24 + 1, dtype=np.int64), ValueError,
                          r"integers that float32 cannot represent exactly: 16777217 \(row 0\) "
                          r"would become 16777216; float32 holds every integer up to 2\*\*24",
                          True),
    "uint64 maximum": (np.full((2, D), 2**64 - 1, dtype=np.uint64), ValueError,
                       r"cannot represent exactly: 18446744073709551615", False),
    "int32 in an __array__ object": (_ArrayLike(np.full((2, D), -(2**24) - 3, dtype=np.int32)),
                                     ValueError, r"exactly: -16777219 \(row 0\)", True),
}


def _raises(error, name, pattern, call):
    """``call()`` raises ``error`` whose message starts with the argument's name."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert message.startswith(name + " "), message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("case", list(BAD_HOST_DATA), ids=list(BAD_HOST_DATA))
def test_bad_host_data_gets_a_clear_error_naming_the_argument(case):
    X, error, pattern, _ = BAD_HOST_DATA[case]
    _raises(error, "X", pattern, lambda: _numpy_model().predict(X))
    _raises(error, "X", pattern, lambda: _numpy_model().fit(X, [0] * 2, batch_size=1))
    _raises(error, "X", pattern, lambda: _numpy_model().evaluate(X, [0] * 2))
    _raises(error, "validation_data[0]", pattern, lambda: _numpy_model().fit(
        _values("float32"), _labels(), batch_size=8, validation_data=(X, [0] * 2)))


@pytest.mark.api_only
def test_bad_host_data_is_refused_on_every_backend(backend):
    model = _model(backend)
    for X, error, pattern, float32_only in BAD_HOST_DATA.values():
        if float32_only and backend.dtype_name == "float64":
            model.predict(X)  # float64 holds these integers exactly
            continue
        with pytest.raises(error, match=pattern):
            model.predict(X)


def test_integers_float64_cannot_hold_are_refused_and_float32_ones_accepted():
    be = xpnet.get_backend("numpy", dtype="float64")
    model = _model(be)
    model.predict(np.full((2, D), 2**24 + 1, dtype=np.int64))  # exact in float64
    with pytest.raises(ValueError, match=r"float64 cannot represent exactly: 9007199254740993 "
                                         r"\(row 1\)"):
        model.predict(np.array([[0] * D, [0, 2**53 + 1] + [0] * (D - 2)], dtype=np.int64))


def test_nan_and_inf_in_host_data_are_refused_once_per_fit(backend):
    X = _values("float64")
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        _model(backend).fit(X.tolist(), _labels(), batch_size=8)
    big = _values("float64")
    big[3, 0] = 1e300  # becomes inf in float32
    if backend.dtype_name == "float32":
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            _model(backend).fit(big, _labels(), batch_size=8)


@pytest.mark.api_only
def test_float_labels_and_bad_label_lists_are_refused(backend):
    X = _values(backend.dtype_name)
    model = _model(backend)
    with pytest.raises(DTypeError, match=r"y must hold integer class labels, got dtype float64"):
        model.fit(X, [0.0, 1.0] * (N // 2), batch_size=8)
    with pytest.raises(DTypeError, match=r"y must hold real numbers .*\(strings\)"):
        model.fit(X, ["cat", "dog"] * (N // 2), batch_size=8)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\].*from 0 to 7"):
        model.fit(X, list(range(8)) * (N // 8), batch_size=8)


def test_foreign_tensors_are_refused_even_on_the_cpu_with_array():
    torch = pytest.importorskip("torch")
    model = _numpy_model()
    with pytest.raises(DeviceMismatchError, match=r"X is a torch.Tensor on device cpu .* never "
                                                  r"moves data silently"):
        model.predict(torch.zeros((2, D)))
    with pytest.raises(DeviceMismatchError, match=r"y is a torch.Tensor"):
        model.fit(_values("float32"), torch.zeros(N, dtype=torch.int64), batch_size=8)
    with pytest.raises(DeviceMismatchError, match=r"validation_data\[0\] is a torch.Tensor"):
        model.fit(_values("float32"), _labels(), batch_size=8,
                  validation_data=(torch.zeros((2, D)), [0, 1]))


def test_jax_arrays_are_refused_by_a_numpy_model():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(DeviceMismatchError, match=r"X is a .* but the model runs on .*numpy"):
        _numpy_model().predict(jnp.zeros((2, D)))


@pytest.mark.api_only
def test_tensors_of_the_models_library_are_never_cast_or_moved(backend):
    if backend.name == "numpy":
        pytest.skip("a NumPy array is host data: converted (tested above)")
    model = _model(backend)
    other = backend.with_dtype("float64" if backend.dtype_name == "float32" else "float32")
    with pytest.raises(DTypeError, match=rf"X must have dtype {backend.dtype_name} \(the model's "
                                         r"dtype\)"):
        model.predict(other.asarray(_values("float64")))


def test_strict_arrays_on_another_device_are_refused():
    aas = pytest.importorskip("array_api_strict")
    model = _model(xpnet.get_backend("array_api_strict", device="device1", dtype="float32"))
    with pytest.raises(DeviceMismatchError, match=r"on device .*CPU_DEVICE.*model runs on "
                                                  r".*device1"):
        model.predict(aas.zeros((2, D), dtype=aas.float32))
    # NumPy host data goes to device1 in its one copy.
    out = model.predict(_values("float64"))
    assert str(aas.__name__) and "device1" in str(out.device)


class _FakeDeviceArray:
    """A tensor of some unknown GPU library: ``__dlpack__`` and ``__array__`` (a copy to the
    host would be an implicit transfer)."""

    shape, ndim = (2, D), 2

    def __dlpack__(self, stream=None):
        raise AssertionError("never read")

    def __dlpack_device__(self):
        return (2, 0)

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("an implicit device-to-host copy")


def test_objects_with_dlpack_are_tensors_not_host_data():
    with pytest.raises(TypeError, match="X must be an array of Backend"):
        _numpy_model().predict(_FakeDeviceArray())


# -- load_mnist follows the backend's dtype ----------------------------------------------

def test_load_mnist_follows_xpnet_dtype(monkeypatch):
    monkeypatch.delenv("XPNET_DTYPE", raising=False)
    try:
        X32 = load_mnist(n_val=0, download=False)[4]
    except xpnet.errors.DataError as exc:
        pytest.skip(f"no MNIST copy: {exc}")
    monkeypatch.setenv("XPNET_DTYPE", "float64")
    X64 = load_mnist(n_val=0, download=False)[4]
    assert X32.dtype == np.float32 and X64.dtype == np.float64
    np.testing.assert_array_equal(X64.astype(np.float32), X32)
    be = xpnet.get_backend("numpy")
    assert load_mnist(n_val=0, download=False, backend=be)[4].dtype == np.float64
    monkeypatch.setenv("XPNET_DTYPE", "float16")
    with pytest.raises(ValueError, match="XPNET_DTYPE must be 'float32' or 'float64', got "
                                         "'float16'"):
        load_mnist(n_val=0, download=False)


def test_streaming_module_no_longer_refuses_other_dtypes():
    """The dtype refusal of host data is gone: only dtypes without real numbers are refused."""
    be = xpnet.get_backend("numpy", dtype="float32")
    streaming.check_host_X(_model(be), np.zeros((3, D), dtype=np.int64), "X")
    with pytest.raises(DTypeError, match="complex"):
        streaming.check_host_X(_model(be), np.zeros((3, D), dtype=np.complex64), "X")
