"""Fuzz xpnet's file readers: IDX (``xpnet.datasets.read_idx``), checkpoints and safetensors.

``python -m benchmarks.fuzz --target idx --n 100000`` mutates real files (the
MNIST copy in ``data/mnist``, or ``$XPNET_DATA_DIR``; checkpoints saved here
from small models) and feeds every mutant to the reader. The contract checked:

* every input either loads or raises ``DataError`` / ``CheckpointError``
  (never ``IndexError``, ``struct.error``, ``zipfile.BadZipFile``,
  ``MemoryError``, ``UnicodeDecodeError``, ...);
* no input allocates more than a small multiple of its own size: the inputs
  run in a child process under ``resource.setrlimit(RLIMIT_AS)`` set to what
  the child uses after start-up plus ``--headroom-mib`` (default 256 MiB, a
  few hundred times the largest seed), so an unbounded allocation is a
  ``MemoryError`` and reported;
* no input hangs: every child runs under a timeout.

The mutations are seeded (input ``i`` of seed ``s`` is always the same
bytes), so a finding is reproduced with ``--only i``. They are byte-level
(bit flips, byte insertions and deletions, truncation, splices of two seeds,
"interesting" integers) and structural: IDX header fields (magic, type code,
number of dimensions, each dimension), gzip wrapping; for checkpoints the
JSON header fields (format, version, dtype, architecture sizes, params
shapes, checksum -- recomputed so the loader gets past it), the ``.npy``
header of each member (declared shape and dtype) and the member list. The
``safetensors`` target (``.safetensors`` checkpoints, xpnet's own reader) is
described in :mod:`benchmarks.fuzz_safetensors`.

It prints one JSON summary per target; findings (one line each, with the
input number and the mutation) go to stderr and, as files, to ``--out``.
The exit status is 1 when there was a finding. ``--engine atheris`` (``pip
install atheris``) runs coverage-guided libFuzzer instead, with the same
checks and the same structural mutators alongside libFuzzer's own; its inputs
are not numbered, so findings are reported by message (and their bytes are not
written to ``--out``). The default seeded mutator needs nothing beyond xpnet.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import importlib
import io
import json
import os
import random
import re
import resource
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
_INTERESTING_U32 = (0, 1, 2, 3, 28, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                    0xFFFFFFFE, 0xFFFFFFFF, 200000)
_CHUNK = 5000  # inputs per child process


# --------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------

def _mnist_dir() -> Path | None:
    for candidate in (os.environ.get("XPNET_DATA_DIR"), ROOT / "data" / "mnist",
                      ROOT.parent / "shared" / "datasets" / "mnist"):
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    return None


def _idx_bytes(arr, type_code: int) -> bytes:
    import numpy as np

    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    head = struct.pack(f">HBB{arr.ndim}I", 0, type_code, arr.ndim, *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=big[type_code]).tobytes()


def idx_seeds() -> list[bytes]:
    """Real MNIST slices (raw and gzip) plus one small file of every IDX type code."""
    import numpy as np

    from xpnet.datasets import read_idx

    seeds = []
    directory = _mnist_dir()
    if directory is not None:
        images = read_idx(directory / "t10k-images-idx3-ubyte.gz")[:8]
        labels = read_idx(directory / "t10k-labels-idx1-ubyte.gz")[:300]
        for raw in (_idx_bytes(images, 0x08), _idx_bytes(labels, 0x08)):
            seeds += [raw, gzip.compress(raw, mtime=0)]
    rng = np.random.default_rng(0)
    for code, shape in ((0x08, (3, 4)), (0x09, (5,)), (0x0B, (2, 3)), (0x0C, (2, 2, 2)),
                        (0x0D, (4,)), (0x0E, (1, 3))):
        arr = rng.integers(-100, 100, shape) if code < 0x0D else rng.standard_normal(shape)
        if code == 0x08:
            arr = np.abs(arr)
        seeds.append(_idx_bytes(arr, code))
    seeds.append(gzip.compress(seeds[-1], mtime=0))
    return seeds


def checkpoint_seeds() -> list[bytes]:
    """Checkpoints of small models, saved by ``Sequential.save``."""
    import xpnet

    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sizes, dtype, kw) in enumerate((
                ([4, 8, 3], "float32", {}),
                ([3, 5, 2], "float64", {"metrics": {"acc": 0.5}}),
                ([6, 4, 4, 2], "float32", {"training": {"epochs": 2, "lr": 0.1}}))):
            model = xpnet.Sequential.mlp(sizes, backend="numpy", dtype=dtype, seed=i)
            path = Path(tmp) / f"seed{i}.npz"
            model.save(path, **kw)
            seeds.append(path.read_bytes())
    return seeds


# --------------------------------------------------------------------------
# Byte-level mutations (shared by both targets)
# --------------------------------------------------------------------------

def _flip_bits(r: random.Random, b: bytearray, seeds) -> str:
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
    return "flip_bits"


def _set_bytes(r, b, seeds) -> str:
    for _ in range(r.randint(1, 4)):
        b[r.randrange(len(b))] = r.choice((0, 0xFF, 0x7F, 0x80, r.randrange(256)))
    return "set_bytes"


def _insert_bytes(r, b, seeds) -> str:
    i = r.randrange(len(b) + 1)
    b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 16)))
    return f"insert@{i}"


def _delete_bytes(r, b, seeds) -> str:
    i = r.randrange(len(b))
    del b[i:i + r.randint(1, 64)]
    return f"delete@{i}"


def _truncate(r, b, seeds) -> str:
    n = r.randrange(len(b))
    del b[n:]
    return f"truncate@{n}"


def _u32(r, b, seeds) -> str:
    i = r.randrange(max(1, len(b) - 3))
    b[i:i + 4] = struct.pack(r.choice((">I", "<I")), r.choice(_INTERESTING_U32))
    return f"u32@{i}"


def _splice(r, b, seeds) -> str:
    other = r.choice(seeds)
    i, j = r.randrange(len(b) + 1), r.randrange(len(other) + 1)
    b[i:] = other[j:]
    return f"splice@{i}"


_BYTE_MUTATIONS = (_flip_bits, _set_bytes, _insert_bytes, _delete_bytes, _truncate, _u32,
                   _splice)


def mutate_bytes(r: random.Random, data: bytes, seeds) -> tuple[bytes, str]:
    b = bytearray(data)
    done = []
    for _ in range(r.choice((1, 1, 2, 3))):
        if not b:  # an earlier truncation emptied it
            b.append(r.randrange(256))
        done.append(r.choice(_BYTE_MUTATIONS)(r, b, seeds))
    return bytes(b), "+".join(done)


# --------------------------------------------------------------------------
# IDX: structural mutations and the check
# --------------------------------------------------------------------------

def _mutate_idx_header(r: random.Random, raw: bytes) -> tuple[bytes, str]:
    b = bytearray(raw)
    if len(b) < 8:
        return raw, "short"
    field = r.choice(("magic", "type", "ndim", "dim", "dim", "alldims"))
    if field == "alldims":  # products that overflow 64 bits (2**16 ** 4 wraps to 0)
        n_dims, dim = r.choice(((4, 2**16), (8, 2**8), (3, 2**32 - 1), (255, 2)))
        b[3] = n_dims
        dims = [dim] * n_dims
        if r.random() < 0.3:  # empty, yet too large for NumPy to represent
            dims[r.randrange(n_dims)] = 0
        b[4:] = struct.pack(f">{n_dims}I", *dims) + bytes(r.choice((0, 1, 6)))
    elif field == "magic":
        b[r.randrange(2)] = r.randrange(1, 256)
    elif field == "type":
        b[2] = r.choice((0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFF))
    elif field == "ndim":
        b[3] = r.choice((0, 1, 2, 3, 4, 64, 255))
    else:
        k = r.randrange(max(1, min(b[3], (len(b) - 4) // 4)))
        old = struct.unpack(">I", b[4 + 4 * k:8 + 4 * k])[0]
        new = r.choice(_INTERESTING_U32 + (old + 1, max(old - 1, 0), old * 2, old // 2))
        b[4 + 4 * k:8 + 4 * k] = struct.pack(">I", new & 0xFFFFFFFF)
        field = f"dim{k}={new}"
    return bytes(b), f"header:{field}"


def mutate_idx(r: random.Random, seeds) -> tuple[bytes, str]:
    seed = r.choice(seeds)
    gz = seed[:2] == b"\x1f\x8b"
    raw = gzip.decompress(seed) if gz else seed
    if r.random() < 0.5:
        raw, how = _mutate_idx_header(r, raw)
    else:
        raw, how = mutate_bytes(r, raw, seeds)
    if gz and r.random() < 0.7:  # mutate inside the gzip: the reader must see the payload
        return gzip.compress(raw, compresslevel=1, mtime=0), "gz(" + how + ")"
    if gz:
        return mutate_bytes(r, seed, seeds)[0], "gzbytes"
    return raw, how


def check_idx(data: bytes, tmpdir: str) -> None:
    """Load ``data`` with ``read_idx``; raise AssertionError on a broken contract.

    Half the inputs go through a file and a required ``ndim``, as ``load_mnist`` reads.
    """
    from xpnet.datasets import read_idx
    from xpnet.errors import DataError

    try:
        if len(data) % 2:
            path = os.path.join(tmpdir, "mutant-idx-ubyte.gz")
            with open(path, "wb") as f:
                f.write(data)
            arr = read_idx(path, ndim=(1, 3)[len(data) % 4 == 1])
        else:
            arr = read_idx(data)
    except DataError:
        return
    header = 4 + 4 * arr.ndim
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert arr.nbytes == len(raw) - header, (arr.shape, arr.dtype, len(raw))


# --------------------------------------------------------------------------
# Checkpoints: structural mutations and the check
# --------------------------------------------------------------------------

def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return out.getvalue()


def _npy(arr) -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


def _header_of(members) -> dict:
    import numpy as np

    return json.loads(np.load(io.BytesIO(members["__xpnet__.npy"])).tobytes())


def _set_header(members, header) -> None:
    import numpy as np

    members["__xpnet__.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))


def _resign(members, header) -> None:
    """Recompute the checksum over the (possibly mutated) arrays, as the saver does."""
    import numpy as np

    from xpnet.checkpoint import _params_digest

    try:
        entries = [(p["name"], np.load(io.BytesIO(members[p["name"] + ".npy"])))
                   for p in header["params"]]
        header["sha256"] = _params_digest(entries)
    except Exception:  # a mutant the digest cannot cover: leave the old one
        pass


_BIG = (0, 1, 2, 200000, 2**31, 2**40, -1)


def _edit_json(r: random.Random, header: dict) -> str:
    choice = r.randrange(8)
    if choice == 0:
        key = r.choice(sorted(header))
        header[key] = r.choice((None, 1, "x", [], {}, -1, 2.5, True))
        return f"json:{key}"
    if choice == 1:
        key = r.choice(sorted(header))
        del header[key]
        return f"json:del {key}"
    if choice == 2:
        header["format_version"] = r.choice((0, 1, 2, -1, "1", True, 1.0))
        return "json:format_version"
    if choice == 3:
        header["dtype"] = r.choice(("float16", "int64", "float64", "bool", "complex128", ""))
        return "json:dtype"
    arch = header.get("architecture") or [{}]
    layer = r.choice(arch)
    if choice in (4, 5) and isinstance(layer, dict):
        key = r.choice(sorted(layer) or ["units"])
        layer[key] = r.choice(_BIG + ("Dense", "Nope", None, [3], 0.5))
        return f"json:layer {key}={layer[key]!r}"
    if choice == 6:
        params = header.get("params") or [{}]
        p = r.choice(params)
        if isinstance(p, dict):
            p["shape"] = r.choice(([r.choice(_BIG)], [r.choice(_BIG), r.choice(_BIG)], [], None))
            return f"json:params shape={p['shape']}"
    r.shuffle(arch)
    return "json:shuffle architecture"


def _edit_member(r: random.Random, members: dict) -> str:
    import numpy as np

    names = [n for n in members if n != "__xpnet__.npy"]
    name = r.choice(names or ["__xpnet__.npy"])
    kind = r.randrange(6)
    if kind == 4:  # no .npy magic: NumPy hands back raw bytes
        members[name] = r.choice((b"", b"PK", members[name][6:], b"\x93NUMPX" + members[name][6:]))
        return f"member:not npy {name}"
    if kind == 5:  # an unbalanced or unparsable .npy header dict
        blob = members[name]
        members[name] = blob.replace(r.choice((b"(", b")", b"{", b"'")),
                                     r.choice((b"((", b"", b"[", b"\\")), 1)
        return f"member:header syntax {name}"
    if kind == 0:
        del members[name]
        return f"member:del {name}"
    if kind == 1:
        members[name] = _npy(np.zeros(r.choice(((2,), (3, 3), (0,), (1, 200000))),
                                      dtype=r.choice(("float32", "float64", "int64", "uint8"))))
        return f"member:replace {name}"
    if kind == 2:  # the .npy header declares a shape the data does not have
        blob = members[name]
        shape = r.choice(((2**31,), (2**20, 2**20), (10**12,), (0,), (1, 1, 1)))
        members[name] = blob.replace(str(_npy_shape(blob)).encode(), str(shape).encode(), 1)
        return f"member:declare {name} {shape}"
    members[name + "x" if r.random() < 0.5 else "extra.npy"] = members[name]
    return f"member:add copy of {name}"


def _npy_shape(blob: bytes):
    import numpy as np

    try:
        return np.load(io.BytesIO(blob)).shape
    except Exception:
        return ()


def mutate_checkpoint(r: random.Random, seeds) -> tuple[bytes, str]:
    seed = r.choice(seeds)
    if r.random() < 0.45:
        return mutate_bytes(r, seed, seeds)
    members = _members(seed)
    header = _header_of(members)
    how = _edit_member(r, members) if r.random() < 0.35 else _edit_json(r, header)
    if r.random() < 0.8:
        _resign(members, header)
        how += "+resigned"
    _set_header(members, header)
    return _zip(members), how


def check_checkpoint(data: bytes, tmpdir: str) -> None:
    """Load ``data`` as a checkpoint file; raise AssertionError on a broken contract."""
    import xpnet
    from xpnet.errors import CheckpointError

    path = os.path.join(tmpdir, "mutant.npz")
    with open(path, "wb") as f:
        f.write(data)
    try:
        model = xpnet.Sequential.load(path, backend="numpy")
    except CheckpointError:
        return
    n_bytes = sum(getattr(layer, name).nbytes for layer in model.layers
                  for name in layer.param_names)
    assert n_bytes <= 2 * len(data), f"{n_bytes} bytes of parameters from a {len(data)}-byte file"


# --------------------------------------------------------------------------
# The child process: inputs [start, stop) under RLIMIT_AS
# --------------------------------------------------------------------------

def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _target(name: str) -> tuple:
    """``(seeds, mutate, check)`` of a target; safetensors' live in their own module."""
    if name == "safetensors":
        from benchmarks import fuzz_safetensors as st

        return st.safetensors_seeds, st.mutate_safetensors, st.check_safetensors
    if name == "idx":
        return idx_seeds, mutate_idx, check_idx
    return checkpoint_seeds, mutate_checkpoint, check_checkpoint


