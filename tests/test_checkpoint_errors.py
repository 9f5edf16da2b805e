"""Checkpoints that users get wrong: every damaged or unsupported file or model is
refused with the error class and a message naming what is wrong.

Files are written here from a good checkpoint with one thing changed. Messages
are matched on a stable word only (the class is the contract), so the wording can
improve without breaking these tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet.errors import CheckpointError

HEADER = "__xpnet__"  # the archive entry holding the JSON header (the file format)


def _good_checkpoint(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential.mlp([4, 3, 2], seed=0, backend=be)
    path = tmp_path / "good.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz[HEADER].tobytes().decode("utf-8"))
        arrays = {name: npz[name] for name in npz.files if name != HEADER}
    return path, header, arrays


def _digest(arrays: dict) -> str:
    """The format's parameter checksum: SHA-256 over (name, dtype, shape, little-endian bytes)."""
    h = hashlib.sha256()
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{name}|{arr.dtype.str}|{tuple(arr.shape)}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _write(path, header, arrays) -> None:
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    np.savez(path, **arrays, **{HEADER: blob})


@pytest.fixture
def good(tmp_path):
    return _good_checkpoint(tmp_path)


def test_the_good_checkpoint_and_the_rewriter_load(good, tmp_path):
    """Control: rewriting an unchanged header gives a loadable file (the cases below
    fail because of their one change, not because of the rewrite)."""
    path, header, arrays = good
    assert header["sha256"] == _digest(arrays)
    again = tmp_path / "again.npz"
    _write(again, header, arrays)
    a = xpnet.Sequential.load(path)
    b = xpnet.Sequential.load(again)
    X = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_array_equal(a.predict_logits(X), b.predict_logits(X))


def _header_cases():
    def set_(key, value):
        return lambda h: {**h, key: value}

    def drop(key):
        return lambda h: {k: v for k, v in h.items() if k != key}

    return {
        "newer version": (set_("format_version", 999), "version"),
        "version zero": (set_("format_version", 0), "version"),
        "version a string": (set_("format_version", "1"), "version"),
        "version a bool": (set_("format_version", True), "version"),
        "no version": (drop("format_version"), "version"),
        "other format": (set_("format", "keras"), "format"),
        "no format": (drop("format"), "format"),
        "no architecture": (drop("architecture"), "architecture"),
        "architecture a string": (set_("architecture", "Dense"), "architecture"),
        "no params": (drop("params"), "params"),
        "params a dict": (set_("params", {}), "params"),
        "no checksum": (drop("sha256"), "sha256"),
        "checksum a number": (set_("sha256", 5), "sha256"),
        "no dtype": (drop("dtype"), "dtype"),
        "dtype an int": (set_("dtype", 64), "dtype"),
        "dtype int8": (set_("dtype", "int8"), "dtype"),
        "wrong checksum": (set_("sha256", "0" * 64), "checksum"),
        "unknown layer type": (
            lambda h: {**h, "architecture": [{**h["architecture"][0], "type": "Conv2D"}]
                       + h["architecture"][1:]}, "Conv2D"),
        "architecture entry not a dict": (
            lambda h: {**h, "architecture": ["Dense"] + h["architecture"][1:]}, "architecture"),
        "architecture entry without type": (
            lambda h: {**h, "architecture": [{"input_units": 4}] + h["architecture"][1:]},
            "type"),
        "bad layer config": (
            lambda h: {**h, "architecture": [{**h["architecture"][0], "input_units": -4}]
                       + h["architecture"][1:]}, "layer 0"),
        "layer sizes disagree with the arrays": (
            lambda h: {**h, "architecture": [{**h["architecture"][0], "output_units": 5}]
                       + h["architecture"][1:]}, "layer"),
    }


HEADER_CASES = _header_cases()


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_a_damaged_header_is_a_checkpoint_error(good, tmp_path, case):
    _, header, arrays = good
    mutate, word = HEADER_CASES[case]
    path = tmp_path / "bad.npz"
    _write(path, mutate(header), arrays)
    with pytest.raises(CheckpointError, match=word):
        xpnet.Sequential.load(path)


