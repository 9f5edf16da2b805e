"""The benchmark harness (benchmarks/): a tiny smoke run, and like-with-like checks.

No timing is asserted here: the figures live in benchmarks/RESULTS.md. What is
asserted is that the harness runs end to end and reports every contender, and
that the hand-written NumPy reference (and idiomatic PyTorch) compute exactly
what xpnet computes from the same init and batch order -- so the benchmark
compares the same arithmetic. The smoke run is kept cheap (256 rows, one
thread, no JAX compilation); JAX and ``--memory`` get their own small tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import xpnet  # noqa: E402
from benchmarks import handwritten_numpy as hw  # noqa: E402
from benchmarks import mlp as bench  # noqa: E402
from benchmarks.contenders import HandwrittenNumpy, JaxByHand, XpnetContender  # noqa: E402
from benchmarks.report import render  # noqa: E402
from benchmarks.targets import evaluate_targets  # noqa: E402
from benchmarks.workload import epoch_flops, predict_flops  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
SIZES = (784, 100, 200, 10)
SMOKE_ROWS = 256


def _data(n=640, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.random((n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n)
    return X, y


# --------------------------------------------------------------------------
# The smoke run: the command line end to end, on 256 rows
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    backends = ["numpy"] + (["torch"] if HAVE_TORCH else [])
    env = dict(os.environ)
    env.setdefault("JAX_ENABLE_X64", "1")
    env.setdefault("JAX_PLATFORMS", "cpu")
    # One thread: a smoke test, not a measurement; keeps it fast on a busy machine.
    cmd = [sys.executable, "-m", "benchmarks.mlp", "--quick", "--rows", str(SMOKE_ROWS),
           "--threads", "1", "--backends", ",".join(backends), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return backends, proc.stdout, json.loads(out.read_text())


def _rows_of(rows, label, dtype, bs):
    return [r for r in rows if r["contender"] == label and r["dtype"] == dtype
            and (bs is None or r["batch_size"] == bs)]


def test_quick_reports_every_contender_with_positive_times(quick_run):
    backends, stdout, result = quick_run
    labels = {"numpy hand-written", "numpy GEMMs only"} | {f"xpnet {b}" for b in backends}
    if HAVE_TORCH:
        labels |= {"torch idiomatic", "torch GEMMs only"}
    for section, per_batch in (("train", (32, 256)), ("predict", (None,))):
        rows = result[section]
        for label in labels:
            for dtype in ("float32", "float64"):
                for bs in per_batch:
                    match = _rows_of(rows, label, dtype, bs)
                    assert len(match) == 1, (section, label, dtype, bs)
                    r = match[0]
                    assert r["times_s"] and all(t > 0 for t in r["times_s"])
                    assert r["median_s"] > 0 and r["gflops"] > 0
                    assert r["vs_handwritten_f32"] > 0
                    if HAVE_TORCH:
                        assert r["vs_torch"] > 0
        assert len(rows) == len(labels) * 2 * len(per_batch)
    for label in labels:
        assert label in stdout
    assert "Training: one epoch, batch 32 (8 steps" in stdout and "Prediction" in stdout
    assert result["meta"]["n_train"] == SMOKE_ROWS and "(--rows)" in result["meta"]["data"]
    assert result["ceilings"] and all(c["gflops"] > 0 for c in result["ceilings"])
    meta = result["meta"]
    assert meta["cpu"] and meta["numpy"] == np.__version__ and meta["date"]
    assert isinstance(meta["threadpools"], list)
    assert "OPENBLAS_CORETYPE" in meta["env"]  # reported, set or not
    assert meta["pause_s"] == 0.0  # --quick measures nothing, so it does not pause
    assert {t["target"] for t in result["targets"]}


def test_quick_run_losses_agree_between_contenders(quick_run):
    """Same init, same batch order: the warm-up epoch's loss is the same for all."""
    _, _, result = quick_run
    for bs in (32, 256):
        ref = _rows_of(result["train"], "numpy hand-written", "float64", bs)[0]["losses"][0]
        for r in result["train"]:
            if r["batch_size"] == bs and r["kind"] != "gemm":
                tol = 1e-10 if r["dtype"] == "float64" else 1e-4
                assert r["losses"][0] == pytest.approx(ref, rel=tol), r["contender"]