def _input(target: str, seed: int, i: int, seeds) -> tuple[bytes, str]:
    r = random.Random(f"{target}-{seed}-{i}")
    return _target(target)[1](r, seeds)


def _limit_address_space(headroom_mib: int) -> None:
    limit = _vm_size() + headroom_mib * MiB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _atheris_worker(args) -> int:
    """Coverage-guided: libFuzzer drives the same checks, mutating with our mutators too.

    Findings are recorded (one JSON line each) instead of stopping libFuzzer at
    the first one, so a run reports every class of failure it reaches.
    """
    import atheris

    with atheris.instrument_imports(include=["xpnet", "gzip", "zipfile", "numpy.lib"]):
        for module in ("xpnet.datasets", "xpnet.checkpoint", "xpnet.safetensors_io",
                       "xpnet.network"):
            importlib.import_module(module)  # first imported here, hence instrumented
    make_seeds, mutate, check_one = _target(args.target)
    seeds = make_seeds()
    tmpdir = tempfile.mkdtemp(prefix="xpnet-fuzz-")
    corpus = Path(tmpdir) / "corpus"
    corpus.mkdir()
    for k, s in enumerate(seeds):
        (corpus / f"seed{k}").write_bytes(s)
    check = functools.partial(check_one, tmpdir=tmpdir)
    for s in seeds:
        check(s)
    counts = {"done": 0, "ok": 0}

    runs = args.stop - args.start

    def one_input(data: bytes) -> None:
        counts["done"] += 1
        try:
            check(data)
            counts["ok"] += 1
        except BaseException as exc:  # noqa: BLE001 - every escape is a finding
            print(json.dumps({"i": f"atheris#{counts['done']}", "size": len(data),
                              "error": f"{type(exc).__name__}: {str(exc)[:300]}"}), flush=True)
        if counts["done"] % 1000 == 0 or counts["done"] >= runs:
            # libFuzzer exits the process when done: report progress as it goes.
            print(json.dumps(counts), flush=True)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        r = random.Random(seed)
        if r.random() < 0.5:
            return atheris.Mutate(data, max_size)
        try:  # structural mutators need a parseable parent (a gzip, a zip)
            mutant = mutate(r, [data])[0]
        except Exception:  # noqa: BLE001 - the parent is itself a broken mutant
            return atheris.Mutate(data, max_size)
        return mutant[:max_size]

    _limit_address_space(args.headroom_mib)
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-seed={args.seed + 1}",
                   "-max_len=65536", "-rss_limit_mb=0", "-print_final_stats=0",
                   str(corpus)], one_input, custom_mutator=mutator)
    atheris.Fuzz()  # does not return
    return 0


