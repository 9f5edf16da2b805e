#!/usr/bin/env bash
# Issue 7: the one script to run on the GPU device machine (NVIDIA H200).
#
#   OUT=/some/dir bash ci/gpu.sh          # on the device: see ci/README.md
#   OUT=/tmp/gpuout XPNET_GPU_DRY_RUN=1 PYTHON=/path/to/python bash ci/gpu.sh   # CPU rehearsal
#
# Stages (each runs even if an earlier one failed; each rc is recorded):
#   install   array-api-compat/strict (+ any missing test/bench dependency) from
#             wheels/ with --no-index, then xpnet itself (editable, no deps)
#   env       nvidia-smi, python/numpy/cupy/torch/array-api versions, TF32 flags,
#             xpnet.available_backends()
#   pytest    the whole suite with XPNET_TEST_BACKENDS=numpy,cupy,torch,torch-cuda
#   bench     python -m benchmarks.mlp on the GPU (cupy, torch) at batch 32/256/4096
#   train     the 25-epoch seed run `xpnet train --backend cupy`, timed
#   evaluate  the saved CuPy model reloaded on numpy (and cupy, torch-cuda):
#             same predicted classes on the MNIST test set?
#   summary   stage table, test counts per backend, RESULTS snippet
#
# Outputs, all directly in $OUT (the device tool returns at most 8 files):
#   gpu.log  junit.xml  bench_gpu.json  model_cupy.npz  accuracy_cupy.png
#   summary.json  RESULTS_gpu.md
#
# Knobs (environment):
#   XPNET_GPU_DRY_RUN   1: no GPU stages (CPU backends instead); 0: force GPU;
#                       auto (default): GPU iff `nvidia-smi -L` lists one
#   XPNET_GPU_STAGES    comma list of stages to run (default: all), e.g. for a rerun
#   XPNET_GPU_BUDGET    seconds for the whole script (default 480)
#   XPNET_GPU_LIMITS    per-stage limits, e.g. "pytest=300,bench=200" (defaults below)
#   XPNET_GPU_MAXFAIL   pytest --maxfail (default 10; 1 = -x)
#   XPNET_GPU_TEST_BACKENDS   default numpy,cupy,torch,torch-cuda
#   XPNET_GPU_TRAIN_ARGS      extra args for `xpnet train` (dry run: --epochs 1)
#   XPNET_GPU_BENCH_ARGS      replaces the benchmark's arguments (--json/--markdown kept)
#   PYTHON (default python3), WHEELS_DIR (default <repo>/wheels)
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
OUT=${OUT:-$REPO/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
WHEELS=${WHEELS_DIR:-$REPO/wheels}
BUDGET=${XPNET_GPU_BUDGET:-480}
STAGES=${XPNET_GPU_STAGES:-install,env,pytest,bench,train,evaluate}
MAXFAIL=${XPNET_GPU_MAXFAIL:-10}
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu.XXXXXX")

# Install only from wheels/, whatever pip configuration the machine has.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIREMENT
export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
       PIP_ROOT_USER_ACTION=ignore
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# JAX is on the image and gets imported by available_backends(): keep it on the
# CPU and stop it from preallocating 75% of the GPU that CuPy and torch need.
export JAX_PLATFORMS=cpu JAX_ENABLE_X64=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# The working tree wins over anything installed (the editable install is a bonus).
export PYTHONPATH=$REPO:$TMPD${PYTHONPATH:+:$PYTHONPATH}

case "${XPNET_GPU_DRY_RUN:-auto}" in
    1|yes|true) DRY=1 ;;
    0|no|false) DRY=0 ;;
    *) if command -v nvidia-smi >/dev/null 2>&1 && timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
           DRY=0; else DRY=1; fi ;;
esac
if [ "$DRY" = 1 ]; then
    MODE="dry-run (CPU only: no CuPy/CUDA stage)"
    TRAIN_BACKEND=numpy            # what the seed run trains on
    TRAIN_ARGS=${XPNET_GPU_TRAIN_ARGS:---epochs 1}
    # shellcheck disable=SC2206
    BENCH_ARGS=(${XPNET_GPU_BENCH_ARGS:---backends numpy,torch --device cpu --batch-sizes 32,256,4096 --dtypes float32 --quick})
    EVAL_SPECS="numpy torch:cpu array_api_strict"