def test_markdown_and_text_render_the_same_rows(quick_run):
    _, _, result = quick_run
    text = render(result)
    md = render(result, markdown=True)
    assert "| contender |" in md and "### Training: one epoch, batch 256" in md
    for r in result["train"]:
        assert f"{r['median_s']:.3f}" in text and f"{r['median_s']:.3f}" in md


def test_memory_run_records_rss_per_epoch(quick_run):
    """``--memory``'s child processes (xpnet and hand-written NumPy: no torch import)."""
    args = SimpleNamespace(quick=True, memory_epochs=25, no_torch=True, data="random",
                           device="cpu", threads=1)
    memory = bench.run_memory(args)
    assert [m["contender"] for m in memory] == ["xpnet-numpy", "numpy-handwritten"]
    for m in memory:
        assert "error" not in m, m
        assert len(m["rss_after_epoch_bytes"]) == m["epochs"] == 2
        assert m["peak_rss_bytes"] >= max(m["rss_after_epoch_bytes"]) > 0
    targets = evaluate_targets({"train": [], "predict": [], "memory": memory})
    assert [t["target"] for t in targets] == ["training peak RSS reported, no per-epoch growth"]
    text = render(quick_run[2] | {"memory": memory, "targets": targets})
    assert "Memory: full training run" in text and "training peak RSS" in text


# --------------------------------------------------------------------------
# Like with like
# --------------------------------------------------------------------------

def test_epoch_flops_is_the_issue_count():
    # 6 * (784*100 + 100*200 + 200*10) per sample, 1562 batches of 32.
    assert epoch_flops(50_000, 32) == 6 * 100_400 * 49_984
    assert round(epoch_flops(50_000, 32) / 1e9, 1) == 30.1
    assert predict_flops(50_000) == 2 * 100_400 * 50_000


def test_handwritten_starts_from_xpnet_init():
    for dtype in ("float32", "float64"):
        model = xpnet.Sequential.mlp(SIZES, backend=xpnet.get_backend("numpy", dtype=dtype),
                                     seed=7)
        net = hw.build_mlp(SIZES, seed=7, dtype=dtype)
        dense_x = [layer for layer in model.layers if layer.param_names]
        dense_h = [layer for layer in net if isinstance(layer, hw.Dense)]
        assert len(dense_x) == len(dense_h) == 3
        for a, b in zip(dense_x, dense_h):
            np.testing.assert_array_equal(np.asarray(a.weights), b.weights)
            np.testing.assert_array_equal(np.asarray(a.biases), b.biases)
            assert b.weights.dtype == np.dtype(dtype)


def test_handwritten_steps_match_xpnet_float64():
    """Same batches, same per-step losses and weights, step by step."""
    X, y = _data()
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential.mlp(SIZES, backend=be, seed=0)
    net = hw.build_mlp(SIZES, seed=0, dtype="float64")
    batches = hw.iterate_minibatches(X, y, 32, shuffle=True, rng=np.random.default_rng(1))
    for xb, yb in batches:
        ref = hw.train(net, xb, yb)
        got = float(xpnet.train(model, be.asarray(xb), be.asarray(yb, dtype=be.index_dtype)))
        assert got == pytest.approx(float(ref), rel=1e-12)
    for a, b in zip([layer for layer in model.layers if layer.param_names],
                    [layer for layer in net if isinstance(layer, hw.Dense)]):
        np.testing.assert_allclose(np.asarray(a.weights), b.weights, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(a.biases), b.biases, rtol=1e-10, atol=1e-14)


