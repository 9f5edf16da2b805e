"""A table of bad inputs across the public API: each must raise a typed error whose
message names the argument, what was expected and what was given.

Rows that need a backend run on NumPy; the device rows use array-api-strict's
second device. CLI, checkpoint and dataset rows live in their own test files
(test_cli.py, test_checkpoint.py, test_datasets.py) and are listed here too
through the ``extra`` rows at the bottom.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import xpnet
from xpnet.errors import (
    BackendUnavailableError,
    DeviceMismatchError,
    DivergenceError,
    DTypeError,
    ShapeError,
    XpnetError,
)


@pytest.fixture(scope="module")
def be():
    return xpnet.get_backend("numpy", dtype="float32")


@pytest.fixture(scope="module")
def model(be):
    return xpnet.Sequential.mlp([784, 16, 10], backend=be, seed=0)


def _X(be, n=8, d=784):
    return be.asarray(np.random.default_rng(0).random((n, d)))


def _y(be, n=8, hi=10):
    return be.asarray(np.arange(n) % hi, dtype=be.index_dtype)


def _strict_model(dtype=None):
    aas = pytest.importorskip("array_api_strict")
    return aas, xpnet.Sequential.mlp([4, 3, 2], backend="array_api_strict", device="device1",
                                     seed=0, dtype=dtype)


def _strict_array(dtype_name):
    """A (2, 4) array-api-strict array of ``dtype_name`` on device1, and a float32 model there:
    an array of the model's library is never cast (host data is, see test_input_conversion.py)."""
    aas, model = _strict_model("float32")
    x = aas.zeros((2, 4), dtype=getattr(aas, dtype_name), device=aas.Device("device1"))
    return model, x


