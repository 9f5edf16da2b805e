"""ONNX export (xpnet.export): the layers' own forward traced on ndonnx, run by onnxruntime.

onnxruntime's results must equal predict_logits / predict_proba / predict: float32
within 1e-5 x max(1, largest magnitude), float64 within 1e-12 x the same, labels
exactly, at batch sizes 1, 7 and 1000 from one file.
"""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

import xpnet
from xpnet import datasets as ds
from xpnet.backends import BACKEND_NAMES, backend_class, get_backend
from xpnet.errors import ExportError
from xpnet.export import export_onnx, onnx_model
from xpnet.layers import (
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("ndonnx")

TOL = {"float32": 1e-5, "float64": 1e-12}
BATCHES = (1, 7, 1000)


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _run(path, X):
    return _session(path).run(None, {"X": np.asarray(X)})[0]


def _assert_close(got, want, dtype):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    assert float(np.max(np.abs(got - want), initial=0.0)) <= TOL[dtype] * scale


def _with_biases(model, rng):
    """Non-zero biases, so a dropped bias could not go unnoticed."""
    for layer in model.layers:
        if isinstance(layer, Dense):
            layer.biases = model.backend.asarray(rng.normal(size=layer.output_units))
    return model


def _every_layer_model(be, rng):
    """Flatten, Dense and every activation, Dropout, a final Softmax."""
    layers = [Flatten(backend=be), Dense(6, 16, rng=1, backend=be), ReLU(backend=be),
              Dense(16, 16, rng=2, backend=be), Sigmoid(backend=be),
              Dropout(0.5, rng=0, backend=be), Dense(16, 16, rng=3, backend=be),
              Tanh(backend=be), Dense(16, 16, rng=4, backend=be), LeakyReLU(0.2, backend=be),
              Dense(16, 5, init="glorot_uniform", rng=5, backend=be), Softmax(backend=be)]
    return _with_biases(xpnet.Sequential(layers), rng)


PREDICTORS = {"logits": "predict_logits", "proba": "predict_proba", "label": "predict"}


@pytest.mark.parametrize("output", ["logits", "proba", "label"])
def test_every_layer_kind_matches_predict_at_three_batch_sizes(tmp_path, dtype, output):
    be = get_backend("numpy", dtype=dtype)
    rng = np.random.default_rng(0)
    model = _every_layer_model(be, rng)
    path = tmp_path / "m.onnx"
    model.export_onnx(path, output=output, input_shape=(2, 3))
    for n in BATCHES:
        X = be.asarray(rng.normal(scale=3.0, size=(n, 2, 3)))
        got, want = _run(path, X), getattr(model, PREDICTORS[output])(X)
        if output == "label":
            assert got.dtype == np.int64 and np.array_equal(got, want)
        else:
            _assert_close(got, want, dtype)


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, Tanh, LeakyReLU])
def test_each_activation_alone(tmp_path, dtype, activation):
    be = get_backend("numpy", dtype=dtype)
    rng = np.random.default_rng(1)
    model = xpnet.Sequential.mlp([4, 9, 3], seed=1, backend=be,
                                 activation=lambda: activation(backend=be))
    _with_biases(model, rng)
    model.export_onnx(tmp_path / "a.onnx", output="proba")
    X = be.asarray(rng.normal(scale=5.0, size=(7, 4)))
    _assert_close(_run(tmp_path / "a.onnx", X), model.predict_proba(X), dtype)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "mse"])
def test_other_losses_export_their_predictions(tmp_path, loss):
    be = get_backend("numpy", dtype="float64")
    rng = np.random.default_rng(2)
    model = _with_biases(xpnet.Sequential.mlp([5, 8, 3], seed=2, backend=be, loss=loss), rng)
    X = be.asarray(rng.normal(size=(7, 5)))
    model.export_onnx(tmp_path / "l.onnx", output="label")
    got = _run(tmp_path / "l.onnx", X)
    assert np.array_equal(got, model.predict(X))
    if loss == "binary_crossentropy":
        model.export_onnx(tmp_path / "p.onnx", output="proba")
        _assert_close(_run(tmp_path / "p.onnx", X), model.predict_proba(X), "float64")
    else:
        with pytest.raises(TypeError, match="proba"):
            model.export_onnx(tmp_path / "p.onnx", output="proba")
        assert not (tmp_path / "p.onnx").exists()


def test_export_from_every_backend(tmp_path, backend):
    """The file is the same model whatever backend holds it (the parameters are copied)."""
    rng = np.random.default_rng(3)
    model = _with_biases(xpnet.Sequential.mlp([4, 8, 3], seed=3, backend=backend), rng)
    host = rng.normal(size=(7, 4))
    model.export_onnx(tmp_path / "b.onnx", output="logits")
    want = backend.to_numpy(model.predict_logits(backend.asarray(host)))
    _assert_close(_run(tmp_path / "b.onnx", host.astype(want.dtype)), want, backend.dtype_name)
    assert model.backend is backend  # the model itself did not move


def test_graph_has_symbolic_batch_and_initializers():
    pytest.importorskip("onnx")
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    proto = onnx_model(model, output="label")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 4]
    shapes = sorted(tuple(t.dims) for t in proto.graph.initializer)
    assert (4, 8) in shapes and (8, 3) in shapes and (8,) in shapes and (3,) in shapes
    assert not any(n.op_type == "Constant" and len(n.attribute) == 1
                   and n.attribute[0].name == "value" for n in proto.graph.node)
    assert [o.name for o in proto.graph.output] == ["label"]


