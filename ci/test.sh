#!/usr/bin/env bash
# Lint and type-check, then run the whole test suite with the given interpreter.
# Used by `make test` and .ci/run. XPNET_LINT=0 skips ruff and mypy (quick
# iterations on one test file); CI always runs them.
set -uo pipefail
PY=${1:-python3}; shift || true
cd "$(dirname "$0")/.."

lint() {
    # Both print every finding; either one failing fails the run before pytest.
    # ruff and mypy come from the `lint` extra (make test installs it).
    local rc=0
    echo "+ ruff check xpnet tests benchmarks ci examples"
    "$PY" -m ruff check --quiet xpnet tests benchmarks ci examples || rc=1
    echo "+ mypy (settings: [tool.mypy] in pyproject.toml; cache in .mypy_cache)"
    "$PY" -m mypy || rc=1
    return $rc
}

if [ "${XPNET_LINT:-1}" != "0" ]; then
    lint || { echo "lint or type check failed (findings above)"; exit 1; }
fi

# 64-bit floats on JAX must be enabled before jax is imported.
export JAX_ENABLE_X64=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} MPLBACKEND=Agg
"$PY" -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no test (e.g. a -k filter matching nothing).
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit $rc
