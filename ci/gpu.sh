#!/usr/bin/env bash
# Issue 7's GPU check in one call on the device machine; ci/README.md has the call,
# the settings (XPNET_GPU_* environment variables) and the CPU rehearsal:
#   OUT=/tmp/gpuout XPNET_GPU_DRY_RUN=1 PYTHON=... bash ci/gpu.sh
# Orchestration only: the programs are ci/gpu/*.py and the package's own
# (pytest, benchmarks.mlp, xpnet train/evaluate). Each stage runs even if an
# earlier one failed, and its rc is recorded:
#   install   array-api-compat/strict (+ what the image lacks) from wheels/ with
#             --no-index, then xpnet itself (editable, no deps)
#   env       nvidia-smi; versions, TF32 flags, xpnet.available_backends()
#   pytest    the suite with XPNET_TEST_BACKENDS=numpy,cupy,torch,torch-cuda
#   bench     python -m benchmarks.mlp on cupy and torch-cuda at batch 32/256/4096
#   train     the 25-epoch seed run `xpnet train --backend cupy`, timed
#   evaluate  the saved model reloaded on numpy, cupy, torch:cuda: same classes?
# then ci/gpu/report.py writes summary.json and RESULTS_gpu.md. All outputs lie
# flat in $OUT (the device tool returns at most 8 files).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
HELPERS=$REPO/ci/gpu
OUT=${OUT:-$REPO/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
WHEELS=${WHEELS_DIR:-$REPO/wheels}
BUDGET=${XPNET_GPU_BUDGET:-480}
STAGES=${XPNET_GPU_STAGES:-install,env,pytest,bench,train,evaluate}
MAXFAIL=${XPNET_GPU_MAXFAIL:-10}
TEST_BACKENDS=${XPNET_GPU_TEST_BACKENDS:-numpy,cupy,torch,torch-cuda}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu.XXXXXX")   # the stages' intermediate files

# Install only from wheels/, whatever pip configuration the machine has.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIREMENT
export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
       PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# available_backends() imports JAX: keep it on the CPU, without preallocating
# 75% of the GPU that CuPy and torch need.
export JAX_PLATFORMS=cpu JAX_ENABLE_X64=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# The working tree wins over anything installed (the editable install is a bonus).
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

case "${XPNET_GPU_DRY_RUN:-auto}" in
    1|yes|true) DRY=1 ;;
    0|no|false) DRY=0 ;;
    *) DRY=1; timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU' && DRY=0 ;;
esac
if [ "$DRY" = 1 ]; then
    MODE="dry-run (CPU only: no CuPy/CUDA stage)"; TRAIN_BACKEND=numpy
    TRAIN_ARGS=${XPNET_GPU_TRAIN_ARGS:---epochs 1}
    BENCH_ARGS=${XPNET_GPU_BENCH_ARGS:---backends numpy,torch --device cpu --batch-sizes 32,256,4096 --dtypes float32 --quick}
    EVAL_SPECS="numpy torch:cpu array_api_strict"
else  # float32 only: the GPU dtype; float64 would double the bench stage's time
    MODE="GPU"; TRAIN_BACKEND=cupy
    TRAIN_ARGS=${XPNET_GPU_TRAIN_ARGS:-}
    BENCH_ARGS=${XPNET_GPU_BENCH_ARGS:---backends cupy,torch --device cuda --batch-sizes 32,256,4096 --dtypes float32 --epochs 3}
    EVAL_SPECS="numpy cupy torch:cuda"
fi
MODEL=$OUT/model_$TRAIN_BACKEND.npz

