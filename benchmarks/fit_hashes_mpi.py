"""The two-rank rows of :mod:`benchmarks.fit_hashes`, run on every rank of::

    mpiexec -n 2 python -m mpi4py -m benchmarks.fit_hashes_mpi --backends numpy,torch [PATTERN ...]

``benchmarks.fit_hashes`` starts it (on loopback, one BLAS thread, with a
timeout). Every rank runs the distributed cases of
:mod:`benchmarks.fit_hash_cases` (``dist-*`` fits and ``scores-dist*``) with
MPI's world communicator; rank 0 prints the rows, named ``mpi2-<backend>/...``.
A case failing on every rank (the library's checks make ranks fail together)
is an ERROR row; a rank failing alone ends the job (``-m mpi4py``), which the
caller reports.
"""

from __future__ import annotations

import argparse
import sys
from fnmatch import fnmatchcase

from xpnet.distributed import init

from .fit_hash_cases import fit_cases
from .fit_hashes import DTYPES, installed_backends, pin_threads, run_case


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.fit_hashes_mpi")
    p.add_argument("patterns", nargs="*")
    p.add_argument("--backends", default="numpy")
    args = p.parse_args(argv)
    pin_threads()
    comm = init(require_mpi=True)
    for name in installed_backends(args.backends.split(",")):
        for dtype in DTYPES:
            for case in fit_cases(name, dtype, lambda: comm, groups=("distributed", "scores")):
                if not case.name.split("/", 1)[1].startswith(("dist-", "scores-dist")):
                    continue
                named = f"mpi{comm.size}-{case.name}"
                if args.patterns and not any(fnmatchcase(named, p) for p in args.patterns):
                    continue
                row = f"mpi{comm.size}-{run_case(case)}"
                if comm.rank == 0:
                    print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
