"""The backend/device abstraction: selection, transfers, reporting, clear errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import xpnet
from xpnet.backends import backend_of
from xpnet.errors import BackendUnavailableError, DeviceMismatchError, DTypeError, XpnetError


def test_repr_names_backend_device_dtype(backend):
    text = repr(backend)
    assert backend.name in text
    assert backend.dtype_name in text
    assert backend.device_name in text


def test_arrays_created_on_the_backend_device(backend):
    import array_api_compat

    x = backend.asarray(np.arange(6.0).reshape(2, 3))
    assert array_api_compat.device(x) == backend.device
    assert x.dtype == backend.dtype
    z = backend.zeros((2,))
    assert array_api_compat.device(z) == backend.device
    labels = backend.asarray(np.array([1, 2], dtype=np.uint8), dtype=backend.index_dtype)
    assert labels.dtype == backend.index_dtype


def test_asarray_copies_so_host_is_never_aliased(backend):
    host = np.ones((3, 2))
    x = backend.asarray(host)
    host[0, 0] = 99.0  # mutate the host copy after the move
    assert backend.to_numpy(x)[0, 0] == 1.0
    back = backend.to_numpy(x)
    back[1, 1] = -5.0  # and the way back is a copy too
    assert backend.to_numpy(x)[1, 1] == 1.0


def test_to_numpy_roundtrip(backend):
    host = np.random.default_rng(0).standard_normal((4, 3))
    out = backend.to_numpy(backend.asarray(host))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, host, rtol=1e-6 if backend.dtype_name == "float32" else 0)


def test_backend_of_recovers_backend(backend):
    x = backend.asarray(np.zeros((2, 2)))
    assert backend_of(x) == backend


def test_select_by_namespace_object(backend_spec):
    name, device = backend_spec
    try:
        be = xpnet.get_backend(name, device=device)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    again = xpnet.get_backend(be.xp, device=device)
    assert again == be
    if name in ("numpy", "torch"):
        raw = importlib.import_module(name)  # the library itself, not the compat wrapper
        assert xpnet.get_backend(raw, device=device).name == name


def test_backend_instance_is_returned_or_adjusted():
    be = xpnet.get_backend("numpy")
    assert xpnet.get_backend(be) is be
    assert xpnet.get_backend(be, dtype="float64").dtype_name == "float64"


def test_default_from_environment(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    monkeypatch.setenv("XPNET_DEVICE", "device1")
    monkeypatch.setenv("XPNET_DTYPE", "float64")
    be = xpnet.get_backend()
    assert (be.name, be.device_name, be.dtype_name) == ("array_api_strict", "device1", "float64")
    monkeypatch.delenv("XPNET_BACKEND")
    monkeypatch.delenv("XPNET_DEVICE")
    monkeypatch.delenv("XPNET_DTYPE")
    assert repr(xpnet.get_backend()) == "Backend(name='numpy', device='cpu', dtype='float32')"


def test_unknown_backend_name():
    with pytest.raises(XpnetError, match="unknown backend 'tensorflow'.*numpy"):
        xpnet.get_backend("tensorflow")


def test_bad_dtype():
    with pytest.raises(DTypeError, match="float32 or float64|'float32' or 'float64'"):
        xpnet.get_backend("numpy", dtype="int32")
    with pytest.raises(DTypeError, match="float16"):
        xpnet.get_backend("numpy", dtype=np.float16)


def test_numpy_has_only_cpu():
    with pytest.raises(XpnetError, match="only has device 'cpu'.*cuda:0"):
        xpnet.get_backend("numpy", device="cuda:0")


def test_missing_library_says_how_to_install(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackendUnavailableError, match=r"not installed.*pip install .*cupy"):
        xpnet.get_backend("cupy")


def test_cupy_reports_missing_device_or_library():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="cupy"):
            xpnet.get_backend("cupy")
        return
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        n = 0
    if n:
        pytest.skip("a CUDA device is visible: the no-device error cannot be shown")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        xpnet.get_backend("cupy")


def test_torch_cuda_without_gpu_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        xpnet.get_backend("torch", device="cuda:1")


def test_device_specs_for_torch():
    torch = pytest.importorskip("torch")
    assert xpnet.get_backend("torch", device=torch.device("cpu")).device_name == "cpu"
    assert xpnet.get_backend("torch", device="cpu").device == torch.device("cpu")


def test_device_specs_for_array_api_strict():
    aas = pytest.importorskip("array_api_strict")
    be = xpnet.get_backend("array_api_strict", device=aas.Device("device1"))
    assert be.device == aas.Device("device1")
    with pytest.raises(XpnetError, match="no device 'gpu7'"):
        xpnet.get_backend("array_api_strict", device="gpu7")


def test_foreign_array_is_refused_not_moved(backend):
    host = np.zeros((2, 3), dtype=backend.to_numpy(backend.zeros(1)).dtype)
    if backend.name == "numpy":
        aas = pytest.importorskip("array_api_strict")
        foreign = aas.asarray(host)
    else:
        foreign = host  # a NumPy array handed to a non-NumPy model
    with pytest.raises(DeviceMismatchError, match=r"X is a .* but the model runs on .*asarray"):
        backend.check_array(foreign, "X")


def test_other_device_of_same_library_is_refused():
    aas = pytest.importorskip("array_api_strict")
    be = xpnet.get_backend("array_api_strict", device="device1")
    x = aas.asarray([[1.0, 2.0]], dtype=aas.float32)  # default device, not device1
    with pytest.raises(DeviceMismatchError, match="CPU_DEVICE.*device1"):
        be.check_array(x, "X")


def test_check_array_messages(backend):
    x = backend.asarray(np.zeros(784))
    with pytest.raises(xpnet.ShapeError, match=r"X must be a 2-D array, got shape \(784,\).*x\[None, :\]"):
        backend.check_array(x, "X", ndim=2)
    other = backend.with_dtype("float64" if backend.dtype_name == "float32" else "float32")
    with pytest.raises(DTypeError, match=f"X must have dtype {backend.dtype_name}"):
        backend.check_array(other.asarray(np.zeros((1, 2))), "X")
    with pytest.raises(DTypeError, match="integer class labels"):
        backend.check_array(backend.asarray(np.zeros(3)), "y", kind="integral")
    with pytest.raises(TypeError, match="must be an array"):
        backend.check_array([[1.0]], "X")


def test_sub_in_place_or_rebind(backend):
    a = backend.asarray(np.ones(3))
    b = backend.asarray(np.full(3, 0.5))
    out = backend.sub_(a, b)
    np.testing.assert_allclose(backend.to_numpy(out), 0.5)
    if backend.mutable_arrays:
        assert out is a  # in place: no new allocation


def test_available_backends_reports_every_name():
    status = xpnet.available_backends()
    assert set(status) == set(xpnet.backends.BACKEND_NAMES)
    assert status["numpy"] == "ok"


def test_native_dtype_objects_and_device_only_changes(backend):
    """np.float32 / jnp.float32 / torch.float32 are accepted, so is changing only the device."""
    again = xpnet.get_backend(backend.name, device=backend.device, dtype=backend.dtype)
    assert again == backend
    assert xpnet.get_backend(backend, device=backend.device) == backend
    model = xpnet.Sequential.mlp([3, 2], backend=backend)
    assert model.to(device=backend.device).backend == backend
    assert xpnet.get_backend(backend.name, device=backend.device,
                             dtype=np.float64).dtype_name == "float64"
