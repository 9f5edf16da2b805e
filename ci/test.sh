#!/usr/bin/env bash
# Run the whole test suite with the given interpreter. Used by `make test` and .ci/run.
set -uo pipefail
PY=${1:-python3}; shift || true
cd "$(dirname "$0")/.."
# 64-bit floats on JAX must be enabled before jax is imported.
export JAX_ENABLE_X64=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} MPLBACKEND=Agg
"$PY" -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no test (e.g. a -k filter matching nothing).
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit $rc