def _worker(args) -> int:
    if args.engine == "atheris":
        return _atheris_worker(args)
    make_seeds, _, check_one = _target(args.target)
    seeds = make_seeds()
    tmpdir = tempfile.mkdtemp(prefix="xpnet-fuzz-")
    check = functools.partial(check_one, tmpdir=tmpdir)
    for s in seeds:  # warm up: every import and lazy allocation happens before the limit
        check(s)
    _limit_address_space(args.headroom_mib)
    ok = 0
    for i in range(args.start, args.stop):
        data, how = _input(args.target, args.seed, i, seeds)
        try:
            check(data)
            ok += 1
        except BaseException as exc:  # noqa: BLE001 - every escape is a finding
            print(json.dumps({"i": i, "how": how, "size": len(data),
                              "error": f"{type(exc).__name__}: {str(exc)[:300]}"}), flush=True)
    print(json.dumps({"done": args.stop - args.start, "ok": ok}), flush=True)
    return 0


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------

def _run_chunk(args, start: int, stop: int) -> tuple[list[dict], int]:
    cmd = [sys.executable, "-m", "benchmarks.fuzz", "--worker", "--target", args.target,
           "--seed", str(args.seed), "--start", str(start), "--stop", str(stop),
           "--headroom-mib", str(args.headroom_mib), "--engine", args.engine]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, XPNET_BACKEND="numpy")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [{"i": f"{start}..{stop}", "error": f"timeout after {args.timeout} s"}], 0
    findings, checked = [], 0
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if "done" in rec:
            checked = max(checked, rec["done"])
        else:
            findings.append(rec)
    if proc.returncode != 0 or not checked:
        findings.append({"i": f"{start}..{stop}", "error":
                         f"child exited {proc.returncode}: {proc.stderr[-500:]}"})
    return findings, checked


