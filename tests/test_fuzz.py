"""Fuzzing the two file readers: a few thousand mutants each, plus the inputs that found bugs.

The contract (see ``benchmarks/fuzz.py``, which ``make fuzz`` runs with
100,000 inputs per reader): every input either loads or raises
``DataError`` / ``CheckpointError``, and none allocates more than a small
multiple of its own size -- checked by running the loader in a child process
under ``resource.setrlimit(RLIMIT_AS)``, with a timeout.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet
from xpnet.datasets import read_idx
from xpnet.errors import CheckpointError, DataError

ROOT = Path(__file__).resolve().parent.parent
_CHILD_ENV = dict(os.environ, PYTHONPATH=str(ROOT), XPNET_BACKEND="numpy")
MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_AS and /proc/self/status are Linux")


def _fuzz(target: str, n: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.fuzz", "--target", target, "--n", str(n),
           "--seed", "7", "--timeout", "120"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_CHILD_ENV, capture_output=True, text=True,
                          timeout=180)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    summary["stderr"] = proc.stderr[-3000:]
    summary["rc"] = proc.returncode
    return summary


def test_fuzzed_idx_files_load_or_raise_data_error():
    summary = _fuzz("idx", 4000)
    assert summary["inputs"] == 4000
    assert summary["findings"] == 0, summary["stderr"]
    assert summary["rc"] == 0


def test_fuzzed_checkpoints_load_or_raise_checkpoint_error():
    summary = _fuzz("checkpoint", 3000)
    assert summary["inputs"] == 3000
    assert summary["findings"] == 0, summary["stderr"]
    assert summary["rc"] == 0


# --------------------------------------------------------------------------
# Hypothesis byte strategies, in process (small inputs only)
# --------------------------------------------------------------------------

def _header(type_code: int, shape) -> bytes:
    return struct.pack(f">HBB{len(shape)}I", 0, type_code, len(shape), *shape)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_an_idx_file_or_a_data_error(data):
    try:
        arr = read_idx(data)
    except DataError:
        return
    assert arr.nbytes == len(data) - 4 - 4 * arr.ndim


@settings(max_examples=300, deadline=None)
@given(type_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
       shape=st.lists(st.sampled_from([0, 1, 2, 3, 2**16, 2**32 - 1]), min_size=1, max_size=6),
       body=st.binary(max_size=64), compress=st.booleans())
def test_valid_headers_with_any_body_load_exactly_or_raise(type_code, shape, body, compress):
    raw = _header(type_code, shape) + body
    try:
        arr = read_idx(gzip.compress(raw) if compress else raw)
    except DataError as exc:
        assert "IDX data" in str(exc) or "too large for an array" in str(exc)
        return
    assert arr.shape == tuple(shape) and arr.nbytes == len(body)


def test_an_empty_shape_numpy_cannot_represent_is_a_data_error():
    with pytest.raises(DataError, match=r"shape \(0, 4294967295, 4294967295\) .* too large"):
        read_idx(_header(0x08, (0, 2**32 - 1, 2**32 - 1)))


def test_a_declared_size_that_overflows_64_bits_is_a_data_error():
    # 65536**4 == 2**64: computed in int64 it wrapped to 0 and matched an empty body,
    # and reshape then failed with a bare ValueError.
    for shape in ((2**16,) * 4, (2**8,) * 8):
        with pytest.raises(DataError, match="truncated IDX data"):
            read_idx(_header(0x08, shape))


# --------------------------------------------------------------------------
# Inputs that declare large sizes, run under RLIMIT_AS in a child process
# --------------------------------------------------------------------------

_LIMITED = """
import resource, sys
def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
import numpy, xpnet, xpnet.datasets, xpnet.checkpoint, xpnet.layers
xpnet.Sequential.mlp([2, 2], backend="numpy")  # warm-up: lazy imports before the limit
limit = vm_size() + {headroom}
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
{body}
except xpnet.errors.XpnetError as exc:
    print("XPNET", type(exc).__name__, str(exc)[:300])
except BaseException as exc:
    print("OTHER", type(exc).__name__, str(exc)[:300])
else:
    print("LOADED")
