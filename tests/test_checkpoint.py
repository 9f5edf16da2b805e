"""Saved models: round trips across backends and dtypes, corruption, atomic writes."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.errors import CheckpointError
from xpnet.layers.base import Layer

SIZES = [6, 8, 5, 3]


def small_model(backend="numpy", dtype="float32", seed=0):
    return xpnet.Sequential.mlp(SIZES, learning_rate=0.05, backend=backend, dtype=dtype,
                                seed=seed)


def host_params(model) -> dict:
    be = model.backend
    return {f"layer{i}.{n}": be.to_numpy(getattr(layer, n))
            for i, layer in enumerate(model.layers) for n in layer.param_names}


def trained(model, seed=1):
    """Give the biases non-zero values so a round trip that drops them would fail."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for n in layer.param_names:
            shape = tuple(getattr(layer, n).shape)
            layer.set_param(n, model.backend.asarray(rng.standard_normal(shape)))
    return model


def leftovers(directory) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------

def test_round_trip_keeps_everything(tmp_path):
    model = trained(small_model())
    model.config["note"] = "kept"
    path = tmp_path / "m.npz"
    xpnet.checkpoint.save_model(model, path, training={"epochs": 3, "lr": 0.05},
                                metrics={"val_acc": np.float32(0.5), "test_acc": 0.25},
                                history={"val_acc": np.array([0.1, 0.5])})
    loaded = ckpt.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == \
        [layer.get_config() for layer in model.layers]
    assert loaded.layers[0].learning_rate == 0.05
    want, got = host_params(model), host_params(loaded)
    assert list(got) == list(want) == ["layer0.weights", "layer0.biases", "layer2.weights",
                                       "layer2.biases", "layer4.weights", "layer4.biases"]
    for k in want:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], want[k])
    assert loaded.metadata == {"training": {"epochs": 3, "lr": 0.05},
                               "metrics": {"val_acc": 0.5, "test_acc": 0.25},
                               "history": {"val_acc": [0.1, 0.5]}}
    assert loaded.config["note"] == "kept" and loaded.config["sizes"] == SIZES
    header = ckpt.read_metadata(path)
    assert header["format"] == "xpnet-checkpoint" and header["format_version"] == 1
    assert header["xpnet_version"] == xpnet.__version__
    assert (header["backend"], header["device"], header["dtype"]) == ("numpy", "cpu", "float32")
    assert header["architecture"][:2] == [
        {"type": "Dense", "input_units": 6, "output_units": 8, "learning_rate": 0.05},
        {"type": "ReLU"}]
    assert len(header["sha256"]) == 64


def test_the_file_is_a_plain_npz_without_pickles(tmp_path):
    path = tmp_path / "m.npz"
    small_model().save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(["__xpnet__", "layer0.weights", "layer0.biases",
                                            "layer2.weights", "layer2.biases",
                                            "layer4.weights", "layer4.biases"])
        assert json.loads(npz["__xpnet__"].tobytes())["params"][0] == \
            {"name": "layer0.weights", "shape": [6, 8], "dtype": "float32"}


def test_load_on_every_backend_predicts_the_same(backend_spec, tmp_path):
    """Train (here: set) on NumPy, load anywhere: same parameters, same predictions."""
    from _helpers import make_backend

    name, device = backend_spec
    model = trained(small_model(dtype="float64"))
    path = tmp_path / "m.npz"
    model.save(path)
    be = make_backend(name, device, "float64")
    loaded = ckpt.load_model(path, backend=name, device=device)
    assert loaded.backend == be
    for k, v in host_params(loaded).items():
        np.testing.assert_array_equal(v, host_params(model)[k])
    X = np.random.default_rng(2).standard_normal((40, SIZES[0]))
    want = model.predict(model.backend.asarray(X))
    got = be.to_numpy(loaded.predict(be.asarray(X)))
    np.testing.assert_array_equal(got, want)
    # And back: saved from that backend, loaded on NumPy.
    loaded.save(tmp_path / "back.npz")
    again = ckpt.load_model(tmp_path / "back.npz", backend="numpy")
    assert ckpt.read_metadata(tmp_path / "back.npz")["backend"] == name
    np.testing.assert_array_equal(again.predict(again.backend.asarray(X)), want)


def test_dtype_is_kept_by_default_and_can_be_changed(tmp_path):
    path = tmp_path / "m.npz"
    model = trained(small_model(dtype="float64"))
    model.save(path)
    assert ckpt.load_model(path).backend.dtype_name == "float64"
    as32 = ckpt.load_model(path, dtype="float32")
    assert as32.backend.dtype_name == "float32"
    np.testing.assert_array_equal(host_params(as32)["layer0.weights"],
                                  host_params(model)["layer0.weights"].astype(np.float32))


def test_sequential_save_and_load_delegate(tmp_path):
    model = trained(small_model())
    model.save(tmp_path / "seq.npz", note="hi")
    loaded = xpnet.Sequential.load(tmp_path / "seq.npz", dtype="float64")
    assert loaded.metadata == {"note": "hi"} and loaded.backend.dtype_name == "float64"


