"""Datasets whose files disagree with each other, and ``xpnet evaluate`` of a model
that does not fit the data: a ``DataError``/``ValueError`` naming the problem.

The MNIST-format files are written here (raw IDX, small), so these run without
the shipped MNIST copy; ``verify=False`` / ``--no-verify`` because they are not
the canonical files.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

import xpnet
from xpnet import cli
from xpnet import datasets as ds
from xpnet.errors import DataError


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """A forgotten download hits a closed local port, never the internet."""
    monkeypatch.setenv(ds.ENV_MIRRORS, "http://127.0.0.1:9/")
    monkeypatch.delenv(ds.ENV_DATA_DIR, raising=False)


def _idx(arr: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding ``arr``."""
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.astype(np.uint8).tobytes()


def _mnist_like(directory, *, n_train, n_train_labels=None, n_test=5, side=28, test_side=None):
    """Write the four MNIST files (raw IDX) with the given counts and image sizes."""
    directory.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(0)
    test_side = side if test_side is None else test_side
    files = {
        "train_images": gen.integers(0, 256, (n_train, side, side)),
        "train_labels": gen.integers(0, 10, n_train if n_train_labels is None else n_train_labels),
        "test_images": gen.integers(0, 256, (n_test, test_side, test_side)),
        "test_labels": np.arange(n_test) % 10,
    }
    for key, arr in files.items():
        (directory / ds.MNIST_FILES[key]).write_bytes(_idx(arr))
    return directory


def test_the_written_files_load(tmp_path):
    """Control: the writer makes a valid dataset, so the cases below fail for their one change."""
    d = _mnist_like(tmp_path / "ok", n_train=12)
    X_train, y_train, X_val, y_val, X_test, y_test = ds.load_mnist(
        d, verify=False, download=False, n_val=2)
    assert X_train.shape == (10, 784) and X_val.shape == (2, 784) and X_test.shape == (5, 784)
    assert y_test.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n_labels", [11, 13, 0])
def test_image_and_label_counts_disagree(tmp_path, n_labels):
    d = _mnist_like(tmp_path / "d", n_train=12, n_train_labels=n_labels)
    with pytest.raises(DataError, match="labels"):
        ds.load_mnist(d, verify=False, download=False, n_val=2)


def test_training_and_test_images_of_different_sizes(tmp_path):
    d = _mnist_like(tmp_path / "d", n_train=12, test_side=20)
    with pytest.raises(DataError, match="test images"):
        ds.load_mnist(d, verify=False, download=False, n_val=2)


@pytest.fixture
def mnist_like_dir(tmp_path):
    # evaluate keeps the tutorial's 10,000-image validation split: 10,010 training images.
    return _mnist_like(tmp_path / "data", n_train=10010, n_test=20)


def _evaluate(model, tmp_path, data_dir, capsys):
    path = tmp_path / "model.npz"
    model.save(path)
    code = cli.main(["evaluate", str(path), "--data-dir", str(data_dir), "--no-verify",
                     "--backend", "numpy"])
    return code, capsys.readouterr()


def test_evaluate_a_model_whose_input_size_does_not_fit_mnist(tmp_path, mnist_like_dir, capsys):
    model = xpnet.Sequential.mlp([100, 16, 10], seed=0, backend="numpy")
    code, captured = _evaluate(model, tmp_path, mnist_like_dir, capsys)
    assert code == 1
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "100" in err and "784" in err
    assert "test_acc" not in captured.out


def test_evaluate_a_model_with_too_few_outputs(tmp_path, mnist_like_dir, capsys):
    model = xpnet.Sequential.mlp([784, 16, 5], seed=0, backend="numpy")
    code, captured = _evaluate(model, tmp_path, mnist_like_dir, capsys)
    assert code == 1 and "outputs" in captured.err and "test_acc" not in captured.out


def test_evaluate_a_model_that_fits(tmp_path, mnist_like_dir, capsys):
    """Control for the two above: the same data and a fitting model give a result line."""
    model = xpnet.Sequential.mlp([784, 16, 10], seed=0, backend="numpy")
    code, captured = _evaluate(model, tmp_path, mnist_like_dir, capsys)
    assert code == 0, captured.err
    assert "test_acc=" in captured.out and "n=20" in captured.out
