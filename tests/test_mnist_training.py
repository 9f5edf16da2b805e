"""One epoch of the tutorial's network on real MNIST reaches 90% validation accuracy.

These train on the full 50,000 training images (1,562 steps of 32), so they are
marked ``slow``; each takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import make_backend

import xpnet
from xpnet import datasets as ds

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(ds._files_in(ds._checkout_dir())[0] is None,
                       reason="no MNIST copy in data/mnist"),
]


@pytest.fixture(autouse=True)
def _offline_and_single_threaded(monkeypatch):
    """Never download; one BLAS/torch thread.

    With 32-row batches the matrices are tiny: extra threads only add
    synchronisation, and on a busy shared CI machine they make an epoch 10x slower.
    """
    monkeypatch.setenv(ds.ENV_MIRRORS, "http://127.0.0.1:9/")
    monkeypatch.delenv(ds.ENV_DATA_DIR, raising=False)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1, user_api="blas")
    with limits:
        yield


@pytest.fixture
def torch_single_thread():
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_one_epoch_of_the_seed_network(name, request):
    be = make_backend(name, "cpu", "float32")  # skips cleanly when torch is absent
    request.getfixturevalue("torch_single_thread")  # torch is imported by now
    X_train, y_train, X_val, y_val, X_test, y_test = ds.load_mnist(backend=be)
    model = xpnet.Sequential.mlp([784, 100, 200, 10], learning_rate=0.1, seed=0, backend=be)
    history = model.fit(X_train, y_train, epochs=1, batch_size=32, seed=0,
                        validation_data=(X_val, y_val))
    assert history["val_acc"][0] >= 0.9
    assert history["train_acc"][0] >= 0.9
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.9


def test_the_example_script_runs_the_tutorial(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           ds.ENV_MIRRORS: "http://127.0.0.1:9/",
           # The checkout under test, not an installed xpnet.
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop(ds.ENV_DATA_DIR, None)
    plot, digits = tmp_path / "curves.png", tmp_path / "digits.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist_mlp.py"), "--backend", "numpy",
         "--epochs", "1", "--plot", str(plot), "--examples", str(digits)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Epoch 0" in out
    train_acc = float(re.search(r"^Train accuracy: ([0-9.]+)$", out, re.M).group(1))
    val_acc = float(re.search(r"^Val accuracy: ([0-9.]+)$", out, re.M).group(1))
    assert train_acc >= 0.9 and val_acc >= 0.9
    for png in (plot, digits):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
