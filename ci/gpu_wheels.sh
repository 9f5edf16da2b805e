#!/usr/bin/env bash
# Fetch, on a machine WITH PyPI access, the wheels that ci/gpu.sh installs on the
# GPU device machine (which has no network). Run it from anywhere:
#
#     bash ci/gpu_wheels.sh            # -> wheels/ in the repo root (git-ignored)
#
# then pass `carry: ["wheels"]` to the device tool's `run` (see ci/README.md).
#
# The device image (python3 = CPython 3.12, with numpy, CuPy 14 for CUDA 13,
# PyTorch CUDA, JAX, pytest, hypothesis, tqdm, matplotlib, threadpoolctl, psutil)
# lacks only the array-API packages. Those are REQUIRED and always installed.
# The other wheels are FALLBACKS: ci/gpu.sh installs one only when the device's
# own copy is missing or too old, so a changed image cannot break the run.
# Every wheel is fetched with --no-deps for CPython 3.12 on x86-64 Linux; each
# dependency is named explicitly below. matplotlib is NOT fetched (binary, ~9 MB
# plus six dependencies, and present on the image): ci/gpu.sh runs without the
# plot if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${WHEELS_DIR:-wheels}
PY=${PYTHON:-python3}
PYVER=${GPU_PYTHON_VERSION:-3.12}

# Pins: the versions the suite is developed against on the CPU machines.
REQUIRED=(
    "array-api-compat==1.16.0"
    "array-api-strict==2.6.1"
)
FALLBACK_PURE=(
    "pytest==9.2.0" "pluggy==1.7.0" "iniconfig==2.3.1"
    "hypothesis==6.170.17" "sortedcontainers==2.4.0"
    "tqdm==4.70.1" "threadpoolctl==3.8.0"
)
FALLBACK_BINARY=(
    "psutil==7.2.2"     # abi3 manylinux wheel: ~0.3 MB
)

mkdir -p "$DEST"
# Keep exactly one version of each project: a stale second one makes
# `pip install --find-links` ambiguous. Remove wheels not in the lists above.
norm() { local n=${1%%==*}; n=$(echo "$n" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'); echo "$n==${1#*==}"; }
want=" "
for spec in "${REQUIRED[@]}" "${FALLBACK_PURE[@]}" "${FALLBACK_BINARY[@]}"; do
    want+="$(norm "$spec") "
done
for f in "$DEST"/*.whl; do
    [ -e "$f" ] || continue
    base=$(basename "$f")                    # NAME-VERSION-TAGS.whl
    have=$(norm "$(echo "$base" | cut -d- -f1)==$(echo "$base" | cut -d- -f2)")
    case "$want" in *" $have "*) ;; *) echo "removing stale $f"; rm -f "$f" ;; esac
done

platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# One call: pure-python wheels match any platform; binary ones must be cp312 or abi3.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${platforms[@]}" -d "$DEST" \
    "${REQUIRED[@]}" "${FALLBACK_PURE[@]}" "${FALLBACK_BINARY[@]}"

echo "wheels in $DEST/:"
ls -1 "$DEST"
du -ch "$DEST"/*.whl | tail -1
# The dependencies each wheel declares (extras left out): each must be on the
# device image or in this folder, since ci/gpu.sh installs with --no-deps.
"$PY" - "$DEST" <<'PYEOF'
import pathlib, sys, zipfile
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    print(f"  {whl.name.split('-')[0]:<18} {whl.stat().st_size / 1e6:5.2f} MB  needs: "
          f"{'; '.join(reqs) or 'nothing'}")
PYEOF
