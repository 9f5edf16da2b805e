"""The backend registry: lookup, capability flags, hooks, error classes, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.backends import BACKEND_NAMES, Backend, backend_class, backend_of, get_backend
from xpnet.errors import (
    BackendUnavailableError,
    DeviceMismatchError,
    DeviceSpecError,
    UnknownBackendError,
    XpnetError,
)
from xpnet.training import make_train_step, portable_train_step

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 120


def _run_python(code: str, env_drop=(), **env_set) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's xpnet."""
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_set)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT)


# -- registry -------------------------------------------------------------------

def test_every_name_maps_to_its_own_class():
    for name in BACKEND_NAMES:
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls is not Backend
        assert cls.name == name
        assert cls.install_hint.startswith("pip install")
    assert len({backend_class(n) for n in BACKEND_NAMES}) == len(BACKEND_NAMES)


def test_backend_of_and_get_backend_agree(backend):
    x = backend.asarray(np.zeros((2, 3)))
    assert backend_of(x) is backend
    assert type(backend) is backend_class(backend.name)
    assert get_backend(backend.xp, device=backend.device, dtype=backend.dtype) is backend


def test_capability_flags():
    assert backend_class("numpy").mutable_arrays and not backend_class("numpy").compiles
    assert backend_class("torch").mutable_arrays and not backend_class("torch").compiles
    assert not backend_class("jax").mutable_arrays and backend_class("jax").compiles
    assert not Backend.compiles and Backend.mutable_arrays


def test_compile_is_the_identity_on_numpy():
    be = get_backend("numpy")
    fn = lambda a: a + 1  # noqa: E731
    assert be.compile(fn) is fn


def test_portable_backends_return_the_portable_step(backend):
    model = xpnet.Sequential.mlp([3, 2], seed=0, backend=backend)
    step = make_train_step(backend, model.layers, 0)
    portable = portable_train_step(backend, model.layers, 0)
    # Same function body whenever the backend does not compile.
    assert (step.__code__ is portable.__code__) == (not backend.compiles)


def test_jax_step_goes_through_the_compile_hook(monkeypatch):
    pytest.importorskip("jax")
    be = get_backend("jax", dtype="float64")
    compiled = []
    real_compile = type(be).compile

    def spy(self, fn):
        compiled.append(fn)
        return real_compile(self, fn)

    monkeypatch.setattr(type(be), "compile", spy)
    model = xpnet.Sequential.mlp([3, 2], seed=0, backend=be)
    make_train_step(be, model.layers, 0)
    assert len(compiled) == 1
    model_with_opt = xpnet.Sequential.mlp([3, 2], seed=0, backend=be)
    model_with_opt[0].optimizer = xpnet.SGD()
    make_train_step(be, model_with_opt.layers, 0)
    assert len(compiled) == 1  # optimizer state lives outside a traced function


def _counting(forward, calls: list):
    """``forward`` that also records each Python-level call in ``calls``."""
    def counted(self, x):
        calls.append(1)
        return forward(self, x)
    return counted


def test_jax_compiled_step_traces_once_and_matches_the_twin(monkeypatch):
    """The compiled path is really taken: the layers' Python runs once (the trace), not per step."""
    pytest.importorskip("jax")
    be = get_backend("jax", dtype="float64")
    rng = np.random.default_rng(0)
    X = be.asarray(rng.random((16, 3)))
    onehot = be.asarray(np.eye(2)[rng.integers(0, 2, 16)])
    results = []
    for make in (make_train_step, portable_train_step):
        model = xpnet.Sequential.mlp([3, 4, 2], seed=0, backend=be)
        calls = []
        dense = type(model[0])
        real_forward = dense._forward
        monkeypatch.setattr(dense, "_forward", _counting(real_forward, calls))
        step = make(be, model.layers, 0)
        losses = [float(step(X, onehot, be.asarray(np.arange(4 * i, 4 * i + 4), dtype=be.index_dtype)))
                  for i in range(3)]
        monkeypatch.setattr(dense, "_forward", real_forward)
        results.append((len(calls), losses, be.to_numpy(model[0].weights)))
    (compiled_calls, compiled_losses, compiled_w), (twin_calls, twin_losses, twin_w) = results
    assert twin_calls == 3 * 2  # two Dense layers, three eager steps
    assert compiled_calls == 2  # one trace, then compiled code only
    np.testing.assert_allclose(compiled_losses, twin_losses, rtol=1e-12)
    np.testing.assert_allclose(compiled_w, twin_w, rtol=1e-12)


# -- numpy array subclasses (issue 11 item 1) ------------------------------------

