"""Loading a crafted checkpoint allocates O(size of the file) and draws nothing at random.

The header of a checkpoint is JSON anyone can edit; the arrays' ``.npy`` headers
too. Every declared size is checked against what the file holds before any
layer (or array) is allocated. The memory bound is enforced for real: the
loads run in a child process under ``RLIMIT_AS``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
HUGE = 200_000  # Dense(HUGE, HUGE) in float64 would be 298 GiB


def _digest(entries) -> str:
    """The checksum save_model writes (recomputed here, so a crafted file is 'valid')."""
    h = hashlib.sha256()
    for name, arr in entries:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(f"{name}|{arr.dtype.str}|{tuple(arr.shape)}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _tiny_saved(tmp_path) -> Path:
    model = xpnet.Sequential([xpnet.Dense(2, 3, rng=0, backend="numpy")])
    path = tmp_path / "tiny.npz"
    model.save(path)
    return path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy ``src`` with ``edit(header, arrays)`` applied and the checksum made consistent."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("__xpnet__").tobytes())
    edit(header, arrays)
    header["sha256"] = _digest([(p["name"], arrays[p["name"]]) for p in header["params"]])
    arrays["__xpnet__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)
    return dst


def _huge_architecture(header, arrays):
    header["architecture"][0].update(input_units=HUGE, output_units=HUGE)


def _huge_everywhere(header, arrays):
    """Architecture and params list both say HUGE; only the arrays are tiny."""
    _huge_architecture(header, arrays)
    header["params"][0]["shape"] = [HUGE, HUGE]
    header["params"][1]["shape"] = [HUGE]


def _npy_bytes_claiming(shape, dtype, payload: bytes) -> bytes:
    """A .npy file whose header declares ``shape`` but which holds only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _lying_npy_header(tmp_path, src: Path) -> Path:
    """Header, params and the array's own .npy header all claim HUGE; the data is tiny."""
    dst = tmp_path / "npy.npz"
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("__xpnet__").tobytes())
    _huge_everywhere(header, arrays)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("layer0.weights.npy",
                    _npy_bytes_claiming((HUGE, HUGE), "<f4", arrays["layer0.weights"].tobytes()))
        zf.writestr("layer0.biases.npy",
                    _npy_bytes_claiming((HUGE,), "<f4", arrays["layer0.biases"].tobytes()))
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        zf.writestr("__xpnet__.npy", buf.getvalue())
    return dst