else
    MODE="GPU"
    TRAIN_BACKEND=cupy
    TRAIN_ARGS=${XPNET_GPU_TRAIN_ARGS:-}
    # float32 only: the GPU dtype, and float64 would double the stage's time.
    # shellcheck disable=SC2206
    BENCH_ARGS=(${XPNET_GPU_BENCH_ARGS:---backends cupy,torch --device cuda --batch-sizes 32,256,4096 --dtypes float32 --epochs 3})
    EVAL_SPECS="numpy cupy torch:cuda"
fi
TEST_BACKENDS=${XPNET_GPU_TEST_BACKENDS:-numpy,cupy,torch,torch-cuda}
MODEL=$OUT/model_$TRAIN_BACKEND.npz
PLOT=$OUT/accuracy_$TRAIN_BACKEND.png

# --------------------------------------------------------------------------
# Stage bookkeeping: a global budget, a per-stage limit and a reserve kept for
# the stages after it; each command runs under `tmo` (timeout to the stage's
# deadline, SIGINT first so pytest still writes its junit report).
# --------------------------------------------------------------------------
ALL_STAGES=(install env pytest bench train evaluate)
declare -A LIMIT=([install]=90 [env]=60 [pytest]=210 [bench]=150 [train]=120 [evaluate]=60)
declare -A RESERVE=([install]=15 [env]=10 [pytest]=60 [bench]=60 [train]=70 [evaluate]=25)
# XPNET_GPU_LIMITS="pytest=300,bench=200" overrides limits (seconds), e.g. for a rerun.
for kv in ${XPNET_GPU_LIMITS:+${XPNET_GPU_LIMITS//,/ }}; do LIMIT[${kv%%=*}]=${kv#*=}; done
declare -A RC=() SECS=()
T0=$(date +%s)
STAGE_DEADLINE=$T0

wanted() { [[ ",$STAGES," == *",$1,"* ]]; }

tmo() {  # tmo CMD...: run CMD with what is left of the current stage's time
    local left=$(( STAGE_DEADLINE - $(date +%s) ))
    if (( left < 3 )); then echo "!! no time left in this stage for: $*"; return 124; fi
    timeout -s INT -k 15 "$left" "$@"
    local rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "!! timed out after the stage limit: $*"; fi
    return "$rc"
}

run_stage() {  # run_stage NAME: calls stage_NAME and records its rc and duration
    local name=$1 now later=0 s deadline
    if ! wanted "$name"; then RC[$name]=skipped; SECS[$name]=0; return; fi
    now=$(date +%s)
    local seen=0
    for s in "${ALL_STAGES[@]}"; do   # reserve time for the wanted stages after this one
        if [ "$seen" = 1 ] && wanted "$s"; then later=$(( later + RESERVE[$s] )); fi
        [ "$s" = "$name" ] && seen=1
    done
    deadline=$(( T0 + BUDGET - later ))
    (( now + LIMIT[$name] < deadline )) && deadline=$(( now + LIMIT[$name] ))
    STAGE_DEADLINE=$deadline
    echo
    echo "==================== stage $name: up to $(( deadline - now ))s (t=$(( now - T0 ))s) ===================="
    if (( deadline - now < 5 )); then
        echo "!! stage $name skipped: the time budget (${BUDGET}s) is spent"
        RC[$name]=124; SECS[$name]=0; return
    fi
    "stage_$name"
    RC[$name]=$?
    SECS[$name]=$(( $(date +%s) - now ))
    echo "---- stage $name: rc=${RC[$name]} in ${SECS[$name]}s"
}

# --------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------
stage_install() {
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "no wheels in $WHEELS: run ci/gpu_wheels.sh where PyPI is reachable and carry wheels/"
        return 3
    fi
    local rc=0 need
    pip_wheels() {  # into the interpreter's site-packages; if that fails, a --target dir
        tmo "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps \
            --no-cache-dir --upgrade "$@" && return 0
        echo "   retrying with --target $TMPD/site (then on PYTHONPATH)"
        tmo "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps \
            --no-cache-dir --upgrade --target "$TMPD/site" "$@" || return 1
        case ":$PYTHONPATH:" in *":$TMPD/site:"*) ;; *) export PYTHONPATH=$REPO:$TMPD/site:$PYTHONPATH ;; esac
    }
    echo "+ required from wheels/: array-api-compat array-api-strict"
    pip_wheels array-api-compat array-api-strict || rc=1
    # Fallbacks: only what the image lacks (or has too old); pairs travel together.
    need=$(tmo "$PY" "$TMPD/need.py" pytest:8 hypothesis:6.100 tqdm:4.60 \
                                     threadpoolctl:3 psutil:5 matplotlib:3.7) || rc=1
    echo "$need" | grep -v '^NEED:'
    need=$(echo "$need" | sed -n 's/^NEED://p')
    need=${need/pytest/pytest pluggy iniconfig}
    need=${need/hypothesis/hypothesis sortedcontainers}
    need=${need/matplotlib/}           # not carried: the seed run then skips --plot
    if [ -n "${need// /}" ]; then
        echo "+ fallbacks from wheels/: $need"
        # shellcheck disable=SC2086
        pip_wheels $need || rc=1
    fi
    echo "+ xpnet (editable, no deps, no build isolation)"
    if ! tmo "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO" \
            > "$TMPD/editable.txt" 2>&1; then
        echo "   editable install failed (non-fatal: PYTHONPATH=$REPO is used instead):"
        grep -E 'Error|ERROR' "$TMPD/editable.txt" | tail -1 | sed 's/^/   /'
    fi
    tmo "$PY" -c "import array_api_compat, array_api_strict, xpnet; print('imports ok: xpnet', xpnet.__version__, 'from', xpnet.__file__)" || rc=1
    return $rc
}

