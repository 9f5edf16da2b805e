"""DLPack: ``asarray(copy=False)`` and ``from_dlpack`` share memory on the same device;
``asarray`` copies by default; ``Sequential.to`` moves between libraries exactly."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.errors import DeviceMismatchError


def _host(backend):
    return np.arange(12, dtype=backend.dtype_name).reshape(3, 4)


def _shares(backend, array, host) -> bool:
    """Whether a backend array reads ``host``'s buffer (viewed back through DLPack)."""
    return np.shares_memory(np.from_dlpack(array), host)


def _cpu_dlpack(backend) -> bool:
    return backend.dlpack_device == (1, 0)


def test_asarray_copies_by_default(backend):
    host = _host(backend)
    x = backend.asarray(host)
    if _cpu_dlpack(backend):
        assert not _shares(backend, x, host)
    host[0, 0] = 100
    assert float(backend.to_numpy(x)[0, 0]) == 0.0


def test_asarray_copy_false_shares_the_buffer_or_refuses(backend):
    host = _host(backend)
    if not _cpu_dlpack(backend):
        with pytest.raises((DeviceMismatchError, ValueError)):
            backend.asarray(host, copy=False)
        return
    try:
        x = backend.asarray(host, copy=False)
    except ValueError as exc:  # JAX needs 64-byte aligned buffers to alias them
        assert backend.name == "jax" and "copy" in str(exc)
        return
    assert _shares(backend, x, host)
    if backend.mutable_arrays:
        host[1, 2] = -5
        assert float(backend.to_numpy(x)[1, 2]) == -5.0


def test_copy_false_never_changes_the_dtype(backend):
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(ValueError, match=f"cannot change the dtype from {other}"):
        backend.asarray(np.zeros(3, dtype=other), copy=False)


def test_from_dlpack_shares_and_copies_on_request(backend):
    host = _host(backend)
    if not _cpu_dlpack(backend):
        with pytest.raises(DeviceMismatchError, match="cannot be shared with"):
            backend.from_dlpack(host)
        return
    own = backend.from_dlpack(host)
    np.testing.assert_array_equal(backend.to_numpy(own), host)
    copied = backend.from_dlpack(host, copy=True)
    assert not _shares(backend, copied, host)
    np.testing.assert_array_equal(backend.to_numpy(copied), host)
    with pytest.raises(TypeError, match="supports DLPack"):
        backend.from_dlpack([1.0, 2.0])


def test_numpy_and_torch_cpu_share_in_both_directions():
    torch = pytest.importorskip("torch")
    tb = xpnet.get_backend("torch", device="cpu")
    nb = xpnet.get_backend("numpy")
    host = np.ones((2, 3), dtype=np.float32)
    t = tb.asarray(host, copy=False)
    assert t.data_ptr() == host.ctypes.data
    back = nb.asarray(t, copy=False)
    assert back.ctypes.data == t.data_ptr()
    assert tb.asarray(host).data_ptr() != host.ctypes.data  # the default copies
    assert isinstance(t, torch.Tensor)


def test_sequential_to_between_torch_cpu_and_numpy_is_exact():
    pytest.importorskip("torch")
    for dtype in ("float32", "float64"):
        model = xpnet.Sequential.mlp([6, 5, 3], backend="torch", dtype=dtype, seed=0)
        X = np.random.default_rng(0).normal(size=(20, 6)).astype(dtype)
        y = np.arange(20) % 3
        model.fit(X, y, batch_size=5)  # weights that are not just the initial draw
        before = [p.detach().clone() for layer in model.layers for p in layer.params.values()]
        model.to("numpy", dtype=dtype)
        after = [p for layer in model.layers for p in layer.params.values()]
        for old, new in zip(before, after):
            assert isinstance(new, np.ndarray) and new.dtype == dtype
            np.testing.assert_array_equal(new, old.numpy())
            assert not np.shares_memory(new, old.numpy())  # a private copy
        model.to("torch", dtype=dtype)
        for old, new in zip(before, (p for layer in model.layers for p in layer.params.values())):
            assert bool((old == new).all())


def test_sequential_to_jax_and_back_is_exact():
    pytest.importorskip("jax")
    model = xpnet.Sequential.mlp([6, 5, 3], backend="numpy", dtype="float32", seed=0)
    before = [np.array(p) for layer in model.layers for p in layer.params.values()]
    model.to("jax").to("array_api_strict").to("numpy")
    for old, layer_params in zip(before, (p for layer in model.layers
                                          for p in layer.params.values())):
        np.testing.assert_array_equal(old, layer_params)