# Time: a global budget; each stage gets its limit, less the reserve kept for
# the wanted stages after it. Commands run under `tmo`: timeout at the stage's
# deadline, SIGINT first so that pytest still writes its junit report.
ALL_STAGES=(install env pytest bench train evaluate)
declare -A LIMIT=([install]=90 [env]=60 [pytest]=210 [bench]=150 [train]=120 [evaluate]=60)
declare -A RESERVE=([install]=15 [env]=10 [pytest]=60 [bench]=60 [train]=70 [evaluate]=25)
for kv in ${XPNET_GPU_LIMITS:+${XPNET_GPU_LIMITS//,/ }}; do LIMIT[${kv%%=*}]=${kv#*=}; done
declare -A RC=() SECS=()
T0=$(date +%s)
STAGE_DEADLINE=$T0

wanted() { [[ ",$STAGES," == *",$1,"* ]]; }

tmo() {  # tmo CMD...: run CMD with what is left of the current stage's time
    local left=$(( STAGE_DEADLINE - $(date +%s) )) rc
    if (( left < 3 )); then echo "!! no time left in this stage for: $*"; return 124; fi
    timeout -s INT -k 15 "$left" "$@"; rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "!! timed out after the stage limit: $*"; fi
    return "$rc"
}

stage_deadline() {  # stage_deadline NAME: now + its limit, or earlier to keep the reserves
    local name=$1 later=0 seen=0 s deadline
    for s in "${ALL_STAGES[@]}"; do
        if [ "$seen" = 1 ] && wanted "$s"; then later=$(( later + RESERVE[$s] )); fi
        [ "$s" = "$name" ] && seen=1
    done
    deadline=$(( T0 + BUDGET - later )); s=$(( $(date +%s) + LIMIT[$name] ))
    echo $(( s < deadline ? s : deadline ))
}

run_stage() {  # run_stage NAME: calls stage_NAME, records its rc and duration
    local name=$1 now
    if ! wanted "$name"; then RC[$name]=skipped; SECS[$name]=0; return; fi
    now=$(date +%s)
    STAGE_DEADLINE=$(stage_deadline "$name")
    printf '\n==================== stage %s: up to %ss (t=%ss) ====================\n' \
        "$name" $(( STAGE_DEADLINE - now )) $(( now - T0 ))
    if (( STAGE_DEADLINE - now < 5 )); then
        echo "!! stage $name skipped: the time budget (${BUDGET}s) is spent"
        RC[$name]=124; SECS[$name]=0; return
    fi
    "stage_$name"; RC[$name]=$?
    SECS[$name]=$(( $(date +%s) - now ))
    echo "---- stage $name: rc=${RC[$name]} in ${SECS[$name]}s"
}

pip_wheels() {  # into site-packages; if that is not writable, into $WORK/site on PYTHONPATH
    local pip=("$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-cache-dir --upgrade)
    tmo "${pip[@]}" "$@" && return 0
    echo "   retrying with --target $WORK/site (then on PYTHONPATH)"
    tmo "${pip[@]}" --target "$WORK/site" "$@" || return 1
    [[ ":$PYTHONPATH:" == *":$WORK/site:"* ]] || export PYTHONPATH=$REPO:$WORK/site:$PYTHONPATH
}

stage_install() {
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run ci/gpu_wheels.sh where PyPI is reachable, carry wheels/"; return 3; }
    local rc=0 need
    echo "+ required from wheels/: array-api-compat array-api-strict"
    pip_wheels array-api-compat array-api-strict || rc=1
    # Fallbacks: only what the image lacks or has too old.
    need=$(tmo "$PY" "$HELPERS/missing_wheels.py" pytest:8 hypothesis:6.100 tqdm:4.60 \
           threadpoolctl:3 psutil:5 matplotlib:3.7) || rc=1
    echo "$need" | grep -v '^NEED:'
    need=$(echo "$need" | sed -n 's/^NEED: *//p')
    # shellcheck disable=SC2086  # one name per word
    [ -z "$need" ] || { echo "+ fallbacks from wheels/: $need"; pip_wheels $need || rc=1; }
    echo "+ xpnet (editable, no deps, no build isolation)"
    if ! tmo "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO" \
            > "$WORK/editable.txt" 2>&1; then
        echo "   editable install failed (non-fatal: PYTHONPATH=$REPO is used instead):"
        grep -E 'Error|ERROR' "$WORK/editable.txt" | tail -1 | sed 's/^/   /'
    fi
    tmo "$PY" -c "import array_api_compat, array_api_strict, xpnet; print('imports ok: xpnet', xpnet.__version__, 'from', xpnet.__file__)" || rc=1
    return $rc
}

stage_env() {
    local rc=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        tmo nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv || rc=1
        tmo nvidia-smi -L
    else echo "nvidia-smi: not found"; [ "$DRY" = 1 ] || rc=1; fi
    echo "+ $PY ($(command -v "$PY"))"
    tmo "$PY" "$HELPERS/env_report.py" "$WORK/env.json" "$DRY" || rc=1
    return $rc
}

stage_pytest() {  # dry run: tests/test_gpu.py compares torch-on-CPU with numpy as a stand-in
    local standin=""; [ "$DRY" = 1 ] && standin=torch
    echo "+ XPNET_TEST_BACKENDS=$TEST_BACKENDS $PY -m pytest tests -q --maxfail=$MAXFAIL"
    PYTHONPATH=$HELPERS:$PYTHONPATH XPNET_TEST_GPU_STANDIN=$standin XPNET_TEST_BACKENDS=$TEST_BACKENDS \
        tmo "$PY" -m pytest tests -q -p xpnet_gpu_plugin --maxfail="$MAXFAIL" --durations=15 \
        -p no:cacheprovider -rfE --junitxml "$OUT/junit.xml" -o junit_suite_name="xpnet-$TRAIN_BACKEND"
}

stage_bench() {
    echo "+ $PY -m benchmarks.mlp $BENCH_ARGS --json $OUT/bench_gpu.json --markdown"
    # shellcheck disable=SC2086  # BENCH_ARGS is a word list
    tmo "$PY" -m benchmarks.mlp $BENCH_ARGS --json "$OUT/bench_gpu.json" --markdown | tee "$WORK/bench.md"; local rc=$?
    [ "$DRY" = 1 ] || tmo "$PY" "$HELPERS/graph_step_bench.py" "$WORK/graph_step.json" || rc=1; return $rc  # issue 15: CUDA graph
}

stage_train() {
    # shellcheck disable=SC2086  # TRAIN_ARGS is a word list
    tmo "$PY" "$HELPERS/seed_run.py" "$WORK" "$TRAIN_BACKEND" "$MODEL" "$OUT/accuracy_$TRAIN_BACKEND.png" $TRAIN_ARGS
}

stage_evaluate() {
    [ -f "$MODEL" ] || { echo "no saved model $MODEL (train stage failed?)"; return 2; }
    local rc=0
    echo "+ xpnet evaluate $MODEL --backend numpy"
    tmo "$PY" -m xpnet evaluate "$MODEL" --backend numpy --quiet || rc=1
    echo "+ predictions of the $TRAIN_BACKEND-trained model on: $EVAL_SPECS"
    # shellcheck disable=SC2086  # EVAL_SPECS is a word list
    tmo "$PY" "$HELPERS/reload_parity.py" "$MODEL" "$WORK/parity.json" $EVAL_SPECS || rc=1
    return $rc
}

main() {
    echo "xpnet GPU check (issue 7) -- mode: $MODE; budget ${BUDGET}s; stages: $STAGES"
    echo "repo $REPO; OUT=$OUT; python $PY; wheels $WHEELS; $(date -u +%FT%TZ)"
    local s js="{" sep="" fail=0
    for s in "${ALL_STAGES[@]}"; do run_stage "$s"; done
    for s in "${ALL_STAGES[@]}"; do
        js+="$sep\"$s\": {\"rc\": \"${RC[$s]}\", \"seconds\": ${SECS[$s]}}"; sep=", "
        case "${RC[$s]}" in 0|skipped) ;; *) fail=1 ;; esac
    done
    echo "$js}" > "$WORK/stages.json"
    "$PY" "$HELPERS/report.py" "$OUT" "$WORK" "$WORK/stages.json" "$DRY" "$TEST_BACKENDS" || fail=1
    echo "total: $(( $(date +%s) - T0 ))s; overall: $([ $fail = 0 ] && echo OK || echo FAILED)"
    return $fail
}

# In braces: bash reads the whole block before running it, so the file may
# change underneath (a checkout, an editor) without breaking the run.
{
    main 2>&1 | tee "$OUT/gpu.log"
    rc=${PIPESTATUS[0]}
    rm -rf "$WORK"
    exit "$rc"
}
