"""Benchmark of xpnet.distributed: the communication cost of data-parallel training.

Run ``python -m benchmarks.distributed`` (``--help`` for the flags). It starts
itself under ``mpiexec -n RANKS python -m mpi4py`` on loopback/shared memory
and prints, from rank 0:

* the fused-gradient allreduce of the seed MLP (784-100-200-10: 100,710
  parameters in 6 arrays), median over ``--repeats`` calls after a warm-up,
  both the bare ``Allreduce(IN_PLACE)`` of the fused host buffer and the whole
  ``allreduce_mean_`` (pack into the buffer, reduce, unpack with the backend).

* seconds per epoch of data-parallel ``fit`` (the seed MLP, numpy float32, on
  the first ``--rows`` MNIST training images, synthetic data when MNIST is not
  in the checkout) for 1 rank (``distributed=None``: the single-process step)
  and ``--ranks`` ranks, at global batch 32, 512 and 4096 (``EPOCH_FIGURES``),
  with the per-step time spent in ``allreduce_mean_`` (waiting for the slower
  rank included);
* a model of the expected scaling on real clusters (:func:`scaling_model`).

On a 2-core machine these figures show correctness and overhead, not speed-up:
two ranks share the cores one process would use.
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


#: Assumptions of the scaling model: (name, workers, sustained float32 FLOP/s per
#: worker, per-step compute floor in s (kernel launches, Python), allreduce bus
#: bandwidth in bytes/s, per-message latency in s).
CLUSTERS = (
    ("8 GPUs, one node, NVLink (NCCL)", 8, 20e12, 150e-6, 150e9, 1.5e-6),
    ("4 CPU nodes, 25 GbE (MPI)", 4, 100e9, 20e-6, 25e9 / 8 * 0.8, 30e-6),
)


def scaling_model(n_params: int, batch: int, workers: int, flops: float, floor_s: float,
                  bandwidth: float, latency: float, bytes_per_param: int = 4) -> dict:
    """Seconds per step on 1 and on ``workers`` workers, and the speed-up.

    Compute: ``6 * n_params`` FLOP per sample (forward 2, backward 4) over
    ``flops``, never below ``floor_s``. Communication (ring allreduce):
    ``2 (p - 1) / p * bytes / bandwidth + 2 (p - 1) * latency``.
    """
    def compute(samples):
        return max(6.0 * n_params * samples / flops, floor_s)

    nbytes = n_params * bytes_per_param
    comm = 2 * (workers - 1) / workers * nbytes / bandwidth + 2 * (workers - 1) * latency
    one, many = compute(batch), compute(batch / workers) + comm
    return {"one_s": one, "compute_s": compute(batch / workers), "comm_s": comm,
            "many_s": many, "speedup": one / many}


#: Models of the scaling table: the seed MLP and one 100 times larger.
MODEL_PARAMS = (("seed MLP", 100_710), ("a 10M-parameter model", 10_000_000))


def print_scaling_model() -> None:
    print("\nscaling model (assumed, not measured): t_step = max(6 * params * batch / FLOP/s, "
          "floor) + ring allreduce 2 (p-1)/p * bytes / bandwidth + 2 (p-1) * latency")
    for name, workers, flops, floor_s, bandwidth, latency in CLUSTERS:
        print(f"  {name}: {flops / 1e9:,.0f} GFLOP/s per worker, step floor "
              f"{floor_s * 1e6:.0f} us, {bandwidth / 1e9:.1f} GB/s, {latency * 1e6:.1f} us latency")
        for model, n_params in MODEL_PARAMS:
            print(f"   {model}: {n_params:,} float32 gradients ({n_params * 4 / 1e6:.1f} MB)")
            for batch in EPOCH_FIGURES:
                m = scaling_model(n_params, batch, workers, flops, floor_s, bandwidth, latency)
                print(f"    global batch {batch:5d}: 1 worker {m['one_s'] * 1e6:9.1f} us/step | "
                      f"{workers} workers {m['compute_s'] * 1e6:9.1f} compute + "
                      f"{m['comm_s'] * 1e6:7.1f} allreduce us/step | speed-up {m['speedup']:.2f}x")
    print("  The seed MLP is small: its steps are short next to an allreduce (and on GPUs "
          "below the launch floor), so data parallelism pays only at large global batches "
          "and for larger models.")


def _epoch_data(rows: int, backend):
    """The first ``rows`` MNIST training images (synthetic ones when MNIST is missing)."""
    import numpy as np

    from xpnet.datasets import load_mnist

    try:
        X, y = load_mnist(backend=backend, download=False, progress=False)[:2]
        return X[:rows], y[:rows], "MNIST"
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        X = rng.random((rows, SEED_SIZES[0]), dtype=np.float32)
        y = rng.integers(0, SEED_SIZES[-1], rows)
        return backend.asarray(X), backend.asarray(y, dtype=backend.index_dtype), "synthetic"


class _TimedAllreduce:
    """Wraps ``comm.allreduce_mean_`` and adds up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, arrays, backend):
        t0 = time.perf_counter()
        out = self.fn(arrays, backend)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def time_epochs(comm, backend, rows: int) -> list:
    """Seconds per epoch and per-step allreduce seconds of fit at each global batch."""
    import xpnet

    X, y, source = _epoch_data(rows, backend)
    figures = []
    for batch in (b for b in EPOCH_FIGURES if b <= X.shape[0]):
        model = xpnet.Sequential.mlp(list(SEED_SIZES), seed=0, backend=backend)
        timer = None
        if comm.size > 1:
            timer = comm.allreduce_mean_ = _TimedAllreduce(type(comm).allreduce_mean_.__get__(comm))
        comm.barrier()
        history = model.fit(X, y, epochs=1, batch_size=batch, train_accuracy=False,
                            distributed=comm if comm.size > 1 else None)
        steps = X.shape[0] // batch
        figures.append({"batch": batch, "steps": steps, "source": source,
                        "epoch_s": history["seconds"][0],
                        "comm_step_s": timer.seconds / max(timer.calls, 1) if timer else 0.0})
    return figures