stage_env() {
    local rc=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        tmo nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv || rc=1
        tmo nvidia-smi -L
    else
        echo "nvidia-smi: not found"
        [ "$DRY" = 1 ] || rc=1
    fi
    echo "+ $PY ($(command -v "$PY"))"
    tmo "$PY" "$TMPD/env.py" "$TMPD/env.json" "$DRY" || rc=1
    return $rc
}

stage_pytest() {
    # Dry run: tests/test_gpu.py compares torch-on-CPU with numpy as a stand-in GPU.
    local standin=""
    [ "$DRY" = 1 ] && standin=torch
    echo "+ XPNET_TEST_BACKENDS=$TEST_BACKENDS $PY -m pytest tests -q --maxfail=$MAXFAIL"
    XPNET_TEST_GPU_STANDIN=$standin XPNET_TEST_BACKENDS=$TEST_BACKENDS tmo "$PY" -m pytest tests -q -p xpnet_gpu_plugin \
        --maxfail="$MAXFAIL" --durations=15 -p no:cacheprovider -rfE \
        --junitxml "$OUT/junit.xml" -o junit_suite_name="xpnet-$TRAIN_BACKEND"
}

stage_bench() {
    if [ ! -f "$REPO/benchmarks/mlp.py" ]; then echo "benchmarks/mlp.py does not exist"; return 2; fi
    echo "+ $PY -m benchmarks.mlp ${BENCH_ARGS[*]} --json $OUT/bench_gpu.json --markdown"
    tmo "$PY" -m benchmarks.mlp "${BENCH_ARGS[@]}" --json "$OUT/bench_gpu.json" --markdown \
        | tee "$TMPD/bench.md"
}

