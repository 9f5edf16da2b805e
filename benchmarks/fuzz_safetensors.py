"""The ``safetensors`` target of :mod:`benchmarks.fuzz`: seeds, mutations and the check.

Seeds are ``.safetensors`` checkpoints of small models saved by
``Sequential.save``. Besides the byte-level mutations shared with the other
targets, the structural ones rewrite the file's parts and reassemble it: the
8-byte header length (lies about the size), each tensor entry (dtype, shape,
data offsets: huge, negative, reversed, overlapping, past the end; entries
deleted, renamed, duplicated), the ``__metadata__`` (foreign, non-string, the
xpnet JSON header edited as the checkpoint target edits it, with the digest
recomputed so the loader gets past it) and the data (truncated, extended).

The check: the file loads or raises ``CheckpointError``; what loads holds no
more parameter bytes than twice the file; and when the ``safetensors``
package is installed and also reads the file, every loaded parameter equals
that reference reader's tensor bit for bit (in xpnet's layout), so a silent
misread is a finding too.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile
from pathlib import Path

from benchmarks.fuzz import _BIG, _edit_json, mutate_bytes

_DTYPE_CODES = ("F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "x", None, 1)
_HUGE = (0, 1, 7, 8, 2**31, 2**32, 2**40, 2**63, 2**64, -1, -8)


def safetensors_seeds() -> list[bytes]:
    """Safetensors checkpoints of small models, saved by ``Sequential.save``."""
    import xpnet

    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sizes, dtype, kw) in enumerate((
                ([4, 8, 3], "float32", {}),
                ([3, 5, 2], "float64", {"metrics": {"acc": 0.5}}),
                ([6, 4, 4, 2], "float32", {"training": {"epochs": 2}}))):
            model = xpnet.Sequential.mlp(sizes, backend="numpy", dtype=dtype, seed=i)
            path = Path(tmp) / f"seed{i}.safetensors"
            model.save(path, **kw)
            seeds.append(path.read_bytes())
    return seeds


# --------------------------------------------------------------------------
# Structure: (header dict, data bytes) and back
# --------------------------------------------------------------------------

def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + payload


def _tensors(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"]


def _edit_entry(r: random.Random, header: dict) -> str:
    names = _tensors(header)
    if not names:
        return "entry:none"
    name = r.choice(names)
    entry = header[name]
    kind = r.randrange(7)
    if kind == 0:
        entry["dtype"] = r.choice(_DTYPE_CODES)
        return f"entry:{name} dtype={entry['dtype']!r}"
    if kind == 1:
        entry["shape"] = r.choice(([r.choice(_HUGE)], [r.choice(_BIG), r.choice(_BIG)], [],
                                   list(reversed(entry["shape"])), None, [1.5], [True]))
        return f"entry:{name} shape={entry['shape']!r}"
    if kind == 2:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = r.choice(([end, begin], [begin, r.choice(_HUGE)],
                                          [r.choice(_HUGE), end], [0, end - begin],
                                          [begin + 4, end + 4], [begin], None, [begin, end, 0]))
        return f"entry:{name} offsets={entry['data_offsets']!r}"
    if kind == 3:
        del header[name]
        return f"entry:del {name}"
    if kind == 4:
        header[name + "x" if r.random() < 0.5 else "9.weight"] = header.pop(name)
        return f"entry:rename {name}"
    if kind == 5:
        entry[r.choice(("extra", "dtype", "shape"))] = r.choice((None, [], {}, "F32"))
        return f"entry:{name} field"
    header[name] = r.choice((None, [], "F32", 3))
    return f"entry:{name} not an object"


def _resign(header: dict, payload: bytes) -> None:
    """Recompute the xpnet digest over the (possibly mutated) tensors, as the saver does."""
    import numpy as np

    from xpnet.checkpoint import _params_digest, torch_name
    from xpnet.safetensors_io import DTYPES

    try:
        meta = json.loads(header["__metadata__"]["xpnet"])
        entries = []
        for p in meta["params"]:
            stored, transposed = torch_name(p["name"])
            e = header[stored]
            arr = np.frombuffer(payload[e["data_offsets"][0]:e["data_offsets"][1]],
                                DTYPES[e["dtype"]]).reshape(e["shape"])
            entries.append((p["name"], np.ascontiguousarray(arr.T if transposed else arr)))
        meta["sha256"] = _params_digest(entries)
        header["__metadata__"]["xpnet"] = json.dumps(meta)
    except Exception:  # noqa: BLE001 - a mutant the digest cannot cover: keep the old one
        pass


def _edit_metadata(r: random.Random, header: dict) -> str:
    meta = header.setdefault("__metadata__", {})
    kind = r.randrange(5)
    if kind == 0:
        meta.pop("xpnet", None)
        return "meta:foreign (no xpnet entry)"
    if kind == 1:
        header["__metadata__"] = r.choice((None, [], {"xpnet": 1}, {"xpnet": "{"}, "x"))
        return "meta:malformed"
    if kind == 2:
        meta["xpnet"] = json.dumps(r.choice(([], 1, {"format": "other"}, "x")))
        return "meta:xpnet not a header"
    try:
        xpnet_header = json.loads(meta["xpnet"])
        how = _edit_json(r, xpnet_header)
        meta["xpnet"] = json.dumps(xpnet_header)
    except Exception:  # noqa: BLE001 - already broken by an earlier edit
        how = "json:unparsable"
    return f"meta:{how}"


def _edit_frame(r: random.Random, header: dict, payload: bytes) -> tuple[bytes, str]:
    """Lies about sizes: the header length, or data cut short or extended."""
    kind = r.randrange(3)
    if kind == 0:
        data = _join(header, payload)
        n = r.choice(_HUGE + (len(data), len(data) - 8, len(data) - 9))
        return struct.pack("<Q", n % 2**64) + data[8:], f"frame:length={n}"
    if kind == 1:
        cut = r.randrange(max(len(payload), 1))
        return _join(header, payload[:cut]), f"frame:data cut at {cut}"
    return _join(header, payload + bytes(r.choice((1, 4, 8, 1000)))), "frame:data extended"


def mutate_safetensors(r: random.Random, seeds) -> tuple[bytes, str]:
    seed = r.choice(seeds)
    if r.random() < 0.4:
        return mutate_bytes(r, seed, seeds)
    header, payload = _split(seed)
    choice = r.random()
    if choice < 0.2:
        return _edit_frame(r, header, payload)
    how = _edit_entry(r, header) if choice < 0.6 else _edit_metadata(r, header)
    if r.random() < 0.8:
        _resign(header, payload)
        how += "+resigned"
    return _join(header, payload), how


# --------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------

def _reference(path: str) -> dict | None:
    """The tensors as the ``safetensors`` package reads them (None: not installed or refused)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return None
    try:
        return load_file(path)
    except Exception:  # noqa: BLE001 - the reference refusing a mutant is not our finding
        return None


def check_safetensors(data: bytes, tmpdir: str) -> None:
    """Load ``data`` as a safetensors checkpoint; raise AssertionError on a broken contract."""
    import numpy as np

    import xpnet
    from xpnet.checkpoint import torch_name
    from xpnet.errors import CheckpointError

    path = os.path.join(tmpdir, "mutant.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    try:
        model = xpnet.Sequential.load(path, backend="numpy")
    except CheckpointError:
        return
    params = {f"layer{i}.{n}": getattr(layer, n) for i, layer in enumerate(model.layers)
              for n in layer.param_names}
    n_bytes = sum(p.nbytes for p in params.values())
    assert n_bytes <= 2 * len(data), f"{n_bytes} bytes of parameters from a {len(data)}-byte file"
    reference = _reference(path)
    if reference is None:
        return
    for name, value in params.items():
        stored, transposed = torch_name(name)
        want = reference[stored].T if transposed else reference[stored]
        same = want.dtype == value.dtype and want.shape == value.shape and \
            np.ascontiguousarray(want).tobytes() == np.ascontiguousarray(value).tobytes()
        assert same, \
            f"{name} differs from the safetensors package's {stored}"
