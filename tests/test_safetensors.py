"""safetensors checkpoints: round trips, interchange with the safetensors package and torch,
and every malformed file refused before anything is allocated."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import xpnet
from xpnet import safetensors_io
from xpnet.checkpoint import read_metadata, torch_name
from xpnet.errors import CheckpointError
from xpnet.layers import Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh


def _model(be, seed=0):
    layers = [Flatten(backend=be), Dense(6, 8, rng=seed, backend=be), Tanh(backend=be),
              Dropout(0.25, rng=1, backend=be), Dense(8, 8, rng=seed + 1, backend=be),
              LeakyReLU(0.1, backend=be), Dense(8, 8, rng=seed + 2, backend=be),
              Sigmoid(backend=be), Dense(8, 4, rng=seed + 3, backend=be), ReLU(backend=be),
              Dense(4, 3, rng=seed + 4, backend=be), Softmax(backend=be)]
    model = xpnet.Sequential(layers)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, Dense):
            layer.biases = be.asarray(rng.normal(size=layer.output_units))
    return model


def _params(model):
    be = model.backend
    return {f"layer{i}.{n}": be.to_numpy(getattr(layer, n))
            for i, layer in enumerate(model.layers) for n in layer.param_names}


def test_round_trip_is_bit_for_bit_on_every_backend(tmp_path, backend):
    model = _model(backend)
    path = tmp_path / "m.safetensors"
    model.save(path, metrics={"acc": 0.5})
    again = xpnet.Sequential.load(path, backend=backend)
    assert again.backend is backend
    assert [type(a) for a in again.layers] == [type(b) for b in model.layers]
    assert [a.get_config() for a in again.layers] == [b.get_config() for b in model.layers]
    before, after = _params(model), _params(again)
    assert list(before) == list(after)
    for name in before:
        assert after[name].dtype == before[name].dtype
        assert after[name].tobytes() == before[name].tobytes()
    assert again.metadata == {"metrics": {"acc": 0.5}}


def test_header_is_the_npz_header_and_names_are_torchs(tmp_path):
    model = _model(xpnet.get_backend("numpy", dtype="float64"))
    model.save(tmp_path / "m.safetensors")
    model.save(tmp_path / "m.npz")
    st, npz = read_metadata(tmp_path / "m.safetensors"), read_metadata(tmp_path / "m.npz")
    assert st["architecture"] == npz["architecture"] and st["sha256"] == npz["sha256"]
    meta, tensors = safetensors_io.read_file(tmp_path / "m.safetensors")
    assert meta["format"] == "pt"
    assert list(tensors) == ["1.weight", "1.bias", "4.weight", "4.bias", "6.weight", "6.bias",
                             "8.weight", "8.bias", "10.weight", "10.bias"]
    assert tensors["1.weight"].shape == (8, 6)
    assert np.array_equal(tensors["1.weight"], np.asarray(model.layers[1].weights).T)
    assert torch_name("layer10.biases") == ("10.bias", False)


def test_file_layout_follows_the_spec(tmp_path):
    """8-byte little-endian length, a JSON header padded to 8 bytes, the data after it."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "t.safetensors"
    safetensors_io.write_file(path, [("w", w), ("b", np.ones(2))], {"k": "v"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8:9] == b"{"
    header = json.loads(raw[8:8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"] == {"dtype": "F64", "shape": [2], "data_offsets": [24, 40]}
    assert raw[8 + n:8 + n + 24] == w.astype("<f4").tobytes()
    assert len(raw) == 8 + n + 40


# -- interchange with the safetensors package and torch -------------------------------

def test_files_written_here_are_read_by_the_safetensors_package(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    model = _model(xpnet.get_backend("numpy", dtype="float32"))
    model.save(tmp_path / "m.safetensors")
    theirs = st_numpy.load_file(tmp_path / "m.safetensors")
    for name, value in _params(model).items():
        stored, transposed = torch_name(name)
        assert np.array_equal(theirs[stored], value.T if transposed else value)


def test_files_written_by_the_safetensors_package_are_read_here(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {"0.weight": rng.normal(size=(5, 3)).astype(np.float32),
               "0.bias": rng.normal(size=5), "x": np.arange(4, dtype=np.int64)}
    st_numpy.save_file(tensors, tmp_path / "t.safetensors", metadata={"a": "b"})
    meta, ours = safetensors_io.read_file(tmp_path / "t.safetensors")
    assert meta == {"a": "b"}
    assert set(ours) == set(tensors)
    for name, value in tensors.items():
        assert ours[name].dtype == value.dtype and np.array_equal(ours[name], value)


def test_a_file_resaved_by_the_safetensors_package_still_loads(tmp_path):
    """The metadata carries the architecture and digest: a copy by another tool loads."""
    st_numpy = pytest.importorskip("safetensors.numpy")
    model = _model(xpnet.get_backend("numpy", dtype="float64"))
    model.save(tmp_path / "m.safetensors")
    meta, tensors = safetensors_io.read_file(tmp_path / "m.safetensors")
    st_numpy.save_file(dict(reversed(list(tensors.items()))), tmp_path / "copy.safetensors",
                       metadata=meta)
    again = xpnet.Sequential.load(tmp_path / "copy.safetensors")
    for name, value in _params(model).items():
        assert _params(again)[name].tobytes() == value.tobytes()


def test_torch_loads_the_file_and_computes_the_same_logits(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    be = xpnet.get_backend("numpy", dtype="float32")
    model = _model(be)
    model.save(tmp_path / "m.safetensors")
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Dropout(0.25),
        torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1), torch.nn.Linear(8, 8),
        torch.nn.Sigmoid(), torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    net.load_state_dict(st_torch.load_file(tmp_path / "m.safetensors"))
    X = np.random.default_rng(1).normal(size=(7, 2, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = net.eval()(torch.from_numpy(X)).numpy()
    ours = model.predict_logits(be.asarray(X))
    assert np.max(np.abs(theirs - ours)) <= 1e-6 * max(1.0, float(np.max(np.abs(ours))))


# -- bad files: a clear CheckpointError, nothing allocated --------------------------------

def _saved(tmp_path):
    path = tmp_path / "m.safetensors"
    xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0).save(path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return path, json.loads(raw[8:8 + n]), raw[8 + n:]


def _rewrite(path, header, data, length=None):
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head) if length is None else length) + head + data)


def _xpnet_header(header):
    return json.loads(header["__metadata__"]["xpnet"])


def _set_xpnet_header(header, value):
    header["__metadata__"]["xpnet"] = json.dumps(value)


def _wrong_shape(header):  # as many bytes, but not torch's (out, in) layout
    header["0.weight"]["shape"] = [4, 8]


def _wrong_architecture(header):  # declared and stored agree, the architecture does not
    h = _xpnet_header(header)
    h["architecture"][0]["output_units"] = 9
    _set_xpnet_header(header, h)


def _oversized(header):
    header["0.weight"]["shape"] = [2**20, 2**20]


def _past_the_end(header):
    header["2.bias"]["data_offsets"] = [header["2.bias"]["data_offsets"][0], 2**40]


def _foreign(header):
    del header["__metadata__"]["xpnet"]


def _not_strings(header):
    header["__metadata__"] = {"xpnet": 3}


def _overlap(header):
    header["0.bias"]["data_offsets"] = [0, 32]


def _renamed(header):
    header["0.weights"] = header.pop("0.weight")


def _bad_dtype(header):
    header["0.bias"]["dtype"] = "BF16"


def _other_format(header):
    h = _xpnet_header(header)
    h["format"] = "something-else"
    _set_xpnet_header(header, h)


@pytest.mark.parametrize("edit, match", [
    (_wrong_shape, r"'0.weight' has shape \(4, 8\).*metadata says shape \(8, 4\)"),
    (_wrong_architecture, "needs \\(4, 9\\)"),
    (_oversized, "needs .* bytes but its offsets span"),
    (_past_the_end, "outside the"),
    (_foreign, "not an xpnet checkpoint"),
    (_not_strings, "must map strings to strings"),
    (_overlap, "no gap or overlap|needs"),
    (_renamed, "missing: \\['0.weight'\\]"),
    (_bad_dtype, "dtype 'BF16'"),
    (_other_format, "format"),
])
def test_malformed_headers_are_refused(tmp_path, edit, match):
    path, header, data = _saved(tmp_path)
    edit(header)
    _rewrite(path, header, data)
    with pytest.raises(CheckpointError, match=match):
        xpnet.Sequential.load(path)


def test_a_missing_tensor_is_named(tmp_path):
    path, header, data = _saved(tmp_path)
    begin, end = header.pop("2.bias")["data_offsets"]  # the last tensor, and its bytes
    _rewrite(path, header, data[:begin])
    with pytest.raises(CheckpointError, match=r"missing: \['2.bias'\]"):
        xpnet.Sequential.load(path)


@pytest.mark.parametrize("length", [2**63, 2**40, 10**9])
def test_a_header_length_that_lies_is_refused_unread(tmp_path, length):
    path, header, data = _saved(tmp_path)
    _rewrite(path, header, data, length=length)
    with pytest.raises(CheckpointError, match="header claims"):
        xpnet.Sequential.load(path)


def test_truncated_and_extended_data(tmp_path):
    path, header, data = _saved(tmp_path)
    _rewrite(path, header, data[:-4])
    with pytest.raises(CheckpointError, match="outside the|end at"):
        xpnet.Sequential.load(path)
    _rewrite(path, header, data + b"\0" * 8)
    with pytest.raises(CheckpointError, match="end at data byte"):
        xpnet.Sequential.load(path)


def test_flipped_parameter_bits_fail_the_digest(tmp_path):
    path, header, data = _saved(tmp_path)
    flipped = bytearray(data)
    flipped[5] ^= 0x10
    _rewrite(path, header, bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        xpnet.Sequential.load(path)


@pytest.mark.parametrize("raw", [b"", b"\x01\0\0", b"\x02\0\0\0\0\0\0\0[]",
                                 b"\x04\0\0\0\0\0\0\0\xff\xfe{}", b"\x02\0\0\0\0\0\0\0{}"])
def test_not_a_safetensors_file(tmp_path, raw):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(raw)
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        xpnet.Sequential.load(tmp_path / "nope.safetensors")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="directory"):
        xpnet.Sequential.load(tmp_path / "d.safetensors")


def test_nothing_is_allocated_for_an_oversized_declaration(tmp_path, monkeypatch):
    """The index is refused before a tensor is read: read_tensor is never called."""
    path, header, data = _saved(tmp_path)
    _oversized(header)
    _rewrite(path, header, data)
    calls = []
    monkeypatch.setattr(safetensors_io, "read_tensor", lambda *a: calls.append(a))
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(path)
    assert calls == []


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.safetensors"
    xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0).save(path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON"):
        xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=1).save(path, bad=object())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        safetensors_io.write_file(tmp_path / "c.safetensors", [("c", np.zeros(2, complex))])
    with pytest.raises(ValueError, match="unique"):
        safetensors_io.write_file(tmp_path / "d.safetensors", [("a", np.zeros(1)), ("a", np.zeros(1))])
    with pytest.raises(TypeError, match="strings to strings"):
        safetensors_io.write_file(tmp_path / "e.safetensors", [("a", np.zeros(1))], {"k": 1})
    assert list(tmp_path.iterdir()) == []


# -- the fuzz harness ----------------------------------------------------------------------

def test_fuzzed_safetensors_load_or_raise_checkpoint_error():
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc/self/status are Linux")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), XPNET_BACKEND="numpy")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.fuzz", "--target", "safetensors",
                           "--n", "2000", "--seed", "7", "--timeout", "120"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["inputs"] == 2000
    assert summary["findings"] == 0, proc.stderr[-3000:]
    assert proc.returncode == 0