def test_the_header_not_being_an_object(good, tmp_path):
    _, _, arrays = good
    path = tmp_path / "list.npz"
    blob = np.frombuffer(b'["xpnet-checkpoint", 1]', dtype=np.uint8)
    np.savez(path, **arrays, **{HEADER: blob})
    with pytest.raises(CheckpointError, match="format"):
        xpnet.Sequential.load(path)
    with pytest.raises(CheckpointError, match="format"):
        xpnet.checkpoint.read_metadata(path)


@pytest.mark.parametrize("entry", [
    "layer0.weights", {"name": "layer0.weights"}, {"shape": [4, 3], "dtype": "float64"},
    {"name": "layer0.weights", "shape": 5, "dtype": "float64"}, None, 7,
], ids=["a string", "no shape", "no name", "shape an int", "null", "a number"])
def test_a_malformed_params_entry(good, tmp_path, entry):
    _, header, arrays = good
    path = tmp_path / "params.npz"
    _write(path, {**header, "params": [entry] + header["params"][1:]}, arrays)
    with pytest.raises(CheckpointError, match="params"):
        xpnet.Sequential.load(path)


@pytest.mark.parametrize("dtype", ["int64", "int32", "complex128", "bool"])
def test_non_float_parameter_arrays(good, tmp_path, dtype):
    """Arrays, header and checksum all agree; the dtype itself is refused."""
    _, header, arrays = good
    arrays = {name: np.ones(a.shape, dtype=dtype) for name, a in arrays.items()}
    params = [{**p, "dtype": dtype} for p in header["params"]]
    path = tmp_path / "ints.npz"
    _write(path, {**header, "params": params, "sha256": _digest(arrays)}, arrays)
    with pytest.raises(CheckpointError, match="float"):
        xpnet.Sequential.load(path)


def test_an_empty_architecture(tmp_path):
    path = tmp_path / "empty.npz"
    header = {"format": "xpnet-checkpoint", "format_version": 1, "architecture": [],
              "params": [], "sha256": _digest({}), "dtype": "float64"}
    _write(path, header, {})
    with pytest.raises(CheckpointError, match="layers"):
        xpnet.Sequential.load(path)


def test_an_archive_with_the_header_entry_of_the_wrong_dtype(good, tmp_path):
    _, header, arrays = good
    path = tmp_path / "f64header.npz"
    np.savez(path, **arrays, **{HEADER: np.zeros(4)})
    with pytest.raises(CheckpointError, match="metadata"):
        xpnet.Sequential.load(path)


def test_an_archive_with_a_pickled_entry_is_refused(good, tmp_path):
    """Object arrays need pickle; loading never unpickles."""
    _, header, arrays = good
    path = tmp_path / "pickled.npz"
    arrays = {**arrays, "layer0.weights": np.array([{"x": 1}], dtype=object)}
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    path.write_bytes(buf.getvalue())
    assert zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(path)


# --------------------------------------------------------------------------
# Saving what cannot be saved: a clear error and no file
# --------------------------------------------------------------------------


class Doubler(xpnet.Layer):
    """A user's layer that is not in xpnet.layers: checkpoints cannot rebuild it."""

    def _forward(self, input):
        return input * 2

    def _backward(self, input, grad_output, need_input_grad=True):
        return grad_output * 2


def _unsupported_models():
    be = xpnet.get_backend("numpy")
    return {
        "a user's layer class": (lambda: xpnet.Sequential(
            [xpnet.Dense(3, 2, rng=0, backend=be), Doubler(backend=be)]),
            CheckpointError, "Doubler"),
        "no layers": (lambda: [], ValueError, "layer"),
        "not a model": (lambda: 42, TypeError, "model"),
        "a list holding a non-layer": (lambda: [xpnet.Dense(3, 2, rng=0, backend=be), "relu"],
                                       TypeError, "(?i)layer"),
    }


UNSUPPORTED = _unsupported_models()


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_saving_an_unsupported_model(tmp_path, case):
    make, error, word = UNSUPPORTED[case]
    path = tmp_path / "model.npz"
    with pytest.raises(error, match=word):
        xpnet.checkpoint.save_model(make(), path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_saving_metadata_that_is_not_json(tmp_path):
    model = xpnet.Sequential.mlp([3, 2], seed=0, backend="numpy")
    with pytest.raises(TypeError, match="metadata"):
        model.save(tmp_path / "m.npz", notes=object())
    assert list(tmp_path.iterdir()) == []