def test_any_layer_of_the_layers_package_round_trips(monkeypatch, tmp_path):
    """Layers are rebuilt by class name from xpnet.layers, so new ones need no change here."""

    class Scale(Layer):
        param_names = ("gain",)

        def __init__(self, units, *, factor=2.0, backend=None):
            super().__init__(backend=backend)
            self.units, self.factor = units, factor
            self.gain = self.backend.asarray(np.full(units, factor))

        def _forward(self, input):
            return input * self.gain

        def get_config(self):
            return {"units": self.units, "factor": self.factor}

    monkeypatch.setattr(xpnet.layers, "Scale", Scale, raising=False)
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.Sequential([xpnet.Dense(4, 3, rng=0, backend=be), Scale(3, factor=3.0,
                                                                         backend=be)])
    model.layers[1].gain = be.asarray([1.0, -2.0, 0.5])
    model.save(tmp_path / "s.npz")
    loaded = ckpt.load_model(tmp_path / "s.npz")
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 3.0
    np.testing.assert_array_equal(loaded.layers[1].gain, [1.0, -2.0, 0.5])
    monkeypatch.delattr(xpnet.layers, "Scale")
    with pytest.raises(CheckpointError, match="layer 1 has type 'Scale', which this xpnet does "
                                              "not know"):
        ckpt.load_model(tmp_path / "s.npz")


def test_the_packages_other_layers_round_trip(tmp_path):
    """Whatever layers xpnet.layers has besides Dense/ReLU come back with their config."""
    extra = [(name, kwargs) for name, kwargs in [("Tanh", {}), ("Sigmoid", {}),
                                                ("LeakyReLU", {"negative_slope": 0.2}),
                                                ("Dropout", {"rate": 0.25, "rng": 7})]
             if hasattr(xpnet.layers, name)]
    if not extra:
        pytest.skip("xpnet.layers has no layer besides Dense and ReLU yet")
    be = xpnet.get_backend("numpy", dtype="float64")
    layers = [xpnet.Dense(5, 4, rng=0, backend=be)]
    for name, kwargs in extra:
        layers.append(getattr(xpnet.layers, name)(**kwargs, backend=be))
    layers.append(xpnet.Dense(4, 3, rng=1, backend=be))
    model = trained(xpnet.Sequential(layers))
    model.save(tmp_path / "x.npz")
    loaded = ckpt.load_model(tmp_path / "x.npz")
    assert [type(x).__name__ for x in loaded.layers] == \
        ["Dense", *[name for name, _ in extra], "Dense"]
    for a, b in zip(model.layers, loaded.layers):
        assert a.get_config() == b.get_config()
    X = be.asarray(np.random.default_rng(3).standard_normal((7, 5)))
    np.testing.assert_array_equal(loaded.predict_logits(X), model.predict_logits(X))


def test_a_layer_outside_the_package_cannot_be_saved(tmp_path):
    class Mystery(Layer):
        pass

    model = xpnet.Sequential([xpnet.Dense(4, 3, rng=0, backend="numpy"),
                              Mystery(backend="numpy")])
    with pytest.raises(CheckpointError, match=r"cannot save layer 1 \(Mystery\).*"
                                              "xpnet.layers.Mystery is missing"):
        model.save(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable.*object is not"):
        small_model().save(tmp_path / "m.npz", bad=object())
    assert list(tmp_path.iterdir()) == []


def test_parent_directories_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "m.npz"
    small_model().save(path)
    assert ckpt.load_model(path).n_params() == small_model().n_params()


# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.npz"
    trained(small_model()).save(path, metrics={"acc": 1.0})
    return path


def rewrite(src, dst, *, header=None, arrays=None):
    """Copy a checkpoint, changing its header and/or arrays (and nothing else)."""
    with np.load(src, allow_pickle=False) as npz:
        content = {k: npz[k] for k in npz.files}
    old = json.loads(content.pop("__xpnet__").tobytes())
    new_header = header(old) if header else old
    if arrays:
        arrays(content)
    content["__xpnet__"] = np.frombuffer(json.dumps(new_header).encode(), dtype=np.uint8)
    np.savez(dst, **content)
    return dst


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*nope.npz.*does not exist"):
        ckpt.load_model(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        ckpt.load_model(tmp_path)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9, -1])
def test_truncated_files_are_rejected(saved, tmp_path, keep):
    data = saved.read_bytes()
    n = keep if isinstance(keep, int) and keep >= 0 else int(len(data) * keep) if keep > 0 \
        else len(data) - 1
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="is not a readable xpnet checkpoint.*truncated"):
        ckpt.load_model(bad)


def test_a_flipped_byte_is_detected(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("layer2.weights.npy")
    # Inside the array data of layer2.weights (past the local header and the .npy header).
    data[info.header_offset + 30 + len(info.filename) + 128 + 5] ^= 0x40
    bad = tmp_path / "flip.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable xpnet checkpoint: array "
                                              "'layer2.weights' cannot be read"):
        ckpt.load_model(bad)


