"""Bit-for-bit fingerprints of a matrix of small fits, to prove a refactoring changed nothing.

::

    python -m benchmarks.fit_hashes --out before.txt        # the table (a few minutes)
    python -m benchmarks.fit_hashes --compare before.txt after.txt

Each case prints one row ``case-name  PARAMS  RECORD``: the first 16 hex digits
of the SHA-256 of its final parameters (as float64 bytes, with their shapes),
then of its record (the ``History`` without timing keys; an estimator's
``loss_curve_``, ``n_iter_``, ...; for a scoring case, the predictions and the
scores of ``evaluate``). An error case prints ``case-name  raised  HASH``, the
hash of its exception's type and message. A case that fails unexpectedly prints
``case-name  ERROR  <type>: <message>`` and the run goes on.

The hashes hold on one machine with one library stack: another CPU's BLAS
rounds differently. Compare tables made in one sitting, before and after a
change. BLAS and torch are pinned to one thread for the whole run.
``--compare`` prints every row that differs (or is missing on one side) and
exits 1 if there is any. The cases: :mod:`benchmarks.fit_hash_cases`,
:mod:`benchmarks.fit_hash_sklearn`, :mod:`benchmarks.fit_hash_errors`; the
two-rank MPI rows come from :mod:`benchmarks.fit_hashes_mpi` run under ``mpiexec``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The CPU backends the matrix covers, where installed.
BACKENDS = ("numpy", "array_api_strict", "torch", "jax")
DTYPES = ("float32", "float64")
#: The backend and dtype of the error cases (their texts do not depend on the numbers).
ERROR_BACKENDS = (("numpy", "float64"), ("torch", "float32"))
MPI_RANKS = 2
MPI_TIMEOUT_S = 600
#: Environment of the run: one BLAS/OpenMP thread, JAX on the CPU in 64-bit mode.
ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu", "SCIPY_ARRAY_API": "1"}
_ROW = re.compile(r"^(\S+)  (\S+)  (.*)$")


# -- hashing ------------------------------------------------------------------------------

def digest(data: bytes) -> str:
    """The first 16 hex digits of ``data``'s SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def hash_arrays(arrays: Iterable[Any]) -> str:
    """Hash of arrays as float64 bytes, each preceded by its shape."""
    h = hashlib.sha256()
    for a in arrays:
        host = np.ascontiguousarray(np.asarray(a), dtype=np.float64)
        h.update(repr(host.shape).encode())
        h.update(host.tobytes())
    return h.hexdigest()[:16]


def canonical(value: Any) -> Any:
    """``value`` as JSON-able data in which every float is exact (``float.hex``)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value).hex()
    return repr(value)


def hash_record(record: dict) -> str:
    return digest(json.dumps(canonical(record), sort_keys=True).encode())


def error_text(exc: BaseException) -> str:
    """``Type: message`` with what differs between runs (temporary paths, addresses) masked."""
    text = f"{type(exc).__name__}: {exc}"
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/xpnet-hashes-[^/\s'\"]+", "<tmp>", text)
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", text)


# -- running ------------------------------------------------------------------------------

def run_case(case: Any, *, verbose: bool = False) -> str:
    """The row of one case; a failure becomes an ERROR row instead of stopping the run."""
    try:
        arrays, record = case.run()
    except Exception as exc:  # noqa: BLE001  (every failure is a row, the run goes on)
        if not case.raises:
            return f"{case.name}  ERROR  {one_line(error_text(exc))}"
        if verbose:
            print(f"{case.name}: {error_text(exc)}", file=sys.stderr)
        return f"{case.name}  raised  {digest(error_text(exc).encode())}"
    if case.raises:
        return f"{case.name}  ERROR  DidNotRaise: expected an exception, none was raised"
    return f"{case.name}  {hash_arrays(arrays)}  {hash_record(record)}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def pin_threads() -> None:
    """One BLAS thread (threadpoolctl) and one torch thread, for reproducible sums."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def installed_backends(names: Sequence[str] = BACKENDS) -> list[str]:
    import xpnet

    status = xpnet.available_backends()
    return [name for name in names if status.get(name) == "ok"]


def all_cases(backends: Sequence[str], dtypes: Sequence[str] = DTYPES) -> list:
    """Every single-process case for ``backends`` x ``dtypes``, then the error cases."""
    from .fit_hash_cases import fit_cases
    from .fit_hash_errors import error_cases
    from .fit_hash_sklearn import estimator_cases

    cases: list = []
    have_sklearn = importlib.util.find_spec("sklearn") is not None
    for name in backends:
        for dtype in dtypes:
            cases += fit_cases(name, dtype)
            if have_sklearn:
                cases += estimator_cases(name, dtype)
    for name, dtype in ERROR_BACKENDS:
        if name in backends:
            cases += error_cases(name, dtype)
    return cases


def select(cases: list, patterns: Sequence[str]) -> list:
    """The cases whose name matches one of the shell ``patterns`` (all without any)."""
    if not patterns:
        return cases
    return [c for c in cases if any(fnmatchcase(c.name, p) for p in patterns)]