"""


def _run_limited(body: str, headroom: int = 64 * MiB) -> str:
    code = _LIMITED.format(headroom=headroom, body=textwrap.indent(textwrap.dedent(body), "    "))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_CHILD_ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_a_small_gzip_holding_more_than_its_header_declares_stays_small(tmp_path):
    # 2 labels declared, 256 MiB of zeros after them (0.25 MiB compressed): the reader
    # stops keeping data at the declared length instead of inflating everything.
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(_header(0x08, (2,)) + b"\x01\x02")
        zeros = bytes(16 * MiB)
        for _ in range(16):
            f.write(zeros)
    assert path.stat().st_size < MiB
    out = _run_limited(f"xpnet.datasets.read_idx({str(path)!r})")
    assert out.startswith("XPNET DataError") and "oversized IDX data" in out, out


def _tiny_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.npz"
    xpnet.Sequential.mlp([3, 4, 2], backend="numpy", seed=0).save(path)
    return path


def _rewrite(path: Path, edit, members_last=None) -> Path:
    """A copy of checkpoint ``path`` with its JSON header and members passed through ``edit``.

    The checksum covers only the arrays, so editing the header keeps it valid.
    """
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(np.load(io.BytesIO(members["__xpnet__.npy"])).tobytes())
    edit(header, members)
    blob = io.BytesIO()
    np.save(blob, np.frombuffer(json.dumps(header).encode(), np.uint8))
    members["__xpnet__.npy"] = blob.getvalue()
    if members_last is not None:  # may replace the metadata member itself
        members_last(header, members)
    out = path.with_name("crafted.npz")
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out


def test_a_checkpoint_declaring_huge_layers_is_refused_without_allocating(tmp_path):
    # Issue 11 item 4: Dense(200000, 200000) over the arrays of a tiny model, checksum intact.
    def huge(header, members):
        for layer in header["architecture"]:
            for key in ("input_units", "output_units", "in_features", "out_features", "units"):
                if key in layer:
                    layer[key] = 200000

    crafted = _rewrite(_tiny_checkpoint(tmp_path), huge)
    out = _run_limited(f"xpnet.Sequential.load({str(crafted)!r}, backend='numpy')")
    assert out.startswith("XPNET CheckpointError"), out


def test_a_member_declaring_a_huge_shape_is_refused_without_allocating(tmp_path):
    # The .npy header of one member says (2**31,) floats; the member holds 8 bytes.
    def declare(header, members):
        name = "layer0.biases.npy"
        shape = str(np.load(io.BytesIO(members[name])).shape).encode()
        members[name] = members[name].replace(shape, b"(2147483648,)", 1)

    crafted = _rewrite(_tiny_checkpoint(tmp_path), declare)
    out = _run_limited(f"xpnet.Sequential.load({str(crafted)!r}, backend='numpy')")
    assert out.startswith("XPNET CheckpointError"), out


@pytest.mark.parametrize("field,value", [("model_config", 3), ("metadata", [1]),
                                         ("metadata", True)])
def test_non_dict_model_config_or_metadata_is_a_checkpoint_error(tmp_path, field, value):
    crafted = _rewrite(_tiny_checkpoint(tmp_path), lambda h, m: h.__setitem__(field, value))
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(crafted, backend="numpy")


@pytest.mark.parametrize("flag_offset,value,what", [
    (8, 99, "unsupported compression method"),
    (6, 1, "encrypted member"),
])
def test_unreadable_zip_features_are_a_checkpoint_error(tmp_path, flag_offset, value, what):
    path = _tiny_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")  # the last member's central-directory entry
    data[central + 2 + flag_offset] = value  # (its local header keeps the old value)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(path, backend="numpy")


def _replace_member(name: str, new):
    return lambda header, members: members.__setitem__(name, new(members[name]))


@pytest.mark.parametrize("name,new,what", [
    # NumPy hands back raw bytes for a member without the .npy magic.
    ("__xpnet__.npy", lambda blob: b"not an npy member", "no .npy magic"),
    # An unbalanced .npy header: NumPy's header parser lets tokenize.TokenError escape.
    ("layer0.biases.npy", lambda blob: blob.replace(b"(4,)", b"((4,", 1), "unbalanced header"),
])
def test_malformed_npy_members_are_a_checkpoint_error(tmp_path, name, new, what):
    crafted = _rewrite(_tiny_checkpoint(tmp_path), lambda h, m: None, _replace_member(name, new))
    with pytest.raises(CheckpointError):
        xpnet.Sequential.load(crafted, backend="numpy")