stage_train() {
    local plot=(--plot "$PLOT") t1 t2 rc wall
    if ! "$PY" -c "import matplotlib" 2>/dev/null; then
        echo "matplotlib missing: seed run without --plot"; plot=()
    fi
    # shellcheck disable=SC2086
    echo "+ xpnet train --backend $TRAIN_BACKEND ${plot[*]} --save $MODEL --quiet $TRAIN_ARGS"
    t1=$(date +%s.%N)
    # shellcheck disable=SC2086
    tmo "$PY" -m xpnet train --backend "$TRAIN_BACKEND" "${plot[@]}" --save "$MODEL" \
        --quiet $TRAIN_ARGS \
        | tee "$TMPD/train.txt"
    rc=$?
    t2=$(date +%s.%N)
    wall=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
    echo "seed run wall time: $wall s (rc=$rc)" | tee -a "$TMPD/train.txt"
    echo "{\"wall_s\": $wall, \"rc\": $rc, \"backend\": \"$TRAIN_BACKEND\", \"args\": \"${TRAIN_ARGS//\"/}\"}" > "$TMPD/train.json"
    return $rc
}

stage_evaluate() {
    if [ ! -f "$MODEL" ]; then echo "no saved model $MODEL (train stage failed?)"; return 2; fi
    local rc=0
    echo "+ xpnet evaluate $MODEL --backend numpy"
    tmo "$PY" -m xpnet evaluate "$MODEL" --backend numpy --quiet || rc=1
    echo "+ predictions of the $TRAIN_BACKEND-trained model on: $EVAL_SPECS"
    # shellcheck disable=SC2086
    tmo "$PY" "$TMPD/parity.py" "$MODEL" "$TMPD/parity.json" $EVAL_SPECS || rc=1
    return $rc
}