def test_handwritten_epochs_match_xpnet_fit_float64():
    """``fit(seed=rng)`` sees the batches in the reference's order, epoch after epoch."""
    X, y = _data()
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential.mlp(SIZES, backend=be, seed=0)
    net = hw.build_mlp(SIZES, seed=0, dtype="float64")
    rng_x, rng_h = np.random.default_rng(5), np.random.default_rng(5)
    Xd, yd = be.asarray(X), be.asarray(y, dtype=be.index_dtype)
    for _ in range(2):
        h = model.fit(Xd, yd, epochs=1, batch_size=32, seed=rng_x, train_accuracy=False)
        ref = hw.train_epoch(net, X, y, 32, rng_h)
        assert h["loss"][-1] == pytest.approx(ref, rel=1e-12)
    for a, b in zip([layer for layer in model.layers if layer.param_names],
                    [layer for layer in net if isinstance(layer, hw.Dense)]):
        np.testing.assert_allclose(np.asarray(a.weights), b.weights, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(model.predict(Xd)), hw.predict(net, X))


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_harness_contenders_agree_on_the_first_epoch_float64(name):
    """The harness's own wrappers (used for timing) train the same numbers, on every backend."""
    if name != "numpy" and importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed")
    X, y = _data(n=128)
    be = xpnet.get_backend(name, dtype="float64")
    Xd, yd = be.asarray(X), be.asarray(y, dtype=be.index_dtype)
    made = [HandwrittenNumpy("h", "float64", "cpu", (X, y), 1),
            XpnetContender("x", "float64", be.device_name, (Xd, yd), 1, be)]
    for c in made:
        c.reset(32)
        assert c.epoch() > 0 and c.predict() > 0
    assert made[1].lib == name and made[1].call_seconds[0] >= 0
    assert made[0].losses[0] == pytest.approx(made[1].losses[0], rel=1e-12)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_idiomatic_matches_handwritten_float64():
    from benchmarks.torch_idiomatic import TorchMLP

    X, y = _data(n=320)
    mlp = TorchMLP(SIZES, seed=0, dtype="float64", device="cpu")
    net = hw.build_mlp(SIZES, seed=0, dtype="float64")
    for w, layer in zip(mlp.weights(), [layer for layer in net if isinstance(layer, hw.Dense)]):
        np.testing.assert_array_equal(w[0], layer.weights)
    rng_t, rng_h = np.random.default_rng(2), np.random.default_rng(2)
    loss_t = mlp.train_epoch(mlp.tensor(X), mlp.tensor(y, labels=True), 32, rng_t)
    loss_h = hw.train_epoch(net, X, y, 32, rng_h)
    assert loss_t == pytest.approx(loss_h, rel=1e-12)
    for (w, b), layer in zip(mlp.weights(), [layer for layer in net if isinstance(layer, hw.Dense)]):
        np.testing.assert_allclose(w, layer.weights, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(b, layer.biases, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(mlp.predict(mlp.tensor(X)).numpy(), hw.predict(net, X))


def test_jax_by_hand_trains_exactly_as_xpnet_jax():
    """The JAX floor contender: same init, batch order and arithmetic as xpnet's compiled epoch."""
    pytest.importorskip("jax")
    from _helpers import rel_err

    X, y = _data()
    be = xpnet.get_backend("jax", dtype="float64")
    data = (be.asarray(X), be.asarray(y, dtype=be.index_dtype))
    hand, ours = JaxByHand("h", "float64", "cpu", data, 2), XpnetContender("x", "float64", "cpu",
                                                                              data, 2, be)
    for c in (hand, ours):
        c.reset(32)
        assert all(c.epoch() > 0 for _ in range(2))
    assert hand.losses == pytest.approx(ours.losses, rel=1e-12)
    for (w, b), layer in zip(hand.params, [m for m in ours.model.layers if "weights" in m.param_names]):
        assert rel_err(np.asarray(w), be.to_numpy(layer.weights)) < 1e-12
        assert rel_err(np.asarray(b), be.to_numpy(layer.biases)) < 1e-12
    assert hand.predict() > 0


def test_numpy_blas_benchmark_compares_blas_with_its_twin(monkeypatch):
    """benchmarks.numpy_blas: the twin model never calls the fast paths; both train alike."""
    from benchmarks import numpy_blas
    from xpnet.backends.numpy import BundledGemm

    def refuse(*args):
        raise AssertionError("the twin backend called the BLAS fast path")

    twin = numpy_blas.twin_backend("float64")
    loss_twin = numpy_blas.twin_backend("float64", ("softmax_crossentropy",))
    z, onehot = np.array([[1.0, 2.0, 4.0]]), np.array([[0.0, 0.0, 1.0]])
    monkeypatch.setattr(xpnet.backends.numpy.NumpyBackend, "softmax_crossentropy", refuse)
    loss, _ = loss_twin.softmax_crossentropy(z, onehot)  # the twin, not the patched fast path
    assert float(loss) == pytest.approx(np.log(np.exp(z).sum()) - 4.0, rel=1e-12)
    monkeypatch.setattr(BundledGemm, "subtract_product_", refuse)
    w = np.ones((4, 3))
    np.testing.assert_array_equal(twin.sub_matmul_(w, np.ones((4, 2)), np.ones((2, 3))),
                                  np.full((4, 3), -1.0))
    monkeypatch.undo()
    X, y = _data(n=256)
    for hooks in (("sub_matmul_",), ("softmax_crossentropy",)):
        r = numpy_blas.run(X, y, "float64", 32, epochs=2, hooks=hooks)
        assert all(len(v) == 2 and min(v) > 0 for v in r["times"].values())
        assert r["max_weight_diff"] < 1e-12


def test_torch_step_by_hand_computes_xpnets_step():
    """benchmarks.torch_step: the hand-written torch step is xpnet's step, operation for operation."""
    torch = pytest.importorskip("torch")
    from _helpers import rel_err

    from benchmarks.torch_step import hand_step
    from benchmarks.workload import initial_params
    from xpnet.training import loss_layers, portable_train_step

    X, y = _data(n=128)
    be = xpnet.get_backend("torch", device="cpu", dtype="float64")
    Xt, onehot = torch.tensor(X), torch.eye(SIZES[-1], dtype=torch.float64)[torch.tensor(y)]
    params = [(torch.tensor(w), torch.tensor(b)) for w, b in initial_params(SIZES, "float64")]
    model = xpnet.Sequential.mlp(SIZES, seed=0, backend=be)
    ours, theirs = portable_train_step(be, loss_layers(model.layers), 0), hand_step(torch)
    for lo in range(0, 128, 32):
        idx = torch.arange(lo, lo + 32)
        assert float(theirs(params, Xt, onehot, idx)) == pytest.approx(
            float(ours(Xt, onehot, idx)), rel=1e-12)
    dense = [layer for layer in model.layers if "weights" in layer.param_names]
    for (w, b), layer in zip(params, dense):
        assert rel_err(w.numpy(), layer.weights.numpy()) < 1e-12
        assert rel_err(b.numpy(), layer.biases.numpy()) < 1e-12


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit
def test_torch_step_benchmark_runs(capsys):
    pytest.importorskip("torch")
    from benchmarks import torch_step

    torch_step.main(["--quick", "--epochs", "1", "--batch-sizes", "256"])
    out = capsys.readouterr().out
    assert "| 256 | xpnet |" in out and "| 256 | by hand |" in out
    assert "| 256 | compiled |" in out or "torch.compile failed" in out


def test_sparse_products_benchmark_times_both_paths_and_restores_the_threshold(capsys):
    pytest.importorskip("sklearn")
    import xpnet.feeds.sparse as feeds_sparse
    from benchmarks import sparse_products

    before = feeds_sparse.SPARSE_PRODUCT_MAX_DENSITY
    sparse_products.main(["--quick", "--densities", "0.01,0.3"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 0.01 |", "| 0.3 |"))]
    assert len(rows) == 2 and all(float(r.split("|")[4]) > 0 for r in rows)
    assert feeds_sparse.SPARSE_PRODUCT_MAX_DENSITY == before