def test_numpy_memmap_is_a_numpy_array(tmp_path):
    be = get_backend("numpy", dtype="float64")
    path = tmp_path / "X.npy"
    np.save(path, np.arange(12.0).reshape(4, 3))
    X = np.load(path, mmap_mode="r")
    assert isinstance(X, np.memmap)
    assert be.owns(X)
    assert be.check_array(X, "X", ndim=2) is X
    y = np.array([0, 1, 0, 1])
    model = xpnet.Sequential.mlp([3, 2], seed=0, backend=be)
    model.fit(X, y, epochs=1, batch_size=2, train_accuracy=False)
    np.testing.assert_array_equal(model.predict(X), model.predict(np.asarray(X)))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_numpy_matrix_is_refused_with_a_hint():
    be = get_backend("numpy", dtype="float64")
    with pytest.raises(TypeError, match=r"X is a numpy\.matrix.*np\.asarray") as info:
        be.check_array(np.matrix([[1.0, 2.0]]), "X")
    assert not isinstance(info.value, DeviceMismatchError)  # not "another library"


def test_foreign_message_names_the_true_library_and_device():
    aas = pytest.importorskip("array_api_strict")
    be = get_backend("numpy", dtype="float64")
    with pytest.raises(DeviceMismatchError, match=r"namespace array_api_strict.*runs on Backend\(name='numpy'"):
        be.check_array(aas.asarray([[1.0]], dtype=aas.float64), "X")


def test_torch_tensor_subclass_is_owned():
    torch = pytest.importorskip("torch")
    be = get_backend("torch", dtype="float64")
    param = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64), requires_grad=False)
    assert be.owns(param)


# -- JAX without 64-bit mode (issue 11 item 6) --------------------------------------

def test_jax_without_x64_creates_a_backend_without_warning():
    pytest.importorskip("jax")
    # Record (not raise) warnings: a probe that catches exceptions would hide a raised one.
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import xpnet\n"
        "    be = xpnet.get_backend('jax')\n"
        "print(be.to_numpy(be.zeros(1, dtype=be.index_dtype)).dtype.name, be.dtype_name)\n"
        "print('warnings:', [str(w.message) for w in caught])\n"
    )
    done = _run_python(code, env_drop=("JAX_ENABLE_X64",), JAX_PLATFORMS="cpu")
    assert done.returncode == 0, done.stderr
    assert "int32 float32" in done.stdout
    assert "warnings: []" in done.stdout
    assert "Warning" not in done.stderr


# -- error classes (issue 10 / issue 11 item 3 for xpnet/backends) ---------------

@pytest.mark.parametrize("needs, call, cls, builtin", [
    (None, lambda: get_backend("tensorflow"), UnknownBackendError, ValueError),
    (None, lambda: get_backend(os), UnknownBackendError, ValueError),
    (None, lambda: get_backend("numpy", device="cuda:0"), DeviceSpecError, ValueError),
    ("array_api_strict", lambda: get_backend("array_api_strict", device="gpu7"),
     DeviceSpecError, ValueError),
    ("array_api_strict", lambda: get_backend("array_api_strict", device=3.5),
     DeviceSpecError, ValueError),
    ("torch", lambda: get_backend("torch", device="nonsense"), DeviceSpecError, ValueError),
    ("torch", lambda: get_backend("torch", device="cuda:7"), BackendUnavailableError, ImportError),
])
def test_backend_errors_have_the_builtin_type(needs, call, cls, builtin):
    if needs is not None:
        lib = pytest.importorskip(needs)
        if needs == "torch" and lib.cuda.device_count() > 7:
            pytest.skip("eight CUDA devices are visible")
    with pytest.raises(cls) as info:
        call()
    assert isinstance(info.value, XpnetError) and isinstance(info.value, builtin)


def test_missing_library_is_an_import_error(monkeypatch):
    import importlib

    real_import = importlib.import_module

    def fake_import(name, *args):
        if name == "torch" or name.startswith("torch.") or name == "array_api_compat.torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    # The checkout's own extra (pip install -e "<checkout>[torch]"), or the published name.
    with pytest.raises(ImportError, match=r'pip install (-e "\S+|"xpnet)\[torch\]"'):
        backend_class("torch").create()


# -- lazy imports --------------------------------------------------------------------

def test_import_xpnet_imports_no_optional_library():
    code = (
        "import sys, xpnet, xpnet.export, xpnet.interop\n"
        "xpnet.get_backend('numpy')\n"
        "loaded = [m for m in ('torch', 'jax', 'cupy', 'array_api_strict', 'ndonnx', 'onnx',\n"
        "                      'onnxruntime', 'skl2onnx', 'safetensors', 'spox')\n"
        "          if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