def test_fixed_batch_size(tmp_path):
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    model.export_onnx(tmp_path / "f.onnx", batch_size=7)
    sess = _session(tmp_path / "f.onnx")
    assert sess.get_inputs()[0].shape == [7, 4]
    X = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    _assert_close(sess.run(None, {"X": X})[0], model.predict_logits(X), "float32")
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"X": X[:3]})


def test_export_leaves_the_model_untouched(tmp_path):
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    before = [np.array(layer.weights) for layer in model.layers[::2]]
    model.export_onnx(tmp_path / "u.onnx")
    assert all(layer.backend.name == "numpy" for layer in model.layers)
    assert all(np.array_equal(b, layer.weights) for b, layer in zip(before, model.layers[::2]))


# -- the ndonnx backend ----------------------------------------------------------------

def test_ndonnx_is_an_export_only_backend():
    cls = backend_class("ndonnx")
    assert cls.export_only and not cls.trains and not cls.mutable_arrays
    assert "ndonnx" not in BACKEND_NAMES
    assert all(not backend_class(n).export_only and backend_class(n).trains
               for n in BACKEND_NAMES)
    be = get_backend("ndonnx", dtype="float64")
    assert be.device_name == "onnx" and be.dtype_name == "float64"
    assert np.array_equal(be.to_numpy(be.asarray([[1.0, 2.0]]) * 2), [[2.0, 4.0]])


def test_fit_on_the_export_only_backend_is_refused():
    model = xpnet.Sequential.mlp([3, 4, 2], backend="ndonnx", dtype="float64", seed=0)
    with pytest.raises(TypeError, match="is for export only.*cannot train"):
        model.fit(np.zeros((8, 3)), np.zeros(8, dtype=np.int64), batch_size=4)


def test_cli_backend_choices_leave_ndonnx_out():
    from xpnet.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "m.npz", "--backend", "ndonnx"])


# -- bad input: clear errors, nothing written ------------------------------------------

class _HostLayer(Layer):
    """Reads its input back to the host: cannot be traced."""

    def _forward(self, input):
        return self.backend.asarray(np.tanh(np.asarray(input)))


def _assert_nothing_written(directory, path, before=None):
    if before is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == before
    assert sorted(p.name for p in directory.iterdir()) == ([path.name] if before else [])


def test_unsupported_layer_is_named_and_nothing_is_written(tmp_path):
    be = get_backend("numpy")
    model = xpnet.Sequential([Dense(4, 8, rng=0, backend=be), _HostLayer(backend=be),
                              Dense(8, 3, rng=1, backend=be)])
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(ExportError, match=r"layer 1 \(_HostLayer\(\)\)") as info:
        model.export_onnx(path)
    assert isinstance(info.value, ValueError) and "nothing was written" in str(info.value)
    _assert_nothing_written(tmp_path, path, b"previous")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"output": "probs"}, ValueError, "output must be one of"),
    ({"output": None}, ValueError, "output must be one of"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, ValueError, "batch_size"),
    ({"input_shape": (0, 4)}, ValueError, "input_shape"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    with pytest.raises(error, match=match):
        export_onnx(model, tmp_path / "x.onnx", **kwargs)
    _assert_nothing_written(tmp_path, tmp_path / "x.onnx")


def test_bad_path_and_model(tmp_path):
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    with pytest.raises(TypeError, match="path must be a str"):
        export_onnx(model, 3)
    with pytest.raises(TypeError, match="must be a Sequential or a list of Layers"):
        export_onnx(42, tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="input_shape"):
        export_onnx([ReLU(backend="numpy")], tmp_path / "x.onnx")
    _assert_nothing_written(tmp_path, tmp_path / "x.onnx")


def test_unwritable_path_raises_oserror_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    model = xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy")
    with pytest.raises(OSError):
        model.export_onnx(blocker / "m.onnx")  # the parent is a file
    if sys.platform.startswith("linux") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(PermissionError, match="cannot write the ONNX file"):
                model.export_onnx(locked / "m.onnx")
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(stat.S_IRWXU)


# -- the CLI ---------------------------------------------------------------------------

def test_cli_export(tmp_path, capsys):
    from xpnet.cli import main

    model = _with_biases(xpnet.Sequential.mlp([4, 8, 3], seed=0, backend="numpy"),
                         np.random.default_rng(4))
    model.save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"),
                 "--output", "proba"]) == 0
    assert "saved ONNX model" in capsys.readouterr().out
    X = np.random.default_rng(5).normal(size=(7, 4)).astype(np.float32)
    _assert_close(_run(tmp_path / "m.onnx", X), model.predict_proba(X), "float32")
    assert main(["export", str(tmp_path / "missing.npz"), str(tmp_path / "n.onnx")]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


# -- the MNIST model -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(ds._files_in(ds._checkout_dir())[0] is None,
                    reason="no MNIST copy in data/mnist")
def test_trained_mnist_model_scores_the_same_through_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setenv(ds.ENV_MIRRORS, "http://127.0.0.1:9/")  # never download
    X_train, y_train, _, _, X_test, y_test = ds.load_mnist(progress=False)
    model = xpnet.Sequential.mlp([784, 100, 200, 10], seed=0, backend="numpy")
    model.fit(X_train[:20000], y_train[:20000], epochs=1, batch_size=32, seed=0,
              progress=False)
    model.export_onnx(tmp_path / "mnist.onnx", output="label")
    labels = _run(tmp_path / "mnist.onnx", X_test)
    accuracy = float(np.mean(labels == y_test))
    assert accuracy == model.evaluate(X_test, y_test)["accuracy"]
    assert np.array_equal(labels, model.predict(X_test))
    assert accuracy > 0.8  # one short epoch (0.855 here): a trained model, not chance