def print_epochs(comm, figures, rows: int) -> None:
    print(f"\nfit, seed MLP, numpy float32, {rows:,} {figures[0]['source']} rows, 1 epoch, "
          f"{comm.size} rank{'s' if comm.size > 1 else ''}"
          + (" (distributed=None: the single-process step)" if comm.size == 1 else ""))
    for f in figures:
        print(f"  global batch {f['batch']:5d}: {f['epoch_s']:7.3f} s/epoch "
              f"({f['steps']} steps, {f['epoch_s'] / max(f['steps'], 1) * 1e3:7.3f} ms/step), "
              f"allreduce {f['comm_step_s'] * 1e6:8.1f} us/step (waiting for the other rank included)")


def worker(args) -> int:
    """One rank: measure, and print the figures on rank 0."""
    import xpnet
    from xpnet.distributed import init

    comm = init(require_mpi=True)
    backend = xpnet.get_backend(args.backend, dtype=args.dtype)
    if args.fit:
        figures = time_epochs(comm, backend, args.rows)
        if comm.is_root:
            print_epochs(comm, figures, args.rows)
        return 0
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
    common = ["--repeats", str(args.repeats), "--backend", args.backend, "--dtype", args.dtype,
              "--rows", str(args.rows)]

    def run(ranks, *extra):
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py",
               "-m", "benchmarks.distributed", "--worker", *common, *extra]
        return subprocess.run(cmd, env=env, cwd=root, timeout=args.timeout).returncode

    print("NOTE: on a 2-core machine these figures show correctness and overhead, not "
          "speed-up: the ranks share the cores one process would use.", flush=True)
    rc = run(args.ranks)
    if rc == 0 and not args.no_fit:
        for ranks in (1, args.ranks):
            rc = rc or run(ranks, "--fit")
    if rc == 0:
        print_scaling_model()
    return rc


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="MPI processes (default 2)")
    p.add_argument("--repeats", type=int, default=1000, help="timed calls (default 1000)")
    p.add_argument("--backend", default="numpy", help="xpnet backend of the gradients")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--timeout", type=float, default=600, help="seconds before the job is killed")
    p.add_argument("--rows", type=int, default=50_000,
                   help="MNIST training rows of the per-epoch figures (default 50000)")
    p.add_argument("--no-fit", action="store_true", help="only the allreduce figures")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fit", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return worker(args) if args.worker else launch(args)


if __name__ == "__main__":
    sys.exit(main())
