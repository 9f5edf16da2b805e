"""GPU checks (issue 7): CuPy and PyTorch CUDA train like NumPy and hand models back.

* A model trained with ``backend="cupy"`` (or torch on ``cuda``) from the same
  host initialisation and batch order as NumPy ends with the same per-step
  losses and weights, within the suite's tolerances (norm-wise relative error,
  ``tests/_helpers.rel_err``): 1e-10 in float64, 2e-4 in float32 -- the
  reasoning is in tests/test_parity.py; on the GPU it also assumes TF32 is
  off (CuPy's ``CUPY_TF32`` unset, torch's default ``allow_tf32=False``).
* A GPU-trained model saved with ``model.save`` and reloaded with
  ``Sequential.load(path, backend="numpy")`` holds bit-identical weights and
  predicts the same classes (a class may differ only at a near tie).
* Asking for a GPU backend where there is none is a
  :class:`~xpnet.errors.BackendUnavailableError` that says what is missing.

The GPU tests skip, with the reason, where no CUDA device or library is
visible; ``XPNET_TEST_BACKENDS`` selects them like the rest of the suite (ids
``cupy`` and ``torch-cuda``). The error-message tests run everywhere.

``XPNET_TEST_GPU_STANDIN=torch`` adds torch on the CPU as a stand-in "GPU",
so the comparison code itself can be exercised on a machine without one
(ci/gpu.sh's dry run does this).

The programs ``ci/gpu.sh`` runs on the device (``ci/gpu/*.py``: test counts
per backend id, the reload comparison, the fallback-wheel choice) are tested
here on synthetic inputs, since the device run is one shot.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import rel_err

import xpnet
from xpnet.errors import BackendUnavailableError

REPO = pathlib.Path(__file__).resolve().parents[1]

# (test id, backend name, device)
GPU_SPECS = [("cupy", "cupy", None), ("torch-cuda", "torch", "cuda")]
if os.environ.get("XPNET_TEST_GPU_STANDIN", "") == "torch":
    GPU_SPECS.append(("standin-torch-cpu", "torch", "cpu"))

SIZES = [64, 48, 32, 10]
N, BATCH, LR, INIT_SEED, ORDER_SEED = 512, 32, 0.1, 0, 5


def _rtol(dtype: str) -> float:
    return 1e-10 if dtype == "float64" else 2e-4


def _selected(spec_id: str, name: str) -> bool:
    """Same rule as conftest: ids or names in XPNET_TEST_BACKENDS (empty: all)."""
    wanted = {w.strip() for w in os.environ.get("XPNET_TEST_BACKENDS", "").split(",") if w.strip()}
    if spec_id.startswith("standin-"):
        return True
    return not wanted or spec_id in wanted or name in wanted


def _gpu_backend(spec, dtype):
    spec_id, name, device = spec
    if not _selected(spec_id, name):
        pytest.skip(f"{spec_id} not selected by XPNET_TEST_BACKENDS")
    try:
        return xpnet.get_backend(name, device=device, dtype=dtype)
    except BackendUnavailableError as exc:
        pytest.skip(f"{spec_id} unavailable: {exc}")


@pytest.fixture(params=GPU_SPECS, ids=[s[0] for s in GPU_SPECS])
def gpu_spec(request):
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def gpu(gpu_spec, dtype):
    """The GPU Backend (skips with the reason when there is none)."""
    return _gpu_backend(gpu_spec, dtype)


@pytest.fixture(scope="module")
def problem():
    """Ten noisy binary prototypes: learnable in a few epochs, so classes vary."""
    rng = np.random.default_rng(77)
    protos = (rng.random((SIZES[-1], SIZES[0])) > 0.7).astype(np.float64)
    y = rng.integers(0, SIZES[-1], N)
    X = np.clip(protos[y] + 0.3 * rng.standard_normal((N, SIZES[0])), 0.0, 1.0)
    return X, y


def _pair(gpu):
    """The same MLP, from the same host initialisation, on numpy and on ``gpu``."""
    cpu = xpnet.get_backend("numpy", dtype=gpu.dtype_name)
    return (xpnet.Sequential.mlp(SIZES, learning_rate=LR, seed=INIT_SEED, backend=cpu),
            xpnet.Sequential.mlp(SIZES, learning_rate=LR, seed=INIT_SEED, backend=gpu))


def _params(model):
    be = model.backend
    return [be.to_numpy(getattr(layer, n)) for layer in model for n in layer.param_names]


def _assert_same_params(ref_model, model, rtol):
    for i, (a, b) in enumerate(zip(_params(ref_model), _params(model))):
        assert a.shape == b.shape
        err = rel_err(b, a)
        assert err < rtol, f"parameter {i}: relative error {err:.3g} >= {rtol:g}"


def _assert_same_classes(logits_ref, pred, rtol, what):
    """Equal argmax, except where the reference's top two logits nearly tie."""
    pred_ref = logits_ref.argmax(axis=1)
    diff = np.flatnonzero(pred_ref != pred)
    if diff.size:
        top2 = np.sort(logits_ref[diff], axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        bad = diff[margin > rtol * np.abs(logits_ref).max()]
        assert bad.size == 0, (
            f"{what}: {bad.size} of {len(pred)} predicted classes differ away from a tie, "
            f"first rows {bad[:10].tolist()}")


# --------------------------------------------------------------------------
# Training agrees with NumPy
# --------------------------------------------------------------------------

@pytest.mark.gpu
def test_sgd_steps_match_numpy(gpu, problem):
    """16 steps of the tutorial loop (``xpnet.train``) on host-ordered batches."""
    X, y = problem
    ref, model = _pair(gpu)
    assert all(gpu.owns(p) for layer in model for p in layer.params.values())
    order = np.random.default_rng(ORDER_SEED)
    losses_ref, losses = [], []
    for _ in range(2):
        perm = order.permutation(N)
        for lo in range(0, N - BATCH + 1, BATCH):
            idx = perm[lo:lo + BATCH]
            for be, net, out in ((ref.backend, ref, losses_ref), (gpu, model, losses)):
                xb, yb = be.asarray(X[idx]), be.asarray(y[idx], dtype=be.index_dtype)
                out.append(float(xpnet.train(net, xb, yb)))
    rtol = _rtol(gpu.dtype_name)
    assert rel_err(losses, losses_ref) < rtol, (losses[:4], losses_ref[:4])
    _assert_same_params(ref, model, rtol)
    start = _params(xpnet.Sequential.mlp(SIZES, seed=INIT_SEED, backend=ref.backend))
    assert rel_err(_params(ref)[0], start[0]) > 1e-3  # the steps did move the weights


@pytest.mark.gpu
def test_fit_matches_numpy(gpu, problem):
    """``Sequential.fit``: permutation uploaded once per epoch, batches gathered on the device."""
    X, y = problem
    ref, model = _pair(gpu)
    hists = []
    for net in (ref, model):
        be = net.backend
        hists.append(net.fit(be.asarray(X), be.asarray(y, dtype=be.index_dtype), epochs=3,
                             batch_size=BATCH, seed=ORDER_SEED, train_accuracy=True))
    rtol = _rtol(gpu.dtype_name)
    assert rel_err(hists[1]["loss"], hists[0]["loss"]) < rtol
    # Accuracies are counts / N: equal unless a near-tie flips one sample.
    assert np.allclose(hists[1]["train_acc"], hists[0]["train_acc"], atol=2 / N)
    _assert_same_params(ref, model, rtol)


# --------------------------------------------------------------------------
# Save on the GPU, load on NumPy (and back)
# --------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_trained_model_reloads_on_numpy(gpu, problem, tmp_path):
    X, y = problem
    # A larger step and more of them than above: the model must really learn,
    # so that its predictions are a meaningful thing to compare.
    model = xpnet.Sequential.mlp(SIZES, learning_rate=0.5, seed=INIT_SEED, backend=gpu)
    Xg = gpu.asarray(X)
    model.fit(Xg, gpu.asarray(y, dtype=gpu.index_dtype), epochs=10, batch_size=16,
              seed=ORDER_SEED, train_accuracy=False)
    path = tmp_path / f"{gpu.name}.npz"
    model.save(path)

    host = xpnet.Sequential.load(path, backend="numpy")
    assert host.backend.name == "numpy"
    assert host.backend.dtype_name == gpu.dtype_name  # the saved dtype by default
    for a, b in zip(_params(model), _params(host)):
        np.testing.assert_array_equal(a, b)  # a checkpoint is bit-exact

    logits_gpu = gpu.to_numpy(model.predict_logits(Xg))
    logits_host = host.predict_logits(host.backend.asarray(X))
    rtol = _rtol(gpu.dtype_name)
    assert rel_err(logits_host, logits_gpu) < rtol
    pred_host = host.predict(host.backend.asarray(X))
    pred_gpu = gpu.to_numpy(model.predict(Xg))
    _assert_same_classes(logits_gpu, pred_host, rtol, "numpy vs GPU")
    assert len(np.unique(pred_gpu)) > 1, "degenerate model: one class everywhere"
    assert (pred_gpu == y).mean() > 0.5  # it learned something: a real comparison

    # And back onto the GPU: the same weights give the same predictions there.
    again = xpnet.Sequential.load(path, backend=gpu)
    assert again.backend == gpu
    np.testing.assert_array_equal(gpu.to_numpy(again.predict(Xg)), pred_gpu)


# --------------------------------------------------------------------------
# No GPU: clear errors
# --------------------------------------------------------------------------

def _in_subprocess_without_gpus(backend: str, device: str | None) -> str:
    """Call get_backend in a fresh interpreter that sees no CUDA device."""
    code = textwrap.dedent("""
        import sys
        import xpnet
        from xpnet.errors import BackendUnavailableError
        try:
            be = xpnet.get_backend(sys.argv[1], device=sys.argv[2] or None)
        except BackendUnavailableError as exc:
            print("RAISED", exc)
        else:
            print("NO ERROR", be)
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code, backend, device or ""], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_cupy_not_installed_says_how_to_install(monkeypatch):
    """Runs everywhere: hide cupy from the import system."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendUnavailableError) as info:
        xpnet.get_backend("cupy")
    msg = str(info.value)
    assert "cupy" in msg and "not installed" in msg
    assert "pip install" in msg and "cupy13" in msg  # the CUDA 13 extra


def test_cupy_without_gpu_names_the_missing_device():
    """Without cupy: the install hint. With cupy but no visible GPU: the device."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError) as info:
            xpnet.get_backend("cupy")
        msg = str(info.value)
        assert "not installed" in msg and "pip install" in msg
        return
    out = _in_subprocess_without_gpus("cupy", None)
    assert out.startswith("RAISED"), out
    assert "CUDA device" in out and "CUDA_VISIBLE_DEVICES" in out, out


def test_torch_cuda_without_gpu_names_the_missing_device():
    pytest.importorskip("torch")
    out = _in_subprocess_without_gpus("torch", "cuda")
    assert out.startswith("RAISED"), out
    assert "'cuda:0'" in out or "'cuda'" in out, out
    assert "CUDA" in out, out


@pytest.mark.gpu
@pytest.mark.parametrize("spec_id, name, device, shown", [
    ("cupy", "cupy", 7, "CUDA device 7"),
    ("torch-cuda", "torch", "cuda:7", "cuda:7"),
])
def test_device_index_out_of_range_names_it(spec_id, name, device, shown):
    _gpu_backend((spec_id, name, None if name == "cupy" else "cuda"), "float32")
    import importlib

    lib = importlib.import_module(name)
    count = (lib.cuda.runtime.getDeviceCount() if name == "cupy" else lib.cuda.device_count())
    if count > 7:
        pytest.skip(f"{count} GPUs visible: device 7 exists")
    with pytest.raises(BackendUnavailableError) as info:
        xpnet.get_backend(name, device=device)
    assert shown in str(info.value)


# --------------------------------------------------------------------------
# The programs ci/gpu.sh runs (ci/gpu/*.py), on synthetic inputs
# --------------------------------------------------------------------------

def _ci_program(name: str):
    """Import ``ci/gpu/<name>.py`` as a module (ci/ is not a package)."""
    import importlib.util

    path = REPO / "ci" / "gpu" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ci_gpu_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="xpnet">
 <testcase classname="t" name="test_a[cupy-float32]">
  <skipped message="cupy unavailable: no GPU"/></testcase>
 <testcase classname="t" name="test_a[torch-cuda-float64]"/>
 <testcase classname="t" name="test_a[torch-float32]"/>
 <testcase classname="t" name="test_b[array_api_strict-device1-float32]">
  <failure message="x"/></testcase>
 <testcase classname="t" name="test_c"/>
</testsuite></testsuites>
"""


def test_report_counts_tests_per_backend_id(tmp_path):
    report = _ci_program("report")
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    found = report.count_tests(junit, ["numpy", "cupy", "torch", "torch-cuda"])
    tests = found["tests"]
    assert tests["total"] == {"passed": 3, "failed": 1, "skipped": 1}
    assert tests["torch-cuda"]["passed"] == 1 and tests["torch"]["passed"] == 1  # not twice
    assert tests["array_api_strict-device1"]["failed"] == 1
    assert "array_api_strict" not in tests
    assert found["gpu_skip_reasons"] == {"cupy": {"cupy unavailable: no GPU": 1}}
    # On a GPU, green with no cupy test passed is a failure; a dry run is not judged.
    summary = {"mode": "gpu", "stages": {"pytest": {"rc": "0", "seconds": 1}}, **found}
    assert report.gate_gpu_tests(summary) is True
    assert summary["stages"]["pytest"]["rc"].startswith("0 but no cupy")
    assert report.gate_gpu_tests(summary | {"mode": "dry-run"}) is False


def test_reload_parity_tolerates_only_near_ties():
    compare = _ci_program("reload_parity").compare
    ref = np.array([[1.0, 0.0], [0.5, 0.5 + 1e-6], [0.0, 2.0]])
    tie_flip = ref.copy()
    tie_flip[1] = [0.5 + 1e-6, 0.5]
    assert compare(tie_flip, ref, "numpy")["class_mismatches_vs_numpy"] == 1
    assert compare(tie_flip, ref, "numpy")["mismatches_not_near_tie"] == 0
    real_flip = ref.copy()
    real_flip[2] = [3.0, 0.0]
    got = compare(real_flip, ref, "numpy")
    assert got["mismatches_not_near_tie"] == 1
    assert got["max_rel_logit_diff"] == pytest.approx(3.0 / 2.0)


def test_missing_wheels_names_what_to_install(capsys):
    missing = _ci_program("missing_wheels")
    missing.main(["numpy:1", "pytest:9999", "matplotlib:9999", "no-such-dist-xpnet:1"])
    need = capsys.readouterr().out.splitlines()[-1]
    assert need == "NEED: pytest pluggy iniconfig no-such-dist-xpnet"