def fuzz(args) -> dict:
    findings, checked = [], 0
    # One libFuzzer run keeps its corpus; the seeded mutator restarts cheaply per chunk.
    chunk = args.n if args.engine == "atheris" else _CHUNK
    for start in range(args.first, args.first + args.n, chunk):
        stop = min(start + chunk, args.first + args.n)
        found, done = _run_chunk(args, start, stop)
        findings += found
        checked += done
    if args.out and findings:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        seeds = _target(args.target)[0]()
        for f in findings:
            if isinstance(f["i"], int):
                data, _ = _input(args.target, args.seed, f["i"], seeds)
                digest = hashlib.sha256(data).hexdigest()[:12]
                (Path(args.out) / f"{args.target}-{f['i']}-{digest}.bin").write_bytes(data)
    kinds: dict[str, int] = {}
    examples: dict[str, dict] = {}  # the first finding of each distinct message (digits aside)
    for f in findings:
        kinds[f["error"].split(":")[0]] = kinds.get(f["error"].split(":")[0], 0) + 1
        examples.setdefault(re.sub(r"[0-9]+", "N", f["error"])[:120], f)
    return {"target": args.target, "seed": args.seed, "inputs": checked,
            "findings": len(findings), "by_error": kinds, "first": list(examples.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("idx", "checkpoint", "safetensors"), required=True)
    parser.add_argument("--n", type=int, default=100000, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="number of the first input")
    parser.add_argument("--only", type=int, help="run input ONLY alone (reproduce a finding)")
    parser.add_argument("--headroom-mib", type=int, default=256,
                        help="address space allowed above the child's start-up size")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child")
    parser.add_argument("--out", default=None, help="write finding inputs here")
    parser.add_argument("--engine", choices=("mutate", "atheris"), default="mutate",
                        help="the seeded mutator (default), or coverage-guided atheris "
                             "(pip install atheris) driving the same checks and mutators")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.only is not None:
        args.first, args.n = args.only, 1
    summary = fuzz(args)
    for f in summary["first"]:
        print(f"finding: {json.dumps(f)}", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k != "first"}))
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