# --------------------------------------------------------------------------
# Helper programs (written to $TMPD, which is on PYTHONPATH)
# --------------------------------------------------------------------------
write_helpers() {
cat > "$TMPD/xpnet_gpu_plugin.py" <<'EOF'
"""pytest plugin loaded by ci/gpu.sh: no hypothesis deadline on the GPU, where
the first call of a CuPy kernel compiles it (NVRTC) and can take a second."""
try:
    from hypothesis import settings
except ImportError:  # pragma: no cover
    pass
else:
    settings.register_profile("xpnet-gpu", deadline=None, print_blob=True)
    settings.load_profile("xpnet-gpu")
EOF

cat > "$TMPD/need.py" <<'EOF'
"""Print NEED: the distributions (name:min_version args) missing or too old."""
import importlib.metadata as md
import sys

def key(v):
    parts = []
    for p in v.split("+")[0].split("."):
        digits = "".join(c for c in p if c.isdigit()) if p[:1].isdigit() else ""
        parts.append(int(digits) if digits else 0)
    return tuple(parts)

need = []
for arg in sys.argv[1:]:
    name, low = arg.split(":")
    try:
        v = md.version(name)
    except md.PackageNotFoundError:
        print(f"  {name}: not installed (need >= {low})")
        need.append(name)
        continue
    ok = key(v) >= key(low)
    print(f"  {name} {v}: {'ok, from the image' if ok else f'too old (need >= {low})'}")
    if not ok:
        need.append(name)
print("NEED:" + " ".join(need))
EOF

cat > "$TMPD/env.py" <<'EOF'
"""Versions, devices and xpnet.available_backends(); JSON copy to argv[1]."""
import importlib.metadata as md
import json
import platform
import sys

info = {"python": sys.version.split()[0], "executable": sys.executable,
        "platform": platform.platform(), "dry_run": sys.argv[2] == "1"}
for dist in ("numpy", "cupy-cuda13x", "cupy-cuda12x", "torch", "jax", "array-api-compat",
             "array-api-strict", "pytest", "hypothesis", "matplotlib", "xpnet"):
    try:
        info[dist] = md.version(dist)
    except md.PackageNotFoundError:
        pass
try:
    import cupy
    info["cupy"] = cupy.__version__
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    props = cupy.cuda.runtime.getDeviceProperties(0)
    info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    info["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
    import os
    info["CUPY_TF32"] = os.environ.get("CUPY_TF32", "unset (TF32 off)")
except Exception as exc:  # noqa: BLE001 - report, never fail here
    info["cupy_error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    info["torch_cuda_build"] = torch.version.cuda
    info["torch_cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["torch_gpu"] = torch.cuda.get_device_name(0)
        info["torch_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        info["torch_float32_matmul_precision"] = torch.get_float32_matmul_precision()
except Exception as exc:  # noqa: BLE001
    info["torch_error"] = f"{type(exc).__name__}: {exc}"

import xpnet

info["available_backends"] = xpnet.available_backends()
try:
    info["available_backends"]["torch-cuda"] = repr(xpnet.get_backend("torch", device="cuda"))
except Exception as exc:  # noqa: BLE001
    info["available_backends"]["torch-cuda"] = f"{type(exc).__name__}: {exc}"
for k, v in info.items():
    if k != "available_backends":
        print(f"  {k:<32} {v}")
print("  xpnet.available_backends():")
for k, v in info["available_backends"].items():
    print(f"    {k:<18} {v}")
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=1, default=str)
EOF

cat > "$TMPD/parity.py" <<'EOF'
"""Reload a saved model on several backends; compare predicted classes with numpy.

usage: parity.py MODEL.npz OUT.json SPEC...   (SPEC: numpy, cupy, torch:cuda, ...)
The reference is the first SPEC (numpy). A class that differs is tolerated only
at a near tie (top-2 logit margin below 1e-4 of the logit scale), and reported.
"""
import gzip
import json
import pathlib
import sys
import time

import numpy as np

import xpnet

model_path, out_json, specs = sys.argv[1], sys.argv[2], sys.argv[3:]


def load_test_set():
    try:  # the project's own loader (the tutorial's split; the test set is last)
        from xpnet.datasets import load_mnist
        *_, X, y = load_mnist(dtype="float64", download=False, progress=False)
        return np.asarray(X), np.asarray(y, dtype=np.int64)
    except Exception as exc:  # noqa: BLE001 - fall back to the raw IDX files
        print(f"  xpnet.datasets.load_mnist failed ({type(exc).__name__}: {exc}); reading data/mnist")
    root = pathlib.Path("data/mnist")
    with gzip.open(root / "t10k-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return X.astype(np.float64) / 255.0, y.astype(np.int64)


X, y = load_test_set()
res = {"model": model_path, "n_test": int(len(y)), "backends": {}}
logits = {}
for spec in specs:
    name, _, dev = spec.partition(":")
    entry = res["backends"][spec] = {}
    try:
        model = xpnet.Sequential.load(model_path, backend=name, device=dev or None)
        be = model.backend
        Xd = be.asarray(X.astype(np.float64))
        model.predict_logits(Xd[:8, ...])  # warm-up (kernel compilation)
        be.synchronize()
        t = time.perf_counter()
        z = be.to_numpy(model.predict_logits(Xd)).astype(np.float64)
        entry["predict_s"] = round(time.perf_counter() - t, 4)
        entry["backend"] = repr(be)
        entry["accuracy"] = float((z.argmax(1) == y).mean())
        logits[spec] = z
    except Exception as exc:  # noqa: BLE001 - report and go on
        entry["error"] = f"{type(exc).__name__}: {exc}"
ok = len(logits) == len(specs)
ref = specs[0]
if ref in logits:
    zr = logits[ref]
    pr = zr.argmax(1)
    top2 = np.sort(zr, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    scale = np.abs(zr).max()
    for spec, z in logits.items():
        if spec == ref:
            continue
        p = z.argmax(1)
        diff = np.flatnonzero(p != pr)
        near_tie = margin[diff] <= 1e-4 * scale
        e = res["backends"][spec]
        e["class_mismatches_vs_" + ref] = int(len(diff))
        e["mismatches_not_near_tie"] = int((~near_tie).sum())
        e["max_abs_logit_diff"] = float(np.abs(z - zr).max())
        e["max_rel_logit_diff"] = float(np.abs(z - zr).max() / scale)
        if (~near_tie).any():
            ok = False
res["same_predictions"] = bool(ok)
for spec, e in res["backends"].items():
    print(f"  {spec:<18} " + ", ".join(f"{k}={v}" for k, v in e.items()))
print(f"  same predicted classes on every backend: {ok}")
pathlib.Path(out_json).write_text(json.dumps(res, indent=1))
sys.exit(0 if ok else 1)
EOF

cat > "$TMPD/summary.py" <<'EOF'
"""Merge everything into summary.json and RESULTS_gpu.md; print the stage table."""
import json
import os
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

out, tmpd = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
stages = json.loads(sys.argv[3])
dry = sys.argv[4] == "1"
test_ids = [s for s in sys.argv[5].split(",") if s]


def load(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except Exception:  # noqa: BLE001
        return None


bad = False
summary = {"mode": "dry-run" if dry else "gpu", "stages": stages,
           "env": load(tmpd / "env.json"), "train": load(tmpd / "train.json"),
           "parity": load(tmpd / "parity.json")}

# Test counts, in total and per backend id found in the test ids ("[cupy-float32]").
junit = out / "junit.xml"
if junit.exists():
    try:
        root = ET.parse(junit).getroot()
        ids = sorted(set(test_ids) | {"numpy", "array_api_strict-device1", "array_api_strict",
                                       "torch-cuda", "torch", "jax", "cupy"}, key=len, reverse=True)
        counts = {"total": {"passed": 0, "failed": 0, "skipped": 0}}
        reasons = {}
        for case in root.iter("testcase"):
            kinds = {c.tag for c in case}
            outcome = ("failed" if kinds & {"failure", "error"} else
                       "skipped" if "skipped" in kinds else "passed")
            counts["total"][outcome] += 1
            m = re.search(r"\[(.*)\]$", case.get("name", ""))
            params = m.group(1) if m else ""
            for bid in ids:
                pat = r"(^|-)" + re.escape(bid) + r"(?=-|$)"
                if re.search(pat, params):
                    counts.setdefault(bid, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
                    params = re.sub(pat, r"\1#", params)
                    if outcome == "skipped" and bid in ("cupy", "torch-cuda"):
                        msg = next(c.get("message", "") for c in case if c.tag == "skipped")
                        reasons.setdefault(bid, {}).setdefault(msg[:300], 0)
                        reasons[bid][msg[:300]] += 1
        summary["tests"] = counts
        summary["gpu_skip_reasons"] = reasons
    except ET.ParseError as exc:
        summary["tests"] = {"error": str(exc)}

# On the GPU a green suite must have run GPU tests: skipped-only would be green too.
if not dry and "tests" in summary and "total" in summary["tests"]:
    gpu_ran = {b: summary["tests"].get(b, {}).get("passed", 0) for b in ("cupy", "torch-cuda")}
    summary["gpu_tests_passed"] = gpu_ran
    if str(stages.get("pytest", {}).get("rc")) == "0" and min(gpu_ran.values()) == 0:
        stages["pytest"]["rc"] = "0 but no cupy/torch-cuda test passed"
        bad = True

# A markdown block to paste into benchmarks/RESULTS.md.
env = summary["env"] or {}
lines = [f"## GPU run ({'DRY RUN, CPU only' if dry else env.get('gpu', '?')})", "",
         f"- GPU: {env.get('gpu', 'none')} ({env.get('gpu_memory_gib', '?')} GiB); "
         f"CUDA runtime {env.get('cuda_runtime', '?')}, driver {env.get('cuda_driver', '?')}",
         f"- Python {env.get('python', '?')}, numpy {env.get('numpy', '?')}, "
         f"cupy {env.get('cupy', 'n/a')}, torch {env.get('torch', 'n/a')} "
         f"(CUDA build {env.get('torch_cuda_build', 'n/a')}), "
         f"array-api-compat {env.get('array-api-compat', '?')}, xpnet {env.get('xpnet', '?')}",
         f"- TF32: CUPY_TF32={env.get('CUPY_TF32', '?')}, torch matmul allow_tf32="
         f"{env.get('torch_matmul_allow_tf32', '?')}", ""]
t = summary.get("tests", {}).get("total")
if t:
    per = ", ".join(f"{b}: {c['passed']} passed/{c['failed']} failed/{c['skipped']} skipped"
                    for b, c in summary["tests"].items() if b != "total")
    lines += [f"- test suite: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped ({per})", ""]
bench_md = tmpd / "bench.md"
if bench_md.exists() and bench_md.read_text().strip():
    bench = "\n".join("#" + l if l.startswith("### ") else l   # nest its headings
                      for l in bench_md.read_text().strip().splitlines())
    lines += ["### Per-epoch time (benchmarks.mlp)", "", bench, ""]
tr = summary["train"]
if tr:
    lines += [f"### Seed run (25 epochs unless noted: `xpnet train --backend {tr['backend']} {tr['args']}`)",
              "", f"- wall time: {tr['wall_s']:.1f} s (rc {tr['rc']})"]
    txt = tmpd / "train.txt"
    if txt.exists():
        tail = [l for l in txt.read_text().splitlines() if l.strip()][-4:]
        lines += ["- last lines of its output:", "", "```", *tail, "```"]
    lines.append("")
par = summary["parity"]
if par:
    lines += ["### Saved model reloaded on other backends (MNIST test set)", "",
              "| backend | accuracy | class mismatches vs numpy | max rel. logit diff |",
              "| --- | --- | --- | --- |"]
    for spec, e in par["backends"].items():
        if "error" in e:
            lines.append(f"| {spec} | error: {e['error'][:80]} | | |")
        else:
            lines.append(f"| {spec} | {e['accuracy']:.4f} | "
                         f"{e.get('class_mismatches_vs_numpy', '-')} | {e.get('max_rel_logit_diff', '-')} |")
    lines.append("")
(out / "RESULTS_gpu.md").write_text("\n".join(lines))
(out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

print("\n==================== summary ====================")
print(f"mode: {summary['mode']}   GPU: {env.get('gpu', 'none')}")
for name, st in stages.items():
    print(f"  {name:<9} rc={st['rc']!s:<8} {st['seconds']:>4}s")
if t:
    print(f"  tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")
    for b, c in summary["tests"].items():
        if b != "total":
            print(f"    {b:<26} {c['passed']:>5} passed {c['failed']:>4} failed {c['skipped']:>5} skipped")
for bid, msgs in summary.get("gpu_skip_reasons", {}).items():
    for msg, n in sorted(msgs.items(), key=lambda kv: -kv[1])[:3]:
        print(f"    {bid} skipped x{n}: {msg[:200]}")
if par:
    print(f"  same predictions on {', '.join(par['backends'])}: {par['same_predictions']}")
files = sorted(p for p in out.rglob("*") if p.is_file())
print(f"  $OUT holds {len(files)} file(s): " + ", ".join(
    f"{p.relative_to(out)} ({p.stat().st_size / 1e6:.2f} MB)" for p in files))
if len(files) > 8 or any(p.stat().st_size > 16 * 2**20 for p in files) or \
        any(len(p.relative_to(out).parts) > 3 for p in files):
    print("  !! over the device tool's limits (8 files, 16 MiB each, 2 folders deep)")
sys.exit(1 if bad else 0)
EOF
}

# --------------------------------------------------------------------------
main() {
    write_helpers
    echo "xpnet GPU check (issue 7) -- mode: $MODE; budget ${BUDGET}s; stages: $STAGES"
    echo "repo $REPO; OUT=$OUT; python $PY; wheels $WHEELS; $(date -u +%FT%TZ)"
    for s in "${ALL_STAGES[@]}"; do run_stage "$s"; done
    local js="{" sep="" fail=0 s
    for s in "${ALL_STAGES[@]}"; do
        js+="$sep\"$s\": {\"rc\": \"${RC[$s]}\", \"seconds\": ${SECS[$s]}}"; sep=", "
        case "${RC[$s]}" in 0|skipped) ;; *) fail=1 ;; esac
    done
    js+="}"
    "$PY" "$TMPD/summary.py" "$OUT" "$TMPD" "$js" "$DRY" "$TEST_BACKENDS" || fail=1
    echo "total: $(( $(date +%s) - T0 ))s; overall: $([ $fail = 0 ] && echo OK || echo FAILED)"
    return $fail
}

# In braces: bash reads the whole block before running it, so the file may
# change underneath (a checkout, an editor) without breaking the run.
{
    main 2>&1 | tee "$OUT/gpu.log"
    rc=${PIPESTATUS[0]}
    rm -rf "$TMPD"
    exit "$rc"
}