def run_rows(cases: Iterable[Any], *, verbose: bool = False) -> Iterator[str]:
    for case in cases:
        yield run_case(case, verbose=verbose)


# -- MPI ----------------------------------------------------------------------------------

def mpi_skip_reason() -> str | None:
    """Why the two-rank rows cannot be made here, or None."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    if mpiexec() is None:
        return "no mpiexec next to this Python or on PATH"
    return None


def mpiexec() -> str | None:
    return shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def mpi_rows(backends: Sequence[str], patterns: Sequence[str],
             timeout: float = MPI_TIMEOUT_S) -> list[str]:
    """The rows of the two-rank job (rank 0 prints them), or one ERROR row saying why not."""
    reason = mpi_skip_reason()
    if reason is not None:
        return [f"mpi{MPI_RANKS}  ERROR  skipped: {reason}"]
    cmd = [str(mpiexec()), "-n", str(MPI_RANKS), sys.executable, "-m", "mpi4py", "-m",
           "benchmarks.fit_hashes_mpi", "--backends", ",".join(backends), *patterns]
    env = dict(os.environ, **ENVIRONMENT, UCX_TLS="self,sm", HYDRA_IFACE="lo",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"mpi{MPI_RANKS}  ERROR  TimeoutExpired: the job ran over {timeout:.0f} s"]
    rows = [line for line in proc.stdout.splitlines() if _ROW.match(line)]
    if proc.returncode != 0:
        tail = one_line((proc.stdout + proc.stderr)[-600:])
        rows.append(f"mpi{MPI_RANKS}  ERROR  exit {proc.returncode}: {tail}")
    return rows


# -- comparing ----------------------------------------------------------------------------

def stack_line() -> str:
    """The table's first line: the commit and the library versions it was made with."""
    versions = []
    for lib in ("numpy", "torch", "jax", "array_api_strict", "sklearn", "mpi4py"):
        if importlib.util.find_spec(lib) is not None:
            versions.append(f"{lib} {getattr(importlib.import_module(lib), '__version__', '?')}")
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                                capture_output=True, timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    return one_line(f"# fit_hashes git {commit} python {platform.python_version()} "
                    f"{', '.join(versions)} on {platform.machine()}")


def read_table(path: str | Path) -> dict[str, str]:
    """``name -> rest of the row`` of a table (``#`` lines and other non-rows are skipped)."""
    table = {}
    for line in Path(path).read_text().splitlines():
        match = None if line.startswith("#") else _ROW.match(line)
        if match:
            table[match.group(1)] = f"{match.group(2)}  {match.group(3)}"
    return table


def _stack_of(path: str | Path) -> str:
    lines = Path(path).read_text().splitlines()
    return lines[0] if lines and lines[0].startswith("#") else "(no stack line)"


def compare(a: str | Path, b: str | Path, out: Any = None) -> int:
    """Print the rows that differ between tables ``a`` and ``b`` (to ``out``, default
    stdout); 1 if any, else 0."""
    out = sys.stdout if out is None else out
    left, right = read_table(a), read_table(b)
    stacks = [_stack_of(path) for path in (a, b)]
    if stacks[0] != stacks[1]:  # not a difference of rows, but worth seeing
        print(f"note: made with\n  A: {stacks[0]}\n  B: {stacks[1]}", file=out)
    differ = 0
    for name in sorted(left.keys() | right.keys()):
        if left.get(name) != right.get(name):
            differ += 1
            print(f"{name}\n  A: {left.get(name, '(missing)')}\n  B: {right.get(name, '(missing)')}",
                  file=out)
    print(f"{differ} of {len(left.keys() | right.keys())} rows differ", file=out)
    return 1 if differ else 0


# -- command line -------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fit_hashes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("patterns", nargs="*", help="only the cases matching these shell patterns")
    p.add_argument("--out", help="also write the table to this file (atomically)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two tables")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="comma-separated CPU backends (default: those installed of %(default)s)")
    p.add_argument("--no-mpi", action="store_true", help=f"skip the {MPI_RANKS}-rank MPI rows")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    p.add_argument("--verbose", action="store_true",
                   help="print each error case's message (to stderr)")
    return p.parse_args(argv)


def write_table(path: str, rows: Sequence[str]) -> None:
    from xpnet._io import atomic_write

    with atomic_write(path, "w") as f:
        f.write("".join(f"{row}\n" for row in rows))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)  # before JAX, SciPy or scikit-learn is imported
    pin_threads()
    backends = installed_backends([b for b in args.backends.split(",") if b])
    cases = select(all_cases(backends), args.patterns)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    t0 = time.perf_counter()
    rows = []
    for row in run_rows(cases, verbose=args.verbose):
        print(row, flush=True)
        rows.append(row)
    if not args.no_mpi:
        for row in mpi_rows(backends, args.patterns):
            print(row, flush=True)
            rows.append(row)
    if args.out:
        write_table(args.out, [stack_line(), *rows])
    errors = sum("  ERROR  " in row for row in rows)
    print(f"{len(rows)} rows ({errors} ERROR) in {time.perf_counter() - t0:.1f} s; backends "
          f"{', '.join(backends)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
