"""Benchmark of xpnet.distributed: the communication cost of data-parallel training.

Run ``python -m benchmarks.distributed`` (``--help`` for the flags). It starts
itself under ``mpiexec -n RANKS python -m mpi4py`` on loopback/shared memory
and prints, from rank 0:

* the fused-gradient allreduce of the seed MLP (784-100-200-10: 100,710
  parameters in 6 arrays), median over ``--repeats`` calls after a warm-up,
  both the bare ``Allreduce(IN_PLACE)`` of the fused host buffer and the whole
  ``allreduce_mean_`` (pack into the buffer, reduce, unpack with the backend).

Phase 2 (data-parallel ``fit``) adds seconds per epoch and per-step
communication time for 1 and 2 ranks at global batch 32, 512 and 4096 here
(see ``EPOCH_FIGURES``). On a 2-core machine these figures show correctness
and overhead, not speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The seed MLP's layer sizes; its parameters are what one step allreduces.
SEED_SIZES = (784, 100, 200, 10)

#: Global batch sizes of the per-epoch figures added with data-parallel fit (phase 2).
EPOCH_FIGURES = (32, 512, 4096)


def seed_parameter_shapes(sizes=SEED_SIZES) -> list:
    """Shapes of the weights and biases of an MLP with layer ``sizes`` (in order)."""
    shapes = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        shapes += [(a, b), (b,)]
    return shapes


def _median_seconds(fn, comm, repeats: int) -> float:
    """Median over ``repeats`` calls of ``fn``, each started after a barrier (all ranks aligned)."""
    times = []
    for _ in range(repeats):
        comm.barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def time_fused_allreduce(comm, backend, repeats: int, warmup: int = 20) -> dict:
    """Median seconds of the bare Allreduce of the fused buffer and of ``allreduce_mean_``."""
    from mpi4py import MPI

    grads = [backend.zeros(s) for s in seed_parameter_shapes()]
    for _ in range(warmup):  # first calls set up MPI's shared-memory channels
        grads = comm.allreduce_mean_(grads, backend)
    buffer = comm._buffer_for(grads).data

    def bare():
        comm.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)

    def fused():
        comm.allreduce_mean_(grads, backend)

    return {"n_params": int(buffer.size), "bytes": int(buffer.nbytes),
            "allreduce_s": _median_seconds(bare, comm, repeats),
            "allreduce_mean_s": _median_seconds(fused, comm, repeats)}


def worker(args) -> int:
    """One rank: measure, and print the figures on rank 0."""
    import xpnet
    from xpnet.distributed import init

    comm = init(require_mpi=True)
    backend = xpnet.get_backend(args.backend, dtype=args.dtype)
    fig = time_fused_allreduce(comm, backend, args.repeats)
    if comm.is_root:
        print(f"fused gradient allreduce, seed MLP {'-'.join(map(str, SEED_SIZES))}: "
              f"{fig['n_params']:,} {args.dtype} parameters ({fig['bytes'] / 1e6:.2f} MB), "
              f"{comm.size} ranks, backend {args.backend}, median of {args.repeats}")
        print(f"  Allreduce(IN_PLACE) of the fused buffer : {fig['allreduce_s'] * 1e6:9.1f} us")
        print(f"  allreduce_mean_ (pack, reduce, unpack)  : {fig['allreduce_mean_s'] * 1e6:9.1f} us")
    return 0


def launch(args) -> int:
    """Start this module under ``mpiexec -n RANKS python -m mpi4py`` on loopback."""
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) \
        or shutil.which("mpiexec")
    if mpiexec is None:
        print('mpiexec not found: pip install "xpnet[mpi]"', file=sys.stderr)
        return 2
    env = dict(os.environ, UCX_TLS="self,sm", HYDRA_IFACE="lo", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    cmd = [mpiexec, "-n", str(args.ranks), sys.executable, "-m", "mpi4py",
           "-m", "benchmarks.distributed", "--worker", "--repeats", str(args.repeats),
           "--backend", args.backend, "--dtype", args.dtype]
    return subprocess.run(cmd, env=env, cwd=root, timeout=args.timeout).returncode


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="MPI processes (default 2)")
    p.add_argument("--repeats", type=int, default=1000, help="timed calls (default 1000)")
    p.add_argument("--backend", default="numpy", help="xpnet backend of the gradients")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--timeout", type=float, default=600, help="seconds before the job is killed")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return worker(args) if args.worker else launch(args)


if __name__ == "__main__":
    sys.exit(main())