CASES = {
    # --- shapes -----------------------------------------------------------------
    "single sample (784,) instead of a batch": (
        lambda be, m: m.predict(be.asarray(np.zeros(784))),
        ShapeError, r"X must be a 2-D array, got shape \(784,\).*x\[None, :\]"),
    "images not flattened (n, 28, 28)": (
        lambda be, m: m.fit(be.asarray(np.zeros((8, 28, 28))), _y(be)),
        ShapeError, r"2-D array, got shape \(8, 28, 28\).*flatten"),
    "wrong feature count": (
        lambda be, m: m.predict(_X(be, d=785)),
        ShapeError, r"X must have shape \(n, 784\).*got \(8, 785\)"),
    "labels length differs from X": (
        lambda be, m: m.fit(_X(be), _y(be, n=7), batch_size=4),
        ShapeError, r"one label per sample: expected shape \(8,\), got \(7,\)"),
    "one-hot labels to evaluate": (
        lambda be, m: m.evaluate(_X(be), be.asarray(np.eye(10)[:8], dtype=be.index_dtype)),
        ShapeError, r"y must be a 1-D array, got shape \(8, 10\)"),
    "grad_output of wrong shape": (
        lambda be, m: m[0].backward(_X(be), be.zeros((8, 17))),
        ShapeError, r"grad_output must have the layer output's shape \(8, 16\), got \(8, 17\)"),
    "loss with 1-D logits": (
        lambda be, m: xpnet.softmax_crossentropy_with_logits(be.zeros((10,)), _y(be, 10)),
        ShapeError, r"logits must be a 2-D array.*got shape \(10,\)"),
    "inputs/targets of different length to iterate_minibatches": (
        lambda be, m: list(xpnet.iterate_minibatches(_X(be), _y(be, n=5), 2)),
        ShapeError, r"same number of samples, got 8 and 5"),
    # --- dtypes -----------------------------------------------------------------
    "uint8 images (a tensor of the model's library)": (
        lambda be, m: (lambda sm, x: sm.predict(x))(*_strict_array("uint8")),
        DTypeError, r"X must have dtype float32.*got (array_api_strict\.)?uint8.*scale them to \[0, 1\]"),
    "float64 data into a float32 model (a tensor of the model's library)": (
        lambda be, m: (lambda sm, x: sm.predict(x))(*_strict_array("float64")),
        DTypeError, r"X must have dtype float32 \(the model's dtype\), got (array_api_strict\.)?float64"),
    "strings in a list": (
        lambda be, m: m.predict([["a"] * 784]),
        DTypeError, r"X must hold real numbers .*got dtype <U1 \(strings\) in a list"),
    "complex host data": (
        lambda be, m: m.predict(np.zeros((2, 784), dtype=complex)),
        DTypeError, r"X must hold real numbers .*got dtype complex128 \(complex numbers\)"),
    "objects in a list": (
        lambda be, m: m.predict(np.array([[None] * 784], dtype=object)),
        DTypeError, r"X must hold real numbers .*got dtype object \(Python objects"),
    "integers too large for float32": (
        lambda be, m: m.predict(np.full((2, 784), 2**24 + 1)),
        ValueError, r"X holds integers that float32 cannot represent exactly: 16777217 \(row 0\) "
                    r"would become 16777216"),
    "a ragged list": (
        lambda be, m: m.predict([[0.0] * 784, [0.0] * 783]),
        ShapeError, r"X is a list whose rows have different lengths \(a ragged list\)"),
    "float labels": (
        lambda be, m: m.fit(_X(be), be.asarray(np.zeros(8)), batch_size=4),
        DTypeError, r"y must hold integer class labels, got dtype float32"),
    "float labels to the loss": (
        lambda be, m: xpnet.grad_softmax_crossentropy_with_logits(be.zeros((2, 10)), be.zeros((2,))),
        DTypeError, r"reference_answers must hold integer class labels, got dtype float32"),
    "integer logits": (
        lambda be, m: xpnet.softmax_crossentropy_with_logits(be.zeros((2, 3), dtype=be.index_dtype), _y(be, 2, 3)),
        DTypeError, r"logits must be floating point, got dtype int64"),
    "int dtype for a backend": (
        lambda be, m: xpnet.get_backend("numpy", dtype="int32"),
        DTypeError, r"dtype must be 'float32' or 'float64', got 'int32'"),
    # --- values -----------------------------------------------------------------
    "label 10 with 10 classes": (
        lambda be, m: m.fit(_X(be), be.asarray(np.full(8, 10), dtype=be.index_dtype), batch_size=4),
        ValueError, r"class indices in \[0, 9\] \(the network has 10 outputs\), got values from 10 to 10"),
    "negative label to the loss": (
        lambda be, m: xpnet.softmax_crossentropy_with_logits(be.zeros((2, 3)), be.asarray(np.array([0, -1]), dtype=be.index_dtype)),
        ValueError, r"\[0, 2\].*from -1 to 0"),
    "NaN in training inputs": (
        lambda be, m: m.fit(be.asarray(np.full((8, 784), np.nan)), _y(be), batch_size=4),
        ValueError, r"X contains NaN or infinite values.*isfinite"),
    "NaN in prediction inputs": (
        lambda be, m: m.predict(be.asarray(np.full((3, 784), np.inf))),
        ValueError, r"NaN or infinite outputs for X"),
    "batch larger than the data": (
        lambda be, m: m.fit(_X(be), _y(be), batch_size=64),
        ValueError, r"batch_size=64 is larger than the 8 training samples"),
    "zero epochs": (
        lambda be, m: m.fit(_X(be), _y(be), epochs=0, batch_size=4),
        ValueError, r"epochs must be a positive int, got 0"),
    "negative check_every": (
        lambda be, m: m.fit(_X(be), _y(be), batch_size=4, check_every=-1),
        ValueError, r"check_every must be an int >= 0, got -1"),
    "zero predict block": (
        lambda be, m: m.predict(_X(be), batch_size=0),
        ValueError, r"batch_size must be a positive int, got 0"),
    "zero batchsize to iterate_minibatches": (
        lambda be, m: list(xpnet.iterate_minibatches(_X(be), _y(be), 0)),
        ValueError, r"batchsize must be a positive int, got 0"),
    "negative learning rate": (
        lambda be, m: xpnet.Dense(3, 2, learning_rate=-0.1),
        ValueError, r"learning_rate must be a finite number >= 0, got -0.1"),
    "zero units": (
        lambda be, m: xpnet.Dense(0, 2),
        ValueError, r"input_units must be a positive int, got 0"),
    "MLP with one size": (
        lambda be, m: xpnet.Sequential.mlp([784]),
        ValueError, r"sizes needs at least input and output sizes, got \[784\]"),
    "empty network": (
        lambda be, m: xpnet.Sequential([]),
        ValueError, r"at least one layer, got an empty list"),
    "a string in the network": (
        lambda be, m: xpnet.forward([m[0], "relu"], _X(be)),
        TypeError, r"network\[1\] must be an xpnet Layer, got str"),
    "validation_data not a pair": (
        lambda be, m: m.fit(_X(be), _y(be), batch_size=4, validation_data=_X(be)),
        TypeError, r"validation_data must be a pair \(X_val, y_val\)"),
    "a string instead of an array": (
        lambda be, m: m.predict("pixels.npy"),
        TypeError, r"X must be an array of Backend\(name='numpy'.*got str.*backend.asarray"),
    "rng of the wrong type": (
        lambda be, m: xpnet.Dense(3, 2, rng="seed"),
        TypeError, r"rng must be an int seed, a numpy.random.Generator or None, got str"),
    "unknown init name": (
        lambda be, m: xpnet.Dense(3, 2, init="kaiming"),
        ValueError, r"unknown init 'kaiming'; choose one of"),
    "Dense layers that do not chain": (
        lambda be, m: xpnet.Sequential([xpnet.Dense(4, 8), xpnet.ReLU(), xpnet.Dense(5, 3)]),
        ValueError, r"layer 2 \(Dense\(5, 3.*takes 5 inputs but layer 0 produces 8 outputs"),
    "optimizer given by name to fit": (
        lambda be, m: m.fit(_X(be), _y(be), batch_size=4, optimizer="adam"),
        TypeError, r"optimizer must be an xpnet optimizer.*get_optimizer\('adam'"),
    "seed of the wrong type": (
        lambda be, m: m.fit(_X(be), _y(be), batch_size=4, seed="x"),
        TypeError, r"seed must be an int or a numpy.random.Generator, got str"),
    "empty evaluation set": (
        lambda be, m: m.evaluate(_X(be, n=0), _y(be, n=0)),
        ValueError, r"X and y are empty"),
    # --- backends and devices -----------------------------------------------------
    "unknown backend": (
        lambda be, m: xpnet.get_backend("tensorflow"),
        XpnetError, r"unknown backend 'tensorflow'; choose one of numpy"),
    "jax device index out of range": (
        lambda be, m: (pytest.importorskip("jax"), xpnet.get_backend("jax", device="cpu:7")),
        BackendUnavailableError, r"jax device 'cpu:7' requested but only 1 cpu device"),
    "numpy on a GPU device": (
        lambda be, m: xpnet.get_backend("numpy", device="cuda:0"),
        XpnetError, r"backend 'numpy' only has device 'cpu', got device='cuda:0'"),
    "array from another library": (
        lambda be, m: m.predict(pytest.importorskip("array_api_strict").zeros((2, 784))),
        DeviceMismatchError, r"X is a array_api_strict.* but the model runs on Backend\(name='numpy'.*never moves data silently"),
    "array on the wrong device of the same library": (
        lambda be, m: (lambda aas, sm: sm.predict(aas.zeros((2, 4), dtype=aas.float32)))(*_strict_model()),
        DeviceMismatchError, r"on device .*CPU_DEVICE.*model runs on .*device1"),
    "labels on another device than logits": (
        lambda be, m: (lambda aas, sm: xpnet.softmax_crossentropy_with_logits(
            aas.zeros((2, 3), device=aas.Device("device1")), aas.asarray([0, 1])))(*_strict_model()),
        DeviceMismatchError, r"same library on the same device"),
    "diverging learning rate": (
        lambda be, m: xpnet.Sequential.mlp([784, 16, 10], backend=be, seed=0, learning_rate=1e38).fit(
            _X(be, 64), _y(be, 64), batch_size=4, check_every=4),
        DivergenceError, r"training diverged: the loss became .* in epoch 1, between steps \d+ and \d+.*Lower the learning rate"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gets_a_clear_error(case, be, model):
    call, exc_type, pattern = CASES[case]
    with pytest.raises(exc_type, match=pattern):
        call(be, model)


def test_every_row_is_a_distinct_error(be, model):
    """The table is not padded: its rows hit at least 30 different checks (distinct messages)."""
    messages = {}
    for case, (call, exc_type, _) in CASES.items():
        with pytest.raises(exc_type) as info:
            call(be, model)
        messages.setdefault(str(info.value), []).append(case)
    repeated = {m: cases for m, cases in messages.items() if len(cases) > 1}
    assert not repeated, repeated
    assert len(messages) >= 30


def test_missing_cuda_is_not_a_silent_fallback():
    try:
        be = xpnet.get_backend("cupy")
    except BackendUnavailableError as exc:
        message = str(exc)
        if importlib.util.find_spec("cupy") is None:  # says how to install it
            assert re.search(r"pip install .*cupy", message), message
        else:  # installed, no device: says so
            assert "CUDA" in message and "device" in message, message
    else:  # pragma: no cover - only on GPU machines
        assert be.name == "cupy"
