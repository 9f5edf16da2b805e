"""What the benchmark measures: the seed MLP, its FLOP count and its data.

FLOP count (:func:`epoch_flops`): for ``rows = (n // batch) * batch`` samples
and layer sizes ``a_i -> b_i``, with ``S = sum(a_i * b_i) = 100,400``::

    forward         2 * S * rows      (X @ W per layer)
    weight grads    2 * S * rows      (X^T @ G per layer)
    input grads     2 * S * rows      (G @ W^T per layer, the first one included,
                                       as the tutorial computes it)
    total           6 * S * rows      = 30.1 GFLOP at batch 32 (49,984 rows)

Bias adds, ReLU and softmax are O(rows * units) and ignored (< 0.5 %). Every
contender is credited the same nominal count, so GFLOP/s is just inverse time
on a common scale; implementations that skip the first layer's input gradient
(xpnet, PyTorch autograd, the GEMMs-only loop) do 26 % less arithmetic.
Prediction: ``2 * S * n`` FLOP.
"""

from __future__ import annotations

import numpy as np

from xpnet.datasets import load_mnist

SIZES = (784, 100, 200, 10)
LEARNING_RATE = 0.1  # the seed Dense layers' default
MACS_PER_ROW = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 100,400
N_TRAIN = 50_000
QUICK_ROWS = 2048


def epoch_flops(n_samples: int, batch_size: int) -> int:
    """Nominal FLOP of one training epoch: ``6 * S * rows`` (see the module docstring).

    >>> round(epoch_flops(50_000, 32) / 1e9, 1)
    30.1
    """
    rows = (n_samples // batch_size) * batch_size
    return 6 * MACS_PER_ROW * rows


def predict_flops(n_samples: int) -> int:
    """Nominal FLOP of predicting ``n_samples`` rows: ``2 * S * n``."""
    return 2 * MACS_PER_ROW * n_samples


def load_data(data: str = "auto", *, quick: bool = False, with_validation: bool = False) -> dict:
    """Training data as host NumPy arrays (float32 images in [0, 1], int64 labels).

    ``data="auto"`` uses ``xpnet.datasets.load_mnist()`` when it works and falls
    back to random data of the same shape (saying why); ``--quick`` defaults to
    random data and keeps the first ``QUICK_ROWS`` rows.
    """
    source, reason = None, None
    if data == "auto" and quick:
        data = "random"
    if data in ("auto", "mnist"):
        try:
            parts = load_mnist(flatten=True, dtype="float32")
            X, y, Xv, yv = (np.asarray(p) for p in parts[:4])
            X = X.reshape(X.shape[0], -1).astype(np.float32, copy=False)
            Xv = Xv.reshape(Xv.shape[0], -1).astype(np.float32, copy=False)
            y, yv = y.astype(np.int64, copy=False), yv.astype(np.int64, copy=False)
            source = f"MNIST via xpnet.datasets.load_mnist ({X.shape[0]:,} training rows)"
        except Exception as exc:  # no data files, a bad copy, ...
            if data == "mnist":
                raise
            reason = f"{type(exc).__name__}: {exc}"
    if source is None:
        rng = np.random.default_rng(1234)
        n = QUICK_ROWS if quick else N_TRAIN
        X = rng.random((n, SIZES[0]), dtype=np.float32)
        y = rng.integers(0, SIZES[-1], n).astype(np.int64)
        Xv = rng.random((min(n, 10_000), SIZES[0]), dtype=np.float32)
        yv = rng.integers(0, SIZES[-1], Xv.shape[0]).astype(np.int64)
        source = f"RANDOM data of MNIST's shape ({n:,} x {SIZES[0]})"
        if reason:
            source += f" -- MNIST unavailable ({reason})"
    if quick:
        X, y = X[:QUICK_ROWS], y[:QUICK_ROWS]
        Xv, yv = Xv[:QUICK_ROWS // 4], yv[:QUICK_ROWS // 4]
    out = {"X": np.ascontiguousarray(X), "y": np.ascontiguousarray(y), "source": source}
    if with_validation:
        out["X_val"], out["y_val"] = np.ascontiguousarray(Xv), np.ascontiguousarray(yv)
    return out



def initial_params(sizes, dtype: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(weights, biases)`` per Dense layer, as ``xpnet.Sequential.mlp(sizes, seed=0)`` draws them."""
    import xpnet

    be = xpnet.get_backend("numpy", dtype=dtype)
    model = xpnet.Sequential.mlp(list(sizes), seed=0, backend=be)
    return [(layer.weights.copy(), layer.biases.copy())
            for layer in model.layers if "weights" in layer.param_names]