def _load_under_memory_limit(path: Path, limit_bytes: int = 3 << 29) -> subprocess.CompletedProcess:
    """Load ``path`` in a child whose address space may grow by ``limit_bytes`` (1.5 GiB)."""
    script = textwrap.dedent(f"""
        import resource, sys
        import xpnet
        from xpnet.errors import CheckpointError

        def vm_size():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        limit = vm_size() + {limit_bytes}
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            xpnet.Sequential.load({str(path)!r}, backend="numpy")
        except CheckpointError as exc:
            print("CheckpointError:", exc)
            sys.exit(0)
        except MemoryError:
            print("MemoryError")
            sys.exit(3)
        print("loaded")
        sys.exit(4)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)


needs_rlimit = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")


@needs_rlimit
@pytest.mark.parametrize("craft, message", [
    (lambda tmp, src: _rewrite(src, tmp / "arch.npz", _huge_architecture),
     r"layer0.weights has shape \(2, 3\) but Dense layer 0 needs \(200000, 200000\)"),
    (lambda tmp, src: _rewrite(src, tmp / "all.npz", _huge_everywhere),
     r"array 'layer0.weights' has shape \(2, 3\) and dtype float32, but the metadata says "
     r"shape \(200000, 200000\)"),
    (_lying_npy_header, r"array 'layer0.weights' declares shape \(200000, 200000\) of float32, "
                        r"which does not match its 24 bytes of data"),
], ids=["architecture", "architecture-and-params", "npy-header"])
def test_a_crafted_header_is_refused_within_a_small_memory_limit(tmp_path, craft, message):
    path = craft(tmp_path, _tiny_saved(tmp_path))
    assert path.stat().st_size < 4096  # the file is tiny: loading it must stay small
    done = _load_under_memory_limit(path)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.startswith("CheckpointError:")
    assert re.search(message, done.stdout), done.stdout
    with pytest.raises(CheckpointError, match=message):  # the same in this process
        ckpt.load_layers(path)


def test_a_member_claiming_more_than_its_stored_bytes_is_refused(tmp_path):
    """A zip member whose uncompressed size is not its stored size (stored members)."""
    src = _tiny_saved(tmp_path)
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("layer0.weights.npy")
    # Patch the uncompressed size in the central directory entry of that member.
    name = b"layer0.weights.npy"
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    assert central > 0
    size_at = central + 24  # uncompressed size field of a central directory header
    assert int.from_bytes(data[size_at:size_at + 4], "little") == info.file_size
    data[size_at:size_at + 4] = (info.file_size * 1000).to_bytes(4, "little")
    bad = tmp_path / "sizes.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"member 'layer0.weights.npy' declares \d+ bytes "
                                              r"from \d+ stored bytes"):
        xpnet.Sequential.load(bad)


def test_loading_draws_no_random_weights(tmp_path, monkeypatch):
    """Layers are built from the stored arrays: no initializer and no Generator draw runs."""
    model = xpnet.Sequential.mlp([4, 6, 3], backend="numpy", dtype="float64", seed=5)
    model.layers.append(xpnet.layers.Dropout(0.25, rng=3, backend=model.backend))
    path = tmp_path / "m.npz"
    model.save(path)

    def forbidden(rng, shape):
        raise AssertionError(f"weights of shape {shape} drawn while loading")

    for name in list(xpnet.initializers.INITIALIZERS):
        monkeypatch.setitem(xpnet.initializers.INITIALIZERS, name, forbidden)
    with pytest.raises(AssertionError, match="drawn while loading"):  # the patch bites
        xpnet.Dense(2, 2, backend="numpy")
    loaded = xpnet.Sequential.load(path)
    monkeypatch.undo()
    for a, b in zip(model.layers, loaded.layers):
        assert a.get_config() == b.get_config()
        for name in a.param_names:
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


def test_dense_from_config_takes_the_given_arrays():
    be = xpnet.get_backend("numpy", dtype="float32")
    w = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.array([1.0, -1.0, 0.5])
    config = {"input_units": 2, "output_units": 3, "learning_rate": 0.2}
    layer = xpnet.Dense.from_config(config, {"weights": w, "biases": b}, backend=be)
    assert layer.get_config() == config
    np.testing.assert_array_equal(layer.weights, w.astype(np.float32))
    np.testing.assert_array_equal(layer.biases, b.astype(np.float32))
    assert layer.weights.dtype == np.float32
    assert xpnet.Dense.param_shapes(config) == {"weights": (2, 3), "biases": (3,)}
    assert xpnet.ReLU.param_shapes({}) == {}
    with pytest.raises(ValueError, match="input_units must be a positive int, got -2"):
        xpnet.Dense.param_shapes({"input_units": -2, "output_units": 3})


@pytest.mark.parametrize("units", [-1, 0, "6", 2.5, None])
def test_a_bad_unit_count_in_the_header_is_a_checkpoint_error(tmp_path, units):
    src = _tiny_saved(tmp_path)

    def edit(header, arrays):
        header["architecture"][0]["input_units"] = units

    bad = _rewrite(src, tmp_path / "units.npz", edit)
    with pytest.raises(CheckpointError, match="cannot rebuild layer 0 as Dense.*input_units must "
                                              "be a positive int"):
        xpnet.Sequential.load(bad)


@pytest.mark.parametrize("field, value, message", [
    ("model_config", [1, 2], "metadata field 'model_config' must be a dict"),
    ("metadata", "x", "metadata field 'metadata' must be a dict"),
    ("params", [{"name": "layer0.weights", "shape": [-2, 3], "dtype": "float32"}],
     "malformed params entry"),
    ("params", [{"name": "layer0.weights", "shape": [2.0, 3], "dtype": "float32"}],
     "malformed params entry"),
])
def test_malformed_header_fields_are_checkpoint_errors(tmp_path, field, value, message):
    src = _tiny_saved(tmp_path)
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("__xpnet__").tobytes())
    header[field] = value
    arrays["__xpnet__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    bad = tmp_path / "field.npz"
    np.savez(bad, **arrays)
    with pytest.raises(CheckpointError, match=message):
        xpnet.Sequential.load(bad)


def test_layers_that_do_not_chain_are_a_checkpoint_error(tmp_path):
    be = xpnet.get_backend("numpy")
    model = xpnet.Sequential([xpnet.Dense(2, 3, rng=0, backend=be), xpnet.ReLU(backend=be),
                              xpnet.Dense(3, 2, rng=1, backend=be)])
    path = tmp_path / "chain.npz"
    model.save(path)

    def edit(header, arrays):  # Dense(2, 3) then Dense(4, 2), arrays to match each
        header["architecture"][2]["input_units"] = 4
        arrays["layer2.weights"] = np.zeros((4, 2), dtype=np.float32)
        header["params"][2]["shape"] = [4, 2]

    bad = _rewrite(path, tmp_path / "bad.npz", edit)
    with pytest.raises(CheckpointError, match="do not form a network.*takes 4 inputs"):
        xpnet.Sequential.load(bad)