def test_changed_parameters_fail_the_checksum(saved, tmp_path):
    def bump(content):
        content["layer4.biases"] = content["layer4.biases"] + np.float32(1e-3)

    bad = rewrite(saved, tmp_path / "bump.npz", arrays=bump)
    with pytest.raises(CheckpointError, match="parameter checksum mismatch"):
        ckpt.load_model(bad)


def test_foreign_files_are_rejected(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an xpnet checkpoint: it has no '__xpnet__'"
                                              " metadata entry \\(its entries: x\\)"):
        ckpt.load_model(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="single NumPy array"):
        ckpt.load_model(tmp_path / "single.npy")
    (tmp_path / "text.npz").write_text("hello, I am not a zip file\n")
    with pytest.raises(CheckpointError, match="not a readable xpnet checkpoint"):
        ckpt.load_model(tmp_path / "text.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable xpnet checkpoint"):
        ckpt.load_model(tmp_path / "empty.npz")


def test_pickles_are_never_loaded(tmp_path):
    np.savez(tmp_path / "p.npz", __xpnet__=np.array([{"evil": 1}], dtype=object),
             **{"layer0.weights": np.array([object()], dtype=object)})
    with pytest.raises(CheckpointError, match="metadata cannot be read.*allow_pickle=False"):
        ckpt.load_model(tmp_path / "p.npz")


def test_newer_format_versions_and_bad_headers(saved, tmp_path):
    newer = rewrite(saved, tmp_path / "v2.npz",
                    header=lambda h: {**h, "format_version": 2})
    with pytest.raises(CheckpointError, match="format version 2.*reads versions up to 1. "
                                              "Upgrade xpnet"):
        ckpt.load_model(newer)
    other = rewrite(saved, tmp_path / "fmt.npz", header=lambda h: {**h, "format": "keras"})
    with pytest.raises(CheckpointError, match="its format is 'keras', expected 'xpnet-checkpoint'"):
        ckpt.load_model(other)
    (tmp_path / "junk.npz").write_bytes(b"")
    np.savez(tmp_path / "junk.npz", __xpnet__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(CheckpointError, match="metadata cannot be read \\(JSONDecodeError"):
        ckpt.load_model(tmp_path / "junk.npz")


def test_architecture_must_fit_the_arrays(saved, tmp_path):
    def wider(h):
        h["architecture"][0]["output_units"] = 9
        return h

    bad = rewrite(saved, tmp_path / "wide.npz", header=wider)
    with pytest.raises(CheckpointError, match=r"layer0.weights has shape \(6, 8\) but Dense "
                                              r"layer 0 needs \(6, 9\)"):
        ckpt.load_model(bad)

    def no_relu(h):
        del h["architecture"][1]
        return h

    bad = rewrite(saved, tmp_path / "short.npz", header=no_relu)
    with pytest.raises(CheckpointError, match="the architecture needs parameters"):
        ckpt.load_model(bad)

    def bad_config(h):
        h["architecture"][0]["colour"] = "red"
        return h

    bad = rewrite(saved, tmp_path / "cfg.npz", header=bad_config)
    with pytest.raises(CheckpointError, match="cannot rebuild layer 0 as Dense"):
        ckpt.load_model(bad)


def test_arrays_must_match_the_metadata(saved, tmp_path):
    def drop(content):
        del content["layer2.biases"]

    bad = rewrite(saved, tmp_path / "drop.npz", arrays=drop)
    with pytest.raises(CheckpointError, match=r"missing: \['layer2.biases'\]"):
        ckpt.load_model(bad)

    def as64(content):
        content["layer0.weights"] = content["layer0.weights"].astype(np.float64)

    bad = rewrite(saved, tmp_path / "dtype.npz", arrays=as64)
    with pytest.raises(CheckpointError, match="has shape \\(6, 8\\) and dtype float64, but the "
                                              "metadata says shape \\(6, 8\\) and dtype float32"):
        ckpt.load_model(bad)


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failure_midway_keeps_the_previous_file(saved, monkeypatch, error):
    before = saved.read_bytes()

    def half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half a zip archive")
        raise error

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(type(error)):
        small_model(seed=5).save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert leftovers(saved.parent) == []
    assert ckpt.load_model(saved).metadata == {"metrics": {"acc": 1.0}}


def test_a_failing_fsync_or_rename_keeps_the_previous_file(saved, monkeypatch):
    before = saved.read_bytes()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        small_model(seed=5).save(saved)
    monkeypatch.undo()

    def no_rename(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(PermissionError):
        small_model(seed=5).save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert leftovers(saved.parent) == []


def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    with ckpt.atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new"
    assert (os.stat(path).st_mode & 0o777) == 0o640
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with ckpt.atomic_write(tmp_path, "wb"):
            pass
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w', got 'a'"):
        with ckpt.atomic_write(path, "a"):
            pass
    assert leftovers(tmp_path) == []
